// StateStore: where the registry writes what must survive a daemon restart.
//
// The core calls it on every membership change (never for heartbeats). Today's implementation
// is MemoryStateStore; the durable SQLite store (group commit) and the etcd store (HA) plug in
// behind this interface without touching the core.
//
// Contract: calls for one job arrive in the order the changes happened (the caller holds the
// job's lock). A failed write is returned to the caller, which rejects the change it described.
#ifndef MS_RENDEZVOUS_STORE_STATE_STORE_H_
#define MS_RENDEZVOUS_STORE_STATE_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/types.h"

namespace ms_rendezvous::core {

struct JobRecord {
  std::string job_id;
  uint64_t generation = 0;
  uint32_t worker_num = 0;
  uint32_t server_num = 0;
  int64_t topo_timeout_ms = 0;
  JobState state = JobState::kForming;
  std::string failure_reason;
};

struct MemberRecord {
  std::string job_id;
  Role role = Role::kWorker;
  std::string node_id;
  std::string host;
  std::string host_name;
  int32_t device_id = -1;
  uint64_t incarnation = 0;
  MemberState state = MemberState::kWaiting;
  std::optional<uint32_t> rank;
};

class StateStore {
 public:
  virtual ~StateStore() = default;
  // Creates or replaces the job record.
  virtual absl::Status PutJob(const JobRecord& job) = 0;
  // Removes a job and all its members.
  virtual absl::Status DeleteJob(const std::string& job_id) = 0;
  // Creates or replaces a member record (key: job id, role, node id).
  virtual absl::Status PutMember(const MemberRecord& member) = 0;
  virtual absl::Status DeleteMember(const std::string& job_id, Role role,
                                    const std::string& node_id) = 0;
  // Everything stored, for recovery at start.
  virtual absl::StatusOr<std::vector<JobRecord>> LoadJobs() = 0;
  virtual absl::StatusOr<std::vector<MemberRecord>> LoadMembers(const std::string& job_id) = 0;
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_STORE_STATE_STORE_H_
