// Liveness, failure fan-out, recovery, durability and restore: JobRegistry with a FakeClock and
// fake sessions, no gRPC. One test per transition of the member state machine (core/job.h).
#include <memory>
#include <string>
#include <vector>

#include "core/job.h"
#include "core/job_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/memory_state_store.h"
#include "test_util.h"
#include "unit/held_store.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Records what the core pushes to one member's session.
class FakeSession : public MemberSession {
 public:
  void OnTopology(const Topology& t) override {
    absl::MutexLock l(&mu);
    topologies.push_back(t);
  }
  void OnEvent(const JobEvent& e) override {
    absl::MutexLock l(&mu);
    events.push_back(e);
  }
  void OnEnd(const absl::Status& s) override {
    absl::MutexLock l(&mu);
    EXPECT_FALSE(ended) << "OnEnd twice";
    ended = true;
    end = s;
  }
  size_t NumTopologies() {
    absl::MutexLock l(&mu);
    return topologies.size();
  }
  std::optional<Topology> LastTopology() {
    absl::MutexLock l(&mu);
    if (topologies.empty()) return std::nullopt;
    return topologies.back();
  }
  std::vector<JobEventType> EventTypes() {
    absl::MutexLock l(&mu);
    std::vector<JobEventType> out;
    for (auto& e : events) out.push_back(e.type);
    return out;
  }
  std::optional<JobEvent> LastEvent() {
    absl::MutexLock l(&mu);
    if (events.empty()) return std::nullopt;
    return events.back();
  }
  bool Ended() {
    absl::MutexLock l(&mu);
    return ended;
  }
  absl::Status End() {
    absl::MutexLock l(&mu);
    return end;
  }

  absl::Mutex mu;
  std::vector<Topology> topologies;
  std::vector<JobEvent> events;
  bool ended = false;
  absl::Status end;
};


class LivenessTest : public ::testing::Test {
 protected:
  LivenessTest() { Reset(&store_); }

  void Reset(StateStore* store) {
    RegistryOptions o;
    o.default_topo_timeout = absl::Seconds(60);
    o.default_node_timeout = absl::Seconds(30);
    o.disconnect_grace = absl::Seconds(2);
    reg_ = std::make_unique<JobRegistry>(&clock_, o, store);
  }

  static MemberSpec Spec(const std::string& node_id, uint32_t n = 4, bool recovery = false) {
    MemberSpec s;
    s.job_id = "j";
    s.node_id = node_id;
    s.host = "10.0.0." + std::to_string(1 + (node_id.empty() ? 0 : node_id[0] % 4));
    s.worker_num = n;
    s.enable_recovery = recovery;
    return s;
  }

  struct Member {
    std::shared_ptr<FakeSession> session = std::make_shared<FakeSession>();
    MemberRef ref;
  };

  Member Join(const MemberSpec& spec) {
    Member m;
    auto ref = reg_->JoinSession(spec, m.session);
    EXPECT_THAT(ref, IsOk());
    if (ref.ok()) m.ref = *ref;
    return m;
  }

  std::vector<Member> JoinAll(uint32_t n, bool recovery = false) {
    std::vector<Member> out;
    for (uint32_t i = 0; i < n; ++i) out.push_back(Join(Spec(std::to_string(i), n, recovery)));
    return out;
  }

  void Advance(absl::Duration d) {
    clock_.Advance(d);
    reg_->ProcessDeadlines();
  }

  void HeartbeatAll(std::vector<Member>& ms, size_t except) {
    for (size_t i = 0; i < ms.size(); ++i) {
      if (i != except) ASSERT_THAT(reg_->Heartbeat(ms[i].ref), IsOk());
    }
  }

  MemberInfo Info(uint32_t rank) {
    auto page = reg_->ListMembers("j", rank, 1);
    EXPECT_THAT(page, IsOk());
    return page->members.at(0);
  }

  FakeClock clock_;
  MemoryStateStore store_;
  std::unique_ptr<JobRegistry> reg_;
};

TEST_F(LivenessTest, JoinSession_CompleteJob_EverySessionGetsItsTopology) {
  auto ms = JoinAll(4);
  for (uint32_t i = 0; i < 4; ++i) {
    ASSERT_EQ(ms[i].session->NumTopologies(), 1u);
    EXPECT_EQ(ms[i].session->LastTopology()->rank, i);
    EXPECT_EQ(ms[i].session->LastTopology()->incarnation, ms[i].ref.incarnation);
  }
  EXPECT_TRUE(Info(0).connected);
}

TEST_F(LivenessTest, SessionDropped_SuspectAtOnce_DeadAfterGrace_EverySurvivorToldWhoDied) {
  auto ms = JoinAll(4);
  reg_->SessionClosed(ms[2].ref, ms[2].session.get());
  EXPECT_EQ(Info(2).state, MemberState::kSuspect);
  EXPECT_FALSE(Info(2).connected);
  Advance(absl::Milliseconds(1999));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  Advance(absl::Milliseconds(1));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kFailed);
  EXPECT_EQ(Info(2).state, MemberState::kDead);
  for (int i : {0, 1, 3}) {
    auto ev = ms[i].session->LastEvent();
    ASSERT_TRUE(ev.has_value());
    EXPECT_EQ(ev->type, JobEventType::kJobFailed);
    ASSERT_EQ(ev->dead.size(), 1u);
    EXPECT_EQ(ev->dead[0].node_id, "2");
    EXPECT_EQ(*ev->dead[0].rank, 2u);
    EXPECT_THAT(ev->dead[0].reason, HasSubstr("connection lost"));
    EXPECT_TRUE(ms[i].session->Ended());
    EXPECT_THAT(ms[i].session->End(),
                StatusIs(absl::StatusCode::kAborted, AllOf(HasSubstr("rank 2"), HasSubstr("died"))));
    EXPECT_EQ(Info(i).state, MemberState::kFailed);
  }
}

// Regression: durations in messages were divided as integers ("within 0s" for a 300 ms grace).
TEST_F(LivenessTest, DeathReason_SubSecondDurationsPrintedWithDecimals) {
  RegistryOptions o;
  o.disconnect_grace = absl::Milliseconds(300);
  reg_ = std::make_unique<JobRegistry>(&clock_, o, &store_);
  auto ms = JoinAll(2);
  clock_.Advance(absl::Milliseconds(1500));
  reg_->SessionClosed(ms[1].ref, ms[1].session.get());
  Advance(absl::Milliseconds(300));
  EXPECT_THAT(Info(1).reason, HasSubstr("within 0.3s"));
  EXPECT_THAT(ms[0].session->End().message(), HasSubstr("last seen 1.8s ago"));
}

TEST_F(LivenessTest, SessionDropped_ResumedWithinGrace_NothingFails) {
  auto ms = JoinAll(4);
  reg_->SessionClosed(ms[1].ref, ms[1].session.get());
  Advance(absl::Seconds(1));
  auto again = std::make_shared<FakeSession>();
  ASSERT_THAT(reg_->ResumeSession(ms[1].ref, 1, again), IsOk());
  ASSERT_EQ(again->NumTopologies(), 1u);  // same rank, same generation, at once
  EXPECT_EQ(again->LastTopology()->rank, 1u);
  EXPECT_EQ(again->LastTopology()->generation, 1u);
  Advance(absl::Seconds(5));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  EXPECT_EQ(Info(1).state, MemberState::kActive);
  EXPECT_TRUE(Info(1).connected);
  // The old stream's late close is ignored: it is not the member's session any more.
  reg_->SessionClosed(ms[1].ref, ms[1].session.get());
  EXPECT_EQ(Info(1).state, MemberState::kActive);
}

TEST_F(LivenessTest, SilentMember_DeadAtNodeTimeout_OthersNotFalselyDetected) {
  auto ms = JoinAll(4);
  for (int t = 0; t < 29; ++t) {
    Advance(absl::Seconds(1));
    HeartbeatAll(ms, /*except=*/3);
  }
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  Advance(absl::Seconds(1));  // 30 s since rank 3 was last heard from
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kFailed);
  EXPECT_EQ(Info(3).state, MemberState::kDead);
  EXPECT_THAT(Info(3).reason, AllOf(HasSubstr("no heartbeat for 30s"), HasSubstr("MS_NODE_TIMEOUT")));
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(Info(i).state, MemberState::kFailed);
}

// Node ids are stored inline up to 40 characters (a UUID, the client's default, fits) and on the
// heap beyond; the liveness timer carries the id too. Both kinds must be found again by their
// timer and named when they die.
TEST_F(LivenessTest, LongNodeIds_InlineAndHeap_TimersFindTheirMembers) {
  const std::string uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
  const std::string long_id(100, 'n');
  const std::vector<std::string> ids = {uuid, long_id, "w", std::string(40, 'x')};
  std::vector<Member> ms;
  for (const std::string& id : ids) ms.push_back(Join(Spec(id, 4)));
  ASSERT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  for (size_t i = 0; i < ms.size(); ++i) {
    ASSERT_EQ(ms[i].session->NumTopologies(), 1u);
    EXPECT_EQ(ms[i].session->LastTopology()->node_id, ids[i]);
    EXPECT_EQ(ms[i].ref.node_id, ids[i]);
  }
  for (int t = 0; t < 29; ++t) {
    Advance(absl::Seconds(1));
    HeartbeatAll(ms, /*except=*/1);  // the 100-character id falls silent
  }
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  Advance(absl::Seconds(1));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kFailed);
  auto page = reg_->ListMembers("j", 0, 10);
  ASSERT_THAT(page, IsOk());
  size_t dead = 0;
  for (const MemberInfo& m : page->members) {
    if (m.state != MemberState::kDead) continue;
    ++dead;
    EXPECT_EQ(m.node_id, long_id);
  }
  EXPECT_EQ(dead, 1u);
  EXPECT_THAT(ms[0].session->End(), StatusIs(absl::StatusCode::kAborted, HasSubstr(long_id)));
}

TEST_F(LivenessTest, Heartbeat_PostponesDeath_DeadlineReArmedLazily) {
  auto ms = JoinAll(1);
  Advance(absl::Seconds(20));
  ASSERT_THAT(reg_->Heartbeat(ms[0].ref), IsOk());
  Advance(absl::Seconds(10));  // the first liveness entry pops at 30 s: re-armed to 50 s
  EXPECT_EQ(Info(0).state, MemberState::kActive);
  Advance(absl::Seconds(19));
  EXPECT_EQ(Info(0).state, MemberState::kActive);
  Advance(absl::Seconds(1));
  EXPECT_EQ(Info(0).state, MemberState::kDead);
}

// Delivering 100,000 topologies takes seconds; a member heartbeats from its topology on, so its
// node timeout runs from the delivery the server reports, not from the job's completion.
TEST_F(LivenessTest, TopologyDelivered_NodeTimeoutRunsFromDelivery) {
  auto ms = JoinAll(2);  // complete at t=0; node timeout 30 s
  Advance(absl::Seconds(10));
  ASSERT_THAT(reg_->TopologyDelivered(ms[1].ref), IsOk());  // rank 1 served at t=10
  Advance(absl::Seconds(20));                                 // t=30
  EXPECT_EQ(Info(0).state, MemberState::kDead);  // silent since completion
  EXPECT_EQ(Info(1).state, MemberState::kFailed);  // the job failed; rank 1 was not found dead
  EXPECT_THAT(Info(0).reason, HasSubstr("no heartbeat for 30s"));
}

TEST_F(LivenessTest, TopologyDelivered_PostponesDeath_IsNotAHeartbeat) {
  auto ms = JoinAll(1);
  Advance(absl::Seconds(10));
  ASSERT_THAT(reg_->TopologyDelivered(ms[0].ref), IsOk());
  Advance(absl::Seconds(29));  // t=39: 29 s since delivery
  EXPECT_EQ(Info(0).state, MemberState::kActive);
  Advance(absl::Seconds(1));
  EXPECT_EQ(Info(0).state, MemberState::kDead);
  EXPECT_THAT(Info(0).reason, HasSubstr("no heartbeat for 30s"));
}

TEST_F(LivenessTest, TopologyDelivered_ForgedOrUnknown_RejectedNothingChanged) {
  auto ms = JoinAll(1);
  MemberRef forged = ms[0].ref;
  forged.credential = std::string(forged.credential.size(), 'x');
  EXPECT_THAT(reg_->TopologyDelivered(forged), StatusIs(absl::StatusCode::kPermissionDenied));
  MemberRef unknown = ms[0].ref;
  unknown.job_id = "nope";
  EXPECT_THAT(reg_->TopologyDelivered(unknown), StatusIs(absl::StatusCode::kNotFound));
  Advance(absl::Seconds(30));  // the forged call did not postpone anything
  EXPECT_EQ(Info(0).state, MemberState::kDead);
}

TEST_F(LivenessTest, NegativeNodeTimeout_SilenceIsNeverDeath) {
  MemberSpec s = Spec("0", 1);
  s.node_timeout_ms = -1;
  Join(s);
  Advance(absl::Hours(100));
  EXPECT_EQ(Info(0).state, MemberState::kActive);
}

// Regression (found by spec_fuzzer): a huge finite MS_TOPO_TIMEOUT overflowed the monotonic
// deadline (signed overflow in AddDuration). It now saturates: the job simply never times out.
TEST_F(LivenessTest, HugeTimeouts_SaturateInsteadOfOverflowing) {
  MemberSpec s = Spec("0", 2);
  s.topo_timeout_ms = std::numeric_limits<int64_t>::max();
  s.node_timeout_ms = std::numeric_limits<int64_t>::max();
  Join(s);
  Advance(absl::Hours(24 * 365));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kForming);
  EXPECT_EQ(AddDuration(MonoTime::max() - std::chrono::seconds(1), absl::Hours(1)), MonoTime::max());
  EXPECT_EQ(AddDuration(MonoTime::min() + std::chrono::seconds(1), -absl::Hours(1)), MonoTime::min());
  EXPECT_EQ(AddDuration(MonoTime(), absl::Seconds(1)), MonoTime() + std::chrono::seconds(1));
}

TEST_F(LivenessTest, WallClockJump_ChangesNothing) {
  auto ms = JoinAll(2);
  clock_.JumpWallClock(absl::Hours(24));
  reg_->ProcessDeadlines();
  clock_.JumpWallClock(-absl::Hours(48));
  reg_->ProcessDeadlines();
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  EXPECT_EQ(Info(0).state, MemberState::kActive);
}

TEST_F(LivenessTest, ReportError_FailsJobAndNamesReporter) {
  auto ms = JoinAll(3);
  ASSERT_THAT(reg_->ReportError(ms[0].ref, "NCCL allreduce timed out"), IsOk());
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kFailed);
  auto ev = ms[1].session->LastEvent();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->type, JobEventType::kJobFailed);
  EXPECT_THAT(ev->dead.at(0).reason, HasSubstr("NCCL allreduce timed out"));
  EXPECT_THAT(reg_->GetJob("j")->failure_reason, HasSubstr("rank 0"));
}

TEST_F(LivenessTest, Recovery_DeadMemberRejoins_SameRankJobRunsAgainSurvivorsTold) {
  auto ms = JoinAll(4, /*recovery=*/true);
  reg_->SessionClosed(ms[2].ref, ms[2].session.get());
  Advance(absl::Seconds(2));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kDegraded);
  EXPECT_EQ(reg_->GetJob("j")->dead, 1u);
  auto ev = ms[0].session->LastEvent();
  ASSERT_TRUE(ev.has_value());
  EXPECT_EQ(ev->type, JobEventType::kMemberDead);
  EXPECT_FALSE(ms[0].session->Ended());  // survivors keep their sessions

  Member back = Join(Spec("2", 4, /*recovery=*/true));
  ASSERT_EQ(back.session->NumTopologies(), 1u);
  EXPECT_EQ(back.session->LastTopology()->rank, 2u);
  EXPECT_EQ(back.session->LastTopology()->generation, 1u);
  EXPECT_NE(back.ref.incarnation, ms[2].ref.incarnation);
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  EXPECT_EQ(ms[0].session->LastEvent()->type, JobEventType::kMemberRecovered);
  // The dead incarnation is stale now.
  EXPECT_THAT(reg_->Heartbeat(ms[2].ref),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("stale incarnation")));
  EXPECT_THAT(reg_->ResumeSession(ms[2].ref, 1, std::make_shared<FakeSession>()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("stale incarnation")));
}

// A recovered member may come back from another host: its record, the job's per-host counts
// and the summary follow the new address (the old host is forgotten when nobody is left on it).
TEST_F(LivenessTest, Recovery_OnAnotherHost_HostCountsAndRecordFollow) {
  auto ms = JoinAll(4, /*recovery=*/true);
  const uint32_t hosts_before = reg_->GetJob("j")->hosts_total;
  reg_->SessionClosed(ms[2].ref, ms[2].session.get());
  Advance(absl::Seconds(2));
  ASSERT_EQ(reg_->GetJob("j")->state, JobState::kDegraded);

  MemberSpec moved = Spec("2", 4, /*recovery=*/true);
  moved.host = "10.9.9.9";
  moved.host_name = "spare-node";
  Member back = Join(moved);
  ASSERT_EQ(back.session->NumTopologies(), 1u);
  EXPECT_EQ(back.session->LastTopology()->rank, 2u);
  EXPECT_EQ(back.session->LastTopology()->host, "10.9.9.9");
  EXPECT_EQ(back.session->LastTopology()->credential, back.ref.credential);
  const MemberInfo info = Info(2);
  EXPECT_EQ(info.host, "10.9.9.9");
  EXPECT_EQ(info.host_name, "spare-node");
  auto job = reg_->GetJob("j");
  // Node "2" was alone on 10.0.0.3 ('2' % 4 == 2): that host is gone, 10.9.9.9 is new.
  EXPECT_EQ(job->hosts_total, hosts_before);
  bool found = false;
  for (const HostSummary& h : job->hosts) {
    EXPECT_NE(h.host, "10.0.0.3");
    if (h.host == "10.9.9.9") {
      found = true;
      EXPECT_EQ(h.members, 1u);
    }
  }
  EXPECT_TRUE(found);
  EXPECT_THAT(reg_->Heartbeat(back.ref), IsOk());
}

TEST_F(LivenessTest, Recovery_RestartedBeforeGrace_ReplacesSuspectAtOnce) {
  auto ms = JoinAll(2, /*recovery=*/true);
  reg_->SessionClosed(ms[1].ref, ms[1].session.get());
  Member back = Join(Spec("1", 2, /*recovery=*/true));
  EXPECT_EQ(back.session->LastTopology()->rank, 1u);
  Advance(absl::Seconds(5));  // the old suspicion timer must not kill the new incarnation
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  EXPECT_EQ(Info(1).state, MemberState::kActive);
}

TEST_F(LivenessTest, Recovery_AliveMemberRepeated_AlreadyExists) {
  auto ms = JoinAll(2, /*recovery=*/true);
  auto dup = reg_->JoinSession(Spec("1", 2, true), std::make_shared<FakeSession>());
  EXPECT_THAT(dup, StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("still alive")));
}

TEST_F(LivenessTest, NoRecovery_RepeatedNodeId_RejectedWithHint) {
  auto ms = JoinAll(2);
  auto dup = reg_->JoinSession(Spec("1", 2), std::make_shared<FakeSession>());
  EXPECT_THAT(dup, StatusIs(absl::StatusCode::kAlreadyExists,
                            AllOf(HasSubstr("Repeated registration node"),
                                  HasSubstr("MS_ENABLE_RECOVERY=1"))));
}

TEST_F(LivenessTest, RecoveryFlagDisagrees_FailedPrecondition) {
  Join(Spec("0", 2, /*recovery=*/true));
  auto r = reg_->JoinSession(Spec("1", 2, /*recovery=*/false), std::make_shared<FakeSession>());
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kFailedPrecondition,
                          AllOf(HasSubstr("MS_ENABLE_RECOVERY=0"), HasSubstr("MS_ENABLE_RECOVERY=1"))));
}

TEST_F(LivenessTest, FormingSessionDropped_WithdrawnAfterGrace_JobKeepsForming) {
  Member a = Join(Spec("0", 3));
  Member b = Join(Spec("1", 3));
  reg_->SessionClosed(a.ref, a.session.get());
  Advance(absl::Seconds(2));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kForming);
  EXPECT_EQ(reg_->GetJob("j")->roles[0].joined, 1u);
  // Its node id is free again.
  Member a2 = Join(Spec("0", 3));
  Member c = Join(Spec("2", 3));
  EXPECT_EQ(a2.session->LastTopology()->rank, 0u);
}

TEST_F(LivenessTest, FormingSessionDropped_ResumedWithinGrace_KeepsRegistration) {
  Member a = Join(Spec("0", 2));
  reg_->SessionClosed(a.ref, a.session.get());
  auto again = std::make_shared<FakeSession>();
  ASSERT_THAT(reg_->ResumeSession(a.ref, 0, again), IsOk());
  EXPECT_EQ(again->NumTopologies(), 0u);  // not complete yet
  Join(Spec("1", 2));
  ASSERT_EQ(again->NumTopologies(), 1u);
  EXPECT_EQ(again->LastTopology()->rank, 0u);
}

TEST_F(LivenessTest, Resume_UnknownJobOrStaleGeneration_Aborted) {
  EXPECT_THAT(reg_->ResumeSession(MemberRef{"nope", Role::kWorker, "0", 1}, 1,
                                  std::make_shared<FakeSession>()),
              StatusIs(absl::StatusCode::kAborted, AllOf(HasSubstr("'nope'"), HasSubstr("join again"))));
  auto ms = JoinAll(1);
  EXPECT_THAT(reg_->ResumeSession(ms[0].ref, 7, std::make_shared<FakeSession>()),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("generation 7")));
}

TEST_F(LivenessTest, Acks_WaitForDurability) {
  HeldStore held;
  Reset(&held);
  Member a = Join(Spec("0", 2));
  Member b = Join(Spec("1", 2));
  EXPECT_GT(held.held(), 0u);
  EXPECT_EQ(a.session->NumTopologies(), 0u);  // complete, but not durable yet
  EXPECT_EQ(b.session->NumTopologies(), 0u);
  held.ReleaseAll();
  EXPECT_EQ(a.session->NumTopologies(), 1u);
  EXPECT_EQ(b.session->NumTopologies(), 1u);
}

TEST_F(LivenessTest, Restore_CompleteJob_MembersResumeSameRanks_SilentOneDiesAfterGrace) {
  auto ms = JoinAll(3);
  auto stored = store_.Load();
  ASSERT_THAT(stored, IsOk());
  // "Restart": a new registry on the same store.
  Reset(&store_);
  ASSERT_THAT(reg_->Restore(*stored), IsOk());
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  std::vector<std::shared_ptr<FakeSession>> resumed;
  for (int i : {0, 1}) {
    resumed.push_back(std::make_shared<FakeSession>());
    ASSERT_THAT(reg_->ResumeSession(ms[i].ref, 1, resumed.back()), IsOk());
    EXPECT_EQ(resumed.back()->LastTopology()->rank, static_cast<uint32_t>(i));
  }
  // One node timeout of grace; members 0 and 1 keep heartbeating, 2 never comes back.
  for (int t = 0; t < 29; ++t) {
    Advance(absl::Seconds(1));
    ASSERT_THAT(reg_->Heartbeat(ms[0].ref), IsOk());
    ASSERT_THAT(reg_->Heartbeat(ms[1].ref), IsOk());
  }
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  Advance(absl::Seconds(1));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kFailed);
  EXPECT_EQ(Info(2).state, MemberState::kDead);
  EXPECT_EQ(resumed[0]->LastEvent()->type, JobEventType::kJobFailed);
}

TEST_F(LivenessTest, Restore_FormingJob_WaitingMembersResumeAndTheRestJoin) {
  Member a = Join(Spec("0", 3));
  Member b = Join(Spec("1", 3));
  auto stored = store_.Load();
  Reset(&store_);
  ASSERT_THAT(reg_->Restore(*stored), IsOk());
  auto a2 = std::make_shared<FakeSession>();
  auto b2 = std::make_shared<FakeSession>();
  ASSERT_THAT(reg_->ResumeSession(a.ref, 0, a2), IsOk());
  ASSERT_THAT(reg_->ResumeSession(b.ref, 0, b2), IsOk());
  Member c = Join(Spec("2", 3));
  EXPECT_EQ(a2->LastTopology()->rank, 0u);
  EXPECT_EQ(b2->LastTopology()->rank, 1u);
  EXPECT_EQ(c.session->LastTopology()->rank, 2u);
  // No duplicate member: 3 in the table, 3 in the store.
  EXPECT_EQ(reg_->ListMembers("j", 0, 10)->total, 3u);
  EXPECT_EQ(store_.Load()->members.size(), 3u);
}

TEST_F(LivenessTest, Restore_FormingMemberNeverResumes_WithdrawnAfterNodeTimeout) {
  Member a = Join(Spec("0", 2));
  auto stored = store_.Load();
  Reset(&store_);
  ASSERT_THAT(reg_->Restore(*stored), IsOk());
  Advance(absl::Seconds(30));
  EXPECT_EQ(reg_->GetJob("j")->roles[0].joined, 0u);
}

TEST_F(LivenessTest, Shutdown_EndsSessionsWithUnavailable) {
  Member a = Join(Spec("0", 2));
  reg_->Shutdown();
  EXPECT_THAT(a.session->End(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
}

TEST_F(LivenessTest, Watch_SeesSuspectAndResumed) {
  auto ms = JoinAll(2);
  class Types : public JobWatcher {
   public:
    void OnEvent(const JobEvent& e) override {
      absl::MutexLock l(&mu);
      types.push_back(e.type);
    }
    void OnEnd(const absl::Status&) override {}
    absl::Mutex mu;
    std::vector<JobEventType> types;
  };
  auto w = std::make_shared<Types>();
  ASSERT_THAT(reg_->Watch("j", w), IsOk());
  reg_->SessionClosed(ms[0].ref, ms[0].session.get());
  ASSERT_THAT(reg_->ResumeSession(ms[0].ref, 1, std::make_shared<FakeSession>()), IsOk());
  absl::MutexLock l(&w->mu);
  EXPECT_THAT(w->types, ::testing::ElementsAre(JobEventType::kSnapshot, JobEventType::kMemberSuspect,
                                               JobEventType::kMemberResumed));
}

}  // namespace
}  // namespace ms_rendezvous::core

namespace ms_rendezvous::core {
namespace {

// Regression: Job's closures captured their payload by reference to the enclosing effect; a
// closure delivered out of order is stored and run later by another thread, after that effect
// was destroyed (daemon segfault in the kill -9 while forming e2e test). Stored closures must
// own their payload.
TEST(OrderedDeliveryTest, OutOfOrderClosureRunsLaterWithItsOwnPayload) {
  OrderedDelivery order(0, 10);
  std::vector<std::string> got;
  {
    auto payload = std::make_shared<std::string>("second");
    EXPECT_TRUE(order.Deliver(1, [&got, payload] { got.push_back(*payload); }));
  }  // the creator's copy is gone; the stored closure keeps its own
  EXPECT_TRUE(got.empty());
  EXPECT_TRUE(order.Deliver(0, [&got] { got.push_back("first"); }));
  EXPECT_THAT(got, ::testing::ElementsAre("first", "second"));
}

TEST(OrderedDeliveryTest, BacklogOverflow_ReportsFalse) {
  OrderedDelivery order(0, 2);
  EXPECT_TRUE(order.Deliver(2, [] {}));
  EXPECT_TRUE(order.Deliver(3, [] {}));
  EXPECT_FALSE(order.Deliver(4, [] {}));
}

}  // namespace
}  // namespace ms_rendezvous::core
