#include "server/systemd_notify.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace ms_rendezvous::server {

SystemdNotifier::SystemdNotifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
  if (!enabled_) return;
  uint64_t usec = 0;
  // 0 = no watchdog; > 0 = enabled for this process (checks WATCHDOG_PID too).
  const int r = sd_watchdog_enabled(/*unset_environment=*/0, &usec);
  if (r > 0 && usec > 0) watchdog_ = absl::Microseconds(static_cast<int64_t>(usec));
  if (r < 0) LOG(WARNING) << "systemd: invalid WATCHDOG_USEC/WATCHDOG_PID: " << std::strerror(-r);
  LOG(INFO) << "systemd: notify socket " << socket << ", watchdog "
            << (watchdog_ > absl::ZeroDuration() ? absl::FormatDuration(watchdog_)
                                                 : std::string("off"));
}

SystemdNotifier::~SystemdNotifier() { Stop(); }

void SystemdNotifier::Send(const std::string& state) {
  if (!enabled_) return;
  const int r = sd_notify(/*unset_environment=*/0, state.c_str());
  if (r < 0) {
    LOG_EVERY_N(WARNING, 100) << "systemd: sd_notify failed: " << std::strerror(-r);
  }
}

void SystemdNotifier::Ready(const std::string& status) {
  Send(absl::StrCat("READY=1\nSTATUS=", status));
}

void SystemdNotifier::Status(const std::string& status) { Send(absl::StrCat("STATUS=", status)); }

void SystemdNotifier::Stopping(const std::string& status) {
  Stop();
  Send(absl::StrCat("STOPPING=1\nSTATUS=", status));
}

absl::Duration SystemdNotifier::MaxProgressAge() const {
  return std::max(absl::Seconds(3), watchdog_ / 2);
}

void SystemdNotifier::Start(std::function<core::MonoTime()> last_progress,
                            std::function<std::string()> status) {
  if (!enabled_ || thread_.joinable()) return;
  last_progress_ = std::move(last_progress);
  status_ = std::move(status);
  thread_ = std::thread([this] { Loop(); });
}

void SystemdNotifier::Start(RendezvousServer& server) {
  RendezvousServer* s = &server;
  Start([s] { return s->last_deadline_loop(); }, [s] { return ServingStatus(*s); });
}

std::string ServingStatus(RendezvousServer& server) {
  const core::RegistryCounts c = server.registry().Counts();
  using core::JobState;
  using core::MemberState;
  auto jobs = [&](JobState s) { return c.jobs[static_cast<int>(s)]; };
  auto members = [&](MemberState s) { return c.members[static_cast<int>(s)]; };
  const uint64_t live = jobs(JobState::kForming) + jobs(JobState::kComplete) +
                        jobs(JobState::kDegraded);
  return absl::StrCat("serving ", live, " job", live == 1 ? "" : "s", " (",
                      jobs(JobState::kForming), " forming, ", jobs(JobState::kComplete),
                      " complete, ", jobs(JobState::kDegraded), " degraded; ",
                      jobs(JobState::kFinished) + jobs(JobState::kFailed),
                      " finished/failed retained), ",
                      members(MemberState::kWaiting) + members(MemberState::kActive) +
                          members(MemberState::kSuspect),
                      " members connected or waiting, port ", server.port());
}

void SystemdNotifier::Stop() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void SystemdNotifier::Loop() {
  const bool watchdog = watchdog_ > absl::ZeroDuration();
  const absl::Duration tick = watchdog ? std::min(watchdog_ / 4, absl::Seconds(10)) : absl::Seconds(10);
  constexpr absl::Duration kStatusEvery = absl::Seconds(10);
  absl::Time next_status = absl::Now() + kStatusEvery;
  bool stalled = false;
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), tick)) return;
    }
    const absl::Duration age =
        core::ToDuration(std::chrono::steady_clock::now() - last_progress_());
    const bool fresh = age <= MaxProgressAge();
    if (!fresh) {
      if (!stalled) {
        LOG(ERROR) << "systemd: the deadline loop last ran " << absl::FormatDuration(age)
                   << " ago: the core looks wedged"
                   << (watchdog ? "; withholding WATCHDOG=1 so systemd restarts the daemon" : "");
        Send(absl::StrCat("STATUS=core stalled: deadline loop last ran ",
                          absl::FormatDuration(absl::Trunc(age, absl::Milliseconds(1))), " ago"));
      }
      stalled = true;
      continue;
    }
    if (stalled) LOG(WARNING) << "systemd: the deadline loop is running again";
    stalled = false;
    if (watchdog) Send("WATCHDOG=1");
    if (absl::Now() >= next_status) {
      next_status = absl::Now() + kStatusEvery;
      Status(status_());
    }
  }
}

}  // namespace ms_rendezvous::server
