// Transport security of the daemon's gRPC port, shared by the serving daemon (server.cc) and a
// standby (standby_server.cc) so both present the same certificate and client-CA rules.
#ifndef MS_RENDEZVOUS_SERVER_TLS_H_
#define MS_RENDEZVOUS_SERVER_TLS_H_

#include <memory>

#include "grpcpp/security/server_credentials.h"
#include "server/server.h"

namespace ms_rendezvous::server {

// Plaintext, TLS, or mutual TLS (client_ca set: a verified client certificate is required, so
// an unauthenticated peer fails the handshake and never reaches a handler).
std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(const TlsOptions& tls);

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_TLS_H_
