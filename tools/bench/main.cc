// ms-rendezvous-bench: load generator for ms-rendezvousd.
//
//   ms-rendezvous-bench join --members N [--connections C] [--server HOST:PORT] [--job-id ID]
//                            [--topo-timeout-s S] [--named-nodes] [--daemon-pid PID]
//                            [--daemon PATH] [--daemon-arg ARG]...
//
// Without --server it starts its own daemon (ms-rendezvousd next to this executable, on a free
// port) and stops it afterwards, so the daemon's CPU and RSS can be read from /proc. Prints a human
// table, then ONE JSON line (the machine-readable result). Exit 0 only when every member got a
// distinct rank 0..N-1 and nothing failed; 1 when the run failed; 2 on usage errors.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "tools/bench/join_scenario.h"
#include "tools/bench/local_daemon.h"
#include "tools/common/json.h"
#include "tools/ctl/render.h"

namespace ms_rendezvous::bench {
namespace {

constexpr char kUsage[] =
    "usage: ms-rendezvous-bench join --members N [options]\n"
    "\n"
    "N members join one job and wait for its topology (one Join RPC each).\n"
    "\n"
    "options:\n"
    "  --members N          members to join (default 1000)\n"
    "  --connections C      client channels (TCP connections), members spread over them\n"
    "                       round-robin (default N: one connection per member)\n"
    "  --server HOST:PORT   use a running daemon; default: start build/bin/ms-rendezvousd on a\n"
    "                       free port and stop it afterwards\n"
    "  --job-id ID          job to join (default bench-<pid>-<unix time>, fresh per run)\n"
    "  --topo-timeout-s S   MS_TOPO_TIMEOUT sent by the members (default 60)\n"
    "  --named-nodes        non-numeric node ids, so the daemon sorts members into ranks\n"
    "  --daemon-pid PID     pid of the daemon behind --server (same host), for CPU/RSS figures\n"
    "  --daemon PATH        daemon binary to start (default: ms-rendezvousd next to this binary)\n"
    "  --daemon-arg ARG     extra argument for the started daemon (repeatable)\n";

// File descriptors the bench needs beside one per connection: gRPC's epoll and wakeup fds,
// stdio, /proc reads. Generous, because running out mid-run shows up as confusing UNAVAILABLEs.
constexpr uint64_t kSpareFds = 128;

struct Args {
  std::string scenario;
  JoinOptions join;
  bool connections_set = false;
  std::optional<std::string> server;
  std::optional<pid_t> daemon_pid;
  std::string daemon_binary;
  std::vector<std::string> daemon_args;
};

absl::Status ParseArgs(int argc, char** argv, Args* args) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg.empty() || arg[0] != '-') {
      if (!args->scenario.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
      }
      args->scenario = std::string(arg);
      continue;
    }
    if (arg == "--named-nodes") {
      args->join.named_nodes = true;
      continue;
    }
    std::string name(arg), value;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      name = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
    }
    auto bad = [&](absl::string_view allowed) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " \"", value, "\" is invalid: expected ", allowed));
    };
    if (name == "--members") {
      if (!absl::SimpleAtoi(value, &args->join.members) || args->join.members < 1 ||
          args->join.members > 1000000) {
        return bad("1..1000000");
      }
    } else if (name == "--connections") {
      if (!absl::SimpleAtoi(value, &args->join.connections) || args->join.connections < 1) {
        return bad("a positive count");
      }
      args->connections_set = true;
    } else if (name == "--server") {
      if (value.empty()) return bad("HOST:PORT");
      args->server = value;
    } else if (name == "--job-id") {
      if (value.empty()) return bad("a job id");
      args->join.job_id = value;
    } else if (name == "--topo-timeout-s") {
      if (!absl::SimpleAtod(value, &args->join.topo_timeout_s)) return bad("seconds");
    } else if (name == "--daemon-pid") {
      int pid = 0;
      if (!absl::SimpleAtoi(value, &pid) || pid <= 0) return bad("a process id");
      args->daemon_pid = pid;
    } else if (name == "--daemon") {
      args->daemon_binary = value;
    } else if (name == "--daemon-arg") {
      args->daemon_args.push_back(value);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option ", name));
    }
  }
  if (args->scenario.empty()) return absl::InvalidArgumentError("missing SCENARIO (join)");
  if (args->scenario != "join") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown scenario \"", args->scenario, "\" (available: join)"));
  }
  if (!args->connections_set) args->join.connections = args->join.members;
  if (args->join.connections > args->join.members) {
    return absl::InvalidArgumentError(absl::StrCat("--connections ", args->join.connections,
                                                   " exceeds --members ", args->join.members));
  }
  if (args->daemon_pid && !args->server) {
    return absl::InvalidArgumentError("--daemon-pid needs --server (the daemon it belongs to)");
  }
  return absl::OkStatus();
}

// One connection per channel costs one fd here and one in the daemon (which inherits this
// limit when the bench starts it), so check up front instead of failing halfway with EMFILE.
absl::Status RaiseFdLimit(uint64_t connections) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return absl::InternalError("getrlimit failed");
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      return absl::InternalError("setrlimit(RLIMIT_NOFILE) failed");
    }
  }
  uint64_t needed = connections + kSpareFds;
  if (limit.rlim_cur != RLIM_INFINITY && needed > limit.rlim_cur) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "--connections ", connections, " needs about ", needed,
        " file descriptors, but the hard RLIMIT_NOFILE is ", limit.rlim_max,
        "; use fewer connections (members are multiplexed over them) or raise the limit "
        "(ulimit -Hn, LimitNOFILE=)"));
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  // Debian's abseil is built with Mutex deadlock detection on: every absl::Mutex (gRPC's included)
  // then maintains a global lock graph, which cost a quarter of the bench's CPU at 10k channels and
  // would be charged to "load generation" instead of the daemon.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  Args args;
  if (absl::Status s = ParseArgs(argc, argv, &args); !s.ok()) {
    std::fprintf(stderr, "ms-rendezvous-bench: %s\n%s", std::string(s.message()).c_str(), kUsage);
    return 2;
  }
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "ms-rendezvous-bench: %s: %s\n",
                 absl::StatusCodeToString(s.code()).c_str(), std::string(s.message()).c_str());
    return 1;
  };
  if (absl::Status s = RaiseFdLimit(args.join.connections); !s.ok()) return fail(s);
  if (args.join.job_id.empty()) {
    args.join.job_id = absl::StrCat("bench-", getpid(), "-", absl::ToUnixSeconds(absl::Now()));
  }

  std::unique_ptr<LocalDaemon> daemon;
  std::optional<pid_t> daemon_pid = args.daemon_pid;
  if (args.server) {
    args.join.server = *args.server;
  } else {
    std::string binary = args.daemon_binary;
    if (binary.empty()) {
      absl::StatusOr<std::string> dir = SelfDir();
      if (!dir.ok()) return fail(dir.status());
      binary = *dir + "/ms-rendezvousd";
    }
    absl::StatusOr<std::unique_ptr<LocalDaemon>> started =
        LocalDaemon::Start(binary, args.daemon_args, absl::Seconds(20));
    if (!started.ok()) return fail(started.status());
    daemon = std::move(*started);
    daemon_pid = daemon->pid();
    args.join.server = daemon->address();
    LOG(INFO) << "started " << binary << " (pid " << daemon->pid() << ") on " << daemon->address()
              << ", log " << daemon->log_path();
  }

  // Daemon samples at the phase boundaries. A failed read (daemon elsewhere, or gone) just drops
  // the daemon figures; it does not fail the run.
  ProcStats idle, connected, after;
  bool have_stats = daemon_pid.has_value();
  auto sample = [&](ProcStats* into) {
    if (!have_stats) return;
    absl::StatusOr<ProcStats> stats = ReadProcStats(*daemon_pid);
    if (!stats.ok()) {
      LOG(WARNING) << "no daemon figures: " << stats.status().message();
      have_stats = false;
      return;
    }
    *into = *stats;
  };
  JoinHooks hooks;
  hooks.before_connect = [&] { sample(&idle); };
  hooks.before_joins = [&] { sample(&connected); };
  hooks.after_joins = [&] { sample(&after); };

  absl::StatusOr<JoinResult> run = RunJoin(args.join, hooks);
  if (!run.ok()) {
    if (daemon) daemon->KeepLogs();
    return fail(run.status());
  }
  JoinResult& r = *run;
  const JoinOptions& o = args.join;
  if (daemon) {
    // A daemon that cannot shut down cleanly after the run is a failure of the run too.
    if (absl::Status s = daemon->Stop(); !s.ok()) r.problems.push_back(std::string(s.message()));
  }

  double joins_per_s = r.total_s > 0 ? static_cast<double>(r.ok) / r.total_s : 0;
  double daemon_cpu_s = after.cpu_s - connected.cpu_s;
  double rss_per_member =
      static_cast<double>(after.rss_kib - connected.rss_kib) * 1024.0 / o.members;
  double rss_per_connection =
      static_cast<double>(connected.rss_kib - idle.rss_kib) * 1024.0 / o.connections;

  ctl::Table table({"scenario", "join"});
  table.AddRow({"server", o.server});
  table.AddRow({"job", o.job_id});
  table.AddRow({"members", absl::StrCat(o.members)});
  table.AddRow({"connections", absl::StrCat(o.connections)});
  table.AddRow({"connect (untimed)", absl::StrFormat("%.3f s", r.connect_s)});
  table.AddRow({"first join -> last topology", absl::StrFormat("%.3f s", r.total_s)});
  table.AddRow({"joins/s", absl::StrFormat("%.0f", joins_per_s)});
  table.AddRow({"join latency p50 / p99 / max",
                absl::StrFormat("%.1f / %.1f / %.1f ms", r.p50_ms, r.p99_ms, r.max_ms)});
  table.AddRow({"joined ok", absl::StrCat(r.ok, " of ", o.members)});
  table.AddRow({"connection errors", absl::StrCat(r.connection_errors)});
  table.AddRow({"other errors", absl::StrCat(r.other_errors)});
  table.AddRow({"bench cpu (timed phase)", absl::StrFormat("%.2f s", r.bench_cpu_s)});
  if (have_stats) {
    table.AddRow({"daemon cpu (timed phase)", absl::StrFormat("%.2f s", daemon_cpu_s)});
    table.AddRow(
        {"daemon rss idle / connected / joined",
         absl::StrFormat("%d / %d / %d KiB", idle.rss_kib, connected.rss_kib, after.rss_kib)});
    table.AddRow({"daemon peak rss", absl::StrFormat("%d KiB", after.peak_kib)});
    table.AddRow({"daemon rss per connection", absl::StrFormat("%.0f B", rss_per_connection)});
    table.AddRow({"daemon rss per member", absl::StrFormat("%.0f B", rss_per_member)});
  }
  table.AddRow({"result", r.problems.empty() ? "PASS" : "FAIL"});
  std::fputs(table.Render().c_str(), stdout);
  for (const std::string& problem : r.problems) {
    std::fprintf(stderr, "ms-rendezvous-bench: FAIL: %s\n", problem.c_str());
  }

  tools::JsonWriter w;
  w.BeginObject();
  w.Key("scenario").String("join");
  w.Key("members").Uint(o.members);
  w.Key("connections").Uint(o.connections);
  w.Key("total_s").Double(r.total_s, 4);
  w.Key("joins_per_s").Double(joins_per_s, 1);
  w.Key("p50_ms").Double(r.p50_ms, 3);
  w.Key("p99_ms").Double(r.p99_ms, 3);
  w.Key("connection_errors").Uint(r.connection_errors);
  if (have_stats) {
    w.Key("daemon_cpu_s").Double(daemon_cpu_s, 2);
    w.Key("daemon_peak_rss_kib").Int(after.peak_kib);
    w.Key("rss_per_member_bytes").Double(rss_per_member, 0);
  }
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  std::fflush(stdout);
  if (daemon && !r.problems.empty()) daemon->KeepLogs();
  return r.problems.empty() ? 0 : 1;
}

}  // namespace
}  // namespace ms_rendezvous::bench

int main(int argc, char** argv) { return ms_rendezvous::bench::Main(argc, argv); }
