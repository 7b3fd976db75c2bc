// End-to-end liveness (issue 3): real daemon, real probe processes, real kills.
#include <signal.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "subprocess.h"

namespace ms_rendezvous::testing {
namespace {

using ::testing::HasSubstr;
using Env = Subprocess::Env;

Env Merge(Env a, const Env& b) {
  for (const auto& [k, v] : b) a[k] = v;
  return a;
}

// `n` probes holding a job for `hold_s`, numeric node ids 0..n-1.
std::vector<std::unique_ptr<Subprocess>> StartHolders(const Env& base, int n, int hold_s,
                                                      int first = 0, int count = -1) {
  std::vector<std::unique_ptr<Subprocess>> out;
  if (count < 0) count = n;
  for (int i = first; i < first + count; ++i) {
    out.push_back(std::make_unique<Subprocess>(
        "ms-rendezvous-probe", std::vector<std::string>{"--hold", std::to_string(hold_s)},
        Merge(base, {{"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", std::to_string(n)},
                     {"MS_NODE_ID", std::to_string(i)}})));
  }
  return out;
}

bool AllPrinted(const std::vector<std::unique_ptr<Subprocess>>& ps, const std::string& needle,
                absl::Duration timeout) {
  for (auto& p : ps) {
    if (p == nullptr) continue;
    if (!WaitForStdout(*p, needle, timeout)) return false;
  }
  return true;
}

TEST(LivenessE2E, KillNineOneOfSixteen_AllSurvivorsToldWithinASecondOfDetection) {
  Daemon d({"--disconnect-grace", "500ms"});
  const Env base = Merge(d.SchedEnv(), {{"MS_JOB_ID", "kill9"}});
  auto probes = StartHolders(base, 16, 120);
  ASSERT_TRUE(AllPrinted(probes, "\"rank\"", absl::Seconds(60)));
  const absl::Time kill_at = absl::Now();
  probes[5]->Signal(SIGKILL);
  probes[5]->Wait();
  for (int i = 0; i < 16; ++i) {
    if (i == 5) continue;
    auto code = probes[i]->Wait(absl::Seconds(10));
    ASSERT_TRUE(code.has_value()) << "survivor " << i << " never heard of the failure";
    EXPECT_EQ(*code, 3);
    auto failed = LinesWith(probes[i]->Stdout(), "\"job_failed\"");
    ASSERT_EQ(failed.size(), 1u) << probes[i]->Stdout();
    EXPECT_THAT(failed[0], HasSubstr("\"node_id\":\"5\""));
    EXPECT_THAT(failed[0], HasSubstr("\"rank\":5"));
  }
  // Detection = the dropped connection (at once) + the 500 ms grace; fan-out < 1 s on top.
  EXPECT_LT(absl::Now() - kill_at, absl::Milliseconds(500) + absl::Seconds(2));
}

TEST(LivenessE2E, StoppedMember_DetectedAtNodeTimeout_NoFalseDetection) {
  Daemon d;
  const Env base = Merge(d.SchedEnv(), {{"MS_JOB_ID", "stop"}, {"MS_NODE_TIMEOUT", "3"}});
  auto probes = StartHolders(base, 6, 120);
  ASSERT_TRUE(AllPrinted(probes, "\"rank\"", absl::Seconds(60)));
  const absl::Time stop_at = absl::Now();
  probes[2]->Signal(SIGSTOP);
  absl::Duration first_exit = absl::InfiniteDuration();
  for (int i = 0; i < 6; ++i) {
    if (i == 2) continue;
    auto code = probes[i]->Wait(absl::Seconds(15));
    ASSERT_TRUE(code.has_value());
    first_exit = std::min(first_exit, absl::Now() - stop_at);
    EXPECT_EQ(*code, 3);
    auto failed = LinesWith(probes[i]->Stdout(), "\"job_failed\"");
    ASSERT_EQ(failed.size(), 1u);
    // Only the stopped member is dead: nobody else was falsely detected.
    EXPECT_THAT(failed[0], HasSubstr("\"node_id\":\"2\""));
    EXPECT_THAT(failed[0], HasSubstr("no heartbeat"));
    for (const char* other : {"\"node_id\":\"0\"", "\"node_id\":\"1\"", "\"node_id\":\"3\""}) {
      EXPECT_EQ(failed[0].find(other), std::string::npos) << failed[0];
    }
  }
  // MS_NODE_TIMEOUT=3 (+ at most one second, + process exit slack on a loaded machine).
  EXPECT_GE(first_exit, absl::Milliseconds(2500));
  EXPECT_LT(first_exit, absl::Seconds(5));
  probes[2]->Signal(SIGCONT);
}

TEST(LivenessE2E, RecoveryMode_KilledWorkerRestartsWithSameNodeId_TakesBackItsRank) {
  Daemon d({"--disconnect-grace", "300ms"});
  const Env base =
      Merge(d.SchedEnv(), {{"MS_JOB_ID", "recover"}, {"MS_ENABLE_RECOVERY", "1"}});
  auto probes = StartHolders(base, 4, 120);
  ASSERT_TRUE(AllPrinted(probes, "\"rank\"", absl::Seconds(60)));
  probes[1]->Signal(SIGKILL);
  probes[1]->Wait();
  // Survivors see the death, the job degrades, nobody exits.
  for (int i : {0, 2, 3}) ASSERT_TRUE(WaitForStdout(*probes[i], "member_dead", absl::Seconds(10)));
  auto again = StartHolders(base, 4, 120, /*first=*/1, /*count=*/1);
  ASSERT_TRUE(WaitForStdout(*again[0], "\"rank\"", absl::Seconds(30))) << again[0]->Stderr();
  EXPECT_EQ(JsonInt(FirstLine(again[0]->Stdout()), "rank"), 1);
  for (int i : {0, 2, 3}) {
    ASSERT_TRUE(WaitForStdout(*probes[i], "member_recovered", absl::Seconds(10)));
    EXPECT_FALSE(probes[i]->Wait(absl::Milliseconds(10)).has_value()) << "survivor lost its session";
  }
  Subprocess ctl("ms-rendezvousctl", {"--server", d.address(), "--json", "job", "recover"}, {});
  ASSERT_EQ(ctl.Wait(), 0) << ctl.Stderr();
  EXPECT_THAT(ctl.Stdout(), HasSubstr("\"state\":\"complete\""));
}

// Reads `ms-rendezvousctl --json members JOB`, keeping only the stable fields per member.
std::set<std::string> MemberTable(const std::string& address, const std::string& job) {
  Subprocess ctl("ms-rendezvousctl", {"--server", address, "--json", "members", job}, {});
  ctl.Wait();
  std::set<std::string> rows;
  std::string out = ctl.Stdout();
  size_t pos = 0;
  while ((pos = out.find("{\"node_id\"", pos)) != std::string::npos) {
    size_t end = out.find('}', pos);
    std::string obj = out.substr(pos, end - pos + 1);
    rows.insert(absl::StrCat(JsonField(obj, "node_id").value_or("?"), "/",
                             JsonField(obj, "rank").value_or("?"), "/",
                             JsonField(obj, "host").value_or("?"), "/",
                             JsonField(obj, "incarnation").value_or("?")));
    pos = end;
  }
  return rows;
}

TEST(LivenessE2E, DaemonKillNineWhileForming_RestartCompletesWithoutRankChangesOrDuplicates) {
  const std::string state_dir = absl::StrCat(TempDir(), "/state-forming");
  auto d = std::make_unique<Daemon>(std::vector<std::string>{"--state-dir", state_dir});
  const std::string address = d->address();
  const Env base = Merge(d->SchedEnv(), {{"MS_JOB_ID", "restart1"}, {"MS_TOPO_TIMEOUT", "60"}});
  auto first = StartHolders(base, 16, 60, 0, 8);
  // Wait until the daemon has the 8 (durably: acks follow the commit).
  for (int i = 0; i < 500; ++i) {
    Subprocess ctl("ms-rendezvousctl", {"--server", address, "--json", "job", "restart1"}, {});
    ctl.Wait();
    if (ctl.Stdout().find("\"joined\":8") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  d->proc().Signal(SIGKILL);
  d->proc().Wait();
  d = std::make_unique<Daemon>(std::vector<std::string>{"--state-dir", state_dir}, address);
  ASSERT_GT(d->port(), 0) << d->proc().Stderr();
  auto rest = StartHolders(base, 16, 60, 8, 8);
  std::set<int> ranks;
  for (auto* group : {&first, &rest}) {
    for (auto& p : *group) {
      ASSERT_TRUE(WaitForStdout(*p, "\"rank\"", absl::Seconds(40))) << p->Stderr();
      ranks.insert(JsonInt(FirstLine(p->Stdout()), "rank"));
    }
  }
  EXPECT_EQ(ranks.size(), 16u);
  EXPECT_EQ(*ranks.begin(), 0);
  EXPECT_EQ(*ranks.rbegin(), 15);
  EXPECT_EQ(MemberTable(address, "restart1").size(), 16u);  // no duplicate member
  for (int i = 0; i < 8; ++i) {  // numeric node ids: rank = node id, unchanged by the restart
    EXPECT_EQ(JsonInt(FirstLine(first[i]->Stdout()), "rank"), i);
  }
}

TEST(LivenessE2E, DaemonKillNineAfterCompletion_EverySessionResumes_SameTable) {
  const std::string state_dir = absl::StrCat(TempDir(), "/state-complete");
  auto d = std::make_unique<Daemon>(std::vector<std::string>{"--state-dir", state_dir});
  const std::string address = d->address();
  const Env base = Merge(d->SchedEnv(), {{"MS_JOB_ID", "restart2"}, {"MS_NODE_TIMEOUT", "20"}});
  auto probes = StartHolders(base, 8, 60);
  ASSERT_TRUE(AllPrinted(probes, "\"rank\"", absl::Seconds(60)));
  const std::set<std::string> before = MemberTable(address, "restart2");
  ASSERT_EQ(before.size(), 8u);
  d->proc().Signal(SIGKILL);
  d->proc().Wait();
  const absl::Time killed = absl::Now();
  d = std::make_unique<Daemon>(std::vector<std::string>{"--state-dir", state_dir}, address);
  ASSERT_TRUE(AllPrinted(probes, "\"resumed\"", absl::Seconds(20)));
  EXPECT_LT(absl::Now() - killed, absl::Seconds(10));
  for (auto& p : probes) {
    auto resumed = LinesWith(p->Stdout(), "\"resumed\"");
    ASSERT_FALSE(resumed.empty());
    EXPECT_EQ(JsonInt(resumed[0], "rank"), JsonInt(FirstLine(p->Stdout()), "rank"));
    EXPECT_FALSE(p->Wait(absl::Milliseconds(1)).has_value()) << p->Stderr();
  }
  EXPECT_EQ(MemberTable(address, "restart2"), before);
  Subprocess ctl("ms-rendezvousctl", {"--server", address, "--json", "job", "restart2"}, {});
  ASSERT_EQ(ctl.Wait(), 0);
  EXPECT_THAT(ctl.Stdout(), HasSubstr("\"state\":\"complete\""));
}

TEST(LivenessE2E, DaemonRestartWithoutStateDir_ClientsGetClearAbortNotANewRank) {
  auto d = std::make_unique<Daemon>();
  const std::string address = d->address();
  const Env base = Merge(d->SchedEnv(), {{"MS_JOB_ID", "amnesia"}});
  auto probes = StartHolders(base, 2, 60);
  ASSERT_TRUE(AllPrinted(probes, "\"rank\"", absl::Seconds(60)));
  d->proc().Signal(SIGKILL);
  d->proc().Wait();
  d = std::make_unique<Daemon>(std::vector<std::string>{}, address);
  for (auto& p : probes) {
    auto code = p->Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 3);
    EXPECT_THAT(p->Stderr(), HasSubstr("ABORTED"));
    EXPECT_THAT(p->Stderr(), HasSubstr("unknown to this daemon"));
  }
}

}  // namespace
}  // namespace ms_rendezvous::testing
