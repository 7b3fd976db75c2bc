#include "store/memory_state_store.h"

namespace ms_rendezvous::core {

absl::Status MemoryStateStore::PutJob(const JobRecord& job) {
  absl::MutexLock l(&mu_);
  jobs_[job.job_id] = job;
  return absl::OkStatus();
}

absl::Status MemoryStateStore::DeleteJob(const std::string& job_id) {
  absl::MutexLock l(&mu_);
  jobs_.erase(job_id);
  auto it = members_.lower_bound(MemberKey(job_id, 0, ""));
  while (it != members_.end() && std::get<0>(it->first) == job_id) it = members_.erase(it);
  return absl::OkStatus();
}

absl::Status MemoryStateStore::PutMember(const MemberRecord& member) {
  absl::MutexLock l(&mu_);
  if (jobs_.find(member.job_id) == jobs_.end()) {
    return absl::FailedPreconditionError("MemoryStateStore: member '" + member.node_id +
                                         "' written for unknown job '" + member.job_id + "'");
  }
  members_[MemberKey(member.job_id, static_cast<int>(member.role), member.node_id)] = member;
  return absl::OkStatus();
}

absl::Status MemoryStateStore::DeleteMember(const std::string& job_id, Role role,
                                            const std::string& node_id) {
  absl::MutexLock l(&mu_);
  members_.erase(MemberKey(job_id, static_cast<int>(role), node_id));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobRecord>> MemoryStateStore::LoadJobs() {
  absl::MutexLock l(&mu_);
  std::vector<JobRecord> out;
  for (const auto& [id, job] : jobs_) out.push_back(job);
  return out;
}

absl::StatusOr<std::vector<MemberRecord>> MemoryStateStore::LoadMembers(
    const std::string& job_id) {
  absl::MutexLock l(&mu_);
  std::vector<MemberRecord> out;
  for (auto it = members_.lower_bound(MemberKey(job_id, 0, ""));
       it != members_.end() && std::get<0>(it->first) == job_id; ++it) {
    out.push_back(it->second);
  }
  return out;
}

}  // namespace ms_rendezvous::core
