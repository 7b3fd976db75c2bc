// The liveness scenarios of ms-rendezvous-bench (issue 3, "Bench"):
//   failure - N session members join; ONE member's stream is broken (as kill -9 of its process
//             would); how long until every survivor has its JOB_FAILED event.
//   restart - N session members join a daemon with --state-dir; the daemon is kill -9'd and
//             restarted on the same port; how long until every member resumed its session with
//             the same rank and generation. With --processes P the members are split over P
//             worker processes (see LivenessOptions::processes).
// Each prints a human table, then ONE JSON line; returns the exit code (0 pass, 1 fail).
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_LIVENESS_SCENARIOS_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_LIVENESS_SCENARIOS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "tools/bench/local_daemon.h"

namespace ms_rendezvous::bench {

struct LivenessOptions {
  std::string server;
  std::string job_id;
  uint32_t members = 1000;
  uint32_t connections = 1000;
  double topo_timeout_s = 60;
  double node_timeout_s = 300;
  bool named_nodes = false;
  // The daemon's --disconnect-grace (reported, and subtracted for detect_after_grace_s).
  absl::Duration disconnect_grace = absl::Seconds(2);
  // Give up waiting for events / resumes after this long.
  absl::Duration timeout = absl::Seconds(120);
  // restart: > 1 splits the members (and connections) over this many worker processes
  // (`ms-rendezvous-bench restart-worker`, next to this binary). One process reconnecting
  // 10,000 members notices the closed connections and serves the new ones from one event loop,
  // slower than the daemon it measures; real members are separate processes.
  uint32_t processes = 1;
};

// `daemon` may be null (a daemon elsewhere, --server).
int RunFailure(const LivenessOptions& options, LocalDaemon* daemon);
// `daemon` must be the bench's own, started with a state dir.
int RunRestart(const LivenessOptions& options, LocalDaemon* daemon);
// The worker process of RunRestart: members first..first+count-1 of the job (options.members
// workers in all) over options.connections channels to options.server, driven by commands on
// stdin (see RestartChild in liveness_scenarios.cc).
int RunRestartWorker(const LivenessOptions& options, uint32_t first, uint32_t count);

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_LIVENESS_SCENARIOS_H_
