// Who may call what: the gRPC side of the project's credentials (core/credentials.h holds the
// job-token and member-credential rules, which the core enforces).
//
//   call                                   | needs
//   ---------------------------------------+-------------------------------------------------
//   Rendezvous.Join / Session join         | job token (metadata x-ms-job-token) = the job's
//   Heartbeat / Leave / Session follow-ups | MemberRef.credential of that very member (core)
//   JobStore.*                             | MemberRef.credential of that very member (core)
//   RendezvousAdmin reads (List/Get/Watch) | nothing, or the admin token with
//                                          | --status-requires-token
//   RendezvousAdmin Create/Abort/DeleteJob | the admin token (--admin-token-file); without an
//   and ListJobKeys (values may be secrets)| admin token configured these calls are refused
//   grpc.health.v1.Health                  | nothing (load balancers and probes)
//
// The admin token travels as "authorization: Bearer <token>". Missing -> UNAUTHENTICATED,
// wrong -> PERMISSION_DENIED. Only its SHA-256 digest is kept in memory; comparisons are
// constant-time. TLS (--tls-cert) is what keeps tokens secret on the wire.
#ifndef MS_RENDEZVOUS_SERVER_AUTH_H_
#define MS_RENDEZVOUS_SERVER_AUTH_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"

namespace ms_rendezvous::server {

inline constexpr char kJobTokenHeader[] = "x-ms-job-token";
inline constexpr char kAuthorizationHeader[] = "authorization";

// The job token a member presents (empty when none).
std::string JobTokenOf(const grpc::ServerContextBase& ctx);

struct AdminAuthOptions {
  // The admin token (read from --admin-token-file); empty: mutating admin calls are disabled.
  std::string admin_token;
  // --status-requires-token: the read-only admin calls need the admin token too.
  bool status_requires_token = false;
};

class AdminAuth {
 public:
  explicit AdminAuth(const AdminAuthOptions& options);

  // Replaces the admin token (SIGHUP re-reads --admin-token-file): calls from now on need the
  // new one. An empty token disables the mutating calls.
  void SetAdminToken(const std::string& token);

  // For ListJobs / GetJob / ListMembers / WatchJob.
  absl::Status CheckRead(const grpc::ServerContextBase& ctx) const;
  // For CreateJob / AbortJob / DeleteJob; `call` names the RPC in the message.
  absl::Status CheckWrite(const grpc::ServerContextBase& ctx, const char* call) const;

 private:
  absl::Status CheckToken(const grpc::ServerContextBase& ctx, const char* call) const;

  std::string Digest() const;

  mutable absl::Mutex mu_;
  std::string digest_ ABSL_GUARDED_BY(mu_);  // SHA-256 of the admin token; empty: none
  const bool status_requires_token_;
};

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_AUTH_H_
