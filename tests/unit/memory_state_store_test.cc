#include "store/memory_state_store.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::IsOk;

Mutation PutJob(const std::string& id) {
  Mutation m;
  m.kind = Mutation::Kind::kPutJob;
  m.job.job_id = id;
  m.job.worker_num = 2;
  return m;
}

Mutation PutMember(const std::string& job, const std::string& node) {
  Mutation m;
  m.kind = Mutation::Kind::kPutMember;
  m.member.job_id = job;
  m.member.node_id = node;
  m.member.host = "10.0.0.1";
  return m;
}

TEST(MemoryStateStoreTest, CommitAppliesInOrderAndCallsBack) {
  MemoryStateStore store;
  bool done = false;
  store.Commit({PutJob("a"), PutMember("a", "0"), PutMember("a", "1"), PutJob("b"),
                PutMember("b", "0")},
               [&](absl::Status s) {
                 EXPECT_TRUE(s.ok());
                 done = true;
               });
  EXPECT_TRUE(done);
  Mutation del_member = PutMember("a", "0");
  del_member.kind = Mutation::Kind::kDeleteMember;
  store.Commit({del_member}, [](absl::Status) {});
  auto state = store.Load();
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(state->jobs.size(), 2u);
  EXPECT_EQ(state->members.size(), 2u);

  Mutation del_job = PutJob("a");
  del_job.kind = Mutation::Kind::kDeleteJob;
  store.Commit({del_job}, [](absl::Status) {});
  state = store.Load();
  ASSERT_EQ(state->jobs.size(), 1u);
  EXPECT_EQ(state->jobs[0].job_id, "b");
  ASSERT_EQ(state->members.size(), 1u);  // job b's member untouched
  EXPECT_EQ(state->members[0].job_id, "b");
  EXPECT_FALSE(store.durable());
}

}  // namespace
}  // namespace ms_rendezvous::core
