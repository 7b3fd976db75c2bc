// Credentials in the core, with a FakeClock and no gRPC: job tokens (who may join a job),
// member credentials (a process acts only as itself), --require-job-token, and the operator
// calls CreateJob / AbortJob / DeleteJob. Every refusal is checked to change nothing.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/credentials.h"
#include "core/job_registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/memory_state_store.h"
#include "test_util.h"

namespace ms_rendezvous::core {
namespace {

using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class RecordingSession final : public MemberSession {
 public:
  void OnTopology(const Topology& t) override {
    absl::MutexLock l(&mu);
    topology = t;
  }
  void OnEvent(const JobEvent& e) override {
    absl::MutexLock l(&mu);
    events.push_back(e.type);
  }
  void OnEnd(const absl::Status& s) override {
    absl::MutexLock l(&mu);
    end = s;
  }
  std::optional<absl::Status> End() {
    absl::MutexLock l(&mu);
    return end;
  }
  absl::Mutex mu;
  std::optional<Topology> topology;
  std::vector<JobEventType> events;
  std::optional<absl::Status> end;
};

class AuthTest : public ::testing::Test {
 protected:
  AuthTest() { Reset(RegistryOptions{}); }

  void Reset(RegistryOptions o) {
    o.default_topo_timeout = absl::Seconds(60);
    o.default_node_timeout = absl::Seconds(30);
    o.finished_job_ttl = absl::Hours(1);
    reg_ = std::make_unique<JobRegistry>(&clock_, o, &store_);
  }

  static MemberSpec Spec(const std::string& job, const std::string& node, uint32_t n,
                         const std::string& token = "") {
    MemberSpec s;
    s.job_id = job;
    s.node_id = node;
    s.host = "10.0.0.1";
    s.worker_num = n;
    s.job_token = token;
    return s;
  }

  struct Member {
    std::shared_ptr<RecordingSession> session = std::make_shared<RecordingSession>();
    MemberRef ref;
  };
  absl::StatusOr<Member> Join(const MemberSpec& spec) {
    Member m;
    absl::StatusOr<MemberRef> ref = reg_->JoinSession(spec, m.session);
    if (!ref.ok()) return ref.status();
    m.ref = *ref;
    return m;
  }

  // A fingerprint of everything the status API shows about a job (a fake clock: ages are
  // stable), to prove a refused call changed nothing.
  std::string Fingerprint(const std::string& job) {
    absl::StatusOr<JobSummary> s = reg_->GetJob(job);
    if (!s.ok()) return std::string(s.status().message());
    std::string out = absl::StrCat(JobStateName(s->state), "|", s->generation, "|",
                                   s->failure_reason, "|");
    for (const RoleSummary& r : s->roles) {
      absl::StrAppend(&out, r.joined, "/", r.waiting, "/", r.active, "/", r.left, "|");
    }
    absl::StatusOr<MemberPage> page = reg_->ListMembers(job, 0, 100);
    for (const MemberInfo& m : page->members) {
      absl::StrAppend(&out, m.node_id, ":", MemberStateName(m.state), ":", m.incarnation, ":",
                      m.reason, ":", absl::FormatDuration(m.last_seen_age), ";");
    }
    return out;
  }

  absl::Status KvSet(const MemberRef& ref, const std::string& key, const std::string& value) {
    std::optional<absl::Status> out;
    reg_->KvSet(ref, key, value, [&](absl::Status s) { out = s; });
    return out.value_or(absl::InternalError("KvSet did not complete"));
  }

  FakeClock clock_;
  MemoryStateStore store_;
  std::unique_ptr<JobRegistry> reg_;
};

// --- credentials.h ----------------------------------------------------------------------------

TEST(CredentialsTest, DigestIsSha256HexAndEmptyForNoToken) {
  EXPECT_EQ(TokenDigest(""), "");
  // SHA-256("abc"), FIPS 180-2 test vector.
  EXPECT_EQ(TokenDigest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(CredentialsTest, MemberCredentialsAre128RandomBitsInHex) {
  const std::string a = NewMemberCredential();
  const std::string b = NewMemberCredential();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, b);
}

TEST(CredentialsTest, SecretEquals) {
  EXPECT_TRUE(SecretEquals("", ""));
  EXPECT_TRUE(SecretEquals("abc", "abc"));
  EXPECT_FALSE(SecretEquals("abc", "abd"));
  EXPECT_FALSE(SecretEquals("abc", "ab"));
  EXPECT_FALSE(SecretEquals("", "a"));
}

// --- job tokens -------------------------------------------------------------------------------

TEST_F(AuthTest, JobToken_FirstMemberFixesIt_OthersMustPresentIt) {
  ASSERT_THAT(Join(Spec("j", "0", 3, "s3cret")), IsOk());
  const std::string before = Fingerprint("j");
  EXPECT_THAT(Join(Spec("j", "1", 3)),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("job 'j' requires a job token"), HasSubstr("MS_JOB_TOKEN"),
                             HasSubstr("'1'"))));
  EXPECT_THAT(Join(Spec("j", "1", 3, "guess")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("does not match"), Not(HasSubstr("guess")),
                             Not(HasSubstr("s3cret")))));
  EXPECT_EQ(Fingerprint("j"), before);
  ASSERT_THAT(Join(Spec("j", "1", 3, "s3cret")), IsOk());
  ASSERT_THAT(Join(Spec("j", "2", 3, "s3cret")), IsOk());
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
}

TEST_F(AuthTest, JobToken_JobWithoutTokenRefusesAMemberPresentingOne) {
  ASSERT_THAT(Join(Spec("j", "0", 2)), IsOk());
  EXPECT_THAT(Join(Spec("j", "1", 2, "t")),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("created without a job token"), HasSubstr("MS_JOB_TOKEN"))));
  EXPECT_EQ(reg_->GetJob("j")->roles[0].joined, 1u);
}

TEST_F(AuthTest, JobToken_RecoveryRejoinNeedsTheTokenToo) {
  MemberSpec s0 = Spec("j", "0", 2, "tok");
  s0.enable_recovery = true;
  MemberSpec s1 = Spec("j", "1", 2, "tok");
  s1.enable_recovery = true;
  absl::StatusOr<Member> m0 = Join(s0);
  ASSERT_THAT(m0, IsOk());
  ASSERT_THAT(Join(s1), IsOk());
  ASSERT_THAT(reg_->ReportError(m0->ref, "boom"), IsOk());
  ASSERT_EQ(reg_->GetJob("j")->state, JobState::kDegraded);
  MemberSpec thief = s0;
  thief.job_token = "";
  EXPECT_THAT(Join(thief), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kDegraded);
  EXPECT_THAT(Join(s0), IsOk());
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
}

TEST_F(AuthTest, JobToken_Validation_NeverEchoesTheToken) {
  EXPECT_THAT(Join(Spec("j", "0", 1, std::string(1025, 'x'))),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("MS_JOB_TOKEN is 1025 bytes"), Not(HasSubstr("xxxx")))));
  EXPECT_THAT(Join(Spec("j", "0", 1, "has space")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("MS_JOB_TOKEN contains a space"), Not(HasSubstr("has")))));
  EXPECT_THAT(reg_->GetJob("j"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AuthTest, RequireJobToken_RefusesJobsWithoutOne) {
  RegistryOptions o;
  o.require_job_token = true;
  Reset(o);
  EXPECT_THAT(Join(Spec("j", "0", 1)),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("--require-job-token"), HasSubstr("MS_JOB_TOKEN"))));
  EXPECT_THAT(reg_->GetJob("j"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Join(Spec("j", "0", 1, "t")), IsOk());
}

TEST_F(AuthTest, JobTokenMatches_OnlyForTheJobsOwnToken) {
  ASSERT_THAT(Join(Spec("a", "0", 2, "ta")), IsOk());
  ASSERT_THAT(Join(Spec("b", "0", 2)), IsOk());
  EXPECT_TRUE(reg_->JobTokenMatches("a", "ta"));
  EXPECT_FALSE(reg_->JobTokenMatches("a", "tb"));
  EXPECT_FALSE(reg_->JobTokenMatches("a", ""));
  EXPECT_FALSE(reg_->JobTokenMatches("b", ""));  // no token: nothing to match
  EXPECT_FALSE(reg_->JobTokenMatches("nope", "ta"));
}

// --- member credentials -----------------------------------------------------------------------

TEST_F(AuthTest, Credential_EveryCallNamingAnotherMemberIsRefusedAndChangesNothing) {
  absl::StatusOr<Member> m0 = Join(Spec("j", "0", 2));
  absl::StatusOr<Member> m1 = Join(Spec("j", "1", 2));
  ASSERT_THAT(m0, IsOk());
  ASSERT_THAT(m1, IsOk());
  ASSERT_THAT(KvSet(m1->ref, "k", "mine"), IsOk());
  const std::string before = Fingerprint("j");
  // Member 0 names member 1 (whose incarnation the status API shows) with its own credential.
  MemberRef forged = m1->ref;
  forged.credential = m0->ref.credential;
  EXPECT_THAT(reg_->Heartbeat(forged),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("only as itself")));
  EXPECT_THAT(reg_->Leave(forged), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(reg_->ReportError(forged, "framed"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(KvSet(forged, "k", "theirs"), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(reg_->ResumeSession(forged, 0, std::make_shared<RecordingSession>()),
              StatusIs(absl::StatusCode::kPermissionDenied));
  std::optional<absl::Status> barrier;
  reg_->Barrier(forged, "b", absl::Seconds(5), {}, [&](absl::Status s) { barrier = s; });
  ASSERT_TRUE(barrier.has_value());
  EXPECT_THAT(*barrier, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(Fingerprint("j"), before);
  EXPECT_FALSE(m1->session->End().has_value());  // member 1's session was not touched
  std::optional<absl::StatusOr<std::string>> value;
  reg_->KvGet(m1->ref, "k", absl::ZeroDuration(),
              [&](absl::StatusOr<std::string> v) { value = std::move(v); });
  ASSERT_TRUE(value.has_value());
  EXPECT_THAT(*value, IsOk());
  EXPECT_EQ(**value, "mine");
}

TEST_F(AuthTest, Credential_SentInTopologyAndRegistrationAndDiffersPerMember) {
  absl::StatusOr<Member> m0 = Join(Spec("j", "0", 2));
  absl::StatusOr<Member> m1 = Join(Spec("j", "1", 2));
  ASSERT_THAT(m0, IsOk());
  ASSERT_THAT(m1, IsOk());
  EXPECT_EQ(m0->ref.credential.size(), 32u);
  EXPECT_NE(m0->ref.credential, m1->ref.credential);
  absl::MutexLock l(&m0->session->mu);
  ASSERT_TRUE(m0->session->topology.has_value());
  EXPECT_EQ(m0->session->topology->credential, m0->ref.credential);
}

TEST_F(AuthTest, Credential_AndTokenSurviveARestart) {
  absl::StatusOr<Member> m0 = Join(Spec("j", "0", 2, "tok"));
  absl::StatusOr<Member> m1 = Join(Spec("j", "1", 2, "tok"));
  ASSERT_THAT(m0, IsOk());
  ASSERT_THAT(m1, IsOk());
  absl::StatusOr<StoredState> stored = store_.Load();
  ASSERT_THAT(stored, IsOk());
  reg_ = std::make_unique<JobRegistry>(&clock_, RegistryOptions{}, &store_);
  ASSERT_THAT(reg_->Restore(*stored), IsOk());
  MemberRef no_credential = m0->ref;
  no_credential.credential.clear();
  EXPECT_THAT(reg_->ResumeSession(no_credential, 1, std::make_shared<RecordingSession>()),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(reg_->ResumeSession(m0->ref, reg_->GetJob("j")->generation,
                                  std::make_shared<RecordingSession>()),
              IsOk());
  EXPECT_TRUE(reg_->JobTokenMatches("j", "tok"));
}

// --- operator calls ---------------------------------------------------------------------------

TEST_F(AuthTest, CreateJob_FixesSpecAndToken_BeforeAnyMember) {
  MemberSpec spec = Spec("pre", "ignored", 2, "tok");
  spec.node_timeout_ms = 5000;
  absl::StatusOr<JobSummary> job = reg_->CreateJob(spec);
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(job->state, JobState::kForming);
  EXPECT_EQ(job->roles[0].expected, 2u);
  EXPECT_EQ(job->roles[0].joined, 0u);
  EXPECT_THAT(reg_->CreateJob(spec),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("'pre' already exists")));
  // The first member to arrive cannot replace the token or the size.
  EXPECT_THAT(Join(Spec("pre", "0", 2, "mine")), StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(Join(Spec("pre", "0", 3, "tok")), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_THAT(Join(Spec("pre", "0", 2, "tok")), IsOk());
  ASSERT_THAT(Join(Spec("pre", "1", 2, "tok")), IsOk());
  EXPECT_EQ(reg_->GetJob("pre")->state, JobState::kComplete);
  EXPECT_EQ(reg_->GetJob("pre")->node_timeout_ms, 5000);
}

TEST_F(AuthTest, CreateJob_Validation) {
  EXPECT_THAT(reg_->CreateJob(Spec("bad id", "x", 2)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MS_JOB_ID")));
  EXPECT_THAT(reg_->CreateJob(Spec("j", "x", 0)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("MS_WORKER_NUM=0")));
  EXPECT_EQ(reg_->ListJobs("", 10).size(), 0u);
}

TEST_F(AuthTest, CreateJob_TopologyTimeoutCountsFromCreation) {
  MemberSpec spec = Spec("pre", "x", 2);
  spec.topo_timeout_ms = 10000;
  ASSERT_THAT(reg_->CreateJob(spec), IsOk());
  clock_.Advance(absl::Seconds(11));
  reg_->ProcessDeadlines();
  absl::StatusOr<JobSummary> job = reg_->GetJob("pre");
  ASSERT_THAT(job, IsOk());
  EXPECT_EQ(job->state, JobState::kFailed);
  EXPECT_THAT(job->failure_reason, HasSubstr("timed out"));
}

TEST_F(AuthTest, AbortJob_FailsItAndTellsEveryMember) {
  absl::StatusOr<Member> m0 = Join(Spec("j", "0", 2));
  absl::StatusOr<Member> m1 = Join(Spec("j", "1", 2));
  ASSERT_THAT(m0, IsOk());
  ASSERT_THAT(m1, IsOk());
  ASSERT_THAT(reg_->AbortJob("j", "maintenance"), IsOk());
  absl::StatusOr<JobSummary> job = reg_->GetJob("j");
  EXPECT_EQ(job->state, JobState::kFailed);
  EXPECT_THAT(job->failure_reason,
              AllOf(HasSubstr("aborted by an operator"), HasSubstr("maintenance")));
  for (const auto* m : {&*m0, &*m1}) {
    absl::MutexLock l(&m->session->mu);
    EXPECT_THAT(m->session->events, ::testing::Contains(JobEventType::kJobFailed));
  }
  EXPECT_THAT(reg_->Heartbeat(m0->ref),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("maintenance")));
  EXPECT_THAT(reg_->AbortJob("j", "again"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already ended")));
  EXPECT_THAT(reg_->AbortJob("nope", "x"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AuthTest, DeleteJob_OnlyEndedJobs_RemovesItFromStoreAndStatus) {
  absl::StatusOr<Member> m0 = Join(Spec("j", "0", 1));
  ASSERT_THAT(m0, IsOk());
  ASSERT_THAT(KvSet(m0->ref, "k", "v"), IsOk());
  EXPECT_THAT(reg_->DeleteJob("j"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("complete"), HasSubstr("abort it first"))));
  EXPECT_EQ(reg_->GetJob("j")->state, JobState::kComplete);
  ASSERT_THAT(reg_->AbortJob("j", "done"), IsOk());
  ASSERT_THAT(reg_->DeleteJob("j"), IsOk());
  EXPECT_THAT(reg_->GetJob("j"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(reg_->DeleteJob("j"), StatusIs(absl::StatusCode::kNotFound));
  absl::StatusOr<StoredState> stored = store_.Load();
  ASSERT_THAT(stored, IsOk());
  EXPECT_TRUE(stored->jobs.empty());
  EXPECT_TRUE(stored->members.empty());
  EXPECT_TRUE(stored->kv.empty());
  // The id is free again.
  EXPECT_THAT(Join(Spec("j", "0", 1)), IsOk());
}

}  // namespace
}  // namespace ms_rendezvous::core
