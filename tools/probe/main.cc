// ms-rendezvous-probe: joins the job described by the MindSpore environment and prints where this
// process landed, as one JSON line on stdout:
//
//   {"job_id":..,"role":"MS_WORKER","node_id":..,"rank":..,"world_size":..,"local_rank":..,
//    "local_world_size":..,"node_rank":..,"num_nodes":..,"host":..,"generation":..}
//
// --hold SECONDS keeps the session (heartbeats, reconnects) before leaving and prints one more
// JSON line per job event seen meanwhile, e.g. {"event":"member_left","node_id":..,"rank":..,
// "job_state":..}. Pushed on the session:
//   {"event":"job_failed","job_id":..,"dead":[{"rank":..,"node_id":..,"host":..,"reason":..,
//    "last_seen_s_ago":..}],"message":..}            then exit 3 at once
//   {"event":"member_dead",...} / {"event":"member_recovered",...}   (MS_ENABLE_RECOVERY=1)
//   {"event":"resumed","rank":..,"generation":..}   after a transparent reconnect
//   {"event":"session_lost","job_id":..,"message":..}   resume refused etc.; exit 3
// --env prints KEY=VALUE lines for the launched process instead of the JSON line, MASTER_ADDR
// (rank 0's host, from the member table) and MASTER_PORT (--master-port, default MS_SCHED_PORT+1)
// included.
// With MS_ROLE=MS_SCHED it runs the embedded scheduler until the job ends.
// The startup method is detected by ms_rendezvous::Init() (init.h): dynamic cluster (MS_ROLE),
// OpenMPI (mpirun; joins MS_SCHED_HOST when set) or a rank table (RANK_TABLE_FILE + RANK_ID);
// without a daemon "generation" is 0 and --hold is ignored.
//
// --allreduce runs a Gloo allreduce through the job KV after joining and prints one more line
// {"check":"allreduce","ok":true|false,"result":[..],"expected":[..]} (tools/probe/allreduce.h).
//
// Exit codes: 0 success, 2 usage or environment error, 3 rendezvous error (the job failed, the
// daemon rejected us, timeout, unreachable), 4 the --allreduce check was wrong or Gloo failed. Errors go to stderr as
// "ms-rendezvous-probe: <CODE>: <message>".
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "ms_rendezvous/client.h"
#include "ms_rendezvous/init.h"
#include "ms_rendezvous/options.h"
#include "ms_rendezvous/scheduler.h"
#include "ms_rendezvous/topology_export.h"
#include "tools/probe/allreduce.h"
#include "tools/probe/json.h"

namespace ms_rendezvous::probe {
namespace {

constexpr char kProg[] = "ms-rendezvous-probe";
constexpr int kExitUsage = 2;
constexpr int kExitRendezvous = 3;

constexpr char kUsage[] =
    "usage: ms-rendezvous-probe [--hold SECONDS] [--env [--master-port P]] [--allreduce]\n"
    "\n"
    "Joins the job described by the MindSpore environment (MS_ROLE, MS_SCHED_HOST,\n"
    "MS_SCHED_PORT, MS_WORKER_NUM, MS_SERVER_NUM, MS_NODE_ID, MS_WORKER_IP, DEVICE_ID,\n"
    "MS_DEVICE_IP, MS_JOB_ID, MS_TOPO_TIMEOUT, ...) and prints this process's topology as one JSON line.\n"
    "With MS_ROLE=MS_SCHED it runs an embedded scheduler on MS_SCHED_PORT until the job ends.\n"
    "Also started by mpirun (OMPI_COMM_WORLD_*; joins MS_SCHED_HOST as the MPI rank when set)\n"
    "or from an HCCL rank table (RANK_TABLE_FILE + RANK_ID [+ DEVICE_ID, RANK_SIZE]): no daemon,\n"
    "\"generation\" 0, --hold ignored, --allreduce unavailable.\n"
    "\n"
    "  --hold SECONDS  keep the session (heartbeats, transparent reconnects) this long before\n"
    "                  leaving; print one JSON line per job event seen meanwhile:\n"
    "                    "
    "{\"event\":\"job_failed\",\"job_id\":..,\"dead\":[{\"rank\",\"node_id\",\"host\",\n"
    "                     \"reason\",\"last_seen_s_ago\"}],\"message\":..}  -> exit 3 at once\n"
    "                    {\"event\":\"member_dead\"|\"member_recovered\",...}  "
    "(MS_ENABLE_RECOVERY=1)\n"
    "                    {\"event\":\"resumed\",\"rank\":..,\"generation\":..}  reconnected, same "
    "rank\n"
    "                    {\"event\":\"session_lost\",\"message\":..}  resume refused -> exit 3\n"
    "                    {\"event\":\"member_left\",...} and other job events (informational)\n"
    "  --env           print KEY=VALUE lines for the launched process instead of JSON:\n"
    "                  MS_JOB_ID, MS_ROLE, MS_NODE_ID, MS_WORKER_NUM, MS_SERVER_NUM,\n"
    "                  RANK_ID, RANK_SIZE, DEVICE_ID (DEVICE_ID if set, else the local rank),\n"
    "                  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, NODE_RANK,\n"
    "                  MASTER_ADDR, MASTER_PORT, NUM_NODES, MS_RENDEZVOUS_HOST,\n"
    "                  MS_RENDEZVOUS_GENERATION. MASTER_ADDR = the host address of rank 0 of\n"
    "                  this role (read from the job's member table after the join)\n"
    "  --master-port P MASTER_PORT for --env (1..65535). Default: MS_SCHED_PORT + 1 (65534\n"
    "                  when MS_SCHED_PORT is 65535); the port must be free on rank 0's host\n"
    "\n"
    "Environment for liveness: MS_NODE_TIMEOUT (s, negative = never), MS_ENABLE_RECOVERY=0|1,\n"
    "MS_DISABLE_HEARTBEAT=1, MS_RETRY_INTERVAL_LOWER/UPPER (s); MS_SCHED_HOST may be a list\n"
    "a,b:port,[v6]:port tried in turn.\n"
    "\n"
    "  --allreduce     after joining, build a Gloo full-mesh context over TCP (the member's\n"
    "                  MS_WORKER_IP when it is a local address, else 127.0.0.1) through the\n"
    "                  job's KV store, allreduce (sum) element i = rank*100 + i (length 8)\n"
    "                  and print {\"check\":\"allreduce\",\"ok\":..,\"result\":[..],\"expected\":[..]}\n"
    "\n"
    "Exit status: 0 ok, 2 usage/environment error, 3 rendezvous error (also: the job failed or\n"
    "the session was lost while holding), 4 the --allreduce result was wrong or Gloo failed.\n";

struct Args {
  absl::Duration hold = absl::ZeroDuration();
  bool env = false;
  bool allreduce = false;
  int master_port = 0;  // 0: MS_SCHED_PORT + 1
  bool help = false;
};

std::atomic<bool> g_interrupted{false};

void OnSignal(int) { g_interrupted.store(true); }

int Fail(int code, const absl::Status& status) {
  std::cerr << kProg << ": " << absl::StatusCodeToString(status.code()) << ": " << status.message()
            << std::endl;
  return code;
}

absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      args.help = true;
    } else if (arg == "--env") {
      args.env = true;
    } else if (arg == "--allreduce") {
      args.allreduce = true;
    } else if (arg == "--master-port" || absl::StartsWith(arg, "--master-port=")) {
      std::string value;
      if (arg == "--master-port") {
        if (i + 1 >= argc) return absl::InvalidArgumentError("--master-port needs a port");
        value = argv[++i];
      } else {
        value = arg.substr(strlen("--master-port="));
      }
      int port = 0;
      if (!absl::SimpleAtoi(value, &port) || port < 1 || port > 65535) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--master-port \"", value, "\" is not a valid port: expected an integer in 1..65535"));
      }
      args.master_port = port;
    } else if (arg == "--hold" || absl::StartsWith(arg, "--hold=")) {
      std::string value;
      if (arg == "--hold") {
        if (i + 1 >= argc) return absl::InvalidArgumentError("--hold needs a value in seconds");
        value = argv[++i];
      } else {
        value = arg.substr(strlen("--hold="));
      }
      double seconds = 0;
      if (!absl::SimpleAtod(value, &seconds) || !(seconds >= 0) || seconds > 1e9) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--hold \"", value, "\" is not a valid duration: expected a number of seconds >= 0"));
      }
      args.hold = absl::Seconds(seconds);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown argument \"", arg, "\" (see --help)"));
    }
  }
  return args;
}

std::string TopologyJson(const Topology& t) {
  return JsonObject()
      .Add("job_id", t.job_id)
      .Add("role", RoleName(t.role))
      .Add("node_id", t.node_id)
      .Add("rank", t.rank)
      .Add("world_size", t.world_size)
      .Add("local_rank", t.local_rank)
      .Add("local_world_size", t.local_world_size)
      .Add("node_rank", t.node_rank)
      .Add("num_nodes", t.num_nodes)
      .Add("host", t.host)
      .Add("generation", t.generation)
      .str();
}

std::string EventJson(const JobEvent& e) {
  JsonObject json;
  json.Add("event", JobEventTypeName(e.type)).Add("seq", e.seq);
  if (e.member.has_value()) {
    json.Add("node_id", e.member->node_id).Add("role", RoleName(e.member->role));
    if (e.member->rank.has_value()) {
      json.Add("rank", *e.member->rank);
    } else {
      json.AddNull("rank");
    }
  }
  json.Add("job_state", JobStateName(e.job_state)).Add("generation", e.generation);
  if (!e.message.empty()) json.Add("message", e.message);
  return json.str();
}

std::string DeadJson(const std::vector<DeadMember>& dead) {
  std::string out = "[";
  for (size_t i = 0; i < dead.size(); ++i) {
    const DeadMember& d = dead[i];
    JsonObject json;
    if (d.rank.has_value()) {
      json.Add("rank", *d.rank);
    } else {
      json.AddNull("rank");
    }
    json.Add("role", RoleName(d.role))
        .Add("node_id", d.node_id)
        .Add("host", d.host)
        .Add("reason", d.reason)
        .Add("last_seen_s_ago", d.last_seen_s_ago);
    absl::StrAppend(&out, i ? "," : "", json.str());
  }
  return out + "]";
}

std::string SessionEventJson(const SessionEvent& e) {
  JsonObject json;
  json.Add("event", SessionEventTypeName(e.type)).Add("job_id", e.job_id);
  switch (e.type) {
    case SessionEventType::kResumed:
      if (e.topology.has_value()) {
        json.Add("rank", e.topology->rank).Add("generation", e.topology->generation);
      }
      break;
    case SessionEventType::kMemberDead:
    case SessionEventType::kMemberRecovered:
      if (e.member.has_value()) {
        json.Add("node_id", e.member->node_id).Add("role", RoleName(e.member->role));
        if (e.member->rank.has_value()) {
          json.Add("rank", *e.member->rank);
        } else {
          json.AddNull("rank");
        }
        json.Add("host", e.member->host);
      }
      json.Add("job_state", JobStateName(e.job_state)).Add("generation", e.generation);
      if (e.type == SessionEventType::kMemberDead) json.AddRaw("dead", DeadJson(e.dead));
      break;
    case SessionEventType::kJobFailed:
      json.AddRaw("dead", DeadJson(e.dead));
      break;
    case SessionEventType::kSessionLost:
      break;
  }
  json.Add("message", e.status.ok() ? e.message : std::string(e.status.message()));
  return json.str();
}

// Single-quotes a value for sh when it holds anything beyond a conservative safe set.
std::string ShellQuote(absl::string_view value) {
  bool safe = !value.empty();
  for (char c : value) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        !absl::StrContains("._-:/@%+,=", c)) {
      safe = false;
      break;
    }
  }
  if (safe) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  out += "'";
  return out;
}

// The environment a launcher exports for the training process: the job identity, then
// topology_export.h's LaunchEnv (MindSpore's RANK_ID, RANK_SIZE, DEVICE_ID and the
// torch.distributed names with MASTER_ADDR/MASTER_PORT), then extras.
std::vector<std::pair<std::string, std::string>> ProbeEnv(const Topology& t,
                                                          const std::string& master_addr,
                                                          int master_port, int32_t device_id) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"MS_JOB_ID", t.job_id},
      {"MS_ROLE", std::string(RoleName(t.role))},
      {"MS_NODE_ID", t.node_id},
      {"MS_WORKER_NUM", absl::StrCat(t.worker_num)},
      {"MS_SERVER_NUM", absl::StrCat(t.server_num)},
  };
  for (auto& kv : LaunchEnv(t, master_addr, master_port, device_id)) env.push_back(std::move(kv));
  env.push_back({"NUM_NODES", absl::StrCat(t.num_nodes)});
  env.push_back({"MS_RENDEZVOUS_HOST", t.host});
  env.push_back({"MS_RENDEZVOUS_GENERATION", absl::StrCat(t.generation)});
  return env;
}

int ServeAsScheduler(const ClientOptions& options) {
  SchedulerHooks hooks;
  hooks.on_listening = [&](const std::string& address) {
    std::cerr << kProg << ": embedded scheduler for job " << options.job_id << " listening on "
              << SchedulerListenAddress(options) << std::endl;
  };
  absl::Status status = ms_rendezvous::RunScheduler(options, hooks);
  if (!status.ok()) {
    return Fail(absl::IsInvalidArgument(status) ? kExitUsage : kExitRendezvous, status);
  }
  std::cout << JsonObject()
                   .Add("job_id", options.job_id)
                   .Add("role", RoleName(Role::kScheduler))
                   .Add("job_state", JobStateName(JobState::kFinished))
                   .str()
            << std::endl;
  return 0;
}

int Main(int argc, char** argv) {
  absl::StatusOr<Args> args = ParseArgs(argc, argv);
  if (!args.ok()) {
    std::cerr << kUsage;
    return Fail(kExitUsage, args.status());
  }
  if (args->help) {
    std::cout << kUsage;
    return 0;
  }
  if (args->allreduce && !AllreduceAvailable()) {
    return Fail(kExitUsage, absl::FailedPreconditionError(
                                "--allreduce needs Gloo: this probe was built without libgloo-dev"));
  }
  // --hold/--env are ignored for the scheduler so that one launch line serves every role.
  if (std::optional<std::string> role = ProcessEnv()("MS_ROLE"); role == "MS_SCHED") {
    absl::StatusOr<ClientOptions> options = ClientOptionsFromEnv();
    if (!options.ok()) return Fail(kExitUsage, options.status());
    return ServeAsScheduler(*options);
  }

  // Dynamic cluster, OpenMPI (with or without a daemon) or rank table: see init.h.
  absl::StatusOr<InitResult> init = Init();
  if (!init.ok()) {
    return Fail(absl::IsInvalidArgument(init.status()) ? kExitUsage : kExitRendezvous,
                init.status());
  }
  const ClientOptions* options = &init->options;
  const Topology* topology = &init->topology;
  Client* client = init->client.get();  // nullptr without a daemon
  if (client == nullptr && args->allreduce) {
    return Fail(kExitUsage,
                absl::FailedPreconditionError(absl::StrCat(
                    "--allreduce needs the job KV store of a daemon, but this process was started "
                    "by ",
                    InitMethodName(init->method), " without one: set MS_SCHED_HOST")));
  }

  if (args->env) {
    // MASTER_ADDR: rank 0 of this role, from the member table (the topology names only us); a
    // rank table names it too; a single-node job without a daemon is its own master.
    absl::StatusOr<std::string> master = init->master_addr;
    if (client != nullptr) {
      absl::StatusOr<std::vector<MemberInfo>> members = client->Members();
      if (!members.ok()) return Fail(kExitRendezvous, members.status());
      master = RankHost(*members, topology->role, 0);
      if (!master.ok()) return Fail(kExitRendezvous, master.status());
    } else if (master->empty()) {
      if (topology->num_nodes != 1) {
        return Fail(kExitUsage, absl::FailedPreconditionError(
                                    "--env: rank 0's host is unknown without a daemon on more "
                                    "than one node: set MS_SCHED_HOST"));
      }
      master = topology->host;
    }
    const int master_port = args->master_port != 0 ? args->master_port
                            : options->sched_port < 65535 ? options->sched_port + 1
                                                          : 65534;
    for (const auto& [key, value] :
         ProbeEnv(*topology, *master, master_port, options->device_id)) {
      std::cout << key << "=" << ShellQuote(value) << "\n";
    }
    std::cout << std::flush;
  } else {
    std::cout << TopologyJson(*topology) << std::endl;
  }

  if (args->allreduce) {
    // Gloo full mesh over the job KV, sum allreduce of a known vector; one more JSON line.
    const absl::Duration timeout = options->topo_timeout == absl::InfiniteDuration()
                                       ? absl::Minutes(30)
                                       : options->topo_timeout;
    const int rc = RunAllreduceCheck(*client, *topology, timeout, std::cout);
    if (rc != 0) {
      // The collective failed or is wrong: tell the others (they fail fast) and stop here.
      if (absl::Status s = client->SessionStatus(); !s.ok()) return Fail(kExitRendezvous, s);
      client->ReportError("ms-rendezvous-probe --allreduce failed").IgnoreError();
      return rc;
    }
  }

  // Without a daemon there is no session to hold or leave.
  if (client == nullptr) return 0;

  absl::Status failure;
  if (args->hold > absl::ZeroDuration()) {
    absl::Mutex out_mu;  // event lines come from the session thread and the watch thread
    absl::Notification session_failed;
    // Pushed on the session: failure fan-out, recovery events, transparent reconnects.
    client->SetEventCallback([&](const SessionEvent& event) {
      {
        absl::MutexLock l(&out_mu);
        std::cout << SessionEventJson(event) << std::endl;
      }
      if ((event.type == SessionEventType::kJobFailed ||
           event.type == SessionEventType::kSessionLost) &&
          !session_failed.HasBeenNotified()) {
        session_failed.Notify();
      }
    });
    // The rest of the job's history (members joining, leaving, suspected), for humans.
    absl::StatusOr<std::unique_ptr<JobWatch>> watch = client->Watch([&](const JobEvent& event) {
      switch (event.type) {
        case JobEventType::kSnapshot:
        case JobEventType::kJobFailed:        // pushed on the session (with the dead)
        case JobEventType::kMemberDead:       // idem
        case JobEventType::kMemberRecovered:  // idem
          return;
        default:
          break;
      }
      absl::MutexLock l(&out_mu);
      std::cout << EventJson(event) << std::endl;
    });
    if (!watch.ok()) {
      std::cerr << kProg << ": warning: cannot watch job events: " << watch.status() << std::endl;
    }
    // Sleep in short slices so SIGINT/SIGTERM end the hold early with a clean Leave. Only here:
    // elsewhere (e.g. blocked in Join) the default action must still terminate the probe.
    struct sigaction sa = {};
    sa.sa_handler = OnSignal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    const absl::Time end = absl::Now() + args->hold;
    while (absl::Now() < end && !g_interrupted.load()) {
      if (session_failed.WaitForNotificationWithTimeout(
              std::min(absl::Milliseconds(100), end - absl::Now()))) {
        break;
      }
    }
    if (absl::Status s = client->SessionStatus(); !s.ok()) failure = s;
    if (!failure.ok()) {
      // Exit at once: the job is gone, a watch or a leave would only delay the verdict.
      std::cout << std::flush;
      std::cerr << kProg << ": " << absl::StatusCodeToString(failure.code()) << ": "
                << failure.message() << std::endl;
      std::_Exit(kExitRendezvous);
    }
    if (watch.ok()) (*watch)->Stop().IgnoreError();
  }
  if (!failure.ok()) return Fail(kExitRendezvous, failure);
  if (absl::Status s = client->Leave(); !s.ok()) return Fail(kExitRendezvous, s);
  return 0;
}

}  // namespace
}  // namespace ms_rendezvous::probe

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  // stdout carries the machine-readable lines; library chatter below WARNING stays off unless
  // asked for with GLOG_minloglevel.
  if (std::getenv("GLOG_minloglevel") == nullptr) FLAGS_minloglevel = google::GLOG_WARNING;
  return ms_rendezvous::probe::Main(argc, argv);
}
