// Integration tests: a real RendezvousServer on 127.0.0.1 port 0, driven through the generated
// gRPC stubs exactly as remote clients would.
#include <atomic>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
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

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.registry.default_topo_timeout = absl::Seconds(30);
    auto s = RendezvousServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = pb::Rendezvous::NewStub(channel_);
    admin_ = pb::RendezvousAdmin::NewStub(channel_);
  }

  static pb::MemberSpec Spec(const std::string& job, const std::string& node, uint32_t workers,
                             const std::string& host = "") {
    pb::MemberSpec s;
    s.set_job_id(job);
    s.set_role(pb::ROLE_WORKER);
    s.set_node_id(node);
    s.set_host(host);
    s.set_device_id(-1);
    s.set_worker_num(workers);
    return s;
  }

  struct JoinOutcome {
    grpc::Status status;
    pb::JoinResponse resp;
  };

  // Joins on its own thread (the call blocks until the job is complete).
  std::future<JoinOutcome> JoinAsync(pb::MemberSpec spec,
                                     absl::Duration deadline = absl::Seconds(20)) {
    return std::async(std::launch::async, [this, spec, deadline] {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
      pb::JoinRequest req;
      *req.mutable_member() = spec;
      JoinOutcome out;
      out.status = stub_->Join(&ctx, req, &out.resp);
      return out;
    });
  }

  pb::GetJobResponse GetJob(const std::string& job) {
    grpc::ClientContext ctx;
    pb::GetJobRequest req;
    req.set_job_id(job);
    pb::GetJobResponse resp;
    grpc::Status st = admin_->GetJob(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp;
  }

  // Polls until `job` has `joined` workers (joins race with the test thread).
  void WaitJoined(const std::string& job, uint32_t joined) {
    for (int i = 0; i < 500; ++i) {
      grpc::ClientContext ctx;
      pb::GetJobRequest req;
      req.set_job_id(job);
      pb::GetJobResponse resp;
      if (admin_->GetJob(&ctx, req, &resp).ok() && resp.job().roles(0).joined() == joined) return;
      absl::SleepFor(absl::Milliseconds(10));
    }
    FAIL() << "job " << job << " never reached " << joined << " joined";
  }

  std::unique_ptr<RendezvousServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Rendezvous::Stub> stub_;
  std::unique_ptr<pb::RendezvousAdmin::Stub> admin_;
};

TEST_F(ServerTest, Join_EightWorkers_RanksOnceSameGeneration_NinthRejectedAtOnce) {
  std::vector<std::future<JoinOutcome>> joins;
  for (int i = 0; i < 8; ++i) joins.push_back(JoinAsync(Spec("j8", "w" + std::to_string(i), 8)));
  std::set<uint32_t> ranks;
  std::set<uint64_t> generations;
  for (auto& f : joins) {
    JoinOutcome o = f.get();
    ASSERT_TRUE(o.status.ok()) << o.status.error_message();
    ranks.insert(o.resp.topology().rank());
    generations.insert(o.resp.topology().generation());
    EXPECT_EQ(o.resp.topology().host(), "127.0.0.1");  // peer address filled in
    EXPECT_EQ(o.resp.topology().local_world_size(), 8u);
    EXPECT_EQ(o.resp.topology().local_rank(), o.resp.topology().rank());
  }
  EXPECT_EQ(ranks.size(), 8u);
  EXPECT_EQ(*ranks.rbegin(), 7u);
  EXPECT_EQ(generations.size(), 1u);
  const absl::Time start = absl::Now();
  JoinOutcome ninth = JoinAsync(Spec("j8", "w8", 8)).get();
  EXPECT_EQ(ninth.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(ninth.status.error_message(), HasSubstr("'w8' is extra"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(ServerTest, TwoJobs_FormSideBySide) {
  std::vector<std::future<JoinOutcome>> a, b;
  for (int i = 0; i < 3; ++i) {
    a.push_back(JoinAsync(Spec("job-a", std::to_string(i), 3)));
    b.push_back(JoinAsync(Spec("job-b", std::to_string(i), 3)));
  }
  for (auto* v : {&a, &b}) {
    std::set<uint32_t> ranks;
    for (auto& f : *v) {
      JoinOutcome o = f.get();
      ASSERT_TRUE(o.status.ok()) << o.status.error_message();
      ranks.insert(o.resp.topology().rank());
    }
    EXPECT_EQ(ranks.size(), 3u);
  }
}

TEST_F(ServerTest, TopologyTimeout_WaitersNameMissingRanks_JobShowsThemWhileForming) {
  std::vector<std::future<JoinOutcome>> joins;
  for (int i : {0, 1, 3}) {
    pb::MemberSpec s = Spec("late", std::to_string(i), 4);
    s.set_topo_timeout_ms(1500);
    joins.push_back(JoinAsync(s));
  }
  WaitJoined("late", 3);
  pb::GetJobResponse forming = GetJob("late");
  EXPECT_EQ(forming.job().state(), pb::JOB_STATE_FORMING);
  ASSERT_EQ(forming.job().roles(0).missing_ranks_size(), 1);
  EXPECT_EQ(forming.job().roles(0).missing_ranks(0), 2u);
  EXPECT_GT(forming.job().topo_deadline_in_s(), 0.0);
  for (auto& f : joins) {
    JoinOutcome o = f.get();
    EXPECT_EQ(o.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_THAT(o.status.error_message(),
                AllOf(HasSubstr("Topology build timed out"), HasSubstr("missing ranks [2]")));
  }
  EXPECT_EQ(GetJob("late").job().state(), pb::JOB_STATE_FAILED);
}

TEST_F(ServerTest, ClientGoesAway_MemberWithdrawn_SameNodeIdJoinsAgain) {
  // The client's own deadline cancels the call: the daemon must forget the waiting member.
  JoinOutcome gone = JoinAsync(Spec("cx", "0", 2), absl::Milliseconds(300)).get();
  EXPECT_EQ(gone.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  WaitJoined("cx", 0);
  auto again = JoinAsync(Spec("cx", "0", 2));
  auto other = JoinAsync(Spec("cx", "1", 2));
  EXPECT_TRUE(again.get().status.ok());
  EXPECT_TRUE(other.get().status.ok());
}

TEST_F(ServerTest, Join_BadRole_InvalidArgument) {
  pb::MemberSpec s = Spec("j", "0", 1);
  s.set_role(pb::ROLE_UNSPECIFIED);
  JoinOutcome o = JoinAsync(s).get();
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(o.status.error_message(), HasSubstr("member.role=ROLE_UNSPECIFIED"));
}

TEST_F(ServerTest, HeartbeatAndLeave_FinishTheJob) {
  auto a = JoinAsync(Spec("hl", "0", 2));
  auto b = JoinAsync(Spec("hl", "1", 2));
  std::vector<pb::Topology> topos = {a.get().resp.topology(), b.get().resp.topology()};
  for (const auto& t : topos) {
    grpc::ClientContext ctx;
    pb::HeartbeatRequest req;
    req.mutable_member()->set_job_id("hl");
    req.mutable_member()->set_role(pb::ROLE_WORKER);
    req.mutable_member()->set_node_id(t.node_id());
    req.mutable_member()->set_incarnation(t.incarnation());
    req.mutable_member()->set_credential(t.credential());
    pb::HeartbeatResponse resp;
    ASSERT_TRUE(stub_->Heartbeat(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.job_state(), pb::JOB_STATE_COMPLETE);
  }
  pb::LeaveResponse last;
  for (const auto& t : topos) {
    grpc::ClientContext ctx;
    pb::LeaveRequest req;
    req.mutable_member()->set_job_id("hl");
    req.mutable_member()->set_role(pb::ROLE_WORKER);
    req.mutable_member()->set_node_id(t.node_id());
    req.mutable_member()->set_incarnation(t.incarnation());
    req.mutable_member()->set_credential(t.credential());
    ASSERT_TRUE(stub_->Leave(&ctx, req, &last).ok());
  }
  EXPECT_EQ(last.job_state(), pb::JOB_STATE_FINISHED);
  // Stale incarnation is refused with Aborted.
  grpc::ClientContext ctx;
  pb::HeartbeatRequest req;
  req.mutable_member()->set_job_id("hl");
  req.mutable_member()->set_role(pb::ROLE_WORKER);
  req.mutable_member()->set_node_id("0");
  req.mutable_member()->set_incarnation(1);
  pb::HeartbeatResponse resp;
  EXPECT_EQ(stub_->Heartbeat(&ctx, req, &resp).error_code(), grpc::StatusCode::ABORTED);
}

TEST_F(ServerTest, Admin_PagingAndValidation) {
  std::vector<std::future<JoinOutcome>> joins;
  for (const char* job : {"p1", "p2", "p3"}) joins.push_back(JoinAsync(Spec(job, "0", 1)));
  for (auto& f : joins) ASSERT_TRUE(f.get().status.ok());
  std::vector<std::string> seen;
  std::string token;
  do {
    grpc::ClientContext ctx;
    pb::ListJobsRequest req;
    req.set_page_size(1);
    req.set_page_token(token);
    pb::ListJobsResponse resp;
    ASSERT_TRUE(admin_->ListJobs(&ctx, req, &resp).ok());
    for (const auto& j : resp.jobs()) seen.push_back(j.job_id());
    token = resp.next_page_token();
  } while (!token.empty());
  EXPECT_EQ(seen, (std::vector<std::string>{"p1", "p2", "p3"}));

  grpc::ClientContext c1;
  pb::ListMembersRequest bad;
  bad.set_job_id("p1");
  bad.set_page_token("garbage");
  pb::ListMembersResponse r1;
  grpc::Status st = admin_->ListMembers(&c1, bad, &r1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("page_token"));

  grpc::ClientContext c2;
  pb::ListMembersRequest big;
  big.set_job_id("p1");
  big.set_page_size(1000000);
  st = admin_->ListMembers(&c2, big, &r1);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("page_size=1000000"));

  grpc::ClientContext c3;
  pb::GetJobRequest unknown;
  unknown.set_job_id("nope");
  pb::GetJobResponse r3;
  st = admin_->GetJob(&c3, unknown, &r3);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(st.error_message(), HasSubstr("'nope'"));
}

TEST_F(ServerTest, WatchJob_SnapshotJoinsComplete) {
  auto first = JoinAsync(Spec("w", "0", 2));
  WaitJoined("w", 1);
  grpc::ClientContext ctx;
  pb::WatchJobRequest req;
  req.set_job_id("w");
  auto reader = admin_->WatchJob(&ctx, req);
  pb::JobEvent ev;
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.type(), pb::JOB_EVENT_SNAPSHOT);
  auto second = JoinAsync(Spec("w", "1", 2));
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.type(), pb::JOB_EVENT_MEMBER_JOINED);
  EXPECT_EQ(ev.member().node_id(), "1");
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.type(), pb::JOB_EVENT_JOB_COMPLETE);
  EXPECT_EQ(ev.job().state(), pb::JOB_STATE_COMPLETE);
  first.get();
  second.get();
  ctx.TryCancel();
  while (reader->Read(&ev)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(ServerTest, WatchJob_UnknownJob_NotFound) {
  grpc::ClientContext ctx;
  pb::WatchJobRequest req;
  req.set_job_id("nope");
  auto reader = admin_->WatchJob(&ctx, req);
  pb::JobEvent ev;
  EXPECT_FALSE(reader->Read(&ev));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, Health_Serving) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(ServerTest, Shutdown_WaitingJoinGetsUnavailableNotAHang) {
  auto waiting = JoinAsync(Spec("sd", "0", 2), absl::Seconds(60));
  WaitJoined("sd", 1);
  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Seconds(2));
  JoinOutcome o = waiting.get();
  EXPECT_EQ(o.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(o.status.error_message(), HasSubstr("shutting down"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

// Regression: a heartbeat answered "job failed" ended the session from the reactor, racing with
// (and losing) the JOB_FAILED event the core pushes first. Every survivor must see the event.
TEST_F(ServerTest, Session_JobFailsWhileHeartbeating_EventAlwaysBeforeTheEnd) {
  for (int round = 0; round < 20; ++round) {
    const std::string job = "hb-race-" + std::to_string(round);
    grpc::ClientContext ca, cb;
    auto a = stub_->Session(&ca);
    auto b = stub_->Session(&cb);
    pb::SessionRequest join;
    *join.mutable_join()->mutable_member() = Spec(job, "0", 2);
    ASSERT_TRUE(a->Write(join));
    *join.mutable_join()->mutable_member() = Spec(job, "1", 2);
    ASSERT_TRUE(b->Write(join));
    pb::SessionResponse r;
    for (auto* s : {a.get(), b.get()}) {  // registered, then topology
      ASSERT_TRUE(s->Read(&r));
      EXPECT_TRUE(r.has_registered());
      ASSERT_TRUE(s->Read(&r));
      EXPECT_TRUE(r.has_topology());
    }
    std::atomic<bool> stop{false};
    std::thread beats([&] {
      pb::SessionRequest hb;
      hb.mutable_heartbeat();
      while (!stop && b->Write(hb)) {
      }
    });
    pb::SessionRequest report;
    report.mutable_report_error()->set_reason("collective failed");
    ASSERT_TRUE(a->Write(report));
    bool saw_failed = false;
    while (b->Read(&r)) {
      if (r.has_event() && r.event().type() == pb::JOB_EVENT_JOB_FAILED) saw_failed = true;
    }
    stop = true;
    beats.join();
    EXPECT_TRUE(saw_failed) << "round " << round;
    EXPECT_EQ(b->Finish().error_code(), grpc::StatusCode::ABORTED);
    ca.TryCancel();
    while (a->Read(&r)) {
    }
    a->Finish();
  }
}

TEST(ServerStartTest, BadListenAddress_InvalidArgument) {
  ServerOptions o;
  o.listen = "127.0.0.1";
  auto s = RendezvousServer::Start(o);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("has no port"));
  o.listen = "127.0.0.1:99999";
  EXPECT_EQ(RendezvousServer::Start(o).status().code(), absl::StatusCode::kInvalidArgument);
}

// Regression: gRPC's default SO_REUSEPORT let a second daemon bind the same port and split jobs.
TEST(ServerStartTest, PortInUse_Unavailable) {
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  auto first = RendezvousServer::Start(o);
  ASSERT_TRUE(first.ok());
  o.listen = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = RendezvousServer::Start(o);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("cannot listen"));
}

}  // namespace
}  // namespace ms_rendezvous::server
