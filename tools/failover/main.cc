// ms-rendezvous-failover-bench: how long a job is without its scheduler when the leader daemon
// dies (issue "High availability on etcd").
//
// One self-contained run on this machine, loopback only: a 3-member etcd cluster from
// /usr/bin/etcd (temp dir, free ports), two ms-rendezvousd with --store=etcd (one leads, one
// stands by), N members of one job -- each a real client library Client with its own session
// and its own channels, MS_SCHED_HOST listing both daemons. Once the job is complete the leader
// is killed with SIGKILL; the figures are
//   takeover:     kill -> the standby reports itself leader (lease TTL + campaign + load),
//   all resumed:  kill -> every member's client reported kResumed (same rank, same generation),
// and it checks that no member was declared dead and the job is still complete.
// Prints a table and one JSON line:
//   {"scenario":"failover","members":N,"lease_ttl_s":T,"takeover_s":..,"all_resumed_s":..,
//    "dead":0,"ok":true}
//
//   ms-rendezvous-failover-bench [--members 1000] [--lease-ttl 2s] [--bin-dir DIR]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "ms_rendezvous/client.h"

namespace {

namespace pb = ::ms::rendezvous::v1;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (std::freopen(log.c_str(), "w", stdout) == nullptr) _exit(126);
    dup2(STDOUT_FILENO, STDERR_FILENO);
    std::vector<char*> raw;
    for (const auto& a : argv) raw.push_back(const_cast<char*>(a.c_str()));
    raw.push_back(nullptr);
    execv(raw[0], raw.data());
    _exit(127);
  }
  return pid;
}

void Kill(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

std::string Role(const std::string& address) {
  auto stub = pb::RendezvousAdmin::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)));
  pb::ServerInfo info;
  return stub->GetServerInfo(&ctx, pb::GetServerInfoRequest(), &info).ok() ? info.role() : "";
}

bool WaitRole(const std::string& address, const std::string& role, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (Role(address) == role) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

int Fail(const std::string& why) {
  std::cerr << "ms-rendezvous-failover-bench: FAIL: " << why << std::endl;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int members = 1000;
  absl::Duration ttl = absl::Seconds(2);
  std::string bin_dir = std::filesystem::path(argv[0]).parent_path().string();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const std::string value = i + 1 < argc ? argv[i + 1] : "";
    if (arg == "--members" && absl::SimpleAtoi(value, &members) && members >= 2) {
      ++i;
    } else if (arg == "--lease-ttl" && absl::ParseDuration(value, &ttl) && ttl >= absl::Seconds(2)) {
      ++i;
    } else if (arg == "--bin-dir" && !value.empty()) {
      bin_dir = value;
      ++i;
    } else {
      std::cerr << "usage: ms-rendezvous-failover-bench [--members N>=2] [--lease-ttl DUR>=2s] "
                   "[--bin-dir DIR]\n(bad or unknown argument: " << arg << ")\n";
      return 2;
    }
  }
  // N clients log every resume at INFO: keep the figures readable.
  FLAGS_minloglevel = google::GLOG_WARNING;
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  if (access("/usr/bin/etcd", X_OK) != 0) return Fail("/usr/bin/etcd is missing (etcd-server)");
  char tmpl[] = "/tmp/msr-failover-XXXXXX";
  const std::string dir = mkdtemp(tmpl);

  // etcd: three members.
  std::vector<int> client_ports, peer_ports;
  for (int i = 0; i < 3; ++i) {
    client_ports.push_back(FreePort());
    peer_ports.push_back(FreePort());
  }
  std::vector<std::string> cluster, endpoints;
  for (int i = 0; i < 3; ++i) {
    cluster.push_back(absl::StrCat("e", i, "=http://127.0.0.1:", peer_ports[i]));
    endpoints.push_back(absl::StrCat("127.0.0.1:", client_ports[i]));
  }
  std::vector<pid_t> etcd;
  for (int i = 0; i < 3; ++i) {
    const std::string client = absl::StrCat("http://127.0.0.1:", client_ports[i]);
    const std::string peer = absl::StrCat("http://127.0.0.1:", peer_ports[i]);
    etcd.push_back(Spawn({"/usr/bin/etcd", "--name", absl::StrCat("e", i), "--data-dir",
                          absl::StrCat(dir, "/e", i), "--listen-client-urls", client,
                          "--advertise-client-urls", client, "--listen-peer-urls", peer,
                          "--initial-advertise-peer-urls", peer, "--initial-cluster",
                          absl::StrJoin(cluster, ","), "--initial-cluster-state", "new"},
                         absl::StrCat(dir, "/e", i, ".log")));
  }
  // Daemons A and B.
  const std::string daemon = bin_dir + "/ms-rendezvousd";
  const int port_a = FreePort(), port_b = FreePort();
  const std::string a = absl::StrCat("127.0.0.1:", port_a), b = absl::StrCat("127.0.0.1:", port_b);
  auto start = [&](const std::string& listen, const std::string& log) {
    return Spawn({daemon, "--listen", listen, "--store", "etcd", "--etcd-endpoints",
                  absl::StrJoin(endpoints, ","), "--leader-lease-ttl",
                  absl::StrCat(absl::ToInt64Seconds(ttl), "s")},
                 dir + "/" + log);
  };
  pid_t pid_a = start(a, "a.log");
  int rc = 0;
  std::vector<std::unique_ptr<ms_rendezvous::Client>> clients;
  pid_t pid_b = -1;
  do {
    if (!WaitRole(a, "leader", absl::Seconds(60))) {
      rc = Fail(absl::StrCat("daemon A did not lead; see ", dir, "/a.log"));
      break;
    }
    pid_b = start(b, "b.log");
    if (!WaitRole(b, "standby", absl::Seconds(30))) {
      rc = Fail(absl::StrCat("daemon B did not stand by; see ", dir, "/b.log"));
      break;
    }
    // N members, each its own Client (own channels, own session thread).
    std::atomic<int> resumed{0}, lost{0};
    for (int i = 0; i < members; ++i) {
      ms_rendezvous::ClientOptions o;
      o.role = ms_rendezvous::Role::kWorker;
      o.sched_host = a + "," + b;
      o.worker_num = members;
      o.node_id = std::to_string(i);
      o.job_id = "failover";
      o.topo_timeout = absl::Seconds(300);
      o.heartbeat_interval_lower = absl::Seconds(3);
      o.heartbeat_interval_upper = absl::Seconds(5);
      auto c = ms_rendezvous::Client::Create(o);
      if (!c.ok()) {
        rc = Fail(std::string(c.status().message()));
        break;
      }
      (*c)->SetEventCallback([&](const ms_rendezvous::SessionEvent& e) {
        if (e.type == ms_rendezvous::SessionEventType::kResumed) ++resumed;
        if (e.type == ms_rendezvous::SessionEventType::kSessionLost ||
            e.type == ms_rendezvous::SessionEventType::kJobFailed) {
          ++lost;
        }
      });
      clients.push_back(*std::move(c));
    }
    if (rc != 0) break;
    std::atomic<int> joined{0}, join_errors{0};
    std::vector<std::thread> joins;
    const absl::Time join_start = absl::Now();
    for (auto& c : clients) {
      joins.emplace_back([&, client = c.get()] {
        (client->Join().ok() ? joined : join_errors)++;
      });
    }
    for (auto& t : joins) t.join();
    if (join_errors > 0) {
      rc = Fail(absl::StrCat(join_errors.load(), " joins failed"));
      break;
    }
    std::cout << members << " members joined in "
              << absl::FormatDuration(absl::Now() - join_start) << std::endl;

    const absl::Time killed = absl::Now();
    kill(pid_a, SIGKILL);
    waitpid(pid_a, nullptr, 0);
    pid_a = -1;
    if (!WaitRole(b, "leader", absl::Seconds(60))) {
      rc = Fail("the standby did not take over");
      break;
    }
    const absl::Duration takeover = absl::Now() - killed;
    const absl::Time resume_deadline = absl::Now() + absl::Seconds(120);
    while (resumed.load() + lost.load() < members && absl::Now() < resume_deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    const absl::Duration all_resumed = absl::Now() - killed;
    // Liveness after a few heartbeat rounds: nobody declared dead by the failover.
    absl::SleepFor(absl::Seconds(2));
    auto admin =
        pb::RendezvousAdmin::NewStub(grpc::CreateChannel(b, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    pb::GetJobRequest req;
    req.set_job_id("failover");
    req.set_max_members(1);
    pb::GetJobResponse job;
    grpc::Status st = admin->GetJob(&ctx, req, &job);
    const bool complete = st.ok() && job.job().state() == pb::JOB_STATE_COMPLETE;
    const uint32_t dead = st.ok() ? job.job().dead() : 0;
    const bool ok = complete && dead == 0 && resumed.load() == members && lost.load() == 0;
    std::cout << absl::StrFormat(
        "failover of the leader daemon (kill -9), %d members, lease ttl %s\n"
        "  takeover (standby leads, state loaded)   %8.2f s\n"
        "  all members resumed                      %8.2f s\n"
        "  resumed / lost / declared dead           %d / %d / %u\n"
        "  job after failover                       %s\n",
        members, absl::FormatDuration(ttl), absl::ToDoubleSeconds(takeover),
        absl::ToDoubleSeconds(all_resumed), resumed.load(), lost.load(), dead,
        complete ? "complete" : "NOT complete");
    std::cout << absl::StrFormat(
                     "{\"scenario\":\"failover\",\"members\":%d,\"lease_ttl_s\":%d,"
                     "\"takeover_s\":%.3f,\"all_resumed_s\":%.3f,\"resumed\":%d,\"lost\":%d,"
                     "\"dead\":%u,\"ok\":%s}",
                     members, static_cast<int>(absl::ToInt64Seconds(ttl)),
                     absl::ToDoubleSeconds(takeover), absl::ToDoubleSeconds(all_resumed),
                     resumed.load(), lost.load(), dead, ok ? "true" : "false")
              << std::endl;
    if (!ok) rc = Fail(absl::StrCat("see ", dir, " for the daemons' logs"));
  } while (false);
  for (auto& c : clients) c.reset();
  Kill(pid_a);
  Kill(pid_b);
  for (pid_t p : etcd) Kill(p);
  if (rc == 0) std::filesystem::remove_all(dir);
  return rc;
}
