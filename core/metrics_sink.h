// MetricsSink: what the core reports to whoever exports metrics (the server's Prometheus
// exporter, a test's fake). The core does not depend on any metrics library.
//
// Calls are made from whatever thread runs the core operation, possibly concurrently, and some
// (joins, rejections, heartbeats, deaths) while a job's mutex is held. An implementation must
// therefore be thread-safe, cheap and non-blocking (e.g. atomic counter increments, as the
// prometheus-cpp counters are) and must never call back into the JobRegistry.
#ifndef MS_RENDEZVOUS_CORE_METRICS_SINK_H_
#define MS_RENDEZVOUS_CORE_METRICS_SINK_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/types.h"

namespace ms_rendezvous::core {

// How a member came to be declared dead (label values of failures_detected_total).
enum class DeathKind {
  kHeartbeatTimeout,  // no heartbeat (nor live session) for MS_NODE_TIMEOUT
  kDisconnected,      // session dropped and not resumed within the disconnect grace
  kReportedError,     // the member reported a fatal error
};
absl::string_view DeathKindName(DeathKind kind);  // "heartbeat_timeout", ...

// KV store and barrier operations (label values of kv_ops_total).
enum class KvOp { kSet, kGet, kWait, kAdd, kCompareSet, kDelete, kList, kNumKeys, kBarrier };
absl::string_view KvOpName(KvOp op);  // "set", "get", ..., "compare_set", "num_keys", "barrier"

// "ALREADY_EXISTS", ... (the label of a rejection).
inline std::string StatusCodeName(const absl::Status& status) {
  return absl::StatusCodeToString(status.code());
}

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  // A member was registered (new, or a recovered incarnation taking back its rank).
  virtual void OnJoin(Role role) = 0;
  // A join was refused; `code` is the status code name ("ALREADY_EXISTS", ...).
  virtual void OnRejection(absl::string_view code) = 0;
  // A heartbeat was accepted.
  virtual void OnHeartbeat() = 0;
  // A member was declared dead; `latency` is the time from when it was last heard from.
  virtual void OnMemberDead(DeathKind kind, absl::Duration latency) = 0;
  // A KV or barrier call reached the core (any outcome).
  virtual void OnKvOp(KvOp op) = 0;
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_METRICS_SINK_H_
