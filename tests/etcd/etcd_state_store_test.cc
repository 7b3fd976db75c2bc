// EtcdStateStore against a real 3-member etcd 3.4 cluster on loopback: every field of every
// record round-trips, batches apply in order (and share txns), a deleted job takes its members
// and keys along, a batch too large for one txn goes through the journal (and a journal left by a
// crash is replayed), commits survive the loss of one member and of a hung one, fail with
// UNAVAILABLE within the commit timeout when the quorum is lost (nothing acknowledged) and
// succeed again once it is back, a stale fence writes nothing, a new store on the same prefix
// loads everything, and two prefixes do not see each other.
//
// MemoryStateStore is the oracle: after batches 1..M the etcd store must Load() exactly what the
// memory store holds after the same batches.
#include "store/etcd/etcd_state_store.h"

#include <atomic>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "etcd/etcd_cluster.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/etcd/etcd_records.h"
#include "store/memory_state_store.h"
#include "test_util.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::EtcdCluster;
using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- helpers ------------------------------------------------------------------------------------

EtcdStateStore::Options StoreOptions(const EtcdCluster& c, const std::string& prefix = "/msr/") {
  EtcdStateStore::Options o;
  o.endpoints = c.Endpoints();
  o.prefix = prefix;
  o.dial_timeout = absl::Seconds(5);
  o.commit_timeout = absl::Seconds(10);
  o.attempt_timeout = absl::Seconds(1);
  return o;
}

std::unique_ptr<EtcdStateStore> MustOpen(EtcdStateStore::Options o) {
  auto store = EtcdStateStore::Open(std::move(o));
  EXPECT_THAT(store, IsOk());
  return store.ok() ? *std::move(store) : nullptr;
}

absl::Status CommitAndWait(StateStore& store, std::vector<Mutation> batch,
                           absl::Duration timeout = absl::Seconds(40)) {
  absl::Notification done;
  absl::Status result;
  store.Commit(std::move(batch), [&](absl::Status s) {
    result = s;
    done.Notify();
  });
  if (!done.WaitForNotificationWithTimeout(timeout)) {
    return absl::DeadlineExceededError("test: Commit's done did not run");
  }
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
  m.member.credential = "c0ffee";
  return m;
}

Mutation DeleteMember(const std::string& job, const std::string& node, Role role = Role::kWorker) {
  Mutation m = PutMember(job, node, role);
  m.kind = Mutation::Kind::kDeleteMember;
  return m;
}

Mutation PutKv(const std::string& job, const std::string& key, const std::string& value) {
  Mutation m;
  m.kind = Mutation::Kind::kPutKv;
  m.kv = KvRecord{job, key, value};
  return m;
}

Mutation DeleteKv(const std::string& job, const std::string& key) {
  Mutation m;
  m.kind = Mutation::Kind::kDeleteKv;
  m.kv = KvRecord{job, key, ""};
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
        << " inc=" << m.incarnation << " cred=" << ::testing::PrintToString(m.credential)
        << " state=" << static_cast<int>(m.state)
        << " reason=" << ::testing::PrintToString(m.reason)
        << " rank=" << (m.rank ? std::to_string(*m.rank) : "none") << " lr=" << m.local_rank
        << " lws=" << m.local_world_size << " nr=" << m.node_rank << " nn=" << m.num_nodes
        << " dip=" << ::testing::PrintToString(m.device_ip) << "}\n";
  }
  for (const KvRecord& kv : s.kv) {
    out << "kv{" << ::testing::PrintToString(kv.job_id) << " " << ::testing::PrintToString(kv.key)
        << "=" << ::testing::PrintToString(kv.value) << "}\n";
  }
  return out.str();
}

std::string DumpLoad(StateStore& store) {
  auto s = store.Load();
  EXPECT_THAT(s, IsOk());
  return s.ok() ? Dump(*s) : "<load failed: " + s.status().ToString() + ">";
}

std::string OracleDump(const std::vector<std::vector<Mutation>>& batches) {
  MemoryStateStore oracle;
  for (const auto& b : batches) oracle.Commit(b, [](absl::Status) {});
  return DumpLoad(oracle);
}

// Keys under `prefix`, read directly.
std::vector<std::string> KeysUnder(etcd::EtcdClient& client, const std::string& prefix) {
  std::vector<std::string> keys;
  auto rev = client.RangeAll(prefix, etcd::EtcdClient::PrefixEnd(prefix), 0, 1000, absl::Seconds(5),
                             [&](const mvccpb::KeyValue& kv) {
                               keys.push_back(kv.key());
                               return absl::OkStatus();
                             });
  EXPECT_THAT(rev, IsOk());
  return keys;
}

#define START_CLUSTER(var, n)            \
  MSR_REQUIRE_ETCD();                    \
  auto var##_or = EtcdCluster::Start(n); \
  ASSERT_THAT(var##_or, IsOk());         \
  EtcdCluster& var = **var##_or

// ---- tests --------------------------------------------------------------------------------------

TEST(EtcdStateStoreTest, RoundTripsEveryFieldOfEveryRecordKind) {
  START_CLUSTER(cluster, 3);
  std::vector<Mutation> batch;
  Mutation job =
      PutJob(std::string("job\0with-nul/and-slash", 22), std::numeric_limits<uint64_t>::max());
  job.job.worker_num = std::numeric_limits<uint32_t>::max();
  job.job.server_num = 7;
  job.job.topo_timeout_ms = -1;
  job.job.node_timeout_ms = std::numeric_limits<int64_t>::min();
  job.job.recovery_enabled = true;
  job.job.state = JobState::kFailed;
  job.job.failure_reason = "rank 3 (node 'n3', host h\xC3\xA9) died: \"SIGKILL\" \xff";
  job.job.token_digest = std::string("\x00\x01\xfe\xff", 4) + std::string(28, 'd');
  batch.push_back(job);
  Mutation plain;  // every default
  plain.kind = Mutation::Kind::kPutJob;
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
    batch.push_back(mem);
  }
  Mutation full = PutMember(job.job.job_id, std::string("node/\0%", 7), Role::kPServer);
  full.member.host = "fe80::1%eth0";
  full.member.host_name = "h\xC3\xA9te";
  full.member.device_id = std::numeric_limits<int32_t>::min();
  full.member.device_ip = "192.168.100.7";
  full.member.incarnation = std::numeric_limits<uint64_t>::max();
  full.member.credential = "00112233445566778899aabbccddeeff";
  full.member.state = MemberState::kDead;
  full.member.reason = "no heartbeat for 30s";
  full.member.rank = std::numeric_limits<uint32_t>::max();
  full.member.local_rank = 1;
  full.member.local_world_size = 2;
  full.member.node_rank = 3;
  full.member.num_nodes = 4;
  batch.push_back(full);
  Mutation rank0 = PutMember("plain", "r0");
  rank0.member.rank = 0;
  rank0.member.device_id = -1;
  batch.push_back(rank0);
  batch.push_back(PutKv("plain", "", "empty key"));
  batch.push_back(PutKv("plain", std::string("\0\xff/k", 4), std::string("\0v\xff", 3)));
  batch.push_back(PutKv(job.job.job_id, "addr/0", std::string(1000, 'x')));

  auto store = MustOpen(StoreOptions(cluster));
  ASSERT_NE(store, nullptr);
  ASSERT_THAT(store->Load(), IsOk());  // empty at first
  ASSERT_THAT(CommitAndWait(*store, batch), IsOk());
  const std::string expected = OracleDump({batch});
  EXPECT_EQ(DumpLoad(*store), expected);
  EXPECT_TRUE(store->durable());
  EXPECT_EQ(store->Describe(), absl::StrCat("etcd:", cluster.Endpoint(0), ",", cluster.Endpoint(1),
                                            ",", cluster.Endpoint(2), "/msr/"));
  store.reset();
  // A new store on the same prefix (the daemon restarted) sees the same.
  auto again = MustOpen(StoreOptions(cluster));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(DumpLoad(*again), expected);
}

TEST(EtcdStateStoreTest, ManyBatchesApplyInOrderAndShareTxns) {
  START_CLUSTER(cluster, 3);
  auto store = MustOpen(StoreOptions(cluster));
  ASSERT_NE(store, nullptr);
  ASSERT_THAT(store->Load(), IsOk());

  // 600 batches submitted at once, rewriting the same few keys: the last write wins only if they
  // are applied in order; completions must come in submission order.
  std::vector<std::vector<Mutation>> batches;
  for (int i = 0; i < 600; ++i) {
    std::vector<Mutation> b;
    const std::string job = absl::StrCat("j", i % 3);
    if (i % 97 == 50) {
      b.push_back(DeleteJob(job));
    } else {
      b.push_back(PutJob(job, i));
      Mutation m = PutMember(job, absl::StrCat("n", i % 5));
      m.member.incarnation = i;
      b.push_back(m);
      b.push_back(PutKv(job, "counter", absl::StrCat(i)));
      if (i % 7 == 0) b.push_back(DeleteMember(job, absl::StrCat("n", (i + 1) % 5)));
      if (i % 11 == 0) b.push_back(DeleteKv(job, "counter"));
    }
    if (i % 50 == 0) b.clear();  // empty batches are answered in order too
    batches.push_back(b);
  }
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification all;
  for (int i = 0; i < static_cast<int>(batches.size()); ++i) {
    store->Commit(batches[i], [&, i](absl::Status s) {
      EXPECT_THAT(s, IsOk()) << "batch " << i;
      absl::MutexLock l(&mu);
      order.push_back(i);
      if (order.size() == batches.size()) all.Notify();
    });
  }
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(absl::Seconds(40)));
  for (size_t i = 0; i < order.size(); ++i) ASSERT_EQ(order[i], static_cast<int>(i));
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
  EXPECT_EQ(store->batches_committed(), batches.size());
  // Group commit: far fewer txns than batches.
  EXPECT_LT(store->transactions_committed(), batches.size() / 2)
      << store->transactions_committed() << " txns for " << batches.size() << " batches";
}

TEST(EtcdStateStoreTest, DeleteJobRemovesItsMembersAndKeysOnly) {
  START_CLUSTER(cluster, 3);
  auto store = MustOpen(StoreOptions(cluster));
  ASSERT_NE(store, nullptr);
  std::vector<std::vector<Mutation>> batches;
  // Jobs whose ids share a prefix with "a" (and an escaped '/').
  for (const std::string job : {"a", "a.b", "a-1", "ab", "a/x"}) {
    batches.push_back({PutJob(job), PutMember(job, "0"), PutMember(job, "1", Role::kPServer),
                       PutKv(job, "k", "v"), PutKv(job, "k2", "v2")});
  }
  batches.push_back({DeleteJob("a")});
  // The Join-after-end case: the old job goes and a new generation starts in ONE batch.
  batches.push_back(
      {DeleteJob("ab"), PutJob("ab", 2), PutMember("ab", "7"), PutKv("ab", "k", "new")});
  for (const auto& b : batches) ASSERT_THAT(CommitAndWait(*store, b), IsOk());
  const std::string loaded = DumpLoad(*store);
  EXPECT_EQ(loaded, OracleDump(batches));
  EXPECT_THAT(loaded, Not(HasSubstr("job{\"a\" ")));
  EXPECT_THAT(KeysUnder(store->client(), "/msr/members/a/"), ::testing::IsEmpty());
  EXPECT_THAT(KeysUnder(store->client(), "/msr/kv/a/"), ::testing::IsEmpty());
  EXPECT_THAT(KeysUnder(store->client(), "/msr/members/ab/"),
              ::testing::ElementsAre("/msr/members/ab/worker/7"));
}

TEST(EtcdStateStoreTest, BatchTooLargeForOneTxnGoesThroughTheJournal) {
  START_CLUSTER(cluster, 3);
  auto store = MustOpen(StoreOptions(cluster));
  ASSERT_NE(store, nullptr);
  ASSERT_THAT(store->Load(), IsOk());
  std::vector<std::vector<Mutation>> batches;
  batches.push_back({PutJob("big"), PutMember("big", "old"), PutKv("big", "stale", "x")});
  // A 1,000-member job completing: 1,002 writes, and the old job replaced in the same batch.
  std::vector<Mutation> big = {DeleteJob("big"), PutJob("big", 2)};
  for (int i = 0; i < 1000; ++i) {
    Mutation m = PutMember("big", absl::StrCat("node-", i));
    m.member.rank = i;
    m.member.host_name = std::string(200, 'h');  // ~ 250 KB in all
    big.push_back(m);
  }
  batches.push_back(big);
  batches.push_back({PutKv("big", "after", "1")});  // must land after the big one
  for (const auto& b : batches) ASSERT_THAT(CommitAndWait(*store, b), IsOk());
  EXPECT_EQ(store->journalled_batches(), 1u);
  EXPECT_THAT(KeysUnder(store->client(), "/msr/journal/"), ::testing::IsEmpty());
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));

  // A record larger than etcd's request limit can never be written: refused, nothing written,
  // and later batches still go through.
  EXPECT_THAT(
      CommitAndWait(*store, {PutKv("big", "huge", std::string(2 << 20, 'z'))}),
      StatusIs(absl::StatusCode::kResourceExhausted,
               AllOf(HasSubstr("exceeds etcd's request limit"), HasSubstr("--max-request-bytes"))));
  ASSERT_THAT(CommitAndWait(*store, {PutKv("big", "later", "ok")}), IsOk());
  batches.push_back({PutKv("big", "later", "ok")});
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
}

TEST(EtcdStateStoreTest, JournalLeftByACrashIsAppliedByLoadAndFinished) {
  START_CLUSTER(cluster, 3);
  std::vector<std::vector<Mutation>> batches;
  batches.push_back({PutJob("j"), PutMember("j", "gone"), PutKv("j", "k", "old")});
  {
    auto store = MustOpen(StoreOptions(cluster));
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(CommitAndWait(*store, batches[0]), IsOk());
  }
  // What a daemon killed in the middle of a journalled batch leaves behind: the committed
  // journal, and only part of the batch's own writes (here: the job record, not the rest).
  std::vector<Mutation> crashed = {DeleteJob("j"), PutJob("j", 2), PutMember("j", "new"),
                                   PutKv("j", "k", "new")};
  batches.push_back(crashed);
  {
    EtcdStateStore::Options o = StoreOptions(cluster);
    etcd::EtcdClientOptions co;
    co.endpoints = o.endpoints;
    auto client = etcd::EtcdClient::Create(co);
    ASSERT_THAT(client, IsOk());
    const etcd_store::EtcdKeys keys("/msr/");
    const std::string bytes = etcd_store::EncodeBatch(crashed);
    etcd_store::JournalCommitInfo info{0x1234, 2, bytes.size()};
    ASSERT_THAT((*client)->Put(keys.JournalChunk(info.id, 0), bytes.substr(0, 10)), IsOk());
    ASSERT_THAT((*client)->Put(keys.JournalChunk(info.id, 1), bytes.substr(10)), IsOk());
    // An uncommitted attempt's chunk: ignored, then cleaned up.
    ASSERT_THAT((*client)->Put(keys.JournalChunk(0x9999, 0), "junk"), IsOk());
    ASSERT_THAT((*client)->Put(keys.JournalCommit(), etcd_store::EncodeJournalCommit(info)),
                IsOk());
    Mutation job2 = PutJob("j", 2);
    ASSERT_THAT((*client)->Put(keys.Job("j"), etcd_store::EncodeJob(job2.job)), IsOk());
  }
  auto store = MustOpen(StoreOptions(cluster));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
  // The next commit first finishes the journalled batch, then writes its own.
  batches.push_back({PutKv("j", "after", "1")});
  ASSERT_THAT(CommitAndWait(*store, batches.back()), IsOk());
  EXPECT_THAT(KeysUnder(store->client(), "/msr/journal/"), ::testing::IsEmpty());
  store.reset();
  auto fresh = MustOpen(StoreOptions(cluster));
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(DumpLoad(*fresh), OracleDump(batches));
  EXPECT_THAT(KeysUnder(fresh->client(), "/msr/members/j/"),
              ::testing::ElementsAre("/msr/members/j/worker/new"));
}

TEST(EtcdStateStoreTest, CommitsSucceedWithOneMemberKilled) {
  START_CLUSTER(cluster, 3);
  auto store = MustOpen(StoreOptions(cluster));
  ASSERT_NE(store, nullptr);
  std::vector<std::vector<Mutation>> batches;
  batches.push_back({PutJob("j"), PutMember("j", "0")});
  ASSERT_THAT(CommitAndWait(*store, batches.back()), IsOk());
  // Member 0 is the store's first endpoint (and maybe the leader): kill -9.
  cluster.Kill(0);
  const absl::Time start = absl::Now();
  for (int i = 1; i <= 20; ++i) {
    batches.push_back({PutMember("j", absl::StrCat(i)), PutKv("j", "k", absl::StrCat(i))});
    ASSERT_THAT(CommitAndWait(*store, batches.back()), IsOk()) << "batch " << i;
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
  // It comes back and catches up; the store keeps working throughout.
  ASSERT_THAT(cluster.Restart(0), IsOk());
  batches.push_back({PutKv("j", "back", "1")});
  ASSERT_THAT(CommitAndWait(*store, batches.back()), IsOk());
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
}

TEST(EtcdStateStoreTest, CommitsSucceedWithOneMemberHung) {
  START_CLUSTER(cluster, 3);
  auto store = MustOpen(StoreOptions(cluster));
  ASSERT_NE(store, nullptr);
  ASSERT_THAT(CommitAndWait(*store, {PutJob("j")}), IsOk());
  // SIGSTOP: its connections stay open but nothing answers; attempts on it time out (1 s) and
  // the store moves on to the next endpoint.
  cluster.Stop(0);
  std::vector<std::vector<Mutation>> batches = {{PutJob("j")}};
  for (int i = 0; i < 5; ++i) {
    batches.push_back({PutMember("j", absl::StrCat(i))});
    const absl::Time start = absl::Now();
    ASSERT_THAT(CommitAndWait(*store, batches.back()), IsOk()) << "batch " << i;
    EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  }
  cluster.Continue(0);
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
}

TEST(EtcdStateStoreTest, QuorumLostFailsWithinCommitTimeoutThenRecovers) {
  START_CLUSTER(cluster, 3);
  EtcdStateStore::Options o = StoreOptions(cluster);
  o.commit_timeout = absl::Seconds(3);
  auto store = MustOpen(o);
  ASSERT_NE(store, nullptr);
  std::vector<std::vector<Mutation>> batches = {{PutJob("j"), PutMember("j", "0")}};
  ASSERT_THAT(CommitAndWait(*store, batches[0]), IsOk());

  cluster.Kill(1);
  cluster.Kill(2);
  // Several batches in flight while etcd has no quorum: every one gets UNAVAILABLE, none OK,
  // each within its commit timeout.
  absl::Mutex mu;
  std::vector<absl::Status> results;
  std::vector<absl::Duration> took;
  const absl::Time start = absl::Now();
  for (int i = 0; i < 3; ++i) {
    batches.push_back({PutMember("j", absl::StrCat("lost", i))});
    store->Commit(batches.back(), [&](absl::Status s) {
      absl::MutexLock l(&mu);
      results.push_back(s);
      took.push_back(absl::Now() - start);
    });
  }
  {
    absl::MutexLock l(&mu);
    auto all = [&]() { return results.size() == 3; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(15)));
    for (size_t i = 0; i < results.size(); ++i) {
      EXPECT_THAT(results[i],
                  StatusIs(absl::StatusCode::kUnavailable,
                           AllOf(HasSubstr("not committed within 3s"),
                                 HasSubstr(cluster.Endpoint(0)), HasSubstr(cluster.Endpoint(2)))));
      EXPECT_LT(took[i], absl::Seconds(3) + absl::Milliseconds(500)) << "batch " << i;
      EXPECT_GT(took[i], absl::Seconds(2.5));
    }
  }

  // Quorum back: commits succeed again; the failed batches (their txn may have been applied)
  // are written first, so etcd holds a prefix of what was submitted.
  ASSERT_THAT(cluster.Restart(1), IsOk());
  ASSERT_THAT(cluster.Restart(2), IsOk());
  ASSERT_THAT(cluster.WaitHealthy(), IsOk());
  batches.push_back({PutKv("j", "after", "1")});
  ASSERT_THAT(CommitAndWait(*store, batches.back()), IsOk());
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
}

TEST(EtcdStateStoreTest, StaleFenceWritesNothing) {
  START_CLUSTER(cluster, 3);
  etcd::EtcdClientOptions co;
  co.endpoints = cluster.Endpoints();
  auto admin = etcd::EtcdClient::Create(co);
  ASSERT_THAT(admin, IsOk());
  etcd::EtcdClient& client = **admin;
  const std::string leader_key = "/msr/leader";

  // Fence by lease: this daemon's election key is attached to its lease.
  auto lease = client.LeaseGrant(absl::Seconds(30));
  ASSERT_THAT(lease, IsOk());
  ASSERT_THAT(client.Put(leader_key, "daemon-1", lease->id()), IsOk());
  EtcdStateStore::Options o = StoreOptions(cluster);
  o.fence = EtcdFence::HeldByLease(leader_key, lease->id());
  auto store = MustOpen(o);
  ASSERT_NE(store, nullptr);
  std::vector<std::vector<Mutation>> batches = {{PutJob("j"), PutMember("j", "0")}};
  ASSERT_THAT(CommitAndWait(*store, batches[0]), IsOk());

  // Another daemon takes over: the lease is gone and the key belongs to a new lease.
  ASSERT_THAT(client.LeaseRevoke(lease->id()), IsOk());
  auto other = client.LeaseGrant(absl::Seconds(30));
  ASSERT_THAT(other, IsOk());
  ASSERT_THAT(client.Put(leader_key, "daemon-2", other->id()), IsOk());
  // Two batches in flight: the first is fenced, the one behind it is not written either.
  absl::Notification second_done;
  absl::Status second;
  absl::Status first;
  absl::Notification first_done;
  store->Commit({PutMember("j", "stale"), DeleteJob("j")}, [&](absl::Status s) {
    first = s;
    first_done.Notify();
  });
  store->Commit({PutKv("j", "stale", "x")}, [&](absl::Status s) {
    second = s;
    second_done.Notify();
  });
  ASSERT_TRUE(first_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  ASSERT_TRUE(second_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_THAT(first, StatusIs(absl::StatusCode::kFailedPrecondition,
                              AllOf(HasSubstr("fenced: this daemon is no longer the leader"),
                                    HasSubstr(absl::StrCat("held by lease ", lease->id())),
                                    HasSubstr(absl::StrCat("lease ", other->id())))));
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));

  // Fence by create_revision: the key deleted and created again is a different election.
  auto created = client.Put(leader_key, "daemon-3");
  ASSERT_THAT(created, IsOk());
  etcdserverpb::RangeRequest get;
  get.set_key(leader_key);
  auto kv = client.Range(get);
  ASSERT_THAT(kv, IsOk());
  ASSERT_EQ(kv->kvs_size(), 1);
  store->SetFence(EtcdFence::CreatedAt(leader_key, kv->kvs(0).create_revision()));
  batches.push_back({PutKv("j", "by-3", "1")});
  ASSERT_THAT(CommitAndWait(*store, batches.back()), IsOk());
  ASSERT_THAT(client.DeleteRange(leader_key, ""), IsOk());
  ASSERT_THAT(client.Put(leader_key, "daemon-4"), IsOk());
  EXPECT_THAT(CommitAndWait(*store, {PutKv("j", "by-3", "2")}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("fenced"), HasSubstr("with create_revision"))));
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
  // Without a fence the store writes again.
  store->SetFence(std::nullopt);
  batches.push_back({PutKv("j", "unfenced", "1")});
  ASSERT_THAT(CommitAndWait(*store, batches.back()), IsOk());
  EXPECT_EQ(DumpLoad(*store), OracleDump(batches));
}

TEST(EtcdStateStoreTest, NewStoreOnThePrefixLoadsEverythingInPages) {
  START_CLUSTER(cluster, 3);
  std::vector<std::vector<Mutation>> batches;
  for (int j = 0; j < 12; ++j) {
    const std::string job = absl::StrCat("job-", j);
    std::vector<Mutation> b = {PutJob(job, j)};
    for (int n = 0; n < 20; ++n) {
      b.push_back(PutMember(job, absl::StrCat(n), n % 3 ? Role::kWorker : Role::kPServer));
    }
    for (int k = 0; k < 5; ++k) b.push_back(PutKv(job, absl::StrCat("key", k), "v"));
    batches.push_back(b);
  }
  {
    auto store = MustOpen(StoreOptions(cluster));
    ASSERT_NE(store, nullptr);
    // Submitted without waiting: the destructor writes everything queued before it returns.
    for (const auto& b : batches) store->Commit(b, [](absl::Status s) { EXPECT_THAT(s, IsOk()); });
  }
  EtcdStateStore::Options o = StoreOptions(cluster);
  o.load_page_size = 7;  // many pages, one revision
  auto store = MustOpen(o);
  ASSERT_NE(store, nullptr);
  auto loaded = store->Load();
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->jobs.size(), 12u);
  EXPECT_EQ(loaded->members.size(), 240u);
  EXPECT_EQ(loaded->kv.size(), 60u);
  EXPECT_EQ(Dump(*loaded), OracleDump(batches));
}

TEST(EtcdStateStoreTest, TwoPrefixesDoNotSeeEachOther) {
  START_CLUSTER(cluster, 3);
  auto a = MustOpen(StoreOptions(cluster, "/msr/a/"));
  auto b = MustOpen(StoreOptions(cluster, "/msr/ab/"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<std::vector<Mutation>> in_a = {
      {PutJob("j"), PutMember("j", "0"), PutKv("j", "k", "a")}};
  std::vector<std::vector<Mutation>> in_b = {
      {PutJob("j", 7), PutMember("j", "1"), PutKv("j", "k", "b")}, {PutJob("other")}};
  for (const auto& m : in_a) ASSERT_THAT(CommitAndWait(*a, m), IsOk());
  for (const auto& m : in_b) ASSERT_THAT(CommitAndWait(*b, m), IsOk());
  // Deleting job j in one prefix leaves the other's job j alone.
  in_a.push_back({DeleteJob("j")});
  ASSERT_THAT(CommitAndWait(*a, in_a.back()), IsOk());
  EXPECT_EQ(DumpLoad(*a), OracleDump(in_a));
  EXPECT_EQ(DumpLoad(*b), OracleDump(in_b));
  EXPECT_EQ(a->Describe().substr(a->Describe().size() - 7), "/msr/a/");
}

TEST(EtcdStateStoreTest, OpenErrorsAreClear) {
  EtcdStateStore::Options o;
  o.endpoints = {"127.0.0.1:1"};
  o.prefix = "no-slash";
  EXPECT_THAT(EtcdStateStore::Open(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("must be non-empty and end with '/'")));
  o.prefix = "/msr/";
  o.dial_timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  EXPECT_THAT(EtcdStateStore::Open(o),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("etcd state store"), HasSubstr("127.0.0.1:1"))));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

}  // namespace
}  // namespace ms_rendezvous::core
