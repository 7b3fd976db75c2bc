// DeadlineQueue: a min-heap of timers, the core's only notion of "later".
//
// Entries are never removed eagerly: a job that completes before its topology deadline simply
// ignores the entry when it pops (the owner checks job uid and state). Push and pop are
// O(log n); nothing ever scans all jobs or members.
#ifndef MS_RENDEZVOUS_CORE_DEADLINE_QUEUE_H_
#define MS_RENDEZVOUS_CORE_DEADLINE_QUEUE_H_

#include <cstdint>
#include <queue>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/clock.h"

namespace ms_rendezvous::core {

enum class DeadlineKind { kTopologyTimeout, kForgetJob };

struct Deadline {
  MonoTime when;
  DeadlineKind kind;
  std::string job_id;
  uint64_t job_uid;  // the incarnation of the job id the timer belongs to
};

class DeadlineQueue {
 public:
  // Adds a timer. Returns true when it is now the earliest one (the owner's timer thread may
  // have to wake up sooner).
  bool Push(Deadline d) {
    absl::MutexLock l(&mu_);
    bool earliest = heap_.empty() || d.when < heap_.top().when;
    heap_.push(std::move(d));
    return earliest;
  }

  // Removes and returns every timer due at `now`, earliest first.
  std::vector<Deadline> PopDue(MonoTime now) {
    std::vector<Deadline> due;
    absl::MutexLock l(&mu_);
    while (!heap_.empty() && heap_.top().when <= now) {
      due.push_back(heap_.top());
      heap_.pop();
    }
    return due;
  }

  // When the earliest timer is due; MonoTime::max() when there is none.
  MonoTime Next() {
    absl::MutexLock l(&mu_);
    return heap_.empty() ? MonoTime::max() : heap_.top().when;
  }

  size_t size() {
    absl::MutexLock l(&mu_);
    return heap_.size();
  }

 private:
  struct Later {
    bool operator()(const Deadline& a, const Deadline& b) const { return a.when > b.when; }
  };
  absl::Mutex mu_;
  std::priority_queue<Deadline, std::vector<Deadline>, Later> heap_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_DEADLINE_QUEUE_H_
