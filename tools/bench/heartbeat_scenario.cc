#include "tools/bench/heartbeat_scenario.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/metrics_scrape.h"
#include "tools/bench/session_group.h"
#include "tools/common/json.h"
#include "tools/ctl/render.h"

namespace ms_rendezvous::bench {
namespace {

constexpr char kHeartbeats[] = "ms_rendezvous_heartbeats_total";
constexpr char kDeclaredDead[] = "ms_rendezvous_failures_detected_total";

// How often the daemon's counters and CPU are sampled during the heartbeat phase.
constexpr absl::Duration kSamplePeriod = absl::Seconds(1);
// After the last heartbeat was queued: how long its writes and the daemon's processing may take.
constexpr absl::Duration kDrainTimeout = absl::Seconds(15);

std::string StatusText(const grpc::Status& st) {
  return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(st.error_code())),
                      ": ", st.error_message());
}

// One reading of the daemon's counters (and the bench's own progress) at one moment.
struct Sample {
  int64_t t_ns = 0;
  double accepted = std::numeric_limits<double>::quiet_NaN();  // heartbeats_total
  double declared_dead = std::numeric_limits<double>::quiet_NaN();
  double daemon_cpu_s = std::numeric_limits<double>::quiet_NaN();
  int64_t daemon_peak_kib = -1;
  uint64_t written = 0;  // heartbeats the bench wrote
};

// Samples the daemon; failures only leave figures unset (they are reported as n/a), except that
// the first one is logged.
class Sampler {
 public:
  Sampler(const HeartbeatOptions& o, const SessionGroup* group) : o_(o), group_(group) {}

  Sample Take() {
    Sample s;
    s.t_ns = NowNs();
    s.written = group_ != nullptr ? group_->heartbeats_written() : 0;
    if (!o_.metrics.empty()) {
      absl::StatusOr<MetricSamples> m = ScrapeMetrics(o_.metrics, absl::Seconds(5));
      if (m.ok()) {
        s.accepted = SumOf(*m, kHeartbeats);
        s.declared_dead = SumOf(*m, kDeclaredDead);
      } else {
        Warn(m.status());
      }
    }
    if (o_.daemon_pid) {
      absl::StatusOr<ProcStats> p = ReadProcStats(*o_.daemon_pid);
      if (p.ok()) {
        s.daemon_cpu_s = p->cpu_s;
        s.daemon_peak_kib = p->peak_kib;
      } else {
        Warn(p.status());
      }
    }
    return s;
  }

 private:
  void Warn(const absl::Status& s) {
    if (warned_.exchange(true)) return;
    LOG(WARNING) << "daemon figures unavailable: " << s.message();
  }
  const HeartbeatOptions& o_;
  const SessionGroup* group_;
  std::atomic<bool> warned_{false};
};

// Takes a sample every kSamplePeriod on its own thread until stopped.
class PeriodicSampler {
 public:
  explicit PeriodicSampler(Sampler* sampler)
      : sampler_(sampler), thread_([this] { Run(); }) {}
  ~PeriodicSampler() { Stop(); }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  // Valid after Stop().
  const std::vector<Sample>& samples() const { return samples_; }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, absl::ToChronoNanoseconds(kSamplePeriod), [this] { return stop_; })) {
      lock.unlock();
      Sample s = sampler_->Take();
      lock.lock();
      samples_.push_back(s);
    }
  }
  Sampler* sampler_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<Sample> samples_;
  std::thread thread_;
};

double PerSecond(double count, int64_t ns) {
  return ns > 0 ? count * 1e9 / static_cast<double>(ns) : std::numeric_limits<double>::quiet_NaN();
}

std::string Figure(double v, const char* format) {
  return std::isfinite(v) ? absl::StrFormat(format, v) : std::string("n/a");
}

}  // namespace

int RunHeartbeat(const HeartbeatOptions& o, LocalDaemon* daemon) {
  std::vector<std::string> problems;
  const uint32_t n = o.members;
  const double interval_s = absl::ToDoubleSeconds(o.interval);
  const double duration_s = absl::ToDoubleSeconds(o.duration);
  const double node_timeout_s = o.node_timeout_s.value_or(3 * interval_s);

  ChannelOptions co;
  co.server = o.server;
  co.connections = o.connections;
  LOG(INFO) << "connecting " << o.connections << " channels to " << o.server;
  auto channels = ConnectChannels(co);
  if (!channels.ok()) {
    std::fprintf(stderr, "ms-rendezvous-bench: %s\n", std::string(channels.status().message()).c_str());
    if (daemon) daemon->KeepLogs();
    return 1;
  }
  std::vector<std::unique_ptr<v1::Rendezvous::Stub>> stubs;
  std::vector<v1::Rendezvous::Stub*> raw;
  for (auto& ch : *channels) {
    stubs.push_back(v1::Rendezvous::NewStub(ch));
    raw.push_back(stubs.back().get());
  }

  GroupSpec spec;
  spec.job_id = o.job_id;
  spec.members = n;
  spec.topo_timeout_s = o.topo_timeout_s;
  spec.node_timeout_s = node_timeout_s;
  spec.named_nodes = o.named_nodes;
  auto group = std::make_unique<SessionGroup>(raw, spec);
  Sampler sampler(o, group.get());
  const Sample before_join = sampler.Take();

  // Join (timed only for the report: the figures of interest come after it).
  LOG(INFO) << "joining " << n << " session members to job " << o.job_id << " (MS_NODE_TIMEOUT "
            << node_timeout_s << " s)";
  const int64_t join_start = NowNs();
  group->JoinAll();
  int64_t first_topology = 0, last_topology = 0;
  uint64_t join_failed = 0;
  std::string first_join_error;
  for (uint32_t i = 0; i < n; ++i) {
    const MemberState& m = group->member(i);
    if (m.topology_ns == 0) {
      ++join_failed;
      if (first_join_error.empty()) {
        first_join_error = absl::StrCat("member ", i, ": ", StatusText(m.status));
      }
      continue;
    }
    first_topology = first_topology == 0 ? m.topology_ns : std::min(first_topology, m.topology_ns);
    last_topology = std::max(last_topology, m.topology_ns);
  }
  const double join_s = static_cast<double>(last_topology - join_start) / 1e9;
  // The daemon judges liveness from the job's completion on (about the first topology); members
  // start heartbeating once every one of them has its topology.
  const double topology_spread_s = static_cast<double>(last_topology - first_topology) / 1e9;
  if (join_failed > 0) {
    problems.push_back(absl::StrCat(join_failed, " of ", n, " session joins failed; first: ",
                                    first_join_error));
  }

  // Heartbeat phase: heartbeat k goes to member k % N at t0 + k * interval / N, so every member
  // heartbeats once per interval and the daemon sees an even N / interval per second.
  Sample start, end;
  std::vector<Sample> samples;
  uint64_t queued = 0, not_sent = 0;
  int64_t max_backlog = 0;   // writes already queued on a stream when a heartbeat was added
  double max_lag_ms = 0;     // how far the pacing loop fell behind its schedule
  double bench_cpu_s = 0;
  if (join_failed == 0) {
    LOG(INFO) << "heartbeating every " << absl::FormatDuration(o.interval) << " for "
              << absl::FormatDuration(o.duration) << " (" << n / interval_s << " heartbeats/s)";
    const double bench_cpu0 = CpuSeconds();
    start = sampler.Take();
    const int64_t t0 = start.t_ns;
    const int64_t interval_ns = absl::ToInt64Nanoseconds(o.interval);
    const int64_t t_end = t0 + absl::ToInt64Nanoseconds(o.duration);
    {
      PeriodicSampler periodic(&sampler);
      while (true) {
        const int64_t now = NowNs();
        const int64_t until = std::min(now, t_end);
        // Heartbeats due by `until` (128-bit product: N x nanoseconds overflows 64 bits).
        const uint64_t due = static_cast<uint64_t>(
            static_cast<__int128>(until - t0) * n / interval_ns + 1);
        if (due > queued + 1) {
          double lag_ms = static_cast<double>(due - 1 - queued) * interval_s * 1e3 / n;
          max_lag_ms = std::max(max_lag_ms, lag_ms);
        }
        for (; queued < due; ++queued) {
          int64_t backlog = group->Heartbeat(static_cast<uint32_t>(queued % n));
          if (backlog < 0) {
            ++not_sent;
          } else {
            max_backlog = std::max(max_backlog, backlog);
          }
        }
        if (now >= t_end) break;
        // Next heartbeat's due time, at most 1 ms away (keeps the loop cheap at low rates and
        // its batches small at high ones).
        const int64_t next = t0 + static_cast<int64_t>(static_cast<__int128>(queued) *
                                                       interval_ns / n);
        const int64_t wait = std::clamp<int64_t>(next - NowNs(), 0, 1'000'000);
        if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
      }
      end = sampler.Take();
      periodic.Stop();
      samples = periodic.samples();
    }
    bench_cpu_s = CpuSeconds() - bench_cpu0;
  }
  const uint64_t sent = queued - not_sent;
  const int64_t window_ns = end.t_ns - start.t_ns;

  // Drain: every queued heartbeat written, and the daemon's counter caught up with them (or
  // stopped moving).
  Sample drained = end;
  if (join_failed == 0) {
    const int64_t deadline = NowNs() + absl::ToInt64Nanoseconds(kDrainTimeout);
    while (group->heartbeats_written() < sent && NowNs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    double last_accepted = -1;
    while (true) {
      drained = sampler.Take();
      if (!std::isfinite(drained.accepted) || drained.accepted - start.accepted >= sent ||
          drained.accepted == last_accepted || NowNs() >= deadline) {
        break;
      }
      last_accepted = drained.accepted;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  const uint64_t written = group->heartbeats_written();
  const double accepted_total = drained.accepted - start.accepted;
  const double accepted_in_window = end.accepted - start.accepted;

  // The worst window of one interval: for each sample, the first later one at least one
  // interval away.
  std::vector<Sample> series;
  series.push_back(start);
  series.insert(series.end(), samples.begin(), samples.end());
  series.push_back(end);
  double worst_window_per_s = std::numeric_limits<double>::quiet_NaN();
  const int64_t interval_ns = absl::ToInt64Nanoseconds(o.interval);
  for (size_t a = 0; a < series.size(); ++a) {
    for (size_t b = a + 1; b < series.size(); ++b) {
      if (series[b].t_ns - series[a].t_ns < interval_ns) continue;
      double rate = PerSecond(series[b].accepted - series[a].accepted,
                              series[b].t_ns - series[a].t_ns);
      if (std::isfinite(rate) &&
          (!std::isfinite(worst_window_per_s) || rate < worst_window_per_s)) {
        worst_window_per_s = rate;
      }
      break;
    }
  }

  // False detections, three ways: what the daemon counted, what the members were told, and
  // sessions that ended although nobody left.
  uint64_t failure_events = 0, streams_ended = 0;
  std::string first_event, first_ended;
  for (uint32_t i = 0; i < n && join_failed == 0; ++i) {
    const MemberState& m = group->member(i);
    if (m.failed_ns != 0) {
      ++failure_events;
      if (first_event.empty()) {
        first_event = absl::StrCat("member ", i, " was told ",
                                   m.dead_node_ids.empty() ? std::string("(nobody)")
                                                           : "'" + m.dead_node_ids[0] + "'",
                                   " died");
      }
    }
    if (m.done_ns != 0) {
      ++streams_ended;
      if (first_ended.empty()) {
        first_ended = absl::StrCat("member ", i, ": ", StatusText(m.status));
      }
    }
  }
  const Sample after = sampler.Take();
  const double declared_dead = after.declared_dead - before_join.declared_dead;
  const uint64_t false_detections =
      std::isfinite(declared_dead) ? static_cast<uint64_t>(std::max(0.0, declared_dead))
                                   : failure_events;
  if (join_failed == 0) {
    if (std::isfinite(declared_dead) && declared_dead > 0) {
      problems.push_back(absl::StrCat("the daemon declared ", declared_dead,
                                      " members dead (false detections)"));
    }
    if (failure_events > 0) {
      problems.push_back(absl::StrCat(failure_events, " members got a failure event; first: ",
                                      first_event));
    }
    if (streams_ended > 0) {
      problems.push_back(absl::StrCat(streams_ended, " sessions ended during the run; first: ",
                                      first_ended));
    }
    if (not_sent > 0) {
      problems.push_back(absl::StrCat(not_sent, " heartbeats found their member's session gone"));
    }
    if (written < sent) {
      problems.push_back(absl::StrCat(sent - written, " of ", sent,
                                      " heartbeats were not written within ",
                                      absl::FormatDuration(kDrainTimeout), " of the end"));
    }
    if (std::isfinite(accepted_total) && accepted_total < static_cast<double>(written)) {
      problems.push_back(absl::StrCat(written - static_cast<uint64_t>(accepted_total), " of ",
                                      written, " heartbeats written were not accepted by the daemon"));
    }
  }
  std::string leave_error;
  if (join_failed == 0) {
    if (uint64_t failed = group->LeaveAll(&leave_error); failed > 0) {
      problems.push_back(absl::StrCat(failed, " leaves failed; first: ", leave_error));
    }
  }
  group.reset();
  stubs.clear();
  channels->clear();
  if (daemon) {
    if (absl::Status s = daemon->Stop(); !s.ok()) problems.push_back(std::string(s.message()));
  }

  const double expected_per_s = n / interval_s;
  const double sent_per_s = PerSecond(static_cast<double>(sent), window_ns);
  const double accepted_per_s = PerSecond(accepted_in_window, window_ns);
  const double daemon_cpu_s = end.daemon_cpu_s - start.daemon_cpu_s;
  const double daemon_cpu_pct = 100 * PerSecond(daemon_cpu_s, window_ns);
  const double bench_cpu_pct = 100 * PerSecond(bench_cpu_s, window_ns);
  const double cpu_us_per_heartbeat =
      accepted_in_window > 0 ? daemon_cpu_s * 1e6 / accepted_in_window
                             : std::numeric_limits<double>::quiet_NaN();

  ctl::Table table({"scenario", "heartbeat"});
  table.AddRow({"server", o.server});
  table.AddRow({"job", o.job_id});
  table.AddRow({"members / connections", absl::StrCat(n, " / ", o.connections)});
  table.AddRow({"join (session streams)",
                absl::StrFormat("%.3f s (topologies delivered over %.3f s)", join_s,
                                topology_spread_s)});
  table.AddRow({"interval / duration / node timeout",
                absl::StrFormat("%.3g s / %.3g s / %.3g s", interval_s, duration_s,
                                node_timeout_s)});
  table.AddRow({"heartbeats expected", absl::StrFormat("%.0f /s", expected_per_s)});
  table.AddRow({"heartbeats sent", absl::StrFormat("%d (%.0f /s; pacing lag max %.1f ms)", sent,
                                                   sent_per_s, max_lag_ms)});
  table.AddRow({"heartbeats accepted (daemon counter)",
                std::isfinite(accepted_total)
                    ? absl::StrFormat("%.0f of %d written", accepted_total, written)
                    : std::string("n/a (no metrics endpoint)")});
  table.AddRow({"accepted rate: window / worst interval",
                absl::StrCat(Figure(accepted_per_s, "%.0f"), " / ",
                             Figure(worst_window_per_s, "%.0f"), " per s")});
  table.AddRow({"daemon cpu (window)",
                std::isfinite(daemon_cpu_s)
                    ? absl::StrFormat("%.2f s = %.1f%% of one core (%s us per heartbeat)",
                                      daemon_cpu_s, daemon_cpu_pct,
                                      Figure(cpu_us_per_heartbeat, "%.1f"))
                    : std::string("n/a")});
  table.AddRow({"daemon peak rss (VmHWM)",
                after.daemon_peak_kib >= 0 ? absl::StrFormat("%d KiB", after.daemon_peak_kib)
                                           : std::string("n/a")});
  table.AddRow({"bench cpu (window)",
                absl::StrFormat("%.2f s = %.1f%% of one core", bench_cpu_s, bench_cpu_pct)});
  table.AddRow({"stream backlog max (writes queued)", absl::StrCat(max_backlog)});
  table.AddRow({"false detections (declared dead)", absl::StrCat(false_detections)});
  table.AddRow({"failure events / sessions ended",
                absl::StrCat(failure_events, " / ", streams_ended)});
  table.AddRow({"result", problems.empty() ? "PASS" : "FAIL"});
  std::fputs(table.Render().c_str(), stdout);
  for (const std::string& p : problems) {
    std::fprintf(stderr, "ms-rendezvous-bench: FAIL: %s\n", p.c_str());
  }

  tools::JsonWriter w;
  w.BeginObject();
  w.Key("scenario").String("heartbeat");
  w.Key("members").Uint(n);
  w.Key("connections").Uint(o.connections);
  w.Key("interval_s").Double(interval_s, 3);
  w.Key("duration_s").Double(static_cast<double>(window_ns) / 1e9, 3);
  w.Key("node_timeout_s").Double(node_timeout_s, 3);
  w.Key("join_s").Double(join_s, 4);
  w.Key("expected_per_s").Double(expected_per_s, 1);
  w.Key("sent").Uint(sent);
  w.Key("sent_per_s").Double(sent_per_s, 1);
  w.Key("accepted").Double(accepted_total, 0);
  w.Key("accepted_per_s").Double(accepted_per_s, 1);
  w.Key("worst_window_per_s").Double(worst_window_per_s, 1);
  w.Key("daemon_cpu_s").Double(daemon_cpu_s, 2);
  w.Key("daemon_cpu_pct").Double(daemon_cpu_pct, 1);
  w.Key("daemon_peak_rss_kib").Int(after.daemon_peak_kib);
  w.Key("bench_cpu_pct").Double(bench_cpu_pct, 1);
  w.Key("max_lag_ms").Double(max_lag_ms, 1);
  w.Key("false_detections").Uint(false_detections);
  w.Key("failure_events").Uint(failure_events);
  w.Key("streams_ended").Uint(streams_ended);
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  std::fflush(stdout);
  if (daemon && !problems.empty()) daemon->KeepLogs();
  return problems.empty() ? 0 : 1;
}

}  // namespace ms_rendezvous::bench
