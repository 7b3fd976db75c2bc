// Prometheus exporter of the daemon (--metrics-listen): implements the core's MetricsSink and the
// services' RpcObserver with prometheus-cpp counters and histograms (atomic: safe and cheap under
// the core's job locks), and computes the state gauges on each scrape from
// JobRegistry::Counts() (O(jobs)). Every metric is named ms_rendezvous_*; see README "Metrics".
#ifndef MS_RENDEZVOUS_SERVER_METRICS_H_
#define MS_RENDEZVOUS_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/job_registry.h"
#include "core/metrics_sink.h"
#include "server/rpc_observer.h"

namespace prometheus {
class Counter;
class Exposer;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace ms_rendezvous::server {

class Metrics final : public core::MetricsSink, public RpcObserver {
 public:
  Metrics();
  ~Metrics() override;

  // Serves /metrics on `listen` ("HOST:PORT", port 0 = any). Unavailable when it cannot bind.
  absl::Status Listen(const std::string& listen);
  // The bound port (after Listen).
  int port() const { return port_; }
  // Where the jobs/members gauges come from; set once the server started (nullptr: omitted).
  void SetRegistry(core::JobRegistry* registry) { registry_.store(registry); }
  // The exposition text, as a scrape would see it (for tests).
  std::string Render() const;

  // core::MetricsSink
  void OnJoin(core::Role role) override;
  void OnRejection(absl::string_view code) override;
  void OnHeartbeat() override;
  void OnMemberDead(core::DeathKind kind, absl::Duration latency) override;
  void OnKvOp(core::KvOp op) override;
  // RpcObserver
  void OnRpcDone(const char* method, absl::Duration latency) override;
  void OnSessionOpened() override;
  void OnSessionClosed() override;

 private:
  class StateGauges;

  std::shared_ptr<prometheus::Registry> prom_;
  std::shared_ptr<StateGauges> gauges_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::atomic<core::JobRegistry*> registry_{nullptr};
  int port_ = 0;

  std::array<prometheus::Counter*, core::kNumRoles> joins_{};
  prometheus::Family<prometheus::Counter>* rejections_ = nullptr;
  std::array<prometheus::Counter*, 17> rejections_by_code_{};  // absl::StatusCode 0..16
  prometheus::Counter* heartbeats_ = nullptr;
  std::array<prometheus::Counter*, 3> failures_{};
  prometheus::Histogram* detection_latency_ = nullptr;
  std::array<prometheus::Counter*, 9> kv_ops_{};
  prometheus::Family<prometheus::Histogram>* rpc_latency_ = nullptr;
  // rpc_latency_'s histogram per method name. Family::Add builds a label map and hashes it
  // under the family's lock on every call (a heartbeat paid that); method names are string
  // literals, so their address finds the histogram once it was added.
  absl::Mutex rpc_mu_;
  absl::flat_hash_map<const char*, prometheus::Histogram*> rpc_by_method_
      ABSL_GUARDED_BY(rpc_mu_);
  prometheus::Gauge* sessions_ = nullptr;
};

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_METRICS_H_
