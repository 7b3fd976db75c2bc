// The compact storage of member records (core/compact.h): the pool that packs a job's records,
// the interner that stores job-wide strings once, the inline string for credentials.
#include "core/compact.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "gtest/gtest.h"

namespace ms_rendezvous::core {
namespace {

TEST(NodePoolTest, FreedBlocksAreReusedBeforeGrowing) {
  NodePool pool(40, 8);
  void* a = pool.Allocate();
  void* b = pool.Allocate();
  EXPECT_NE(a, b);
  EXPECT_EQ(pool.live(), 2u);
  pool.Deallocate(a);
  EXPECT_EQ(pool.live(), 1u);
  EXPECT_EQ(pool.Allocate(), a);  // last freed, first reused
  EXPECT_EQ(pool.chunks(), 1u);
}

TEST(NodePoolTest, ChunksGrowGeometricallyUpToTheCap) {
  NodePool pool(24, 8);
  std::vector<void*> blocks;
  for (size_t i = 0; i < 10 * NodePool::kMaxChunkNodes; ++i) blocks.push_back(pool.Allocate());
  EXPECT_EQ(pool.live(), blocks.size());
  EXPECT_GE(pool.capacity(), blocks.size());
  // 8, 16, ..., 256 then 256 each: far fewer chunks than blocks, and no chunk above the cap,
  // so a huge job wastes at most one partly used chunk.
  EXPECT_LE(pool.capacity() - blocks.size(), NodePool::kMaxChunkNodes);
  EXPECT_LT(pool.chunks(), 20u);
  std::set<void*> distinct(blocks.begin(), blocks.end());
  EXPECT_EQ(distinct.size(), blocks.size());
}

TEST(NodePoolTest, BlocksAreAlignedAndDoNotOverlap) {
  struct alignas(16) Wide {
    char bytes[40];
  };
  NodePool pool(sizeof(Wide), alignof(Wide));
  EXPECT_EQ(pool.node_size() % alignof(Wide), 0u);
  EXPECT_GE(pool.node_size(), sizeof(Wide));
  std::vector<uintptr_t> addrs;
  for (int i = 0; i < 100; ++i) {
    addrs.push_back(reinterpret_cast<uintptr_t>(pool.Allocate()));
    EXPECT_EQ(addrs.back() % alignof(Wide), 0u);
  }
  std::sort(addrs.begin(), addrs.end());
  for (size_t i = 1; i < addrs.size(); ++i) EXPECT_GE(addrs[i] - addrs[i - 1], sizeof(Wide));
}

// The member map's configuration: nodes from the pool, the slot array from the heap.
using Node = std::pair<const std::string, std::string>;
using PooledMap =
    absl::node_hash_map<std::string, std::string,
                        absl::container_internal::hash_default_hash<std::string>,
                        absl::container_internal::hash_default_eq<std::string>,
                        PoolAllocator<Node, Node>>;

TEST(PoolAllocatorTest, NodeMapTakesEveryNodeFromThePool) {
  NodePool pool(sizeof(Node), alignof(Node));
  {
    PooledMap map{PooledMap::allocator_type(&pool)};
    for (int i = 0; i < 5000; ++i) map.try_emplace(std::to_string(i), "v" + std::to_string(i));
    EXPECT_EQ(pool.live(), 5000u);
    for (int i = 0; i < 5000; i += 2) map.erase(std::to_string(i));
    EXPECT_EQ(pool.live(), 2500u);
    const size_t capacity = pool.capacity();
    for (int i = 0; i < 5000; i += 2) map.try_emplace(std::to_string(i), "again");
    EXPECT_EQ(pool.live(), 5000u);
    EXPECT_EQ(pool.capacity(), capacity);  // the freed records were reused
    EXPECT_EQ(map.at("4"), "again");
    EXPECT_EQ(map.at("3"), "v3");
  }
  EXPECT_EQ(pool.live(), 0u);  // the map returned every node
}

TEST(PoolAllocatorTest, TwoMapsShareOnePool) {
  NodePool pool(sizeof(Node), alignof(Node));
  PooledMap a{PooledMap::allocator_type(&pool)};
  PooledMap b{PooledMap::allocator_type(&pool)};
  a["x"] = "1";
  b["y"] = "2";
  EXPECT_EQ(pool.live(), 2u);
  EXPECT_TRUE(a.get_allocator() == b.get_allocator());
  a.clear();
  EXPECT_EQ(pool.live(), 1u);
}

TEST(StringInternerTest, OneCopyPerValueCountedPerHolder) {
  StringInterner hosts;
  const std::string* a1 = hosts.Acquire("10.0.0.1");
  const std::string* a2 = hosts.Acquire("10.0.0.1");
  const std::string* b = hosts.Acquire("10.0.0.2");
  EXPECT_EQ(a1, a2);
  EXPECT_NE(a1, b);
  EXPECT_EQ(*a1, "10.0.0.1");
  EXPECT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts.count("10.0.0.1"), 2u);
  hosts.Release(a1);
  EXPECT_EQ(hosts.count("10.0.0.1"), 1u);
  EXPECT_EQ(*a2, "10.0.0.1");  // still held
  hosts.Release(a2);
  EXPECT_EQ(hosts.count("10.0.0.1"), 0u);
  EXPECT_EQ(hosts.size(), 1u);
  hosts.Release(nullptr);  // ignored
  EXPECT_EQ(hosts.size(), 1u);
}

TEST(StringInternerTest, PointersStayValidWhileTheTableGrows) {
  StringInterner names;
  const std::string long_name(100, 'h');
  const std::string* first = names.Acquire(long_name);
  const std::string* short_one = names.Acquire("h1");
  for (int i = 0; i < 10000; ++i) names.Acquire("host-" + std::to_string(i));
  EXPECT_EQ(*first, long_name);
  EXPECT_EQ(*short_one, "h1");
  std::vector<std::pair<std::string, uint32_t>> all(names.begin(), names.end());
  EXPECT_EQ(all.size(), 10002u);
}

TEST(InlineStringTest, CredentialSizedValuesStayInline) {
  const std::string credential = "0123456789abcdef0123456789abcdef";
  InlineString<32> s(credential);
  EXPECT_EQ(s.view(), credential);
  EXPECT_EQ(s.str(), credential);
  EXPECT_EQ(s.size(), 32u);
  const char* inside = reinterpret_cast<const char*>(&s);
  EXPECT_GE(s.view().data(), inside);
  EXPECT_LT(s.view().data(), inside + sizeof(s));
  EXPECT_LE(sizeof(InlineString<32>), 40u);
}

TEST(InlineStringTest, EmptyShortAndLongValues) {
  InlineString<32> s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.view(), "");
  s = "c0ffee";
  EXPECT_EQ(s.view(), "c0ffee");
  const std::string long_value(200, 'x');
  s = long_value;  // restored from an older store: kept whole, on the heap
  EXPECT_EQ(s.view(), long_value);
  s = "";
  EXPECT_TRUE(s.empty());
}

TEST(InlineStringTest, CopiesAreIndependent) {
  const std::string long_value(50, 'y');
  InlineString<32> a(long_value);
  InlineString<32> b(a);
  InlineString<32> c("short");
  c = a;
  a = "changed";
  EXPECT_EQ(b.view(), long_value);
  EXPECT_EQ(c.view(), long_value);
  EXPECT_EQ(a.view(), "changed");
  const InlineString<32>& self = c;
  c = self;  // self-assignment keeps the value
  EXPECT_EQ(c.view(), long_value);
  c = c.view();  // so does assigning its own view
  EXPECT_EQ(c.view(), long_value);
}

TEST(NodeIdTest, MapKeyedByNodeIdIsFoundByStringAndView) {
  absl::node_hash_map<NodeId, int, StringViewHash, StringViewEq> map;
  const std::string uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
  const std::string long_id(100, 'z');
  map.try_emplace(uuid, 1);
  map.try_emplace(long_id, 2);
  map[std::string("7")] = 3;
  EXPECT_EQ(map.at(uuid), 1);
  EXPECT_EQ(map.find(absl::string_view(long_id))->second, 2);
  EXPECT_EQ(map.count("7"), 1u);
  EXPECT_EQ(map.count("8"), 0u);
  EXPECT_TRUE(NodeId(uuid) == NodeId(uuid));
  EXPECT_TRUE(NodeId(uuid) != NodeId(long_id));
  EXPECT_LE(sizeof(NodeId), 48u);
}

}  // namespace
}  // namespace ms_rendezvous::core
