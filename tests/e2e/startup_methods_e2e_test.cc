// End-to-end: the same ms-rendezvous-probe binary prints consistent topologies under the three
// startup methods of issue 5 (ms_rendezvous::Init(), init.h):
//   (a) multi-process startup: an HCCL rank table for 2 hosts x 4 devices, 8 probes with
//       RANK_TABLE_FILE + RANK_ID + DEVICE_ID and no daemon;
//   (b) OpenMPI for real: mpirun --oversubscribe --allow-run-as-root -np 4 (Debian openmpi-bin,
//       installed by scripts/bootstrap.sh), without a daemon and with MS_SCHED_HOST/PORT naming
//       one: ranks equal the MPI ranks;
//   (c) dynamic cluster: a valid RANK_TABLE_FILE remaps the ranks by (pod_ip/server_id,
//       DEVICE_ID).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "e2e/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ms_rendezvous::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kTable2x4[] = R"({
  "version": "1.0", "server_count": "2", "status": "completed",
  "server_list": [
    {"server_id": "10.0.0.1", "host_nic_ip": "reserve", "device": [
      {"device_id": "0", "device_ip": "192.168.100.1", "rank_id": "0"},
      {"device_id": "1", "device_ip": "192.168.100.2", "rank_id": "1"},
      {"device_id": "2", "device_ip": "192.168.100.3", "rank_id": "2"},
      {"device_id": "3", "device_ip": "192.168.100.4", "rank_id": "3"}]},
    {"server_id": "10.0.0.2", "host_nic_ip": "reserve", "device": [
      {"device_id": "0", "device_ip": "192.168.101.1", "rank_id": "4"},
      {"device_id": "1", "device_ip": "192.168.101.2", "rank_id": "5"},
      {"device_id": "2", "device_ip": "192.168.101.3", "rank_id": "6"},
      {"device_id": "3", "device_ip": "192.168.101.4", "rank_id": "7"}]}]})";

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(TempDir(), "/", name, "-", getpid());
  std::ofstream(path) << text;
  return path;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

// The first executable `name` on PATH, or "".
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path == nullptr ? "/usr/bin:/bin" : path, ':')) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

struct CommandResult {
  std::optional<int> exit_code;  // nullopt: killed after the timeout
  std::string out, err;
};

// Runs argv with the test's environment minus every MS_*, rank, MPI and PMIx variable, plus
// `env`; kills the whole process group after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv_s,
                         const std::map<std::string, std::string>& env, absl::Duration timeout) {
  static int counter = 0;
  const std::string base = absl::StrCat(TempDir(), "/cmd-", getpid(), "-", counter++);
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) {
    absl::string_view kv(*e);
    if (absl::StartsWith(kv, "MS_") || absl::StartsWith(kv, "RANK_") ||
        absl::StartsWith(kv, "DEVICE_ID=") || absl::StartsWith(kv, "OMPI_") ||
        absl::StartsWith(kv, "PMIX_") || absl::StartsWith(kv, "MINDSPORE_HCCL")) {
      continue;
    }
    env_s.emplace_back(kv);
  }
  for (const auto& [k, v] : env) env_s.push_back(k + "=" + v);
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    int out = open((base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open((base + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> argv, envp;
    for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  CommandResult result;
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (absl::Now() >= deadline) {
      kill(-pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  result.out = ReadFile(base + ".out");
  result.err = ReadFile(base + ".err");
  return result;
}

// (a) ---------------------------------------------------------------------------------------

TEST(StartupMethodsE2E, RankTable2x4_EightProbesWithoutADaemonPrintConsistentTopologies) {
  const std::string table = WriteFile("table2x4.json", kTable2x4);
  std::vector<std::unique_ptr<Subprocess>> probes;
  for (int i = 0; i < 8; ++i) {
    probes.push_back(std::make_unique<Subprocess>(
        "ms-rendezvous-probe", std::vector<std::string>{},
        Subprocess::Env{{"RANK_TABLE_FILE", table},
                        {"RANK_ID", absl::StrCat(i)},
                        {"DEVICE_ID", absl::StrCat(i % 4)},
                        {"RANK_SIZE", "8"},
                        {"MS_JOB_ID", "ranktable"}}));
  }
  for (int i = 0; i < 8; ++i) {
    std::optional<int> code = probes[i]->Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value()) << "probe " << i << " hung";
    ASSERT_EQ(*code, 0) << probes[i]->Stderr();
    const std::vector<std::string> lines = Lines(probes[i]->Stdout());
    ASSERT_EQ(lines.size(), 1u) << probes[i]->Stdout();
    const std::string& l = lines[0];
    EXPECT_EQ(JsonInt(l, "rank"), i) << l;
    EXPECT_EQ(JsonInt(l, "world_size"), 8) << l;
    EXPECT_EQ(JsonInt(l, "local_rank"), i % 4) << l;
    EXPECT_EQ(JsonInt(l, "local_world_size"), 4) << l;
    EXPECT_EQ(JsonInt(l, "node_rank"), i / 4) << l;
    EXPECT_EQ(JsonInt(l, "num_nodes"), 2) << l;
    EXPECT_EQ(JsonInt(l, "generation"), 0) << l;
    EXPECT_EQ(JsonField(l, "host"), i < 4 ? "10.0.0.1" : "10.0.0.2") << l;
    EXPECT_EQ(JsonField(l, "job_id"), "ranktable") << l;
  }
}

TEST(StartupMethodsE2E, RankTable_ErrorsExitWithUsageAndAPreciseMessage) {
  const std::string table = WriteFile("table2x4-err.json", kTable2x4);
  Subprocess p("ms-rendezvous-probe", {},
               Subprocess::Env{{"RANK_TABLE_FILE", table}, {"RANK_ID", "8"}});
  ASSERT_EQ(p.Wait(absl::Seconds(30)), 2);
  EXPECT_THAT(p.Stderr(), HasSubstr("RANK_ID=\"8\" is out of range"));
}

// (b) ---------------------------------------------------------------------------------------

// mpirun -np 4 of the probe; `extra` adds mpirun options (e.g. -x VAR).
CommandResult MpirunProbe(const std::string& mpirun, const std::map<std::string, std::string>& env,
                          const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {mpirun, "--oversubscribe", "--allow-run-as-root", "-np", "4"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(BinDir() + "/ms-rendezvous-probe");
  // mpirun on localhost can be slow to start (allow 60 s).
  return RunCommand(argv, env, absl::Seconds(60));
}

// Checks that 4 JSON lines carry ranks 0..3 (each once) and that every rank's line is
// consistent with one node of 4.
void ExpectFourMpiRanks(const CommandResult& r, bool with_daemon) {
  ASSERT_TRUE(r.exit_code.has_value()) << "mpirun did not finish in 60 s; stderr: " << r.err;
  ASSERT_EQ(*r.exit_code, 0) << "stdout: " << r.out << "\nstderr: " << r.err;
  std::set<int> ranks;
  std::set<std::string> hosts;
  for (const std::string& l : Lines(r.out)) {
    if (l.rfind("{\"job_id\"", 0) != 0) continue;  // mpirun's own chatter, if any
    const int rank = JsonInt(l, "rank");
    ranks.insert(rank);
    EXPECT_EQ(JsonField(l, "node_id"), absl::StrCat(rank)) << l;
    EXPECT_EQ(JsonInt(l, "world_size"), 4) << l;
    EXPECT_EQ(JsonInt(l, "local_rank"), rank) << l;
    EXPECT_EQ(JsonInt(l, "local_world_size"), 4) << l;
    EXPECT_EQ(JsonInt(l, "node_rank"), 0) << l;
    EXPECT_EQ(JsonInt(l, "num_nodes"), 1) << l;
    if (with_daemon) {
      EXPECT_GT(JsonInt(l, "generation"), 0) << l;
    } else {
      EXPECT_EQ(JsonInt(l, "generation"), 0) << l;
    }
    hosts.insert(JsonField(l, "host").value_or(""));
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1, 2, 3})) << r.out;
  EXPECT_EQ(hosts.size(), 1u) << r.out;
}

TEST(StartupMethodsE2E, OpenMpi_Np4WithoutADaemon_RanksAreTheMpiRanks) {
  const std::string mpirun = FindOnPath("mpirun");
  if (mpirun.empty()) GTEST_SKIP() << "mpirun not found (install openmpi-bin: scripts/bootstrap.sh)";
  ExpectFourMpiRanks(MpirunProbe(mpirun, {}), /*with_daemon=*/false);
}

TEST(StartupMethodsE2E, OpenMpi_Np4WithADaemon_JoinsWithTheMpiRanks) {
  const std::string mpirun = FindOnPath("mpirun");
  if (mpirun.empty()) GTEST_SKIP() << "mpirun not found (install openmpi-bin: scripts/bootstrap.sh)";
  Daemon d;
  ASSERT_GT(d.port(), 0);
  std::map<std::string, std::string> env = {{"MS_SCHED_HOST", "127.0.0.1"},
                                            {"MS_SCHED_PORT", absl::StrCat(d.port())},
                                            {"MS_JOB_ID", "mpi"},
                                            {"MS_TOPO_TIMEOUT", "60"}};
  std::vector<std::string> extra;
  for (const auto& [k, v] : env) {
    extra.push_back("-x");
    extra.push_back(k);
  }
  const CommandResult r = MpirunProbe(mpirun, env, extra);
  ExpectFourMpiRanks(r, /*with_daemon=*/true);
  for (const std::string& l : Lines(r.out)) {
    if (l.rfind("{\"job_id\"", 0) == 0) EXPECT_EQ(JsonField(l, "job_id"), "mpi") << l;
  }
}

// (c) ---------------------------------------------------------------------------------------

TEST(StartupMethodsE2E, DynamicCluster_RankTableRemapsRanksByHostAndDevice) {
  // Two "hosts" on loopback: 127.0.0.2 (server_id) is listed first, with device 1 before device
  // 0; the second server is identified by its pod_ip 127.0.0.1, not its server_id.
  const std::string table = WriteFile("remap.json", R"({
    "version": "1.0", "server_count": "2", "status": "completed",
    "server_list": [
      {"server_id": "127.0.0.2", "device": [{"device_id": "1", "rank_id": "0"},
                                            {"device_id": "0", "rank_id": "1"}]},
      {"server_id": "10.9.9.9", "pod_ip": "127.0.0.1",
       "device": [{"device_id": "0", "rank_id": "2"}, {"device_id": "1", "rank_id": "3"}]}]})");
  Daemon d;
  ASSERT_GT(d.port(), 0);
  struct Proc {
    std::string ip;
    int device;
    int expected_rank;
  };
  const std::vector<Proc> procs = {
      {"127.0.0.1", 0, 2}, {"127.0.0.1", 1, 3}, {"127.0.0.2", 0, 1}, {"127.0.0.2", 1, 0}};
  std::vector<std::unique_ptr<Subprocess>> probes;
  for (const Proc& p : procs) {
    Subprocess::Env env = d.SchedEnv();
    env["MS_ROLE"] = "MS_WORKER";
    env["MS_WORKER_NUM"] = "4";
    env["MS_JOB_ID"] = "remap";
    env["MS_TOPO_TIMEOUT"] = "60";
    env["MS_WORKER_IP"] = p.ip;
    env["DEVICE_ID"] = absl::StrCat(p.device);
    env["RANK_TABLE_FILE"] = table;
    probes.push_back(
        std::make_unique<Subprocess>("ms-rendezvous-probe", std::vector<std::string>{}, env));
  }
  for (size_t i = 0; i < procs.size(); ++i) {
    std::optional<int> code = probes[i]->Wait(absl::Seconds(60));
    ASSERT_TRUE(code.has_value()) << "probe " << i << " hung: " << probes[i]->Stderr();
    ASSERT_EQ(*code, 0) << probes[i]->Stderr();
    const std::string l = FirstLine(probes[i]->Stdout());
    EXPECT_EQ(JsonInt(l, "rank"), procs[i].expected_rank) << l;
    EXPECT_EQ(JsonField(l, "node_id"), absl::StrCat(procs[i].expected_rank)) << l;
    EXPECT_EQ(JsonInt(l, "world_size"), 4) << l;
    EXPECT_EQ(JsonField(l, "host"), procs[i].ip) << l;
    EXPECT_GT(JsonInt(l, "generation"), 0) << l;
    EXPECT_THAT(probes[i]->Stderr(), HasSubstr("ignoring the OpenMPI / rank table variables"));
  }
}

}  // namespace
}  // namespace ms_rendezvous::testing
