// ms_rendezvous::Client: joins a training job through the ms-rendezvous daemon (or the embedded
// scheduler of the job, see scheduler.h) and returns this process's topology.
//
//   auto client = ms_rendezvous::Client::FromEnv();          // MindSpore env contract
//   if (!client.ok()) ...
//   absl::StatusOr<ms_rendezvous::Topology> topo = (*client)->Join();   // blocks until complete
//   ... bootstrap the collective backend with topo->rank, topo->world_size ...
//   (*client)->Leave();
//
// Session life cycle:
//
//   created --Join()--> joined --Leave()/~Client--> left --Join() again--> joined (new incarnation)
//                         |  ^
//       stream broke      |  | resumed (same rank, same generation): SessionEventType::kResumed
//                         v  |
//                     reconnecting --job failed / resume refused / node timeout--> failed
//
// A member's session is ONE bidirectional stream (ms.rendezvous.v1.Rendezvous.Session) that
// carries its join, its heartbeats and every event the daemon pushes to it. Join() opens it,
// sends the join and blocks until the topology arrives (one round trip: the daemon answers once
// every expected member joined). One background thread per Client then reads the stream and
// writes the heartbeats (every MS_RETRY_INTERVAL_LOWER..UPPER; none with MS_DISABLE_HEARTBEAT=1).
//
// Reconnect: when the stream breaks (daemon restarted, network), the client reconnects with
// jittered exponential backoff (50 ms doubling to 2 s, +-50%), moving to the next address of an
// MS_SCHED_HOST list on every failure, and resumes its registration. The daemon answers with
// the same topology; a different rank or generation is never accepted silently (the session
// fails with Aborted). Attempts are bounded by MS_NODE_TIMEOUT once joined (the daemon has
// declared the member dead by then) and by MS_TOPO_TIMEOUT while joining.
//
// Failure fan-out: when the job fails (a member died, reported an error, ...) the daemon pushes a
// JOB_FAILED event naming the dead members. The client then (1) calls the event callback once
// with SessionEventType::kJobFailed, (2) makes SessionStatus() Aborted with a message naming the
// dead, and (3) ends every call blocked in this client (Join; future KV waits and barriers) with
// that same status; later calls return it at once. In recovery mode (MS_ENABLE_RECOVERY=1) a
// death is kMemberDead and a rejoin kMemberRecovered; the session stays healthy.
//
// Keepalive pings (every 30 s, 10 s timeout) notice a dead daemon during long waits.
#ifndef MS_RENDEZVOUS_CLIENT_H_
#define MS_RENDEZVOUS_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ms_rendezvous/options.h"

namespace ms_rendezvous {

enum class JobState { kUnknown, kForming, kComplete, kFinished, kFailed, kDegraded };
enum class MemberState { kUnknown, kWaiting, kActive, kLeft, kFailed, kSuspect, kDead };
enum class JobEventType {
  kUnknown,
  kSnapshot,         // first event of every watch: the job as it is now
  kMemberJoined,     // a member registered
  kMemberWithdrawn,  // a waiting member gave up before the job completed
  kMemberLeft,       // a member left after completion
  kJobComplete,      // every expected member joined; ranks assigned
  kJobFinished,      // every member left
  kJobFailed,        // the job failed (JobEvent::message says why, JobEvent::dead who died)
  kMemberSuspect,    // a member's session dropped; dead after the grace unless it resumes
  kMemberResumed,    // a suspected member resumed its session
  kMemberDead,       // recovery mode: a member died, the job is degraded
  kMemberRecovered,  // recovery mode: a new incarnation took back a dead member's rank
};

// Lower-case names used in JSON output: "forming", "active", "member_left", ...
absl::string_view JobStateName(JobState state);
absl::string_view MemberStateName(MemberState state);
absl::string_view JobEventTypeName(JobEventType type);

// Where this process landed. Ranks count per role (workers and parameter servers separately).
struct Topology {
  std::string job_id;
  Role role = Role::kWorker;
  std::string node_id;
  uint32_t rank = 0;
  uint32_t world_size = 0;        // members of this role
  uint32_t local_rank = 0;        // index among this role's members on the same host address
  uint32_t local_world_size = 0;  // this role's members on the same host address
  uint32_t node_rank = 0;         // index of this host among the role's hosts
  uint32_t num_nodes = 0;         // distinct host addresses of the role
  std::string host;               // the address the daemon recorded for this process
  uint64_t generation = 0;        // formation counter of the job
  uint64_t incarnation = 0;       // this registration (heartbeats and Leave carry it)
  uint32_t worker_num = 0;
  uint32_t server_num = 0;
};

// One member of the job as the daemon reports it.
struct MemberInfo {
  std::string node_id;
  Role role = Role::kWorker;
  std::optional<uint32_t> rank;  // set once the job is complete
  uint32_t local_rank = 0;       // valid with rank
  uint32_t node_rank = 0;        // valid with rank
  std::string host;
  std::string host_name;
  int32_t device_id = -1;
  std::string device_ip;  // MS_DEVICE_IP as reported by the member; empty when unknown
  MemberState state = MemberState::kUnknown;
  double last_heartbeat_age_s = 0;
  uint64_t incarnation = 0;
};

// A member that died, as the daemon tells every survivor.
struct DeadMember {
  Role role = Role::kWorker;
  std::optional<uint32_t> rank;  // unset when it died before the job was complete
  std::string node_id;
  std::string host;
  double last_seen_s_ago = 0;  // between the last time the daemon heard from it and its death
  std::string reason;          // "connection lost and not resumed within 2s", "reported: ..."
};

// "MS_WORKER rank 3 (node '3', host 10.0.0.1): <reason>; last seen 2.1s before" joined by "; ".
std::string DescribeDead(const std::vector<DeadMember>& dead);

struct JobEvent {
  uint64_t seq = 0;
  JobEventType type = JobEventType::kUnknown;
  JobState job_state = JobState::kUnknown;  // the job after the event
  uint64_t generation = 0;
  std::optional<MemberInfo> member;  // the member concerned, when any
  std::string message;               // human-readable detail
  std::vector<DeadMember> dead;      // kJobFailed, kMemberDead
};

// What happened to this client's session (Client::SetEventCallback).
enum class SessionEventType {
  kJobFailed,        // the job failed; `status` is what every pending and later call returns
  kMemberDead,       // recovery mode: a member died (`dead`); the job is degraded, we carry on
  kMemberRecovered,  // recovery mode: a new incarnation took back a dead member's rank
  kResumed,          // the stream broke and this client resumed (same rank, same generation)
  kSessionLost,      // the session ended otherwise (resume refused: the daemon came back without
                     // the job or declared us dead; unreachable for the whole node timeout;
                     // rank or generation changed); `status` says why (Aborted)
};

// MindSpore's root-info key of `group` for `role`: "worker_group_info_<group>" (kPServer:
// "server_group_info_<group>").
std::string RootInfoKey(Role role, absl::string_view group);
// True for MindSpore's world group names: hccl_world_group, nccl_world_group, mccl_world_group.
bool IsWorldGroup(absl::string_view group);

// "job_failed", "member_dead", "member_recovered", "resumed", "session_lost".
absl::string_view SessionEventTypeName(SessionEventType type);

struct SessionEvent {
  SessionEventType type = SessionEventType::kJobFailed;
  std::string job_id;
  JobState job_state = JobState::kUnknown;  // the job after the event, when the daemon said
  uint64_t generation = 0;
  std::optional<MemberInfo> member;  // kMemberDead, kMemberRecovered: the member concerned
  std::vector<DeadMember> dead;      // kJobFailed, kMemberDead: who died
  std::string message;               // the daemon's detail (or the client's, for kSessionLost)
  absl::Status status;               // kJobFailed, kSessionLost: the session's final status
  std::optional<Topology> topology;  // kResumed: the topology the daemon sent again
};

// Result of Client::KvCompareSet.
struct KvCompareSetResult {
  std::string value;     // the value after the call (desired when swapped, else the current one)
  bool swapped = false;  // true when the key now holds `desired` because of this call
};

// A running subscription to a job's events (Client::Watch). Destroying it stops it.
class JobWatch {
 public:
  virtual ~JobWatch() = default;
  // Cancels the subscription and waits until the callback is no longer running. Returns why the
  // stream ended: OK when it was stopped here, otherwise the daemon's status (e.g. Unavailable
  // when the daemon stopped, ResourceExhausted when this watcher fell too far behind).
  // Must not be called from inside the event callback.
  virtual absl::Status Stop() = 0;
  // True once the stream ended (Stop() then returns at once).
  virtual bool Done() = 0;
};

class Client {
 public:
  // Validates `options` (the same rules as the environment contract), fills in node_id
  // (random UUID v4) and host_name when empty, and creates the channel. Does not connect yet.
  // Possible errors: InvalidArgument (the message names the offending option).
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);
  // Create(ClientOptionsFromEnv()).
  static absl::StatusOr<std::unique_ptr<Client>> FromEnv();

  // When joined and not left, leaves the job (best effort, short deadline) so that a job whose
  // members all exit normally finishes; then stops the session thread. Must not run while
  // another thread is inside Join(). JobWatch objects may outlive the Client.
  virtual ~Client() = default;

  // Receives what happens to this client's session (see SessionEventType), on the client's
  // session thread, one event at a time, in order. kJobFailed and kSessionLost come at most once
  // per session, after SessionStatus() already returns the failure. The callback must not call
  // Join/Leave/ReportError of this client or block for long (the session thread does the
  // heartbeats). Set it before Join(); replaces any earlier callback; nullptr removes it.
  virtual void SetEventCallback(std::function<void(const SessionEvent&)> callback) = 0;

  // Opens the session and blocks until every expected member of the job joined, then keeps the
  // session alive (heartbeats, reconnect) on a background thread. Must not run concurrently
  // with itself.
  // Possible errors (code and message as the daemon sent them unless noted):
  //   FailedPrecondition  role is MS_SCHED (schedulers serve, see RunScheduler), already joined,
  //                       or MS_WORKER_NUM/MS_SERVER_NUM disagree with the job (both named)
  //   InvalidArgument     malformed member spec, numeric MS_NODE_ID out of range
  //   AlreadyExists       this node id is already registered in the job
  //   ResourceExhausted   the job already has every member it expects
  //   DeadlineExceeded    MS_TOPO_TIMEOUT expired; the message lists who is missing
  //   Unavailable         the daemon stayed unreachable for the whole topology timeout (the
  //                       message names the address(es))
  //   Aborted             the job failed while we waited (a member died or reported an
  //                       error: the message names it), or the daemon lost our registration
  virtual absl::StatusOr<Topology> Join() = 0;

  // The whole member table of the job, fetched on demand, page by page.
  // Possible errors: NotFound (job unknown), Unavailable.
  virtual absl::StatusOr<std::vector<MemberInfo>> Members() = 0;

  // Subscribes to the job's events. Blocks until the first event (a snapshot) arrived, so an
  // unknown job fails here with NotFound. `on_event` runs on a thread owned by the watch, one
  // event at a time in order, starting with the snapshot.
  virtual absl::StatusOr<std::unique_ptr<JobWatch>> Watch(
      std::function<void(const JobEvent&)> on_event) = 0;

  // Tells the daemon that this member failed (e.g. a collective broke): the job fails (recovery
  // mode: degrades) and every other member is told, with `reason`. This member's session ends
  // (SessionStatus() becomes Aborted "... reported an error: <reason>"). FailedPrecondition when
  // not joined; the session's status when it already failed; Unavailable when the message could
  // not be sent.
  virtual absl::Status ReportError(const std::string& reason) = 0;

  // Sends leave on the session and waits until the daemon ends the stream (the job is FINISHED
  // once everybody left). Idempotent. FailedPrecondition when never joined; the session's
  // status when it had failed; otherwise the daemon's status.
  virtual absl::Status Leave() = 0;

  // OK while the session is healthy (also while it reconnects). Aborted once the job failed
  // (the message names the dead members), the daemon refused to resume this registration, or
  // the daemon stayed unreachable for the whole node timeout. Every blocked and later call of
  // this client returns this status until the next Join().
  virtual absl::Status SessionStatus() = 0;

  // --- Job key/value store, barriers and root info --------------------------------------------
  // The job's own KV store in the daemon (invisible to other jobs). Keys and values are bytes.
  // Every call needs a successful Join() and runs on any thread (several at once are fine: the
  // calls share nothing but the channel). Blocking calls (KvGet, KvWait, Barrier,
  // FetchRootInfo) are parked in the daemon, not polled; they also end promptly with
  // SessionStatus() when this client's session fails (the job failed, seen on the session
  // stream) even if the daemon's own answer were lost, and their RPC carries a deadline of
  // timeout + 5 s (none for InfiniteDuration). A reconnect that changes this member's
  // incarnation is retried once transparently.
  //
  // Errors common to every call below:
  //   FailedPrecondition  not joined (no Join() yet, or after Leave())
  //   Aborted             the job failed (the message names the dead; the same status as
  //                       SessionStatus()), or the daemon no longer knows this registration
  //   Unavailable         the daemon could not be reached (e.g. while the session reconnects)
  //   DeadlineExceeded    the daemon gave no answer within the call's deadline (non-blocking
  //                       calls: 30 s)

  // Creates or overwrites `key` and releases every waiter of it.
  // Possible errors: ResourceExhausted (a KV limit: key length, value size, keys or bytes per
  // job; the message names the daemon flag).
  virtual absl::Status KvSet(absl::string_view key, absl::string_view value) = 0;

  // The value of `key`, waiting up to `timeout` for it to be set. InfiniteDuration: until the
  // job ends; ZeroDuration: try once (as KvTryGet).
  // Possible errors: DeadlineExceeded (not set in time; names the key), NotFound (timeout 0 and
  // missing), InvalidArgument (negative timeout).
  virtual absl::StatusOr<std::string> KvGet(absl::string_view key, absl::Duration timeout) = 0;

  // The value of `key` without waiting.
  // Possible errors: NotFound (missing).
  virtual absl::StatusOr<std::string> KvTryGet(absl::string_view key) = 0;

  // Returns once every key exists. InfiniteDuration: until the job ends; ZeroDuration: check
  // once.
  // Possible errors: DeadlineExceeded (the timeout passed; lists the keys still missing),
  // NotFound (zero timeout and keys missing: lists them, like KvTryGet), InvalidArgument
  // (negative timeout).
  virtual absl::Status KvWait(const std::vector<std::string>& keys, absl::Duration timeout) = 0;

  // Adds `delta` atomically to the decimal int64 stored at `key` (missing: 0) and returns the
  // new value.
  // Possible errors: FailedPrecondition (the current value is not a decimal int64),
  // ResourceExhausted (a KV limit).
  virtual absl::StatusOr<int64_t> KvAdd(absl::string_view key, int64_t delta) = 0;

  // torch.distributed.Store compare_set: when the value of `key` equals `expected` (or the key
  // is missing and `expected` is empty) it becomes `desired`.
  // Possible errors: ResourceExhausted (a KV limit).
  virtual absl::StatusOr<KvCompareSetResult> KvCompareSet(absl::string_view key,
                                                          absl::string_view expected,
                                                          absl::string_view desired) = 0;

  // Deletes `key`; true when it existed.
  virtual absl::StatusOr<bool> KvDelete(absl::string_view key) = 0;

  // Every (key, value) whose key starts with `prefix`, ordered by key (all pages fetched; a
  // concurrent writer may make the result a mix of before and after).
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> KvList(
      absl::string_view prefix) = 0;

  // Number of keys in the job's store.
  virtual absl::StatusOr<uint64_t> KvNumKeys() = 0;

  // Blocks until every participant arrived at barrier `name`: `ranks` of this member's role
  // (empty: all of them). The first arrival fixes the timeout, counted from its arrival;
  // InfiniteDuration waits until the job ends (sent as one year). All participants get the
  // same result; the name is reusable once an instance completed.
  // Possible errors: DeadlineExceeded (lists who did not arrive; a late arrival gets the same
  // error), FailedPrecondition (participants disagree on `ranks`, or this member already
  // waits there), InvalidArgument (timeout <= 0, rank out of range, caller not a participant,
  // bad name).
  virtual absl::Status Barrier(const std::string& name, absl::Duration timeout,
                               std::vector<uint32_t> ranks = {}) = 0;

  // The MindSpore root-info hand-off (NCCL unique id, HCCL root info): writes `bytes` under
  // MindSpore's key "<role>_group_info_<group>" (role "worker" or "server": RootInfoKey()).
  // Only the group's rank 0 may publish; for the world group (hccl_world_group,
  // nccl_world_group, mccl_world_group) that is rank 0 of this member's role, checked here.
  // For other groups the caller is trusted to be the group's rank 0.
  // Possible errors: FailedPrecondition (world group and this member is not rank 0),
  // InvalidArgument (empty group name), ResourceExhausted (a KV limit).
  virtual absl::Status PublishRootInfo(const std::string& group, absl::string_view bytes) = 0;

  // Waits for the root info of `group` (see PublishRootInfo) up to `timeout`; the one-argument
  // form uses this process's MS_TOPO_TIMEOUT (the job's topology timeout).
  // Possible errors: DeadlineExceeded (never published: the message names the key, the root
  // rank, and for the world group its node, host and state as the daemon reports them),
  // InvalidArgument (empty group name, negative timeout).
  virtual absl::StatusOr<std::string> FetchRootInfo(const std::string& group,
                                                    absl::Duration timeout) = 0;
  absl::StatusOr<std::string> FetchRootInfo(const std::string& group) {
    return FetchRootInfo(group, options().topo_timeout);
  }

  // The options in effect (node_id and host_name filled in).
  virtual const ClientOptions& options() const = 0;
  // The scheduler address this client dials first ("HOST:PORT").
  virtual const std::string& target() const = 0;
  // Every address of an MS_SCHED_HOST list, in the order they are tried.
  virtual const std::vector<std::string>& targets() const = 0;
};

}  // namespace ms_rendezvous

#endif  // MS_RENDEZVOUS_CLIENT_H_
