// gRPC <-> absl status glue for the command-line tools.
#ifndef MS_RENDEZVOUS_TOOLS_COMMON_GRPC_STATUS_H_
#define MS_RENDEZVOUS_TOOLS_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ms_rendezvous::tools {

// The numeric codes of grpc::StatusCode and absl::StatusCode are the same canonical codes, so the
// conversion is a cast; keeping absl::Status inside the tools lets them share core's helpers.
inline absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// "NOT_FOUND: job \"x\" is unknown": the form every tool prints errors in (code first, so scripts
// can match on it).
inline std::string FormatStatus(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

}  // namespace ms_rendezvous::tools

#endif  // MS_RENDEZVOUS_TOOLS_COMMON_GRPC_STATUS_H_
