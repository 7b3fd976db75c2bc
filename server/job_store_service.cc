// JobStore: the job key/value store and barriers over gRPC. Thin: each handler converts proto <->
// core and calls the registry. Blocking calls (Get, Wait, Barrier) park in the core; their
// reactors withdraw the waiter when the client cancels or goes away (OnCancel).
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/convert.h"
#include "server/rpc_observer.h"
#include "server/services.h"

namespace ms_rendezvous::server {
namespace {

constexpr uint32_t kDefaultListPage = 1000;
constexpr uint32_t kMaxListPage = 10000;

// 0 -> try once, negative -> until the job ends.
absl::Duration TimeoutFromMs(int64_t ms) {
  if (ms < 0) return absl::InfiniteDuration();
  return absl::Milliseconds(ms);
}

grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* ctx, const absl::Status& st) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(st));
  return reactor;
}

// A unary call parked in the core. The core's callback runs Complete() exactly once; OnCancel
// withdraws the waiter (the core then completes it with Cancelled). gRPC calls OnDone only after
// Finish() ran and the handler returned, so `this` is valid until Complete() finishes.
class ParkedCall final : public grpc::ServerUnaryReactor {
 public:
  ParkedCall(core::JobRegistry* registry, std::string job_id, const char* method)
      : registry_(registry), job_id_(std::move(job_id)), timer_(method) {}

  // `start` registers the waiter and returns its id (0 when the result is already final).
  template <typename Start>
  void Park(Start start) {
    const uint64_t id = start();
    bool cancel_now = false;
    {
      absl::MutexLock l(&mu_);
      waiter_ = id;
      cancel_now = cancelled_ && !completed_ && id != 0;
    }
    if (cancel_now) registry_->CancelWaiter(job_id_, id);
  }

  void Complete(const absl::Status& status) {
    {
      absl::MutexLock l(&mu_);
      completed_ = true;
    }
    Finish(ToGrpc(status));
  }

  void OnCancel() override {
    uint64_t id = 0;
    {
      absl::MutexLock l(&mu_);
      cancelled_ = true;
      if (completed_) return;
      id = waiter_;
    }
    if (id != 0) registry_->CancelWaiter(job_id_, id);
  }

  void OnDone() override {
    timer_.Done();
    delete this;
  }

 private:
  core::JobRegistry* const registry_;
  const std::string job_id_;
  RpcTimer timer_;
  absl::Mutex mu_;
  uint64_t waiter_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool completed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerUnaryReactor* JobStoreService::Set(grpc::CallbackServerContext* ctx,
                                               const pb::KvSetRequest* req, pb::KvSetResponse*) {
  RpcTimer timer("KvSet");
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) return Finished(ctx, ref.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  registry_->KvSet(*ref, req->key(), req->value(),
                   [reactor, timer = std::move(timer)](absl::Status st) mutable {
                     reactor->Finish(ToGrpc(st));
                   });
  return reactor;
}

grpc::ServerUnaryReactor* JobStoreService::Get(grpc::CallbackServerContext* ctx,
                                               const pb::KvGetRequest* req,
                                               pb::KvGetResponse* resp) {
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) return Finished(ctx, ref.status());
  auto* call = new ParkedCall(registry_, ref->job_id, "KvGet");
  call->Park([&] {
    return registry_->KvGet(*ref, req->key(), TimeoutFromMs(req->timeout_ms()),
                            [call, resp](absl::StatusOr<std::string> value) {
                              if (value.ok()) resp->set_value(*std::move(value));
                              call->Complete(value.status());
                            });
  });
  return call;
}

grpc::ServerUnaryReactor* JobStoreService::Wait(grpc::CallbackServerContext* ctx,
                                                const pb::KvWaitRequest* req,
                                                pb::KvWaitResponse*) {
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) return Finished(ctx, ref.status());
  std::vector<std::string> keys(req->keys().begin(), req->keys().end());
  auto* call = new ParkedCall(registry_, ref->job_id, "KvWait");
  call->Park([&] {
    return registry_->KvWait(*ref, keys, TimeoutFromMs(req->timeout_ms()),
                             [call](absl::Status st) { call->Complete(st); });
  });
  return call;
}

grpc::ServerUnaryReactor* JobStoreService::Add(grpc::CallbackServerContext* ctx,
                                               const pb::KvAddRequest* req,
                                               pb::KvAddResponse* resp) {
  RpcTimer timer("KvAdd");
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) return Finished(ctx, ref.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  registry_->KvAdd(*ref, req->key(), req->delta(),
                   [reactor, resp, timer = std::move(timer)](absl::StatusOr<int64_t> value) mutable {
                     if (value.ok()) resp->set_value(*value);
                     reactor->Finish(ToGrpc(value.status()));
                   });
  return reactor;
}

grpc::ServerUnaryReactor* JobStoreService::CompareSet(grpc::CallbackServerContext* ctx,
                                                      const pb::KvCompareSetRequest* req,
                                                      pb::KvCompareSetResponse* resp) {
  RpcTimer timer("KvCompareSet");
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) return Finished(ctx, ref.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  registry_->KvCompareSet(*ref, req->key(), req->expected(), req->desired(),
                          [reactor, resp, timer = std::move(timer)](
                              absl::StatusOr<core::CompareSetResult> r) mutable {
                            if (r.ok()) {
                              resp->set_value(std::move(r->value));
                              resp->set_swapped(r->swapped);
                            }
                            reactor->Finish(ToGrpc(r.status()));
                          });
  return reactor;
}

grpc::ServerUnaryReactor* JobStoreService::Delete(grpc::CallbackServerContext* ctx,
                                                  const pb::KvDeleteRequest* req,
                                                  pb::KvDeleteResponse* resp) {
  RpcTimer timer("KvDelete");
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) return Finished(ctx, ref.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  registry_->KvDelete(*ref, req->key(), [reactor, resp, timer = std::move(timer)](
                                                 absl::StatusOr<bool> deleted) mutable {
    if (deleted.ok()) resp->set_deleted(*deleted);
    reactor->Finish(ToGrpc(deleted.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* JobStoreService::List(grpc::CallbackServerContext* ctx,
                                                const pb::KvListRequest* req,
                                                pb::KvListResponse* resp) {
  RpcTimer timer("KvList");
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) return Finished(ctx, ref.status());
  uint32_t page = req->page_size() == 0 ? kDefaultListPage : req->page_size();
  if (page > kMaxListPage) {
    return Finished(ctx, absl::InvalidArgumentError(absl::StrCat(
                             "page_size=", req->page_size(), " is too large: allowed 1..",
                             kMaxListPage, " (0: ", kDefaultListPage, ")")));
  }
  absl::StatusOr<core::KvPage> result =
      registry_->KvList(*ref, req->prefix(), req->page_token(), page);
  if (!result.ok()) return Finished(ctx, result.status());
  for (auto& [key, value] : result->entries) {
    pb::KvEntry* e = resp->add_entries();
    e->set_key(key);
    e->set_value(value);
  }
  if (result->more) resp->set_next_page_token(result->next_after);
  return Finished(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* JobStoreService::NumKeys(grpc::CallbackServerContext* ctx,
                                                   const pb::KvNumKeysRequest* req,
                                                   pb::KvNumKeysResponse* resp) {
  RpcTimer timer("KvNumKeys");
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) return Finished(ctx, ref.status());
  absl::StatusOr<uint64_t> n = registry_->KvNumKeys(*ref);
  if (n.ok()) resp->set_num_keys(*n);
  return Finished(ctx, n.status());
}

grpc::ServerUnaryReactor* JobStoreService::Barrier(grpc::CallbackServerContext* ctx,
                                                   const pb::BarrierRequest* req,
                                                   pb::BarrierResponse*) {
  absl::StatusOr<core::MemberRef> ref = RefFromProto(req->member());
  if (!ref.ok()) return Finished(ctx, ref.status());
  std::vector<uint32_t> ranks(req->ranks().begin(), req->ranks().end());
  auto* call = new ParkedCall(registry_, ref->job_id, "Barrier");
  call->Park([&] {
    return registry_->Barrier(*ref, req->name(), absl::Milliseconds(req->timeout_ms()), ranks,
                              [call](absl::Status st) { call->Complete(st); });
  });
  return call;
}

}  // namespace ms_rendezvous::server
