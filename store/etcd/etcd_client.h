// EtcdClient: a small synchronous client of etcd 3.4's v3 gRPC API (proto/etcd/), enough for a
// StateStore and, later, leader election: KV (Range with pagination, Put, DeleteRange, Txn,
// Compact), leases (grant, keep-alive on a background thread, time-to-live, revoke) and watches
// of a key range from a revision.
//
// Endpoints and failover: one gRPC channel per endpoint. A call goes to the "preferred" endpoint;
// when it answers UNAVAILABLE (refused, reset, or etcd's own "no leader" / "request timed out")
// the same call is tried on the next endpoint, each endpoint at most once, all within the call's
// single deadline, and the endpoint that answered becomes the preferred one. A call that runs
// into its deadline is NOT repeated elsewhere (the time is spent), but the preferred endpoint
// moves on so that the next call avoids a member that hangs (SIGSTOPped, partitioned). Every
// member of an etcd cluster serves every request (followers forward writes to the leader), so
// any endpoint is as good as another while it is healthy.
//
// Retries: the client never repeats a call that may have been applied; callers that need retries
// make their requests idempotent and retry (EtcdStateStore does).
//
// Errors: absl::Status with the gRPC code (the numbering is the same), the operation and the
// endpoint, e.g. `etcd Txn on 127.0.0.1:2379: etcdserver: request timed out (UNAVAILABLE)`; when
// no endpoint answered, every endpoint's error.
//
// Thread safety: every method may be called from any thread concurrently.
//
// TLS: with EtcdClientOptions::tls set, every channel is TLS (verifying etcd with the CA,
// presenting the client certificate when given: etcd's --client-cert-auth). Endpoints are
// "host:port"; an "http://" or (with TLS) "https://" prefix is accepted and dropped. etcd's
// user/password authentication (--auth-token) is not supported.
#ifndef MS_RENDEZVOUS_STORE_ETCD_ETCD_CLIENT_H_
#define MS_RENDEZVOUS_STORE_ETCD_ETCD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/completion_queue.h"

namespace ms_rendezvous::etcd {

struct EtcdClientOptions {
  // "host:port" (or "http://host:port"), at least one. Members of ONE etcd cluster.
  std::vector<std::string> endpoints;
  // Connect() waits this long for some endpoint to answer.
  absl::Duration dial_timeout = absl::Seconds(5);
  // Deadline of a call made with kDefaultTimeout.
  absl::Duration call_timeout = absl::Seconds(5);
  // TLS to etcd (PEM contents, not paths). Off while both ca and cert are empty.
  struct Tls {
    std::string ca;    // CA bundle that verifies the etcd members (empty: system roots)
    std::string cert;  // client certificate for --client-cert-auth (with key)
    std::string key;
    bool enabled() const { return !ca.empty() || !cert.empty(); }
  };
  Tls tls;
};

class EtcdLeaseKeepAlive;
class EtcdWatch;

class EtcdClient {
 public:
  // Passing this as a call's timeout means options.call_timeout.
  static constexpr absl::Duration kDefaultTimeout = absl::ZeroDuration();

  // Creates the channels (no I/O yet). InvalidArgument for an empty or malformed endpoint list.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(EtcdClientOptions options);
  ~EtcdClient();

  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  // Waits up to dial_timeout until some endpoint answers a serializable read (it is up and is a
  // member of a cluster; a quorum is not required). Unavailable naming every endpoint otherwise.
  absl::Status Connect();

  const std::vector<std::string>& endpoints() const { return endpoints_; }
  // "a:1,b:2,c:3", for messages.
  std::string EndpointList() const;

  // ---- KV ---------------------------------------------------------------------------------
  absl::StatusOr<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request,
                                                    absl::Duration timeout = kDefaultTimeout);
  absl::StatusOr<etcdserverpb::PutResponse> Put(absl::string_view key, absl::string_view value,
                                                int64_t lease_id = 0,
                                                absl::Duration timeout = kDefaultTimeout);
  // range_end as in RangeRequest ("" deletes only `key`).
  absl::StatusOr<etcdserverpb::DeleteRangeResponse> DeleteRange(
      absl::string_view key, absl::string_view range_end, absl::Duration timeout = kDefaultTimeout);
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request,
                                                absl::Duration timeout = kDefaultTimeout);
  absl::StatusOr<etcdserverpb::CompactionResponse> Compact(
      int64_t revision, bool physical, absl::Duration timeout = kDefaultTimeout);

  // Reads every key of [key, range_end) in pages of `page_limit` keys (ascending), all at ONE
  // revision: `revision` when > 0, else the revision the first page was served at. Each page is
  // a linearizable Range with its own `page_timeout`; a page continues after the last key of the
  // previous one. `visit` sees every key-value in key order; an error from it stops the scan and
  // is returned. Returns the revision read at. OutOfRange when that revision is compacted while
  // the scan runs (the caller may restart it).
  absl::StatusOr<int64_t> RangeAll(absl::string_view key, absl::string_view range_end,
                                   int64_t revision, int64_t page_limit,
                                   absl::Duration page_timeout,
                                   absl::FunctionRef<absl::Status(const mvccpb::KeyValue&)> visit);

  // ---- leases -----------------------------------------------------------------------------
  // Grants a lease of `ttl` (whole seconds, at least 1 s; etcd may raise it to its minimum).
  absl::StatusOr<etcdserverpb::LeaseGrantResponse> LeaseGrant(
      absl::Duration ttl, absl::Duration timeout = kDefaultTimeout);
  // Revokes the lease (its keys are deleted). NotFound when it does not exist (any more).
  absl::Status LeaseRevoke(int64_t lease_id, absl::Duration timeout = kDefaultTimeout);
  // TTL is -1 when the lease does not exist.
  absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> LeaseTimeToLive(
      int64_t lease_id, bool keys = false, absl::Duration timeout = kDefaultTimeout);

  // Keeps `lease_id` (granted with `ttl`) alive from a background thread: one LeaseKeepAlive
  // stream, a renewal every ttl/3, failing over to the next endpoint when an answer is late.
  // `on_lost` runs once, on that thread, when the lease is known or presumed gone: NotFound when
  // etcd says it expired or was revoked, Unavailable when no renewal succeeded for a whole TTL
  // (the lease may still exist, but whoever relies on it must assume it does not). Destroying
  // the returned object stops the renewals (it does not revoke the lease).
  std::unique_ptr<EtcdLeaseKeepAlive> KeepAlive(int64_t lease_id, absl::Duration ttl,
                                                std::function<void(absl::Status)> on_lost);

  // ---- watches ----------------------------------------------------------------------------
  // Watches [key, range_end) from `start_revision` (inclusive; 0: from now) on a background
  // thread. `on_events` gets every event in revision order, one call per etcd response, with
  // the response's header revision; it runs on the watch thread and must not destroy the watch.
  // A broken stream (member down, member lost its leader) is re-created on the next endpoint from
  // the revision after the last event delivered, so nothing is missed or repeated. `on_end` runs
  // once if the watch cannot continue: OutOfRange when the next revision was compacted (also
  // right after creation when `start_revision` already was: etcd creates the watcher, then
  // cancels it). Returns once etcd confirmed the watcher, or the error if no endpoint created it
  // within `timeout`.
  using WatchEventsFn =
      std::function<void(const std::vector<mvccpb::Event>& events, int64_t header_revision)>;
  absl::StatusOr<std::unique_ptr<EtcdWatch>> Watch(absl::string_view key,
                                                   absl::string_view range_end,
                                                   int64_t start_revision, WatchEventsFn on_events,
                                                   std::function<void(absl::Status)> on_end,
                                                   absl::Duration timeout = kDefaultTimeout);

  // The range_end that selects every key starting with `prefix`: the prefix with its last byte
  // below 0xff incremented (trailing 0xff bytes dropped); "\0" (every key) when there is none.
  static std::string PrefixEnd(absl::string_view prefix);

 private:
  friend class EtcdLeaseKeepAlive;
  friend class EtcdWatch;
  struct Endpoint;

  explicit EtcdClient(EtcdClientOptions options);

  // Runs `rpc` on the preferred endpoint, failing over on UNAVAILABLE (see the file comment):
  // always for a read, for a write only when the call never reached a server.
  absl::Status Call(absl::string_view op, bool read_only, absl::Duration timeout,
                    const std::function<grpc::Status(Endpoint&, grpc::ClientContext&)>& rpc);
  // For the background threads: endpoint i's channel and clients, and the failover order.
  Endpoint& endpoint(size_t i) { return *channels_[i]; }
  size_t preferred() const { return preferred_.load(); }
  void MoveOn(size_t from);

  const EtcdClientOptions options_;
  std::vector<std::string> endpoints_;  // normalized "host:port"
  std::vector<std::unique_ptr<Endpoint>> channels_;
  std::atomic<size_t> preferred_{0};
  // A thread that keeps gRPC's I/O polled. gRPC (epoll1) processes socket events only while
  // some thread polls: during a call, or on its backup poller every 5 s. A reconnection started
  // by a backoff timer while no call is running (calls to a channel in TRANSIENT_FAILURE fail at
  // once, without polling) would see its TCP connect complete only on the backup poller, by
  // which time its connect deadline has passed: a restarted member would never be reached
  // again. Waiting on an otherwise unused completion queue makes this thread a poller.
  grpc::CompletionQueue poll_cq_;
  std::thread poller_;
};

// See EtcdClient::KeepAlive.
class EtcdLeaseKeepAlive {
 public:
  ~EtcdLeaseKeepAlive();
  EtcdLeaseKeepAlive(const EtcdLeaseKeepAlive&) = delete;
  EtcdLeaseKeepAlive& operator=(const EtcdLeaseKeepAlive&) = delete;

  int64_t lease_id() const { return lease_id_; }
  // Successful renewals so far.
  int64_t renewals() const { return renewals_.load(); }
  // Stops renewing (idempotent; also done by the destructor). on_lost does not run after it.
  void Stop();

 private:
  friend class EtcdClient;
  EtcdLeaseKeepAlive(EtcdClient* client, int64_t lease_id, absl::Duration ttl,
                     std::function<void(absl::Status)> on_lost);
  void Run();
  bool StopRequested() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; }

  EtcdClient* const client_;
  const int64_t lease_id_;
  const absl::Duration ttl_;
  std::function<void(absl::Status)> on_lost_;
  std::atomic<int64_t> renewals_{0};

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;  // the open stream, to cancel
  std::thread thread_;
};

// See EtcdClient::Watch.
class EtcdWatch {
 public:
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // The first revision not yet delivered.
  int64_t next_revision() const { return next_revision_.load(); }
  // Stops watching (idempotent; also done by the destructor). No callback runs after it.
  void Stop();

 private:
  friend class EtcdClient;
  EtcdWatch(EtcdClient* client, std::string key, std::string range_end, int64_t start_revision,
            EtcdClient::WatchEventsFn on_events, std::function<void(absl::Status)> on_end);
  void Run();
  // Created, or given up (Watch() stops waiting).
  bool Settled() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return created_ || stop_; }

  EtcdClient* const client_;
  const std::string key_;
  const std::string range_end_;
  EtcdClient::WatchEventsFn on_events_;
  std::function<void(absl::Status)> on_end_;
  std::atomic<int64_t> next_revision_;

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;
  // The first creation's outcome, for Watch() to return.
  bool created_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status create_error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace ms_rendezvous::etcd

#endif  // MS_RENDEZVOUS_STORE_ETCD_ETCD_CLIENT_H_
