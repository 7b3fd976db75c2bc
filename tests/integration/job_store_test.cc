// JobStore over a real in-process server: the KV and barrier RPCs as remote members see them.
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "server/server.h"

namespace ms_rendezvous::server {
namespace {

namespace pb = ::ms::rendezvous::v1;
using ::testing::AllOf;
using ::testing::HasSubstr;

// A member holding a session (so it is alive for the whole test).
struct Member {
  std::unique_ptr<grpc::ClientContext> ctx = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<grpc::ClientReaderWriter<pb::SessionRequest, pb::SessionResponse>> stream;
  pb::MemberRef ref;
};

class JobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.registry.kv_limits.max_value_bytes = 1000;
    o.registry.kv_limits.max_keys_per_job = 50;
    Configure(o);
    auto s = RendezvousServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    rdv_ = pb::Rendezvous::NewStub(channel);
    kv_ = pb::JobStore::NewStub(channel);
  }
  virtual void Configure(ServerOptions& o) {}
  void TearDown() override {
    for (auto& m : members_) m.ctx->TryCancel();
    members_.clear();
  }

  // Joins `n` members of `job` (numeric node ids) and waits for their topologies.
  std::vector<pb::MemberRef> JoinJob(const std::string& job, int n) {
    std::vector<pb::MemberRef> refs;
    size_t first = members_.size();
    for (int i = 0; i < n; ++i) {
      Member m;
      m.stream = rdv_->Session(m.ctx.get());
      pb::SessionRequest req;
      pb::MemberSpec* spec = req.mutable_join()->mutable_member();
      spec->set_job_id(job);
      spec->set_role(pb::ROLE_WORKER);
      spec->set_node_id(std::to_string(i));
      spec->set_device_id(-1);
      spec->set_worker_num(n);
      EXPECT_TRUE(m.stream->Write(req));
      members_.push_back(std::move(m));
    }
    for (size_t i = first; i < members_.size(); ++i) {
      pb::SessionResponse r;
      while (members_[i].stream->Read(&r) && !r.has_topology()) {
      }
      pb::MemberRef ref;
      ref.set_job_id(job);
      ref.set_role(pb::ROLE_WORKER);
      ref.set_node_id(r.topology().node_id());
      ref.set_incarnation(r.topology().incarnation());
      ref.set_credential(r.topology().credential());
      refs.push_back(ref);
    }
    return refs;
  }

  grpc::Status Set(const pb::MemberRef& ref, const std::string& key, const std::string& value) {
    grpc::ClientContext ctx;
    pb::KvSetRequest req;
    *req.mutable_member() = ref;
    req.set_key(key);
    req.set_value(value);
    pb::KvSetResponse resp;
    return kv_->Set(&ctx, req, &resp);
  }

  grpc::Status Get(const pb::MemberRef& ref, const std::string& key, int64_t timeout_ms,
                   std::string* value, absl::Duration client_deadline = absl::Seconds(30)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + client_deadline));
    pb::KvGetRequest req;
    *req.mutable_member() = ref;
    req.set_key(key);
    req.set_timeout_ms(timeout_ms);
    pb::KvGetResponse resp;
    grpc::Status st = kv_->Get(&ctx, req, &resp);
    if (value != nullptr) *value = resp.value();
    return st;
  }

  grpc::Status Barrier(const pb::MemberRef& ref, const std::string& name, int64_t timeout_ms) {
    grpc::ClientContext ctx;
    pb::BarrierRequest req;
    *req.mutable_member() = ref;
    req.set_name(name);
    req.set_timeout_ms(timeout_ms);
    pb::BarrierResponse resp;
    return kv_->Barrier(&ctx, req, &resp);
  }

  std::unique_ptr<RendezvousServer> server_;
  std::unique_ptr<pb::Rendezvous::Stub> rdv_;
  std::unique_ptr<pb::JobStore::Stub> kv_;
  std::vector<Member> members_;
};

TEST_F(JobStoreTest, BlockingGet_ReleasedBySetFromAnotherMember) {
  auto refs = JoinJob("kv", 2);
  auto waiter = std::async(std::launch::async, [&] {
    std::string v;
    grpc::Status st = Get(refs[1], "root_info", -1, &v);
    return std::make_pair(st, v);
  });
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_TRUE(Set(refs[0], "root_info", std::string("\0unique-id", 10)).ok());
  auto [st, v] = waiter.get();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(v, std::string("\0unique-id", 10));
}

TEST_F(JobStoreTest, GetTimeout_DeadlineExceededNamingKey_TryGetNotFound) {
  auto refs = JoinJob("kv", 1);
  grpc::Status st = Get(refs[0], "never", 200, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(st.error_message(), HasSubstr("'never'"));
  st = Get(refs[0], "never", 0, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(JobStoreTest, ClientCancelsGet_WaiterFreed_OthersStillReleased) {
  auto refs = JoinJob("kv", 2);
  // The client gives up first (its own deadline): the daemon must drop that waiter.
  grpc::Status st = Get(refs[0], "late", -1, nullptr, absl::Milliseconds(200));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  auto other = std::async(std::launch::async, [&] { return Get(refs[1], "late", -1, nullptr); });
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_TRUE(Set(refs[0], "late", "x").ok());
  EXPECT_TRUE(other.get().ok());
}

TEST_F(JobStoreTest, Limits_ResourceExhaustedNamingTheFlag_NothingChanged) {
  auto refs = JoinJob("kv", 1);
  ASSERT_TRUE(Set(refs[0], "k", "small").ok());
  grpc::Status st = Set(refs[0], "k", std::string(2000, 'x'));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(st.error_message(), HasSubstr("--kv-max-value-bytes=1000"));
  std::string v;
  ASSERT_TRUE(Get(refs[0], "k", 0, &v).ok());
  EXPECT_EQ(v, "small");
}

// --max-receive-message-bytes: gRPC refuses a larger request before any handler runs.
class SmallMessagesTest : public JobStoreTest {
 protected:
  void Configure(ServerOptions& o) override {
    o.max_receive_message_bytes = 64 * 1024;
    o.registry.kv_limits.max_value_bytes = 1 << 20;  // the message limit is the one that bites
  }
};

TEST_F(SmallMessagesTest, RequestAboveMaxReceiveMessageBytes_ResourceExhausted) {
  auto refs = JoinJob("big", 1);
  ASSERT_TRUE(Set(refs[0], "k", std::string(60 * 1024, 'x')).ok());
  grpc::Status st = Set(refs[0], "k", std::string(100 * 1024, 'y'));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("larger than max"));
  std::string v;
  ASSERT_TRUE(Get(refs[0], "k", 0, &v).ok());
  EXPECT_EQ(v.size(), 60u * 1024);  // unchanged; the member and its session are unaffected
}

TEST_F(JobStoreTest, CrossJob_KeysInvisible_ForgedRefRejected) {
  auto a = JoinJob("job-a", 1);
  auto b = JoinJob("job-b", 1);
  ASSERT_TRUE(Set(a[0], "secret", "a").ok());
  EXPECT_EQ(Get(b[0], "secret", 0, nullptr).error_code(), grpc::StatusCode::NOT_FOUND);
  pb::MemberRef forged = a[0];
  forged.set_job_id("job-b");  // A's node id and incarnation, B's job
  grpc::Status st = Get(forged, "secret", 0, nullptr);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.error_code(), ::testing::AnyOf(grpc::StatusCode::ABORTED,
                                                grpc::StatusCode::NOT_FOUND));
  // With B's member's real incarnation (the status API shows it) but A's credential: the
  // credential gives the forger away.
  forged.set_incarnation(b[0].incarnation());
  st = Get(forged, "secret", 0, nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("only as itself"));
}

TEST_F(JobStoreTest, Barrier_AllArrive_SameResult_TimeoutNamesMissingRank) {
  auto refs = JoinJob("bar", 3);
  std::vector<std::future<grpc::Status>> arrivals;
  for (auto& r : refs) {
    arrivals.push_back(std::async(std::launch::async, [&, r] { return Barrier(r, "b1", 5000); }));
  }
  for (auto& f : arrivals) EXPECT_TRUE(f.get().ok());
  // Rank 2 never comes: both others get DEADLINE_EXCEEDED naming it.
  auto x = std::async(std::launch::async, [&] { return Barrier(refs[0], "b2", 300); });
  auto y = std::async(std::launch::async, [&] { return Barrier(refs[1], "b2", 300); });
  for (auto* f : {&x, &y}) {
    grpc::Status st = f->get();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_THAT(st.error_message(), AllOf(HasSubstr("2 of 3"), HasSubstr("rank 2")));
  }
  // The late arrival gets the same error.
  grpc::Status late = Barrier(refs[2], "b2", 300);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(late.error_message(), HasSubstr("rank 2"));
}

TEST_F(JobStoreTest, JobFails_PendingGetEndsWithFailureNotTimeout) {
  auto refs = JoinJob("fail", 2);
  auto waiter = std::async(std::launch::async, [&] { return Get(refs[0], "k", 60000, nullptr); });
  absl::SleepFor(absl::Milliseconds(100));
  pb::SessionRequest report;
  report.mutable_report_error()->set_reason("collective failed");
  ASSERT_TRUE(members_[1].stream->Write(report));
  const absl::Time start = absl::Now();
  grpc::Status st = waiter.get();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(st.error_message(), HasSubstr("collective failed"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace ms_rendezvous::server
