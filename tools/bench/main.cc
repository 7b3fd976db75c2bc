// ms-rendezvous-bench: load generator for ms-rendezvousd.
//
//   ms-rendezvous-bench join --members N [--connections C] [--server HOST:PORT] [--job-id ID]
//                            [--topo-timeout-s S] [--named-nodes] [--warmup] [--repeat K]
//                            [--unary] [--daemon-pid PID] [--daemon PATH] [--daemon-arg ARG]...
//   ms-rendezvous-bench failure --members N [--connections C] [--disconnect-grace DUR] ...
//   ms-rendezvous-bench restart --members N [--connections C] [--processes P] ...
//   ms-rendezvous-bench kv --members N [--connections C] [--clients K] [--ops M]
//                          [--value-bytes B] [--depth D] [--waiters W] [--durable] ...
//   ms-rendezvous-bench heartbeat --members N [--connections C] [--interval DUR]
//                          [--duration DUR] [--node-timeout-s S] [--processes P]
//                          [--metrics HOST:PORT] ...
// (`heartbeat-worker` and `restart-worker` are the worker processes that `heartbeat
// --processes P` and `restart --processes P` start.)
//
// join: members join over Session streams (what the client library does); --unary uses one
// Join RPC each instead. failure and restart: see liveness_scenarios.h. kv: see kv_scenario.h.
// heartbeat: see heartbeat_scenario.h.
//
// Without --server it starts its own daemon (ms-rendezvousd next to this executable, on a free
// port) and stops it afterwards, so the daemon's CPU and RSS can be read from /proc. Prints a human
// table, then ONE JSON line (the machine-readable result). Exit 0 only when every member of every
// round got a distinct rank 0..N-1 and nothing failed; 1 when the run failed; 2 on usage errors.
//
// The channels are connected once; an optional warm-up round and the K measured rounds (each its
// own job) run over them, and every member stays joined until all rounds are done, then leaves.
//
// Memory figures (of the FIRST measured round, so "--warmup or not" decides what they describe):
//   before  = daemon VmRSS right before the round's first Join (channels READY; an earlier round
//             settled, its members still joined);
//   peak    = daemon VmHWM during the round (VmHWM is reset right after `before`);
//   settled = daemon VmRSS once every topology was delivered and RSS stopped changing, with the
//             members still joined: polled every 100 ms until two consecutive readings differ by
//             < 1% and >= 1.2 s passed (one period of the daemon's malloc_trim), or 3 s passed.
//   peak_rss_per_member_bytes     = (peak - before) / N: transient, mostly gRPC per-call state of
//                                   the parked Join calls;
//   retained_rss_per_member_bytes = (settled - before) / N: what the joined members keep (plus,
//                                   on a cold daemon, the pools its first storm grew);
//   rss_per_member_bytes          = the retained figure (kept under its historical name).
// Linux keeps RSS in per-CPU counters, so each reading is approximate to a few hundred KiB:
// per-member figures of small N carry that error divided by N.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "tools/bench/heartbeat_scenario.h"
#include "tools/bench/join_scenario.h"
#include "tools/bench/kv_scenario.h"
#include "tools/bench/liveness_scenarios.h"
#include "tools/bench/local_daemon.h"
#include "tools/common/flag_value.h"
#include "tools/common/json.h"
#include "tools/ctl/render.h"

namespace ms_rendezvous::bench {
namespace {

constexpr char kUsage[] =
    "usage: ms-rendezvous-bench join|failure|restart|kv|heartbeat --members N [options]\n"
    "\n"
    "scenarios:\n"
    "  join     N members join one job and wait for its topology, each over its own Session\n"
    "           stream (join, read the topology: what the client library does)\n"
    "  failure  N session members join; one member's stream is broken (as kill -9 of its\n"
    "           process would); measures detection (includes the daemon's disconnect grace)\n"
    "           and fan-out of the JOB_FAILED event to every survivor\n"
    "  restart  N session members join a daemon the bench starts with a temporary --state-dir;\n"
    "           the daemon is kill -9'd and restarted on the same port; every member resumes\n"
    "           (retrying with jittered backoff); measures kill -> all resumed, checks ranks\n"
    "           and generations are unchanged. --processes P splits the members over P\n"
    "           worker processes, so the bench's side of the reconnections is not one\n"
    "           process's event loop (the time is kill -> last member of any worker resumed)\n"
    "  kv       N session members join one job (untimed); K clients (members) Set M distinct\n"
    "           keys, then Get them, D calls in flight each: set/get ops/s and latency; then W\n"
    "           members park a blocking Get of one key and one member Sets it: time from the\n"
    "           Set call to the last waiter released, every waiter checked for the value\n"
    "  heartbeat N session members join one job, then each heartbeats on its session every\n"
    "           --interval for --duration, phases spread evenly (N / interval per second);\n"
    "           their node timeout is 3 x interval, so starved heartbeats become deaths.\n"
    "           Reports heartbeats sent and accepted (the daemon's own counter, read from its\n"
    "           metrics endpoint), the daemon's CPU share and false detections (must be 0)\n"
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
    "  --unary              join: one unary Join RPC per member instead of a Session stream\n"
    "  --node-timeout-s S   MS_NODE_TIMEOUT sent by the members (default 300: the other\n"
    "                       scenarios do not heartbeat, so it must outlast the run;\n"
    "                       heartbeat: 3 x --interval)\n"
    "  --disconnect-grace DUR  failure: the daemon's --disconnect-grace (e.g. 200ms); passed to\n"
    "                       the daemon the bench starts, and reported (default: the daemon's\n"
    "                       default, 2s)\n"
    "  --warmup             first run one untimed round of the same size (job ID-warmup), so\n"
    "                       the figures are those of a daemon that has served a storm before,\n"
    "                       without the first storm's gRPC pool growth\n"
    "  --repeat K           measured rounds, each with a fresh job id ID-r1..ID-rK (default 1);\n"
    "                       timing figures are the median round's (for even K the faster of the\n"
    "                       two middle ones), memory figures the first measured round's.\n"
    "                       Members of every round stay joined until the last round ended\n"
    "  --daemon-pid PID     pid of the daemon behind --server (same host), for CPU/RSS figures\n"
    "  --daemon PATH        daemon binary to start (default: ms-rendezvousd next to this binary)\n"
    "  --daemon-arg ARG     extra argument for the started daemon (repeatable)\n"
    "  --processes P        heartbeat, restart: split the members (and connections) over P\n"
    "                       worker processes (default 1: this one); heartbeat: 100,000\n"
    "                       sessions need about 10; restart: 10,000 members 2-4\n"
    "\n"
    "kv options:\n"
    "  --clients K          concurrent clients, each a member (default min(8, N))\n"
    "  --ops M              Sets (distinct keys), then as many Gets (default 10000)\n"
    "  --value-bytes B      value size (default 64)\n"
    "  --depth D            RPCs in flight per client (default 16)\n"
    "  --waiters W          members parking a Get of one key, W <= N (default N; 0: skip)\n"
    "  --durable            start the daemon with a temporary --state-dir (SQLite: Sets are\n"
    "                       durable, group-committed); --daemon-arg --state-dir=DIR works too\n"
    "\n"
    "heartbeat options:\n"
    "  --interval DUR       heartbeat interval of every member (default 5s)\n"
    "  --duration DUR       how long the members heartbeat after joining (default 30s)\n"
    "  --metrics HOST:PORT  the --server daemon's --metrics-listen endpoint, for the accepted\n"
    "                       heartbeats and the members it declared dead (the bench's own daemon\n"
    "                       is started with one)\n";

// File descriptors the bench needs beside one per connection: gRPC's epoll and wakeup fds,
// stdio, /proc reads. Generous, because running out mid-run shows up as confusing UNAVAILABLEs.
constexpr uint64_t kSpareFds = 128;

// "Settled" daemon RSS: polled every 100 ms until two readings differ by < 1%, at most this long.
constexpr absl::Duration kSettleMaxWait = absl::Seconds(3);
// After a storm, the daemon trims malloc from its deadline thread (which runs at least once a
// second) once >= 1000 Joins completed. An idle daemon's RSS is "stable" at once, so waiting for
// stability alone could read RSS before that trim; wait one trim period (plus margin) first.
constexpr absl::Duration kSettleMinWait = absl::Milliseconds(1200);

// One round of the join scenario with the daemon samples at its phase boundaries.
struct Round {
  std::string job_id;
  JoinResult run;
  ProcStats before;      // calls built, no Join sent yet (the previous round settled)
  ProcStats joined;      // every Join answered (for the CPU figure)
  SettledStats settled;  // RSS settled with the members still joined; peak_kib = the join phase's
  bool peak_reset = false;  // VmHWM was reset at `before`; else it is since daemon start
};

struct Args {
  std::string scenario;
  JoinOptions join;
  bool warmup = false;
  uint32_t repeat = 1;
  bool connections_set = false;
  std::optional<std::string> server;
  std::optional<pid_t> daemon_pid;
  std::string daemon_binary;
  std::vector<std::string> daemon_args;
  std::optional<absl::Duration> disconnect_grace;
  // kv
  KvOptions kv;
  bool clients_set = false;
  bool waiters_set = false;
  bool durable = false;
  // heartbeat
  absl::Duration interval = absl::Seconds(5);
  absl::Duration duration = absl::Seconds(30);
  bool node_timeout_set = false;
  bool heartbeat_option_set = false;
  std::string metrics;
  uint32_t processes = 1;
  bool processes_set = false;
  // heartbeat-worker, restart-worker
  uint32_t first = 0;
  uint32_t count = 0;
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
    if (arg == "--warmup") {
      args->warmup = true;
      continue;
    }
    if (arg == "--unary") {
      args->join.unary = true;
      continue;
    }
    if (arg == "--durable") {
      args->durable = true;
      continue;
    }
    std::string name, value;
    if (absl::Status s = tools::SplitValuedFlag(argc, argv, &i, &name, &value); !s.ok()) return s;
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
    } else if (name == "--repeat") {
      if (!absl::SimpleAtoi(value, &args->repeat) || args->repeat < 1 || args->repeat > 1000) {
        return bad("1..1000");
      }
    } else if (name == "--server") {
      if (value.empty()) return bad("HOST:PORT");
      args->server = value;
    } else if (name == "--job-id") {
      if (value.empty()) return bad("a job id");
      args->join.job_id = value;
    } else if (name == "--topo-timeout-s") {
      if (!absl::SimpleAtod(value, &args->join.topo_timeout_s)) return bad("seconds");
    } else if (name == "--node-timeout-s") {
      if (!absl::SimpleAtod(value, &args->join.node_timeout_s) || args->join.node_timeout_s <= 0) {
        return bad("seconds > 0");
      }
      args->node_timeout_set = true;
    } else if (name == "--interval" || name == "--duration") {
      absl::Duration d;
      if (!absl::ParseDuration(value, &d) || d < absl::Milliseconds(1) || d > absl::Hours(24)) {
        return bad("a duration such as 500ms or 5s (1ms..24h)");
      }
      (name == "--interval" ? args->interval : args->duration) = d;
      args->heartbeat_option_set = true;
    } else if (name == "--metrics") {
      if (value.empty()) return bad("HOST:PORT");
      args->metrics = value;
      args->heartbeat_option_set = true;
    } else if (name == "--processes") {
      if (!absl::SimpleAtoi(value, &args->processes) || args->processes < 1 ||
          args->processes > 256) {
        return bad("1..256");
      }
      args->processes_set = true;
    } else if (name == "--first") {
      if (!absl::SimpleAtoi(value, &args->first)) return bad("a member index");
    } else if (name == "--count") {
      if (!absl::SimpleAtoi(value, &args->count) || args->count < 1) return bad("a positive count");
    } else if (name == "--disconnect-grace") {
      absl::Duration grace;
      if (!absl::ParseDuration(value, &grace) || grace < absl::ZeroDuration()) {
        return bad("a duration such as 200ms or 2s");
      }
      args->disconnect_grace = grace;
    } else if (name == "--daemon-pid") {
      int pid = 0;
      if (!absl::SimpleAtoi(value, &pid) || pid <= 0) return bad("a process id");
      args->daemon_pid = pid;
    } else if (name == "--daemon") {
      args->daemon_binary = value;
    } else if (name == "--daemon-arg") {
      args->daemon_args.push_back(value);
    } else if (name == "--clients") {
      if (!absl::SimpleAtoi(value, &args->kv.clients) || args->kv.clients < 1) {
        return bad("a positive count");
      }
      args->clients_set = true;
    } else if (name == "--ops") {
      // The daemon's default --kv-max-keys-per-job is 1,000,000 (one key is the release key).
      if (!absl::SimpleAtoi(value, &args->kv.ops) || args->kv.ops > 999999) {
        return bad("0..999999");
      }
    } else if (name == "--value-bytes") {
      if (!absl::SimpleAtoi(value, &args->kv.value_bytes) || args->kv.value_bytes > 1048576) {
        return bad("0..1048576 (the daemon's default --kv-max-value-bytes)");
      }
    } else if (name == "--depth") {
      if (!absl::SimpleAtoi(value, &args->kv.depth) || args->kv.depth < 1 ||
          args->kv.depth > 10000) {
        return bad("1..10000");
      }
    } else if (name == "--waiters") {
      if (!absl::SimpleAtoi(value, &args->kv.waiters)) return bad("a count");
      args->waiters_set = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option ", name));
    }
  }
  if (args->scenario.empty()) {
    return absl::InvalidArgumentError("missing SCENARIO (join, failure, restart, kv, heartbeat)");
  }
  if (args->scenario != "join" && args->scenario != "failure" && args->scenario != "restart" &&
      args->scenario != "kv" && args->scenario != "heartbeat" &&
      args->scenario != "heartbeat-worker" && args->scenario != "restart-worker") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown scenario \"", args->scenario,
                     "\" (available: join, failure, restart, kv, heartbeat)"));
  }
  if (args->scenario == "heartbeat-worker" || args->scenario == "restart-worker") {
    // Started by `heartbeat|restart --processes P`, never by hand: only check what it relies on.
    if (!args->server || args->join.job_id.empty() || args->count == 0 ||
        uint64_t{args->first} + args->count > args->join.members) {
      return absl::InvalidArgumentError(absl::StrCat(
          args->scenario, " needs --server, --job-id, --members N and --first F --count K "
          "with F + K <= N (it is started by ", absl::StripSuffix(args->scenario, "-worker"),
          " --processes P)"));
    }
    if (!args->connections_set) args->join.connections = args->count;
    return absl::OkStatus();
  }
  if (args->scenario != "heartbeat" && args->heartbeat_option_set) {
    return absl::InvalidArgumentError("--interval, --duration and --metrics are heartbeat options");
  }
  if (args->scenario != "heartbeat" && args->scenario != "restart" && args->processes_set) {
    return absl::InvalidArgumentError("--processes is a heartbeat and restart option");
  }
  if (args->processes > args->join.members) {
    return absl::InvalidArgumentError(absl::StrCat("--processes ", args->processes,
                                                   " exceeds --members ", args->join.members));
  }
  if (args->scenario == "heartbeat" && !args->server && !args->metrics.empty()) {
    return absl::InvalidArgumentError(
        "--metrics names the endpoint of a --server daemon; the bench's own daemon gets one");
  }
  if (args->scenario != "kv" && (args->clients_set || args->waiters_set || args->durable)) {
    return absl::InvalidArgumentError("--clients, --waiters and --durable are kv options");
  }
  if (args->scenario == "kv") {
    if (!args->clients_set) args->kv.clients = std::min<uint32_t>(8, args->join.members);
    if (!args->waiters_set) args->kv.waiters = args->join.members;
    if (args->kv.clients > args->join.members) {
      return absl::InvalidArgumentError(absl::StrCat("--clients ", args->kv.clients,
                                                     " exceeds --members ", args->join.members,
                                                     " (every client is a member)"));
    }
    if (args->kv.waiters > args->join.members) {
      return absl::InvalidArgumentError(absl::StrCat("--waiters ", args->kv.waiters,
                                                     " exceeds --members ", args->join.members,
                                                     " (every waiter is a member)"));
    }
    if (args->durable && args->server) {
      return absl::InvalidArgumentError(
          "--durable starts the bench's own daemon with a state dir: not with --server");
    }
  }
  if (args->scenario != "join" && (args->warmup || args->repeat != 1 || args->join.unary)) {
    return absl::InvalidArgumentError("--warmup, --repeat and --unary are join options");
  }
  if (args->scenario == "failure" && args->join.members < 2) {
    return absl::InvalidArgumentError("failure needs --members >= 2 (one dies, others survive)");
  }
  if (args->scenario == "restart" && args->server) {
    return absl::InvalidArgumentError(
        "restart kills and restarts the daemon: it starts its own (no --server)");
  }
  // A grace given as --daemon-arg is the one in effect.
  for (size_t k = 0; k < args->daemon_args.size(); ++k) {
    absl::string_view a = args->daemon_args[k];
    std::string v;
    if (absl::ConsumePrefix(&a, "--disconnect-grace=")) {
      v = std::string(a);
    } else if (a == "--disconnect-grace" && k + 1 < args->daemon_args.size()) {
      v = args->daemon_args[k + 1];
    } else {
      continue;
    }
    absl::Duration grace;
    if (absl::ParseDuration(v, &grace)) args->disconnect_grace = grace;
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
// `fds_per_connection`: 2 for restart, where every connection is replaced at once and the old
// sockets are not all closed before the new ones open.
absl::Status RaiseFdLimit(uint64_t connections, uint64_t fds_per_connection) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return absl::InternalError("getrlimit failed");
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      return absl::InternalError("setrlimit(RLIMIT_NOFILE) failed");
    }
  }
  uint64_t needed = connections * fds_per_connection + kSpareFds;
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
  // While members reconnect after a restart, the process holding their connections holds each
  // twice over; with --processes P that is each worker with its share, beside the restarted
  // daemon, which holds every connection once. The busiest of them sets the limit.
  const bool restart = args.scenario == "restart";
  const bool reconnects = restart || args.scenario == "restart-worker";
  const uint64_t processes = restart ? args.processes : 1;
  auto restart_fds = [&](uint64_t connections) {
    return std::max(2 * ((connections + processes - 1) / processes), connections) + kSpareFds;
  };
  if (restart && !args.connections_set) {
    // Cap the default at what the fd limit allows (a real deployment has one process per
    // member).
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_max != RLIM_INFINITY &&
        limit.rlim_max > kSpareFds) {
      const uint64_t room = limit.rlim_max - kSpareFds;
      const uint64_t cap = std::min(room, room / 2 * processes);
      if (args.join.connections > cap) {
        LOG(WARNING) << "restart: " << args.join.connections << " connections would need "
                     << restart_fds(args.join.connections)
                     << " file descriptors in one process while reconnecting (hard limit "
                     << limit.rlim_max << "); using " << cap << " connections";
        args.join.connections = static_cast<uint32_t>(cap);
      }
    }
  }
  {
    absl::Status s = absl::OkStatus();
    if (!reconnects) {
      s = RaiseFdLimit(args.join.connections, 1);
    } else {
      // Each member process (this one, or each worker), then the daemon, which inherits the
      // limit from this process.
      s = RaiseFdLimit((args.join.connections + processes - 1) / processes, 2);
      if (s.ok() && processes > 1) s = RaiseFdLimit(args.join.connections, 1);
    }
    if (!s.ok()) return fail(s);
  }
  if (args.join.job_id.empty()) {
    args.join.job_id = absl::StrCat("bench-", getpid(), "-", absl::ToUnixSeconds(absl::Now()));
  }
  if (args.scenario == "heartbeat-worker") {
    HeartbeatOptions ho;
    ho.server = *args.server;
    ho.job_id = args.join.job_id;
    ho.members = args.join.members;
    ho.connections = args.join.connections;
    ho.topo_timeout_s = args.join.topo_timeout_s;
    ho.named_nodes = args.join.named_nodes;
    ho.interval = args.interval;
    if (args.node_timeout_set) ho.node_timeout_s = args.join.node_timeout_s;
    return RunHeartbeatWorker(ho, args.first, args.count);
  }
  if (args.scenario == "restart-worker") {
    LivenessOptions lo;
    lo.server = *args.server;
    lo.job_id = args.join.job_id;
    lo.members = args.join.members;
    lo.connections = args.join.connections;
    lo.topo_timeout_s = args.join.topo_timeout_s;
    lo.node_timeout_s = args.join.node_timeout_s;
    lo.named_nodes = args.join.named_nodes;
    return RunRestartWorker(lo, args.first, args.count);
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
    std::vector<std::string> daemon_args = args.daemon_args;
    if (args.disconnect_grace) {
      daemon_args.push_back(
          absl::StrCat("--disconnect-grace=", absl::FormatDuration(*args.disconnect_grace)));
    }
    absl::StatusOr<std::unique_ptr<LocalDaemon>> started =
        LocalDaemon::Start(binary, daemon_args, absl::Seconds(20),
                           /*state_dir=*/args.scenario == "restart" || args.durable,
                           /*metrics=*/args.scenario == "heartbeat");
    if (!started.ok()) return fail(started.status());
    daemon = std::move(*started);
    daemon_pid = daemon->pid();
    args.join.server = daemon->address();
    LOG(INFO) << "started " << binary << " (pid " << daemon->pid() << ") on " << daemon->address()
              << ", log " << daemon->log_path();
  }

  if (args.scenario == "kv") {
    KvOptions ko = args.kv;
    ko.server = args.join.server;
    ko.job_id = args.join.job_id;
    ko.members = args.join.members;
    ko.connections = args.join.connections;
    ko.topo_timeout_s = args.join.topo_timeout_s;
    ko.node_timeout_s = args.join.node_timeout_s;
    ko.named_nodes = args.join.named_nodes;
    ko.daemon_pid = daemon_pid;
    if (args.server) {
      ko.store = "unknown";
    } else {
      ko.store = args.durable ? "sqlite" : "memory";
      for (const std::string& a : args.daemon_args) {
        if (absl::StartsWith(a, "--state-dir")) ko.store = "sqlite";
      }
    }
    return RunKv(ko, daemon.get());
  }

  if (args.scenario == "heartbeat") {
    HeartbeatOptions ho;
    ho.server = args.join.server;
    ho.job_id = args.join.job_id;
    ho.members = args.join.members;
    ho.connections = args.join.connections;
    ho.topo_timeout_s = args.join.topo_timeout_s;
    ho.named_nodes = args.join.named_nodes;
    ho.interval = args.interval;
    ho.duration = args.duration;
    if (args.node_timeout_set) ho.node_timeout_s = args.join.node_timeout_s;
    ho.metrics = daemon ? daemon->metrics_address() : args.metrics;
    ho.daemon_pid = daemon_pid;
    ho.processes = args.processes;
    return RunHeartbeat(ho, daemon.get());
  }

  if (args.scenario != "join") {
    LivenessOptions lo;
    lo.server = args.join.server;
    lo.job_id = args.join.job_id;
    lo.members = args.join.members;
    lo.connections = args.join.connections;
    lo.topo_timeout_s = args.join.topo_timeout_s;
    lo.node_timeout_s = args.join.node_timeout_s;
    lo.named_nodes = args.join.named_nodes;
    if (args.disconnect_grace) lo.disconnect_grace = *args.disconnect_grace;
    lo.processes = args.processes;
    return args.scenario == "failure" ? RunFailure(lo, daemon.get())
                                      : RunRestart(lo, daemon.get());
  }

  // Daemon figures. A failed read (daemon elsewhere, or gone) just drops them; it does not fail
  // the run.
  bool have_stats = daemon_pid.has_value();
  auto drop_stats = [&](const absl::Status& s) {
    if (!have_stats) return;
    LOG(WARNING) << "no daemon figures: " << s.message();
    have_stats = false;
  };
  auto sample = [&](ProcStats* into) {
    if (!have_stats) return;
    absl::StatusOr<ProcStats> stats = ReadProcStats(*daemon_pid);
    if (!stats.ok()) return drop_stats(stats.status());
    *into = *stats;
  };
  auto settle = [&](absl::Duration min_wait, SettledStats* into) {
    if (!have_stats) return;
    absl::StatusOr<SettledStats> settled =
        WaitForRssToSettle(*daemon_pid, min_wait, kSettleMaxWait);
    if (!settled.ok()) return drop_stats(settled.status());
    if (into != nullptr) *into = *settled;
  };

  // Connect once: the warm-up and every round share these channels, and nobody leaves before the
  // end. Otherwise a round's baseline would hold memory the daemon freed (leaves, closed
  // connections) but had not handed back to the OS, and that round's post-storm malloc_trim would
  // return it too: the "retained" figure would come out low or negative.
  ProcStats idle, connected;
  settle(absl::ZeroDuration(), nullptr);
  sample(&idle);
  absl::StatusOr<std::unique_ptr<JoinBench>> bench = JoinBench::Connect(args.join);
  if (!bench.ok()) {
    if (daemon) daemon->KeepLogs();
    return fail(bench.status());
  }
  SettledStats connected_settled;
  settle(absl::ZeroDuration(), &connected_settled);
  connected = connected_settled.stats;

  // One round: join (timed), then let the daemon's RSS settle while the members are still joined.
  auto run_round = [&](const std::string& job_id, Round* round) {
    round->job_id = job_id;
    JoinHooks hooks;
    hooks.before_joins = [&] {
      sample(&round->before);
      if (!have_stats) return;
      // From here VmHWM is the peak of this round's join phase, not of the warm-up, an earlier
      // round or the connection setup.
      absl::Status reset = ResetPeakRss(*daemon_pid);
      round->peak_reset = reset.ok();
      if (!reset.ok()) {
        LOG(WARNING) << "cannot reset the daemon's VmHWM (" << reset.message()
                     << "); no peak-per-member figure";
      }
    };
    hooks.after_joins = [&] {
      sample(&round->joined);
      // Long enough for the daemon's post-storm malloc_trim (its deadline thread runs at least
      // once a second) to have happened, so "retained" is the membership, not freed call state.
      settle(kSettleMinWait, &round->settled);
    };
    round->run = (*bench)->Join(job_id, hooks);
  };

  std::vector<std::string> problems;
  auto collect_problems = [&](const std::string& what, const JoinResult& r) {
    for (const std::string& problem : r.problems) problems.push_back(absl::StrCat(what, problem));
  };
  const std::string base_job_id = args.join.job_id;
  if (args.warmup) {
    Round warm;
    run_round(absl::StrCat(base_job_id, "-warmup"), &warm);
    collect_problems("warm-up round: ", warm.run);
    LOG(INFO) << "warm-up round done in " << absl::StrFormat("%.3f s", warm.run.total_s);
  }
  std::vector<Round> rounds(args.repeat);
  for (uint32_t k = 0; k < args.repeat; ++k) {
    std::string job_id = args.repeat == 1 ? base_job_id : absl::StrCat(base_job_id, "-r", k + 1);
    run_round(job_id, &rounds[k]);
    collect_problems(args.repeat == 1 ? "" : absl::StrCat("round ", k + 1, ": "), rounds[k].run);
  }
  for (std::string& problem : (*bench)->LeaveAll()) problems.push_back(std::move(problem));
  double connect_s = (*bench)->connect_s();
  bench->reset();  // disconnect before stopping the daemon
  const JoinOptions& o = args.join;
  if (daemon) {
    // A daemon that cannot shut down cleanly after the run is a failure of the run too.
    if (absl::Status s = daemon->Stop(); !s.ok()) problems.push_back(std::string(s.message()));
  }

  // Timing: the median round (lower middle for even K: a real round, not an average).
  std::vector<size_t> order(rounds.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return rounds[a].run.total_s < rounds[b].run.total_s;
  });
  const size_t median_index = order[(order.size() - 1) / 2];
  const Round& med = rounds[median_index];
  const JoinResult& r = med.run;
  double joins_per_s = r.total_s > 0 ? static_cast<double>(r.ok) / r.total_s : 0;
  double daemon_cpu_s = med.joined.cpu_s - med.before.cpu_s;
  uint64_t connection_errors = 0, other_errors = 0, ok = 0;
  for (const Round& round : rounds) {
    connection_errors += round.run.connection_errors;
    other_errors += round.run.other_errors;
    ok += round.run.ok;
  }

  // Memory: the first measured round.
  auto per_member = [&](int64_t kib, int64_t base_kib) {
    return static_cast<double>(kib - base_kib) * 1024.0 / o.members;
  };
  auto peak_per_member = [&](const Round& round) {
    return round.peak_reset ? per_member(round.settled.stats.peak_kib, round.before.rss_kib)
                            : std::numeric_limits<double>::quiet_NaN();
  };
  auto retained_per_member = [&](const Round& round) {
    return per_member(round.settled.stats.rss_kib, round.before.rss_kib);
  };
  const Round& first = rounds[0];
  double rss_per_connection =
      static_cast<double>(connected.rss_kib - idle.rss_kib) * 1024.0 / o.connections;
  auto bytes = [](double b) {
    return std::isfinite(b) ? absl::StrFormat("%.0f B", b) : std::string("n/a");
  };

  ctl::Table table({"scenario", "join"});
  table.AddRow({"server", o.server});
  table.AddRow({"job", rounds.size() == 1 ? first.job_id
                                          : absl::StrCat(base_job_id, "-r1..r", rounds.size())});
  table.AddRow({"members", absl::StrCat(o.members)});
  table.AddRow({"connections", absl::StrCat(o.connections)});
  table.AddRow({"rpc", o.unary ? "unary Join" : "Session stream (join, read topology)"});
  table.AddRow({"mode", args.warmup ? absl::StrCat("warm: after 1 untimed warm-up round (job ",
                                                   base_job_id, "-warmup) on the same connections")
                                    : std::string("cold: no warm-up round")});
  table.AddRow({"connect (untimed)", absl::StrFormat("%.3f s", connect_s)});
  std::string per_round;
  for (size_t k = 0; k < rounds.size(); ++k) {
    absl::StrAppend(&per_round, k == 0 ? "" : " / ",
                    absl::StrFormat("%.3f", rounds[k].run.total_s));
  }
  if (rounds.size() == 1) {
    table.AddRow({"first join -> last topology", absl::StrFormat("%.3f s", r.total_s)});
  } else {
    table.AddRow({absl::StrCat("first join -> last topology (median of ", rounds.size(), ")"),
                  absl::StrFormat("%.3f s (round %d)", r.total_s, median_index + 1)});
    table.AddRow({"  each round", absl::StrCat(per_round, " s")});
  }
  table.AddRow({"joins/s", absl::StrFormat("%.0f", joins_per_s)});
  table.AddRow({"join latency p50 / p99 / max",
                absl::StrFormat("%.1f / %.1f / %.1f ms", r.p50_ms, r.p99_ms, r.max_ms)});
  table.AddRow({"joined ok", absl::StrCat(ok, " of ", uint64_t{o.members} * rounds.size())});
  table.AddRow({"connection errors", absl::StrCat(connection_errors)});
  table.AddRow({"other errors", absl::StrCat(other_errors)});
  table.AddRow({"bench cpu (timed phase)", absl::StrFormat("%.2f s", r.bench_cpu_s)});
  if (have_stats) {
    table.AddRow({"daemon cpu (timed phase)", absl::StrFormat("%.2f s", daemon_cpu_s)});
    table.AddRow({"memory figures of",
                  args.warmup ? "round 1 (after the warm-up)" : "round 1 (no warm-up before it)"});
    table.AddRow({"daemon rss idle / connected",
                  absl::StrFormat("%d / %d KiB", idle.rss_kib, connected.rss_kib)});
    table.AddRow({"daemon rss before / after joins / settled",
                  absl::StrFormat("%d / %d / %d KiB", first.before.rss_kib, first.joined.rss_kib,
                                  first.settled.stats.rss_kib)});
    table.AddRow(
        {"  settled after", absl::StrFormat("%.1f s%s", first.settled.waited_s,
                                            first.settled.stable ? " (stable within 1%)"
                                                                 : " (timeout: still changing)")});
    table.AddRow({"daemon peak rss (VmHWM, join phase)",
                  first.peak_reset ? absl::StrFormat("%d KiB", first.settled.stats.peak_kib)
                                   : absl::StrFormat("%d KiB (since daemon start)",
                                                     first.settled.stats.peak_kib)});
    table.AddRow({"daemon rss per connection", bytes(rss_per_connection)});
    table.AddRow({"peak rss per member (transient)", bytes(peak_per_member(first))});
    table.AddRow({"retained rss per member", bytes(retained_per_member(first))});
    if (rounds.size() > 1) {
      std::string peaks, retained;
      for (size_t k = 0; k < rounds.size(); ++k) {
        absl::StrAppend(&peaks, k == 0 ? "" : " / ", bytes(peak_per_member(rounds[k])));
        absl::StrAppend(&retained, k == 0 ? "" : " / ", bytes(retained_per_member(rounds[k])));
      }
      table.AddRow({"  peak per member, each round", peaks});
      table.AddRow({"  retained per member, each round", retained});
    }
  }
  table.AddRow({"result", problems.empty() ? "PASS" : "FAIL"});
  std::fputs(table.Render().c_str(), stdout);
  for (const std::string& problem : problems) {
    std::fprintf(stderr, "ms-rendezvous-bench: FAIL: %s\n", problem.c_str());
  }

  tools::JsonWriter w;
  w.BeginObject();
  w.Key("scenario").String("join");
  w.Key("members").Uint(o.members);
  w.Key("connections").Uint(o.connections);
  w.Key("warmup").Bool(args.warmup);
  w.Key("total_s").Double(r.total_s, 4);
  w.Key("rounds").BeginArray();
  for (const Round& round : rounds) w.Double(round.run.total_s, 4);
  w.EndArray();
  w.Key("joins_per_s").Double(joins_per_s, 1);
  w.Key("p50_ms").Double(r.p50_ms, 3);
  w.Key("p99_ms").Double(r.p99_ms, 3);
  w.Key("connection_errors").Uint(connection_errors);
  if (have_stats) {
    w.Key("daemon_cpu_s").Double(daemon_cpu_s, 2);
    w.Key("daemon_peak_rss_kib").Int(first.settled.stats.peak_kib);
    w.Key("rss_per_member_bytes").Double(retained_per_member(first), 0);
    w.Key("peak_rss_per_member_bytes").Double(peak_per_member(first), 0);
    w.Key("retained_rss_per_member_bytes").Double(retained_per_member(first), 0);
  }
  // Appended after the documented keys: which RPC carried the joins.
  w.Key("rpc").String(o.unary ? "unary" : "session");
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  std::fflush(stdout);
  if (daemon && !problems.empty()) daemon->KeepLogs();
  return problems.empty() ? 0 : 1;
}

}  // namespace
}  // namespace ms_rendezvous::bench

int main(int argc, char** argv) { return ms_rendezvous::bench::Main(argc, argv); }
