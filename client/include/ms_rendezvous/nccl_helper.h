// NCCL bootstrap over the rendezvous: group rank 0 creates the ncclUniqueId and publishes it
// through the job's root-info store (Client::PublishRootInfo); every other rank fetches it
// (Client::FetchRootInfo, which waits up to MS_TOPO_TIMEOUT). Then each rank calls
// ncclCommInitRank(&comm, nranks, id, rank) itself.
//
//   absl::StatusOr<Topology> topo = client->Join();
//   absl::StatusOr<ncclUniqueId> id = ExchangeNcclUniqueId(*client, *topo);
//   ncclCommInitRank(&comm, topo->world_size, *id, topo->rank);
//
// Only built when CMake finds nccl.h and libnccl (library ms_rendezvous_nccl); otherwise CMake
// prints "NCCL not found: skipping the NCCL helper" and this header is not installed.
#ifndef MS_RENDEZVOUS_NCCL_HELPER_H_
#define MS_RENDEZVOUS_NCCL_HELPER_H_

#include <nccl.h>

#include <string>

#include "absl/status/statusor.h"
#include "ms_rendezvous/client.h"

namespace ms_rendezvous {

// MindSpore's name of the NCCL world group (its root info key is "worker_group_info_<group>").
inline constexpr char kNcclWorldGroup[] = "nccl_world_group";

// The unique id of `group`: generated with ncclGetUniqueId and published when `is_root` (the
// group's rank 0), fetched otherwise. Errors: Internal (ncclGetUniqueId failed, NCCL's message),
// DataLoss (the published value is not an ncclUniqueId: wrong size), and every error of
// PublishRootInfo / FetchRootInfo (e.g. DeadlineExceeded naming the root when it never
// published, Aborted when the job failed meanwhile).
absl::StatusOr<ncclUniqueId> ExchangeNcclUniqueId(Client& client, const std::string& group,
                                                  bool is_root);

// The world group of this member's role: root = rank 0.
absl::StatusOr<ncclUniqueId> ExchangeNcclUniqueId(Client& client, const Topology& topology);

}  // namespace ms_rendezvous

#endif  // MS_RENDEZVOUS_NCCL_HELPER_H_
