#include "tools/bench/join_scenario.h"

#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "tools/bench/bench_util.h"
#include "tools/bench/session_group.h"

namespace ms_rendezvous::bench {
namespace {


// One in-flight unary call. A reactor instead of a std::function callback: the call state lives
// in one preallocated array element, so starting a call allocates nothing of the bench's own, and
// no thread is held per member.
template <typename Request, typename Response>
class UnaryCall : public grpc::ClientUnaryReactor {
 public:
  grpc::ClientContext ctx;
  Request request;
  Response response;
  grpc::Status status;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  Countdown* countdown = nullptr;

  void OnDone(const grpc::Status& s) override {
    end_ns = NowNs();
    status = s;
    countdown->Done();
  }
};

using JoinCall = UnaryCall<v1::JoinRequest, v1::JoinResponse>;
using LeaveCall = UnaryCall<v1::LeaveRequest, v1::LeaveResponse>;

std::string NodeId(const JoinOptions& options, uint32_t i) {
  return MemberNodeId(options.named_nodes, i);
}

// One member's join, whichever RPC carried it.
struct Outcome {
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  grpc::Status status;
  v1::Topology topology;
};

// Latencies, error codes, and that ranks 0..N-1 were each delivered exactly once.
void Evaluate(const JoinOptions& options, const std::vector<Outcome>& outcomes, JoinResult* out) {
  JoinResult& result = *out;
  const uint32_t n = options.members;
  int64_t first_start = outcomes[0].start_ns, last_end = 0;
  std::vector<int64_t> latencies;
  latencies.reserve(n);
  std::vector<uint8_t> seen(n, 0);
  std::map<std::string, uint64_t> errors_by_code;
  std::string first_error;
  uint64_t duplicates = 0, out_of_range = 0, wrong_world = 0, wrong_rank = 0;
  bool generation_set = false, mixed_generations = false;
  uint64_t generation = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const Outcome& call = outcomes[i];
    last_end = std::max(last_end, call.end_ns);
    if (!call.status.ok()) {
      if (call.status.error_code() == grpc::StatusCode::UNAVAILABLE) {
        ++result.connection_errors;
      } else {
        ++result.other_errors;
      }
      ++errors_by_code[absl::StatusCodeToString(
          static_cast<absl::StatusCode>(call.status.error_code()))];
      if (first_error.empty()) {
        first_error = absl::StrCat(
            "member ", NodeId(options, i), ": ",
            absl::StatusCodeToString(static_cast<absl::StatusCode>(call.status.error_code())), ": ",
            call.status.error_message());
      }
      continue;
    }
    ++result.ok;
    latencies.push_back(call.end_ns - call.start_ns);
    const v1::Topology& topo = call.topology;
    if (topo.world_size() != n) ++wrong_world;
    if (!options.named_nodes && topo.rank() != i) ++wrong_rank;
    if (!generation_set) {
      generation = topo.generation();
      generation_set = true;
    } else if (topo.generation() != generation) {
      mixed_generations = true;
    }
    if (topo.rank() >= n) {
      ++out_of_range;
    } else if (seen[topo.rank()]++ > 0) {
      ++duplicates;
    }
  }
  result.total_s = static_cast<double>(last_end - first_start) / 1e9;
  std::sort(latencies.begin(), latencies.end());
  result.p50_ms = PercentileMs(latencies, 0.50);
  result.p99_ms = PercentileMs(latencies, 0.99);
  result.max_ms = latencies.empty() ? 0 : static_cast<double>(latencies.back()) / 1e6;

  if (!errors_by_code.empty()) {
    result.problems.push_back(absl::StrCat(
        n - result.ok, " of ", n, " joins failed (",
        absl::StrJoin(errors_by_code, ", ", absl::PairFormatter(" x")), "); first: ", first_error));
  }
  uint64_t never = std::count(seen.begin(), seen.end(), 0);
  if (result.ok > 0 && never > 0) {
    result.problems.push_back(absl::StrCat(never, " ranks of 0..", n - 1, " were never delivered"));
  }
  if (duplicates > 0) {
    result.problems.push_back(absl::StrCat(duplicates, " ranks were delivered more than once"));
  }
  if (out_of_range > 0) {
    result.problems.push_back(absl::StrCat(out_of_range, " ranks were >= world size ", n));
  }
  if (wrong_world > 0) {
    result.problems.push_back(absl::StrCat(wrong_world, " topologies had world_size != ", n));
  }
  if (wrong_rank > 0) {
    result.problems.push_back(
        absl::StrCat(wrong_rank, " members with numeric node ids got a rank != their node id"));
  }
  if (mixed_generations) result.problems.push_back("members saw different generations");

}

}  // namespace

// What a member needs to leave once the bench is done with it.
struct Joined {
  uint32_t index;  // node id NodeId(options, index)
  uint64_t incarnation;
  std::string credential;  // the member credential (Topology.credential) Leave must carry
};

struct JoinBench::Impl {
  JoinOptions options;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::Rendezvous::Stub>> stubs;
  // Per round: its job id and the members that joined (unary mode).
  std::vector<std::pair<std::string, std::vector<Joined>>> joined;
  // Per round: the members holding their sessions (session mode).
  std::vector<std::unique_ptr<SessionGroup>> groups;
};

JoinBench::JoinBench(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JoinBench::~JoinBench() = default;

absl::StatusOr<std::unique_ptr<JoinBench>> JoinBench::Connect(const JoinOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  int64_t connect_start = NowNs();
  LOG(INFO) << "connecting " << options.connections << " channels to " << options.server;
  ChannelOptions channel_options;
  channel_options.server = options.server;
  channel_options.connections = options.connections;
  channel_options.connect_timeout = options.connect_timeout;
  absl::StatusOr<std::vector<std::shared_ptr<grpc::Channel>>> channels =
      ConnectChannels(channel_options);
  if (!channels.ok()) return channels.status();
  double connect_s = static_cast<double>(NowNs() - connect_start) / 1e9;
  impl->channels = std::move(*channels);
  impl->stubs.reserve(impl->channels.size());
  for (auto& channel : impl->channels) impl->stubs.push_back(v1::Rendezvous::NewStub(channel));
  std::unique_ptr<JoinBench> bench(new JoinBench(std::move(impl)));
  bench->connect_s_ = connect_s;
  return bench;
}

JoinResult JoinBench::Join(const std::string& job_id, const JoinHooks& hooks) {
  const JoinOptions& options = impl_->options;
  const auto& stubs = impl_->stubs;
  JoinResult result;
  const uint32_t n = options.members;
  std::vector<Outcome> outcomes(n);

  if (!options.unary) {
    // What the client library does: one Session stream per member; join, read the topology,
    // keep the stream open (the member's lifeline) until LeaveAll().
    std::vector<v1::Rendezvous::Stub*> raw;
    for (const auto& stub : stubs) raw.push_back(stub.get());
    GroupSpec spec;
    spec.job_id = job_id;
    spec.members = n;
    spec.topo_timeout_s = options.topo_timeout_s;
    spec.node_timeout_s = options.node_timeout_s;
    spec.named_nodes = options.named_nodes;
    auto group = std::make_unique<SessionGroup>(std::move(raw), spec);
    double cpu_start = 0;
    group->JoinAll([&] {
      if (hooks.before_joins) hooks.before_joins();
      LOG(INFO) << "joining " << n << " members to job " << job_id << " (Session streams)";
      cpu_start = CpuSeconds();
    });
    result.bench_cpu_s = CpuSeconds() - cpu_start;
    if (hooks.after_joins) hooks.after_joins();
    for (uint32_t i = 0; i < n; ++i) {
      const MemberState& m = group->member(i);
      Outcome& o = outcomes[i];
      o.start_ns = m.start_ns;
      if (m.topology_ns != 0) {
        o.end_ns = m.topology_ns;
        o.topology = m.joined;
      } else {
        o.end_ns = m.done_ns;
        o.status = m.status.ok() ? grpc::Status(grpc::StatusCode::UNKNOWN,
                                                "session ended without a topology")
                                 : m.status;
      }
    }
    impl_->groups.push_back(std::move(group));
    Evaluate(options, outcomes, &result);
    return result;
  }

  // Everything a call needs is built before the clock starts.
  auto calls = std::make_unique<JoinCall[]>(n);
  Countdown joined(n);
  // The daemon answers every Join by MS_TOPO_TIMEOUT; the margin only guards against a daemon
  // that never answers. A negative timeout means "forever", so no client deadline either.
  auto call_deadline = std::chrono::system_clock::time_point::max();
  if (options.topo_timeout_s >= 0) {
    call_deadline = std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(options.topo_timeout_s * 1000)) +
                    std::chrono::seconds(30);
  }
  for (uint32_t i = 0; i < n; ++i) {
    JoinCall& call = calls[i];
    v1::MemberSpec* spec = call.request.mutable_member();
    spec->set_job_id(job_id);
    spec->set_role(v1::ROLE_WORKER);
    spec->set_node_id(NodeId(options, i));
    spec->set_host_name("ms-rendezvous-bench");
    spec->set_device_id(-1);
    spec->set_worker_num(n);
    spec->set_topo_timeout_ms(static_cast<int64_t>(options.topo_timeout_s * 1000));
    spec->set_node_timeout_ms(static_cast<int64_t>(options.node_timeout_s * 1000));
    call.ctx.set_deadline(call_deadline);
    call.countdown = &joined;
  }

  if (hooks.before_joins) hooks.before_joins();
  LOG(INFO) << "joining " << n << " members to job " << job_id << " (unary Join RPCs)";
  double cpu_start = CpuSeconds();
  // Members are started back to back, as a launcher starting N processes would; the daemon sees
  // them arrive while earlier ones are already parked.
  for (uint32_t i = 0; i < n; ++i) {
    JoinCall& call = calls[i];
    call.start_ns = NowNs();
    stubs[i % stubs.size()]->async()->Join(&call.ctx, &call.request, &call.response, &call);
    call.StartCall();
  }
  joined.Wait();
  result.bench_cpu_s = CpuSeconds() - cpu_start;
  if (hooks.after_joins) hooks.after_joins();
  for (uint32_t i = 0; i < n; ++i) {
    outcomes[i] = Outcome{calls[i].start_ns, calls[i].end_ns, calls[i].status,
                          calls[i].response.topology()};
  }
  Evaluate(options, outcomes, &result);

  std::vector<Joined> members;
  members.reserve(result.ok);
  for (uint32_t i = 0; i < n; ++i) {
    if (calls[i].status.ok()) members.push_back({i, calls[i].response.topology().incarnation(),
                         calls[i].response.topology().credential()});
  }
  impl_->joined.emplace_back(job_id, std::move(members));
  return result;
}

std::vector<std::string> JoinBench::LeaveAll() {
  const JoinOptions& options = impl_->options;
  const auto& stubs = impl_->stubs;
  std::vector<std::string> problems;
  for (auto& group : impl_->groups) {
    std::string first_error;
    uint64_t failed = group->LeaveAll(&first_error);
    if (failed > 0) {
      problems.push_back(absl::StrCat("job ", group->spec().job_id, ": ", failed,
                                      " session leaves failed; first: ", first_error));
    }
  }
  impl_->groups.clear();
  // One round's members at a time: as many calls in flight as a round had, no more.
  for (const auto& [job_id, members] : impl_->joined) {
    if (members.empty()) continue;
    auto leaves = std::make_unique<LeaveCall[]>(members.size());
    Countdown left(members.size());
    auto leave_deadline = std::chrono::system_clock::now() + std::chrono::seconds(60);
    for (size_t k = 0; k < members.size(); ++k) {
      LeaveCall& leave = leaves[k];
      v1::MemberRef* ref = leave.request.mutable_member();
      ref->set_job_id(job_id);
      ref->set_role(v1::ROLE_WORKER);
      ref->set_node_id(NodeId(options, members[k].index));
      ref->set_incarnation(members[k].incarnation);
      ref->set_credential(members[k].credential);
      leave.ctx.set_deadline(leave_deadline);
      leave.countdown = &left;
      stubs[members[k].index % stubs.size()]->async()->Leave(&leave.ctx, &leave.request,
                                                             &leave.response, &leave);
      leave.StartCall();
    }
    left.Wait();
    uint64_t failed = 0;
    std::string first_error;
    for (size_t k = 0; k < members.size(); ++k) {
      if (leaves[k].status.ok()) continue;
      ++failed;
      if (first_error.empty()) {
        first_error = absl::StrCat(
            absl::StatusCodeToString(static_cast<absl::StatusCode>(leaves[k].status.error_code())),
            ": ", leaves[k].status.error_message());
      }
    }
    if (failed > 0) {
      problems.push_back(absl::StrCat("job ", job_id, ": ", failed, " of ", members.size(),
                                      " leaves failed; first: ", first_error));
    }
  }
  impl_->joined.clear();
  return problems;
}

}  // namespace ms_rendezvous::bench
