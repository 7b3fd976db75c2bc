// Job: one job's membership and its state machine. Internal to the core; the server talks to
// JobRegistry, which owns jobs and routes calls to them.
//
//                 first Join
//                     |
//                     v
//     +----------- FORMING -----------+
//     | every expected member joined  | MS_TOPO_TIMEOUT expired
//     v                               v
//  COMPLETE                         FAILED
//     | every member left             |
//     v                               |
//  FINISHED                           |
//     |                               |
//     +------> kept for finished_job_ttl, then forgotten <----+
//              (a Join for a FINISHED or FAILED id starts a new Job, generation + 1)
//
// Members: WAITING --complete--> ACTIVE --leave--> LEFT; WAITING --cancel/leave--> (withdrawn,
// removed); WAITING/ACTIVE --job failed--> FAILED.
//
// Thread-safe through its own mutex. Every method that completes callbacks or notifies watchers
// takes an Effects& and only appends to it; the caller runs the effects after unlocking.
#ifndef MS_RENDEZVOUS_CORE_JOB_H_
#define MS_RENDEZVOUS_CORE_JOB_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/clock.h"
#include "core/effects.h"
#include "core/job_registry.h"
#include "core/rank_assigner.h"
#include "core/types.h"

namespace ms_rendezvous::core {

class StateStore;

class Job {
 public:
  struct Params {
    std::string id;
    uint64_t uid = 0;         // distinguishes successive jobs with the same id
    uint64_t generation = 1;  // formation counter, continues across reuse of the id
    uint32_t worker_num = 0;  // fixed by the first member
    uint32_t server_num = 0;
    int64_t topo_timeout_ms = 0;  // resolved: > 0, or < 0 for forever
  };

  Job(Params params, Clock* clock, const RegistryOptions& options, StateStore* store);
  ~Job();

  const std::string& id() const { return params_.id; }
  uint64_t uid() const { return params_.uid; }
  uint64_t generation() const { return params_.generation; }
  // When formation times out (MonoTime::max() for never).
  MonoTime topo_deadline() const { return topo_deadline_; }

  // Outcome of Join: kParked (done will run later), kDone (done already queued in fx), or
  // kJobEnded (the job is FINISHED/FAILED: `done` was NOT consumed; the registry starts a new
  // job for the id and retries).
  enum class JoinOutcome { kParked, kDone, kJobEnded };
  JoinOutcome Join(const MemberSpec& spec, uint64_t incarnation, uint64_t waiter_id,
                   JoinCallback& done, Effects& fx);

  void CancelWaiter(uint64_t waiter_id, Effects& fx);
  absl::StatusOr<HeartbeatResult> Heartbeat(const MemberRef& ref);
  absl::StatusOr<JobState> Leave(const MemberRef& ref, Effects& fx);

  // Fails the job if it is still forming. Returns true when it did.
  bool OnTopologyTimeout(Effects& fx);
  // Ends every watch and completes every waiter with `status` (registry shutdown). Members
  // keep their state.
  void Shutdown(const absl::Status& status, Effects& fx);
  // Ends every watch (the job is forgotten or replaced).
  void EndWatches(const absl::Status& status, Effects& fx);

  bool IsEnded();  // FINISHED or FAILED
  JobState state();
  JobSummary Summary();
  MemberPage ListMembers(uint64_t offset, size_t limit);
  uint64_t Watch(std::shared_ptr<JobWatcher> watcher, Effects& fx);
  void Unwatch(uint64_t watch_id);

 private:
  struct Member {
    std::string node_id;
    std::string host;
    std::string host_key;  // HostKey(host)
    std::string host_name;
    int32_t device_id = -1;
    Role role = Role::kWorker;
    MemberState state = MemberState::kWaiting;
    std::optional<uint32_t> pinned_rank;
    bool has_rank = false;
    RankOutput placement;
    uint64_t incarnation = 0;
    MonoTime joined_at;
    MonoTime last_seen;
    uint64_t waiter_id = 0;  // 0 when no Join is parked
    JoinCallback done;
  };
  class WatchState;
  using MemberMap = absl::node_hash_map<std::string, Member>;

  absl::Status Validate(const MemberSpec& spec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t Expected(Role role) const {
    return role == Role::kWorker ? params_.worker_num : params_.server_num;
  }
  void Complete(Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fail(const std::string& reason, absl::StatusCode waiter_code, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Withdraw(MemberMap::iterator it, const std::string& why, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Member*> FindMember(const MemberRef& ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Topology TopologyOf(const Member& m) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  MemberInfo InfoOf(const Member& m, MonoTime now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobSummary SummaryLocked(bool detailed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string MissingDescription() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Emit(JobEventType type, const Member* member, std::string message, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Params params_;
  Clock* const clock_;
  const RegistryOptions& options_;
  StateStore* const store_;
  const MonoTime created_at_;
  const MonoTime topo_deadline_;

  absl::Mutex mu_;
  JobState state_ ABSL_GUARDED_BY(mu_) = JobState::kForming;
  std::string failure_reason_ ABSL_GUARDED_BY(mu_);
  MemberMap members_[kNumRoles] ABSL_GUARDED_BY(mu_);
  // Numeric node id -> node id string holding that rank, per role.
  absl::flat_hash_map<uint32_t, std::string> pinned_[kNumRoles] ABSL_GUARDED_BY(mu_);
  uint32_t non_numeric_[kNumRoles] ABSL_GUARDED_BY(mu_) = {0, 0};
  uint32_t left_[kNumRoles] ABSL_GUARDED_BY(mu_) = {0, 0};
  // After completion: members by rank, per role (stable: no insert/erase after completion).
  std::vector<Member*> by_rank_[kNumRoles] ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::pair<Role, std::string>> waiters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint32_t> host_counts_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_watch_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::btree_map<uint64_t, std::shared_ptr<WatchState>> watches_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_JOB_H_
