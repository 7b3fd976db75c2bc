// Embedded scheduler: lets an unmodified MindSpore-style launch (one MS_ROLE=MS_SCHED process
// plus N workers, all running the same script) work without an ms-rendezvous daemon installed.
// The scheduler process serves the same gRPC services as ms-rendezvousd, for the one job it
// was started for, and exits when that job ends.
#ifndef MS_RENDEZVOUS_SCHEDULER_H_
#define MS_RENDEZVOUS_SCHEDULER_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "ms_rendezvous/options.h"

namespace ms_rendezvous {

struct SchedulerHooks {
  // Called once the port is bound, with the address workers can dial ("HOST:PORT").
  std::function<void(const std::string& address)> on_listening;
};

// Serves on MS_SCHED_HOST:MS_SCHED_PORT when sched_host is an IP literal, else on
// 0.0.0.0:MS_SCHED_PORT (a host name may resolve to an address of another interface), until job
// `options.job_id` ends, then shuts down gracefully. Jobs that omit a topology timeout get
// `options.topo_timeout`.
// Returns:
//   OK                  the job FINISHED (every member left after completion)
//   Aborted             the job FAILED; the message carries the failure reason
//   DeadlineExceeded    no member of the job registered within options.topo_timeout
//   Unavailable         the port could not be bound (the message names the address)
//   InvalidArgument     options.role is not MS_SCHED, or the options are malformed
absl::Status RunScheduler(const ClientOptions& options, const SchedulerHooks& hooks = {});

// The HOST:PORT RunScheduler listens on for these options.
std::string SchedulerListenAddress(const ClientOptions& options);

}  // namespace ms_rendezvous

#endif  // MS_RENDEZVOUS_SCHEDULER_H_
