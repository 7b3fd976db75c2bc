// ms_rendezvous client options and the MindSpore environment contract.
//
// Every process of a MindSpore-style job (the scheduler included) runs the same script and learns
// its role and the job's shape from the environment:
//
//   MS_ROLE                  MS_SCHED | MS_WORKER | MS_PSERVER (MS_SERVER = alias)   required
//   MS_SCHED_HOST            scheduler address: IPv4, IPv6 or host name     required (workers)
//                            or a list "a,b,c" tried in turn (round robin on failure); each
//                            entry may carry ":PORT" (IPv6 in brackets: "[fd00::1]:9000")
//   MS_SCHED_PORT            1..65535 (entries without their own port)     default 8118
//   MS_WORKER_NUM            1..1000000, identical in every process         required (workers,
//                                                                            servers)
//   MS_SERVER_NUM            0..1000000 (parameter servers)                 default 0
//   MS_NODE_ID               1..128 printable chars, no spaces; numeric=rank   default random UUID
//   MS_WORKER_IP             IPv4/IPv6 literal this process talks on        default: peer address
//   DEVICE_ID                0..2147483647                                  default unset (-1)
//   MS_DEVICE_IP             IPv4/IPv6 literal of this process's device NIC default unset ("")
//                            (NPU/GPU RoCE address; goes into HCCL rank tables, see
//                            topology_export.h)
//   MS_JOB_ID                1..128 of [A-Za-z0-9._:-]                      default "default"
//   MS_TOPO_TIMEOUT          seconds, > 0; negative = wait forever          default 1800
//   MS_RETRY_INTERVAL_LOWER  heartbeat interval bounds, seconds (0.01..3600)
//   MS_RETRY_INTERVAL_UPPER    default 0.5 s up to 128 workers, else random 3..5 s
//   MS_DISABLE_HEARTBEAT     1 = no heartbeats on the session (0 = heartbeats)
//   MS_NODE_TIMEOUT          seconds without a heartbeat before a member is declared dead;
//                            > 0, negative = never; unset = the daemon's default (30 s)
//   MS_ENABLE_RECOVERY       1 = a member that died may rejoin with the same MS_NODE_ID and
//                            take back its rank (the job degrades instead of failing); 0 = off
//   MS_JOB_TOKEN             the job's token (1..1024 printable chars, no spaces): the member
//                            that creates the job fixes it, every other member must present it
//   MS_TLS_CA                PEM CA bundle to verify the daemon (turns TLS on)
//   MS_TLS_CERT, MS_TLS_KEY  PEM client certificate and key (mutual TLS; both or neither)
//   MS_TLS_SERVER_NAME       name to verify in the daemon's certificate (default: MS_SCHED_HOST)
//
// A variable that is set to the empty string counts as unset (launchers often export "VAR=").
#ifndef MS_RENDEZVOUS_OPTIONS_H_
#define MS_RENDEZVOUS_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ms_rendezvous {

// The role of a process (MS_ROLE). Workers and parameter servers have separate rank spaces; the
// scheduler never joins, it serves (see scheduler.h).
enum class Role { kScheduler, kWorker, kPServer };

// MindSpore spelling: "MS_SCHED", "MS_WORKER", "MS_PSERVER".
absl::string_view RoleName(Role role);

// Defaults of the contract.
inline constexpr int kDefaultSchedPort = 8118;
inline constexpr char kDefaultJobId[] = "default";
inline constexpr absl::Duration kDefaultTopoTimeout = absl::Seconds(1800);
// The daemon's --default-node-timeout when it was not changed (used by the client only to bound
// its reconnect attempts when MS_NODE_TIMEOUT is unset).
inline constexpr absl::Duration kDefaultNodeTimeout = absl::Seconds(30);

struct ClientOptions {
  Role role = Role::kWorker;
  // Scheduler/daemon address (host name, IPv4 or IPv6 literal without brackets) and port.
  // May be empty only for the scheduler role (it then listens on every address).
  // May also be a comma-separated list of addresses ("10.0.0.1,10.0.0.2:9000,[fd00::1]:9000"):
  // the client tries them in turn, moving to the next one on every failed attempt. An entry
  // without its own port uses sched_port; an IPv6 entry needs brackets to carry a port.
  std::string sched_host;
  int sched_port = kDefaultSchedPort;
  // MS_WORKER_NUM / MS_SERVER_NUM. worker_num may be 0 only for the scheduler role.
  uint32_t worker_num = 0;
  uint32_t server_num = 0;
  // Stable identity of this process within (job, role); decimal = the rank. Client::Create
  // generates a random UUID v4 when empty.
  std::string node_id;
  // Address this process communicates on; empty = the address the daemon sees.
  std::string worker_ip;
  // Host name reported to ops (never used to group ranks); Create fills in gethostname().
  std::string host_name;
  // DEVICE_ID, -1 when unset. Orders ranks within one host.
  int32_t device_id = -1;
  // MS_DEVICE_IP: the device (NPU/GPU NIC) address, an IPv4 or IPv6 literal; empty = unknown.
  // Reported to the daemon and listed in the member table (MemberInfo::device_ip).
  std::string device_ip;
  std::string job_id = kDefaultJobId;
  // How long the job may take to form. absl::InfiniteDuration() waits forever.
  absl::Duration topo_timeout = kDefaultTopoTimeout;
  // Heartbeat period: every beat waits a random duration in [lower, upper] (a small jitter is
  // added when they are equal, so thousands of members do not beat in lockstep).
  absl::Duration heartbeat_interval_lower = absl::Milliseconds(500);
  absl::Duration heartbeat_interval_upper = absl::Milliseconds(500);
  // false (MS_DISABLE_HEARTBEAT=1): no heartbeats; only the session connection proves
  // liveness. When node_timeout is left at zero the client then asks for no node timeout
  // (node_timeout_ms = -1), or the daemon's default would declare this member dead.
  bool heartbeat_enabled = true;
  // MS_NODE_TIMEOUT: how long the daemon waits for a heartbeat before declaring a member dead.
  // Zero: the daemon's default (--default-node-timeout); absl::InfiniteDuration(): never. The
  // job's first member fixes it. Also bounds how long the client tries to resume its session
  // after the connection broke.
  absl::Duration node_timeout = absl::ZeroDuration();
  // MS_ENABLE_RECOVERY: a member that died may join again with the same node id and takes back
  // its rank; meanwhile the job is degraded. Every member of a job must agree.
  bool enable_recovery = false;
  // MS_JOB_TOKEN: sent with every call (metadata x-ms-job-token); empty = none. Never logged.
  std::string job_token;
  // TLS to the daemon (MS_TLS_*; paths of PEM files). TLS is on when tls_ca_file or
  // tls_cert_file is set; tls_cert_file and tls_key_file go together (mutual TLS).
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // Overrides the host name checked against the daemon's certificate.
  std::string tls_server_name;
};

// Looks up one environment variable; std::nullopt when unset. Injectable so tests can pass a map.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// getenv() of this process.
EnvLookup ProcessEnv();

// Reads and validates the MindSpore contract (table above).
// Possible errors (all InvalidArgument):
//   a variable has a malformed or out-of-range value: the message names the variable, quotes
//     the value and states what is allowed, e.g.
//     MS_SCHED_PORT="70000" is not a valid port: expected an integer in 1..65535
//   a required variable is unset: the message names it and says what to set.
// node_id stays empty when MS_NODE_ID is unset (Client::Create generates one), so parsing is
// deterministic except for the random heartbeat interval default above 128 workers.
absl::StatusOr<ClientOptions> ParseClientOptions(const EnvLookup& env);

// Checks options built by hand (Client::Create calls it): the same ranges as the contract.
// Possible errors: InvalidArgument naming the field, its value and what is allowed.
absl::Status ValidateClientOptions(const ClientOptions& options);

// ParseClientOptions(ProcessEnv()).
absl::StatusOr<ClientOptions> ClientOptionsFromEnv();

// A random RFC 4122 version-4 UUID in canonical lower-case form.
std::string GenerateNodeId();

// "HOST:PORT" to dial for the options' scheduler ("[v6]:PORT" for IPv6 literals); the first
// entry when sched_host is a list.
std::string SchedulerTarget(const ClientOptions& options);

// One entry of sched_host: the host (IPv6 without brackets) and the port to dial.
struct SchedulerAddress {
  std::string host;
  int port = kDefaultSchedPort;
};

// The entries of sched_host, in order (one unless it is a list); port = the entry's own port,
// else sched_port. InvalidArgument naming the entry when one is malformed.
absl::StatusOr<std::vector<SchedulerAddress>> SchedulerAddresses(const ClientOptions& options);

// Every "HOST:PORT" of sched_host, in order (one element unless it is a list).
// InvalidArgument naming the entry when one is malformed.
absl::StatusOr<std::vector<std::string>> SchedulerTargets(const ClientOptions& options);

}  // namespace ms_rendezvous

#endif  // MS_RENDEZVOUS_OPTIONS_H_
