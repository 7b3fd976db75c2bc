// Integration tests of the client library (ms_rendezvous::Client, RunScheduler) against an
// in-process RendezvousServer on 127.0.0.1 port 0, plus a scripted fake daemon for the answers
// a real one gives only in a race (a draining daemon's CANCELLED) or not yet (a job that fails
// after it completed). The only fixed ports are ones picked free at runtime (FreePort).
#include "ms_rendezvous/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "ms_rendezvous/options.h"
#include "ms_rendezvous/scheduler.h"
#include "server/server.h"
#include "store/memory_state_store.h"
#include "test_util.h"

namespace ms_rendezvous {
namespace {

using ::ms_rendezvous::testing::FreePort;

namespace pb = ::ms::rendezvous::v1;
using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;


std::unique_ptr<server::RendezvousServer> StartServer(int port = 0,
                                                      core::StateStore* store = nullptr) {
  server::ServerOptions o;
  o.listen = absl::StrCat("127.0.0.1:", port);
  o.registry.default_topo_timeout = absl::Seconds(30);
  o.registry.disconnect_grace = absl::Milliseconds(300);
  o.store = store;
  auto s = server::RendezvousServer::Start(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

ClientOptions WorkerOptions(int port, const std::string& job, uint32_t workers,
                            const std::string& node_id = "") {
  ClientOptions o;
  o.role = Role::kWorker;
  o.sched_host = "127.0.0.1";
  o.sched_port = port;
  o.worker_num = workers;
  o.job_id = job;
  o.node_id = node_id;
  o.topo_timeout = absl::Seconds(20);
  o.heartbeat_interval_lower = o.heartbeat_interval_upper = absl::Milliseconds(50);
  return o;
}

std::unique_ptr<Client> MakeClient(const ClientOptions& o) {
  auto c = Client::Create(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

// Joins every client on its own thread (Join blocks until the job is complete).
std::vector<absl::StatusOr<Topology>> JoinAll(const std::vector<std::unique_ptr<Client>>& clients) {
  std::vector<std::future<absl::StatusOr<Topology>>> futures;
  for (const auto& c : clients) {
    futures.push_back(std::async(std::launch::async, [&c] { return c->Join(); }));
  }
  std::vector<absl::StatusOr<Topology>> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

// Waits up to `timeout` for `pred` (polled).
template <typename Pred>
bool Eventually(Pred pred, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (pred()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return pred();
}

// Records the session events a client's callback receives.
class EventLog {
 public:
  std::function<void(const SessionEvent&)> Callback() {
    return [this](const SessionEvent& e) {
      absl::MutexLock l(&mu_);
      events_.push_back(e);
    };
  }
  int Count(SessionEventType type) {
    absl::MutexLock l(&mu_);
    int n = 0;
    for (const SessionEvent& e : events_) n += e.type == type;
    return n;
  }
  std::optional<SessionEvent> First(SessionEventType type) {
    absl::MutexLock l(&mu_);
    for (const SessionEvent& e : events_) {
      if (e.type == type) return e;
    }
    return std::nullopt;
  }

 private:
  absl::Mutex mu_;
  std::vector<SessionEvent> events_ ABSL_GUARDED_BY(mu_);
};

// A member that speaks the Session protocol by hand, so a test can make it crash (cancel the
// stream without leaving) or report an error while the job is still forming.
class RawMember {
 public:
  RawMember(int port, const std::string& job, uint32_t workers, const std::string& node_id,
            bool recovery = false)
      : stub_(pb::Rendezvous::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                                          grpc::InsecureChannelCredentials()))),
        stream_(stub_->Session(&ctx_)) {
    pb::SessionRequest req;
    pb::MemberSpec* spec = req.mutable_join()->mutable_member();
    spec->set_job_id(job);
    spec->set_role(pb::ROLE_WORKER);
    spec->set_node_id(node_id);
    spec->set_worker_num(workers);
    spec->set_topo_timeout_ms(20000);
    spec->set_enable_recovery(recovery);
    spec->set_device_id(-1);
    stream_->Write(req);
  }
  ~RawMember() { Crash(); }

  // Blocks until the topology arrives; false when the stream ended first.
  bool AwaitTopology(pb::Topology* out) {
    pb::SessionResponse resp;
    while (stream_->Read(&resp)) {
      if (resp.has_topology()) {
        *out = resp.topology();
        return true;
      }
    }
    return false;
  }
  void ReportError(const std::string& reason) {
    pb::SessionRequest req;
    req.mutable_report_error()->set_reason(reason);
    stream_->Write(req);
  }
  // The process died: the connection drops without a leave.
  void Crash() { ctx_.TryCancel(); }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<pb::Rendezvous::Stub> stub_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::SessionRequest, pb::SessionResponse>> stream_;
};

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartServer();
    ASSERT_NE(server_, nullptr);
  }

  ClientOptions Options(const std::string& job, uint32_t workers, const std::string& node_id = "") {
    return WorkerOptions(server_->port(), job, workers, node_id);
  }

  std::unique_ptr<server::RendezvousServer> server_;
};

TEST_F(ClientTest, Join_FourClientsOnThreads_RanksOnceSameGeneration) {
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) {
    // Two simulated hosts, interleaved: ranks are contiguous per host.
    ClientOptions o = Options("four", 4);
    o.worker_ip = i % 2 ? "10.3.0.2" : "10.3.0.1";
    o.device_id = i / 2;
    clients.push_back(MakeClient(o));
  }
  std::vector<absl::StatusOr<Topology>> topos = JoinAll(clients);
  std::set<uint32_t> ranks;
  std::set<uint64_t> generations;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(topos[i].ok()) << topos[i].status();
    const Topology& t = *topos[i];
    ranks.insert(t.rank);
    generations.insert(t.generation);
    EXPECT_EQ(t.rank, (i % 2 ? 2u : 0u) + i / 2);
    EXPECT_EQ(t.world_size, 4u);
    EXPECT_EQ(t.local_rank, static_cast<uint32_t>(i / 2));
    EXPECT_EQ(t.local_world_size, 2u);
    EXPECT_EQ(t.node_rank, i % 2 ? 1u : 0u);
    EXPECT_EQ(t.num_nodes, 2u);
    EXPECT_EQ(t.job_id, "four");
    EXPECT_EQ(t.node_id, clients[i]->options().node_id);
    EXPECT_EQ(t.host, i % 2 ? "10.3.0.2" : "10.3.0.1");
  }
  EXPECT_EQ(ranks, (std::set<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(generations.size(), 1u);
  for (auto& c : clients) EXPECT_THAT(c->Leave(), IsOk());
  auto job = server_->registry().GetJob("four");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, core::JobState::kFinished);
}

// Members() pages through the table 1,000 at a time. 1,199 members register straight with the
// server's registry (a client per member would make this test a load test); the client is the
// 1,200th, so the table spans two pages.
TEST_F(ClientTest, Members_JobOf1200_AllMembersAcrossPages) {
  constexpr uint32_t kMembers = 1200;
  std::atomic<int> completed{0};
  for (uint32_t i = 0; i + 1 < kMembers; ++i) {
    core::MemberSpec spec;
    spec.job_id = "big";
    spec.role = core::Role::kWorker;
    spec.node_id = absl::StrCat("direct-", i);
    spec.host = absl::StrCat("10.4.", i / 200, ".1");
    spec.host_name = "direct";
    spec.worker_num = kMembers;
    spec.topo_timeout_ms = 20000;
    server_->registry().Join(spec, [&completed](absl::StatusOr<core::Topology> t) {
      if (t.ok()) completed.fetch_add(1);
    });
  }
  std::unique_ptr<Client> client = MakeClient(Options("big", kMembers, "via-client"));
  absl::StatusOr<Topology> topo = client->Join();
  ASSERT_TRUE(topo.ok()) << topo.status();
  EXPECT_EQ(topo->world_size, kMembers);
  EXPECT_TRUE(Eventually([&] { return completed.load() == static_cast<int>(kMembers) - 1; }));

  absl::StatusOr<std::vector<MemberInfo>> members = client->Members();
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_EQ(members->size(), kMembers);
  std::set<std::string> node_ids;
  std::set<uint32_t> ranks;
  for (const MemberInfo& m : *members) {
    node_ids.insert(m.node_id);
    ASSERT_TRUE(m.rank.has_value()) << m.node_id;
    ranks.insert(*m.rank);
    EXPECT_EQ(m.state, MemberState::kActive) << m.node_id;
  }
  EXPECT_EQ(node_ids.size(), kMembers);
  EXPECT_EQ(ranks.size(), kMembers);
  EXPECT_EQ(*ranks.rbegin(), kMembers - 1);
  EXPECT_TRUE(node_ids.count("via-client"));
  EXPECT_TRUE(node_ids.count("direct-1198"));
}

TEST_F(ClientTest, Members_UnknownJob_NotFound) {
  std::unique_ptr<Client> client = MakeClient(Options("nobody-here", 1));
  EXPECT_THAT(client->Members(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nobody-here")));
}

TEST_F(ClientTest, Watch_OtherMemberLeaves_ReceivesMemberLeft) {
  std::vector<std::unique_ptr<Client>> clients;
  clients.push_back(MakeClient(Options("watched", 2, "stayer")));
  clients.push_back(MakeClient(Options("watched", 2, "leaver")));
  for (const auto& t : JoinAll(clients)) ASSERT_TRUE(t.ok()) << t.status();

  absl::Mutex mu;
  std::vector<JobEvent> events;
  auto watch = clients[0]->Watch([&](const JobEvent& e) {
    absl::MutexLock l(&mu);
    events.push_back(e);
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_THAT(clients[1]->Leave(), IsOk());

  auto left_seen = [&] {
    absl::MutexLock l(&mu);
    for (const JobEvent& e : events) {
      if (e.type == JobEventType::kMemberLeft) return true;
    }
    return false;
  };
  ASSERT_TRUE(Eventually(left_seen)) << "no member_left event within 10 s";
  {
    absl::MutexLock l(&mu);
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.front().type, JobEventType::kSnapshot);
    EXPECT_EQ(events.front().job_state, JobState::kComplete);
    for (const JobEvent& e : events) {
      if (e.type != JobEventType::kMemberLeft) continue;
      ASSERT_TRUE(e.member.has_value());
      EXPECT_EQ(e.member->node_id, "leaver");
      EXPECT_EQ(e.job_state, JobState::kComplete);  // "stayer" is still in
    }
  }
  EXPECT_THAT((*watch)->Stop(), IsOk());
  EXPECT_TRUE((*watch)->Done());
}

TEST_F(ClientTest, Watch_UnknownJob_NotFound) {
  std::unique_ptr<Client> client = MakeClient(Options("never-formed", 1));
  auto watch = client->Watch([](const JobEvent&) {});
  EXPECT_THAT(watch, StatusIs(absl::StatusCode::kNotFound, HasSubstr("never-formed")));
}

TEST_F(ClientTest, Leave_Twice_SecondIsOkAndJobFinished) {
  std::unique_ptr<Client> client = MakeClient(Options("solo", 1));
  ASSERT_TRUE(client->Join().ok());
  EXPECT_THAT(client->Leave(), IsOk());
  EXPECT_THAT(client->Leave(), IsOk());
  auto job = server_->registry().GetJob("solo");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, core::JobState::kFinished);
}

TEST_F(ClientTest, Leave_BeforeJoin_FailedPrecondition) {
  std::unique_ptr<Client> client = MakeClient(Options("solo", 1));
  EXPECT_THAT(client->Leave(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("before a successful")));
}

TEST_F(ClientTest, Join_Twice_SecondRefusedWithFailedPrecondition) {
  std::unique_ptr<Client> client = MakeClient(Options("once", 1));
  absl::StatusOr<Topology> first = client->Join();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(client->Join(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       AllOf(HasSubstr("already joined job once"),
                                             HasSubstr("Leave() before joining again"))));
  // After Leave the same client may join again (a new incarnation of a new job).
  ASSERT_THAT(client->Leave(), IsOk());
}

TEST_F(ClientTest, Join_SameNodeIdWhileFirstWaits_AlreadyExistsAtOnce) {
  std::unique_ptr<Client> first = MakeClient(Options("dup", 2, "twin"));
  std::unique_ptr<Client> second = MakeClient(Options("dup", 2, "twin"));
  std::unique_ptr<Client> other = MakeClient(Options("dup", 2, "other"));
  auto waiting = std::async(std::launch::async, [&] { return first->Join(); });
  ASSERT_TRUE(Eventually([&] {
    auto job = server_->registry().GetJob("dup");
    return job.ok();
  }));
  const absl::Time start = absl::Now();
  EXPECT_THAT(second->Join(), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("'twin'")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // The refused duplicate did not disturb the job: it still forms with the right member.
  absl::StatusOr<Topology> t = other->Join();
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<Topology> w = waiting.get();
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->node_id, "twin");
}

TEST(ClientRetryTest, Join_ServerStartsHalfASecondLater_SucceedsThanksToRetry) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  std::unique_ptr<Client> client = MakeClient(WorkerOptions(port, "late", 1));
  auto joined = std::async(std::launch::async, [&] { return client->Join(); });
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_EQ(joined.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "Join returned before the server existed";
  std::unique_ptr<server::RendezvousServer> server = StartServer(port);
  ASSERT_NE(server, nullptr);
  const absl::Time started = absl::Now();
  ASSERT_EQ(joined.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  absl::StatusOr<Topology> t = joined.get();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->rank, 0u);
  EXPECT_EQ(t->world_size, 1u);
  // Reached promptly once up (the reconnect backoff is capped at 2 s).
  EXPECT_LT(absl::Now() - started, absl::Seconds(4));
  EXPECT_THAT(client->Leave(), IsOk());
}

TEST(ClientRetryTest, Join_NothingListening_UnavailableAfterTopoTimeoutNamingAddress) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const std::map<std::string, std::string> env = {
      {"MS_ROLE", "MS_WORKER"},
      {"MS_SCHED_HOST", "127.0.0.1"},
      {"MS_SCHED_PORT", absl::StrCat(port)},
      {"MS_WORKER_NUM", "2"},
      {"MS_TOPO_TIMEOUT", "2"},
      {"MS_JOB_ID", "nowhere"},
  };
  absl::StatusOr<ClientOptions> o =
      ParseClientOptions([&env](const std::string& name) -> std::optional<std::string> {
        auto it = env.find(name);
        if (it == env.end()) return std::nullopt;
        return it->second;
      });
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->topo_timeout, absl::Seconds(2));
  std::unique_ptr<Client> client = MakeClient(*o);
  const absl::Time start = absl::Now();
  absl::StatusOr<Topology> t = client->Join();
  const absl::Duration took = absl::Now() - start;
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kUnavailable,
                          AllOf(HasSubstr(absl::StrCat("scheduler 127.0.0.1:", port)),
                                HasSubstr("unreachable for 2s (MS_TOPO_TIMEOUT)"),
                                HasSubstr("MS_SCHED_HOST/MS_SCHED_PORT"))));
  EXPECT_GE(took, absl::Seconds(2));
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_THAT(client->SessionStatus(), IsOk());  // never joined: no session to lose
}

// --- The draining daemon's CANCELLED (regression: the client gave up with "CANCELLED") ---

// A scripted daemon: Session answers CANCELLED for the first `cancelled_joins` streams (forever
// when negative) - what a draining ms-rendezvousd answers to a call arriving after its shutdown
// began - then completes a one-member job and keeps the stream open until the client leaves.
class FakeDaemon final : public pb::Rendezvous::Service {
 public:
  explicit FakeDaemon(int cancelled_joins) : cancelled_joins_(cancelled_joins) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeDaemon() override { server_->Shutdown(std::chrono::system_clock::now()); }

  int port() const { return port_; }
  int joins() const { return joins_.load(); }

  grpc::Status Session(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<pb::SessionResponse, pb::SessionRequest>* stream) override {
    pb::SessionRequest req;
    if (!stream->Read(&req)) return grpc::Status::OK;
    const int n = joins_.fetch_add(1);
    if (cancelled_joins_ < 0 || n < cancelled_joins_) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "");
    }
    pb::SessionResponse resp;
    pb::Topology* t = resp.mutable_topology();
    t->set_job_id(req.join().member().job_id());
    t->set_role(req.join().member().role());
    t->set_node_id(req.join().member().node_id());
    t->set_rank(0);
    t->set_world_size(1);
    t->set_local_world_size(1);
    t->set_num_nodes(1);
    t->set_host("127.0.0.1");
    t->set_generation(1);
    t->set_incarnation(7);
    t->set_worker_num(1);
    stream->Write(resp);
    while (stream->Read(&req)) {
      if (req.has_leave()) return grpc::Status::OK;
    }
    return grpc::Status::OK;
  }

 private:
  const int cancelled_joins_;
  std::atomic<int> joins_{0};
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST(ClientCancelledTest, Join_DaemonCancelsTwiceNotCausedByClient_RetriesAndJoins) {
  FakeDaemon daemon(/*cancelled_joins=*/2);
  ASSERT_GT(daemon.port(), 0);
  std::unique_ptr<Client> client = MakeClient(WorkerOptions(daemon.port(), "drained", 1));
  absl::StatusOr<Topology> t = client->Join();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->incarnation, 7u);
  EXPECT_EQ(daemon.joins(), 3);
  EXPECT_THAT(client->Leave(), IsOk());
}

TEST(ClientCancelledTest, Join_DaemonCancelsUntilTopoTimeout_UnavailableNamingLastError) {
  FakeDaemon daemon(/*cancelled_joins=*/-1);
  ASSERT_GT(daemon.port(), 0);
  ClientOptions o = WorkerOptions(daemon.port(), "drained", 1);
  o.topo_timeout = absl::Seconds(1);
  std::unique_ptr<Client> client = MakeClient(o);
  const absl::Time start = absl::Now();
  absl::StatusOr<Topology> t = client->Join();
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kUnavailable,
                          AllOf(HasSubstr(absl::StrCat("scheduler 127.0.0.1:", daemon.port(),
                                                       " unreachable for 1s")),
                                HasSubstr("last error: CANCELLED"))));
  EXPECT_GE(absl::Now() - start, absl::Seconds(1));
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  EXPECT_GT(daemon.joins(), 1);
}

// The real race, in process: the member is parked when the server drains. Whatever the retry
// meets (UNAVAILABLE "shutting down", CANCELLED while draining, connection refused after), the
// final answer is UNAVAILABLE at the topology timeout, never CANCELLED.
TEST_F(ClientTest, Join_ServerDrainsWhileParked_UnavailableAtTopoTimeoutNotCancelled) {
  ClientOptions o = Options("drain", 2);
  o.topo_timeout = absl::Seconds(2);
  std::unique_ptr<Client> client = MakeClient(o);
  const absl::Time start = absl::Now();
  auto joined = std::async(std::launch::async, [&] { return client->Join(); });
  ASSERT_TRUE(Eventually([&] { return server_->registry().GetJob("drain").ok(); }));
  server_->Shutdown(absl::Seconds(1));
  absl::StatusOr<Topology> t = joined.get();
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kUnavailable,
                          AllOf(HasSubstr(server_->address()), HasSubstr("unreachable for 2s"))));
  EXPECT_LT(absl::Now() - start, absl::Seconds(6));
}

// --- SessionStatus ---

// The in-memory daemon restarted (same port) and no longer knows the job: the resume is
// refused and surfaced as Aborted, never as a silently different rank.
TEST(ClientSessionTest, SessionStatus_DaemonRestartedWithoutTheJob_AbortedCannotResume) {
  std::unique_ptr<server::RendezvousServer> server = StartServer();
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  std::unique_ptr<Client> client = MakeClient(WorkerOptions(port, "restarted", 1));
  EventLog log;
  client->SetEventCallback(log.Callback());
  ASSERT_TRUE(client->Join().ok());
  EXPECT_THAT(client->SessionStatus(), IsOk());
  server->Shutdown(absl::ZeroDuration());
  server.reset();
  server = StartServer(port);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(Eventually([&] { return !client->SessionStatus().ok(); }));
  EXPECT_THAT(client->SessionStatus(),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("cannot resume the session of job 'restarted'"),
                             HasSubstr("ABORTED"))));
  ASSERT_TRUE(Eventually([&] { return log.Count(SessionEventType::kSessionLost) == 1; }));
  EXPECT_EQ(log.Count(SessionEventType::kResumed), 0);
  EXPECT_THAT(client->Leave(), StatusIs(absl::StatusCode::kAborted, ::testing::_));
}

// The job failed while this member waited (topology timeout): Join says who is missing, and
// there never was a session to lose.
TEST_F(ClientTest, SessionStatus_JobFailedWhileJoining_JoinDeadlineExceededSessionOk) {
  ClientOptions o = Options("half", 2, "0");
  o.topo_timeout = absl::Seconds(1);
  std::unique_ptr<Client> client = MakeClient(o);
  EXPECT_THAT(client->Join(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                       AllOf(HasSubstr("Topology build timed out: job 'half'"),
                                             HasSubstr("missing ranks [1]"))));
  auto job = server_->registry().GetJob("half");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, core::JobState::kFailed);
  EXPECT_THAT(client->SessionStatus(), IsOk());
  EXPECT_THAT(client->Leave(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("half")));
}

// --- RunScheduler (embedded scheduler, MS_ROLE=MS_SCHED) ---

class SchedulerTest : public ::testing::Test {
 protected:
  // Runs the scheduler on a free port on its own thread; returns once it listens.
  void StartScheduler(const std::string& job, absl::Duration topo_timeout) {
    port_ = FreePort();
    ASSERT_GT(port_, 0);
    ClientOptions o;
    o.role = Role::kScheduler;
    o.sched_host = "127.0.0.1";
    o.sched_port = port_;
    o.job_id = job;
    o.topo_timeout = topo_timeout;
    auto listening = std::make_shared<std::promise<std::string>>();
    SchedulerHooks hooks;
    hooks.on_listening = [listening](const std::string& address) { listening->set_value(address); };
    result_ = std::async(std::launch::async, [o, hooks] { return RunScheduler(o, hooks); });
    auto address = listening->get_future();
    ASSERT_EQ(address.wait_for(std::chrono::seconds(10)), std::future_status::ready)
        << (result_.wait_for(std::chrono::seconds(0)) == std::future_status::ready
                ? result_.get().ToString()
                : std::string("still starting"));
    EXPECT_EQ(address.get(), absl::StrCat("127.0.0.1:", port_));
  }

  absl::Status SchedulerResult(absl::Duration timeout = absl::Seconds(15)) {
    if (result_.wait_for(absl::ToChronoSeconds(timeout)) != std::future_status::ready) {
      return absl::DeadlineExceededError("RunScheduler did not return");
    }
    return result_.get();
  }

  int port_ = 0;
  std::future<absl::Status> result_;
};

TEST_F(SchedulerTest, RunScheduler_JobFinishes_Ok) {
  StartScheduler("embedded", absl::Seconds(20));
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 2; ++i) clients.push_back(MakeClient(WorkerOptions(port_, "embedded", 2)));
  for (const auto& t : JoinAll(clients)) ASSERT_TRUE(t.ok()) << t.status();
  for (auto& c : clients) EXPECT_THAT(c->Leave(), IsOk());
  EXPECT_THAT(SchedulerResult(), IsOk());
}

TEST_F(SchedulerTest, RunScheduler_JobFails_AbortedWithReason) {
  StartScheduler("short", absl::Seconds(20));
  ClientOptions o = WorkerOptions(port_, "short", 2, "1");
  o.topo_timeout = absl::Seconds(1);
  std::unique_ptr<Client> client = MakeClient(o);
  EXPECT_THAT(client->Join(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("missing ranks [0]")));
  EXPECT_THAT(SchedulerResult(),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("job short failed"), HasSubstr("timed out"))));
}

TEST_F(SchedulerTest, RunScheduler_NobodyJoins_DeadlineExceededNamingJob) {
  StartScheduler("empty", absl::Seconds(1));
  EXPECT_THAT(SchedulerResult(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("no member of job empty"), HasSubstr("MS_JOB_ID=empty"))));
}

TEST(SchedulerArgsTest, RunScheduler_WorkerRole_InvalidArgument) {
  ClientOptions o = WorkerOptions(1, "x", 1);
  EXPECT_THAT(RunScheduler(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs MS_ROLE=MS_SCHED")));
}

// --- Failure fan-out, recovery, reconnect (Session stream) ---

// A member crashes (its stream is cancelled without a leave): once the disconnect grace
// expired, every other member's callback fires once naming it, and their sessions are Aborted.
TEST_F(ClientTest, FanOut_MemberCrashes_OthersCallbackNamesIt) {
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::unique_ptr<EventLog>> logs;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(MakeClient(Options("crash", 3, absl::StrCat(i))));
    logs.push_back(std::make_unique<EventLog>());
    clients.back()->SetEventCallback(logs.back()->Callback());
  }
  RawMember victim(server_->port(), "crash", 3, "2");
  auto joined = std::async(std::launch::async, [&] { return JoinAll(clients); });
  pb::Topology vt;
  ASSERT_TRUE(victim.AwaitTopology(&vt));
  for (const auto& t : joined.get()) ASSERT_TRUE(t.ok()) << t.status();

  const absl::Time crashed = absl::Now();
  victim.Crash();
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(Eventually([&] { return logs[i]->Count(SessionEventType::kJobFailed) == 1; }))
        << "member " << i << " was not told";
    std::optional<SessionEvent> e = logs[i]->First(SessionEventType::kJobFailed);
    ASSERT_EQ(e->dead.size(), 1u);
    EXPECT_EQ(e->dead[0].node_id, "2");
    EXPECT_EQ(e->dead[0].rank, std::optional<uint32_t>(2));
    EXPECT_EQ(e->dead[0].host, "127.0.0.1");
    EXPECT_THAT(e->dead[0].reason, HasSubstr("connection lost"));
    EXPECT_THAT(e->status, StatusIs(absl::StatusCode::kAborted, HasSubstr("node '2'")));
    EXPECT_THAT(clients[i]->SessionStatus(),
                StatusIs(absl::StatusCode::kAborted, HasSubstr("node '2'")));
  }
  EXPECT_LT(absl::Now() - crashed, absl::Seconds(3));  // grace 300 ms + fan-out
  absl::SleepFor(absl::Milliseconds(200));
  for (auto& log : logs) EXPECT_EQ(log->Count(SessionEventType::kJobFailed), 1);  // once
  // Later calls return the same failure.
  EXPECT_THAT(clients[0]->ReportError("late"), StatusIs(absl::StatusCode::kAborted, ::testing::_));
}

// ReportError: the reporter's session ends, everybody else is told with its reason.
TEST_F(ClientTest, FanOut_ReportError_OthersToldWithReason) {
  std::vector<std::unique_ptr<Client>> clients;
  EventLog survivor;
  clients.push_back(MakeClient(Options("report", 2, "0")));
  clients.push_back(MakeClient(Options("report", 2, "1")));
  clients[0]->SetEventCallback(survivor.Callback());
  for (const auto& t : JoinAll(clients)) ASSERT_TRUE(t.ok()) << t.status();

  EXPECT_THAT(clients[1]->ReportError("NCCL allreduce timed out"), IsOk());
  EXPECT_THAT(clients[1]->SessionStatus(),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("NCCL allreduce timed out")));
  ASSERT_TRUE(Eventually([&] { return survivor.Count(SessionEventType::kJobFailed) == 1; }));
  std::optional<SessionEvent> e = survivor.First(SessionEventType::kJobFailed);
  ASSERT_EQ(e->dead.size(), 1u);
  EXPECT_EQ(e->dead[0].node_id, "1");
  EXPECT_THAT(e->dead[0].reason, HasSubstr("NCCL allreduce timed out"));
  EXPECT_THAT(clients[0]->SessionStatus(), StatusIs(absl::StatusCode::kAborted, ::testing::_));
}

// A Join blocked while the job forms returns Aborted naming the member that failed it.
TEST_F(ClientTest, FanOut_JobFailsWhileJoining_PendingJoinAbortedNamingMember) {
  RawMember reporter(server_->port(), "forming-fail", 3, "0");
  ASSERT_TRUE(Eventually([&] { return server_->registry().GetJob("forming-fail").ok(); }));
  std::unique_ptr<Client> client = MakeClient(Options("forming-fail", 3, "1"));
  auto joined = std::async(std::launch::async, [&] { return client->Join(); });
  ASSERT_TRUE(Eventually([&] {
    auto job = server_->registry().GetJob("forming-fail");
    return job.ok() && job->roles[0].joined == 2;
  }));
  reporter.ReportError("GPU 0 fell off the bus");
  ASSERT_EQ(joined.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_THAT(joined.get(),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("node '0'"), HasSubstr("GPU 0 fell off the bus"))));
}

// Recovery mode: a crashed member comes back with the same node id, takes back its rank, and
// the survivors (whose sessions stay healthy) get member_dead then member_recovered.
TEST_F(ClientTest, Recovery_CrashedMemberRejoins_SameRankSurvivorsToldRecovered) {
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::unique_ptr<EventLog>> logs;
  for (int i = 0; i < 2; ++i) {
    ClientOptions o = Options("recover", 3, absl::StrCat("survivor-", i));
    o.enable_recovery = true;
    clients.push_back(MakeClient(o));
    logs.push_back(std::make_unique<EventLog>());
    clients.back()->SetEventCallback(logs.back()->Callback());
  }
  auto phoenix = std::make_unique<RawMember>(server_->port(), "recover", 3, "phoenix",
                                             /*recovery=*/true);
  auto joined = std::async(std::launch::async, [&] { return JoinAll(clients); });
  pb::Topology first;
  ASSERT_TRUE(phoenix->AwaitTopology(&first));
  for (const auto& t : joined.get()) ASSERT_TRUE(t.ok()) << t.status();

  phoenix->Crash();
  for (auto& log : logs) {
    ASSERT_TRUE(Eventually([&] { return log->Count(SessionEventType::kMemberDead) == 1; }));
    std::optional<SessionEvent> e = log->First(SessionEventType::kMemberDead);
    ASSERT_EQ(e->dead.size(), 1u);
    EXPECT_EQ(e->dead[0].node_id, "phoenix");
    EXPECT_EQ(e->job_state, JobState::kDegraded);
  }
  for (auto& c : clients) EXPECT_THAT(c->SessionStatus(), IsOk());  // degraded, not failed

  ClientOptions o = Options("recover", 3, "phoenix");
  o.enable_recovery = true;
  std::unique_ptr<Client> reborn = MakeClient(o);
  absl::StatusOr<Topology> t = reborn->Join();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->rank, first.rank());
  EXPECT_EQ(t->generation, first.generation());
  for (auto& log : logs) {
    ASSERT_TRUE(Eventually([&] { return log->Count(SessionEventType::kMemberRecovered) == 1; }));
    std::optional<SessionEvent> e = log->First(SessionEventType::kMemberRecovered);
    ASSERT_TRUE(e->member.has_value());
    EXPECT_EQ(e->member->node_id, "phoenix");
    EXPECT_EQ(e->job_state, JobState::kComplete);
  }
  for (auto& c : clients) EXPECT_THAT(c->SessionStatus(), IsOk());
  for (auto& c : clients) EXPECT_THAT(c->Leave(), IsOk());
  EXPECT_THAT(reborn->Leave(), IsOk());
}

// The daemon restarts on the same port with its state (a store that outlives both server
// instances): the session resumes with the same rank and generation, and the callback hears
// "resumed".
TEST(ClientReconnectTest, DaemonRestartsWithState_SessionResumesSameRank) {
  core::MemoryStateStore store;
  std::unique_ptr<server::RendezvousServer> server = StartServer(0, &store);
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::unique_ptr<EventLog>> logs;
  for (int i = 0; i < 2; ++i) {
    clients.push_back(MakeClient(WorkerOptions(port, "durable", 2)));
    logs.push_back(std::make_unique<EventLog>());
    clients.back()->SetEventCallback(logs.back()->Callback());
  }
  std::vector<absl::StatusOr<Topology>> topos = JoinAll(clients);
  for (const auto& t : topos) ASSERT_TRUE(t.ok()) << t.status();

  server->Shutdown(absl::ZeroDuration());
  server.reset();
  server = StartServer(port, &store);
  ASSERT_NE(server, nullptr);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(Eventually([&] { return logs[i]->Count(SessionEventType::kResumed) == 1; }))
        << "client " << i << " did not resume";
    std::optional<SessionEvent> e = logs[i]->First(SessionEventType::kResumed);
    ASSERT_TRUE(e->topology.has_value());
    EXPECT_EQ(e->topology->rank, topos[i]->rank);
    EXPECT_EQ(e->topology->generation, topos[i]->generation);
    EXPECT_THAT(clients[i]->SessionStatus(), IsOk());
  }
  for (auto& c : clients) EXPECT_THAT(c->Leave(), IsOk());
  auto job = server->registry().GetJob("durable");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, core::JobState::kFinished);
}

// MS_SCHED_HOST=dead,alive: the first address refuses connections, the client moves on.
TEST_F(ClientTest, SchedHostList_DeadFirstEntry_JoinsThroughTheSecond) {
  const int dead_port = FreePort();
  ASSERT_GT(dead_port, 0);
  ClientOptions o = Options("listed", 1);
  o.sched_host = absl::StrCat("127.0.0.1:", dead_port, ",127.0.0.1:", server_->port());
  std::unique_ptr<Client> client = MakeClient(o);
  ASSERT_EQ(client->targets().size(), 2u);
  EXPECT_EQ(client->target(), absl::StrCat("127.0.0.1:", dead_port));
  const absl::Time start = absl::Now();
  absl::StatusOr<Topology> t = client->Join();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_THAT(client->Leave(), IsOk());
}

}  // namespace
}  // namespace ms_rendezvous
