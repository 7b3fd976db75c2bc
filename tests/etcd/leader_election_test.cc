// LeaderElection against a real 3-member etcd cluster, in process: one winner at a time, a
// standby learns the leader's address and takes over when the leader's lease ends, Resign()
// hands over at once, and -- the safety property -- a deposed leader's writes are fenced: its
// EtcdStateStore applies nothing once another daemon holds the election key, whether or not
// the deposed daemon has noticed.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "etcd_cluster.h"
#include "gtest/gtest.h"
#include "server/leader_election.h"
#include "store/etcd/etcd_state_store.h"

namespace ms_rendezvous::server {
namespace {

using ::ms_rendezvous::core::EtcdStateStore;
using ::ms_rendezvous::core::Mutation;
using ::ms_rendezvous::testing::EtcdCluster;

class LeaderElectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MSR_REQUIRE_ETCD();
    auto c = EtcdCluster::Start(3);
    ASSERT_TRUE(c.ok()) << c.status();
    etcd_ = *std::move(c);
  }

  std::unique_ptr<EtcdStateStore> OpenStore() {
    EtcdStateStore::Options o;
    o.endpoints = etcd_->Endpoints();
    o.prefix = prefix_;
    o.commit_timeout = absl::Seconds(5);
    auto s = EtcdStateStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  LeaderElectionOptions Options(const std::string& advertise) {
    return LeaderElectionOptions{prefix_ + "leader", advertise, absl::Seconds(2)};
  }

  static absl::Status Commit(EtcdStateStore& store, const std::string& key) {
    Mutation m;
    m.kind = Mutation::Kind::kPutKv;
    m.kv = core::KvRecord{"job", key, "value"};
    absl::Notification done;
    absl::Status out;
    store.Commit({m}, [&](absl::Status s) {
      out = s;
      done.Notify();
    });
    done.WaitForNotification();
    return out;
  }

  std::unique_ptr<EtcdCluster> etcd_;
  std::string prefix_ = absl::StrCat("/election-", getpid(), "/");
};

TEST_F(LeaderElectionTest, OneLeader_StandbyKnowsIt_TakesOverAfterResign) {
  auto store_a = OpenStore();
  auto store_b = OpenStore();
  ASSERT_NE(store_a, nullptr);
  ASSERT_NE(store_b, nullptr);
  LeaderElection a(&store_a->client(), Options("10.0.0.1:8118"));
  LeaderElection b(&store_b->client(), Options("10.0.0.2:8118"));
  auto fence_a = a.Campaign(nullptr);
  ASSERT_TRUE(fence_a.ok()) << fence_a.status();
  EXPECT_EQ(*a.CurrentLeader(), "10.0.0.1:8118");

  std::atomic<bool> b_won{false};
  std::string seen;
  absl::Mutex mu;
  std::thread standby([&] {
    auto f = b.Campaign([&](const std::string& leader) {
      absl::MutexLock l(&mu);
      seen = leader;
    });
    EXPECT_TRUE(f.ok()) << f.status();
    b_won = f.ok();
  });
  absl::SleepFor(absl::Seconds(1));
  EXPECT_FALSE(b_won.load()) << "two leaders at once";
  {
    absl::MutexLock l(&mu);
    EXPECT_EQ(seen, "10.0.0.1:8118");
  }
  const absl::Time resigned = absl::Now();
  ASSERT_TRUE(a.Resign().ok());
  standby.join();
  EXPECT_TRUE(b_won.load());
  EXPECT_LT(absl::Now() - resigned, absl::Seconds(2)) << "Resign() should hand over at once";
  EXPECT_EQ(*b.CurrentLeader(), "10.0.0.2:8118");
}

TEST_F(LeaderElectionTest, DeadLeader_ReplacedWithinTheLeaseTtl) {
  auto store_a = OpenStore();
  auto store_b = OpenStore();
  auto a = std::make_unique<LeaderElection>(&store_a->client(), Options("a:1"));
  ASSERT_TRUE(a->Campaign(nullptr).ok());
  LeaderElection b(&store_b->client(), Options("b:1"));
  // The leader stops renewing (its process died): destroying it stops the keep-alive without
  // revoking the lease.
  const absl::Time died = absl::Now();
  a.reset();
  auto f = b.Campaign(nullptr);
  ASSERT_TRUE(f.ok()) << f.status();
  const absl::Duration takeover = absl::Now() - died;
  std::cout << "takeover after the leader stopped renewing: " << absl::FormatDuration(takeover)
            << " (ttl 2s)" << std::endl;
  EXPECT_LT(takeover, absl::Seconds(2) + absl::Seconds(3));
}

TEST_F(LeaderElectionTest, DeposedLeadersWriteIsFenced_NothingApplied) {
  auto store_a = OpenStore();
  auto store_b = OpenStore();
  LeaderElection a(&store_a->client(), Options("a:1"));
  auto fence_a = a.Campaign(nullptr);
  ASSERT_TRUE(fence_a.ok());
  store_a->SetFence(*fence_a);
  ASSERT_TRUE(Commit(*store_a, "while-leading").ok());
  // A pause longer than the lease, as etcd sees it: the lease ends (revoked here, so the test
  // does not wait) while daemon A is not looking; B wins.
  std::optional<absl::Status> a_lost;
  a.WatchLeadership([&](absl::Status st) { a_lost = st; });
  ASSERT_TRUE(store_b->client().LeaseRevoke(a.lease_id()).ok());
  LeaderElection b(&store_b->client(), Options("b:1"));
  auto fence_b = b.Campaign(nullptr);
  ASSERT_TRUE(fence_b.ok());
  store_b->SetFence(*fence_b);
  // A still believes it leads and writes: the txn's fence fails, nothing is applied.
  absl::Status st = Commit(*store_a, "after-deposed");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("fenced"), absl::string_view::npos) << st;
  ASSERT_TRUE(Commit(*store_b, "new-leader").ok());
  auto loaded = store_b->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::vector<std::string> keys;
  for (const auto& kv : loaded->kv) keys.push_back(kv.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"new-leader", "while-leading"}));
}

}  // namespace
}  // namespace ms_rendezvous::server
