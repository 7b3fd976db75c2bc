// EtcdCluster: a real etcd cluster (Debian's /usr/bin/etcd, 3.4) of N members on 127.0.0.1 for
// one test, with faults on demand: kill -9, restart on the same data dir and ports, SIGSTOP /
// SIGCONT of single members.
//
// Ports: etcd cannot listen on port 0 and report the port, so free ports are found by binding
// sockets to 127.0.0.1:0 (all 2N at once, so they differ), reading them and closing the sockets
// just before etcd starts. Another process may take one in between; then a member exits with
// "address already in use" and Start() tries again with new ports (up to 3 times).
//
// Members run with a short heartbeat (50 ms) and election timeout (500 ms), so a lost leader is
// replaced within about a second; everything else is etcd's default (fsync on, --max-txn-ops
// 128, --max-request-bytes 1.5 MiB). Data dirs and logs live in one temp dir (m<i>/ and
// m<i>.log), removed by the destructor, which also SIGKILLs every member. A member also dies
// with the test process (PR_SET_PDEATHSIG), so a crashed test leaves no etcd behind.
#ifndef MS_RENDEZVOUS_TESTS_ETCD_ETCD_CLUSTER_H_
#define MS_RENDEZVOUS_TESTS_ETCD_ETCD_CLUSTER_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "store/etcd/etcd_client.h"

#ifndef MSR_ETCD_BIN
#define MSR_ETCD_BIN "/usr/bin/etcd"
#endif

// Skips the test (with the reason) when etcd is not installed; scripts/bootstrap.sh installs it,
// so in CI every etcd test runs.
#define MSR_REQUIRE_ETCD()                                    \
  do {                                                        \
    if (::access(MSR_ETCD_BIN, X_OK) != 0) {                  \
      GTEST_SKIP() << MSR_ETCD_BIN                            \
          " is missing (apt-get install etcd-server, or run " \
          "scripts/bootstrap.sh): skipping the etcd test";    \
    }                                                         \
  } while (0)

namespace ms_rendezvous::testing {

class EtcdCluster {
 public:
  // Starts `members` members and waits until every one serves linearizable reads.
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(
      int members, absl::Duration timeout = absl::Seconds(30)) {
    absl::Status last;
    for (int round = 0; round < 3; ++round) {
      std::unique_ptr<EtcdCluster> c(new EtcdCluster());
      last = c->Init(members);
      if (last.ok()) last = c->StartAll();
      if (last.ok()) last = c->WaitHealthy(timeout);
      if (last.ok()) return c;
      // Likely a port taken by someone else between the probe and etcd's bind: new ports.
    }
    return last;
  }

  ~EtcdCluster() {
    for (size_t i = 0; i < members_.size(); ++i) Kill(static_cast<int>(i));
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  const std::string& dir() const { return dir_; }
  // The client endpoint ("127.0.0.1:port") of member i, and of all members.
  std::string Endpoint(int i) const { return absl::StrCat("127.0.0.1:", members_[i].client_port); }
  std::vector<std::string> Endpoints() const {
    std::vector<std::string> out;
    for (int i = 0; i < size(); ++i) out.push_back(Endpoint(i));
    return out;
  }
  bool running(int i) const { return members_[i].pid > 0; }

  // kill -9 and reap (no-op when not running).
  void Kill(int i) {
    Member& m = members_[i];
    if (m.pid <= 0) return;
    ::kill(m.pid, SIGKILL);
    int status = 0;
    ::waitpid(m.pid, &status, 0);
    m.pid = -1;
  }
  // SIGSTOP / SIGCONT: the member keeps its sockets but stops answering (a hung machine).
  void Stop(int i) {
    if (members_[i].pid > 0) ::kill(members_[i].pid, SIGSTOP);
  }
  void Continue(int i) {
    if (members_[i].pid > 0) ::kill(members_[i].pid, SIGCONT);
  }

  // Starts member i again (same name, data dir and ports) and waits until it answers reads.
  absl::Status Restart(int i, absl::Duration timeout = absl::Seconds(20)) {
    Kill(i);
    if (absl::Status s = Spawn(i); !s.ok()) return s;
    return WaitServing(i, /*linearizable=*/false, absl::Now() + timeout);
  }

  // Every running member answers a linearizable read (it has a leader and the cluster a quorum).
  absl::Status WaitHealthy(absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time give_up = absl::Now() + timeout;
    for (int i = 0; i < size(); ++i) {
      if (!running(i)) continue;
      if (absl::Status s = WaitServing(i, /*linearizable=*/true, give_up); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // The end of member i's log, for failure messages.
  std::string LogTail(int i, size_t bytes = 2000) const {
    std::ifstream in(LogPath(i));
    std::stringstream ss;
    ss << in.rdbuf();
    std::string all = ss.str();
    return all.size() > bytes ? all.substr(all.size() - bytes) : all;
  }

 private:
  struct Member {
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
  };

  EtcdCluster() = default;

  std::string Name(int i) const { return absl::StrCat("m", i); }
  std::string LogPath(int i) const { return absl::StrCat(dir_, "/", Name(i), ".log"); }

  absl::Status Init(int n) {
    std::string tmpl = ::testing::TempDir() + "msr_etcd_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp ", tmpl, ": ", std::strerror(errno)));
    }
    dir_ = tmpl;
    // All 2n probe sockets stay open until every port is read, so the ports are distinct.
    std::vector<int> fds;
    std::vector<int> ports;
    for (int k = 0; k < 2 * n; ++k) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = 0;
      socklen_t len = sizeof(addr);
      if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
          ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        for (int f : fds) ::close(f);
        if (fd >= 0) ::close(fd);
        return absl::InternalError("cannot find a free port on 127.0.0.1");
      }
      fds.push_back(fd);
      ports.push_back(ntohs(addr.sin_port));
    }
    for (int f : fds) ::close(f);
    members_.resize(n);
    std::vector<std::string> initial;
    for (int i = 0; i < n; ++i) {
      members_[i].client_port = ports[2 * i];
      members_[i].peer_port = ports[2 * i + 1];
      initial.push_back(absl::StrCat(Name(i), "=http://127.0.0.1:", members_[i].peer_port));
    }
    initial_cluster_ = absl::StrJoin(initial, ",");
    token_ = absl::StrCat("msr-test-", ::getpid(), "-", std::random_device{}());
    return absl::OkStatus();
  }

  absl::Status StartAll() {
    for (int i = 0; i < size(); ++i) {
      if (absl::Status s = Spawn(i); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status Spawn(int i) {
    Member& m = members_[i];
    const std::string client = absl::StrCat("http://127.0.0.1:", m.client_port);
    const std::string peer = absl::StrCat("http://127.0.0.1:", m.peer_port);
    std::vector<std::string> args = {
        MSR_ETCD_BIN,
        "--name",
        Name(i),
        "--data-dir",
        absl::StrCat(dir_, "/", Name(i)),
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        initial_cluster_,
        "--initial-cluster-token",
        token_,
        "--initial-cluster-state",
        "new",  // ignored once the data dir exists (restarts)
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
        "--log-level",
        "warn",
    };
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = LogPath(i);
    // Everything the child needs is prepared before fork(): between fork and exec only
    // async-signal-safe calls (the test may run other threads).
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    m.pid = pid;
    return absl::OkStatus();
  }

  // Polls member i with a read of its own endpoint until it succeeds (serializable: the member
  // is up; linearizable: it also has a leader and a quorum).
  absl::Status WaitServing(int i, bool linearizable, absl::Time give_up) {
    etcd::EtcdClientOptions o;
    o.endpoints = {Endpoint(i)};
    o.call_timeout = absl::Seconds(1);
    auto client = etcd::EtcdClient::Create(o);
    if (!client.ok()) return client.status();
    absl::Status last;
    for (;;) {
      etcdserverpb::RangeRequest req;
      req.set_key("msr-health");
      req.set_serializable(!linearizable);
      auto resp = (*client)->Range(req, absl::Seconds(1));
      if (resp.ok()) return absl::OkStatus();
      last = resp.status();
      int status = 0;
      if (members_[i].pid > 0 && ::waitpid(members_[i].pid, &status, WNOHANG) == members_[i].pid) {
        members_[i].pid = -1;
        return absl::UnavailableError(
            absl::StrCat("etcd member ", Name(i), " exited; log:\n", LogTail(i)));
      }
      if (absl::Now() >= give_up) {
        return absl::DeadlineExceededError(
            absl::StrCat("etcd member ", Name(i), " at ", Endpoint(i),
                         " not serving: ", last.message(), "; log:\n", LogTail(i)));
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  std::string dir_;
  std::string initial_cluster_;
  std::string token_;
  std::vector<Member> members_;
};

}  // namespace ms_rendezvous::testing

#endif  // MS_RENDEZVOUS_TESTS_ETCD_ETCD_CLUSTER_H_
