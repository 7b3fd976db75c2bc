// N members of one job, each with its own Session stream (what the client library does): join,
// hold the stream, and whatever a scenario does next (kill one, resume after a daemon restart,
// leave). Callback API throughout: no thread per member.
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_SESSION_GROUP_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_SESSION_GROUP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tools/bench/bench_util.h"

namespace ms_rendezvous::bench {

struct GroupSpec {
  std::string job_id;
  uint32_t members = 0;
  double topo_timeout_s = 60;
  double node_timeout_s = 300;  // the bench does not heartbeat: keep members alive meanwhile
  bool named_nodes = false;
  bool recovery = false;
  // Member i of this group is node MemberNodeId(named_nodes, first_node + i) of a job of `world`
  // workers (0: `members`): several groups (processes) can share one job.
  uint32_t first_node = 0;
  uint32_t world = 0;
};

std::string MemberNodeId(bool named_nodes, uint32_t i);

// What happened to one member. Written by its stream's callbacks (one at a time), read by the
// main thread after a Countdown said so.
struct MemberState {
  v1::Topology joined;      // the topology of the join (compared with the resumed one)
  int64_t start_ns = 0;     // join (or the current resume attempt) sent
  int64_t topology_ns = 0;  // topology received (0: not yet)
  v1::Topology topology;    // the last one received
  int64_t done_ns = 0;      // stream ended (0: still open)
  grpc::Status status;      // how it ended
  int64_t failed_ns = 0;    // first JOB_FAILED (or MEMBER_DEAD) event
  std::vector<std::string> dead_node_ids;  // named by that event
  uint32_t events = 0;
  uint32_t attempts = 0;  // streams opened (resume retries included)
};

class SessionGroup {
 public:
  // `stubs`: member i uses stubs[i % size].
  SessionGroup(std::vector<v1::Rendezvous::Stub*> stubs, GroupSpec spec);
  // The channels behind `stubs` (same order; they must outlive the group). With them a resume
  // waiting out its backoff starts as soon as its channel is READY, as the client library's does;
  // without them it waits out the backoff in full.
  void SetChannels(std::vector<grpc::Channel*> channels) { channels_ = std::move(channels); }
  ~SessionGroup();  // cancels open streams and waits for them

  const GroupSpec& spec() const { return spec_; }
  // Node id of member i (see GroupSpec::first_node).
  std::string NodeId(uint32_t i) const;
  MemberState& member(uint32_t i) { return members_[i]; }

  // Every member sends join at once; returns when each got its topology or its stream ended.
  // `before` runs right before the first join is sent. `joined`, if set, runs on gRPC's thread as
  // each member receives its topology (after member(i) holds it); it must not block.
  void JoinAll(const std::function<void()>& before = {},
               std::function<void(uint32_t)> joined = {});

  // Breaks member i's stream (RST_STREAM, as when its process is killed).
  void Kill(uint32_t i);

  // Waits until every member but `except` (-1: none) ended its stream, at most `timeout`.
  // Returns false on timeout.
  bool WaitEnded(int64_t except, absl::Duration timeout);

  // After a daemon restart: every member whose stream ended resumes (new stream, resume with
  // its member ref and generation), retrying UNAVAILABLE with jittered backoff until `deadline_ns`.
  // Each attempt, the first included, follows a backoff wait that ends early once the member's
  // channel is READY (see RetryScheduler), as in the client library.
  // Returns when each resumed (topology again) or gave up.
  void ResumeAll(int64_t deadline_ns);

  // Every member holding a live stream leaves; returns failures ("CODE: message" of the first).
  uint64_t LeaveAll(std::string* first_error);

  // One heartbeat on member i's current stream (after its join). Returns the writes that were
  // already queued on that stream (0: its writer was idle), or -1 when it holds no open stream.
  int64_t Heartbeat(uint32_t i);
  // Heartbeats written to the transport so far (by every member).
  uint64_t heartbeats_written() const { return heartbeats_written_.load(); }
  // Resume attempts started early because the member's channel became READY.
  uint64_t retries_woken_by_ready() const { return retry_->woken_by_ready(); }

 private:
  enum class Phase { kJoin, kHold, kResume, kLeave };
  void StartStream(uint32_t i, v1::SessionRequest first, bool wait_for_ready);
  void OnTopology(SessionStream* s, const v1::Topology& t);
  void OnEvent(SessionStream* s, const v1::JobEvent& e);
  void OnDone(SessionStream* s, const grpc::Status& status);
  void TryResume(uint32_t i);
  // Member i's next resume attempt after `backoff` or once its channel is READY.
  void ScheduleResume(uint32_t i, absl::Duration backoff);

  const std::vector<v1::Rendezvous::Stub*> stubs_;
  std::vector<grpc::Channel*> channels_;
  const GroupSpec spec_;
  SessionStream::Callbacks callbacks_;
  std::unique_ptr<MemberState[]> members_;
  // Every stream ever opened, per member (the current one is back()); freed at destruction.
  std::vector<std::vector<std::unique_ptr<SessionStream>>> streams_;
  std::unique_ptr<std::atomic<bool>[]> open_;
  std::unique_ptr<std::atomic<bool>[]> resume_started_;
  std::unique_ptr<std::atomic<bool>[]> leaving_;
  std::atomic<int64_t> open_count_{0};
  std::atomic<uint64_t> heartbeats_written_{0};
  std::atomic<bool> closing_{false};
  std::atomic<Phase> phase_{Phase::kJoin};
  std::atomic<int64_t> resume_deadline_ns_{0};
  std::unique_ptr<Countdown> pending_;  // of the current phase
  std::function<void(uint32_t)> on_joined_;  // of JoinAll
  std::unique_ptr<RetryScheduler> retry_;
  std::mutex streams_mu_;
};

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_SESSION_GROUP_H_
