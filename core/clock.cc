#include "core/clock.h"

namespace ms_rendezvous::core {
namespace {

class RealClock final : public Clock {
 public:
  MonoTime Now() override { return std::chrono::steady_clock::now(); }
};

}  // namespace

Clock* Clock::Real() {
  static RealClock* clock = new RealClock();
  return clock;
}

}  // namespace ms_rendezvous::core
