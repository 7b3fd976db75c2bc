// RendezvousServer: the gRPC front of the core, used by the daemon (ms-rendezvousd), by the
// embedded scheduler of the client library (MS_ROLE=MS_SCHED) and by integration tests.
//
// It owns a core::JobRegistry, the deadline thread that drives the registry's timers, and a
// grpc::Server serving ms.rendezvous.v1.Rendezvous, ms.rendezvous.v1.RendezvousAdmin,
// grpc.health.v1.Health and server reflection on one port. Services are thin: proto <-> core.
#ifndef MS_RENDEZVOUS_SERVER_SERVER_H_
#define MS_RENDEZVOUS_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/job_registry.h"
#include "server/auth.h"
#include "store/state_store.h"

namespace ms_rendezvous::server {

// TLS of the gRPC port (PEM contents, not paths; the daemon reads --tls-* files).
struct TlsOptions {
  std::string cert_chain;  // server certificate chain; empty: plaintext
  std::string private_key;
  // CA bundle for client certificates. Non-empty: mutual TLS, a client without a certificate
  // signed by this CA is refused during the handshake (before any handler runs).
  std::string client_ca;
};

// Who this daemon is, for RendezvousAdmin.GetServerInfo and `ms-rendezvousctl health`.
struct ServerIdentity {
  std::string role = "single";  // "single", or "leader" with an etcd store (standbys: see
                                // server/standby_server.h)
  std::string self;             // --advertise address ("" for single)
  std::string store;            // StateStore::Describe(), filled in by Start() when empty
};

struct ServerOptions {
  // HOST:PORT to listen on. Port 0 picks a free port (see RendezvousServer::port()).
  std::string listen = "0.0.0.0:8118";
  // Registry settings (topology timeout default, finished-job retention, ...).
  core::RegistryOptions registry;
  // Clock for the registry; nullptr = the real monotonic clock.
  core::Clock* clock = nullptr;
  // Where membership is persisted (not owned; must outlive the server). nullptr: in memory only.
  // With a store, its state is loaded and restored before the port is opened.
  core::StateStore* store = nullptr;
  // Largest request message accepted (--max-receive-message-bytes); larger ones fail with
  // ResourceExhausted (gRPC's own message). Must be >= 1.
  int max_receive_message_bytes = 4 * 1024 * 1024;
  // Server-side keepalive (--keepalive-time / --keepalive-timeout): ping an idle connection
  // after keepalive_time, close it if the ping is not acknowledged within keepalive_timeout.
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Keepalive enforcement (--min-ping-interval): a client that pings more often than this gets
  // GOAWAY "too_many_pings" after 2 strikes. The client library pings every 30 s.
  absl::Duration min_ping_interval = absl::Seconds(5);
  // Connections with no active call for this long are closed (--max-connection-idle; GOAWAY,
  // clients reconnect on their next call). Members holding a session always have an active
  // call, so they are never affected. InfiniteDuration = never.
  absl::Duration max_connection_idle = absl::Hours(1);
  // Completion queues (one thread each) the Session streams are spread over. Debian's libgrpc
  // searches a queue's pending operations linearly on every completion, so a queue should hold
  // a few thousand streams at most; 16 keep 100,000 members cheap.
  int session_queues = 16;
  // Transport security; default plaintext.
  TlsOptions tls;
  // Admin token and status protection (server/auth.h).
  AdminAuthOptions auth;
  ServerIdentity identity;
};

class RendezvousServer {
 public:
  // Restores state from options.store (if any), binds the port and starts serving. Errors:
  // InvalidArgument for a malformed listen address, Unavailable when the port cannot be bound
  // (the message names the address), the store's error when its state cannot be loaded.
  static absl::StatusOr<std::unique_ptr<RendezvousServer>> Start(ServerOptions options);

  ~RendezvousServer();  // Shutdown(absl::ZeroDuration()) if not done yet.

  // The bound port (useful with port 0).
  int port() const { return port_; }
  // "HOST:PORT" clients can dial (127.0.0.1 when listening on a wildcard address).
  std::string address() const;

  core::JobRegistry& registry() { return *registry_; }

  // Replaces the admin token (the daemon re-reads --admin-token-file on SIGHUP).
  void SetAdminToken(const std::string& token);

  // Progress heartbeat: when the deadline thread last completed a loop iteration, on the real
  // steady clock (not options.clock). The loop wakes at least once a second, and each iteration
  // goes through the registry's locks (ProcessDeadlines), so a value more than a few seconds old
  // means the core is wedged. Cheap (one atomic load); the daemon's systemd watchdog uses it.
  core::MonoTime last_deadline_loop() const;

  // Graceful stop: waiting Join calls and watches end with Unavailable at once, in-flight unary
  // calls get up to `grace` to finish, then the server stops. Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(5));

  // Blocks until Shutdown() completed.
  void Wait();

  // Blocks until job `job_id` exists and reached FINISHED or FAILED, or until `timeout`.
  // Returns the final state; DeadlineExceeded on timeout; Unavailable when the server shuts down.
  absl::StatusOr<core::JobState> WaitForJobEnd(const std::string& job_id,
                                               absl::Duration timeout = absl::InfiniteDuration());

  struct Impl;  // defined in server.cc

 private:
  explicit RendezvousServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  core::JobRegistry* registry_ = nullptr;
  int port_ = 0;
};

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_SERVER_H_
