#include "core/rank_assigner.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <tuple>

#include "absl/container/flat_hash_map.h"

namespace ms_rendezvous::core {

std::optional<uint32_t> NumericNodeId(absl::string_view node_id) {
  if (node_id.empty() || node_id.size() > 9) return std::nullopt;
  uint32_t v = 0;
  for (char c : node_id) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  return v;
}

std::string HostKey(absl::string_view host) {
  std::string text(host);
  // Bracketed IPv6 ("[::1]") as gRPC peers print it.
  if (text.size() > 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  unsigned char buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) {
    return std::string("\x04", 1) + std::string(reinterpret_cast<char*>(buf), 4);
  }
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1) {
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(buf, kMapped, 12) == 0) {
      return std::string("\x04", 1) + std::string(reinterpret_cast<char*>(buf + 12), 4);
    }
    return std::string("\x06", 1) + std::string(reinterpret_cast<char*>(buf), 16);
  }
  return "\x7f" + text;
}

std::vector<RankOutput> AssignRanks(const std::vector<RankInput>& in) {
  const size_t n = in.size();
  std::vector<RankOutput> out(n);
  std::vector<bool> taken(n, false);
  std::vector<size_t> unpinned;
  unpinned.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (in[i].pinned_rank.has_value()) {
      out[i].rank = *in[i].pinned_rank;
      taken[*in[i].pinned_rank] = true;
    } else {
      unpinned.push_back(i);
    }
  }
  std::sort(unpinned.begin(), unpinned.end(), [&](size_t a, size_t b) {
    return std::tie(in[a].host_key, in[a].device_id, in[a].node_id) <
           std::tie(in[b].host_key, in[b].device_id, in[b].node_id);
  });
  uint32_t next_free = 0;
  for (size_t i : unpinned) {
    while (taken[next_free]) ++next_free;
    out[i].rank = next_free;
    taken[next_free] = true;
  }

  // Group by host: walk members in rank order so local ranks follow ranks and hosts are
  // numbered by their lowest rank.
  std::vector<size_t> by_rank(n);
  for (size_t i = 0; i < n; ++i) by_rank[out[i].rank] = i;
  absl::flat_hash_map<absl::string_view, std::pair<uint32_t, uint32_t>> hosts;  // node rank, count
  hosts.reserve(n);
  for (size_t r = 0; r < n; ++r) {
    size_t i = by_rank[r];
    auto [it, inserted] = hosts.try_emplace(in[i].host_key, static_cast<uint32_t>(hosts.size()), 0);
    out[i].node_rank = it->second.first;
    out[i].local_rank = it->second.second++;
  }
  const uint32_t num_nodes = static_cast<uint32_t>(hosts.size());
  for (size_t i = 0; i < n; ++i) {
    out[i].num_nodes = num_nodes;
    out[i].local_world_size = hosts[in[i].host_key].second;
  }
  return out;
}

}  // namespace ms_rendezvous::core
