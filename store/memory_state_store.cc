#include "store/memory_state_store.h"

namespace ms_rendezvous::core {

void MemoryStateStore::Apply(const Mutation& m, std::map<std::string, JobRecord>& jobs,
                             std::map<MemberKey, MemberRecord>& members,
                             std::map<KvKey, std::string>& kv) {
  switch (m.kind) {
    case Mutation::Kind::kPutJob:
      jobs[m.job.job_id] = m.job;
      break;
    case Mutation::Kind::kDeleteJob: {
      jobs.erase(m.job.job_id);
      auto it = members.lower_bound(MemberKey(m.job.job_id, 0, ""));
      while (it != members.end() && std::get<0>(it->first) == m.job.job_id) {
        it = members.erase(it);
      }
      auto kit = kv.lower_bound(KvKey(m.job.job_id, ""));
      while (kit != kv.end() && kit->first.first == m.job.job_id) kit = kv.erase(kit);
      break;
    }
    case Mutation::Kind::kPutKv:
      kv[KvKey(m.kv.job_id, m.kv.key)] = m.kv.value;
      break;
    case Mutation::Kind::kDeleteKv:
      kv.erase(KvKey(m.kv.job_id, m.kv.key));
      break;
    case Mutation::Kind::kPutMember:
      members[MemberKey(m.member.job_id, static_cast<int>(m.member.role), m.member.node_id)] =
          m.member;
      break;
    case Mutation::Kind::kDeleteMember:
      members.erase(
          MemberKey(m.member.job_id, static_cast<int>(m.member.role), m.member.node_id));
      break;
  }
}

void MemoryStateStore::Commit(std::vector<Mutation> batch, CommitCallback done) {
  {
    absl::MutexLock l(&mu_);
    for (const Mutation& m : batch) Apply(m, jobs_, members_, kv_);
  }
  done(absl::OkStatus());
}

absl::StatusOr<StoredState> MemoryStateStore::Load() {
  absl::MutexLock l(&mu_);
  StoredState s;
  for (const auto& [id, job] : jobs_) s.jobs.push_back(job);
  for (const auto& [key, member] : members_) s.members.push_back(member);
  for (const auto& [key, value] : kv_) s.kv.push_back(KvRecord{key.first, key.second, value});
  return s;
}

}  // namespace ms_rendezvous::core
