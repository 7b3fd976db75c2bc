// Shared helpers of the core fuzzers: invariant checks that trap, and fake sinks that count.
#ifndef MS_RENDEZVOUS_FUZZ_FUZZ_UTIL_H_
#define MS_RENDEZVOUS_FUZZ_FUZZ_UTIL_H_

#include <cstdio>
#include <memory>

#include "core/job_registry.h"

#define MSR_FUZZ_CHECK(cond)                                                      \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "invariant violated: %s (%s:%d)\n", #cond, __FILE__, \
                   __LINE__);                                                     \
      __builtin_trap();                                                           \
    }                                                                             \
  } while (0)

namespace ms_rendezvous::fuzz {

// Counts how often a one-shot callback ran; traps on the second run.
struct CallCount {
  int calls = 0;
  void Hit() {
    ++calls;
    MSR_FUZZ_CHECK(calls == 1);
  }
};

// A session sink: nothing may arrive after OnEnd, and OnEnd arrives at most once.
class FakeSession final : public core::MemberSession {
 public:
  void OnRegistered(const core::MemberRef& ref) override { Alive(); }
  void OnTopology(const core::Topology& t) override {
    Alive();
    ++topologies;
  }
  void OnEvent(const core::JobEvent& e) override { Alive(); }
  void OnEnd(const absl::Status& s) override {
    Alive();
    ended = true;
  }
  int topologies = 0;
  bool ended = false;

 private:
  void Alive() { MSR_FUZZ_CHECK(!ended); }
};

}  // namespace ms_rendezvous::fuzz

#endif  // MS_RENDEZVOUS_FUZZ_FUZZ_UTIL_H_
