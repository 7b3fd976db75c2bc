#include "store/etcd/etcd_state_store.h"

#include <algorithm>
#include <map>
#include <random>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "store/etcd/etcd_records.h"
#include "store/etcd/txn_plan.h"
#include "store/memory_state_store.h"

namespace ms_rendezvous::core {
namespace {

using etcd::EtcdClient;
using etcd_store::EtcdKeys;
using etcd_store::KeyOp;
using etcd_store::TxnPlan;

// Room left in every request for the compare, the failure branch and etcd's own envelope around
// the txn (its raft entry header); the operations get the rest of max_request_bytes.
constexpr size_t kRequestReserveBytes = 8 * 1024;

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);
// The shortest deadline an attempt gets, even when the batch's own deadline is closer.
constexpr absl::Duration kMinAttempt = absl::Milliseconds(100);

// Errors after which the same txn may succeed later: etcd lost its leader or quorum ("no
// leader", "request timed out", "leader changed"), a member went away, or it sheds load ("too
// many requests").
bool Retryable(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

absl::Duration ToAbsl(std::chrono::steady_clock::duration d) {
  return absl::FromChrono(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
}

std::string Printable(absl::string_view key) { return absl::CHexEscape(key); }

// How the write of the front of the queue ended.
enum class Outcome {
  kOk,
  kRefused,    // the first batch can never be written; nothing of it was
  kFenced,     // the fence compare failed; nothing was written by that txn
  kRetryable,  // etcd stayed unavailable until the deadline (the last txn may have applied)
  kPermanent,  // etcd refused the txn; retrying will not help
};

}  // namespace

// One write's result, with how to treat it.
struct EtcdStateStore::Attempt {
  Outcome outcome = Outcome::kOk;
  absl::Status status;
};

std::string EtcdFence::Describe() const {
  switch (kind) {
    case Kind::kLease:
      return absl::StrCat("key '", Printable(key), "' held by lease ", value);
    case Kind::kCreateRevision:
      return absl::StrCat("key '", Printable(key), "' with create_revision ", value);
  }
  return "";
}

EtcdStateStore::EtcdStateStore(Options options, std::unique_ptr<etcd::EtcdClient> client)
    : options_(std::move(options)), client_(std::move(client)) {
  fence_ = options_.fence;
}

absl::StatusOr<std::unique_ptr<EtcdStateStore>> EtcdStateStore::Open(Options options) {
  if (options.prefix.empty() || options.prefix.back() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd state store: prefix '", Printable(options.prefix),
                     "' must be non-empty and end with '/' (e.g. /ms-rendezvous/)"));
  }
  if (options.max_txn_ops < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd state store: max_txn_ops ", options.max_txn_ops, " is below 2"));
  }
  if (options.max_request_bytes < 4 * kRequestReserveBytes) {
    return absl::InvalidArgumentError(absl::StrCat("etcd state store: max_request_bytes ",
                                                   options.max_request_bytes, " is below ",
                                                   4 * kRequestReserveBytes));
  }
  if (options.commit_timeout <= absl::ZeroDuration() ||
      options.attempt_timeout <= absl::ZeroDuration() ||
      options.read_timeout <= absl::ZeroDuration() || options.load_page_size < 1) {
    return absl::InvalidArgumentError(
        "etcd state store: commit, attempt and read timeouts and the page size must be positive");
  }
  etcd::EtcdClientOptions copts;
  copts.endpoints = options.endpoints;
  copts.dial_timeout = options.dial_timeout;
  copts.call_timeout = options.attempt_timeout;
  copts.tls = options.tls;
  absl::StatusOr<std::unique_ptr<EtcdClient>> client = EtcdClient::Create(std::move(copts));
  if (!client.ok()) return client.status();
  if (absl::Status s = (*client)->Connect(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("etcd state store: ", s.message()));
  }
  std::unique_ptr<EtcdStateStore> store(new EtcdStateStore(std::move(options), *std::move(client)));
  store->thread_ = std::thread([raw = store.get()] { raw->StoreLoop(); });
  return store;
}

EtcdStateStore::~EtcdStateStore() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::string EtcdStateStore::Describe() const {
  return absl::StrCat("etcd:", client_->EndpointList(), options_.prefix);
}

void EtcdStateStore::SetFence(std::optional<EtcdFence> fence) {
  absl::MutexLock l(&fence_mu_);
  fence_ = std::move(fence);
}

std::optional<EtcdFence> EtcdStateStore::fence() const {
  absl::MutexLock l(&fence_mu_);
  return fence_;
}

size_t EtcdStateStore::RequestBudget() const {
  return options_.max_request_bytes - kRequestReserveBytes;
}

void EtcdStateStore::Commit(std::vector<Mutation> batch, CommitCallback done) {
  const Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(
                         absl::ToChronoNanoseconds(options_.commit_timeout));
  absl::MutexLock l(&mu_);
  queue_.push_back(Pending{std::move(batch), std::move(done), deadline});
}

// ---- the store thread -------------------------------------------------------------------------

void EtcdStateStore::StoreLoop() {
  // Batches in submission order: the front ones may have been answered already (kept because a
  // txn of theirs may have applied, see the header), the rest still wait for their `done`.
  std::deque<Pending> work;
  auto waiting = [&work] {
    return std::any_of(work.begin(), work.end(), [](const Pending& p) { return bool(p.done); });
  };
  // Answers every waiting batch for which `pred` holds; keeps them all for a rewrite.
  auto answer = [&work](const absl::Status& status, auto pred) {
    for (Pending& p : work) {
      if (p.done && pred(p)) {
        CommitCallback done = std::move(p.done);
        p.done = nullptr;
        done(status);
      }
    }
  };

  for (;;) {
    bool check_journal = false;
    {
      absl::MutexLock l(&mu_);
      if (!waiting()) mu_.Await(absl::Condition(this, &EtcdStateStore::HasWork));
      while (!queue_.empty()) {
        work.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (stopping_ && !waiting()) return;  // kept batches are dropped
      if (!waiting()) continue;             // only kept batches: write them with the next new one
      check_journal = !journal_checked_;
    }

    // The deadline a write of the front works to: the earliest of the waiting batches (they
    // were submitted in order, so it is the first one's), as none can be answered before it.
    auto front_deadline = [&work]() {
      for (const Pending& p : work) {
        if (p.done) return p.deadline;
      }
      return Clock::now();
    };

    if (check_journal) {
      // Load() was not called: a batch journalled by an earlier process must still be finished
      // before anything else is written.
      int64_t revision = 0;
      absl::StatusOr<std::optional<std::vector<Mutation>>> journal = ReadJournal(0, &revision);
      if (!journal.ok()) {
        if (Clock::now() < front_deadline()) {
          absl::SleepFor(kFirstBackoff);
          continue;
        }
        const absl::Status failed(
            Retryable(journal.status()) ? absl::StatusCode::kUnavailable : journal.status().code(),
            absl::StrCat("etcd state store: cannot read the journal: ",
                         journal.status().message()));
        const Clock::time_point now = Clock::now();
        answer(failed, [now](const Pending& p) { return p.deadline <= now; });
        continue;
      }
      absl::MutexLock l(&mu_);
      if (!journal_checked_ && journal->has_value()) {
        work.push_front(Pending{**std::move(journal), nullptr, Clock::now(), true});
      }
      journal_checked_ = true;
    }

    while (!work.empty()) {
      const Clock::time_point deadline = front_deadline();
      auto [n, attempt] = WriteNext(work, deadline);
      if (attempt.outcome == Outcome::kOk) {
        batches_committed_.fetch_add(n);
        for (size_t i = 0; i < n; ++i) {
          CommitCallback done = std::move(work.front().done);
          work.pop_front();
          if (done) done(absl::OkStatus());
        }
        continue;
      }
      if (attempt.outcome == Outcome::kRefused) {
        CommitCallback done = std::move(work.front().done);
        work.pop_front();
        if (done) done(attempt.status);
        continue;
      }
      if (attempt.outcome == Outcome::kFenced) {
        // Another daemon owns the state: nothing waiting may be written by this one.
        const absl::Status behind = absl::FailedPreconditionError(
            absl::StrCat("not written: an earlier batch was fenced: ", attempt.status.message()));
        for (size_t i = 0; i < work.size(); ++i) {
          if (work[i].done) work[i].done(i < n ? attempt.status : behind);
        }
        work.clear();
        break;
      }
      if (attempt.outcome == Outcome::kPermanent) {
        answer(attempt.status, [](const Pending&) { return true; });
        break;
      }
      // kRetryable: the batches whose deadline passed get UNAVAILABLE; the others are retried
      // right away (with the front ones, which must be written first).
      const Clock::time_point now = Clock::now();
      answer(attempt.status, [now](const Pending& p) { return p.deadline <= now; });
      break;
    }
  }
}

std::pair<size_t, EtcdStateStore::Attempt> EtcdStateStore::WriteNext(std::deque<Pending>& work,
                                                                     Clock::time_point deadline) {
  const EtcdKeys keys(options_.prefix);
  const size_t budget = RequestBudget();
  const size_t max_ops = options_.max_txn_ops;

  std::vector<KeyOp> first;
  for (const Mutation& m : work.front().batch) {
    for (KeyOp& op : etcd_store::ToKeyOps(keys, m)) first.push_back(std::move(op));
  }
  if (work.front().from_journal) {
    // The batch of an earlier process's journal: the txn that applies it retires the journal.
    first.push_back(KeyOp{KeyOp::Kind::kDeleteRange, keys.JournalPrefix(), "",
                          EtcdClient::PrefixEnd(keys.JournalPrefix())});
  }
  for (const KeyOp& op : first) {
    const size_t bytes =
        op.key.size() + op.value.size() + op.range_end.size() + TxnPlan::kOpOverheadBytes;
    if (bytes > budget) {
      return {1, Attempt{Outcome::kRefused,
                         absl::ResourceExhaustedError(absl::StrCat(
                             "etcd state store: a record of ", bytes, " bytes (key '",
                             Printable(op.key), "') exceeds etcd's request limit of ",
                             options_.max_request_bytes,
                             " bytes (--max-request-bytes); the batch was not written"))}};
    }
  }

  TxnPlan plan;
  plan.Add(first);
  TxnPlan::Size planned = plan.SingleTxnSize();
  if (planned.ops > max_ops || planned.bytes > budget) {
    return {1, WriteJournalled(work.front().batch, deadline)};
  }
  // Add the following batches while they fit: by the cheap upper bound while it allows, else by
  // measuring the plan with the batch added (the bound counts every put twice, as if each cut a
  // deleted range; measuring near the limit packs about twice as many batches per txn).
  size_t n = 1;
  while (n < work.size()) {
    std::vector<KeyOp> ops;
    for (const Mutation& m : work[n].batch) {
      for (KeyOp& op : etcd_store::ToKeyOps(keys, m)) ops.push_back(std::move(op));
    }
    const TxnPlan::Size more = TxnPlan::UpperBound(ops);
    if (planned.ops + more.ops <= max_ops && planned.bytes + more.bytes <= budget) {
      plan.Add(ops);
      planned.ops += more.ops;
      planned.bytes += more.bytes;
    } else {
      TxnPlan trial = plan;
      trial.Add(ops);
      const TxnPlan::Size exact = trial.SingleTxnSize();
      if (exact.ops > max_ops || exact.bytes > budget) break;
      plan = std::move(trial);
      planned = exact;
    }
    ++n;
  }
  if (plan.empty()) return {n, Attempt{}};  // batches without mutations: nothing to write
  return {n, RunTxn(plan.SingleTxnOps(), deadline)};
}

EtcdStateStore::Attempt EtcdStateStore::RunTxn(const std::vector<etcdserverpb::RequestOp>& ops,
                                               Clock::time_point deadline) {
  etcdserverpb::TxnRequest req;
  for (const etcdserverpb::RequestOp& op : ops) *req.add_success() = op;
  absl::Duration backoff = kFirstBackoff;
  absl::Status last;
  for (int attempt = 0;; ++attempt) {
    // The fence as of this attempt (a leader may renew it between attempts).
    const std::optional<EtcdFence> fence = this->fence();
    req.clear_compare();
    req.clear_failure();
    if (fence.has_value()) {
      etcdserverpb::Compare* c = req.add_compare();
      c->set_result(etcdserverpb::Compare::EQUAL);
      c->set_key(fence->key);
      if (fence->kind == EtcdFence::Kind::kLease) {
        c->set_target(etcdserverpb::Compare::LEASE);
        c->set_lease(fence->value);
      } else {
        c->set_target(etcdserverpb::Compare::CREATE);
        c->set_create_revision(fence->value);
      }
      // When the compare fails, read the key: the error says who holds it now.
      req.add_failure()->mutable_request_range()->set_key(fence->key);
    }
    const absl::Duration left = ToAbsl(deadline - Clock::now());
    const absl::Duration timeout = std::min(options_.attempt_timeout, std::max(left, kMinAttempt));
    absl::StatusOr<etcdserverpb::TxnResponse> resp = client_->Txn(req, timeout);
    if (resp.ok()) {
      if (resp->succeeded()) {
        transactions_committed_.fetch_add(1);
        return Attempt{};
      }
      std::string now_held = "it does not exist";
      if (resp->responses_size() > 0 && resp->responses(0).has_response_range() &&
          resp->responses(0).response_range().kvs_size() > 0) {
        const mvccpb::KeyValue& kv = resp->responses(0).response_range().kvs(0);
        now_held = absl::StrCat("it now has create_revision ", kv.create_revision(), " and lease ",
                                kv.lease());
      }
      return Attempt{Outcome::kFenced,
                     absl::FailedPreconditionError(absl::StrCat(
                         "fenced: this daemon is no longer the leader: the write required ",
                         fence.has_value() ? fence->Describe() : "its fence", ", but ", now_held,
                         "; nothing was written"))};
    }
    last = resp.status();
    if (!Retryable(last)) {
      return Attempt{
          Outcome::kPermanent,
          absl::Status(last.code(), absl::StrCat("etcd state store: etcd refused a txn "
                                                 "of ",
                                                 ops.size(), " operations: ", last.message()))};
    }
    if (Clock::now() + absl::ToChronoNanoseconds(backoff) >= deadline) break;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
  return Attempt{
      Outcome::kRetryable,
      absl::UnavailableError(absl::StrCat(
          "etcd state store: not committed within ", absl::FormatDuration(options_.commit_timeout),
          " (commit timeout) to etcd at ", client_->EndpointList(), ": ", last.message()))};
}

EtcdStateStore::Attempt EtcdStateStore::RunTxns(const std::vector<etcdserverpb::RequestOp>& ops,
                                                Clock::time_point deadline) {
  const size_t budget = RequestBudget();
  std::vector<etcdserverpb::RequestOp> txn;
  size_t bytes = 0;
  for (const etcdserverpb::RequestOp& op : ops) {
    const size_t b = etcd_store::EncodedOpBytes(op);
    if (!txn.empty() && (txn.size() + 1 > options_.max_txn_ops || bytes + b > budget)) {
      Attempt a = RunTxn(txn, deadline);
      if (a.outcome != Outcome::kOk) return a;
      txn.clear();
      bytes = 0;
    }
    txn.push_back(op);
    bytes += b;
  }
  if (!txn.empty()) return RunTxn(txn, deadline);
  return Attempt{};
}

EtcdStateStore::Attempt EtcdStateStore::WriteJournalled(const std::vector<Mutation>& batch,
                                                        Clock::time_point deadline) {
  const EtcdKeys keys(options_.prefix);
  // 1. The serialized batch, in chunks of one txn each. Harmless until the commit point: Load()
  // ignores chunks without journal/commit, and the last step deletes them.
  const std::string bytes = etcd_store::EncodeBatch(batch);
  const size_t chunk_size = RequestBudget() - 1024;
  etcd_store::JournalCommitInfo info;
  info.id = std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32);
  info.bytes = bytes.size();
  std::vector<etcdserverpb::RequestOp> staged;
  for (size_t at = 0; at < bytes.size(); at += chunk_size) {
    etcdserverpb::RequestOp op;
    op.mutable_request_put()->set_key(keys.JournalChunk(info.id, info.chunks++));
    op.mutable_request_put()->set_value(bytes.substr(at, chunk_size));
    staged.push_back(std::move(op));
  }
  Attempt a = RunTxns(staged, deadline);
  if (a.outcome != Outcome::kOk) return a;

  // 2. The commit point. A journal/commit of an earlier attempt of the same batch may exist
  // (that attempt timed out after it); it is replaced by this one, which describes the same
  // batch, in one txn.
  etcdserverpb::RequestOp commit;
  commit.mutable_request_put()->set_key(keys.JournalCommit());
  commit.mutable_request_put()->set_value(etcd_store::EncodeJournalCommit(info));
  a = RunTxn({commit}, deadline);
  if (a.outcome != Outcome::kOk) return a;

  // 3. The batch's own writes: whole range deletes first, then the keys (a put inside a range
  // deleted in the same txn is not allowed, and in separate txns the order gives the same
  // result). Intermediate states are hidden: Load() applies the journal on top of them.
  TxnPlan plan;
  for (const Mutation& m : batch) plan.Add(etcd_store::ToKeyOps(keys, m));
  a = RunTxns(plan.RangeDeleteOps(), deadline);
  if (a.outcome != Outcome::kOk) return a;
  a = RunTxns(plan.PointOps(), deadline);
  if (a.outcome != Outcome::kOk) return a;

  // 4. Done: the journal goes (chunks of earlier, uncommitted attempts with it).
  etcdserverpb::RequestOp clear;
  clear.mutable_request_delete_range()->set_key(keys.JournalPrefix());
  clear.mutable_request_delete_range()->set_range_end(EtcdClient::PrefixEnd(keys.JournalPrefix()));
  a = RunTxn({clear}, deadline);
  if (a.outcome == Outcome::kOk) journalled_batches_.fetch_add(1);
  return a;
}

absl::StatusOr<std::optional<std::vector<Mutation>>> EtcdStateStore::ReadJournal(
    int64_t revision, int64_t* read_revision) {
  const EtcdKeys keys(options_.prefix);
  const std::string commit_key = keys.JournalCommit();
  std::optional<std::string> commit;
  std::map<std::string, std::string> chunks;
  absl::StatusOr<int64_t> rev = client_->RangeAll(
      keys.JournalPrefix(), EtcdClient::PrefixEnd(keys.JournalPrefix()), revision,
      options_.load_page_size, options_.read_timeout, [&](const mvccpb::KeyValue& kv) {
        if (kv.key() == commit_key) {
          commit = kv.value();
        } else {
          chunks.emplace(kv.key(), kv.value());
        }
        return absl::OkStatus();
      });
  if (!rev.ok()) return rev.status();
  *read_revision = *rev;
  if (!commit.has_value()) return std::optional<std::vector<Mutation>>();
  absl::StatusOr<etcd_store::JournalCommitInfo> info =
      etcd_store::DecodeJournalCommit(*commit, commit_key);
  if (!info.ok()) return info.status();
  std::string bytes;
  for (uint32_t i = 0; i < info->chunks; ++i) {
    auto it = chunks.find(keys.JournalChunk(info->id, i));
    if (it == chunks.end()) {
      return absl::DataLossError(absl::StrCat("etcd state store: ", Printable(commit_key),
                                              " names ", info->chunks, " chunks but chunk ", i,
                                              " (", Printable(keys.JournalChunk(info->id, i)),
                                              ") is missing"));
    }
    bytes += it->second;
  }
  if (bytes.size() != info->bytes) {
    return absl::DataLossError(absl::StrCat("etcd state store: the journalled batch has ",
                                            bytes.size(), " bytes, its commit record says ",
                                            info->bytes));
  }
  absl::StatusOr<std::vector<Mutation>> batch = etcd_store::DecodeBatch(bytes);
  if (!batch.ok()) return batch.status();
  return std::optional<std::vector<Mutation>>(*std::move(batch));
}

// ---- Load -------------------------------------------------------------------------------------

absl::StatusOr<StoredState> EtcdStateStore::Load() {
  const EtcdKeys keys(options_.prefix);
  std::map<std::string, JobRecord> jobs;
  std::map<MemoryStateStore::MemberKey, MemberRecord> members;
  std::map<MemoryStateStore::KvKey, std::string> kv;
  std::optional<std::vector<Mutation>> journal;
  auto misplaced = [](absl::string_view key, absl::string_view expected) {
    return absl::DataLossError(absl::StrCat("etcd state store: key '", Printable(key),
                                            "' holds a record that belongs under '",
                                            Printable(expected), "'"));
  };
  auto scan = [&](const std::string& prefix, int64_t revision,
                  const std::function<absl::Status(const mvccpb::KeyValue&)>& visit) {
    return client_->RangeAll(prefix, EtcdClient::PrefixEnd(prefix), revision,
                             options_.load_page_size, options_.read_timeout, visit);
  };

  absl::Status failed;
  // A compaction between two pages makes the revision unreadable (OutOfRange): start over at
  // the newest revision.
  for (int round = 0; round < 3; ++round) {
    jobs.clear();
    members.clear();
    kv.clear();
    journal.reset();
    absl::StatusOr<int64_t> revision =
        scan(keys.JobsPrefix(), 0, [&](const mvccpb::KeyValue& e) -> absl::Status {
          absl::StatusOr<JobRecord> j = etcd_store::DecodeJob(e.value(), e.key());
          if (!j.ok()) return j.status();
          const std::string expected = keys.Job(j->job_id);
          if (e.key() != expected) return misplaced(e.key(), expected);
          jobs[j->job_id] = *std::move(j);
          return absl::OkStatus();
        });
    if (revision.ok()) {
      revision =
          scan(keys.MembersPrefix(), *revision, [&](const mvccpb::KeyValue& e) -> absl::Status {
            absl::StatusOr<MemberRecord> m = etcd_store::DecodeMember(e.value(), e.key());
            if (!m.ok()) return m.status();
            const std::string expected = keys.Member(m->job_id, m->role, m->node_id);
            if (e.key() != expected) return misplaced(e.key(), expected);
            MemoryStateStore::MemberKey k(m->job_id, static_cast<int>(m->role), m->node_id);
            members[std::move(k)] = *std::move(m);
            return absl::OkStatus();
          });
    }
    if (revision.ok()) {
      revision = scan(keys.KvPrefix(), *revision, [&](const mvccpb::KeyValue& e) -> absl::Status {
        absl::StatusOr<KvRecord> r = etcd_store::DecodeKv(e.value(), e.key());
        if (!r.ok()) return r.status();
        const std::string expected = keys.Kv(r->job_id, r->key);
        if (e.key() != expected) return misplaced(e.key(), expected);
        kv[MemoryStateStore::KvKey(r->job_id, r->key)] = std::move(r->value);
        return absl::OkStatus();
      });
    }
    if (revision.ok()) {
      int64_t read_at = 0;
      absl::StatusOr<std::optional<std::vector<Mutation>>> j = ReadJournal(*revision, &read_at);
      if (j.ok()) {
        journal = *std::move(j);
      } else {
        revision = j.status();
      }
    }
    if (revision.ok()) {
      failed = absl::OkStatus();
      break;
    }
    failed = revision.status();
    if (failed.code() != absl::StatusCode::kOutOfRange) break;
  }
  if (!failed.ok()) {
    if (absl::StartsWith(failed.message(), "etcd state store")) return failed;
    return absl::Status(failed.code(),
                        absl::StrCat("etcd state store: cannot load: ", failed.message()));
  }

  if (journal.has_value()) {
    // A committed batch whose own keys may be partly written: it is part of the state.
    for (const Mutation& m : *journal) MemoryStateStore::Apply(m, jobs, members, kv);
    absl::MutexLock l(&mu_);
    if (!journal_checked_) {
      // The store thread writes it again, before any new batch.
      queue_.push_front(Pending{*journal, nullptr, Clock::now(), true});
    }
  }
  {
    absl::MutexLock l(&mu_);
    journal_checked_ = true;
  }

  StoredState out;
  out.jobs.reserve(jobs.size());
  for (auto& [id, job] : jobs) out.jobs.push_back(std::move(job));
  out.members.reserve(members.size());
  for (auto& [key, member] : members) out.members.push_back(std::move(member));
  out.kv.reserve(kv.size());
  for (auto& [key, value] : kv) out.kv.push_back(KvRecord{key.first, key.second, std::move(value)});
  return out;
}

}  // namespace ms_rendezvous::core
