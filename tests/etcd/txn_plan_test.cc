// TxnPlan and the key layout, without etcd: the operations a sequence of writes becomes never
// write a key twice (etcd's rule for one txn) and have the sequence's final effect; keys are
// injective and job prefixes select exactly one job; records round-trip every field.
#include "store/etcd/txn_plan.h"

#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/etcd/etcd_client.h"
#include "store/etcd/etcd_records.h"
#include "test_util.h"

namespace ms_rendezvous::core::etcd_store {
namespace {

using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::HasSubstr;

KeyOp Put(std::string k, std::string v) { return KeyOp{KeyOp::Kind::kPut, k, v, ""}; }
KeyOp Del(std::string k) { return KeyOp{KeyOp::Kind::kDelete, k, "", ""}; }
KeyOp DelRange(std::string a, std::string b) { return KeyOp{KeyOp::Kind::kDeleteRange, a, "", b}; }

using Store = std::map<std::string, std::string>;

void ApplyKeyOp(const KeyOp& op, Store& s) {
  switch (op.kind) {
    case KeyOp::Kind::kPut:
      s[op.key] = op.value;
      break;
    case KeyOp::Kind::kDelete:
      s.erase(op.key);
      break;
    case KeyOp::Kind::kDeleteRange:
      s.erase(s.lower_bound(op.key), s.lower_bound(op.range_end));
      break;
  }
}

// Applies RequestOps as etcd would (one txn: checks the one-write-per-key rule).
void ApplyTxn(const std::vector<etcdserverpb::RequestOp>& ops, Store& s, bool check_rule) {
  std::set<std::string> puts;
  std::vector<std::pair<std::string, std::string>> dels;
  for (const auto& op : ops) {
    if (op.has_request_put()) {
      EXPECT_TRUE(puts.insert(op.request_put().key()).second) << "two puts of one key";
    } else {
      const auto& d = op.request_delete_range();
      dels.emplace_back(d.key(),
                        d.range_end().empty() ? d.key() + std::string(1, '\0') : d.range_end());
    }
  }
  if (check_rule) {
    for (const std::string& p : puts) {
      for (const auto& [a, b] : dels) {
        EXPECT_FALSE(a <= p && p < b) << "put of '" << p << "' inside a deleted range";
      }
    }
  }
  for (const auto& op : ops) {
    if (op.has_request_delete_range()) {
      const auto& d = op.request_delete_range();
      if (d.range_end().empty()) {
        s.erase(d.key());
      } else {
        s.erase(s.lower_bound(d.key()), s.lower_bound(d.range_end()));
      }
    }
  }
  for (const auto& op : ops) {
    if (op.has_request_put()) s[op.request_put().key()] = op.request_put().value();
  }
}

TEST(TxnPlanTest, DeleteThenPutInsideTheRangeSplitsTheRange) {
  TxnPlan plan;
  plan.Add(Put("j/m/x", "old"));
  plan.Add(DelRange("j/m/", "j/m0"));
  plan.Add(Put("j/m/b", "1"));
  plan.Add(Put("j/m/d", "2"));
  plan.Add(Del("j/m/c"));  // inside the range: the range does it
  std::vector<std::string> shown;
  for (const auto& op : plan.SingleTxnOps()) {
    if (op.has_request_put()) {
      shown.push_back("put " + op.request_put().key());
    } else {
      shown.push_back("del [" + op.request_delete_range().key() + "," +
                      op.request_delete_range().range_end() + ")");
    }
  }
  EXPECT_THAT(shown, ::testing::ElementsAre(std::string("del [j/m/,j/m/b)"),
                                            "del [j/m/b" + std::string(1, '\0') + ",j/m/d)",
                                            "del [j/m/d" + std::string(1, '\0') + ",j/m0)",
                                            "put j/m/b", "put j/m/d"));
  EXPECT_EQ(plan.SingleTxnSize().ops, 5u);
}

// Random sequences over a small key space: both emissions give the sequence's final state, the
// single-txn one obeys etcd's rule, and UpperBound never underestimates.
TEST(TxnPlanTest, RandomSequencesMatchSequentialApplication) {
  std::mt19937 rng(12345);
  const std::vector<std::string> keys = {"a/", "a/1", "a/2", "a/3", "a0", "b/", "b/1", "b/2", "c"};
  for (int round = 0; round < 2000; ++round) {
    Store initial;
    for (const std::string& k : keys) {
      if (rng() % 2) initial[k] = "init";
    }
    Store expected = initial;
    TxnPlan plan;
    TxnPlan::Size bound = plan.SingleTxnSize();
    const int n = 1 + rng() % 12;
    for (int i = 0; i < n; ++i) {
      KeyOp op;
      switch (rng() % 4) {
        case 0:
        case 1:
          op = Put(keys[rng() % keys.size()], std::to_string(round * 100 + i));
          break;
        case 2:
          op = Del(keys[rng() % keys.size()]);
          break;
        default:
          op = rng() % 2 ? DelRange("a/", "a0") : DelRange("b/", "b0");
      }
      ApplyKeyOp(op, expected);
      const TxnPlan::Size more = TxnPlan::UpperBound({op});
      plan.Add(op);
      bound.ops += more.ops;
      bound.bytes += more.bytes;
      const TxnPlan::Size actual = plan.SingleTxnSize();
      ASSERT_LE(actual.ops, bound.ops);
      ASSERT_LE(actual.bytes, bound.bytes);
    }
    Store single = initial;
    ApplyTxn(plan.SingleTxnOps(), single, /*check_rule=*/true);
    EXPECT_EQ(single, expected) << "round " << round;
    Store staged = initial;
    ApplyTxn(plan.RangeDeleteOps(), staged, true);
    ApplyTxn(plan.PointOps(), staged, true);
    EXPECT_EQ(staged, expected) << "round " << round;
  }
}

TEST(EtcdKeysTest, EscapingKeepsJobsApart) {
  const EtcdKeys keys("/p/");
  EXPECT_EQ(keys.Job("job-1.a:b_c"), "/p/jobs/job-1.a:b_c");
  EXPECT_EQ(keys.Job("a/b"), "/p/jobs/a%2Fb");
  EXPECT_EQ(keys.Job(std::string("x\0y%", 4)), "/p/jobs/x%00y%25");
  EXPECT_EQ(keys.Member("j", Role::kPServer, "n 1"), "/p/members/j/pserver/n%201");
  EXPECT_EQ(keys.Kv("j", std::string("\0\xff", 2)), "/p/kv/j/00ff");
  EXPECT_EQ(keys.Kv("j", ""), "/p/kv/j/");
  // A job's member range holds no member of another job, whatever the ids.
  const std::string range = keys.MembersOfJob("a");
  const std::string end = etcd::EtcdClient::PrefixEnd(range);
  for (const std::string other : {"a.b", "a-", "a/b", "ab", "a%2F"}) {
    const std::string k = keys.Member(other, Role::kWorker, "0");
    EXPECT_FALSE(range <= k && k < end) << other;
  }
  const std::string mine = keys.Member("a", Role::kWorker, "0");
  EXPECT_TRUE(range <= mine && mine < end);
}

TEST(EtcdRecordsTest, RecordsRoundTripEveryField) {
  JobRecord j;
  j.job_id = std::string("j\0b", 3);
  j.generation = std::numeric_limits<uint64_t>::max();
  j.worker_num = 7;
  j.server_num = 3;
  j.topo_timeout_ms = -1;
  j.node_timeout_ms = std::numeric_limits<int64_t>::min();
  j.recovery_enabled = true;
  j.state = JobState::kDegraded;
  j.failure_reason = "bad \xff utf-8";
  j.token_digest = std::string(32, '\xab');
  auto j2 = DecodeJob(EncodeJob(j), "k");
  ASSERT_THAT(j2, IsOk());
  EXPECT_EQ(j2->job_id, j.job_id);
  EXPECT_EQ(j2->generation, j.generation);
  EXPECT_EQ(j2->topo_timeout_ms, -1);
  EXPECT_EQ(j2->node_timeout_ms, j.node_timeout_ms);
  EXPECT_EQ(j2->state, JobState::kDegraded);
  EXPECT_EQ(j2->failure_reason, j.failure_reason);
  EXPECT_EQ(j2->token_digest, j.token_digest);

  MemberRecord m;
  m.job_id = "j";
  m.node_id = "n";
  m.device_id = -1;
  m.credential = "00112233445566778899aabbccddeeff";
  m.rank = 0;  // rank 0 is not "absent"
  auto m2 = DecodeMember(EncodeMember(m), "k");
  ASSERT_THAT(m2, IsOk());
  EXPECT_EQ(m2->device_id, -1);
  ASSERT_TRUE(m2->rank.has_value());
  EXPECT_EQ(*m2->rank, 0u);
  EXPECT_EQ(m2->credential, m.credential);
  m.rank.reset();
  m2 = DecodeMember(EncodeMember(m), "k");
  ASSERT_THAT(m2, IsOk());
  EXPECT_FALSE(m2->rank.has_value());

  EXPECT_THAT(DecodeJob("\xff\xff\xff", "/p/jobs/x"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("/p/jobs/x")));
}

}  // namespace
}  // namespace ms_rendezvous::core::etcd_store
