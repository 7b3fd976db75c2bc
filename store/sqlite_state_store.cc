#include "store/sqlite_state_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace ms_rendezvous::core {
namespace {

constexpr int kBusyTimeoutMs = 5000;

// The last enumerators (Load() rejects stored values beyond them as corrupt). Update with
// core/types.h.
constexpr JobState kLastJobState = JobState::kDegraded;
constexpr MemberState kLastMemberState = MemberState::kDead;

// Tripwire: a field added to JobRecord / MemberRecord must get a column, a bind in Apply() and a
// read in Load(); these mirrors (the field lists as stored) then no longer match in size. (Not
// exhaustive: a small field can hide in padding; the round-trip test sets every field.)
struct JobRecordAsStored {
  std::string job_id;
  uint64_t generation;
  uint32_t worker_num, server_num;
  int64_t topo_timeout_ms, node_timeout_ms;
  bool recovery_enabled;
  JobState state;
  std::string failure_reason;
  std::string token_digest;
};
struct MemberRecordAsStored {
  std::string job_id;
  Role role;
  std::string node_id, host, host_name;
  int32_t device_id;
  std::string device_ip;
  uint64_t incarnation;
  std::string credential;
  MemberState state;
  std::string reason;
  std::optional<uint32_t> rank;
  uint32_t local_rank, local_world_size, node_rank, num_nodes;
};
static_assert(sizeof(JobRecord) == sizeof(JobRecordAsStored),
              "JobRecord changed: update the jobs table, Apply() and Load()");
static_assert(sizeof(MemberRecord) == sizeof(MemberRecordAsStored),
              "MemberRecord changed: update the members table, Apply() and Load()");

// Schema v2 (v1 plus jobs.token_digest and members.credential). WITHOUT ROWID: the primary key is the storage order, which is also Load()'s order
// (BINARY collation = memcmp = std::string's order).
constexpr const char* kCreateSchema = R"sql(
CREATE TABLE schema_version (
  version INTEGER NOT NULL
);
CREATE TABLE jobs (
  job_id           TEXT    NOT NULL PRIMARY KEY,
  generation       INTEGER NOT NULL,  -- uint64 as int64 bit pattern
  worker_num       INTEGER NOT NULL,
  server_num       INTEGER NOT NULL,
  topo_timeout_ms  INTEGER NOT NULL,
  node_timeout_ms  INTEGER NOT NULL,
  recovery_enabled INTEGER NOT NULL,  -- 0 / 1
  state            INTEGER NOT NULL,  -- JobState
  failure_reason   TEXT    NOT NULL,
  token_digest     TEXT    NOT NULL DEFAULT ''  -- v2: SHA-256 of MS_JOB_TOKEN, '' for none
) WITHOUT ROWID;
CREATE TABLE members (
  job_id           TEXT    NOT NULL,
  role             INTEGER NOT NULL,  -- Role
  node_id          TEXT    NOT NULL,
  host             TEXT    NOT NULL,
  host_name        TEXT    NOT NULL,
  device_id        INTEGER NOT NULL,
  incarnation      INTEGER NOT NULL,  -- uint64 as int64 bit pattern
  state            INTEGER NOT NULL,  -- MemberState
  reason           TEXT    NOT NULL,  -- why dead / failed
  rank             INTEGER,           -- NULL until the job is complete
  local_rank       INTEGER NOT NULL,
  local_world_size INTEGER NOT NULL,
  node_rank        INTEGER NOT NULL,
  num_nodes        INTEGER NOT NULL,
  device_ip        TEXT    NOT NULL,  -- MS_DEVICE_IP, '' when unknown
  credential       TEXT    NOT NULL DEFAULT '',  -- v2: member credential, '' before v2
  PRIMARY KEY (job_id, role, node_id)
) WITHOUT ROWID;
CREATE TABLE kv (
  job_id           TEXT    NOT NULL,
  key              BLOB    NOT NULL,  -- bytes; BLOB order = memcmp = std::string order
  value            BLOB    NOT NULL,
  PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
)sql";

// v1 -> v2: job tokens and member credentials. Rows written by v1 get '' (no token; a member
// without a credential is accepted as before, see Job::FindMember).
constexpr const char* kMigrateV1ToV2 = R"sql(
ALTER TABLE jobs ADD COLUMN token_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE members ADD COLUMN credential TEXT NOT NULL DEFAULT '';
UPDATE schema_version SET version = 2;
)sql";

constexpr const char* kPutJob =
    "INSERT OR REPLACE INTO jobs (job_id, generation, worker_num, server_num, topo_timeout_ms, "
    "node_timeout_ms, recovery_enabled, state, failure_reason, token_digest) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
constexpr const char* kDeleteJob = "DELETE FROM jobs WHERE job_id = ?1";
constexpr const char* kDeleteJobMembers = "DELETE FROM members WHERE job_id = ?1";
constexpr const char* kDeleteJobKv = "DELETE FROM kv WHERE job_id = ?1";
constexpr const char* kPutKv = "INSERT OR REPLACE INTO kv (job_id, key, value) VALUES (?1, ?2, ?3)";
constexpr const char* kDeleteKv = "DELETE FROM kv WHERE job_id = ?1 AND key = ?2";
constexpr const char* kLoadKv = "SELECT job_id, key, value FROM kv ORDER BY job_id, key";
constexpr const char* kPutMember =
    "INSERT OR REPLACE INTO members (job_id, role, node_id, host, host_name, device_id, "
    "incarnation, state, reason, rank, local_rank, local_world_size, node_rank, num_nodes, "
    "device_ip, credential) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
constexpr const char* kDeleteMember =
    "DELETE FROM members WHERE job_id = ?1 AND role = ?2 AND node_id = ?3";
constexpr const char* kLoadJobs =
    "SELECT job_id, generation, worker_num, server_num, topo_timeout_ms, node_timeout_ms, "
    "recovery_enabled, state, failure_reason, token_digest FROM jobs ORDER BY job_id";
constexpr const char* kLoadMembers =
    "SELECT job_id, role, node_id, host, host_name, device_id, incarnation, state, reason, rank, "
    "local_rank, local_world_size, node_rank, num_nodes, device_ip, credential FROM members "
    "ORDER BY job_id, role, node_id";

std::string ErrnoText(int err) { return std::strerror(err); }

absl::Status ErrnoStatus(int err, const std::string& message) {
  std::string text = absl::StrCat(message, ": ", ErrnoText(err));
  switch (err) {
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(
          absl::StrCat(text, " (the state dir must be writable by the daemon's user)"));
    case EROFS:
      return absl::PermissionDeniedError(text);
    case ENOTDIR:
    case EEXIST:
      return absl::FailedPreconditionError(text);
    default:
      return absl::UnavailableError(text);
  }
}

// mkdir -p with mode 0700 for every directory it creates.
absl::Status MakeDirs(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0) return absl::OkStatus();
  int err = errno;
  if (err == ENOENT) {
    size_t slash = dir.find_last_of('/');
    if (slash != std::string::npos && slash > 0) {
      absl::Status parent = MakeDirs(dir.substr(0, slash));
      if (!parent.ok()) return parent;
      if (::mkdir(dir.c_str(), 0700) == 0) return absl::OkStatus();
      err = errno;
    }
  }
  if (err == EEXIST) {
    struct stat st;
    if (::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("state dir '", dir, "' exists and is not a directory"));
  }
  return ErrnoStatus(err, absl::StrCat("cannot create state dir '", dir, "'"));
}

// Makes a directory entry just created in `dir` durable (best effort: some filesystems refuse).
void SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

std::string ParentDir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Takes the exclusive lock on <dir>/LOCK and writes our pid into it. Returns the fd.
absl::StatusOr<int> LockStateDir(const std::string& dir) {
  const std::string lock_path = absl::StrCat(dir, "/", SqliteStateStore::kLockFile);
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    return ErrnoStatus(
        err, absl::StrCat("state dir '", dir, "': cannot open lock file '", lock_path, "'"));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      char buf[32] = {};
      ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
      ::close(fd);
      std::string owner;
      int64_t pid = 0;
      if (n > 0 && absl::SimpleAtoi(absl::StripAsciiWhitespace(absl::string_view(buf, n)), &pid)) {
        owner = absl::StrCat(" (pid ", pid, ")");
      }
      return absl::FailedPreconditionError(
          absl::StrCat("state dir '", dir, "' is in use by another ms-rendezvousd", owner,
                       ", which holds ", lock_path,
                       "; two daemons cannot share a state dir: stop the other one or use another "
                       "--state-dir"));
    }
    ::close(fd);
    return ErrnoStatus(err, absl::StrCat("state dir '", dir, "': cannot lock '", lock_path, "'"));
  }
  // For the other daemon's error message only; failures here do not matter.
  std::string pid = absl::StrCat(::getpid(), "\n");
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, pid.data(), pid.size(), 0);
  return fd;
}

absl::Status SqliteStatus(sqlite3* db, int rc, const std::string& db_path,
                          const std::string& what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string text = absl::StrCat("sqlite state store '", db_path, "': ", what, ": ", msg);
  const char* generic = sqlite3_errstr(rc);
  if (generic != nullptr && std::strcmp(generic, msg) != 0) {
    absl::StrAppend(&text, " (", generic, ")");
  }
  return absl::UnavailableError(text);
}

// Open-time errors get a more specific code than the commit path's Unavailable.
absl::Status OpenError(sqlite3* db, int rc, const std::string& db_path, const std::string& what) {
  absl::Status s = SqliteStatus(db, rc, db_path, what);
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::DataLossError(s.message());
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::PermissionDeniedError(s.message());
    default:
      return s;
  }
}

int Exec(sqlite3* db, const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); }

// Runs `sql` (one statement returning rows) and gives the first column of the first row as text.
int QueryText(sqlite3* db, const char* sql, std::string* out, bool* has_row) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_step(stmt);
  *has_row = rc == SQLITE_ROW;
  if (rc == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    *out = text != nullptr
               ? std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt, 0))
               : std::string();
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_OK;
  }
  sqlite3_finalize(stmt);
  return rc;
}

int BindText(sqlite3_stmt* stmt, int index, const std::string& value) {
  return sqlite3_bind_text(stmt, index, value.data(), static_cast<int>(value.size()),
                           SQLITE_TRANSIENT);
}

// Keys and values are bytes (may hold NULs): stored as BLOBs.
int BindBlob(sqlite3_stmt* stmt, int index, const std::string& value) {
  return sqlite3_bind_blob64(stmt, index, value.data(), value.size(), SQLITE_TRANSIENT);
}

std::string ColumnText(sqlite3_stmt* stmt, int col) {
  const unsigned char* text = sqlite3_column_text(stmt, col);
  if (text == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(text), sqlite3_column_bytes(stmt, col));
}

// Checked read of an integer column into a narrower type; false when out of range.
template <typename T>
bool ColumnInt(sqlite3_stmt* stmt, int col, T* out) {
  int64_t v = sqlite3_column_int64(stmt, col);
  if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
      v > static_cast<int64_t>(std::numeric_limits<T>::max())) {
    return false;
  }
  *out = static_cast<T>(v);
  return true;
}

}  // namespace

struct SqliteStateStore::Statements {
  sqlite3_stmt* put_job = nullptr;
  sqlite3_stmt* delete_job = nullptr;
  sqlite3_stmt* delete_job_members = nullptr;
  sqlite3_stmt* put_member = nullptr;
  sqlite3_stmt* delete_member = nullptr;
  sqlite3_stmt* delete_job_kv = nullptr;
  sqlite3_stmt* put_kv = nullptr;
  sqlite3_stmt* delete_kv = nullptr;

  ~Statements() {
    for (sqlite3_stmt* s : {put_job, delete_job, delete_job_members, put_member, delete_member,
                            delete_job_kv, put_kv, delete_kv}) {
      sqlite3_finalize(s);  // no-op on nullptr
    }
  }
};

SqliteStateStore::SqliteStateStore(std::string state_dir, Options options)
    : state_dir_(std::move(state_dir)),
      db_path_(absl::StrCat(state_dir_, "/", kDatabaseFile)),
      options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<SqliteStateStore>> SqliteStateStore::Open(
    const std::string& state_dir, Options options) {
  if (state_dir.empty()) {
    return absl::InvalidArgumentError("sqlite state store: the state dir path is empty");
  }
  std::string dir = state_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();

  struct stat st;
  const bool existed = ::stat(dir.c_str(), &st) == 0;
  if (absl::Status s = MakeDirs(dir); !s.ok()) return s;
  if (!existed) SyncDir(ParentDir(dir));

  absl::StatusOr<int> lock_fd = LockStateDir(dir);
  if (!lock_fd.ok()) return lock_fd.status();

  std::unique_ptr<SqliteStateStore> store(new SqliteStateStore(dir, std::move(options)));
  const std::string& db_path = store->db_path_;
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(db_path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = OpenError(db, rc, db_path, "cannot open the database");
    sqlite3_close(db);
    ::close(*lock_fd);
    return s;
  }
  // From here the store owns the lock and the connection (the destructor releases both).
  absl::Status s = store->Init(*lock_fd, db);
  if (!s.ok()) return s;
  SyncDir(dir);  // the database and WAL file names
  return store;
}

absl::Status SqliteStateStore::Init(int lock_fd, sqlite3* db) {
  lock_fd_ = lock_fd;
  absl::MutexLock l(&db_mu_);
  db_ = db;
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);

  std::string value;
  bool has_row = false;
  int rc = QueryText(db_, "PRAGMA journal_mode=WAL", &value, &has_row);
  if (rc != SQLITE_OK) return OpenError(db_, rc, db_path_, "cannot read the database");
  if (value != "wal") {
    return absl::UnavailableError(absl::StrCat("sqlite state store '", db_path_,
                                               "': cannot switch to WAL mode (journal_mode is '",
                                               value, "')"));
  }
  // FULL: the WAL is fsynced at every COMMIT, so an acknowledged batch survives power loss.
  rc = Exec(db_, "PRAGMA synchronous=FULL");
  if (rc != SQLITE_OK) return OpenError(db_, rc, db_path_, "cannot set synchronous=FULL");

  rc = Exec(db_, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK) return OpenError(db_, rc, db_path_, "cannot start a transaction");
  sqlite3* const conn = db_;  // lambdas are analysed without the caller's lock
  auto fail = [conn](absl::Status st) {
    if (!sqlite3_get_autocommit(conn)) Exec(conn, "ROLLBACK");
    return st;
  };
  rc = QueryText(db_,
                 "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
                 &value, &has_row);
  if (rc != SQLITE_OK) return fail(OpenError(db_, rc, db_path_, "cannot read the schema"));
  if (!has_row) {
    rc = Exec(db_, kCreateSchema);
    if (rc != SQLITE_OK) return fail(OpenError(db_, rc, db_path_, "cannot create the schema"));
    const std::string insert =
        absl::StrCat("INSERT INTO schema_version (version) VALUES (", kSchemaVersion, ")");
    rc = Exec(db_, insert.c_str());
    if (rc != SQLITE_OK) return fail(OpenError(db_, rc, db_path_, "cannot create the schema"));
  }
  rc = QueryText(db_, "SELECT version FROM schema_version", &value, &has_row);
  if (rc != SQLITE_OK) return fail(OpenError(db_, rc, db_path_, "cannot read the schema version"));
  int version = 0;
  if (!has_row || !absl::SimpleAtoi(value, &version) || version < 1) {
    return fail(absl::DataLossError(
        absl::StrCat("sqlite state store '", db_path_, "': invalid schema version '", value, "'")));
  }
  if (version > kSchemaVersion) {
    return fail(absl::FailedPreconditionError(absl::StrCat(
        "sqlite state store '", db_path_, "' has schema version ", version,
        ", newer than this ms-rendezvousd understands (", kSchemaVersion,
        "): it was written by a newer release; run that release or use another --state-dir")));
  }
  if (version == 1) {
    rc = Exec(db_, kMigrateV1ToV2);
    if (rc != SQLITE_OK) {
      return fail(OpenError(db_, rc, db_path_, "cannot migrate the schema from version 1 to 2"));
    }
  }
  rc = Exec(db_, "COMMIT");
  if (rc != SQLITE_OK) return fail(OpenError(db_, rc, db_path_, "cannot commit the schema"));

  stmts_ = std::make_unique<Statements>();
  struct {
    const char* sql;
    sqlite3_stmt** stmt;
  } prepare[] = {{kPutJob, &stmts_->put_job},
                 {kDeleteJob, &stmts_->delete_job},
                 {kDeleteJobMembers, &stmts_->delete_job_members},
                 {kPutMember, &stmts_->put_member},
                 {kDeleteMember, &stmts_->delete_member},
                 {kDeleteJobKv, &stmts_->delete_job_kv},
                 {kPutKv, &stmts_->put_kv},
                 {kDeleteKv, &stmts_->delete_kv}};
  for (const auto& p : prepare) {
    rc = sqlite3_prepare_v3(db_, p.sql, -1, SQLITE_PREPARE_PERSISTENT, p.stmt, nullptr);
    if (rc != SQLITE_OK) return OpenError(db_, rc, db_path_, "cannot prepare a statement");
  }

  writer_ = std::thread([this] { WriterLoop(); });
  return absl::OkStatus();
}

SqliteStateStore::~SqliteStateStore() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
  {
    absl::MutexLock l(&db_mu_);
    stmts_.reset();
    if (db_ != nullptr) sqlite3_close(db_);  // checkpoints the WAL
    db_ = nullptr;
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::string SqliteStateStore::Describe() const {
  return absl::StrCat("sqlite:", db_path_, " (WAL, synchronous=FULL, group commit)");
}

void SqliteStateStore::Commit(std::vector<Mutation> batch, CommitCallback done) {
  absl::MutexLock l(&mu_);
  queue_.push_back(Pending{std::move(batch), std::move(done)});
}

void SqliteStateStore::WriterLoop() {
  for (;;) {
    std::deque<Pending> group;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &SqliteStateStore::HasWorkOrStopping));
      if (queue_.empty()) return;  // stopping, and everything is drained
      group.swap(queue_);
    }
    absl::Status status;
    {
      absl::MutexLock l(&db_mu_);
      status = WriteGroup(group);
    }
    if (status.ok()) {
      transactions_committed_.fetch_add(1);
      batches_committed_.fetch_add(group.size());
      if (options_.after_write_before_ack) options_.after_write_before_ack(group.size());
    }
    for (Pending& p : group) {
      if (p.done) p.done(status);
    }
  }
}

absl::Status SqliteStateStore::WriteGroup(const std::deque<Pending>& group) {
  int rc = Exec(db_, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK) return SqliteStatus(db_, rc, db_path_, "cannot begin a transaction");
  for (const Pending& p : group) {
    for (const Mutation& m : p.batch) {
      absl::Status s = Apply(m);
      if (!s.ok()) {
        Exec(db_, "ROLLBACK");
        return s;
      }
    }
  }
  rc = Exec(db_, "COMMIT");
  if (rc != SQLITE_OK) {
    absl::Status s = SqliteStatus(db_, rc, db_path_, "cannot commit");
    if (!sqlite3_get_autocommit(db_)) Exec(db_, "ROLLBACK");
    return s;
  }
  return absl::OkStatus();
}

absl::Status SqliteStateStore::Apply(const Mutation& m) {
  sqlite3* const db = db_;  // lambdas are analysed without the caller's lock
  auto run = [&](sqlite3_stmt* stmt, int bind_rc, const char* what) -> absl::Status {
    int rc = bind_rc == SQLITE_OK ? sqlite3_step(stmt) : bind_rc;
    absl::Status s;
    if (rc != SQLITE_DONE) s = SqliteStatus(db, rc, db_path_, what);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return s;
  };
  switch (m.kind) {
    case Mutation::Kind::kPutJob: {
      const JobRecord& j = m.job;
      sqlite3_stmt* st = stmts_->put_job;
      int rc = BindText(st, 1, j.job_id);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 2, static_cast<int64_t>(j.generation));
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 3, j.worker_num);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 4, j.server_num);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 5, j.topo_timeout_ms);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 6, j.node_timeout_ms);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 7, j.recovery_enabled ? 1 : 0);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 8, static_cast<int>(j.state));
      if (rc == SQLITE_OK) rc = BindText(st, 9, j.failure_reason);
      if (rc == SQLITE_OK) rc = BindText(st, 10, j.token_digest);
      return run(st, rc, absl::StrCat("cannot write job '", j.job_id, "'").c_str());
    }
    case Mutation::Kind::kDeleteJob: {
      const std::string what = absl::StrCat("cannot delete job '", m.job.job_id, "'");
      absl::Status s = run(stmts_->delete_job_members,
                           BindText(stmts_->delete_job_members, 1, m.job.job_id), what.c_str());
      if (!s.ok()) return s;
      s = run(stmts_->delete_job_kv, BindText(stmts_->delete_job_kv, 1, m.job.job_id),
              what.c_str());
      if (!s.ok()) return s;
      return run(stmts_->delete_job, BindText(stmts_->delete_job, 1, m.job.job_id), what.c_str());
    }
    case Mutation::Kind::kPutMember: {
      const MemberRecord& r = m.member;
      sqlite3_stmt* st = stmts_->put_member;
      int rc = BindText(st, 1, r.job_id);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 2, static_cast<int>(r.role));
      if (rc == SQLITE_OK) rc = BindText(st, 3, r.node_id);
      if (rc == SQLITE_OK) rc = BindText(st, 4, r.host);
      if (rc == SQLITE_OK) rc = BindText(st, 5, r.host_name);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 6, r.device_id);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 7, static_cast<int64_t>(r.incarnation));
      if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 8, static_cast<int>(r.state));
      if (rc == SQLITE_OK) rc = BindText(st, 9, r.reason);
      if (rc == SQLITE_OK) {
        rc = r.rank.has_value() ? sqlite3_bind_int64(st, 10, *r.rank) : sqlite3_bind_null(st, 10);
      }
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 11, r.local_rank);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 12, r.local_world_size);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 13, r.node_rank);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 14, r.num_nodes);
      if (rc == SQLITE_OK) rc = BindText(st, 15, r.device_ip);
      if (rc == SQLITE_OK) rc = BindText(st, 16, r.credential);
      return run(
          st, rc,
          absl::StrCat("cannot write member '", r.node_id, "' of job '", r.job_id, "'").c_str());
    }
    case Mutation::Kind::kDeleteMember: {
      const MemberRecord& r = m.member;
      sqlite3_stmt* st = stmts_->delete_member;
      int rc = BindText(st, 1, r.job_id);
      if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 2, static_cast<int>(r.role));
      if (rc == SQLITE_OK) rc = BindText(st, 3, r.node_id);
      return run(
          st, rc,
          absl::StrCat("cannot delete member '", r.node_id, "' of job '", r.job_id, "'").c_str());
    }
    case Mutation::Kind::kPutKv: {
      sqlite3_stmt* st = stmts_->put_kv;
      int rc = BindText(st, 1, m.kv.job_id);
      if (rc == SQLITE_OK) rc = BindBlob(st, 2, m.kv.key);
      if (rc == SQLITE_OK) rc = BindBlob(st, 3, m.kv.value);
      return run(st, rc, absl::StrCat("cannot write a key of job '", m.kv.job_id, "'").c_str());
    }
    case Mutation::Kind::kDeleteKv: {
      sqlite3_stmt* st = stmts_->delete_kv;
      int rc = BindText(st, 1, m.kv.job_id);
      if (rc == SQLITE_OK) rc = BindBlob(st, 2, m.kv.key);
      return run(st, rc, absl::StrCat("cannot delete a key of job '", m.kv.job_id, "'").c_str());
    }
  }
  return absl::InvalidArgumentError("sqlite state store: unknown mutation kind");
}

absl::StatusOr<StoredState> SqliteStateStore::Load() {
  absl::MutexLock l(&db_mu_);
  StoredState out;
  sqlite3_stmt* stmt = nullptr;
  sqlite3* const db = db_;  // lambdas are analysed without the caller's lock
  auto fail = [&](absl::Status s) {
    sqlite3_finalize(stmt);
    stmt = nullptr;
    if (!sqlite3_get_autocommit(db)) Exec(db, "ROLLBACK");
    return s;
  };
  auto corrupt = [&](const std::string& what) {
    return fail(absl::DataLossError(
        absl::StrCat("sqlite state store '", db_path_, "': invalid stored value: ", what)));
  };
  // One read transaction: jobs and members from the same snapshot.
  int rc = Exec(db_, "BEGIN");
  if (rc != SQLITE_OK) return fail(SqliteStatus(db_, rc, db_path_, "cannot begin a read"));

  rc = sqlite3_prepare_v2(db_, kLoadJobs, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return fail(SqliteStatus(db_, rc, db_path_, "cannot read jobs"));
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    JobRecord j;
    j.job_id = ColumnText(stmt, 0);
    j.generation = static_cast<uint64_t>(sqlite3_column_int64(stmt, 1));
    int state = 0;
    if (!ColumnInt(stmt, 2, &j.worker_num) || !ColumnInt(stmt, 3, &j.server_num) ||
        !ColumnInt(stmt, 7, &state) || state < 0 || state > static_cast<int>(kLastJobState)) {
      return corrupt(absl::StrCat("job '", j.job_id, "'"));
    }
    j.topo_timeout_ms = sqlite3_column_int64(stmt, 4);
    j.node_timeout_ms = sqlite3_column_int64(stmt, 5);
    j.recovery_enabled = sqlite3_column_int64(stmt, 6) != 0;
    j.state = static_cast<JobState>(state);
    j.failure_reason = ColumnText(stmt, 8);
    j.token_digest = ColumnText(stmt, 9);
    out.jobs.push_back(std::move(j));
  }
  if (rc != SQLITE_DONE) return fail(SqliteStatus(db_, rc, db_path_, "cannot read jobs"));
  sqlite3_finalize(stmt);
  stmt = nullptr;

  rc = sqlite3_prepare_v2(db_, kLoadMembers, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return fail(SqliteStatus(db_, rc, db_path_, "cannot read members"));
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    MemberRecord r;
    r.job_id = ColumnText(stmt, 0);
    r.node_id = ColumnText(stmt, 2);
    r.host = ColumnText(stmt, 3);
    r.host_name = ColumnText(stmt, 4);
    r.incarnation = static_cast<uint64_t>(sqlite3_column_int64(stmt, 6));
    int role = 0;
    int state = 0;
    bool ok = ColumnInt(stmt, 1, &role) && role >= 0 && role < kNumRoles &&
              ColumnInt(stmt, 5, &r.device_id) && ColumnInt(stmt, 7, &state) && state >= 0 &&
              state <= static_cast<int>(kLastMemberState) && ColumnInt(stmt, 10, &r.local_rank) &&
              ColumnInt(stmt, 11, &r.local_world_size) && ColumnInt(stmt, 12, &r.node_rank) &&
              ColumnInt(stmt, 13, &r.num_nodes);
    r.reason = ColumnText(stmt, 8);
    r.device_ip = ColumnText(stmt, 14);
    r.credential = ColumnText(stmt, 15);
    if (ok && sqlite3_column_type(stmt, 9) != SQLITE_NULL) {
      uint32_t rank = 0;
      ok = ColumnInt(stmt, 9, &rank);
      r.rank = rank;
    }
    if (!ok) return corrupt(absl::StrCat("member '", r.node_id, "' of job '", r.job_id, "'"));
    r.role = static_cast<Role>(role);
    r.state = static_cast<MemberState>(state);
    out.members.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return fail(SqliteStatus(db_, rc, db_path_, "cannot read members"));
  sqlite3_finalize(stmt);
  stmt = nullptr;

  rc = sqlite3_prepare_v2(db_, kLoadKv, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return fail(SqliteStatus(db_, rc, db_path_, "cannot read keys"));
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    out.kv.push_back(KvRecord{ColumnText(stmt, 0), ColumnText(stmt, 1), ColumnText(stmt, 2)});
  }
  if (rc != SQLITE_DONE) return fail(SqliteStatus(db_, rc, db_path_, "cannot read keys"));
  sqlite3_finalize(stmt);
  stmt = nullptr;
  rc = Exec(db_, "COMMIT");
  if (rc != SQLITE_OK) return fail(SqliteStatus(db_, rc, db_path_, "cannot end the read"));
  return out;
}

}  // namespace ms_rendezvous::core
