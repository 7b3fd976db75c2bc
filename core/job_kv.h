// JobKv: one job's key/value store and its blocked readers. Internal to the core; Job owns one
// and checks membership before calling it.
//
// Own mutex (membership and KV are independent areas). Lock order: job -> kv -> deadline queue.
// Blocking Get/Wait park a continuation with a deadline in the registry's DeadlineQueue; Set
// releases every waiter of the key (10,000 waiters of one key: one pass, callbacks run after the
// lock). When the job fails every waiter ends with the failure and later calls get it too.
// Mutations are persisted (fx.Persist + fx.Submit under the kv lock, so their order is kept);
// their acknowledgements run once durable.
#ifndef MS_RENDEZVOUS_CORE_JOB_KV_H_
#define MS_RENDEZVOUS_CORE_JOB_KV_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/clock.h"
#include "core/deadline_queue.h"
#include "core/effects.h"
#include "core/types.h"
#include "store/state_store.h"

namespace ms_rendezvous::core {

struct KvLimits {
  size_t max_key_bytes = 4096;
  size_t max_value_bytes = 1 << 20;
  size_t max_keys_per_job = 1000000;
  size_t max_bytes_per_job = size_t{1} << 30;
};

struct CompareSetResult {
  std::string value;
  bool swapped = false;
};

struct KvPage {
  std::vector<std::pair<std::string, std::string>> entries;
  std::string next_after;  // last key of this page when more follow, else empty
  bool more = false;
};

using StatusCallback = absl::AnyInvocable<void(absl::Status)>;
using ValueCallback = absl::AnyInvocable<void(absl::StatusOr<std::string>)>;

class JobKv {
 public:
  JobKv(JobIdRef job_id, uint64_t job_uid, const KvLimits& limits, Clock* clock,
        StateStore* store, DeadlineQueue* deadlines);

  void Set(std::string key, std::string value, StatusCallback done, Effects& fx);
  // timeout: ZeroDuration = try once (NotFound when missing), InfiniteDuration = until the job
  // ends. Returns the waiter id when parked, else 0.
  uint64_t Get(const std::string& key, absl::Duration timeout, ValueCallback done, Effects& fx);
  uint64_t Wait(const std::vector<std::string>& keys, absl::Duration timeout, StatusCallback done,
                Effects& fx);
  void Add(const std::string& key, int64_t delta,
           absl::AnyInvocable<void(absl::StatusOr<int64_t>)> done, Effects& fx);
  void CompareSet(const std::string& key, const std::string& expected, std::string desired,
                  absl::AnyInvocable<void(absl::StatusOr<CompareSetResult>)> done, Effects& fx);
  void Delete(const std::string& key, absl::AnyInvocable<void(absl::StatusOr<bool>)> done,
              Effects& fx);
  absl::StatusOr<KvPage> List(const std::string& prefix, const std::string& after, size_t limit);
  absl::StatusOr<uint64_t> NumKeys();

  // A blocked Get/Wait whose caller went away: dropped, `done` runs with Cancelled.
  void Cancel(uint64_t waiter_id, Effects& fx);
  // The waiter's deadline passed (DeadlineKind::kKvWaiter).
  void OnDeadline(uint64_t waiter_id, Effects& fx);
  // The job failed: every waiter and every later call gets `status`.
  void Fail(const absl::Status& status, Effects& fx);
  // Restart: puts a stored entry back (no persistence, no waiters).
  void Restore(const std::string& key, const std::string& value);

  // For messages: "'key'" with non-printable bytes escaped, long keys cut.
  static std::string Printable(const std::string& key);

 private:
  struct Waiter {
    bool is_get = false;
    std::string get_key;
    std::vector<std::string> keys;  // Wait: all keys, for the timeout message
    size_t remaining = 0;
    absl::Duration timeout;
    ValueCallback get_done;
    StatusCallback wait_done;
  };

  absl::Status CheckKey(const std::string& key) const;
  absl::Status CheckPut(const std::string& key, size_t new_value_bytes) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Put(const std::string& key, std::string value, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(const std::string& key, Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t Park(Waiter w, const std::vector<std::string>& missing, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(Waiter& w, absl::Status status, Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const JobIdRef job_id_ref_;  // for this store's timers
  const std::string& job_id_ = *job_id_ref_;
  const uint64_t job_uid_;
  const KvLimits limits_;
  Clock* const clock_;
  StateStore* const store_;
  DeadlineQueue* const deadlines_;

  absl::Mutex mu_;
  absl::Status failed_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<uint64_t>> waiting_on_ ABSL_GUARDED_BY(mu_);
};

// Waiter ids are unique in the process (shared by KV waiters, barriers and joins).
uint64_t NextWaiterId();

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_JOB_KV_H_
