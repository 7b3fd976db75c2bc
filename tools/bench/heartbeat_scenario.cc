#include "tools/bench/heartbeat_scenario.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "glog/logging.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/metrics_scrape.h"
#include "tools/bench/session_group.h"
#include "tools/bench/worker_process.h"
#include "tools/common/json.h"
#include "tools/ctl/render.h"

namespace ms_rendezvous::bench {
namespace {

constexpr char kHeartbeats[] = "ms_rendezvous_heartbeats_total";
constexpr char kDeclaredDead[] = "ms_rendezvous_failures_detected_total";

// How often the daemon's counters and CPU are sampled during the heartbeat phase.
constexpr absl::Duration kSamplePeriod = absl::Seconds(1);
// After the window: how long the last heartbeats' writes and the daemon's processing may take.
constexpr absl::Duration kDrainTimeout = absl::Seconds(15);

std::string StatusText(const grpc::Status& st) {
  return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(st.error_code())),
                      ": ", st.error_message());
}

// One reading of the daemon's counters at one moment.
struct Sample {
  int64_t t_ns = 0;
  double accepted = std::numeric_limits<double>::quiet_NaN();  // heartbeats_total
  double declared_dead = std::numeric_limits<double>::quiet_NaN();
  double daemon_cpu_s = std::numeric_limits<double>::quiet_NaN();
  int64_t daemon_peak_kib = -1;
};

// Samples the daemon; failures only leave figures unset (they are reported as n/a), except that
// the first one is logged.
class Sampler {
 public:
  explicit Sampler(const HeartbeatOptions& o) : o_(o) {}

  Sample Take() {
    Sample s;
    s.t_ns = NowNs();
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

// Sends every joined member's heartbeats on schedule from one thread: member i's k-th heartbeat
// is due at its topology time + phase(i) + k x interval, phase(i) = interval x frac(i x golden
// ratio) (evenly spread and not tied to the join order). Members are added as their topology
// arrives; Mark() sets the end of the window, after which the pacer stops.
class Pacer {
 public:
  struct Counts {
    uint64_t sent = 0;      // handed to a stream
    uint64_t not_sent = 0;  // the member's session was gone
    int64_t max_backlog = 0;  // writes already queued on a stream when a heartbeat was added
    int64_t max_lag_ns = 0;   // latest send behind schedule, since Mark()
  };

  Pacer(SessionGroup* group, absl::Duration interval)
      : group_(group), interval_ns_(absl::ToInt64Nanoseconds(interval)),
        thread_([this] { Run(); }) {}
  ~Pacer() { Stop(); }

  // Member i has its topology (called on gRPC's threads).
  void Joined(uint32_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    joined_.push_back(i);
  }
  // Heartbeats due after `end_ns` are not sent; the pacer stops at end_ns. Returns the counts so
  // far and resets the lag maximum (it then covers the window only).
  Counts Mark(int64_t end_ns) {
    std::lock_guard<std::mutex> lock(mu_);
    end_ns_ = end_ns;
    counts_.max_lag_ns = 0;
    return counts_;
  }
  void WaitUntilStopped() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return finished_; });
  }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  Counts counts() {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_;
  }

 private:
  struct Due {
    int64_t at;
    uint32_t member;
    bool operator>(const Due& o) const { return at > o.at; }
  };

  int64_t Phase(uint32_t i) const {
    const double golden = 0.6180339887498949;
    double frac = static_cast<double>(i) * golden;
    frac -= std::floor(frac);
    return static_cast<int64_t>(frac * static_cast<double>(interval_ns_));
  }

  void Run() {
    std::priority_queue<Due, std::vector<Due>, std::greater<Due>> heap;
    std::vector<uint32_t> joined;
    while (true) {
      int64_t end_ns;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) break;
        joined.swap(joined_);
        end_ns = end_ns_;
      }
      for (uint32_t i : joined) {
        heap.push(Due{group_->member(i).topology_ns + Phase(i), i});
      }
      joined.clear();
      const int64_t now = NowNs();
      Counts batch;
      while (!heap.empty() && heap.top().at <= now && heap.top().at <= end_ns) {
        Due d = heap.top();
        heap.pop();
        batch.max_lag_ns = std::max(batch.max_lag_ns, now - d.at);
        int64_t backlog = group_->Heartbeat(d.member);
        if (backlog < 0) {
          ++batch.not_sent;
        } else {
          ++batch.sent;
          batch.max_backlog = std::max(batch.max_backlog, backlog);
        }
        heap.push(Due{d.at + interval_ns_, d.member});
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        counts_.sent += batch.sent;
        counts_.not_sent += batch.not_sent;
        counts_.max_backlog = std::max(counts_.max_backlog, batch.max_backlog);
        counts_.max_lag_ns = std::max(counts_.max_lag_ns, batch.max_lag_ns);
        if (NowNs() >= end_ns_) {
          finished_ = true;
          cv_.notify_all();
          break;
        }
      }
      // Until the next heartbeat is due, at most 1 ms (new members may have joined meanwhile).
      int64_t wait = 1'000'000;
      if (!heap.empty()) wait = std::clamp<int64_t>(heap.top().at - NowNs(), 0, wait);
      if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
    }
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    cv_.notify_all();
  }

  SessionGroup* const group_;
  const int64_t interval_ns_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint32_t> joined_;
  int64_t end_ns_ = std::numeric_limits<int64_t>::max();
  bool stop_ = false;
  bool finished_ = false;
  Counts counts_;
  std::thread thread_;  // last: starts once everything above is initialized
};

// What one group of members (in this process or in a worker process) reports.
struct SideJoin {
  uint64_t failed = 0;
  std::string first_error;
  int64_t first_topology_ns = 0;  // 0: none
  int64_t last_topology_ns = 0;
};
struct SideCounts {
  uint64_t sent = 0;            // heartbeats handed to a stream, join phase included
  uint64_t sent_in_window = 0;  // of those, in the measured window
  uint64_t not_sent = 0;        // the member's session was gone
  uint64_t written = 0;         // written to the transport
  int64_t max_lag_ns = 0;       // in the window
  int64_t max_backlog = 0;
  uint64_t failure_events = 0;  // members that were told of a death
  uint64_t streams_ended = 0;   // sessions that ended although nobody left
  double cpu_s = 0;             // the process's CPU over the window
  std::string first_event;
  std::string first_ended;
};
struct SideLeave {
  uint64_t failed = 0;
  std::string first_error;
};

// A group of members: LocalSide runs them in this process, ChildSide in a worker process
// (`ms-rendezvous-bench heartbeat-worker`) that runs a LocalSide and answers over pipes.
class Side {
 public:
  virtual ~Side() = default;
  virtual void StartJoin() = 0;
  virtual absl::StatusOr<SideJoin> WaitJoined(absl::Duration timeout) = 0;
  // The window ends at end_ns: heartbeats due later are not sent.
  virtual absl::Status Mark(int64_t end_ns) = 0;
  // After the window: the pacer stopped, the last writes drained.
  virtual absl::StatusOr<SideCounts> Finish(absl::Duration timeout) = 0;
  virtual absl::StatusOr<SideLeave> Leave(absl::Duration timeout) = 0;
};

class LocalSide : public Side {
 public:
  // Members first..first+count-1 of a job of o.members workers, over `connections` channels.
  static absl::StatusOr<std::unique_ptr<LocalSide>> Connect(const HeartbeatOptions& o,
                                                            uint32_t first, uint32_t count,
                                                            uint32_t connections) {
    ChannelOptions co;
    co.server = o.server;
    co.connections = connections;
    auto channels = ConnectChannels(co);
    if (!channels.ok()) return channels.status();
    std::unique_ptr<LocalSide> side(new LocalSide(o));
    side->channels_ = std::move(*channels);
    std::vector<v1::Rendezvous::Stub*> raw;
    for (auto& ch : side->channels_) {
      side->stubs_.push_back(v1::Rendezvous::NewStub(ch));
      raw.push_back(side->stubs_.back().get());
    }
    GroupSpec spec;
    spec.job_id = o.job_id;
    spec.members = count;
    spec.topo_timeout_s = o.topo_timeout_s;
    spec.node_timeout_s = o.node_timeout_s.value_or(3 * absl::ToDoubleSeconds(o.interval));
    spec.named_nodes = o.named_nodes;
    spec.first_node = first;
    spec.world = o.members;
    side->group_ = std::make_unique<SessionGroup>(std::move(raw), spec);
    side->pacer_ = std::make_unique<Pacer>(side->group_.get(), o.interval);
    return side;
  }

  ~LocalSide() override {
    if (join_thread_.joinable()) join_thread_.join();
    pacer_.reset();  // before the group it sends on
    group_.reset();
  }

  void StartJoin() override {
    join_thread_ = std::thread([this] {
      Pacer* pacer = pacer_.get();
      group_->JoinAll({}, [pacer](uint32_t i) { pacer->Joined(i); });
      std::lock_guard<std::mutex> lock(mu_);
      joined_ = true;
      cv_.notify_all();
    });
  }

  absl::StatusOr<SideJoin> WaitJoined(absl::Duration timeout) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return joined_; })) {
        return absl::DeadlineExceededError(absl::StrCat(
            "members not joined within ", absl::FormatDuration(timeout)));
      }
    }
    join_thread_.join();
    SideJoin j;
    for (uint32_t i = 0; i < group_->spec().members; ++i) {
      const MemberState& m = group_->member(i);
      if (m.topology_ns == 0) {
        ++j.failed;
        if (j.first_error.empty()) {
          j.first_error = absl::StrCat("member ", group_->NodeId(i), ": ", StatusText(m.status));
        }
        continue;
      }
      j.first_topology_ns =
          j.first_topology_ns == 0 ? m.topology_ns : std::min(j.first_topology_ns, m.topology_ns);
      j.last_topology_ns = std::max(j.last_topology_ns, m.topology_ns);
    }
    return j;
  }

  absl::Status Mark(int64_t end_ns) override {
    cpu0_ = CpuSeconds();
    at_start_ = pacer_->Mark(end_ns);
    return absl::OkStatus();
  }

  absl::StatusOr<SideCounts> Finish(absl::Duration timeout) override {
    pacer_->WaitUntilStopped();
    SideCounts c;
    c.cpu_s = CpuSeconds() - cpu0_;
    pacer_->Stop();
    const Pacer::Counts total = pacer_->counts();
    c.sent = total.sent;
    c.sent_in_window = total.sent - at_start_.sent;
    c.not_sent = total.not_sent;
    c.max_lag_ns = total.max_lag_ns;
    c.max_backlog = total.max_backlog;
    const int64_t deadline = NowNs() + absl::ToInt64Nanoseconds(std::min(timeout, kDrainTimeout));
    while (group_->heartbeats_written() < c.sent && NowNs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    c.written = group_->heartbeats_written();
    for (uint32_t i = 0; i < group_->spec().members; ++i) {
      const MemberState& m = group_->member(i);
      if (m.failed_ns != 0) {
        ++c.failure_events;
        if (c.first_event.empty()) {
          c.first_event = absl::StrCat(
              "member ", group_->NodeId(i), " was told ",
              m.dead_node_ids.empty() ? std::string("(nobody)") : "'" + m.dead_node_ids[0] + "'",
              " died");
        }
      }
      if (m.done_ns != 0) {
        ++c.streams_ended;
        if (c.first_ended.empty()) {
          c.first_ended = absl::StrCat("member ", group_->NodeId(i), ": ", StatusText(m.status));
        }
      }
    }
    return c;
  }

  absl::StatusOr<SideLeave> Leave(absl::Duration timeout) override {
    SideLeave l;
    l.failed = group_->LeaveAll(&l.first_error);
    return l;
  }

 private:
  explicit LocalSide(const HeartbeatOptions& o) : o_(o) {}

  const HeartbeatOptions& o_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::Rendezvous::Stub>> stubs_;
  std::unique_ptr<SessionGroup> group_;
  std::unique_ptr<Pacer> pacer_;
  std::thread join_thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool joined_ = false;
  double cpu0_ = 0;
  Pacer::Counts at_start_;
};

// A worker process and the line protocol it answers (see RunHeartbeatWorker):
//   -> JOIN                 <- JOINED failed first_topology_ns last_topology_ns [first error]
//   -> MARK end_ns          <- MARKED
//   -> FINISH               <- COUNTS sent sent_in_window not_sent written max_lag_ns
//                                     max_backlog failure_events streams_ended cpu_s
//                              EVENT [first failure event]
//                              ENDED [first ended session]
//   -> LEAVE                <- LEFT failed [first error]
// The worker prints CONNECTED once its channels are up; it exits when its stdin closes.
class ChildSide : public Side {
 public:
  static absl::StatusOr<std::unique_ptr<ChildSide>> Spawn(const std::vector<std::string>& args) {
    auto worker = WorkerProcess::Spawn(args, "heartbeat worker");
    if (!worker.ok()) return worker.status();
    return std::unique_ptr<ChildSide>(new ChildSide(std::move(*worker)));
  }

  void StartJoin() override { w_->Send("JOIN"); }

  absl::StatusOr<SideJoin> WaitJoined(absl::Duration timeout) override {
    absl::StatusOr<std::vector<std::string>> f = w_->Expect("JOINED", 3, timeout);
    if (!f.ok()) return f.status();
    SideJoin j;
    if (!absl::SimpleAtoi((*f)[0], &j.failed) || !absl::SimpleAtoi((*f)[1], &j.first_topology_ns) ||
        !absl::SimpleAtoi((*f)[2], &j.last_topology_ns)) {
      return w_->Malformed("JOINED");
    }
    j.first_error = w_->rest();
    return j;
  }

  absl::Status Mark(int64_t end_ns) override {
    w_->Send(absl::StrCat("MARK ", end_ns));
    return w_->Expect("MARKED", 0, absl::Seconds(30)).status();
  }

  absl::StatusOr<SideCounts> Finish(absl::Duration timeout) override {
    w_->Send("FINISH");
    absl::StatusOr<std::vector<std::string>> f = w_->Expect("COUNTS", 9, timeout);
    if (!f.ok()) return f.status();
    SideCounts c;
    const std::vector<std::string>& v = *f;
    if (!absl::SimpleAtoi(v[0], &c.sent) || !absl::SimpleAtoi(v[1], &c.sent_in_window) ||
        !absl::SimpleAtoi(v[2], &c.not_sent) || !absl::SimpleAtoi(v[3], &c.written) ||
        !absl::SimpleAtoi(v[4], &c.max_lag_ns) || !absl::SimpleAtoi(v[5], &c.max_backlog) ||
        !absl::SimpleAtoi(v[6], &c.failure_events) || !absl::SimpleAtoi(v[7], &c.streams_ended) ||
        !absl::SimpleAtod(v[8], &c.cpu_s)) {
      return w_->Malformed("COUNTS");
    }
    absl::StatusOr<std::vector<std::string>> e = w_->Expect("EVENT", 0, absl::Seconds(10));
    if (!e.ok()) return e.status();
    c.first_event = w_->rest();
    e = w_->Expect("ENDED", 0, absl::Seconds(10));
    if (!e.ok()) return e.status();
    c.first_ended = w_->rest();
    return c;
  }

  absl::StatusOr<SideLeave> Leave(absl::Duration timeout) override {
    w_->Send("LEAVE");
    absl::StatusOr<std::vector<std::string>> f = w_->Expect("LEFT", 1, timeout);
    if (!f.ok()) return f.status();
    SideLeave l;
    if (!absl::SimpleAtoi((*f)[0], &l.failed)) return w_->Malformed("LEFT");
    l.first_error = w_->rest();
    return l;
  }

 private:
  explicit ChildSide(std::unique_ptr<WorkerProcess> w) : w_(std::move(w)) {}

  std::unique_ptr<WorkerProcess> w_;
};

double PerSecond(double count, int64_t ns) {
  return ns > 0 ? count * 1e9 / static_cast<double>(ns) : std::numeric_limits<double>::quiet_NaN();
}

std::string Figure(double v, const char* format) {
  return std::isfinite(v) ? absl::StrFormat(format, v) : std::string("n/a");
}

// The arguments of worker k of `processes` (members and connections split evenly).
std::vector<std::string> WorkerArgs(const std::string& self, const HeartbeatOptions& o,
                                    uint32_t k) {
  const WorkerShare share = ShareOf(o.members, o.connections, o.processes, k);
  std::vector<std::string> args = {
      self, "heartbeat-worker", "--server", o.server, "--job-id", o.job_id,
      "--members", absl::StrCat(o.members), "--first", absl::StrCat(share.first),
      "--count", absl::StrCat(share.count), "--connections", absl::StrCat(share.connections),
      "--interval", absl::FormatDuration(o.interval),
      "--topo-timeout-s", absl::StrCat(o.topo_timeout_s)};
  if (o.node_timeout_s) {
    args.push_back("--node-timeout-s");
    args.push_back(absl::StrCat(*o.node_timeout_s));
  }
  if (o.named_nodes) args.push_back("--named-nodes");
  return args;
}

}  // namespace

int RunHeartbeatWorker(const HeartbeatOptions& o, uint32_t first, uint32_t count) {
  auto side = LocalSide::Connect(o, first, count, o.connections);
  if (!side.ok()) {
    std::fprintf(stderr, "ms-rendezvous-bench heartbeat-worker: %s\n",
                 std::string(side.status().message()).c_str());
    return 1;
  }
  auto say = SayLine;
  say("CONNECTED");
  char buf[256];
  while (std::fgets(buf, sizeof(buf), stdin) != nullptr) {
    absl::string_view cmd = absl::StripAsciiWhitespace(buf);
    if (cmd == "JOIN") {
      (*side)->StartJoin();
      absl::StatusOr<SideJoin> j = (*side)->WaitJoined(absl::Hours(24));
      if (!j.ok()) return 1;
      say(absl::StrCat("JOINED ", j->failed, " ", j->first_topology_ns, " ", j->last_topology_ns,
                       " ", OneLine(j->first_error)));
    } else if (absl::ConsumePrefix(&cmd, "MARK ")) {
      int64_t end_ns = 0;
      if (!absl::SimpleAtoi(cmd, &end_ns)) return 1;
      (void)(*side)->Mark(end_ns);
      say("MARKED");
    } else if (cmd == "FINISH") {
      absl::StatusOr<SideCounts> c = (*side)->Finish(kDrainTimeout);
      if (!c.ok()) return 1;
      say(absl::StrCat("COUNTS ", c->sent, " ", c->sent_in_window, " ", c->not_sent, " ",
                       c->written, " ", c->max_lag_ns, " ", c->max_backlog, " ",
                       c->failure_events, " ", c->streams_ended, " ",
                       absl::StrFormat("%.3f", c->cpu_s)));
      say(absl::StrCat("EVENT ", OneLine(c->first_event)));
      say(absl::StrCat("ENDED ", OneLine(c->first_ended)));
    } else if (cmd == "LEAVE") {
      absl::StatusOr<SideLeave> l = (*side)->Leave(absl::Hours(24));
      if (!l.ok()) return 1;
      say(absl::StrCat("LEFT ", l->failed, " ", OneLine(l->first_error)));
    }
  }
  return 0;
}

int RunHeartbeat(const HeartbeatOptions& o, LocalDaemon* daemon) {
  std::vector<std::string> problems;
  const uint32_t n = o.members;
  const double interval_s = absl::ToDoubleSeconds(o.interval);
  const double duration_s = absl::ToDoubleSeconds(o.duration);
  const double node_timeout_s = o.node_timeout_s.value_or(3 * interval_s);
  auto finish_early = [&](const std::string& why) {
    std::fprintf(stderr, "ms-rendezvous-bench: %s\n", why.c_str());
    if (daemon) daemon->KeepLogs();
    return 1;
  };

  // The members: in this process, or split over worker processes (each with its own gRPC
  // completion queue, whose per-operation cost grows with the calls outstanding on it).
  std::vector<std::unique_ptr<Side>> sides;
  LOG(INFO) << "connecting " << o.connections << " channels to " << o.server
            << (o.processes > 1 ? absl::StrCat(" from ", o.processes, " worker processes")
                                : std::string());
  if (o.processes <= 1) {
    auto side = LocalSide::Connect(o, 0, n, o.connections);
    if (!side.ok()) return finish_early(std::string(side.status().message()));
    sides.push_back(std::move(*side));
  } else {
    absl::StatusOr<std::string> dir = SelfDir();
    if (!dir.ok()) return finish_early(std::string(dir.status().message()));
    for (uint32_t k = 0; k < o.processes; ++k) {
      auto side = ChildSide::Spawn(WorkerArgs(*dir + "/ms-rendezvous-bench", o, k));
      if (!side.ok()) return finish_early(std::string(side.status().message()));
      sides.push_back(std::move(*side));
    }
  }

  Sampler sampler(o);
  const Sample before_join = sampler.Take();

  // Each member heartbeats from its own topology on, as the client library does; the measured
  // window starts once every member has its topology.
  LOG(INFO) << "joining " << n << " session members to job " << o.job_id << " (MS_NODE_TIMEOUT "
            << node_timeout_s << " s); each heartbeats every " << absl::FormatDuration(o.interval)
            << " from its topology on";
  const int64_t join_start = NowNs();
  for (auto& side : sides) side->StartJoin();
  SideJoin joined;
  const absl::Duration join_timeout = absl::Seconds(o.topo_timeout_s + 120);
  for (auto& side : sides) {
    absl::StatusOr<SideJoin> j = side->WaitJoined(join_timeout);
    if (!j.ok()) return finish_early(std::string(j.status().message()));
    joined.failed += j->failed;
    if (joined.first_error.empty()) joined.first_error = j->first_error;
    if (j->first_topology_ns != 0) {
      joined.first_topology_ns = joined.first_topology_ns == 0
                                     ? j->first_topology_ns
                                     : std::min(joined.first_topology_ns, j->first_topology_ns);
    }
    joined.last_topology_ns = std::max(joined.last_topology_ns, j->last_topology_ns);
  }
  const double join_s = static_cast<double>(joined.last_topology_ns - join_start) / 1e9;
  // The daemon judges liveness from the job's completion on (about the first topology), so the
  // members that get their topology last have the least slack before their first heartbeat.
  const double topology_spread_s =
      static_cast<double>(joined.last_topology_ns - joined.first_topology_ns) / 1e9;
  const bool join_ok = joined.failed == 0;
  if (!join_ok) {
    problems.push_back(absl::StrCat(joined.failed, " of ", n, " session joins failed; first: ",
                                    joined.first_error));
  }

  // The window: `duration` from the moment every member had its topology.
  Sample start, end;
  std::vector<Sample> samples;
  SideCounts counts;
  const double own_cpu0 = CpuSeconds();
  if (join_ok) {
    LOG(INFO) << "every member joined; measuring " << absl::FormatDuration(o.duration) << " ("
              << n / interval_s << " heartbeats/s expected)";
    start = sampler.Take();
    const int64_t end_ns = start.t_ns + absl::ToInt64Nanoseconds(o.duration);
    for (auto& side : sides) {
      if (absl::Status s = side->Mark(end_ns); !s.ok()) return finish_early(std::string(s.message()));
    }
    {
      PeriodicSampler periodic(&sampler);
      const int64_t wait = end_ns - NowNs();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
      end = sampler.Take();
      periodic.Stop();
      samples = periodic.samples();
    }
    for (auto& side : sides) {
      absl::StatusOr<SideCounts> c = side->Finish(kDrainTimeout + absl::Seconds(60));
      if (!c.ok()) return finish_early(std::string(c.status().message()));
      counts.sent += c->sent;
      counts.sent_in_window += c->sent_in_window;
      counts.not_sent += c->not_sent;
      counts.written += c->written;
      counts.max_lag_ns = std::max(counts.max_lag_ns, c->max_lag_ns);
      counts.max_backlog = std::max(counts.max_backlog, c->max_backlog);
      counts.failure_events += c->failure_events;
      counts.streams_ended += c->streams_ended;
      counts.cpu_s += c->cpu_s;
      if (counts.first_event.empty()) counts.first_event = c->first_event;
      if (counts.first_ended.empty()) counts.first_ended = c->first_ended;
    }
  }
  // The bench's CPU: the workers' (or, in-process, this process's over the window) plus this
  // process's own sampling when there are workers.
  const double bench_cpu_s = counts.cpu_s + (o.processes > 1 ? CpuSeconds() - own_cpu0 : 0);
  const int64_t window_ns = end.t_ns - start.t_ns;

  // Drain: the daemon's counter caught up with every heartbeat written (or stopped moving).
  Sample drained = end;
  if (join_ok) {
    const int64_t deadline = NowNs() + absl::ToInt64Nanoseconds(kDrainTimeout);
    double last_accepted = -1;
    while (true) {
      drained = sampler.Take();
      if (!std::isfinite(drained.accepted) ||
          drained.accepted - before_join.accepted >= counts.written ||
          drained.accepted == last_accepted || NowNs() >= deadline) {
        break;
      }
      last_accepted = drained.accepted;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  const double accepted_total = drained.accepted - before_join.accepted;
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
  const Sample after = sampler.Take();
  const double declared_dead = after.declared_dead - before_join.declared_dead;
  const uint64_t false_detections =
      std::isfinite(declared_dead) ? static_cast<uint64_t>(std::max(0.0, declared_dead))
                                   : counts.failure_events;
  if (join_ok) {
    if (std::isfinite(declared_dead) && declared_dead > 0) {
      problems.push_back(absl::StrCat("the daemon declared ", declared_dead,
                                      " members dead (false detections)"));
    }
    if (counts.failure_events > 0) {
      problems.push_back(absl::StrCat(counts.failure_events,
                                      " members got a failure event; first: ", counts.first_event));
    }
    if (counts.streams_ended > 0) {
      problems.push_back(absl::StrCat(counts.streams_ended,
                                      " sessions ended during the run; first: ", counts.first_ended));
    }
    if (counts.not_sent > 0) {
      problems.push_back(
          absl::StrCat(counts.not_sent, " heartbeats found their member's session gone"));
    }
    if (counts.written < counts.sent) {
      problems.push_back(absl::StrCat(counts.sent - counts.written, " of ", counts.sent,
                                      " heartbeats were not written within ",
                                      absl::FormatDuration(kDrainTimeout), " of the end"));
    }
    if (std::isfinite(accepted_total) && accepted_total < static_cast<double>(counts.written)) {
      problems.push_back(absl::StrCat(counts.written - static_cast<uint64_t>(accepted_total),
                                      " of ", counts.written,
                                      " heartbeats written were not accepted by the daemon"));
    }
    for (auto& side : sides) {
      absl::StatusOr<SideLeave> l = side->Leave(absl::Seconds(180));
      if (!l.ok()) {
        problems.push_back(std::string(l.status().message()));
      } else if (l->failed > 0) {
        problems.push_back(absl::StrCat(l->failed, " leaves failed; first: ", l->first_error));
      }
    }
  }
  sides.clear();
  if (daemon) {
    if (absl::Status s = daemon->Stop(); !s.ok()) problems.push_back(std::string(s.message()));
  }

  const double expected_per_s = n / interval_s;
  const double sent_per_s = PerSecond(static_cast<double>(counts.sent_in_window), window_ns);
  const double accepted_per_s = PerSecond(accepted_in_window, window_ns);
  const double daemon_cpu_s = end.daemon_cpu_s - start.daemon_cpu_s;
  const double daemon_cpu_pct = 100 * PerSecond(daemon_cpu_s, window_ns);
  const double bench_cpu_pct = 100 * PerSecond(bench_cpu_s, window_ns);
  const double cpu_us_per_heartbeat =
      accepted_in_window > 0 ? daemon_cpu_s * 1e6 / accepted_in_window
                             : std::numeric_limits<double>::quiet_NaN();
  const double max_lag_ms = static_cast<double>(counts.max_lag_ns) / 1e6;

  ctl::Table table({"scenario", "heartbeat"});
  table.AddRow({"server", o.server});
  table.AddRow({"job", o.job_id});
  table.AddRow({"members / connections / bench processes",
                absl::StrCat(n, " / ", o.connections, " / ", std::max<uint32_t>(1, o.processes))});
  table.AddRow({"join (session streams)",
                absl::StrFormat("%.3f s (topologies delivered over %.3f s)", join_s,
                                topology_spread_s)});
  table.AddRow({"interval / duration / node timeout",
                absl::StrFormat("%.3g s / %.3g s / %.3g s", interval_s, duration_s,
                                node_timeout_s)});
  table.AddRow({"heartbeats expected", absl::StrFormat("%.0f /s", expected_per_s)});
  table.AddRow({"heartbeats sent in window / in all",
                absl::StrFormat("%d (%.0f /s; pacing lag max %.1f ms) / %d",
                                counts.sent_in_window, sent_per_s, max_lag_ms, counts.sent)});
  table.AddRow({"heartbeats accepted (daemon counter)",
                std::isfinite(accepted_total)
                    ? absl::StrFormat("%.0f of %d written", accepted_total, counts.written)
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
  table.AddRow({"daemon peak rss (VmHWM, whole run)",
                after.daemon_peak_kib >= 0 ? absl::StrFormat("%d KiB", after.daemon_peak_kib)
                                           : std::string("n/a")});
  table.AddRow({"bench cpu (window)",
                absl::StrFormat("%.2f s = %.1f%% of one core", bench_cpu_s, bench_cpu_pct)});
  table.AddRow({"stream backlog max (writes queued)", absl::StrCat(counts.max_backlog)});
  table.AddRow({"false detections (declared dead)", absl::StrCat(false_detections)});
  table.AddRow({"failure events / sessions ended",
                absl::StrCat(counts.failure_events, " / ", counts.streams_ended)});
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
  w.Key("topology_spread_s").Double(topology_spread_s, 4);
  w.Key("expected_per_s").Double(expected_per_s, 1);
  w.Key("sent").Uint(counts.sent);
  w.Key("sent_in_window").Uint(counts.sent_in_window);
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
  w.Key("failure_events").Uint(counts.failure_events);
  w.Key("streams_ended").Uint(counts.streams_ended);
  w.Key("processes").Uint(std::max<uint32_t>(1, o.processes));
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  std::fflush(stdout);
  if (daemon && !problems.empty()) daemon->KeepLogs();
  return problems.empty() ? 0 : 1;
}

}  // namespace ms_rendezvous::bench
