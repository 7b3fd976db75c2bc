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
//   created --Join()--> joined (heartbeat thread running) --Leave()/~Client--> left
//      ^                                                                        |
//      +------------------------- Join() again (new incarnation) ---------------+
//
// Join is ONE round trip: the daemon holds the call open until every expected member joined.
// While the daemon is not reachable yet (UNAVAILABLE), or is draining (UNAVAILABLE "shutting
// down", or CANCELLED that this client did not cause), Join retries with jittered exponential
// backoff (50 ms doubling to 2 s, +-50%), bounded by the topology timeout, so a job whose
// scheduler starts last - or 10,000 members restarting at once - does not storm the daemon.
// Keepalive pings (every 30 s, 10 s timeout) notice a dead daemon during the long wait.
#ifndef MS_RENDEZVOUS_CLIENT_H_
#define MS_RENDEZVOUS_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ms_rendezvous/options.h"

namespace ms_rendezvous {

enum class JobState { kUnknown, kForming, kComplete, kFinished, kFailed };
enum class MemberState { kUnknown, kWaiting, kActive, kLeft, kFailed };
enum class JobEventType {
  kUnknown,
  kSnapshot,         // first event of every watch: the job as it is now
  kMemberJoined,     // a member registered
  kMemberWithdrawn,  // a waiting member gave up before the job completed
  kMemberLeft,       // a member left after completion
  kJobComplete,      // every expected member joined; ranks assigned
  kJobFinished,      // every member left
  kJobFailed,        // the job failed (JobEvent::message says why)
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
  MemberState state = MemberState::kUnknown;
  double last_heartbeat_age_s = 0;
  uint64_t incarnation = 0;
};

struct JobEvent {
  uint64_t seq = 0;
  JobEventType type = JobEventType::kUnknown;
  JobState job_state = JobState::kUnknown;  // the job after the event
  uint64_t generation = 0;
  std::optional<MemberInfo> member;  // the member concerned, when any
  std::string message;               // human-readable detail
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

  // Stops heartbeats and, when joined and not left, leaves the job (best effort, short
  // deadline) so that a job whose members all exit normally finishes. Must not run while
  // another thread is inside Join(). JobWatch objects may outlive the Client.
  virtual ~Client() = default;

  // Registers this process and blocks until every expected member of the job joined, then starts
  // the heartbeat thread (unless disabled). Must not run concurrently with itself.
  // Possible errors (code and message as the daemon sent them unless noted):
  //   FailedPrecondition  role is MS_SCHED (schedulers serve, see RunScheduler), already joined,
  //                       or MS_WORKER_NUM/MS_SERVER_NUM disagree with the job (both named)
  //   InvalidArgument     malformed member spec, numeric MS_NODE_ID out of range
  //   AlreadyExists       this node id is already registered in the job
  //   ResourceExhausted   the job already has every member it expects
  //   DeadlineExceeded    MS_TOPO_TIMEOUT expired; the message lists who is missing
  //   Unavailable         the daemon stayed unreachable for the whole topology timeout (the
  //                       message names the address), or it shut down while we waited
  virtual absl::StatusOr<Topology> Join() = 0;

  // The whole member table of the job, fetched on demand, page by page.
  // Possible errors: NotFound (job unknown), Unavailable.
  virtual absl::StatusOr<std::vector<MemberInfo>> Members() = 0;

  // Subscribes to the job's events. Blocks until the first event (a snapshot) arrived, so an
  // unknown job fails here with NotFound. `on_event` runs on a thread owned by the watch, one
  // event at a time in order, starting with the snapshot.
  virtual absl::StatusOr<std::unique_ptr<JobWatch>> Watch(
      std::function<void(const JobEvent&)> on_event) = 0;

  // Stops heartbeats and finalizes this member (the job is FINISHED once everybody left).
  // Idempotent. FailedPrecondition when never joined; otherwise the daemon's status.
  virtual absl::Status Leave() = 0;

  // OK while the session is healthy. Aborted once a heartbeat learned that the job failed or
  // that the daemon no longer knows this incarnation (re-join); heartbeats stop then.
  virtual absl::Status SessionStatus() = 0;

  // The options in effect (node_id and host_name filled in).
  virtual const ClientOptions& options() const = 0;
  // The scheduler address this client dials ("HOST:PORT").
  virtual const std::string& target() const = 0;
};

}  // namespace ms_rendezvous

#endif  // MS_RENDEZVOUS_CLIENT_H_
