#include "server/server.h"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <chrono>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "glog/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "server/services.h"
#include "server/tls.h"

namespace ms_rendezvous::server {
namespace {

// Splits "HOST:PORT" / "[V6]:PORT"; InvalidArgument naming the flag value otherwise.
absl::Status ParseListen(const std::string& listen, std::string* host, int* port) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen address \"", listen, "\" has no port: expected HOST:PORT, e.g. 0.0.0.0:8118"));
  }
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  if (!absl::SimpleAtoi(listen.substr(colon + 1), port) || *port < 0 || *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("listen address \"", listen,
                                                   "\" has an invalid port: expected 0..65535"));
  }
  if (host->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen address \"", listen, "\" has no host: use 0.0.0.0 to listen on every address"));
  }
  return absl::OkStatus();
}

// A duration as a channel-argument int (milliseconds, at least 1, at most INT_MAX).
int ClampMs(absl::Duration d) {
  const int64_t ms = absl::ToInt64Milliseconds(d);
  return static_cast<int>(std::clamp<int64_t>(ms, 1, std::numeric_limits<int>::max()));
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(const TlsOptions& tls) {
  if (tls.cert_chain.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      tls.client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = tls.client_ca;
  ssl.pem_key_cert_pairs.push_back({tls.private_key, tls.cert_chain});
  return grpc::SslServerCredentials(ssl);
}

struct RendezvousServer::Impl {
  std::unique_ptr<core::JobRegistry> registry;
  std::unique_ptr<RendezvousService> rendezvous;
  std::unique_ptr<SessionServer> sessions;  // after `server` is built; shut down after it
  std::unique_ptr<AdminAuth> admin_auth;
  ServerIdentity identity;
  std::unique_ptr<AdminService> admin;
  std::unique_ptr<JobStoreService> job_store;
  std::unique_ptr<grpc::Server> server;
  std::string dial_host;
  std::thread deadline_thread;
  // steady_clock::now() (nanoseconds since its epoch) after each deadline loop iteration.
  std::atomic<int64_t> last_loop_ns{0};
  void MarkLoop() {
    last_loop_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::steady_clock::now().time_since_epoch())
                           .count(),
                       std::memory_order_relaxed);
  }

  absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  core::MonoTime wake_at ABSL_GUARDED_BY(mu) = core::MonoTime::max();
  absl::CondVar cv;

  // A join storm allocates ~16 KiB of gRPC call state per parked member and frees it when the
  // topology is delivered; glibc keeps those pages. The deadline loop hands them back to the OS
  // once a burst of joins completed, so the daemon's resident size tracks its live state
  // instead of the storm's high-water mark.
  static constexpr uint64_t kTrimAfterCalls = 1000;
  uint64_t trimmed_at_calls = 0;  // deadline thread only

  void MaybeTrimMemory() {
    const uint64_t done = server::CompletedJoinCalls();
    if (done - trimmed_at_calls < kTrimAfterCalls) return;
    trimmed_at_calls = done;
    malloc_trim(0);
  }

  static constexpr absl::Duration kDeadlineBatching = absl::Milliseconds(10);

  // Drives the registry's timers: sleeps until the earliest deadline (or until a Join adds an
  // earlier one), then lets the registry process what is due. One thread for the whole daemon.
  void DeadlineLoop() {
    core::Clock* clock = registry->clock();
    for (;;) {
      core::MonoTime next = registry->ProcessDeadlines();
      MaybeTrimMemory();
      MarkLoop();
      absl::MutexLock l(&mu);
      if (stopping) return;
      if (next < wake_at) wake_at = next;
      const core::MonoTime now = clock->Now();
      if (wake_at > now) {
        // Cap the sleep so a FakeClock driven by tests is noticed too.
        absl::Duration d = wake_at == core::MonoTime::max()
                               ? absl::Seconds(1)
                               : std::min(absl::Seconds(1), core::ToDuration(wake_at - now));
        // Deadlines due within kDeadlineBatching of each other are processed in one wake-up.
        // 100,000 members with a 15 s node timeout have a liveness deadline every ~0.15 ms;
        // sleeping exactly until each cost ~3,000 wake-ups/s and 4.5% of a core. A deadline
        // fires at most this late; an earlier one added meanwhile still wakes us (Wake).
        d = std::max(d, kDeadlineBatching);
        cv.WaitWithTimeout(&mu, d);
      }
      if (stopping) return;
      wake_at = core::MonoTime::max();
    }
  }

  void Wake(core::MonoTime when) {
    absl::MutexLock l(&mu);
    if (when < wake_at) {
      wake_at = when;
      cv.Signal();
    }
  }
};

RendezvousServer::RendezvousServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  registry_ = impl_->registry.get();
}

absl::StatusOr<std::unique_ptr<RendezvousServer>> RendezvousServer::Start(ServerOptions options) {
  std::string host;
  int port = 0;
  absl::Status st = ParseListen(options.listen, &host, &port);
  if (!st.ok()) return st;

  auto impl = std::make_unique<Impl>();
  core::Clock* clock = options.clock != nullptr ? options.clock : core::Clock::Real();
  impl->registry = std::make_unique<core::JobRegistry>(clock, options.registry, options.store);
  if (options.store != nullptr) {
    absl::StatusOr<core::StoredState> stored = options.store->Load();
    if (!stored.ok()) return stored.status();
    st = impl->registry->Restore(*stored);
    if (!st.ok()) return st;
    LOG(INFO) << "restored " << stored->jobs.size() << " job(s) and " << stored->members.size()
              << " member(s) from " << options.store->Describe()
              << "; members get one node timeout to resume";
  }
  impl->rendezvous = std::make_unique<RendezvousService>(impl->registry.get());
  impl->admin_auth = std::make_unique<AdminAuth>(options.auth);
  impl->identity = options.identity;
  if (impl->identity.store.empty()) {
    impl->identity.store = options.store != nullptr ? options.store->Describe() : "memory";
  }
  impl->admin = std::make_unique<AdminService>(impl->registry.get(), impl->admin_auth.get(),
                                               &impl->identity);
  impl->job_store = std::make_unique<JobStoreService>(impl->registry.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(options.listen, ServerCredentialsFor(options.tls), &bound_port);
  builder.RegisterService(impl->rendezvous.get());
  builder.RegisterService(impl->admin.get());
  builder.RegisterService(impl->job_store.get());
  // A waiting Join may sit idle for the whole topology timeout: keepalive pings detect a dead
  // peer (power loss, blackholed network) so its member is withdrawn instead of blocking the job.
  // gRPC enables SO_REUSEPORT by default: a second daemon (or a stale embedded scheduler) on the
  // same port would silently share the traffic and split jobs between two registries. Refuse.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ClampMs(options.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ClampMs(options.keepalive_timeout));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Keepalive enforcement: a client may ping at most every 5 s; after 2 pings that came too
  // early (strikes) its connection gets GOAWAY (ENHANCE_YOUR_CALM "too_many_pings").
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ClampMs(options.min_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  // Bandwidth-delay probing sizes flow-control windows for bulk transfers; every request here
  // is a few hundred bytes at most, and the probes cost a PING and its ack per connection
  // whenever data arrives (250 PINGs/s with 100,000 heartbeating sessions on 1,000 connections).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  if (options.max_connection_idle != absl::InfiniteDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               ClampMs(options.max_connection_idle));
  }
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> session_queues;
  for (int i = 0; i < std::max(1, options.session_queues); ++i) {
    session_queues.push_back(builder.AddCompletionQueue());
  }
  impl->sessions = std::make_unique<SessionServer>(impl->rendezvous.get(), impl->registry.get(),
                                                   std::move(session_queues));
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || bound_port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.listen,
        ": the port is in use or the address is not local (is another ms-rendezvousd running?)"));
  }
  impl->sessions->Start();
  impl->dial_host = (host == "0.0.0.0" || host == "::" || host == "*") ? "127.0.0.1" : host;
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  // Per-service status: this daemon serves members (a standby answers NOT_SERVING here).
  impl->server->GetHealthCheckService()->SetServingStatus("ms.rendezvous.v1.Rendezvous", true);

  Impl* raw = impl.get();
  impl->MarkLoop();
  impl->registry->SetDeadlineObserver([raw](core::MonoTime when) { raw->Wake(when); });
  impl->deadline_thread = std::thread([raw] { raw->DeadlineLoop(); });

  std::unique_ptr<RendezvousServer> server(new RendezvousServer(std::move(impl)));
  server->port_ = bound_port;
  return server;
}

RendezvousServer::~RendezvousServer() { Shutdown(absl::ZeroDuration()); }

void RendezvousServer::SetAdminToken(const std::string& token) {
  impl_->admin_auth->SetAdminToken(token);
}

core::MonoTime RendezvousServer::last_deadline_loop() const {
  return core::MonoTime(std::chrono::duration_cast<core::MonoTime::duration>(
      std::chrono::nanoseconds(impl_->last_loop_ns.load(std::memory_order_relaxed))));
}

std::string RendezvousServer::address() const {
  const std::string& h = impl_->dial_host;
  if (h.find(':') != std::string::npos) return absl::StrCat("[", h, "]:", port_);
  return absl::StrCat(h, ":", port_);
}

void RendezvousServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock l(&impl_->mu);
    if (impl_->stopping) {
      while (!impl_->stopped) impl_->cv.Wait(&impl_->mu);
      return;
    }
    impl_->stopping = true;
    impl_->cv.SignalAll();
  }
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  // Parked joins and watches end with Unavailable first, so clients retry elsewhere or later
  // instead of hanging until their deadline.
  impl_->registry->Shutdown();
  impl_->server->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
  impl_->sessions->Shutdown();
  if (impl_->deadline_thread.joinable()) impl_->deadline_thread.join();
  absl::MutexLock l(&impl_->mu);
  impl_->stopped = true;
  impl_->cv.SignalAll();
}

void RendezvousServer::Wait() {
  absl::MutexLock l(&impl_->mu);
  while (!impl_->stopped) impl_->cv.Wait(&impl_->mu);
}

absl::StatusOr<core::JobState> RendezvousServer::WaitForJobEnd(const std::string& job_id,
                                                               absl::Duration timeout) {
  const absl::Time deadline =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  for (;;) {
    absl::StatusOr<core::JobSummary> job = registry_->GetJob(job_id);
    if (job.ok() &&
        (job->state == core::JobState::kFinished || job->state == core::JobState::kFailed)) {
      return job->state;
    }
    absl::MutexLock l(&impl_->mu);
    if (impl_->stopping) {
      return absl::UnavailableError("the rendezvous server is shutting down");
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "job '", job_id, "' did not end within ", absl::FormatDuration(timeout),
          job.ok() ? "" : " (no member of it ever joined)"));
    }
    // Polling the summary is cheap and keeps this helper independent of the watch machinery.
    impl_->cv.WaitWithDeadline(&impl_->mu, std::min(deadline, absl::Now() + absl::Milliseconds(50)));
  }
}

}  // namespace ms_rendezvous::server
