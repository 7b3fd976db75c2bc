// The "heartbeat" scenario of ms-rendezvous-bench (issue 8): N session members (multiplexed over
// C connections) join one job, then each sends a heartbeat on its session every `interval` for
// `duration`, the members' phases spread evenly over the interval (N / interval heartbeats per
// second in total, as N independent processes would send them). The members' node timeout is
// `node_timeout_factor` x interval (default 3), so heartbeats the daemon does not process in
// time (starved by the load) turn into members declared dead: a false detection.
//
// With --processes P the members are split over P worker processes (see HeartbeatOptions).
//
// Reports: heartbeats sent and ACCEPTED by the daemon (its ms_rendezvous_heartbeats_total
// counter, scraped from --metrics-listen), the sustained accepted rate over the window and its
// worst one-interval window, the daemon's CPU share over the window (utime + stime from
// /proc/PID/stat, % of one core), the bench's own CPU share, and false detections (members the
// daemon declared dead, failure events the members received, streams that ended): all must be 0.
// Prints a human table, then ONE JSON line; returns the exit code (0 pass, 1 fail).
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_HEARTBEAT_SCENARIO_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_HEARTBEAT_SCENARIO_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "tools/bench/local_daemon.h"

namespace ms_rendezvous::bench {

struct HeartbeatOptions {
  std::string server;
  std::string job_id;
  uint32_t members = 1000;
  uint32_t connections = 1000;
  double topo_timeout_s = 60;
  bool named_nodes = false;
  absl::Duration interval = absl::Seconds(5);
  absl::Duration duration = absl::Seconds(30);
  // MS_NODE_TIMEOUT sent by the members; unset: 3 x interval.
  std::optional<double> node_timeout_s;
  // The daemon's metrics endpoint (HOST:PORT); empty: no "accepted" figures (only what was sent).
  std::string metrics;
  // For the CPU share; unset: not reported.
  std::optional<pid_t> daemon_pid;
  // > 1: the members are split over this many worker processes (`ms-rendezvous-bench
  // heartbeat-worker`, next to this binary), each with its own share of the connections. gRPC's
  // per-call work in one process grows with the calls outstanding in it (with Debian's libgrpc
  // every completion scans the completion queue's outstanding tags), so one process cannot
  // drive 100,000 sessions at full rate; separate processes are also what real members are.
  uint32_t processes = 1;
};

// `daemon` may be null (a daemon elsewhere, --server).
int RunHeartbeat(const HeartbeatOptions& options, LocalDaemon* daemon);

// The worker process of RunHeartbeat: members first..first+count-1 of the job (options.members
// workers in all) over options.connections channels to options.server, driven by commands on
// stdin (see ChildSide in heartbeat_scenario.cc).
int RunHeartbeatWorker(const HeartbeatOptions& options, uint32_t first, uint32_t count);

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_HEARTBEAT_SCENARIO_H_
