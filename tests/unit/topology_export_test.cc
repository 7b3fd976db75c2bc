// HCCL rank table / OpenMPI hostfile / launch env generation and the strict rank table reader.
#include "ms_rendezvous/topology_export.h"

#include <algorithm>
#include <random>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ms_rendezvous {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

MemberInfo Member(const std::string& node_id, uint32_t rank, const std::string& host,
                  int32_t device_id, const std::string& device_ip, Role role = Role::kWorker) {
  MemberInfo m;
  m.node_id = node_id;
  m.role = role;
  m.rank = rank;
  m.host = host;
  m.device_id = device_id;
  m.device_ip = device_ip;
  m.state = MemberState::kActive;
  return m;
}

// 2 hosts x 4 devices. Host 10.0.0.9 holds ranks 0-3, so it must come first although it sorts
// after 10.0.0.1 as a string; the table is shuffled as a daemon might page it.
std::vector<MemberInfo> TwoHostsFourDevices() {
  std::vector<MemberInfo> members;
  for (uint32_t rank = 0; rank < 8; ++rank) {
    const bool first = rank < 4;
    const int32_t device = static_cast<int32_t>(rank % 4);
    members.push_back(Member(absl::StrCat("node-", rank), rank, first ? "10.0.0.9" : "10.0.0.1",
                             device, absl::StrCat("192.168.", first ? 9 : 1, ".", device + 10)));
    members.back().local_rank = rank % 4;
    members.back().node_rank = first ? 0 : 1;
  }
  std::mt19937 gen(7);
  std::shuffle(members.begin(), members.end(), gen);
  return members;
}

TEST(HcclRankTableTest, TwoHostsFourDevices_ParsesBackInServerOrder) {
  absl::StatusOr<std::string> json = HcclRankTableJson(TwoHostsFourDevices());
  ASSERT_TRUE(json.ok()) << json.status();
  absl::StatusOr<ParsedRankTable> table = ParseHcclRankTable(*json);
  ASSERT_TRUE(table.ok()) << table.status() << "\n" << *json;
  EXPECT_EQ(table->version, "1.0");
  EXPECT_EQ(table->status, "completed");
  EXPECT_EQ(table->rank_size, 8u);
  ASSERT_EQ(table->servers.size(), 2u);
  EXPECT_EQ(table->servers[0].server_id, "10.0.0.9");
  EXPECT_EQ(table->servers[1].server_id, "10.0.0.1");
  uint32_t rank = 0;
  for (size_t s = 0; s < 2; ++s) {
    const ParsedRankTableServer& server = table->servers[s];
    EXPECT_EQ(server.host_nic_ip, "reserve");
    ASSERT_EQ(server.devices.size(), 4u);
    for (uint32_t d = 0; d < 4; ++d, ++rank) {
      EXPECT_EQ(server.devices[d].rank_id, rank);
      EXPECT_EQ(server.devices[d].device_id, d);
      EXPECT_EQ(server.devices[d].device_ip, absl::StrCat("192.168.", s == 0 ? 9 : 1, ".", d + 10));
    }
  }
}

TEST(HcclRankTableTest, EveryValueIsAString) {
  absl::StatusOr<std::string> json = HcclRankTableJson(TwoHostsFourDevices());
  ASSERT_TRUE(json.ok()) << json.status();
  // Every "key": is followed by a string, an array or an object - never a bare number.
  std::regex value_after_key("\"[a-z_]+\": *([^\\s])");
  int keys = 0;
  for (auto it = std::sregex_iterator(json->begin(), json->end(), value_after_key);
       it != std::sregex_iterator(); ++it, ++keys) {
    EXPECT_THAT((*it)[1].str(), ::testing::AnyOf("\"", "[")) << it->str();
  }
  EXPECT_EQ(keys, 4 + 2 * 3 + 8 * 3);
  EXPECT_THAT(*json, HasSubstr("\"server_count\": \"2\""));
  EXPECT_THAT(*json, HasSubstr("\"rank_id\": \"7\""));
  EXPECT_EQ(json->back(), '\n');
}

TEST(HcclRankTableTest, ExactOutput_OneServer) {
  std::vector<MemberInfo> members = {Member("a", 0, "10.0.0.1", 0, "192.168.100.1"),
                                     Member("b", 1, "10.0.0.1", 1, "192.168.100.2")};
  absl::StatusOr<std::string> json = HcclRankTableJson(members);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(*json,
            "{\n"
            "    \"version\": \"1.0\",\n"
            "    \"server_count\": \"1\",\n"
            "    \"status\": \"completed\",\n"
            "    \"server_list\": [\n"
            "        {\n"
            "            \"server_id\": \"10.0.0.1\",\n"
            "            \"host_nic_ip\": \"reserve\",\n"
            "            \"device\": [\n"
            "                {\n"
            "                    \"device_id\": \"0\",\n"
            "                    \"device_ip\": \"192.168.100.1\",\n"
            "                    \"rank_id\": \"0\"\n"
            "                },\n"
            "                {\n"
            "                    \"device_id\": \"1\",\n"
            "                    \"device_ip\": \"192.168.100.2\",\n"
            "                    \"rank_id\": \"1\"\n"
            "                }\n"
            "            ]\n"
            "        }\n"
            "    ]\n"
            "}\n");
}

TEST(HcclRankTableTest, RanksInterleavedAcrossHosts_NamesRankAndHosts) {
  // Numeric node ids pinned ranks 0 and 2 to host A, 1 and 3 to host B.
  std::vector<MemberInfo> members = {
      Member("0", 0, "10.0.0.1", 0, "192.168.1.1"), Member("1", 1, "10.0.0.2", 0, "192.168.2.1"),
      Member("2", 2, "10.0.0.1", 1, "192.168.1.2"), Member("3", 3, "10.0.0.2", 1, "192.168.2.2")};
  absl::StatusOr<std::string> json = HcclRankTableJson(members);
  ASSERT_FALSE(json.ok());
  EXPECT_EQ(json.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(json.status().message()),
              HasSubstr("MS_WORKER ranks are not contiguous per host: rank 2 (node '2') is on "
                        "host 10.0.0.1 like rank 0, but rank 1 in between is on host 10.0.0.2"));
  EXPECT_THAT(std::string(json.status().message()), HasSubstr("numeric MS_NODE_IDs"));
}

TEST(HcclRankTableTest, IncompleteJob_IsFailedPrecondition) {
  std::vector<MemberInfo> members = TwoHostsFourDevices();
  members[3].rank.reset();
  absl::StatusOr<std::string> json = HcclRankTableJson(members);
  ASSERT_FALSE(json.ok());
  EXPECT_EQ(json.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(json.status().message()), HasSubstr("has no rank yet"));

  members = TwoHostsFourDevices();
  members.erase(std::find_if(members.begin(), members.end(),
                             [](const MemberInfo& m) { return *m.rank == 5; }));
  json = HcclRankTableJson(members);
  ASSERT_FALSE(json.ok());
  EXPECT_THAT(std::string(json.status().message()), HasSubstr("MS_WORKER rank 5 is missing"));

  json = HcclRankTableJson({});
  EXPECT_EQ(json.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(json.status().message()), HasSubstr("no MS_WORKER members"));
}

TEST(HcclRankTableTest, DuplicateRank_NamesBothMembers) {
  std::vector<MemberInfo> members = {Member("a", 0, "10.0.0.1", 0, "192.168.1.1"),
                                     Member("b", 0, "10.0.0.2", 0, "192.168.1.2")};
  absl::StatusOr<std::string> json = HcclRankTableJson(members);
  ASSERT_FALSE(json.ok());
  EXPECT_THAT(std::string(json.status().message()),
              HasSubstr("rank 0 is held by two members: node 'a' (host 10.0.0.1) and node 'b'"));
}

TEST(HcclRankTableTest, MissingDeviceIp_RequiredByDefault_NamesMembers) {
  std::vector<MemberInfo> members = {Member("a", 0, "10.0.0.1", 0, "192.168.1.1"),
                                     Member("b", 1, "10.0.0.1", 1, "")};
  absl::StatusOr<std::string> json = HcclRankTableJson(members);
  ASSERT_FALSE(json.ok());
  EXPECT_EQ(json.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(json.status().message()),
              HasSubstr("1 of 2 MS_WORKER members reported no device IP, which HCCL needs for "
                        "every device: rank 1 (node 'b', host 10.0.0.1). Set MS_DEVICE_IP"));

  RankTableOptions lenient;
  lenient.require_device_ip = false;
  json = HcclRankTableJson(members, Role::kWorker, lenient);
  ASSERT_TRUE(json.ok()) << json.status();
  absl::StatusOr<ParsedRankTable> table = ParseHcclRankTable(*json);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->servers[0].devices[0].device_ip, "192.168.1.1");
  EXPECT_EQ(table->servers[0].devices[1].device_ip, kUnknownDeviceIp);
}

TEST(HcclRankTableTest, ManyMissingDeviceIps_NamesFirstFiveAndCounts) {
  std::vector<MemberInfo> members;
  for (uint32_t r = 0; r < 8; ++r) members.push_back(Member(absl::StrCat(r), r, "h", r, ""));
  absl::StatusOr<std::string> json = HcclRankTableJson(members);
  ASSERT_FALSE(json.ok());
  EXPECT_THAT(std::string(json.status().message()), HasSubstr("8 of 8 MS_WORKER members"));
  EXPECT_THAT(std::string(json.status().message()), HasSubstr("rank 4 (node '4', host h), and 3 more"));
}

TEST(HcclRankTableTest, DeviceIdUnset_UsesLocalRank) {
  std::vector<MemberInfo> members = {Member("a", 0, "10.0.0.1", -1, "192.168.1.1"),
                                     Member("b", 1, "10.0.0.1", -1, "192.168.1.2"),
                                     Member("c", 2, "10.0.0.2", -1, "192.168.2.1")};
  absl::StatusOr<std::string> json = HcclRankTableJson(members);
  ASSERT_TRUE(json.ok()) << json.status();
  absl::StatusOr<ParsedRankTable> table = ParseHcclRankTable(*json);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->servers[0].devices[0].device_id, 0u);
  EXPECT_EQ(table->servers[0].devices[1].device_id, 1u);
  EXPECT_EQ(table->servers[1].devices[0].device_id, 0u);
}

TEST(HcclRankTableTest, DuplicateDeviceIdOnAHost_NamesBoth) {
  std::vector<MemberInfo> members = {Member("a", 0, "10.0.0.1", 3, "192.168.1.1"),
                                     Member("b", 1, "10.0.0.1", 3, "192.168.1.2")};
  absl::StatusOr<std::string> json = HcclRankTableJson(members);
  ASSERT_FALSE(json.ok());
  EXPECT_EQ(json.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(json.status().message()),
              HasSubstr("host 10.0.0.1 has device id 3 twice: rank 0 (node 'a', host 10.0.0.1) "
                        "and rank 1 (node 'b', host 10.0.0.1)"));
}

TEST(HcclRankTableTest, Roles_AreSeparate) {
  std::vector<MemberInfo> members = TwoHostsFourDevices();
  members.push_back(Member("ps0", 0, "10.0.0.5", -1, "192.168.5.1", Role::kPServer));
  absl::StatusOr<std::string> workers = HcclRankTableJson(members);
  ASSERT_TRUE(workers.ok()) << workers.status();
  EXPECT_EQ(ParseHcclRankTable(*workers)->rank_size, 8u);
  absl::StatusOr<std::string> servers = HcclRankTableJson(members, Role::kPServer);
  ASSERT_TRUE(servers.ok()) << servers.status();
  absl::StatusOr<ParsedRankTable> table = ParseHcclRankTable(*servers);
  ASSERT_TRUE(table.ok());
  ASSERT_EQ(table->servers.size(), 1u);
  EXPECT_EQ(table->servers[0].server_id, "10.0.0.5");
  EXPECT_EQ(HcclRankTableJson(members, Role::kScheduler).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(OpenMpiHostfileTest, HostsInNodeOrderWithSlots) {
  std::vector<MemberInfo> members = TwoHostsFourDevices();
  members.push_back(Member("ps0", 0, "10.0.0.5", -1, "", Role::kPServer));
  EXPECT_EQ(OpenMpiHostfile(members), "10.0.0.9 slots=4\n10.0.0.1 slots=4\n");
  EXPECT_EQ(OpenMpiHostfile(members, Role::kPServer), "10.0.0.5 slots=1\n");
  EXPECT_EQ(OpenMpiHostfile({}), "");
}

TEST(OpenMpiHostfileTest, UnevenHostsAndUnrankedMembers) {
  std::vector<MemberInfo> members = {Member("a", 2, "b-host", 0, ""),
                                     Member("b", 0, "a-host", 0, ""),
                                     Member("c", 1, "b-host", 1, ""),
                                     Member("d", 0, "c-host", 0, "")};
  members[3].rank.reset();  // still forming: goes last
  EXPECT_EQ(OpenMpiHostfile(members), "a-host slots=1\nb-host slots=2\nc-host slots=1\n");
}

TEST(LaunchEnvTest, MindSporeAndTorchNames) {
  Topology t;
  t.job_id = "j";
  t.rank = 5;
  t.world_size = 8;
  t.local_rank = 1;
  t.local_world_size = 4;
  t.node_rank = 1;
  t.num_nodes = 2;
  EXPECT_THAT(LaunchEnv(t, "10.0.0.9", 8119),
              ElementsAre(Pair("RANK_ID", "5"), Pair("RANK_SIZE", "8"), Pair("DEVICE_ID", "1"),
                          Pair("RANK", "5"), Pair("WORLD_SIZE", "8"), Pair("LOCAL_RANK", "1"),
                          Pair("LOCAL_WORLD_SIZE", "4"), Pair("GROUP_RANK", "1"),
                          Pair("NODE_RANK", "1"), Pair("MASTER_ADDR", "10.0.0.9"),
                          Pair("MASTER_PORT", "8119")));
  // The process's own DEVICE_ID wins, as in the rank table.
  EXPECT_THAT(LaunchEnv(t, "fd00::1", 29500, 6),
              ::testing::Contains(Pair("DEVICE_ID", "6")));
  EXPECT_THAT(LaunchEnv(t, "fd00::1", 29500, 6), ::testing::Contains(Pair("MASTER_ADDR", "fd00::1")));
}

TEST(RankHostTest, FindsRankZerosHost) {
  std::vector<MemberInfo> members = TwoHostsFourDevices();
  EXPECT_EQ(*RankHost(members, Role::kWorker, 0), "10.0.0.9");
  EXPECT_EQ(*RankHost(members, Role::kWorker, 7), "10.0.0.1");
  EXPECT_EQ(RankHost(members, Role::kPServer, 0).status().code(), absl::StatusCode::kNotFound);
}

// ---- ParseHcclRankTable ---------------------------------------------------------------------

constexpr char kReferenceTable[] = R"({"version": "1.0", "server_count": "2", "status": "completed",
 "server_list": [{"server_id": "10.0.0.1", "host_nic_ip": "reserve",
   "device": [{"device_id": "0", "device_ip": "192.168.100.1", "rank_id": "0"},
              {"device_id": "1", "device_ip": "192.168.100.2", "rank_id": "1"}]},
  {"server_id": "10.0.0.2", "host_nic_ip": "reserve", "pod_ip": "x",
   "device": [{"device_id": "0", "device_ip": "192.168.101.1", "rank_id": "2", "numa_id": 1}]}]}
)";

TEST(ParseHcclRankTableTest, ReferenceExample_Parses) {
  absl::StatusOr<ParsedRankTable> t = ParseHcclRankTable(kReferenceTable);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->rank_size, 3u);
  ASSERT_EQ(t->servers.size(), 2u);
  EXPECT_EQ(t->servers[1].server_id, "10.0.0.2");
  EXPECT_EQ(t->servers[1].devices[0].device_ip, "192.168.101.1");
  EXPECT_EQ(t->servers[1].devices[0].rank_id, 2u);
}

// Replaces the first occurrence of `from` in the reference table.
std::string Edit(const std::string& from, const std::string& to) {
  std::string s = kReferenceTable;
  size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

void ExpectParseError(const std::string& json, const std::string& message) {
  absl::StatusOr<ParsedRankTable> t = ParseHcclRankTable(json);
  ASSERT_FALSE(t.ok()) << json;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(t.status().message()), message) << json;
}

TEST(ParseHcclRankTableTest, NumberInsteadOfString_NamesTheEntry) {
  ExpectParseError(Edit(R"("rank_id": "1")", R"("rank_id": 1)"),
                   "rank table: server_list[0].device[1].rank_id: expected a string, got a number");
  ExpectParseError(Edit(R"("server_count": "2")", R"("server_count": 2)"),
                   "rank table: server_count: expected a string, got a number");
}

TEST(ParseHcclRankTableTest, FieldErrors_NameTheField) {
  ExpectParseError(Edit(R"("server_count": "2")", R"("server_count": "3")"),
                   "rank table: server_count: \"3\" but server_list has 2 entries");
  ExpectParseError(Edit(R"("version": "1.0")", R"("version": "2.0")"),
                   "rank table: version: \"2.0\" is not supported: expected \"1.0\"");
  ExpectParseError(Edit(R"("status": "completed")", R"("status": "initializing")"),
                   "rank table: status: \"initializing\": expected \"completed\"");
  ExpectParseError(Edit(R"("device_id": "1")", R"("device_id": "one")"),
                   "rank table: server_list[0].device[1].device_id: \"one\" is not a decimal "
                   "integer in 0..2147483647");
  ExpectParseError(Edit(R"("device_id": "1")", R"("device_id": "0")"),
                   "rank table: server_list[0].device[1].device_id: \"0\" appears twice on server "
                   "\"10.0.0.1\"");
  ExpectParseError(Edit(R"("device_ip": "192.168.101.1")", R"("device_ip": "npu1")"),
                   "rank table: server_list[1].device[0].device_ip: \"npu1\" is not an IPv4 or "
                   "IPv6 address");
  ExpectParseError(Edit(R"("server_id": "10.0.0.2")", R"("server_id": "10.0.0.1")"),
                   "rank table: server_list[1].server_id: \"10.0.0.1\" appears twice (each server "
                   "must be listed once)");
  ExpectParseError(Edit(R"("server_id": "10.0.0.2", )", ""),
                   "rank table: server_list[1].server_id: missing");
  ExpectParseError(Edit(R"("rank_id": "2")", R"("rank_id": "3")"),
                   "rank table: server_list[1].device[0].rank_id: \"3\" where \"2\" was expected: "
                   "rank_id counts from 0 and follows the order of the servers and of their "
                   "devices");
  ExpectParseError("[]", "rank table: top level: expected an object, got an array");
}

TEST(ParseHcclRankTableTest, MalformedJson_NamesLineAndColumn) {
  ExpectParseError(Edit(R"("device_ip": "192.168.100.2", )", R"("device_ip" "192.168.100.2", )"),
                   "rank table: line 4 column 46: expected ':' after the key");
  ExpectParseError(Edit(R"("numa_id": 1})", R"("numa_id": 1,})"),
                   "rank table: line 6 column 93: expected a string key (trailing commas are not "
                   "allowed)");
  ExpectParseError(Edit(R"("version": "1.0")", R"("version": "1.0", "version": "1.0")"),
                   "rank table: line 1 column 29: duplicate key \"version\"");
  ExpectParseError(std::string(kReferenceTable) + "x",
                   "rank table: line 7 column 1: unexpected text after the JSON document");
  ExpectParseError("", "rank table: line 1 column 1: unexpected end of input: expected a value");
  ExpectParseError("{\"a\": 01}", "rank table: line 1 column 8: a number must not have leading zeros");
  ExpectParseError("{\"a\": \"x\ny\"}",
                   "rank table: line 1 column 9: control character in a string (escape it)");
  ExpectParseError("{\"a\": \"\\ud800\"}",
                   "rank table: line 1 column 14: unpaired UTF-16 surrogate in \\u escape");
  ExpectParseError("{\"a\": \"\xff\"}", "rank table: line 1 column 8: invalid UTF-8 in a string");
  ExpectParseError(std::string(100, '[') + std::string(100, ']'),
                   "rank table: line 1 column 66: nested too deeply");
}

TEST(ParseHcclRankTableTest, EscapesAndUnknownKeys_AreAccepted) {
  std::string json = Edit(R"("host_nic_ip": "reserve")",
                          R"("host_nic_ip": "re\u0073erve", "extra": {"a": [1, -2.5e3, true, null]})");
  absl::StatusOr<ParsedRankTable> t = ParseHcclRankTable(json);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->servers[0].host_nic_ip, "reserve");
}

}  // namespace
}  // namespace ms_rendezvous
