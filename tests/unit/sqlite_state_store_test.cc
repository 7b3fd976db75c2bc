// SqliteStateStore: field round trip, delete semantics, order, group commit, the state-dir lock,
// open errors, and crash consistency with real SIGKILLs of a forked child.
//
// MemoryStateStore is the oracle: a SQLite store that saw batches 1..M must Load() exactly what
// the memory store holds after the same batches.
#include "store/sqlite_state_store.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/memory_state_store.h"
#include "test_util.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---- helpers ------------------------------------------------------------------------------------

// A fresh directory for one test, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = ::testing::TempDir() + "sqlite_store_XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr) << "mkdtemp " << tmpl;
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::unique_ptr<SqliteStateStore> MustOpen(const std::string& dir,
                                           SqliteStateStore::Options options = {}) {
  auto store = SqliteStateStore::Open(dir, std::move(options));
  EXPECT_THAT(store, IsOk());
  return store.ok() ? std::move(*store) : nullptr;
}

absl::Status CommitAndWait(StateStore& store, std::vector<Mutation> batch) {
  absl::Notification done;
  absl::Status result;
  store.Commit(std::move(batch), [&](absl::Status s) {
    result = s;
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

Mutation PutJob(const std::string& id, uint64_t generation = 1) {
  Mutation m;
  m.kind = Mutation::Kind::kPutJob;
  m.job.job_id = id;
  m.job.generation = generation;
  m.job.worker_num = 4;
  return m;
}

Mutation DeleteJob(const std::string& id) {
  Mutation m;
  m.kind = Mutation::Kind::kDeleteJob;
  m.job.job_id = id;
  return m;
}

Mutation PutMember(const std::string& job, const std::string& node, Role role = Role::kWorker) {
  Mutation m;
  m.kind = Mutation::Kind::kPutMember;
  m.member.job_id = job;
  m.member.role = role;
  m.member.node_id = node;
  m.member.host = "10.0.0.1";
  return m;
}

Mutation DeleteMember(const std::string& job, const std::string& node, Role role = Role::kWorker) {
  Mutation m = PutMember(job, node, role);
  m.kind = Mutation::Kind::kDeleteMember;
  return m;
}

std::string Dump(const StoredState& s) {
  std::ostringstream out;
  for (const JobRecord& j : s.jobs) {
    out << "job{" << ::testing::PrintToString(j.job_id) << " gen=" << j.generation
        << " w=" << j.worker_num << " s=" << j.server_num << " topo=" << j.topo_timeout_ms
        << " node_timeout=" << j.node_timeout_ms << " rec=" << j.recovery_enabled
        << " state=" << static_cast<int>(j.state)
        << " reason=" << ::testing::PrintToString(j.failure_reason)
        << " token=" << ::testing::PrintToString(j.token_digest) << "}\n";
  }
  for (const MemberRecord& m : s.members) {
    out << "member{" << ::testing::PrintToString(m.job_id) << " role=" << static_cast<int>(m.role)
        << " node=" << ::testing::PrintToString(m.node_id)
        << " host=" << ::testing::PrintToString(m.host)
        << " host_name=" << ::testing::PrintToString(m.host_name) << " dev=" << m.device_id
        << " inc=" << m.incarnation << " state=" << static_cast<int>(m.state)
        << " reason=" << ::testing::PrintToString(m.reason)
        << " rank=" << (m.rank ? std::to_string(*m.rank) : "none") << " lr=" << m.local_rank
        << " lws=" << m.local_world_size << " nr=" << m.node_rank << " nn=" << m.num_nodes
        << " dip=" << ::testing::PrintToString(m.device_ip)
        << " cred=" << ::testing::PrintToString(m.credential) << "}\n";
  }
  for (const KvRecord& kv : s.kv) {
    out << "kv{" << ::testing::PrintToString(kv.job_id) << " "
        << ::testing::PrintToString(kv.key) << "=" << ::testing::PrintToString(kv.value) << "}\n";
  }
  return out.str();
}

std::string DumpLoad(StateStore& store) {
  auto s = store.Load();
  EXPECT_THAT(s, IsOk());
  return s.ok() ? Dump(*s) : "<load failed>";
}

std::string OracleDump(const std::vector<std::vector<Mutation>>& batches) {
  MemoryStateStore oracle;
  for (const auto& b : batches) oracle.Commit(b, [](absl::Status) {});
  return DumpLoad(oracle);
}

// Runs one SQL script on the database directly (a second connection, as an operator would).
void ExecSql(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

// ---- round trip, deletes, order -----------------------------------------------------------------

TEST(SqliteStateStoreTest, RoundTripsEveryFieldAcrossReopen) {
  ScratchDir dir;
  std::vector<Mutation> batch;
  Mutation job = PutJob(std::string("job\0with-nul", 12), std::numeric_limits<uint64_t>::max());
  job.job.worker_num = std::numeric_limits<uint32_t>::max();
  job.job.server_num = 7;
  job.job.topo_timeout_ms = -1;
  job.job.node_timeout_ms = std::numeric_limits<int64_t>::min();
  job.job.recovery_enabled = true;
  job.job.state = JobState::kFailed;
  job.job.failure_reason = "rank 3 (node 'n3', host h\xC3\xA9) died: \"SIGKILL\"";
  job.job.token_digest = std::string(64, 'd');
  batch.push_back(job);
  Mutation plain = PutJob("plain", 0);  // every default
  plain.job = JobRecord{};
  plain.job.job_id = "plain";
  batch.push_back(plain);
  for (JobState st :
       {JobState::kForming, JobState::kComplete, JobState::kFinished, JobState::kDegraded}) {
    Mutation j = PutJob(absl::StrCat("state", static_cast<int>(st)), 5);
    j.job.state = st;
    j.job.topo_timeout_ms = std::numeric_limits<int64_t>::max();
    j.job.node_timeout_ms = 30000;
    batch.push_back(j);
  }
  for (MemberState st : {MemberState::kWaiting, MemberState::kActive, MemberState::kLeft,
                         MemberState::kFailed, MemberState::kSuspect, MemberState::kDead}) {
    Mutation mem = PutMember("state1", absl::StrCat("member-state", static_cast<int>(st)));
    mem.member.state = st;
    mem.member.reason = absl::StrCat("reason for ", static_cast<int>(st));
    batch.push_back(mem);
  }
  Mutation m = PutMember(job.job.job_id, "node-\xE2\x9C\x93", Role::kPServer);
  m.member.host = "[fe80::1%eth0]:8081";
  m.member.host_name = std::string("host\0name", 9);
  m.member.device_id = std::numeric_limits<int32_t>::min();
  m.member.incarnation = (uint64_t{1} << 63) + 5;
  m.member.state = MemberState::kDead;
  m.member.reason = "no heartbeat for 30 s (MS_NODE_TIMEOUT); last seen from 10.0.0.3";
  m.member.rank = std::numeric_limits<uint32_t>::max();
  m.member.local_rank = 1;
  m.member.local_world_size = 2;
  m.member.node_rank = 3;
  m.member.num_nodes = std::numeric_limits<uint32_t>::max();
  m.member.device_ip = "192.168.100.7";
  m.member.credential = "0123456789abcdef0123456789abcdef";
  batch.push_back(m);
  for (const std::string& key : {std::string("k"), std::string("bin\0key\xff", 8)}) {
    Mutation kv;
    kv.kind = Mutation::Kind::kPutKv;
    kv.kv = KvRecord{job.job.job_id, key, std::string("v\0\x01", 3)};
    batch.push_back(kv);
  }
  Mutation empty_value;
  empty_value.kind = Mutation::Kind::kPutKv;
  empty_value.kv = KvRecord{"plain", "empty", ""};
  batch.push_back(empty_value);
  Mutation unranked = PutMember(job.job.job_id, "unranked");
  unranked.member.rank = std::nullopt;
  unranked.member.state = MemberState::kWaiting;
  batch.push_back(unranked);
  Mutation zero_rank = PutMember("plain", "0");
  zero_rank.member.rank = 0;  // 0 is a rank, not "no rank"
  zero_rank.member.state = MemberState::kActive;
  zero_rank.member.device_id = 0;
  batch.push_back(zero_rank);
  Mutation left = PutMember("plain", "1", Role::kPServer);
  left.member.state = MemberState::kLeft;
  batch.push_back(left);

  const std::string want = OracleDump({batch});
  ASSERT_THAT(want, HasSubstr("rank=0"));
  {
    auto store = MustOpen(dir.path());
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(CommitAndWait(*store, batch), IsOk());
    EXPECT_EQ(DumpLoad(*store), want);
    EXPECT_TRUE(store->durable());
    EXPECT_THAT(store->Describe(), AllOf(HasSubstr("sqlite:"), HasSubstr(store->db_path())));
    EXPECT_EQ(store->db_path(), dir.path() + "/ms-rendezvous.db");
  }
  auto reopened = MustOpen(dir.path());
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(DumpLoad(*reopened), want);
}

TEST(SqliteStateStoreTest, KeysDeleteAndCascadeWithTheirJob) {
  ScratchDir dir;
  auto store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  auto put = [](const std::string& job, const std::string& key) {
    Mutation m;
    m.kind = Mutation::Kind::kPutKv;
    m.kv = KvRecord{job, key, "v-" + key};
    return m;
  };
  Mutation del = put("a", "k1");
  del.kind = Mutation::Kind::kDeleteKv;
  std::vector<std::vector<Mutation>> batches = {
      {PutJob("a"), PutJob("b"), put("a", "k1"), put("a", "k2"), put("b", "k1")},
      {del},
      {DeleteJob("b")}};
  for (const auto& b : batches) ASSERT_THAT(CommitAndWait(*store, b), IsOk());
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
  auto state = store->Load();
  ASSERT_EQ(state->kv.size(), 1u);  // a/k2 only: a/k1 deleted, b's keys went with b
  EXPECT_EQ(state->kv[0].key, "k2");
}

TEST(SqliteStateStoreTest, LoadOfEmptyStoreIsEmpty) {
  ScratchDir dir;
  auto store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  auto s = store->Load();
  ASSERT_THAT(s, IsOk());
  EXPECT_TRUE(s->jobs.empty());
  EXPECT_TRUE(s->members.empty());
}

TEST(SqliteStateStoreTest, DeleteJobRemovesItsMembersOnly) {
  ScratchDir dir;
  auto store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  // "a" is a prefix of "ab": a job delete must not touch another job's members.
  std::vector<std::vector<Mutation>> batches = {
      {PutJob("a"), PutMember("a", "0"), PutMember("a", "1", Role::kPServer), PutJob("ab"),
       PutMember("ab", "0"), PutJob("b"), PutMember("b", "0")},
      {DeleteJob("a")},
      {DeleteMember("b", "0"), DeleteMember("b", "never-existed")},
  };
  for (const auto& b : batches) ASSERT_THAT(CommitAndWait(*store, b), IsOk());
  auto s = store->Load();
  ASSERT_THAT(s, IsOk());
  ASSERT_EQ(s->jobs.size(), 2u);
  EXPECT_EQ(s->jobs[0].job_id, "ab");
  EXPECT_EQ(s->jobs[1].job_id, "b");
  ASSERT_EQ(s->members.size(), 1u);
  EXPECT_EQ(s->members[0].job_id, "ab");
  EXPECT_EQ(Dump(*s), OracleDump(batches));
}

TEST(SqliteStateStoreTest, LoadOrdersLikeTheHeader) {
  ScratchDir dir;
  auto store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  std::vector<Mutation> b = {PutJob("z"),
                             PutJob("a"),
                             PutJob(std::string(1, '\xFF') + "high-byte"),
                             PutMember("z", "2"),
                             PutMember("a", "10", Role::kPServer),
                             PutMember("a", "9"),
                             PutMember("a", "10"),
                             PutMember("a", "1")};
  ASSERT_THAT(CommitAndWait(*store, b), IsOk());
  EXPECT_EQ(DumpLoad(*store), OracleDump({b}));  // (job id, role, node id), std::string order
}

TEST(SqliteStateStoreTest, BatchesApplyInSubmissionOrderAndCallbacksRunInOrder) {
  ScratchDir dir;
  auto store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  constexpr int kBatches = 300;
  std::vector<std::vector<Mutation>> batches;
  for (int k = 1; k <= kBatches; ++k) {
    // Each batch overwrites the same job and member; only submission order gives the final value.
    std::vector<Mutation> b = {PutJob("x", k), PutMember("x", "m")};
    b.back().member.incarnation = k;
    if (k % 3 == 0) b.push_back(DeleteMember("x", "m"));
    if (k % 7 == 0) b.push_back(PutMember("x", absl::StrCat("n", k)));
    if (k % 11 == 0) b.push_back(DeleteJob("x"));
    batches.push_back(std::move(b));
  }
  absl::Mutex mu;
  std::vector<int> order;
  for (int k = 1; k <= kBatches; ++k) {
    store->Commit(batches[k - 1], [&, k](absl::Status s) {
      EXPECT_THAT(s, IsOk());
      absl::MutexLock l(&mu);
      order.push_back(k);
    });
  }
  {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(
        +[](std::vector<int>* o) { return o->size() == kBatches; }, &order));
    for (int k = 1; k <= kBatches; ++k) ASSERT_EQ(order[k - 1], k);
  }
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
  EXPECT_EQ(store->batches_committed(), static_cast<uint64_t>(kBatches));
}

TEST(SqliteStateStoreTest, CallbackMayCommitAndDestructorDrainsTheQueue) {
  ScratchDir dir;
  std::atomic<int> ok{0};
  {
    auto store = MustOpen(dir.path());
    ASSERT_NE(store, nullptr);
    StateStore* raw = store.get();
    // A completion that commits again (as the registry does) must not deadlock.
    store->Commit({PutJob("first")}, [&, raw](absl::Status s) {
      EXPECT_THAT(s, IsOk());
      ++ok;
      raw->Commit({PutJob("from-callback")}, [&](absl::Status s2) {
        EXPECT_THAT(s2, IsOk());
        ++ok;
      });
    });
    for (int k = 0; k < 100; ++k) {
      store->Commit({PutMember("first", absl::StrCat(k))}, [&](absl::Status s) {
        EXPECT_THAT(s, IsOk());
        ++ok;
      });
    }
    // Destroyed with the queue (probably) non-empty: everything is committed and acked first.
  }
  EXPECT_EQ(ok.load(), 102);
  auto store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  auto s = store->Load();
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->jobs.size(), 2u);
  EXPECT_EQ(s->members.size(), 100u);
}

TEST(SqliteStateStoreTest, ReopenAfterCleanCloseKeepsStateAndAcceptsMore) {
  ScratchDir dir;
  std::vector<std::vector<Mutation>> batches = {{PutJob("j"), PutMember("j", "0")}};
  {
    auto store = MustOpen(dir.path());
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(CommitAndWait(*store, batches[0]), IsOk());
  }
  // A clean close checkpoints the WAL into the database file.
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("ms-rendezvous.db-wal")));
  {
    auto store = MustOpen(dir.path());
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
    batches.push_back({PutMember("j", "1"), DeleteMember("j", "0")});
    ASSERT_THAT(CommitAndWait(*store, batches[1]), IsOk());
  }
  auto store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
}

// ---- group commit ------------------------------------------------------------------------------

TEST(SqliteStateStoreTest, GroupCommitTakesEverythingQueuedInOneTransaction) {
  ScratchDir dir;
  absl::Notification in_first_group, release;
  std::vector<size_t> group_sizes;  // writer thread only until the end
  SqliteStateStore::Options options;
  options.after_write_before_ack = [&](size_t n) {
    group_sizes.push_back(n);
    if (group_sizes.size() == 1) {
      in_first_group.Notify();
      release.WaitForNotification();  // hold the writer while the storm queues up
    }
  };
  auto store = MustOpen(dir.path(), options);
  ASSERT_NE(store, nullptr);
  std::atomic<int> acked{0};
  store->Commit({PutJob("storm")}, [&](absl::Status s) { ++acked; });
  in_first_group.WaitForNotification();
  constexpr int kStorm = 10000;
  for (int k = 0; k < kStorm; ++k) {
    store->Commit({PutMember("storm", absl::StrCat(k))}, [&](absl::Status s) {
      EXPECT_THAT(s, IsOk());
      ++acked;
    });
  }
  EXPECT_EQ(acked.load(), 0);  // nothing acked before its group is durable
  release.Notify();
  store.reset();  // drains
  EXPECT_EQ(acked.load(), kStorm + 1);
  EXPECT_THAT(group_sizes, ElementsAre(1u, static_cast<size_t>(kStorm)));
  auto reopened = MustOpen(dir.path());
  ASSERT_NE(reopened, nullptr);
  auto s = reopened->Load();
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->members.size(), static_cast<size_t>(kStorm));
}

TEST(SqliteStateStoreTest, StormOfSingleMutationBatchesCollapsesIntoFewTransactions) {
  ScratchDir dir;
  auto store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  constexpr int kStorm = 10000;
  absl::Notification all;
  std::atomic<int> acked{0};
  for (int k = 0; k < kStorm; ++k) {
    store->Commit({PutMember("storm", absl::StrCat(k))}, [&](absl::Status s) {
      EXPECT_THAT(s, IsOk());
      if (++acked == kStorm) all.Notify();
    });
  }
  all.WaitForNotification();
  std::cout << "[ info ] 10000 single-mutation batches -> " << store->transactions_committed()
            << " transactions\n";
  EXPECT_EQ(store->batches_committed(), static_cast<uint64_t>(kStorm));
  EXPECT_LE(store->transactions_committed(), static_cast<uint64_t>(kStorm / 10));
}

TEST(SqliteStateStoreTest, SqliteErrorFailsTheWholeGroupAndLaterBatchesStillCommit) {
  ScratchDir dir;
  absl::Notification in_first_group, release;
  std::atomic<int> groups{0};
  SqliteStateStore::Options options;
  options.after_write_before_ack = [&](size_t) {
    if (++groups == 1) {
      in_first_group.Notify();
      release.WaitForNotification();
    }
  };
  auto store = MustOpen(dir.path(), options);
  ASSERT_NE(store, nullptr);
  // An operator's trigger stands in for any SQLite failure in the middle of a group.
  ExecSql(store->db_path(),
          "CREATE TRIGGER poison BEFORE INSERT ON jobs WHEN NEW.job_id = 'poison' "
          "BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END;");
  std::vector<absl::Status> results(5);
  std::atomic<int> done{0};
  auto record = [&](int i) {
    return [&, i](absl::Status s) {
      results[i] = s;
      ++done;
    };
  };
  store->Commit({PutJob("x")}, record(0));
  in_first_group.WaitForNotification();
  store->Commit({PutJob("a"), PutMember("a", "0")}, record(1));  // same group as the poison
  store->Commit({PutJob("poison")}, record(2));
  store->Commit({PutJob("b")}, record(3));
  release.Notify();
  while (done.load() < 4) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_THAT(CommitAndWait(*store, {PutJob("c")}), IsOk());  // the store carries on

  EXPECT_THAT(results[0], IsOk());
  for (int i = 1; i <= 3; ++i) {
    EXPECT_THAT(results[i],
                StatusIs(absl::StatusCode::kUnavailable,
                         AllOf(HasSubstr(store->db_path()), HasSubstr("poisoned by the test"))));
  }
  auto s = store->Load();
  ASSERT_THAT(s, IsOk());
  ASSERT_EQ(s->jobs.size(), 2u);  // the failed group was rolled back as a whole
  EXPECT_EQ(s->jobs[0].job_id, "c");
  EXPECT_EQ(s->jobs[1].job_id, "x");
  EXPECT_TRUE(s->members.empty());
  EXPECT_EQ(store->transactions_committed(), 2u);
}

// ---- open errors --------------------------------------------------------------------------------

TEST(SqliteStateStoreTest, CreatesMissingStateDirWithMode0700) {
  ScratchDir dir;
  const std::string state = dir.Sub("a/b/state");
  auto store = MustOpen(state + "/");  // a trailing slash is fine
  ASSERT_NE(store, nullptr);
  struct stat st;
  ASSERT_EQ(::stat(state.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(std::filesystem::exists(state + "/ms-rendezvous.db"));
  EXPECT_TRUE(std::filesystem::exists(state + "/LOCK"));
  EXPECT_EQ(store->db_path(), state + "/ms-rendezvous.db");
}

TEST(SqliteStateStoreTest, SecondOpenOfTheSameDirFailsNamingTheDirAndTheOtherDaemon) {
  ScratchDir dir;
  auto first = MustOpen(dir.path());
  ASSERT_NE(first, nullptr);
  auto second = SqliteStateStore::Open(dir.path(), {});
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr(dir.path()), HasSubstr("another ms-rendezvousd"),
                                     HasSubstr(absl::StrCat("pid ", ::getpid())))));
  // The first store is unharmed, and the dir is free again once it closes.
  EXPECT_THAT(CommitAndWait(*first, {PutJob("still-mine")}), IsOk());
  first.reset();
  auto third = MustOpen(dir.path());
  ASSERT_NE(third, nullptr);
  EXPECT_THAT(DumpLoad(*third), HasSubstr("still-mine"));
}

TEST(SqliteStateStoreTest, StateDirThatIsAFileFailsClearly) {
  ScratchDir dir;
  const std::string file = dir.Sub("plain-file");
  std::ofstream(file) << "x";
  EXPECT_THAT(SqliteStateStore::Open(file, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(file), HasSubstr("not a directory"))));
  EXPECT_THAT(SqliteStateStore::Open(file + "/state", {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(file + "/state"), HasSubstr("Not a directory"))));
}

// Opens `dir` as an unprivileged user: in-process when not root, else in a child that drops to
// uid/gid 65534 (root ignores permission bits). Returns "<code>\n<message>" or "SKIP: why".
std::string OpenAsUnprivileged(const std::string& dir) {
  auto describe = [](const absl::Status& s) {
    return absl::StrCat(absl::StatusCodeToString(s.code()), "\n", s.message());
  };
  if (::geteuid() != 0) return describe(SqliteStateStore::Open(dir, {}).status());
  int fds[2];
  if (::pipe(fds) != 0) return "SKIP: pipe";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string out;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      out = "SKIP: cannot drop privileges";
    } else {
      out = describe(SqliteStateStore::Open(dir, {}).status());
    }
    (void)!::write(fds[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, n);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return out;
}

TEST(SqliteStateStoreTest, UnwritableStateDirFailsWithPermissionDenied) {
  ScratchDir dir;
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  const std::string ro = dir.Sub("read-only");
  ASSERT_EQ(::mkdir(ro.c_str(), 0555), 0);
  ASSERT_EQ(::chmod(ro.c_str(), 0555), 0);  // umask-proof

  std::string existing = OpenAsUnprivileged(ro);
  if (existing.rfind("SKIP", 0) == 0) GTEST_SKIP() << existing;
  EXPECT_THAT(existing, AllOf(HasSubstr("PERMISSION_DENIED"), HasSubstr(ro + "/LOCK"),
                              HasSubstr("Permission denied"), HasSubstr("writable")));
  std::string missing = OpenAsUnprivileged(ro + "/state");
  EXPECT_THAT(missing, AllOf(HasSubstr("PERMISSION_DENIED"), HasSubstr(ro + "/state"),
                             HasSubstr("cannot create state dir"), HasSubstr("Permission denied")));
}

TEST(SqliteStateStoreTest, NewerSchemaVersionIsRefused) {
  ScratchDir dir;
  {
    auto store = MustOpen(dir.path());
    ASSERT_NE(store, nullptr);
  }
  ExecSql(dir.Sub("ms-rendezvous.db"), "UPDATE schema_version SET version = 99");
  EXPECT_THAT(SqliteStateStore::Open(dir.path(), {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(dir.Sub("ms-rendezvous.db")), HasSubstr("schema version 99"),
                             HasSubstr("newer"))));
  // The refusal left the database alone and released the lock.
  ExecSql(dir.Sub("ms-rendezvous.db"),
          absl::StrCat("UPDATE schema_version SET version = ", SqliteStateStore::kSchemaVersion));
  EXPECT_NE(MustOpen(dir.path()), nullptr);
}

// A state dir written by the first release (schema v1: no job tokens, no member credentials)
// opens, keeps every row, and reads the new fields as empty ("no token", "no credential").
TEST(SqliteStateStoreTest, SchemaV1IsMigratedKeepingEveryRow) {
  ScratchDir dir;
  ExecSql(dir.Sub("ms-rendezvous.db"), R"sql(
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (1);
CREATE TABLE jobs (
  job_id TEXT NOT NULL PRIMARY KEY, generation INTEGER NOT NULL, worker_num INTEGER NOT NULL,
  server_num INTEGER NOT NULL, topo_timeout_ms INTEGER NOT NULL, node_timeout_ms INTEGER NOT NULL,
  recovery_enabled INTEGER NOT NULL, state INTEGER NOT NULL, failure_reason TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE members (
  job_id TEXT NOT NULL, role INTEGER NOT NULL, node_id TEXT NOT NULL, host TEXT NOT NULL,
  host_name TEXT NOT NULL, device_id INTEGER NOT NULL, incarnation INTEGER NOT NULL,
  state INTEGER NOT NULL, reason TEXT NOT NULL, rank INTEGER, local_rank INTEGER NOT NULL,
  local_world_size INTEGER NOT NULL, node_rank INTEGER NOT NULL, num_nodes INTEGER NOT NULL,
  device_ip TEXT NOT NULL, PRIMARY KEY (job_id, role, node_id)
) WITHOUT ROWID;
CREATE TABLE kv (
  job_id TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
INSERT INTO jobs VALUES ('old', 3, 2, 0, 60000, 30000, 0, 2, '');
INSERT INTO members VALUES ('old', 0, '0', '10.0.0.1', 'h1', 0, 77, 2, '', 0, 0, 1, 0, 2, '');
INSERT INTO members VALUES ('old', 0, '1', '10.0.0.2', 'h2', 0, 78, 2, '', 1, 0, 1, 1, 2, '');
INSERT INTO kv VALUES ('old', X'6B', X'76');
)sql");
  auto store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  absl::StatusOr<StoredState> loaded = store->Load();
  ASSERT_THAT(loaded, IsOk());
  ASSERT_EQ(loaded->jobs.size(), 1u);
  EXPECT_EQ(loaded->jobs[0].generation, 3u);
  EXPECT_EQ(loaded->jobs[0].token_digest, "");
  ASSERT_EQ(loaded->members.size(), 2u);
  EXPECT_EQ(loaded->members[1].incarnation, 78u);
  EXPECT_EQ(loaded->members[1].credential, "");
  ASSERT_EQ(loaded->kv.size(), 1u);
  EXPECT_EQ(loaded->kv[0].value, "v");
  // New writes carry the new fields, and the file is v2 from now on.
  Mutation m = PutMember("old", "0");
  m.member.credential = "c0ffee";
  ASSERT_THAT(CommitAndWait(*store, {m}), IsOk());
  store.reset();
  store = MustOpen(dir.path());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Load()->members[0].credential, "c0ffee");
}

TEST(SqliteStateStoreTest, FileThatIsNotADatabaseFailsClearly) {
  ScratchDir dir;
  std::ofstream(dir.Sub("ms-rendezvous.db")) << std::string(4096, 'g');
  EXPECT_THAT(SqliteStateStore::Open(dir.path(), {}),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr(dir.Sub("ms-rendezvous.db")), HasSubstr("not a database"))));
}

// ---- crash consistency --------------------------------------------------------------------------
//
// A forked child opens the store and commits batches 1..N. Batch k: job "j<k>" (generation k) with
// four ranked members, member "tmp" moved from j<k-1> to j<k>, job j<k-5> deleted, and job
// "marker" set to generation k. Each OK completion appends "A k" to an ack file and fsyncs it.
// The child is SIGKILLed (by itself from after_write_before_ack, or by the parent at a random
// time). The parent reopens: the state must equal the oracle after batches 1..M for some M >= the
// last ack (M = marker generation), i.e. a prefix, every batch all-or-nothing.

std::vector<Mutation> CrashBatch(int k) {
  std::vector<Mutation> b;
  const std::string job = absl::StrCat("j", k);
  Mutation j = PutJob(job, k);
  j.job.state = JobState::kComplete;
  b.push_back(j);
  for (int i = 0; i < 4; ++i) {
    Mutation m = PutMember(job, absl::StrCat(i));
    m.member.rank = i;
    m.member.incarnation = k;
    m.member.state = MemberState::kActive;
    b.push_back(m);
  }
  b.push_back(PutMember(job, "tmp"));
  if (k > 1) b.push_back(DeleteMember(absl::StrCat("j", k - 1), "tmp"));
  if (k > 5) b.push_back(DeleteJob(absl::StrCat("j", k - 5)));
  b.push_back(PutJob("marker", k));
  return b;
}

void AppendLine(int fd, const std::string& line) {
  std::string l = line + "\n";
  if (::write(fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) ::_exit(10);
  if (::fsync(fd) != 0) ::_exit(11);
}

// The child. Never returns. kill_at_group > 0: SIGKILL itself in the hook of that group, after
// recording "W <highest batch written>". Writes one byte to `ready_fd` once the store is open.
[[noreturn]] void CrashChild(const std::string& dir, const std::string& ack_path, int kill_at_group,
                             int batches, uint32_t seed, int ready_fd) {
  int ack_fd = ::open(ack_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (ack_fd < 0) ::_exit(2);
  absl::Mutex mu;
  int acked = 0;   // guarded by mu
  int groups = 0;  // writer thread only
  SqliteStateStore::Options options;
  options.after_write_before_ack = [&](size_t n) {
    if (++groups != kill_at_group) return;
    int written;
    {
      absl::MutexLock l(&mu);
      written = acked + static_cast<int>(n);
    }
    AppendLine(ack_fd, absl::StrCat("W ", written));
    ::raise(SIGKILL);
  };
  auto store = SqliteStateStore::Open(dir, options);
  if (!store.ok()) ::_exit(3);
  if (ready_fd >= 0) {
    (void)!::write(ready_fd, "r", 1);
    ::close(ready_fd);
  }
  std::mt19937 rng(seed);
  for (int k = 1; k <= batches; ++k) {
    // A random number of batches in flight, so groups of varying sizes form.
    const int window = 1 + static_cast<int>(rng() % 16);
    {
      absl::MutexLock l(&mu);
      auto room = [&]() { return k - acked <= window; };
      mu.Await(absl::Condition(&room));
    }
    (*store)->Commit(CrashBatch(k), [&, k](absl::Status s) {
      if (!s.ok()) ::_exit(4);
      absl::MutexLock l(&mu);
      if (acked != k - 1) ::_exit(5);  // completions out of order
      AppendLine(ack_fd, absl::StrCat("A ", k));
      acked = k;
    });
  }
  {
    absl::MutexLock l(&mu);
    auto all = [&]() { return acked == batches; };
    mu.Await(absl::Condition(&all));
  }
  AppendLine(ack_fd, "D");
  ::pause();  // wait for the parent's SIGKILL
  ::_exit(6);
}

struct AckLog {
  int last_acked = 0;
  int written = -1;  // "W" line: batches written when the hook killed the child
  bool done = false;
};

AckLog ReadAckLog(const std::string& path) {
  AckLog log;
  std::ifstream in(path);
  std::string tag;
  while (in >> tag) {
    if (tag == "D") {
      log.done = true;
      continue;
    }
    int v = 0;
    in >> v;
    if (tag == "A") log.last_acked = std::max(log.last_acked, v);
    if (tag == "W") log.written = v;
  }
  return log;
}

std::string WaitStatusText(int status) {
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  if (WIFEXITED(status)) return absl::StrCat("exited with ", WEXITSTATUS(status));
  return "unknown";
}

// Reopens the store after the child died and checks the prefix property. Returns M.
int VerifyRecoveredPrefix(const std::string& dir, const AckLog& log, int max_batches) {
  auto store = MustOpen(dir);
  if (store == nullptr) return -1;
  auto state = store->Load();
  EXPECT_THAT(state, IsOk());
  if (!state.ok()) return -1;
  int m = 0;
  for (const JobRecord& j : state->jobs) {
    if (j.job_id == "marker") m = static_cast<int>(j.generation);
  }
  EXPECT_GE(m, log.last_acked) << "an acknowledged batch was lost";
  EXPECT_LE(m, max_batches);
  if (log.written >= 0) {
    EXPECT_EQ(m, log.written) << "killed after COMMIT: every written batch must be there";
  }
  std::vector<std::vector<Mutation>> prefix;
  for (int k = 1; k <= m; ++k) prefix.push_back(CrashBatch(k));
  EXPECT_EQ(Dump(*state), OracleDump(prefix)) << "not exactly batches 1.." << m;
  // The recovered store keeps going.
  EXPECT_THAT(CommitAndWait(*store, CrashBatch(m + 1)), IsOk());
  prefix.push_back(CrashBatch(m + 1));
  EXPECT_EQ(DumpLoad(*store), OracleDump(prefix));
  return m;
}

class SqliteCrashAtGroupTest : public ::testing::TestWithParam<int> {};

TEST_P(SqliteCrashAtGroupTest, KilledBetweenCommitAndAckLosesNoAckedBatch) {
  const int kill_at_group = GetParam();
  constexpr int kBatches = 400;  // more than the child can write before its kill point
  ScratchDir dir;
  const std::string state = dir.Sub("state");
  const std::string acks = dir.Sub("acks");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) CrashChild(state, acks, kill_at_group, kBatches, 1000 + kill_at_group, -1);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << WaitStatusText(status);
  AckLog log = ReadAckLog(acks);
  ASSERT_GE(log.written, 1) << "the child did not reach group " << kill_at_group;
  EXPECT_LT(log.last_acked, log.written);  // the killed group was written, never acked
  int m = VerifyRecoveredPrefix(state, log, kBatches);
  std::cout << "[ info ] kill at group " << kill_at_group << ": acked " << log.last_acked
            << ", written " << log.written << ", recovered " << m << "\n";
}

INSTANTIATE_TEST_SUITE_P(KillPoints, SqliteCrashAtGroupTest,
                         ::testing::Values(1, 2, 3, 5, 8, 13, 21));

class SqliteCrashAtRandomTimeTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(SqliteCrashAtRandomTimeTest, KilledByTheParentWhileCommittingLeavesAPrefix) {
  const uint32_t seed = GetParam();
  constexpr int kBatches = 1000000;  // never finishes: the kill lands mid-stream
  ScratchDir dir;
  const std::string state = dir.Sub("state");
  const std::string acks = dir.Sub("acks");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    CrashChild(state, acks, /*kill_at_group=*/0, kBatches, seed, ready[1]);
  }
  ::close(ready[1]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the child could not open the store";
  ::close(ready[0]);
  std::mt19937 rng(seed);
  const int delay_us = 2000 + static_cast<int>(rng() % 120000);
  std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << WaitStatusText(status);
  AckLog log = ReadAckLog(acks);
  int m = VerifyRecoveredPrefix(state, log, kBatches);
  std::cout << "[ info ] killed after " << delay_us / 1000.0 << " ms: acked " << log.last_acked
            << ", recovered " << m << "\n";
}

INSTANTIATE_TEST_SUITE_P(Seeds, SqliteCrashAtRandomTimeTest,
                         ::testing::Values(1u, 2u, 3u, 4u, 5u, 6u));

// ---- micro-benchmark (disabled by default; prints, asserts no time) ----------------------------
//
//   build-store/tests/sqlite_state_store_test --gtest_also_run_disabled_tests
//       --gtest_filter='*Bench*'
TEST(SqliteStateStoreBench, DISABLED_TenThousandSingleMutationBatches) {
  ScratchDir dir;
  constexpr int kStorm = 10000;
  for (int round = 0; round < 3; ++round) {
    auto store = MustOpen(dir.Sub(absl::StrCat("r", round)));
    ASSERT_NE(store, nullptr);
    absl::Notification all;
    std::atomic<int> acked{0};
    auto start = std::chrono::steady_clock::now();
    for (int k = 0; k < kStorm; ++k) {
      store->Commit({PutMember("bench", absl::StrCat(k))}, [&](absl::Status s) {
        if (++acked == kStorm) all.Notify();
      });
    }
    auto queued = std::chrono::steady_clock::now();
    all.WaitForNotification();
    auto end = std::chrono::steady_clock::now();
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    std::cout << "[ bench ] group commit: " << kStorm << " batches acked in " << ms(end - start)
              << " ms (enqueue " << ms(queued - start) << " ms), "
              << store->transactions_committed() << " transactions\n";
  }
  // Baseline: one batch at a time (wait for each ack) = one fsync'd transaction per batch.
  auto store = MustOpen(dir.Sub("serial"));
  ASSERT_NE(store, nullptr);
  constexpr int kSerial = 200;
  auto start = std::chrono::steady_clock::now();
  for (int k = 0; k < kSerial; ++k) {
    ASSERT_THAT(CommitAndWait(*store, {PutMember("bench", absl::StrCat(k))}), IsOk());
  }
  double per =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
      kSerial;
  std::cout << "[ bench ] serial: " << per
            << " ms per acked batch (one transaction each): " << kStorm << " batches would take ~"
            << per * kStorm << " ms\n";
}

}  // namespace
}  // namespace ms_rendezvous::core
