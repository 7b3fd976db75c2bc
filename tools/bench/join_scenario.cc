#include "tools/bench/join_scenario.h"

#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"

namespace ms_rendezvous::bench {
namespace {

namespace v1 = ::ms::rendezvous::v1;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Counts outstanding calls; the waiter wakes once, when the last one finishes (no per-call
// notify, which would wake the main thread N times).
class Countdown {
 public:
  explicit Countdown(uint64_t n) : remaining_(n) {}
  void Done() {
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      cv_.notify_all();
    }
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
  }

 private:
  std::atomic<uint64_t> remaining_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

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
  return options.named_nodes ? absl::StrFormat("bench-node-%08d", i) : absl::StrCat(i);
}

absl::StatusOr<std::vector<std::shared_ptr<grpc::Channel>>> ConnectChannels(
    const JoinOptions& options) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  channels.reserve(options.connections);
  for (uint32_t i = 0; i < options.connections; ++i) {
    grpc::ChannelArguments args;
    // A channel arg unique per channel plus a local subchannel pool: gRPC would otherwise share
    // one subchannel (one TCP connection) between channels with equal args, and the bench must
    // reproduce N processes with N connections.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("ms_rendezvous.bench_channel_index", static_cast<int>(i));
    // Joins are not retried by the client library's channel either; retries would only add the
    // retry filter's buffering to every call.
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    channels.push_back(
        grpc::CreateCustomChannel(options.server, grpc::InsecureChannelCredentials(), args));
  }
  // Kick off every connection first, then wait: connecting one by one would serialise N TCP and
  // HTTP/2 handshakes.
  for (auto& channel : channels) channel->GetState(/*try_to_connect=*/true);
  auto deadline = std::chrono::system_clock::now() +
                  std::chrono::milliseconds(absl::ToInt64Milliseconds(options.connect_timeout));
  for (uint32_t i = 0; i < channels.size(); ++i) {
    // Not WaitForConnected(): it keeps retrying through TRANSIENT_FAILURE until the deadline, so a
    // wrong --server would hang for the whole connect timeout instead of failing at once.
    grpc_connectivity_state state = channels[i]->GetState(/*try_to_connect=*/true);
    while (state != GRPC_CHANNEL_READY) {
      if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
        return absl::UnavailableError(absl::StrCat("channel ", i, " of ", channels.size(), " to ",
                                                   options.server,
                                                   " failed to connect; is the daemon running "
                                                   "there, and does it accept this many "
                                                   "connections?"));
      }
      if (!channels[i]->WaitForStateChange(state, deadline)) {
        return absl::UnavailableError(absl::StrCat("channel ", i, " of ", channels.size(), " to ",
                                                   options.server, " did not connect within ",
                                                   absl::FormatDuration(options.connect_timeout)));
      }
      state = channels[i]->GetState(/*try_to_connect=*/true);
    }
  }
  return channels;
}

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<int64_t>& sorted_ns, double p) {
  if (sorted_ns.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted_ns.size())));
  rank = std::clamp<size_t>(rank, 1, sorted_ns.size());
  return static_cast<double>(sorted_ns[rank - 1]) / 1e6;
}

}  // namespace

// What a member needs to leave once the bench is done with it.
struct Joined {
  uint32_t index;  // node id NodeId(options, index)
  uint64_t incarnation;
};

struct JoinBench::Impl {
  JoinOptions options;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::Rendezvous::Stub>> stubs;
  // Per round: its job id and the members that joined.
  std::vector<std::pair<std::string, std::vector<Joined>>> joined;
};

JoinBench::JoinBench(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JoinBench::~JoinBench() = default;

absl::StatusOr<std::unique_ptr<JoinBench>> JoinBench::Connect(const JoinOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  int64_t connect_start = NowNs();
  LOG(INFO) << "connecting " << options.connections << " channels to " << options.server;
  absl::StatusOr<std::vector<std::shared_ptr<grpc::Channel>>> channels = ConnectChannels(options);
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
    call.ctx.set_deadline(call_deadline);
    call.countdown = &joined;
  }

  if (hooks.before_joins) hooks.before_joins();
  LOG(INFO) << "joining " << n << " members to job " << job_id;
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

  // Evaluate: latencies, error codes, and that ranks 0..N-1 were each delivered exactly once.
  int64_t first_start = calls[0].start_ns, last_end = 0;
  std::vector<int64_t> latencies;
  latencies.reserve(n);
  std::vector<uint8_t> seen(n, 0);
  std::map<std::string, uint64_t> errors_by_code;
  std::string first_error;
  uint64_t duplicates = 0, out_of_range = 0, wrong_world = 0, wrong_rank = 0;
  bool generation_set = false, mixed_generations = false;
  uint64_t generation = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const JoinCall& call = calls[i];
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
    const v1::Topology& topo = call.response.topology();
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
  result.p50_ms = Percentile(latencies, 0.50);
  result.p99_ms = Percentile(latencies, 0.99);
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

  std::vector<Joined> members;
  members.reserve(result.ok);
  for (uint32_t i = 0; i < n; ++i) {
    if (calls[i].status.ok()) members.push_back({i, calls[i].response.topology().incarnation()});
  }
  impl_->joined.emplace_back(job_id, std::move(members));
  return result;
}

std::vector<std::string> JoinBench::LeaveAll() {
  const JoinOptions& options = impl_->options;
  const auto& stubs = impl_->stubs;
  std::vector<std::string> problems;
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
