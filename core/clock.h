// Monotonic, injectable time for the core.
//
// Every deadline in the core (topology timeout, job retention, later heartbeats) is computed
// from a Clock, never from the wall clock: a wall-clock jump (NTP step, operator typo) must
// change nothing. Tests use FakeClock and advance it by hand.
#ifndef MS_RENDEZVOUS_CORE_CLOCK_H_
#define MS_RENDEZVOUS_CORE_CLOCK_H_

#include <chrono>
#include <limits>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ms_rendezvous::core {

// A point on the monotonic clock.
using MonoTime = std::chrono::steady_clock::time_point;

inline absl::Duration ToDuration(std::chrono::steady_clock::duration d) {
  return absl::FromChrono(d);
}
// t + d, saturating at MonoTime::max()/min() instead of overflowing (durations come from the
// wire: MS_TOPO_TIMEOUT / MS_NODE_TIMEOUT in milliseconds may be close to INT64_MAX).
inline MonoTime AddDuration(MonoTime t, absl::Duration d) {
  if (d == absl::InfiniteDuration()) return MonoTime::max();
  if (d == -absl::InfiniteDuration()) return MonoTime::min();
  using Rep = MonoTime::duration::rep;
  const Rep base = t.time_since_epoch().count();
  const Rep delta = std::chrono::duration_cast<MonoTime::duration>(
                        absl::ToChronoNanoseconds(d))  // saturates for huge durations
                        .count();
  if (delta > 0 && base > std::numeric_limits<Rep>::max() - delta) return MonoTime::max();
  if (delta < 0 && base < std::numeric_limits<Rep>::min() - delta) return MonoTime::min();
  return t + MonoTime::duration(delta);
}

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime Now() = 0;
  // Wall-clock time, for display only (event timestamps). Never used for decisions.
  virtual absl::Time WallNow() { return absl::Now(); }

  // The process-wide real clock.
  static Clock* Real();
};

// Test clock: time moves only when Advance() is called.
class FakeClock final : public Clock {
 public:
  MonoTime Now() override {
    absl::MutexLock l(&mu_);
    return now_;
  }
  absl::Time WallNow() override {
    absl::MutexLock l(&mu_);
    return wall_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ = AddDuration(now_, d);
    wall_ += d;
  }
  // Moves only the wall clock (an NTP step, an operator's typo): must change nothing.
  void JumpWallClock(absl::Duration d) {
    absl::MutexLock l(&mu_);
    wall_ += d;
  }

 private:
  absl::Mutex mu_;
  MonoTime now_ ABSL_GUARDED_BY(mu_) = MonoTime() + std::chrono::hours(1000);
  absl::Time wall_ ABSL_GUARDED_BY(mu_) = absl::UnixEpoch();
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_CLOCK_H_
