// ms-rendezvous-run: the launcher of a MindSpore-style job (the msrun / torchrun role).
//
//   ms-rendezvous-run [flags] -- PROGRAM ARGS...
//
// On every node it spawns --local-worker-num copies of PROGRAM with the environment contract set
// (client/include/ms_rendezvous/options.h), one log file per worker, and supervises them: the
// first worker that fails makes it stop all the others and exit non-zero with a summary naming
// the failure. On the master node (--master-addr is an address of this host) it also serves the
// job in-process with the same server library as ms-rendezvousd (server/server.h), unless
// MS_SCHED_HOST is already set (an ms-rendezvousd daemon is in use) or --join is given.
//
// Process model:
//   * each worker is the leader of its own process group (signals reach its children too) and
//     has PR_SET_PDEATHSIG=SIGKILL, so it dies with the launcher even when the launcher is
//     SIGKILLed. Workers are forked from the main thread, which lives until exit (the death
//     signal is tied to the forking thread). Grandchildren that leave the worker's process group
//     are out of reach, as with every launcher.
//   * SIGINT, SIGTERM and SIGHUP are blocked in every thread and taken with sigtimedwait() in the
//     main loop, together with SIGCHLD, so a worker exit is seen within microseconds.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/job_registry.h"
#include "core/types.h"
#include "glog/logging.h"
#include "server/server.h"

extern char** environ;

namespace ms_rendezvous::run {
namespace {

constexpr char kProg[] = "ms-rendezvous-run";

// Exit codes.
constexpr int kExitOk = 0;
constexpr int kExitWorkerFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitSetup = 3;

// After the first worker failure: SIGTERM to the others, SIGKILL after this grace.
constexpr absl::Duration kFailureKillGrace = absl::Milliseconds(500);
// After SIGINT/SIGTERM/SIGHUP was forwarded: SIGKILL after this grace (a second signal to the
// launcher kills at once).
constexpr absl::Duration kSignalKillGrace = absl::Seconds(5);

constexpr int kMaxWorkerNum = 1000000;
constexpr int kMaxTimeoutSeconds = 365 * 24 * 3600;

constexpr char kUsage[] =
    "usage: ms-rendezvous-run [--worker-num N] [--local-worker-num L] [--master-addr A]\n"
    "                         [--master-port P] [--node-rank R] [--job-id ID] [--log-dir DIR]\n"
    "                         [--join] [--cluster-time-out S] -- PROGRAM [ARGS...]\n"
    "\n"
    "Starts L local workers of a job of N workers (the msrun / torchrun role). Each worker gets\n"
    "MS_ROLE=MS_WORKER, MS_WORKER_NUM=N, RANK_SIZE=N, MS_SCHED_HOST=A, MS_SCHED_PORT=P,\n"
    "MS_JOB_ID=ID, MS_TOPO_TIMEOUT=S, DEVICE_ID=<local index 0..L-1> and, when R >= 0,\n"
    "MS_NODE_ID=R*L+index (its rank); its stdout and stderr go to DIR/worker_<index>.log.\n"
    "\n"
    "When A is an address of this host (a loopback address, or one listed by getifaddrs), the\n"
    "scheduler is served in-process on A:P (the ms-rendezvousd server library) until the workers\n"
    "are done; not when MS_SCHED_HOST is already set in the environment (the workers then use\n"
    "that daemon: MS_SCHED_HOST/MS_SCHED_PORT are passed through and --master-addr/--master-port\n"
    "are ignored) or with --join (only spawn workers; the scheduler runs elsewhere).\n"
    "\n"
    "As soon as a worker exits non-zero or is killed by a signal, the others get SIGTERM, then\n"
    "SIGKILL 500 ms later, and the launcher exits 1 with a summary naming the failed worker(s),\n"
    "their exit codes or signals and log files. SIGINT/SIGTERM/SIGHUP are forwarded to every\n"
    "worker (SIGKILL 5 s later, or at once on a second signal). Workers die with the launcher.\n"
    "\n"
    "  --worker-num N        workers in the whole job, 1..1000000 (default 8)\n"
    "  --local-worker-num L  workers on this node, 1..N (default N)\n"
    "  --master-addr A       scheduler host: IPv4/IPv6 literal or host name (default 127.0.0.1)\n"
    "  --master-port P       scheduler port, 1..65535 (default 8118); 0 = pick a free port, only\n"
    "                        for a single-node job (L = N) served by the embedded scheduler\n"
    "  --node-rank R         -1 = ranks assigned by the scheduler (default), or 0..N/L-1: this\n"
    "                        node's workers get MS_NODE_ID (= rank) R*L+index\n"
    "  --job-id ID           1..128 of [A-Za-z0-9._:-] (default $MS_JOB_ID, else \"default\")\n"
    "  --log-dir DIR         where worker_<index>.log go (default ./ms_rendezvous_logs; created)\n"
    "  --join                only spawn the workers, never start a scheduler here\n"
    "  --cluster-time-out S  seconds the job may take to form, 1..31536000, or -1 = forever\n"
    "                        (default 600; exported as MS_TOPO_TIMEOUT)\n"
    "\n"
    "Exit codes: 0 every worker succeeded, 1 a worker failed, 2 usage error, 3 setup error\n"
    "(log directory, PROGRAM not executable, scheduler port), 128+N interrupted by signal N.\n";

struct Flags {
  int worker_num = 8;
  int local_worker_num = -1;  // -1: = worker_num
  std::string master_addr = "127.0.0.1";
  int master_port = 8118;
  int node_rank = -1;
  std::string job_id;  // empty: $MS_JOB_ID, else "default"
  std::string log_dir = "ms_rendezvous_logs";
  bool join = false;
  int cluster_time_out = 600;
  std::vector<std::string> program;
  bool master_addr_set = false;
  bool master_port_set = false;
};

std::optional<std::string> GetEnv(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

bool ParseInt(const std::string& name, const std::string& value, int lo, int hi,
              const std::string& allowed, int* out, std::string* error) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(value, &v) || v < lo || v > hi) {
    *error = absl::StrCat("--", name, "=\"", value, "\" is invalid: expected ", allowed);
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

bool ValidJobId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != ':' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

// Parses and validates argv. Returns false with *error set; exits 0 on --help.
bool ParseFlags(int argc, char** argv, Flags* f, std::string* error) {
  std::string worker_num_text, local_text, port_text, node_rank_text, timeout_text;
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(kExitOk);
    }
    if (arg.rfind("--", 0) != 0) break;  // PROGRAM without a "--" separator
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "join") {
      if (!has_value || value == "true" || value == "1") {
        f->join = true;
      } else if (value == "false" || value == "0") {
        f->join = false;
      } else {
        *error = absl::StrCat("--join=\"", value, "\" is invalid: expected true or false");
        return false;
      }
      continue;
    }
    static const std::set<std::string> kValued = {
        "worker-num", "local-worker-num", "master-addr", "master-port",     "node-rank",
        "job-id",     "log-dir",          "cluster-time-out"};
    if (kValued.count(name) == 0) {
      *error = absl::StrCat("unknown flag --", name);
      return false;
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        *error = absl::StrCat("flag --", name, " needs a value");
        return false;
      }
      value = argv[++i];
    }
    if (name == "worker-num") {
      worker_num_text = value;
    } else if (name == "local-worker-num") {
      local_text = value;
    } else if (name == "master-addr") {
      f->master_addr = value;
      f->master_addr_set = true;
    } else if (name == "master-port") {
      port_text = value;
      f->master_port_set = true;
    } else if (name == "node-rank") {
      node_rank_text = value;
    } else if (name == "job-id") {
      f->job_id = value;
      if (!ValidJobId(value)) {
        *error = absl::StrCat("--job-id=\"", value,
                              "\" is invalid: expected 1..128 characters of [A-Za-z0-9._:-]");
        return false;
      }
    } else if (name == "log-dir") {
      if (value.empty()) {
        *error = "--log-dir=\"\" is invalid: expected a directory path";
        return false;
      }
      f->log_dir = value;
    } else if (name == "cluster-time-out") {
      timeout_text = value;
    }
  }
  for (; i < argc; ++i) f->program.push_back(argv[i]);

  if (!worker_num_text.empty() &&
      !ParseInt("worker-num", worker_num_text, 1, kMaxWorkerNum, "an integer in 1..1000000",
                &f->worker_num, error)) {
    return false;
  }
  f->local_worker_num = f->worker_num;
  if (!local_text.empty() &&
      !ParseInt("local-worker-num", local_text, 1, f->worker_num,
                absl::StrCat("an integer in 1..", f->worker_num,
                             " (at most --worker-num, the workers of the whole job)"),
                &f->local_worker_num, error)) {
    return false;
  }
  if (!port_text.empty() && !ParseInt("master-port", port_text, 0, 65535,
                                      "an integer in 1..65535 (0 = pick a free port, single-node "
                                      "jobs only)",
                                      &f->master_port, error)) {
    return false;
  }
  if (!node_rank_text.empty()) {
    const int nodes = f->worker_num / f->local_worker_num;
    if (!ParseInt("node-rank", node_rank_text, -1, nodes - 1,
                  absl::StrCat("-1 (ranks assigned by the scheduler) or an integer in 0..",
                               nodes - 1, " (--worker-num ", f->worker_num,
                               " / --local-worker-num ", f->local_worker_num, " = ", nodes,
                               nodes == 1 ? " node" : " nodes",
                               "; MS_NODE_ID = node-rank * local-worker-num + index must stay "
                               "below --worker-num)"),
                  &f->node_rank, error)) {
      return false;
    }
  }
  if (!timeout_text.empty()) {
    int v = 0;
    if (!ParseInt("cluster-time-out", timeout_text, -1, kMaxTimeoutSeconds,
                  "an integer number of seconds in 1..31536000, or -1 to wait forever", &v,
                  error) ||
        v == 0) {
      *error = absl::StrCat("--cluster-time-out=\"", timeout_text,
                            "\" is invalid: expected an integer number of seconds in "
                            "1..31536000, or -1 to wait forever");
      return false;
    }
    f->cluster_time_out = v;
  }
  const std::string& addr = f->master_addr;
  if (addr.empty() || addr.size() > 253 ||
      addr.find_first_of(" \t,/") != std::string::npos) {
    *error = absl::StrCat("--master-addr=\"", addr,
                          "\" is invalid: expected one IPv4/IPv6 literal or host name (no "
                          "spaces, commas or slashes)");
    return false;
  }
  if (f->job_id.empty()) {
    f->job_id = GetEnv("MS_JOB_ID").value_or("default");
    if (!ValidJobId(f->job_id)) {
      *error = absl::StrCat("MS_JOB_ID=\"", f->job_id,
                            "\" (the default of --job-id) is invalid: expected 1..128 "
                            "characters of [A-Za-z0-9._:-]");
      return false;
    }
  }
  if (f->program.empty()) {
    *error = "missing PROGRAM: give the worker command after \"--\"";
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Where the scheduler is.

enum class SchedMode {
  kEmbedded,  // this node is the master: serve in-process
  kDaemon,    // MS_SCHED_HOST set in the environment
  kJoin,      // --join: the scheduler runs elsewhere at master_addr:master_port
  kRemote,    // master_addr is another host
};

bool IsLoopback(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
           (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
  }
  return false;
}

bool SameAddress(const sockaddr* a, const sockaddr* b) {
  if (a->sa_family != b->sa_family) return false;
  if (a->sa_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in*>(b)->sin_addr.s_addr;
  }
  if (a->sa_family == AF_INET6) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr,
                       &reinterpret_cast<const sockaddr_in6*>(b)->sin6_addr,
                       sizeof(in6_addr)) == 0;
  }
  return false;
}

// True when `host` resolves to a loopback address or to an address of one of this host's
// interfaces. Errors: NotFound when it does not resolve.
absl::StatusOr<bool> IsLocalAddress(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0) {
    return absl::NotFoundError(absl::StrCat("--master-addr=\"", host,
                                            "\" does not resolve: ", gai_strerror(rc)));
  }
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) ifs = nullptr;
  bool local = false;
  for (addrinfo* ai = res; ai != nullptr && !local; ai = ai->ai_next) {
    if (IsLoopback(ai->ai_addr)) local = true;
    for (ifaddrs* it = ifs; it != nullptr && !local; it = it->ifa_next) {
      if (it->ifa_addr != nullptr && SameAddress(ai->ai_addr, it->ifa_addr)) local = true;
    }
  }
  if (ifs != nullptr) freeifaddrs(ifs);
  freeaddrinfo(res);
  return local;
}

// HOST:PORT for the embedded server: the literal itself, else every address (a host name may
// resolve to an address of another interface, as in RunScheduler).
std::string ListenAddress(const std::string& host, int port) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1) return absl::StrCat(host, ":", port);
  if (inet_pton(AF_INET6, host.c_str(), buf) == 1) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat("0.0.0.0:", port);
}

// ---------------------------------------------------------------------------------------------
// Workers.

struct Worker {
  int index = 0;
  pid_t pid = -1;
  std::string log_path;
  bool exited = false;
  int status = 0;  // waitpid status
  absl::Time exit_time;
  bool stopped_by_launcher = false;  // signalled by us before it exited
};

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  if (abbrev != nullptr) return absl::StrCat("SIG", abbrev);
  return absl::StrCat("signal ", sig);
}

std::string StatusText(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("was killed by ", SignalName(WTERMSIG(status)),
                        WCOREDUMP(status) ? " (core dumped)" : "");
  }
  return "ended";
}

bool Failed(int status) { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }

std::string AbsolutePath(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  std::string p = path;
  while (absl::StartsWith(p, "./")) p = p.substr(2);
  return absl::StrCat(cwd, "/", p);
}

absl::Status MakeDirs(const std::string& path) {
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    cur += std::string(part) + "/";
    if (part.empty() || part == ".") continue;
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot create log directory ", path, ": mkdir ", cur, ": ", std::strerror(errno)));
    }
  }
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot use log directory ", path, ": not a directory"));
  }
  return absl::OkStatus();
}

// PROGRAM as execve() needs it: a path with a '/' as is, else the first executable in $PATH.
absl::StatusOr<std::string> ResolveProgram(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (access(program.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot execute PROGRAM ", program, ": ", std::strerror(errno)));
    }
    return program;
  }
  std::string path = GetEnv("PATH").value_or("/usr/local/bin:/usr/bin:/bin");
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", program);
    struct stat st {};
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot execute PROGRAM ", program, ": not found in PATH=", path));
}

class Launcher {
 public:
  Launcher(Flags flags, sigset_t original_mask)
      : f_(std::move(flags)), original_mask_(original_mask) {}

  int Run();

 private:
  absl::Status SetUpScheduler();
  std::vector<std::string> WorkerEnv(int index) const;
  absl::Status Spawn(int index, const std::string& path);
  void Reap();
  void SignalAlive(int sig, bool mark_stopped);
  void WaitForOtherNodes();
  void StopScheduler();
  std::string RankOf(int index);
  std::string Summary();

  Flags f_;
  sigset_t original_mask_;
  SchedMode mode_ = SchedMode::kEmbedded;
  std::string sched_host_;
  std::string sched_port_;
  std::unique_ptr<server::RendezvousServer> server_;
  std::string log_dir_;
  std::vector<Worker> workers_;
  int alive_ = 0;
  // Stop sequence.
  bool stopping_ = false;
  int interrupted_by_ = 0;  // the signal the launcher received, 0 = none
  std::optional<absl::Time> first_failure_;
  std::optional<absl::Time> kill_deadline_;
  int sigkilled_ = 0;
};

void Say(const std::string& text) { std::cerr << kProg << ": " << text << std::endl; }

absl::Status Launcher::SetUpScheduler() {
  if (std::optional<std::string> env_host = GetEnv("MS_SCHED_HOST"); env_host.has_value()) {
    mode_ = SchedMode::kDaemon;
    sched_host_ = *env_host;
    sched_port_ = GetEnv("MS_SCHED_PORT").value_or("8118");
    Say(absl::StrCat("MS_SCHED_HOST is set: the workers use the scheduler at ", sched_host_,
                     " (MS_SCHED_PORT=", sched_port_, "); no scheduler started here",
                     (f_.master_addr_set || f_.master_port_set)
                         ? "; --master-addr/--master-port ignored"
                         : ""));
    return absl::OkStatus();
  }
  sched_host_ = f_.master_addr;
  const bool single_node = f_.local_worker_num == f_.worker_num;
  if (f_.join) {
    mode_ = SchedMode::kJoin;
  } else {
    absl::StatusOr<bool> local = IsLocalAddress(f_.master_addr);
    if (!local.ok()) return local.status();
    mode_ = *local ? SchedMode::kEmbedded : SchedMode::kRemote;
  }
  if (f_.master_port == 0 && !(mode_ == SchedMode::kEmbedded && single_node)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--master-port=\"0\" is invalid here: a free port can only be picked for a single-node "
        "job served by this launcher's embedded scheduler (--local-worker-num = --worker-num, "
        "--master-addr local, no --join); this job has ",
        f_.worker_num, " workers, ", f_.local_worker_num, " on this node",
        mode_ == SchedMode::kJoin     ? ", with --join"
        : mode_ == SchedMode::kRemote ? absl::StrCat(", master ", f_.master_addr, " not local")
                                      : std::string(),
        ": expected --master-port in 1..65535"));
  }
  if (mode_ != SchedMode::kEmbedded) {
    sched_port_ = absl::StrCat(f_.master_port);
    Say(absl::StrCat(mode_ == SchedMode::kJoin ? "--join: " : "",
                     "not starting a scheduler; the workers dial ", f_.master_addr, ":",
                     f_.master_port,
                     mode_ == SchedMode::kRemote ? " (--master-addr is not an address of this host)"
                                                 : ""));
    return absl::OkStatus();
  }
  server::ServerOptions options;
  options.listen = ListenAddress(f_.master_addr, f_.master_port);
  if (f_.cluster_time_out > 0) {
    options.registry.default_topo_timeout = absl::Seconds(f_.cluster_time_out);
  }
  absl::StatusOr<std::unique_ptr<server::RendezvousServer>> started =
      server::RendezvousServer::Start(options);
  if (!started.ok()) {
    return absl::Status(started.status().code(),
                        absl::StrCat("cannot start the embedded scheduler on ", options.listen,
                                     ": ", started.status().message()));
  }
  server_ = std::move(started).value();
  sched_port_ = absl::StrCat(server_->port());
  Say(absl::StrCat("embedded scheduler for job ", f_.job_id, " listening on ",
                   ListenAddress(f_.master_addr, server_->port()),
                   f_.master_port == 0 ? " (free port picked for --master-port 0)" : ""));
  return absl::OkStatus();
}

std::vector<std::string> Launcher::WorkerEnv(int index) const {
  std::vector<std::pair<std::string, std::string>> ours = {
      {"MS_ROLE", "MS_WORKER"},
      {"MS_WORKER_NUM", absl::StrCat(f_.worker_num)},
      {"RANK_SIZE", absl::StrCat(f_.worker_num)},
      {"MS_JOB_ID", f_.job_id},
      {"MS_TOPO_TIMEOUT", absl::StrCat(f_.cluster_time_out)},
      {"DEVICE_ID", absl::StrCat(index)},
  };
  if (mode_ != SchedMode::kDaemon) {
    ours.push_back({"MS_SCHED_HOST", sched_host_});
    ours.push_back({"MS_SCHED_PORT", sched_port_});
  }
  if (f_.node_rank >= 0) {
    ours.push_back({"MS_NODE_ID", absl::StrCat(f_.node_rank * f_.local_worker_num + index)});
  }
  std::set<std::string> drop;
  for (const auto& [k, v] : ours) drop.insert(k);
  // An inherited MS_NODE_ID would be the same for every worker: they would all claim one rank.
  drop.insert("MS_NODE_ID");
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    absl::string_view kv = *e;
    std::string key(kv.substr(0, kv.find('=')));
    if (drop.count(key) == 0) env.emplace_back(kv);
  }
  for (const auto& [k, v] : ours) env.push_back(absl::StrCat(k, "=", v));
  return env;
}

absl::Status Launcher::Spawn(int index, const std::string& path) {
  Worker w;
  w.index = index;
  w.log_path = absl::StrCat(log_dir_, "/worker_", index, ".log");
  int log_fd = open(w.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", w.log_path, ": ", std::strerror(errno)));
  }
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(log_fd);
    if (null_fd >= 0) close(null_fd);
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  // Everything the child needs is built before fork(): after it only async-signal-safe calls.
  std::vector<std::string> env_s = WorkerEnv(index);
  std::vector<std::string> argv_s = f_.program;
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = getpid();

  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(log_fd);
    close(err_pipe[0]);
    close(err_pipe[1]);
    if (null_fd >= 0) close(null_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(e)));
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(128 + SIGKILL);  // the launcher died before prctl
    sigprocmask(SIG_SETMASK, &original_mask_, nullptr);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execve(path.c_str(), argv.data(), envp.data());
    int e = errno;
    ssize_t ignored = write(err_pipe[1], &e, sizeof(e));
    (void)ignored;
    _exit(127);
  }
  setpgid(pid, pid);  // also from the parent: no window where a signal to -pid misses it
  close(err_pipe[1]);
  close(log_fd);
  if (null_fd >= 0) close(null_fd);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(err_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  close(err_pipe[0]);
  w.pid = pid;
  workers_.push_back(w);
  ++alive_;
  if (n == sizeof(child_errno)) {
    return absl::FailedPreconditionError(absl::StrCat("cannot execute PROGRAM ", path, ": ",
                                                      std::strerror(child_errno)));
  }
  Say(absl::StrCat("started worker index ", index, " pid ", pid,
                   f_.node_rank >= 0
                       ? absl::StrCat(" rank ", f_.node_rank * f_.local_worker_num + index)
                       : std::string(),
                   " log ", w.log_path));
  return absl::OkStatus();
}

void Launcher::Reap() {
  for (Worker& w : workers_) {
    if (w.exited) continue;
    int status = 0;
    pid_t r;
    do {
      r = waitpid(w.pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == w.pid || (r < 0 && errno == ECHILD)) {
      w.exited = true;
      w.status = r == w.pid ? status : 0;
      w.exit_time = absl::Now();
      --alive_;
    }
  }
}

// Sends `sig` to the process group of every worker still running.
void Launcher::SignalAlive(int sig, bool mark_stopped) {
  for (Worker& w : workers_) {
    if (w.exited) continue;
    if (kill(-w.pid, sig) != 0) kill(w.pid, sig);
    if (mark_stopped) w.stopped_by_launcher = true;
  }
}

std::string Launcher::RankOf(int index) {
  if (f_.node_rank >= 0) return absl::StrCat("rank ", f_.node_rank * f_.local_worker_num + index);
  // Ranks assigned by the scheduler: ask the embedded one (single node: DEVICE_ID = index is
  // unique in the job).
  if (server_ != nullptr && f_.local_worker_num == f_.worker_num) {
    absl::StatusOr<core::MemberPage> page =
        server_->registry().ListMembers(f_.job_id, 0, static_cast<size_t>(f_.worker_num) + 16);
    if (page.ok()) {
      for (const core::MemberInfo& m : page->members) {
        if (m.role == core::Role::kWorker && m.device_id == index && m.rank.has_value()) {
          return absl::StrCat("rank ", *m.rank);
        }
      }
    }
    return "no rank assigned yet";
  }
  return "rank assigned by the scheduler";
}

std::string LogTail(const std::string& path, int lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) {
    all.push_back(line);
    if (all.size() > static_cast<size_t>(lines)) all.erase(all.begin());
  }
  return absl::StrJoin(all, "\n");
}

std::string Launcher::Summary() {
  std::vector<std::string> failed_parts;
  std::vector<const Worker*> failed;
  for (const Worker& w : workers_) {
    if (w.exited && Failed(w.status) && !w.stopped_by_launcher) {
      failed.push_back(&w);
      failed_parts.push_back(absl::StrCat("index ", w.index, " (", RankOf(w.index), ", pid ",
                                          w.pid, ") ", StatusText(w.status), ", log ",
                                          w.log_path));
    }
  }
  int stopped = 0;
  for (const Worker& w : workers_) stopped += w.stopped_by_launcher ? 1 : 0;
  absl::Time last_exit = absl::InfinitePast();
  for (const Worker& w : workers_) last_exit = std::max(last_exit, w.exit_time);
  std::string text = absl::StrCat(
      "job ", f_.job_id, " FAILED: ", failed.size() == 1 ? "worker " : "workers ",
      absl::StrJoin(failed_parts, "; "), ". ", stopped, " other worker",
      stopped == 1 ? " was" : "s were", " stopped (SIGTERM",
      sigkilled_ > 0 ? absl::StrCat(", then SIGKILL for ", sigkilled_) : std::string(), "); all ",
      workers_.size(), " workers were gone ",
      absl::ToInt64Milliseconds(last_exit - *first_failure_), " ms after the first failure.");
  for (const Worker* w : failed) {
    std::string tail = LogTail(w->log_path, 5);
    if (!tail.empty()) {
      absl::StrAppend(&text, "\n  last lines of ", w->log_path, ":\n    ",
                      absl::StrJoin(absl::StrSplit(tail, '\n'), "\n    "));
    }
  }
  return text;
}

// Multi-node master: the other nodes' workers may still be running; keep serving them until the
// job ends (or a signal / the topology timeout).
void Launcher::WaitForOtherNodes() {
  if (server_ == nullptr || f_.local_worker_num == f_.worker_num) return;
  if (!server_->registry().GetJob(f_.job_id).ok()) return;  // nobody ever joined
  Say(absl::StrCat("local workers done; serving job ", f_.job_id,
                   " until the workers of the other nodes are done"));
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  for (;;) {
    absl::StatusOr<core::JobState> end =
        server_->WaitForJobEnd(f_.job_id, absl::Milliseconds(200));
    if (end.ok() || !absl::IsDeadlineExceeded(end.status())) return;
    timespec zero{0, 0};
    int sig = sigtimedwait(&set, nullptr, &zero);
    if (sig > 0) {
      interrupted_by_ = sig;
      return;
    }
  }
}

void Launcher::StopScheduler() {
  if (server_ == nullptr) return;
  // The grace lets the last Leave calls finish.
  server_->Shutdown(absl::Seconds(1));
  server_.reset();
}

int Launcher::Run() {
  log_dir_ = AbsolutePath(f_.log_dir);
  if (absl::Status s = MakeDirs(log_dir_); !s.ok()) {
    Say(std::string(s.message()));
    return kExitSetup;
  }
  absl::StatusOr<std::string> path = ResolveProgram(f_.program[0]);
  if (!path.ok()) {
    Say(std::string(path.status().message()));
    return kExitSetup;
  }
  if (absl::Status s = SetUpScheduler(); !s.ok()) {
    Say(std::string(s.message()));
    return absl::IsInvalidArgument(s) || absl::IsNotFound(s) ? kExitUsage : kExitSetup;
  }
  Say(absl::StrCat("job ", f_.job_id, ": ", f_.local_worker_num, " of ", f_.worker_num,
                   " workers on this node, logs in ", log_dir_, "/worker_{0..",
                   f_.local_worker_num - 1, "}.log"));
  for (int i = 0; i < f_.local_worker_num; ++i) {
    if (absl::Status s = Spawn(i, *path); !s.ok()) {
      Say(std::string(s.message()));
      SignalAlive(SIGKILL, true);
      while (alive_ > 0) {
        Reap();
        if (alive_ > 0) absl::SleepFor(absl::Milliseconds(5));
      }
      StopScheduler();
      return kExitSetup;
    }
  }

  sigset_t wait_set;
  sigemptyset(&wait_set);
  sigaddset(&wait_set, SIGCHLD);
  sigaddset(&wait_set, SIGINT);
  sigaddset(&wait_set, SIGTERM);
  sigaddset(&wait_set, SIGHUP);
  while (alive_ > 0) {
    absl::Duration wait = absl::Milliseconds(100);
    if (kill_deadline_.has_value()) {
      wait = std::max(absl::ZeroDuration(), std::min(wait, *kill_deadline_ - absl::Now()));
    }
    timespec ts = absl::ToTimespec(wait);
    int sig = sigtimedwait(&wait_set, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
      if (interrupted_by_ != 0 || (stopping_ && first_failure_.has_value())) {
        Say(absl::StrCat("got ", SignalName(sig), " again: killing the workers"));
        for (const Worker& w : workers_) sigkilled_ += w.exited ? 0 : 1;
        SignalAlive(SIGKILL, true);
      } else {
        Say(absl::StrCat("got ", SignalName(sig), ": forwarding it to ", alive_, " worker",
                         alive_ == 1 ? "" : "s", " (SIGKILL in ",
                         absl::FormatDuration(kSignalKillGrace), ")"));
        SignalAlive(sig, true);
        kill_deadline_ = absl::Now() + kSignalKillGrace;
      }
      if (interrupted_by_ == 0) interrupted_by_ = sig;
      stopping_ = true;
    }
    Reap();
    if (!first_failure_.has_value() && interrupted_by_ == 0) {
      for (const Worker& w : workers_) {
        if (w.exited && Failed(w.status)) {
          first_failure_ = w.exit_time;
          break;
        }
      }
      if (first_failure_.has_value()) {
        stopping_ = true;
        SignalAlive(SIGTERM, true);
        kill_deadline_ = absl::Now() + kFailureKillGrace;
      }
    }
    if (kill_deadline_.has_value() && absl::Now() >= *kill_deadline_ && alive_ > 0) {
      for (const Worker& w : workers_) sigkilled_ += w.exited ? 0 : 1;
      SignalAlive(SIGKILL, true);
      kill_deadline_.reset();
    }
  }
  // Children the workers left in their process groups go too.
  // SIGKILL is delivered asynchronously and orphans are reaped by init: give the groups a
  // moment to empty so that no worker process is left when the launcher returns.
  if (stopping_) {
    for (const Worker& w : workers_) kill(-w.pid, SIGKILL);
    const absl::Time deadline = absl::Now() + absl::Milliseconds(100);
    for (const Worker& w : workers_) {
      while (kill(-w.pid, 0) == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
    }
  }

  int code = kExitOk;
  if (first_failure_.has_value()) {
    Say(Summary());
    code = kExitWorkerFailed;
  } else if (interrupted_by_ != 0) {
    Say(absl::StrCat("interrupted by ", SignalName(interrupted_by_), ": all ", workers_.size(),
                     " workers stopped", sigkilled_ > 0
                                             ? absl::StrCat(" (", sigkilled_, " with SIGKILL)")
                                             : std::string()));
    code = 128 + interrupted_by_;
  } else {
    WaitForOtherNodes();
    if (interrupted_by_ != 0) {
      code = 128 + interrupted_by_;
    } else {
      Say(absl::StrCat("job ", f_.job_id, ": all ", workers_.size(),
                       " local workers exited with code 0"));
    }
  }
  StopScheduler();
  return code;
}

}  // namespace
}  // namespace ms_rendezvous::run

int main(int argc, char** argv) {
  using namespace ms_rendezvous::run;
  // Signals are taken synchronously by the main loop: block them before any thread (gRPC) starts
  // so that every thread inherits the mask; workers get the original mask back.
  sigset_t block, original;
  sigemptyset(&block);
  sigaddset(&block, SIGCHLD);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &block, &original);

  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (std::getenv("GLOG_minloglevel") == nullptr) FLAGS_minloglevel = google::GLOG_WARNING;

  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, &flags, &error)) {
    std::cerr << kProg << ": " << error << "\n\n" << kUsage;
    return kExitUsage;
  }
  Launcher launcher(std::move(flags), original);
  return launcher.Run();
}
