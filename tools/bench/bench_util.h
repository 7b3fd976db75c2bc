// Helpers shared by the bench scenarios: clocks, a countdown latch, percentiles, channels, and
// one member's Session stream (callback API: no thread per member).
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_BENCH_UTIL_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_BENCH_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"

namespace ms_rendezvous::bench {

namespace v1 = ::ms::rendezvous::v1;

// Monotonic nanoseconds.
int64_t NowNs();
// The bench's own user + system CPU.
double CpuSeconds();

// Counts outstanding calls; the waiter wakes once, when the last one finishes (no per-call
// notify, which would wake the main thread N times).
class Countdown {
 public:
  explicit Countdown(uint64_t n) : remaining_(n), done_(n == 0) {}
  void Done();
  void Wait();
  // False when `timeout` passed first.
  bool WaitFor(absl::Duration timeout);
  uint64_t remaining() const { return remaining_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint64_t> remaining_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

// Nearest-rank percentile (0..1) of sorted nanosecond values, in milliseconds.
double PercentileMs(const std::vector<int64_t>& sorted_ns, double p);

struct ChannelOptions {
  std::string server;
  uint32_t connections = 1;
  absl::Duration connect_timeout = absl::Seconds(60);
  // Reconnect on the client library's short backoff (50 ms growing to 2 s) instead of gRPC's
  // default (1 s growing to 120 s): what members do while a daemon restarts. The minimum
  // connect timeout stays gRPC's 20 s (see bench_util.cc).
  bool fast_reconnect = false;
};

// `connections` channels, each its own TCP connection, brought to READY.
// Errors: Unavailable when one fails to connect.
absl::StatusOr<std::vector<std::shared_ptr<grpc::Channel>>> ConnectChannels(
    const ChannelOptions& options);

// One Session stream of one member. Owned by the scenario; the callbacks run on gRPC's threads
// and must not block. The stream is never half-closed (a half-close is a lost session for the
// daemon); it ends by Leave() (daemon answers OK), Cancel(), or the daemon ending it.
class SessionStream : public grpc::ClientBidiReactor<v1::SessionRequest, v1::SessionResponse> {
 public:
  struct Callbacks {
    std::function<void(SessionStream*, const v1::Topology&)> on_topology;
    std::function<void(SessionStream*, const v1::JobEvent&)> on_event;
    std::function<void(SessionStream*, const grpc::Status&)> on_done;
    // Counts heartbeat messages written to the transport (optional).
    std::atomic<uint64_t>* heartbeats_written = nullptr;
  };

  SessionStream(uint32_t member, const Callbacks* callbacks) : member_(member), cb_(callbacks) {}

  // Sends `first` (join or resume) and reads until the stream ends. wait_for_ready=false fails
  // at once (UNAVAILABLE) while the channel cannot connect, so the caller's backoff decides.
  void Start(v1::Rendezvous::Stub* stub, v1::SessionRequest first, bool wait_for_ready);
  // Finalizes the member; the daemon ends the stream with OK.
  void Leave(const v1::MemberRef& ref);
  // Proof of life (no answer). Queued behind any write in flight; returns the number of writes
  // that were already queued (0: the stream's writer was idle), or -1 when the stream is ending
  // and nothing was sent.
  int64_t Heartbeat();
  // Breaks the stream as a killed process would (RST_STREAM: the daemon sees it drop).
  void Cancel() { ctx_.TryCancel(); }

  uint32_t member() const { return member_; }
  int64_t start_ns = 0;
  bool resume = false;  // opened to resume a registration (after a daemon restart)

  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  const uint32_t member_;
  const Callbacks* const cb_;
  grpc::ClientContext ctx_;
  v1::SessionResponse response_;
  std::mutex mu_;
  std::deque<v1::SessionRequest> writes_;  // front is being written
  bool write_done_seen_ = false;
  // The read loop ended (the stream is ending): no write may be started any more. While a read is
  // pending the call cannot finish, so a write started under mu_ before this is set is safe.
  bool reads_ended_ = false;
};

// A single timer thread running closures at their due time (retry backoff of many members
// without a thread or an alarm object each).
class TimerThread {
 public:
  TimerThread();
  ~TimerThread();  // runs nothing that is still pending
  void At(int64_t due_ns, std::function<void()> fn);

 private:
  struct Item {
    int64_t due_ns;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Item& o) const { return due_ns != o.due_ns ? due_ns > o.due_ns : seq > o.seq; }
  };
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> items_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

// Client-library backoff: 50 ms doubling to 2 s, each wait scaled by a uniform [0.5, 1.5).
absl::Duration JitteredBackoff(uint32_t attempt);

// A member's next reconnect attempt, timed as the client library's WaitBeforeRetry times it: at
// the end of its backoff, or as soon as its channel is READY (the daemon is back), whichever
// comes first. While the daemon is down gRPC keeps the channel in TRANSIENT_FAILURE and retries
// the connection on its own (cheap) schedule; an attempt made then fails at once with the last
// connect error, so a backoff timer alone fires after the daemon is back only by chance, up to
// 3 s late (2 s x 1.5). A channel that is already READY when the wait starts means the daemon
// itself refused: then the backoff runs in full.
class RetryScheduler {
 public:
  RetryScheduler();
  // Runs nothing still pending; waits for gRPC to return the channel watches (each ends at its
  // due time at the latest).
  ~RetryScheduler();

  // Runs `fn` exactly once, on this scheduler's threads: at `due_ns` (NowNs() clock) or when
  // `channel` (may be null: backoff only; must outlive the scheduler) reports READY, whichever
  // is first. `fn` must not block.
  void Schedule(grpc::Channel* channel, int64_t due_ns, std::function<void()> fn);

  // Retries run because the channel became READY before the backoff ended (for reports/tests).
  uint64_t woken_by_ready() const { return woken_by_ready_.load(); }

 private:
  struct Pending {
    std::atomic<bool> fired{false};
    std::function<void()> fn;
  };
  struct Watch {
    std::shared_ptr<Pending> pending;
    grpc::Channel* channel;
    int64_t due_ns;
  };
  static bool Fire(Pending& p, std::atomic<uint64_t>* count = nullptr);
  void Arm(Watch* w, grpc_connectivity_state last);
  void RunWatches();

  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> woken_by_ready_{0};
  std::atomic<int64_t> watches_{0};  // handed to gRPC and not returned yet
  grpc::CompletionQueue cq_;
  TimerThread timer_;
  std::thread watch_thread_;
};

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_BENCH_UTIL_H_
