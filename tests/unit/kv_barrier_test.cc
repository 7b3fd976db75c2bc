// Job key/value store and barriers: JobRegistry with a FakeClock and fake sessions, no gRPC.
// Covers the blocking calls (parked continuations, timeouts naming what is missing), limits,
// cross-job isolation, membership checks, job failure while waiting, cancellation by the
// client, durability of acknowledgements and restore after a restart.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/job_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/memory_state_store.h"
#include "test_util.h"
#include "unit/held_store.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

// A member's session stream: the KV tests only need it to exist.
class FakeSession : public MemberSession {
 public:
  void OnTopology(const Topology&) override {}
  void OnEvent(const JobEvent&) override {}
  void OnEnd(const absl::Status& s) override {
    absl::MutexLock l(&mu);
    end = s;
  }
  absl::Mutex mu;
  absl::Status end;
};


// Records every call of one continuation: how many times it ran and with what.
// Records a callback's results. The state is shared with the callbacks, which may outlive this
// object: the fixture's registry shuts down after the test body and completes parked calls.
template <typename T>
class Calls {
 public:
  absl::AnyInvocable<void(T)> Callback() {
    return [s = state_](T v) {
      absl::MutexLock l(&s->mu);
      s->got.push_back(std::move(v));
    };
  }
  size_t count() {
    absl::MutexLock l(&state_->mu);
    return state_->got.size();
  }
  T last() {
    absl::MutexLock l(&state_->mu);
    if (state_->got.empty()) return T(absl::InternalError("the callback never ran"));
    return state_->got.back();
  }

 private:
  struct State {
    absl::Mutex mu;
    std::vector<T> got;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

using StatusCalls = Calls<absl::Status>;
using ValueCalls = Calls<absl::StatusOr<std::string>>;

class KvBarrierTest : public ::testing::Test {
 protected:
  KvBarrierTest() { Reset(&store_); }

  void Reset(StateStore* store, KvLimits limits = KvLimits()) {
    RegistryOptions o;
    o.default_topo_timeout = absl::Seconds(60);
    o.default_node_timeout = absl::Seconds(30);
    o.disconnect_grace = absl::Seconds(2);
    o.finished_job_ttl = absl::Hours(1);
    o.kv_limits = limits;
    reg_ = std::make_unique<JobRegistry>(&clock_, o, store);
  }

  static std::string HostOf(const std::string& node_id) {
    return absl::StrCat("10.0.0.", 10 + std::stoi(node_id));
  }

  static MemberSpec Spec(const std::string& job, const std::string& node_id, uint32_t n,
                         bool recovery = false) {
    MemberSpec s;
    s.job_id = job;
    s.node_id = node_id;
    s.host = HostOf(node_id);
    s.worker_num = n;
    s.enable_recovery = recovery;
    return s;
  }

  struct Member {
    std::shared_ptr<FakeSession> session = std::make_shared<FakeSession>();
    MemberRef ref;
  };

  Member Join(const MemberSpec& spec) {
    Member m;
    auto ref = reg_->JoinSession(spec, m.session);
    EXPECT_THAT(ref, IsOk());
    if (ref.ok()) m.ref = *ref;
    return m;
  }

  std::vector<Member> JoinAll(uint32_t n, const std::string& job = "j", bool recovery = false) {
    std::vector<Member> out;
    for (uint32_t i = 0; i < n; ++i) out.push_back(Join(Spec(job, std::to_string(i), n, recovery)));
    return out;
  }

  void Advance(absl::Duration d) {
    clock_.Advance(d);
    reg_->ProcessDeadlines();
  }

  // Runs a call whose continuation must complete at once (memory store) and returns its result.
  template <typename T, typename Fn>
  static T Sync(Fn call) {
    std::optional<T> out;
    int calls = 0;
    call([&](T v) {
      ++calls;
      out = std::move(v);
    });
    EXPECT_EQ(calls, 1) << "the continuation must run exactly once, at once";
    if (!out.has_value()) return T(absl::InternalError("the callback never ran"));
    return std::move(*out);
  }

  absl::Status Set(const MemberRef& ref, const std::string& key, const std::string& value) {
    return Sync<absl::Status>([&](auto cb) { reg_->KvSet(ref, key, value, std::move(cb)); });
  }
  absl::StatusOr<std::string> TryGet(const MemberRef& ref, const std::string& key) {
    return Sync<absl::StatusOr<std::string>>([&](auto cb) {
      EXPECT_EQ(reg_->KvGet(ref, key, absl::ZeroDuration(), std::move(cb)), 0u);
    });
  }
  absl::StatusOr<int64_t> Add(const MemberRef& ref, const std::string& key, int64_t delta) {
    return Sync<absl::StatusOr<int64_t>>(
        [&](auto cb) { reg_->KvAdd(ref, key, delta, std::move(cb)); });
  }
  absl::StatusOr<CompareSetResult> Cas(const MemberRef& ref, const std::string& key,
                                       const std::string& expected, const std::string& desired) {
    return Sync<absl::StatusOr<CompareSetResult>>(
        [&](auto cb) { reg_->KvCompareSet(ref, key, expected, desired, std::move(cb)); });
  }
  absl::StatusOr<bool> Delete(const MemberRef& ref, const std::string& key) {
    return Sync<absl::StatusOr<bool>>([&](auto cb) { reg_->KvDelete(ref, key, std::move(cb)); });
  }
  std::vector<std::string> Keys(const MemberRef& ref, const std::string& prefix) {
    auto page = reg_->KvList(ref, prefix, "", 1000);
    EXPECT_THAT(page, IsOk());
    std::vector<std::string> keys;
    if (page.ok()) {
      for (auto& [k, v] : page->entries) keys.push_back(k);
    }
    return keys;
  }

  FakeClock clock_;
  MemoryStateStore store_;
  std::unique_ptr<JobRegistry> reg_;
};

// --- Set / Get / TryGet --------------------------------------------------------------------------

TEST_F(KvBarrierTest, Set_ThenGet_ReturnsValue) {
  auto ms = JoinAll(2);
  ASSERT_THAT(Set(ms[0].ref, "addr", "10.0.0.1:1234"), IsOk());
  auto got = TryGet(ms[1].ref, "addr");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, "10.0.0.1:1234");
}

TEST_F(KvBarrierTest, Set_ExistingKey_OverwritesValue) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "k", "old"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "k", "new"), IsOk());
  EXPECT_EQ(*TryGet(ms[0].ref, "k"), "new");
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 1u);
}

TEST_F(KvBarrierTest, TryGet_MissingKey_NotFoundNamingKey) {
  auto ms = JoinAll(1);
  EXPECT_THAT(
      TryGet(ms[0].ref, "nccl_id"),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr("'nccl_id'"), HasSubstr("'j'"))));
}

TEST_F(KvBarrierTest, SetGet_BinaryKeyAndValueWithNuls_RoundTrip) {
  auto ms = JoinAll(2);
  const std::string key("a\0b\xff", 4);
  const std::string value("\0\x01\0\x02\xfe", 5);
  ASSERT_THAT(Set(ms[0].ref, key, value), IsOk());
  auto got = TryGet(ms[1].ref, key);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, value);
  EXPECT_EQ(got->size(), 5u);
  // A key that differs only after the NUL is a different key.
  EXPECT_THAT(TryGet(ms[1].ref, std::string("a\0c\xff", 4)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\\x00")));
  EXPECT_THAT(TryGet(ms[1].ref, "a"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'a'")));
}

TEST_F(KvBarrierTest, Set_EmptyKey_InvalidArgument) {
  auto ms = JoinAll(1);
  EXPECT_THAT(Set(ms[0].ref, "", "v"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 0u);
}

// --- blocking Get --------------------------------------------------------------------------------

TEST_F(KvBarrierTest, Get_MissingKey_ParkedUntilSetThenGetsValue) {
  auto ms = JoinAll(2);
  ValueCalls got;
  EXPECT_NE(reg_->KvGet(ms[1].ref, "root", absl::Seconds(30), got.Callback()), 0u);
  Advance(absl::Seconds(10));
  EXPECT_EQ(got.count(), 0u);
  ASSERT_THAT(Set(ms[0].ref, "root", "uid-bytes"), IsOk());
  ASSERT_EQ(got.count(), 1u);
  ASSERT_THAT(got.last(), IsOk());
  EXPECT_EQ(*got.last(), "uid-bytes");
  Advance(absl::Seconds(60));  // its deadline passing later calls nothing again
  EXPECT_EQ(got.count(), 1u);
}

TEST_F(KvBarrierTest, Get_ExistingKeyWithTimeout_ReturnsAtOnce) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "k", "v"), IsOk());
  ValueCalls got;
  EXPECT_EQ(reg_->KvGet(ms[0].ref, "k", absl::Seconds(30), got.Callback()), 0u);
  ASSERT_EQ(got.count(), 1u);
  EXPECT_EQ(*got.last(), "v");
}

TEST_F(KvBarrierTest, Get_TenThousandWaitersOnOneKey_AllReleasedByOneSet) {
  auto ms = JoinAll(2);
  constexpr int kWaiters = 10000;
  int released = 0, wrong = 0;
  for (int i = 0; i < kWaiters; ++i) {
    const uint64_t id = reg_->KvGet(ms[i % 2].ref, "hot", absl::InfiniteDuration(),
                                    [&](absl::StatusOr<std::string> v) {
                                      ++released;
                                      if (!v.ok() || *v != "go") ++wrong;
                                    });
    ASSERT_NE(id, 0u);
  }
  EXPECT_EQ(released, 0);
  ASSERT_THAT(Set(ms[0].ref, "hot", "go"), IsOk());
  EXPECT_EQ(released, kWaiters);
  EXPECT_EQ(wrong, 0);
  ASSERT_THAT(Set(ms[0].ref, "hot", "again"), IsOk());  // nobody is called twice
  EXPECT_EQ(released, kWaiters);
}

TEST_F(KvBarrierTest, Get_Timeout_DeadlineExceededAtDeadlineNamingKeyAndDuration) {
  auto ms = JoinAll(1);
  ValueCalls got;
  ASSERT_NE(reg_->KvGet(ms[0].ref, "never", absl::Seconds(5), got.Callback()), 0u);
  Advance(absl::Seconds(5) - absl::Milliseconds(1));
  EXPECT_EQ(got.count(), 0u);
  Advance(absl::Milliseconds(1));
  ASSERT_EQ(got.count(), 1u);
  EXPECT_THAT(got.last(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                   AllOf(HasSubstr("'never'"), HasSubstr("5s"), HasSubstr("'j'"))));
  ASSERT_THAT(Set(ms[0].ref, "never", "late"), IsOk());  // a later Set calls nothing again
  EXPECT_EQ(got.count(), 1u);
}

TEST_F(KvBarrierTest, Get_InfiniteTimeout_NeverTimesOut) {
  // Node timeout never: the member stays alive through the long wait.
  MemberSpec s = Spec("forever", "0", 1);
  s.node_timeout_ms = -1;
  Member m = Join(s);
  ValueCalls got;
  ASSERT_NE(reg_->KvGet(m.ref, "k", absl::InfiniteDuration(), got.Callback()), 0u);
  Advance(absl::Hours(100));
  EXPECT_EQ(got.count(), 0u);
  ASSERT_THAT(Set(m.ref, "k", "v"), IsOk());
  ASSERT_EQ(got.count(), 1u);
  EXPECT_EQ(*got.last(), "v");
}

// --- Wait ----------------------------------------------------------------------------------------

TEST_F(KvBarrierTest, Wait_AllKeysExist_OkAtOnce) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "a", "1"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "b", "2"), IsOk());
  StatusCalls done;
  EXPECT_EQ(reg_->KvWait(ms[0].ref, {"a", "b"}, absl::Seconds(1), done.Callback()), 0u);
  ASSERT_EQ(done.count(), 1u);
  EXPECT_THAT(done.last(), IsOk());
}

TEST_F(KvBarrierTest, Wait_CompletesOnlyWhenAllKeysSet) {
  auto ms = JoinAll(2);
  ASSERT_THAT(Set(ms[0].ref, "key-a", "1"), IsOk());
  StatusCalls done;
  ASSERT_NE(
      reg_->KvWait(ms[1].ref, {"key-a", "key-b", "key-c"}, absl::Seconds(30), done.Callback()), 0u);
  ASSERT_THAT(Set(ms[0].ref, "key-b", "2"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "key-b", "2 again"), IsOk());  // the same key twice counts once
  EXPECT_EQ(done.count(), 0u);
  ASSERT_THAT(Set(ms[0].ref, "key-c", "3"), IsOk());
  ASSERT_EQ(done.count(), 1u);
  EXPECT_THAT(done.last(), IsOk());
}

TEST_F(KvBarrierTest, Wait_Timeout_ListsOnlyMissingKeys) {
  auto ms = JoinAll(1);
  StatusCalls done;
  ASSERT_NE(
      reg_->KvWait(ms[0].ref, {"key-a", "key-b", "key-c"}, absl::Seconds(10), done.Callback()), 0u);
  ASSERT_THAT(Set(ms[0].ref, "key-b", "x"), IsOk());
  Advance(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_EQ(done.count(), 0u);
  Advance(absl::Milliseconds(1));
  ASSERT_EQ(done.count(), 1u);
  EXPECT_THAT(done.last(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("'key-a'"), HasSubstr("'key-c'"), Not(HasSubstr("'key-b'")),
                             HasSubstr("2 of 3"), HasSubstr("10s"))));
}

TEST_F(KvBarrierTest, Wait_TwentyFiveMissingKeys_ListCappedWithAndMore) {
  auto ms = JoinAll(1);
  std::vector<std::string> keys;
  for (int i = 0; i < 25; ++i) keys.push_back(absl::StrCat("k", 100 + i));
  StatusCalls done;
  ASSERT_NE(reg_->KvWait(ms[0].ref, keys, absl::Seconds(1), done.Callback()), 0u);
  Advance(absl::Seconds(1));
  ASSERT_EQ(done.count(), 1u);
  const absl::Status st = done.last();
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kDeadlineExceeded,
                           AllOf(HasSubstr("25 of 25"), HasSubstr("'k100'"), HasSubstr("'k119'"),
                                 Not(HasSubstr("'k120'")), HasSubstr("and 5 more"))));
}

TEST_F(KvBarrierTest, Wait_ZeroTimeoutWithMissingKeys_NotFoundListingThem) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "key-a", "1"), IsOk());
  StatusCalls done;
  EXPECT_EQ(reg_->KvWait(ms[0].ref, {"key-a", "key-b"}, absl::ZeroDuration(), done.Callback()), 0u);
  ASSERT_EQ(done.count(), 1u);
  EXPECT_THAT(done.last(),
              StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr("1 of 2"), HasSubstr("'key-b'"),
                                                          Not(HasSubstr("'key-a'")))));
}

// --- List / NumKeys ------------------------------------------------------------------------------

TEST_F(KvBarrierTest, List_Prefix_OrderedAndBoundariesExact) {
  auto ms = JoinAll(1);
  for (const char* k : {"b", "ab", "a", "abc", "aa", "a/1", "b0", "`", "ac"}) {
    ASSERT_THAT(Set(ms[0].ref, k, absl::StrCat("v-", k)), IsOk());
  }
  EXPECT_THAT(Keys(ms[0].ref, "a"), ElementsAre("a", "a/1", "aa", "ab", "abc", "ac"));
  EXPECT_THAT(Keys(ms[0].ref, "ab"), ElementsAre("ab", "abc"));
  EXPECT_THAT(Keys(ms[0].ref, "b"), ElementsAre("b", "b0"));
  EXPECT_THAT(Keys(ms[0].ref, "abd"), ElementsAre());
  EXPECT_THAT(Keys(ms[0].ref, ""),
              ElementsAre("`", "a", "a/1", "aa", "ab", "abc", "ac", "b", "b0"));
  auto page = reg_->KvList(ms[0].ref, "ab", "", 10);
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(page->entries, ElementsAre(Pair("ab", "v-ab"), Pair("abc", "v-abc")));
  EXPECT_FALSE(page->more);
  EXPECT_EQ(page->next_after, "");
}

TEST_F(KvBarrierTest, List_Paged_NextAfterWalksEveryKeyOnce) {
  auto ms = JoinAll(1);
  for (int i = 0; i < 7; ++i) ASSERT_THAT(Set(ms[0].ref, absl::StrCat("p/", i), "v"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "q", "outside"), IsOk());
  std::vector<std::string> all;
  std::string after;
  int pages = 0;
  for (;;) {
    auto page = reg_->KvList(ms[0].ref, "p/", after, 3);
    ASSERT_THAT(page, IsOk());
    ++pages;
    EXPECT_LE(page->entries.size(), 3u);
    for (auto& [k, v] : page->entries) all.push_back(k);
    if (!page->more) {
      EXPECT_EQ(page->next_after, "");
      break;
    }
    EXPECT_EQ(page->next_after, page->entries.back().first);
    after = page->next_after;
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(all, ElementsAre("p/0", "p/1", "p/2", "p/3", "p/4", "p/5", "p/6"));
}

TEST_F(KvBarrierTest, List_ExactlyFullPage_NextPageEmpty) {
  auto ms = JoinAll(1);
  for (int i = 0; i < 3; ++i) ASSERT_THAT(Set(ms[0].ref, absl::StrCat("p", i), "v"), IsOk());
  auto page = reg_->KvList(ms[0].ref, "p", "", 3);
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->entries.size(), 3u);
  EXPECT_FALSE(page->more);
}

// --- limits --------------------------------------------------------------------------------------

class KvLimitsTest : public KvBarrierTest {
 protected:
  KvLimitsTest() {
    KvLimits l;
    l.max_key_bytes = 8;
    l.max_value_bytes = 16;
    l.max_keys_per_job = 3;
    l.max_bytes_per_job = 40;
    Reset(&store_, l);
  }
};

TEST_F(KvLimitsTest, KeyTooLong_ResourceExhaustedNamingFlag) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "12345678", "v"), IsOk());  // exactly the limit
  EXPECT_THAT(Set(ms[0].ref, "123456789", "v"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--kv-max-key-bytes=8")));
  EXPECT_THAT(TryGet(ms[0].ref, "123456789"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--kv-max-key-bytes")));
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 1u);
}

TEST_F(KvLimitsTest, ValueTooLarge_ResourceExhaustedOldValueKept) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "k", "old"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "k2", std::string(16, 'x')), IsOk());  // exactly the limit
  EXPECT_THAT(Set(ms[0].ref, "k", std::string(17, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("--kv-max-value-bytes=16"), HasSubstr("'k'"))));
  EXPECT_EQ(*TryGet(ms[0].ref, "k"), "old");
}

TEST_F(KvLimitsTest, TooManyKeys_ResourceExhaustedNothingAdded) {
  auto ms = JoinAll(1);
  for (const char* k : {"a", "b", "c"}) ASSERT_THAT(Set(ms[0].ref, k, "1"), IsOk());
  EXPECT_THAT(Set(ms[0].ref, "d", "1"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--kv-max-keys-per-job=3")));
  EXPECT_THAT(TryGet(ms[0].ref, "d"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'d'")));
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 3u);
  // Overwriting an existing key is not a new key.
  EXPECT_THAT(Set(ms[0].ref, "a", "2"), IsOk());
}

TEST_F(KvLimitsTest, TooManyBytes_ResourceExhaustedOldValueKept) {
  auto ms = JoinAll(1);
  // (1 + 16) + (1 + 16) + (1 + 5) = 40 bytes: exactly the limit.
  ASSERT_THAT(Set(ms[0].ref, "a", std::string(16, 'a')), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "c", std::string(16, 'c')), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "b", "small"), IsOk());
  EXPECT_THAT(Set(ms[0].ref, "b", "smaller"), StatusIs(absl::StatusCode::kResourceExhausted,
                                                       HasSubstr("--kv-max-bytes-per-job=40")));
  EXPECT_EQ(*TryGet(ms[0].ref, "b"), "small");
  // Replacing a value counts the new size instead of the old one, not both.
  EXPECT_THAT(Set(ms[0].ref, "a", std::string(16, 'z')), IsOk());
  EXPECT_EQ(*TryGet(ms[0].ref, "a"), std::string(16, 'z'));
}

// --- isolation and membership --------------------------------------------------------------------

TEST_F(KvBarrierTest, Isolation_OtherJobsKeysInvisible) {
  auto a = JoinAll(2, "job-a");
  auto b = JoinAll(2, "job-b");
  ASSERT_THAT(Set(a[0].ref, "shared-name", "from A"), IsOk());
  EXPECT_THAT(TryGet(b[0].ref, "shared-name"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'job-b'")));
  EXPECT_EQ(*reg_->KvNumKeys(b[0].ref), 0u);
  EXPECT_THAT(Keys(b[0].ref, ""), ElementsAre());
  // B's blocked reader is not released by A's write of the same key, but by B's own.
  ValueCalls got;
  ASSERT_NE(reg_->KvGet(b[1].ref, "k", absl::Seconds(10), got.Callback()), 0u);
  ASSERT_THAT(Set(a[0].ref, "k", "A"), IsOk());
  EXPECT_EQ(got.count(), 0u);
  ASSERT_THAT(Set(b[0].ref, "k", "B"), IsOk());
  ASSERT_EQ(got.count(), 1u);
  EXPECT_EQ(*got.last(), "B");
  EXPECT_EQ(*TryGet(a[1].ref, "k"), "A");
}

TEST_F(KvBarrierTest, Isolation_ForgedRefWithOtherJobId_Rejected) {
  auto a = JoinAll(2, "job-a");
  auto b = JoinAll(2, "job-b");
  ASSERT_EQ(a[0].ref.job_id, "job-a");  // a member's reference names its own job
  ASSERT_THAT(Set(b[0].ref, "secret", "B"), IsOk());
  // A's member 0 with job B's id: B's node '0' has another incarnation.
  MemberRef forged = a[0].ref;
  forged.job_id = "job-b";
  EXPECT_THAT(TryGet(forged, "secret"),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("stale incarnation")));
  EXPECT_THAT(Set(forged, "secret", "overwritten"),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("job-b")));
  EXPECT_EQ(*TryGet(b[1].ref, "secret"), "B");
  // A node id job B does not have at all.
  MemberRef unknown{"job-b", Role::kWorker, "1", a[1].ref.incarnation};
  unknown.node_id = "7";
  EXPECT_THAT(reg_->KvNumKeys(unknown), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'7'")));
}

TEST_F(KvBarrierTest, Kv_UnknownJob_NotFound) {
  MemberRef ref{"nope", Role::kWorker, "0", 1};
  EXPECT_THAT(Set(ref, "k", "v"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'nope'")));
  EXPECT_THAT(TryGet(ref, "k"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'nope'")));
  EXPECT_THAT(reg_->KvList(ref, "", "", 10),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'nope'")));
}

TEST_F(KvBarrierTest, Kv_NonMember_NotFound) {
  auto ms = JoinAll(2);
  MemberRef stranger = ms[0].ref;
  stranger.node_id = "5";
  EXPECT_THAT(
      Set(stranger, "k", "v"),
      StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr("'5'"), HasSubstr("not a member"))));
  MemberRef server = ms[0].ref;
  server.role = Role::kPServer;  // the right node id in the wrong role
  EXPECT_THAT(TryGet(server, "k"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("not a member")));
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 0u);
}

TEST_F(KvBarrierTest, Kv_StaleIncarnation_Aborted) {
  auto ms = JoinAll(2);
  MemberRef stale = ms[1].ref;
  stale.incarnation += 1000;
  EXPECT_THAT(Set(stale, "k", "v"),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("stale incarnation")));
  StatusCalls done;
  EXPECT_EQ(reg_->KvWait(stale, {"k"}, absl::Seconds(1), done.Callback()), 0u);
  EXPECT_THAT(done.last(), StatusIs(absl::StatusCode::kAborted, HasSubstr("stale incarnation")));
}

TEST_F(KvBarrierTest, Kv_RecoveredMembersOldIncarnation_Aborted) {
  auto ms = JoinAll(2, "j", /*recovery=*/true);
  reg_->SessionClosed(ms[1].ref, ms[1].session.get());
  Advance(absl::Seconds(2));
  Member back = Join(Spec("j", "1", 2, /*recovery=*/true));
  EXPECT_THAT(Set(ms[1].ref, "k", "v"),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("stale incarnation")));
  EXPECT_THAT(Set(back.ref, "k", "v"), IsOk());
}

TEST_F(KvBarrierTest, Kv_DeadMember_Aborted) {
  auto ms = JoinAll(2, "j", /*recovery=*/true);  // the job survives (degraded)
  reg_->SessionClosed(ms[1].ref, ms[1].session.get());
  Advance(absl::Seconds(2));
  ASSERT_EQ(reg_->GetJob("j")->state, JobState::kDegraded);
  EXPECT_THAT(Set(ms[1].ref, "k", "v"),
              StatusIs(absl::StatusCode::kAborted, AllOf(HasSubstr("rank 1"), HasSubstr("dead"))));
  EXPECT_THAT(TryGet(ms[1].ref, "k"), StatusIs(absl::StatusCode::kAborted, HasSubstr("dead")));
  EXPECT_THAT(Set(ms[0].ref, "k", "v"), IsOk());  // the survivor still can
}

TEST_F(KvBarrierTest, Kv_LeftMember_Aborted) {
  auto ms = JoinAll(2);
  ASSERT_THAT(reg_->Leave(ms[0].ref), IsOk());
  EXPECT_THAT(Set(ms[0].ref, "k", "v"),
              StatusIs(absl::StatusCode::kAborted, AllOf(HasSubstr("rank 0"), HasSubstr("left"))));
  EXPECT_THAT(reg_->KvNumKeys(ms[0].ref), StatusIs(absl::StatusCode::kAborted, HasSubstr("left")));
  EXPECT_THAT(Set(ms[1].ref, "k", "v"), IsOk());
}

// --- job failure while waiting -------------------------------------------------------------------

TEST_F(KvBarrierTest, JobFails_SessionDropped_EveryPendingCallAbortedAtOnceNamingDeadMember) {
  auto ms = JoinAll(3);
  ValueCalls get;
  StatusCalls wait, barrier0, barrier1;
  ASSERT_NE(reg_->KvGet(ms[0].ref, "k", absl::Seconds(60), get.Callback()), 0u);
  ASSERT_NE(reg_->KvWait(ms[1].ref, {"x", "y"}, absl::Seconds(60), wait.Callback()), 0u);
  ASSERT_NE(reg_->Barrier(ms[0].ref, "init", absl::Seconds(60), {}, barrier0.Callback()), 0u);
  ASSERT_NE(reg_->Barrier(ms[1].ref, "init", absl::Seconds(60), {}, barrier1.Callback()), 0u);
  reg_->SessionClosed(ms[2].ref, ms[2].session.get());
  Advance(absl::Milliseconds(1999));
  EXPECT_EQ(get.count() + wait.count() + barrier0.count() + barrier1.count(), 0u);
  Advance(absl::Milliseconds(1));  // grace over: rank 2 is dead, the job failed
  ASSERT_EQ(reg_->GetJob("j")->state, JobState::kFailed);
  const auto names_dead = AllOf(HasSubstr("rank 2"), HasSubstr("node '2'"), HasSubstr(HostOf("2")));
  ASSERT_EQ(get.count(), 1u);
  EXPECT_THAT(get.last(), StatusIs(absl::StatusCode::kAborted, names_dead));
  ASSERT_EQ(wait.count(), 1u);
  EXPECT_THAT(wait.last(), StatusIs(absl::StatusCode::kAborted, names_dead));
  ASSERT_EQ(barrier0.count(), 1u);
  EXPECT_THAT(barrier0.last(), StatusIs(absl::StatusCode::kAborted, names_dead));
  ASSERT_EQ(barrier1.count(), 1u);
  EXPECT_THAT(barrier1.last(), StatusIs(absl::StatusCode::kAborted, names_dead));
  // Their own timeouts passing later change nothing.
  Advance(absl::Seconds(120));
  EXPECT_EQ(get.count() + wait.count() + barrier0.count() + barrier1.count(), 4u);
}

TEST_F(KvBarrierTest, JobFails_ReportError_PendingGetAbortedWithReason) {
  auto ms = JoinAll(2);
  ValueCalls get;
  ASSERT_NE(reg_->KvGet(ms[0].ref, "root_info", absl::InfiniteDuration(), get.Callback()), 0u);
  ASSERT_THAT(reg_->ReportError(ms[1].ref, "HCCL init failed"), IsOk());
  ASSERT_EQ(get.count(), 1u);
  EXPECT_THAT(get.last(), StatusIs(absl::StatusCode::kAborted,
                                   AllOf(HasSubstr("rank 1"), HasSubstr("HCCL init failed"))));
}

TEST_F(KvBarrierTest, JobFailed_LaterCallsAborted) {
  auto ms = JoinAll(2);
  ASSERT_THAT(Set(ms[0].ref, "k", "v"), IsOk());
  ASSERT_THAT(reg_->ReportError(ms[1].ref, "boom"), IsOk());
  const auto failed = StatusIs(absl::StatusCode::kAborted, HasSubstr("boom"));
  EXPECT_THAT(Set(ms[0].ref, "k", "w"), failed);
  EXPECT_THAT(TryGet(ms[0].ref, "k"), failed);
  ValueCalls get;
  EXPECT_EQ(reg_->KvGet(ms[0].ref, "other", absl::Seconds(5), get.Callback()), 0u);
  EXPECT_THAT(get.last(), failed);
  StatusCalls wait;
  EXPECT_EQ(reg_->KvWait(ms[0].ref, {"k"}, absl::Seconds(5), wait.Callback()), 0u);
  EXPECT_THAT(wait.last(), failed);
  EXPECT_THAT(Add(ms[0].ref, "n", 1), failed);
  EXPECT_THAT(Cas(ms[0].ref, "k", "v", "w"), failed);
  EXPECT_THAT(Delete(ms[0].ref, "k"), failed);
  EXPECT_THAT(reg_->KvList(ms[0].ref, "", "", 10), failed);
  EXPECT_THAT(reg_->KvNumKeys(ms[0].ref), failed);
  StatusCalls barrier;
  EXPECT_EQ(reg_->Barrier(ms[0].ref, "b", absl::Seconds(5), {}, barrier.Callback()), 0u);
  EXPECT_THAT(barrier.last(), failed);
}

// --- cancellation --------------------------------------------------------------------------------

TEST_F(KvBarrierTest, CancelWaiter_Get_CancelledOnceLaterSetCallsNothing) {
  auto ms = JoinAll(2);
  ValueCalls cancelled, other;
  const uint64_t id = reg_->KvGet(ms[0].ref, "k", absl::Seconds(30), cancelled.Callback());
  ASSERT_NE(id, 0u);
  ASSERT_NE(reg_->KvGet(ms[1].ref, "k", absl::Seconds(30), other.Callback()), 0u);
  reg_->CancelWaiter("j", id);
  ASSERT_EQ(cancelled.count(), 1u);
  EXPECT_THAT(cancelled.last(), StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
  reg_->CancelWaiter("j", id);  // twice: no-op
  ASSERT_THAT(Set(ms[1].ref, "k", "v"), IsOk());
  Advance(absl::Seconds(60));
  EXPECT_EQ(cancelled.count(), 1u);
  ASSERT_EQ(other.count(), 1u);  // the other waiter of the key is unaffected
  EXPECT_EQ(*other.last(), "v");
}

TEST_F(KvBarrierTest, CancelWaiter_Wait_CancelledOnceTimeoutCallsNothing) {
  auto ms = JoinAll(1);
  StatusCalls done;
  const uint64_t id = reg_->KvWait(ms[0].ref, {"a", "b"}, absl::Seconds(5), done.Callback());
  ASSERT_NE(id, 0u);
  reg_->CancelWaiter("j", id);
  ASSERT_EQ(done.count(), 1u);
  EXPECT_THAT(done.last(), StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
  ASSERT_THAT(Set(ms[0].ref, "a", "1"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "b", "1"), IsOk());
  Advance(absl::Seconds(10));
  EXPECT_EQ(done.count(), 1u);
}

TEST_F(KvBarrierTest, CancelWaiter_AfterCompletion_NoSecondCall) {
  auto ms = JoinAll(1);
  ValueCalls got;
  const uint64_t id = reg_->KvGet(ms[0].ref, "k", absl::Seconds(5), got.Callback());
  ASSERT_THAT(Set(ms[0].ref, "k", "v"), IsOk());
  reg_->CancelWaiter("j", id);
  reg_->CancelWaiter("other-job", id);
  ASSERT_EQ(got.count(), 1u);
  EXPECT_THAT(got.last(), IsOk());
}

TEST_F(KvBarrierTest, CancelWaiter_Barrier_ParticipantNoLongerCountsAsArrived) {
  auto ms = JoinAll(3);
  StatusCalls first0, again0, b1, b2;
  const uint64_t id = reg_->Barrier(ms[0].ref, "sync", absl::Seconds(30), {}, first0.Callback());
  ASSERT_NE(id, 0u);
  ASSERT_NE(reg_->Barrier(ms[1].ref, "sync", absl::Seconds(30), {}, b1.Callback()), 0u);
  reg_->CancelWaiter("j", id);
  ASSERT_EQ(first0.count(), 1u);
  EXPECT_THAT(first0.last(), StatusIs(absl::StatusCode::kCancelled, HasSubstr("cancelled")));
  // Rank 2 arriving does not complete it: rank 0 left the barrier.
  ASSERT_NE(reg_->Barrier(ms[2].ref, "sync", absl::Seconds(30), {}, b2.Callback()), 0u);
  EXPECT_EQ(b1.count() + b2.count(), 0u);
  // Rank 0 may arrive again (not a duplicate) and completes it.
  EXPECT_EQ(reg_->Barrier(ms[0].ref, "sync", absl::Seconds(30), {}, again0.Callback()), 0u);
  EXPECT_THAT(again0.last(), IsOk());
  EXPECT_THAT(b1.last(), IsOk());
  EXPECT_THAT(b2.last(), IsOk());
  EXPECT_EQ(first0.count(), 1u);
}

// --- durability ----------------------------------------------------------------------------------

TEST_F(KvBarrierTest, Set_DurableStore_AckAndReleasedReadersOnlyAfterStoreAcks) {
  HeldStore held;
  Reset(&held);
  auto ms = JoinAll(2);
  held.ReleaseAll();
  ValueCalls reader;
  ASSERT_NE(reg_->KvGet(ms[1].ref, "k", absl::Seconds(30), reader.Callback()), 0u);
  StatusCalls ack;
  reg_->KvSet(ms[0].ref, "k", "v", ack.Callback());
  EXPECT_EQ(held.held(), 1u);
  EXPECT_EQ(ack.count(), 0u);
  EXPECT_EQ(reader.count(), 0u);
  held.ReleaseAll();
  ASSERT_EQ(ack.count(), 1u);
  EXPECT_THAT(ack.last(), IsOk());
  ASSERT_EQ(reader.count(), 1u);
  EXPECT_EQ(*reader.last(), "v");
  reg_.reset();
}

// --- restore -------------------------------------------------------------------------------------

TEST_F(KvBarrierTest, Restore_EntriesReadableAfterRestart) {
  auto ms = JoinAll(2);
  const std::string binary("\0bin\xff", 5);
  ASSERT_THAT(Set(ms[0].ref, "kept", "value"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "overwritten", "first"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "overwritten", "second"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, binary, binary), IsOk());
  auto stored = store_.Load();
  ASSERT_THAT(stored, IsOk());
  Reset(&store_);  // "restart"
  ASSERT_THAT(reg_->Restore(*stored), IsOk());
  EXPECT_EQ(*TryGet(ms[1].ref, "kept"), "value");
  EXPECT_EQ(*TryGet(ms[1].ref, "overwritten"), "second");
  EXPECT_EQ(*TryGet(ms[1].ref, binary), binary);
  EXPECT_EQ(*reg_->KvNumKeys(ms[1].ref), 3u);
  // A restored key releases nobody twice and a blocked reader still works after the restart.
  ValueCalls got;
  ASSERT_NE(reg_->KvGet(ms[0].ref, "later", absl::Seconds(5), got.Callback()), 0u);
  ASSERT_THAT(Set(ms[1].ref, "later", "x"), IsOk());
  EXPECT_EQ(*got.last(), "x");
}

TEST_F(KvBarrierTest, Restore_ForgottenJob_IdReuseStartsEmpty) {
  auto ms = JoinAll(2);
  ASSERT_THAT(Set(ms[0].ref, "k", "old job"), IsOk());
  for (auto& m : ms) ASSERT_THAT(reg_->Leave(m.ref), IsOk());
  ASSERT_EQ(reg_->GetJob("j")->state, JobState::kFinished);
  Advance(absl::Hours(1));  // finished_job_ttl: forgotten
  ASSERT_EQ(reg_->num_jobs(), 0u);
  EXPECT_TRUE(store_.Load()->kv.empty());
  auto again = JoinAll(2);
  EXPECT_THAT(TryGet(again[0].ref, "k"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'k'")));
  EXPECT_EQ(*reg_->KvNumKeys(again[0].ref), 0u);
}

TEST_F(KvBarrierTest, Restore_ReplacedJob_NewJobStartsEmptyAlsoAfterRestart) {
  auto ms = JoinAll(2);
  ASSERT_THAT(Set(ms[0].ref, "k", "old job"), IsOk());
  ASSERT_THAT(reg_->ReportError(ms[1].ref, "crash"), IsOk());
  ASSERT_EQ(reg_->GetJob("j")->state, JobState::kFailed);
  auto again = JoinAll(2);  // same id, before the failed job is forgotten: replaced
  ASSERT_EQ(reg_->GetJob("j")->generation, 2u);
  EXPECT_THAT(TryGet(again[0].ref, "k"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'k'")));
  ASSERT_THAT(Set(again[0].ref, "new", "1"), IsOk());
  auto stored = store_.Load();
  ASSERT_THAT(stored, IsOk());
  ASSERT_EQ(stored->kv.size(), 1u);
  Reset(&store_);
  ASSERT_THAT(reg_->Restore(*stored), IsOk());
  EXPECT_THAT(TryGet(again[1].ref, "k"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'k'")));
  EXPECT_EQ(*TryGet(again[1].ref, "new"), "1");
  EXPECT_EQ(*reg_->KvNumKeys(again[1].ref), 1u);
}

// --- barriers ------------------------------------------------------------------------------------

TEST_F(KvBarrierTest, Barrier_AllArrive_AllOk) {
  auto ms = JoinAll(4);
  std::vector<std::unique_ptr<StatusCalls>> done;
  for (int i = 0; i < 4; ++i) done.push_back(std::make_unique<StatusCalls>());
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(reg_->Barrier(ms[i].ref, "init", absl::Seconds(10), {}, done[i]->Callback()), 0u);
  }
  for (int i = 0; i < 3; ++i) EXPECT_EQ(done[i]->count(), 0u);
  EXPECT_EQ(reg_->Barrier(ms[3].ref, "init", absl::Seconds(10), {}, done[3]->Callback()), 0u);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(done[i]->count(), 1u) << "rank " << i;
    EXPECT_THAT(done[i]->last(), IsOk());
  }
  Advance(absl::Seconds(20));  // its timer passing later calls nobody again
  for (int i = 0; i < 4; ++i) EXPECT_EQ(done[i]->count(), 1u);
}

TEST_F(KvBarrierTest, Barrier_Subset_CompletesWhenSubsetArrived) {
  auto ms = JoinAll(4);
  StatusCalls r0, r2;
  ASSERT_NE(reg_->Barrier(ms[2].ref, "pair", absl::Seconds(10), {2, 0}, r2.Callback()), 0u);
  EXPECT_EQ(reg_->Barrier(ms[0].ref, "pair", absl::Seconds(10), {0, 2}, r0.Callback()), 0u);
  EXPECT_THAT(r0.last(), IsOk());
  EXPECT_THAT(r2.last(), IsOk());
}

TEST_F(KvBarrierTest, Barrier_CallerNotInSubset_InvalidArgument) {
  auto ms = JoinAll(4);
  StatusCalls r1;
  EXPECT_EQ(reg_->Barrier(ms[1].ref, "pair", absl::Seconds(10), {0, 2}, r1.Callback()), 0u);
  EXPECT_THAT(r1.last(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("rank 1"), HasSubstr("not one of its participants"))));
}

TEST_F(KvBarrierTest, Barrier_RankOutOfRange_InvalidArgument) {
  auto ms = JoinAll(2);
  StatusCalls r0;
  EXPECT_EQ(reg_->Barrier(ms[0].ref, "b", absl::Seconds(10), {0, 5}, r0.Callback()), 0u);
  EXPECT_THAT(r0.last(), StatusIs(absl::StatusCode::kInvalidArgument,
                                  AllOf(HasSubstr("rank 5"), HasSubstr("out of range"))));
}

TEST_F(KvBarrierTest, Barrier_DifferentSubsets_FailedPrecondition) {
  auto ms = JoinAll(4);
  StatusCalls r0, r1;
  ASSERT_NE(reg_->Barrier(ms[0].ref, "b", absl::Seconds(10), {0, 1}, r0.Callback()), 0u);
  EXPECT_EQ(reg_->Barrier(ms[1].ref, "b", absl::Seconds(10), {0, 1, 2}, r1.Callback()), 0u);
  EXPECT_THAT(r1.last(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                  AllOf(HasSubstr("'b'"), HasSubstr("same ranks"))));
  EXPECT_EQ(r0.count(), 0u);  // the first arrival keeps waiting
}

TEST_F(KvBarrierTest, Barrier_DuplicateArrival_FailedPreconditionFirstStillWaits) {
  auto ms = JoinAll(2);
  StatusCalls first, dup, other;
  ASSERT_NE(reg_->Barrier(ms[0].ref, "b", absl::Seconds(10), {}, first.Callback()), 0u);
  EXPECT_EQ(reg_->Barrier(ms[0].ref, "b", absl::Seconds(10), {}, dup.Callback()), 0u);
  EXPECT_THAT(dup.last(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                   AllOf(HasSubstr("rank 0"), HasSubstr("already waiting"))));
  EXPECT_EQ(first.count(), 0u);
  EXPECT_EQ(reg_->Barrier(ms[1].ref, "b", absl::Seconds(10), {}, other.Callback()), 0u);
  EXPECT_THAT(first.last(), IsOk());
  EXPECT_THAT(other.last(), IsOk());
  EXPECT_EQ(dup.count(), 1u);
}

TEST_F(KvBarrierTest, Barrier_BeforeJobComplete_FailedPrecondition) {
  Member a = Join(Spec("j", "0", 2));
  StatusCalls done;
  EXPECT_EQ(reg_->Barrier(a.ref, "b", absl::Seconds(10), {}, done.Callback()), 0u);
  EXPECT_THAT(done.last(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("complete")));
}

TEST_F(KvBarrierTest, Barrier_NonPositiveTimeout_InvalidArgument) {
  auto ms = JoinAll(2);
  StatusCalls zero, negative;
  EXPECT_EQ(reg_->Barrier(ms[0].ref, "b", absl::ZeroDuration(), {}, zero.Callback()), 0u);
  EXPECT_THAT(zero.last(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeout")));
  EXPECT_EQ(reg_->Barrier(ms[0].ref, "b", -absl::Seconds(1), {}, negative.Callback()), 0u);
  EXPECT_THAT(negative.last(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("timeout")));
}

TEST_F(KvBarrierTest, Barrier_NonMember_NotFound) {
  auto ms = JoinAll(2);
  MemberRef stranger = ms[0].ref;
  stranger.node_id = "9";
  StatusCalls done;
  EXPECT_EQ(reg_->Barrier(stranger, "b", absl::Seconds(10), {}, done.Callback()), 0u);
  EXPECT_THAT(done.last(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'9'")));
  MemberRef unknown_job = ms[0].ref;
  unknown_job.job_id = "nope";
  StatusCalls done2;
  EXPECT_EQ(reg_->Barrier(unknown_job, "b", absl::Seconds(10), {}, done2.Callback()), 0u);
  EXPECT_THAT(done2.last(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'nope'")));
}

TEST_F(KvBarrierTest, Barrier_Timeout_EveryWaiterGetsDeadlineExceededListingMissing) {
  auto ms = JoinAll(4);
  StatusCalls r0, r1;
  ASSERT_NE(reg_->Barrier(ms[0].ref, "ckpt", absl::Seconds(10), {}, r0.Callback()), 0u);
  Advance(absl::Seconds(3));
  ASSERT_NE(reg_->Barrier(ms[1].ref, "ckpt", absl::Seconds(10), {}, r1.Callback()), 0u);
  // The barrier's deadline is set by its first arrival.
  Advance(absl::Seconds(7) - absl::Milliseconds(1));
  EXPECT_EQ(r0.count() + r1.count(), 0u);
  Advance(absl::Milliseconds(1));
  ASSERT_EQ(r0.count(), 1u);
  ASSERT_EQ(r1.count(), 1u);
  EXPECT_THAT(r0.last(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("'ckpt'"), HasSubstr("10s"), HasSubstr("2 of 4"),
                             HasSubstr(absl::StrCat("rank 2 (node '2', host ", HostOf("2"))),
                             HasSubstr(absl::StrCat("rank 3 (node '3', host ", HostOf("3"))),
                             Not(HasSubstr("rank 0")), Not(HasSubstr("rank 1")))));
  EXPECT_EQ(r0.last(), r1.last());  // the same result for every participant
}

TEST_F(KvBarrierTest, Barrier_LateArrival_GetsTheSameError) {
  auto ms = JoinAll(3);
  StatusCalls r0, late2;
  ASSERT_NE(reg_->Barrier(ms[0].ref, "b", absl::Seconds(5), {}, r0.Callback()), 0u);
  Advance(absl::Seconds(5));
  ASSERT_EQ(r0.count(), 1u);
  Advance(absl::Seconds(1));
  EXPECT_EQ(reg_->Barrier(ms[2].ref, "b", absl::Seconds(5), {}, late2.Callback()), 0u);
  ASSERT_EQ(late2.count(), 1u);
  EXPECT_THAT(late2.last(), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("rank 2")));
  EXPECT_EQ(late2.last(), r0.last());
}

TEST_F(KvBarrierTest, Barrier_EveryLateParticipantTold_NameWorksAgain) {
  auto ms = JoinAll(3);
  StatusCalls r0, late1, late2, again[3];
  ASSERT_NE(reg_->Barrier(ms[0].ref, "b", absl::Seconds(5), {}, r0.Callback()), 0u);
  Advance(absl::Seconds(5));
  EXPECT_EQ(reg_->Barrier(ms[1].ref, "b", absl::Seconds(5), {}, late1.Callback()), 0u);
  EXPECT_THAT(late1.last(), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("'b'")));
  EXPECT_EQ(reg_->Barrier(ms[2].ref, "b", absl::Seconds(5), {}, late2.Callback()), 0u);
  EXPECT_THAT(late2.last(), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("'b'")));
  // Everyone knows: a new instance of the name.
  ASSERT_NE(reg_->Barrier(ms[0].ref, "b", absl::Seconds(5), {}, again[0].Callback()), 0u);
  ASSERT_NE(reg_->Barrier(ms[1].ref, "b", absl::Seconds(5), {}, again[1].Callback()), 0u);
  EXPECT_EQ(reg_->Barrier(ms[2].ref, "b", absl::Seconds(5), {}, again[2].Callback()), 0u);
  for (auto& a : again) EXPECT_THAT(a.last(), IsOk());
}

TEST_F(KvBarrierTest, Barrier_NameReusedRightAfterCompletion_OldTimerIgnored) {
  auto ms = JoinAll(2);
  StatusCalls a0, a1, b0, b1;
  ASSERT_NE(reg_->Barrier(ms[0].ref, "step", absl::Seconds(10), {}, a0.Callback()), 0u);
  EXPECT_EQ(reg_->Barrier(ms[1].ref, "step", absl::Seconds(10), {}, a1.Callback()), 0u);
  ASSERT_THAT(a0.last(), IsOk());
  Advance(absl::Seconds(5));
  ASSERT_NE(reg_->Barrier(ms[0].ref, "step", absl::Seconds(10), {}, b0.Callback()), 0u);
  Advance(absl::Seconds(5));  // the first instance's deadline: must not touch the second
  EXPECT_EQ(b0.count(), 0u);
  EXPECT_EQ(reg_->Barrier(ms[1].ref, "step", absl::Seconds(10), {}, b1.Callback()), 0u);
  EXPECT_THAT(b0.last(), IsOk());
  EXPECT_THAT(b1.last(), IsOk());
  EXPECT_EQ(a0.count() + a1.count(), 2u);
}

TEST_F(KvBarrierTest, Barrier_IndependentNames_DoNotInterfere) {
  auto ms = JoinAll(2);
  StatusCalls x0, y1, x1;
  ASSERT_NE(reg_->Barrier(ms[0].ref, "x", absl::Seconds(10), {}, x0.Callback()), 0u);
  ASSERT_NE(reg_->Barrier(ms[1].ref, "y", absl::Seconds(10), {}, y1.Callback()), 0u);
  EXPECT_EQ(x0.count() + y1.count(), 0u);
  EXPECT_EQ(reg_->Barrier(ms[1].ref, "x", absl::Seconds(10), {}, x1.Callback()), 0u);
  EXPECT_THAT(x0.last(), IsOk());
  EXPECT_EQ(y1.count(), 0u);
}

// Regression tests for bugs these tests found: Add/CompareSet/Delete aborted the process
// (StatusOr built from an OK status), left/dead members took part in barriers, shutdown and a
// finished job left waiters hanging, a deleted key satisfied Wait, a retry hid a barrier timeout.
TEST_F(KvBarrierTest, Add_MissingKey_StartsAtZero) {
  auto ms = JoinAll(1);
  EXPECT_THAT(Add(ms[0].ref, "counter", 5), IsOk());
  EXPECT_EQ(*Add(ms[0].ref, "fresh", 0), 0);
  EXPECT_EQ(*TryGet(ms[0].ref, "counter"), "5");
}

TEST_F(KvBarrierTest, Add_RepeatedCallsFromMembers_EachSeesTheRunningTotal) {
  auto ms = JoinAll(4);
  std::vector<int64_t> seen;
  for (int round = 0; round < 3; ++round) {
    for (auto& m : ms) {
      auto v = Add(m.ref, "arrived", 1);
      ASSERT_THAT(v, IsOk());
      seen.push_back(*v);
    }
  }
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<int64_t>(i + 1));
  EXPECT_EQ(*TryGet(ms[0].ref, "arrived"), "12");
}

TEST_F(KvBarrierTest, Add_NegativeDelta_Decrements) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Add(ms[0].ref, "c", 3), IsOk());
  EXPECT_EQ(*Add(ms[0].ref, "c", -5), -2);
  EXPECT_EQ(*TryGet(ms[0].ref, "c"), "-2");
}

TEST_F(KvBarrierTest, Add_NonNumericValue_FailedPreconditionNamingKeyValueKept) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "word", "hello"), IsOk());
  EXPECT_THAT(Add(ms[0].ref, "word", 1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("'word'"), HasSubstr("hello"), HasSubstr("int64"))));
  EXPECT_EQ(*TryGet(ms[0].ref, "word"), "hello");
}

TEST_F(KvBarrierTest, Add_ReleasesBlockedGetWithNewTotal) {
  auto ms = JoinAll(2);
  ValueCalls got;
  ASSERT_NE(reg_->KvGet(ms[1].ref, "n", absl::Seconds(5), got.Callback()), 0u);
  ASSERT_THAT(Add(ms[0].ref, "n", 7), IsOk());
  ASSERT_EQ(got.count(), 1u);
  EXPECT_EQ(*got.last(), "7");
}

TEST_F(KvBarrierTest, CompareSet_Match_Swaps) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "leader", "rank0"), IsOk());
  auto r = Cas(ms[0].ref, "leader", "rank0", "rank1");
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->swapped);
  EXPECT_EQ(r->value, "rank1");
  EXPECT_EQ(*TryGet(ms[0].ref, "leader"), "rank1");
}

TEST_F(KvBarrierTest, CompareSet_Mismatch_NoSwapReturnsCurrentValue) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "leader", "rank0"), IsOk());
  auto r = Cas(ms[0].ref, "leader", "rank7", "rank1");
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->swapped);
  EXPECT_EQ(r->value, "rank0");
  EXPECT_EQ(*TryGet(ms[0].ref, "leader"), "rank0");
}

TEST_F(KvBarrierTest, CompareSet_MissingKeyEmptyExpected_Creates) {
  auto ms = JoinAll(1);
  auto r = Cas(ms[0].ref, "leader", "", "rank3");
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->swapped);
  EXPECT_EQ(*TryGet(ms[0].ref, "leader"), "rank3");
  // The second claimant loses and learns the winner.
  auto second = Cas(ms[0].ref, "leader", "", "rank5");
  EXPECT_FALSE(second->swapped);
  EXPECT_EQ(second->value, "rank3");
}

TEST_F(KvBarrierTest, CompareSet_MissingKeyNonEmptyExpected_NotSwappedNotCreated) {
  auto ms = JoinAll(1);
  auto r = Cas(ms[0].ref, "leader", "rank0", "rank1");
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->swapped);
  EXPECT_EQ(r->value, "");
  EXPECT_THAT(TryGet(ms[0].ref, "leader"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("leader")));
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 0u);
}

TEST_F(KvBarrierTest, CompareSet_ExistingEmptyValue_MatchesEmptyExpected) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "k", ""), IsOk());
  auto r = Cas(ms[0].ref, "k", "", "filled");
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->swapped);
  EXPECT_EQ(*TryGet(ms[0].ref, "k"), "filled");
}

TEST_F(KvBarrierTest, CompareSet_EmptyDesired_StoresEmptyValue) {
  auto ms = JoinAll(1);
  auto r = Cas(ms[0].ref, "k", "", "");
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->swapped);
  auto got = TryGet(ms[0].ref, "k");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, "");
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 1u);
}

TEST_F(KvBarrierTest, Delete_ExistingKey_TrueAndGone) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "k", "v"), IsOk());
  EXPECT_THAT(Delete(ms[0].ref, "k"), IsOk());
  EXPECT_THAT(TryGet(ms[0].ref, "k"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("'k'")));
}

TEST_F(KvBarrierTest, Delete_MissingKey_False) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "k", "v"), IsOk());
  auto first = Delete(ms[0].ref, "k");
  auto second = Delete(ms[0].ref, "k");
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_TRUE(*first);
  EXPECT_FALSE(*second);
  EXPECT_FALSE(*Delete(ms[0].ref, "never-set"));
}

TEST_F(KvBarrierTest, NumKeys_CountsSetsAndDeletes) {
  auto ms = JoinAll(1);
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 0u);
  ASSERT_THAT(Set(ms[0].ref, "a", "1"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "b", "2"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "a", "3"), IsOk());
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 2u);
  ASSERT_THAT(Delete(ms[0].ref, "a"), IsOk());
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 1u);
}

TEST_F(KvLimitsTest, CompareSetAndAdd_LimitsAppliedValueKept) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "k", "old"), IsOk());
  EXPECT_THAT(Cas(ms[0].ref, "k", "old", std::string(17, 'x')),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--kv-max-value-bytes")));
  EXPECT_EQ(*TryGet(ms[0].ref, "k"), "old");
  ASSERT_THAT(Set(ms[0].ref, "b", "1"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "c", "1"), IsOk());
  EXPECT_THAT(Add(ms[0].ref, "d", 1),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--kv-max-keys-per-job")));
  EXPECT_EQ(*reg_->KvNumKeys(ms[0].ref), 3u);
}

TEST_F(KvBarrierTest, Barrier_LeftMember_Aborted) {
  auto ms = JoinAll(2);
  ASSERT_THAT(reg_->Leave(ms[0].ref), IsOk());
  StatusCalls done;
  EXPECT_EQ(reg_->Barrier(ms[0].ref, "b", absl::Seconds(10), {}, done.Callback()), 0u);
  EXPECT_THAT(done.last(), StatusIs(absl::StatusCode::kAborted, HasSubstr("left")));
}

TEST_F(KvBarrierTest, Barrier_DeadMemberInDegradedJob_Aborted) {
  auto ms = JoinAll(2, "j", true);
  reg_->SessionClosed(ms[1].ref, ms[1].session.get());
  Advance(absl::Seconds(2));
  StatusCalls d0, d1;
  reg_->Barrier(ms[0].ref, "b", absl::Seconds(10), {}, d0.Callback());
  reg_->Barrier(ms[1].ref, "b", absl::Seconds(10), {}, d1.Callback());
  EXPECT_THAT(d1.last(), StatusIs(absl::StatusCode::kAborted, HasSubstr("dead")));
  EXPECT_EQ(d0.count(), 0u);
}

TEST_F(KvBarrierTest, Shutdown_PendingKvAndBarrier_Unavailable) {
  auto ms = JoinAll(2);
  ValueCalls get;
  StatusCalls wait, barrier;
  reg_->KvGet(ms[0].ref, "k", absl::InfiniteDuration(), get.Callback());
  reg_->KvWait(ms[0].ref, {"k"}, absl::Seconds(100), wait.Callback());
  reg_->Barrier(ms[1].ref, "b", absl::Seconds(100), {}, barrier.Callback());
  reg_->Shutdown();
  EXPECT_THAT(get.last(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_THAT(wait.last(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_THAT(barrier.last(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
}

TEST_F(KvBarrierTest, Wait_KeyDeletedBeforeOthersSet_StillWaits) {
  auto ms = JoinAll(1);
  StatusCalls done;
  reg_->KvWait(ms[0].ref, {"a", "b"}, absl::Seconds(10), done.Callback());
  ASSERT_THAT(Set(ms[0].ref, "a", "1"), IsOk());
  ASSERT_THAT(Delete(ms[0].ref, "a"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "b", "1"), IsOk());
  EXPECT_EQ(done.count(), 0u) << done.last();
}

TEST_F(KvBarrierTest, AllMembersLeave_PendingGetCompleted) {
  auto ms = JoinAll(2);
  ValueCalls get;
  reg_->KvGet(ms[0].ref, "k", absl::InfiniteDuration(), get.Callback());
  ASSERT_THAT(reg_->Leave(ms[0].ref), IsOk());
  ASSERT_THAT(reg_->Leave(ms[1].ref), IsOk());
  Advance(absl::Hours(2));
  EXPECT_EQ(get.count(), 1u);
}

TEST_F(KvBarrierTest, Barrier_OnTimeParticipantRetriesBeforeLateOneArrives_LateStillGetsError) {
  auto ms = JoinAll(2);
  StatusCalls r0, retry0, late1;
  reg_->Barrier(ms[0].ref, "b", absl::Seconds(5), {}, r0.Callback());
  Advance(absl::Seconds(5));
  reg_->Barrier(ms[0].ref, "b", absl::Seconds(5), {}, retry0.Callback());
  reg_->Barrier(ms[1].ref, "b", absl::Seconds(5), {}, late1.Callback());
  EXPECT_THAT(late1.last(), StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("'b'")));
  EXPECT_EQ(retry0.count(), 0u);
}

TEST_F(KvBarrierTest, AddCompareSetDelete_DurableStore_AckOnlyAfterStoreAcks) {
  HeldStore held;
  Reset(&held);
  auto ms = JoinAll(2);
  held.ReleaseAll();
  Calls<absl::StatusOr<int64_t>> add;
  Calls<absl::StatusOr<CompareSetResult>> cas;
  Calls<absl::StatusOr<bool>> del;
  reg_->KvAdd(ms[0].ref, "n", 1, add.Callback());
  reg_->KvCompareSet(ms[0].ref, "leader", "", "rank0", cas.Callback());
  reg_->KvDelete(ms[0].ref, "n", del.Callback());
  EXPECT_EQ(held.held(), 3u);
  EXPECT_EQ(add.count() + cas.count() + del.count(), 0u);
  held.ReleaseAll();
  EXPECT_EQ(*add.last(), 1);
  EXPECT_TRUE(cas.last()->swapped);
  EXPECT_TRUE(*del.last());
  reg_.reset();
}

TEST_F(KvBarrierTest, Restore_DeletedKeyStaysDeletedCounterContinues) {
  auto ms = JoinAll(2);
  const std::string binary("\0bin\xff", 5);
  ASSERT_THAT(Set(ms[0].ref, "kept", "value"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, binary, binary), IsOk());
  ASSERT_THAT(Add(ms[0].ref, "counter", 41), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "gone", "x"), IsOk());
  ASSERT_THAT(Delete(ms[0].ref, "gone"), IsOk());
  auto stored = store_.Load();
  ASSERT_THAT(stored, IsOk());
  Reset(&store_);  // "restart"
  ASSERT_THAT(reg_->Restore(*stored), IsOk());
  EXPECT_EQ(*TryGet(ms[1].ref, "kept"), "value");
  EXPECT_EQ(*TryGet(ms[1].ref, binary), binary);
  EXPECT_EQ(*Add(ms[1].ref, "counter", 1), 42);
  EXPECT_THAT(TryGet(ms[1].ref, "gone"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'gone'")));
  EXPECT_EQ(*reg_->KvNumKeys(ms[1].ref), 3u);
}

TEST_F(KvLimitsTest, TooManyKeys_DeleteFreesASlot) {
  auto ms = JoinAll(1);
  for (const char* k : {"a", "b", "c"}) ASSERT_THAT(Set(ms[0].ref, k, "1"), IsOk());
  ASSERT_THAT(Set(ms[0].ref, "d", "1"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--kv-max-keys-per-job")));
  ASSERT_THAT(Delete(ms[0].ref, "b"), IsOk());
  EXPECT_THAT(Set(ms[0].ref, "d", "1"), IsOk());
}

// Regression (found by spec_fuzzer): a page size of 0 read back() of an empty page.
TEST_F(KvBarrierTest, List_ZeroPageSize_InvalidArgument) {
  auto ms = JoinAll(1);
  ASSERT_THAT(Set(ms[0].ref, "a", "1"), IsOk());
  EXPECT_THAT(reg_->KvList(ms[0].ref, "", "", 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page size")));
}

}  // namespace
}  // namespace ms_rendezvous::core
