// The Session stream: one per member process. Thin: each request is handed to the registry;
// what the core pushes (topology, events, end) is queued and written in order.
#include <deque>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/auth.h"
#include "server/convert.h"
#include "server/rpc_observer.h"
#include "server/services.h"

namespace ms_rendezvous::server {
namespace {

class SessionReactor final : public grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse> {
 public:
  SessionReactor(core::JobRegistry* registry, grpc::CallbackServerContext* ctx)
      : registry_(registry),
        peer_host_(HostFromPeer(ctx->peer())),
        job_token_(JobTokenOf(*ctx)),
        sink_(std::make_shared<Sink>(this)) {
    if (RpcObserver* o = GetRpcObserver()) {
      observer_ = o;
      o->OnSessionOpened();
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client half-closed or the connection broke. Without a Leave that is a lost session.
      LostSession();
      sink_->End(absl::CancelledError("session closed by the client without leaving"));
      return;
    }
    absl::Status st = Handle(request_);
    if (!st.ok()) {
      sink_->End(st);
      return;
    }
    if (sink_->ended()) return;
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override { sink_->WriteDone(ok); }

  void OnCancel() override {
    LostSession();
    sink_->End(absl::CancelledError("session cancelled"));
  }

  void OnDone() override {
    LostSession();
    sink_->Detach();
    if (observer_ != nullptr) observer_->OnSessionClosed();
    delete this;
  }

 private:
  // The core's view of this stream. Outlives the reactor (the core holds it until it ends the
  // session); every call after the reactor is gone is dropped.
  class Sink final : public core::MemberSession {
   public:
    explicit Sink(SessionReactor* reactor) : reactor_(reactor) {}

    void OnRegistered(const core::MemberRef& ref) override {
      pb::SessionResponse r;
      pb::MemberRef* out = r.mutable_registered();
      out->set_job_id(ref.job_id);
      out->set_role(RoleToProto(ref.role));
      out->set_node_id(ref.node_id);
      out->set_incarnation(ref.incarnation);
      out->set_credential(ref.credential);
      Enqueue(std::move(r));
    }
    void OnTopology(const core::Topology& topology) override {
      pb::SessionResponse r;
      TopologyToProto(topology, r.mutable_topology());
      std::optional<RpcTimer> join;
      {
        absl::MutexLock l(&mu_);
        if (join_timer_.has_value()) {
          join.emplace(std::move(*join_timer_));
          join_timer_.reset();
        }
      }
      Enqueue(std::move(r));
      // "SessionJoin" latency: join received -> topology queued (the whole formation wait).
      if (join.has_value()) join->Done();
    }
    // Starts the SessionJoin latency clock (before the core can deliver the topology).
    void StartJoinClock() {
      absl::MutexLock l(&mu_);
      join_timer_.emplace("SessionJoin");
    }
    void OnEvent(const core::JobEvent& event) override {
      pb::SessionResponse r;
      JobEventToProto(event, r.mutable_event());
      Enqueue(std::move(r));
    }
    void OnEnd(const absl::Status& status) override {
      {
        absl::MutexLock l(&mu_);
        core_ended_ = true;
      }
      End(status);
    }

    void Enqueue(pb::SessionResponse r) {
      absl::MutexLock l(&mu_);
      if (reactor_ == nullptr || end_.has_value()) return;
      queue_.push_back(std::move(r));
      if (!writing_) {
        writing_ = true;
        reactor_->StartWrite(&queue_.front());
      }
    }
    // Ends the stream with `status` once everything queued is written. First call wins.
    void End(const absl::Status& status) {
      absl::MutexLock l(&mu_);
      if (reactor_ == nullptr || end_.has_value()) return;
      end_ = status;
      if (!writing_) FinishLocked();
    }
    void WriteDone(bool ok) {
      absl::MutexLock l(&mu_);
      if (reactor_ == nullptr) return;
      queue_.pop_front();
      if (ok && !queue_.empty()) {
        reactor_->StartWrite(&queue_.front());
        return;
      }
      writing_ = false;
      if (!ok && !end_.has_value()) end_ = absl::CancelledError("client gone");
      if (end_.has_value()) FinishLocked();
    }
    void Detach() {
      absl::MutexLock l(&mu_);
      reactor_ = nullptr;
    }
    bool ended() {
      absl::MutexLock l(&mu_);
      return end_.has_value();
    }
    bool core_ended() {
      absl::MutexLock l(&mu_);
      return core_ended_;
    }

   private:
    void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finished_) return;
      finished_ = true;
      reactor_->Finish(ToGrpc(*end_));
    }

    absl::Mutex mu_;
    SessionReactor* reactor_ ABSL_GUARDED_BY(mu_);
    std::deque<pb::SessionResponse> queue_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    bool core_ended_ ABSL_GUARDED_BY(mu_) = false;
    std::optional<RpcTimer> join_timer_ ABSL_GUARDED_BY(mu_);
    std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);
  };

  absl::Status Handle(const pb::SessionRequest& req) {
    switch (req.body_case()) {
      case pb::SessionRequest::kJoin: {
        if (Ref().has_value()) {
          return absl::FailedPreconditionError(
              "this session already joined; open a new session to join again");
        }
        absl::StatusOr<core::MemberSpec> spec = SpecFromProto(req.join().member());
        if (!spec.ok()) return spec.status();
        if (spec->host.empty()) spec->host = peer_host_;
        spec->job_token = job_token_;
        sink_->StartJoinClock();
        absl::StatusOr<core::MemberRef> ref = registry_->JoinSession(*std::move(spec), sink_);
        if (!ref.ok()) return ref.status();
        SetRef(*ref);
        return absl::OkStatus();
      }
      case pb::SessionRequest::kResume: {
        if (Ref().has_value()) {
          return absl::FailedPreconditionError("this session already holds a registration");
        }
        RpcTimer timer("SessionResume");
        absl::StatusOr<core::MemberRef> ref = RefFromProto(req.resume().member());
        if (!ref.ok()) return ref.status();
        absl::Status st = registry_->ResumeSession(*ref, req.resume().generation(), sink_);
        if (!st.ok()) return st;
        SetRef(*ref);
        return absl::OkStatus();
      }
      case pb::SessionRequest::kHeartbeat: {
        auto ref = Ref();
        if (!ref.has_value()) return NotJoined("heartbeat");
        RpcTimer timer("SessionHeartbeat");
        // Errors (job failed, member declared dead or withdrawn, stale incarnation) do NOT end
        // the stream here: the core ends every such session itself, after pushing the event
        // that says why. Ending it from here would race with that event and lose it.
        registry_->Heartbeat(*ref).IgnoreError();
        return absl::OkStatus();
      }
      case pb::SessionRequest::kReportError: {
        auto ref = Ref();
        if (!ref.has_value()) return NotJoined("report_error");
        RpcTimer timer("SessionReportError");
        return registry_->ReportError(*ref, req.report_error().reason());
      }
      case pb::SessionRequest::kLeave: {
        auto ref = Ref();
        if (!ref.has_value()) return NotJoined("leave");
        RpcTimer timer("SessionLeave");
        absl::StatusOr<core::JobState> state = registry_->Leave(*ref);
        if (!state.ok()) return state.status();
        {
          absl::MutexLock l(&mu_);
          left_ = true;
        }
        sink_->End(absl::OkStatus());
        return absl::OkStatus();
      }
      case pb::SessionRequest::BODY_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError(
        "empty SessionRequest: set one of join, resume, heartbeat, report_error, leave");
  }

  static absl::Status NotJoined(const char* what) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " before join or resume: the first message of a session must be "
                           "join or resume"));
  }

  // Tells the core once that the stream is gone, unless the member left or the core itself
  // ended the session (job failed, replaced, shutdown).
  void LostSession() {
    std::optional<core::MemberRef> ref;
    {
      absl::MutexLock l(&mu_);
      if (lost_reported_ || left_ || !ref_.has_value()) return;
      lost_reported_ = true;
      ref = ref_;
    }
    if (sink_->core_ended()) return;
    registry_->SessionClosed(*ref, sink_.get());
  }

  std::optional<core::MemberRef> Ref() {
    absl::MutexLock l(&mu_);
    return ref_;
  }
  void SetRef(const core::MemberRef& ref) {
    absl::MutexLock l(&mu_);
    ref_ = ref;
  }

  core::JobRegistry* const registry_;
  const std::string peer_host_;
  const std::string job_token_;  // x-ms-job-token of the stream (checked at join by the core)
  const std::shared_ptr<Sink> sink_;
  RpcObserver* observer_ = nullptr;  // the one told OnSessionOpened, told OnSessionClosed
  pb::SessionRequest request_;
  absl::Mutex mu_;
  std::optional<core::MemberRef> ref_ ABSL_GUARDED_BY(mu_);
  bool left_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_reported_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>* RendezvousService::Session(
    grpc::CallbackServerContext* ctx) {
  return new SessionReactor(registry_, ctx);
}

}  // namespace ms_rendezvous::server
