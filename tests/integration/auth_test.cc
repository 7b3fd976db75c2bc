// Who may call what, through a real in-process server on a loopback port: job tokens in
// metadata, member credentials, the admin token for CreateJob/AbortJob/DeleteJob, and the
// --status-requires-token protection of the status API.
//
// The central check: a member of job A that tries to join, write to, heartbeat, leave, resume,
// report an error or wait at a barrier in job B -- or to act as another member of A -- gets
// PERMISSION_DENIED, and job B is byte-for-byte unchanged as the status API shows it (the
// server runs on a fake clock, so the ages it reports are stable).
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "server/server.h"

namespace ms_rendezvous::server {
namespace {

namespace pb = ::ms::rendezvous::v1;
using ::testing::HasSubstr;

constexpr char kAdminToken[] = "admin-0123456789";

struct Member {
  std::unique_ptr<grpc::ClientContext> ctx = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<grpc::ClientReaderWriter<pb::SessionRequest, pb::SessionResponse>> stream;
  pb::MemberRef ref;
};

class AuthTest : public ::testing::Test {
 protected:
  void Start(bool status_requires_token) {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.clock = &clock_;
    o.auth.admin_token = kAdminToken;
    o.auth.status_requires_token = status_requires_token;
    auto s = RendezvousServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    rdv_ = pb::Rendezvous::NewStub(channel);
    kv_ = pb::JobStore::NewStub(channel);
    admin_ = pb::RendezvousAdmin::NewStub(channel);
  }
  void TearDown() override {
    for (auto& m : members_) m.ctx->TryCancel();
    members_.clear();
  }

  static void AddToken(grpc::ClientContext* ctx, const std::string& token) {
    if (!token.empty()) ctx->AddMetadata("x-ms-job-token", token);
  }
  static void AddAdmin(grpc::ClientContext* ctx, const std::string& token = kAdminToken) {
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
  }

  // Opens a session and joins; returns the status the daemon ended the stream with when the
  // join was refused (OK while the member is registered).
  grpc::Status JoinOne(const std::string& job, const std::string& node, int n,
                       const std::string& token, Member* out) {
    AddToken(out->ctx.get(), token);
    out->stream = rdv_->Session(out->ctx.get());
    pb::SessionRequest req;
    pb::MemberSpec* spec = req.mutable_join()->mutable_member();
    spec->set_job_id(job);
    spec->set_role(pb::ROLE_WORKER);
    spec->set_node_id(node);
    spec->set_device_id(-1);
    spec->set_worker_num(n);
    spec->set_heartbeat_disabled(true);
    spec->set_node_timeout_ms(-1);
    EXPECT_TRUE(out->stream->Write(req));
    pb::SessionResponse r;
    if (!out->stream->Read(&r)) return out->stream->Finish();
    EXPECT_TRUE(r.has_registered());
    out->ref = r.registered();
    return grpc::Status::OK;
  }

  std::vector<pb::MemberRef> JoinJob(const std::string& job, int n, const std::string& token) {
    std::vector<pb::MemberRef> refs;
    for (int i = 0; i < n; ++i) {
      Member m;
      grpc::Status st = JoinOne(job, std::to_string(i), n, token, &m);
      EXPECT_TRUE(st.ok()) << st.error_message();
      refs.push_back(m.ref);
      members_.push_back(std::move(m));
    }
    for (auto& m : members_) {
      pb::SessionResponse r;
      if (m.ref.job_id() != job) continue;
      while (m.stream->Read(&r) && !r.has_topology()) {
      }
      EXPECT_EQ(r.topology().credential(), m.ref.credential());
    }
    return refs;
  }

  // Everything the status API shows about `job`, serialized.
  std::string StatusOf(const std::string& job) {
    grpc::ClientContext c1;
    AddAdmin(&c1);
    pb::GetJobRequest get;
    get.set_job_id(job);
    pb::GetJobResponse got;
    EXPECT_TRUE(admin_->GetJob(&c1, get, &got).ok());
    grpc::ClientContext c2;
    AddAdmin(&c2);
    pb::ListMembersRequest list;
    list.set_job_id(job);
    pb::ListMembersResponse members;
    EXPECT_TRUE(admin_->ListMembers(&c2, list, &members).ok());
    return got.SerializeAsString() + "|" + members.SerializeAsString();
  }

  grpc::Status Set(const pb::MemberRef& ref, const std::string& token, const std::string& key,
                   const std::string& value) {
    grpc::ClientContext ctx;
    AddToken(&ctx, token);
    pb::KvSetRequest req;
    *req.mutable_member() = ref;
    req.set_key(key);
    req.set_value(value);
    pb::KvSetResponse resp;
    return kv_->Set(&ctx, req, &resp);
  }

  core::FakeClock clock_;
  std::unique_ptr<RendezvousServer> server_;
  std::unique_ptr<pb::Rendezvous::Stub> rdv_;
  std::unique_ptr<pb::JobStore::Stub> kv_;
  std::unique_ptr<pb::RendezvousAdmin::Stub> admin_;
  std::vector<Member> members_;
};

TEST_F(AuthTest, CrossJobAndImpersonation_PermissionDenied_OtherJobByteForByteUnchanged) {
  Start(/*status_requires_token=*/false);
  std::vector<pb::MemberRef> a = JoinJob("job-a", 2, "token-a");
  std::vector<pb::MemberRef> b = JoinJob("job-b", 2, "token-b");
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  ASSERT_TRUE(Set(b[0], "token-b", "root_info", "b's").ok());
  const std::string before = StatusOf("job-b");

  // 1. Joining B with A's token, or with none.
  for (const std::string& token : {std::string("token-a"), std::string()}) {
    Member m;
    grpc::Status st = JoinOne("job-b", "extra", 2, token, &m);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr("MS_JOB_TOKEN"));
  }
  // 2. Calls naming a member of B (its incarnation is public) with A's credential.
  pb::MemberRef forged = b[1];
  forged.set_credential(a[0].credential());
  grpc::Status st = Set(forged, "token-a", "root_info", "a's");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  {
    grpc::ClientContext ctx;
    pb::HeartbeatRequest req;
    *req.mutable_member() = forged;
    pb::HeartbeatResponse resp;
    EXPECT_EQ(rdv_->Heartbeat(&ctx, req, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    pb::LeaveRequest req;
    *req.mutable_member() = forged;
    pb::LeaveResponse resp;
    EXPECT_EQ(rdv_->Leave(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    pb::BarrierRequest req;
    *req.mutable_member() = forged;
    req.set_name("sync");
    req.set_timeout_ms(1000);
    pb::BarrierResponse resp;
    EXPECT_EQ(kv_->Barrier(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    // Resuming B's member's session (which would take it over) and reporting an error as it.
    Member m;
    m.stream = rdv_->Session(m.ctx.get());
    pb::SessionRequest req;
    *req.mutable_resume()->mutable_member() = forged;
    ASSERT_TRUE(m.stream->Write(req));
    pb::SessionResponse r;
    EXPECT_FALSE(m.stream->Read(&r));
    EXPECT_EQ(m.stream->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(StatusOf("job-b"), before);

  // 3. Within A: member 0 acting as member 1.
  const std::string a_before = StatusOf("job-a");
  pb::MemberRef as_other = a[1];
  as_other.set_credential(a[0].credential());
  {
    grpc::ClientContext ctx;
    pb::LeaveRequest req;
    *req.mutable_member() = as_other;
    pb::LeaveResponse resp;
    grpc::Status leave = rdv_->Leave(&ctx, req, &resp);
    EXPECT_EQ(leave.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(leave.error_message(), HasSubstr("only as itself"));
  }
  EXPECT_EQ(StatusOf("job-a"), a_before);

  // B's own members still work, and B's key kept its value.
  grpc::ClientContext ctx;
  AddToken(&ctx, "token-b");
  pb::KvGetRequest get;
  *get.mutable_member() = b[1];
  get.set_key("root_info");
  pb::KvGetResponse value;
  ASSERT_TRUE(kv_->Get(&ctx, get, &value).ok());
  EXPECT_EQ(value.value(), "b's");
}

TEST_F(AuthTest, AdminCalls_NeedTheAdminToken) {
  Start(/*status_requires_token=*/false);
  pb::CreateJobRequest create;
  create.set_job_id("pre");
  create.set_worker_num(2);
  create.set_job_token("job-secret");
  pb::CreateJobResponse created;
  {
    grpc::ClientContext ctx;
    grpc::Status st = admin_->CreateJob(&ctx, create, &created);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(st.error_message(), HasSubstr("authorization: Bearer"));
  }
  {
    grpc::ClientContext ctx;
    AddAdmin(&ctx, "wrong");
    EXPECT_EQ(admin_->CreateJob(&ctx, create, &created).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kAdminToken);  // no "Bearer "
    EXPECT_EQ(admin_->CreateJob(&ctx, create, &created).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    // Refusals created nothing: the status API is open and shows no job.
    grpc::ClientContext ctx;
    pb::ListJobsResponse jobs;
    ASSERT_TRUE(admin_->ListJobs(&ctx, pb::ListJobsRequest(), &jobs).ok());
    EXPECT_EQ(jobs.jobs_size(), 0);
  }
  {
    grpc::ClientContext ctx;
    AddAdmin(&ctx);
    grpc::Status st = admin_->CreateJob(&ctx, create, &created);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(created.job().state(), pb::JOB_STATE_FORMING);
  }
  // Members need the job's token now.
  Member intruder;
  EXPECT_EQ(JoinOne("pre", "0", 2, "", &intruder).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  std::vector<pb::MemberRef> refs = JoinJob("pre", 2, "job-secret");
  ASSERT_EQ(refs.size(), 2u);
  ASSERT_TRUE(Set(refs[0], "job-secret", "nccl/root", std::string("id\0bytes", 8)).ok());
  ASSERT_TRUE(Set(refs[1], "job-secret", "other", "v").ok());
  // An operator reads the job's store: values may be secrets, so only with the admin token.
  pb::ListJobKeysRequest keys_req;
  keys_req.set_job_id("pre");
  keys_req.set_prefix("nccl/");
  pb::ListJobKeysResponse keys;
  {
    grpc::ClientContext ctx;
    AddToken(&ctx, "job-secret");  // a member's job token is not enough
    EXPECT_EQ(admin_->ListJobKeys(&ctx, keys_req, &keys).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    AddAdmin(&ctx);
    ASSERT_TRUE(admin_->ListJobKeys(&ctx, keys_req, &keys).ok());
    ASSERT_EQ(keys.entries_size(), 1);
    EXPECT_EQ(keys.entries(0).key(), "nccl/root");
    EXPECT_EQ(keys.entries(0).value(), std::string("id\0bytes", 8));
  }
  pb::AbortJobRequest abort;
  abort.set_job_id("pre");
  abort.set_reason("maintenance window");
  pb::AbortJobResponse aborted;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(admin_->AbortJob(&ctx, abort, &aborted).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    AddAdmin(&ctx);
    ASSERT_TRUE(admin_->AbortJob(&ctx, abort, &aborted).ok());
    EXPECT_EQ(aborted.job().state(), pb::JOB_STATE_FAILED);
    EXPECT_THAT(aborted.job().failure_reason(), HasSubstr("maintenance window"));
  }
  // Every member's session ends with the abort.
  for (auto& m : members_) {
    pb::SessionResponse r;
    bool failed_event = false;
    while (m.stream->Read(&r)) {
      if (r.has_event() && r.event().type() == pb::JOB_EVENT_JOB_FAILED) failed_event = true;
    }
    EXPECT_TRUE(failed_event);
  }
  pb::DeleteJobRequest del;
  del.set_job_id("pre");
  pb::DeleteJobResponse deleted;
  {
    grpc::ClientContext ctx;
    AddAdmin(&ctx, "wrong");
    EXPECT_EQ(admin_->DeleteJob(&ctx, del, &deleted).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    AddAdmin(&ctx);
    ASSERT_TRUE(admin_->DeleteJob(&ctx, del, &deleted).ok());
  }
  grpc::ClientContext ctx;
  pb::GetJobRequest get;
  get.set_job_id("pre");
  pb::GetJobResponse got;
  EXPECT_EQ(admin_->GetJob(&ctx, get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AuthTest, AdminCalls_DisabledWithoutAnAdminToken) {
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  auto s = RendezvousServer::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
  auto admin = pb::RendezvousAdmin::NewStub(
      grpc::CreateChannel((*s)->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  AddAdmin(&ctx, "anything");
  pb::AbortJobRequest req;
  req.set_job_id("x");
  pb::AbortJobResponse resp;
  grpc::Status st = admin->AbortJob(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("--admin-token-file"));
}

TEST_F(AuthTest, ProtectedStatus_AdminTokenOrTheJobsOwnToken) {
  Start(/*status_requires_token=*/true);
  JoinJob("job-a", 1, "token-a");
  JoinJob("job-b", 1, "token-b");
  {
    grpc::ClientContext ctx;
    pb::ListJobsResponse jobs;
    grpc::Status st = admin_->ListJobs(&ctx, pb::ListJobsRequest(), &jobs);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(st.error_message(), HasSubstr("the status API"));
  }
  {
    grpc::ClientContext ctx;
    AddAdmin(&ctx);
    pb::ListJobsResponse jobs;
    ASSERT_TRUE(admin_->ListJobs(&ctx, pb::ListJobsRequest(), &jobs).ok());
    EXPECT_EQ(jobs.jobs_size(), 2);
  }
  pb::GetJobRequest get;
  get.set_job_id("job-a");
  pb::GetJobResponse got;
  {
    grpc::ClientContext ctx;
    AddToken(&ctx, "token-a");  // A's member asks about A
    EXPECT_TRUE(admin_->GetJob(&ctx, get, &got).ok());
  }
  {
    grpc::ClientContext ctx;
    AddToken(&ctx, "token-b");  // B's member asks about A
    EXPECT_EQ(admin_->GetJob(&ctx, get, &got).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    AddToken(&ctx, "token-b");
    pb::WatchJobRequest watch;
    watch.set_job_id("job-a");
    auto reader = admin_->WatchJob(&ctx, watch);
    pb::JobEvent event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
}

}  // namespace
}  // namespace ms_rendezvous::server
