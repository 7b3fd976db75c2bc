// Rank assignment rules (MindSpore's, with the host-name pitfall fixed).
//
// Within one role:
//   1. A member whose node id is a decimal number keeps that number as its rank.
//   2. Every other member takes one of the remaining ranks, in ascending order of
//      (host address bytes, DEVICE_ID, node id): the ranks of one host are contiguous.
//   3. local_rank = position among the role's members with the same host ADDRESS, by rank;
//      node_rank = position of the host among the role's hosts, ordered by their lowest rank.
// Hosts are compared as addresses (10.0.0.9 < 10.0.0.10; ::ffff:10.0.0.1 == 10.0.0.1), never
// by host name: identical host names on different machines must not merge their ranks.
#ifndef MS_RENDEZVOUS_CORE_RANK_ASSIGNER_H_
#define MS_RENDEZVOUS_CORE_RANK_ASSIGNER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ms_rendezvous::core {

// A node id that is all decimal digits (at most 9 of them) as a number; nullopt otherwise.
std::optional<uint32_t> NumericNodeId(absl::string_view node_id);

// An order-preserving key for a host: IPv4 (and IPv4-mapped IPv6) addresses as their 4 bytes,
// IPv6 as its 16 bytes, anything else (a host name) after all addresses, by its text.
std::string HostKey(absl::string_view host);

struct RankInput {
  absl::string_view node_id;
  absl::string_view host_key;  // HostKey(host)
  int32_t device_id = -1;
  std::optional<uint32_t> pinned_rank;  // NumericNodeId(node_id)
};

struct RankOutput {
  uint32_t rank = 0;
  uint32_t local_rank = 0;
  uint32_t local_world_size = 0;
  uint32_t node_rank = 0;
  uint32_t num_nodes = 0;
};

// Assigns ranks 0..inputs.size()-1 to one role's members; result[i] belongs to inputs[i].
// Preconditions (the Job enforces them at join time): pinned ranks are unique and smaller
// than inputs.size(). O(n log n).
std::vector<RankOutput> AssignRanks(const std::vector<RankInput>& inputs);

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_RANK_ASSIGNER_H_
