// RpcObserver: process-wide hook through which the gRPC services report per-method latency and
// connected sessions to the metrics exporter (server/metrics.h), without depending on it. No
// observer installed (the default, and always in the client library's embedded scheduler):
// every call below is a relaxed atomic load and nothing else.
#ifndef MS_RENDEZVOUS_SERVER_RPC_OBSERVER_H_
#define MS_RENDEZVOUS_SERVER_RPC_OBSERVER_H_

#include <atomic>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ms_rendezvous::server {

class RpcObserver {
 public:
  virtual ~RpcObserver() = default;
  // `method` is a string literal ("Join", "KvGet", ...). Thread-safe, cheap, non-blocking.
  virtual void OnRpcDone(const char* method, absl::Duration latency) = 0;
  virtual void OnSessionOpened() = 0;
  virtual void OnSessionClosed() = 0;
};

inline std::atomic<RpcObserver*> g_rpc_observer{nullptr};

// Installs `observer` (not owned; must outlive every call; nullptr removes it).
inline void SetRpcObserver(RpcObserver* observer) {
  g_rpc_observer.store(observer, std::memory_order_release);
}
inline RpcObserver* GetRpcObserver() { return g_rpc_observer.load(std::memory_order_acquire); }

// Measures one call: from construction to destruction (or Done()). Movable, so a completion
// callback can own it: the latency is then recorded when the callback is destroyed, after it ran.
class RpcTimer {
 public:
  explicit RpcTimer(const char* method)
      : method_(GetRpcObserver() != nullptr ? method : nullptr),
        start_(method_ != nullptr ? absl::Now() : absl::Time()) {}
  RpcTimer(RpcTimer&& other) noexcept : method_(other.method_), start_(other.start_) {
    other.method_ = nullptr;
  }
  RpcTimer& operator=(RpcTimer&&) = delete;
  RpcTimer(const RpcTimer&) = delete;
  ~RpcTimer() { Done(); }

  void Done() {
    if (method_ == nullptr) return;
    if (RpcObserver* o = GetRpcObserver()) o->OnRpcDone(method_, absl::Now() - start_);
    method_ = nullptr;
  }

 private:
  const char* method_;
  absl::Time start_;
};

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_RPC_OBSERVER_H_
