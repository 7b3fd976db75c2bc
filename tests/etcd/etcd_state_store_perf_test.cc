// Figures for EtcdStateStore on loopback (etcd and the test share the machine's cores; etcd
// fsyncs as in production): commits per second one at a time and pipelined (group commit), on a
// 1-member and a 3-member cluster, and the time to Load() 10,000 members. Printed, and recorded
// as test properties; the bounds are loose (an order of magnitude below what was measured) so
// that a loaded CI machine does not fail them, but a store that stopped grouping would.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "etcd/etcd_cluster.h"
#include "gtest/gtest.h"
#include "store/etcd/etcd_state_store.h"
#include "test_util.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::EtcdCluster;
using ::ms_rendezvous::testing::IsOk;

EtcdStateStore::Options StoreOptions(const EtcdCluster& c) {
  EtcdStateStore::Options o;
  o.endpoints = c.Endpoints();
  o.prefix = "/perf/";
  o.commit_timeout = absl::Seconds(30);
  return o;
}

Mutation Member(const std::string& job, int i) {
  Mutation m;
  m.kind = Mutation::Kind::kPutMember;
  m.member.job_id = job;
  m.member.node_id = absl::StrCat("node-", i);
  m.member.host = absl::StrCat("10.0.", i / 250, ".", i % 250);
  m.member.host_name = absl::StrCat("host-", i / 8);
  m.member.device_id = i % 8;
  m.member.incarnation = 1;
  m.member.credential = "00112233445566778899aabbccddeeff";
  m.member.rank = i;
  return m;
}

void Report(const std::string& name, double value, const std::string& unit) {
  std::printf("[ figure ] %-44s %10.1f %s\n", name.c_str(), value, unit.c_str());
  ::testing::Test::RecordProperty(name, absl::StrFormat("%.1f %s", value, unit));
}

// One batch at a time (each waits for the previous ack), then `pipelined` batches submitted at
// once.
void MeasureCommits(const std::string& label, int members) {
  auto cluster = EtcdCluster::Start(members);
  ASSERT_THAT(cluster, IsOk());
  auto store = EtcdStateStore::Open(StoreOptions(**cluster));
  ASSERT_THAT(store, IsOk());
  EtcdStateStore& s = **store;

  constexpr int kSequential = 300;
  absl::Time start = absl::Now();
  for (int i = 0; i < kSequential; ++i) {
    absl::Notification done;
    s.Commit({Member("seq", i)}, [&](absl::Status st) {
      EXPECT_THAT(st, IsOk());
      done.Notify();
    });
    done.WaitForNotification();
  }
  const double seq_s = absl::ToDoubleSeconds(absl::Now() - start);
  Report(label + " sequential commits/s", kSequential / seq_s, "commits/s");
  Report(label + " sequential commit latency", 1000 * seq_s / kSequential, "ms");

  constexpr int kPipelined = 10000;
  const uint64_t txns_before = s.transactions_committed();
  absl::Mutex mu;
  int acked = 0;
  start = absl::Now();
  for (int i = 0; i < kPipelined; ++i) {
    Mutation kv;
    kv.kind = Mutation::Kind::kPutKv;
    kv.kv = KvRecord{"pipe", absl::StrCat("k", i % 100), std::string(64, 'v')};
    s.Commit({Member("pipe", i), kv}, [&](absl::Status st) {
      EXPECT_THAT(st, IsOk());
      absl::MutexLock l(&mu);
      ++acked;
    });
  }
  {
    absl::MutexLock l(&mu);
    auto all = [&]() { return acked == kPipelined; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(50)));
  }
  const double pipe_s = absl::ToDoubleSeconds(absl::Now() - start);
  const uint64_t txns = s.transactions_committed() - txns_before;
  Report(label + " pipelined batches/s", kPipelined / pipe_s, "batches/s");
  Report(label + " pipelined batches per txn", double(kPipelined) / txns, "batches");

  EXPECT_GT(kSequential / seq_s, 10.0);
  EXPECT_GT(kPipelined / pipe_s, 300.0);
}

TEST(EtcdStateStorePerf, CommitsOneMember) {
  MSR_REQUIRE_ETCD();
  MeasureCommits("1 member", 1);
}

TEST(EtcdStateStorePerf, CommitsThreeMembers) {
  MSR_REQUIRE_ETCD();
  MeasureCommits("3 members", 3);
}

TEST(EtcdStateStorePerf, LoadTenThousandMembers) {
  MSR_REQUIRE_ETCD();
  auto cluster = EtcdCluster::Start(3);
  ASSERT_THAT(cluster, IsOk());
  constexpr int kMembers = 10000;
  {
    auto store = EtcdStateStore::Open(StoreOptions(**cluster));
    ASSERT_THAT(store, IsOk());
    // The job completing: one batch with the job and every member (through the journal).
    std::vector<Mutation> batch;
    Mutation job;
    job.kind = Mutation::Kind::kPutJob;
    job.job.job_id = "big";
    job.job.worker_num = kMembers;
    job.job.state = JobState::kComplete;
    batch.push_back(job);
    for (int i = 0; i < kMembers; ++i) batch.push_back(Member("big", i));
    absl::Notification done;
    const absl::Time start = absl::Now();
    (*store)->Commit(std::move(batch), [&](absl::Status st) {
      EXPECT_THAT(st, IsOk());
      done.Notify();
    });
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(40)));
    Report("commit of one 10,001-record batch (journal)",
           absl::ToDoubleMilliseconds(absl::Now() - start), "ms");
    EXPECT_EQ((*store)->journalled_batches(), 1u);
  }
  auto store = EtcdStateStore::Open(StoreOptions(**cluster));
  ASSERT_THAT(store, IsOk());
  const absl::Time start = absl::Now();
  auto loaded = (*store)->Load();
  const absl::Duration took = absl::Now() - start;
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->members.size(), static_cast<size_t>(kMembers));
  Report("Load() of 10,000 members", absl::ToDoubleMilliseconds(took), "ms");
  EXPECT_LT(took, absl::Seconds(10));
}

}  // namespace
}  // namespace ms_rendezvous::core
