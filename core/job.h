// Job: one job's membership and its state machine. Internal to the core; the server talks to
// JobRegistry, which owns jobs and routes calls to them.
//
// Job states:
//
//                 first Join
//                     |
//                     v
//     +----------- FORMING -----------+
//     | every expected member joined  | MS_TOPO_TIMEOUT expired, error reported
//     v                               v
//  COMPLETE ---- member died -----> FAILED     (without recovery)
//     |   ^
//     |   | every dead member rejoined (MS_ENABLE_RECOVERY=1)
//     |   |
//     |  DEGRADED <--- member died ---- COMPLETE   (MS_ENABLE_RECOVERY=1)
//     |      every remaining member left while some are dead --> FAILED
//     | every member left
//     v
//  FINISHED
//  FINISHED / FAILED: kept for finished_job_ttl, then forgotten; a Join for such an id starts a
//  new Job with generation + 1.
//
// Member states (liveness):
//
//   WAITING --job complete--> ACTIVE --leave--> LEFT
//   WAITING --unary call cancelled / leave / suspect grace expired--> (withdrawn, removed)
//   WAITING <--resume-- SUSPECT(forming) <--session dropped-- WAITING
//   ACTIVE  --session dropped--> SUSPECT --resumed--> ACTIVE
//   SUSPECT --disconnect grace expired--> DEAD
//   ACTIVE/SUSPECT --no heartbeat for MS_NODE_TIMEOUT / reported error--> DEAD
//   DEAD --(recovery) same node id joins again--> ACTIVE (new incarnation, same rank)
//   any but DEAD/LEFT --job failed--> FAILED
//
// Thread-safe through its own mutex. Every method that completes callbacks, notifies sessions
// or watchers, or persists changes takes an Effects& and only appends to it (persisting via
// fx.Persist + fx.Submit under the lock); the caller runs the effects after unlocking.
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
#include "core/compact.h"
#include "core/credentials.h"
#include "core/deadline_queue.h"
#include "core/effects.h"
#include "core/job_kv.h"
#include "core/job_registry.h"
#include "core/metrics_sink.h"
#include "core/rank_assigner.h"
#include "core/types.h"
#include "store/state_store.h"

namespace ms_rendezvous::core {

// Delivers closures for one receiver (a session or a watcher) in sequence order, never
// concurrently: sequence numbers are assigned under the job lock, delivery happens after it,
// possibly from several threads at once.
class OrderedDelivery {
 public:
  explicit OrderedDelivery(uint64_t first_seq, size_t max_backlog)
      : next_(first_seq), max_backlog_(max_backlog) {}

  // Runs `fn` once every earlier seq ran. Returns false when the reorder backlog overflowed
  // (the receiver is then ended by the caller).
  bool Deliver(uint64_t seq, absl::AnyInvocable<void()> fn);

 private:
  absl::Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_);
  const size_t max_backlog_;
  absl::btree_map<uint64_t, absl::AnyInvocable<void()>> pending_ ABSL_GUARDED_BY(mu_);
};

class Job {
 public:
  struct Params {
    std::string id;
    uint64_t uid = 0;         // distinguishes successive jobs with the same id
    uint64_t generation = 1;  // formation counter, continues across reuse of the id
    uint32_t worker_num = 0;  // fixed by the first member
    uint32_t server_num = 0;
    int64_t topo_timeout_ms = 0;  // resolved: > 0, or < 0 for forever
    int64_t node_timeout_ms = 0;  // resolved: > 0, or < 0 for never
    bool recovery_enabled = false;
    std::string token_digest;  // SHA-256 of the job token; empty: the job has none
  };

  Job(Params params, Clock* clock, const RegistryOptions& options, StateStore* store,
      DeadlineQueue* deadlines);
  ~Job();

  const std::string& id() const { return params_.id; }
  // The id shared with this job's timers (one copy however many timers are armed).
  const JobIdRef& id_ref() const { return id_ref_; }
  // True when the job has a token and `digest` is its digest (constant-time).
  bool TokenMatches(const std::string& digest) const {
    return !params_.token_digest.empty() && SecretEquals(params_.token_digest, digest);
  }
  uint64_t uid() const { return params_.uid; }
  uint64_t generation() const { return params_.generation; }

  // Records the new job in the store and arms its topology timeout. Call once after creation.
  void Start(Effects& fx);

  // Outcome of Join: kParked (the member is registered; topology later), kDone (result already
  // queued in fx, or returned through `error`), kJobEnded (FINISHED/FAILED: nothing consumed;
  // the registry starts a new job for the id and retries).
  enum class JoinOutcome { kParked, kDone, kJobEnded };
  // Unary join: `done` is consumed unless kJobEnded.
  JoinOutcome Join(const MemberSpec& spec, uint64_t incarnation, const std::string& credential,
                   uint64_t waiter_id,
                   JoinCallback& done, Effects& fx);
  // Session join: on kDone `*error` holds the rejection.
  JoinOutcome JoinSession(const MemberSpec& spec, uint64_t incarnation,
                          const std::string& credential,
                          std::shared_ptr<MemberSession> session, absl::Status* error,
                          Effects& fx);

  void CancelWaiter(uint64_t waiter_id, Effects& fx);
  absl::Status ResumeSession(const MemberRef& ref, uint64_t generation,
                             std::shared_ptr<MemberSession> session, Effects& fx);
  void SessionClosed(const MemberRef& ref, const MemberSession* session, Effects& fx);
  absl::Status ReportError(const MemberRef& ref, const std::string& reason, Effects& fx);
  absl::StatusOr<HeartbeatResult> Heartbeat(const MemberRef& ref);
  absl::Status TopologyDelivered(const MemberRef& ref);
  absl::StatusOr<JobState> Leave(const MemberRef& ref, Effects& fx);

  // Operator abort: the job fails with `reason` and every member is told (JOB_FAILED).
  // FailedPrecondition when the job already ended.
  absl::Status Abort(const std::string& reason, Effects& fx);

  // Deadline handlers; each re-checks the current state and ignores stale timers.
  // Returns true when the job ended (so the registry schedules its forgetting).
  bool OnTopologyTimeout(Effects& fx);
  bool OnMemberDeadline(const Deadline& d, Effects& fx);

  // Restores one member from the store (before serving; no effects but deadlines).
  void RestoreMember(const MemberRecord& record);
  // After every member was restored: rebuilds rank tables and arms the restart grace.
  void FinishRestore(JobState state, const std::string& failure_reason);

  // Ends every watch and session and completes every waiter with `status` (registry shutdown).
  void Shutdown(const absl::Status& status, Effects& fx);
  // Ends every watch (the job is forgotten or replaced).
  void EndWatches(const absl::Status& status, Effects& fx);

  // The job's key/value store, for a registered, live member (`ref`); Aborted once the job failed.
  absl::StatusOr<JobKv*> KvFor(const MemberRef& ref);
  // The store itself, for an operator's read (RendezvousAdmin.ListJobKeys); no member check.
  JobKv& kv() { return *kv_; }
  uint64_t Barrier(const MemberRef& ref, const std::string& name, absl::Duration timeout,
                   const std::vector<uint32_t>& ranks, StatusCallback done, Effects& fx);
  void CancelBarrierWaiter(uint64_t waiter_id, Effects& fx);
  void OnBarrierDeadline(const Deadline& d, Effects& fx);
  void RestoreKv(const std::string& key, const std::string& value) { kv_->Restore(key, value); }
  void OnKvDeadline(uint64_t waiter_id, Effects& fx) { kv_->OnDeadline(waiter_id, fx); }
  void CancelKvWaiter(uint64_t waiter_id, Effects& fx) { kv_->Cancel(waiter_id, fx); }

  bool IsEnded();  // FINISHED or FAILED
  JobState state();
  // Adds this job's members per state (indexed by MemberState) to `counts`. O(1).
  void AddMemberCounts(uint64_t counts[kNumMemberStates]);
  JobSummary Summary();
  MemberPage ListMembers(uint64_t offset, size_t limit);
  uint64_t Watch(std::shared_ptr<JobWatcher> watcher, Effects& fx);
  void Unwatch(uint64_t watch_id);

 private:
  struct SessionLink {
    std::shared_ptr<MemberSession> session;
    std::shared_ptr<OrderedDelivery> order;
    uint64_t next_seq = 0;
  };
  // One member's record. Kept small and free of per-member heap blocks (see core/compact.h):
  // the record itself comes from the job's member pool, the host address and host name point
  // into job-wide interners, the credential is stored inline.
  struct Member {
    absl::string_view node_id;  // the member map's key (stable: the map's nodes do not move)
    const std::string* host = nullptr;       // in hosts_ (counted there)
    const std::string* host_name = nullptr;  // in host_names_
    int32_t device_id = -1;
    std::string device_ip;
    Role role = Role::kWorker;
    MemberState state = MemberState::kWaiting;
    bool has_rank = false;
    bool heartbeat_disabled = false;  // liveness from the connected session alone
    bool topology_sent = false;       // to the current session
    std::optional<uint32_t> pinned_rank;
    RankOutput placement;
    uint64_t incarnation = 0;
    InlineString<kCredentialChars> credential;  // of this incarnation (credentials.h)
    MonoTime joined_at;
    MonoTime last_seen;
    std::string reason;       // why DEAD / FAILED
    uint64_t waiter_id = 0;   // unary Join parked (0: none)
    JoinCallback done;        // unary Join continuation
    std::optional<SessionLink> session;  // attached session stream
  };
  struct WatchLink {
    std::shared_ptr<JobWatcher> watcher;
    std::shared_ptr<OrderedDelivery> order;
  };
  using MemberNode = std::pair<const NodeId, Member>;
  using MemberMap = absl::node_hash_map<NodeId, Member, StringViewHash, StringViewEq,
                                        PoolAllocator<MemberNode, MemberNode>>;
  // One instance of a named barrier (see Barrier()).
  struct BarrierState {
    uint64_t instance = 0;
    Role role = Role::kWorker;
    std::vector<uint32_t> participants;  // sorted ranks
    absl::btree_map<uint32_t, uint64_t> arrived;  // rank -> waiter id
    absl::flat_hash_map<uint64_t, StatusCallback> waiters;
    absl::Duration timeout;
  };
  // After a barrier instance timed out: its error, for the participants that had not arrived
  // (each gets it once when it arrives late). Kept apart from the running instance so that an
  // on-time participant starting the next round cannot hide the error from a late one.
  struct LateBarrier {
    Role role = Role::kWorker;
    absl::Status failure;
    absl::btree_map<uint32_t, bool> ranks;
  };
  void FailBarriers(const absl::Status& status, Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Status Validate(const MemberSpec& spec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // PermissionDenied unless the spec's token digest is the job's (both may be empty).
  absl::Status CheckToken(const MemberSpec& spec) const;
  // Shared by both join flavours: validation, recovery, registration. On success returns the
  // member; on rejection returns the status.
  absl::StatusOr<Member*> Register(const MemberSpec& spec, uint64_t incarnation,
                                   const std::string& credential, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recovery: `m` (DEAD or SUSPECT) is taken over by a new incarnation.
  void Recover(Member& m, const MemberSpec& spec, uint64_t incarnation,
               const std::string& credential, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeComplete(Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Complete(Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fail(const std::string& reason, absl::StatusCode waiter_code,
            const std::vector<DeadMember>& dead, Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeclareDead(Member& m, DeathKind kind, const std::string& reason, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Withdraw(MemberMap::iterator it, const std::string& why, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Member*> FindMember(const MemberRef& ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Member* FindMember(Role role, absl::string_view node_id, uint64_t incarnation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Session plumbing: every call to a session goes through its OrderedDelivery.
  void Attach(Member& m, std::shared_ptr<MemberSession> session, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendRegistered(Member& m, Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendTopology(Member& m, Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendEvent(Member& m, std::shared_ptr<const JobEvent> event, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndSession(Member& m, const absl::Status& status, Effects& fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Every member state change goes through here (keeps member_counts_ exact).
  void SetState(Member& m, MemberState state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    --member_counts_[static_cast<int>(m.state)];
    ++member_counts_[static_cast<int>(state)];
    m.state = state;
  }
  void ArmLiveness(const Member& m, MonoTime when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ArmSuspect(const Member& m, MonoTime when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Topology TopologyOf(const Member& m) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  MemberInfo InfoOf(const Member& m, MonoTime now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  DeadMember DeadOf(const Member& m, MonoTime now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string Describe(const Member& m) const;  // "MS_WORKER rank 3 (node '3', host 10.0.0.1)"
  JobSummary SummaryLocked(bool detailed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string MissingDescription() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a watch event (and returns it, for sessions); nullptr when nobody listens.
  std::shared_ptr<const JobEvent> Emit(JobEventType type, const Member* member,
                                       std::string message, Effects& fx,
                                       std::vector<DeadMember> dead = {}, bool force = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  JobRecord RecordOf() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  MemberRecord RecordOf(const Member& m) const;
  void PersistJob(Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PersistMember(const Member& m, Effects& fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Params params_;
  const JobIdRef id_ref_;
  Clock* const clock_;
  const RegistryOptions& options_;
  StateStore* const store_;
  DeadlineQueue* const deadlines_;
  MonoTime created_at_;

  absl::Mutex mu_;
  JobState state_ ABSL_GUARDED_BY(mu_) = JobState::kForming;
  // Every member record of both roles (declared before members_, which returns its nodes here).
  NodePool member_pool_ ABSL_GUARDED_BY(mu_){sizeof(MemberNode), alignof(MemberNode)};
  // Members per host address (what host_counts_ used to be) and the host names, one copy each.
  StringInterner hosts_ ABSL_GUARDED_BY(mu_);
  StringInterner host_names_ ABSL_GUARDED_BY(mu_);
  std::string failure_reason_ ABSL_GUARDED_BY(mu_);
  MemberMap members_[kNumRoles] ABSL_GUARDED_BY(mu_) = {
      MemberMap(MemberMap::allocator_type(&member_pool_)),
      MemberMap(MemberMap::allocator_type(&member_pool_))};
  // Numeric node id -> node id string holding that rank, per role.
  absl::flat_hash_map<uint32_t, std::string> pinned_[kNumRoles] ABSL_GUARDED_BY(mu_);
  uint32_t non_numeric_[kNumRoles] ABSL_GUARDED_BY(mu_) = {0, 0};
  uint32_t left_[kNumRoles] ABSL_GUARDED_BY(mu_) = {0, 0};
  uint32_t dead_ ABSL_GUARDED_BY(mu_) = 0;
  // Members per MemberState (for metrics), maintained by SetState / Register / Withdraw.
  uint64_t member_counts_[kNumMemberStates] ABSL_GUARDED_BY(mu_) = {};
  // After completion: members by rank, per role (stable: no insert/erase after completion).
  std::vector<Member*> by_rank_[kNumRoles] ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::pair<Role, std::string>> waiters_ ABSL_GUARDED_BY(mu_);
  MonoTime topo_deadline_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_watch_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::btree_map<uint64_t, WatchLink> watches_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, BarrierState> barriers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, LateBarrier> late_barriers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::string> barrier_waiters_ ABSL_GUARDED_BY(mu_);  // -> name
  uint64_t next_barrier_instance_ ABSL_GUARDED_BY(mu_) = 1;
  // Own mutex; never locked before mu_ (order: job -> kv).
  const std::unique_ptr<JobKv> kv_;
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_JOB_H_
