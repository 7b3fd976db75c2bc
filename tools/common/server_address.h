// Which daemon a command-line tool talks to when --server is not given.
//
// The tools follow the MindSpore environment contract (REFERENCE.md): a shell that launches a job
// already has MS_SCHED_HOST / MS_SCHED_PORT set, so `ms-rendezvousctl job $MS_JOB_ID` inspects
// exactly the daemon that job uses. MS_SCHED_HOST may be an HA list "a,b,c" (each entry may carry
// its own ":port"); a single-target tool takes the first entry.
#ifndef MS_RENDEZVOUS_TOOLS_COMMON_SERVER_ADDRESS_H_
#define MS_RENDEZVOUS_TOOLS_COMMON_SERVER_ADDRESS_H_

#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace ms_rendezvous::tools {

inline constexpr absl::string_view kDefaultServer = "127.0.0.1:8118";

// Joins host and port into a gRPC target, bracketing bare IPv6 addresses ("::1" -> "[::1]:8118").
inline std::string JoinHostPort(absl::string_view host, absl::string_view port) {
  if (host.find(':') != absl::string_view::npos && !absl::StartsWith(host, "[")) {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

// True when `entry` already names a port: "h:p", "[v6]:p" (a bare IPv6 address has 2+ colons).
inline bool HasPort(absl::string_view entry) {
  if (absl::StartsWith(entry, "[")) return entry.find("]:") != absl::string_view::npos;
  size_t first = entry.find(':');
  return first != absl::string_view::npos && entry.find(':', first + 1) == absl::string_view::npos;
}

// MS_SCHED_HOST[:MS_SCHED_PORT] from the environment, else kDefaultServer.
// Errors: InvalidArgument naming the variable when MS_SCHED_PORT is not a port number.
inline absl::StatusOr<std::string> ServerFromEnv() {
  const char* host_env = std::getenv("MS_SCHED_HOST");
  const char* port_env = std::getenv("MS_SCHED_PORT");
  std::string port = "8118";
  if (port_env != nullptr && *port_env != '\0') {
    int value = 0;
    if (!absl::SimpleAtoi(port_env, &value) || value < 1 || value > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("MS_SCHED_PORT=\"", port_env, "\" is not a port number (1..65535)"));
    }
    port = absl::StrCat(value);
  }
  absl::string_view host = host_env != nullptr ? host_env : "";
  host = absl::StripAsciiWhitespace(host);
  // HA list: the first reachable daemon is as good as any for a read-only tool.
  host = host.substr(0, host.find(','));
  if (host.empty()) host = "127.0.0.1";
  if (HasPort(host)) return std::string(host);
  return JoinHostPort(host, port);
}

}  // namespace ms_rendezvous::tools

#endif  // MS_RENDEZVOUS_TOOLS_COMMON_SERVER_ADDRESS_H_
