#include "ms_rendezvous/scheduler.h"

#include <arpa/inet.h>

#include <algorithm>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/job_registry.h"
#include "core/types.h"
#include "glog/logging.h"
#include "server/server.h"

namespace ms_rendezvous {
namespace {

bool IsIpLiteral(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

std::string TimeoutText(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return "forever";
  return absl::StrCat(absl::ToInt64Seconds(d), "s");
}

}  // namespace

std::string SchedulerListenAddress(const ClientOptions& options) {
  // A list (MS_SCHED_HOST=a,b,c): the scheduler serves on the first entry's port.
  SchedulerAddress first{options.sched_host, options.sched_port};
  if (options.sched_host.empty()) first.host.clear();
  if (absl::StatusOr<std::vector<SchedulerAddress>> all = SchedulerAddresses(options);
      all.ok() && !options.sched_host.empty()) {
    first = all->front();
  }
  if (!IsIpLiteral(first.host)) return absl::StrCat("0.0.0.0:", first.port);
  if (absl::StrContains(first.host, ':')) return absl::StrCat("[", first.host, "]:", first.port);
  return absl::StrCat(first.host, ":", first.port);
}

absl::Status RunScheduler(const ClientOptions& options, const SchedulerHooks& hooks) {
  if (options.role != Role::kScheduler) {
    return absl::InvalidArgumentError(
        absl::StrCat("RunScheduler needs MS_ROLE=MS_SCHED, got MS_ROLE=", RoleName(options.role),
                     " (workers and parameter servers join with Client::Join)"));
  }
  if (absl::Status s = ValidateClientOptions(options); !s.ok()) return s;

  server::ServerOptions server_options;
  server_options.listen = SchedulerListenAddress(options);
  // One job: a few queue threads suffice (2 up to ~8k members; a queue stays cheap up to a few
  // thousand streams), instead of the daemon's 16 for many jobs.
  server_options.session_queues =
      std::clamp(static_cast<int>((options.worker_num + options.server_num) / 4096) + 2, 2, 16);
  // Members normally state their own timeout; this only covers one that sends none.
  if (options.topo_timeout != absl::InfiniteDuration()) {
    server_options.registry.default_topo_timeout = options.topo_timeout;
  }
  absl::StatusOr<std::unique_ptr<server::RendezvousServer>> started =
      server::RendezvousServer::Start(server_options);
  if (!started.ok()) return started.status();
  std::unique_ptr<server::RendezvousServer> server = std::move(started).value();
  LOG(INFO) << "embedded scheduler for job " << options.job_id << " listening on "
            << server_options.listen << " (dial " << server->address() << "), topology timeout "
            << TimeoutText(options.topo_timeout);
  if (hooks.on_listening) hooks.on_listening(server->address());

  // Two phases: the job must appear within the topology timeout (else nobody is coming: wrong
  // address, port or job id), then it may run as long as it likes - its own topology timeout
  // bounds formation inside the registry.
  absl::StatusOr<core::JobState> end = server->WaitForJobEnd(options.job_id, options.topo_timeout);
  if (!end.ok() && absl::IsDeadlineExceeded(end.status())) {
    if (!server->registry().GetJob(options.job_id).ok()) {
      server->Shutdown(absl::Seconds(1));
      return absl::DeadlineExceededError(absl::StrCat(
          "no member of job ", options.job_id, " registered with the embedded scheduler on ",
          server_options.listen, " within MS_TOPO_TIMEOUT=", TimeoutText(options.topo_timeout),
          "; check that the workers use MS_SCHED_HOST=",
          options.sched_host.empty() ? "<this host>" : options.sched_host,
          " MS_SCHED_PORT=", options.sched_port, " MS_JOB_ID=", options.job_id));
    }
    end = server->WaitForJobEnd(options.job_id);
  }
  absl::Status result;
  if (!end.ok()) {
    result = end.status();
  } else if (*end == core::JobState::kFailed) {
    absl::StatusOr<core::JobSummary> job = server->registry().GetJob(options.job_id);
    std::string reason = job.ok() ? job->failure_reason : std::string("reason unknown");
    result = absl::AbortedError(absl::StrCat("job ", options.job_id, " failed: ", reason));
  }
  LOG(INFO) << "job " << options.job_id << " ended ("
            << (end.ok() ? core::JobStateName(*end) : absl::string_view("error"))
            << "); embedded scheduler shutting down";
  // The grace lets the last Leave / the failed members' Join replies reach their callers.
  server->Shutdown(absl::Seconds(2));
  return result;
}

}  // namespace ms_rendezvous
