// HeldStore: a StateStore that keeps every batch until the test releases it, to prove that the
// core acknowledges changes only once they are durable.
#ifndef MS_RENDEZVOUS_TESTS_UNIT_HELD_STORE_H_
#define MS_RENDEZVOUS_TESTS_UNIT_HELD_STORE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "store/state_store.h"

namespace ms_rendezvous::core {

class HeldStore : public StateStore {
 public:
  void Commit(std::vector<Mutation> batch, CommitCallback done) override {
    absl::MutexLock l(&mu_);
    held_.push_back({std::move(batch), std::move(done)});
  }
  absl::StatusOr<StoredState> Load() override { return StoredState{}; }
  bool durable() const override { return true; }
  std::string Describe() const override { return "held"; }
  size_t held() {
    absl::MutexLock l(&mu_);
    return held_.size();
  }
  // Acknowledges every held batch, in order.
  void ReleaseAll() {
    std::vector<std::pair<std::vector<Mutation>, CommitCallback>> batches;
    {
      absl::MutexLock l(&mu_);
      batches.swap(held_);
    }
    for (auto& [batch, done] : batches) done(absl::OkStatus());
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<std::vector<Mutation>, CommitCallback>> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_TESTS_UNIT_HELD_STORE_H_
