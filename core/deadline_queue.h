// DeadlineQueue: a min-heap of timers, the core's only notion of "later".
//
// Entries are never removed eagerly: when an entry pops, its owner re-checks the current state
// (job uid, member incarnation, last time heard from) and ignores it or pushes a later one. So a
// heartbeat is O(1) (it only stores a time) and each member has at most one liveness entry in
// the heap at a time; nothing ever scans all jobs or members.
#ifndef MS_RENDEZVOUS_CORE_DEADLINE_QUEUE_H_
#define MS_RENDEZVOUS_CORE_DEADLINE_QUEUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/clock.h"
#include "core/compact.h"
#include "core/types.h"

namespace ms_rendezvous::core {

enum class DeadlineKind {
  kTopologyTimeout,  // the job must be complete by now
  kForgetJob,        // a finished/failed job is dropped from the registry
  kMemberLiveness,   // a member must have been heard from within MS_NODE_TIMEOUT
  kMemberSuspect,    // a disconnected member must have resumed by now
  kKvWaiter,         // a blocked KV Get/Wait gives up (waiter_id)
  kBarrier,          // a barrier instance times out (node_id = name, incarnation = instance)
};

// The id of a timer's job, shared with the job: a job arms one liveness timer per member, and a
// copy of the id in each would be one more small heap block per member (see core/compact.h).
using JobIdRef = std::shared_ptr<const std::string>;

struct Deadline {
  MonoTime when;
  DeadlineKind kind;
  JobIdRef job_id;
  uint64_t job_uid;  // the incarnation of the job id the timer belongs to
  // Member timers only.
  Role role = Role::kWorker;
  NodeId node_id = {};  // inline: 100,000 liveness timers are armed at once at formation
  uint64_t incarnation = 0;
  uint64_t waiter_id = 0;  // kKvWaiter only
};

class DeadlineQueue {
 public:
  // Called (outside the queue's lock, possibly under a job's lock) when a pushed timer is
  // earlier than every pending one, so the owner's timer thread can wake up sooner. It must not
  // call into the registry.
  void SetObserver(std::function<void(MonoTime)> observer) { observer_ = std::move(observer); }

  void Push(Deadline d) {
    const MonoTime when = d.when;
    bool earliest;
    {
      absl::MutexLock l(&mu_);
      earliest = heap_.empty() || when < heap_.top().when;
      heap_.push(std::move(d));
    }
    if (earliest && observer_) observer_(when);
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
  std::function<void(MonoTime)> observer_;
  absl::Mutex mu_;
  std::priority_queue<Deadline, std::vector<Deadline>, Later> heap_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_DEADLINE_QUEUE_H_
