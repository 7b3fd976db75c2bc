// SqliteStateStore: the embedded durable StateStore of a daemon started with --state-dir.
//
// Layout: <state_dir>/ms-rendezvous.db (+ -wal, -shm while open) and <state_dir>/LOCK. Open()
// creates the directory (0700) when missing and takes an exclusive flock on LOCK for the life of
// the store, so two daemons can never share a state dir (the second Open fails and says so).
//
// Durability: WAL journal, synchronous=FULL. With FULL, every COMMIT fsyncs the WAL before it
// returns, so an acknowledged batch survives power loss and kernel crashes, not only kill -9
// (synchronous=NORMAL in WAL mode would survive kill -9 but may lose the last commits on power
// loss: not acceptable for acknowledgements).
//
// Group commit: Commit() only enqueues and returns. One writer thread takes every batch queued
// so far, writes them in ONE transaction (BEGIN IMMEDIATE ... COMMIT, batches in submission
// order), then runs their completions in submission order on that thread. Under a storm of
// single-mutation batches the cost is a few fsyncs, not one per batch. Completions may call
// Commit() (they run without the store's locks held); they must not destroy the store, and
// should be short: the next group is written only after they return.
//
// Errors: if any statement or the COMMIT of a group fails, the transaction is rolled back and
// every completion of that group gets absl::UnavailableError naming the database path and
// SQLite's message; later batches are still attempted. An error means "not known durable": after
// an I/O error during COMMIT itself, a crash may still recover that group (SQLite cannot always
// tell), so callers treat it as an unknown outcome, never as "definitely not written".
//
// Crash contract (see state_store.h): Load() after a crash returns a prefix of the submitted
// batches that includes every acknowledged one; a batch is never partially visible (a group is
// one SQLite transaction).
//
// Schema: table schema_version (one row), jobs (PK job_id), members (PK job_id, role, node_id),
// both WITHOUT ROWID, one column per JobRecord/MemberRecord field. uint64 values are stored as
// their two's-complement int64 bit pattern (exact round trip). A database written by a newer
// schema version is refused with a clear error (never silently downgraded).
#ifndef MS_RENDEZVOUS_STORE_SQLITE_STATE_STORE_H_
#define MS_RENDEZVOUS_STORE_SQLITE_STATE_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "store/state_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace ms_rendezvous::core {

class SqliteStateStore final : public StateStore {
 public:
  // The schema version this build writes and the newest it can read.
  static constexpr int kSchemaVersion = 2;
  // The database file inside the state dir.
  static constexpr const char* kDatabaseFile = "ms-rendezvous.db";
  // The lock file inside the state dir (flock; holds the owner's pid for the error message).
  static constexpr const char* kLockFile = "LOCK";

  struct Options {
    // Test hook: called on the writer thread after a group's COMMIT succeeded and before any of
    // its completions runs (the crash test SIGKILLs itself here). Argument: batches in the group.
    std::function<void(size_t batches_in_group)> after_write_before_ack;
  };

  // Opens (creating when missing) the store in `state_dir`. Errors name the path and the reason:
  // FailedPrecondition when another ms-rendezvousd holds the state dir, when the path is not a
  // directory, or when the database has a newer schema; PermissionDenied / Unavailable /
  // DataLoss for filesystem and SQLite failures.
  static absl::StatusOr<std::unique_ptr<SqliteStateStore>> Open(const std::string& state_dir,
                                                                Options options = Options());

  // Commits everything queued (running its completions), stops the writer thread, closes the
  // database (checkpointing the WAL) and releases the state-dir lock.
  ~SqliteStateStore() override;

  SqliteStateStore(const SqliteStateStore&) = delete;
  SqliteStateStore& operator=(const SqliteStateStore&) = delete;

  void Commit(std::vector<Mutation> batch, CommitCallback done) override;
  absl::StatusOr<StoredState> Load() override;
  bool durable() const override { return true; }
  std::string Describe() const override;

  const std::string& state_dir() const { return state_dir_; }
  const std::string& db_path() const { return db_path_; }

  // For tests and metrics: transactions (groups) committed successfully, and batches in them.
  uint64_t transactions_committed() const { return transactions_committed_.load(); }
  uint64_t batches_committed() const { return batches_committed_.load(); }

 private:
  struct Pending {
    std::vector<Mutation> batch;
    CommitCallback done;
  };
  struct Statements;

  SqliteStateStore(std::string state_dir, Options options);

  absl::Status Init(int lock_fd, sqlite3* db);  // prepares statements, starts the writer
  void WriterLoop();
  absl::Status WriteGroup(const std::deque<Pending>& group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status Apply(const Mutation& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  bool HasWorkOrStopping() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
  }

  const std::string state_dir_;
  const std::string db_path_;
  const Options options_;
  int lock_fd_ = -1;

  // The connection: used by the writer thread for groups and by Load().
  absl::Mutex db_mu_;
  sqlite3* db_ ABSL_GUARDED_BY(db_mu_) = nullptr;
  std::unique_ptr<Statements> stmts_ ABSL_GUARDED_BY(db_mu_);

  absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;

  std::atomic<uint64_t> transactions_committed_{0};
  std::atomic<uint64_t> batches_committed_{0};
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_STORE_SQLITE_STATE_STORE_H_
