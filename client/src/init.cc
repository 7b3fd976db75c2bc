// ms_rendezvous::Init(): startup method detection (see init.h).
#include "ms_rendezvous/init.h"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "ms_rendezvous/topology_export.h"

namespace ms_rendezvous {
namespace {

// A variable set to "" counts as unset (options.h).
std::optional<std::string> Get(const EnvLookup& env, const std::string& name) {
  std::optional<std::string> v = env(name);
  if (v.has_value() && v->empty()) return std::nullopt;
  return v;
}

// Decimal 0..max; InvalidArgument naming the variable otherwise.
absl::StatusOr<uint32_t> ParseUint(const std::string& name, const std::string& value,
                                   uint32_t max, absl::string_view what) {
  uint32_t n = 0;
  bool digits = !value.empty() && value.size() <= 10;
  for (char c : value) digits = digits && c >= '0' && c <= '9';
  if (!digits || !absl::SimpleAtoi(value, &n) || n > max) {
    return absl::InvalidArgumentError(absl::StrCat(name, "=\"", value, "\" is not valid: expected ",
                                                   what, " (an integer in 0..", max, ")"));
  }
  return n;
}

constexpr char kRankTableFile[] = "RANK_TABLE_FILE";
constexpr char kLegacyRankTable[] = "MINDSPORE_HCCL_CONFIG_PATH";

// The rank table path and the variable that named it; nullopt when neither is set.
std::optional<std::pair<std::string, std::string>> RankTablePath(const EnvLookup& env) {
  std::optional<std::string> path = Get(env, kRankTableFile);
  std::optional<std::string> legacy = Get(env, kLegacyRankTable);
  if (path.has_value()) {
    if (legacy.has_value() && *legacy != *path) {
      LOG(WARNING) << kRankTableFile << "=" << *path << " and " << kLegacyRankTable << "="
                   << *legacy << " are both set: using " << kRankTableFile;
    }
    return std::make_pair(std::string(kRankTableFile), *path);
  }
  if (legacy.has_value()) return std::make_pair(std::string(kLegacyRankTable), *legacy);
  return std::nullopt;
}

// Reads and parses the rank table named by `var`=`path`.
absl::StatusOr<ParsedRankTable> LoadRankTable(const std::string& var, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    return absl::InvalidArgumentError(absl::StrCat("cannot read the rank table ", var, "=", path,
                                                   ": ", std::strerror(err)));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    const int err = errno;
    return absl::InvalidArgumentError(absl::StrCat("cannot read the rank table ", var, "=", path,
                                                   ": ", std::strerror(err)));
  }
  absl::StatusOr<ParsedRankTable> table = ParseHcclRankTable(text);
  if (!table.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(var, "=", path, ": ", table.status().message()));
  }
  return table;
}

// The address a process on `server` talks on: pod_ip when the table has one, else server_id.
const std::string& ServerHost(const ParsedRankTableServer& server) {
  return server.pod_ip.empty() ? server.server_id : server.pod_ip;
}

std::string LocalHostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

// The variables of the other methods that are present, for the precedence warning.
std::vector<std::string> PresentVars(const EnvLookup& env, const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const std::string& n : names) {
    if (Get(env, n).has_value()) out.push_back(n);
  }
  return out;
}

const std::vector<std::string>& MpiVars() {
  static const auto* v = new std::vector<std::string>{
      "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
      "OMPI_COMMAND", "PMIX_RANK"};
  return *v;
}

bool MpiDetected(const EnvLookup& env) {
  const bool comm_world = Get(env, "OMPI_COMM_WORLD_RANK").has_value() &&
                          Get(env, "OMPI_COMM_WORLD_SIZE").has_value() &&
                          Get(env, "OMPI_COMM_WORLD_LOCAL_RANK").has_value();
  const bool pmix = Get(env, "OMPI_COMMAND").has_value() && Get(env, "PMIX_RANK").has_value();
  return comm_world || pmix;
}

// env with some variables replaced.
EnvLookup Overlay(const EnvLookup& env, std::map<std::string, std::string> values) {
  return [env, values = std::move(values)](const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it != values.end()) return it->second;
    return env(name);
  };
}

absl::StatusOr<InitResult> JoinDaemon(InitMethod method, const EnvLookup& env) {
  absl::StatusOr<ClientOptions> options = ParseClientOptions(env);
  if (!options.ok()) return options.status();
  if (options->role == Role::kScheduler) {
    return absl::FailedPreconditionError(
        "MS_ROLE=MS_SCHED: the scheduler has no topology to return; run it with "
        "ms_rendezvous::RunScheduler() (scheduler.h) instead of Init()");
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(*options);
  if (!client.ok()) return client.status();
  absl::StatusOr<Topology> topology = (*client)->Join();
  if (!topology.ok()) return topology.status();
  InitResult result;
  result.method = method;
  result.topology = *std::move(topology);
  result.client = *std::move(client);
  result.options = *std::move(options);
  return result;
}

// --- 1. dynamic cluster ---------------------------------------------------------------------

absl::StatusOr<InitResult> InitDynamicCluster(const EnvLookup& env) {
  std::vector<std::string> others = PresentVars(env, MpiVars());
  for (const std::string& v : PresentVars(env, {kRankTableFile, kLegacyRankTable})) {
    others.push_back(v);
  }
  std::optional<std::pair<std::string, std::string>> table_path = RankTablePath(env);
  if (!others.empty()) {
    LOG(WARNING) << "MS_ROLE is set: using dynamic cluster startup and ignoring the OpenMPI / "
                    "rank table variables also present ("
                 << absl::StrJoin(others, ", ") << ")"
                 << (table_path.has_value() ? "; the rank table only remaps the worker ranks" : "");
  }
  const std::optional<std::string> role = Get(env, "MS_ROLE");
  if (!table_path.has_value() || role != "MS_WORKER") {
    return JoinDaemon(InitMethod::kDynamicCluster, env);
  }
  // Rank table remap (MindSpore): find this process's entry by (host address, DEVICE_ID).
  const auto& [var, path] = *table_path;
  absl::StatusOr<ParsedRankTable> table = LoadRankTable(var, path);
  if (!table.ok()) return table.status();
  std::optional<std::string> worker_ip = Get(env, "MS_WORKER_IP");
  std::optional<std::string> device = Get(env, "DEVICE_ID");
  if (!worker_ip.has_value() || !device.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        var, "=", path, " is set in dynamic cluster mode, so the rank comes from the table, but ",
        !worker_ip.has_value() ? "MS_WORKER_IP" : "DEVICE_ID",
        " is not set: set MS_WORKER_IP (the address matched against pod_ip or server_id) and "
        "DEVICE_ID (matched against device_id)"));
  }
  absl::StatusOr<uint32_t> device_id = ParseUint("DEVICE_ID", *device, INT32_MAX, "a device id");
  if (!device_id.ok()) return device_id.status();
  std::optional<uint32_t> rank;
  bool host_found = false;
  for (const ParsedRankTableServer& server : table->servers) {
    if (ServerHost(server) != *worker_ip) continue;
    host_found = true;
    for (const ParsedRankTableDevice& d : server.devices) {
      if (d.device_id == *device_id) rank = d.rank_id;
    }
  }
  if (!rank.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        var, "=", path, ": no entry matches this process (MS_WORKER_IP=", *worker_ip,
        ", DEVICE_ID=", *device_id, "): ",
        host_found ? "its server lists no such device_id"
                   : "no server has this address as pod_ip (or server_id when without pod_ip)"));
  }
  if (std::optional<std::string> worker_num = Get(env, "MS_WORKER_NUM");
      worker_num.has_value() && *worker_num != absl::StrCat(table->rank_size)) {
    return absl::InvalidArgumentError(absl::StrCat("MS_WORKER_NUM=\"", *worker_num,
                                                   "\" disagrees with ", var, "=", path,
                                                   ", which lists ", table->rank_size,
                                                   " devices"));
  }
  const std::string node_id = absl::StrCat(*rank);
  if (std::optional<std::string> given = Get(env, "MS_NODE_ID");
      given.has_value() && *given != node_id) {
    LOG(WARNING) << "MS_NODE_ID=" << *given << " replaced by " << node_id << ", the rank_id of "
                 << *worker_ip << " device " << *device_id << " in " << path;
  }
  return JoinDaemon(InitMethod::kDynamicCluster, Overlay(env, {{"MS_NODE_ID", node_id}}));
}

// --- 2. OpenMPI ------------------------------------------------------------------------------

absl::StatusOr<InitResult> InitOpenMpi(const EnvLookup& env) {
  if (std::vector<std::string> rt = PresentVars(env, {kRankTableFile, kLegacyRankTable});
      !rt.empty()) {
    LOG(WARNING) << "started by mpirun: using OpenMPI startup; " << absl::StrJoin(rt, ", ")
                 << " ignored for the topology";
  }
  auto need = [&](const char* name) -> absl::StatusOr<std::string> {
    std::optional<std::string> v = Get(env, name);
    if (!v.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "OpenMPI startup detected (OMPI_COMMAND/PMIX_RANK or OMPI_COMM_WORLD_*) but ", name,
          " is not set: launch the processes with mpirun (Open MPI 4+)"));
    }
    return *v;
  };
  absl::StatusOr<std::string> rank_s = need("OMPI_COMM_WORLD_RANK");
  if (!rank_s.ok()) return rank_s.status();
  absl::StatusOr<std::string> size_s = need("OMPI_COMM_WORLD_SIZE");
  if (!size_s.ok()) return size_s.status();
  absl::StatusOr<std::string> local_s = need("OMPI_COMM_WORLD_LOCAL_RANK");
  if (!local_s.ok()) return local_s.status();
  absl::StatusOr<uint32_t> size = ParseUint("OMPI_COMM_WORLD_SIZE", *size_s, 1000000, "the size");
  if (!size.ok()) return size.status();
  absl::StatusOr<uint32_t> rank = ParseUint("OMPI_COMM_WORLD_RANK", *rank_s, 999999, "a rank");
  if (!rank.ok()) return rank.status();
  absl::StatusOr<uint32_t> local =
      ParseUint("OMPI_COMM_WORLD_LOCAL_RANK", *local_s, 999999, "a local rank");
  if (!local.ok()) return local.status();
  if (*size == 0 || *rank >= *size) {
    return absl::InvalidArgumentError(absl::StrCat("OMPI_COMM_WORLD_RANK=\"", *rank,
                                                   "\" is out of range for OMPI_COMM_WORLD_SIZE=\"",
                                                   *size, "\""));
  }

  if (Get(env, "MS_SCHED_HOST").has_value()) {
    // Join the daemon with the MPI rank pinned, so the KV store and failure detection work.
    std::map<std::string, std::string> overlay = {{"MS_ROLE", "MS_WORKER"},
                                                  {"MS_NODE_ID", absl::StrCat(*rank)},
                                                  {"MS_WORKER_NUM", absl::StrCat(*size)}};
    if (std::optional<std::string> wn = Get(env, "MS_WORKER_NUM");
        wn.has_value() && *wn != overlay["MS_WORKER_NUM"]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MS_WORKER_NUM=\"", *wn, "\" disagrees with OMPI_COMM_WORLD_SIZE=\"", *size,
          "\" (mpirun -np); unset MS_WORKER_NUM or make them equal"));
    }
    if (std::optional<std::string> id = Get(env, "MS_NODE_ID");
        id.has_value() && *id != overlay["MS_NODE_ID"]) {
      LOG(WARNING) << "MS_NODE_ID=" << *id << " replaced by the MPI rank " << *rank;
    }
    if (!Get(env, "DEVICE_ID").has_value()) overlay["DEVICE_ID"] = absl::StrCat(*local);
    absl::StatusOr<InitResult> result = JoinDaemon(InitMethod::kOpenMpi, Overlay(env, overlay));
    if (!result.ok()) return result.status();
    if (result->topology.rank != *rank) {
      return absl::InternalError(absl::StrCat("the daemon assigned rank ", result->topology.rank,
                                              " to MPI rank ", *rank));
    }
    return result;
  }

  absl::StatusOr<std::string> lsize_s = need("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (!lsize_s.ok()) return lsize_s.status();
  absl::StatusOr<uint32_t> lsize =
      ParseUint("OMPI_COMM_WORLD_LOCAL_SIZE", *lsize_s, 1000000, "the local size");
  if (!lsize.ok()) return lsize.status();
  if (*lsize == 0 || *local >= *lsize || *lsize > *size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "OMPI_COMM_WORLD_LOCAL_RANK=\"", *local, "\" / OMPI_COMM_WORLD_LOCAL_SIZE=\"", *lsize,
        "\" are inconsistent with OMPI_COMM_WORLD_SIZE=\"", *size, "\""));
  }
  InitResult result;
  result.method = InitMethod::kOpenMpi;
  Topology& t = result.topology;
  t.job_id = Get(env, "MS_JOB_ID").value_or(kDefaultJobId);
  t.role = Role::kWorker;
  t.node_id = absl::StrCat(*rank);
  t.rank = *rank;
  t.world_size = *size;
  t.local_rank = *local;
  t.local_world_size = *lsize;
  t.node_rank = *rank / *lsize;
  t.num_nodes = (*size + *lsize - 1) / *lsize;
  t.host = Get(env, "MS_WORKER_IP").value_or(LocalHostName());
  t.worker_num = *size;
  result.options.role = Role::kWorker;
  result.options.job_id = t.job_id;
  result.options.node_id = t.node_id;
  result.options.worker_num = *size;
  result.options.device_id = static_cast<int32_t>(*local);
  if (std::optional<std::string> d = Get(env, "DEVICE_ID"); d.has_value()) {
    absl::StatusOr<uint32_t> id = ParseUint("DEVICE_ID", *d, INT32_MAX, "a device id");
    if (!id.ok()) return id.status();
    result.options.device_id = static_cast<int32_t>(*id);
  }
  return result;
}

// --- 3. multi-process startup with a rank table ---------------------------------------------

absl::StatusOr<InitResult> InitRankTable(const EnvLookup& env, const std::string& var,
                                         const std::string& path) {
  std::optional<std::string> rank_s = Get(env, "RANK_ID");
  if (!rank_s.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(var, "=", path,
                     " is set but RANK_ID is not: multi-process startup needs RANK_ID, this "
                     "process's rank_id in the table (and DEVICE_ID, RANK_SIZE)"));
  }
  absl::StatusOr<ParsedRankTable> table = LoadRankTable(var, path);
  if (!table.ok()) return table.status();
  const uint32_t n = table->rank_size;
  absl::StatusOr<uint32_t> rank = ParseUint("RANK_ID", *rank_s, INT32_MAX, "a rank id");
  if (!rank.ok()) return rank.status();
  if (*rank >= n) {
    return absl::InvalidArgumentError(absl::StrCat("RANK_ID=\"", *rank, "\" is out of range: ",
                                                   var, "=", path, " lists ", n,
                                                   " devices (rank ids 0..", n - 1, ")"));
  }
  if (std::optional<std::string> size_s = Get(env, "RANK_SIZE"); size_s.has_value()) {
    absl::StatusOr<uint32_t> size = ParseUint("RANK_SIZE", *size_s, INT32_MAX, "the world size");
    if (!size.ok()) return size.status();
    if (*size != n) {
      return absl::InvalidArgumentError(absl::StrCat("RANK_SIZE=\"", *size, "\" disagrees with ",
                                                     var, "=", path, ", which lists ", n,
                                                     " devices"));
    }
  }
  // Find the entry of the rank.
  uint32_t node = 0;
  uint32_t local = 0;
  bool found = false;
  for (uint32_t s = 0; s < table->servers.size() && !found; ++s) {
    const auto& devices = table->servers[s].devices;
    for (uint32_t d = 0; d < devices.size(); ++d) {
      if (devices[d].rank_id == *rank) {
        node = s;
        local = d;
        found = true;
        break;
      }
    }
  }
  if (!found) {  // ParseHcclRankTable guarantees ranks 0..n-1; keep the check cheap and explicit
    return absl::InternalError(absl::StrCat(var, "=", path, ": rank ", *rank, " not found"));
  }
  const ParsedRankTableServer& server = table->servers[node];
  const ParsedRankTableDevice& device = server.devices[local];
  int32_t device_id = static_cast<int32_t>(device.device_id);
  if (std::optional<std::string> d = Get(env, "DEVICE_ID"); d.has_value()) {
    absl::StatusOr<uint32_t> id = ParseUint("DEVICE_ID", *d, INT32_MAX, "a device id");
    if (!id.ok()) return id.status();
    if (*id != device.device_id) {
      return absl::InvalidArgumentError(absl::StrCat(
          "DEVICE_ID=\"", *id, "\" does not match ", var, "=", path, ": rank_id \"", *rank,
          "\" is device_id \"", device.device_id, "\" of server \"", server.server_id,
          "\" (server_list[", node, "].device[", local, "])"));
    }
  }
  InitResult result;
  result.method = InitMethod::kRankTable;
  Topology& t = result.topology;
  t.job_id = Get(env, "MS_JOB_ID").value_or(kDefaultJobId);
  t.role = Role::kWorker;
  t.node_id = absl::StrCat(*rank);
  t.rank = *rank;
  t.world_size = n;
  t.local_rank = local;
  t.local_world_size = static_cast<uint32_t>(server.devices.size());
  t.node_rank = node;
  t.num_nodes = static_cast<uint32_t>(table->servers.size());
  t.host = ServerHost(server);
  t.worker_num = n;
  result.options.role = Role::kWorker;
  result.options.job_id = t.job_id;
  result.options.node_id = t.node_id;
  result.options.worker_num = n;
  result.options.device_id = device_id;
  result.options.device_ip = device.device_ip;
  result.master_addr = ServerHost(table->servers[0]);
  return result;
}

}  // namespace

absl::string_view InitMethodName(InitMethod method) {
  switch (method) {
    case InitMethod::kDynamicCluster:
      return "dynamic_cluster";
    case InitMethod::kOpenMpi:
      return "openmpi";
    case InitMethod::kRankTable:
      return "rank_table";
  }
  return "unknown";
}

absl::StatusOr<InitResult> Init(const EnvLookup& env) {
  if (Get(env, "MS_ROLE").has_value()) return InitDynamicCluster(env);
  if (MpiDetected(env)) return InitOpenMpi(env);
  if (std::optional<std::pair<std::string, std::string>> table = RankTablePath(env);
      table.has_value()) {
    return InitRankTable(env, table->first, table->second);
  }
  if (Get(env, "RANK_ID").has_value()) {
    return absl::InvalidArgumentError(
        "RANK_ID is set but RANK_TABLE_FILE is not: multi-process startup reads the topology "
        "from the HCCL rank table named by RANK_TABLE_FILE (or MINDSPORE_HCCL_CONFIG_PATH)");
  }
  return absl::InvalidArgumentError(
      "cannot tell how this job was started; use one of: (1) dynamic cluster: MS_ROLE, "
      "MS_SCHED_HOST, MS_SCHED_PORT, MS_WORKER_NUM (e.g. ms-rendezvous-run); (2) OpenMPI: launch "
      "with mpirun (OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK), optionally with MS_SCHED_HOST naming "
      "a daemon; (3) multi-process startup: RANK_TABLE_FILE (HCCL rank table v1.0) + RANK_ID "
      "(+ DEVICE_ID, RANK_SIZE)");
}

}  // namespace ms_rendezvous
