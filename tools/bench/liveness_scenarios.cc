#include "tools/bench/liveness_scenarios.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/session_group.h"
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

int RunRestart(const LivenessOptions& o, LocalDaemon* daemon) {
  std::vector<std::string> problems;
  // Members reconnect on the client library's short backoff, as real members would.
  auto connected = Connect(o, /*fast_reconnect=*/true);
  if (!connected.ok()) {
    std::fprintf(stderr, "ms-rendezvous-bench: %s\n", std::string(connected.status().message()).c_str());
    return 1;
  }
  const uint32_t n = o.members;
  auto group = std::make_unique<SessionGroup>(connected->raw, SpecOf(o));
  std::vector<grpc::Channel*> channels;
  for (auto& ch : connected->channels) channels.push_back(ch.get());
  group->SetChannels(std::move(channels));
  double join_s = 0;
  LOG(INFO) << "joining " << n << " session members to job " << o.job_id;
  std::string join_problem = JoinAll(*group, &join_s);

  int64_t kill_ns = 0, up_ns = 0, last_ns = 0;
  // CPU seconds from the kill until every member resumed: the restarted daemon's (all of its
  // life: start-up, state load, 10k reconnects) and this process's (the members' side).
  double daemon_cpu_s = 0, bench_cpu_s = 0;
  uint64_t resumed = 0, rank_changes = 0, generation_changes = 0, errors = 0, attempts = 0;
  std::string first_error;
  std::vector<int64_t> from_up;
  absl::Status restarted = absl::OkStatus();
  if (!join_problem.empty()) {
    problems.push_back(join_problem);
  } else {
    LOG(INFO) << "kill -9 of the daemon (pid " << daemon->pid() << "), restart on "
              << daemon->address();
    kill_ns = NowNs();
    const double bench_cpu_at_kill = CpuSeconds();
    daemon->Kill();
    // The restart runs beside the members' resume attempts, which retry (jittered backoff)
    // while the port is not up yet.
    std::thread restarter([&] {
      restarted = daemon->Restart(absl::Seconds(60));
      up_ns = NowNs();
    });
    group->ResumeAll(NowNs() + absl::ToInt64Nanoseconds(o.timeout));
    restarter.join();
    bench_cpu_s = CpuSeconds() - bench_cpu_at_kill;
    if (!restarted.ok()) {
      problems.push_back(std::string(restarted.message()));
    } else if (absl::StatusOr<ProcStats> st = ReadProcStats(daemon->pid()); st.ok()) {
      daemon_cpu_s = st->cpu_s;
    }
    for (uint32_t i = 0; i < n; ++i) {
      const MemberState& m = group->member(i);
      attempts += m.attempts - 1;  // the join does not count
      if (m.topology_ns == 0) {
        ++errors;
        if (first_error.empty()) {
          first_error = absl::StrCat("member ", i, ": ", StatusText(m.status));
        }
        continue;
      }
      ++resumed;
      last_ns = std::max(last_ns, m.topology_ns);
      from_up.push_back(m.topology_ns - up_ns);
      if (m.topology.rank() != m.joined.rank()) ++rank_changes;
      if (m.topology.generation() != m.joined.generation()) ++generation_changes;
    }
    if (errors > 0) {
      problems.push_back(absl::StrCat(errors, " of ", n, " members did not resume; first: ",
                                      first_error));
    }
    if (rank_changes > 0) problems.push_back(absl::StrCat(rank_changes, " ranks changed"));
    if (generation_changes > 0) {
      problems.push_back(absl::StrCat(generation_changes, " generations changed"));
    }
    std::string leave_error;
    if (uint64_t failed = group->LeaveAll(&leave_error); failed > 0) {
      problems.push_back(absl::StrCat(failed, " leaves after the resume failed; first: ",
                                      leave_error));
    }
  }
  std::sort(from_up.begin(), from_up.end());
  const double restart_s = up_ns ? static_cast<double>(up_ns - kill_ns) / 1e9 : 0;
  const double resume_s = last_ns ? static_cast<double>(last_ns - kill_ns) / 1e9 : 0;
  const double resume_from_up_s = last_ns ? static_cast<double>(last_ns - up_ns) / 1e9 : 0;
  const double p50 = PercentileMs(from_up, 0.5), p99 = PercentileMs(from_up, 0.99);
  const uint64_t woken_by_ready = group->retries_woken_by_ready();
  group.reset();
  connected->stubs.clear();
  connected->channels.clear();
  if (absl::Status s = daemon->Stop(); !s.ok()) problems.push_back(std::string(s.message()));

  ctl::Table table({"scenario", "restart"});
  table.AddRow({"server", absl::StrCat(o.server, " (own daemon, --state-dir)")});
  table.AddRow({"job", o.job_id});
  table.AddRow({"members / connections", absl::StrCat(n, " / ", o.connections)});
  table.AddRow({"join (session streams)", absl::StrFormat("%.3f s", join_s)});
  table.AddRow({"kill -9 -> new daemon's port up", absl::StrFormat("%.3f s", restart_s)});
  table.AddRow({"kill -9 -> all resumed", absl::StrFormat("%.3f s", resume_s)});
  table.AddRow({"port up -> all resumed", absl::StrFormat("%.3f s", resume_from_up_s)});
  table.AddRow({"resume after port up p50 / p99", absl::StrFormat("%.1f / %.1f ms", p50, p99)});
  table.AddRow({"resume attempts (incl. retries)", absl::StrCat(attempts)});
  table.AddRow({"  started early: channel READY", absl::StrCat(woken_by_ready)});
  table.AddRow({"CPU kill -> all resumed: daemon / bench",
                absl::StrFormat("%.2f / %.2f s", daemon_cpu_s, bench_cpu_s)});
  table.AddRow({"resumed", absl::StrCat(resumed, " of ", n)});
  table.AddRow({"rank / generation changes", absl::StrCat(rank_changes, " / ", generation_changes)});
  table.AddRow({"errors", absl::StrCat(errors)});

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
  w.Key("resumed").Uint(resumed);
  w.Key("rank_changes").Uint(rank_changes);
  w.Key("generation_changes").Uint(generation_changes);
  w.Key("attempts").Uint(attempts);
  w.Key("errors").Uint(errors);
  w.Key("join_s").Double(join_s, 4);
  w.Key("daemon_cpu_s").Double(daemon_cpu_s, 3);
  w.Key("bench_cpu_s").Double(bench_cpu_s, 3);
  w.EndObject();
  Finish(problems, table, w);
  if (!problems.empty()) daemon->KeepLogs();
  return problems.empty() ? 0 : 1;
}

}  // namespace ms_rendezvous::bench
