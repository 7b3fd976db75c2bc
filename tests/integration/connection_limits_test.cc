// Connection-level limits of a real in-process server: keepalive enforcement (a client that
// pings too often is cut with GOAWAY "too_many_pings") and idle-connection cleanup
// (--max-connection-idle), while a member holding a session is never cut as idle.
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "server/server.h"

namespace ms_rendezvous::server {
namespace {

namespace pb = ::ms::rendezvous::v1;
using ::testing::HasSubstr;

std::unique_ptr<RendezvousServer> StartServer(absl::Duration max_idle,
                                              absl::Duration min_ping = absl::Seconds(5)) {
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.max_connection_idle = max_idle;
  o.min_ping_interval = min_ping;
  auto s = RendezvousServer::Start(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

// Waits until the channel leaves READY (the server closed the connection).
bool LeavesReady(grpc::Channel& channel, absl::Duration within) {
  const absl::Time deadline = absl::Now() + within;
  while (absl::Now() < deadline) {
    grpc_connectivity_state s = channel.GetState(false);
    if (s != GRPC_CHANNEL_READY) return true;
    channel.WaitForStateChange(s, absl::ToChronoTime(deadline));
  }
  return channel.GetState(false) != GRPC_CHANNEL_READY;
}

bool BecomesReady(grpc::Channel& channel) {
  return channel.WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
}

TEST(ConnectionLimitsTest, PingFlood_GoawayTooManyPings_StreamEndsUnavailable) {
  auto server = StartServer(absl::InfiniteDuration());
  ASSERT_NE(server, nullptr);
  grpc::ChannelArguments args;
  // Far below the daemon's permitted 5 s between pings.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 100);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  auto channel = grpc::CreateCustomChannel(server->address(), grpc::InsecureChannelCredentials(),
                                           args);
  // A member holding its session, as a real client would.
  grpc::ClientContext join_ctx;
  auto rdv = pb::Rendezvous::NewStub(channel);
  auto session = rdv->Session(&join_ctx);
  pb::SessionRequest join;
  pb::MemberSpec* spec = join.mutable_join()->mutable_member();
  spec->set_job_id("pings");
  spec->set_role(pb::ROLE_WORKER);
  spec->set_node_id("0");
  spec->set_worker_num(2);
  spec->set_device_id(-1);
  ASSERT_TRUE(session->Write(join));
  pb::SessionResponse r;
  ASSERT_TRUE(session->Read(&r));  // registered
  const absl::Time start = absl::Now();
  while (session->Read(&r)) {
  }
  grpc::Status st = session->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("Too many pings"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

// --min-ping-interval is the limit: pings every 2 s are abuse under the default 5 s and fine
// under 1 s.
TEST(ConnectionLimitsTest, MinPingInterval_PingsAboveItAreNotCut) {
  for (absl::Duration min_ping : {absl::Seconds(5), absl::Seconds(1)}) {
    auto server = StartServer(absl::InfiniteDuration(), min_ping);
    ASSERT_NE(server, nullptr);
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    auto channel = grpc::CreateCustomChannel(server->address(),
                                             grpc::InsecureChannelCredentials(), args);
    ASSERT_TRUE(BecomesReady(*channel));
    const bool cut = LeavesReady(*channel, absl::Seconds(9));
    EXPECT_EQ(cut, min_ping == absl::Seconds(5)) << "min ping interval "
                                                 << absl::FormatDuration(min_ping);
  }
}

TEST(ConnectionLimitsTest, IdleConnection_ClosedAfterMaxIdle_ClientReconnectsOnNextCall) {
  auto server = StartServer(absl::Seconds(1));
  ASSERT_NE(server, nullptr);
  auto channel =
      grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  auto admin = pb::RendezvousAdmin::NewStub(channel);
  {
    grpc::ClientContext ctx;
    pb::ListJobsResponse resp;
    ASSERT_TRUE(admin->ListJobs(&ctx, pb::ListJobsRequest(), &resp).ok());
  }
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  EXPECT_TRUE(LeavesReady(*channel, absl::Seconds(20))) << "idle connection was not closed";
  grpc::ClientContext ctx;
  pb::ListJobsResponse resp;
  EXPECT_TRUE(admin->ListJobs(&ctx, pb::ListJobsRequest(), &resp).ok());
}

TEST(ConnectionLimitsTest, SessionHolder_IsNeverIdle) {
  auto server = StartServer(absl::Seconds(1));
  ASSERT_NE(server, nullptr);
  auto channel =
      grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  ASSERT_TRUE(BecomesReady(*channel));
  auto rdv = pb::Rendezvous::NewStub(channel);
  grpc::ClientContext ctx;
  auto session = rdv->Session(&ctx);
  pb::SessionRequest join;
  pb::MemberSpec* spec = join.mutable_join()->mutable_member();
  spec->set_job_id("idle");
  spec->set_role(pb::ROLE_WORKER);
  spec->set_node_id("0");
  spec->set_worker_num(1);
  spec->set_device_id(-1);
  spec->set_heartbeat_disabled(true);
  spec->set_node_timeout_ms(-1);
  ASSERT_TRUE(session->Write(join));
  pb::SessionResponse r;
  ASSERT_TRUE(session->Read(&r));
  ASSERT_TRUE(session->Read(&r));
  ASSERT_TRUE(r.has_topology());
  // Three idle periods without a byte on the stream: the connection stays up.
  EXPECT_FALSE(LeavesReady(*channel, absl::Seconds(3)));
  auto job = server->registry().GetJob("idle");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state, core::JobState::kComplete);
  ctx.TryCancel();
}

}  // namespace
}  // namespace ms_rendezvous::server
