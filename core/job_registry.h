// JobRegistry: every job the daemon knows, and the only entry point the server layer uses.
//
// Thread-safe. Never blocks a thread on behalf of a waiting member: Join() parks a continuation
// (JoinCallback) that runs exactly once, when the job completes, fails, times out, the call is
// cancelled or the registry shuts down. Callbacks and watcher notifications always run after
// every core lock has been released, on the thread whose call caused them (a Join that completes
// a job delivers every member's topology from that thread).
//
// Time: the registry never sleeps and never reads the wall clock for decisions. The owner calls
// ProcessDeadlines() when the next deadline is due (the server runs one deadline thread; tests
// advance a FakeClock and call it by hand).
//
// Locking: mu_ guards the job map only; each Job has its own mutex (jobs never wait on each
// other); the deadline queue has its own mutex. Order: registry mu_ -> job mu_ -> deadline mu_.
#ifndef MS_RENDEZVOUS_CORE_JOB_REGISTRY_H_
#define MS_RENDEZVOUS_CORE_JOB_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/deadline_queue.h"
#include "core/effects.h"
#include "core/job_kv.h"
#include "core/metrics_sink.h"
#include "core/types.h"
#include "store/state_store.h"

namespace ms_rendezvous::core {

class Job;

struct RegistryOptions {
  // Topology timeout of a job whose first member sent topo_timeout_ms == 0 (MindSpore: 1800 s).
  absl::Duration default_topo_timeout = absl::Seconds(1800);
  // MS_NODE_TIMEOUT of a job whose first member sent node_timeout_ms == 0 (MindSpore: 30 s).
  absl::Duration default_node_timeout = absl::Seconds(30);
  // How long a member whose session dropped may take to resume before it is declared dead
  // (or, while the job is forming, withdrawn).
  absl::Duration disconnect_grace = absl::Seconds(2);
  // How long FINISHED and FAILED jobs stay visible before they are forgotten.
  absl::Duration finished_job_ttl = absl::Hours(1);
  // A watcher that has this many undelivered events is disconnected (ResourceExhausted).
  size_t max_watch_backlog = 10000;
  // Limits of each job's key/value store (--kv-max-* flags).
  KvLimits kv_limits;
  // Live (FORMING, COMPLETE, DEGRADED) jobs at most (--max-jobs). A Join that would create one
  // more is refused with ResourceExhausted; FINISHED and FAILED jobs awaiting forgetting do not
  // count (they hold no members) and a Join that replaces one is refused only if it would exceed
  // the limit too. 0 = no limit.
  size_t max_jobs = 10000;
  // MS_WORKER_NUM + MS_SERVER_NUM at most (--max-members-per-job); above it a Join is refused
  // with ResourceExhausted. 0 = no limit (each role is still capped at 1,000,000).
  uint64_t max_members_per_job = 1000000;
  // --require-job-token: a join or CreateJob without a job token (MS_JOB_TOKEN) is refused
  // with PermissionDenied, so no job on this daemon can be joined by whoever knows its id.
  bool require_job_token = false;
  // Receives counters (joins, rejections, heartbeats, deaths, KV ops); nullptr = none. Not
  // owned; must outlive the registry. Called under job locks: see core/metrics_sink.h.
  MetricsSink* metrics = nullptr;
};

// Jobs per JobState and members per MemberState (indexed by the enum values).
struct RegistryCounts {
  uint64_t jobs[kNumJobStates] = {};
  uint64_t members[kNumMemberStates] = {};
};

// Completes a Join: the member's topology, or why it has none.
using JoinCallback = absl::AnyInvocable<void(absl::StatusOr<Topology>)>;

// Receives one job's events. OnEvent calls for one watcher never run concurrently and arrive in
// seq order, starting with a kSnapshot. OnEnd is the last call (job forgotten or replaced,
// watcher too slow, registry shut down).
class JobWatcher {
 public:
  virtual ~JobWatcher() = default;
  virtual void OnEvent(const JobEvent& event) = 0;
  virtual void OnEnd(const absl::Status& status) = 0;
};

// The server side of one member's session stream. The core calls it in order and never
// concurrently for one session, always outside core locks: OnTopology when the member's job is
// complete (or at once when a complete job is resumed), OnEvent for what the member must know
// (job failed, a member died or recovered in recovery mode), OnEnd last (job failed: Aborted
// with the reason; shutdown: Unavailable; replaced by a newer session: Aborted).
class MemberSession {
 public:
  virtual ~MemberSession() = default;
  // First call after JoinSession: the registration this session holds.
  virtual void OnRegistered(const MemberRef& ref) {}
  virtual void OnTopology(const Topology& topology) = 0;
  virtual void OnEvent(const JobEvent& event) = 0;
  virtual void OnEnd(const absl::Status& status) = 0;
};

struct HeartbeatResult {
  JobState job_state = JobState::kForming;
  uint64_t generation = 0;
};

struct MemberPage {
  std::vector<MemberInfo> members;
  uint32_t total = 0;
  // Offset of the next page; 0 when this is the last page.
  uint64_t next_offset = 0;
};

class JobRegistry {
 public:
  // Lists are capped in summaries and messages.
  static constexpr size_t kMaxHostsListed = 100;
  static constexpr size_t kMaxMissingRanksListed = 1000;

  // `clock` must outlive the registry. `store` may be nullptr (state kept in memory only).
  JobRegistry(Clock* clock, RegistryOptions options, StateStore* store = nullptr);
  ~JobRegistry();

  JobRegistry(const JobRegistry&) = delete;
  JobRegistry& operator=(const JobRegistry&) = delete;

  // Registers a member and parks `done` until its job is complete. Returns a waiter id for
  // CancelJoin (0 when `done` already ran, i.e. the join was rejected at once).
  // Possible errors passed to `done`:
  //   InvalidArgument    malformed spec; numeric node id out of range for its role
  //   FailedPrecondition worker_num / server_num disagree with the job (both values named)
  //   AlreadyExists      repeated node id in the job (who holds it, since when)
  //   ResourceExhausted  the job already has every member it expects
  //   DeadlineExceeded   topology timeout; the message lists who is missing
  //   Cancelled          CancelJoin() or Leave() before completion
  //   Unavailable        the registry is shutting down
  uint64_t Join(MemberSpec spec, JoinCallback done);

  // Withdraws a waiting member whose call was cancelled (client gone): its node id becomes free
  // again and `done` runs with Cancelled. No-op when the waiter already completed.
  void CancelJoin(const std::string& job_id, uint64_t waiter_id);

  // Session variant of Join: registers the member with `session` attached and returns its
  // reference (incarnation) at once; the topology and later events go to `session`. Errors are
  // the Join errors above, returned here. In recovery mode a member that died (or whose session
  // dropped) may join again with the same node id: it takes back its rank and gets its topology
  // at once; survivors get kMemberRecovered.
  absl::StatusOr<MemberRef> JoinSession(MemberSpec spec, std::shared_ptr<MemberSession> session);

  // Re-attaches a registration after a reconnect (or a daemon restart). `generation` is the one
  // the member holds, 0 if it had no topology yet. A complete job sends the topology at once.
  // Aborted when the daemon does not have this registration any more (unknown job, stale
  // incarnation or generation, declared dead, left); FailedPrecondition for a failed job.
  absl::Status ResumeSession(const MemberRef& ref, uint64_t generation,
                             std::shared_ptr<MemberSession> session);

  // The member's session stream ended without a Leave (connection dropped, process died). The
  // member becomes SUSPECT and is declared dead after disconnect_grace unless it resumes.
  // No-op when `session` is not the member's current session.
  void SessionClosed(const MemberRef& ref, const MemberSession* session);

  // The member reports a fatal error: it is declared dead with `reason` (job FAILED, or
  // DEGRADED in recovery mode) and every other member is told.
  absl::Status ReportError(const MemberRef& ref, const std::string& reason);

  // Records that a member is alive. NotFound (unknown job/member), Aborted (stale incarnation
  // or failed job; the message says why).
  absl::StatusOr<HeartbeatResult> Heartbeat(const MemberRef& ref);

  // The server handed a member's topology to its connection (a session's topology write or a
  // unary Join's answer completed). A member starts heartbeating once it has its topology, and
  // delivering 100,000 topologies takes seconds, so its node timeout runs from here rather than
  // from the job's completion: the last member served does not lose that time from its first
  // heartbeat's budget. Not a heartbeat (not counted as one). Same errors as Heartbeat.
  absl::Status TopologyDelivered(const MemberRef& ref);

  // Finalizes a member: LEFT in a complete job (FINISHED once all left), withdrawn while
  // forming. Idempotent. NotFound for an unknown job/member, Aborted for a stale incarnation.
  absl::StatusOr<JobState> Leave(const MemberRef& ref);

  // Ops views.
  // --- operator calls (RendezvousAdmin; the service checks the admin token) ---
  // Creates a FORMING job with no member yet, from the job fields of `spec` (job_id,
  // worker_num, server_num, topo/node timeouts, enable_recovery, job_token; the member fields
  // are ignored), so an operator fixes the spec and the token before any worker starts.
  // MS_TOPO_TIMEOUT counts from creation. AlreadyExists while a live job has the id;
  // InvalidArgument / ResourceExhausted / PermissionDenied as for Join.
  absl::StatusOr<JobSummary> CreateJob(MemberSpec spec);
  // Fails a live job with "aborted by an operator: <reason>": every member is told (JOB_FAILED),
  // every pending call ends Aborted. NotFound (unknown), FailedPrecondition (already ended).
  absl::Status AbortJob(const std::string& job_id, const std::string& reason);
  // Forgets an ended (FINISHED/FAILED) job now instead of after --finished-job-ttl: its
  // members, KV and record are deleted from the store. FailedPrecondition for a live job
  // (abort it first), NotFound for an unknown one.
  absl::Status DeleteJob(const std::string& job_id);
  // Reads a job's key/value store without being a member (operators; the service checks the
  // admin token). NotFound for an unknown job.
  absl::StatusOr<KvPage> OperatorKvList(const std::string& job_id, const std::string& prefix,
                                        const std::string& after, size_t limit);

  // True when job `job_id` exists, has a job token, and `token` is it. Lets a protected status
  // API (--status-requires-token) answer a job's own members about that job.
  bool JobTokenMatches(const std::string& job_id, const std::string& token);

  std::vector<JobSummary> ListJobs(const std::string& after_job_id, size_t limit);
  absl::StatusOr<JobSummary> GetJob(const std::string& job_id);
  absl::StatusOr<MemberPage> ListMembers(const std::string& job_id, uint64_t offset,
                                         size_t limit);
  // Subscribes to a job's events; the first event is a snapshot. NotFound for an unknown job.
  absl::StatusOr<uint64_t> Watch(const std::string& job_id, std::shared_ptr<JobWatcher> watcher);
  // Unsubscribes (no OnEnd call follows). No-op for an unknown id.
  void Unwatch(const std::string& job_id, uint64_t watch_id);

  // --- Job key/value store and barriers -----------------------------------------------------
  // Every call names the calling member: NotFound/Aborted when it is not (any more) a member of
  // the job; Aborted with the job's failure once the job failed. Callbacks run exactly once,
  // outside core locks, after the change is durable. Blocking calls return a waiter id for
  // CancelWaiter (0 when `done` already ran).
  void KvSet(const MemberRef& ref, std::string key, std::string value, StatusCallback done);
  // timeout: 0 = try once (NotFound when missing); InfiniteDuration = until the job ends.
  uint64_t KvGet(const MemberRef& ref, const std::string& key, absl::Duration timeout,
                 ValueCallback done);
  uint64_t KvWait(const MemberRef& ref, const std::vector<std::string>& keys,
                  absl::Duration timeout, StatusCallback done);
  void KvAdd(const MemberRef& ref, const std::string& key, int64_t delta,
             absl::AnyInvocable<void(absl::StatusOr<int64_t>)> done);
  void KvCompareSet(const MemberRef& ref, const std::string& key, const std::string& expected,
                    std::string desired,
                    absl::AnyInvocable<void(absl::StatusOr<CompareSetResult>)> done);
  void KvDelete(const MemberRef& ref, const std::string& key,
                absl::AnyInvocable<void(absl::StatusOr<bool>)> done);
  absl::StatusOr<KvPage> KvList(const MemberRef& ref, const std::string& prefix,
                                const std::string& after, size_t limit);
  absl::StatusOr<uint64_t> KvNumKeys(const MemberRef& ref);
  // Blocks until every participant (ranks of the caller's role; empty = all of them) arrived.
  // Possible errors: FailedPrecondition (job not complete, participant sets disagree, already
  // waiting), InvalidArgument (rank out of range, caller not a participant, timeout <= 0),
  // DeadlineExceeded listing who did not arrive (also for late arrivals), Aborted (job failed).
  uint64_t Barrier(const MemberRef& ref, const std::string& name, absl::Duration timeout,
                   const std::vector<uint32_t>& ranks, StatusCallback done);
  // A blocked KV call or barrier whose caller went away.
  void CancelWaiter(const std::string& job_id, uint64_t waiter_id);

  // Rebuilds jobs and members from a StateStore after a daemon restart. Call once, before
  // serving. Every member gets one node timeout (its job's MS_NODE_TIMEOUT) to resume its
  // session or heartbeat before its liveness is judged; a forming job gets a fresh topology
  // timeout.
  absl::Status Restore(const StoredState& state);

  // Runs every deadline that is due. Returns when the next one is due (MonoTime::max() when
  // none).
  MonoTime ProcessDeadlines();

  // Called (outside locks) whenever a deadline earlier than every pending one is added, so the
  // owner's deadline thread can wake up early. Set once, before use.
  void SetDeadlineObserver(std::function<void(MonoTime)> observer);

  // Stops accepting joins (Unavailable), completes every waiting member with Unavailable and
  // ends every watch. Idempotent.
  void Shutdown();

  size_t num_jobs();
  // For metrics gauges: O(number of jobs), one short lock per job.
  RegistryCounts Counts();
  Clock* clock() const { return clock_; }
  const RegistryOptions& options() const { return options_; }

 private:
  std::shared_ptr<Job> FindJob(const std::string& job_id);
  // Finds or creates the job `spec` joins (replacing an ended one). nullptr when shutting down.
  // The job `spec` joins, created (or replacing an ended one) if needed. nullptr with *error set
  // when the registry shuts down (Unavailable) or --max-jobs is reached (ResourceExhausted).
  // The live job for spec.job_id, created from `spec` when there is none (or it ended).
  // With `create_only`, an existing live job is an error (AlreadyExists) instead.
  std::shared_ptr<Job> JobForJoin(const MemberSpec& spec, Effects& fx, absl::Status* error,
                                  bool create_only = false);
  void ScheduleForget(const std::shared_ptr<Job>& job);
  void CountKv(KvOp op) {
    if (options_.metrics != nullptr) options_.metrics->OnKvOp(op);
  }

  Clock* const clock_;
  const RegistryOptions options_;
  StateStore* const store_;
  DeadlineQueue deadlines_;

  absl::Mutex mu_;
  absl::btree_map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_job_uid_ ABSL_GUARDED_BY(mu_) = 1;

};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_JOB_REGISTRY_H_
