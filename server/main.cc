// ms-rendezvousd: the rendezvous daemon. Serves many jobs at once on one port.
//
// Flags use the --name=value or --name value form (dashes, as in the documentation).
// SIGTERM/SIGINT drain gracefully: waiting members get Unavailable at once, in-flight calls get
// --shutdown-grace to finish.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "core/effects.h"
#include "server/leader_election.h"
#include "server/metrics.h"
#include "server/server.h"
#include "server/standby_server.h"
#include "server/systemd_notify.h"
#include "store/etcd/etcd_state_store.h"
#include "store/sqlite_state_store.h"

namespace {

constexpr char kUsage[] =
    "usage: ms-rendezvousd [flags]\n"
    "  --listen HOST:PORT            address to serve on (default 0.0.0.0:8118; port 0 = any)\n"
    "  --port-file PATH              write the bound port to PATH once listening\n"
    "  --default-topo-timeout DUR    topology timeout of jobs whose members send none\n"
    "                                (MS_TOPO_TIMEOUT unset; default 1800s)\n"
    "  --finished-job-ttl DUR        how long finished/failed jobs stay visible (default 1h)\n"
    "  --state-dir DIR               keep membership in DIR (SQLite, WAL) so it survives\n"
    "                                restarts and kill -9; without it state is in memory\n"
    "  --default-node-timeout DUR    MS_NODE_TIMEOUT of jobs whose members send none (30s)\n"
    "  --disconnect-grace DUR        how long a member whose session dropped may take to\n"
    "                                resume before it is declared dead (default 2s)\n"
    "  --max-watch-backlog N         events a slow watcher may lag before it is cut (10000)\n"
    "  --kv-max-key-bytes N          longest key of a job's key/value store (4096)\n"
    "  --kv-max-value-bytes N        largest value (1048576)\n"
    "  --kv-max-keys-per-job N       keys per job (1000000)\n"
    "  --kv-max-bytes-per-job N      bytes of keys and values per job (1073741824)\n"
    "  --max-receive-message-bytes N largest request accepted; larger ones fail with\n"
    "                                RESOURCE_EXHAUSTED (default 4194304 = 4 MiB)\n"
    "  --max-jobs N                  live (forming/complete/degraded) jobs at most; a join that\n"
    "                                would create one more gets RESOURCE_EXHAUSTED (10000)\n"
    "  --max-members-per-job N       MS_WORKER_NUM + MS_SERVER_NUM at most (1000000)\n"
    "  --keepalive-time DUR          ping idle connections this often (default 30s, >= 1s)\n"
    "  --keepalive-timeout DUR       close a connection whose ping is not acked in time (10s)\n"
    "  --min-ping-interval DUR       clients pinging more often get GOAWAY too_many_pings\n"
    "                                (default 5s, >= 1s)\n"
    "  --session-queues N            completion queues (one thread each) serving Session\n"
    "                                streams and unary joins (default 16, 1..256)\n"
    "  --max-connection-idle DUR     close connections without any call for this long\n"
    "                                (default 1h; 0 = never; members in a session are never idle)\n"
    "  --shutdown-grace DUR          time in-flight calls get on SIGTERM (default 5s)\n"
    "  --metrics-listen HOST:PORT    serve Prometheus /metrics there (off by default; port 0 =\n"
    "                                any, the bound port is logged)\n"
    "  --metrics-port-file PATH      write the bound metrics port to PATH\n"
    "  --tls-cert FILE               serve TLS with this PEM certificate chain (with --tls-key)\n"
    "  --tls-key FILE                PEM private key of --tls-cert\n"
    "  --tls-client-ca FILE          mutual TLS: require client certificates signed by this CA\n"
    "  --admin-token-file FILE       admin token (first line) for CreateJob/AbortJob/DeleteJob;\n"
    "                                without it those calls are refused\n"
    "  --status-requires-token       the status API (ListJobs/GetJob/ListMembers/WatchJob)\n"
    "                                needs the admin token too (default: open)\n"
    "  --require-job-token           refuse jobs without a job token (MS_JOB_TOKEN)\n"
    "  --store memory|sqlite|etcd    where state lives (default: sqlite with --state-dir, else\n"
    "                                memory); etcd: several daemons, one leader (HA)\n"
    "  --etcd-endpoints H:P,H:P,...  etcd client URLs (--store etcd)\n"
    "  --etcd-prefix PREFIX          key prefix in etcd, ends with / (/ms-rendezvous/)\n"
    "  --advertise HOST:PORT         the address clients use for this daemon, published while\n"
    "                                it leads (default: the --listen host, or the host name for\n"
    "                                a wildcard, with the bound port)\n"
    "  --leader-lease-ttl DUR        etcd lease of the leader: a dead leader is replaced\n"
    "                                within about this (default 5s, >= 2s)\n"
    "  --etcd-ca FILE                TLS to etcd: PEM CA that verifies the etcd members\n"
    "  --etcd-cert FILE, --etcd-key FILE  client certificate for etcd --client-cert-auth\n"
    "  --help                        this text\n"
    "Durations are absl durations: 30s, 1500ms, 2h, 1h30m.\n"
    "Without --state-dir, state is kept in memory: it is lost when the daemon stops.\n";

struct Flags {
  ms_rendezvous::server::ServerOptions server;
  std::string port_file;
  std::string metrics_listen;
  std::string metrics_port_file;
  std::string state_dir;
  absl::Duration shutdown_grace = absl::Seconds(5);
  std::string tls_cert, tls_key, tls_client_ca, admin_token_file;  // paths
  std::string store;  // "", "memory", "sqlite", "etcd"
  std::vector<std::string> etcd_endpoints;
  std::string etcd_prefix = "/ms-rendezvous/";
  std::string advertise;
  absl::Duration leader_lease_ttl = absl::Seconds(5);
  std::string etcd_ca, etcd_cert, etcd_key;  // paths
};

// Exit code of a daemon that lost the leadership and could not restart itself.
constexpr int kExitDeposed = 3;

// argv of this process and the port it bound, for RestartAsStandby().
std::vector<std::string> g_argv;
std::atomic<int> g_bound_port{0};
std::atomic<bool> g_leading{false};

// A leader that lost the leadership (lease gone, a write fenced, etcd unreachable for longer
// than the lease) must stop acting at once: its in-memory state may be behind the new leader's.
// It re-executes itself (same pid, same flags, the port it had) and starts over as a standby
// that campaigns and, if it wins again, reloads everything from etcd. No supervisor needed; with
// systemd the service simply stays active.
[[noreturn]] void RestartAsStandby(const std::string& why) {
  LOG(ERROR) << "stepping down: " << why << "; restarting as a standby";
  std::vector<std::string> args = g_argv;
  if (g_bound_port.load() != 0) {
    // Keep the port (a --listen with port 0 would pick another one).
    std::string listen = "0.0.0.0:8118";
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "--listen" && i + 1 < args.size()) listen = args[i + 1];
      if (absl::StartsWith(args[i], "--listen=")) listen = args[i].substr(9);
    }
    const size_t colon = listen.rfind(':');
    // Drop earlier --listen= forms (a previous restart's) so restarts do not pile them up.
    args.erase(std::remove_if(args.begin() + 1, args.end(),
                              [](const std::string& a) { return absl::StartsWith(a, "--listen="); }),
               args.end());
    args.push_back(absl::StrCat("--listen=", listen.substr(0, colon), ":", g_bound_port.load()));
  }
  std::vector<char*> raw;
  for (auto& a : args) raw.push_back(a.data());
  raw.push_back(nullptr);
  google::FlushLogFiles(google::GLOG_INFO);
  execv("/proc/self/exe", raw.data());
  LOG(ERROR) << "cannot re-execute /proc/self/exe: " << std::strerror(errno) << "; exiting";
  std::_Exit(kExitDeposed);
}

// HOST of a HOST:PORT listen address ("[::]" kept bracketed).
std::string ListenHost(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  return colon == std::string::npos ? listen : listen.substr(0, colon);
}

// The address published for clients when --advertise is not given.
std::string DefaultAdvertise(const std::string& listen, int port) {
  std::string host = ListenHost(listen);
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::" || host == "*") {
    char name[256] = {};
    host = gethostname(name, sizeof(name) - 1) == 0 ? std::string(name) : "localhost";
  }
  return absl::StrCat(host, ":", port);
}

// Writes the bound port to `path` (write then rename: a reader never sees half a port).
bool WritePortFile(const std::string& path, int port) {
  if (path.empty()) return true;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n";
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    LOG(ERROR) << "cannot write --port-file " << path << ": " << std::strerror(errno);
    return false;
  }
  return true;
}

// Flags that take no value (a following argument is not consumed).
bool IsSwitch(const std::string& name) {
  return name == "status-requires-token" || name == "require-job-token";
}

bool ReadWholeFile(const std::string& flag, const std::string& path, std::string* out,
                   std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = absl::StrCat("--", flag, "=\"", path, "\": cannot read: ", std::strerror(errno));
    return false;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  *out = buf.str();
  if (out->empty()) {
    *error = absl::StrCat("--", flag, "=\"", path, "\" is empty");
    return false;
  }
  return true;
}

// The admin token: the first line of `path`, 1..1024 printable characters without spaces.
bool ReadAdminToken(const std::string& path, std::string* out, std::string* error) {
  std::string token;
  if (!ReadWholeFile("admin-token-file", path, &token, error)) return false;
  token = std::string(absl::StripAsciiWhitespace(token.substr(0, token.find('\n'))));
  if (token.empty() || token.size() > 1024 ||
      !std::all_of(token.begin(), token.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    *error = absl::StrCat("--admin-token-file=\"", path,
                          "\": the first line must be the token: 1..1024 printable ASCII "
                          "characters without spaces");
    return false;
  }
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && (st.st_mode & 0077) != 0) {
    LOG(WARNING) << "--admin-token-file " << path
                 << " is readable by group or others; chmod 600 it";
  }
  *out = std::move(token);
  return true;
}

// Reads the files the TLS and token flags name into the server options.
bool LoadSecrets(Flags* flags, std::string* error) {
  auto& tls = flags->server.tls;
  if (flags->tls_cert.empty() != flags->tls_key.empty()) {
    *error = "--tls-cert and --tls-key must be given together";
    return false;
  }
  if (!flags->tls_client_ca.empty() && flags->tls_cert.empty()) {
    *error = "--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key";
    return false;
  }
  if (!flags->tls_cert.empty() &&
      (!ReadWholeFile("tls-cert", flags->tls_cert, &tls.cert_chain, error) ||
       !ReadWholeFile("tls-key", flags->tls_key, &tls.private_key, error))) {
    return false;
  }
  if (!flags->tls_client_ca.empty() &&
      !ReadWholeFile("tls-client-ca", flags->tls_client_ca, &tls.client_ca, error)) {
    return false;
  }
  if (!flags->admin_token_file.empty() &&
      !ReadAdminToken(flags->admin_token_file, &flags->server.auth.admin_token, error)) {
    return false;
  }
  if (flags->server.auth.status_requires_token && flags->server.auth.admin_token.empty()) {
    *error = "--status-requires-token needs --admin-token-file (the token the status API asks for)";
    return false;
  }
  return true;
}

bool ParseDurationFlag(const std::string& name, const std::string& value, absl::Duration* out,
                       std::string* error) {
  if (!absl::ParseDuration(value, out) || *out < absl::ZeroDuration()) {
    *error = absl::StrCat("--", name, "=\"", value,
                          "\" is not a valid duration: expected e.g. 30s, 1500ms, 1h (>= 0)");
    return false;
  }
  return true;
}

bool ParseFlags(int argc, char** argv, Flags* flags, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) {
      *error = absl::StrCat("unexpected argument \"", arg, "\"");
      return false;
    }
    std::string name = arg.substr(2), value;
    auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (IsSwitch(name)) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      *error = absl::StrCat("flag --", name, " needs a value");
      return false;
    }
    if (name == "listen") {
      flags->server.listen = value;
    } else if (name == "port-file") {
      flags->port_file = value;
    } else if (name == "metrics-listen") {
      flags->metrics_listen = value;
    } else if (name == "metrics-port-file") {
      flags->metrics_port_file = value;
    } else if (name == "default-topo-timeout") {
      if (!ParseDurationFlag(name, value, &flags->server.registry.default_topo_timeout, error)) {
        return false;
      }
      if (flags->server.registry.default_topo_timeout == absl::ZeroDuration()) {
        *error = "--default-topo-timeout must be > 0";
        return false;
      }
    } else if (name == "state-dir") {
      flags->state_dir = value;
    } else if (name == "default-node-timeout") {
      if (!ParseDurationFlag(name, value, &flags->server.registry.default_node_timeout, error)) {
        return false;
      }
      if (flags->server.registry.default_node_timeout < absl::Milliseconds(100)) {
        *error = "--default-node-timeout must be >= 100ms";
        return false;
      }
    } else if (name == "disconnect-grace") {
      if (!ParseDurationFlag(name, value, &flags->server.registry.disconnect_grace, error)) {
        return false;
      }
    } else if (name == "finished-job-ttl") {
      if (!ParseDurationFlag(name, value, &flags->server.registry.finished_job_ttl, error)) {
        return false;
      }
    } else if (name == "shutdown-grace") {
      if (!ParseDurationFlag(name, value, &flags->shutdown_grace, error)) return false;
    } else if (name == "kv-max-key-bytes" || name == "kv-max-value-bytes" ||
               name == "kv-max-keys-per-job" || name == "kv-max-bytes-per-job") {
      size_t v = 0;
      if (!absl::SimpleAtoi(value, &v) || v == 0) {
        *error = absl::StrCat("--", name, "=\"", value, "\" must be an integer >= 1");
        return false;
      }
      auto& kv = flags->server.registry.kv_limits;
      (name == "kv-max-key-bytes"      ? kv.max_key_bytes
       : name == "kv-max-value-bytes"  ? kv.max_value_bytes
       : name == "kv-max-keys-per-job" ? kv.max_keys_per_job
                                       : kv.max_bytes_per_job) = v;
    } else if (name == "max-receive-message-bytes" || name == "max-jobs" ||
               name == "max-members-per-job") {
      uint64_t v = 0;
      const uint64_t max = name == "max-receive-message-bytes" ? uint64_t{INT32_MAX}
                                                                : uint64_t{UINT32_MAX};
      if (!absl::SimpleAtoi(value, &v) || v == 0 || v > max) {
        *error = absl::StrCat("--", name, "=\"", value, "\" must be an integer in 1..", max);
        return false;
      }
      if (name == "max-receive-message-bytes") {
        flags->server.max_receive_message_bytes = static_cast<int>(v);
      } else if (name == "max-jobs") {
        flags->server.registry.max_jobs = v;
      } else {
        flags->server.registry.max_members_per_job = v;
      }
    } else if (name == "keepalive-time" || name == "keepalive-timeout" ||
               name == "min-ping-interval") {
      absl::Duration* d = name == "keepalive-time"      ? &flags->server.keepalive_time
                          : name == "keepalive-timeout" ? &flags->server.keepalive_timeout
                                                        : &flags->server.min_ping_interval;
      if (!ParseDurationFlag(name, value, d, error)) return false;
      if (*d < absl::Seconds(1) || *d == absl::InfiniteDuration()) {
        *error = absl::StrCat("--", name, "=\"", value, "\" must be a finite duration >= 1s");
        return false;
      }
    } else if (name == "session-queues") {
      int v = 0;
      if (!absl::SimpleAtoi(value, &v) || v < 1 || v > 256) {
        *error = absl::StrCat("--session-queues=\"", value, "\" must be an integer in 1..256");
        return false;
      }
      flags->server.session_queues = v;
    } else if (name == "max-connection-idle") {
      if (!ParseDurationFlag(name, value, &flags->server.max_connection_idle, error)) {
        return false;
      }
      if (flags->server.max_connection_idle == absl::ZeroDuration()) {
        flags->server.max_connection_idle = absl::InfiniteDuration();  // 0 = never
      }
    } else if (name == "store") {
      if (value != "memory" && value != "sqlite" && value != "etcd") {
        *error = absl::StrCat("--store=\"", value, "\" must be memory, sqlite or etcd");
        return false;
      }
      flags->store = value;
    } else if (name == "etcd-endpoints") {
      flags->etcd_endpoints = absl::StrSplit(value, ',', absl::SkipWhitespace());
      if (flags->etcd_endpoints.empty()) {
        *error = absl::StrCat("--etcd-endpoints=\"", value, "\" names no endpoint: expected "
                              "HOST:PORT[,HOST:PORT...]");
        return false;
      }
    } else if (name == "etcd-prefix") {
      if (value.empty() || value.back() != '/') {
        *error = absl::StrCat("--etcd-prefix=\"", value, "\" must be non-empty and end with /");
        return false;
      }
      flags->etcd_prefix = value;
    } else if (name == "etcd-ca") {
      flags->etcd_ca = value;
    } else if (name == "etcd-cert") {
      flags->etcd_cert = value;
    } else if (name == "etcd-key") {
      flags->etcd_key = value;
    } else if (name == "advertise") {
      flags->advertise = value;
    } else if (name == "leader-lease-ttl") {
      if (!ParseDurationFlag(name, value, &flags->leader_lease_ttl, error)) return false;
      if (flags->leader_lease_ttl < absl::Seconds(2) ||
          flags->leader_lease_ttl > absl::Minutes(10) ||
          flags->leader_lease_ttl != absl::Seconds(absl::ToInt64Seconds(flags->leader_lease_ttl))) {
        *error = absl::StrCat("--leader-lease-ttl=\"", value,
                              "\" must be whole seconds in 2s..10m (an etcd lease TTL)");
        return false;
      }
    } else if (name == "tls-cert") {
      flags->tls_cert = value;
    } else if (name == "tls-key") {
      flags->tls_key = value;
    } else if (name == "tls-client-ca") {
      flags->tls_client_ca = value;
    } else if (name == "admin-token-file") {
      flags->admin_token_file = value;
    } else if (IsSwitch(name)) {
      if (value != "true" && value != "false") {
        *error = absl::StrCat("--", name, "=\"", value, "\" must be true or false (or no value)");
        return false;
      }
      (name == "status-requires-token" ? flags->server.auth.status_requires_token
                                       : flags->server.registry.require_job_token) =
          value == "true";
    } else if (name == "max-watch-backlog") {
      if (!absl::SimpleAtoi(value, &flags->server.registry.max_watch_backlog) ||
          flags->server.registry.max_watch_backlog == 0) {
        *error = absl::StrCat("--max-watch-backlog=\"", value, "\" must be an integer >= 1");
        return false;
      }
    } else {
      *error = absl::StrCat("unknown flag --", name);
      return false;
    }
  }
  if (flags->store.empty()) flags->store = flags->state_dir.empty() ? "memory" : "sqlite";
  if (flags->store == "sqlite" && flags->state_dir.empty()) {
    *error = "--store=sqlite needs --state-dir DIR";
    return false;
  }
  // --store=etcd ignores --state-dir (the systemd unit always passes one), memory contradicts it.
  if (flags->store == "memory" && !flags->state_dir.empty()) {
    *error = "--state-dir keeps state on disk: it contradicts --store=memory";
    return false;
  }
  if ((flags->store == "etcd") != !flags->etcd_endpoints.empty()) {
    *error = flags->store == "etcd" ? "--store=etcd needs --etcd-endpoints HOST:PORT[,...]"
                                    : "--etcd-endpoints is for --store=etcd";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  g_argv.assign(argv, argv + argc);
  // Debian's abseil enables Mutex deadlock detection by default; with one mutex per parked call
  // its global graph makes joins superlinear (11% of daemon CPU at 10k members, far more at
  // 100k). Lock order is checked by the thread-safety annotations and the tests instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  // A crash prints its signal and stack to the journal instead of vanishing silently.
  google::InstallFailureSignalHandler();

  // One socket per member: raise the soft open-files limit to the hard one (containers and
  // shells often start with a soft 1024, which would cap the daemon at ~1000 members).
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    const rlim_t before = nofile.rlim_cur;
    nofile.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nofile) == 0) {
      LOG(INFO) << "raised the open-files limit from " << before << " to " << nofile.rlim_cur;
    }
  }
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < 65536) {
    LOG(WARNING) << "open-files limit is " << nofile.rlim_cur
                 << ": at most about that many members can be connected; raise LimitNOFILE / "
                    "ulimit -n";
  }

  Flags flags;
  std::string error;
  if (!ParseFlags(argc, argv, &flags, &error)) {
    std::cerr << "ms-rendezvousd: " << error << "\n" << kUsage;
    return 2;
  }
  if (!LoadSecrets(&flags, &error)) {
    std::cerr << "ms-rendezvousd: " << error << "\n";
    return 2;
  }

  // Block the stop signals before any thread starts so only sigwait() below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Acknowledging a change the store could not make durable would be worse than stopping:
  // systemd restarts the daemon, which reloads what is durable.
  ms_rendezvous::core::SetStorageFailureHandler([](const absl::Status& status) {
    if (g_bound_port.load() != 0 && g_leading.load()) {
      // --store=etcd: fenced (another daemon leads) or etcd unreachable. Nothing of the failed
      // batch was acknowledged; the memory state is suspect now, so start over as a standby.
      RestartAsStandby(std::string(status.message()));
    }
    LOG(FATAL) << "state store failed, stopping: " << status.message();
  });
  std::unique_ptr<ms_rendezvous::core::StateStore> store;
  if (flags.store == "sqlite") {
    auto opened = ms_rendezvous::core::SqliteStateStore::Open(flags.state_dir);
    if (!opened.ok()) {
      std::cerr << "ms-rendezvousd: --state-dir: " << opened.status().message() << "\n";
      return 1;
    }
    store = std::move(*opened);
    flags.server.store = store.get();
  }
  // Declared before the server so it outlives it (the core and services report to it).
  std::unique_ptr<ms_rendezvous::server::Metrics> metrics;
  if (!flags.metrics_listen.empty()) {
    metrics = std::make_unique<ms_rendezvous::server::Metrics>();
    absl::Status st = metrics->Listen(flags.metrics_listen);
    if (!st.ok()) {
      std::cerr << "ms-rendezvousd: " << st.message() << "\n";
      return 1;
    }
    flags.server.registry.metrics = metrics.get();
    ms_rendezvous::server::SetRpcObserver(metrics.get());
    LOG(INFO) << "metrics: http://" << flags.metrics_listen << "/metrics bound_port="
              << metrics->port();
    if (!flags.metrics_port_file.empty()) {
      const std::string tmp = flags.metrics_port_file + ".tmp";
      {
        std::ofstream out(tmp);
        out << metrics->port() << "\n";
      }
      if (std::rename(tmp.c_str(), flags.metrics_port_file.c_str()) != 0) {
        LOG(ERROR) << "cannot write --metrics-port-file " << flags.metrics_port_file << ": "
                   << std::strerror(errno);
        return 1;
      }
    }
  }
  // --store=etcd: wait as a standby until this daemon wins the election, then serve as the
  // leader with every write fenced by the election key (server/leader_election.h).
  ms_rendezvous::server::SystemdNotifier systemd;
  std::atomic<ms_rendezvous::server::RendezvousServer*> serving{nullptr};
  std::unique_ptr<ms_rendezvous::server::LeaderElection> election;
  if (flags.store == "etcd") {
    ms_rendezvous::core::EtcdStateStore::Options eo;
    eo.endpoints = flags.etcd_endpoints;
    eo.prefix = flags.etcd_prefix;
    if (flags.etcd_cert.empty() != flags.etcd_key.empty()) {
      std::cerr << "ms-rendezvousd: --etcd-cert and --etcd-key must be given together\n";
      return 2;
    }
    std::string read_error;
    if ((!flags.etcd_ca.empty() &&
         !ReadWholeFile("etcd-ca", flags.etcd_ca, &eo.tls.ca, &read_error)) ||
        (!flags.etcd_cert.empty() &&
         (!ReadWholeFile("etcd-cert", flags.etcd_cert, &eo.tls.cert, &read_error) ||
          !ReadWholeFile("etcd-key", flags.etcd_key, &eo.tls.key, &read_error)))) {
      std::cerr << "ms-rendezvousd: " << read_error << "\n";
      return 2;
    }
    auto opened = ms_rendezvous::core::EtcdStateStore::Open(eo);
    if (!opened.ok()) {
      std::cerr << "ms-rendezvousd: --store=etcd: " << opened.status().message() << "\n";
      return 1;
    }
    auto* etcd_store = opened->get();
    store = *std::move(opened);
    flags.server.store = store.get();
    auto standby = ms_rendezvous::server::StandbyServer::Start(flags.server, flags.advertise,
                                                               store->Describe());
    if (!standby.ok()) {
      std::cerr << "ms-rendezvousd: " << standby.status().message() << "\n";
      return 1;
    }
    const int port = (*standby)->port();
    g_bound_port = port;
    // From now on the daemon keeps this port: the leader's server binds it again.
    flags.server.listen = absl::StrCat(ListenHost(flags.server.listen), ":", port);
    if (flags.advertise.empty()) flags.advertise = DefaultAdvertise(flags.server.listen, port);
    (*standby)->SetSelf(flags.advertise);
    if (!WritePortFile(flags.port_file, port)) return 1;
    election = std::make_unique<ms_rendezvous::server::LeaderElection>(
        &etcd_store->client(),
        ms_rendezvous::server::LeaderElectionOptions{flags.etcd_prefix + "leader", flags.advertise,
                                                     flags.leader_lease_ttl});
    LOG(INFO) << "ms-rendezvousd standby on " << flags.server.listen << " (advertise "
              << flags.advertise << ", store " << store->Describe() << "): campaigning";
    std::cout << "ms-rendezvousd standby on port " << port << std::endl;
    systemd.Ready(absl::StrCat("standby (", flags.advertise, "): campaigning"));
    systemd.Start(
        [&serving] {
          auto* s = serving.load();
          return s != nullptr ? s->last_deadline_loop() : ms_rendezvous::core::Clock::Real()->Now();
        },
        [&serving, &standby] {
          auto* s = serving.load();
          return s != nullptr ? ms_rendezvous::server::ServingStatus(*s)
                              : absl::StrCat("standby; leader ", (*standby)->leader());
        });
    absl::StatusOr<ms_rendezvous::core::EtcdFence> fence =
        absl::UnknownError("campaign did not finish");
    std::atomic<bool> done{false};
    std::thread campaign([&] {
      fence = election->Campaign([&](const std::string& leader) {
        LOG(INFO) << "standby: the leader is " << (leader.empty() ? "(none)" : leader);
        (*standby)->SetLeader(leader);
      });
      done = true;
    });
    while (!done.load()) {
      timespec tick{0, 200 * 1000 * 1000};
      const int sig = sigtimedwait(&signals, nullptr, &tick);
      if (sig == SIGTERM || sig == SIGINT) {
        LOG(INFO) << "signal " << strsignal(sig) << " while standby: stopping";
        election->Stop();
        campaign.join();
        (void)election->Resign();
        return 0;
      }
    }
    campaign.join();
    if (!fence.ok()) {
      LOG(ERROR) << fence.status().message();
      return 1;
    }
    etcd_store->SetFence(*fence);
    (*standby)->Shutdown();
    flags.server.identity.role = "leader";
    flags.server.identity.self = flags.advertise;
    // A lost lease means another daemon may lead already: stop at once (the fence keeps any
    // write in flight from landing); systemd restarts this daemon as a standby.
    election->WatchLeadership([](absl::Status st) {
      RestartAsStandby(absl::StrCat("lost the leadership: ", st.message()));
    });
    g_leading = true;
  }
  auto server = ms_rendezvous::server::RendezvousServer::Start(flags.server);
  if (!server.ok()) {
    LOG(ERROR) << server.status().message();
    std::cerr << "ms-rendezvousd: " << server.status().message() << "\n";
    return 1;
  }
  if (metrics != nullptr) metrics->SetRegistry(&(*server)->registry());
  const auto& reg = flags.server.registry;
  LOG(INFO) << "ms-rendezvousd settings: listen=" << flags.server.listen
            << " bound_port=" << (*server)->port()
            << " default_topo_timeout=" << absl::FormatDuration(reg.default_topo_timeout)
            << " finished_job_ttl=" << absl::FormatDuration(reg.finished_job_ttl)
            << " max_watch_backlog=" << reg.max_watch_backlog
            << " kv_max_key_bytes=" << reg.kv_limits.max_key_bytes
            << " kv_max_value_bytes=" << reg.kv_limits.max_value_bytes
            << " kv_max_keys_per_job=" << reg.kv_limits.max_keys_per_job
            << " kv_max_bytes_per_job=" << reg.kv_limits.max_bytes_per_job
            << " max_receive_message_bytes=" << flags.server.max_receive_message_bytes
            << " max_jobs=" << reg.max_jobs
            << " max_members_per_job=" << reg.max_members_per_job
            << " keepalive_time=" << absl::FormatDuration(flags.server.keepalive_time)
            << " keepalive_timeout=" << absl::FormatDuration(flags.server.keepalive_timeout)
            << " min_ping_interval=" << absl::FormatDuration(flags.server.min_ping_interval)
            << " max_connection_idle=" << absl::FormatDuration(flags.server.max_connection_idle)
            << " session_queues=" << flags.server.session_queues
            << " default_node_timeout=" << absl::FormatDuration(reg.default_node_timeout)
            << " disconnect_grace=" << absl::FormatDuration(reg.disconnect_grace)
            << " shutdown_grace=" << absl::FormatDuration(flags.shutdown_grace) << " tls="
            << (flags.server.tls.cert_chain.empty()       ? "off"
                : flags.server.tls.client_ca.empty()      ? "on"
                                                          : "mutual")
            << " admin_token=" << (flags.server.auth.admin_token.empty() ? "none" : "set")
            << " status_requires_token=" << flags.server.auth.status_requires_token
            << " require_job_token=" << reg.require_job_token << " state="
            << (store != nullptr ? store->Describe()
                                 : std::string("memory (no --state-dir: jobs are lost when the "
                                               "daemon stops)"));
  if (election == nullptr && !WritePortFile(flags.port_file, (*server)->port())) return 1;
  std::cout << "ms-rendezvousd listening on " << (*server)->address() << std::endl;
  // Type=notify: READY=1 only now (port bound, state loaded, port file written); WATCHDOG=1
  // while the deadline loop makes progress. No-op without NOTIFY_SOCKET.
  if (election == nullptr) {
    systemd.Ready(ms_rendezvous::server::ServingStatus(**server));
    systemd.Start(**server);
  } else {
    serving = server->get();
    systemd.Status(absl::StrCat("leader (", flags.advertise, "): ",
                                ms_rendezvous::server::ServingStatus(**server)));
  }

  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGHUP) {
      // Reloadable: the admin token (rotation without a restart). A bad file keeps the old one.
      if (flags.admin_token_file.empty()) {
        LOG(INFO) << "SIGHUP: nothing to reload (no --admin-token-file)";
        continue;
      }
      std::string token, reload_error;
      if (!ReadAdminToken(flags.admin_token_file, &token, &reload_error)) {
        LOG(ERROR) << "SIGHUP: keeping the current admin token: " << reload_error;
        continue;
      }
      (*server)->SetAdminToken(token);
      LOG(INFO) << "SIGHUP: reloaded the admin token from " << flags.admin_token_file;
      continue;
    }
    LOG(INFO) << "signal " << strsignal(sig) << ": draining (waiting members get UNAVAILABLE)";
    break;
  }
  systemd.Stopping("draining: waiting members get UNAVAILABLE");
  (*server)->Shutdown(flags.shutdown_grace);
  if (election != nullptr) {
    // Hand over now instead of after the lease TTL: a standby takes over at once.
    absl::Status st = election->Resign();
    LOG(INFO) << "resigned the leadership: " << (st.ok() ? "ok" : std::string(st.message()));
  }
  LOG(INFO) << "ms-rendezvousd stopped";
  return 0;
}
