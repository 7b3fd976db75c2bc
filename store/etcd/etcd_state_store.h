// EtcdStateStore: a StateStore (store/state_store.h) kept in an etcd 3.4 cluster, so that the
// daemon's durable state survives the loss of the daemon's machine and a standby daemon can take
// over (ms-rendezvousd --store=etcd; server/leader_election.h provides the fence, SetFence()).
//
// Layout under Options::prefix (see etcd_records.h): jobs/<job>, members/<job>/<role>/<node>,
// kv/<job>/<hex key>, each value a serialized record of store/etcd/records.proto with every
// field of its core record.
//
// Commit(): only enqueues. One store thread takes every queued batch, in submission order, and
// writes them as etcd transactions: consecutive batches share ONE txn while they fit under
// etcd's limits (Options::max_txn_ops operations, Options::max_request_bytes bytes), and one
// batch is never split across txns, so a batch is applied all at once or not at all. Their
// completions then run in submission order on the store thread (without the store's locks; they
// may call Commit(), must not destroy the store, and should be short). Several batches writing
// one key in one txn are reduced to the last write (TxnPlan), as etcd allows one write per key.
//
// A batch too large for one txn (a 10,000-member job completing writes 10,001 records) goes
// through a journal: the serialized batch is written in chunks under journal/chunks/, then ONE
// txn puts journal/commit (the commit point), then the batch's keys are written in as many txns
// as needed, then the journal is deleted. Load() applies a committed journal on top of what it
// reads, so the batch is still seen whole after a crash in between, and the store finishes
// writing it before any later batch.
//
// Retries and idempotence: every txn only puts and deletes fixed keys, so applying it twice
// leaves the same state as applying it once. A txn that fails with UNAVAILABLE or
// DEADLINE_EXCEEDED (etcd lost its quorum, a member died mid-call) is retried with backoff
// (50 ms doubling to 1 s), on the next endpoint, until the batch's commit timeout (measured from
// its Commit() call); then `done` gets UNAVAILABLE naming the endpoints and the last error.
//
// Crash contract (state_store.h): etcd holds a prefix of the submitted batches, always. A batch
// whose `done` got UNAVAILABLE may still have been applied (the txn may have reached etcd before
// the answer was lost), so such a batch and every later one are kept and written again, first,
// with the next batch that is committed: "not known durable", never "definitely not written",
// and no later batch is ever applied without it. (The daemon stops at the first store error
// anyway; this keeps the contract for any other caller.)
//
// Fencing: with a fence set, every txn also compares the fence key (its owning lease, or its
// create_revision) and applies nothing when that no longer holds; the batch's `done` then gets
// FAILED_PRECONDITION "fenced: this daemon is no longer the leader ..." and the batches behind it
// are dropped (another daemon owns the state now). The leader election sets the fence to its
// election key before the first Commit and keeps it while it leads.
//
// Errors that retrying cannot fix (etcd refuses the txn, e.g. a --max-txn-ops below
// Options::max_txn_ops) fail every waiting batch at once; a batch containing one record larger
// than the request size limit is refused (RESOURCE_EXHAUSTED) before anything of it is written.
#ifndef MS_RENDEZVOUS_STORE_ETCD_ETCD_STATE_STORE_H_
#define MS_RENDEZVOUS_STORE_ETCD_ETCD_STATE_STORE_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/etcd/etcd_client.h"
#include "store/state_store.h"

namespace ms_rendezvous::core {

// The condition every write of a fenced store depends on: `key` still belongs to the leader
// that set the fence.
struct EtcdFence {
  enum class Kind {
    kLease,           // `key` is attached to lease `value` (the leader's session lease)
    kCreateRevision,  // `key` still has create_revision `value` (not deleted and re-created)
  };
  Kind kind = Kind::kCreateRevision;
  std::string key;
  int64_t value = 0;

  static EtcdFence HeldByLease(std::string key, int64_t lease_id) {
    return EtcdFence{Kind::kLease, std::move(key), lease_id};
  }
  static EtcdFence CreatedAt(std::string key, int64_t create_revision) {
    return EtcdFence{Kind::kCreateRevision, std::move(key), create_revision};
  }
  // "key '/ms-rendezvous/leader' held by lease 7587..." / "... with create_revision 42".
  std::string Describe() const;
};

class EtcdStateStore final : public StateStore {
 public:
  struct Options {
    // Client URLs of the etcd members ("host:port" or "http://host:port").
    std::vector<std::string> endpoints;
    // TLS to etcd (PEM contents); off by default.
    etcd::EtcdClientOptions::Tls tls;
    // Every key of this store starts with it; must end with '/'. Stores with different prefixes
    // on one cluster never see each other's state (neither may be a prefix of the other plus
    // "jobs/", "members/", "kv/" or "journal/").
    std::string prefix = "/ms-rendezvous/";
    // Open() fails when no endpoint answers within this.
    absl::Duration dial_timeout = absl::Seconds(5);
    // A batch's `done` runs at the latest this long after its Commit() (plus one attempt's
    // slack when the store was busy with earlier batches).
    absl::Duration commit_timeout = absl::Seconds(10);
    // One txn attempt's deadline; a hung member costs at most this before the next one is tried.
    absl::Duration attempt_timeout = absl::Seconds(2);
    // Deadline of each page Load() reads.
    absl::Duration read_timeout = absl::Seconds(10);
    // etcd's --max-txn-ops (default 128) and --max-request-bytes (default 1.5 MiB). Set them to
    // the cluster's values; larger ones make etcd refuse the txns.
    size_t max_txn_ops = 128;
    size_t max_request_bytes = 1536 * 1024;
    // Keys per page in Load().
    int64_t load_page_size = 1000;
    // Set from the start (same as SetFence() before the first Commit()).
    std::optional<EtcdFence> fence;
  };

  // Connects (waits up to dial_timeout for some endpoint to answer). InvalidArgument for bad
  // options, Unavailable naming every endpoint when none answers.
  static absl::StatusOr<std::unique_ptr<EtcdStateStore>> Open(Options options);

  // Writes every queued batch (each gets its `done`, at the latest at its commit timeout), then
  // stops the store thread. Batches kept for a rewrite after a failure are dropped.
  ~EtcdStateStore() override;

  EtcdStateStore(const EtcdStateStore&) = delete;
  EtcdStateStore& operator=(const EtcdStateStore&) = delete;

  void Commit(std::vector<Mutation> batch, CommitCallback done) override;
  // Reads jobs/, members/, kv/ and journal/ at ONE etcd revision (the first page's), applies a
  // committed journal, and returns everything ordered as StoredState requires. DataLoss naming
  // the key for a value that is not a valid record or sits under the wrong key.
  absl::StatusOr<StoredState> Load() override;
  bool durable() const override { return true; }
  // "etcd:<endpoint>,<endpoint>,...<prefix>", e.g.
  // "etcd:10.0.0.1:2379,10.0.0.2:2379/ms-rendezvous/".
  std::string Describe() const override;

  // Every txn started after this call compares `fence` (nullopt: no fence).
  void SetFence(std::optional<EtcdFence> fence);
  std::optional<EtcdFence> fence() const;

  const Options& options() const { return options_; }
  etcd::EtcdClient& client() { return *client_; }

  // For tests and metrics.
  uint64_t transactions_committed() const { return transactions_committed_.load(); }
  uint64_t batches_committed() const { return batches_committed_.load(); }
  uint64_t journalled_batches() const { return journalled_batches_.load(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    std::vector<Mutation> batch;
    CommitCallback done;         // empty once the batch was answered (kept for a rewrite)
    Clock::time_point deadline;  // when `done` must have run
    // Read back from a journal left by an earlier process: whichever txn writes it must also
    // delete that journal (else a later Load() would apply it again, over newer batches).
    bool from_journal = false;
  };
  struct Attempt;

  EtcdStateStore(Options options, std::unique_ptr<etcd::EtcdClient> client);

  void StoreLoop();
  // Writes work[0..n) as one txn, or work[0] alone through the journal, working to `deadline`.
  // Returns n (>= 1) and the outcome.
  std::pair<size_t, Attempt> WriteNext(std::deque<Pending>& work, Clock::time_point deadline);
  // One txn (ops + the fence), retried until `deadline`.
  Attempt RunTxn(const std::vector<etcdserverpb::RequestOp>& ops, Clock::time_point deadline);
  // As many txns as the limits require, in order.
  Attempt RunTxns(const std::vector<etcdserverpb::RequestOp>& ops, Clock::time_point deadline);
  Attempt WriteJournalled(const std::vector<Mutation>& batch, Clock::time_point deadline);
  // Reads the journal at `revision` (0: the newest); the committed batch, if there is one.
  absl::StatusOr<std::optional<std::vector<Mutation>>> ReadJournal(int64_t revision,
                                                                   int64_t* read_revision);
  size_t RequestBudget() const;
  bool HasWork() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); }

  const Options options_;
  const std::unique_ptr<etcd::EtcdClient> client_;

  mutable absl::Mutex fence_mu_;
  std::optional<EtcdFence> fence_ ABSL_GUARDED_BY(fence_mu_);

  absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Whether a journal left by an earlier process was looked for (by Load(), or by the store
  // thread before its first write when Load() was not called). One found is handed to the store
  // thread at queue_'s front, answered already, to be written before anything else.
  bool journal_checked_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;

  std::atomic<uint64_t> transactions_committed_{0};
  std::atomic<uint64_t> batches_committed_{0};
  std::atomic<uint64_t> journalled_batches_{0};
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_STORE_ETCD_ETCD_STATE_STORE_H_
