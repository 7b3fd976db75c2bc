// The "join" scenario: N members join one job at once and wait for the topology, each over its
// own Session stream (join, then read the topology: what the client library does) or, with
// --unary, with ONE Join RPC (register + wait in one call), over C client channels (distinct TCP
// connections).
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_JOIN_SCENARIO_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_JOIN_SCENARIO_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ms_rendezvous::bench {

struct JoinOptions {
  std::string server;  // gRPC target
  std::string job_id;  // base id; the caller names each round's job after it
  uint32_t members = 1000;
  uint32_t connections = 1000;  // 1..members; member i uses channel i % connections
  double topo_timeout_s = 60;   // MS_TOPO_TIMEOUT sent with every Join
  // false: node ids "0".."N-1" (numeric, rank = node id: the common MindSpore case).
  // true: non-numeric node ids, so the daemon has to sort members into ranks.
  bool named_nodes = false;
  absl::Duration connect_timeout = absl::Seconds(60);
  // false: every member joins over its own Session stream (join, read topology, hold the
  // stream), as the client library does. true: one unary Join RPC each (the older path).
  bool unary = false;
  // MS_NODE_TIMEOUT sent by the members. The bench does not heartbeat, so it must outlast the
  // run.
  double node_timeout_s = 300;
};

struct JoinResult {
  double total_s = 0;  // first Join sent -> last topology received
  double p50_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  uint64_t ok = 0;
  uint64_t connection_errors = 0;     // UNAVAILABLE (refused, reset, daemon going away)
  uint64_t other_errors = 0;          // any other non-OK status
  double bench_cpu_s = 0;             // the bench's own CPU during the timed phase
  std::vector<std::string> problems;  // why the round failed, human-readable; empty = passed
};

// Hooks so the caller can sample the daemon exactly at a round's phase boundaries.
struct JoinHooks {
  std::function<void()> before_joins;  // calls built, clock not started
  std::function<void()> after_joins;   // every Join finished; the members are still joined
};

// The join scenario over one set of channels: Connect() once, then any number of rounds
// (Join(), each its own job), then LeaveAll(). Members stay joined until LeaveAll(), so a round's
// daemon baseline is the settled state the previous round left behind, not memory freed by
// leaves and disconnects that the daemon has not handed back to the OS yet.
class JoinBench {
 public:
  // Brings options.connections channels to READY. Errors: Unavailable when one fails to connect.
  static absl::StatusOr<std::unique_ptr<JoinBench>> Connect(const JoinOptions& options);
  ~JoinBench();

  double connect_s() const { return connect_s_; }

  // One round: options.members members of `job_id` join at once (one Join RPC each) and wait for
  // the topology. Checks that ranks 0..N-1 were each delivered exactly once.
  JoinResult Join(const std::string& job_id, const JoinHooks& hooks);

  // Every member that joined in any round leaves (untimed), so a shared daemon ends up with
  // FINISHED jobs rather than silent members. Returns problems (failed leaves); empty = ok.
  std::vector<std::string> LeaveAll();

 private:
  struct Impl;
  explicit JoinBench(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  double connect_s_ = 0;
};

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_JOIN_SCENARIO_H_
