#include "core/metrics_sink.h"

namespace ms_rendezvous::core {

absl::string_view DeathKindName(DeathKind kind) {
  switch (kind) {
    case DeathKind::kHeartbeatTimeout:
      return "heartbeat_timeout";
    case DeathKind::kDisconnected:
      return "disconnected";
    case DeathKind::kReportedError:
      return "reported_error";
  }
  return "unknown";
}

absl::string_view KvOpName(KvOp op) {
  switch (op) {
    case KvOp::kSet:
      return "set";
    case KvOp::kGet:
      return "get";
    case KvOp::kWait:
      return "wait";
    case KvOp::kAdd:
      return "add";
    case KvOp::kCompareSet:
      return "compare_set";
    case KvOp::kDelete:
      return "delete";
    case KvOp::kList:
      return "list";
    case KvOp::kNumKeys:
      return "num_keys";
    case KvOp::kBarrier:
      return "barrier";
  }
  return "unknown";
}

}  // namespace ms_rendezvous::core
