// e2e tests of ms-rendezvous-run (tools/run/main.cc) with real processes: the launcher, its
// embedded scheduler and ms-rendezvous-probe workers. Nothing is mocked.
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/e2e/subprocess.h"

namespace ms_rendezvous::testing {
namespace {

std::string Probe() { return BinDir() + "/ms-rendezvous-probe"; }

std::string NewLogDir(const std::string& name) {
  static int counter = 0;
  return absl::StrCat(TempDir(), "/run-", name, "-", getpid(), "-", counter++);
}

// A process that exists and is not a zombie (an orphan reparented to a PID 1 that never reaps
// stays a zombie: it is dead all the same).
bool Alive(pid_t pid) {
  if (kill(pid, 0) != 0) return false;
  std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= stat.size()) return false;
  const char state = stat[close_paren + 2];
  return state != 'Z' && state != 'X';
}

// True while a live (non-zombie) process is in process group `pgid` (scans /proc), waiting up
// to `grace` for it to empty (SIGKILL is delivered asynchronously).
bool GroupAlive(pid_t pgid, absl::Duration grace = absl::Milliseconds(300)) {
  const absl::Time deadline = absl::Now() + grace;
  for (;;) {
    bool any = false;
    if (kill(-pgid, 0) == 0) {
      for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        int pid = 0;
        if (!absl::SimpleAtoi(entry.path().filename().string(), &pid)) continue;
        std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
        auto close_paren = stat.rfind(')');
        if (close_paren == std::string::npos) continue;
        // ") S PPID PGRP ..."
        std::vector<std::string> fields =
            absl::StrSplit(stat.substr(close_paren + 2), ' ', absl::SkipEmpty());
        int pgrp = 0;
        if (fields.size() > 2 && absl::SimpleAtoi(fields[2], &pgrp) && pgrp == pgid &&
            fields[0] != "Z" && fields[0] != "X") {
          any = true;
          break;
        }
      }
    }
    if (!any) return false;
    if (absl::Now() >= deadline) return true;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

// "started worker index I pid P ..." lines of the launcher's stderr -> index -> pid.
std::map<int, pid_t> WorkerPids(const std::string& err) {
  std::map<int, pid_t> out;
  for (const std::string& line : LinesWith(err, "started worker index ")) {
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int index = -1, pid = -1;
    for (size_t i = 0; i + 1 < words.size(); ++i) {
      if (words[i] == "index") (void)absl::SimpleAtoi(words[i + 1], &index);
      if (words[i] == "pid") (void)absl::SimpleAtoi(words[i + 1], &pid);
    }
    if (index >= 0 && pid > 0) out[index] = pid;
  }
  return out;
}

std::map<int, pid_t> WaitForWorkerPids(Subprocess& launcher, size_t n,
                                       absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  std::map<int, pid_t> pids;
  while (absl::Now() < deadline) {
    pids = WorkerPids(launcher.Stderr());
    if (pids.size() >= n) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return pids;
}

// Waits until every log has a probe topology line ("world_size") - the job is complete.
bool WaitForTopologies(const std::string& log_dir, int n, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int ready = 0;
    for (int i = 0; i < n; ++i) {
      if (absl::StrContains(ReadFile(absl::StrCat(log_dir, "/worker_", i, ".log")),
                            "\"world_size\"")) {
        ++ready;
      }
    }
    if (ready == n) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

TEST(LauncherE2E, FourProbesGetRanksZeroToThreeExactlyOnce) {
  const std::string logs = NewLogDir("ok");
  const int port = FreePort();
  const absl::Time start = absl::Now();
  Subprocess run("ms-rendezvous-run",
                 {"--worker-num", "4", "--local-worker-num", "4", "--master-port",
                  std::to_string(port), "--log-dir", logs, "--", Probe()},
                 {});
  std::optional<int> code = run.Wait(absl::Seconds(60));
  ASSERT_TRUE(code.has_value()) << run.Stderr();
  EXPECT_EQ(*code, 0) << run.Stderr();
  std::cout << "[ timing ] 4-worker job end to end: " << absl::Now() - start << "\n";
  EXPECT_TRUE(absl::StrContains(run.Stderr(), logs + "/worker_{0..3}.log")) << run.Stderr();
  EXPECT_TRUE(absl::StrContains(run.Stderr(), absl::StrCat("127.0.0.1:", port))) << run.Stderr();

  std::multiset<int> ranks;
  for (int i = 0; i < 4; ++i) {
    const std::string log = ReadFile(absl::StrCat(logs, "/worker_", i, ".log"));
    std::vector<std::string> lines = LinesWith(log, "\"rank\"");
    ASSERT_EQ(lines.size(), 1u) << "worker_" << i << ".log:\n" << log;
    ranks.insert(JsonInt(lines[0], "rank"));
    EXPECT_EQ(JsonInt(lines[0], "world_size"), 4) << lines[0];
    EXPECT_EQ(JsonField(lines[0], "job_id").value_or(""), "default") << lines[0];
  }
  EXPECT_EQ(ranks, (std::multiset<int>{0, 1, 2, 3}));
}

TEST(LauncherE2E, MasterPortZeroPicksAFreePortForASingleNodeJob) {
  const std::string logs = NewLogDir("port0");
  Subprocess run("ms-rendezvous-run",
                 {"--worker-num", "2", "--master-port", "0", "--job-id", "port0.job",
                  "--node-rank", "0", "--log-dir", logs, "--", Probe()},
                 {});
  std::optional<int> code = run.Wait(absl::Seconds(60));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << run.Stderr();
  EXPECT_TRUE(absl::StrContains(run.Stderr(), "free port picked")) << run.Stderr();
  for (int i = 0; i < 2; ++i) {
    const std::string line =
        FirstLine(ReadFile(absl::StrCat(logs, "/worker_", i, ".log")));
    // --node-rank 0: MS_NODE_ID = index = rank.
    EXPECT_EQ(JsonInt(line, "rank"), i) << line;
    EXPECT_EQ(JsonField(line, "node_id").value_or(""), std::to_string(i)) << line;
    EXPECT_EQ(JsonField(line, "job_id").value_or(""), "port0.job") << line;
  }
}

TEST(LauncherE2E, OneFailingWorkerStopsTheOthersWithinASecond) {
  const std::string logs = NewLogDir("fail");
  const int port = FreePort();
  // Worker 2 fails once the three others have joined and are waiting for it.
  const std::string script = absl::StrCat(
      "if [ \"$DEVICE_ID\" = 2 ]; then echo 'worker 2 gives up'; sleep 1; exit 1; fi; exec ",
      Probe(), " --hold 30");
  Subprocess run("ms-rendezvous-run",
                 {"--worker-num", "4", "--local-worker-num", "4", "--master-port",
                  std::to_string(port), "--log-dir", logs, "--", "sh", "-c", script},
                 {});
  std::map<int, pid_t> pids = WaitForWorkerPids(run, 4);
  ASSERT_EQ(pids.size(), 4u) << run.Stderr();

  // Poll (1 ms) for worker 2's exit, then for the others'.
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (Alive(pids[2]) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_FALSE(Alive(pids[2]));
  const absl::Time failed_at = absl::Now();
  absl::Time all_gone = absl::InfiniteFuture();
  while (absl::Now() < failed_at + absl::Seconds(5)) {
    bool any = false;
    for (const auto& [index, pid] : pids) any = any || Alive(pid);
    if (!any) {
      all_gone = absl::Now();
      break;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  const absl::Duration latency = all_gone - failed_at;
  std::cout << "[ timing ] kill-the-rest latency (worker 2 gone -> all gone): " << latency
            << "\n";
  EXPECT_LT(latency, absl::Seconds(1));

  std::optional<int> code = run.Wait(absl::Seconds(10));
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_EQ(*code, 1);
  const std::string err = run.Stderr();
  std::cout << err;
  EXPECT_TRUE(absl::StrContains(err, "FAILED: worker index 2 (")) << err;
  EXPECT_TRUE(absl::StrContains(err, "exited with code 1")) << err;
  EXPECT_TRUE(absl::StrContains(err, logs + "/worker_2.log")) << err;
  EXPECT_TRUE(absl::StrContains(err, "worker 2 gives up")) << err;  // the log's tail
  EXPECT_TRUE(absl::StrContains(err, "3 other workers were stopped")) << err;
  // Only index 2 is named as failed.
  EXPECT_FALSE(absl::StrContains(err, "index 0 (")) << err;
  for (const auto& [index, pid] : pids) {
    EXPECT_FALSE(Alive(pid)) << "worker " << index;
    EXPECT_FALSE(GroupAlive(pid)) << "worker group " << index;
  }
}

TEST(LauncherE2E, WorkersIgnoringSigtermAreKilledWithinASecond) {
  const std::string logs = NewLogDir("ignore");
  // Workers 1 and 2 ignore SIGTERM (inherited by their sleep); worker 0 fails.
  const std::string script =
      "if [ \"$DEVICE_ID\" = 0 ]; then sleep 0.3; exit 7; fi; trap '' TERM; sleep 30";
  Subprocess run("ms-rendezvous-run",
                 {"--worker-num", "3", "--master-port", std::to_string(FreePort()), "--log-dir",
                  logs, "--", "sh", "-c", script},
                 {});
  std::map<int, pid_t> pids = WaitForWorkerPids(run, 3);
  ASSERT_EQ(pids.size(), 3u) << run.Stderr();
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (Alive(pids[0]) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  const absl::Time failed_at = absl::Now();
  std::optional<int> code = run.Wait(absl::Seconds(10));
  const absl::Duration latency = absl::Now() - failed_at;
  std::cout << "[ timing ] worker 0 gone -> launcher exit, SIGTERM ignored: " << latency << "\n";
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  EXPECT_LT(latency, absl::Seconds(1));
  EXPECT_TRUE(absl::StrContains(run.Stderr(), "index 0 (")) << run.Stderr();
  EXPECT_TRUE(absl::StrContains(run.Stderr(), "exited with code 7")) << run.Stderr();
  EXPECT_TRUE(absl::StrContains(run.Stderr(), "then SIGKILL for 2")) << run.Stderr();
  for (const auto& [index, pid] : pids) {
    EXPECT_FALSE(Alive(pid)) << "worker " << index;
    EXPECT_FALSE(GroupAlive(pid)) << "worker group " << index;  // the sleeps too
  }
}

TEST(LauncherE2E, WorkerKilledBySignalIsNamedWithTheSignal) {
  const std::string logs = NewLogDir("sig");
  const std::string script = "if [ \"$DEVICE_ID\" = 1 ]; then kill -SEGV $$; fi; exec sleep 30";
  Subprocess run("ms-rendezvous-run",
                 {"--worker-num", "3", "--node-rank", "0", "--master-port",
                  std::to_string(FreePort()), "--log-dir", logs, "--", "sh", "-c", script},
                 {});
  std::optional<int> code = run.Wait(absl::Seconds(10));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  EXPECT_TRUE(absl::StrContains(run.Stderr(), "index 1 (rank 1, pid")) << run.Stderr();
  EXPECT_TRUE(absl::StrContains(run.Stderr(), "was killed by SIGSEGV")) << run.Stderr();
}

TEST(LauncherE2E, SigtermToTheLauncherStopsEveryWorker) {
  const std::string logs = NewLogDir("term");
  Subprocess run("ms-rendezvous-run",
                 {"--worker-num", "4", "--master-port", std::to_string(FreePort()),
                  "--log-dir", logs, "--", Probe(), "--hold", "60"},
                 {});
  std::map<int, pid_t> pids = WaitForWorkerPids(run, 4);
  ASSERT_EQ(pids.size(), 4u) << run.Stderr();
  ASSERT_TRUE(WaitForTopologies(logs, 4, absl::Seconds(30))) << run.Stderr();
  const absl::Time sent = absl::Now();
  run.Signal(SIGTERM);
  std::optional<int> code = run.Wait(absl::Seconds(10));
  ASSERT_TRUE(code.has_value());
  std::cout << "[ timing ] SIGTERM -> launcher exit: " << absl::Now() - sent << "\n";
  EXPECT_EQ(*code, 128 + SIGTERM) << run.Stderr();
  EXPECT_TRUE(absl::StrContains(run.Stderr(), "forwarding it to 4 workers")) << run.Stderr();
  for (const auto& [index, pid] : pids) {
    EXPECT_FALSE(Alive(pid)) << "worker " << index;
    EXPECT_NE(kill(pid, 0), 0) << "worker " << index << " still exists";
    EXPECT_NE(kill(-pid, 0), 0) << "process group of worker " << index << " still exists";
  }
}

TEST(LauncherE2E, SigkillOfTheLauncherLeavesNoOrphan) {
  const std::string logs = NewLogDir("kill");
  Subprocess run("ms-rendezvous-run",
                 {"--worker-num", "2", "--master-port", std::to_string(FreePort()),
                  "--log-dir", logs, "--", "sleep", "60"},
                 {});
  std::map<int, pid_t> pids = WaitForWorkerPids(run, 2);
  ASSERT_EQ(pids.size(), 2u) << run.Stderr();
  run.Signal(SIGKILL);
  ASSERT_TRUE(run.Wait(absl::Seconds(10)).has_value());
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  bool any = true;
  while (any && absl::Now() < deadline) {
    any = false;
    for (const auto& [index, pid] : pids) any = any || Alive(pid);
    if (any) absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_FALSE(any) << "a worker survived the launcher (PR_SET_PDEATHSIG)";
}

TEST(LauncherE2E, ProgramThatCannotBeExecutedIsASetupError) {
  Subprocess run("ms-rendezvous-run",
                 {"--worker-num", "2", "--master-port", std::to_string(FreePort()), "--log-dir",
                  NewLogDir("noexec"), "--", "/nonexistent/ms-worker"},
                 {});
  std::optional<int> code = run.Wait(absl::Seconds(10));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 3);
  EXPECT_TRUE(absl::StrContains(run.Stderr(),
                                "cannot execute PROGRAM /nonexistent/ms-worker: No such file"))
      << run.Stderr();
}

struct FlagCase {
  std::vector<std::string> args;
  std::string message;
};

TEST(LauncherE2E, FlagValidationMessages) {
  const std::string logs = NewLogDir("flags");
  const std::vector<FlagCase> cases = {
      {{"--worker-num", "0"}, "--worker-num=\"0\" is invalid: expected an integer in 1..1000000"},
      {{"--worker-num", "x"}, "--worker-num=\"x\" is invalid: expected an integer in 1..1000000"},
      {{"--worker-num", "8", "--local-worker-num", "9"},
       "--local-worker-num=\"9\" is invalid: expected an integer in 1..8 (at most --worker-num"},
      {{"--master-port", "70000"},
       "--master-port=\"70000\" is invalid: expected an integer in 1..65535"},
      {{"--worker-num", "8", "--local-worker-num", "4", "--node-rank", "2"},
       "--node-rank=\"2\" is invalid: expected -1 (ranks assigned by the scheduler) or an "
       "integer in 0..1 (--worker-num 8 / --local-worker-num 4 = 2 nodes"},
      {{"--node-rank", "-2"}, "--node-rank=\"-2\" is invalid: expected -1"},
      {{"--cluster-time-out", "0"},
       "--cluster-time-out=\"0\" is invalid: expected an integer number of seconds in "
       "1..31536000, or -1 to wait forever"},
      {{"--job-id", "a b"},
       "--job-id=\"a b\" is invalid: expected 1..128 characters of [A-Za-z0-9._:-]"},
      {{"--master-addr", "a,b"}, "--master-addr=\"a,b\" is invalid"},
      {{"--join=maybe"}, "--join=\"maybe\" is invalid: expected true or false"},
      {{"--frobnicate", "1"}, "unknown flag --frobnicate"},
      {{"--worker-num"}, "flag --worker-num needs a value"},
      {{"--worker-num", "4", "--"}, "missing PROGRAM"},
      {{"--worker-num", "8", "--local-worker-num", "4", "--master-port", "0"},
       "--master-port=\"0\" is invalid here: a free port can only be picked for a single-node "
       "job"},
      {{"--worker-num", "2", "--master-port", "0", "--join"},
       "--master-port=\"0\" is invalid here"},
  };
  for (const FlagCase& c : cases) {
    std::vector<std::string> args = c.args;
    args.insert(args.begin(), {"--log-dir", logs});
    if (c.message != "missing PROGRAM" && c.message != "flag --worker-num needs a value") {
      args.push_back("--");
      args.push_back("true");
    }
    Subprocess run("ms-rendezvous-run", args, {});
    std::optional<int> code = run.Wait(absl::Seconds(10));
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 2) << absl::StrJoin(c.args, " ") << "\n" << run.Stderr();
    EXPECT_TRUE(absl::StrContains(run.Stderr(), c.message))
        << absl::StrJoin(c.args, " ") << "\nexpected: " << c.message << "\ngot: " << run.Stderr();
  }
}

TEST(LauncherE2E, SchedHostInTheEnvironmentUsesThatDaemon) {
  Daemon daemon;
  ASSERT_GT(daemon.port(), 0);
  const std::string logs = NewLogDir("daemon");
  Subprocess run("ms-rendezvous-run",
                 {"--worker-num", "2", "--job-id", "via-daemon", "--log-dir", logs, "--",
                  Probe()},
                 daemon.SchedEnv());
  std::optional<int> code = run.Wait(absl::Seconds(60));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << run.Stderr();
  EXPECT_TRUE(absl::StrContains(run.Stderr(), "no scheduler started here")) << run.Stderr();
  std::set<int> ranks;
  for (int i = 0; i < 2; ++i) {
    const std::string line = FirstLine(ReadFile(absl::StrCat(logs, "/worker_", i, ".log")));
    ranks.insert(JsonInt(line, "rank"));
    EXPECT_EQ(JsonField(line, "job_id").value_or(""), "via-daemon") << line;
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1}));
}

}  // namespace
}  // namespace ms_rendezvous::testing
