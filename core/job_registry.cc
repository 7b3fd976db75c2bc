#include "core/job_registry.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/credentials.h"
#include "core/effects.h"
#include "core/job.h"
#include "core/status_util.h"
#include "store/state_store.h"

namespace ms_rendezvous::core {
namespace {

constexpr uint32_t kMaxMembersPerRole = 1000000;
constexpr size_t kMaxJobTokenBytes = 1024;

bool ValidJobIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == ':' || c == '-';
}

std::string Quote(const std::string& s) {
  std::string shown = s.size() > 64 ? s.substr(0, 64) + "..." : s;
  return absl::StrCat("\"", shown, "\"");
}

// Checks a spec on its own (without looking at its job). Messages name the environment
// variable a user sets, the value and what is allowed.
absl::Status ValidateJobId(const MemberSpec& s) {
  if (s.job_id.empty() || s.job_id.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat("MS_JOB_ID=", Quote(s.job_id),
                                                   " must be 1..128 characters long"));
  }
  for (char c : s.job_id) {
    if (!ValidJobIdChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MS_JOB_ID=", Quote(s.job_id), " contains '", std::string(1, c),
          "': allowed characters are A-Z a-z 0-9 . _ : -"));
    }
  }
  return absl::OkStatus();
}

// The fields the job's creator fixes (MS_WORKER_NUM, MS_SERVER_NUM, MS_NODE_TIMEOUT, token).
absl::Status ValidateJobFields(const MemberSpec& s) {
  if (s.worker_num == 0 || s.worker_num > kMaxMembersPerRole) {
    return absl::InvalidArgumentError(absl::StrCat("MS_WORKER_NUM=", s.worker_num,
                                                   " must be in 1..", kMaxMembersPerRole));
  }
  if (s.server_num > kMaxMembersPerRole) {
    return absl::InvalidArgumentError(absl::StrCat("MS_SERVER_NUM=", s.server_num,
                                                   " must be in 0..", kMaxMembersPerRole));
  }
  if (s.node_timeout_ms > 0 && s.node_timeout_ms < 100) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MS_NODE_TIMEOUT=", s.node_timeout_ms, "ms is too short: allowed >= 100ms, or negative "
        "for never"));
  }
  // The token travels as gRPC metadata (printable ASCII); it is never echoed in messages.
  if (s.job_token.size() > kMaxJobTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("MS_JOB_TOKEN is ", s.job_token.size(),
                                                   " bytes long: allowed 1..", kMaxJobTokenBytes));
  }
  for (char c : s.job_token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "MS_JOB_TOKEN contains a space or non-printable character: allowed are printable "
          "ASCII characters");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSpec(const MemberSpec& s) {
  RETURN_IF_ERROR(ValidateJobId(s));
  if (s.role != Role::kWorker && s.role != Role::kPServer) {
    return absl::InvalidArgumentError(
        "MS_ROLE must be MS_WORKER or MS_PSERVER to join a job (MS_SCHED runs a scheduler)");
  }
  if (s.node_id.empty() || s.node_id.size() > 128) {
    return absl::InvalidArgumentError(absl::StrCat("MS_NODE_ID=", Quote(s.node_id),
                                                   " must be 1..128 characters long"));
  }
  for (char c : s.node_id) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MS_NODE_ID=", Quote(s.node_id),
          " contains a space or non-printable character: allowed are printable ASCII characters"));
    }
  }
  if (s.host.empty() || s.host.size() > 255) {
    return absl::InvalidArgumentError(absl::StrCat("host (MS_WORKER_IP)=", Quote(s.host),
                                                   " must be 1..255 characters long"));
  }
  if (s.host_name.size() > 255) {
    return absl::InvalidArgumentError(absl::StrCat("host_name=", Quote(s.host_name),
                                                   " is longer than 255 characters"));
  }
  if (s.device_ip.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat("MS_DEVICE_IP=", Quote(s.device_ip),
                                                   " is longer than 64 characters"));
  }
  if (s.device_id < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("DEVICE_ID=", s.device_id, " must be >= 0 (or unset)"));
  }
  RETURN_IF_ERROR(ValidateJobFields(s));
  if (s.role == Role::kPServer && s.server_num == 0) {
    return absl::InvalidArgumentError(
        "MS_ROLE=MS_PSERVER but MS_SERVER_NUM=0: a parameter server needs MS_SERVER_NUM > 0 "
        "(the job expects no servers)");
  }
  return absl::OkStatus();
}

// The daemon's --max-members-per-job (checked after ValidateSpec, so both counts are sane).
absl::Status CheckMembersLimit(const MemberSpec& s, const RegistryOptions& options) {
  const uint64_t total = uint64_t{s.worker_num} + s.server_num;
  if (options.max_members_per_job != 0 && total > options.max_members_per_job) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "MS_WORKER_NUM=", s.worker_num, " + MS_SERVER_NUM=", s.server_num, " = ", total,
        " members exceeds this daemon's limit (--max-members-per-job=",
        options.max_members_per_job, ")"));
  }
  return absl::OkStatus();
}

// --require-job-token.
absl::Status CheckTokenRequired(const MemberSpec& s, const RegistryOptions& options) {
  if (options.require_job_token && s.job_token.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "job '", s.job_id, "': this daemon admits only jobs with a job token "
        "(--require-job-token); set MS_JOB_TOKEN on every member"));
  }
  return absl::OkStatus();
}

// Incarnations must differ across daemon restarts too: start the counter from the wall clock.
uint64_t NextIncarnation() {
  static std::atomic<uint64_t> next{static_cast<uint64_t>(absl::ToUnixMicros(absl::Now()))};
  return next.fetch_add(1, std::memory_order_relaxed);
}


}  // namespace

JobRegistry::JobRegistry(Clock* clock, RegistryOptions options, StateStore* store)
    : clock_(clock), options_(std::move(options)), store_(store) {}

JobRegistry::~JobRegistry() { Shutdown(); }

void JobRegistry::SetDeadlineObserver(std::function<void(MonoTime)> observer) {
  deadlines_.SetObserver(std::move(observer));
}

std::shared_ptr<Job> JobRegistry::FindJob(const std::string& job_id) {
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second;
}

std::shared_ptr<Job> JobRegistry::JobForJoin(const MemberSpec& spec, Effects& fx,
                                             absl::Status* error, bool create_only) {
  absl::MutexLock l(&mu_);
  if (shutting_down_) {
    *error = absl::UnavailableError("the rendezvous daemon is shutting down; retry");
    return nullptr;
  }
  auto it = jobs_.find(spec.job_id);
  if (create_only && it != jobs_.end() && !it->second->IsEnded()) {
    *error = absl::AlreadyExistsError(absl::StrCat(
        "job '", spec.job_id, "' already exists (", JobStateName(it->second->state()),
        "); abort and delete it first, or choose another job id"));
    return nullptr;
  }
  if (it == jobs_.end() || it->second->IsEnded()) {
    // Creating a live job: count the live ones (only when the map could be at the limit, so the
    // common case stays O(log n)).
    if (options_.max_jobs != 0 && jobs_.size() >= options_.max_jobs) {
      size_t live = 0;
      for (const auto& [id, job] : jobs_) {
        if (!job->IsEnded()) ++live;
      }
      if (live >= options_.max_jobs) {
        *error = absl::ResourceExhaustedError(absl::StrCat(
            "cannot create job '", spec.job_id, "': the daemon already serves ", live,
            " jobs (--max-jobs=", options_.max_jobs,
            "); wait for jobs to end or raise --max-jobs"));
        return nullptr;
      }
    }
  }
  auto& slot = jobs_[spec.job_id];
  if (slot == nullptr || slot->IsEnded()) {
    Job::Params p;
    p.id = spec.job_id;
    p.uid = next_job_uid_++;
    p.generation = slot == nullptr ? 1 : slot->generation() + 1;
    p.worker_num = spec.worker_num;
    p.server_num = spec.server_num;
    p.topo_timeout_ms = spec.topo_timeout_ms != 0
                            ? spec.topo_timeout_ms
                            : absl::ToInt64Milliseconds(options_.default_topo_timeout);
    p.node_timeout_ms = spec.node_timeout_ms != 0
                            ? spec.node_timeout_ms
                            : absl::ToInt64Milliseconds(options_.default_node_timeout);
    p.recovery_enabled = spec.enable_recovery;
    p.token_digest = spec.token_digest;  // the creating member fixes the job token
    if (slot != nullptr) {
      slot->EndWatches(absl::OkStatus(), fx);  // replaced: watchers see the stream end
      Mutation del;
      del.kind = Mutation::Kind::kDeleteJob;
      del.job.job_id = spec.job_id;
      fx.Persist(std::move(del));
    }
    slot = std::make_shared<Job>(std::move(p), clock_, options_, store_, &deadlines_);
    // Submitted under mu_, so the delete of the old job reaches the store before the new one.
    slot->Start(fx);
  }
  return slot;
}

uint64_t JobRegistry::Join(MemberSpec spec, JoinCallback done) {
  Effects fx;  // declared first: runs after every lock below is released
  absl::Status st = ValidateSpec(spec);
  if (st.ok()) st = CheckTokenRequired(spec, options_);
  if (st.ok()) st = CheckMembersLimit(spec, options_);
  if (!st.ok()) {
    if (options_.metrics != nullptr) options_.metrics->OnRejection(StatusCodeName(st));
    done(st);
    return 0;
  }
  spec.token_digest = TokenDigest(spec.job_token);
  const uint64_t waiter_id = NextWaiterId();
  const uint64_t incarnation = NextIncarnation();
  const std::string credential = NewMemberCredential();
  for (;;) {
    absl::Status error;
    std::shared_ptr<Job> job = JobForJoin(spec, fx, &error);
    if (job == nullptr) {
      if (options_.metrics != nullptr) options_.metrics->OnRejection(StatusCodeName(error));
      fx.Add([done = std::move(done), error]() mutable { done(error); });
      return 0;
    }
    // The job may end between lookup and join (timeout, last member left): then start over,
    // which replaces it with a new job for this id.
    if (job->Join(spec, incarnation, credential, waiter_id, done, fx) !=
        Job::JoinOutcome::kJobEnded) {
      break;
    }
  }
  return waiter_id;
}

absl::StatusOr<MemberRef> JobRegistry::JoinSession(MemberSpec spec,
                                                   std::shared_ptr<MemberSession> session) {
  Effects fx;
  absl::Status st = ValidateSpec(spec);
  if (st.ok()) st = CheckTokenRequired(spec, options_);
  if (st.ok()) st = CheckMembersLimit(spec, options_);
  if (!st.ok()) {
    if (options_.metrics != nullptr) options_.metrics->OnRejection(StatusCodeName(st));
    return st;
  }
  spec.token_digest = TokenDigest(spec.job_token);
  const uint64_t incarnation = NextIncarnation();
  const std::string credential = NewMemberCredential();
  for (;;) {
    absl::Status error;
    std::shared_ptr<Job> job = JobForJoin(spec, fx, &error);
    if (job == nullptr) {
      if (options_.metrics != nullptr) options_.metrics->OnRejection(StatusCodeName(error));
      return error;
    }
    Job::JoinOutcome outcome =
        job->JoinSession(spec, incarnation, credential, session, &error, fx);
    if (outcome == Job::JoinOutcome::kJobEnded) continue;
    if (!error.ok()) return error;
    return MemberRef{spec.job_id, spec.role, spec.node_id, incarnation, credential};
  }
}

void JobRegistry::CancelJoin(const std::string& job_id, uint64_t waiter_id) {
  Effects fx;
  std::shared_ptr<Job> job = FindJob(job_id);
  if (job != nullptr) job->CancelWaiter(waiter_id, fx);
}

absl::Status JobRegistry::ResumeSession(const MemberRef& ref, uint64_t generation,
                                        std::shared_ptr<MemberSession> session) {
  Effects fx;
  {
    absl::MutexLock l(&mu_);
    if (shutting_down_) {
      return absl::UnavailableError("the rendezvous daemon is shutting down; retry");
    }
  }
  std::shared_ptr<Job> job = FindJob(ref.job_id);
  if (job == nullptr) {
    return absl::AbortedError(absl::StrCat(
        "cannot resume: job '", ref.job_id,
        "' is unknown to this daemon (it restarted without --state-dir, or the job ended and "
        "was forgotten); join again"));
  }
  return job->ResumeSession(ref, generation, std::move(session), fx);
}

void JobRegistry::SessionClosed(const MemberRef& ref, const MemberSession* session) {
  Effects fx;
  std::shared_ptr<Job> job = FindJob(ref.job_id);
  if (job != nullptr) job->SessionClosed(ref, session, fx);
}

absl::Status JobRegistry::ReportError(const MemberRef& ref, const std::string& reason) {
  Effects fx;
  std::shared_ptr<Job> job = FindJob(ref.job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", ref.job_id, "' is unknown to this daemon"));
  }
  absl::Status st = job->ReportError(ref, reason, fx);
  if (st.ok() && job->IsEnded()) ScheduleForget(job);
  return st;
}

void JobRegistry::ScheduleForget(const std::shared_ptr<Job>& job) {
  deadlines_.Push(Deadline{AddDuration(clock_->Now(), options_.finished_job_ttl),
                           DeadlineKind::kForgetJob, job->id_ref(), job->uid()});
}

absl::StatusOr<HeartbeatResult> JobRegistry::Heartbeat(const MemberRef& ref) {
  std::shared_ptr<Job> job = FindJob(ref.job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", ref.job_id,
                                            "' is unknown to this daemon; join it first"));
  }
  return job->Heartbeat(ref);
}

absl::Status JobRegistry::TopologyDelivered(const MemberRef& ref) {
  std::shared_ptr<Job> job = FindJob(ref.job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", ref.job_id,
                                            "' is unknown to this daemon; join it first"));
  }
  return job->TopologyDelivered(ref);
}

absl::StatusOr<JobState> JobRegistry::Leave(const MemberRef& ref) {
  Effects fx;
  std::shared_ptr<Job> job = FindJob(ref.job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", ref.job_id,
                                            "' is unknown to this daemon; nothing to leave"));
  }
  absl::StatusOr<JobState> state = job->Leave(ref, fx);
  if (state.ok() && (*state == JobState::kFinished || *state == JobState::kFailed)) {
    ScheduleForget(job);
  }
  return state;
}

absl::StatusOr<JobSummary> JobRegistry::CreateJob(MemberSpec spec) {
  Effects fx;
  absl::Status st = ValidateJobId(spec);
  if (st.ok()) st = ValidateJobFields(spec);
  if (st.ok()) st = CheckTokenRequired(spec, options_);
  if (st.ok()) st = CheckMembersLimit(spec, options_);
  if (!st.ok()) return st;
  spec.token_digest = TokenDigest(spec.job_token);
  std::shared_ptr<Job> job = JobForJoin(spec, fx, &st, /*create_only=*/true);
  if (job == nullptr) return st;
  return job->Summary();
}

absl::Status JobRegistry::AbortJob(const std::string& job_id, const std::string& reason) {
  Effects fx;
  std::shared_ptr<Job> job = FindJob(job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' is unknown to this daemon"));
  }
  RETURN_IF_ERROR(job->Abort(reason, fx));
  ScheduleForget(job);
  return absl::OkStatus();
}

absl::StatusOr<KvPage> JobRegistry::OperatorKvList(const std::string& job_id,
                                                   const std::string& prefix,
                                                   const std::string& after, size_t limit) {
  std::shared_ptr<Job> job = FindJob(job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' is unknown to this daemon"));
  }
  return job->kv().List(prefix, after, limit);
}

absl::Status JobRegistry::DeleteJob(const std::string& job_id) {
  Effects fx;
  absl::MutexLock l(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' is unknown to this daemon"));
  }
  if (!it->second->IsEnded()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", job_id, "' is ", JobStateName(it->second->state()),
        "; only a finished or failed job can be deleted: abort it first"));
  }
  it->second->EndWatches(absl::OkStatus(), fx);
  Mutation del;
  del.kind = Mutation::Kind::kDeleteJob;
  del.job.job_id = job_id;
  fx.Persist(std::move(del));
  fx.Submit(store_);  // under mu_: ordered before a new job with this id is created
  jobs_.erase(it);
  return absl::OkStatus();
}

bool JobRegistry::JobTokenMatches(const std::string& job_id, const std::string& token) {
  if (token.empty()) return false;
  std::shared_ptr<Job> job = FindJob(job_id);
  return job != nullptr && job->TokenMatches(TokenDigest(token));
}

std::vector<JobSummary> JobRegistry::ListJobs(const std::string& after_job_id, size_t limit) {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock l(&mu_);
    for (auto it = jobs_.upper_bound(after_job_id); it != jobs_.end() && jobs.size() < limit;
         ++it) {
      jobs.push_back(it->second);
    }
  }
  std::vector<JobSummary> out;
  out.reserve(jobs.size());
  for (auto& job : jobs) out.push_back(job->Summary());
  return out;
}

absl::StatusOr<JobSummary> JobRegistry::GetJob(const std::string& job_id) {
  std::shared_ptr<Job> job = FindJob(job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' is unknown to this daemon"));
  }
  return job->Summary();
}

absl::StatusOr<MemberPage> JobRegistry::ListMembers(const std::string& job_id, uint64_t offset,
                                                    size_t limit) {
  std::shared_ptr<Job> job = FindJob(job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' is unknown to this daemon"));
  }
  return job->ListMembers(offset, limit);
}

absl::StatusOr<uint64_t> JobRegistry::Watch(const std::string& job_id,
                                            std::shared_ptr<JobWatcher> watcher) {
  Effects fx;
  std::shared_ptr<Job> job = FindJob(job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", job_id, "' is unknown to this daemon"));
  }
  return job->Watch(std::move(watcher), fx);
}

void JobRegistry::Unwatch(const std::string& job_id, uint64_t watch_id) {
  std::shared_ptr<Job> job = FindJob(job_id);
  if (job != nullptr) job->Unwatch(watch_id);
}


// --- key/value store and barriers -------------------------------------------------------------

namespace {
// Runs `fn(kv)` for a live member's job, or completes `fail` with why it cannot.
template <typename Done>
bool WithKv(JobRegistry& reg, const std::shared_ptr<Job>& job, const MemberRef& ref, Done& done,
            JobKv** kv) {
  if (job == nullptr) {
    done(absl::NotFoundError(
        absl::StrCat("job '", ref.job_id, "' is unknown to this daemon; join it first")));
    return false;
  }
  absl::StatusOr<JobKv*> found = job->KvFor(ref);
  if (!found.ok()) {
    done(found.status());
    return false;
  }
  *kv = *found;
  return true;
}
}  // namespace

void JobRegistry::KvSet(const MemberRef& ref, std::string key, std::string value,
                        StatusCallback done) {
  CountKv(KvOp::kSet);
  Effects fx;
  JobKv* kv = nullptr;
  if (!WithKv(*this, FindJob(ref.job_id), ref, done, &kv)) return;
  kv->Set(std::move(key), std::move(value), std::move(done), fx);
}

uint64_t JobRegistry::KvGet(const MemberRef& ref, const std::string& key, absl::Duration timeout,
                            ValueCallback done) {
  CountKv(KvOp::kGet);
  Effects fx;
  JobKv* kv = nullptr;
  if (!WithKv(*this, FindJob(ref.job_id), ref, done, &kv)) return 0;
  return kv->Get(key, timeout, std::move(done), fx);
}

uint64_t JobRegistry::KvWait(const MemberRef& ref, const std::vector<std::string>& keys,
                             absl::Duration timeout, StatusCallback done) {
  CountKv(KvOp::kWait);
  Effects fx;
  JobKv* kv = nullptr;
  if (!WithKv(*this, FindJob(ref.job_id), ref, done, &kv)) return 0;
  return kv->Wait(keys, timeout, std::move(done), fx);
}

void JobRegistry::KvAdd(const MemberRef& ref, const std::string& key, int64_t delta,
                        absl::AnyInvocable<void(absl::StatusOr<int64_t>)> done) {
  CountKv(KvOp::kAdd);
  Effects fx;
  JobKv* kv = nullptr;
  if (!WithKv(*this, FindJob(ref.job_id), ref, done, &kv)) return;
  kv->Add(key, delta, std::move(done), fx);
}

void JobRegistry::KvCompareSet(const MemberRef& ref, const std::string& key,
                               const std::string& expected, std::string desired,
                               absl::AnyInvocable<void(absl::StatusOr<CompareSetResult>)> done) {
  CountKv(KvOp::kCompareSet);
  Effects fx;
  JobKv* kv = nullptr;
  if (!WithKv(*this, FindJob(ref.job_id), ref, done, &kv)) return;
  kv->CompareSet(key, expected, std::move(desired), std::move(done), fx);
}

void JobRegistry::KvDelete(const MemberRef& ref, const std::string& key,
                           absl::AnyInvocable<void(absl::StatusOr<bool>)> done) {
  CountKv(KvOp::kDelete);
  Effects fx;
  JobKv* kv = nullptr;
  if (!WithKv(*this, FindJob(ref.job_id), ref, done, &kv)) return;
  kv->Delete(key, std::move(done), fx);
}

absl::StatusOr<KvPage> JobRegistry::KvList(const MemberRef& ref, const std::string& prefix,
                                           const std::string& after, size_t limit) {
  CountKv(KvOp::kList);
  std::shared_ptr<Job> job = FindJob(ref.job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", ref.job_id, "' is unknown to this daemon"));
  }
  absl::StatusOr<JobKv*> kv = job->KvFor(ref);
  if (!kv.ok()) return kv.status();
  return (*kv)->List(prefix, after, limit);
}

absl::StatusOr<uint64_t> JobRegistry::KvNumKeys(const MemberRef& ref) {
  CountKv(KvOp::kNumKeys);
  std::shared_ptr<Job> job = FindJob(ref.job_id);
  if (job == nullptr) {
    return absl::NotFoundError(absl::StrCat("job '", ref.job_id, "' is unknown to this daemon"));
  }
  absl::StatusOr<JobKv*> kv = job->KvFor(ref);
  if (!kv.ok()) return kv.status();
  return (*kv)->NumKeys();
}

uint64_t JobRegistry::Barrier(const MemberRef& ref, const std::string& name,
                              absl::Duration timeout, const std::vector<uint32_t>& ranks,
                              StatusCallback done) {
  CountKv(KvOp::kBarrier);
  Effects fx;
  std::shared_ptr<Job> job = FindJob(ref.job_id);
  if (job == nullptr) {
    done(absl::NotFoundError(
        absl::StrCat("job '", ref.job_id, "' is unknown to this daemon; join it first")));
    return 0;
  }
  return job->Barrier(ref, name, timeout, ranks, std::move(done), fx);
}

void JobRegistry::CancelWaiter(const std::string& job_id, uint64_t waiter_id) {
  Effects fx;
  std::shared_ptr<Job> job = FindJob(job_id);
  if (job == nullptr) return;
  job->CancelKvWaiter(waiter_id, fx);
  job->CancelBarrierWaiter(waiter_id, fx);
}

absl::Status JobRegistry::Restore(const StoredState& state) {
  absl::MutexLock l(&mu_);
  if (!jobs_.empty()) {
    return absl::FailedPreconditionError("Restore() must run before the registry serves");
  }
  size_t next_member = 0, next_kv = 0;
  for (const JobRecord& r : state.jobs) {
    Job::Params p;
    p.id = r.job_id;
    p.uid = next_job_uid_++;
    p.generation = r.generation;
    p.worker_num = r.worker_num;
    p.server_num = r.server_num;
    p.topo_timeout_ms = r.topo_timeout_ms;
    p.node_timeout_ms = r.node_timeout_ms;
    p.recovery_enabled = r.recovery_enabled;
    p.token_digest = r.token_digest;
    auto job = std::make_shared<Job>(std::move(p), clock_, options_, store_, &deadlines_);
    while (next_member < state.members.size() && state.members[next_member].job_id < r.job_id) {
      ++next_member;  // members of a job without a record (cannot happen with a sane store)
    }
    while (next_member < state.members.size() && state.members[next_member].job_id == r.job_id) {
      job->RestoreMember(state.members[next_member++]);
    }
    while (next_kv < state.kv.size() && state.kv[next_kv].job_id < r.job_id) ++next_kv;
    while (next_kv < state.kv.size() && state.kv[next_kv].job_id == r.job_id) {
      job->RestoreKv(state.kv[next_kv].key, state.kv[next_kv].value);
      ++next_kv;
    }
    job->FinishRestore(r.state, r.failure_reason);
    if (r.state == JobState::kFinished || r.state == JobState::kFailed) {
      deadlines_.Push(Deadline{AddDuration(clock_->Now(), options_.finished_job_ttl),
                               DeadlineKind::kForgetJob, job->id_ref(), job->uid()});
    }
    jobs_.emplace(r.job_id, std::move(job));
  }
  return absl::OkStatus();
}

MonoTime JobRegistry::ProcessDeadlines() {
  const MonoTime now = clock_->Now();
  for (const Deadline& d : deadlines_.PopDue(now)) {
    Effects fx;
    std::shared_ptr<Job> job = FindJob(*d.job_id);
    if (job == nullptr || job->uid() != d.job_uid) continue;  // replaced or forgotten
    switch (d.kind) {
      case DeadlineKind::kTopologyTimeout:
        if (job->OnTopologyTimeout(fx)) ScheduleForget(job);
        break;
      case DeadlineKind::kMemberLiveness:
      case DeadlineKind::kMemberSuspect:
        if (job->OnMemberDeadline(d, fx)) ScheduleForget(job);
        break;
      case DeadlineKind::kKvWaiter:
        job->OnKvDeadline(d.waiter_id, fx);
        break;
      case DeadlineKind::kBarrier:
        job->OnBarrierDeadline(d, fx);
        break;
      case DeadlineKind::kForgetJob: {
        absl::MutexLock l(&mu_);
        auto it = jobs_.find(*d.job_id);
        if (it != jobs_.end() && it->second->uid() == d.job_uid && it->second->IsEnded()) {
          it->second->EndWatches(absl::OkStatus(), fx);
          Mutation del;
          del.kind = Mutation::Kind::kDeleteJob;
          del.job.job_id = *d.job_id;
          fx.Persist(std::move(del));
          fx.Submit(store_);
          jobs_.erase(it);
        }
        break;
      }
    }
  }
  return deadlines_.Next();
}

void JobRegistry::Shutdown() {
  Effects fx;
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock l(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    for (auto& [id, job] : jobs_) jobs.push_back(job);
  }
  const absl::Status st =
      absl::UnavailableError("the rendezvous daemon is shutting down; retry when it is back");
  for (auto& job : jobs) job->Shutdown(st, fx);
}

size_t JobRegistry::num_jobs() {
  absl::MutexLock l(&mu_);
  return jobs_.size();
}

RegistryCounts JobRegistry::Counts() {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock l(&mu_);
    jobs.reserve(jobs_.size());
    for (auto& [id, job] : jobs_) jobs.push_back(job);
  }
  RegistryCounts counts;
  for (auto& job : jobs) {
    ++counts.jobs[static_cast<int>(job->state())];
    job->AddMemberCounts(counts.members);
  }
  return counts;
}

}  // namespace ms_rendezvous::core
