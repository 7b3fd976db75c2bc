// MemoryStateStore: the StateStore of a daemon started without --state-dir. Applies batches at
// once, in process memory (lost with the process; the daemon says so at start). Also the
// reference implementation the durable stores are tested against.
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
  void Commit(std::vector<Mutation> batch, CommitCallback done) override;
  absl::StatusOr<StoredState> Load() override;
  bool durable() const override { return false; }
  std::string Describe() const override { return "memory (lost when the daemon stops)"; }

  // Applies one mutation to maps keyed like the durable stores (shared by tests).
  using MemberKey = std::tuple<std::string, int, std::string>;
  using KvKey = std::pair<std::string, std::string>;
  static void Apply(const Mutation& m, std::map<std::string, JobRecord>& jobs,
                    std::map<MemberKey, MemberRecord>& members,
                    std::map<KvKey, std::string>& kv);

 private:
  absl::Mutex mu_;
  std::map<std::string, JobRecord> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<MemberKey, MemberRecord> members_ ABSL_GUARDED_BY(mu_);
  std::map<KvKey, std::string> kv_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_STORE_MEMORY_STATE_STORE_H_
