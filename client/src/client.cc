#include "ms_rendezvous/client.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"

namespace ms_rendezvous {
namespace {

namespace pb = ::ms::rendezvous::v1;
using Steady = std::chrono::steady_clock;

// The daemon answers a Join that outlives the topology timeout itself (with the list of missing
// members); our own RPC deadline comes this much later so that answer always wins.
constexpr absl::Duration kJoinDeadlineMargin = absl::Seconds(10);
// Join retry while the daemon is unreachable.
constexpr absl::Duration kBackoffInitial = absl::Milliseconds(50);
constexpr absl::Duration kBackoffMax = absl::Seconds(2);
// How often the "still unreachable" line is repeated in the log.
constexpr absl::Duration kUnreachableLogEvery = absl::Seconds(30);
constexpr absl::Duration kUnaryDeadline = absl::Seconds(30);
constexpr absl::Duration kLeaveDeadline = absl::Seconds(5);
constexpr int kLeaveAttempts = 3;
constexpr uint32_t kMembersPageSize = 1000;
// Channel keepalive (see Client::Create): must stay >= the daemon's minimum ping interval (5 s).
constexpr absl::Duration kKeepaliveTime = absl::Seconds(30);
constexpr absl::Duration kKeepaliveTimeout = absl::Seconds(10);

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             absl::ToChronoNanoseconds(d));
}

absl::Duration Since(Steady::time_point t) { return absl::FromChrono(Steady::now() - t); }

// Whether a failed call may be repeated: the daemon is unreachable or stopping, and the failure
// was not caused by this process.
//   UNAVAILABLE: no connection, connection lost (a keepalive timeout included), or the daemon
//     said it is shutting down.
//   CANCELLED: only when this process did not cause it. Join and Leave contexts are never
//     cancelled here (`cancelled_here` stays false for them), and our own deadline ends a call
//     with DEADLINE_EXCEEDED, so a CANCELLED that arrives before the deadline comes from the
//     other side: a draining daemon cancels the calls that reach it after its shutdown began
//     (the parked Join gets UNAVAILABLE "shutting down", its retry then CANCELLED). Giving up
//     there would fail the whole job over a daemon restart.
bool IsRetryable(const grpc::Status& st, bool cancelled_here, bool deadline_reached) {
  switch (st.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return true;
    case grpc::StatusCode::CANCELLED:
      return !cancelled_here && !deadline_reached;
    default:
      return false;
  }
}

// "CANCELLED: message" (the code matters: the message alone may be empty or just the code).
std::string GrpcStatusText(const grpc::Status& st) {
  absl::Status s = FromGrpc(st);
  return std::string(absl::StatusCodeToString(s.code())) +
         (st.error_message().empty() ? "" : absl::StrCat(": ", st.error_message()));
}

std::string TimeoutText(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return "forever";
  return absl::FormatDuration(d);
}

// Jittered exponential backoff: initial, doubling up to max, each wait scaled by a uniform
// factor in [0.5, 1.5) so that members retrying together spread out.
class Backoff {
 public:
  absl::Duration Next() {
    absl::Duration base = next_;
    next_ = std::min(next_ * 2, kBackoffMax);
    return base * absl::Uniform(gen_, 0.5, 1.5);
  }

 private:
  absl::BitGen gen_;
  absl::Duration next_ = kBackoffInitial;
};

pb::Role ToProto(Role role) { return role == Role::kPServer ? pb::ROLE_PSERVER : pb::ROLE_WORKER; }

Role FromProto(pb::Role role, Role fallback) {
  switch (role) {
    case pb::ROLE_WORKER:
      return Role::kWorker;
    case pb::ROLE_PSERVER:
      return Role::kPServer;
    default:
      return fallback;
  }
}

JobState FromProto(pb::JobState state) {
  switch (state) {
    case pb::JOB_STATE_FORMING:
      return JobState::kForming;
    case pb::JOB_STATE_COMPLETE:
      return JobState::kComplete;
    case pb::JOB_STATE_FINISHED:
      return JobState::kFinished;
    case pb::JOB_STATE_FAILED:
      return JobState::kFailed;
    default:
      return JobState::kUnknown;
  }
}

MemberState FromProto(pb::MemberState state) {
  switch (state) {
    case pb::MEMBER_STATE_WAITING:
      return MemberState::kWaiting;
    case pb::MEMBER_STATE_ACTIVE:
      return MemberState::kActive;
    case pb::MEMBER_STATE_LEFT:
      return MemberState::kLeft;
    case pb::MEMBER_STATE_FAILED:
      return MemberState::kFailed;
    default:
      return MemberState::kUnknown;
  }
}

JobEventType FromProto(pb::JobEventType type) {
  switch (type) {
    case pb::JOB_EVENT_SNAPSHOT:
      return JobEventType::kSnapshot;
    case pb::JOB_EVENT_MEMBER_JOINED:
      return JobEventType::kMemberJoined;
    case pb::JOB_EVENT_MEMBER_WITHDRAWN:
      return JobEventType::kMemberWithdrawn;
    case pb::JOB_EVENT_MEMBER_LEFT:
      return JobEventType::kMemberLeft;
    case pb::JOB_EVENT_JOB_COMPLETE:
      return JobEventType::kJobComplete;
    case pb::JOB_EVENT_JOB_FINISHED:
      return JobEventType::kJobFinished;
    case pb::JOB_EVENT_JOB_FAILED:
      return JobEventType::kJobFailed;
    default:
      return JobEventType::kUnknown;
  }
}

Topology FromProto(const pb::Topology& t, const ClientOptions& o) {
  Topology out;
  out.job_id = t.job_id().empty() ? o.job_id : t.job_id();
  out.role = FromProto(t.role(), o.role);
  out.node_id = t.node_id().empty() ? o.node_id : t.node_id();
  out.rank = t.rank();
  out.world_size = t.world_size();
  out.local_rank = t.local_rank();
  out.local_world_size = t.local_world_size();
  out.node_rank = t.node_rank();
  out.num_nodes = t.num_nodes();
  out.host = t.host();
  out.generation = t.generation();
  out.incarnation = t.incarnation();
  out.worker_num = t.worker_num();
  out.server_num = t.server_num();
  return out;
}

MemberInfo FromProto(const pb::MemberInfo& m) {
  MemberInfo out;
  out.node_id = m.node_id();
  out.role = FromProto(m.role(), Role::kWorker);
  if (m.has_rank()) out.rank = m.rank();
  out.local_rank = m.local_rank();
  out.node_rank = m.node_rank();
  out.host = m.host();
  out.host_name = m.host_name();
  out.device_id = m.device_id();
  out.state = FromProto(m.state());
  out.last_heartbeat_age_s = m.last_heartbeat_age_s();
  out.incarnation = m.incarnation();
  return out;
}

JobEvent FromProto(const pb::JobEvent& e) {
  JobEvent out;
  out.seq = e.seq();
  out.type = FromProto(e.type());
  out.job_state = FromProto(e.job().state());
  out.generation = e.job().generation();
  if (e.has_member()) out.member = FromProto(e.member());
  out.message = e.message();
  return out;
}

// One WatchJob stream read on its own thread. Holds its own stub on the shared channel, so it
// does not depend on the Client's lifetime.
class JobWatchImpl final : public JobWatch {
 public:
  JobWatchImpl(std::shared_ptr<grpc::Channel> channel, std::string job_id,
               std::function<void(const JobEvent&)> on_event)
      : stub_(pb::RendezvousAdmin::NewStub(channel)),
        job_id_(std::move(job_id)),
        on_event_(std::move(on_event)) {}

  ~JobWatchImpl() override { Stop().IgnoreError(); }

  // Starts the reader thread and waits for the snapshot (or the end of the stream).
  absl::Status Start() {
    thread_ = std::thread([this] { Run(); });
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](JobWatchImpl* w)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return w->started_ || w->done_; },
        this));
    if (started_) return absl::OkStatus();
    return end_status_;
  }

  absl::Status Stop() override {
    absl::MutexLock stop_lock(&stop_mu_);
    {
      absl::MutexLock l(&mu_);
      if (!done_) stopped_here_ = true;
    }
    ctx_.TryCancel();
    if (thread_.joinable()) thread_.join();
    absl::MutexLock l(&mu_);
    return stopped_here_ ? absl::OkStatus() : end_status_;
  }

  bool Done() override {
    absl::MutexLock l(&mu_);
    return done_;
  }

 private:
  void Run() {
    pb::WatchJobRequest request;
    request.set_job_id(job_id_);
    std::unique_ptr<grpc::ClientReader<pb::JobEvent>> reader = stub_->WatchJob(&ctx_, request);
    pb::JobEvent event;
    while (reader->Read(&event)) {
      {
        absl::MutexLock l(&mu_);
        started_ = true;
      }
      if (on_event_) on_event_(FromProto(event));
    }
    absl::Status status = FromGrpc(reader->Finish());
    absl::MutexLock l(&mu_);
    done_ = true;
    end_status_ = status;
  }

  std::unique_ptr<pb::RendezvousAdmin::Stub> stub_;
  const std::string job_id_;
  const std::function<void(const JobEvent&)> on_event_;
  grpc::ClientContext ctx_;  // TryCancel is thread-safe
  absl::Mutex stop_mu_;      // serializes Stop() (thread_ join)
  std::thread thread_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_here_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);
};

class ClientImpl final : public Client {
 public:
  ClientImpl(ClientOptions options, std::string target, std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)),
        target_(std::move(target)),
        channel_(std::move(channel)),
        rendezvous_(pb::Rendezvous::NewStub(channel_)),
        admin_(pb::RendezvousAdmin::NewStub(channel_)) {}

  ~ClientImpl() override {
    bool joined;
    {
      absl::MutexLock l(&mu_);
      joined = topology_.has_value();
    }
    if (joined) {
      absl::Status s = LeaveImpl(absl::Seconds(2), 1);
      if (!s.ok()) LOG(WARNING) << "ms_rendezvous: leaving job " << options_.job_id << ": " << s;
    }
    absl::MutexLock lifecycle(&lifecycle_mu_);
    StopHeartbeats();
  }

  absl::StatusOr<Topology> Join() override;
  absl::StatusOr<std::vector<MemberInfo>> Members() override;
  absl::StatusOr<std::unique_ptr<JobWatch>> Watch(
      std::function<void(const JobEvent&)> on_event) override;
  absl::Status Leave() override { return LeaveImpl(kLeaveDeadline, kLeaveAttempts); }

  absl::Status SessionStatus() override {
    absl::MutexLock l(&mu_);
    return session_status_;
  }

  const ClientOptions& options() const override { return options_; }
  const std::string& target() const override { return target_; }

 private:
  // Join RPC with the retry policy; returns the raw topology or the final error.
  absl::StatusOr<pb::Topology> JoinWithRetry();
  absl::Status LeaveImpl(absl::Duration deadline, int attempts);
  void HeartbeatLoop(pb::MemberRef ref);
  // Signals the heartbeat thread and waits for it.
  void StopHeartbeats() ABSL_EXCLUSIVE_LOCKS_REQUIRED(lifecycle_mu_);

  const ClientOptions options_;
  const std::string target_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<pb::Rendezvous::Stub> rendezvous_;
  const std::unique_ptr<pb::RendezvousAdmin::Stub> admin_;

  // Serializes session transitions (end of Join, Leave, destruction); never held during the
  // long Join RPC. Order: lifecycle_mu_ -> mu_.
  absl::Mutex lifecycle_mu_;
  std::thread heartbeat_thread_ ABSL_GUARDED_BY(lifecycle_mu_);
  bool left_ ABSL_GUARDED_BY(lifecycle_mu_) = false;

  absl::Mutex mu_;
  std::optional<Topology> topology_ ABSL_GUARDED_BY(mu_);  // set while joined
  bool joining_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_heartbeats_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status session_status_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<pb::Topology> ClientImpl::JoinWithRetry() {
  pb::JoinRequest request;
  pb::MemberSpec* spec = request.mutable_member();
  spec->set_job_id(options_.job_id);
  spec->set_role(ToProto(options_.role));
  spec->set_node_id(options_.node_id);
  spec->set_host(options_.worker_ip);
  spec->set_host_name(options_.host_name);
  spec->set_device_id(options_.device_id);
  spec->set_worker_num(options_.worker_num);
  spec->set_server_num(options_.server_num);
  const bool forever = options_.topo_timeout == absl::InfiniteDuration();
  spec->set_topo_timeout_ms(forever ? -1 : absl::ToInt64Milliseconds(options_.topo_timeout));

  LOG(INFO) << "ms_rendezvous: joining job " << options_.job_id << " as " << RoleName(options_.role)
            << " node " << options_.node_id << " via " << target_
            << " (MS_WORKER_NUM=" << options_.worker_num << " MS_SERVER_NUM=" << options_.server_num
            << " topology timeout " << TimeoutText(options_.topo_timeout) << ", heartbeat "
            << (options_.heartbeat_enabled
                    ? absl::StrCat(absl::FormatDuration(options_.heartbeat_interval_lower), "..",
                                   absl::FormatDuration(options_.heartbeat_interval_upper))
                    : std::string("disabled"))
            << ")";
  const Steady::time_point start = Steady::now();
  const absl::Duration rpc_budget = options_.topo_timeout + kJoinDeadlineMargin;
  Backoff backoff;
  int attempts = 0;
  absl::Duration next_log = absl::ZeroDuration();
  for (;;) {
    ++attempts;
    grpc::ClientContext ctx;
    if (!forever) ctx.set_deadline(DeadlineAfter(rpc_budget - Since(start)));
    pb::JoinResponse response;
    grpc::Status st = rendezvous_->Join(&ctx, request, &response);
    if (st.ok()) {
      if (attempts > 1) {
        LOG(INFO) << "ms_rendezvous: reached scheduler " << target_ << " after " << attempts
                  << " attempts";
      }
      return std::move(*response.mutable_topology());
    }
    const absl::Duration elapsed = Since(start);
    if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && !forever &&
        elapsed >= rpc_budget - kJoinDeadlineMargin / 2) {
      // Our own deadline, not the daemon's answer: the job uses a longer timeout than ours.
      return absl::DeadlineExceededError(absl::StrCat(
          "job ", options_.job_id, ": no topology from scheduler ", target_, " within ",
          TimeoutText(options_.topo_timeout), " (MS_TOPO_TIMEOUT) + ",
          absl::FormatDuration(kJoinDeadlineMargin),
          " margin; the job's timeout was set by its first member and is longer than this "
          "process's: use the same MS_TOPO_TIMEOUT in every process"));
    }
    const bool deadline_reached = !forever && elapsed >= rpc_budget;
    if (!IsRetryable(st, /*cancelled_here=*/false, deadline_reached)) return FromGrpc(st);

    // Not up yet, restarting or draining: retry within the topology timeout.
    if (!forever && elapsed >= options_.topo_timeout) {
      return absl::UnavailableError(absl::StrCat(
          "scheduler ", target_, " unreachable for ", TimeoutText(options_.topo_timeout),
          " (MS_TOPO_TIMEOUT), ", attempts, " attempts; last error: ", GrpcStatusText(st),
          "; check MS_SCHED_HOST/MS_SCHED_PORT and that the scheduler or ms-rendezvousd runs"));
    }
    if (elapsed >= next_log) {
      LOG(INFO) << "ms_rendezvous: scheduler " << target_ << " not reachable yet ("
                << GrpcStatusText(st) << "); retrying with backoff for up to "
                << TimeoutText(options_.topo_timeout);
      next_log = elapsed + kUnreachableLogEvery;
    }
    absl::Duration wait = backoff.Next();
    if (!forever) wait = std::min(wait, options_.topo_timeout - elapsed);
    if (channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY) {
      // Connected, so the daemon itself refused (draining): back off in full.
      absl::SleepFor(wait);
    } else {
      // Not connected: gRPC reconnects on its own backoff (same scale, see Create); retry as
      // soon as the channel is up instead of sleeping past the moment the scheduler started.
      channel_->WaitForConnected(DeadlineAfter(wait));
    }
  }
}

absl::StatusOr<Topology> ClientImpl::Join() {
  {
    absl::MutexLock l(&mu_);
    if (options_.role == Role::kScheduler) {
      return absl::FailedPreconditionError(
          "MS_ROLE=MS_SCHED does not join a job: the scheduler serves it (RunScheduler, or "
          "ms-rendezvous-probe with MS_ROLE=MS_SCHED)");
    }
    if (topology_.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("already joined job ", options_.job_id, " as ", RoleName(options_.role),
                       " rank ", topology_->rank, "; Leave() before joining again"));
    }
    if (joining_) return absl::FailedPreconditionError("Join() is already running");
    joining_ = true;
  }
  absl::StatusOr<pb::Topology> joined = JoinWithRetry();

  absl::MutexLock lifecycle(&lifecycle_mu_);
  // A heartbeat thread of an earlier session has returned by now (Leave joined it, or it
  // ended itself); join it before the member is reused.
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  absl::MutexLock l(&mu_);
  joining_ = false;
  if (!joined.ok()) return joined.status();
  Topology topology = FromProto(*joined, options_);
  topology_ = topology;
  left_ = false;
  session_status_ = absl::OkStatus();
  if (options_.heartbeat_enabled) {
    stop_heartbeats_ = false;
    pb::MemberRef ref;
    ref.set_job_id(topology.job_id);
    ref.set_role(ToProto(topology.role));
    ref.set_node_id(topology.node_id);
    ref.set_incarnation(topology.incarnation);
    heartbeat_thread_ = std::thread([this, ref] { HeartbeatLoop(ref); });
  }
  return topology;
}

void ClientImpl::HeartbeatLoop(pb::MemberRef ref) {
  absl::BitGen gen;
  const double lo = absl::ToDoubleSeconds(options_.heartbeat_interval_lower);
  const double hi = absl::ToDoubleSeconds(options_.heartbeat_interval_upper);
  // A beat that takes longer than a few periods is lost anyway; the next one follows.
  const absl::Duration rpc_deadline =
      std::clamp(options_.heartbeat_interval_upper * 4, absl::Seconds(1), absl::Seconds(10));
  pb::HeartbeatRequest request;
  *request.mutable_member() = ref;
  int consecutive_failures = 0;
  for (;;) {
    // +-10% around a fixed interval so that members started together do not beat in lockstep.
    const double period = lo < hi ? absl::Uniform(gen, lo, hi) : lo * absl::Uniform(gen, 0.9, 1.1);
    {
      absl::MutexLock l(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_heartbeats_), absl::Seconds(period))) return;
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineAfter(rpc_deadline));
    pb::HeartbeatResponse response;
    grpc::Status st = rendezvous_->Heartbeat(&ctx, request, &response);

    absl::MutexLock l(&mu_);
    if (st.ok()) {
      consecutive_failures = 0;
      if (response.job_state() == pb::JOB_STATE_FAILED) {
        session_status_ = absl::AbortedError(
            absl::StrCat("job ", ref.job_id(), " failed (reported by the scheduler ", target_,
                         "); see `ms-rendezvousctl job ", ref.job_id(), "` for the reason"));
        LOG(WARNING) << "ms_rendezvous: " << session_status_;
        return;
      }
      session_status_ = absl::OkStatus();
      continue;
    }
    if (st.error_code() == grpc::StatusCode::ABORTED ||
        st.error_code() == grpc::StatusCode::NOT_FOUND) {
      // The daemon no longer knows this registration: beating on is pointless, re-join.
      session_status_ = absl::AbortedError(absl::StrCat("heartbeat rejected by ", target_, ": ",
                                                        st.error_message(), " (re-join the job)"));
      LOG(WARNING) << "ms_rendezvous: " << session_status_;
      return;
    }
    // Transient (daemon restarting, network blip): keep beating, log the first of a streak.
    if (consecutive_failures++ == 0) {
      LOG(WARNING) << "ms_rendezvous: heartbeat to " << target_ << " failed: " << st.error_message()
                   << "; retrying";
    }
  }
}

void ClientImpl::StopHeartbeats() {
  {
    absl::MutexLock l(&mu_);
    stop_heartbeats_ = true;
  }
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

absl::Status ClientImpl::LeaveImpl(absl::Duration deadline, int attempts) {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  std::optional<Topology> topology;
  {
    absl::MutexLock l(&mu_);
    topology = topology_;
  }
  if (!topology.has_value()) {
    if (left_) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("Leave() of job ", options_.job_id, " before a successful Join()"));
  }
  StopHeartbeats();

  pb::LeaveRequest request;
  pb::MemberRef* ref = request.mutable_member();
  ref->set_job_id(topology->job_id);
  ref->set_role(ToProto(topology->role));
  ref->set_node_id(topology->node_id);
  ref->set_incarnation(topology->incarnation);
  Backoff backoff;
  grpc::Status st;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineAfter(deadline));
    pb::LeaveResponse response;
    const Steady::time_point sent = Steady::now();
    st = rendezvous_->Leave(&ctx, request, &response);
    if (!IsRetryable(st, /*cancelled_here=*/false, Since(sent) >= deadline)) break;
    if (attempt < attempts) absl::SleepFor(backoff.Next());
  }
  // The session is over whatever the daemon said: a failed Leave cannot be retried usefully
  // after the heartbeats stopped, and the caller learns the status.
  {
    absl::MutexLock l(&mu_);
    topology_.reset();
  }
  left_ = true;
  return FromGrpc(st);
}

absl::StatusOr<std::vector<MemberInfo>> ClientImpl::Members() {
  std::vector<MemberInfo> members;
  pb::ListMembersRequest request;
  request.set_job_id(options_.job_id);
  request.set_page_size(kMembersPageSize);
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineAfter(kUnaryDeadline));
    pb::ListMembersResponse response;
    grpc::Status st = admin_->ListMembers(&ctx, request, &response);
    if (!st.ok()) return FromGrpc(st);
    if (members.empty()) members.reserve(response.total());
    for (const pb::MemberInfo& m : response.members()) members.push_back(FromProto(m));
    if (response.next_page_token().empty() || response.members().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  return members;
}

absl::StatusOr<std::unique_ptr<JobWatch>> ClientImpl::Watch(
    std::function<void(const JobEvent&)> on_event) {
  auto watch = std::make_unique<JobWatchImpl>(channel_, options_.job_id, std::move(on_event));
  if (absl::Status s = watch->Start(); !s.ok()) return s;
  return std::unique_ptr<JobWatch>(std::move(watch));
}

std::string LocalHostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

}  // namespace

absl::string_view JobStateName(JobState state) {
  switch (state) {
    case JobState::kForming:
      return "forming";
    case JobState::kComplete:
      return "complete";
    case JobState::kFinished:
      return "finished";
    case JobState::kFailed:
      return "failed";
    case JobState::kUnknown:
      break;
  }
  return "unknown";
}

absl::string_view MemberStateName(MemberState state) {
  switch (state) {
    case MemberState::kWaiting:
      return "waiting";
    case MemberState::kActive:
      return "active";
    case MemberState::kLeft:
      return "left";
    case MemberState::kFailed:
      return "failed";
    case MemberState::kUnknown:
      break;
  }
  return "unknown";
}

absl::string_view JobEventTypeName(JobEventType type) {
  switch (type) {
    case JobEventType::kSnapshot:
      return "snapshot";
    case JobEventType::kMemberJoined:
      return "member_joined";
    case JobEventType::kMemberWithdrawn:
      return "member_withdrawn";
    case JobEventType::kMemberLeft:
      return "member_left";
    case JobEventType::kJobComplete:
      return "job_complete";
    case JobEventType::kJobFinished:
      return "job_finished";
    case JobEventType::kJobFailed:
      return "job_failed";
    case JobEventType::kUnknown:
      break;
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (absl::Status s = ValidateClientOptions(options); !s.ok()) return s;
  if (options.node_id.empty()) options.node_id = GenerateNodeId();
  if (options.host_name.empty()) options.host_name = LocalHostName();
  std::string target = SchedulerTarget(options);

  grpc::ChannelArguments args;
  // gRPC reconnects on its own schedule underneath our Join retry loop; keep it on the same
  // short scale, or a scheduler that starts a few seconds late would be reached only after
  // gRPC's default backoff (up to 120 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(kBackoffInitial)));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(kBackoffInitial)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(kBackoffMax)));
  // Keepalive. A Join is parked on the daemon for up to MS_TOPO_TIMEOUT (default 30 min) with
  // no bytes flowing. If the scheduler's host dies or the network drops packets silently (no
  // RST/FIN), TCP alone would not notice for a very long time and this process would wait out
  // its whole timeout on a dead connection. Pings every 30 s with a 10 s ack timeout close such
  // a connection within ~40 s; the parked call then fails with UNAVAILABLE and JoinWithRetry
  // re-joins (on a restarted daemon, or on this one once the network is back).
  // The daemon enforces a matching policy (server/server.cc): it permits pings without calls,
  // at most one per 5 s, so 30 s never earns a GOAWAY "too_many_pings".
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(absl::ToInt64Milliseconds(kKeepaliveTime)));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(absl::ToInt64Milliseconds(kKeepaliveTimeout)));
  // Also between calls (idle client with heartbeats disabled, or between Join retries).
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // gRPC stops pinging after 2 pings that carried no data (default), which is exactly the
  // parked-Join case: without this the keepalive would go quiet after about a minute.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  return std::unique_ptr<Client>(
      new ClientImpl(std::move(options), std::move(target), std::move(channel)));
}

absl::StatusOr<std::unique_ptr<Client>> Client::FromEnv() {
  absl::StatusOr<ClientOptions> options = ClientOptionsFromEnv();
  if (!options.ok()) return options.status();
  return Create(*std::move(options));
}

}  // namespace ms_rendezvous
