// A throw-away ms-rendezvousd for one benchmark run, and /proc readings of a daemon's cost.
//
// The bench measures the daemon as a separate process (as it runs in production), so it spawns
// the binary rather than linking the server library: the CPU and RSS it reports are the daemon's
// alone, not mixed with the load generator's.
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_LOCAL_DAEMON_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_LOCAL_DAEMON_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ms_rendezvous::bench {

// CPU and memory of one process, from /proc/PID/stat and /proc/PID/status.
struct ProcStats {
  double cpu_s = 0;      // utime + stime
  int64_t rss_kib = 0;   // VmRSS
  int64_t peak_kib = 0;  // VmHWM (peak RSS)
};

// Errors: NotFound when the process does not exist (or is not on this host), Internal when
// /proc has an unexpected format.
absl::StatusOr<ProcStats> ReadProcStats(pid_t pid);

// Resets the process's VmHWM to its current RSS (writes "5" to /proc/PID/clear_refs, Linux >= 4.0),
// so a later VmHWM is the peak of what happened since. Errors: PermissionDenied/NotFound when the
// file cannot be written (another user's process, an old kernel, a restricted /proc).
absl::Status ResetPeakRss(pid_t pid);

// How a process's RSS settled: the last reading, how long it took, and whether it was stable.
struct SettledStats {
  ProcStats stats;      // the last reading (VmHWM included)
  double waited_s = 0;  // from the call to the last reading
  bool stable = false;  // false: max_wait passed while RSS was still changing
};

// Polls /proc/PID/status every `interval` until two consecutive VmRSS readings differ by less than
// `tolerance` (relative) and at least `min_wait` has passed, or `max_wait` has passed.
// Errors: those of ReadProcStats.
absl::StatusOr<SettledStats> WaitForRssToSettle(pid_t pid, absl::Duration min_wait,
                                                absl::Duration max_wait,
                                                absl::Duration interval = absl::Milliseconds(100),
                                                double tolerance = 0.01);

// Directory of the running executable (/proc/self/exe), where build/bin puts ms-rendezvousd.
absl::StatusOr<std::string> SelfDir();

class LocalDaemon {
 public:
  // Spawns `binary --listen 127.0.0.1:0 --port-file <tmp> [extra_args]`, its output going to a log
  // file in a fresh temporary directory, and waits up to `timeout` for the port file.
  // Errors: NotFound when the binary is missing, Unavailable when the daemon exits early or does
  // not write its port in time (the message quotes the end of its log).
  // With `state_dir`, the daemon also gets --state-dir <tmp>/state (durable: survives Kill()).
  // With `metrics`, it also serves Prometheus text (--metrics-listen 127.0.0.1:0, port written
  // to <tmp>/metrics-port): metrics_address() names it.
  static absl::StatusOr<std::unique_ptr<LocalDaemon>> Start(const std::string& binary,
                                                            const std::vector<std::string>& extra,
                                                            absl::Duration timeout,
                                                            bool state_dir = false,
                                                            bool metrics = false);

  // Stop() if still running; removes the temporary directory unless KeepLogs() was called.
  ~LocalDaemon();

  pid_t pid() const { return pid_; }
  // "127.0.0.1:PORT".
  const std::string& address() const { return address_; }
  const std::string& log_path() const { return log_path_; }
  // "127.0.0.1:PORT" of its /metrics endpoint; empty unless started with `metrics`.
  const std::string& metrics_address() const { return metrics_address_; }
  // The last `max_bytes` of the daemon's log, for error messages.
  std::string LogTail(size_t max_bytes = 2000) const;
  // Keep the temporary directory (and its log) after the run, e.g. when the run failed.
  void KeepLogs() { keep_logs_ = true; }

  // kill -9 (no shutdown: what a crash or the OOM killer does) and reap it.
  void Kill();
  // Starts the daemon again with the same arguments on the SAME port (and --state-dir, if any),
  // waiting up to `timeout` for its port file. Errors as Start().
  absl::Status Restart(absl::Duration timeout);

  // SIGTERM (graceful), SIGKILL after `grace`. Errors: Internal when the daemon did not exit
  // cleanly (non-zero status or killed), naming how it ended.
  absl::Status Stop(absl::Duration grace = absl::Seconds(10));

 private:
  LocalDaemon() = default;

  // Spawns `args_` (with --listen `listen`) and waits for the port file.
  absl::Status Spawn(const std::string& listen, absl::Duration timeout);

  pid_t pid_ = -1;
  std::string binary_;
  std::vector<std::string> extra_;
  std::string dir_;
  std::string address_;
  std::string log_path_;
  bool metrics_ = false;
  std::string metrics_address_;
  bool keep_logs_ = false;
};

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_LOCAL_DAEMON_H_
