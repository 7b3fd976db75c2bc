// The Session stream: one per member process. Thin: each request is handed to the registry;
// what the core pushes (topology, events, end) is queued and written in order.
//
// Served with gRPC's completion-queue API on SessionServer's own queues, not the callback API:
// every operation in flight holds a tag on its completion queue, and Debian's libgrpc (built
// without NDEBUG) searches a queue's outstanding tags linearly on every completion. The
// callback API puts every call of the process on one shared queue, so with 100,000 sessions
// (two tags each then: the pending read and the call's completion) each heartbeat cost a
// 200,000-entry scan, more than half the daemon's CPU. Spread over SessionServer's queues, with
// one tag per idle stream (its pending read), the scan is a small fraction of that.
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/auth.h"
#include "server/convert.h"
#include "server/rpc_observer.h"
#include "server/services.h"

namespace ms_rendezvous::server {
namespace {

// Posted RequestSession (and RequestJoin) calls per queue: a new call waits in gRPC until one is
// posted, and each accepted call posts the next one at once.
constexpr int kRequestsPerQueue = 32;

// One Session stream. Owns itself: deleted once the call is over (its completion fired) and none
// of its operations is in flight.
class SessionCall {
 public:
  // Posts a RequestSession on `cq`; the call object waits for a stream there.
  static void Post(RendezvousService* service, core::JobRegistry* registry,
                   grpc::ServerCompletionQueue* cq) {
    auto* call = new SessionCall(service, registry, cq);
    // No AsyncNotifyWhenDone: its tag would sit on the queue for the stream's whole life and
    // double what every completion searches (see above). The stream always has a read pending
    // until it ends, and a cancelled stream fails that read, so cancellation is seen anyway.
    service->RequestSession(&call->ctx_, &call->stream_, cq, cq, call->request_tag_.tag());
  }

 private:
  // The core's view of this stream. Outlives the call (the core holds it until it ends the
  // session); every call after the stream is gone is dropped. It also counts the stream's
  // operations in flight, under its mutex, so that the stream is released exactly when the last
  // one came back.
  class Sink final : public core::MemberSession {
   public:
    explicit Sink(SessionCall* call) : call_(call) {}

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
      if (call_ == nullptr || end_.has_value()) return;
      queue_.push_back(std::move(r));
      if (!writing_) {
        writing_ = true;
        WriteFrontLocked();
      }
    }
    // Ends the stream with `status` once everything queued is written. First call wins.
    void End(const absl::Status& status) {
      absl::MutexLock l(&mu_);
      if (call_ == nullptr || end_.has_value()) return;
      end_ = status;
      if (!writing_) FinishLocked();
    }
    // A write came back. Returns true when it was the stream's last operation; sets
    // `*wrote_topology` when the write was a topology that reached the transport.
    bool WriteDone(bool ok, bool* wrote_topology) {
      absl::MutexLock l(&mu_);
      *wrote_topology = ok && queue_.front().has_topology();
      queue_.pop_front();
      if (ok && !queue_.empty()) {
        WriteFrontLocked();
      } else {
        writing_ = false;
        if (!ok && !end_.has_value()) end_ = absl::CancelledError("client gone");
        if (end_.has_value()) FinishLocked();
      }
      return OpDoneLocked();
    }
    // Starts the next read unless the stream is ending. Returns false when it did not.
    bool StartRead(pb::SessionRequest* request) {
      absl::MutexLock l(&mu_);
      if (call_ == nullptr || end_.has_value()) return false;
      ++in_flight_;
      call_->stream_.Read(request, call_->read_tag_.tag());
      return true;
    }
    // An operation other than a write came back (`finish_done`: it was Finish). Returns true
    // when the stream has nothing in flight any more and is over (Finish came back): the
    // caller then deletes the call; every later call of the core is dropped.
    bool OpDone(bool finish_done = false) {
      absl::MutexLock l(&mu_);
      if (finish_done) finish_done_ = true;
      return OpDoneLocked();
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
    void WriteFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      ++in_flight_;
      call_->stream_.Write(queue_.front(), call_->write_tag_.tag());
    }
    void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finished_) return;
      finished_ = true;
      ++in_flight_;
      call_->stream_.Finish(ToGrpc(*end_), call_->finish_tag_.tag());
    }
    bool OpDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      --in_flight_;
      if (in_flight_ > 0 || !finish_done_) return false;
      call_ = nullptr;
      return true;
    }

    absl::Mutex mu_;
    SessionCall* call_ ABSL_GUARDED_BY(mu_);
    std::deque<pb::SessionResponse> queue_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    bool core_ended_ ABSL_GUARDED_BY(mu_) = false;
    // Operations in flight (read, write, Finish). The stream is over once Finish came back and
    // nothing else is in flight.
    int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
    bool finish_done_ ABSL_GUARDED_BY(mu_) = false;
    std::optional<RpcTimer> join_timer_ ABSL_GUARDED_BY(mu_);
    std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);
  };

  SessionCall(RendezvousService* service, core::JobRegistry* registry,
              grpc::ServerCompletionQueue* cq)
      : service_(service), registry_(registry), cq_(cq), stream_(&ctx_) {}

  // A stream arrived (ok), or the server is shutting down (!ok: nothing was started).
  void OnRequest(bool ok) {
    if (!ok) {
      delete this;
      return;
    }
    Post(service_, registry_, cq_);  // the next stream on this queue
    peer_host_ = HostFromPeer(ctx_.peer());
    job_token_ = JobTokenOf(ctx_);
    sink_ = std::make_shared<Sink>(this);
    if (RpcObserver* o = GetRpcObserver()) {
      observer_ = o;
      o->OnSessionOpened();
    }
    sink_->StartRead(&request_);
  }

  void OnReadDone(bool ok) {
    if (!ok) {
      // The client half-closed or the connection broke. Without a Leave that is a lost session.
      LostSession();
      sink_->End(absl::CancelledError("session closed by the client without leaving"));
    } else {
      absl::Status st = Handle(request_);
      if (!st.ok()) {
        sink_->End(st);
      } else {
        sink_->StartRead(&request_);
      }
    }
    MaybeRelease(sink_->OpDone());
  }

  void OnWriteDone(bool ok) {
    bool wrote_topology = false;
    const bool last = sink_->WriteDone(ok, &wrote_topology);
    // The member starts heartbeating once it has its topology: its node timeout runs from now.
    if (wrote_topology && ref_.has_value()) registry_->TopologyDelivered(*ref_).IgnoreError();
    MaybeRelease(last);
  }

  void OnFinishDone(bool) { MaybeRelease(sink_->OpDone(/*finish_done=*/true)); }

  void MaybeRelease(bool last) {
    if (!last) return;
    LostSession();
    if (observer_ != nullptr) observer_->OnSessionClosed();
    delete this;
  }

  absl::Status Handle(const pb::SessionRequest& req) {
    switch (req.body_case()) {
      case pb::SessionRequest::kJoin: {
        if (ref_.has_value()) {
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
        SetRef(*std::move(ref));
        return absl::OkStatus();
      }
      case pb::SessionRequest::kResume: {
        if (ref_.has_value()) {
          return absl::FailedPreconditionError("this session already holds a registration");
        }
        RpcTimer timer("SessionResume");
        absl::StatusOr<core::MemberRef> ref = RefFromProto(req.resume().member());
        if (!ref.ok()) return ref.status();
        absl::Status st = registry_->ResumeSession(*ref, req.resume().generation(), sink_);
        if (!st.ok()) return st;
        SetRef(*std::move(ref));
        return absl::OkStatus();
      }
      case pb::SessionRequest::kHeartbeat: {
        if (!ref_.has_value()) return NotJoined("heartbeat");
        RpcTimer timer("SessionHeartbeat");
        // Errors (job failed, member declared dead or withdrawn, stale incarnation) do NOT end
        // the stream here: the core ends every such session itself, after pushing the event
        // that says why. Ending it from here would race with that event and lose it.
        registry_->Heartbeat(*ref_).IgnoreError();
        return absl::OkStatus();
      }
      case pb::SessionRequest::kReportError: {
        if (!ref_.has_value()) return NotJoined("report_error");
        RpcTimer timer("SessionReportError");
        return registry_->ReportError(*ref_, req.report_error().reason());
      }
      case pb::SessionRequest::kLeave: {
        if (!ref_.has_value()) return NotJoined("leave");
        RpcTimer timer("SessionLeave");
        absl::StatusOr<core::JobState> state = registry_->Leave(*ref_);
        if (!state.ok()) return state.status();
        left_ = true;
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
    if (lost_reported_ || left_ || !ref_.has_value()) return;
    lost_reported_ = true;
    if (sink_->core_ended()) return;
    registry_->SessionClosed(*ref_, sink_.get());
  }

  void SetRef(core::MemberRef ref) { ref_ = std::move(ref); }

  RendezvousService* const service_;
  core::JobRegistry* const registry_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<pb::SessionResponse, pb::SessionRequest> stream_;
  MethodTag<SessionCall> request_tag_{this, &SessionCall::OnRequest};
  MethodTag<SessionCall> read_tag_{this, &SessionCall::OnReadDone};
  MethodTag<SessionCall> write_tag_{this, &SessionCall::OnWriteDone};
  MethodTag<SessionCall> finish_tag_{this, &SessionCall::OnFinishDone};
  std::string peer_host_;
  std::string job_token_;  // x-ms-job-token of the stream (checked at join by the core)
  std::shared_ptr<Sink> sink_;
  RpcObserver* observer_ = nullptr;  // the one told OnSessionOpened, told OnSessionClosed
  pb::SessionRequest request_;
  // Every completion of this call runs on its queue's one thread, so the handlers never run
  // concurrently: the fields below need no lock (the core reaches the stream through sink_).
  std::optional<core::MemberRef> ref_;
  bool left_ = false;
  bool lost_reported_ = false;
};

}  // namespace

void PostSessionCall(RendezvousService* service, core::JobRegistry* registry,
                     grpc::ServerCompletionQueue* cq) {
  SessionCall::Post(service, registry, cq);
}

SessionServer::SessionServer(RendezvousService* service, core::JobRegistry* registry,
                             std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues)
    : service_(service), registry_(registry), queues_(std::move(queues)) {}

SessionServer::~SessionServer() { Shutdown(); }

void SessionServer::Start() {
  for (auto& q : queues_) {
    for (int i = 0; i < kRequestsPerQueue; ++i) {
      PostSessionCall(service_, registry_, q.get());
      PostJoinCall(service_, registry_, q.get());
    }
  }
  for (auto& q : queues_) {
    grpc::ServerCompletionQueue* cq = q.get();
    threads_.emplace_back([cq] {
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) static_cast<QueueTag*>(tag)->Run(ok);
    });
  }
}

void SessionServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  for (auto& q : queues_) q->Shutdown();
  if (threads_.empty()) {  // never started: drain here (nothing was posted)
    void* tag = nullptr;
    bool ok = false;
    for (auto& q : queues_) {
      while (q->Next(&tag, &ok)) static_cast<QueueTag*>(tag)->Run(ok);
    }
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace ms_rendezvous::server
