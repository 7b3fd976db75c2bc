// Core tests: JobRegistry driven by a FakeClock, no gRPC. Each test is one rule of the
// rendezvous (ranks, rejections, timeouts, reuse, events).
#include "core/job_registry.h"

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/memory_state_store.h"
#include "test_util.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct JoinResult {
  absl::Mutex mu;
  bool done = false;
  absl::StatusOr<Topology> topo = absl::UnknownError("pending");
  uint64_t waiter = 0;

  bool Done() {
    absl::MutexLock l(&mu);
    return done;
  }
  absl::StatusOr<Topology> Get() {
    absl::MutexLock l(&mu);
    return topo;
  }
};

class IgnoringSession final : public MemberSession {
 public:
  void OnRegistered(const MemberRef&) override {}
  void OnTopology(const Topology&) override {}
  void OnEvent(const JobEvent&) override {}
  void OnEnd(const absl::Status&) override {}
};

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() { Reset(RegistryOptions{}); }

  void Reset(RegistryOptions options) {
    options.default_topo_timeout = absl::Seconds(60);
    options.finished_job_ttl = absl::Hours(1);
    reg_ = std::make_unique<JobRegistry>(&clock_, options, &store_);
  }

  static MemberSpec Spec(const std::string& job, const std::string& node_id,
                         uint32_t worker_num = 4, const std::string& host = "10.0.0.1") {
    MemberSpec s;
    s.job_id = job;
    s.node_id = node_id;
    s.host = host;
    s.host_name = "host-" + host;
    s.worker_num = worker_num;
    return s;
  }

  std::shared_ptr<JoinResult> Join(MemberSpec spec) {
    auto r = std::make_shared<JoinResult>();
    uint64_t w = reg_->Join(std::move(spec), [r](absl::StatusOr<Topology> t) {
      absl::MutexLock l(&r->mu);
      EXPECT_FALSE(r->done) << "join callback ran twice";
      r->done = true;
      r->topo = std::move(t);
    });
    r->waiter = w;
    return r;
  }

  // Joins n workers "0".."n-1" (numeric) and returns their results.
  std::vector<std::shared_ptr<JoinResult>> JoinNumeric(const std::string& job, uint32_t n,
                                                       uint32_t count) {
    std::vector<std::shared_ptr<JoinResult>> out;
    for (uint32_t i = 0; i < count; ++i) out.push_back(Join(Spec(job, std::to_string(i), n)));
    return out;
  }

  // A member that joins through a session (so it holds its registration's credential before
  // the job is complete); the session ignores what the core pushes.
  absl::StatusOr<MemberRef> JoinWithSession(MemberSpec spec) {
    return reg_->JoinSession(std::move(spec), std::make_shared<IgnoringSession>());
  }

  void Advance(absl::Duration d) {
    clock_.Advance(d);
    reg_->ProcessDeadlines();
  }

  FakeClock clock_;
  MemoryStateStore store_;
  std::unique_ptr<JobRegistry> reg_;
};

TEST_F(RegistryTest, Join_AllNumeric_CompletesWithRankEqualNodeId) {
  auto rs = JoinNumeric("j", 4, 3);
  for (auto& r : rs) EXPECT_FALSE(r->Done());
  auto last = Join(Spec("j", "3"));
  rs.push_back(last);
  std::set<uint32_t> ranks;
  for (uint32_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(rs[i]->Done());
    auto t = rs[i]->Get();
    ASSERT_THAT(t, IsOk());
    EXPECT_EQ(t->rank, i);
    EXPECT_EQ(t->world_size, 4u);
    EXPECT_EQ(t->local_world_size, 4u);
    EXPECT_EQ(t->local_rank, i);
    EXPECT_EQ(t->num_nodes, 1u);
    EXPECT_EQ(t->generation, 1u);
    ranks.insert(t->rank);
  }
  EXPECT_EQ(ranks.size(), 4u);
  auto job = reg_->GetJob("j");
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(job->state, JobState::kComplete);
}

TEST_F(RegistryTest, Join_TwoHostsNamedNodes_LocalAndNodeRanksFromAddress) {
  std::vector<std::shared_ptr<JoinResult>> rs;
  // Same host NAME on both machines: grouping must use the address.
  for (int i = 0; i < 4; ++i) {
    MemberSpec s = Spec("j", "uuid-" + std::to_string(i), 4, i < 2 ? "10.0.0.2" : "10.0.0.1");
    s.host_name = "localhost";
    s.device_id = i % 2;
    rs.push_back(Join(s));
  }
  for (int i = 0; i < 4; ++i) {
    auto t = rs[i]->Get();
    ASSERT_THAT(t, IsOk());
    const bool first_host = i >= 2;  // 10.0.0.1 sorts first
    EXPECT_EQ(t->rank, (first_host ? 0u : 2u) + i % 2);
    EXPECT_EQ(t->local_rank, static_cast<uint32_t>(i % 2));
    EXPECT_EQ(t->local_world_size, 2u);
    EXPECT_EQ(t->node_rank, first_host ? 0u : 1u);
    EXPECT_EQ(t->num_nodes, 2u);
  }
}

TEST_F(RegistryTest, Join_PServerRole_HasItsOwnRankSpace) {
  std::vector<std::shared_ptr<JoinResult>> workers, servers;
  for (int i = 0; i < 2; ++i) {
    MemberSpec s = Spec("ps", std::to_string(i), 2);
    s.server_num = 2;
    workers.push_back(Join(s));
    s.role = Role::kPServer;
    servers.push_back(Join(s));  // same node id "0"/"1", other role: no conflict
  }
  for (int i = 0; i < 2; ++i) {
    auto w = workers[i]->Get();
    auto s = servers[i]->Get();
    ASSERT_THAT(w, IsOk());
    ASSERT_THAT(s, IsOk());
    EXPECT_EQ(w->rank, static_cast<uint32_t>(i));
    EXPECT_EQ(s->rank, static_cast<uint32_t>(i));
    EXPECT_EQ(s->role, Role::kPServer);
    EXPECT_EQ(s->world_size, 2u);
    EXPECT_EQ(s->server_num, 2u);
  }
}

TEST_F(RegistryTest, Join_PServerWithoutServerNum_InvalidArgument) {
  MemberSpec s = Spec("ps", "0", 2);
  s.role = Role::kPServer;
  auto r = Join(s);
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MS_SERVER_NUM=0")));
}

TEST_F(RegistryTest, Join_WorkerNumDisagrees_FailedPreconditionNamesBothValues) {
  Join(Spec("j", "0", 4));
  auto r = Join(Spec("j", "1", 8));
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                 AllOf(HasSubstr("MS_WORKER_NUM=8"), HasSubstr("MS_WORKER_NUM=4"))));
}

TEST_F(RegistryTest, Join_ServerNumDisagrees_FailedPrecondition) {
  MemberSpec a = Spec("j", "0", 2);
  a.server_num = 1;
  Join(a);
  auto r = Join(Spec("j", "1", 2));
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                 AllOf(HasSubstr("MS_SERVER_NUM=0"), HasSubstr("MS_SERVER_NUM=1"))));
}

TEST_F(RegistryTest, Join_RepeatedNodeId_AlreadyExists) {
  Join(Spec("j", "worker-a"));
  auto r = Join(Spec("j", "worker-a", 4, "10.0.0.7"));
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kAlreadyExists,
                                 AllOf(HasSubstr("Repeated registration node"),
                                       HasSubstr("worker-a"), HasSubstr("10.0.0.1"))));
}

TEST_F(RegistryTest, Join_SameRankSpelledTwice_AlreadyExists) {
  Join(Spec("j", "3"));
  auto r = Join(Spec("j", "03"));
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kAlreadyExists,
                                 AllOf(HasSubstr("rank 3"), HasSubstr("'3'"))));
}

TEST_F(RegistryTest, Join_NumericNodeIdOutOfRange_InvalidArgumentNamesRange) {
  auto r = Join(Spec("j", "4", 4));
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kInvalidArgument,
                                 AllOf(HasSubstr("MS_NODE_ID=4"), HasSubstr("0..3"),
                                       HasSubstr("MS_WORKER_NUM=4"))));
}

TEST_F(RegistryTest, Join_ExtraMemberAfterComplete_ResourceExhausted) {
  JoinNumeric("j", 2, 2);
  auto r = Join(Spec("j", "extra", 2));
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kResourceExhausted,
                                 AllOf(HasSubstr("'extra' is extra"), HasSubstr("all 2"))));
  // A complete member's node id again is a repeat, not an extra.
  auto again = Join(Spec("j", "1", 2));
  EXPECT_THAT(again->Get(), StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("'1'")));
}

TEST_F(RegistryTest, Join_MalformedSpec_InvalidArgumentNamesField) {
  EXPECT_THAT(Join(Spec("", "0"))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MS_JOB_ID")));
  EXPECT_THAT(Join(Spec("a b", "0"))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("contains ' '")));
  EXPECT_THAT(Join(Spec("j", ""))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MS_NODE_ID")));
  EXPECT_THAT(Join(Spec("j", "a\tb"))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-printable")));
  EXPECT_THAT(Join(Spec("j", "0", 0))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MS_WORKER_NUM=0")));
  EXPECT_THAT(Join(Spec("j", "0", 4, ""))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MS_WORKER_IP")));
  MemberSpec bad_device = Spec("j", "0");
  bad_device.device_id = -5;
  EXPECT_THAT(Join(bad_device)->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("DEVICE_ID=-5")));
  // Nothing above created a job.
  EXPECT_EQ(reg_->num_jobs(), 0u);
}

TEST_F(RegistryTest, Join_IdRules_EveryRuleRejectedWithItsVariable) {
  const std::string longest(128, 'a');
  const std::string too_long(129, 'a');
  // Job id: 1..128 characters of A-Z a-z 0-9 . _ : -
  EXPECT_THAT(Join(Spec(longest, "0", 1))->Get(), IsOk());
  EXPECT_THAT(Join(Spec(too_long, "0"))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("MS_JOB_ID="), HasSubstr("1..128 characters"))));
  EXPECT_THAT(Join(Spec("", "0"))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("MS_JOB_ID=\"\""), HasSubstr("1..128 characters"))));
  for (const char* bad : {"a/b", "a b", "job\xc3\xa9", "a*", "a\nb"}) {
    EXPECT_THAT(Join(Spec(bad, "0"))->Get(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("MS_JOB_ID="), HasSubstr("allowed characters"))))
        << bad;
  }
  EXPECT_THAT(Join(Spec("A-z_0.9:x", "0", 1))->Get(), IsOk());
  // Node id: 1..128 printable ASCII characters without spaces.
  EXPECT_THAT(Join(Spec("n1", longest, 1))->Get(), IsOk());
  EXPECT_THAT(Join(Spec("n2", too_long))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("MS_NODE_ID="), HasSubstr("1..128 characters"))));
  EXPECT_THAT(Join(Spec("n2", ""))->Get(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("MS_NODE_ID=\"\""), HasSubstr("1..128 characters"))));
  for (const char* bad : {"a b", "a\tb", "caf\xc3\xa9", "\x7f"}) {
    EXPECT_THAT(Join(Spec("n2", bad))->Get(),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("MS_NODE_ID="), HasSubstr("non-printable"))))
        << bad;
  }
  EXPECT_THAT(Join(Spec("n3", "worker/0@host", 1))->Get(), IsOk());
  EXPECT_EQ(reg_->num_jobs(), 4u);  // 128 a's, A-z_0.9:x, n1, n3
}

TEST_F(RegistryTest, MaxJobs_NewJobBeyondLimit_ResourceExhaustedNamesFlag) {
  RegistryOptions options;
  options.max_jobs = 2;
  Reset(options);
  auto a = Join(Spec("a", "0", 2));
  auto b = Join(Spec("b", "0", 2));
  auto c = Join(Spec("c", "0", 2));
  EXPECT_THAT(c->Get(), StatusIs(absl::StatusCode::kResourceExhausted,
                                 AllOf(HasSubstr("'c'"), HasSubstr("already serves 2 jobs"),
                                       HasSubstr("--max-jobs=2"))));
  EXPECT_EQ(reg_->num_jobs(), 2u);  // the refused job left no trace
  // Members of existing jobs are not affected by the limit.
  auto a1 = Join(Spec("a", "1", 2));
  ASSERT_THAT(a1->Get(), IsOk());
  // Jobs that ended (awaiting forgetting) do not count: "a" finishes, "c" may start.
  for (auto* r : {a.get(), a1.get()}) {
    auto t = r->Get();
    ASSERT_THAT(t, IsOk());
    ASSERT_THAT(reg_->Leave(MemberRef{"a", Role::kWorker, t->node_id, t->incarnation, t->credential}), IsOk());
  }
  ASSERT_EQ(reg_->GetJob("a")->state, JobState::kFinished);
  auto c2 = Join(Spec("c", "0", 1));
  EXPECT_THAT(c2->Get(), IsOk());
  // Now b and c are live: reusing the ended id "a" would be a third live job.
  EXPECT_THAT(Join(Spec("a", "0", 2))->Get(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max-jobs=2")));
  // Sessions are refused the same way.
  MemberSpec d = Spec("d", "0", 2);
  EXPECT_THAT(reg_->JoinSession(d, nullptr),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max-jobs=2")));
}

TEST_F(RegistryTest, MaxMembersPerJob_SumAboveLimit_ResourceExhaustedNamesBoth) {
  RegistryOptions options;
  options.max_members_per_job = 10;
  Reset(options);
  MemberSpec s = Spec("j", "0", 8);
  s.server_num = 3;
  EXPECT_THAT(Join(s)->Get(),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("MS_WORKER_NUM=8"), HasSubstr("MS_SERVER_NUM=3"),
                             HasSubstr("--max-members-per-job=10"))));
  EXPECT_THAT(reg_->JoinSession(s, nullptr),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max-members-per-job=10")));
  EXPECT_EQ(reg_->num_jobs(), 0u);
  s.server_num = 2;  // exactly at the limit
  auto ok = Join(s);
  EXPECT_FALSE(ok->Done());
  EXPECT_EQ(reg_->num_jobs(), 1u);
}

TEST_F(RegistryTest, TopologyTimeout_NumericIds_EveryWaiterGetsMissingRanks) {
  auto rs = JoinNumeric("j", 4, 2);  // ranks 2 and 3 never come
  auto forming = reg_->GetJob("j");
  ASSERT_THAT(forming, IsOk());
  EXPECT_THAT(forming->roles[0].missing_ranks, ElementsAre(2u, 3u));
  Advance(absl::Seconds(59));
  EXPECT_FALSE(rs[0]->Done());
  Advance(absl::Seconds(2));
  for (auto& r : rs) {
    EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                   AllOf(HasSubstr("Topology build timed out"),
                                         HasSubstr("2 of 4 joined"),
                                         HasSubstr("missing ranks [2, 3]"))));
  }
  auto job = reg_->GetJob("j");
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(job->state, JobState::kFailed);
  EXPECT_THAT(job->failure_reason, HasSubstr("missing ranks [2, 3]"));
}

TEST_F(RegistryTest, TopologyTimeout_NamedIds_CountsAndHostsSeen) {
  Join(Spec("j", "a", 3, "10.0.0.1"));
  auto r = Join(Spec("j", "b", 3, "10.0.0.2"));
  Advance(absl::Seconds(61));
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                 AllOf(HasSubstr("1 missing"), HasSubstr("10.0.0.1 (1)"),
                                       HasSubstr("10.0.0.2 (1)"))));
}

TEST_F(RegistryTest, TopologyTimeout_ManyMissing_ListIsCapped) {
  Join(Spec("j", "0", 1000));
  Advance(absl::Seconds(61));
  auto job = reg_->GetJob("j");
  ASSERT_THAT(job, IsOk());
  EXPECT_THAT(job->failure_reason, HasSubstr("and 979 more"));
  EXPECT_LT(job->failure_reason.size(), 600u);
}

TEST_F(RegistryTest, TopologyTimeout_FromFirstMember_LaterValuesIgnored) {
  MemberSpec a = Spec("j", "0", 3);
  a.topo_timeout_ms = 5000;
  auto ra = Join(a);
  MemberSpec b = Spec("j", "1", 3);
  b.topo_timeout_ms = 100000;
  auto rb = Join(b);
  Advance(absl::Seconds(6));
  EXPECT_THAT(ra->Get(), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("after 5s")));
  EXPECT_THAT(rb->Get(), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("missing ranks [2]")));
}

TEST_F(RegistryTest, TopologyTimeout_ZeroMeansRegistryDefault) {
  auto r = Join(Spec("j", "0", 2));  // topo_timeout_ms = 0 -> default 60 s in this fixture
  EXPECT_EQ(reg_->GetJob("j")->topo_timeout_ms, 60000);
  Advance(absl::Seconds(59));
  EXPECT_FALSE(r->Done());
  Advance(absl::Seconds(1));
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("after 60s")));
}

TEST_F(RegistryTest, TopologyTimeout_Negative_WaitsForever) {
  MemberSpec s = Spec("j", "0", 2);
  s.topo_timeout_ms = -1;
  auto r = Join(s);
  Advance(absl::Hours(1000));
  EXPECT_FALSE(r->Done());
  auto job = reg_->GetJob("j");
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(job->state, JobState::kForming);
  EXPECT_FALSE(job->topo_deadline_in.has_value());
}

TEST_F(RegistryTest, Leave_AllMembers_FinishedThenForgottenAfterTtl) {
  auto rs = JoinNumeric("j", 2, 2);
  for (auto& r : rs) {
    auto t = r->Get();
    ASSERT_THAT(t, IsOk());
    EXPECT_THAT(reg_->Leave(MemberRef{"j", Role::kWorker, t->node_id, t->incarnation, t->credential}), IsOk());
  }
  auto job = reg_->GetJob("j");
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(job->state, JobState::kFinished);
  Advance(absl::Minutes(59));
  EXPECT_THAT(reg_->GetJob("j"), IsOk());
  Advance(absl::Minutes(2));
  EXPECT_THAT(reg_->GetJob("j"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'j'")));
}

TEST_F(RegistryTest, Leave_Twice_IsIdempotent) {
  auto rs = JoinNumeric("j", 2, 2);
  auto t = rs[0]->Get();
  MemberRef ref{"j", Role::kWorker, t->node_id, t->incarnation, t->credential};
  EXPECT_THAT(reg_->Leave(ref), IsOk());
  auto again = reg_->Leave(ref);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, JobState::kComplete);
  EXPECT_EQ(reg_->GetJob("j")->roles[0].left, 1u);
}

TEST_F(RegistryTest, JobIdReuse_AfterFinished_NewJobWithNextGeneration) {
  auto rs = JoinNumeric("j", 1, 1);
  auto t = rs[0]->Get();
  ASSERT_THAT(reg_->Leave(MemberRef{"j", Role::kWorker, "0", t->incarnation, t->credential}), IsOk());
  auto again = Join(Spec("j", "0", 1));
  auto t2 = again->Get();
  ASSERT_THAT(t2, IsOk());
  EXPECT_EQ(t2->generation, 2u);
  EXPECT_NE(t2->incarnation, t->incarnation);
}

TEST_F(RegistryTest, JobIdReuse_AfterFailed_StartsFresh) {
  Join(Spec("j", "0", 2));
  Advance(absl::Seconds(61));
  ASSERT_EQ(reg_->GetJob("j")->state, JobState::kFailed);
  auto rs = JoinNumeric("j", 3, 3);  // a different size is fine: it is a new job
  auto t = rs[2]->Get();
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->world_size, 3u);
  EXPECT_EQ(t->generation, 2u);
}

TEST_F(RegistryTest, CancelJoin_WithdrawsMember_NodeIdCanJoinAgain) {
  auto first = Join(Spec("j", "0", 2));
  reg_->CancelJoin("j", first->waiter);
  EXPECT_THAT(first->Get(), StatusIs(absl::StatusCode::kCancelled, HasSubstr("withdrew")));
  EXPECT_EQ(reg_->GetJob("j")->roles[0].joined, 0u);
  auto again = Join(Spec("j", "0", 2));
  auto other = Join(Spec("j", "1", 2));
  EXPECT_THAT(again->Get(), IsOk());
  EXPECT_THAT(other->Get(), IsOk());
  reg_->CancelJoin("j", first->waiter);  // stale cancel: no effect
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
}

// Members keep their host address and host name as references to one per-job copy; the
// per-host member counts and every member's strings must survive withdrawals of other members.
TEST_F(RegistryTest, Hosts_CountedPerAddress_WithdrawalsUncountedOthersKeepTheirNames) {
  auto a = Join(Spec("j", "a", 4, "10.0.0.1"));
  auto b = Join(Spec("j", "b", 4, "10.0.0.1"));
  auto c = Join(Spec("j", "c", 4, "10.0.0.2"));
  auto job = reg_->GetJob("j");
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(job->hosts_total, 2u);
  ASSERT_EQ(job->hosts.size(), 2u);
  EXPECT_EQ(job->hosts[0].host, "10.0.0.1");
  EXPECT_EQ(job->hosts[0].members, 2u);
  EXPECT_EQ(job->hosts[1].members, 1u);

  reg_->CancelJoin("j", c->waiter);  // the only member of 10.0.0.2
  reg_->CancelJoin("j", a->waiter);
  job = reg_->GetJob("j");
  EXPECT_EQ(job->hosts_total, 1u);
  ASSERT_EQ(job->hosts.size(), 1u);
  EXPECT_EQ(job->hosts[0].host, "10.0.0.1");
  EXPECT_EQ(job->hosts[0].members, 1u);

  // A withdrawn host may come back; the remaining member's strings are intact.
  Join(Spec("j", "c", 4, "10.0.0.2"));
  Join(Spec("j", "d", 4, "10.0.0.2"));
  Join(Spec("j", "a", 4, "10.0.0.3"));
  ASSERT_THAT(b->Get(), IsOk());
  EXPECT_EQ(b->Get()->host, "10.0.0.1");
  auto page = reg_->ListMembers("j", 0, 10);
  ASSERT_THAT(page, IsOk());
  ASSERT_EQ(page->members.size(), 4u);
  for (const MemberInfo& m : page->members) {
    EXPECT_EQ(m.host_name, "host-" + m.host) << m.node_id;
  }
  job = reg_->GetJob("j");
  EXPECT_EQ(job->hosts_total, 3u);
}

TEST_F(RegistryTest, Leave_WhileForming_WithdrawsTheMember) {
  absl::StatusOr<MemberRef> ref = JoinWithSession(Spec("j", "a", 2));
  ASSERT_THAT(ref, IsOk());
  ASSERT_EQ(reg_->GetJob("j")->roles[0].joined, 1u);
  ASSERT_THAT(reg_->Leave(*ref), IsOk());
  EXPECT_EQ(reg_->GetJob("j")->roles[0].joined, 0u);
}

// The incarnation is public (status API); the credential is not. A Leave built from what the
// status API shows is somebody else acting as the member: refused, and the member stays.
TEST_F(RegistryTest, Leave_WithoutTheMembersCredential_PermissionDeniedNothingChanges) {
  auto r = Join(Spec("j", "a", 2));
  auto page = reg_->ListMembers("j", 0, 10);
  ASSERT_THAT(page, IsOk());
  ASSERT_EQ(page->members.size(), 1u);
  EXPECT_THAT(reg_->Leave(MemberRef{"j", Role::kWorker, "a", page->members[0].incarnation}),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("'a'"), HasSubstr("only as itself"))));
  EXPECT_THAT(reg_->Leave(MemberRef{"j", Role::kWorker, "a", page->members[0].incarnation,
                                    std::string(32, '0')}),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("only as itself")));
  EXPECT_FALSE(r->Done());
  EXPECT_EQ(reg_->GetJob("j")->roles[0].joined, 1u);
}

TEST_F(RegistryTest, Heartbeat_Rules) {
  auto rs = JoinNumeric("j", 1, 1);
  auto t = rs[0]->Get();
  ASSERT_THAT(t, IsOk());
  auto hb = reg_->Heartbeat(MemberRef{"j", Role::kWorker, "0", t->incarnation, t->credential});
  ASSERT_THAT(hb, IsOk());
  EXPECT_EQ(hb->job_state, JobState::kComplete);
  EXPECT_THAT(reg_->Heartbeat(MemberRef{"j", Role::kWorker, "0", t->incarnation + 1}),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("stale incarnation")));
  EXPECT_THAT(reg_->Heartbeat(MemberRef{"j", Role::kWorker, "9", 1}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'9'")));
  EXPECT_THAT(reg_->Heartbeat(MemberRef{"nope", Role::kWorker, "0", 1}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'nope'")));
}

TEST_F(RegistryTest, Heartbeat_FailedJob_Aborted) {
  absl::StatusOr<MemberRef> ref = JoinWithSession(Spec("j", "0", 2));
  ASSERT_THAT(ref, IsOk());
  Advance(absl::Seconds(61));
  EXPECT_THAT(reg_->Heartbeat(*ref),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("timed out")));
}

TEST_F(RegistryTest, Heartbeat_UpdatesLastSeenAge) {
  auto rs = JoinNumeric("j", 1, 1);
  clock_.Advance(absl::Seconds(10));
  auto page = reg_->ListMembers("j", 0, 10);
  EXPECT_EQ(page->members[0].last_seen_age, absl::Seconds(10));
  ASSERT_THAT(reg_->Heartbeat(MemberRef{"j", Role::kWorker, "0", rs[0]->Get()->incarnation,
                                    rs[0]->Get()->credential}),
              IsOk());
  EXPECT_EQ(reg_->ListMembers("j", 0, 10)->members[0].last_seen_age, absl::ZeroDuration());
}

TEST_F(RegistryTest, ListMembers_PagesInRankOrderAfterCompletion) {
  for (int i = 0; i < 5; ++i) Join(Spec("j", "n" + std::to_string(4 - i), 5));
  auto p1 = reg_->ListMembers("j", 0, 2);
  ASSERT_THAT(p1, IsOk());
  EXPECT_EQ(p1->total, 5u);
  ASSERT_EQ(p1->members.size(), 2u);
  EXPECT_EQ(*p1->members[0].rank, 0u);
  EXPECT_EQ(p1->members[0].node_id, "n0");
  EXPECT_EQ(p1->next_offset, 2u);
  auto p3 = reg_->ListMembers("j", 4, 2);
  ASSERT_EQ(p3->members.size(), 1u);
  EXPECT_EQ(*p3->members[0].rank, 4u);
  EXPECT_EQ(p3->next_offset, 0u);
  EXPECT_THAT(reg_->ListMembers("nope", 0, 1), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

TEST_F(RegistryTest, ManyJobsInParallel_EachFormsIndependently) {
  constexpr int kJobs = 40, kMembers = 8;
  std::vector<std::vector<std::shared_ptr<JoinResult>>> results(kJobs);
  for (auto& v : results) v.resize(kMembers);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int m = 0; m < kMembers; ++m) {
        for (int j = t; j < kJobs; j += 4) {
          // Half the jobs numeric, half named: both rules at once.
          std::string node = j % 2 ? std::to_string(m) : "w" + std::to_string(m);
          results[j][m] = Join(Spec("job-" + std::to_string(j), node, kMembers));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int j = 0; j < kJobs; ++j) {
    std::set<uint32_t> ranks;
    for (auto& r : results[j]) {
      auto t = r->Get();
      ASSERT_THAT(t, IsOk());
      EXPECT_EQ(t->job_id, "job-" + std::to_string(j));
      ranks.insert(t->rank);
    }
    EXPECT_EQ(ranks.size(), static_cast<size_t>(kMembers));
  }
  EXPECT_EQ(reg_->num_jobs(), static_cast<size_t>(kJobs));
}

// The completing Join delivers every topology; a callback that calls back into the registry
// must not deadlock (callbacks run after the locks are released).
TEST_F(RegistryTest, Callbacks_RunOutsideLocks_ReentryDoesNotDeadlock) {
  bool reentered = false;
  reg_->Join(Spec("j", "0", 2), [&](absl::StatusOr<Topology> t) {
    ASSERT_THAT(t, IsOk());
    EXPECT_THAT(reg_->GetJob("j"), IsOk());
    EXPECT_THAT(reg_->Heartbeat(MemberRef{"j", Role::kWorker, "0", t->incarnation, t->credential}), IsOk());
    reentered = true;
  });
  Join(Spec("j", "1", 2));
  EXPECT_TRUE(reentered);
}

class RecordingWatcher : public JobWatcher {
 public:
  void OnEvent(const JobEvent& e) override {
    absl::MutexLock l(&mu);
    events.push_back(e);
  }
  void OnEnd(const absl::Status& s) override {
    absl::MutexLock l(&mu);
    ended = true;
    end_status = s;
  }
  std::vector<JobEventType> Types() {
    absl::MutexLock l(&mu);
    std::vector<JobEventType> out;
    for (auto& e : events) out.push_back(e.type);
    return out;
  }
  absl::Mutex mu;
  std::vector<JobEvent> events;
  bool ended = false;
  absl::Status end_status;
};

TEST_F(RegistryTest, Watch_SnapshotThenEventsInOrder) {
  auto first = Join(Spec("j", "0", 2));
  auto w = std::make_shared<RecordingWatcher>();
  ASSERT_THAT(reg_->Watch("j", w), IsOk());
  auto r = Join(Spec("j", "1", 2));
  for (const auto& joined : {first, r}) {
    absl::StatusOr<Topology> t = joined->Get();
    ASSERT_THAT(t, IsOk());
    ASSERT_THAT(reg_->Leave(MemberRef{"j", Role::kWorker, t->node_id, t->incarnation,
                                      t->credential}),
                IsOk());
  }
  EXPECT_THAT(w->Types(),
              ElementsAre(JobEventType::kSnapshot, JobEventType::kMemberJoined,
                          JobEventType::kJobComplete, JobEventType::kMemberLeft,
                          JobEventType::kMemberLeft, JobEventType::kJobFinished));
  absl::MutexLock l(&w->mu);
  for (size_t i = 1; i < w->events.size(); ++i) {
    EXPECT_EQ(w->events[i].seq, w->events[i - 1].seq + 1);
  }
  EXPECT_EQ(w->events[0].job.roles[0].joined, 1u);
  ASSERT_TRUE(w->events[1].member.has_value());
  EXPECT_EQ(w->events[1].member->node_id, "1");
}

TEST_F(RegistryTest, Watch_UnknownJob_NotFound) {
  EXPECT_THAT(reg_->Watch("nope", std::make_shared<RecordingWatcher>()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'nope'")));
}

TEST_F(RegistryTest, Watch_JobForgotten_StreamEnds) {
  auto rs = JoinNumeric("j", 1, 1);
  auto w = std::make_shared<RecordingWatcher>();
  ASSERT_THAT(reg_->Watch("j", w), IsOk());
  ASSERT_THAT(reg_->Leave(MemberRef{"j", Role::kWorker, "0", rs[0]->Get()->incarnation,
                                    rs[0]->Get()->credential}), IsOk());
  Advance(absl::Hours(2));
  absl::MutexLock l(&w->mu);
  EXPECT_TRUE(w->ended);
  EXPECT_TRUE(w->end_status.ok());
}

TEST_F(RegistryTest, Watch_ManyEvents_NoneLostNoneReordered) {
  Join(Spec("j", "0", 10));
  auto w = std::make_shared<RecordingWatcher>();
  ASSERT_THAT(reg_->Watch("j", w), IsOk());
  std::vector<std::thread> threads;
  for (int i = 1; i < 10; ++i) {
    threads.emplace_back([this, i] { Join(Spec("j", std::to_string(i), 10)); });
  }
  for (auto& t : threads) t.join();
  auto types = w->Types();
  ASSERT_EQ(types.size(), 11u);  // snapshot + 9 joins + complete
  EXPECT_EQ(types.back(), JobEventType::kJobComplete);
  absl::MutexLock l(&w->mu);
  for (size_t i = 1; i < w->events.size(); ++i) {
    EXPECT_EQ(w->events[i].seq, w->events[i - 1].seq + 1);
  }
}

TEST_F(RegistryTest, Shutdown_WaitersGetUnavailable_NewJoinsRefused) {
  auto r = Join(Spec("j", "0", 2));
  auto w = std::make_shared<RecordingWatcher>();
  ASSERT_THAT(reg_->Watch("j", w), IsOk());
  reg_->Shutdown();
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_THAT(Join(Spec("j", "1", 2))->Get(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  absl::MutexLock l(&w->mu);
  EXPECT_TRUE(w->ended);
  EXPECT_EQ(w->end_status.code(), absl::StatusCode::kUnavailable);
}

TEST_F(RegistryTest, StateStore_SeesMembershipWithRanks) {
  JoinNumeric("j", 2, 2);
  auto state = store_.Load();
  ASSERT_THAT(state, IsOk());
  ASSERT_EQ(state->jobs.size(), 1u);
  EXPECT_EQ(state->jobs[0].state, JobState::kComplete);
  ASSERT_EQ(state->members.size(), 2u);
  for (const auto& m : state->members) {
    ASSERT_TRUE(m.rank.has_value());
    EXPECT_EQ(std::to_string(*m.rank), m.node_id);
    EXPECT_EQ(m.state, MemberState::kActive);
  }
}

TEST_F(RegistryTest, WallClockIsNeverUsedForDeadlines) {
  // FakeClock::WallNow is frozen at the epoch; deadlines still fire from the monotonic clock.
  auto r = Join(Spec("j", "0", 2));
  Advance(absl::Seconds(61));
  EXPECT_THAT(r->Get(), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("timed out")));
}

}  // namespace
}  // namespace ms_rendezvous::core
