#include "ms_rendezvous/options.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace ms_rendezvous {
namespace {

// Limits shared with the wire contract (rendezvous.proto).
constexpr int64_t kMaxMembers = 1000000;
constexpr size_t kMaxIdLength = 128;
// Topology timeouts above ~31 years are certainly typos; the bound also keeps ms in int64.
constexpr int64_t kMaxTopoTimeoutS = 1000000000;
constexpr double kMinIntervalS = 0.01;
constexpr double kMaxIntervalS = 3600;
// MindSpore: heartbeat every 0.5 s up to this many workers, a random 3..5 s above.
constexpr uint32_t kSmallJobWorkers = 128;

// Error for a set-but-invalid variable: NAME="value" <problem>: expected <allowed>.
absl::Status Invalid(absl::string_view name, absl::string_view value, absl::string_view problem,
                     absl::string_view allowed) {
  return absl::InvalidArgumentError(
      absl::StrCat(name, "=\"", absl::CHexEscape(value), "\" ", problem, ": expected ", allowed));
}

// The variable's value, with surrounding white space removed; nullopt when unset or empty.
std::optional<std::string> Get(const EnvLookup& env, const std::string& name) {
  std::optional<std::string> value = env(name);
  if (!value.has_value()) return std::nullopt;
  std::string stripped(absl::StripAsciiWhitespace(*value));
  if (stripped.empty()) return std::nullopt;
  return stripped;
}

// Parses a decimal integer in [lo, hi]; false on any other input.
bool ParseIntIn(absl::string_view text, int64_t lo, int64_t hi, int64_t* out) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool IsIpLiteral(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

// RFC 1123 host name: labels of [A-Za-z0-9-] separated by dots, at most 253 characters.
bool IsHostName(absl::string_view text) {
  if (text.empty() || text.size() > 253) return false;
  size_t label = 0;
  for (char c : text) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return label > 0 || text.back() == '.';
}

bool IsJobId(absl::string_view text) {
  if (text.empty() || text.size() > kMaxIdLength) return false;
  for (char c : text) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != ':' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

bool IsNodeId(absl::string_view text) {
  if (text.empty() || text.size() > kMaxIdLength) return false;
  for (char c : text) {
    if (c <= 0x20 || c > 0x7e) return false;  // the daemon rejects spaces too
  }
  return true;
}

absl::Status ParseRole(const EnvLookup& env, ClientOptions& o) {
  std::optional<std::string> v = Get(env, "MS_ROLE");
  if (!v) {
    return absl::InvalidArgumentError(
        "MS_ROLE is not set: set it to MS_SCHED (the scheduler), MS_WORKER or MS_PSERVER");
  }
  if (*v == "MS_SCHED") {
    o.role = Role::kScheduler;
  } else if (*v == "MS_WORKER") {
    o.role = Role::kWorker;
  } else if (*v == "MS_PSERVER" || *v == "MS_SERVER") {
    o.role = Role::kPServer;
  } else {
    return Invalid("MS_ROLE", *v, "is not a valid role",
                   "MS_SCHED, MS_WORKER or MS_PSERVER (MS_SERVER is an alias of MS_PSERVER)");
  }
  return absl::OkStatus();
}

// One entry of a scheduler address list: "host", "host:port", "[v6]", "[v6]:port" or a bare
// IPv6 literal (which cannot carry a port). `problem` explains a rejection.
struct SchedEntry {
  std::string host;
  std::optional<int> port;
};

std::optional<SchedEntry> ParseSchedEntry(absl::string_view entry, std::string* problem) {
  SchedEntry out;
  absl::string_view host = entry;
  absl::string_view port;
  bool has_port = false;
  if (absl::StartsWith(entry, "[")) {
    size_t close = entry.find(']');
    if (close == absl::string_view::npos) {
      *problem = "has no closing ']'";
      return std::nullopt;
    }
    host = entry.substr(1, close - 1);
    absl::string_view rest = entry.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') {
        *problem = "has text after ']' that is not \":PORT\"";
        return std::nullopt;
      }
      port = rest.substr(1);
      has_port = true;
    }
    if (!IsIpLiteral(std::string(host))) {
      *problem = "has brackets around something that is not an IP address";
      return std::nullopt;
    }
  } else if (!IsIpLiteral(std::string(entry))) {
    size_t colon = entry.rfind(':');
    if (colon != absl::string_view::npos && entry.find(':') == colon) {
      host = entry.substr(0, colon);
      port = entry.substr(colon + 1);
      has_port = true;
    }
  }
  if (!IsIpLiteral(std::string(host)) && !IsHostName(host)) {
    *problem = "is not a valid scheduler address";
    return std::nullopt;
  }
  out.host = std::string(host);
  if (has_port) {
    int64_t p = 0;
    if (!ParseIntIn(port, 1, 65535, &p)) {
      *problem = absl::StrCat("has an invalid port \"", absl::CHexEscape(port), "\"");
      return std::nullopt;
    }
    out.port = static_cast<int>(p);
  }
  return out;
}

constexpr char kSchedEntryAllowed[] =
    "an IPv4 address, an IPv6 address or a host name (letters, digits, '-', '.'), optionally "
    "with :PORT (IPv6 in brackets: [fd00::1]:8118); several addresses separated by commas";

absl::Status ParseSched(const EnvLookup& env, ClientOptions& o) {
  if (std::optional<std::string> v = Get(env, "MS_SCHED_HOST")) {
    std::vector<std::string> entries = absl::StrSplit(*v, ',');
    std::vector<std::string> canonical;
    for (size_t i = 0; i < entries.size(); ++i) {
      std::string entry(absl::StripAsciiWhitespace(entries[i]));
      std::string problem;
      std::optional<SchedEntry> parsed;
      if (entry.empty()) {
        problem = "is empty";
      } else {
        parsed = ParseSchedEntry(entry, &problem);
      }
      if (!parsed.has_value()) {
        if (entries.size() == 1 && problem == "is not a valid scheduler address") {
          // The single-address form keeps its original message.
          return Invalid("MS_SCHED_HOST", *v, "is not a valid scheduler address",
                         "an IPv4 address, an IPv6 address or a host name (letters, digits, "
                         "'-', '.')");
        }
        return Invalid("MS_SCHED_HOST", *v,
                       absl::StrCat("is not a valid scheduler address list: entry ", i + 1, " \"",
                                    absl::CHexEscape(entry), "\" ", problem),
                       kSchedEntryAllowed);
      }
      if (entries.size() == 1 && !parsed->port.has_value()) {
        // Brackets are tolerated around an IPv6 literal ("[fd00::1]") and stored without them.
        canonical.push_back(parsed->host);
      } else {
        canonical.push_back(entry);
      }
    }
    o.sched_host = absl::StrJoin(canonical, ",");
  } else if (o.role != Role::kScheduler) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MS_SCHED_HOST is not set: MS_ROLE=", RoleName(o.role),
        " needs the scheduler's address (IPv4, IPv6 or host name reachable from every process "
        "of the job), e.g. MS_SCHED_HOST=10.0.0.1"));
  }
  if (std::optional<std::string> v = Get(env, "MS_SCHED_PORT")) {
    int64_t port = 0;
    if (!ParseIntIn(*v, 1, 65535, &port)) {
      return Invalid("MS_SCHED_PORT", *v, "is not a valid port", "an integer in 1..65535");
    }
    o.sched_port = static_cast<int>(port);
  }
  return absl::OkStatus();
}

absl::Status ParseCounts(const EnvLookup& env, ClientOptions& o) {
  if (std::optional<std::string> v = Get(env, "MS_WORKER_NUM")) {
    int64_t n = 0;
    if (!ParseIntIn(*v, 1, kMaxMembers, &n)) {
      return Invalid("MS_WORKER_NUM", *v, "is not a valid worker count",
                     absl::StrCat("an integer in 1..", kMaxMembers));
    }
    o.worker_num = static_cast<uint32_t>(n);
  } else if (o.role != Role::kScheduler) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MS_WORKER_NUM is not set: MS_ROLE=", RoleName(o.role),
        " needs the total number of workers of the job (the same value in every process), "
        "e.g. MS_WORKER_NUM=8"));
  }
  if (std::optional<std::string> v = Get(env, "MS_SERVER_NUM")) {
    int64_t n = 0;
    if (!ParseIntIn(*v, 0, kMaxMembers, &n)) {
      return Invalid("MS_SERVER_NUM", *v, "is not a valid parameter server count",
                     absl::StrCat("an integer in 0..", kMaxMembers));
    }
    o.server_num = static_cast<uint32_t>(n);
    if (o.role == Role::kPServer && n == 0) {
      return Invalid("MS_SERVER_NUM", *v, "contradicts MS_ROLE=MS_PSERVER",
                     "at least 1 parameter server when MS_ROLE=MS_PSERVER");
    }
  } else if (o.role == Role::kPServer) {
    return absl::InvalidArgumentError(
        "MS_SERVER_NUM is not set: MS_ROLE=MS_PSERVER needs the number of parameter servers of "
        "the job (the same value in every process), e.g. MS_SERVER_NUM=2");
  }
  return absl::OkStatus();
}

absl::Status ParseIdentity(const EnvLookup& env, ClientOptions& o) {
  if (std::optional<std::string> v = Get(env, "MS_NODE_ID")) {
    if (!IsNodeId(*v)) {
      return Invalid(
          "MS_NODE_ID", *v, "is not a valid node id",
          "1..128 printable ASCII characters without spaces (a decimal number is the rank)");
    }
    o.node_id = *v;
  }
  if (std::optional<std::string> v = Get(env, "MS_WORKER_IP")) {
    if (!IsIpLiteral(*v)) {
      return Invalid("MS_WORKER_IP", *v, "is not a valid IP address",
                     "an IPv4 or IPv6 literal such as 10.0.0.5 or fd00::5 (not a host name)");
    }
    o.worker_ip = *v;
  }
  if (std::optional<std::string> v = Get(env, "DEVICE_ID")) {
    int64_t id = 0;
    if (!ParseIntIn(*v, 0, INT32_MAX, &id)) {
      return Invalid("DEVICE_ID", *v, "is not a valid device id",
                     absl::StrCat("an integer in 0..", INT32_MAX));
    }
    o.device_id = static_cast<int32_t>(id);
  }
  if (std::optional<std::string> v = Get(env, "MS_DEVICE_IP")) {
    if (!IsIpLiteral(*v)) {
      return Invalid("MS_DEVICE_IP", *v, "is not a valid device IP address",
                     "an IPv4 or IPv6 literal such as 192.168.100.1 or fd00::1 (not a host name)");
    }
    o.device_ip = *v;
  }
  if (std::optional<std::string> v = Get(env, "MS_JOB_ID")) {
    if (!IsJobId(*v)) {
      return Invalid("MS_JOB_ID", *v, "is not a valid job id",
                     "1..128 characters of [A-Za-z0-9._:-]");
    }
    o.job_id = *v;
  }
  return absl::OkStatus();
}

absl::Status ParseTopoTimeout(const EnvLookup& env, ClientOptions& o) {
  std::optional<std::string> v = Get(env, "MS_TOPO_TIMEOUT");
  if (!v) return absl::OkStatus();
  int64_t s = 0;
  // 0 is rejected: on the wire it would mean "the daemon's default", which is never what a
  // user who wrote 0 meant.
  if (!absl::SimpleAtoi(*v, &s) || s == 0 || s > kMaxTopoTimeoutS) {
    return Invalid("MS_TOPO_TIMEOUT", *v, "is not a valid topology timeout",
                   absl::StrCat("an integer number of seconds in 1..", kMaxTopoTimeoutS,
                                ", or a negative number to wait forever"));
  }
  o.topo_timeout = s < 0 ? absl::InfiniteDuration() : absl::Seconds(s);
  return absl::OkStatus();
}

absl::Status ParseNodeTimeout(const EnvLookup& env, ClientOptions& o) {
  std::optional<std::string> v = Get(env, "MS_NODE_TIMEOUT");
  if (!v) return absl::OkStatus();
  double s = 0;
  // 0 is rejected for the same reason as MS_TOPO_TIMEOUT=0 (it would mean "the default").
  if (!absl::SimpleAtod(*v, &s) || !std::isfinite(s) || s == 0 ||
      s > static_cast<double>(kMaxTopoTimeoutS) || (s > 0 && s < kMinIntervalS)) {
    return Invalid("MS_NODE_TIMEOUT", *v, "is not a valid node timeout",
                   absl::StrFormat("a number of seconds in %g..%d, or a negative number for no "
                                   "timeout",
                                   kMinIntervalS, kMaxTopoTimeoutS));
  }
  o.node_timeout = s < 0 ? absl::InfiniteDuration() : absl::Seconds(s);
  return absl::OkStatus();
}

absl::Status ParseRecovery(const EnvLookup& env, ClientOptions& o) {
  std::optional<std::string> v = Get(env, "MS_ENABLE_RECOVERY");
  if (!v) return absl::OkStatus();
  std::string flag = absl::AsciiStrToLower(*v);
  if (flag == "1" || flag == "true") {
    o.enable_recovery = true;
  } else if (flag == "0" || flag == "false") {
    o.enable_recovery = false;
  } else {
    return Invalid("MS_ENABLE_RECOVERY", *v, "is not a valid switch",
                   "1 (a dead member may rejoin with the same MS_NODE_ID and take back its rank) "
                   "or 0 (a dead member fails the job)");
  }
  return absl::OkStatus();
}

absl::Status ParseSecurity(const EnvLookup& env, ClientOptions& o) {
  if (std::optional<std::string> v = Get(env, "MS_JOB_TOKEN")) {
    // The value is a secret: messages give its length, never its text.
    if (v->size() > 1024) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MS_JOB_TOKEN is ", v->size(), " bytes long: expected 1..1024 printable characters"));
    }
    for (char c : *v) {
      if (c < 0x21 || c > 0x7e) {
        return absl::InvalidArgumentError(
            "MS_JOB_TOKEN contains a space or non-printable character: expected 1..1024 "
            "printable ASCII characters");
      }
    }
    o.job_token = *v;
  }
  struct File {
    const char* name;
    std::string* out;
  };
  for (File f : {File{"MS_TLS_CA", &o.tls_ca_file}, File{"MS_TLS_CERT", &o.tls_cert_file},
                 File{"MS_TLS_KEY", &o.tls_key_file}}) {
    std::optional<std::string> v = Get(env, f.name);
    if (!v) continue;
    if (access(v->c_str(), R_OK) != 0) {
      return Invalid(f.name, *v, absl::StrCat("cannot be read (", std::strerror(errno), ")"),
                     "the path of a readable PEM file");
    }
    *f.out = *v;
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "MS_TLS_CERT and MS_TLS_KEY must be set together (the client certificate for mutual "
        "TLS and its private key)");
  }
  if (std::optional<std::string> v = Get(env, "MS_TLS_SERVER_NAME")) {
    if (o.tls_ca_file.empty() && o.tls_cert_file.empty()) {
      return Invalid("MS_TLS_SERVER_NAME", *v, "has no effect without TLS",
                     "MS_TLS_CA (and for mutual TLS MS_TLS_CERT/MS_TLS_KEY) to be set too");
    }
    o.tls_server_name = *v;
  }
  return absl::OkStatus();
}

absl::Status ParseInterval(const EnvLookup& env, const std::string& name,
                           std::optional<double>* out) {
  std::optional<std::string> v = Get(env, name);
  if (!v) return absl::OkStatus();
  double s = 0;
  if (!absl::SimpleAtod(*v, &s) || !std::isfinite(s) || s < kMinIntervalS || s > kMaxIntervalS) {
    return Invalid(name, *v, "is not a valid heartbeat interval",
                   absl::StrFormat("a number of seconds in %g..%g", kMinIntervalS, kMaxIntervalS));
  }
  *out = s;
  return absl::OkStatus();
}

absl::Status ParseHeartbeat(const EnvLookup& env, ClientOptions& o) {
  std::optional<double> lower, upper;
  if (absl::Status s = ParseInterval(env, "MS_RETRY_INTERVAL_LOWER", &lower); !s.ok()) return s;
  if (absl::Status s = ParseInterval(env, "MS_RETRY_INTERVAL_UPPER", &upper); !s.ok()) return s;
  double def_lower = 0.5, def_upper = 0.5;
  if (o.worker_num > kSmallJobWorkers) {
    // MindSpore picks one random interval in 3..5 s per process; drawing the bounds per beat
    // (lower=3, upper=5) spreads the load the same way.
    def_lower = 3;
    def_upper = 5;
  }
  if (lower && upper && *lower > *upper) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MS_RETRY_INTERVAL_LOWER=\"", *Get(env, "MS_RETRY_INTERVAL_LOWER"),
        "\" is greater than MS_RETRY_INTERVAL_UPPER=\"", *Get(env, "MS_RETRY_INTERVAL_UPPER"),
        "\": expected LOWER <= UPPER (seconds)"));
  }
  // Only one bound given: the other follows the default but never crosses it.
  double lo = lower ? *lower : (upper ? std::min(def_lower, *upper) : def_lower);
  double hi = upper ? *upper : (lower ? std::max(def_upper, *lower) : def_upper);
  o.heartbeat_interval_lower = absl::Seconds(lo);
  o.heartbeat_interval_upper = absl::Seconds(hi);

  if (std::optional<std::string> v = Get(env, "MS_DISABLE_HEARTBEAT")) {
    std::string flag = absl::AsciiStrToLower(*v);
    if (flag == "1" || flag == "true") {
      o.heartbeat_enabled = false;
    } else if (flag == "0" || flag == "false") {
      o.heartbeat_enabled = true;
    } else {
      return Invalid("MS_DISABLE_HEARTBEAT", *v, "is not a valid switch",
                     "1 (disable heartbeats) or 0 (keep them)");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kScheduler:
      return "MS_SCHED";
    case Role::kWorker:
      return "MS_WORKER";
    case Role::kPServer:
      return "MS_PSERVER";
  }
  return "MS_UNKNOWN";
}

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

absl::StatusOr<ClientOptions> ParseClientOptions(const EnvLookup& env) {
  ClientOptions o;
  // Order matters: later checks depend on the role and the worker count.
  for (auto* step : {&ParseRole, &ParseSched, &ParseCounts, &ParseIdentity, &ParseTopoTimeout,
                     &ParseHeartbeat, &ParseNodeTimeout, &ParseRecovery, &ParseSecurity}) {
    if (absl::Status s = step(env, o); !s.ok()) return s;
  }
  return o;
}

absl::Status ValidateClientOptions(const ClientOptions& o) {
  auto bad = [](absl::string_view field, absl::string_view value, absl::string_view allowed) {
    return absl::InvalidArgumentError(absl::StrCat("ClientOptions.", field, "=\"",
                                                   absl::CHexEscape(value),
                                                   "\" is invalid: expected ", allowed));
  };
  if (o.role != Role::kScheduler) {
    if (o.sched_host.empty()) return bad("sched_host", "", "the scheduler's address");
    if (o.worker_num == 0) return bad("worker_num", "0", "1..1000000 for workers and servers");
  }
  if (o.role == Role::kPServer && o.server_num == 0) {
    return bad("server_num", "0", "at least 1 for role MS_PSERVER");
  }
  if (o.sched_port < 1 || o.sched_port > 65535) {
    return bad("sched_port", absl::StrCat(o.sched_port), "an integer in 1..65535");
  }
  if (!o.sched_host.empty()) {
    absl::StatusOr<std::vector<SchedulerAddress>> addresses = SchedulerAddresses(o);
    if (!addresses.ok()) return addresses.status();
  }
  if (o.worker_num > kMaxMembers) {
    return bad("worker_num", absl::StrCat(o.worker_num), "1..1000000");
  }
  if (o.server_num > kMaxMembers) {
    return bad("server_num", absl::StrCat(o.server_num), "0..1000000");
  }
  if (!o.node_id.empty() && !IsNodeId(o.node_id)) {
    return bad("node_id", o.node_id, "1..128 printable ASCII characters without spaces");
  }
  if (!o.worker_ip.empty() && !IsIpLiteral(o.worker_ip)) {
    return bad("worker_ip", o.worker_ip, "an IPv4 or IPv6 literal");
  }
  if (!o.device_ip.empty() && !IsIpLiteral(o.device_ip)) {
    return bad("device_ip", o.device_ip, "an IPv4 or IPv6 literal (empty = unknown)");
  }
  if (o.device_id < -1) {
    return bad("device_id", absl::StrCat(o.device_id), "-1 (unset) or 0..2147483647");
  }
  if (!IsJobId(o.job_id)) return bad("job_id", o.job_id, "1..128 characters of [A-Za-z0-9._:-]");
  if (o.topo_timeout <= absl::ZeroDuration() ||
      (o.topo_timeout != absl::InfiniteDuration() &&
       o.topo_timeout > absl::Seconds(kMaxTopoTimeoutS))) {
    return bad("topo_timeout", absl::FormatDuration(o.topo_timeout),
               "a positive duration, or absl::InfiniteDuration() to wait forever");
  }
  if (o.node_timeout < absl::ZeroDuration() ||
      (o.node_timeout != absl::InfiniteDuration() &&
       (o.node_timeout > absl::Seconds(kMaxTopoTimeoutS) ||
        (o.node_timeout > absl::ZeroDuration() &&
         o.node_timeout < absl::Seconds(kMinIntervalS))))) {
    return bad("node_timeout", absl::FormatDuration(o.node_timeout),
               "zero (the daemon's default), 10ms..31y, or absl::InfiniteDuration() for none");
  }
  const absl::Duration lo = o.heartbeat_interval_lower, hi = o.heartbeat_interval_upper;
  if (lo < absl::Seconds(kMinIntervalS) || hi > absl::Seconds(kMaxIntervalS) || lo > hi) {
    return bad("heartbeat_interval_lower..upper",
               absl::StrCat(absl::FormatDuration(lo), "..", absl::FormatDuration(hi)),
               "10ms <= lower <= upper <= 1h");
  }
  return absl::OkStatus();
}

absl::StatusOr<ClientOptions> ClientOptionsFromEnv() { return ParseClientOptions(ProcessEnv()); }

std::string GenerateNodeId() {
  absl::BitGen gen;  // seeded from OS entropy
  uint8_t b[16];
  for (uint8_t& byte : b) byte = absl::Uniform<uint8_t>(gen);
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  std::string hex =
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(b), sizeof(b)));
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                      hex.substr(16, 4), "-", hex.substr(20, 12));
}

absl::StatusOr<std::vector<SchedulerAddress>> SchedulerAddresses(const ClientOptions& options) {
  std::vector<SchedulerAddress> out;
  if (options.sched_host.empty()) {
    out.push_back(SchedulerAddress{"127.0.0.1", options.sched_port});
    return out;
  }
  std::vector<std::string> entries = absl::StrSplit(options.sched_host, ',');
  for (size_t i = 0; i < entries.size(); ++i) {
    std::string entry(absl::StripAsciiWhitespace(entries[i]));
    std::string problem = "is empty";
    std::optional<SchedEntry> parsed;
    if (!entry.empty()) parsed = ParseSchedEntry(entry, &problem);
    if (!parsed.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ClientOptions.sched_host=\"", absl::CHexEscape(options.sched_host), "\" is invalid: ",
          entries.size() > 1 ? absl::StrCat("entry ", i + 1, " \"", absl::CHexEscape(entry), "\" ")
                             : std::string(),
          problem, ": expected ", kSchedEntryAllowed));
    }
    out.push_back(SchedulerAddress{parsed->host, parsed->port.value_or(options.sched_port)});
  }
  return out;
}

namespace {
std::string Target(const SchedulerAddress& a) {
  if (absl::StrContains(a.host, ':')) return absl::StrCat("[", a.host, "]:", a.port);
  return absl::StrCat(a.host, ":", a.port);
}
}  // namespace

absl::StatusOr<std::vector<std::string>> SchedulerTargets(const ClientOptions& options) {
  absl::StatusOr<std::vector<SchedulerAddress>> addresses = SchedulerAddresses(options);
  if (!addresses.ok()) return addresses.status();
  std::vector<std::string> out;
  for (const SchedulerAddress& a : *addresses) out.push_back(Target(a));
  return out;
}

std::string SchedulerTarget(const ClientOptions& options) {
  absl::StatusOr<std::vector<std::string>> targets = SchedulerTargets(options);
  if (targets.ok()) return targets->front();
  // Malformed (not validated): the old behaviour, so the caller's error names the value.
  const std::string& host = options.sched_host;
  if (absl::StrContains(host, ':')) return absl::StrCat("[", host, "]:", options.sched_port);
  return absl::StrCat(host, ":", options.sched_port);
}

}  // namespace ms_rendezvous
