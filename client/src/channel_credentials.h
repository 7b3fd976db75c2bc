// Channel security from ClientOptions (MS_TLS_*), shared by the client library and the tools
// (ms-rendezvousctl, ms-rendezvous-bench) so every program dials the daemon the same way.
// Internal: exposes gRPC types, so it is not under include/.
#ifndef MS_RENDEZVOUS_CLIENT_SRC_CHANNEL_CREDENTIALS_H_
#define MS_RENDEZVOUS_CLIENT_SRC_CHANNEL_CREDENTIALS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "ms_rendezvous/options.h"

namespace ms_rendezvous {

// Plaintext when neither tls_ca_file nor tls_cert_file is set; otherwise TLS verifying the
// daemon against tls_ca_file (the system roots when empty), presenting tls_cert_file/key when
// set. InvalidArgument naming the variable and path when a file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(
    const ClientOptions& options);

// Adds the TLS target-name override (MS_TLS_SERVER_NAME) to `args` when set.
void AddTlsChannelArgs(const ClientOptions& options, grpc::ChannelArguments* args);

}  // namespace ms_rendezvous

#endif  // MS_RENDEZVOUS_CLIENT_SRC_CHANNEL_CREDENTIALS_H_
