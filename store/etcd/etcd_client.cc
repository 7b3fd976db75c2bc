#include "store/etcd/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace ms_rendezvous::etcd {

struct EtcdClient::Endpoint {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

namespace {

// gRPC's message when the channel had no connection to send the call on: the call never left
// this process, so repeating it elsewhere cannot apply it twice.
constexpr absl::string_view kNotConnected = "failed to connect to all addresses";

absl::Status ToStatus(absl::string_view op, absl::string_view endpoint, const grpc::Status& s) {
  return absl::Status(
      static_cast<absl::StatusCode>(s.error_code()),
      absl::StrCat("etcd ", op, " on ", endpoint, ": ", s.error_message(), " (",
                   absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())), ")"));
}

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             absl::ToChronoNanoseconds(d));
}

// Why the call may be repeated on the next endpoint: a read can always be; a write only when it
// provably never reached a server.
bool MayFailOver(bool read_only, const grpc::Status& s) {
  if (s.error_code() != grpc::StatusCode::UNAVAILABLE) return false;
  return read_only || absl::StrContains(s.error_message(), kNotConnected);
}

}  // namespace

EtcdClient::EtcdClient(EtcdClientOptions options) : options_(std::move(options)) {
  poller_ = std::thread([this] {
    void* tag = nullptr;
    bool ok = false;
    for (;;) {
      const auto r = poll_cq_.AsyncNext(&tag, &ok, DeadlineIn(absl::Seconds(1)));
      if (r == grpc::CompletionQueue::SHUTDOWN) return;
    }
  });
}

EtcdClient::~EtcdClient() {
  poll_cq_.Shutdown();
  poller_.join();
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(EtcdClientOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd client: no endpoints given (expected host:port,...)");
  }
  std::vector<std::string> normalized;
  for (const std::string& e : options.endpoints) {
    absl::string_view v = absl::StripAsciiWhitespace(e);
    if (absl::StartsWith(v, "https://") && !options.tls.enabled()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd endpoint '", e, "' is https:// but no TLS is configured: give the CA that "
          "verifies etcd (--etcd-ca)"));
    }
    if (absl::StartsWith(v, "http://") && options.tls.enabled()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd endpoint '", e, "' is http:// but TLS to etcd is configured: use https:// or "
          "host:port"));
    }
    absl::ConsumePrefix(&v, "http://");
    absl::ConsumePrefix(&v, "https://");
    absl::ConsumeSuffix(&v, "/");
    const size_t colon = v.rfind(':');
    if (v.empty() || colon == absl::string_view::npos || colon == 0 || colon + 1 == v.size()) {
      return absl::InvalidArgumentError(absl::StrCat("etcd endpoint '", e, "' is not host:port"));
    }
    normalized.emplace_back(v);
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (options.tls.enabled()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls.ca;
    ssl.pem_cert_chain = options.tls.cert;
    ssl.pem_private_key = options.tls.key;
    credentials = grpc::SslCredentials(ssl);
  }
  std::unique_ptr<EtcdClient> client(new EtcdClient(std::move(options)));
  client->endpoints_ = std::move(normalized);
  for (const std::string& target : client->endpoints_) {
    grpc::ChannelArguments args;
    // A member that comes back is used again within about a second (gRPC's default backoff
    // grows to 120 s, which would keep a restarted member out of the rotation for minutes). The
    // "min" backoff is also each connection attempt's deadline: 1 s bounds what a hung member
    // (SIGSTOP: TCP accepted, no HTTP/2 answer) costs an attempt.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // Notice a member that stopped answering (SIGSTOP, partition) on idle streams (watches,
    // keep-alives). etcd refuses pings more frequent than every 5 s
    // (--grpc-keepalive-min-time) and pings without calls.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    // Load() pages may be large; etcd bounds what it sends.
    args.SetMaxReceiveMessageSize(-1);
    // One connection per EtcdClient and endpoint: two clients in a process (a store and an
    // election) never share a connection's fate or its reconnect backoff.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto ep = std::make_unique<Endpoint>();
    ep->channel = grpc::CreateCustomChannel(target, credentials, args);
    ep->kv = etcdserverpb::KV::NewStub(ep->channel);
    ep->lease = etcdserverpb::Lease::NewStub(ep->channel);
    ep->watch = etcdserverpb::Watch::NewStub(ep->channel);
    client->channels_.push_back(std::move(ep));
  }
  return client;
}

std::string EtcdClient::EndpointList() const { return absl::StrJoin(endpoints_, ","); }

void EtcdClient::MoveOn(size_t from) {
  size_t expected = from;
  preferred_.compare_exchange_strong(expected, (from + 1) % channels_.size());
}

absl::Status EtcdClient::Call(
    absl::string_view op, bool read_only, absl::Duration timeout,
    const std::function<grpc::Status(Endpoint&, grpc::ClientContext&)>& rpc) {
  if (timeout <= absl::ZeroDuration()) timeout = options_.call_timeout;
  const auto deadline = DeadlineIn(timeout);
  const size_t n = channels_.size();
  const size_t start = preferred_.load();
  std::vector<std::string> errors;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (start + k) % n;
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    const grpc::Status s = rpc(*channels_[i], ctx);
    if (s.ok()) {
      if (i != start) preferred_.store(i);
      return absl::OkStatus();
    }
    absl::Status st = ToStatus(op, endpoints_[i], s);
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
        s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      MoveOn(i);
    }
    const bool time_left = std::chrono::system_clock::now() < deadline;
    if (!MayFailOver(read_only, s) || !time_left || k + 1 == n) {
      if (errors.empty()) return st;
      errors.emplace_back(st.message());
      return absl::Status(st.code(), absl::StrCat("etcd ", op, ": no endpoint of ", EndpointList(),
                                                  " succeeded: ", absl::StrJoin(errors, "; ")));
    }
    errors.emplace_back(st.message());
  }
  return absl::UnavailableError(
      absl::StrCat("etcd ", op, ": no endpoints"));  // n == 0: unreachable
}

absl::Status EtcdClient::Connect() {
  // Each endpoint in turn, until one answers or dial_timeout passes; a refused connection fails
  // fast, so the loop also waits for members that are still starting.
  const absl::Time give_up = absl::Now() + options_.dial_timeout;
  absl::Status last;
  for (;;) {
    etcdserverpb::RangeRequest req;
    req.set_key("\0", 1);
    req.set_serializable(true);
    req.set_count_only(true);
    etcdserverpb::RangeResponse resp;
    const absl::Duration left = give_up - absl::Now();
    last = Call("Connect", /*read_only=*/true, std::max(left, absl::Milliseconds(1)),
                [&](Endpoint& ep, grpc::ClientContext& ctx) {
                  ctx.set_wait_for_ready(false);
                  return ep.kv->Range(&ctx, req, &resp);
                });
    if (last.ok()) return last;
    if (absl::Now() >= give_up) break;
    absl::SleepFor(std::min(absl::Milliseconds(100), give_up - absl::Now()));
  }
  return absl::UnavailableError(absl::StrCat("cannot reach etcd at ", EndpointList(), " within ",
                                             absl::FormatDuration(options_.dial_timeout), ": ",
                                             last.message()));
}

absl::StatusOr<etcdserverpb::RangeResponse> EtcdClient::Range(
    const etcdserverpb::RangeRequest& request, absl::Duration timeout) {
  etcdserverpb::RangeResponse resp;
  absl::Status s = Call(
      "Range", /*read_only=*/true, timeout,
      [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Range(&ctx, request, &resp); });
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<etcdserverpb::PutResponse> EtcdClient::Put(absl::string_view key,
                                                          absl::string_view value, int64_t lease_id,
                                                          absl::Duration timeout) {
  etcdserverpb::PutRequest req;
  req.set_key(std::string(key));
  req.set_value(std::string(value));
  req.set_lease(lease_id);
  etcdserverpb::PutResponse resp;
  absl::Status s =
      Call("Put", /*read_only=*/false, timeout,
           [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Put(&ctx, req, &resp); });
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<etcdserverpb::DeleteRangeResponse> EtcdClient::DeleteRange(
    absl::string_view key, absl::string_view range_end, absl::Duration timeout) {
  etcdserverpb::DeleteRangeRequest req;
  req.set_key(std::string(key));
  req.set_range_end(std::string(range_end));
  etcdserverpb::DeleteRangeResponse resp;
  absl::Status s = Call(
      "DeleteRange", /*read_only=*/false, timeout,
      [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->DeleteRange(&ctx, req, &resp); });
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<etcdserverpb::TxnResponse> EtcdClient::Txn(const etcdserverpb::TxnRequest& request,
                                                          absl::Duration timeout) {
  etcdserverpb::TxnResponse resp;
  absl::Status s = Call(
      "Txn", /*read_only=*/false, timeout,
      [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Txn(&ctx, request, &resp); });
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<etcdserverpb::CompactionResponse> EtcdClient::Compact(int64_t revision,
                                                                     bool physical,
                                                                     absl::Duration timeout) {
  etcdserverpb::CompactionRequest req;
  req.set_revision(revision);
  req.set_physical(physical);
  etcdserverpb::CompactionResponse resp;
  absl::Status s = Call(
      "Compact", /*read_only=*/false, timeout,
      [&](Endpoint& ep, grpc::ClientContext& ctx) { return ep.kv->Compact(&ctx, req, &resp); });
  if (!s.ok()) return s;
  return resp;
}

absl::StatusOr<int64_t> EtcdClient::RangeAll(
    absl::string_view key, absl::string_view range_end, int64_t revision, int64_t page_limit,
    absl::Duration page_timeout, absl::FunctionRef<absl::Status(const mvccpb::KeyValue&)> visit) {
  etcdserverpb::RangeRequest req;
  req.set_key(std::string(key));
  req.set_range_end(std::string(range_end));
  req.set_limit(std::max<int64_t>(page_limit, 1));
  for (;;) {
    req.set_revision(revision);
    absl::StatusOr<etcdserverpb::RangeResponse> page = Range(req, page_timeout);
    if (!page.ok()) return page.status();
    // Every later page reads at the first page's revision: one consistent snapshot.
    if (revision <= 0) revision = page->header().revision();
    for (const mvccpb::KeyValue& kv : page->kvs()) {
      absl::Status s = visit(kv);
      if (!s.ok()) return s;
    }
    if (!page->more() || page->kvs_size() == 0) break;
    // The smallest key after the last one: continue from there.
    std::string next = page->kvs(page->kvs_size() - 1).key();
    next.push_back('\0');
    req.set_key(std::move(next));
  }
  return revision;
}

absl::StatusOr<etcdserverpb::LeaseGrantResponse> EtcdClient::LeaseGrant(absl::Duration ttl,
                                                                        absl::Duration timeout) {
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(ttl, absl::Seconds(1)))));
  etcdserverpb::LeaseGrantResponse resp;
  absl::Status s =
      Call("LeaseGrant", /*read_only=*/false, timeout, [&](Endpoint& ep, grpc::ClientContext& ctx) {
        return ep.lease->LeaseGrant(&ctx, req, &resp);
      });
  if (!s.ok()) return s;
  if (!resp.error().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("etcd LeaseGrant at ", EndpointList(), ": ", resp.error()));
  }
  return resp;
}

absl::Status EtcdClient::LeaseRevoke(int64_t lease_id, absl::Duration timeout) {
  etcdserverpb::LeaseRevokeRequest req;
  req.set_id(lease_id);
  etcdserverpb::LeaseRevokeResponse resp;
  return Call("LeaseRevoke", /*read_only=*/false, timeout,
              [&](Endpoint& ep, grpc::ClientContext& ctx) {
                return ep.lease->LeaseRevoke(&ctx, req, &resp);
              });
}

absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> EtcdClient::LeaseTimeToLive(
    int64_t lease_id, bool keys, absl::Duration timeout) {
  etcdserverpb::LeaseTimeToLiveRequest req;
  req.set_id(lease_id);
  req.set_keys(keys);
  etcdserverpb::LeaseTimeToLiveResponse resp;
  absl::Status s = Call("LeaseTimeToLive", /*read_only=*/true, timeout,
                        [&](Endpoint& ep, grpc::ClientContext& ctx) {
                          return ep.lease->LeaseTimeToLive(&ctx, req, &resp);
                        });
  if (!s.ok()) return s;
  return resp;
}

std::string EtcdClient::PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

// ---- lease keep-alive ---------------------------------------------------------------------------

std::unique_ptr<EtcdLeaseKeepAlive> EtcdClient::KeepAlive(
    int64_t lease_id, absl::Duration ttl, std::function<void(absl::Status)> on_lost) {
  std::unique_ptr<EtcdLeaseKeepAlive> k(
      new EtcdLeaseKeepAlive(this, lease_id, ttl, std::move(on_lost)));
  k->thread_ = std::thread([raw = k.get()] { raw->Run(); });
  return k;
}

EtcdLeaseKeepAlive::EtcdLeaseKeepAlive(EtcdClient* client, int64_t lease_id, absl::Duration ttl,
                                       std::function<void(absl::Status)> on_lost)
    : client_(client), lease_id_(lease_id), ttl_(ttl), on_lost_(std::move(on_lost)) {}

EtcdLeaseKeepAlive::~EtcdLeaseKeepAlive() { Stop(); }

void EtcdLeaseKeepAlive::Stop() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void EtcdLeaseKeepAlive::Run() {
  // Renew every third of the TTL, so that two renewals may be lost before the lease expires.
  const absl::Duration interval = std::max(ttl_ / 3, absl::Milliseconds(100));
  // The lease was granted just before: it lives at least one TTL from now.
  absl::Time expiry = absl::Now() + ttl_;
  size_t ep = client_->preferred();
  const size_t n = client_->endpoints().size();
  auto lost = [this](absl::Status s) {
    {
      absl::MutexLock l(&mu_);
      if (stop_) return;
      stop_ = true;
    }
    if (on_lost_) on_lost_(std::move(s));
  };

  for (;;) {
    if (absl::Now() >= expiry) {
      return lost(absl::UnavailableError(absl::StrCat(
          "etcd lease ", lease_id_, ": no keep-alive succeeded on any of ", client_->EndpointList(),
          " for its TTL of ", absl::FormatDuration(ttl_), "; it must be presumed expired")));
    }
    grpc::ClientContext ctx;
    {
      absl::MutexLock l(&mu_);
      if (stop_) return;
      active_ = &ctx;
    }
    auto stream = client_->endpoint(ep).lease->LeaseKeepAlive(&ctx);
    // Responses are read on a second thread so that the renewal loop can notice a response that
    // does not come (a hung member) and cancel the stream.
    absl::Mutex rmu;
    int64_t responses = 0;
    int64_t last_ttl = 0;
    bool ended = false;
    std::thread reader([&] {
      etcdserverpb::LeaseKeepAliveResponse r;
      while (stream->Read(&r)) {
        absl::MutexLock l(&rmu);
        ++responses;
        last_ttl = r.ttl();
      }
      absl::MutexLock l(&rmu);
      ended = true;
    });

    absl::Status gone;  // set when etcd says the lease does not exist
    for (;;) {
      etcdserverpb::LeaseKeepAliveRequest req;
      req.set_id(lease_id_);
      const absl::Time sent = absl::Now();
      int64_t seen = 0;
      {
        absl::MutexLock l(&rmu);
        seen = responses;
      }
      if (!stream->Write(req)) break;
      // A healthy member answers in milliseconds; one that needs longer than the renewal
      // interval is treated as gone and the next endpoint is tried.
      bool got = false;
      int64_t ttl_s = 0;
      {
        absl::MutexLock l(&rmu);
        auto answered = [&]() { return responses > seen || ended; };
        rmu.AwaitWithTimeout(
            absl::Condition(&answered),
            std::min(interval, std::max(expiry - absl::Now(), absl::Milliseconds(1))));
        got = responses > seen;
        ttl_s = last_ttl;
      }
      if (!got) break;
      if (ttl_s <= 0) {
        gone = absl::NotFoundError(absl::StrCat("etcd lease ", lease_id_,
                                                " expired or was revoked (keep-alive on ",
                                                client_->endpoints()[ep], ")"));
        break;
      }
      expiry = sent + absl::Seconds(ttl_s);
      renewals_.fetch_add(1);
      absl::MutexLock l(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopping), sent + interval - absl::Now());
      if (stop_) break;
    }
    ctx.TryCancel();
    reader.join();
    (void)stream->Finish();
    {
      absl::MutexLock l(&mu_);
      active_ = nullptr;
      if (stop_) return;
    }
    if (!gone.ok()) return lost(std::move(gone));
    ep = (ep + 1) % n;
    absl::MutexLock l(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Milliseconds(100));
  }
}

// ---- watch --------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<EtcdWatch>> EtcdClient::Watch(
    absl::string_view key, absl::string_view range_end, int64_t start_revision,
    WatchEventsFn on_events, std::function<void(absl::Status)> on_end, absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) timeout = options_.call_timeout;
  std::unique_ptr<EtcdWatch> w(new EtcdWatch(this, std::string(key), std::string(range_end),
                                             start_revision, std::move(on_events),
                                             std::move(on_end)));
  w->thread_ = std::thread([raw = w.get()] { raw->Run(); });
  absl::Status error;
  {
    absl::MutexLock l(&w->mu_);
    w->mu_.AwaitWithTimeout(absl::Condition(w.get(), &EtcdWatch::Settled), timeout);
    if (w->created_) return w;
    error = w->create_error_.ok()
                ? absl::DeadlineExceededError(absl::StrCat(
                      "etcd Watch at ", EndpointList(), ": no endpoint created the watcher within ",
                      absl::FormatDuration(timeout)))
                : w->create_error_;
  }
  w->Stop();
  return error;
}

EtcdWatch::EtcdWatch(EtcdClient* client, std::string key, std::string range_end,
                     int64_t start_revision, EtcdClient::WatchEventsFn on_events,
                     std::function<void(absl::Status)> on_end)
    : client_(client),
      key_(std::move(key)),
      range_end_(std::move(range_end)),
      on_events_(std::move(on_events)),
      on_end_(std::move(on_end)),
      next_revision_(start_revision) {}

EtcdWatch::~EtcdWatch() { Stop(); }

void EtcdWatch::Stop() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    if (active_ != nullptr) active_->TryCancel();
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void EtcdWatch::Run() {
  size_t ep = client_->preferred();
  const size_t n = client_->endpoints().size();
  absl::Duration backoff = absl::Milliseconds(100);
  for (;;) {
    grpc::ClientContext ctx;
    // etcd cancels the watchers of a stream carrying this metadata when the member loses its
    // leader, instead of keeping them open on a member that no longer sees new revisions.
    ctx.AddMetadata("hasleader", "true");
    {
      absl::MutexLock l(&mu_);
      if (stop_) return;
      active_ = &ctx;
    }
    const std::string& endpoint = client_->endpoints()[ep];
    auto stream = client_->endpoint(ep).watch->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    etcdserverpb::WatchCreateRequest* create = req.mutable_create_request();
    create->set_key(key_);
    create->set_range_end(range_end_);
    create->set_start_revision(next_revision_.load());
    // Empty responses now and then carry the current revision, so a watcher that sees no events
    // still advances the revision it resumes from.
    create->set_progress_notify(true);
    absl::Status fatal;   // the watch cannot continue anywhere
    absl::Status broken;  // this stream failed; try the next endpoint
    if (stream->Write(req)) {
      etcdserverpb::WatchResponse r;
      while (stream->Read(&r)) {
        if (r.canceled()) {
          if (r.compact_revision() > 0) {
            fatal = absl::OutOfRangeError(absl::StrCat(
                "etcd Watch on ", endpoint, ": revision ", next_revision_.load(), " of '", key_,
                "' was compacted; the oldest available is ", r.compact_revision()));
          } else {
            broken = absl::UnavailableError(absl::StrCat(
                "etcd Watch on ", endpoint, ": watcher cancelled: ", r.cancel_reason()));
          }
          break;
        }
        if (r.created()) {
          if (next_revision_.load() <= 0) next_revision_.store(r.header().revision() + 1);
          absl::MutexLock l(&mu_);
          created_ = true;
          backoff = absl::Milliseconds(100);
          continue;
        }
        if (r.events_size() == 0) {
          // Progress: every revision up to the header's has been delivered.
          next_revision_.store(std::max(next_revision_.load(), r.header().revision() + 1));
          continue;
        }
        std::vector<mvccpb::Event> events(r.events().begin(), r.events().end());
        next_revision_.store(events.back().kv().mod_revision() + 1);
        if (on_events_) on_events_(events, r.header().revision());
      }
    }
    ctx.TryCancel();
    grpc::Status finish = stream->Finish();
    {
      absl::MutexLock l(&mu_);
      active_ = nullptr;
      if (stop_) return;
      if (broken.ok() && fatal.ok()) {
        broken =
            finish.ok()
                ? absl::UnavailableError(absl::StrCat("etcd Watch on ", endpoint, ": stream ended"))
                : ToStatus("Watch", endpoint, finish);
      }
      if (!created_) create_error_ = fatal.ok() ? broken : fatal;
      if (!fatal.ok()) stop_ = true;  // Watch() stops waiting
    }
    if (!fatal.ok()) {
      // Before the first creation the error is Watch()'s return value instead.
      bool created = false;
      {
        absl::MutexLock l(&mu_);
        created = created_;
      }
      if (created && on_end_) on_end_(fatal);
      return;
    }
    ep = (ep + 1) % n;
    absl::MutexLock l(&mu_);
    auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopping), backoff);
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

}  // namespace ms_rendezvous::etcd
