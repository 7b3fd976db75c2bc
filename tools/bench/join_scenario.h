// The "join" scenario: N members join one job at once and wait for the topology, each with ONE
// Join RPC (register + wait in one call), over C client channels (distinct TCP connections).
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_JOIN_SCENARIO_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_JOIN_SCENARIO_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ms_rendezvous::bench {

struct JoinOptions {
  std::string server;  // gRPC target
  std::string job_id;
  uint32_t members = 1000;
  uint32_t connections = 1000;  // 1..members; member i uses channel i % connections
  double topo_timeout_s = 60;   // MS_TOPO_TIMEOUT sent with every Join
  // false: node ids "0".."N-1" (numeric, rank = node id: the common MindSpore case).
  // true: non-numeric node ids, so the daemon has to sort members into ranks.
  bool named_nodes = false;
  absl::Duration connect_timeout = absl::Seconds(60);
};

struct JoinResult {
  double total_s = 0;  // first Join sent -> last topology received
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  uint64_t ok = 0;
  uint64_t connection_errors = 0;  // UNAVAILABLE (refused, reset, daemon going away)
  uint64_t other_errors = 0;       // any other non-OK status
  uint64_t leave_errors = 0;
  double connect_s = 0;               // time to bring every channel to READY (before the clock)
  double bench_cpu_s = 0;             // the bench's own CPU during the timed phase
  std::vector<std::string> problems;  // why the run failed, human-readable; empty = passed
};

// Hooks so the caller can sample the daemon exactly at the phase boundaries.
struct JoinHooks {
  std::function<void()> before_connect;  // channels not created yet
  std::function<void()> before_joins;    // every channel READY, clock not started
  std::function<void()> after_joins;     // every Join finished, Leave not sent yet
};

// Runs the scenario. Returns an error only when the run could not be set up (a channel did not
// connect: Unavailable); failures of the run itself are reported in JoinResult::problems.
absl::StatusOr<JoinResult> RunJoin(const JoinOptions& options, const JoinHooks& hooks);

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_JOIN_SCENARIO_H_
