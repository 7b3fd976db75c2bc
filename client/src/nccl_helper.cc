#include "ms_rendezvous/nccl_helper.h"

#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ms_rendezvous {

absl::StatusOr<ncclUniqueId> ExchangeNcclUniqueId(Client& client, const std::string& group,
                                                  bool is_root) {
  ncclUniqueId id;
  if (is_root) {
    ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) {
      return absl::InternalError(
          absl::StrCat("ncclGetUniqueId failed: ", ncclGetErrorString(result)));
    }
    absl::Status published = client.PublishRootInfo(
        group, absl::string_view(reinterpret_cast<const char*>(&id), sizeof(id)));
    if (!published.ok()) return published;
    return id;
  }
  absl::StatusOr<std::string> bytes = client.FetchRootInfo(group);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() != sizeof(id)) {
    return absl::DataLossError(absl::StrCat("root info of group '", group, "' has ", bytes->size(),
                                            " bytes, an ncclUniqueId has ", sizeof(id)));
  }
  std::memcpy(&id, bytes->data(), sizeof(id));
  return id;
}

absl::StatusOr<ncclUniqueId> ExchangeNcclUniqueId(Client& client, const Topology& topology) {
  return ExchangeNcclUniqueId(client, kNcclWorldGroup, topology.rank == 0);
}

}  // namespace ms_rendezvous
