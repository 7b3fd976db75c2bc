#include "tools/bench/kv_scenario.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
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

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// The key and value of op i: distinct keys, values that name their op (so a Get that returned
// another key's value is caught), padded to the requested size.
std::string OpKey(uint64_t i) { return absl::StrFormat("bench/kv/%09d", i); }
std::string OpValue(uint64_t i, uint32_t bytes) {
  std::string value(bytes, 'v');
  std::string tag = absl::StrCat(i, ":");
  value.replace(0, std::min<size_t>(tag.size(), bytes), tag, 0, std::min<size_t>(tag.size(), bytes));
  return value;
}

// Counts errors and keeps the first one's text.
class Errors {
 public:
  void Add(const std::string& what) {
    ++count_;
    std::lock_guard<std::mutex> lock(mu_);
    if (first_.empty()) first_ = what;
  }
  uint64_t count() const { return count_.load(); }
  std::string first() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_;
  }

 private:
  std::atomic<uint64_t> count_{0};
  std::mutex mu_;
  std::string first_;
};

// ---------------------------------------------------------------------------------------------
// The ops phase: K closed-loop clients, `depth` calls in flight each.

class OpsPhase;

// One Set or Get in flight. Allocated when started, deleted when done (what a real client does:
// one ClientContext per call), so M is not bounded by preallocated call state.
class OpCall : public grpc::ClientUnaryReactor {
 public:
  OpCall(OpsPhase* phase, uint32_t client, uint64_t op) : phase_(phase), client_(client), op_(op) {}
  void OnDone(const grpc::Status& status) override;

  grpc::ClientContext ctx;
  v1::KvSetRequest set_request;
  v1::KvSetResponse set_response;
  v1::KvGetRequest get_request;
  v1::KvGetResponse get_response;
  int64_t start_ns = 0;

 private:
  OpsPhase* const phase_;
  const uint32_t client_;
  const uint64_t op_;
};

class OpsPhase {
 public:
  OpsPhase(bool get, const KvOptions& o, const std::vector<v1::JobStore::Stub*>& stubs,
           const std::vector<v1::MemberRef>& refs)
      : get_(get),
        o_(o),
        stubs_(stubs),
        refs_(refs),
        latency_ns_(o.ops),
        next_(new std::atomic<uint64_t>[o.clients]),
        pending_(o.ops) {
    for (uint32_t c = 0; c < o.clients; ++c) next_[c] = Begin(c);
  }

  // Starts `depth` calls per client and waits for all M. Returns false on timeout.
  bool Run() {
    start_ns_ = NowNs();
    for (uint32_t c = 0; c < o_.clients; ++c) {
      for (uint32_t d = 0; d < o_.depth; ++d) StartNext(c);
    }
    if (!pending_.WaitFor(o_.timeout)) return false;
    return true;
  }

  void Finished(OpCall* call, uint32_t client, uint64_t op, const grpc::Status& status) {
    const int64_t end = NowNs();
    latency_ns_[op] = end - call->start_ns;
    int64_t last = last_end_ns_.load(std::memory_order_relaxed);
    while (end > last && !last_end_ns_.compare_exchange_weak(last, end)) {
    }
    if (!status.ok()) {
      errors_.Add(absl::StrCat(get_ ? "Get " : "Set ", OpKey(op), " by member ",
                               refs_[client].node_id(), ": ", StatusText(status)));
    } else if (get_ && call->get_response.value() != OpValue(op, o_.value_bytes)) {
      errors_.Add(absl::StrCat("Get ", OpKey(op), " returned a wrong value (",
                               call->get_response.value().size(), " bytes)"));
    }
  }
  // After the call is deleted: the next call of the client, then count this one (last: the
  // main thread may destroy the phase once the count reaches 0).
  void Next(uint32_t client) {
    StartNext(client);
    pending_.Done();
  }

  double elapsed_s() const { return static_cast<double>(last_end_ns_.load() - start_ns_) / 1e9; }
  std::vector<int64_t> sorted_latencies() const {
    std::vector<int64_t> v = latency_ns_;
    std::sort(v.begin(), v.end());
    return v;
  }
  Errors& errors() { return errors_; }

 private:
  uint64_t Begin(uint32_t c) const { return o_.ops * c / o_.clients; }
  void StartNext(uint32_t c) {
    const uint64_t op = next_[c].fetch_add(1);
    if (op >= Begin(c + 1)) return;
    auto* call = new OpCall(this, c, op);
    call->ctx.set_deadline(DeadlineIn(o_.timeout));
    v1::JobStore::Stub* stub = stubs_[c % stubs_.size()];
    call->start_ns = NowNs();
    if (get_) {
      *call->get_request.mutable_member() = refs_[c];
      call->get_request.set_key(OpKey(op));
      // A blocking Get (what torch's store.get does); the key exists, so it returns at once.
      call->get_request.set_timeout_ms(absl::ToInt64Milliseconds(o_.timeout));
      stub->async()->Get(&call->ctx, &call->get_request, &call->get_response, call);
    } else {
      *call->set_request.mutable_member() = refs_[c];
      call->set_request.set_key(OpKey(op));
      call->set_request.set_value(OpValue(op, o_.value_bytes));
      stub->async()->Set(&call->ctx, &call->set_request, &call->set_response, call);
    }
    call->StartCall();
  }

  const bool get_;
  const KvOptions o_;
  const std::vector<v1::JobStore::Stub*> stubs_;
  const std::vector<v1::MemberRef> refs_;
  std::vector<int64_t> latency_ns_;
  std::unique_ptr<std::atomic<uint64_t>[]> next_;  // per client: its next op
  Countdown pending_;
  int64_t start_ns_ = 0;
  std::atomic<int64_t> last_end_ns_{0};
  Errors errors_;
};

void OpCall::OnDone(const grpc::Status& status) {
  OpsPhase* phase = phase_;
  const uint32_t client = client_;
  phase->Finished(this, client, op_, status);
  delete this;
  phase->Next(client);
}

// ---------------------------------------------------------------------------------------------
// The release phase: W parked Gets of one key, then one Set.

constexpr char kReleaseKey[] = "bench/release";

template <typename Request, typename Response>
class TimedCall : public grpc::ClientUnaryReactor {
 public:
  grpc::ClientContext ctx;
  Request request;
  Response response;
  grpc::Status status;
  int64_t start_ns = 0;
  std::atomic<int64_t> end_ns{0};
  Countdown* countdown = nullptr;

  void OnDone(const grpc::Status& s) override {
    status = s;
    end_ns.store(NowNs(), std::memory_order_release);
    countdown->Done();
  }
};
using GetCall = TimedCall<v1::KvGetRequest, v1::KvGetResponse>;
using SetCall = TimedCall<v1::KvSetRequest, v1::KvSetResponse>;
using NumKeysCall = TimedCall<v1::KvNumKeysRequest, v1::KvNumKeysResponse>;

// Waits until the daemon's CPU stopped moving: two consecutive 100 ms windows with at most one
// clock tick (10 ms) of CPU each, at most `max_wait`. Returns the time waited.
double WaitForDaemonIdle(pid_t pid, absl::Duration max_wait) {
  const int64_t start = NowNs();
  const int64_t deadline = start + absl::ToInt64Nanoseconds(max_wait);
  absl::StatusOr<ProcStats> prev = ReadProcStats(pid);
  if (!prev.ok()) return 0;
  int quiet = 0;
  while (NowNs() < deadline && quiet < 2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    absl::StatusOr<ProcStats> cur = ReadProcStats(pid);
    if (!cur.ok()) break;
    quiet = cur->cpu_s - prev->cpu_s <= 0.0105 ? quiet + 1 : 0;
    prev = cur;
  }
  return static_cast<double>(NowNs() - start) / 1e9;
}

struct ReleaseResult {
  bool ran = false;
  double park_s = 0;      // first Get sent -> every Get parked (pings answered, daemon idle)
  double set_ack_ms = 0;  // Set call -> its response
  double first_ms = 0;    // Set call -> first waiter released
  double release_s = 0;   // Set call -> last waiter released
  double p50_ms = 0, p99_ms = 0;
  uint64_t released = 0;  // waiters that got the value
  uint64_t early = 0;     // waiters that ended before the Set
  uint64_t errors = 0;
  std::string first_error;
};

}  // namespace

int RunKv(const KvOptions& o, LocalDaemon* daemon) {
  std::vector<std::string> problems;
  ChannelOptions co;
  co.server = o.server;
  co.connections = o.connections;
  LOG(INFO) << "connecting " << o.connections << " channels to " << o.server;
  const int64_t connect_start = NowNs();
  auto channels = ConnectChannels(co);
  if (!channels.ok()) {
    std::fprintf(stderr, "ms-rendezvous-bench: %s\n",
                 std::string(channels.status().message()).c_str());
    if (daemon) daemon->KeepLogs();
    return 1;
  }
  const double connect_s = static_cast<double>(NowNs() - connect_start) / 1e9;
  std::vector<std::unique_ptr<v1::Rendezvous::Stub>> rdv_stubs;
  std::vector<std::unique_ptr<v1::JobStore::Stub>> kv_stubs;
  std::vector<v1::Rendezvous::Stub*> rdv_raw;
  std::vector<v1::JobStore::Stub*> kv_raw;
  for (auto& ch : *channels) {
    rdv_stubs.push_back(v1::Rendezvous::NewStub(ch));
    rdv_raw.push_back(rdv_stubs.back().get());
    kv_stubs.push_back(v1::JobStore::NewStub(ch));
    kv_raw.push_back(kv_stubs.back().get());
  }

  // Daemon figures; a failed read drops them without failing the run.
  bool have_stats = o.daemon_pid.has_value();
  auto sample = [&](ProcStats* into) {
    if (!have_stats) return;
    absl::StatusOr<ProcStats> s = ReadProcStats(*o.daemon_pid);
    if (!s.ok()) {
      LOG(WARNING) << "no daemon figures: " << s.status().message();
      have_stats = false;
      return;
    }
    *into = *s;
  };
  bool peak_reset = have_stats;
  auto reset_peak = [&] {
    if (!have_stats) return;
    if (absl::Status s = ResetPeakRss(*o.daemon_pid); !s.ok()) {
      if (peak_reset) LOG(WARNING) << "cannot reset the daemon's VmHWM: " << s.message();
      peak_reset = false;
    }
  };

  // 1. Join (untimed).
  GroupSpec spec;
  spec.job_id = o.job_id;
  spec.members = o.members;
  spec.topo_timeout_s = o.topo_timeout_s;
  spec.node_timeout_s = o.node_timeout_s;
  spec.named_nodes = o.named_nodes;
  auto group = std::make_unique<SessionGroup>(rdv_raw, spec);
  LOG(INFO) << "joining " << o.members << " session members to job " << o.job_id;
  const int64_t join_start = NowNs();
  group->JoinAll();
  int64_t join_end = join_start;
  std::vector<v1::MemberRef> refs(o.members);
  uint64_t join_failed = 0;
  {
    uint64_t& failed = join_failed;
    std::string first;
    for (uint32_t i = 0; i < o.members; ++i) {
      const MemberState& m = group->member(i);
      if (m.topology_ns == 0) {
        ++failed;
        if (first.empty()) first = absl::StrCat("member ", i, ": ", StatusText(m.status));
        continue;
      }
      join_end = std::max(join_end, m.topology_ns);
      v1::MemberRef& ref = refs[i];
      ref.set_job_id(o.job_id);
      ref.set_role(v1::ROLE_WORKER);
      ref.set_node_id(MemberNodeId(o.named_nodes, i));
      ref.set_incarnation(m.joined.incarnation());
      ref.set_credential(m.joined.credential());
    }
    if (failed > 0) {
      problems.push_back(
          absl::StrCat(failed, " of ", o.members, " session joins failed; first: ", first));
    }
  }
  const double join_s = static_cast<double>(join_end - join_start) / 1e9;

  // 2. Sets, then Gets of the same keys.
  ProcStats before_ops, after_sets, after_gets, before_release, at_set, after_release;
  double set_s = 0, get_s = 0, set_cpu_s = 0, get_cpu_s = 0;
  std::vector<int64_t> set_lat, get_lat;
  uint64_t set_errors = 0, get_errors = 0;
  bool ops_ran = false;
  if (problems.empty() && o.ops > 0) {
    ops_ran = true;
    // Client k is member k.
    std::vector<v1::MemberRef> clients(refs.begin(), refs.begin() + o.clients);
    std::vector<v1::JobStore::Stub*> client_stubs;
    for (uint32_t c = 0; c < o.clients; ++c) client_stubs.push_back(kv_raw[c % kv_raw.size()]);
    for (int get = 0; get < 2; ++get) {
      auto phase = std::make_unique<OpsPhase>(get != 0, o, client_stubs, clients);
      ProcStats& before = get ? after_sets : before_ops;
      if (!get) {
        sample(&before);
        reset_peak();
      }
      LOG(INFO) << o.clients << " clients: " << o.ops << (get ? " Gets" : " Sets") << ", "
                << o.depth << " in flight each";
      const double cpu0 = CpuSeconds();
      const bool finished = phase->Run();
      (get ? get_cpu_s : set_cpu_s) = CpuSeconds() - cpu0;
      sample(get ? &after_gets : &after_sets);
      if (!finished) {
        problems.push_back(absl::StrCat(get ? "Gets" : "Sets", " did not finish within ",
                                        absl::FormatDuration(o.timeout)));
        // Calls still in flight reference the phase: leak it rather than free it under them.
        phase.release();
        break;
      }
      (get ? get_s : set_s) = phase->elapsed_s();
      (get ? get_lat : set_lat) = phase->sorted_latencies();
      (get ? get_errors : set_errors) = phase->errors().count();
      if (phase->errors().count() > 0) {
        problems.push_back(absl::StrCat(phase->errors().count(), " of ", o.ops,
                                        get ? " Gets" : " Sets",
                                        " failed; first: ", phase->errors().first()));
      }
      if (!get && set_errors > 0) break;  // the Gets would only repeat the failure
    }
  }
  const ProcStats ops_peak = after_gets.peak_kib ? after_gets : after_sets;

  // 3. W parked Gets of one key, then one Set.
  ReleaseResult rel;
  std::vector<int64_t> rel_lat;
  if (problems.empty() && o.waiters > 0) {
    rel.ran = true;
    const uint32_t w = o.waiters;
    const std::string value = OpValue(0, o.value_bytes);
    auto gets = std::make_unique<GetCall[]>(w);
    Countdown released(w);
    for (uint32_t i = 0; i < w; ++i) {
      GetCall& call = gets[i];
      *call.request.mutable_member() = refs[i];
      call.request.set_key(kReleaseKey);
      call.request.set_timeout_ms(absl::ToInt64Milliseconds(o.timeout));
      call.ctx.set_deadline(DeadlineIn(o.timeout + absl::Seconds(30)));
      call.countdown = &released;
    }
    sample(&before_release);
    reset_peak();
    LOG(INFO) << w << " members park a Get of '" << kReleaseKey << "'";
    const int64_t park_start = NowNs();
    for (uint32_t i = 0; i < w; ++i) {
      GetCall& call = gets[i];
      call.start_ns = NowNs();
      kv_raw[i % kv_raw.size()]->async()->Get(&call.ctx, &call.request, &call.response, &call);
      call.StartCall();
    }
    // Every Get must be parked before the Set, or the figure would include Gets still in
    // transit. A connection delivers its streams in order, so a NumKeys answered on each
    // connection means every Get before it reached the daemon; the daemon going idle then means
    // their handlers ran (parked).
    const uint32_t pings_n = std::min<uint32_t>(o.connections, w);
    auto pings = std::make_unique<NumKeysCall[]>(pings_n);
    Countdown pinged(pings_n);
    for (uint32_t c = 0; c < pings_n; ++c) {
      NumKeysCall& call = pings[c];
      *call.request.mutable_member() = refs[c];
      call.ctx.set_deadline(DeadlineIn(o.timeout));
      call.countdown = &pinged;
      kv_raw[c]->async()->NumKeys(&call.ctx, &call.request, &call.response, &call);
      call.StartCall();
    }
    if (!pinged.WaitFor(o.timeout + absl::Seconds(10))) {
      problems.push_back("NumKeys pings after the parked Gets were not answered");
    }
    for (uint32_t c = 0; c < pings_n; ++c) {
      if (pings[c].end_ns.load() != 0 && !pings[c].status.ok()) {
        problems.push_back(absl::StrCat("NumKeys ping on connection ", c,
                                        " failed: ", StatusText(pings[c].status)));
        break;
      }
    }
    if (have_stats) {
      WaitForDaemonIdle(*o.daemon_pid, absl::Seconds(10));
    } else {
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    rel.park_s = static_cast<double>(NowNs() - park_start) / 1e9;
    for (uint32_t i = 0; i < w; ++i) {
      if (gets[i].end_ns.load(std::memory_order_acquire) == 0) continue;
      ++rel.early;
      if (rel.first_error.empty()) {
        rel.first_error = absl::StrCat("member ", refs[i].node_id(), "'s Get ended before the Set: ",
                                       StatusText(gets[i].status));
      }
    }

    // The Set, by member 0 (also a waiter: a member publishing what the others wait for).
    SetCall set;
    Countdown set_done(1);
    *set.request.mutable_member() = refs[0];
    set.request.set_key(kReleaseKey);
    set.request.set_value(value);
    set.ctx.set_deadline(DeadlineIn(o.timeout));
    set.countdown = &set_done;
    sample(&at_set);
    LOG(INFO) << "member 0 sets '" << kReleaseKey << "'";
    set.start_ns = NowNs();
    kv_raw[0]->async()->Set(&set.ctx, &set.request, &set.response, &set);
    set.StartCall();
    const bool all_released = released.WaitFor(o.timeout + absl::Seconds(40));
    set_done.WaitFor(o.timeout);
    sample(&after_release);
    if (set.end_ns.load() == 0) {
      problems.push_back("the release Set was not answered");
    } else if (!set.status.ok()) {
      problems.push_back(absl::StrCat("the release Set failed: ", StatusText(set.status)));
    } else {
      rel.set_ack_ms = static_cast<double>(set.end_ns.load() - set.start_ns) / 1e6;
    }
    if (!all_released) {
      problems.push_back(absl::StrCat(released.remaining(), " of ", w,
                                      " waiters were not released within ",
                                      absl::FormatDuration(o.timeout + absl::Seconds(40))));
      // Their calls still reference `gets`: leak it.
      gets.release();
    } else {
      int64_t first = 0, last = 0;
      for (uint32_t i = 0; i < w; ++i) {
        const GetCall& call = gets[i];
        const int64_t end = call.end_ns.load(std::memory_order_acquire);
        if (!call.status.ok()) {
          ++rel.errors;
          if (rel.first_error.empty()) {
            rel.first_error =
                absl::StrCat("member ", refs[i].node_id(), ": ", StatusText(call.status));
          }
          continue;
        }
        if (call.response.value() != value) {
          ++rel.errors;
          if (rel.first_error.empty()) {
            rel.first_error = absl::StrCat("member ", refs[i].node_id(), " got a wrong value (",
                                           call.response.value().size(), " bytes)");
          }
          continue;
        }
        ++rel.released;
        if (end < set.start_ns) continue;  // counted as early above
        rel_lat.push_back(end - set.start_ns);
        first = first == 0 ? end : std::min(first, end);
        last = std::max(last, end);
      }
      std::sort(rel_lat.begin(), rel_lat.end());
      if (last != 0) {
        rel.first_ms = static_cast<double>(first - set.start_ns) / 1e6;
        rel.release_s = static_cast<double>(last - set.start_ns) / 1e9;
      }
      rel.p50_ms = PercentileMs(rel_lat, 0.5);
      rel.p99_ms = PercentileMs(rel_lat, 0.99);
    }
    if (rel.early > 0) {
      problems.push_back(absl::StrCat(rel.early, " of ", w,
                                      " waiters ended before the Set (not parked); first: ",
                                      rel.first_error));
    }
    if (rel.errors > 0) {
      problems.push_back(absl::StrCat(rel.errors, " of ", w, " waiters did not get the value; first: ",
                                      rel.first_error));
    }
  }

  std::string leave_error;
  if (uint64_t failed = group->LeaveAll(&leave_error); failed > 0) {
    problems.push_back(absl::StrCat(failed, " leaves failed; first: ", leave_error));
  }
  group.reset();
  kv_stubs.clear();
  rdv_stubs.clear();
  channels->clear();
  if (daemon) {
    if (absl::Status s = daemon->Stop(); !s.ok()) problems.push_back(std::string(s.message()));
  }

  // Figures.
  auto rate = [](uint64_t n, double s) { return s > 0 ? static_cast<double>(n) / s : 0.0; };
  const double set_ops_per_s = rate(o.ops, set_s), get_ops_per_s = rate(o.ops, get_s);
  const double set_p50 = PercentileMs(set_lat, 0.5), set_p99 = PercentileMs(set_lat, 0.99);
  const double get_p50 = PercentileMs(get_lat, 0.5), get_p99 = PercentileMs(get_lat, 0.99);
  const double ops_cpu = after_gets.cpu_s > 0 ? after_gets.cpu_s - before_ops.cpu_s : 0;
  const double set_daemon_cpu = after_sets.cpu_s > 0 ? after_sets.cpu_s - before_ops.cpu_s : 0;
  const double get_daemon_cpu = after_gets.cpu_s > 0 ? after_gets.cpu_s - after_sets.cpu_s : 0;
  const double park_cpu = at_set.cpu_s > 0 ? at_set.cpu_s - before_release.cpu_s : 0;
  const double release_cpu = after_release.cpu_s > 0 ? after_release.cpu_s - at_set.cpu_s : 0;
  const int64_t peak_kib = std::max(ops_peak.peak_kib, after_release.peak_kib);
  const uint64_t errors = join_failed + set_errors + get_errors + rel.errors + rel.early;

  ctl::Table table({"scenario", "kv"});
  table.AddRow({"server", o.server});
  table.AddRow({"store", o.store});
  table.AddRow({"job", o.job_id});
  table.AddRow({"members / connections", absl::StrCat(o.members, " / ", o.connections)});
  table.AddRow({"connect / join (untimed)", absl::StrFormat("%.3f s / %.3f s", connect_s, join_s)});
  if (ops_ran) {
    table.AddRow({"clients x in flight", absl::StrCat(o.clients, " x ", o.depth)});
    table.AddRow({"ops (distinct keys) x value", absl::StrCat(o.ops, " x ", o.value_bytes, " B")});
    table.AddRow({"set: time / ops/s", absl::StrFormat("%.3f s / %.0f", set_s, set_ops_per_s)});
    table.AddRow({"set latency p50 / p99", absl::StrFormat("%.2f / %.2f ms", set_p50, set_p99)});
    table.AddRow({"get: time / ops/s", absl::StrFormat("%.3f s / %.0f", get_s, get_ops_per_s)});
    table.AddRow({"get latency p50 / p99", absl::StrFormat("%.2f / %.2f ms", get_p50, get_p99)});
    table.AddRow({"bench cpu set / get", absl::StrFormat("%.2f / %.2f s", set_cpu_s, get_cpu_s)});
    if (have_stats) {
      table.AddRow({"daemon cpu set / get",
                    absl::StrFormat("%.2f / %.2f s", set_daemon_cpu, get_daemon_cpu)});
      table.AddRow({"daemon peak rss (ops)",
                    absl::StrFormat("%d KiB%s", ops_peak.peak_kib,
                                    peak_reset ? "" : " (since daemon start)")});
    }
  }
  if (rel.ran) {
    table.AddRow({"waiters (parked Gets of one key)", absl::StrCat(o.waiters)});
    table.AddRow({"  all parked after", absl::StrFormat("%.3f s", rel.park_s)});
    table.AddRow({"  set call -> set answered", absl::StrFormat("%.2f ms", rel.set_ack_ms)});
    table.AddRow({"  set call -> first released", absl::StrFormat("%.2f ms", rel.first_ms)});
    table.AddRow({"  set call -> last released", absl::StrFormat("%.4f s", rel.release_s)});
    table.AddRow({"  release latency p50 / p99", absl::StrFormat("%.1f / %.1f ms", rel.p50_ms,
                                                                 rel.p99_ms)});
    table.AddRow({"  released with the value", absl::StrCat(rel.released, " of ", o.waiters)});
    if (have_stats) {
      table.AddRow({"  daemon cpu park / release",
                    absl::StrFormat("%.2f / %.2f s", park_cpu, release_cpu)});
      table.AddRow({"  daemon peak rss (release)",
                    absl::StrFormat("%d KiB%s", after_release.peak_kib,
                                    peak_reset ? "" : " (since daemon start)")});
    }
  }
  table.AddRow({"errors", absl::StrCat(errors)});
  table.AddRow({"result", problems.empty() ? "PASS" : "FAIL"});
  std::fputs(table.Render().c_str(), stdout);
  for (const std::string& p : problems) std::fprintf(stderr, "ms-rendezvous-bench: FAIL: %s\n", p.c_str());

  tools::JsonWriter w;
  w.BeginObject();
  w.Key("scenario").String("kv");
  w.Key("members").Uint(o.members);
  w.Key("clients").Uint(o.clients);
  w.Key("set_ops_per_s").Double(set_ops_per_s, 1);
  w.Key("get_ops_per_s").Double(get_ops_per_s, 1);
  w.Key("set_p99_ms").Double(set_p99, 3);
  w.Key("get_p99_ms").Double(get_p99, 3);
  w.Key("waiters").Uint(o.waiters);
  w.Key("release_s").Double(rel.release_s, 4);
  w.Key("errors").Uint(errors);
  // Appended after the documented keys.
  w.Key("store").String(o.store);
  w.Key("connections").Uint(o.connections);
  w.Key("ops").Uint(o.ops);
  w.Key("value_bytes").Uint(o.value_bytes);
  w.Key("depth").Uint(o.depth);
  w.Key("set_p50_ms").Double(set_p50, 3);
  w.Key("get_p50_ms").Double(get_p50, 3);
  w.Key("released").Uint(rel.released);
  w.Key("release_p50_ms").Double(rel.p50_ms, 3);
  w.Key("release_p99_ms").Double(rel.p99_ms, 3);
  w.Key("set_ack_ms").Double(rel.set_ack_ms, 3);
  if (have_stats) {
    w.Key("daemon_cpu_s").Double(ops_cpu, 2);
    w.Key("park_daemon_cpu_s").Double(park_cpu, 2);
    w.Key("release_daemon_cpu_s").Double(release_cpu, 2);
    w.Key("daemon_peak_rss_kib").Int(peak_kib);
  }
  w.Key("join_s").Double(join_s, 4);
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  std::fflush(stdout);
  if (daemon && !problems.empty()) daemon->KeepLogs();
  return problems.empty() ? 0 : 1;
}

}  // namespace ms_rendezvous::bench
