#include "store/memory_state_store.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::HasSubstr;

TEST(MemoryStateStoreTest, PutLoadDelete) {
  MemoryStateStore store;
  ASSERT_THAT(store.PutJob(JobRecord{"a", 1, 2, 0, 1000, JobState::kForming, ""}), IsOk());
  ASSERT_THAT(store.PutJob(JobRecord{"b", 1, 1, 0, 1000, JobState::kForming, ""}), IsOk());
  MemberRecord m{"a", Role::kWorker, "0", "10.0.0.1", "h", -1, 7, MemberState::kWaiting, {}};
  ASSERT_THAT(store.PutMember(m), IsOk());
  m.node_id = "1";
  ASSERT_THAT(store.PutMember(m), IsOk());
  m.job_id = "b";
  ASSERT_THAT(store.PutMember(m), IsOk());
  EXPECT_EQ(store.LoadMembers("a")->size(), 2u);
  ASSERT_THAT(store.DeleteMember("a", Role::kWorker, "0"), IsOk());
  EXPECT_EQ(store.LoadMembers("a")->size(), 1u);
  ASSERT_THAT(store.DeleteJob("a"), IsOk());
  EXPECT_EQ(store.LoadJobs()->size(), 1u);
  EXPECT_EQ(store.LoadMembers("a")->size(), 0u);
  EXPECT_EQ(store.LoadMembers("b")->size(), 1u);  // other jobs untouched
}

TEST(MemoryStateStoreTest, MemberOfUnknownJob_FailedPrecondition) {
  MemoryStateStore store;
  MemberRecord m{"nojob", Role::kWorker, "0", "10.0.0.1", "h", -1, 7, MemberState::kWaiting, {}};
  EXPECT_THAT(store.PutMember(m),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("nojob")));
}

}  // namespace
}  // namespace ms_rendezvous::core
