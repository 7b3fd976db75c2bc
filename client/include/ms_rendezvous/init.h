// ms_rendezvous::Init(): one entry point for the three startup methods of a MindSpore job
// (REFERENCE.md sections 1, 3 and 4). The training program calls it once and gets the same
// Topology however it was started:
//
//   absl::StatusOr<ms_rendezvous::InitResult> init = ms_rendezvous::Init();
//   if (!init.ok()) { LOG(ERROR) << init.status(); return 2; }
//   ... init->topology.rank, init->topology.world_size ...
//   if (init->client) init->client->KvSet(...);   // only when a daemon/scheduler is involved
//
// Detection, first match wins:
//   1. dynamic cluster   MS_ROLE is set (MS_SCHED_HOST, MS_WORKER_NUM, ... per options.h).
//      Wins over the others; a glog WARNING names OMPI_*/PMIX_RANK and RANK_TABLE_FILE /
//      MINDSPORE_HCCL_CONFIG_PATH when they are present too. When a rank table is set (and the
//      role is MS_WORKER), the member's rank comes from it, as MindSpore does: the entry whose
//      pod_ip (when the server has one, else server_id) equals MS_WORKER_IP and whose device_id
//      equals DEVICE_ID gives MS_NODE_ID := its rank_id (a numeric node id pins the rank).
//      MS_ROLE=MS_SCHED is refused here (FailedPrecondition): the scheduler has no topology,
//      run it with RunScheduler() (scheduler.h).
//   2. OpenMPI           OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK present (or OMPI_COMMAND +
//      PMIX_RANK, MindSpore's test). Rank and size come from mpirun. With MS_SCHED_HOST set, the
//      process joins that daemon as MS_WORKER with MS_NODE_ID := the MPI rank and
//      MS_WORKER_NUM := OMPI_COMM_WORLD_SIZE (DEVICE_ID := OMPI_COMM_WORLD_LOCAL_RANK when
//      unset), so the job KV store and failure detection work. Without it, the topology comes
//      from the MPI variables alone (see InitResult).
//   3. multi-process startup (rank table)   RANK_TABLE_FILE (or the legacy
//      MINDSPORE_HCCL_CONFIG_PATH) + RANK_ID (+ DEVICE_ID, RANK_SIZE, both checked when set):
//      the topology is read from the HCCL rank table v1.0 (ParseHcclRankTable), no daemon.
//   none of these: InvalidArgument explaining the three ways.
//
// Every error is InvalidArgument (a malformed or inconsistent environment or rank table; the
// message names the variable, the file and the table entry), except what Client::Join returns
// when a daemon is involved (see client.h: DeadlineExceeded, Unavailable, Aborted, ...).
#ifndef MS_RENDEZVOUS_INIT_H_
#define MS_RENDEZVOUS_INIT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ms_rendezvous/client.h"
#include "ms_rendezvous/options.h"

namespace ms_rendezvous {

enum class InitMethod { kDynamicCluster, kOpenMpi, kRankTable };

// "dynamic_cluster", "openmpi", "rank_table".
absl::string_view InitMethodName(InitMethod method);

struct InitResult {
  InitMethod method = InitMethod::kDynamicCluster;
  // Where this process landed. Without a daemon (rank table; OpenMPI without MS_SCHED_HOST):
  //   generation = incarnation = 0, role = MS_WORKER, job_id = MS_JOB_ID or "default",
  //   worker_num = world_size, server_num = 0.
  //   rank table: node_id = RANK_ID, rank = RANK_ID, world_size = devices in the table,
  //     node_rank = index of its server, num_nodes = servers, local_rank = index of the device
  //     in its server, local_world_size = devices of that server, host = the server's pod_ip
  //     when present, else its server_id.
  //   OpenMPI: node_id = rank = OMPI_COMM_WORLD_RANK, world_size = OMPI_COMM_WORLD_SIZE,
  //     local_rank = OMPI_COMM_WORLD_LOCAL_RANK, local_world_size = OMPI_COMM_WORLD_LOCAL_SIZE,
  //     node_rank = rank / local_world_size and num_nodes = ceil(size / local_world_size)
  //     (mpirun's default by-slot mapping of equal nodes; OpenMPI exports no node index),
  //     host = MS_WORKER_IP when set, else the host name.
  Topology topology;
  // The joined client when a daemon or embedded scheduler is involved (dynamic cluster; OpenMPI
  // with MS_SCHED_HOST), nullptr otherwise. Destroying it leaves the job.
  std::unique_ptr<Client> client;
  // The options the client was created with (device_id, sched_port, ... for launchers); for the
  // daemon-less methods: role, job_id, worker_num, node_id and device_id filled in.
  ClientOptions options;
  // Host of rank 0 when known without asking a daemon (rank table: the first server), else "".
  std::string master_addr;
};

// Detects the startup method from `env` and returns this process's topology (see above).
// Blocks in Client::Join() when a daemon is involved.
absl::StatusOr<InitResult> Init(const EnvLookup& env = ProcessEnv());

}  // namespace ms_rendezvous

#endif  // MS_RENDEZVOUS_INIT_H_
