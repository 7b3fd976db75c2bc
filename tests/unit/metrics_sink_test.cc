// The core's MetricsSink wiring: a fake sink and a FakeClock, no gRPC, no prometheus.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/job_registry.h"
#include "core/metrics_sink.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::Pair;

class FakeSink final : public MetricsSink {
 public:
  void OnJoin(Role role) override {
    absl::MutexLock l(&mu);
    ++joins[std::string(RoleName(role))];
  }
  void OnRejection(absl::string_view code) override {
    absl::MutexLock l(&mu);
    ++rejections[std::string(code)];
  }
  void OnHeartbeat() override {
    absl::MutexLock l(&mu);
    ++heartbeats;
  }
  void OnMemberDead(DeathKind kind, absl::Duration latency) override {
    absl::MutexLock l(&mu);
    deaths.push_back({std::string(DeathKindName(kind)), latency});
  }
  void OnKvOp(KvOp op) override {
    absl::MutexLock l(&mu);
    ++kv_ops[std::string(KvOpName(op))];
  }

  absl::Mutex mu;
  std::map<std::string, int> joins;
  std::map<std::string, int> rejections;
  int heartbeats = 0;
  std::vector<std::pair<std::string, absl::Duration>> deaths;
  std::map<std::string, int> kv_ops;
};

class NullSession final : public MemberSession {
 public:
  void OnTopology(const Topology&) override {}
  void OnEvent(const JobEvent&) override {}
  void OnEnd(const absl::Status&) override {}
};

class MetricsSinkTest : public ::testing::Test {
 protected:
  MetricsSinkTest() {
    RegistryOptions o;
    o.default_topo_timeout = absl::Seconds(60);
    o.default_node_timeout = absl::Seconds(30);
    o.disconnect_grace = absl::Seconds(2);
    o.metrics = &sink_;
    reg_ = std::make_unique<JobRegistry>(&clock_, o);
  }

  static MemberSpec Spec(const std::string& job, const std::string& node_id, uint32_t n,
                         bool recovery = false) {
    MemberSpec s;
    s.job_id = job;
    s.node_id = node_id;
    s.host = "10.0.0.1";
    s.worker_num = n;
    s.enable_recovery = recovery;
    return s;
  }

  MemberRef Join(const MemberSpec& spec) {
    auto ref = reg_->JoinSession(spec, std::make_shared<NullSession>());
    EXPECT_THAT(ref, IsOk());
    return ref.ok() ? *ref : MemberRef{};
  }

  void Advance(absl::Duration d) {
    clock_.Advance(d);
    reg_->ProcessDeadlines();
  }

  FakeClock clock_;
  FakeSink sink_;
  std::unique_ptr<JobRegistry> reg_;
};

TEST_F(MetricsSinkTest, CountsJoinsRejectionsHeartbeatsAndDeathsWithLatency) {
  MemberRef a = Join(Spec("j", "0", 2));
  MemberRef b = Join(Spec("j", "1", 2));
  // Duplicate node id, then a job that is already full, then a malformed spec.
  EXPECT_FALSE(reg_->JoinSession(Spec("j", "1", 2), std::make_shared<NullSession>()).ok());
  EXPECT_FALSE(reg_->JoinSession(Spec("j", "x", 2), std::make_shared<NullSession>()).ok());
  EXPECT_FALSE(reg_->JoinSession(Spec("", "0", 2), std::make_shared<NullSession>()).ok());

  for (int s : {10, 10, 5}) {  // t = 10, 20, 25 s
    Advance(absl::Seconds(s));
    ASSERT_THAT(reg_->Heartbeat(a), IsOk());
  }
  // b was last heard at completion (t=0); its 30 s liveness check fires at t=30 s.
  Advance(absl::Seconds(10));  // t = 35 s

  absl::MutexLock l(&sink_.mu);
  EXPECT_THAT(sink_.joins, ElementsAre(Pair("MS_WORKER", 2)));
  int rejected = 0;
  for (auto& [code, n] : sink_.rejections) rejected += n;
  EXPECT_EQ(rejected, 3);
  EXPECT_EQ(sink_.heartbeats, 3);
  ASSERT_EQ(sink_.deaths.size(), 1u);
  EXPECT_EQ(sink_.deaths[0].first, "heartbeat_timeout");
  EXPECT_EQ(sink_.deaths[0].second, absl::Seconds(35));  // judged when the clock reached 35 s
}

TEST_F(MetricsSinkTest, DisconnectAndReportedErrorAreTheirOwnKinds) {
  MemberRef a = Join(Spec("r", "0", 2, /*recovery=*/true));
  auto session_b = std::make_shared<NullSession>();
  auto b = reg_->JoinSession(Spec("r", "1", 2, true), session_b);
  ASSERT_THAT(b, IsOk());
  Advance(absl::Seconds(1));
  reg_->SessionClosed(*b, session_b.get());
  Advance(absl::Seconds(2));  // disconnect grace
  ASSERT_THAT(reg_->ReportError(a, "boom"), IsOk());
  absl::MutexLock l(&sink_.mu);
  ASSERT_EQ(sink_.deaths.size(), 2u);
  EXPECT_EQ(sink_.deaths[0].first, "disconnected");
  EXPECT_EQ(sink_.deaths[0].second, absl::Seconds(3));  // last heard at t=0, dead at t=3
  EXPECT_EQ(sink_.deaths[1].first, "reported_error");
}

TEST_F(MetricsSinkTest, CountsKvOpsAndStateGauges) {
  MemberRef a = Join(Spec("k", "0", 2));
  Join(Spec("w", "0", 3));  // forming, waiting
  {
    RegistryCounts c = reg_->Counts();
    EXPECT_EQ(c.jobs[static_cast<int>(JobState::kForming)], 2u);
    EXPECT_EQ(c.members[static_cast<int>(MemberState::kWaiting)], 2u);
  }
  MemberRef b = Join(Spec("k", "1", 2));
  {
    RegistryCounts c = reg_->Counts();
    EXPECT_EQ(c.jobs[static_cast<int>(JobState::kForming)], 1u);
    EXPECT_EQ(c.jobs[static_cast<int>(JobState::kComplete)], 1u);
    EXPECT_EQ(c.members[static_cast<int>(MemberState::kActive)], 2u);
    EXPECT_EQ(c.members[static_cast<int>(MemberState::kWaiting)], 1u);
  }
  reg_->KvSet(a, "x", "1", [](absl::Status) {});
  reg_->KvGet(a, "x", absl::ZeroDuration(), [](absl::StatusOr<std::string>) {});
  EXPECT_THAT(reg_->KvNumKeys(a), IsOk());
  ASSERT_THAT(reg_->Leave(a), IsOk());
  ASSERT_THAT(reg_->Leave(b), IsOk());
  RegistryCounts c = reg_->Counts();
  EXPECT_EQ(c.jobs[static_cast<int>(JobState::kFinished)], 1u);
  EXPECT_EQ(c.members[static_cast<int>(MemberState::kLeft)], 2u);
  EXPECT_EQ(c.members[static_cast<int>(MemberState::kActive)], 0u);
  absl::MutexLock l(&sink_.mu);
  EXPECT_THAT(sink_.kv_ops, ElementsAre(Pair("get", 1), Pair("num_keys", 1), Pair("set", 1)));
}

}  // namespace
}  // namespace ms_rendezvous::core
