#include "ms_rendezvous/client.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/src/channel_credentials.h"
#include "glog/logging.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"

namespace ms_rendezvous {
namespace {

// The job token (MS_JOB_TOKEN) travels as metadata on every call of this member, so a daemon
// that protects its status API (--status-requires-token) also answers the job's own members.
void AddJobToken(grpc::ClientContext* ctx, const std::string& job_token) {
  if (!job_token.empty()) ctx->AddMetadata("x-ms-job-token", job_token);
}

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
constexpr uint32_t kMembersPageSize = 1000;
// KV calls: the RPC deadline of a blocking call is its timeout plus this margin, so that the
// daemon's own answer (DeadlineExceeded naming what is missing) always wins.
constexpr absl::Duration kKvDeadlineMargin = absl::Seconds(5);
constexpr uint32_t kKvListPageSize = 1000;
// Barrier(InfiniteDuration): the daemon needs a positive timeout.
constexpr absl::Duration kBarrierForever = absl::Hours(24 * 365);
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
    case pb::JOB_STATE_DEGRADED:
      return JobState::kDegraded;
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
    case pb::MEMBER_STATE_SUSPECT:
      return MemberState::kSuspect;
    case pb::MEMBER_STATE_DEAD:
      return MemberState::kDead;
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
    case pb::JOB_EVENT_MEMBER_SUSPECT:
      return JobEventType::kMemberSuspect;
    case pb::JOB_EVENT_MEMBER_RESUMED:
      return JobEventType::kMemberResumed;
    case pb::JOB_EVENT_MEMBER_DEAD:
      return JobEventType::kMemberDead;
    case pb::JOB_EVENT_MEMBER_RECOVERED:
      return JobEventType::kMemberRecovered;
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
  out.device_ip = m.device_ip();
  out.state = FromProto(m.state());
  out.last_heartbeat_age_s = m.last_heartbeat_age_s();
  out.incarnation = m.incarnation();
  return out;
}

DeadMember FromProto(const pb::DeadMember& d) {
  DeadMember out;
  out.role = FromProto(d.role(), Role::kWorker);
  if (d.has_rank()) out.rank = d.rank();
  out.node_id = d.node_id();
  out.host = d.host();
  out.last_seen_s_ago = d.last_seen_s_ago();
  out.reason = d.reason();
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
  for (const pb::DeadMember& d : e.dead()) out.dead.push_back(FromProto(d));
  return out;
}

// One WatchJob stream read on its own thread. Holds its own generated client on the shared channel, so it
// does not depend on the Client's lifetime.
class JobWatchImpl final : public JobWatch {
 public:
  JobWatchImpl(std::shared_ptr<grpc::Channel> channel, std::string job_id,
               std::function<void(const JobEvent&)> on_event, const std::string& job_token)
      : stub_(pb::RendezvousAdmin::NewStub(channel)),
        job_id_(std::move(job_id)),
        on_event_(std::move(on_event)) {
    AddJobToken(&ctx_, job_token);
  }

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

// One Session stream (callback API). Reads run in gRPC's reactions and are handed to the
// client's session thread through SessionInbox; writes come from the session thread (join,
// resume, heartbeat, report_error, leave) and are queued here, one in flight at a time.
// A hold (AddHold) keeps the stream open for those outside writes until Release().
class SessionInbox {
 public:
  virtual ~SessionInbox() = default;
  virtual void OnMessage(pb::SessionResponse response) = 0;
  virtual void OnReadEnded() = 0;
  virtual void OnStreamDone(const grpc::Status& status) = 0;
};

class SessionStream final
    : public grpc::ClientBidiReactor<pb::SessionRequest, pb::SessionResponse> {
 public:
  SessionStream(pb::Rendezvous::Stub* stub, SessionInbox* inbox, const std::string& job_token)
      : inbox_(inbox) {
    AddJobToken(&ctx_, job_token);
    stub->async()->Session(&ctx_, this);
  }

  void Start(pb::SessionRequest first) {
    Write(std::move(first));
    StartRead(&response_);
    AddHold();
    StartCall();
  }

  // Queues a message; dropped once the stream is released or a write failed.
  void Write(pb::SessionRequest request) {
    const pb::SessionRequest* start = nullptr;
    {
      absl::MutexLock l(&mu_);
      if (released_ || write_failed_) return;
      queue_.push_back(std::move(request));
      if (!writing_) {
        writing_ = true;
        start = &queue_.front();
      }
    }
    if (start != nullptr) StartWrite(start);
  }

  // No more writes from outside reactions; the stream may then complete. Call exactly once.
  void Release() {
    {
      absl::MutexLock l(&mu_);
      released_ = true;
    }
    RemoveHold();
  }

  void Cancel() { ctx_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    const pb::SessionRequest* next = nullptr;
    {
      absl::MutexLock l(&mu_);
      queue_.pop_front();
      if (!ok) {
        write_failed_ = true;
        queue_.clear();
      }
      if (!queue_.empty()) {
        next = &queue_.front();
      } else {
        writing_ = false;
      }
    }
    if (next != nullptr) StartWrite(next);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      inbox_->OnReadEnded();  // the owner releases its hold; the status follows in OnDone
      return;
    }
    inbox_->OnMessage(std::move(response_));
    response_.Clear();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override { inbox_->OnStreamDone(status); }

 private:
  SessionInbox* const inbox_;
  grpc::ClientContext ctx_;
  pb::SessionResponse response_;
  absl::Mutex mu_;
  std::deque<pb::SessionRequest> queue_ ABSL_GUARDED_BY(mu_);  // front = in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
};

std::string JoinTargets(const std::vector<std::string>& targets) {
  return absl::StrJoin(targets, ", ");
}

class ClientImpl final : public Client, public SessionInbox {
 public:
  ClientImpl(ClientOptions options, std::vector<std::string> targets,
             std::vector<std::shared_ptr<grpc::Channel>> channels)
      : options_(std::move(options)), targets_(std::move(targets)), channels_(std::move(channels)) {
    for (const auto& channel : channels_) {
      rendezvous_.push_back(pb::Rendezvous::NewStub(channel));
      admin_.push_back(pb::RendezvousAdmin::NewStub(channel));
      job_store_.push_back(pb::JobStore::NewStub(channel));
    }
  }

  ~ClientImpl() override {
    bool joined;
    {
      absl::MutexLock l(&mu_);
      joined = topology_.has_value() && !session_failed_;  // a failed session has no one to tell
    }
    if (joined) {
      absl::Status s = LeaveImpl(absl::Seconds(2));
      if (!s.ok()) LOG(WARNING) << "ms_rendezvous: leaving job " << options_.job_id << ": " << s;
    }
    StopSessionThread();
  }

  void SetEventCallback(std::function<void(const SessionEvent&)> callback) override {
    absl::MutexLock l(&callback_mu_);
    callback_ = std::move(callback);
  }

  absl::StatusOr<Topology> Join() override;
  absl::StatusOr<std::vector<MemberInfo>> Members() override;
  absl::StatusOr<std::unique_ptr<JobWatch>> Watch(
      std::function<void(const JobEvent&)> on_event) override;
  absl::Status ReportError(const std::string& reason) override;
  absl::Status Leave() override { return LeaveImpl(kLeaveDeadline); }

  // Job KV, barriers, root info (client_kv section below).
  absl::Status KvSet(absl::string_view key, absl::string_view value) override;
  absl::StatusOr<std::string> KvGet(absl::string_view key, absl::Duration timeout) override;
  absl::StatusOr<std::string> KvTryGet(absl::string_view key) override;
  absl::Status KvWait(const std::vector<std::string>& keys, absl::Duration timeout) override;
  absl::StatusOr<int64_t> KvAdd(absl::string_view key, int64_t delta) override;
  absl::StatusOr<KvCompareSetResult> KvCompareSet(absl::string_view key,
                                                  absl::string_view expected,
                                                  absl::string_view desired) override;
  absl::StatusOr<bool> KvDelete(absl::string_view key) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> KvList(
      absl::string_view prefix) override;
  absl::StatusOr<uint64_t> KvNumKeys() override;
  absl::Status Barrier(const std::string& name, absl::Duration timeout,
                       std::vector<uint32_t> ranks) override;
  absl::Status PublishRootInfo(const std::string& group, absl::string_view bytes) override;
  using Client::FetchRootInfo;
  absl::StatusOr<std::string> FetchRootInfo(const std::string& group,
                                            absl::Duration timeout) override;

  absl::Status SessionStatus() override {
    absl::MutexLock l(&mu_);
    return session_status_;
  }

  const ClientOptions& options() const override { return options_; }
  const std::string& target() const override { return targets_.front(); }
  const std::vector<std::string>& targets() const override { return targets_; }

 private:
  enum class Phase { kIdle, kJoining, kJoined, kEnded };

  // SessionInbox (called from gRPC reactions).
  void OnMessage(pb::SessionResponse response) override {
    absl::MutexLock l(&mu_);
    inbox_.push_back(std::move(response));
  }
  void OnReadEnded() override {
    absl::MutexLock l(&mu_);
    read_ended_ = true;
  }
  void OnStreamDone(const grpc::Status& status) override {
    absl::MutexLock l(&mu_);
    stream_done_ = status;
  }

  // The session thread: connects, joins or resumes, reads, heartbeats, reconnects.
  void RunSession();
  // Runs one stream until it ends; returns its final status. `first` is join or resume.
  grpc::Status RunStream(size_t target_index, pb::SessionRequest first, bool* got_message);
  // Handles one message from the daemon (session thread, mu_ not held).
  void HandleMessage(const pb::SessionResponse& response, size_t target_index,
                     SessionStream* stream);
  // Marks the session failed with `status` (once), wakes every blocked call, tells the callback.
  void FailSession(absl::Status status, SessionEvent event);
  void Emit(const SessionEvent& event);
  // Waits up to `wait` for a reconnect attempt; false when the session thread must stop.
  bool WaitBeforeRetry(size_t target_index, absl::Duration wait);
  pb::SessionRequest JoinRequest() const;
  // Resumes the held topology's registration, or (before the topology) the registration the
  // daemon confirmed with `registered`.
  pb::SessionRequest ResumeRequest(const Topology* held, uint64_t incarnation);
  absl::Status LeaveImpl(absl::Duration deadline);
  void StopSessionThread();
  // Blocks until `done` holds or the session failed (then returns the failure) or `deadline`.
  // The mechanism every blocking call of the client (Join, KV waits, barriers) goes through.
  absl::Status AwaitOrSessionFailure(const std::function<bool()>& done, absl::Time deadline,
                                     const std::string& what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration ReconnectBudget() const;
  // Starts one JobStore RPC (callback API) for `ref` through the given generated client; `done` must be passed to it.
  using StartRpc = std::function<void(pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                                      const pb::MemberRef& ref,
                                      std::function<void(grpc::Status)> done)>;
  // Runs one JobStore call for this member: FailedPrecondition when not joined, the session's
  // status once it failed. Waits through AwaitOrSessionFailure, so the call ends promptly
  // (its RPC cancelled) when the session fails or the member leaves. `rpc_timeout` is the RPC
  // deadline (InfiniteDuration: none). Retries once when the member's incarnation changed
  // under the call (transparent resume).
  absl::Status InvokeKv(const std::string& what, absl::Duration rpc_timeout,
                        const StartRpc& start);
  pb::RendezvousAdmin::Stub* admin() {
    return admin_[current_target_.load() % admin_.size()].get();
  }

  const ClientOptions options_;
  const std::vector<std::string> targets_;
  const std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<pb::Rendezvous::Stub>> rendezvous_;
  std::vector<std::unique_ptr<pb::RendezvousAdmin::Stub>> admin_;
  std::vector<std::unique_ptr<pb::JobStore::Stub>> job_store_;
  std::atomic<size_t> current_target_{0};

  absl::Mutex callback_mu_;
  std::function<void(const SessionEvent&)> callback_ ABSL_GUARDED_BY(callback_mu_);

  // Serializes Join/Leave/destruction transitions (thread start/stop). Order: lifecycle_mu_ ->
  // mu_. Never held while waiting for the daemon except by Leave (bounded).
  absl::Mutex lifecycle_mu_;
  std::thread session_thread_ ABSL_GUARDED_BY(lifecycle_mu_);
  bool left_ ABSL_GUARDED_BY(lifecycle_mu_) = false;

  absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kIdle;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;  // the session thread must end (destruction)
  std::optional<Topology> topology_ ABSL_GUARDED_BY(mu_);  // set while joined
  // Incarnation the daemon confirmed for our join (SessionResponse.registered), before the
  // topology: a stream that breaks while the job forms resumes it instead of joining again.
  std::optional<uint64_t> registered_incarnation_ ABSL_GUARDED_BY(mu_);
  // The member credential of the current registration (from `registered` or the topology);
  // every call naming this member carries it (a process may act only as itself).
  std::string credential_ ABSL_GUARDED_BY(mu_);
  absl::Status join_error_ ABSL_GUARDED_BY(mu_);           // why Join failed
  absl::Status session_status_ ABSL_GUARDED_BY(mu_);       // OK until the session failed
  bool session_failed_ ABSL_GUARDED_BY(mu_) = false;
  // Requests from user threads, written by the session thread.
  std::optional<std::string> report_error_ ABSL_GUARDED_BY(mu_);
  bool leave_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> leave_result_ ABSL_GUARDED_BY(mu_);
  // The current stream's traffic (from gRPC reactions).
  std::deque<pb::SessionResponse> inbox_ ABSL_GUARDED_BY(mu_);
  bool read_ended_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> stream_done_ ABSL_GUARDED_BY(mu_);
  bool cancelled_here_ ABSL_GUARDED_BY(mu_) = false;
  SessionStream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
};

absl::Duration ClientImpl::ReconnectBudget() const {
  if (options_.node_timeout == absl::InfiniteDuration()) return absl::InfiniteDuration();
  if (options_.node_timeout == absl::ZeroDuration()) {
    return options_.heartbeat_enabled ? kDefaultNodeTimeout : absl::InfiniteDuration();
  }
  return options_.node_timeout;
}

pb::SessionRequest ClientImpl::JoinRequest() const {
  pb::SessionRequest request;
  pb::MemberSpec* spec = request.mutable_join()->mutable_member();
  spec->set_job_id(options_.job_id);
  spec->set_role(ToProto(options_.role));
  spec->set_node_id(options_.node_id);
  spec->set_host(options_.worker_ip);
  spec->set_host_name(options_.host_name);
  spec->set_device_id(options_.device_id);
  spec->set_device_ip(options_.device_ip);
  spec->set_worker_num(options_.worker_num);
  spec->set_server_num(options_.server_num);
  const bool forever = options_.topo_timeout == absl::InfiniteDuration();
  spec->set_topo_timeout_ms(forever ? -1 : absl::ToInt64Milliseconds(options_.topo_timeout));
  int64_t node_timeout_ms = 0;
  if (options_.node_timeout == absl::InfiniteDuration()) {
    node_timeout_ms = -1;
  } else if (options_.node_timeout > absl::ZeroDuration()) {
    node_timeout_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.node_timeout));
  }
  spec->set_node_timeout_ms(node_timeout_ms);
  spec->set_enable_recovery(options_.enable_recovery);
  // Without heartbeats the daemon judges this member by its connected session alone.
  spec->set_heartbeat_disabled(!options_.heartbeat_enabled);
  return request;
}

pb::SessionRequest ClientImpl::ResumeRequest(const Topology* held, uint64_t incarnation) {
  pb::SessionRequest request;
  pb::ResumeRequest* resume = request.mutable_resume();
  resume->mutable_member()->set_job_id(options_.job_id);
  resume->mutable_member()->set_role(ToProto(options_.role));
  resume->mutable_member()->set_node_id(options_.node_id);
  resume->mutable_member()->set_incarnation(held != nullptr ? held->incarnation : incarnation);
  {
    absl::MutexLock l(&mu_);
    resume->mutable_member()->set_credential(credential_);
  }
  resume->set_generation(held != nullptr ? held->generation : 0);
  return request;
}

absl::Status ClientImpl::AwaitOrSessionFailure(const std::function<bool()>& done,
                                               absl::Time deadline, const std::string& what) {
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return session_failed_ || done(); };
  while (!ready()) {
    if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
      return absl::DeadlineExceededError(absl::StrCat(what, " did not complete in time"));
    }
  }
  if (session_failed_) return session_status_;
  return absl::OkStatus();
}

absl::StatusOr<Topology> ClientImpl::Join() {
  {
    absl::MutexLock lifecycle(&lifecycle_mu_);
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
      if (phase_ == Phase::kJoining)
        return absl::FailedPreconditionError("Join() is already running");
    }
    // A session thread of an earlier session has ended by now (Leave or failure); reap it.
    if (session_thread_.joinable()) {
      {
        absl::MutexLock l(&mu_);
        stop_ = true;
        if (stream_ != nullptr) {
          cancelled_here_ = true;
          stream_->Cancel();
        }
      }
      session_thread_.join();
    }
    {
      absl::MutexLock l(&mu_);
      phase_ = Phase::kJoining;
      stop_ = false;
      join_error_ = absl::OkStatus();
      session_status_ = absl::OkStatus();
      session_failed_ = false;
      report_error_.reset();
      leave_requested_ = false;
      leave_result_.reset();
      registered_incarnation_.reset();
    }
    LOG(INFO) << "ms_rendezvous: joining job " << options_.job_id << " as "
              << RoleName(options_.role) << " node " << options_.node_id << " via "
              << JoinTargets(targets_) << " (MS_WORKER_NUM=" << options_.worker_num
              << " MS_SERVER_NUM=" << options_.server_num << " topology timeout "
              << TimeoutText(options_.topo_timeout) << ", node timeout "
              << (options_.node_timeout == absl::ZeroDuration()
                      ? std::string(options_.heartbeat_enabled ? "daemon default" : "none")
                      : TimeoutText(options_.node_timeout))
              << ", heartbeat "
              << (options_.heartbeat_enabled
                      ? absl::StrCat(absl::FormatDuration(options_.heartbeat_interval_lower), "..",
                                     absl::FormatDuration(options_.heartbeat_interval_upper))
                      : std::string("disabled"))
              << ", recovery " << (options_.enable_recovery ? "on" : "off") << ")";
    if (options_.heartbeat_enabled && options_.node_timeout != absl::ZeroDuration() &&
        options_.node_timeout != absl::InfiniteDuration() &&
        options_.node_timeout <= options_.heartbeat_interval_upper) {
      LOG(WARNING) << "ms_rendezvous: MS_NODE_TIMEOUT="
                   << absl::FormatDuration(options_.node_timeout)
                   << " is not longer than the heartbeat interval (MS_RETRY_INTERVAL_UPPER="
                   << absl::FormatDuration(options_.heartbeat_interval_upper)
                   << "): members will be declared dead between two heartbeats";
    }
    left_ = false;
    session_thread_ = std::thread([this] { RunSession(); });
  }

  absl::MutexLock l(&mu_);
  absl::Status st = AwaitOrSessionFailure(
      [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return phase_ != Phase::kJoining; },
      absl::InfiniteFuture(), "Join");
  if (!st.ok()) return st;
  if (topology_.has_value()) return *topology_;
  if (!join_error_.ok()) return join_error_;
  return absl::AbortedError("the session ended before the topology arrived");
}

void ClientImpl::Emit(const SessionEvent& event) {
  std::function<void(const SessionEvent&)> callback;
  {
    absl::MutexLock l(&callback_mu_);
    callback = callback_;
  }
  if (callback) callback(event);
}

void ClientImpl::FailSession(absl::Status status, SessionEvent event) {
  {
    absl::MutexLock l(&mu_);
    if (session_failed_) return;
    session_failed_ = true;
    session_status_ = status;
    phase_ = Phase::kEnded;
  }
  LOG(WARNING) << "ms_rendezvous: " << status;
  event.status = status;
  if (event.job_id.empty()) event.job_id = options_.job_id;
  Emit(event);
}

void ClientImpl::HandleMessage(const pb::SessionResponse& response, size_t target_index,
                               SessionStream* stream) {
  if (response.has_registered()) {
    absl::MutexLock l(&mu_);
    registered_incarnation_ = response.registered().incarnation();
    credential_ = response.registered().credential();
    return;
  }
  if (response.has_topology()) {
    Topology t = FromProto(response.topology(), options_);
    std::optional<Topology> held;
    {
      absl::MutexLock l(&mu_);
      if (!response.topology().credential().empty()) {
        credential_ = response.topology().credential();
      }
      held = topology_;
      if (!held.has_value()) {
        topology_ = t;
        phase_ = Phase::kJoined;
        return;
      }
    }
    if (t.rank != held->rank || t.generation != held->generation || t.role != held->role ||
        t.node_id != held->node_id || t.world_size != held->world_size) {
      {
        absl::MutexLock l(&mu_);
        cancelled_here_ = true;
      }
      stream->Cancel();
      SessionEvent e;
      e.type = SessionEventType::kSessionLost;
      e.generation = t.generation;
      e.message = absl::StrCat("after reconnecting to ", targets_[target_index],
                               " the daemon placed node '", held->node_id, "' at ",
                               RoleName(t.role), " rank ", t.rank, " generation ", t.generation,
                               " instead of rank ", held->rank, " generation ", held->generation,
                               "; a different placement is never taken silently: join again");
      FailSession(absl::AbortedError(e.message), e);
      return;
    }
    {
      absl::MutexLock l(&mu_);
      topology_->incarnation = t.incarnation;
    }
    LOG(INFO) << "ms_rendezvous: resumed the session of job " << t.job_id << " at "
              << targets_[target_index] << " (rank " << t.rank << ", generation " << t.generation
              << ")";
    SessionEvent e;
    e.type = SessionEventType::kResumed;
    e.job_id = t.job_id;
    e.generation = t.generation;
    e.job_state = JobState::kComplete;
    e.message = absl::StrCat("resumed the session at ", targets_[target_index]);
    e.topology = t;
    Emit(e);
    return;
  }
  if (!response.has_event()) return;
  JobEvent ev = FromProto(response.event());
  SessionEvent e;
  e.job_id =
      response.event().job().job_id().empty() ? options_.job_id : response.event().job().job_id();
  e.job_state = ev.job_state;
  e.generation = ev.generation;
  e.member = ev.member;
  e.dead = ev.dead;
  e.message = ev.message;
  switch (ev.type) {
    case JobEventType::kJobFailed: {
      bool joining;
      {
        absl::MutexLock l(&mu_);
        joining = !topology_.has_value();
      }
      // While joining, Join() returns the daemon's final status (e.g. DeadlineExceeded naming
      // who is missing); there is no session to fail yet.
      if (joining) return;
      std::string message = ev.message;
      if (message.empty()) message = absl::StrCat("job '", e.job_id, "' failed");
      if (!ev.dead.empty() && !absl::StrContains(message, ev.dead.front().node_id)) {
        absl::StrAppend(&message, ". Dead: ", DescribeDead(ev.dead));
      }
      e.type = SessionEventType::kJobFailed;
      FailSession(absl::AbortedError(message), e);
      return;
    }
    case JobEventType::kMemberDead:
      e.type = SessionEventType::kMemberDead;
      Emit(e);
      return;
    case JobEventType::kMemberRecovered:
      e.type = SessionEventType::kMemberRecovered;
      Emit(e);
      return;
    default:
      return;  // other events are for watchers
  }
}

bool ClientImpl::WaitBeforeRetry(size_t target_index, absl::Duration wait) {
  const absl::Time end = absl::Now() + wait;
  const std::shared_ptr<grpc::Channel>& channel = channels_[target_index];
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (stop_) return false;
    }
    const absl::Time now = absl::Now();
    if (now >= end) return true;
    const absl::Duration slice = std::min(end - now, absl::Milliseconds(100));
    if (channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY) {
      // Connected, so the daemon itself refused (draining): back off in full.
      absl::MutexLock l(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_), slice);
    } else if (channel->WaitForConnected(DeadlineAfter(slice))) {
      // Not connected: retry as soon as the channel is up instead of sleeping past the moment
      // the scheduler (re)started.
      return true;
    }
  }
}

grpc::Status ClientImpl::RunStream(size_t target_index, pb::SessionRequest first,
                                   bool* got_message) {
  auto stream =
      std::make_unique<SessionStream>(rendezvous_[target_index].get(), this, options_.job_token);
  {
    absl::MutexLock l(&mu_);
    inbox_.clear();
    read_ended_ = false;
    stream_done_.reset();
    cancelled_here_ = false;
    stream_ = stream.get();
  }
  stream->Start(std::move(first));

  absl::BitGen gen;
  const double lo = absl::ToDoubleSeconds(options_.heartbeat_interval_lower);
  const double hi = absl::ToDoubleSeconds(options_.heartbeat_interval_upper);
  auto next_period = [&] {
    // +-10% around a fixed interval so that members started together do not beat in lockstep.
    return absl::Seconds(lo < hi ? absl::Uniform(gen, lo, hi) : lo * absl::Uniform(gen, 0.9, 1.1));
  };
  absl::Time next_beat = absl::Now() + next_period();
  bool report_sent = false, leave_sent = false;
  const absl::Time join_started = absl::Now();
  bool released = false;
  grpc::Status final_status;
  for (;;) {
    std::deque<pb::SessionResponse> messages;
    bool done = false, joined = false, send_leave = false, cancel = false, release = false;
    std::optional<std::string> report;
    {
      absl::MutexLock l(&mu_);
      auto wake = [this, &report_sent, &leave_sent,
                   &released]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !inbox_.empty() || (read_ended_ && !released) || stream_done_.has_value() || stop_ ||
               (report_error_.has_value() && !report_sent) || (leave_requested_ && !leave_sent);
      };
      absl::Time deadline = next_beat;
      if (!topology_.has_value() && options_.topo_timeout != absl::InfiniteDuration()) {
        deadline = std::min(deadline, join_started + options_.topo_timeout + kJoinDeadlineMargin);
      }
      mu_.AwaitWithDeadline(absl::Condition(&wake), deadline);
      messages.swap(inbox_);
      done = stream_done_.has_value() && messages.empty();
      if (done) final_status = *stream_done_;
      release = read_ended_ && !released && messages.empty();
      joined = topology_.has_value();
      if (stop_ && !cancelled_here_) {
        cancelled_here_ = true;
        cancel = true;
      }
      if (report_error_.has_value() && !report_sent && joined) report = report_error_;
      send_leave = leave_requested_ && !leave_sent && joined;
    }
    if (cancel) stream->Cancel();
    if (done) break;
    if (release) {
      // Nothing more will be read: let the stream complete (OnDone follows).
      released = true;
      stream->Release();
      continue;
    }
    for (const pb::SessionResponse& m : messages) {
      *got_message = true;
      HandleMessage(m, target_index, stream.get());
    }
    if (report.has_value()) {
      report_sent = true;
      pb::SessionRequest r;
      r.mutable_report_error()->set_reason(*report);
      stream->Write(std::move(r));
    }
    if (send_leave) {
      leave_sent = true;
      pb::SessionRequest r;
      Topology t;
      std::string credential;
      {
        absl::MutexLock l(&mu_);
        t = *topology_;
        credential = credential_;
      }
      pb::MemberRef* ref = r.mutable_leave()->mutable_member();
      ref->set_credential(credential);
      ref->set_job_id(t.job_id);
      ref->set_role(ToProto(t.role));
      ref->set_node_id(t.node_id);
      ref->set_incarnation(t.incarnation);
      stream->Write(std::move(r));
    }
    const absl::Time now = absl::Now();
    if (!joined && options_.topo_timeout != absl::InfiniteDuration() &&
        now >= join_started + options_.topo_timeout + kJoinDeadlineMargin) {
      // The daemon answers a join that outlives the topology timeout itself; this is our own
      // limit (the job uses a longer timeout than ours).
      {
        absl::MutexLock l(&mu_);
        cancelled_here_ = true;
        join_error_ = absl::DeadlineExceededError(absl::StrCat(
            "job ", options_.job_id, ": no topology from scheduler ", targets_[target_index],
            " within ", TimeoutText(options_.topo_timeout), " (MS_TOPO_TIMEOUT) + ",
            absl::FormatDuration(kJoinDeadlineMargin),
            " margin; the job's timeout was set by its first member and is longer than this "
            "process's: use the same MS_TOPO_TIMEOUT in every process"));
      }
      stream->Cancel();
    }
    if (now >= next_beat) {
      if (joined && options_.heartbeat_enabled) {
        pb::SessionRequest r;
        r.mutable_heartbeat();  // the session names the member
        stream->Write(std::move(r));
      }
      next_beat = now + next_period();
    }
  }
  // OnDone already ran (stream_done_ is set from it), so the reactor is no longer used by gRPC.
  {
    absl::MutexLock l(&mu_);
    stream_ = nullptr;
  }
  return final_status;
}

void ClientImpl::RunSession() {
  Backoff backoff;
  size_t target_index = current_target_.load() % targets_.size();
  const absl::Time join_started = absl::Now();
  std::optional<absl::Time> outage_started;  // after the topology: when the stream broke
  int attempts = 0;
  bool maybe_registered = false;  // a join was sent on a stream that broke before the topology
  std::string last_error;
  absl::Duration next_log = absl::ZeroDuration();
  for (;;) {
    std::optional<Topology> held;
    std::optional<uint64_t> registered;
    bool leaving;
    {
      absl::MutexLock l(&mu_);
      if (stop_ || session_failed_) break;
      held = topology_;
      registered = registered_incarnation_;
      leaving = leave_requested_;
    }
    pb::SessionRequest first;
    const bool resuming_registration = !held.has_value() && registered.has_value();
    if (held.has_value()) {
      first = ResumeRequest(&*held, 0);
    } else if (resuming_registration) {
      first = ResumeRequest(nullptr, *registered);
    } else {
      first = JoinRequest();
    }
    ++attempts;
    current_target_.store(target_index);
    bool got_message = false;
    grpc::Status st = RunStream(target_index, std::move(first), &got_message);

    bool cancelled_here, stop, joined_now, failed;
    {
      absl::MutexLock l(&mu_);
      cancelled_here = cancelled_here_;
      stop = stop_;
      joined_now = topology_.has_value();
      failed = session_failed_;
      leaving = leave_requested_;
      if (leaving && joined_now && st.ok()) {
        leave_result_ = absl::OkStatus();
        topology_.reset();
        phase_ = Phase::kEnded;
        return;
      }
    }
    if (failed) break;  // job failed (the daemon's Aborted follows its JOB_FAILED event)
    if (stop) break;
    if (!joined_now) {
      // Still joining: the daemon's answer is Join's answer unless it is worth retrying.
      absl::MutexLock l(&mu_);
      if (!join_error_.ok()) break;  // our own topology deadline
    }
    if (resuming_registration && st.error_code() == grpc::StatusCode::ABORTED) {
      // The daemon no longer has our waiting registration (withdrawn after the disconnect
      // grace, or it restarted without state): no rank was ever given, so join afresh.
      absl::MutexLock l(&mu_);
      registered_incarnation_.reset();
    }
    const bool retryable =
        (resuming_registration && st.error_code() == grpc::StatusCode::ABORTED) ||
        st.error_code() == grpc::StatusCode::UNAVAILABLE ||
        (st.error_code() == grpc::StatusCode::CANCELLED && !cancelled_here) ||
        // A join sent on a stream that broke left a registration behind; the daemon keeps it
        // (suspect) for its disconnect grace, so a new join meets it until then.
        (!joined_now && maybe_registered && st.error_code() == grpc::StatusCode::ALREADY_EXISTS &&
         absl::StrContains(st.error_message(), "(suspect,"));
    if (!joined_now && !held.has_value() && !got_message &&
        st.error_code() != grpc::StatusCode::OK) {
      // The join reached the daemon only if the stream carried it; assume it may have.
      if (st.error_code() == grpc::StatusCode::CANCELLED ||
          (st.error_code() == grpc::StatusCode::UNAVAILABLE &&
           !absl::StrContains(st.error_message(), "failed to connect") &&
           !absl::StrContains(st.error_message(), "Connection refused"))) {
        maybe_registered = true;
      }
    }
    if (!retryable) {
      if (!joined_now && !held.has_value()) {
        absl::MutexLock l(&mu_);
        join_error_ = FromGrpc(st);
        if (join_error_.ok()) {
          join_error_ = absl::UnavailableError(absl::StrCat(
              "the session at ", targets_[target_index], " ended before the topology arrived"));
        }
        break;
      }
      // Joined: the daemon ended the session (resume refused, declared dead, replaced, ...).
      SessionEvent e;
      e.type = SessionEventType::kSessionLost;
      std::string message =
          held.has_value() && outage_started.has_value()
              ? absl::StrCat("cannot resume the session of job '", options_.job_id, "' (",
                             RoleName(options_.role), " rank ", held->rank, ", node '",
                             options_.node_id, "') at ", targets_[target_index], ": ",
                             GrpcStatusText(st))
              : absl::StrCat("the session of job '", options_.job_id, "' (",
                             RoleName(options_.role), " node '", options_.node_id,
                             "') was ended by ", targets_[target_index], ": ", GrpcStatusText(st));
      if (leaving) {
        absl::MutexLock l(&mu_);
        leave_result_ = FromGrpc(st).ok() ? absl::OkStatus() : FromGrpc(st);
      }
      e.message = message;
      FailSession(absl::AbortedError(message), e);
      break;
    }

    // Retry (reconnect), bounded.
    last_error = absl::StrCat(targets_[target_index], ": ", GrpcStatusText(st));
    const absl::Time now = absl::Now();
    if (joined_now) {
      if (got_message || !outage_started.has_value()) {
        if (!outage_started.has_value() || got_message) {
          outage_started = now;
          backoff = Backoff();
          attempts = 1;
        }
        LOG(WARNING) << "ms_rendezvous: session of job " << options_.job_id << " broke ("
                     << last_error << "); reconnecting to resume it";
      }
      const absl::Duration budget = ReconnectBudget();
      if (budget != absl::InfiniteDuration() && now - *outage_started >= budget) {
        SessionEvent e;
        e.type = SessionEventType::kSessionLost;
        e.message = absl::StrCat("lost the session of job '", options_.job_id,
                                 "': ", targets_.size() > 1 ? "schedulers " : "scheduler ",
                                 JoinTargets(targets_), " unreachable for ",
                                 absl::FormatDuration(budget), " (MS_NODE_TIMEOUT), ", attempts,
                                 " attempts; the daemon has declared this member "
                                 "dead by now; last error: ",
                                 last_error);
        FailSession(absl::AbortedError(e.message), e);
        break;
      }
    } else {
      const absl::Duration elapsed = now - join_started;
      if (options_.topo_timeout != absl::InfiniteDuration() && elapsed >= options_.topo_timeout) {
        absl::MutexLock l(&mu_);
        join_error_ = absl::UnavailableError(absl::StrCat(
            targets_.size() > 1 ? "schedulers " : "scheduler ", JoinTargets(targets_),
            " unreachable for ", TimeoutText(options_.topo_timeout), " (MS_TOPO_TIMEOUT), ",
            attempts, " attempts; last error: ", GrpcStatusText(st),
            targets_.size() > 1 ? absl::StrCat(" (", targets_[target_index], ")") : "",
            "; check MS_SCHED_HOST/MS_SCHED_PORT and that the scheduler or ms-rendezvousd runs"));
        break;
      }
      if (elapsed >= next_log) {
        LOG(INFO) << "ms_rendezvous: scheduler " << targets_[target_index] << " not reachable yet ("
                  << GrpcStatusText(st) << "); retrying with backoff for up to "
                  << TimeoutText(options_.topo_timeout);
        next_log = elapsed + kUnreachableLogEvery;
      }
    }
    target_index = (target_index + 1) % targets_.size();
    absl::Duration wait = backoff.Next();
    if (!joined_now && options_.topo_timeout != absl::InfiniteDuration()) {
      wait = std::min(wait, options_.topo_timeout - (now - join_started));
    }
    if (!WaitBeforeRetry(target_index, wait)) break;
  }
  absl::MutexLock l(&mu_);
  if (phase_ == Phase::kJoining && join_error_.ok() && !session_failed_) {
    join_error_ = stop_ ? absl::CancelledError("the client is shutting down")
                        : absl::AbortedError("the session ended before the topology arrived");
  }
  phase_ = Phase::kEnded;
}

absl::Status ClientImpl::ReportError(const std::string& reason) {
  absl::MutexLock l(&mu_);
  if (!topology_.has_value()) {
    if (session_failed_) return session_status_;
    return absl::FailedPreconditionError(
        absl::StrCat("ReportError() of job ", options_.job_id, " before a successful Join()"));
  }
  if (session_failed_) return session_status_;
  report_error_ = reason.empty() ? std::string("(no reason given)") : reason;
  // The daemon declares this member dead and ends the session; wait for that.
  auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return phase_ == Phase::kEnded; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ended), kLeaveDeadline)) {
    return absl::UnavailableError(absl::StrCat("could not report the error to ",
                                               targets_[current_target_.load()], " within ",
                                               absl::FormatDuration(kLeaveDeadline)));
  }
  return absl::OkStatus();
}

absl::Status ClientImpl::LeaveImpl(absl::Duration deadline) {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  absl::Status result;
  {
    absl::MutexLock l(&mu_);
    if (!topology_.has_value()) {
      if (left_) return absl::OkStatus();
      if (session_failed_ && phase_ == Phase::kEnded && session_thread_.joinable()) {
        // The session failed after a successful Join: the member is gone already.
      } else {
        return absl::FailedPreconditionError(
            absl::StrCat("Leave() of job ", options_.job_id, " before a successful Join()"));
      }
    }
    if (session_failed_) {
      result = session_status_;
    } else {
      leave_requested_ = true;
      auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return leave_result_.has_value() || phase_ == Phase::kEnded;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&done), deadline)) {
        result = absl::UnavailableError(absl::StrCat(
            "leave of job ", options_.job_id, " not confirmed by ",
            targets_[current_target_.load()], " within ", absl::FormatDuration(deadline)));
      } else if (leave_result_.has_value()) {
        result = *leave_result_;
      } else {
        result = session_status_;
      }
    }
    topology_.reset();
    stop_ = true;
    if (stream_ != nullptr) {
      cancelled_here_ = true;
      stream_->Cancel();
    }
  }
  left_ = true;
  if (session_thread_.joinable()) session_thread_.join();
  return result;
}

void ClientImpl::StopSessionThread() {
  absl::MutexLock lifecycle(&lifecycle_mu_);
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    if (stream_ != nullptr) {
      cancelled_here_ = true;
      stream_->Cancel();
    }
  }
  if (session_thread_.joinable()) session_thread_.join();
}

absl::StatusOr<std::vector<MemberInfo>> ClientImpl::Members() {
  std::vector<MemberInfo> members;
  pb::ListMembersRequest request;
  request.set_job_id(options_.job_id);
  request.set_page_size(kMembersPageSize);
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineAfter(kUnaryDeadline));
    AddJobToken(&ctx, options_.job_token);
    pb::ListMembersResponse response;
    grpc::Status st = admin()->ListMembers(&ctx, request, &response);
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
  auto watch = std::make_unique<JobWatchImpl>(channels_[current_target_.load() % channels_.size()],
                                              options_.job_id, std::move(on_event),
                                              options_.job_token);
  if (absl::Status s = watch->Start(); !s.ok()) return s;
  return std::unique_ptr<JobWatch>(std::move(watch));
}


// --- Job KV, barriers, root info ------------------------------------------------------------

// (still in the anonymous namespace)
// "'key'" with non-printable bytes escaped, shortened when long (for messages).
std::string QuoteKey(absl::string_view key) {
  constexpr size_t kMax = 200;
  std::string out = absl::CHexEscape(key.substr(0, kMax));
  return absl::StrCat("'", out, key.size() > kMax ? "...'" : "'");
}

// Timeout of a blocking KV call on the wire: 0 = try once, -1 = until the job ends.
absl::StatusOr<int64_t> KvTimeoutMs(const std::string& what, absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return int64_t{-1};
  if (timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": timeout ", absl::FormatDuration(timeout),
        " is negative (use absl::InfiniteDuration() to wait until the job ends)"));
  }
  if (timeout == absl::ZeroDuration()) return int64_t{0};
  return std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1))));
}

// RPC deadline of a blocking call: its timeout plus the margin; none when infinite.
absl::Duration KvRpcTimeout(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return absl::InfiniteDuration();
  return timeout + kKvDeadlineMargin;
}

absl::Status ClientImpl::InvokeKv(const std::string& what, absl::Duration rpc_timeout,
                                  const StartRpc& start) {
  // The RPC's completion, written by gRPC's callback and read under mu_ (so that it can be part
  // of the AwaitOrSessionFailure condition). Shared: the callback may outlive nothing, but the
  // struct must not depend on which of the two sides finishes last.
  struct Pending {
    bool done = false;
    grpc::Status status;
  };
  for (int attempt = 0;; ++attempt) {
    pb::MemberRef ref;
    {
      absl::MutexLock l(&mu_);
      if (session_failed_) return session_status_;
      if (!topology_.has_value()) {
        return absl::FailedPreconditionError(absl::StrCat(
            what, " of job ", options_.job_id,
            " needs a joined session: call Join() first (and not after Leave())"));
      }
      ref.set_job_id(topology_->job_id);
      ref.set_role(ToProto(topology_->role));
      ref.set_node_id(topology_->node_id);
      ref.set_incarnation(topology_->incarnation);
      ref.set_credential(credential_);
    }
    const size_t target = current_target_.load() % job_store_.size();
    grpc::ClientContext ctx;
    if (rpc_timeout != absl::InfiniteDuration()) ctx.set_deadline(DeadlineAfter(rpc_timeout));
    AddJobToken(&ctx, options_.job_token);
    auto pending = std::make_shared<Pending>();
    start(job_store_[target].get(), &ctx, ref, [this, pending](grpc::Status st) {
      absl::MutexLock l(&mu_);
      pending->status = std::move(st);
      pending->done = true;
    });

    absl::Status waited;
    bool finished;
    {
      absl::MutexLock l(&mu_);
      waited = AwaitOrSessionFailure(
          [this, &pending]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            return pending->done || !topology_.has_value();
          },
          absl::InfiniteFuture(), what);
      finished = pending->done;
    }
    if (!finished) {
      // The session failed or the member left while the RPC was pending: do not wait for the
      // daemon's answer (it may never come); cancel the RPC, which completes it locally.
      ctx.TryCancel();
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(&pending->done));
      if (!waited.ok()) return waited;
      if (session_failed_) return session_status_;
      return absl::FailedPreconditionError(
          absl::StrCat(what, " of job ", options_.job_id, ": this member left the job"));
    }
    const grpc::Status& st = pending->status;
    if (st.ok()) return absl::OkStatus();
    {
      absl::MutexLock l(&mu_);
      // The job failed: the session's status names the dead (the daemon's Aborted does too,
      // but a Cancelled/Unavailable of the same moment would not).
      if (session_failed_) return session_status_;
      if (attempt == 0 && st.error_code() == grpc::StatusCode::ABORTED && topology_.has_value() &&
          topology_->incarnation != ref.incarnation()) {
        continue;  // resumed under the call with a new incarnation: try again once
      }
    }
    if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
        (st.error_message().empty() || st.error_message() == "Deadline Exceeded")) {
      return absl::DeadlineExceededError(absl::StrCat(
          what, ": no answer from ", targets_[target], " within ",
          absl::FormatDuration(rpc_timeout), " (client-side RPC deadline)"));
    }
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
      return absl::UnavailableError(
          absl::StrCat(what, ": scheduler ", targets_[target], " unavailable: ",
                       st.error_message()));
    }
    return FromGrpc(st);
  }
}

absl::Status ClientImpl::KvSet(absl::string_view key, absl::string_view value) {
  pb::KvSetRequest req;
  req.set_key(std::string(key));
  req.set_value(std::string(value));
  pb::KvSetResponse resp;
  return InvokeKv(absl::StrCat("KvSet(", QuoteKey(key), ")"), kUnaryDeadline,
                  [&](pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                      const pb::MemberRef& ref, std::function<void(grpc::Status)> done) {
                    *req.mutable_member() = ref;
                    stub->async()->Set(ctx, &req, &resp, std::move(done));
                  });
}

absl::StatusOr<std::string> ClientImpl::KvGet(absl::string_view key, absl::Duration timeout) {
  const std::string what = absl::StrCat("KvGet(", QuoteKey(key), ")");
  absl::StatusOr<int64_t> timeout_ms = KvTimeoutMs(what, timeout);
  if (!timeout_ms.ok()) return timeout_ms.status();
  pb::KvGetRequest req;
  req.set_key(std::string(key));
  req.set_timeout_ms(*timeout_ms);
  pb::KvGetResponse resp;
  absl::Status st = InvokeKv(what, KvRpcTimeout(timeout),
                             [&](pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                                 const pb::MemberRef& ref, std::function<void(grpc::Status)> done) {
                               *req.mutable_member() = ref;
                               stub->async()->Get(ctx, &req, &resp, std::move(done));
                             });
  if (!st.ok()) return st;
  return std::move(*resp.mutable_value());
}

absl::StatusOr<std::string> ClientImpl::KvTryGet(absl::string_view key) {
  return KvGet(key, absl::ZeroDuration());
}

absl::Status ClientImpl::KvWait(const std::vector<std::string>& keys, absl::Duration timeout) {
  const std::string what =
      absl::StrCat("KvWait(", keys.size(), keys.size() == 1 ? " key" : " keys", ")");
  absl::StatusOr<int64_t> timeout_ms = KvTimeoutMs(what, timeout);
  if (!timeout_ms.ok()) return timeout_ms.status();
  pb::KvWaitRequest req;
  for (const std::string& k : keys) req.add_keys(k);
  req.set_timeout_ms(*timeout_ms);
  pb::KvWaitResponse resp;
  return InvokeKv(what, KvRpcTimeout(timeout),
                  [&](pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                      const pb::MemberRef& ref, std::function<void(grpc::Status)> done) {
                    *req.mutable_member() = ref;
                    stub->async()->Wait(ctx, &req, &resp, std::move(done));
                  });
}

absl::StatusOr<int64_t> ClientImpl::KvAdd(absl::string_view key, int64_t delta) {
  pb::KvAddRequest req;
  req.set_key(std::string(key));
  req.set_delta(delta);
  pb::KvAddResponse resp;
  absl::Status st = InvokeKv(absl::StrCat("KvAdd(", QuoteKey(key), ")"), kUnaryDeadline,
                             [&](pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                                 const pb::MemberRef& ref, std::function<void(grpc::Status)> done) {
                               *req.mutable_member() = ref;
                               stub->async()->Add(ctx, &req, &resp, std::move(done));
                             });
  if (!st.ok()) return st;
  return resp.value();
}

absl::StatusOr<KvCompareSetResult> ClientImpl::KvCompareSet(absl::string_view key,
                                                            absl::string_view expected,
                                                            absl::string_view desired) {
  pb::KvCompareSetRequest req;
  req.set_key(std::string(key));
  req.set_expected(std::string(expected));
  req.set_desired(std::string(desired));
  pb::KvCompareSetResponse resp;
  absl::Status st = InvokeKv(absl::StrCat("KvCompareSet(", QuoteKey(key), ")"), kUnaryDeadline,
                             [&](pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                                 const pb::MemberRef& ref, std::function<void(grpc::Status)> done) {
                               *req.mutable_member() = ref;
                               stub->async()->CompareSet(ctx, &req, &resp, std::move(done));
                             });
  if (!st.ok()) return st;
  KvCompareSetResult out;
  out.value = std::move(*resp.mutable_value());
  out.swapped = resp.swapped();
  return out;
}

absl::StatusOr<bool> ClientImpl::KvDelete(absl::string_view key) {
  pb::KvDeleteRequest req;
  req.set_key(std::string(key));
  pb::KvDeleteResponse resp;
  absl::Status st = InvokeKv(absl::StrCat("KvDelete(", QuoteKey(key), ")"), kUnaryDeadline,
                             [&](pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                                 const pb::MemberRef& ref, std::function<void(grpc::Status)> done) {
                               *req.mutable_member() = ref;
                               stub->async()->Delete(ctx, &req, &resp, std::move(done));
                             });
  if (!st.ok()) return st;
  return resp.deleted();
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ClientImpl::KvList(
    absl::string_view prefix) {
  const std::string what = absl::StrCat("KvList(", QuoteKey(prefix), ")");
  std::vector<std::pair<std::string, std::string>> out;
  pb::KvListRequest req;
  req.set_prefix(std::string(prefix));
  req.set_page_size(kKvListPageSize);
  for (;;) {
    pb::KvListResponse resp;
    absl::Status st = InvokeKv(what, kUnaryDeadline,
                               [&](pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                                   const pb::MemberRef& ref,
                                   std::function<void(grpc::Status)> done) {
                                 *req.mutable_member() = ref;
                                 stub->async()->List(ctx, &req, &resp, std::move(done));
                               });
    if (!st.ok()) return st;
    for (pb::KvEntry& e : *resp.mutable_entries()) {
      out.emplace_back(std::move(*e.mutable_key()), std::move(*e.mutable_value()));
    }
    if (resp.next_page_token().empty() || resp.entries().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  return out;
}

absl::StatusOr<uint64_t> ClientImpl::KvNumKeys() {
  pb::KvNumKeysRequest req;
  pb::KvNumKeysResponse resp;
  absl::Status st = InvokeKv("KvNumKeys()", kUnaryDeadline,
                             [&](pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                                 const pb::MemberRef& ref, std::function<void(grpc::Status)> done) {
                               *req.mutable_member() = ref;
                               stub->async()->NumKeys(ctx, &req, &resp, std::move(done));
                             });
  if (!st.ok()) return st;
  return resp.num_keys();
}

absl::Status ClientImpl::Barrier(const std::string& name, absl::Duration timeout,
                                 std::vector<uint32_t> ranks) {
  const std::string what = absl::StrCat("Barrier('", name, "')");
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": timeout ", absl::FormatDuration(timeout),
        " must be > 0 (absl::InfiniteDuration() waits until the job ends)"));
  }
  const absl::Duration effective =
      timeout == absl::InfiniteDuration() ? kBarrierForever : timeout;
  pb::BarrierRequest req;
  req.set_name(name);
  req.set_timeout_ms(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(effective, absl::Milliseconds(1)))));
  for (uint32_t r : ranks) req.add_ranks(r);
  pb::BarrierResponse resp;
  return InvokeKv(what, KvRpcTimeout(timeout),
                  [&](pb::JobStore::Stub* stub, grpc::ClientContext* ctx,
                      const pb::MemberRef& ref, std::function<void(grpc::Status)> done) {
                    *req.mutable_member() = ref;
                    stub->async()->Barrier(ctx, &req, &resp, std::move(done));
                  });
}

absl::Status ClientImpl::PublishRootInfo(const std::string& group, absl::string_view bytes) {
  if (group.empty()) return absl::InvalidArgumentError("PublishRootInfo: empty group name");
  Topology t;
  {
    absl::MutexLock l(&mu_);
    if (session_failed_) return session_status_;
    if (!topology_.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("PublishRootInfo('", group, "') of job ", options_.job_id,
                       " needs a joined session: call Join() first (and not after Leave())"));
    }
    t = *topology_;
  }
  if (IsWorldGroup(group) && t.rank != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "PublishRootInfo('", group, "'): only the group's rank 0 publishes its root info; this is ",
        RoleName(t.role), " rank ", t.rank, " (the others call FetchRootInfo)"));
  }
  return KvSet(RootInfoKey(t.role, group), bytes);
}

absl::StatusOr<std::string> ClientImpl::FetchRootInfo(const std::string& group,
                                                      absl::Duration timeout) {
  if (group.empty()) return absl::InvalidArgumentError("FetchRootInfo: empty group name");
  Role role;
  {
    absl::MutexLock l(&mu_);
    role = topology_.has_value() ? topology_->role : options_.role;
  }
  const std::string key = RootInfoKey(role, group);
  absl::StatusOr<std::string> value = KvGet(key, timeout);
  if (value.ok() || !absl::IsDeadlineExceeded(value.status())) return value;
  // Name the root, so that whoever reads the log knows which process to look at.
  std::string root = absl::StrCat(RoleName(role), " rank 0");
  if (IsWorldGroup(group)) {
    absl::StatusOr<std::vector<MemberInfo>> members = Members();
    bool found = false;
    if (members.ok()) {
      for (const MemberInfo& m : *members) {
        if (m.role == role && m.rank.has_value() && *m.rank == 0) {
          absl::StrAppend(&root, " (node '", m.node_id, "', host ", m.host.empty() ? "?" : m.host,
                          m.host_name.empty() ? "" : absl::StrCat(" ", m.host_name), ", ",
                          MemberStateName(m.state), ")");
          found = true;
          break;
        }
      }
    }
    if (!found) {
      absl::StrAppend(&root, " (host unknown: ",
                      members.ok() ? std::string("not in the member table")
                                   : std::string(members.status().message()),
                      ")");
    }
  } else {
    absl::StrAppend(&root, " of group '", group, "' (group ranks are not known to the daemon)");
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "FetchRootInfo('", group, "'): the root info (key '", key, "') was not published within ",
      TimeoutText(timeout), ": its root is ", root,
      ", which publishes it with PublishRootInfo; daemon: ", value.status().message()));
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
    case JobState::kDegraded:
      return "degraded";
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
    case MemberState::kSuspect:
      return "suspect";
    case MemberState::kDead:
      return "dead";
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
    case JobEventType::kMemberSuspect:
      return "member_suspect";
    case JobEventType::kMemberResumed:
      return "member_resumed";
    case JobEventType::kMemberDead:
      return "member_dead";
    case JobEventType::kMemberRecovered:
      return "member_recovered";
    case JobEventType::kUnknown:
      break;
  }
  return "unknown";
}

absl::string_view SessionEventTypeName(SessionEventType type) {
  switch (type) {
    case SessionEventType::kJobFailed:
      return "job_failed";
    case SessionEventType::kMemberDead:
      return "member_dead";
    case SessionEventType::kMemberRecovered:
      return "member_recovered";
    case SessionEventType::kResumed:
      return "resumed";
    case SessionEventType::kSessionLost:
      return "session_lost";
  }
  return "unknown";
}

std::string DescribeDead(const std::vector<DeadMember>& dead) {
  constexpr size_t kMaxListed = 20;
  std::vector<std::string> parts;
  for (size_t i = 0; i < dead.size() && i < kMaxListed; ++i) {
    const DeadMember& d = dead[i];
    parts.push_back(
        absl::StrCat(RoleName(d.role), d.rank.has_value() ? absl::StrCat(" rank ", *d.rank) : "",
                     " (node '", d.node_id, "', host ", d.host, "): ", d.reason, "; last seen ",
                     absl::StrFormat("%.1f", d.last_seen_s_ago), "s before"));
  }
  if (dead.size() > kMaxListed)
    parts.push_back(absl::StrCat("and ", dead.size() - kMaxListed, " more"));
  return absl::StrJoin(parts, "; ");
}

std::string RootInfoKey(Role role, absl::string_view group) {
  return absl::StrCat(role == Role::kPServer ? "server" : "worker", "_group_info_", group);
}

bool IsWorldGroup(absl::string_view group) {
  return group == "hccl_world_group" || group == "nccl_world_group" ||
         group == "mccl_world_group";
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (absl::Status s = ValidateClientOptions(options); !s.ok()) return s;
  if (options.node_id.empty()) options.node_id = GenerateNodeId();
  if (options.host_name.empty()) options.host_name = LocalHostName();
  absl::StatusOr<std::vector<std::string>> targets = SchedulerTargets(options);
  if (!targets.ok()) return targets.status();

  grpc::ChannelArguments args;
  // gRPC reconnects on its own schedule underneath our Join retry loop; keep it on the same
  // short scale, or a scheduler that starts a few seconds late would be reached only after
  // gRPC's default backoff (up to 120 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(kBackoffInitial)));
  // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also uses it as the minimum connect timeout,
  // and 50 ms abandons connections that a busy daemon (a 10k-member restart) accepts slowly.
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
  // Bandwidth-delay probing sizes windows for bulk transfers; this channel carries messages of a
  // few hundred bytes. With it on, the first data a member receives (its registration) sends a
  // PING the daemon must answer: 13% of the daemon's CPU per join at 8,192 members (bench
  // join, A/B), the same on the member's side.
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      ChannelCredentialsFor(options);
  if (!credentials.ok()) return credentials.status();
  AddTlsChannelArgs(options, &args);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (const std::string& target : *targets) {
    channels.push_back(grpc::CreateCustomChannel(target, *credentials, args));
  }
  return std::unique_ptr<Client>(
      new ClientImpl(std::move(options), *std::move(targets), std::move(channels)));
}

absl::StatusOr<std::unique_ptr<Client>> Client::FromEnv() {
  absl::StatusOr<ClientOptions> options = ClientOptionsFromEnv();
  if (!options.ok()) return options.status();
  return Create(*std::move(options));
}

}  // namespace ms_rendezvous
