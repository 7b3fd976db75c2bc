// ms-rendezvous-bench-etcd: the etcd side of scripts/bench-compare. N members rendezvous through a
// real etcd (3.4, its gRPC client API) with the lease-and-watch pattern of etcd-based rendezvous:
// each member announces itself with a key under a common prefix, attached to its own lease, and
// watches the prefix until N keys exist.
//
//   ms-rendezvous-bench-etcd --endpoint HOST:PORT --members N [--connections C]
//                            [--prefix P] [--lease-ttl-s S] [--timeout-s S] [--wait-for-go]
//
// Every member has its own channel (TCP connection, as N processes would), unless --connections
// says otherwise, and runs, without a thread of its own (gRPC callback API):
//   LeaseGrant(TTL) -> Put(P<member>, lease) -> Range(P*, count_only)
//     -> if count < N: Watch(P*, from the Range's revision + 1), counting created keys until N.
// A call that etcd refuses as overloaded ("etcdserver: too many requests": its apply loop is more
// than 5,000 entries behind the raft log) or UNAVAILABLE is retried with the client library's
// jittered backoff (50 ms doubling to 2 s), as a well-behaved client would; retries are counted.
// The channels are connected first (untimed); the members are then started back to back, and the
// time reported is first LeaseGrant sent -> last member that saw N keys, the same measure as
// `ms-rendezvous-bench join` (first join sent -> last topology received).
//
// --wait-for-go: once connected, print "READY" and wait for a line "GO" on stdin before starting
// the members, so the caller can sample etcd's CPU around exactly the timed phase.
//
// Prints ONE JSON line:
//   {"system":"etcd","members":N,"connections":C,"completed":true,"total_s":..,"p50_ms":..,
//    "p99_ms":..,"done":N,"errors":0,"connection_errors":0,"retries":..,"watch_responses":..,
//    "events":..,"connect_s":..,"bench_cpu_s":..}
// Exit 0 when every member saw N keys; 1 when a call failed or --timeout-s passed first
// ("completed":false, "done" says how many made it); 2 on usage errors.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "glog/logging.h"
#include "tools/bench/bench_util.h"
#include "tools/common/flag_value.h"
#include "tools/common/json.h"

namespace ms_rendezvous::bench::etcd {
namespace {

namespace pb = ::etcdserverpb;

constexpr char kUsage[] =
    "usage: ms-rendezvous-bench-etcd --endpoint HOST:PORT --members N [--connections C]\n"
    "                                [--prefix P] [--lease-ttl-s S] [--timeout-s S]\n"
    "                                [--wait-for-go]\n"
    "  N members announce themselves in etcd (lease + key under prefix P) and watch the prefix\n"
    "  until N keys exist; prints one JSON line (see the top of etcd_members.cc)\n";

struct Options {
  std::string endpoint;
  uint32_t members = 0;
  uint32_t connections = 0;  // 0: one per member
  std::string prefix = "/ms-rendezvous-bench/";
  int64_t lease_ttl_s = 600;  // outlasts the run: the bench sends no keep-alives
  double timeout_s = 300;
  bool wait_for_go = false;
};

// The end of the range of every key starting with `prefix` (etcd's clientv3.GetPrefixRangeEnd).
std::string PrefixEnd(std::string prefix) {
  for (int i = static_cast<int>(prefix.size()) - 1; i >= 0; --i) {
    if (static_cast<unsigned char>(prefix[i]) < 0xff) {
      prefix[i] = static_cast<char>(prefix[i] + 1);
      prefix.resize(i + 1);
      return prefix;
    }
  }
  return std::string(1, '\0');  // every key
}

class Run;

// One member's watch of the prefix; counts keys created after its Range.
class WatchStream : public grpc::ClientBidiReactor<pb::WatchRequest, pb::WatchResponse> {
 public:
  WatchStream(Run* run, uint32_t member) : run_(run), member_(member) {}
  void Start(pb::Watch::Stub* service, pb::WatchRequest create);
  void Cancel() { ctx_.TryCancel(); }
  void OnWriteDone(bool ok) override {}
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  Run* const run_;
  const uint32_t member_;
  grpc::ClientContext ctx_;
  pb::WatchRequest create_;
  pb::WatchResponse response_;
};

struct Member {
  uint32_t index = 0;
  int64_t start_ns = 0;
  int64_t done_ns = 0;  // saw N keys
  int64_t lease = 0;
  int64_t count = 0;  // keys under the prefix known to exist
  uint32_t attempts = 0;  // of the current call (retries of an overloaded etcd)
  // One context per call attempt (a ClientContext serves one RPC); kept until the member is
  // freed, since a call's context must outlive its completion.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  pb::LeaseGrantRequest lease_req;
  pb::LeaseGrantResponse lease_resp;
  pb::PutRequest put_req;
  pb::PutResponse put_resp;
  pb::RangeRequest range_req;
  pb::RangeResponse range_resp;
  std::unique_ptr<WatchStream> watch;
  bool watch_ended = false;
};

class Run {
 public:
  Run(const Options& o, std::vector<std::shared_ptr<grpc::Channel>> channels)
      : o_(o), prefix_end_(PrefixEnd(o.prefix)), members_(o.members), pending_(o.members),
        watches_open_(0) {
    for (auto& ch : channels) {
      kv_.push_back(pb::KV::NewStub(ch));
      watch_.push_back(pb::Watch::NewStub(ch));
      lease_.push_back(pb::Lease::NewStub(ch));
    }
    channels_ = std::move(channels);
    for (uint32_t i = 0; i < o.members; ++i) members_[i].index = i;
  }

  // Starts every member back to back, then waits for all of them (at most the timeout).
  // Returns false on timeout.
  bool Go() {
    deadline_ns_ = NowNs() + static_cast<int64_t>(o_.timeout_s * 1e9);
    for (Member& m : members_) {
      m.start_ns = NowNs();
      m.lease_req.set_ttl(o_.lease_ttl_s);
      StartLease(m);
    }
    return pending_.WaitFor(absl::Seconds(o_.timeout_s));
  }

  // Ends the watches still open (members that saw N keys cancelled theirs already) and waits for
  // them, so the streams can be freed.
  void CancelWatches() {
    {
      absl::MutexLock l(&mu_);
      for (Member& m : members_) {
        if (m.watch && !m.watch_ended) m.watch->Cancel();
      }
    }
    int64_t deadline = NowNs() + 30'000'000'000;
    while (watches_open_.load() > 0 && NowNs() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  bool watches_closed() const { return watches_open_.load() == 0; }

  const std::vector<Member>& members() const { return members_; }
  uint64_t errors() const { return errors_.load(); }
  uint64_t connection_errors() const { return connection_errors_.load(); }
  uint64_t retries() const { return retries_.load(); }
  uint64_t watch_responses() const { return watch_responses_.load(); }
  uint64_t events() const { return events_.load(); }
  std::string first_error() {
    absl::MutexLock l(&mu_);
    return first_error_;
  }

  // Called by WatchStream.
  void OnWatchResponse(uint32_t i, const pb::WatchResponse& r, WatchStream* s) {
    Member& m = members_[i];
    watch_responses_.fetch_add(1, std::memory_order_relaxed);
    if (r.canceled()) {
      Fail(m, absl::StrCat("watch canceled by etcd (compact_revision ", r.compact_revision(),
                           "): ", r.cancel_reason()),
           false);
      return;
    }
    events_.fetch_add(r.events_size(), std::memory_order_relaxed);
    if (m.done_ns != 0) return;
    for (const auto& e : r.events()) {
      if (e.type() == mvccpb::Event::PUT && e.kv().version() == 1) ++m.count;
    }
    if (m.count >= o_.members) {
      Done(m);
      s->Cancel();
    }
  }
  void OnWatchDone(uint32_t i, const grpc::Status& st) {
    Member& m = members_[i];
    {
      absl::MutexLock l(&mu_);
      m.watch_ended = true;
    }
    // CANCELLED is ours (the member saw N keys, or the run ended).
    if (m.done_ns == 0 && !st.ok() && st.error_code() != grpc::StatusCode::CANCELLED) {
      Fail(m, absl::StrCat("watch: ", Text(st)), st.error_code() == grpc::StatusCode::UNAVAILABLE);
    }
    watches_open_.fetch_sub(1);
  }

 private:
  static std::string Text(const grpc::Status& st) {
    return absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(st.error_code())),
                        ": ", st.error_message());
  }

  void Fail(Member& m, const std::string& what, bool connection) {
    if (m.done_ns != 0) return;
    errors_.fetch_add(1);
    if (connection) connection_errors_.fetch_add(1);
    {
      absl::MutexLock l(&mu_);
      if (first_error_.empty()) first_error_ = absl::StrCat("member ", m.index, ": ", what);
    }
    m.done_ns = -1;
    pending_.Done();
  }
  void Done(Member& m) {
    m.done_ns = NowNs();
    pending_.Done();
  }

  grpc::ClientContext* NewContext(Member& m) {
    m.contexts.push_back(std::make_unique<grpc::ClientContext>());
    return m.contexts.back().get();
  }

  // A failed call: true when it is retried (etcd overloaded or unreachable, within the run's
  // time), false when the member failed.
  bool RetryOrFail(Member& m, const char* what, const grpc::Status& s,
                   void (Run::*start)(Member&)) {
    const bool overloaded = absl::StrContains(s.error_message(), "too many requests");
    const bool unavailable = s.error_code() == grpc::StatusCode::UNAVAILABLE;
    if ((overloaded || unavailable) && NowNs() < deadline_ns_) {
      retries_.fetch_add(1, std::memory_order_relaxed);
      timer_.At(NowNs() + absl::ToInt64Nanoseconds(JitteredBackoff(m.attempts)),
                [this, &m, start] { (this->*start)(m); });
      ++m.attempts;
      return true;
    }
    Fail(m, absl::StrCat(what, ": ", Text(s)), unavailable);
    return false;
  }

  void StartLease(Member& m) {
    lease_[m.index % lease_.size()]->async()->LeaseGrant(
        NewContext(m), &m.lease_req, &m.lease_resp, [this, &m](grpc::Status s) { OnLease(m, s); });
  }
  void StartPut(Member& m) {
    kv_[m.index % kv_.size()]->async()->Put(NewContext(m), &m.put_req, &m.put_resp,
                                             [this, &m](grpc::Status s) { OnPut(m, s); });
  }
  void StartRange(Member& m) {
    kv_[m.index % kv_.size()]->async()->Range(NewContext(m), &m.range_req, &m.range_resp,
                                               [this, &m](grpc::Status s) { OnRange(m, s); });
  }

  void OnLease(Member& m, const grpc::Status& s) {
    if (!s.ok()) {
      RetryOrFail(m, "LeaseGrant", s, &Run::StartLease);
      return;
    }
    if (!m.lease_resp.error().empty()) return Fail(m, "LeaseGrant: " + m.lease_resp.error(), false);
    m.attempts = 0;
    m.lease = m.lease_resp.id();
    m.put_req.set_key(absl::StrFormat("%s%08d", o_.prefix, m.index));
    m.put_req.set_value(absl::StrCat("{\"member\":", m.index, ",\"host\":\"127.0.0.1\"}"));
    m.put_req.set_lease(m.lease);
    StartPut(m);
  }

  void OnPut(Member& m, const grpc::Status& s) {
    if (!s.ok()) {
      // A retried Put of a key that was written after all only bumps its version: it is not
      // counted as a creation twice.
      RetryOrFail(m, "Put", s, &Run::StartPut);
      return;
    }
    m.attempts = 0;
    m.range_req.set_key(o_.prefix);
    m.range_req.set_range_end(prefix_end_);
    m.range_req.set_count_only(true);
    StartRange(m);
  }

  void OnRange(Member& m, const grpc::Status& s) {
    if (!s.ok()) {
      RetryOrFail(m, "Range", s, &Run::StartRange);
      return;
    }
    m.count = m.range_resp.count();
    if (m.count >= o_.members) return Done(m);  // the last to arrive needs no watch
    pb::WatchRequest create;
    pb::WatchCreateRequest* c = create.mutable_create_request();
    c->set_key(o_.prefix);
    c->set_range_end(prefix_end_);
    // Everything after the state the Range counted: no key is missed or counted twice.
    c->set_start_revision(m.range_resp.header().revision() + 1);
    {
      absl::MutexLock l(&mu_);
      m.watch = std::make_unique<WatchStream>(this, m.index);
    }
    watches_open_.fetch_add(1);
    m.watch->Start(watch_[m.index % watch_.size()].get(), std::move(create));
  }

  const Options& o_;
  const std::string prefix_end_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<pb::KV::Stub>> kv_;
  std::vector<std::unique_ptr<pb::Watch::Stub>> watch_;
  std::vector<std::unique_ptr<pb::Lease::Stub>> lease_;
  std::vector<Member> members_;
  Countdown pending_;
  std::atomic<int64_t> watches_open_;
  std::atomic<uint64_t> errors_{0}, connection_errors_{0}, retries_{0}, watch_responses_{0},
      events_{0};
  int64_t deadline_ns_ = 0;  // set by Go(), before any call starts
  TimerThread timer_;  // retries
  absl::Mutex mu_;  // watch pointers and their end, first_error_
  std::string first_error_;
};

void WatchStream::Start(pb::Watch::Stub* service, pb::WatchRequest create) {
  create_ = std::move(create);
  service->async()->Watch(&ctx_, this);
  StartWrite(&create_);
  StartRead(&response_);
  StartCall();
}

void WatchStream::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  run_->OnWatchResponse(member_, response_, this);
  StartRead(&response_);
}

void WatchStream::OnDone(const grpc::Status& status) { run_->OnWatchDone(member_, status); }

absl::Status ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg == "--wait-for-go") {
      o->wait_for_go = true;
      continue;
    }
    std::string name, value;
    if (absl::Status s = tools::SplitValuedFlag(argc, argv, &i, &name, &value); !s.ok()) return s;
    auto bad = [&](absl::string_view allowed) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, " \"", value, "\" is invalid: expected ", allowed));
    };
    if (name == "--endpoint") {
      if (value.empty()) return bad("HOST:PORT");
      o->endpoint = value;
    } else if (name == "--members") {
      if (!absl::SimpleAtoi(value, &o->members) || o->members < 1 || o->members > 1000000) {
        return bad("1..1000000");
      }
    } else if (name == "--connections") {
      if (!absl::SimpleAtoi(value, &o->connections) || o->connections < 1) {
        return bad("a positive count");
      }
    } else if (name == "--prefix") {
      if (value.empty()) return bad("a key prefix");
      o->prefix = value;
    } else if (name == "--lease-ttl-s") {
      if (!absl::SimpleAtoi(value, &o->lease_ttl_s) || o->lease_ttl_s < 1) return bad("seconds >= 1");
    } else if (name == "--timeout-s") {
      if (!absl::SimpleAtod(value, &o->timeout_s) || o->timeout_s <= 0) return bad("seconds > 0");
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown option ", name));
    }
  }
  if (o->endpoint.empty()) return absl::InvalidArgumentError("--endpoint is required");
  if (o->members == 0) return absl::InvalidArgumentError("--members is required");
  if (o->connections == 0) o->connections = o->members;
  if (o->connections > o->members) {
    return absl::InvalidArgumentError(absl::StrCat("--connections ", o->connections,
                                                   " exceeds --members ", o->members));
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // as in the bench
  Options o;
  if (absl::Status s = ParseArgs(argc, argv, &o); !s.ok()) {
    std::fprintf(stderr, "ms-rendezvous-bench-etcd: %s\n%s", std::string(s.message()).c_str(),
                 kUsage);
    return 2;
  }
  // One fd per connection, plus gRPC's own and stdio.
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur != RLIM_INFINITY && o.connections + 128 > limit.rlim_cur) {
    std::fprintf(stderr,
                 "ms-rendezvous-bench-etcd: %u connections need about %u file descriptors; "
                 "RLIMIT_NOFILE is %llu\n",
                 o.connections, o.connections + 128,
                 static_cast<unsigned long long>(limit.rlim_cur));
    return 1;
  }

  ChannelOptions co;
  co.server = o.endpoint;
  co.connections = o.connections;
  const int64_t connect_start = NowNs();
  LOG(INFO) << "connecting " << o.connections << " channels to etcd at " << o.endpoint;
  auto channels = ConnectChannels(co);
  if (!channels.ok()) {
    std::fprintf(stderr, "ms-rendezvous-bench-etcd: %s\n",
                 std::string(channels.status().message()).c_str());
    return 1;
  }
  const double connect_s = static_cast<double>(NowNs() - connect_start) / 1e9;

  auto run = std::make_unique<Run>(o, std::move(*channels));
  if (o.wait_for_go) {
    std::printf("READY\n");
    std::fflush(stdout);
    char line[64] = {0};
    if (std::fgets(line, sizeof(line), stdin) == nullptr || absl::string_view(line).substr(0, 2) != "GO") {
      std::fprintf(stderr, "ms-rendezvous-bench-etcd: no GO on stdin; not started\n");
      std::_Exit(1);
    }
  }
  LOG(INFO) << o.members << " members announce themselves under " << o.prefix;
  const double cpu0 = CpuSeconds();
  const bool completed = run->Go();
  const double bench_cpu_s = CpuSeconds() - cpu0;

  int64_t first = 0, last = 0;
  uint64_t done = 0;
  std::vector<int64_t> latencies;
  for (const Member& m : run->members()) {
    first = first == 0 ? m.start_ns : std::min(first, m.start_ns);
    if (m.done_ns <= 0) continue;
    ++done;
    last = std::max(last, m.done_ns);
    latencies.push_back(m.done_ns - m.start_ns);
  }
  std::sort(latencies.begin(), latencies.end());
  const bool ok = completed && run->errors() == 0 && done == o.members;
  const double total_s = last > 0 ? static_cast<double>(last - first) / 1e9 : 0;

  tools::JsonWriter w;
  w.BeginObject();
  w.Key("system").String("etcd");
  w.Key("members").Uint(o.members);
  w.Key("connections").Uint(o.connections);
  w.Key("completed").Bool(ok);
  if (ok) {
    w.Key("total_s").Double(total_s, 4);
  } else {
    w.Key("total_s").Null();
  }
  w.Key("p50_ms").Double(PercentileMs(latencies, 0.5), 3);
  w.Key("p99_ms").Double(PercentileMs(latencies, 0.99), 3);
  w.Key("done").Uint(done);
  w.Key("errors").Uint(run->errors());
  w.Key("connection_errors").Uint(run->connection_errors());
  w.Key("retries").Uint(run->retries());
  w.Key("watch_responses").Uint(run->watch_responses());
  w.Key("events").Uint(run->events());
  w.Key("connect_s").Double(connect_s, 3);
  w.Key("bench_cpu_s").Double(bench_cpu_s, 2);
  if (!completed) w.Key("timeout_s").Double(o.timeout_s, 1);
  const std::string first_error = run->first_error();
  if (!first_error.empty()) w.Key("first_error").String(first_error);
  w.EndObject();
  std::printf("%s\n", w.str().c_str());
  std::fflush(stdout);
  if (!completed) {
    // Calls are still in flight on gRPC's threads and would outlive their state: leave without
    // tearing anything down.
    std::fprintf(stderr, "ms-rendezvous-bench-etcd: %llu of %u members saw %u keys within %.0f s\n",
                 static_cast<unsigned long long>(done), o.members, o.members, o.timeout_s);
    std::_Exit(1);
  }
  run->CancelWatches();
  if (!run->watches_closed()) std::_Exit(ok ? 0 : 1);  // a stream would outlive its state
  run.reset();
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace ms_rendezvous::bench::etcd

int main(int argc, char** argv) { return ms_rendezvous::bench::etcd::Main(argc, argv); }
