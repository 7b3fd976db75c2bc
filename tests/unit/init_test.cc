// ms_rendezvous::Init(): startup method detection and the rank table error table (init.h).
// The environment is an injected map; rank tables are temp files; the daemon-backed paths use
// the embedded scheduler on a free 127.0.0.1 port.
#include "ms_rendezvous/init.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "test_util.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ms_rendezvous/scheduler.h"

namespace ms_rendezvous {
namespace {

using ::ms_rendezvous::testing::FreePort;

using ::testing::HasSubstr;

// 2 servers x 4 devices; rank_id follows the server order.
constexpr char kTable2x4[] = R"({
  "version": "1.0", "server_count": "2", "status": "completed",
  "server_list": [
    {"server_id": "10.0.0.1", "host_nic_ip": "reserve", "device": [
      {"device_id": "0", "device_ip": "192.168.100.1", "rank_id": "0"},
      {"device_id": "1", "device_ip": "192.168.100.2", "rank_id": "1"},
      {"device_id": "2", "device_ip": "192.168.100.3", "rank_id": "2"},
      {"device_id": "3", "device_ip": "192.168.100.4", "rank_id": "3"}]},
    {"server_id": "10.0.0.2", "pod_ip": "172.16.0.2", "host_nic_ip": "reserve", "device": [
      {"device_id": "4", "device_ip": "192.168.101.1", "rank_id": "4"},
      {"device_id": "5", "device_ip": "192.168.101.2", "rank_id": "5"},
      {"device_id": "6", "device_ip": "192.168.101.3", "rank_id": "6"},
      {"device_id": "7", "device_ip": "192.168.101.4", "rank_id": "7"}]}]})";

// Collects glog WARNING+ messages while alive.
class WarningCapture : public google::LogSink {
 public:
  WarningCapture() { google::AddLogSink(this); }
  ~WarningCapture() override { google::RemoveLogSink(this); }
  void send(google::LogSeverity severity, const char*, const char*, int, const struct ::tm*,
            const char* message, size_t len) override {
    if (severity < google::GLOG_WARNING) return;
    std::lock_guard<std::mutex> l(mu_);
    text_ += std::string(message, len) + "\n";
  }
  std::string text() {
    std::lock_guard<std::mutex> l(mu_);
    return text_;
  }

 private:
  std::mutex mu_;
  std::string text_;
};


// The embedded scheduler for job `job_id` on a free port, run on a thread until the job ends.
class Scheduler {
 public:
  explicit Scheduler(const std::string& job_id) : port_(FreePort()) {
    ClientOptions options;
    options.role = Role::kScheduler;
    options.sched_host = "127.0.0.1";
    options.sched_port = port_;
    options.job_id = job_id;
    options.topo_timeout = absl::Seconds(30);
    thread_ = std::thread([this, options] { status_ = RunScheduler(options); });
  }
  ~Scheduler() { thread_.join(); }
  int port() const { return port_; }

 private:
  int port_;
  absl::Status status_;
  std::thread thread_;
};

class InitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "/init_test-", getpid(), "-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    mkdir(dir_.c_str(), 0755);
  }

  EnvLookup Env() {
    return [this](const std::string& name) -> std::optional<std::string> {
      auto it = env_.find(name);
      if (it == env_.end()) return std::nullopt;
      return it->second;
    };
  }

  std::string WriteTable(const std::string& text, const std::string& name = "rank_table.json") {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << text;
    return path;
  }

  // Expects Init() to fail with InvalidArgument and exactly `message`.
  void ExpectError(const std::string& message) {
    absl::StatusOr<InitResult> r = Init(Env());
    ASSERT_FALSE(r.ok()) << "expected an error, got rank " << r->topology.rank;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_EQ(r.status().message(), message);
  }

  std::string dir_;
  std::map<std::string, std::string> env_;
};

// --- multi-process startup (rank table) -----------------------------------------------------

TEST_F(InitTest, RankTable_EveryRankOf2x4GetsAConsistentTopology) {
  const std::string path = WriteTable(kTable2x4);
  for (int rank = 0; rank < 8; ++rank) {
    env_ = {{"RANK_TABLE_FILE", path},
            {"RANK_ID", absl::StrCat(rank)},
            {"DEVICE_ID", absl::StrCat(rank)},
            {"RANK_SIZE", "8"}};
    absl::StatusOr<InitResult> r = Init(Env());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->method, InitMethod::kRankTable);
    EXPECT_EQ(r->client, nullptr);
    const Topology& t = r->topology;
    EXPECT_EQ(t.rank, static_cast<uint32_t>(rank));
    EXPECT_EQ(t.node_id, absl::StrCat(rank));
    EXPECT_EQ(t.world_size, 8u);
    EXPECT_EQ(t.node_rank, static_cast<uint32_t>(rank / 4));
    EXPECT_EQ(t.num_nodes, 2u);
    EXPECT_EQ(t.local_rank, static_cast<uint32_t>(rank % 4));
    EXPECT_EQ(t.local_world_size, 4u);
    // Server 1 has a pod_ip: that is the address its processes talk on.
    EXPECT_EQ(t.host, rank < 4 ? "10.0.0.1" : "172.16.0.2");
    EXPECT_EQ(t.generation, 0u);
    EXPECT_EQ(t.job_id, "default");
    EXPECT_EQ(r->options.device_id, rank);
    EXPECT_EQ(r->master_addr, "10.0.0.1");
  }
}

TEST_F(InitTest, RankTable_DeviceIdAndRankSizeAreOptional) {
  env_ = {{"RANK_TABLE_FILE", WriteTable(kTable2x4)}, {"RANK_ID", "5"}, {"MS_JOB_ID", "j1"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->topology.rank, 5u);
  EXPECT_EQ(r->topology.job_id, "j1");
  EXPECT_EQ(r->options.device_id, 5);
}

TEST_F(InitTest, RankTable_LegacyAlias) {
  env_ = {{"MINDSPORE_HCCL_CONFIG_PATH", WriteTable(kTable2x4)}, {"RANK_ID", "6"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, InitMethod::kRankTable);
  EXPECT_EQ(r->topology.rank, 6u);
  EXPECT_EQ(r->topology.local_rank, 2u);
}

TEST_F(InitTest, RankTable_RankTableFileWinsOverTheLegacyAlias) {
  WarningCapture warnings;
  env_ = {{"RANK_TABLE_FILE", WriteTable(kTable2x4)},
          {"MINDSPORE_HCCL_CONFIG_PATH", "/nonexistent/table.json"},
          {"RANK_ID", "1"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(warnings.text(), HasSubstr("using RANK_TABLE_FILE"));
}

TEST_F(InitTest, RankTable_MissingRankId) {
  const std::string path = WriteTable(kTable2x4);
  env_ = {{"RANK_TABLE_FILE", path}, {"DEVICE_ID", "0"}};
  ExpectError(absl::StrCat("RANK_TABLE_FILE=", path,
                           " is set but RANK_ID is not: multi-process startup needs RANK_ID, "
                           "this process's rank_id in the table (and DEVICE_ID, RANK_SIZE)"));
}

TEST_F(InitTest, RankTable_RankIdOutOfRange) {
  const std::string path = WriteTable(kTable2x4);
  env_ = {{"RANK_TABLE_FILE", path}, {"RANK_ID", "8"}};
  ExpectError(absl::StrCat("RANK_ID=\"8\" is out of range: RANK_TABLE_FILE=", path,
                           " lists 8 devices (rank ids 0..7)"));
}

TEST_F(InitTest, RankTable_RankIdNotANumber) {
  env_ = {{"RANK_TABLE_FILE", WriteTable(kTable2x4)}, {"RANK_ID", "-1"}};
  ExpectError("RANK_ID=\"-1\" is not valid: expected a rank id (an integer in 0..2147483647)");
}

TEST_F(InitTest, RankTable_DuplicateRankIds) {
  const std::string path = WriteTable(absl::StrReplaceAll(
      kTable2x4, {{R"("device_id": "2", "device_ip": "192.168.100.3", "rank_id": "2")",
                   R"("device_id": "2", "device_ip": "192.168.100.3", "rank_id": "1")"}}));
  env_ = {{"RANK_TABLE_FILE", path}, {"RANK_ID", "0"}};
  ExpectError(absl::StrCat(
      "RANK_TABLE_FILE=", path,
      ": rank table: server_list[0].device[2].rank_id: \"1\" appears twice "
      "(server_list[0].device[1] has it too): each rank_id must be listed once"));
}

TEST_F(InitTest, RankTable_NonStringValues) {
  const std::string path = WriteTable(absl::StrReplaceAll(
      kTable2x4, {{R"("device_id": "5", "device_ip": "192.168.101.2", "rank_id": "5")",
                   R"("device_id": 5, "device_ip": "192.168.101.2", "rank_id": "5")"}}));
  env_ = {{"RANK_TABLE_FILE", path}, {"RANK_ID", "0"}};
  ExpectError(absl::StrCat("RANK_TABLE_FILE=", path,
                           ": rank table: server_list[1].device[1].device_id: expected a string, "
                           "got a number"));
  const std::string path2 = WriteTable(
      absl::StrReplaceAll(kTable2x4, {{R"("server_count": "2")", R"("server_count": 2)"}}),
      "t2.json");
  env_["RANK_TABLE_FILE"] = path2;
  ExpectError(absl::StrCat("RANK_TABLE_FILE=", path2,
                           ": rank table: server_count: expected a string, got a number"));
  const std::string path3 = WriteTable(
      absl::StrReplaceAll(kTable2x4, {{R"("pod_ip": "172.16.0.2")", R"("pod_ip": null)"}}),
      "t3.json");
  env_["RANK_TABLE_FILE"] = path3;
  ExpectError(absl::StrCat("RANK_TABLE_FILE=", path3,
                           ": rank table: server_list[1].pod_ip: expected a string, got null"));
}

TEST_F(InitTest, RankTable_RankSizeDisagreesWithTheTable) {
  const std::string path = WriteTable(kTable2x4);
  env_ = {{"RANK_TABLE_FILE", path}, {"RANK_ID", "0"}, {"RANK_SIZE", "4"}};
  ExpectError(absl::StrCat("RANK_SIZE=\"4\" disagrees with RANK_TABLE_FILE=", path,
                           ", which lists 8 devices"));
}

TEST_F(InitTest, RankTable_ServerCountDisagreesWithServerList) {
  const std::string path = WriteTable(
      absl::StrReplaceAll(kTable2x4, {{R"("server_count": "2")", R"("server_count": "3")"}}));
  env_ = {{"RANK_TABLE_FILE", path}, {"RANK_ID", "0"}};
  ExpectError(absl::StrCat("RANK_TABLE_FILE=", path,
                           ": rank table: server_count: \"3\" but server_list has 2 entries"));
}

TEST_F(InitTest, RankTable_DeviceIdDoesNotMatchTheEntryOfRankId) {
  const std::string path = WriteTable(kTable2x4);
  env_ = {{"RANK_TABLE_FILE", path}, {"RANK_ID", "5"}, {"DEVICE_ID", "1"}};
  ExpectError(absl::StrCat("DEVICE_ID=\"1\" does not match RANK_TABLE_FILE=", path,
                           ": rank_id \"5\" is device_id \"5\" of server \"10.0.0.2\" "
                           "(server_list[1].device[1])"));
}

TEST_F(InitTest, RankTable_UnreadableFile) {
  const std::string path = dir_ + "/missing.json";
  env_ = {{"RANK_TABLE_FILE", path}, {"RANK_ID", "0"}};
  ExpectError(absl::StrCat("cannot read the rank table RANK_TABLE_FILE=", path,
                           ": No such file or directory"));
  env_ = {{"MINDSPORE_HCCL_CONFIG_PATH", path}, {"RANK_ID", "0"}};
  ExpectError(absl::StrCat("cannot read the rank table MINDSPORE_HCCL_CONFIG_PATH=", path,
                           ": No such file or directory"));
}

TEST_F(InitTest, RankTable_MalformedJson) {
  const std::string path = WriteTable("{\"version\": \"1.0\",}");
  env_ = {{"RANK_TABLE_FILE", path}, {"RANK_ID", "0"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              HasSubstr(absl::StrCat("RANK_TABLE_FILE=", path, ": rank table: line 1 column")));
}

TEST_F(InitTest, RankIdWithoutRankTable) {
  env_ = {{"RANK_ID", "0"}};
  ExpectError(
      "RANK_ID is set but RANK_TABLE_FILE is not: multi-process startup reads the topology from "
      "the HCCL rank table named by RANK_TABLE_FILE (or MINDSPORE_HCCL_CONFIG_PATH)");
}

// --- none -----------------------------------------------------------------------------------

TEST_F(InitTest, NoMethod_ExplainsTheThreeWays) {
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("(1) dynamic cluster: MS_ROLE"));
  EXPECT_THAT(r.status().message(), HasSubstr("(2) OpenMPI: launch with mpirun"));
  EXPECT_THAT(r.status().message(), HasSubstr("(3) multi-process startup: RANK_TABLE_FILE"));
}

// --- OpenMPI --------------------------------------------------------------------------------

TEST_F(InitTest, OpenMpi_TopologyFromTheMpiVariables) {
  env_ = {{"OMPI_COMMAND", "probe"},
          {"PMIX_RANK", "6"},
          {"OMPI_COMM_WORLD_RANK", "6"},
          {"OMPI_COMM_WORLD_SIZE", "8"},
          {"OMPI_COMM_WORLD_LOCAL_RANK", "2"},
          {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
          {"OMPI_COMM_WORLD_NODE_RANK", "2"},
          {"MS_WORKER_IP", "10.0.0.2"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, InitMethod::kOpenMpi);
  EXPECT_EQ(r->client, nullptr);
  const Topology& t = r->topology;
  EXPECT_EQ(t.rank, 6u);
  EXPECT_EQ(t.node_id, "6");
  EXPECT_EQ(t.world_size, 8u);
  EXPECT_EQ(t.local_rank, 2u);
  EXPECT_EQ(t.local_world_size, 4u);
  EXPECT_EQ(t.node_rank, 1u);
  EXPECT_EQ(t.num_nodes, 2u);
  EXPECT_EQ(t.host, "10.0.0.2");
  EXPECT_EQ(t.generation, 0u);
  EXPECT_EQ(r->options.device_id, 2);  // DEVICE_ID := local rank, as MindSpore maps it
}

TEST_F(InitTest, OpenMpi_CommWorldVariablesAloneAreEnough) {
  env_ = {{"OMPI_COMM_WORLD_RANK", "0"},
          {"OMPI_COMM_WORLD_SIZE", "1"},
          {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
          {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, InitMethod::kOpenMpi);
  EXPECT_FALSE(r->topology.host.empty());  // the host name
}

TEST_F(InitTest, OpenMpi_PmixDetectedButCommWorldMissing) {
  env_ = {{"OMPI_COMMAND", "probe"}, {"PMIX_RANK", "0"}};
  ExpectError(
      "OpenMPI startup detected (OMPI_COMMAND/PMIX_RANK or OMPI_COMM_WORLD_*) but "
      "OMPI_COMM_WORLD_RANK is not set: launch the processes with mpirun (Open MPI 4+)");
}

TEST_F(InitTest, OpenMpi_WinsOverTheRankTableWithAWarning) {
  WarningCapture warnings;
  env_ = {{"OMPI_COMM_WORLD_RANK", "1"},         {"OMPI_COMM_WORLD_SIZE", "2"},
          {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},   {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
          {"RANK_TABLE_FILE", "/nonexistent.json"}, {"RANK_ID", "0"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, InitMethod::kOpenMpi);
  EXPECT_EQ(r->topology.rank, 1u);
  EXPECT_THAT(warnings.text(), HasSubstr("using OpenMPI startup; RANK_TABLE_FILE ignored"));
}

TEST_F(InitTest, OpenMpi_WorkerNumDisagreesWithMpiSize) {
  env_ = {{"OMPI_COMM_WORLD_RANK", "0"},  {"OMPI_COMM_WORLD_SIZE", "4"},
          {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"MS_SCHED_HOST", "127.0.0.1"},
          {"MS_WORKER_NUM", "8"}};
  ExpectError(
      "MS_WORKER_NUM=\"8\" disagrees with OMPI_COMM_WORLD_SIZE=\"4\" (mpirun -np); unset "
      "MS_WORKER_NUM or make them equal");
}

TEST_F(InitTest, OpenMpi_WithSchedHostJoinsTheDaemonWithTheMpiRank) {
  Scheduler sched("mpi");
  env_ = {{"OMPI_COMM_WORLD_RANK", "0"},
          {"OMPI_COMM_WORLD_SIZE", "1"},
          {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
          {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"},
          {"MS_SCHED_HOST", "127.0.0.1"},
          {"MS_SCHED_PORT", absl::StrCat(sched.port())},
          {"MS_JOB_ID", "mpi"},
          {"MS_TOPO_TIMEOUT", "30"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, InitMethod::kOpenMpi);
  ASSERT_NE(r->client, nullptr);
  EXPECT_EQ(r->topology.rank, 0u);
  EXPECT_EQ(r->topology.node_id, "0");
  EXPECT_EQ(r->topology.world_size, 1u);
  EXPECT_GT(r->topology.generation, 0u);
  EXPECT_TRUE(r->client->Leave().ok());
}

// --- dynamic cluster ------------------------------------------------------------------------

TEST_F(InitTest, DynamicCluster_WinsOverMpiAndRankTableWithAWarning) {
  Scheduler sched("dyn");
  WarningCapture warnings;
  env_ = {{"MS_ROLE", "MS_WORKER"},
          {"MS_SCHED_HOST", "127.0.0.1"},
          {"MS_SCHED_PORT", absl::StrCat(sched.port())},
          {"MS_WORKER_NUM", "1"},
          {"MS_JOB_ID", "dyn"},
          {"MS_TOPO_TIMEOUT", "30"},
          {"OMPI_COMM_WORLD_RANK", "3"},
          {"OMPI_COMM_WORLD_SIZE", "4"},
          {"OMPI_COMM_WORLD_LOCAL_RANK", "3"},
          {"PMIX_RANK", "3"},
          {"RANK_ID", "3"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, InitMethod::kDynamicCluster);
  ASSERT_NE(r->client, nullptr);
  EXPECT_EQ(r->topology.rank, 0u);
  EXPECT_EQ(r->topology.world_size, 1u);
  EXPECT_THAT(warnings.text(),
              HasSubstr("MS_ROLE is set: using dynamic cluster startup and ignoring the OpenMPI / "
                        "rank table variables also present (OMPI_COMM_WORLD_RANK, "
                        "OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK, PMIX_RANK)"));
  EXPECT_TRUE(r->client->Leave().ok());
}

TEST_F(InitTest, DynamicCluster_SchedulerRoleIsRefused) {
  env_ = {{"MS_ROLE", "MS_SCHED"}, {"MS_SCHED_HOST", "127.0.0.1"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("RunScheduler"));
}

TEST_F(InitTest, DynamicCluster_BadContractIsReportedByTheOptionsParser) {
  env_ = {{"MS_ROLE", "MS_BOSS"}, {"MS_SCHED_HOST", "127.0.0.1"}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("MS_BOSS"));
}

TEST_F(InitTest, DynamicCluster_RankTableEntryNotFound) {
  const std::string path = WriteTable(kTable2x4);
  env_ = {{"MS_ROLE", "MS_WORKER"},    {"MS_SCHED_HOST", "127.0.0.1"}, {"MS_WORKER_NUM", "8"},
          {"RANK_TABLE_FILE", path},   {"MS_WORKER_IP", "10.0.0.9"},   {"DEVICE_ID", "0"}};
  ExpectError(absl::StrCat("RANK_TABLE_FILE=", path,
                           ": no entry matches this process (MS_WORKER_IP=10.0.0.9, DEVICE_ID=0): "
                           "no server has this address as pod_ip (or server_id when without "
                           "pod_ip)"));
  env_["MS_WORKER_IP"] = "10.0.0.1";
  env_["DEVICE_ID"] = "7";
  ExpectError(absl::StrCat("RANK_TABLE_FILE=", path,
                           ": no entry matches this process (MS_WORKER_IP=10.0.0.1, DEVICE_ID=7): "
                           "its server lists no such device_id"));
  // Server 1 has a pod_ip: its server_id no longer identifies it.
  env_["MS_WORKER_IP"] = "10.0.0.2";
  env_["DEVICE_ID"] = "4";
  ExpectError(absl::StrCat("RANK_TABLE_FILE=", path,
                           ": no entry matches this process (MS_WORKER_IP=10.0.0.2, DEVICE_ID=4): "
                           "no server has this address as pod_ip (or server_id when without "
                           "pod_ip)"));
}

TEST_F(InitTest, DynamicCluster_RankTableNeedsWorkerIpAndDeviceId) {
  const std::string path = WriteTable(kTable2x4);
  env_ = {{"MS_ROLE", "MS_WORKER"}, {"MS_SCHED_HOST", "127.0.0.1"}, {"MS_WORKER_NUM", "8"},
          {"RANK_TABLE_FILE", path}, {"DEVICE_ID", "0"}};
  ExpectError(absl::StrCat(
      "RANK_TABLE_FILE=", path,
      " is set in dynamic cluster mode, so the rank comes from the table, but MS_WORKER_IP is "
      "not set: set MS_WORKER_IP (the address matched against pod_ip or server_id) and DEVICE_ID "
      "(matched against device_id)"));
}

TEST_F(InitTest, DynamicCluster_RankTableSizeMustEqualWorkerNum) {
  const std::string path = WriteTable(kTable2x4);
  env_ = {{"MS_ROLE", "MS_WORKER"},  {"MS_SCHED_HOST", "127.0.0.1"}, {"MS_WORKER_NUM", "4"},
          {"RANK_TABLE_FILE", path}, {"MS_WORKER_IP", "10.0.0.1"},   {"DEVICE_ID", "0"}};
  ExpectError(absl::StrCat("MS_WORKER_NUM=\"4\" disagrees with RANK_TABLE_FILE=", path,
                           ", which lists 8 devices"));
}

TEST_F(InitTest, DynamicCluster_RankTableRemapsTheRank) {
  // One worker whose entry is rank 0 of a one-device table (the 8-process remap is in the e2e
  // test): the table's rank becomes MS_NODE_ID, overriding the one given.
  Scheduler sched("remap");
  WarningCapture warnings;
  const std::string path = WriteTable(R"({"version": "1.0", "server_count": "1",
      "status": "completed", "server_list": [{"server_id": "10.1.1.1", "pod_ip": "127.0.0.1",
      "device": [{"device_id": "3", "rank_id": "0"}]}]})");
  env_ = {{"MS_ROLE", "MS_WORKER"},
          {"MS_SCHED_HOST", "127.0.0.1"},
          {"MS_SCHED_PORT", absl::StrCat(sched.port())},
          {"MS_WORKER_NUM", "1"},
          {"MS_JOB_ID", "remap"},
          {"MS_TOPO_TIMEOUT", "30"},
          {"MS_NODE_ID", "worker-a"},
          {"MS_WORKER_IP", "127.0.0.1"},
          {"DEVICE_ID", "3"},
          {"RANK_TABLE_FILE", path}};
  absl::StatusOr<InitResult> r = Init(Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, InitMethod::kDynamicCluster);
  EXPECT_EQ(r->topology.node_id, "0");
  EXPECT_EQ(r->topology.rank, 0u);
  EXPECT_THAT(warnings.text(), HasSubstr("MS_NODE_ID=worker-a replaced by 0"));
  EXPECT_TRUE(r->client->Leave().ok());
}

TEST(InitMethodName, Names) {
  EXPECT_EQ(InitMethodName(InitMethod::kDynamicCluster), "dynamic_cluster");
  EXPECT_EQ(InitMethodName(InitMethod::kOpenMpi), "openmpi");
  EXPECT_EQ(InitMethodName(InitMethod::kRankTable), "rank_table");
}

}  // namespace
}  // namespace ms_rendezvous
