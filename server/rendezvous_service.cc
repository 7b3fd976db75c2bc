#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/auth.h"
#include "server/convert.h"
#include "server/rpc_observer.h"
#include "server/services.h"

namespace ms_rendezvous::server {
namespace {

std::atomic<uint64_t> completed_join_calls{0};

// One parked Join. The core holds the completion callback; this reactor only bridges it to
// gRPC and withdraws the member when the client goes away (OnCancel), so that a crashed or
// restarted process can join again with the same node id.
//
// Lifetime: gRPC calls OnDone (which deletes the reactor) only after Finish() ran and the
// handler returned, so the callback may safely use `this` until it calls Finish().
class JoinReactor final : public grpc::ServerUnaryReactor {
 public:
  JoinReactor(core::JobRegistry* registry, grpc::CallbackServerContext* ctx,
              const pb::JoinRequest* req, pb::JoinResponse* resp)
      : registry_(registry), resp_(resp), timer_("Join") {
    absl::StatusOr<core::MemberSpec> spec = SpecFromProto(req->member());
    if (!spec.ok()) {
      Finish(ToGrpc(spec.status()));
      return;
    }
    if (spec->host.empty()) spec->host = HostFromPeer(ctx->peer());
    spec->job_token = JobTokenOf(*ctx);
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

  void OnCancel() override {
    uint64_t waiter = 0;
    {
      absl::MutexLock l(&mu_);
      cancelled_ = true;
      if (completed_) return;
      waiter = waiter_;  // 0 while the constructor has not stored it; it cancels then
    }
    if (waiter != 0) registry_->CancelJoin(job_id_, waiter);
  }

  void OnDone() override {
    completed_join_calls.fetch_add(1, std::memory_order_relaxed);
    timer_.Done();
    delete this;
  }

 private:
  void Complete(const absl::StatusOr<core::Topology>& topo) {
    {
      absl::MutexLock l(&mu_);
      completed_ = true;
    }
    if (topo.ok()) {
      TopologyToProto(*topo, resp_->mutable_topology());
      Finish(grpc::Status::OK);
    } else {
      Finish(ToGrpc(topo.status()));
    }
  }

  core::JobRegistry* const registry_;
  pb::JoinResponse* const resp_;
  RpcTimer timer_;
  std::string job_id_;
  absl::Mutex mu_;
  uint64_t waiter_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool completed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

uint64_t CompletedJoinCalls() { return completed_join_calls.load(std::memory_order_relaxed); }

grpc::ServerUnaryReactor* RendezvousService::Join(grpc::CallbackServerContext* ctx,
                                                  const pb::JoinRequest* req,
                                                  pb::JoinResponse* resp) {
  return new JoinReactor(registry_, ctx, req, resp);
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
