// Hand-off of a complete job's topology to collective launchers: the HCCL rank table (v1.0), an
// OpenMPI hostfile and the environment of the launched process. Pure functions over the member
// table (Client::Members(), or ms-rendezvousctl's ListMembers pages); no I/O, no daemon calls.
//
//   absl::StatusOr<std::vector<MemberInfo>> members = client->Members();
//   absl::StatusOr<std::string> table = HcclRankTableJson(*members);      // RANK_TABLE_FILE
//   std::string hostfile = OpenMpiHostfile(*members);                     // mpirun --hostfile
//   absl::StatusOr<std::string> master = RankHost(*members, Role::kWorker, 0);
//   for (auto& [k, v] : LaunchEnv(topology, *master, 29500)) setenv(k, v);
//
// Server order (HCCL server_list, hostfile lines) is the daemon's node_rank order: the role's
// host addresses ordered by their lowest rank. A rank table lists every server's ranks as one
// contiguous block in that order (rank_id "counts from 0 and follows the order of server_id");
// a job whose ranks interleave hosts (numeric MS_NODE_IDs that pinned rank 1 to another host than
// ranks 0 and 2) cannot be written as one and is refused.
#ifndef MS_RENDEZVOUS_TOPOLOGY_EXPORT_H_
#define MS_RENDEZVOUS_TOPOLOGY_EXPORT_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ms_rendezvous/client.h"
#include "ms_rendezvous/options.h"

namespace ms_rendezvous {

struct RankTableOptions {
  // HCCL needs every device's RoCE address (MS_DEVICE_IP) to build a multi-server ring: a table
  // with placeholder addresses loads and then fails at the first collective, which is exactly
  // the hand-written-table failure this generator exists to avoid. So by default a member
  // without MS_DEVICE_IP is an error (FailedPrecondition naming the members). With false (CPU or
  // simulation users who only need the rank layout, e.g. single-server) such devices get
  // device_ip "0.0.0.0", the unspecified address: well-formed, visibly not a real one.
  bool require_device_ip = true;
};

// The device_ip written for a member without MS_DEVICE_IP when require_device_ip is false.
inline constexpr char kUnknownDeviceIp[] = "0.0.0.0";

// HCCL rank table v1.0 for the members of `role` (REFERENCE.md section 3), pretty-printed with
// 4-space indentation and a trailing newline; every value is a JSON string:
//   {"version": "1.0", "server_count": "N", "status": "completed",
//    "server_list": [{"server_id": HOST, "host_nic_ip": "reserve",
//                     "device": [{"device_id", "device_ip", "rank_id"}, ...]}, ...]}
// server_id = the host address the daemon recorded (MS_WORKER_IP, else the peer address);
// servers in node_rank order; devices in rank order; device_id = the member's DEVICE_ID, or its
// local rank when DEVICE_ID was unset; device_ip = MS_DEVICE_IP (see RankTableOptions).
// Members of other roles are ignored. Possible errors:
//   InvalidArgument     role is kScheduler (schedulers have no rank)
//   FailedPrecondition  the job is not complete: no member of the role, a member without a
//                       rank (named), ranks not exactly 0..N-1 (the duplicate or missing rank
//                       named); the ranks of a host are not contiguous (the offending rank, its
//                       host and the host in between named); two members of one host report
//                       the same device id (both named); members without MS_DEVICE_IP while
//                       require_device_ip (the first ones named, with the count)
absl::StatusOr<std::string> HcclRankTableJson(const std::vector<MemberInfo>& members,
                                              Role role = Role::kWorker,
                                              const RankTableOptions& options = {});

// OpenMPI hostfile for the members of `role`: one line "HOST slots=N" per host address, hosts in
// node_rank order (members without a rank, in a job that is still forming, come after in table
// order), N = the role's members on that host. Empty when the role has no members. mpirun's
// default by-slot mapping then gives each host the same number of processes as the rendezvous
// did; it numbers them per host in line order, so it reproduces the rendezvous ranks only when
// they are contiguous per host (HcclRankTableJson checks that).
std::string OpenMpiHostfile(const std::vector<MemberInfo>& members, Role role = Role::kWorker);

// The host address of `rank` of `role`, e.g. rank 0's host for MASTER_ADDR.
// NotFound when no member of the role holds that rank (the job is not complete).
absl::StatusOr<std::string> RankHost(const std::vector<MemberInfo>& members, Role role,
                                     uint32_t rank);

// The environment of the launched training process, in this order:
//   RANK_ID, RANK_SIZE, DEVICE_ID          MindSpore (RANK_SIZE = world size of the role)
//   RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, NODE_RANK,
//   MASTER_ADDR, MASTER_PORT               torch.distributed (GROUP_RANK = NODE_RANK = node rank)
// DEVICE_ID is `device_id` when >= 0 (the process's own DEVICE_ID, ClientOptions::device_id),
// else the local rank: the same rule as the rank table's device_id. MASTER_ADDR is taken as
// given (the caller looks up rank 0's host, see RankHost); an IPv6 literal is passed without
// brackets, as torch expects.
std::vector<std::pair<std::string, std::string>> LaunchEnv(const Topology& topology,
                                                           const std::string& master_addr,
                                                           int master_port,
                                                           int32_t device_id = -1);

// An HCCL rank table v1.0 as read back (ParseHcclRankTable).
struct ParsedRankTableDevice {
  uint32_t device_id = 0;
  std::string device_ip;  // "" when the entry has no device_ip
  uint32_t rank_id = 0;
};
struct ParsedRankTableServer {
  std::string server_id;
  std::string host_nic_ip;  // "" when absent
  std::string pod_ip;       // "" when absent (Kubernetes: the pod's address)
  std::vector<ParsedRankTableDevice> devices;
};
struct ParsedRankTable {
  std::string version;  // "1.0"
  std::string status;   // "completed"
  std::vector<ParsedRankTableServer> servers;
  uint32_t rank_size = 0;  // devices over all servers
};

// Reads an HCCL rank table v1.0 strictly: RFC 8259 JSON (duplicate keys, trailing commas,
// comments or trailing text are errors), version "1.0", status "completed", server_count equal
// to the number of servers, every value a string (server_count, device_id, rank_id decimal;
// device_ip, when present, an IPv4/IPv6 literal), distinct server_ids, distinct device_ids per
// server, rank_ids exactly 0..N-1 numbered in server order (each server's ranks contiguous,
// increasing; a rank_id seen before is reported as appearing twice, naming both entries). pod_ip,
// when present, must be a string and is kept. Unknown keys (server_ip, dpu_ip, numa_id, ...) are
// accepted and ignored.
// Errors are InvalidArgument naming the place: "rank table: server_list[1].device[2].rank_id:
// expected a string, got a number", or "rank table: line 3 column 7: expected ':'".
absl::StatusOr<ParsedRankTable> ParseHcclRankTable(const std::string& json);

}  // namespace ms_rendezvous

#endif  // MS_RENDEZVOUS_TOPOLOGY_EXPORT_H_
