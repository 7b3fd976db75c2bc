#include "tools/bench/liveness_scenarios.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "glog/logging.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/session_group.h"
#include "tools/bench/worker_process.h"
#include "tools/common/json.h"
#include "tools/ctl/render.h"

namespace ms_rendezvous::bench {
namespace {

std::string StatusText(const grpc::Status& st) {
  return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(st.error_code())),
                      ": ", st.error_message());
}

struct Connected {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::Rendezvous::Stub>> stubs;
  std::vector<v1::Rendezvous::Stub*> raw;
};

absl::StatusOr<Connected> Connect(const LivenessOptions& o, bool fast_reconnect) {
  ChannelOptions co;
  co.server = o.server;
  co.connections = o.connections;
  co.fast_reconnect = fast_reconnect;
  LOG(INFO) << "connecting " << o.connections << " channels to " << o.server;
  auto channels = ConnectChannels(co);
  if (!channels.ok()) return channels.status();
  Connected c;
  c.channels = std::move(*channels);
  for (auto& ch : c.channels) {
    c.stubs.push_back(v1::Rendezvous::NewStub(ch));
    c.raw.push_back(c.stubs.back().get());
  }
  return c;
}

GroupSpec SpecOf(const LivenessOptions& o) {
  GroupSpec spec;
  spec.job_id = o.job_id;
  spec.members = o.members;
  spec.topo_timeout_s = o.topo_timeout_s;
  spec.node_timeout_s = o.node_timeout_s;
  spec.named_nodes = o.named_nodes;
  return spec;
}

// Joins everybody; on failure returns the problem.
std::string JoinAll(SessionGroup& group, double* join_s) {
  int64_t start = NowNs();
  group.JoinAll();
  int64_t last = start;
  uint64_t failed = 0;
  std::string first;
  for (uint32_t i = 0; i < group.spec().members; ++i) {
    const MemberState& m = group.member(i);
    if (m.topology_ns != 0) {
      last = std::max(last, m.topology_ns);
      continue;
    }
    ++failed;
    if (first.empty()) first = absl::StrCat("member ", i, ": ", StatusText(m.status));
  }
  *join_s = static_cast<double>(last - start) / 1e9;
  if (failed == 0) return "";
  return absl::StrCat(failed, " of ", group.spec().members, " session joins failed; first: ",
                      first);
}

void Finish(const std::vector<std::string>& problems, ctl::Table& table,
            const tools::JsonWriter& w) {
  table.AddRow({"result", problems.empty() ? "PASS" : "FAIL"});
  std::fputs(table.Render().c_str(), stdout);
  for (const std::string& p : problems) {
    std::fprintf(stderr, "ms-rendezvous-bench: FAIL: %s\n", p.c_str());
  }
  std::printf("%s\n", w.str().c_str());
  std::fflush(stdout);
}

}  // namespace

int RunFailure(const LivenessOptions& o, LocalDaemon* daemon) {
  std::vector<std::string> problems;
  auto connected = Connect(o, /*fast_reconnect=*/false);
  if (!connected.ok()) {
    std::fprintf(stderr, "ms-rendezvous-bench: %s\n", std::string(connected.status().message()).c_str());
    return 1;
  }
  const uint32_t n = o.members;
  // The member whose process "dies": one in the middle (rank order does not matter to the
  // daemon, which fans out to every session).
  const uint32_t victim = n / 2;
  const std::string victim_id = MemberNodeId(o.named_nodes, victim);
  auto group = std::make_unique<SessionGroup>(connected->raw, SpecOf(o));
  double join_s = 0;
  LOG(INFO) << "joining " << n << " session members to job " << o.job_id;
  std::string join_problem = JoinAll(*group, &join_s);
  int64_t kill_ns = 0;
  bool all_ended = false;
  if (!join_problem.empty()) {
    problems.push_back(join_problem);
  } else {
    LOG(INFO) << "breaking the session of member " << victim_id << " (as kill -9 would)";
    kill_ns = NowNs();
    group->Kill(victim);
    all_ended = group->WaitEnded(-1, o.disconnect_grace + o.timeout);
  }

  uint64_t notified = 0, false_detections = 0, missed = 0;
  std::string first_missed, first_false;
  std::vector<int64_t> latencies;
  int64_t first_ns = 0, last_ns = 0;
  if (kill_ns != 0) {
    for (uint32_t i = 0; i < n; ++i) {
      if (i == victim) continue;
      const MemberState& m = group->member(i);
      if (m.failed_ns == 0) {
        ++missed;
        if (first_missed.empty()) {
          first_missed = absl::StrCat(
              "member ", i, " ",
              m.done_ns == 0 ? std::string("still waiting") : "ended with " + StatusText(m.status),
              " without a JOB_FAILED event");
        }
        continue;
      }
      ++notified;
      // Exactly the killed member must be named: anyone else is a false detection.
      if (m.dead_node_ids.size() != 1 || m.dead_node_ids[0] != victim_id) {
        ++false_detections;
        if (first_false.empty()) {
          first_false = absl::StrCat("member ", i, " was told of ", m.dead_node_ids.size(),
                                     " dead members, first '",
                                     m.dead_node_ids.empty() ? "" : m.dead_node_ids[0], "'");
        }
      }
      latencies.push_back(m.failed_ns - kill_ns);
      first_ns = first_ns == 0 ? m.failed_ns : std::min(first_ns, m.failed_ns);
      last_ns = std::max(last_ns, m.failed_ns);
    }
    if (!all_ended) {
      problems.push_back(absl::StrCat("not every stream ended within ",
                                      absl::FormatDuration(o.disconnect_grace + o.timeout),
                                      " of the kill"));
    }
    if (missed > 0) {
      problems.push_back(absl::StrCat(missed, " of ", n - 1,
                                      " survivors got no failure event; first: ", first_missed));
    }
    if (false_detections > 0) {
      problems.push_back(
          absl::StrCat(false_detections, " false detections; first: ", first_false));
    }
  }
  std::sort(latencies.begin(), latencies.end());
  const double grace_s = absl::ToDoubleSeconds(o.disconnect_grace);
  const double detect_s = first_ns ? static_cast<double>(first_ns - kill_ns) / 1e9 : 0;
  const double fanout_s = first_ns ? static_cast<double>(last_ns - first_ns) / 1e9 : 0;
  const double p50 = PercentileMs(latencies, 0.5), p99 = PercentileMs(latencies, 0.99);
  const double max_ms = latencies.empty() ? 0 : static_cast<double>(latencies.back()) / 1e6;
  group.reset();
  connected->stubs.clear();
  connected->channels.clear();
  if (daemon) {
    if (absl::Status s = daemon->Stop(); !s.ok()) problems.push_back(std::string(s.message()));
  }

  ctl::Table table({"scenario", "failure"});
  table.AddRow({"server", o.server});
  table.AddRow({"job", o.job_id});
  table.AddRow({"members / connections", absl::StrCat(n, " / ", o.connections)});
  table.AddRow({"join (session streams)", absl::StrFormat("%.3f s", join_s)});
  table.AddRow({"killed", absl::StrCat("member '", victim_id, "' (its stream reset)")});
  table.AddRow({"daemon disconnect grace", absl::FormatDuration(o.disconnect_grace)});
  table.AddRow({"detect (kill -> first survivor event)", absl::StrFormat("%.3f s", detect_s)});
  table.AddRow({"  minus the grace", absl::StrFormat("%.3f s", detect_s - grace_s)});
  table.AddRow({"fan-out (first -> last survivor event)", absl::StrFormat("%.3f s", fanout_s)});
  table.AddRow({"per-survivor latency p50 / p99 / max",
                absl::StrFormat("%.1f / %.1f / %.1f ms", p50, p99, max_ms)});
  table.AddRow({"survivors notified", absl::StrCat(notified, " of ", n - 1)});
  table.AddRow({"false detections", absl::StrCat(false_detections)});

  tools::JsonWriter w;
  w.BeginObject();
  w.Key("scenario").String("failure");
  w.Key("members").Uint(n);
  w.Key("connections").Uint(o.connections);
  w.Key("grace_s").Double(grace_s, 3);
  w.Key("detect_s").Double(detect_s, 4);
  w.Key("detect_after_grace_s").Double(detect_s - grace_s, 4);
  w.Key("fanout_s").Double(fanout_s, 4);
  w.Key("p50_ms").Double(p50, 3);
  w.Key("p99_ms").Double(p99, 3);
  w.Key("max_ms").Double(max_ms, 3);
  w.Key("notified").Uint(notified);
  w.Key("false_detections").Uint(false_detections);
  w.Key("join_s").Double(join_s, 4);
  w.EndObject();
  Finish(problems, table, w);
  if (daemon && !problems.empty()) daemon->KeepLogs();
  return problems.empty() ? 0 : 1;
}

namespace {

// What one group of the restart scenario's members (in this process or a worker process)
// reports.
struct RestartJoined {
  uint64_t failed = 0;
  std::string first_error;
  int64_t last_topology_ns = 0;  // 0: none
};
struct RestartResumed {
  uint64_t resumed = 0;
  uint64_t errors = 0;  // members that did not resume
  uint64_t rank_changes = 0;
  uint64_t generation_changes = 0;
  uint64_t attempts = 0;  // resume attempts, retries included (the join does not count)
  uint64_t woken_by_ready = 0;
  // A worker process's CPU from Arm() until its members resumed; 0 in this process, whose CPU
  // the scenario reads itself.
  double cpu_s = 0;
  std::string first_error;
  std::vector<int64_t> resumed_ns;  // each resumed member's new topology (NowNs() clock)
};

// A group of the restart scenario's members: RestartMembers runs them in this process,
// RestartChild in a worker process (`ms-rendezvous-bench restart-worker`) that runs a
// RestartMembers and answers over pipes.
class RestartSide {
 public:
  virtual ~RestartSide() = default;
  virtual void StartJoin() = 0;
  virtual absl::StatusOr<RestartJoined> WaitJoined(absl::Duration timeout) = 0;
  // Right before the kill: the worker's CPU figure starts here.
  virtual absl::Status Arm() = 0;
  // Right after the kill: every member resumes once its stream ended, retrying until
  // `deadline_ns`.
  virtual void StartResume(int64_t deadline_ns) = 0;
  virtual absl::StatusOr<RestartResumed> WaitResumed(absl::Duration timeout) = 0;
  // Every resumed member leaves; returns the failures ("CODE: message" of the first).
  virtual absl::StatusOr<uint64_t> Leave(std::string* first_error) = 0;
};

class RestartMembers : public RestartSide {
 public:
  // Members first..first+count-1 of a job of o.members workers, over o.connections channels.
  // `own_cpu`: report this process's CPU from Arm() on (a worker process: the whole process is
  // these members).
  static absl::StatusOr<std::unique_ptr<RestartMembers>> Connect(const LivenessOptions& o,
                                                                 uint32_t first, uint32_t count,
                                                                 bool own_cpu) {
    // Members reconnect on the client library's short backoff, as real members would.
    auto connected = bench::Connect(o, /*fast_reconnect=*/true);
    if (!connected.ok()) return connected.status();
    std::unique_ptr<RestartMembers> m(new RestartMembers(first, own_cpu));
    m->connected_ = std::move(*connected);
    GroupSpec spec = SpecOf(o);
    spec.members = count;
    spec.first_node = first;
    spec.world = o.members;
    m->group_ = std::make_unique<SessionGroup>(m->connected_.raw, spec);
    std::vector<grpc::Channel*> channels;
    for (auto& ch : m->connected_.channels) channels.push_back(ch.get());
    m->group_->SetChannels(std::move(channels));
    return m;
  }

  ~RestartMembers() override {
    if (thread_.joinable()) thread_.join();
    group_.reset();  // before the channels it uses
  }

  // The join and the resume run on a thread of their own so that several groups (or the
  // daemon's restart) proceed meanwhile.
  void StartJoin() override {
    thread_ = std::thread([this] { group_->JoinAll(); });
  }

  absl::StatusOr<RestartJoined> WaitJoined(absl::Duration) override {
    thread_.join();
    RestartJoined j;
    for (uint32_t i = 0; i < group_->spec().members; ++i) {
      const MemberState& m = group_->member(i);
      if (m.topology_ns != 0) {
        j.last_topology_ns = std::max(j.last_topology_ns, m.topology_ns);
        continue;
      }
      ++j.failed;
      if (j.first_error.empty()) {
        j.first_error = absl::StrCat("member ", first_ + i, ": ", StatusText(m.status));
      }
    }
    return j;
  }

  absl::Status Arm() override {
    cpu0_ = CpuSeconds();
    return absl::OkStatus();
  }

  void StartResume(int64_t deadline_ns) override {
    thread_ = std::thread([this, deadline_ns] {
      group_->ResumeAll(deadline_ns);
      if (own_cpu_) cpu_s_ = CpuSeconds() - cpu0_;
    });
  }

  absl::StatusOr<RestartResumed> WaitResumed(absl::Duration) override {
    thread_.join();
    RestartResumed r;
    r.cpu_s = cpu_s_;
    for (uint32_t i = 0; i < group_->spec().members; ++i) {
      const MemberState& m = group_->member(i);
      r.attempts += m.attempts - 1;  // the join does not count
      if (m.topology_ns == 0) {
        ++r.errors;
        if (r.first_error.empty()) {
          r.first_error = absl::StrCat("member ", first_ + i, ": ", StatusText(m.status));
        }
        continue;
      }
      ++r.resumed;
      r.resumed_ns.push_back(m.topology_ns);
      if (m.topology.rank() != m.joined.rank()) ++r.rank_changes;
      if (m.topology.generation() != m.joined.generation()) ++r.generation_changes;
    }
    r.woken_by_ready = group_->retries_woken_by_ready();
    return r;
  }

  absl::StatusOr<uint64_t> Leave(std::string* first_error) override {
    return group_->LeaveAll(first_error);
  }

 private:
  RestartMembers(uint32_t first, bool own_cpu) : first_(first), own_cpu_(own_cpu) {}

  const uint32_t first_;
  const bool own_cpu_;
  Connected connected_;
  std::unique_ptr<SessionGroup> group_;
  std::thread thread_;
  double cpu0_ = 0;
  double cpu_s_ = 0;
};

// A worker process and the line protocol it answers (see RunRestartWorker):
//   -> JOIN                 <- JOINED failed last_topology_ns [first error]
//   -> ARM                  <- ARMED
//   -> RESUME deadline_ns   <- RESUMED resumed errors rank_changes generation_changes attempts
//                                      woken_by_ready cpu_s [first error]
//                              TIMES [resumed_ns ...]
//   -> LEAVE                <- LEFT failed [first error]
// Timestamps are NowNs() (CLOCK_MONOTONIC), one clock for every process on the machine, so the
// parent compares a worker's resume times with its own kill time directly.
class RestartChild : public RestartSide {
 public:
  static absl::StatusOr<std::unique_ptr<RestartChild>> Spawn(const std::vector<std::string>& args) {
    auto worker = WorkerProcess::Spawn(args, "restart worker");
    if (!worker.ok()) return worker.status();
    return std::unique_ptr<RestartChild>(new RestartChild(std::move(*worker)));
  }

  void StartJoin() override { w_->Send("JOIN"); }

  absl::StatusOr<RestartJoined> WaitJoined(absl::Duration timeout) override {
    absl::StatusOr<std::vector<std::string>> f = w_->Expect("JOINED", 2, timeout);
    if (!f.ok()) return f.status();
    RestartJoined j;
    if (!absl::SimpleAtoi((*f)[0], &j.failed) || !absl::SimpleAtoi((*f)[1], &j.last_topology_ns)) {
      return w_->Malformed("JOINED");
    }
    j.first_error = w_->rest();
    return j;
  }

  absl::Status Arm() override {
    w_->Send("ARM");
    return w_->Expect("ARMED", 0, absl::Seconds(30)).status();
  }

  void StartResume(int64_t deadline_ns) override {
    w_->Send(absl::StrCat("RESUME ", deadline_ns));
  }

  absl::StatusOr<RestartResumed> WaitResumed(absl::Duration timeout) override {
    absl::StatusOr<std::vector<std::string>> f = w_->Expect("RESUMED", 7, timeout);
    if (!f.ok()) return f.status();
    RestartResumed r;
    const std::vector<std::string>& v = *f;
    if (!absl::SimpleAtoi(v[0], &r.resumed) || !absl::SimpleAtoi(v[1], &r.errors) ||
        !absl::SimpleAtoi(v[2], &r.rank_changes) ||
        !absl::SimpleAtoi(v[3], &r.generation_changes) || !absl::SimpleAtoi(v[4], &r.attempts) ||
        !absl::SimpleAtoi(v[5], &r.woken_by_ready) || !absl::SimpleAtod(v[6], &r.cpu_s)) {
      return w_->Malformed("RESUMED");
    }
    r.first_error = w_->rest();
    absl::StatusOr<std::vector<std::string>> t = w_->Expect("TIMES", 0, absl::Seconds(30));
    if (!t.ok()) return t.status();
    for (absl::string_view field : absl::StrSplit(w_->rest(), ' ', absl::SkipEmpty())) {
      int64_t ns = 0;
      if (!absl::SimpleAtoi(field, &ns)) return w_->Malformed("TIMES");
      r.resumed_ns.push_back(ns);
    }
    if (r.resumed_ns.size() != r.resumed) return w_->Malformed("TIMES");
    return r;
  }

  absl::StatusOr<uint64_t> Leave(std::string* first_error) override {
    w_->Send("LEAVE");
    absl::StatusOr<std::vector<std::string>> f = w_->Expect("LEFT", 1, absl::Seconds(180));
    if (!f.ok()) return f.status();
    uint64_t failed = 0;
    if (!absl::SimpleAtoi((*f)[0], &failed)) return w_->Malformed("LEFT");
    if (failed > 0 && first_error->empty()) *first_error = w_->rest();
    return failed;
  }

 private:
  explicit RestartChild(std::unique_ptr<WorkerProcess> w) : w_(std::move(w)) {}

  std::unique_ptr<WorkerProcess> w_;
};

// The arguments of restart worker k of o.processes (members and connections split evenly).
std::vector<std::string> RestartWorkerArgs(const std::string& self, const LivenessOptions& o,
                                           uint32_t k) {
  const WorkerShare share = ShareOf(o.members, o.connections, o.processes, k);
  std::vector<std::string> args = {
      self, "restart-worker", "--server", o.server, "--job-id", o.job_id,
      "--members", absl::StrCat(o.members), "--first", absl::StrCat(share.first),
      "--count", absl::StrCat(share.count), "--connections", absl::StrCat(share.connections),
      "--topo-timeout-s", absl::StrCat(o.topo_timeout_s),
      "--node-timeout-s", absl::StrCat(o.node_timeout_s)};
  if (o.named_nodes) args.push_back("--named-nodes");
  return args;
}

}  // namespace

int RunRestartWorker(const LivenessOptions& o, uint32_t first, uint32_t count) {
  auto side = RestartMembers::Connect(o, first, count, /*own_cpu=*/true);
  if (!side.ok()) {
    std::fprintf(stderr, "ms-rendezvous-bench restart-worker: %s\n",
                 std::string(side.status().message()).c_str());
    return 1;
  }
  SayLine("CONNECTED");
  char buf[256];
  while (std::fgets(buf, sizeof(buf), stdin) != nullptr) {
    absl::string_view cmd = absl::StripAsciiWhitespace(buf);
    if (cmd == "JOIN") {
      (*side)->StartJoin();
      absl::StatusOr<RestartJoined> j = (*side)->WaitJoined(absl::InfiniteDuration());
      if (!j.ok()) return 1;
      SayLine(absl::StrCat("JOINED ", j->failed, " ", j->last_topology_ns, " ",
                           OneLine(j->first_error)));
    } else if (cmd == "ARM") {
      (void)(*side)->Arm();
      SayLine("ARMED");
    } else if (absl::ConsumePrefix(&cmd, "RESUME ")) {
      int64_t deadline_ns = 0;
      if (!absl::SimpleAtoi(cmd, &deadline_ns)) return 1;
      (*side)->StartResume(deadline_ns);
      absl::StatusOr<RestartResumed> r = (*side)->WaitResumed(absl::InfiniteDuration());
      if (!r.ok()) return 1;
      SayLine(absl::StrCat("RESUMED ", r->resumed, " ", r->errors, " ", r->rank_changes, " ",
                           r->generation_changes, " ", r->attempts, " ", r->woken_by_ready, " ",
                           absl::StrFormat("%.3f", r->cpu_s), " ", OneLine(r->first_error)));
      SayLine(absl::StrCat("TIMES ", absl::StrJoin(r->resumed_ns, " ")));
    } else if (cmd == "LEAVE") {
      std::string first_error;
      absl::StatusOr<uint64_t> failed = (*side)->Leave(&first_error);
      if (!failed.ok()) return 1;
      SayLine(absl::StrCat("LEFT ", *failed, " ", OneLine(first_error)));
    }
  }
  return 0;
}

int RunRestart(const LivenessOptions& o, LocalDaemon* daemon) {
  std::vector<std::string> problems;
  const uint32_t n = o.members;
  const uint32_t processes = std::max<uint32_t>(1, o.processes);
  auto finish_early = [&](const std::string& why) {
    std::fprintf(stderr, "ms-rendezvous-bench: %s\n", why.c_str());
    daemon->KeepLogs();
    return 1;
  };

  // The members: in this process, or split over worker processes, so that the client side of
  // 10,000 reconnections is spread over processes as real members' is, instead of one event
  // loop noticing every closed connection and every new one in turn.
  std::vector<std::unique_ptr<RestartSide>> sides;
  if (processes == 1) {
    auto side = RestartMembers::Connect(o, 0, n, /*own_cpu=*/false);
    if (!side.ok()) return finish_early(std::string(side.status().message()));
    sides.push_back(std::move(*side));
  } else {
    LOG(INFO) << "connecting " << o.connections << " channels to " << o.server << " from "
              << processes << " worker processes";
    absl::StatusOr<std::string> dir = SelfDir();
    if (!dir.ok()) return finish_early(std::string(dir.status().message()));
    for (uint32_t k = 0; k < processes; ++k) {
      auto side = RestartChild::Spawn(RestartWorkerArgs(*dir + "/ms-rendezvous-bench", o, k));
      if (!side.ok()) return finish_early(std::string(side.status().message()));
      sides.push_back(std::move(*side));
    }
  }

  LOG(INFO) << "joining " << n << " session members to job " << o.job_id;
  const int64_t join_start = NowNs();
  for (auto& side : sides) side->StartJoin();
  RestartJoined joined;
  const absl::Duration join_timeout = absl::Seconds(o.topo_timeout_s + 120);
  for (auto& side : sides) {
    absl::StatusOr<RestartJoined> j = side->WaitJoined(join_timeout);
    if (!j.ok()) return finish_early(std::string(j.status().message()));
    joined.failed += j->failed;
    if (joined.first_error.empty()) joined.first_error = j->first_error;
    joined.last_topology_ns = std::max(joined.last_topology_ns, j->last_topology_ns);
  }
  const double join_s =
      static_cast<double>(std::max(joined.last_topology_ns, join_start) - join_start) / 1e9;

  int64_t kill_ns = 0, up_ns = 0, last_ns = 0;
  // CPU seconds from the kill until every member resumed: the restarted daemon's (all of its
  // life: start-up, state load, 10k reconnects) and the members' side: this process's plus,
  // with worker processes, each worker's (from right before the kill until its members resumed).
  double daemon_cpu_s = 0, bench_cpu_s = 0, workers_cpu_s = 0;
  RestartResumed total;
  std::vector<int64_t> from_up;
  absl::Status restarted = absl::OkStatus();
  if (joined.failed > 0) {
    problems.push_back(absl::StrCat(joined.failed, " of ", n, " session joins failed; first: ",
                                    joined.first_error));
  } else {
    for (auto& side : sides) {
      if (absl::Status s = side->Arm(); !s.ok()) return finish_early(std::string(s.message()));
    }
    LOG(INFO) << "kill -9 of the daemon (pid " << daemon->pid() << "), restart on "
              << daemon->address();
    kill_ns = NowNs();
    const double bench_cpu_at_kill = CpuSeconds();
    daemon->Kill();
    // The members resume beside the restart, retrying (jittered backoff) while the port is not
    // up yet.
    const int64_t deadline_ns = NowNs() + absl::ToInt64Nanoseconds(o.timeout);
    for (auto& side : sides) side->StartResume(deadline_ns);
    std::thread restarter([&] {
      restarted = daemon->Restart(absl::Seconds(60));
      up_ns = NowNs();
    });
    std::vector<RestartResumed> results;
    absl::Status waited = absl::OkStatus();
    for (auto& side : sides) {
      absl::StatusOr<RestartResumed> r = side->WaitResumed(o.timeout + absl::Seconds(120));
      if (!r.ok()) {
        if (waited.ok()) waited = r.status();
        continue;
      }
      results.push_back(std::move(*r));
    }
    restarter.join();
    bench_cpu_s = CpuSeconds() - bench_cpu_at_kill;
    if (!waited.ok()) return finish_early(std::string(waited.message()));
    if (!restarted.ok()) {
      problems.push_back(std::string(restarted.message()));
    } else if (absl::StatusOr<ProcStats> st = ReadProcStats(daemon->pid()); st.ok()) {
      daemon_cpu_s = st->cpu_s;
    }
    for (const RestartResumed& r : results) {
      total.resumed += r.resumed;
      total.errors += r.errors;
      total.rank_changes += r.rank_changes;
      total.generation_changes += r.generation_changes;
      total.attempts += r.attempts;
      total.woken_by_ready += r.woken_by_ready;
      workers_cpu_s += r.cpu_s;
      if (total.first_error.empty()) total.first_error = r.first_error;
      for (int64_t t : r.resumed_ns) {
        last_ns = std::max(last_ns, t);
        from_up.push_back(t - up_ns);
      }
    }
    bench_cpu_s += workers_cpu_s;
    if (total.errors > 0) {
      problems.push_back(absl::StrCat(total.errors, " of ", n, " members did not resume; first: ",
                                      total.first_error));
    }
    if (total.rank_changes > 0) {
      problems.push_back(absl::StrCat(total.rank_changes, " ranks changed"));
    }
    if (total.generation_changes > 0) {
      problems.push_back(absl::StrCat(total.generation_changes, " generations changed"));
    }
    uint64_t leave_failed = 0;
    std::string leave_error;
    for (auto& side : sides) {
      absl::StatusOr<uint64_t> failed = side->Leave(&leave_error);
      if (!failed.ok()) {
        problems.push_back(std::string(failed.status().message()));
      } else {
        leave_failed += *failed;
      }
    }
    if (leave_failed > 0) {
      problems.push_back(absl::StrCat(leave_failed, " leaves after the resume failed; first: ",
                                      leave_error));
    }
  }
  std::sort(from_up.begin(), from_up.end());
  const double restart_s = up_ns ? static_cast<double>(up_ns - kill_ns) / 1e9 : 0;
  const double resume_s = last_ns ? static_cast<double>(last_ns - kill_ns) / 1e9 : 0;
  const double resume_from_up_s = last_ns ? static_cast<double>(last_ns - up_ns) / 1e9 : 0;
  const double p50 = PercentileMs(from_up, 0.5), p99 = PercentileMs(from_up, 0.99);
  sides.clear();  // disconnect (and end the workers) before stopping the daemon
  if (absl::Status s = daemon->Stop(); !s.ok()) problems.push_back(std::string(s.message()));

  ctl::Table table({"scenario", "restart"});
  table.AddRow({"server", absl::StrCat(o.server, " (own daemon, --state-dir)")});
  table.AddRow({"job", o.job_id});
  table.AddRow({"members / connections / bench processes",
                absl::StrCat(n, " / ", o.connections, " / ", processes)});
  table.AddRow({"join (session streams)", absl::StrFormat("%.3f s", join_s)});
  table.AddRow({"kill -9 -> new daemon's port up", absl::StrFormat("%.3f s", restart_s)});
  table.AddRow({"kill -9 -> all resumed", absl::StrFormat("%.3f s", resume_s)});
  table.AddRow({"port up -> all resumed", absl::StrFormat("%.3f s", resume_from_up_s)});
  table.AddRow({"resume after port up p50 / p99", absl::StrFormat("%.1f / %.1f ms", p50, p99)});
  table.AddRow({"resume attempts (incl. retries)", absl::StrCat(total.attempts)});
  table.AddRow({"  started early: channel READY", absl::StrCat(total.woken_by_ready)});
  table.AddRow({"CPU kill -> all resumed: daemon / bench",
                processes == 1
                    ? absl::StrFormat("%.2f / %.2f s", daemon_cpu_s, bench_cpu_s)
                    : absl::StrFormat("%.2f / %.2f s (workers %.2f + parent %.2f)",
                                      daemon_cpu_s, bench_cpu_s, workers_cpu_s,
                                      bench_cpu_s - workers_cpu_s)});
  table.AddRow({"resumed", absl::StrCat(total.resumed, " of ", n)});
  table.AddRow({"rank / generation changes",
                absl::StrCat(total.rank_changes, " / ", total.generation_changes)});
  table.AddRow({"errors", absl::StrCat(total.errors)});

  tools::JsonWriter w;
  w.BeginObject();
  w.Key("scenario").String("restart");
  w.Key("members").Uint(n);
  w.Key("connections").Uint(o.connections);
  w.Key("restart_s").Double(restart_s, 4);
  w.Key("resume_s").Double(resume_s, 4);
  w.Key("resume_from_up_s").Double(resume_from_up_s, 4);
  w.Key("p50_ms").Double(p50, 3);
  w.Key("p99_ms").Double(p99, 3);
  w.Key("resumed").Uint(total.resumed);
  w.Key("rank_changes").Uint(total.rank_changes);
  w.Key("generation_changes").Uint(total.generation_changes);
  w.Key("attempts").Uint(total.attempts);
  w.Key("errors").Uint(total.errors);
  w.Key("join_s").Double(join_s, 4);
  w.Key("daemon_cpu_s").Double(daemon_cpu_s, 3);
  w.Key("bench_cpu_s").Double(bench_cpu_s, 3);
  w.Key("processes").Uint(processes);
  w.EndObject();
  Finish(problems, table, w);
  if (!problems.empty()) daemon->KeepLogs();
  return problems.empty() ? 0 : 1;
}

}  // namespace ms_rendezvous::bench
