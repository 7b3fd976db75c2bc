#include <atomic>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/auth.h"
#include "server/convert.h"
#include "server/rpc_observer.h"
#include "server/services.h"

namespace ms_rendezvous::server {
namespace {

std::atomic<uint64_t> completed_join_calls{0};

// One Join call, parked in the core until the member's job is complete. It only bridges the
// core's completion callback to gRPC and withdraws the member when the client goes away (the
// call is cancelled), so that a crashed or restarted process can join again with the same node
// id. Served on SessionServer's queues (see session_service.cc): a parked Join holds a tag on
// its queue until it is answered. Owns itself: deleted once the call's completion fired and the
// answer was sent.
class JoinCall {
 public:
  static void Post(RendezvousService* service, core::JobRegistry* registry,
                   grpc::ServerCompletionQueue* cq) {
    auto* call = new JoinCall(service, registry, cq);
    call->ctx_.AsyncNotifyWhenDone(call->done_tag_.tag());
    service->RequestJoin(&call->ctx_, &call->request_, &call->responder_, cq, cq,
                         call->request_tag_.tag());
  }

 private:
  JoinCall(RendezvousService* service, core::JobRegistry* registry,
           grpc::ServerCompletionQueue* cq)
      : service_(service), registry_(registry), cq_(cq), responder_(&ctx_) {}

  // A call arrived (ok), or the server is shutting down (!ok: nothing was started).
  void OnRequest(bool ok) {
    if (!ok) {
      delete this;
      return;
    }
    Post(service_, registry_, cq_);  // the next Join on this queue
    timer_.emplace("Join");
    absl::StatusOr<core::MemberSpec> spec = SpecFromProto(request_.member());
    if (!spec.ok()) {
      Complete(spec.status());
      return;
    }
    if (spec->host.empty()) spec->host = HostFromPeer(ctx_.peer());
    spec->job_token = JobTokenOf(ctx_);
    job_id_ = spec->job_id;
    const uint64_t waiter = registry_->Join(
        *std::move(spec), [this](absl::StatusOr<core::Topology> topo) { Complete(topo); });
    bool cancel_now = false;
    {
      absl::MutexLock l(&mu_);
      waiter_ = waiter;
      cancel_now = cancelled_ && !completed_;
    }
    if (cancel_now) registry_->CancelJoin(job_id_, waiter);
  }

  // The core's answer (exactly once; any thread).
  void Complete(const absl::StatusOr<core::Topology>& topo) {
    absl::MutexLock l(&mu_);
    completed_ = true;
    if (topo.ok()) {
      TopologyToProto(*topo, response_.mutable_topology());
      delivered_.emplace(core::MemberRef{topo->job_id, topo->role, topo->node_id,
                                         topo->incarnation, topo->credential});
      responder_.Finish(response_, grpc::Status::OK, finish_tag_.tag());
    } else {
      responder_.FinishWithError(ToGrpc(topo.status()), finish_tag_.tag());
    }
  }

  void OnFinishDone(bool ok) {
    bool release = false;
    std::optional<core::MemberRef> delivered;
    {
      absl::MutexLock l(&mu_);
      finish_done_ = true;
      release = call_done_;
      if (ok) delivered = std::move(delivered_);
    }
    // The answer reached the transport: the member's node timeout runs from now.
    if (delivered.has_value()) registry_->TopologyDelivered(*delivered).IgnoreError();
    if (release) Release();
  }

  // The call is over: answered, or cancelled (client gone, deadline, server shutdown).
  void OnCallDone(bool) {
    uint64_t cancel = 0;
    bool release = false;
    {
      absl::MutexLock l(&mu_);
      call_done_ = true;
      if (ctx_.IsCancelled()) {
        cancelled_ = true;
        if (!completed_) cancel = waiter_;  // 0 while OnRequest has not stored it: it cancels
      }
      release = finish_done_;
    }
    // The core completes the waiter with Cancelled, which answers (and so releases) the call.
    if (cancel != 0) registry_->CancelJoin(job_id_, cancel);
    if (release) Release();
  }

  void Release() {
    completed_join_calls.fetch_add(1, std::memory_order_relaxed);
    delete this;
  }

  RendezvousService* const service_;
  core::JobRegistry* const registry_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext ctx_;
  pb::JoinRequest request_;
  pb::JoinResponse response_;
  grpc::ServerAsyncResponseWriter<pb::JoinResponse> responder_;
  MethodTag<JoinCall> request_tag_{this, &JoinCall::OnRequest};
  MethodTag<JoinCall> finish_tag_{this, &JoinCall::OnFinishDone};
  MethodTag<JoinCall> done_tag_{this, &JoinCall::OnCallDone};
  std::optional<RpcTimer> timer_;  // from the call's arrival to its release
  std::string job_id_;
  absl::Mutex mu_;
  uint64_t waiter_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool completed_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_done_ ABSL_GUARDED_BY(mu_) = false;
  bool call_done_ ABSL_GUARDED_BY(mu_) = false;
  // Set when the answer carries a topology: the registration it was for.
  std::optional<core::MemberRef> delivered_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

uint64_t CompletedJoinCalls() { return completed_join_calls.load(std::memory_order_relaxed); }

void PostJoinCall(RendezvousService* service, core::JobRegistry* registry,
                  grpc::ServerCompletionQueue* cq) {
  JoinCall::Post(service, registry, cq);
}

grpc::ServerUnaryReactor* RendezvousService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                       const pb::HeartbeatRequest* req,
                                                       pb::HeartbeatResponse* resp) {
  RpcTimer timer("Heartbeat");
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) {
    reactor->Finish(ToGrpc(ref.status()));
    return reactor;
  }
  absl::StatusOr<core::HeartbeatResult> result = registry_->Heartbeat(*ref);
  if (result.ok()) {
    resp->set_job_state(JobStateToProto(result->job_state));
    resp->set_generation(result->generation);
  }
  reactor->Finish(ToGrpc(result.status()));
  return reactor;
}

grpc::ServerUnaryReactor* RendezvousService::Leave(grpc::CallbackServerContext* ctx,
                                                   const pb::LeaveRequest* req,
                                                   pb::LeaveResponse* resp) {
  RpcTimer timer("Leave");
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) {
    reactor->Finish(ToGrpc(ref.status()));
    return reactor;
  }
  absl::StatusOr<core::JobState> state = registry_->Leave(*ref);
  if (state.ok()) resp->set_job_state(JobStateToProto(*state));
  reactor->Finish(ToGrpc(state.status()));
  return reactor;
}

}  // namespace ms_rendezvous::server
