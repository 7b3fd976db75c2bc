// The "kv" scenario of ms-rendezvous-bench (issue 4, "Bench figures: KV set/get ops/s, and time
// to release 10,000 waiters of one key"):
//
//   1. N members join one job over Session streams (untimed): the KV API only serves registered
//      members, so every call below carries a member's MemberRef (with its incarnation).
//   2. ops: K clients (members 0..K-1, client k on channel k % C) each keep `depth` Set RPCs in
//      flight (callback API) until M Sets of distinct keys are done; then the same for M Gets of
//      those keys (each value checked). Reports ops/s and per-call latency of each phase.
//   3. release: W members (0..W-1) each park a blocking Get of ONE key; once every Get is parked
//      in the daemon, member 0 Sets the key; reports Set call -> last waiter released, and checks
//      that every waiter got the value.
//
// Prints a human table, then ONE JSON line; returns the exit code (0 pass, 1 fail).
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_KV_SCENARIO_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_KV_SCENARIO_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "tools/bench/local_daemon.h"

namespace ms_rendezvous::bench {

struct KvOptions {
  std::string server;
  std::string job_id;
  uint32_t members = 100;
  uint32_t connections = 100;  // member i uses channel i % connections
  uint32_t clients = 8;        // K <= members
  uint32_t depth = 16;         // outstanding RPCs per client
  uint64_t ops = 10000;        // M Sets, then M Gets
  uint32_t value_bytes = 64;
  uint32_t waiters = 100;  // W <= members; 0 skips the release phase
  double topo_timeout_s = 60;
  double node_timeout_s = 300;
  bool named_nodes = false;
  // What backs the daemon's KV, for the report: "memory", "sqlite" (--state-dir) or "unknown"
  // (a daemon elsewhere).
  std::string store = "memory";
  // The daemon's pid (same host) for CPU/RSS figures, and to tell when the parked Gets have all
  // arrived (the daemon went idle); none: figures are skipped and a fixed pause is used.
  std::optional<pid_t> daemon_pid;
  // Upper bound of every phase.
  absl::Duration timeout = absl::Seconds(120);
};

// `daemon` may be null (a daemon elsewhere, --server); when set it is stopped at the end.
int RunKv(const KvOptions& options, LocalDaemon* daemon);

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_KV_SCENARIO_H_
