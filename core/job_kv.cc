#include "core/job_kv.h"

#include <atomic>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ms_rendezvous::core {
namespace {

constexpr size_t kMaxKeysListed = 20;

std::string Seconds(absl::Duration d) { return absl::FormatDuration(d); }

}  // namespace

uint64_t NextWaiterId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

JobKv::JobKv(JobIdRef job_id, uint64_t job_uid, const KvLimits& limits, Clock* clock,
             StateStore* store, DeadlineQueue* deadlines)
    : job_id_ref_(std::move(job_id)),
      job_uid_(job_uid),
      limits_(limits),
      clock_(clock),
      store_(store),
      deadlines_(deadlines) {}

std::string JobKv::Printable(const std::string& key) {
  std::string shown = key.size() > 64 ? key.substr(0, 64) : key;
  return absl::StrCat("'", absl::CHexEscape(shown), key.size() > 64 ? "...'" : "'");
}

absl::Status JobKv::CheckKey(const std::string& key) const {
  if (key.empty()) {
    return absl::InvalidArgumentError("key is empty: keys are 1..--kv-max-key-bytes bytes");
  }
  if (key.size() > limits_.max_key_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "key of ", key.size(), " bytes exceeds --kv-max-key-bytes=", limits_.max_key_bytes));
  }
  return absl::OkStatus();
}

absl::Status JobKv::CheckPut(const std::string& key, size_t new_value_bytes) const {
  if (absl::Status st = CheckKey(key); !st.ok()) return st;
  if (new_value_bytes > limits_.max_value_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("value of ", new_value_bytes,
                                                     " bytes for key ", Printable(key),
                                                     " exceeds --kv-max-value-bytes=",
                                                     limits_.max_value_bytes));
  }
  auto it = data_.find(key);
  const size_t old_bytes = it == data_.end() ? 0 : key.size() + it->second.size();
  if (it == data_.end() && data_.size() >= limits_.max_keys_per_job) {
    return absl::ResourceExhaustedError(absl::StrCat("job '", job_id_, "' already has ",
                                                     data_.size(), " keys (--kv-max-keys-per-job=",
                                                     limits_.max_keys_per_job, ")"));
  }
  if (bytes_ - old_bytes + key.size() + new_value_bytes > limits_.max_bytes_per_job) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "job '", job_id_, "' would hold ", bytes_ - old_bytes + key.size() + new_value_bytes,
        " bytes of keys and values (--kv-max-bytes-per-job=", limits_.max_bytes_per_job, ")"));
  }
  return absl::OkStatus();
}

void JobKv::Put(const std::string& key, std::string value, Effects& fx) {
  auto it = data_.find(key);
  if (it != data_.end()) {
    bytes_ -= key.size() + it->second.size();
    it->second = std::move(value);
  } else {
    it = data_.emplace(key, std::move(value)).first;
  }
  bytes_ += key.size() + it->second.size();
  Mutation m;
  m.kind = Mutation::Kind::kPutKv;
  m.kv = KvRecord{job_id_, key, it->second};
  fx.Persist(std::move(m));
  Release(key, fx);
}

void JobKv::Release(const std::string& key, Effects& fx) {
  auto w = waiting_on_.find(key);
  if (w == waiting_on_.end()) return;
  std::vector<uint64_t> ids = std::move(w->second);
  waiting_on_.erase(w);
  fx.Reserve(ids.size());
  const std::string& value = data_.at(key);
  for (uint64_t id : ids) {
    auto it = waiters_.find(id);
    if (it == waiters_.end()) continue;  // completed through another key, cancelled, timed out
    Waiter& waiter = it->second;
    if (waiter.is_get) {
      fx.Add([done = std::move(waiter.get_done), value]() mutable { done(value); });
      waiters_.erase(it);
    } else if (--waiter.remaining == 0) {
      // A key counted earlier may have been deleted since: Wait means "all exist now".
      std::vector<std::string> gone;
      for (const std::string& k : waiter.keys) {
        if (!data_.contains(k)) gone.push_back(k);
      }
      if (!gone.empty()) {
        waiter.remaining = gone.size();
        for (const std::string& k : gone) waiting_on_[k].push_back(id);
        continue;
      }
      fx.Add([done = std::move(waiter.wait_done)]() mutable { done(absl::OkStatus()); });
      waiters_.erase(it);
    }
  }
}

void JobKv::Set(std::string key, std::string value, StatusCallback done, Effects& fx) {
  absl::MutexLock l(&mu_);
  absl::Status st = failed_.ok() ? CheckPut(key, value.size()) : failed_;
  if (st.ok()) Put(key, std::move(value), fx);
  fx.Add([done = std::move(done), st]() mutable { done(st); });
  fx.Submit(store_);
}

uint64_t JobKv::Park(Waiter w, const std::vector<std::string>& missing, Effects& fx) {
  const uint64_t id = NextWaiterId();
  for (const std::string& k : missing) waiting_on_[k].push_back(id);
  if (w.timeout != absl::InfiniteDuration()) {
    Deadline d{AddDuration(clock_->Now(), w.timeout), DeadlineKind::kKvWaiter, job_id_ref_,
               job_uid_};
    d.waiter_id = id;
    deadlines_->Push(std::move(d));
  }
  waiters_.emplace(id, std::move(w));
  return id;
}

uint64_t JobKv::Get(const std::string& key, absl::Duration timeout, ValueCallback done,
                    Effects& fx) {
  absl::MutexLock l(&mu_);
  absl::Status st = failed_.ok() ? CheckKey(key) : failed_;
  if (st.ok()) {
    auto it = data_.find(key);
    if (it != data_.end()) {
      fx.Add([done = std::move(done), value = it->second]() mutable { done(value); });
      return 0;
    }
    if (timeout <= absl::ZeroDuration()) {
      st = absl::NotFoundError(
          absl::StrCat("key ", Printable(key), " is not set in job '", job_id_, "'"));
    }
  }
  if (!st.ok()) {
    fx.Add([done = std::move(done), st]() mutable { done(st); });
    return 0;
  }
  Waiter w;
  w.is_get = true;
  w.get_key = key;
  w.remaining = 1;
  w.timeout = timeout;
  w.get_done = std::move(done);
  return Park(std::move(w), {key}, fx);
}

uint64_t JobKv::Wait(const std::vector<std::string>& keys, absl::Duration timeout,
                     StatusCallback done, Effects& fx) {
  absl::MutexLock l(&mu_);
  absl::Status st = failed_;
  std::vector<std::string> missing;
  for (const std::string& k : keys) {
    if (!st.ok()) break;
    st = CheckKey(k);
    if (st.ok() && !data_.contains(k)) missing.push_back(k);
  }
  if (st.ok() && !missing.empty() && timeout <= absl::ZeroDuration()) {
    std::vector<std::string> shown;
    for (size_t i = 0; i < missing.size() && i < kMaxKeysListed; ++i) {
      shown.push_back(Printable(missing[i]));
    }
    st = absl::NotFoundError(absl::StrCat(missing.size(), " of ", keys.size(),
                                          " keys are not set in job '", job_id_,
                                          "': ", absl::StrJoin(shown, ", ")));
  }
  if (!st.ok() || missing.empty()) {
    fx.Add([done = std::move(done), st]() mutable { done(st); });
    return 0;
  }
  Waiter w;
  w.keys = keys;
  w.remaining = missing.size();
  w.timeout = timeout;
  w.wait_done = std::move(done);
  return Park(std::move(w), missing, fx);
}

void JobKv::Add(const std::string& key, int64_t delta,
                absl::AnyInvocable<void(absl::StatusOr<int64_t>)> done, Effects& fx) {
  absl::MutexLock l(&mu_);
  // (A StatusOr may not be built from an OK status: start from the failure or a placeholder.)
  absl::StatusOr<int64_t> result = failed_.ok() ? absl::InternalError("unset") : failed_;
  if (failed_.ok()) {
    int64_t current = 0;
    auto it = data_.find(key);
    if (it != data_.end() && !absl::SimpleAtoi(it->second, &current)) {
      result = absl::FailedPreconditionError(
          absl::StrCat("Add on key ", Printable(key), ": its value '",
                       absl::CHexEscape(it->second.substr(0, 32)),
                       "' is not a decimal int64"));
    } else {
      const int64_t next = static_cast<int64_t>(static_cast<uint64_t>(current) +
                                                static_cast<uint64_t>(delta));
      std::string text = std::to_string(next);
      absl::Status st = CheckPut(key, text.size());
      if (st.ok()) {
        Put(key, std::move(text), fx);
        result = next;
      } else {
        result = st;
      }
    }
  }
  fx.Add([done = std::move(done), result]() mutable { done(result); });
  fx.Submit(store_);
}

void JobKv::CompareSet(const std::string& key, const std::string& expected, std::string desired,
                       absl::AnyInvocable<void(absl::StatusOr<CompareSetResult>)> done,
                       Effects& fx) {
  absl::MutexLock l(&mu_);
  // (A StatusOr may not be built from an OK status: start from the failure or a placeholder.)
  absl::StatusOr<CompareSetResult> result = failed_.ok() ? absl::InternalError("unset") : failed_;
  if (failed_.ok()) {
    auto it = data_.find(key);
    const bool matches = it == data_.end() ? expected.empty() : it->second == expected;
    if (!matches) {
      result = CompareSetResult{it == data_.end() ? std::string() : it->second, false};
    } else {
      absl::Status st = CheckPut(key, desired.size());
      if (st.ok()) {
        result = CompareSetResult{desired, true};
        Put(key, std::move(desired), fx);
      } else {
        result = st;
      }
    }
  }
  fx.Add([done = std::move(done), result]() mutable { done(result); });
  fx.Submit(store_);
}

void JobKv::Delete(const std::string& key, absl::AnyInvocable<void(absl::StatusOr<bool>)> done,
                   Effects& fx) {
  absl::MutexLock l(&mu_);
  // (A StatusOr may not be built from an OK status: start from the failure or a placeholder.)
  absl::StatusOr<bool> result = failed_.ok() ? absl::InternalError("unset") : failed_;
  if (failed_.ok()) {
    auto it = data_.find(key);
    if (it == data_.end()) {
      result = false;
    } else {
      bytes_ -= key.size() + it->second.size();
      data_.erase(it);
      Mutation m;
      m.kind = Mutation::Kind::kDeleteKv;
      m.kv = KvRecord{job_id_, key, ""};
      fx.Persist(std::move(m));
      result = true;
    }
  }
  fx.Add([done = std::move(done), result]() mutable { done(result); });
  fx.Submit(store_);
}

absl::StatusOr<KvPage> JobKv::List(const std::string& prefix, const std::string& after,
                                   size_t limit) {
  if (limit == 0) {
    return absl::InvalidArgumentError("KV list page size must be >= 1");
  }
  absl::MutexLock l(&mu_);
  if (!failed_.ok()) return failed_;
  KvPage page;
  auto it = after.empty() ? data_.lower_bound(prefix) : data_.upper_bound(after);
  if (!after.empty() && after < prefix) it = data_.lower_bound(prefix);
  for (; it != data_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    if (page.entries.size() == limit) {
      page.more = true;
      page.next_after = page.entries.back().first;
      break;
    }
    page.entries.emplace_back(it->first, it->second);
  }
  return page;
}

absl::StatusOr<uint64_t> JobKv::NumKeys() {
  absl::MutexLock l(&mu_);
  if (!failed_.ok()) return failed_;
  return data_.size();
}

void JobKv::Finish(Waiter& w, absl::Status status, Effects& fx) {
  if (w.is_get) {
    fx.Add([done = std::move(w.get_done), status]() mutable { done(status); });
  } else {
    fx.Add([done = std::move(w.wait_done), status]() mutable { done(status); });
  }
}

void JobKv::Cancel(uint64_t waiter_id, Effects& fx) {
  absl::MutexLock l(&mu_);
  auto it = waiters_.find(waiter_id);
  if (it == waiters_.end()) return;
  Finish(it->second, absl::CancelledError("the blocked call was cancelled by its caller"), fx);
  waiters_.erase(it);  // its entries in waiting_on_ are skipped lazily
}

void JobKv::OnDeadline(uint64_t waiter_id, Effects& fx) {
  absl::MutexLock l(&mu_);
  auto it = waiters_.find(waiter_id);
  if (it == waiters_.end()) return;
  Waiter& w = it->second;
  std::string message;
  if (w.is_get) {
    message = absl::StrCat("key ", Printable(w.get_key), " of job '", job_id_,
                           "' was not set within ", Seconds(w.timeout));
  } else {
    std::vector<std::string> missing;
    size_t total_missing = 0;
    for (const std::string& k : w.keys) {
      if (data_.contains(k)) continue;
      ++total_missing;
      if (missing.size() < kMaxKeysListed) missing.push_back(Printable(k));
    }
    message = absl::StrCat("waited ", Seconds(w.timeout), " in job '", job_id_, "': ",
                           total_missing, " of ", w.keys.size(), " keys still missing: ",
                           absl::StrJoin(missing, ", "),
                           total_missing > missing.size()
                               ? absl::StrCat(" and ", total_missing - missing.size(), " more")
                               : "");
  }
  Finish(w, absl::DeadlineExceededError(message), fx);
  waiters_.erase(it);
}

void JobKv::Fail(const absl::Status& status, Effects& fx) {
  absl::MutexLock l(&mu_);
  if (!failed_.ok()) return;
  failed_ = status;
  for (auto& [id, w] : waiters_) Finish(w, status, fx);
  waiters_.clear();
  waiting_on_.clear();
}

void JobKv::Restore(const std::string& key, const std::string& value) {
  absl::MutexLock l(&mu_);
  bytes_ += key.size() + value.size();
  data_[key] = value;
}

}  // namespace ms_rendezvous::core
