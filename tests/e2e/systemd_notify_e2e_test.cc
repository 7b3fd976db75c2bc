// The sd_notify protocol of ms-rendezvousd, end to end without systemd: the test plays systemd's
// part with a unix datagram socket named by NOTIFY_SOCKET (see sd_notify(3)).
//   - READY=1 arrives only once the daemon listens (its --port-file exists) and carries STATUS=;
//   - WATCHDOG=1 arrives repeatedly (WATCHDOG_USEC=2s: every 0.5s) and never before READY=1;
//   - SIGTERM brings STOPPING=1, then a clean exit.
// And in process: SystemdNotifier withholds WATCHDOG=1 while the progress heartbeat is stale
// (a wedged core) and resumes when it moves again; without NOTIFY_SOCKET it does nothing.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "e2e/subprocess.h"
#include "gtest/gtest.h"
#include "server/systemd_notify.h"

namespace ms_rendezvous::testing {
namespace {

// The systemd side of the notify protocol: a bound AF_UNIX datagram socket.
class NotifySocket {
 public:
  NotifySocket() {
    static int counter = 0;
    path_ = absl::StrCat(TempDir(), "/notify-", getpid(), "-", counter++);
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path_.c_str());
    unlink(path_.c_str());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << path_;
  }
  ~NotifySocket() {
    close(fd_);
    unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

  // The next datagram, or "" after `timeout`.
  std::string Receive(absl::Duration timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) <= 0) return "";
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, n) : "";
  }
  // Receives until a datagram contains `needle` or `timeout` passes; every datagram seen
  // (including the match) is appended to `seen`.
  bool ReceiveUntil(const std::string& needle, absl::Duration timeout,
                    std::vector<std::string>* seen) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      std::string msg = Receive(deadline - absl::Now());
      if (msg.empty()) continue;
      seen->push_back(msg);
      if (absl::StrContains(msg, needle)) return true;
    }
    return false;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

int Count(const std::vector<std::string>& msgs, const std::string& needle) {
  int n = 0;
  for (const auto& m : msgs) n += absl::StrContains(m, needle) ? 1 : 0;
  return n;
}

// systemd variables of whoever runs the test must not leak into the daemon or the notifier.
void ClearSystemdEnv() {
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
}

TEST(SystemdNotifyE2E, ReadyAfterListeningWatchdogPingsAndStoppingOnSigterm) {
  ClearSystemdEnv();
  NotifySocket sock;
  const std::string port_file = absl::StrCat(TempDir(), "/sd-port-", getpid());
  const std::string state_dir = absl::StrCat(TempDir(), "/sd-state-", getpid());
  Subprocess daemon("ms-rendezvousd",
                    {"--listen", "127.0.0.1:0", "--port-file", port_file, "--state-dir", state_dir},
                    {{"NOTIFY_SOCKET", sock.path()}, {"WATCHDOG_USEC", "2000000"}});

  std::vector<std::string> seen;
  ASSERT_TRUE(sock.ReceiveUntil("READY=1", absl::Seconds(60), &seen))
      << "no READY=1; stderr:\n" << daemon.Stderr();
  // READY=1 comes after the listener is bound: the port file is already there.
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(port_file)), &port))
      << "READY=1 before the port file was written";
  EXPECT_GT(port, 0);
  EXPECT_EQ(Count(seen, "WATCHDOG=1"), 0) << "WATCHDOG=1 before READY=1";
  EXPECT_TRUE(absl::StrContains(seen.back(), "STATUS=serving 0 jobs")) << seen.back();
  std::cout << "READY message: " << seen.back() << std::endl;

  // WATCHDOG_USEC=2s: the daemon pings every 0.5s while its deadline loop runs.
  std::vector<std::string> pings;
  const absl::Time start = absl::Now();
  while (absl::Now() - start < absl::Seconds(3)) {
    std::string msg = sock.Receive(absl::Milliseconds(100));
    if (!msg.empty()) pings.push_back(msg);
  }
  const int watchdogs = Count(pings, "WATCHDOG=1");
  std::cout << "WATCHDOG=1 pings in 3s: " << watchdogs << std::endl;
  EXPECT_GE(watchdogs, 3) << "expected a ping every 0.5s";

  daemon.Signal(SIGTERM);
  std::vector<std::string> stop;
  EXPECT_TRUE(sock.ReceiveUntil("STOPPING=1", absl::Seconds(10), &stop))
      << "no STOPPING=1 after SIGTERM; stderr:\n" << daemon.Stderr();
  EXPECT_EQ(daemon.Wait(absl::Seconds(20)), std::optional<int>(0)) << daemon.Stderr();
}

TEST(SystemdNotifierTest, WithoutNotifySocketEverythingIsANoOp) {
  ClearSystemdEnv();
  server::SystemdNotifier notifier;
  EXPECT_FALSE(notifier.enabled());
  EXPECT_EQ(notifier.watchdog_timeout(), absl::ZeroDuration());
  notifier.Ready("x");
  notifier.Start([] { return core::MonoTime(); }, [] { return std::string("x"); });
  notifier.Stopping("y");
}

// A wedged core: the heartbeat stops moving, so the pings stop (systemd would restart the
// daemon); once it moves again the pings come back.
TEST(SystemdNotifierTest, StaleProgressWithholdsWatchdogPings) {
  ClearSystemdEnv();
  NotifySocket sock;
  setenv("NOTIFY_SOCKET", sock.path().c_str(), 1);
  setenv("WATCHDOG_USEC", "400000", 1);  // pings every 100ms; stale after max(3s, 200ms) = 3s
  // sd_notify() reads NOTIFY_SOCKET on every call: the variables stay set until the end.
  server::SystemdNotifier notifier;
  ASSERT_TRUE(notifier.enabled());
  EXPECT_EQ(notifier.watchdog_timeout(), absl::Milliseconds(400));
  EXPECT_EQ(notifier.MaxProgressAge(), absl::Seconds(3));

  std::atomic<bool> wedged{false};
  std::atomic<int64_t> wedged_at_ns{0};
  notifier.Start(
      [&]() -> core::MonoTime {
        if (!wedged) return std::chrono::steady_clock::now();
        return core::MonoTime(std::chrono::nanoseconds(wedged_at_ns.load()));
      },
      [] { return std::string("test"); });

  std::vector<std::string> healthy;
  const absl::Time t0 = absl::Now();
  while (absl::Now() - t0 < absl::Seconds(1)) {
    std::string msg = sock.Receive(absl::Milliseconds(50));
    if (!msg.empty()) healthy.push_back(msg);
  }
  EXPECT_GE(Count(healthy, "WATCHDOG=1"), 5) << "healthy core: a ping every 100ms";

  // Wedge the "core" as of now: pings continue for MaxProgressAge() (3s), then stop with a
  // STATUS= saying why.
  wedged_at_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                     std::chrono::steady_clock::now().time_since_epoch())
                     .count();
  wedged = true;
  std::vector<std::string> stalling;
  ASSERT_TRUE(sock.ReceiveUntil("STATUS=core stalled", absl::Seconds(6), &stalling));
  std::vector<std::string> after;
  const absl::Time t1 = absl::Now();
  while (absl::Now() - t1 < absl::Seconds(1)) {
    std::string msg = sock.Receive(absl::Milliseconds(50));
    if (!msg.empty()) after.push_back(msg);
  }
  EXPECT_EQ(Count(after, "WATCHDOG=1"), 0) << "a wedged core must not ping the watchdog";

  wedged = false;
  std::vector<std::string> resumed;
  EXPECT_TRUE(sock.ReceiveUntil("WATCHDOG=1", absl::Seconds(2), &resumed))
      << "pings resume once the heartbeat moves again";

  notifier.Stopping("bye");
  std::vector<std::string> stop;
  EXPECT_TRUE(sock.ReceiveUntil("STOPPING=1", absl::Seconds(2), &stop));
  ClearSystemdEnv();
}

}  // namespace
}  // namespace ms_rendezvous::testing
