// Effects: work collected under a lock and run after it is released -- and, when the work
// acknowledges a state change, only after that change is durable.
//
// Completion callbacks re-enter gRPC (Finish, Write) and may call back into the core; running
// them under a core mutex invites deadlocks and stalls every other member of the job. Core
// methods therefore append closures to an Effects object declared BEFORE the lock in the
// caller's scope, so that its destructor runs them after the lock guard is gone.
//
// Durability: mutations recorded with Persist() are handed to the StateStore by Submit(), which
// the job calls while it still holds its lock (so batches reach the store in the order the
// changes happened). The closures then run once every submitted batch is durable: at once for
// the memory store, on the store's writer thread for SQLite. A batch that cannot be made
// durable calls the storage-failure handler (the daemon stops: acknowledging a change it may
// lose would be worse).
#ifndef MS_RENDEZVOUS_CORE_EFFECTS_H_
#define MS_RENDEZVOUS_CORE_EFFECTS_H_

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "store/state_store.h"

namespace ms_rendezvous::core {

// Called when a batch could not be made durable. Default: print and abort().
void SetStorageFailureHandler(std::function<void(const absl::Status&)> handler);

class Effects {
 public:
  Effects() = default;
  Effects(const Effects&) = delete;
  Effects& operator=(const Effects&) = delete;
  ~Effects() { Run(); }

  void Add(absl::AnyInvocable<void()> fn) { fns_.push_back(std::move(fn)); }
  void Reserve(size_t n) { fns_.reserve(fns_.size() + n); }

  // Records a mutation; Submit() hands the recorded ones to the store.
  void Persist(Mutation m) { pending_.push_back(std::move(m)); }
  // Submits what Persist() recorded as one batch. Call under the lock that ordered the changes.
  // `store` may be nullptr (nothing is persisted).
  void Submit(StateStore* store);

  // Runs (and drops) everything collected so far, in order -- now, or when every submitted
  // batch is durable. Idempotent.
  void Run();

 private:
  struct Gate {
    absl::Mutex mu;
    int outstanding ABSL_GUARDED_BY(mu) = 1;  // submitted batches + 1 for Run()
    absl::Status error ABSL_GUARDED_BY(mu);
    std::vector<absl::AnyInvocable<void()>> fns ABSL_GUARDED_BY(mu);
  };
  static void Open(const std::shared_ptr<Gate>& gate);

  std::vector<absl::AnyInvocable<void()>> fns_;
  std::vector<Mutation> pending_;
  std::shared_ptr<Gate> gate_;
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_EFFECTS_H_
