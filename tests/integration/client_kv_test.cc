// The client's job KV, barrier and root-info API (Client::Kv*, Barrier, Publish/FetchRootInfo)
// against an in-process RendezvousServer on 127.0.0.1 port 0, plus a scripted daemon whose
// JobStore never answers (the session's failure alone must end a blocked call). With Gloo:
// GlooStore and a real Gloo allreduce between in-process members.
#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "ms_rendezvous/client.h"
#include "ms_rendezvous/options.h"
#include "server/server.h"
#include "test_util.h"

#ifdef MSR_HAVE_GLOO
#include "gloo/allreduce.h"
#include "gloo/common/error.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/transport/tcp/device.h"
#include "ms_rendezvous/gloo_store.h"
#endif

namespace ms_rendezvous {
namespace {

namespace pb = ::ms::rendezvous::v1;
using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::_;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

ClientOptions WorkerOptions(int port, const std::string& job, uint32_t workers,
                            const std::string& node_id) {
  ClientOptions o;
  o.role = Role::kWorker;
  o.sched_host = "127.0.0.1";
  o.sched_port = port;
  o.worker_num = workers;
  o.job_id = job;
  o.node_id = node_id;
  o.worker_ip = "127.0.0.1";
  o.topo_timeout = absl::Seconds(20);
  o.heartbeat_interval_lower = o.heartbeat_interval_upper = absl::Milliseconds(100);
  return o;
}

class ClientKvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions o;
    o.listen = "127.0.0.1:0";
    o.registry.default_topo_timeout = absl::Seconds(30);
    o.registry.kv_limits.max_value_bytes = 1000;
    auto s = server::RendezvousServer::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    const std::string addr = server_->address();
    port_ = std::stoi(addr.substr(addr.rfind(':') + 1));
  }

  // Creates and joins `n` workers of `job` (node ids "0".."n-1", so node i is rank i).
  std::vector<std::unique_ptr<Client>> JoinJob(const std::string& job, int n) {
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < n; ++i) {
      auto c = Client::Create(WorkerOptions(port_, job, n, std::to_string(i)));
      EXPECT_TRUE(c.ok()) << c.status();
      clients.push_back(std::move(*c));
    }
    std::vector<std::future<absl::StatusOr<Topology>>> joins;
    for (auto& c : clients) {
      joins.push_back(std::async(std::launch::async, [&c] { return c->Join(); }));
    }
    for (int i = 0; i < n; ++i) {
      absl::StatusOr<Topology> t = joins[i].get();
      EXPECT_TRUE(t.ok()) << t.status();
      if (t.ok()) EXPECT_EQ(t->rank, static_cast<uint32_t>(i));
    }
    return clients;
  }

  std::unique_ptr<server::RendezvousServer> server_;
  int port_ = 0;
};

TEST_F(ClientKvTest, EveryCall_BeforeJoin_FailedPrecondition) {
  auto c = Client::Create(WorkerOptions(port_, "nojoin", 1, "0"));
  ASSERT_TRUE(c.ok());
  Client& client = **c;
  const auto not_joined = StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Join()"));
  EXPECT_THAT(client.KvSet("k", "v"), not_joined);
  EXPECT_THAT(client.KvGet("k", absl::Seconds(1)), not_joined);
  EXPECT_THAT(client.KvTryGet("k"), not_joined);
  EXPECT_THAT(client.KvWait({"k"}, absl::Seconds(1)), not_joined);
  EXPECT_THAT(client.KvAdd("k", 1), not_joined);
  EXPECT_THAT(client.KvCompareSet("k", "", "v"), not_joined);
  EXPECT_THAT(client.KvDelete("k"), not_joined);
  EXPECT_THAT(client.KvList(""), not_joined);
  EXPECT_THAT(client.KvNumKeys(), not_joined);
  EXPECT_THAT(client.Barrier("b", absl::Seconds(1)), not_joined);
  EXPECT_THAT(client.PublishRootInfo("hccl_world_group", "x"), not_joined);
  EXPECT_THAT(client.FetchRootInfo("hccl_world_group", absl::Seconds(1)), not_joined);
}

TEST_F(ClientKvTest, SetGetTryGetDeleteNumKeys_HappyPathAndErrors) {
  auto c = JoinJob("kv", 1);
  Client& a = *c[0];
  const std::string binary_key("k\0bin", 5), binary_value("\0\xff\x01", 3);
  EXPECT_THAT(a.KvSet(binary_key, binary_value), IsOk());
  EXPECT_THAT(a.KvSet("plain", "1"), IsOk());
  EXPECT_EQ(*a.KvTryGet(binary_key), binary_value);
  EXPECT_EQ(*a.KvGet("plain", absl::Seconds(1)), "1");
  EXPECT_EQ(*a.KvGet("plain", absl::InfiniteDuration()), "1");
  EXPECT_EQ(*a.KvNumKeys(), 2u);

  EXPECT_THAT(a.KvTryGet("missing"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing")));
  EXPECT_THAT(a.KvGet("missing", absl::ZeroDuration()), StatusIs(absl::StatusCode::kNotFound, _));
  const absl::Time start = absl::Now();
  EXPECT_THAT(a.KvGet("missing", absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("'missing'")));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(190));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_THAT(a.KvGet("missing", absl::Milliseconds(-1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
  EXPECT_THAT(a.KvSet("big", std::string(2000, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--kv-max-value-bytes")));

  absl::StatusOr<bool> deleted = a.KvDelete("plain");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(*deleted);
  deleted = a.KvDelete("plain");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_FALSE(*deleted);
  EXPECT_EQ(*a.KvNumKeys(), 1u);
}

TEST_F(ClientKvTest, AddCompareSetList_HappyPathAndErrors) {
  auto c = JoinJob("kv2", 1);
  Client& a = *c[0];
  EXPECT_EQ(*a.KvAdd("counter", 5), 5);
  EXPECT_EQ(*a.KvAdd("counter", -7), -2);
  ASSERT_THAT(a.KvSet("text", "abc"), IsOk());
  EXPECT_THAT(a.KvAdd("text", 1), StatusIs(absl::StatusCode::kFailedPrecondition, _));

  absl::StatusOr<KvCompareSetResult> r = a.KvCompareSet("cas", "", "first");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->swapped);
  EXPECT_EQ(r->value, "first");
  r = a.KvCompareSet("cas", "wrong", "second");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->swapped);
  EXPECT_EQ(r->value, "first");
  r = a.KvCompareSet("cas", "first", "second");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->swapped);
  EXPECT_EQ(*a.KvTryGet("cas"), "second");

  // Several pages (1000 per page): every key, in order, nothing from outside the prefix.
  for (int i = 0; i < 2500; ++i) {
    ASSERT_THAT(a.KvSet(absl::StrCat("list/", 10000 + i), absl::StrCat(i)), IsOk());
  }
  auto listed = a.KvList("list/");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2500u);
  EXPECT_EQ(listed->front(), std::make_pair(std::string("list/10000"), std::string("0")));
  EXPECT_EQ(listed->back(), std::make_pair(std::string("list/12499"), std::string("2499")));
  EXPECT_THAT(*a.KvList("cas"), ElementsAre(Pair("cas", "second")));
  EXPECT_TRUE(a.KvList("nothing/")->empty());
}

TEST_F(ClientKvTest, BlockingGetAndWait_ReleasedBySetFromAnotherMember_WaitNamesMissingKey) {
  auto c = JoinJob("kv3", 2);
  auto get = std::async(std::launch::async,
                        [&] { return c[1]->KvGet("root", absl::InfiniteDuration()); });
  auto wait = std::async(std::launch::async,
                         [&] { return c[1]->KvWait({"root", "other"}, absl::Seconds(20)); });
  absl::SleepFor(absl::Milliseconds(100));
  ASSERT_THAT(c[0]->KvSet("root", "id"), IsOk());
  EXPECT_EQ(*get.get(), "id");
  ASSERT_THAT(c[0]->KvSet("other", "x"), IsOk());
  EXPECT_THAT(wait.get(), IsOk());
  EXPECT_THAT(c[1]->KvWait({"root", "never"}, absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("never")));
  EXPECT_THAT(c[1]->KvWait({"root"}, absl::ZeroDuration()), IsOk());
}

TEST_F(ClientKvTest, Barrier_AllArrive_TimeoutNamesMissingRank_Subset_BadTimeout) {
  auto c = JoinJob("bar", 3);
  std::vector<std::future<absl::Status>> arrivals;
  for (auto& cl : c) {
    arrivals.push_back(std::async(std::launch::async, [&cl] {
      return cl->Barrier("all", absl::Seconds(10));
    }));
  }
  for (auto& f : arrivals) EXPECT_THAT(f.get(), IsOk());
  // Reusable once completed; infinite timeout accepted.
  arrivals.clear();
  for (auto& cl : c) {
    arrivals.push_back(std::async(std::launch::async, [&cl] {
      return cl->Barrier("all", absl::InfiniteDuration());
    }));
  }
  for (auto& f : arrivals) EXPECT_THAT(f.get(), IsOk());

  // Rank 2 never comes.
  auto x = std::async(std::launch::async, [&] { return c[0]->Barrier("b2", absl::Milliseconds(300)); });
  auto y = std::async(std::launch::async, [&] { return c[1]->Barrier("b2", absl::Milliseconds(300)); });
  for (auto* f : {&x, &y}) {
    EXPECT_THAT(f->get(), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("rank 2")));
  }
  // A subset of ranks {0, 2}.
  auto p = std::async(std::launch::async, [&] { return c[0]->Barrier("pair", absl::Seconds(10), {0, 2}); });
  EXPECT_THAT(c[2]->Barrier("pair", absl::Seconds(10), {0, 2}), IsOk());
  EXPECT_THAT(p.get(), IsOk());
  EXPECT_THAT(c[1]->Barrier("pair2", absl::Seconds(1), {0, 2}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not one of its participants")));
  EXPECT_THAT(c[0]->Barrier("z", absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must be > 0")));
}

TEST_F(ClientKvTest, JobFails_BlockedGetAndBarrierEndPromptlyAbortedNamingTheMember) {
  auto c = JoinJob("fail", 3);
  auto get = std::async(std::launch::async,
                        [&] { return c[0]->KvGet("never", absl::InfiniteDuration()); });
  auto barrier = std::async(std::launch::async,
                            [&] { return c[2]->Barrier("b", absl::InfiniteDuration()); });
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Time start = absl::Now();
  ASSERT_THAT(c[1]->ReportError("NCCL init exploded"), IsOk());
  const auto failed = StatusIs(absl::StatusCode::kAborted,
                               AllOf(HasSubstr("NCCL init exploded"), HasSubstr("rank 1")));
  EXPECT_THAT(get.get(), failed);
  EXPECT_THAT(barrier.get(), failed);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // Later calls return the session's failure at once.
  EXPECT_THAT(c[0]->KvSet("k", "v"), failed);
  EXPECT_THAT(c[0]->KvGet("k", absl::InfiniteDuration()), failed);
  EXPECT_EQ(c[0]->SessionStatus(), c[0]->KvTryGet("k").status());
}

TEST_F(ClientKvTest, RootInfo_PublishedByRankZero_FetchedByOthers_KeyIsMindSporesPattern) {
  auto c = JoinJob("root", 3);
  EXPECT_EQ(RootInfoKey(Role::kWorker, "nccl_world_group"), "worker_group_info_nccl_world_group");
  EXPECT_EQ(RootInfoKey(Role::kPServer, "g"), "server_group_info_g");
  auto fetch = std::async(std::launch::async, [&] { return c[2]->FetchRootInfo("nccl_world_group"); });
  EXPECT_THAT(c[1]->PublishRootInfo("nccl_world_group", "nope"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("rank 1")));
  const std::string id(128, '\x7f');
  ASSERT_THAT(c[0]->PublishRootInfo("nccl_world_group", id), IsOk());
  EXPECT_EQ(*fetch.get(), id);
  EXPECT_EQ(*c[1]->FetchRootInfo("nccl_world_group", absl::Seconds(1)), id);
  EXPECT_EQ(*c[1]->KvTryGet("worker_group_info_nccl_world_group"), id);
  EXPECT_THAT(c[0]->PublishRootInfo("", "x"), StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST_F(ClientKvTest, FetchRootInfo_Timeout_NamesRootRankAndHost) {
  auto c = JoinJob("root2", 2);
  const absl::Time start = absl::Now();
  EXPECT_THAT(c[1]->FetchRootInfo("hccl_world_group", absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("worker_group_info_hccl_world_group"),
                             HasSubstr("MS_WORKER rank 0"), HasSubstr("node '0'"),
                             HasSubstr("host 127.0.0.1"))));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // A sub-group: the root is named by its group rank.
  EXPECT_THAT(c[1]->FetchRootInfo("sub", absl::Milliseconds(100)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("rank 0 of group 'sub'")));
}

TEST_F(ClientKvTest, ConcurrentCallsFromEightThreads_OneClient) {
  auto c = JoinJob("conc", 2);
  Client& a = *c[0];
  constexpr int kThreads = 8, kOps = 50;
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kOps; ++i) {
        const std::string key = absl::StrCat("t", t, "/", i);
        if (!a.KvSet(key, absl::StrCat(t * 1000 + i)).ok()) ++errors;
        absl::StatusOr<std::string> v = a.KvGet(key, absl::Seconds(5));
        if (!v.ok() || *v != absl::StrCat(t * 1000 + i)) ++errors;
        if (!a.KvAdd("counter", 1).ok()) ++errors;
      }
      // A blocking get per thread released by the other member.
      absl::StatusOr<std::string> v = a.KvGet(absl::StrCat("release/", t), absl::Seconds(20));
      if (!v.ok() || *v != "go") ++errors;
    });
  }
  absl::SleepFor(absl::Milliseconds(100));
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_THAT(c[1]->KvSet(absl::StrCat("release/", t), "go"), IsOk());
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(*a.KvTryGet("counter"), absl::StrCat(kThreads * kOps));
  EXPECT_EQ(a.KvList("t")->size(), static_cast<size_t>(kThreads * kOps));
}

TEST_F(ClientKvTest, CrossJob_KeysInvisible_AfterLeave_FailedPrecondition) {
  auto a = JoinJob("job-a", 1);
  auto b = JoinJob("job-b", 1);
  ASSERT_THAT(a[0]->KvSet("secret", "a"), IsOk());
  EXPECT_THAT(b[0]->KvTryGet("secret"), StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_EQ(*b[0]->KvNumKeys(), 0u);
  ASSERT_THAT(a[0]->Leave(), IsOk());
  EXPECT_THAT(a[0]->KvTryGet("secret"), StatusIs(absl::StatusCode::kFailedPrecondition, _));
}

// --- The session's failure alone ends a blocked call (the daemon's answer is lost) ----------

// Session: completes a one-member job, then pushes JOB_FAILED when told. JobStore.Get: never
// answers (until cancelled) - as if the daemon's answer were lost.
class SilentStoreDaemon final : public pb::Rendezvous::Service,
                                public pb::JobStore::CallbackService {
 public:
  SilentStoreDaemon() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(static_cast<pb::Rendezvous::Service*>(this));
    builder.RegisterService(static_cast<pb::JobStore::CallbackService*>(this));
    server_ = builder.BuildAndStart();
  }
  ~SilentStoreDaemon() override {
    FailJob();
    server_->Shutdown(std::chrono::system_clock::now());
  }
  int port() const { return port_; }
  void FailJob() {
    if (!fail_.HasBeenNotified()) fail_.Notify();
  }
  int parked_gets() const { return parked_.load(); }
  int cancelled_gets() const { return cancelled_.load(); }

  grpc::Status Session(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<pb::SessionResponse, pb::SessionRequest>* stream) override {
    pb::SessionRequest req;
    if (!stream->Read(&req)) return grpc::Status::OK;
    pb::SessionResponse resp;
    pb::Topology* t = resp.mutable_topology();
    t->set_job_id(req.join().member().job_id());
    t->set_role(req.join().member().role());
    t->set_node_id(req.join().member().node_id());
    t->set_world_size(1);
    t->set_host("127.0.0.1");
    t->set_generation(1);
    t->set_incarnation(7);
    t->set_worker_num(1);
    stream->Write(resp);
    while (!fail_.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
      if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
    }
    pb::SessionResponse ev;
    ev.mutable_event()->set_type(pb::JOB_EVENT_JOB_FAILED);
    ev.mutable_event()->mutable_job()->set_job_id(req.join().member().job_id());
    ev.mutable_event()->mutable_job()->set_state(pb::JOB_STATE_FAILED);
    ev.mutable_event()->set_message("job failed: MS_WORKER rank 5 (node 'n5') reported: disk full");
    stream->Write(ev);
    return grpc::Status(grpc::StatusCode::ABORTED, "job failed");
  }

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext*, const pb::KvGetRequest*,
                                pb::KvGetResponse*) override {
    class Parked final : public grpc::ServerUnaryReactor {
     public:
      explicit Parked(std::atomic<int>* cancelled) : cancelled_(cancelled) {}
      void OnCancel() override {
        cancelled_->fetch_add(1);
        Finish(grpc::Status::CANCELLED);
      }
      void OnDone() override { delete this; }

     private:
      std::atomic<int>* cancelled_;
    };
    parked_.fetch_add(1);
    return new Parked(&cancelled_);
  }

 private:
  absl::Notification fail_;
  std::atomic<int> parked_{0}, cancelled_{0};
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST(ClientKvSessionTest, DaemonNeverAnswersGet_SessionFailureEndsItAndCancelsTheRpc) {
  SilentStoreDaemon daemon;
  ASSERT_GT(daemon.port(), 0);
  auto c = Client::Create(WorkerOptions(daemon.port(), "lost", 1, "0"));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->Join().ok());
  auto get = std::async(std::launch::async,
                        [&] { return (*c)->KvGet("k", absl::InfiniteDuration()); });
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (daemon.parked_gets() == 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(daemon.parked_gets(), 1);
  const absl::Time start = absl::Now();
  daemon.FailJob();
  EXPECT_THAT(get.get(), StatusIs(absl::StatusCode::kAborted, HasSubstr("disk full")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  // The RPC was cancelled, so the daemon could free its waiter.
  const absl::Time until2 = absl::Now() + absl::Seconds(5);
  while (daemon.cancelled_gets() == 0 && absl::Now() < until2) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(daemon.cancelled_gets(), 1);
}

#ifdef MSR_HAVE_GLOO
// --- GlooStore -------------------------------------------------------------------------------

TEST_F(ClientKvTest, GlooStore_SetGetWait_PrefixApplied_TimeoutThrowsIoException) {
  auto c = JoinJob("gloo-store", 1);
  GlooStore store(c[0].get(), "gloo/g1/", absl::Milliseconds(300));
  store.set("0", std::vector<char>{'a', '\0', 'b'});
  EXPECT_EQ(*c[0]->KvTryGet("gloo/g1/0"), std::string("a\0b", 3));
  EXPECT_EQ(store.get("0"), (std::vector<char>{'a', '\0', 'b'}));
  store.wait({"0"});
  store.wait({"0"}, std::chrono::milliseconds(100));
  try {
    store.wait({"0", "1"}, std::chrono::milliseconds(100));
    ADD_FAILURE() << "wait for a missing key did not throw";
  } catch (const ::gloo::IoException& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr("DEADLINE_EXCEEDED"), HasSubstr("gloo/g1/1")));
  }
  EXPECT_THROW(store.get("missing"), ::gloo::IoException);
}

TEST_F(ClientKvTest, GlooStore_FourMembersAllreduceOverLoopback) {
  constexpr int kWorld = 4;
  auto c = JoinJob("gloo-allreduce", kWorld);
  std::vector<std::future<std::vector<int64_t>>> results;
  for (int r = 0; r < kWorld; ++r) {
    results.push_back(std::async(std::launch::async, [&, r] {
      GlooStore store(c[r].get(), "gloo/1/test/", absl::Seconds(20));
      ::gloo::transport::tcp::attr attr;
      attr.hostname = "127.0.0.1";
      auto dev = ::gloo::transport::tcp::CreateDevice(attr);
      auto ctx = std::make_shared<::gloo::rendezvous::Context>(r, kWorld);
      ctx->setTimeout(std::chrono::seconds(20));
      ctx->connectFullMesh(store, dev);
      std::vector<int64_t> data(8);
      for (int i = 0; i < 8; ++i) data[i] = r * 100 + i;
      ::gloo::AllreduceOptions opts(ctx);
      opts.setOutput(data.data(), data.size());
      opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(
          &::gloo::sum<int64_t>));
      ::gloo::allreduce(opts);
      return data;
    }));
  }
  for (auto& f : results) {
    std::vector<int64_t> got = f.get();
    for (int i = 0; i < 8; ++i) EXPECT_EQ(got[i], 600 + 4 * i);
  }
}
#endif  // MSR_HAVE_GLOO

}  // namespace
}  // namespace ms_rendezvous
