#include "core/effects.h"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace ms_rendezvous::core {
namespace {

std::function<void(const absl::Status&)>& FailureHandler() {
  static auto* handler = new std::function<void(const absl::Status&)>(
      [](const absl::Status& status) {
        std::fprintf(stderr, "ms-rendezvous: state store failed, stopping: %s\n",
                     std::string(status.message()).c_str());
        std::abort();
      });
  return *handler;
}

void RunAll(std::vector<absl::AnyInvocable<void()>>& fns) {
  // Effects may add effects (rare); loop until drained.
  while (!fns.empty()) {
    std::vector<absl::AnyInvocable<void()>> batch;
    batch.swap(fns);
    for (auto& fn : batch) fn();
  }
}

}  // namespace

void SetStorageFailureHandler(std::function<void(const absl::Status&)> handler) {
  FailureHandler() = std::move(handler);
}

void Effects::Submit(StateStore* store) {
  if (pending_.empty()) return;
  if (store == nullptr) {
    pending_.clear();
    return;
  }
  if (gate_ == nullptr) gate_ = std::make_shared<Gate>();
  {
    absl::MutexLock l(&gate_->mu);
    ++gate_->outstanding;
  }
  std::vector<Mutation> batch;
  batch.swap(pending_);
  store->Commit(std::move(batch), [gate = gate_](absl::Status status) {
    bool open = false;
    {
      absl::MutexLock l(&gate->mu);
      if (!status.ok() && gate->error.ok()) gate->error = status;
      open = --gate->outstanding == 0;
    }
    if (open) Open(gate);
  });
}

void Effects::Open(const std::shared_ptr<Gate>& gate) {
  absl::Status error;
  std::vector<absl::AnyInvocable<void()>> fns;
  {
    absl::MutexLock l(&gate->mu);
    error = gate->error;
    fns.swap(gate->fns);
  }
  if (!error.ok()) {
    FailureHandler()(error);
    return;
  }
  RunAll(fns);
}

void Effects::Run() {
  if (!pending_.empty()) {
    // A core method recorded mutations and forgot Submit(): acknowledging them would lie.
    FailureHandler()(absl::InternalError("Effects: mutations recorded but never submitted"));
    pending_.clear();
  }
  if (gate_ == nullptr) {
    RunAll(fns_);
    return;
  }
  std::shared_ptr<Gate> gate = std::move(gate_);
  bool open = false;
  {
    absl::MutexLock l(&gate->mu);
    for (auto& fn : fns_) gate->fns.push_back(std::move(fn));
    open = --gate->outstanding == 0;
  }
  fns_.clear();
  if (open) Open(gate);
}

}  // namespace ms_rendezvous::core
