// Effects: work collected under a lock and run after it is released.
//
// Completion callbacks re-enter gRPC (Finish, Write) and may call back into the core; running
// them under a core mutex invites deadlocks and stalls every other member of the job. Core
// methods therefore append closures to an Effects object declared BEFORE the lock in the
// caller's scope, so that its destructor runs them after the lock guard is gone.
#ifndef MS_RENDEZVOUS_CORE_EFFECTS_H_
#define MS_RENDEZVOUS_CORE_EFFECTS_H_

#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace ms_rendezvous::core {

class Effects {
 public:
  Effects() = default;
  Effects(const Effects&) = delete;
  Effects& operator=(const Effects&) = delete;
  ~Effects() { Run(); }

  void Add(absl::AnyInvocable<void()> fn) { fns_.push_back(std::move(fn)); }
  void Reserve(size_t n) { fns_.reserve(fns_.size() + n); }

  // Runs (and drops) everything collected so far, in order.
  void Run() {
    // Effects may add effects (rare); loop until drained.
    while (!fns_.empty()) {
      std::vector<absl::AnyInvocable<void()>> batch;
      batch.swap(fns_);
      for (auto& fn : batch) fn();
    }
  }

 private:
  std::vector<absl::AnyInvocable<void()>> fns_;
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_EFFECTS_H_
