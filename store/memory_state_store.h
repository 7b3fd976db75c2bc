// MemoryStateStore: the StateStore of a daemon started without --state-dir. Keeps the records in
// process memory (lost with the process; the daemon says so at start).
#ifndef MS_RENDEZVOUS_STORE_MEMORY_STATE_STORE_H_
#define MS_RENDEZVOUS_STORE_MEMORY_STATE_STORE_H_

#include <map>
#include <string>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "store/state_store.h"

namespace ms_rendezvous::core {

class MemoryStateStore final : public StateStore {
 public:
  absl::Status PutJob(const JobRecord& job) override;
  absl::Status DeleteJob(const std::string& job_id) override;
  absl::Status PutMember(const MemberRecord& member) override;
  absl::Status DeleteMember(const std::string& job_id, Role role,
                            const std::string& node_id) override;
  absl::StatusOr<std::vector<JobRecord>> LoadJobs() override;
  absl::StatusOr<std::vector<MemberRecord>> LoadMembers(const std::string& job_id) override;

 private:
  using MemberKey = std::tuple<std::string, int, std::string>;
  absl::Mutex mu_;
  std::map<std::string, JobRecord> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<MemberKey, MemberRecord> members_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_STORE_MEMORY_STATE_STORE_H_
