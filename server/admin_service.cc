#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/convert.h"
#include "server/rpc_observer.h"
#include "server/services.h"

namespace ms_rendezvous::server {
namespace {

constexpr uint32_t kDefaultJobsPage = 100;
constexpr uint32_t kMaxJobsPage = 1000;
constexpr uint32_t kDefaultMembersPage = 1000;
constexpr uint32_t kMaxMembersPage = 10000;
constexpr size_t kMaxAbortReasonBytes = 1024;
constexpr uint32_t kDefaultKeysPage = 1000;
constexpr uint32_t kMaxKeysPage = 10000;

// A WatchJob refused before it started (authorization): finishes at once.
class RefusedWatch final : public grpc::ServerWriteReactor<pb::JobEvent> {
 public:
  explicit RefusedWatch(const absl::Status& status) { Finish(ToGrpc(status)); }
  void OnDone() override { delete this; }
};

absl::StatusOr<uint32_t> PageSize(uint32_t requested, uint32_t dflt, uint32_t max,
                                  const char* field) {
  if (requested == 0) return dflt;
  if (requested > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, "=", requested, " is too large: allowed 1..", max, " (0: ", dflt, ")"));
  }
  return requested;
}

// Member page tokens are the decimal offset of the next member.
absl::StatusOr<uint64_t> OffsetFromToken(const std::string& token) {
  if (token.empty()) return 0;
  uint64_t offset = 0;
  if (!absl::SimpleAtoi(token, &offset)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_token=\"", token.substr(0, 64),
        "\" is not a token this daemon issued: pass next_page_token from the previous response"));
  }
  return offset;
}

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& st) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(st));
  return reactor;
}

// Streams one job's events. The core delivers events in order (never concurrently) to the
// Sink, which queues them and writes one at a time; the Sink outlives the reactor because the
// core holds it until Unwatch.
class WatchReactor final : public grpc::ServerWriteReactor<pb::JobEvent> {
 public:
  WatchReactor(core::JobRegistry* registry, const std::string& job_id)
      : registry_(registry),
        job_id_(job_id),
        sink_(std::make_shared<Sink>(this, registry->options().max_watch_backlog)) {
    absl::StatusOr<uint64_t> id = registry_->Watch(job_id, sink_);
    if (!id.ok()) {
      sink_->End(id.status());
      return;
    }
    absl::MutexLock l(&mu_);
    watch_id_ = *id;
  }

  void OnWriteDone(bool ok) override { sink_->WriteDone(ok); }
  void OnCancel() override { sink_->End(absl::CancelledError("watch cancelled by the client")); }
  void OnDone() override {
    sink_->Detach();
    uint64_t id;
    {
      absl::MutexLock l(&mu_);
      id = watch_id_;
    }
    if (id != 0) registry_->Unwatch(job_id_, id);
    delete this;
  }

 private:
  class Sink final : public core::JobWatcher {
   public:
    Sink(WatchReactor* reactor, size_t max_backlog)
        : reactor_(reactor), max_backlog_(max_backlog) {}

    void OnEvent(const core::JobEvent& event) override {
      absl::MutexLock l(&mu_);
      if (reactor_ == nullptr || finished_ || end_status_.has_value()) return;
      if (queue_.size() >= max_backlog_) {
        // The client reads slower than the job changes: cut it off rather than buffer without
        // bound. It may watch again and gets a fresh snapshot.
        end_status_ = absl::ResourceExhaustedError(absl::StrCat(
            "watcher fell ", queue_.size(), " events behind (--max-watch-backlog); watch again"));
        // Drop what was not sent; the write in flight completes, then Finish runs.
        if (writing_) queue_.erase(queue_.begin() + 1, queue_.end());
        if (!writing_) FinishLocked();
        return;
      }
      queue_.emplace_back();
      JobEventToProto(event, &queue_.back());
      if (!writing_) {
        writing_ = true;
        reactor_->StartWrite(&queue_.front());
      }
    }
    void OnEnd(const absl::Status& status) override { End(status); }

    void End(const absl::Status& status) {
      absl::MutexLock l(&mu_);
      if (reactor_ == nullptr || finished_ || end_status_.has_value()) return;
      end_status_ = status;
      if (!writing_) FinishLocked();
    }
    void WriteDone(bool ok) {
      absl::MutexLock l(&mu_);
      if (reactor_ == nullptr) return;
      queue_.pop_front();
      if (!ok) {  // the client is gone; OnCancel/OnDone follow
        writing_ = false;
        if (!finished_) {
          finished_ = true;
          reactor_->Finish(grpc::Status::CANCELLED);
        }
        return;
      }
      if (!queue_.empty() && !finished_) {
        reactor_->StartWrite(&queue_.front());
        return;
      }
      writing_ = false;
      if (end_status_.has_value()) FinishLocked();
    }
    void Detach() {
      absl::MutexLock l(&mu_);
      reactor_ = nullptr;
    }

   private:
    void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finished_) return;
      finished_ = true;
      reactor_->Finish(ToGrpc(*end_status_));
    }

    absl::Mutex mu_;
    WatchReactor* reactor_ ABSL_GUARDED_BY(mu_);
    const size_t max_backlog_;
    std::deque<pb::JobEvent> queue_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    std::optional<absl::Status> end_status_ ABSL_GUARDED_BY(mu_);
  };

  core::JobRegistry* const registry_;
  const std::string job_id_;
  const std::shared_ptr<Sink> sink_;
  absl::Mutex mu_;
  uint64_t watch_id_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::Status AdminService::CheckRead(const grpc::ServerContextBase& ctx,
                                     const std::string& job_id) {
  absl::Status st = auth_->CheckRead(ctx);
  if (st.ok()) return st;
  // A protected status API still answers a job's own members about their job.
  if (registry_->JobTokenMatches(job_id, JobTokenOf(ctx))) return absl::OkStatus();
  return st;
}

grpc::ServerUnaryReactor* AdminService::ListJobs(grpc::CallbackServerContext* ctx,
                                                 const pb::ListJobsRequest* req,
                                                 pb::ListJobsResponse* resp) {
  RpcTimer timer("ListJobs");
  if (absl::Status st = auth_->CheckRead(*ctx); !st.ok()) return Done(ctx, st);
  absl::StatusOr<uint32_t> size =
      PageSize(req->page_size(), kDefaultJobsPage, kMaxJobsPage, "page_size");
  if (!size.ok()) return Done(ctx, size.status());
  // Job page tokens are the last job id of the previous page (jobs are ordered by id).
  std::vector<core::JobSummary> jobs = registry_->ListJobs(req->page_token(), *size + 1);
  const bool more = jobs.size() > *size;
  if (more) jobs.pop_back();
  for (const auto& j : jobs) JobSummaryToProto(j, resp->add_jobs());
  if (more && !jobs.empty()) resp->set_next_page_token(jobs.back().job_id);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminService::GetJob(grpc::CallbackServerContext* ctx,
                                               const pb::GetJobRequest* req,
                                               pb::GetJobResponse* resp) {
  RpcTimer timer("GetJob");
  if (absl::Status st = CheckRead(*ctx, req->job_id()); !st.ok()) return Done(ctx, st);
  absl::StatusOr<uint32_t> size =
      PageSize(req->max_members(), kDefaultMembersPage, kMaxMembersPage, "max_members");
  if (!size.ok()) return Done(ctx, size.status());
  absl::StatusOr<core::JobSummary> job = registry_->GetJob(req->job_id());
  if (!job.ok()) return Done(ctx, job.status());
  JobSummaryToProto(*job, resp->mutable_job());
  absl::StatusOr<core::MemberPage> page = registry_->ListMembers(req->job_id(), 0, *size);
  if (page.ok()) {
    for (const auto& m : page->members) MemberInfoToProto(m, resp->add_members());
    if (page->next_offset != 0) resp->set_next_page_token(std::to_string(page->next_offset));
  }
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminService::ListMembers(grpc::CallbackServerContext* ctx,
                                                    const pb::ListMembersRequest* req,
                                                    pb::ListMembersResponse* resp) {
  RpcTimer timer("ListMembers");
  if (absl::Status st = CheckRead(*ctx, req->job_id()); !st.ok()) return Done(ctx, st);
  absl::StatusOr<uint32_t> size =
      PageSize(req->page_size(), kDefaultMembersPage, kMaxMembersPage, "page_size");
  if (!size.ok()) return Done(ctx, size.status());
  absl::StatusOr<uint64_t> offset = OffsetFromToken(req->page_token());
  if (!offset.ok()) return Done(ctx, offset.status());
  absl::StatusOr<core::MemberPage> page = registry_->ListMembers(req->job_id(), *offset, *size);
  if (!page.ok()) return Done(ctx, page.status());
  for (const auto& m : page->members) MemberInfoToProto(m, resp->add_members());
  if (page->next_offset != 0) resp->set_next_page_token(std::to_string(page->next_offset));
  resp->set_total(page->total);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerWriteReactor<pb::JobEvent>* AdminService::WatchJob(grpc::CallbackServerContext* ctx,
                                                               const pb::WatchJobRequest* req) {
  if (absl::Status st = CheckRead(*ctx, req->job_id()); !st.ok()) return new RefusedWatch(st);
  return new WatchReactor(registry_, req->job_id());
}

grpc::ServerUnaryReactor* AdminService::CreateJob(grpc::CallbackServerContext* ctx,
                                                  const pb::CreateJobRequest* req,
                                                  pb::CreateJobResponse* resp) {
  RpcTimer timer("CreateJob");
  if (absl::Status st = auth_->CheckWrite(*ctx, "CreateJob"); !st.ok()) return Done(ctx, st);
  core::MemberSpec spec;
  spec.job_id = req->job_id();
  spec.worker_num = req->worker_num();
  spec.server_num = req->server_num();
  spec.topo_timeout_ms = req->topo_timeout_ms();
  spec.node_timeout_ms = req->node_timeout_ms();
  spec.enable_recovery = req->enable_recovery();
  spec.job_token = req->job_token();
  absl::StatusOr<core::JobSummary> job = registry_->CreateJob(std::move(spec));
  if (!job.ok()) return Done(ctx, job.status());
  JobSummaryToProto(*job, resp->mutable_job());
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminService::AbortJob(grpc::CallbackServerContext* ctx,
                                                 const pb::AbortJobRequest* req,
                                                 pb::AbortJobResponse* resp) {
  RpcTimer timer("AbortJob");
  if (absl::Status st = auth_->CheckWrite(*ctx, "AbortJob"); !st.ok()) return Done(ctx, st);
  if (req->reason().size() > kMaxAbortReasonBytes) {
    return Done(ctx, absl::InvalidArgumentError(absl::StrCat(
                         "reason is ", req->reason().size(), " bytes long: allowed up to ",
                         kMaxAbortReasonBytes)));
  }
  const std::string reason = req->reason().empty() ? "no reason given" : req->reason();
  if (absl::Status st = registry_->AbortJob(req->job_id(), reason); !st.ok()) {
    return Done(ctx, st);
  }
  absl::StatusOr<core::JobSummary> job = registry_->GetJob(req->job_id());
  if (job.ok()) JobSummaryToProto(*job, resp->mutable_job());
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminService::ListJobKeys(grpc::CallbackServerContext* ctx,
                                                    const pb::ListJobKeysRequest* req,
                                                    pb::ListJobKeysResponse* resp) {
  RpcTimer timer("ListJobKeys");
  if (absl::Status st = auth_->CheckWrite(*ctx, "ListJobKeys"); !st.ok()) return Done(ctx, st);
  absl::StatusOr<uint32_t> size = PageSize(req->page_size(), kDefaultKeysPage, kMaxKeysPage,
                                           "page_size");
  if (!size.ok()) return Done(ctx, size.status());
  absl::StatusOr<core::KvPage> page =
      registry_->OperatorKvList(req->job_id(), req->prefix(), req->page_token(), *size);
  if (!page.ok()) return Done(ctx, page.status());
  for (auto& [key, value] : page->entries) {
    pb::KvEntry* e = resp->add_entries();
    e->set_key(key);
    e->set_value(value);
  }
  if (page->more) resp->set_next_page_token(page->next_after);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminService::GetServerInfo(grpc::CallbackServerContext* ctx,
                                                      const pb::GetServerInfoRequest*,
                                                      pb::ServerInfo* resp) {
  RpcTimer timer("GetServerInfo");
  if (absl::Status st = auth_->CheckRead(*ctx); !st.ok()) return Done(ctx, st);
  resp->set_role(identity_->role);
  resp->set_self(identity_->self);
  resp->set_leader(identity_->role == "leader" ? identity_->self : "");
  resp->set_store(identity_->store);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminService::DeleteJob(grpc::CallbackServerContext* ctx,
                                                  const pb::DeleteJobRequest* req,
                                                  pb::DeleteJobResponse*) {
  RpcTimer timer("DeleteJob");
  if (absl::Status st = auth_->CheckWrite(*ctx, "DeleteJob"); !st.ok()) return Done(ctx, st);
  return Done(ctx, registry_->DeleteJob(req->job_id()));
}

}  // namespace ms_rendezvous::server
