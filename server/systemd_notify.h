// systemd readiness and watchdog for ms-rendezvousd (Type=notify, see systemd/ms-rendezvousd.service).
//
// Protocol (sd_notify(3)): READY=1 once the listener is bound and state is loaded, STATUS= lines
// for `systemctl status`, STOPPING=1 when draining, and WATCHDOG=1 every WatchdogSec/4 while the
// core makes progress. Progress is the deadline thread's heartbeat
// (RendezvousServer::last_deadline_loop()): that loop wakes at least once a second and goes
// through the registry's locks, so when it stalls (deadlock, a store call that never returns)
// the pings stop and systemd kills and restarts the daemon (WatchdogSec=, Restart=on-failure).
//
// Without NOTIFY_SOCKET (run by hand, in a container, in tests) every call is a no-op; without
// WATCHDOG_USEC (or when WATCHDOG_PID names another process) no watchdog thread runs.
#ifndef MS_RENDEZVOUS_SERVER_SYSTEMD_NOTIFY_H_
#define MS_RENDEZVOUS_SERVER_SYSTEMD_NOTIFY_H_

#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "server/server.h"

namespace ms_rendezvous::server {

class SystemdNotifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC from the environment.
  SystemdNotifier();
  ~SystemdNotifier();  // Stop()
  SystemdNotifier(const SystemdNotifier&) = delete;
  SystemdNotifier& operator=(const SystemdNotifier&) = delete;

  // True when NOTIFY_SOCKET is set (the daemon runs under systemd with Type=notify).
  bool enabled() const { return enabled_; }
  // The watchdog interval systemd expects pings within; zero when the watchdog is off.
  absl::Duration watchdog_timeout() const { return watchdog_; }

  // READY=1 plus a STATUS= line.
  void Ready(const std::string& status);
  void Status(const std::string& status);
  // STOPPING=1 plus a STATUS= line. Stops the watchdog thread first.
  void Stopping(const std::string& status);

  // Starts the notifier thread (only when enabled()). With the watchdog on it sends WATCHDOG=1
  // every watchdog_timeout()/4, but only while `last_progress()` is at most
  // MaxProgressAge() old; a stalled core is logged and reported in STATUS=. Every 10 s it
  // sends STATUS=`status()`. Both callbacks run on the notifier thread.
  void Start(std::function<core::MonoTime()> last_progress,
             std::function<std::string()> status);
  // Start() with the server's deadline-loop heartbeat and ServingStatus(). `server` must
  // outlive Stop().
  void Start(RendezvousServer& server);
  // Stops and joins the notifier thread. Idempotent.
  void Stop();

  // How stale the progress heartbeat may be before pings stop: half the watchdog timeout,
  // at least 3 s (the deadline loop wakes every second; a busy ProcessDeadlines may take longer).
  absl::Duration MaxProgressAge() const;

 private:
  void Send(const std::string& state);
  void Loop();

  bool enabled_ = false;
  absl::Duration watchdog_ = absl::ZeroDuration();
  std::function<core::MonoTime()> last_progress_;
  std::function<std::string()> status_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
};

// "serving N jobs (F forming, C complete, D degraded; R finished/failed retained), M members
// connected or waiting, port P". Cheap: JobRegistry::Counts(), one short lock per job.
std::string ServingStatus(RendezvousServer& server);

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_SYSTEMD_NOTIFY_H_
