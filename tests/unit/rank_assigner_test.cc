#include "core/rank_assigner.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ms_rendezvous::core {
namespace {

struct Spec {
  std::string node_id;
  std::string host;
  int32_t device_id = -1;
};

// Runs AssignRanks on specs and returns outputs in input order.
std::vector<RankOutput> Assign(const std::vector<Spec>& specs) {
  std::vector<std::string> keys;
  keys.reserve(specs.size());
  for (const auto& s : specs) keys.push_back(HostKey(s.host));
  std::vector<RankInput> in;
  for (size_t i = 0; i < specs.size(); ++i) {
    in.push_back(RankInput{specs[i].node_id, keys[i], specs[i].device_id,
                           NumericNodeId(specs[i].node_id)});
  }
  return AssignRanks(in);
}

TEST(NumericNodeIdTest, DigitsOnlyAreNumeric) {
  EXPECT_EQ(NumericNodeId("0"), 0u);
  EXPECT_EQ(NumericNodeId("17"), 17u);
  EXPECT_EQ(NumericNodeId("007"), 7u);
  EXPECT_EQ(NumericNodeId("999999999"), 999999999u);
  EXPECT_FALSE(NumericNodeId("").has_value());
  EXPECT_FALSE(NumericNodeId("-1").has_value());
  EXPECT_FALSE(NumericNodeId("+1").has_value());
  EXPECT_FALSE(NumericNodeId("1a").has_value());
  EXPECT_FALSE(NumericNodeId("worker-0").has_value());
  EXPECT_FALSE(NumericNodeId("1234567890").has_value());  // too long to be a rank
}

TEST(HostKeyTest, AddressesOrderNumericallyNotTextually) {
  EXPECT_LT(HostKey("10.0.0.9"), HostKey("10.0.0.10"));
  EXPECT_LT(HostKey("9.255.255.255"), HostKey("10.0.0.0"));
  EXPECT_EQ(HostKey("::ffff:10.0.0.1"), HostKey("10.0.0.1"));
  EXPECT_EQ(HostKey("[::1]"), HostKey("::1"));
  EXPECT_LT(HostKey("10.0.0.1"), HostKey("::1"));  // IPv4 before IPv6
  EXPECT_LT(HostKey("::1"), HostKey("node-a"));    // addresses before names
  EXPECT_NE(HostKey("node-a"), HostKey("node-b"));
}

TEST(AssignRanksTest, NumericNodeIdIsTheRank) {
  auto out = Assign({{"2", "10.0.0.1"}, {"0", "10.0.0.2"}, {"1", "10.0.0.1"}});
  EXPECT_EQ(out[0].rank, 2u);
  EXPECT_EQ(out[1].rank, 0u);
  EXPECT_EQ(out[2].rank, 1u);
}

TEST(AssignRanksTest, NonNumericSortByHostThenDeviceThenNodeId) {
  auto out = Assign({{"w-b", "10.0.0.10", 1},
                     {"w-a", "10.0.0.10", 0},
                     {"w-z", "10.0.0.9", 1},
                     {"w-y", "10.0.0.9", 0}});
  // 10.0.0.9 sorts before 10.0.0.10 (as addresses), and by device within a host.
  EXPECT_EQ(out[3].rank, 0u);
  EXPECT_EQ(out[2].rank, 1u);
  EXPECT_EQ(out[1].rank, 2u);
  EXPECT_EQ(out[0].rank, 3u);
  EXPECT_EQ(out[3].node_rank, 0u);
  EXPECT_EQ(out[1].node_rank, 1u);
  EXPECT_EQ(out[0].local_rank, 1u);
  EXPECT_EQ(out[0].local_world_size, 2u);
  EXPECT_EQ(out[0].num_nodes, 2u);
}

TEST(AssignRanksTest, DeviceIdBeforeNodeIdWithinHost) {
  auto out = Assign({{"a", "10.0.0.1", 1}, {"b", "10.0.0.1", 0}});
  EXPECT_EQ(out[1].rank, 0u);
  EXPECT_EQ(out[0].rank, 1u);
}

TEST(AssignRanksTest, RanksOfOneHostAreContiguous) {
  std::vector<Spec> specs;
  for (int i = 0; i < 8; ++i) {
    specs.push_back({"n" + std::to_string(i), i % 2 == 0 ? "10.0.0.2" : "10.0.0.1", i / 2});
  }
  auto out = Assign(specs);
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].host == "10.0.0.1") {
      EXPECT_LT(out[i].rank, 4u);
      EXPECT_EQ(out[i].node_rank, 0u);
    } else {
      EXPECT_GE(out[i].rank, 4u);
      EXPECT_EQ(out[i].node_rank, 1u);
    }
    EXPECT_EQ(out[i].local_rank, out[i].rank % 4);
    EXPECT_EQ(out[i].local_world_size, 4u);
    EXPECT_EQ(out[i].num_nodes, 2u);
  }
}

TEST(AssignRanksTest, MixedNumericAndNamedFillFreeRanks) {
  auto out = Assign({{"1", "10.0.0.1"}, {"b", "10.0.0.1"}, {"a", "10.0.0.1"}});
  EXPECT_EQ(out[0].rank, 1u);
  EXPECT_EQ(out[2].rank, 0u);
  EXPECT_EQ(out[1].rank, 2u);
}

TEST(AssignRanksTest, NodeRankFollowsLowestRankOfEachHost) {
  // Numeric ids pin host 10.0.0.9 to rank 0: it becomes node 0 even though it sorts later.
  auto out = Assign({{"1", "10.0.0.1"}, {"0", "10.0.0.9"}, {"2", "10.0.0.1"}});
  EXPECT_EQ(out[1].node_rank, 0u);
  EXPECT_EQ(out[0].node_rank, 1u);
  EXPECT_EQ(out[0].local_rank, 0u);
  EXPECT_EQ(out[2].local_rank, 1u);
}

}  // namespace
}  // namespace ms_rendezvous::core
