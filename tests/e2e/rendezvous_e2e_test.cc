// End-to-end: the real daemon, real probe processes, real ports. Each test is one acceptance
// point of the rendezvous (issue 2).
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "subprocess.h"

namespace ms_rendezvous::testing {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

using Env = Subprocess::Env;

Env Merge(Env a, const Env& b) {
  for (const auto& [k, v] : b) a[k] = v;
  return a;
}

struct ProbeResult {
  int exit_code = -1;
  std::string out, err;
};

// Starts `n` probes with a common env plus a per-index env, waits for all of them.
std::vector<ProbeResult> RunProbes(std::vector<Env> envs, std::vector<std::string> args = {},
                                   absl::Duration timeout = absl::Seconds(60)) {
  std::vector<std::unique_ptr<Subprocess>> procs;
  for (const auto& env : envs) {
    procs.push_back(std::make_unique<Subprocess>("ms-rendezvous-probe", args, env));
  }
  std::vector<ProbeResult> out;
  for (auto& p : procs) {
    auto code = p->Wait(timeout);
    out.push_back(ProbeResult{code.value_or(-1), p->Stdout(), p->Stderr()});
  }
  return out;
}

TEST(E2E, SixteenProbesOnTwoSimulatedHosts_RanksContiguousPerHost) {
  Daemon d;
  ASSERT_GT(d.port(), 0);
  std::vector<Env> envs;
  for (int i = 0; i < 16; ++i) {
    // Hosts interleaved in start order: ranks must still be contiguous per host. No MS_NODE_ID:
    // the client generates UUIDs, so ranks come from (address, DEVICE_ID).
    envs.push_back(Merge(d.SchedEnv(), {{"MS_ROLE", "MS_WORKER"},
                                        {"MS_WORKER_NUM", "16"},
                                        {"MS_JOB_ID", "sixteen"},
                                        {"MS_WORKER_IP", i % 2 ? "10.9.0.2" : "10.9.0.1"},
                                        {"DEVICE_ID", std::to_string(i / 2)}}));
  }
  auto results = RunProbes(envs);
  std::set<int> ranks;
  std::set<std::string> generations;
  for (int i = 0; i < 16; ++i) {
    const auto& r = results[i];
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string line = FirstLine(r.out);
    const int rank = JsonInt(line, "rank");
    ranks.insert(rank);
    generations.insert(JsonField(line, "generation").value_or(""));
    const bool host1 = i % 2 == 0;
    EXPECT_EQ(rank, (host1 ? 0 : 8) + i / 2) << line;
    EXPECT_EQ(JsonInt(line, "local_rank"), i / 2) << line;
    EXPECT_EQ(JsonInt(line, "local_world_size"), 8) << line;
    EXPECT_EQ(JsonInt(line, "node_rank"), host1 ? 0 : 1) << line;
    EXPECT_EQ(JsonInt(line, "num_nodes"), 2) << line;
    EXPECT_EQ(JsonInt(line, "world_size"), 16) << line;
    EXPECT_EQ(JsonField(line, "host").value_or(""), host1 ? "10.9.0.1" : "10.9.0.2");
  }
  EXPECT_EQ(ranks.size(), 16u);
  EXPECT_EQ(generations.size(), 1u);
}

TEST(E2E, EightProbesHolding_NinthRejectedAtOnce_CtlShowsJob) {
  Daemon d;
  std::vector<std::unique_ptr<Subprocess>> holders;
  for (int i = 0; i < 8; ++i) {
    holders.push_back(std::make_unique<Subprocess>(
        "ms-rendezvous-probe", std::vector<std::string>{"--hold", "20"},
        Merge(d.SchedEnv(), {{"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "8"},
                             {"MS_JOB_ID", "eight"}})));
  }
  // Wait until all 8 printed their topology line.
  std::set<int> ranks;
  for (int attempt = 0; attempt < 3000 && ranks.size() < 8; ++attempt) {
    ranks.clear();
    for (auto& h : holders) {
      std::string line = FirstLine(h->Stdout());
      if (!line.empty()) ranks.insert(JsonInt(line, "rank"));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(ranks, (std::set<int>{0, 1, 2, 3, 4, 5, 6, 7}));

  const absl::Time start = absl::Now();
  auto ninth = RunProbes({Merge(d.SchedEnv(), {{"MS_ROLE", "MS_WORKER"},
                                               {"MS_WORKER_NUM", "8"},
                                               {"MS_JOB_ID", "eight"}})});
  EXPECT_NE(ninth[0].exit_code, 0);
  EXPECT_THAT(ninth[0].err, AllOf(HasSubstr("RESOURCE_EXHAUSTED"), HasSubstr("is extra")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));

  Subprocess ctl("ms-rendezvousctl", {"--server", d.address(), "job", "eight"}, {});
  ASSERT_EQ(ctl.Wait(), 0) << ctl.Stderr();
  EXPECT_THAT(ctl.Stdout(), AllOf(HasSubstr("eight"), HasSubstr("complete")));

  Subprocess members("ms-rendezvousctl", {"--server", d.address(), "--json", "members", "eight"},
                     {});
  ASSERT_EQ(members.Wait(), 0) << members.Stderr();
  EXPECT_THAT(members.Stdout(), AllOf(HasSubstr("\"job_id\":\"eight\""),
                                      HasSubstr("\"rank\":7"), HasSubstr("\"state\":\"active\"")));
  for (auto& h : holders) h->Signal(SIGTERM);
}

TEST(E2E, TwoJobsSideBySide_DoNotInterfere) {
  Daemon d;
  std::vector<Env> envs;
  for (const char* job : {"alpha", "beta"}) {
    for (int i = 0; i < 3; ++i) {
      envs.push_back(Merge(d.SchedEnv(), {{"MS_ROLE", "MS_WORKER"},
                                          {"MS_WORKER_NUM", "3"},
                                          {"MS_JOB_ID", job},
                                          {"MS_NODE_ID", std::to_string(i)}}));
    }
  }
  auto results = RunProbes(envs);
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_EQ(results[i].exit_code, 0) << results[i].err;
    const std::string line = FirstLine(results[i].out);
    EXPECT_EQ(JsonInt(line, "rank"), static_cast<int>(i % 3));
    EXPECT_EQ(JsonField(line, "job_id").value_or(""), i < 3 ? "alpha" : "beta");
    EXPECT_EQ(JsonInt(line, "world_size"), 3);
  }
}

TEST(E2E, ParameterServerJob_WorkersAndServersHaveTheirOwnRanks) {
  Daemon d;
  std::vector<Env> envs;
  for (int i = 0; i < 4; ++i) {
    envs.push_back(Merge(d.SchedEnv(), {{"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "4"},
                                        {"MS_SERVER_NUM", "2"}, {"MS_JOB_ID", "ps"}}));
  }
  for (int i = 0; i < 2; ++i) {
    envs.push_back(Merge(d.SchedEnv(), {{"MS_ROLE", i ? "MS_SERVER" : "MS_PSERVER"},
                                        {"MS_WORKER_NUM", "4"},
                                        {"MS_SERVER_NUM", "2"},
                                        {"MS_JOB_ID", "ps"}}));
  }
  auto results = RunProbes(envs);
  std::set<int> worker_ranks, server_ranks;
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_EQ(results[i].exit_code, 0) << results[i].err;
    const std::string line = FirstLine(results[i].out);
    if (i < 4) {
      EXPECT_EQ(JsonField(line, "role").value_or(""), "MS_WORKER");
      EXPECT_EQ(JsonInt(line, "world_size"), 4);
      worker_ranks.insert(JsonInt(line, "rank"));
    } else {
      EXPECT_EQ(JsonField(line, "role").value_or(""), "MS_PSERVER");
      EXPECT_EQ(JsonInt(line, "world_size"), 2);
      server_ranks.insert(JsonInt(line, "rank"));
    }
  }
  EXPECT_EQ(worker_ranks, (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(server_ranks, (std::set<int>{0, 1}));
}

TEST(E2E, MissingMember_TimeoutNamesRank_CtlShowedItWhileForming) {
  Daemon d;
  std::vector<std::unique_ptr<Subprocess>> probes;
  for (int i : {0, 1, 3}) {
    probes.push_back(std::make_unique<Subprocess>(
        "ms-rendezvous-probe", std::vector<std::string>{},
        Merge(d.SchedEnv(), {{"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "4"},
                             {"MS_JOB_ID", "short"}, {"MS_NODE_ID", std::to_string(i)},
                             {"MS_TOPO_TIMEOUT", "4"}})));
  }
  // While forming, ctl names the missing rank.
  std::string shown;
  for (int attempt = 0; attempt < 300; ++attempt) {
    Subprocess ctl("ms-rendezvousctl", {"--server", d.address(), "--json", "job", "short"}, {});
    ctl.Wait();
    shown = ctl.Stdout();
    if (shown.find("\"joined\":3") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_THAT(shown, AllOf(HasSubstr("\"missing_ranks\":[2]"), HasSubstr("forming")));
  Subprocess human("ms-rendezvousctl", {"--server", d.address(), "job", "short"}, {});
  human.Wait();
  EXPECT_THAT(human.Stdout(), HasSubstr("2"));
  for (auto& p : probes) {
    auto code = p->Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value());
    EXPECT_NE(*code, 0);
    EXPECT_THAT(p->Stderr(), AllOf(HasSubstr("DEADLINE_EXCEEDED"), HasSubstr("missing ranks [2]")));
  }
}

TEST(E2E, EmbeddedScheduler_OneSchedAndFourWorkers_NoDaemon) {
  const int port = FreePort();
  const Env common = {{"MS_SCHED_HOST", "127.0.0.1"},
                      {"MS_SCHED_PORT", std::to_string(port)},
                      {"MS_WORKER_NUM", "4"},
                      {"MS_JOB_ID", "embedded"}};
  // Workers first: they must retry until the scheduler is up (MindSpore scripts start all at once).
  std::vector<std::unique_ptr<Subprocess>> workers;
  for (int i = 0; i < 4; ++i) {
    workers.push_back(std::make_unique<Subprocess>("ms-rendezvous-probe", std::vector<std::string>{},
                                                   Merge(common, {{"MS_ROLE", "MS_WORKER"}})));
  }
  absl::SleepFor(absl::Milliseconds(300));
  Subprocess sched("ms-rendezvous-probe", {}, Merge(common, {{"MS_ROLE", "MS_SCHED"}}));
  std::set<int> ranks;
  for (auto& w : workers) {
    ASSERT_EQ(w->Wait(), 0) << w->Stderr();
    ranks.insert(JsonInt(FirstLine(w->Stdout()), "rank"));
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1, 2, 3}));
  // Every worker left: the job is finished and the scheduler exits by itself.
  auto code = sched.Wait(absl::Seconds(30));
  ASSERT_TRUE(code.has_value()) << "scheduler did not exit after the job finished";
  EXPECT_EQ(*code, 0) << sched.Stderr();
}

TEST(E2E, DisagreeingWorkerNum_RejectedWithBothValues) {
  Daemon d;
  auto first = std::make_unique<Subprocess>(
      "ms-rendezvous-probe", std::vector<std::string>{},
      Merge(d.SchedEnv(), {{"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "2"}, {"MS_JOB_ID", "dis"},
                           {"MS_TOPO_TIMEOUT", "5"}}));
  absl::SleepFor(absl::Milliseconds(500));
  auto bad = RunProbes({Merge(d.SchedEnv(), {{"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "3"},
                                             {"MS_JOB_ID", "dis"}})});
  EXPECT_NE(bad[0].exit_code, 0);
  EXPECT_THAT(bad[0].err, AllOf(HasSubstr("FAILED_PRECONDITION"), HasSubstr("MS_WORKER_NUM=3"),
                                HasSubstr("MS_WORKER_NUM=2")));
}

TEST(E2E, BadEnvironment_ProbeNamesVariableAndValue) {
  auto r = RunProbes({{{"MS_ROLE", "MS_WORKER"}, {"MS_SCHED_HOST", "127.0.0.1"},
                       {"MS_SCHED_PORT", "70000"}, {"MS_WORKER_NUM", "2"}}});
  EXPECT_NE(r[0].exit_code, 0);
  EXPECT_THAT(r[0].err, AllOf(HasSubstr("MS_SCHED_PORT"), HasSubstr("70000")));
  auto role = RunProbes({{{"MS_ROLE", "MS_BOSS"}, {"MS_SCHED_HOST", "127.0.0.1"},
                          {"MS_SCHED_PORT", "8118"}, {"MS_WORKER_NUM", "2"}}});
  EXPECT_NE(role[0].exit_code, 0);
  EXPECT_THAT(role[0].err, AllOf(HasSubstr("MS_ROLE"), HasSubstr("MS_BOSS")));
}

TEST(E2E, DaemonSigterm_DrainsPromptlyWithWaitingMembers) {
  Daemon d({"--shutdown-grace", "1s"});
  auto waiting = std::make_unique<Subprocess>(
      "ms-rendezvous-probe", std::vector<std::string>{},
      Merge(d.SchedEnv(), {{"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "2"}, {"MS_JOB_ID", "drain"},
                           {"MS_TOPO_TIMEOUT", "3"}}));
  absl::SleepFor(absl::Milliseconds(500));
  const absl::Time start = absl::Now();
  d.proc().Signal(SIGTERM);
  auto code = d.proc().Wait(absl::Seconds(10));
  ASSERT_TRUE(code.has_value()) << "daemon did not stop within 10 s of SIGTERM";
  EXPECT_EQ(*code, 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_THAT(d.proc().Stderr(), HasSubstr("draining"));
  // The waiting member is not left hanging: it gives up at its topology timeout at the latest.
  auto probe_code = waiting->Wait(absl::Seconds(20));
  ASSERT_TRUE(probe_code.has_value());
  EXPECT_EQ(*probe_code, 3) << waiting->Stderr();
  // Drained, it retried (first UNAVAILABLE "shutting down", then the draining daemon CANCELLED
  // the retry, then connection refused) until its topology timeout. The final error says the
  // daemon is unreachable (or the timeout expired), never the draining daemon's CANCELLED, which
  // is not this client's doing and therefore retryable.
  std::string final_error;
  for (absl::string_view line : absl::StrSplit(waiting->Stderr(), '\n')) {
    if (absl::StartsWith(line, "ms-rendezvous-probe: ")) final_error = std::string(line);
  }
  EXPECT_THAT(final_error, Not(HasSubstr("CANCELLED"))) << waiting->Stderr();
  EXPECT_THAT(final_error,
              AnyOf(AllOf(HasSubstr("ms-rendezvous-probe: UNAVAILABLE: scheduler "),
                          HasSubstr(absl::StrCat(":", d.port(), " unreachable for 3s")),
                          HasSubstr("MS_TOPO_TIMEOUT")),
                    AllOf(HasSubstr("ms-rendezvous-probe: DEADLINE_EXCEEDED: "),
                          HasSubstr("MS_TOPO_TIMEOUT"))))
      << waiting->Stderr();
}

// Limits (issue 7 item 5): every limit flag is logged at start; a bad value stops the daemon
// with exit code 2 and a message naming the flag.
TEST(E2E, LimitFlags_LoggedAtStart_BadValuesRejectedNamingTheFlag) {
  {
    Daemon d({"--max-receive-message-bytes", "65536", "--max-jobs", "7",
              "--max-members-per-job", "99", "--keepalive-time", "20s",
              "--keepalive-timeout", "5s", "--max-connection-idle", "10m"});
    ASSERT_NE(d.port(), 0) << d.proc().Stderr();
    EXPECT_THAT(d.proc().Stderr(),
                AllOf(HasSubstr("max_receive_message_bytes=65536"), HasSubstr("max_jobs=7"),
                      HasSubstr("max_members_per_job=99"), HasSubstr("keepalive_time=20s"),
                      HasSubstr("keepalive_timeout=5s"), HasSubstr("max_connection_idle=10m")));
  }
  {
    Daemon d;  // defaults
    ASSERT_NE(d.port(), 0) << d.proc().Stderr();
    EXPECT_THAT(d.proc().Stderr(),
                AllOf(HasSubstr("max_receive_message_bytes=4194304"), HasSubstr("max_jobs=10000"),
                      HasSubstr("max_members_per_job=1000000"), HasSubstr("keepalive_time=30s"),
                      HasSubstr("keepalive_timeout=10s"), HasSubstr("max_connection_idle=1h"),
                      HasSubstr("session_queues=16")));
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--max-receive-message-bytes", "0"},    {"--max-receive-message-bytes", "4GiB"},
      {"--max-receive-message-bytes", "3000000000"},
      {"--max-jobs", "0"},                     {"--max-jobs", "-1"},
      {"--max-members-per-job", "many"},       {"--keepalive-time", "500ms"},
      {"--keepalive-time", "abc"},             {"--keepalive-timeout", "0s"},
      {"--max-connection-idle", "-5s"},      {"--min-ping-interval", "500ms"},
      {"--store", "bogus"},                  {"--etcd-prefix", "no-trailing-slash"},
      {"--leader-lease-ttl", "1s"},          {"--leader-lease-ttl", "2500ms"},
      {"--session-queues", "0"},             {"--session-queues", "257"},
  };
  for (const auto& [flag, value] : bad) {
    Subprocess p("ms-rendezvousd", {"--listen", "127.0.0.1:0", flag + "=" + value}, Env{});
    auto code = p.Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value()) << flag << "=" << value << " did not stop the daemon";
    EXPECT_EQ(*code, 2) << flag << "=" << value << ": " << p.Stderr();
    EXPECT_THAT(p.Stderr(), HasSubstr(flag + "=\"" + value + "\"")) << p.Stderr();
  }
  // Contradicting store flags: refused at start naming both.
  const std::vector<std::pair<std::vector<std::string>, std::string>> contradictions = {
      {{"--store", "etcd"}, "--store=etcd needs --etcd-endpoints"},
      {{"--etcd-endpoints", "127.0.0.1:2379"}, "--etcd-endpoints is for --store=etcd"},
      {{"--store", "sqlite"}, "--store=sqlite needs --state-dir DIR"},
      {{"--store", "memory", "--state-dir", "/tmp"}, "contradicts --store=memory"},
  };
  for (const auto& [args, message] : contradictions) {
    std::vector<std::string> argv = {"--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    Subprocess p("ms-rendezvousd", argv, Env{});
    auto code = p.Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value()) << message;
    EXPECT_EQ(*code, 2) << message << ": " << p.Stderr();
    EXPECT_THAT(p.Stderr(), HasSubstr(message));
  }
  // --help documents every limit with its default.
  Subprocess help("ms-rendezvousd", {"--help"}, Env{});
  ASSERT_EQ(help.Wait(absl::Seconds(30)).value_or(-1), 0);
  EXPECT_THAT(help.Stdout(),
              AllOf(HasSubstr("--max-receive-message-bytes N"), HasSubstr("4194304"),
                    HasSubstr("--max-jobs N"), HasSubstr("(10000)"),
                    HasSubstr("--max-members-per-job N"), HasSubstr("(1000000)"),
                    HasSubstr("--keepalive-time DUR"), HasSubstr("--keepalive-timeout DUR"),
                    HasSubstr("--max-connection-idle DUR")));
}

}  // namespace
}  // namespace ms_rendezvous::testing
