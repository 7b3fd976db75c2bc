#include "core/job.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/credentials.h"
#include "core/messages.h"
#include "core/status_util.h"

namespace ms_rendezvous::core {
namespace {

constexpr size_t kMaxListedInMessage = 20;
// A session never lags: its reorder buffer only holds events delivered out of order by
// concurrent threads. The bound only guards against a bug.
constexpr size_t kSessionReorderLimit = 1 << 20;

int RoleIndex(Role role) { return static_cast<int>(role); }

// "0.3s", "2s", "1800s": seconds with at most one decimal.
std::string FormatSeconds(absl::Duration d) {
  const int64_t tenths = absl::ToInt64Milliseconds(d) / 100;
  if (tenths % 10 == 0) return absl::StrCat(tenths / 10, "s");
  return absl::StrCat(tenths / 10, ".", std::abs(tenths % 10), "s");
}

std::string DeadList(const std::vector<DeadMember>& dead) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < dead.size() && i < kMaxListedInMessage; ++i) {
    const DeadMember& d = dead[i];
    parts.push_back(absl::StrCat(RoleName(d.role),
                                 d.rank.has_value() ? absl::StrCat(" rank ", *d.rank) : "",
                                 " (node '", d.node_id, "', host ", d.host, ", last seen ",
                                 FormatSeconds(d.last_seen_ago), " ago): ", d.reason));
  }
  if (dead.size() > kMaxListedInMessage) {
    parts.push_back(absl::StrCat("and ", dead.size() - kMaxListedInMessage, " more"));
  }
  return absl::StrJoin(parts, "; ");
}

}  // namespace

// `fn` may be kept and run later by another thread's Deliver call (when it arrives out of
// order), so it must own everything it uses: capture by value, never by reference.
bool OrderedDelivery::Deliver(uint64_t seq, absl::AnyInvocable<void()> fn) {
  absl::MutexLock l(&mu_);
  if (seq < next_) return true;  // a closure from before this receiver existed
  pending_.emplace(seq, std::move(fn));
  if (pending_.size() > max_backlog_) {
    pending_.clear();
    return false;
  }
  // Runs under mu_: that is what serializes the receiver's callbacks.
  while (!pending_.empty() && pending_.begin()->first == next_) {
    auto ready = std::move(pending_.begin()->second);
    pending_.erase(pending_.begin());
    ++next_;
    ready();
  }
  return true;
}

Job::Job(Params params, Clock* clock, const RegistryOptions& options, StateStore* store,
         DeadlineQueue* deadlines)
    : params_(std::move(params)),
      id_ref_(std::make_shared<const std::string>(params_.id)),
      clock_(clock),
      options_(options),
      store_(store),
      deadlines_(deadlines),
      created_at_(clock->Now()),
      kv_(std::make_unique<JobKv>(id_ref_, params_.uid, options.kv_limits, clock, store,
                                  deadlines)) {
  absl::MutexLock l(&mu_);
  topo_deadline_ = params_.topo_timeout_ms < 0
                       ? MonoTime::max()
                       : AddDuration(created_at_, absl::Milliseconds(params_.topo_timeout_ms));
}

Job::~Job() = default;

void Job::Start(Effects& fx) {
  absl::MutexLock l(&mu_);
  PersistJob(fx);
  fx.Submit(store_);
  if (topo_deadline_ != MonoTime::max()) {
    deadlines_->Push(Deadline{topo_deadline_, DeadlineKind::kTopologyTimeout, id_ref_,
                              params_.uid});
  }
}

// --- persistence ------------------------------------------------------------------------------

JobRecord Job::RecordOf() const {
  JobRecord r;
  r.job_id = params_.id;
  r.generation = params_.generation;
  r.worker_num = params_.worker_num;
  r.server_num = params_.server_num;
  r.topo_timeout_ms = params_.topo_timeout_ms;
  r.node_timeout_ms = params_.node_timeout_ms;
  r.recovery_enabled = params_.recovery_enabled;
  r.state = state_;
  r.failure_reason = failure_reason_;
  r.token_digest = params_.token_digest;
  return r;
}

MemberRecord Job::RecordOf(const Member& m) const {
  MemberRecord r;
  r.job_id = params_.id;
  r.role = m.role;
  r.node_id = std::string(m.node_id);
  r.host = *m.host;
  r.host_name = *m.host_name;
  r.device_id = m.device_id;
  r.device_ip = m.device_ip;
  r.incarnation = m.incarnation;
  r.credential = m.credential.str();
  // Liveness suspicion is not durable: after a restart every member gets a fresh grace.
  r.state = m.state == MemberState::kSuspect
                ? (m.has_rank ? MemberState::kActive : MemberState::kWaiting)
                : m.state;
  r.reason = m.reason;
  if (m.has_rank) {
    r.rank = m.placement.rank;
    r.local_rank = m.placement.local_rank;
    r.local_world_size = m.placement.local_world_size;
    r.node_rank = m.placement.node_rank;
    r.num_nodes = m.placement.num_nodes;
  }
  return r;
}

// Without a store (the default, in-memory daemon) Submit drops every mutation. Not building
// them at all matters at formation: one 520-byte Mutation (plus its strings) per member, a
// vector of ~100 MB for 100,000 members (heaptrack), would otherwise be built and dropped at
// the storm's peak.
void Job::PersistJob(Effects& fx) {
  if (store_ == nullptr) return;
  Mutation mu;
  mu.kind = Mutation::Kind::kPutJob;
  mu.job = RecordOf();
  fx.Persist(std::move(mu));
}

void Job::PersistMember(const Member& m, Effects& fx) {
  if (store_ == nullptr) return;
  Mutation mu;
  mu.kind = Mutation::Kind::kPutMember;
  mu.member = RecordOf(m);
  fx.Persist(std::move(mu));
}

// --- sessions ---------------------------------------------------------------------------------

void Job::Attach(Member& m, std::shared_ptr<MemberSession> session, Effects& fx) {
  if (m.session.has_value()) {
    EndSession(m, absl::AbortedError(absl::StrCat(
                      "session of node '", m.node_id, "' in job '", params_.id,
                      "' was replaced by a newer session of the same member")),
               fx);
  }
  SessionLink link;
  link.session = std::move(session);
  link.order = std::make_shared<OrderedDelivery>(0, kSessionReorderLimit);
  m.session = std::move(link);
  m.topology_sent = false;
}

void Job::SendRegistered(Member& m, Effects& fx) {
  if (!m.session.has_value()) return;
  SessionLink& s = *m.session;
  fx.Add([order = s.order, seq = s.next_seq++, session = s.session,
          ref = MemberRef{params_.id, m.role, std::string(m.node_id), m.incarnation,
                         m.credential.str()}] {
    order->Deliver(seq, [session, ref] { session->OnRegistered(ref); });
  });
}

void Job::SendTopology(Member& m, Effects& fx) {
  if (!m.session.has_value() || m.topology_sent) return;
  m.topology_sent = true;
  SessionLink& s = *m.session;
  fx.Add([order = s.order, seq = s.next_seq++, session = s.session, topo = TopologyOf(m)] {
    order->Deliver(seq, [session, topo] { session->OnTopology(topo); });
  });
}

void Job::SendEvent(Member& m, std::shared_ptr<const JobEvent> event, Effects& fx) {
  if (!m.session.has_value() || event == nullptr) return;
  SessionLink& s = *m.session;
  fx.Add([order = s.order, seq = s.next_seq++, session = s.session, event] {
    order->Deliver(seq, [session, event] { session->OnEvent(*event); });
  });
}

void Job::EndSession(Member& m, const absl::Status& status, Effects& fx) {
  if (!m.session.has_value()) return;
  SessionLink& s = *m.session;
  fx.Add([order = s.order, seq = s.next_seq++, session = s.session, status] {
    order->Deliver(seq, [session, status] { session->OnEnd(status); });
  });
  m.session.reset();
}

// --- timers -----------------------------------------------------------------------------------

void Job::ArmLiveness(const Member& m, MonoTime when) {
  if (params_.node_timeout_ms < 0) return;
  deadlines_->Push(Deadline{when, DeadlineKind::kMemberLiveness, id_ref_, params_.uid, m.role,
                            m.node_id, m.incarnation});
}

void Job::ArmSuspect(const Member& m, MonoTime when) {
  deadlines_->Push(Deadline{when, DeadlineKind::kMemberSuspect, id_ref_, params_.uid, m.role,
                            m.node_id, m.incarnation});
}

// --- join -------------------------------------------------------------------------------------

absl::Status Job::Validate(const MemberSpec& spec) {
  const Role role = spec.role;
  if (spec.worker_num != params_.worker_num) {
    return absl::FailedPreconditionError(absl::StrCat(
        "MS_WORKER_NUM=", spec.worker_num, " of node '", spec.node_id,
        "' disagrees with MS_WORKER_NUM=", params_.worker_num, " of job '", params_.id,
        "' (fixed by its first member); every process of a job must use the same value"));
  }
  if (spec.server_num != params_.server_num) {
    return absl::FailedPreconditionError(absl::StrCat(
        "MS_SERVER_NUM=", spec.server_num, " of node '", spec.node_id,
        "' disagrees with MS_SERVER_NUM=", params_.server_num, " of job '", params_.id,
        "' (fixed by its first member); every process of a job must use the same value"));
  }
  if (spec.enable_recovery != params_.recovery_enabled) {
    return absl::FailedPreconditionError(absl::StrCat(
        "MS_ENABLE_RECOVERY=", spec.enable_recovery ? 1 : 0, " of node '", spec.node_id,
        "' disagrees with MS_ENABLE_RECOVERY=", params_.recovery_enabled ? 1 : 0, " of job '",
        params_.id, "' (fixed by its first member)"));
  }
  const uint32_t expected = params_.worker_num * (role == Role::kWorker) +
                            params_.server_num * (role == Role::kPServer);
  const auto& members = members_[RoleIndex(role)];
  auto existing = members.find(spec.node_id);
  if (existing != members.end()) {
    const Member& m = existing->second;
    std::string hint = params_.recovery_enabled
                           ? "it is still alive; stop it before starting a replacement"
                           : "give every process a unique MS_NODE_ID, or stop the stale process "
                             "(MS_ENABLE_RECOVERY=1 lets a restarted process take back its rank)";
    return absl::AlreadyExistsError(absl::StrCat(
        "Repeated registration node: node id '", spec.node_id, "' (", RoleName(role),
        ") is already registered in job '", params_.id, "' from host ", *m.host, " (",
        MemberStateName(m.state), ", joined ",
        FormatSeconds(ToDuration(clock_->Now() - m.joined_at)), " ago); ", hint));
  }
  auto numeric = NumericNodeId(spec.node_id);
  if (numeric.has_value() && *numeric >= expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MS_NODE_ID=", spec.node_id, " is out of range for role ", RoleName(role), " in job '",
        params_.id, "': a numeric node id is the rank and must be in 0..", expected - 1, " (",
        role == Role::kWorker ? "MS_WORKER_NUM=" : "MS_SERVER_NUM=", expected, ")"));
  }
  if (members.size() >= expected) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "node '", spec.node_id, "' is extra: job '", params_.id, "' already has all ", expected,
        " ", RoleName(role), " members (", JobStateName(state_),
        "); check MS_WORKER_NUM/MS_SERVER_NUM and that no process was started twice"));
  }
  if (numeric.has_value()) {
    auto holder = pinned_[RoleIndex(role)].find(*numeric);
    if (holder != pinned_[RoleIndex(role)].end()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "Repeated registration node: rank ", *numeric, " (", RoleName(role), ") of job '",
          params_.id, "' is already held by node id '", holder->second, "'; node id '",
          spec.node_id, "' names the same rank"));
    }
  }
  return absl::OkStatus();
}

absl::Status Job::CheckToken(const MemberSpec& spec) const {
  if (SecretEquals(spec.token_digest, params_.token_digest)) return absl::OkStatus();
  if (params_.token_digest.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "job '", params_.id, "' was created without a job token, but node '", spec.node_id,
        "' presents one (MS_JOB_TOKEN): set the same MS_JOB_TOKEN on every member, or on none"));
  }
  if (spec.token_digest.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "job '", params_.id, "' requires a job token: node '", spec.node_id,
        "' presents none; set MS_JOB_TOKEN to the token the job was created with"));
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "the job token presented by node '", spec.node_id, "' does not match the token job '",
      params_.id, "' was created with (MS_JOB_TOKEN)"));
}

absl::StatusOr<Job::Member*> Job::Register(const MemberSpec& spec, uint64_t incarnation,
                                           const std::string& credential, Effects& fx) {
  // The token is checked before anything else, so a rejected caller learns nothing about the
  // job's members and changes nothing.
  RETURN_IF_ERROR(CheckToken(spec));
  const int ri = RoleIndex(spec.role);
  // Recovery: a dead (or disconnected) member of a running job is taken over by the new
  // incarnation, which inherits its rank.
  if (params_.recovery_enabled &&
      (state_ == JobState::kComplete || state_ == JobState::kDegraded)) {
    auto it = members_[ri].find(spec.node_id);
    if (it != members_[ri].end() && (it->second.state == MemberState::kDead ||
                                     it->second.state == MemberState::kSuspect)) {
      if (spec.worker_num != params_.worker_num || spec.server_num != params_.server_num ||
          !spec.enable_recovery) {
        RETURN_IF_ERROR(Validate(spec));  // reports the disagreement
      }
      Recover(it->second, spec, incarnation, credential, fx);
      if (options_.metrics != nullptr) options_.metrics->OnJoin(spec.role);
      return &it->second;
    }
  }
  RETURN_IF_ERROR(Validate(spec));
  auto [it, inserted] = members_[ri].try_emplace(spec.node_id);
  Member& m = it->second;
  if (inserted) ++member_counts_[static_cast<int>(MemberState::kWaiting)];
  m.node_id = it->first.view();
  m.host = hosts_.Acquire(spec.host);
  m.host_name = host_names_.Acquire(spec.host_name);
  m.device_id = spec.device_id;
  m.device_ip = spec.device_ip;
  m.role = spec.role;
  m.incarnation = incarnation;
  m.credential = credential;
  m.heartbeat_disabled = spec.heartbeat_disabled;
  m.joined_at = m.last_seen = clock_->Now();
  m.pinned_rank = NumericNodeId(spec.node_id);
  if (m.pinned_rank.has_value()) {
    pinned_[ri].emplace(*m.pinned_rank, spec.node_id);
  } else {
    ++non_numeric_[ri];
  }
  PersistMember(m, fx);
  if (!watches_.empty()) {
    Emit(JobEventType::kMemberJoined, &m,
         absl::StrCat(RoleName(m.role), " '", m.node_id, "' joined from ", *m.host), fx);
  }
  if (options_.metrics != nullptr) options_.metrics->OnJoin(spec.role);
  return &m;
}

void Job::Recover(Member& m, const MemberSpec& spec, uint64_t incarnation,
                  const std::string& credential, Effects& fx) {
  const MonoTime now = clock_->Now();
  const bool was_dead = m.state == MemberState::kDead;
  if (m.session.has_value()) {
    EndSession(m, absl::AbortedError(absl::StrCat("node '", m.node_id, "' of job '", params_.id,
                                                  "' was replaced by a new incarnation")),
               fx);
  }
  // The rank stays; the address may change (restarted elsewhere), the placement does not.
  const std::string* old_host = m.host;
  const std::string* old_host_name = m.host_name;
  m.host = hosts_.Acquire(spec.host);
  m.host_name = host_names_.Acquire(spec.host_name);
  hosts_.Release(old_host);
  host_names_.Release(old_host_name);
  m.device_ip = spec.device_ip;
  m.incarnation = incarnation;
  m.credential = credential;
  m.heartbeat_disabled = spec.heartbeat_disabled;
  SetState(m, MemberState::kActive);
  m.reason.clear();
  m.joined_at = m.last_seen = now;
  if (was_dead) --dead_;
  if (dead_ == 0) state_ = JobState::kComplete;
  ArmLiveness(m, AddDuration(now, absl::Milliseconds(params_.node_timeout_ms)));
  PersistMember(m, fx);
  PersistJob(fx);
  auto ev = Emit(JobEventType::kMemberRecovered, &m,
                 absl::StrCat(Describe(m), " recovered (incarnation ", incarnation, "); job is ",
                              JobStateName(state_)),
                 fx, {}, /*force=*/true);
  for (auto& members : members_) {
    for (auto& [id, other] : members) {
      if (&other != &m) SendEvent(other, ev, fx);
    }
  }
}

Job::JoinOutcome Job::Join(const MemberSpec& spec, uint64_t incarnation,
                           const std::string& credential, uint64_t waiter_id,
                           JoinCallback& done, Effects& fx) {
  absl::MutexLock l(&mu_);
  if (state_ == JobState::kFinished || state_ == JobState::kFailed) {
    return JoinOutcome::kJobEnded;
  }
  absl::StatusOr<Member*> m = Register(spec, incarnation, credential, fx);
  if (!m.ok()) {
    if (options_.metrics != nullptr) options_.metrics->OnRejection(StatusCodeName(m.status()));
    fx.Add([done = std::move(done), st = m.status()]() mutable { done(st); });
    fx.Submit(store_);
    return JoinOutcome::kDone;
  }
  Member& member = **m;
  if (member.has_rank) {  // recovered into a running job: answer at once
    fx.Add([done = std::move(done), topo = TopologyOf(member)]() mutable { done(topo); });
    fx.Submit(store_);
    return JoinOutcome::kDone;
  }
  member.waiter_id = waiter_id;
  member.done = std::move(done);
  waiters_.emplace(waiter_id, std::make_pair(spec.role, spec.node_id));
  MaybeComplete(fx);
  fx.Submit(store_);
  return JoinOutcome::kParked;
}

Job::JoinOutcome Job::JoinSession(const MemberSpec& spec, uint64_t incarnation,
                                  const std::string& credential,
                                  std::shared_ptr<MemberSession> session, absl::Status* error,
                                  Effects& fx) {
  absl::MutexLock l(&mu_);
  if (state_ == JobState::kFinished || state_ == JobState::kFailed) {
    return JoinOutcome::kJobEnded;
  }
  absl::StatusOr<Member*> m = Register(spec, incarnation, credential, fx);
  if (!m.ok()) {
    if (options_.metrics != nullptr) options_.metrics->OnRejection(StatusCodeName(m.status()));
    *error = m.status();
    fx.Submit(store_);
    return JoinOutcome::kDone;
  }
  Member& member = **m;
  Attach(member, std::move(session), fx);
  SendRegistered(member, fx);
  if (member.has_rank) SendTopology(member, fx);  // recovered
  MaybeComplete(fx);
  fx.Submit(store_);
  return JoinOutcome::kParked;
}

void Job::MaybeComplete(Effects& fx) {
  if (state_ == JobState::kForming && members_[0].size() == params_.worker_num &&
      members_[1].size() == params_.server_num) {
    Complete(fx);
  }
}

void Job::Complete(Effects& fx) {
  state_ = JobState::kComplete;
  const MonoTime now = clock_->Now();
  size_t total = 0;
  for (int ri = 0; ri < kNumRoles; ++ri) {
    auto& members = members_[ri];
    std::vector<RankInput> inputs;
    std::vector<Member*> order;
    inputs.reserve(members.size());
    order.reserve(members.size());
    // Host keys are only needed here, so members do not store them: one per distinct host
    // (a node map: `inputs` points into its values).
    absl::node_hash_map<const std::string*, std::string> host_keys;
    for (auto& [id, m] : members) {
      auto [key, inserted] = host_keys.try_emplace(m.host);
      if (inserted) key->second = HostKey(*m.host);
      inputs.push_back(RankInput{m.node_id, key->second, m.device_id, m.pinned_rank});
      order.push_back(&m);
    }
    std::vector<RankOutput> out = AssignRanks(inputs);
    by_rank_[ri].assign(order.size(), nullptr);
    for (size_t i = 0; i < order.size(); ++i) {
      Member* m = order[i];
      m->placement = out[i];
      m->has_rank = true;
      // A member whose session dropped during formation stays suspect (its grace timer runs).
      if (m->state == MemberState::kWaiting) SetState(*m, MemberState::kActive);
      by_rank_[ri][out[i].rank] = m;
    }
    total += order.size();
  }
  waiters_.clear();
  fx.Reserve(total + 1);
  const MonoTime liveness_due = AddDuration(now, absl::Milliseconds(params_.node_timeout_ms));
  for (int ri = 0; ri < kNumRoles; ++ri) {
    for (Member* m : by_rank_[ri]) {
      PersistMember(*m, fx);
      // Formation may take long; liveness is judged from completion on, and from the moment
      // the topology reached the member's connection once the server says so
      // (TopologyDelivered).
      m->last_seen = std::max(m->last_seen, now);
      ArmLiveness(*m, liveness_due);
      SendTopology(*m, fx);
      if (m->waiter_id == 0) continue;
      m->waiter_id = 0;
      fx.Add([done = std::move(m->done), topo = TopologyOf(*m)]() mutable {
        done(std::move(topo));
      });
      m->done = nullptr;
    }
  }
  PersistJob(fx);
  Emit(JobEventType::kJobComplete, nullptr,
       absl::StrCat("all ", params_.worker_num, " workers and ", params_.server_num,
                    " servers joined in ", FormatSeconds(ToDuration(now - created_at_))),
       fx);
}

std::string Job::Describe(const Member& m) const {
  return absl::StrCat(RoleName(m.role),
                      m.has_rank ? absl::StrCat(" rank ", m.placement.rank) : std::string(),
                      " (node '", m.node_id, "', host ", *m.host, ")");
}

DeadMember Job::DeadOf(const Member& m, MonoTime now) const {
  DeadMember d;
  d.role = m.role;
  if (m.has_rank) d.rank = m.placement.rank;
  d.node_id = std::string(m.node_id);
  d.host = *m.host;
  d.last_seen_ago = ToDuration(now - m.last_seen);
  d.reason = m.reason;
  return d;
}

void Job::DeclareDead(Member& m, DeathKind kind, const std::string& reason, Effects& fx) {
  const MonoTime now = clock_->Now();
  if (options_.metrics != nullptr) {
    options_.metrics->OnMemberDead(kind, ToDuration(now - m.last_seen));
  }
  SetState(m, MemberState::kDead);
  m.reason = reason;
  ++dead_;
  EndSession(m, absl::AbortedError(absl::StrCat(Describe(m), " was declared dead: ", reason)),
             fx);
  std::vector<DeadMember> dead = {DeadOf(m, now)};
  const std::string what = absl::StrCat(Describe(m), " died: ", reason, " (last seen ",
                                        FormatSeconds(dead[0].last_seen_ago), " ago)");
  if (!params_.recovery_enabled) {
    Fail(absl::StrCat("job '", params_.id, "' failed: ", what), absl::StatusCode::kAborted, dead,
         fx);
    return;
  }
  state_ = JobState::kDegraded;
  PersistMember(m, fx);
  PersistJob(fx);
  auto ev = Emit(JobEventType::kMemberDead, &m,
                 absl::StrCat(what, "; job '", params_.id,
                              "' is degraded until it rejoins with the same MS_NODE_ID"),
                 fx, dead, /*force=*/true);
  for (auto& members : members_) {
    for (auto& [id, other] : members) SendEvent(other, ev, fx);
  }
}

void Job::Fail(const std::string& reason, absl::StatusCode waiter_code,
               const std::vector<DeadMember>& dead, Effects& fx) {
  state_ = JobState::kFailed;
  failure_reason_ = dead.empty() ? reason : absl::StrCat(reason, ". Dead: ", DeadList(dead));
  const absl::Status st(waiter_code, failure_reason_);
  auto ev = Emit(JobEventType::kJobFailed, nullptr, failure_reason_, fx, dead, /*force=*/true);
  for (auto& members : members_) {
    for (auto& [id, m] : members) {
      if (m.state != MemberState::kDead && m.state != MemberState::kLeft) {
        SetState(m, MemberState::kFailed);
        if (m.reason.empty()) m.reason = "job failed";
      }
      SendEvent(m, ev, fx);
      EndSession(m, st, fx);
      if (m.waiter_id != 0) {
        m.waiter_id = 0;
        fx.Add([done = std::move(m.done), st]() mutable { done(st); });
        m.done = nullptr;
      }
      PersistMember(m, fx);
    }
  }
  waiters_.clear();
  kv_->Fail(absl::AbortedError(failure_reason_), fx);
  FailBarriers(absl::AbortedError(failure_reason_), fx);
  PersistJob(fx);
}

void Job::Withdraw(MemberMap::iterator it, const std::string& why, Effects& fx) {
  Member& m = it->second;
  const int ri = RoleIndex(m.role);
  if (m.pinned_rank.has_value()) {
    pinned_[ri].erase(*m.pinned_rank);
  } else {
    --non_numeric_[ri];
  }
  if (m.waiter_id != 0) {
    waiters_.erase(m.waiter_id);
    fx.Add([done = std::move(m.done), why]() mutable { done(absl::CancelledError(why)); });
  }
  EndSession(m, absl::CancelledError(why), fx);
  if (store_ != nullptr) {
    Mutation mu;
    mu.kind = Mutation::Kind::kDeleteMember;
    mu.member = RecordOf(m);
    fx.Persist(std::move(mu));
  }
  if (!watches_.empty()) Emit(JobEventType::kMemberWithdrawn, &m, why, fx);
  --member_counts_[static_cast<int>(m.state)];
  hosts_.Release(m.host);
  host_names_.Release(m.host_name);
  members_[ri].erase(it);
}

void Job::CancelWaiter(uint64_t waiter_id, Effects& fx) {
  absl::MutexLock l(&mu_);
  auto w = waiters_.find(waiter_id);
  if (w == waiters_.end()) return;
  auto [role, node_id] = w->second;
  auto it = members_[RoleIndex(role)].find(node_id);
  if (it == members_[RoleIndex(role)].end()) return;
  Withdraw(it,
           absl::StrCat(RoleName(role), " '", node_id, "' withdrew before job '", params_.id,
                        "' was complete (its Join call was cancelled or its connection closed)"),
           fx);
  fx.Submit(store_);
}

// --- follow-up calls --------------------------------------------------------------------------

absl::StatusOr<Job::Member*> Job::FindMember(const MemberRef& ref) {
  auto& members = members_[RoleIndex(ref.role)];
  auto it = members.find(ref.node_id);
  if (it == members.end()) {
    return absl::NotFoundError(absl::StrCat("node '", ref.node_id, "' (", RoleName(ref.role),
                                            ") is not a member of job '", params_.id,
                                            "' (generation ", params_.generation,
                                            "); join the job first"));
  }
  if (it->second.incarnation != ref.incarnation) {
    return absl::AbortedError(absl::StrCat(
        "stale incarnation ", ref.incarnation, " of node '", ref.node_id, "' in job '",
        params_.id, "': the current registration is incarnation ", it->second.incarnation,
        "; this process must join again"));
  }
  // Members restored from a state dir written before credentials existed have none.
  if (!it->second.credential.empty() && !SecretEquals(it->second.credential.view(), ref.credential)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the member credential does not match node '", ref.node_id, "' (", RoleName(ref.role),
        ") of job '", params_.id, "': a process may act only as itself, with the credential "
        "its own registration returned"));
  }
  return &it->second;
}

Job::Member* Job::FindMember(Role role, absl::string_view node_id, uint64_t incarnation) {
  auto& members = members_[RoleIndex(role)];
  auto it = members.find(node_id);
  if (it == members.end() || it->second.incarnation != incarnation) return nullptr;
  return &it->second;
}

absl::Status Job::ResumeSession(const MemberRef& ref, uint64_t generation,
                                std::shared_ptr<MemberSession> session, Effects& fx) {
  absl::MutexLock l(&mu_);
  if (state_ == JobState::kFailed) {
    return absl::AbortedError(failure_reason_);
  }
  absl::StatusOr<Member*> found = FindMember(ref);
  if (!found.ok()) {
    // Somebody else's registration stays PermissionDenied; a registration that is gone or
    // replaced is Aborted (the client joins again).
    return absl::Status(found.status().code() == absl::StatusCode::kPermissionDenied
                            ? absl::StatusCode::kPermissionDenied
                            : absl::StatusCode::kAborted,
                        absl::StrCat("cannot resume: ", found.status().message()));
  }
  Member& m = **found;
  if (generation != 0 && generation != params_.generation) {
    return absl::AbortedError(absl::StrCat("cannot resume: generation ", generation,
                                           " of node '", ref.node_id, "' is stale; job '",
                                           params_.id, "' is at generation ", params_.generation,
                                           "; join again"));
  }
  if (m.state == MemberState::kDead) {
    return absl::AbortedError(absl::StrCat(
        "cannot resume: ", Describe(m), " was declared dead: ", m.reason,
        params_.recovery_enabled ? "; join again to take back the rank"
                                 : "; the job is degraded or failed"));
  }
  if (m.state == MemberState::kLeft) {
    return absl::AbortedError(
        absl::StrCat("cannot resume: node '", ref.node_id, "' already left job '", params_.id, "'"));
  }
  const bool was_suspect = m.state == MemberState::kSuspect;
  m.last_seen = clock_->Now();
  if (was_suspect) SetState(m, m.has_rank ? MemberState::kActive : MemberState::kWaiting);
  Attach(m, std::move(session), fx);
  if (m.has_rank) SendTopology(m, fx);
  if (was_suspect && !watches_.empty()) {
    Emit(JobEventType::kMemberResumed, &m, absl::StrCat(Describe(m), " resumed its session"), fx);
  }
  fx.Submit(store_);
  return absl::OkStatus();
}

void Job::SessionClosed(const MemberRef& ref, const MemberSession* session, Effects& fx) {
  absl::MutexLock l(&mu_);
  Member* m = FindMember(ref.role, ref.node_id, ref.incarnation);
  if (m == nullptr || !m->session.has_value() || m->session->session.get() != session) return;
  m->session.reset();
  if (m->state != MemberState::kWaiting && m->state != MemberState::kActive) return;
  SetState(*m, MemberState::kSuspect);
  ArmSuspect(*m, AddDuration(clock_->Now(), options_.disconnect_grace));
  if (!watches_.empty()) {
    Emit(JobEventType::kMemberSuspect, m,
         absl::StrCat(Describe(*m), " lost its session; declared ",
                      m->has_rank ? "dead" : "withdrawn", " unless it resumes within ",
                      FormatSeconds(options_.disconnect_grace)),
         fx);
  }
}

absl::Status Job::ReportError(const MemberRef& ref, const std::string& reason, Effects& fx) {
  absl::MutexLock l(&mu_);
  absl::StatusOr<Member*> found = FindMember(ref);
  if (!found.ok()) return found.status();
  Member& m = **found;
  if (state_ == JobState::kFailed || m.state == MemberState::kDead ||
      m.state == MemberState::kLeft) {
    return absl::OkStatus();  // already handled
  }
  if (state_ == JobState::kForming) {
    m.reason = absl::StrCat("reported an error: ", reason);
    if (options_.metrics != nullptr) {
      options_.metrics->OnMemberDead(DeathKind::kReportedError,
                                     ToDuration(clock_->Now() - m.last_seen));
    }
    Fail(absl::StrCat("job '", params_.id, "' failed while forming: ", Describe(m), " ",
                      m.reason),
         absl::StatusCode::kAborted, {DeadOf(m, clock_->Now())}, fx);
  } else {
    DeclareDead(m, DeathKind::kReportedError, absl::StrCat("reported an error: ", reason), fx);
  }
  fx.Submit(store_);
  return absl::OkStatus();
}

absl::StatusOr<HeartbeatResult> Job::Heartbeat(const MemberRef& ref) {
  absl::MutexLock l(&mu_);
  auto m = FindMember(ref);
  if (!m.ok()) return m.status();
  if (state_ == JobState::kFailed) {
    return absl::AbortedError(failure_reason_);
  }
  if ((*m)->state == MemberState::kDead) {
    return absl::AbortedError(
        absl::StrCat(Describe(**m), " was declared dead: ", (*m)->reason));
  }
  (*m)->last_seen = clock_->Now();
  if (options_.metrics != nullptr) options_.metrics->OnHeartbeat();
  return HeartbeatResult{state_, params_.generation};
}

absl::Status Job::TopologyDelivered(const MemberRef& ref) {
  absl::MutexLock l(&mu_);
  auto m = FindMember(ref);
  if (!m.ok()) return m.status();
  // Only a placed member that is still judged by liveness: dead, left or failed ones are past
  // it, and a waiting one has no topology to have been delivered.
  if ((*m)->state == MemberState::kActive || (*m)->state == MemberState::kSuspect) {
    (*m)->last_seen = std::max((*m)->last_seen, clock_->Now());
  }
  return absl::OkStatus();
}

absl::StatusOr<JobState> Job::Leave(const MemberRef& ref, Effects& fx) {
  absl::MutexLock l(&mu_);
  auto found = FindMember(ref);
  if (!found.ok()) return found.status();
  Member* m = *found;
  switch (state_) {
    case JobState::kForming:
      m->session.reset();  // the server ends the stream with OK after answering
      Withdraw(members_[RoleIndex(ref.role)].find(ref.node_id),
               absl::StrCat(RoleName(ref.role), " '", ref.node_id, "' left job '", params_.id,
                            "' before it was complete"),
               fx);
      fx.Submit(store_);
      return state_;
    case JobState::kComplete:
    case JobState::kDegraded: {
      if (m->state == MemberState::kLeft) return state_;
      if (m->state == MemberState::kDead) {
        return absl::AbortedError(
            absl::StrCat(Describe(*m), " was declared dead: ", m->reason));
      }
      SetState(*m, MemberState::kLeft);
      m->last_seen = clock_->Now();
      m->session.reset();  // the server ends the stream itself after answering
      ++left_[RoleIndex(ref.role)];
      PersistMember(*m, fx);
      if (!watches_.empty()) {
        Emit(JobEventType::kMemberLeft, m, absl::StrCat(Describe(*m), " left"), fx);
      }
      const uint32_t total = params_.worker_num + params_.server_num;
      if (left_[0] + left_[1] == total) {
        state_ = JobState::kFinished;
        const absl::Status over = absl::FailedPreconditionError(absl::StrCat(
            "job '", params_.id, "' finished: every member left"));
        kv_->Fail(over, fx);
        FailBarriers(over, fx);
        PersistJob(fx);
        Emit(JobEventType::kJobFinished, nullptr, "every member left", fx);
      } else if (left_[0] + left_[1] + dead_ == total) {
        // Recovery mode: nobody is left to wait for the dead to come back.
        Fail(absl::StrCat("job '", params_.id, "' ended degraded: every member left except ",
                          dead_, " dead"),
             absl::StatusCode::kAborted, {}, fx);
      }
      fx.Submit(store_);
      return state_;
    }
    case JobState::kFinished:
    case JobState::kFailed:
      return state_;
  }
  return state_;
}

// --- timers -----------------------------------------------------------------------------------

absl::Status Job::Abort(const std::string& reason, Effects& fx) {
  absl::MutexLock l(&mu_);
  if (state_ == JobState::kFailed || state_ == JobState::kFinished) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job '", params_.id, "' already ended (", JobStateName(state_),
        failure_reason_.empty() ? "" : ": ", failure_reason_, "); nothing to abort"));
  }
  Fail(absl::StrCat("job '", params_.id, "' was aborted by an operator: ", reason),
       absl::StatusCode::kAborted, {}, fx);
  fx.Submit(store_);
  return absl::OkStatus();
}

bool Job::OnTopologyTimeout(Effects& fx) {
  absl::MutexLock l(&mu_);
  if (state_ != JobState::kForming || clock_->Now() < topo_deadline_) return false;
  Fail(absl::StrCat("Topology build timed out: job '", params_.id, "' was not complete after ",
                    FormatSeconds(absl::Milliseconds(params_.topo_timeout_ms)),
                    " (MS_TOPO_TIMEOUT): ", MissingDescription(),
                    ". Check that the missing processes were started and can reach the "
                    "scheduler, or raise MS_TOPO_TIMEOUT"),
       absl::StatusCode::kDeadlineExceeded, {}, fx);
  fx.Submit(store_);
  return true;
}

bool Job::OnMemberDeadline(const Deadline& d, Effects& fx) {
  absl::MutexLock l(&mu_);
  if (state_ == JobState::kFailed || state_ == JobState::kFinished) return false;
  Member* m = FindMember(d.role, d.node_id, d.incarnation);
  if (m == nullptr) return false;
  const MonoTime now = clock_->Now();
  if (d.kind == DeadlineKind::kMemberSuspect) {
    if (m->state != MemberState::kSuspect || m->session.has_value()) return false;
    if (!m->has_rank) {
      Withdraw(members_[RoleIndex(d.role)].find(d.node_id),
               absl::StrCat(Describe(*m), " lost its session and did not resume within ",
                            FormatSeconds(options_.disconnect_grace), "; withdrawn"),
               fx);
      fx.Submit(store_);
      return false;
    }
    DeclareDead(*m, DeathKind::kDisconnected,
                absl::StrCat("connection lost and not resumed within ",
                             FormatSeconds(options_.disconnect_grace)),
                fx);
  } else {  // kMemberLiveness
    if (m->state != MemberState::kActive && m->state != MemberState::kSuspect) return false;
    if (m->heartbeat_disabled) {
      // No heartbeats by choice: a connected session is the proof of life; a unary member
      // without a session cannot be judged by silence at all.
      if (m->session.has_value() || m->state == MemberState::kActive) m->last_seen = now;
    }
    const MonoTime due = AddDuration(m->last_seen, absl::Milliseconds(params_.node_timeout_ms));
    if (now < due) {
      ArmLiveness(*m, due);  // heard from since: check again later
      return false;
    }
    DeclareDead(*m, DeathKind::kHeartbeatTimeout,
                absl::StrCat("no heartbeat for ", FormatSeconds(ToDuration(now - m->last_seen)),
                             " (MS_NODE_TIMEOUT=",
                             FormatSeconds(absl::Milliseconds(params_.node_timeout_ms)), ")"),
                fx);
  }
  fx.Submit(store_);
  return state_ == JobState::kFailed;
}

std::string Job::MissingDescription() {
  std::vector<std::string> parts;
  for (int ri = 0; ri < kNumRoles; ++ri) {
    const Role role = static_cast<Role>(ri);
    const uint32_t expected = role == Role::kWorker ? params_.worker_num : params_.server_num;
    const uint32_t joined = static_cast<uint32_t>(members_[ri].size());
    if (expected == 0) continue;
    std::string part = absl::StrCat(RoleName(role), " ", joined, " of ", expected, " joined");
    if (joined < expected) {
      if (non_numeric_[ri] == 0) {
        std::vector<uint32_t> missing;
        for (uint32_t r = 0; r < expected && missing.size() <= kMaxListedInMessage; ++r) {
          if (!pinned_[ri].contains(r)) missing.push_back(r);
        }
        absl::StrAppend(&part, ", missing ranks ",
                        ListCapped(missing, kMaxListedInMessage, expected - joined));
      } else {
        absl::StrAppend(&part, ", ", expected - joined,
                        " missing (node ids are not numeric, so missing ranks cannot be named)");
      }
    }
    parts.push_back(std::move(part));
  }
  std::vector<std::pair<std::string, uint32_t>> hosts(hosts_.begin(), hosts_.end());
  std::sort(hosts.begin(), hosts.end());
  std::vector<std::string> host_strs;
  for (size_t i = 0; i < hosts.size() && i < kMaxListedInMessage; ++i) {
    host_strs.push_back(absl::StrCat(hosts[i].first, " (", hosts[i].second, ")"));
  }
  if (hosts.size() > kMaxListedInMessage) {
    host_strs.push_back(absl::StrCat("and ", hosts.size() - kMaxListedInMessage, " more"));
  }
  return absl::StrCat(absl::StrJoin(parts, "; "), "; hosts seen: ",
                      hosts.empty() ? "none" : absl::StrJoin(host_strs, ", "));
}

// --- restore ----------------------------------------------------------------------------------

void Job::RestoreMember(const MemberRecord& r) {
  absl::MutexLock l(&mu_);
  const int ri = RoleIndex(r.role);
  auto it = members_[ri].try_emplace(r.node_id).first;
  Member& m = it->second;
  m.node_id = it->first.view();
  m.host = hosts_.Acquire(r.host);
  m.host_name = host_names_.Acquire(r.host_name);
  m.device_id = r.device_id;
  m.device_ip = r.device_ip;
  m.role = r.role;
  m.state = r.state;
  m.reason = r.reason;
  m.incarnation = r.incarnation;
  m.credential = r.credential;
  m.joined_at = m.last_seen = clock_->Now();
  m.pinned_rank = NumericNodeId(r.node_id);
  if (m.pinned_rank.has_value()) {
    pinned_[ri].emplace(*m.pinned_rank, r.node_id);
  } else {
    ++non_numeric_[ri];
  }
  if (r.rank.has_value()) {
    m.has_rank = true;
    m.placement.rank = *r.rank;
    m.placement.local_rank = r.local_rank;
    m.placement.local_world_size = r.local_world_size;
    m.placement.node_rank = r.node_rank;
    m.placement.num_nodes = r.num_nodes;
  }
  if (m.state == MemberState::kLeft) ++left_[ri];
  if (m.state == MemberState::kDead) ++dead_;
}

void Job::FinishRestore(JobState state, const std::string& failure_reason) {
  absl::MutexLock l(&mu_);
  state_ = state;
  failure_reason_ = failure_reason;
  const MonoTime now = clock_->Now();
  if (state_ == JobState::kForming) {
    if (topo_deadline_ != MonoTime::max()) {
      deadlines_->Push(Deadline{topo_deadline_, DeadlineKind::kTopologyTimeout, id_ref_,
                                params_.uid});
    }
  }
  // Restart grace: one node timeout to reconnect before liveness is judged (forming members:
  // before they are withdrawn).
  const absl::Duration grace = params_.node_timeout_ms < 0
                                   ? absl::InfiniteDuration()
                                   : absl::Milliseconds(params_.node_timeout_ms);
  for (int ri = 0; ri < kNumRoles; ++ri) {
    const uint32_t expected = ri == 0 ? params_.worker_num : params_.server_num;
    if (state_ != JobState::kForming) by_rank_[ri].assign(expected, nullptr);
    for (auto& [id, m] : members_[ri]) {
      if (state_ != JobState::kForming && m.has_rank && m.placement.rank < expected) {
        by_rank_[ri][m.placement.rank] = &m;
      }
      if (state_ == JobState::kFailed || state_ == JobState::kFinished) continue;
      if (m.state == MemberState::kWaiting && grace != absl::InfiniteDuration()) {
        m.state = MemberState::kSuspect;  // must resume to keep its registration
        ArmSuspect(m, AddDuration(now, grace));
      } else if (m.state == MemberState::kActive) {
        ArmLiveness(m, AddDuration(now, grace));
      }
    }
  }
  // Restored members were placed without SetState: count them once, now.
  for (auto& c : member_counts_) c = 0;
  for (auto& members : members_) {
    for (auto& [id, m] : members) ++member_counts_[static_cast<int>(m.state)];
  }
}


// --- key/value store and barriers -------------------------------------------------------------

absl::StatusOr<JobKv*> Job::KvFor(const MemberRef& ref) {
  absl::MutexLock l(&mu_);
  if (state_ == JobState::kFailed) return absl::AbortedError(failure_reason_);
  absl::StatusOr<Member*> m = FindMember(ref);
  if (!m.ok()) return m.status();
  if ((*m)->state == MemberState::kDead || (*m)->state == MemberState::kLeft) {
    return absl::AbortedError(absl::StrCat(Describe(**m), " is ", MemberStateName((*m)->state),
                                           ": it cannot use the job's store any more"));
  }
  return kv_.get();
}

uint64_t Job::Barrier(const MemberRef& ref, const std::string& name, absl::Duration timeout,
                      const std::vector<uint32_t>& ranks, StatusCallback done, Effects& fx) {
  absl::MutexLock l(&mu_);
  auto reject = [&](absl::Status st) {
    fx.Add([done = std::move(done), st]() mutable { done(st); });
    return uint64_t{0};
  };
  if (state_ == JobState::kFailed) return reject(absl::AbortedError(failure_reason_));
  absl::StatusOr<Member*> found = FindMember(ref);
  if (!found.ok()) return reject(found.status());
  Member& m = **found;
  if (m.state == MemberState::kDead || m.state == MemberState::kLeft) {
    return reject(absl::AbortedError(absl::StrCat(Describe(m), " is ", MemberStateName(m.state),
                                                  ": it cannot take part in barriers")));
  }
  if (!m.has_rank) {
    return reject(absl::FailedPreconditionError(absl::StrCat(
        "barrier '", name, "' before job '", params_.id, "' is complete: join first")));
  }
  if (name.empty() || name.size() > 256) {
    return reject(absl::InvalidArgumentError("barrier name must be 1..256 characters"));
  }
  if (timeout <= absl::ZeroDuration()) {
    return reject(absl::InvalidArgumentError(absl::StrCat(
        "barrier '", name, "': timeout ", absl::FormatDuration(timeout), " must be > 0")));
  }
  const uint32_t world = m.role == Role::kWorker ? params_.worker_num : params_.server_num;
  std::vector<uint32_t> participants = ranks;
  if (participants.empty()) {
    for (uint32_t r = 0; r < world; ++r) participants.push_back(r);
  }
  std::sort(participants.begin(), participants.end());
  participants.erase(std::unique(participants.begin(), participants.end()), participants.end());
  if (participants.back() >= world) {
    return reject(absl::InvalidArgumentError(
        absl::StrCat("barrier '", name, "': rank ", participants.back(), " is out of range 0..",
                     world - 1, " for ", RoleName(m.role))));
  }
  const uint32_t rank = m.placement.rank;
  if (!std::binary_search(participants.begin(), participants.end(), rank)) {
    return reject(absl::InvalidArgumentError(absl::StrCat(
        "barrier '", name, "': ", Describe(m), " is not one of its participants")));
  }
  auto late = late_barriers_.find(name);
  if (late != late_barriers_.end() && late->second.role == m.role &&
      late->second.ranks.erase(rank) > 0) {
    // A late arrival at an instance that timed out gets that instance's error, once.
    absl::Status failure = late->second.failure;
    if (late->second.ranks.empty()) late_barriers_.erase(late);
    return reject(failure);
  }
  auto it = barriers_.find(name);
  if (it == barriers_.end()) {
    BarrierState b;
    b.instance = next_barrier_instance_++;
    b.role = m.role;
    b.participants = participants;
    b.timeout = timeout;
    it = barriers_.emplace(name, std::move(b)).first;
    Deadline d{AddDuration(clock_->Now(), timeout), DeadlineKind::kBarrier, id_ref_,
               params_.uid, m.role, name, it->second.instance};
    deadlines_->Push(std::move(d));
  }
  BarrierState& b = it->second;
  if (b.role != m.role || b.participants != participants) {
    return reject(absl::FailedPreconditionError(absl::StrCat(
        "barrier '", name, "': ", Describe(m), " names ", participants.size(),
        " participants, the barrier's first arrival named ", b.participants.size(),
        " (", RoleName(b.role), "); every participant must name the same ranks")));
  }
  if (b.arrived.contains(rank)) {
    return reject(absl::FailedPreconditionError(
        absl::StrCat("barrier '", name, "': ", Describe(m), " is already waiting at it")));
  }
  const uint64_t id = NextWaiterId();
  b.arrived.emplace(rank, id);
  b.waiters.emplace(id, std::move(done));
  barrier_waiters_.emplace(id, name);
  if (b.arrived.size() == b.participants.size()) {
    for (auto& [wid, cb] : b.waiters) {
      barrier_waiters_.erase(wid);
      fx.Add([cb = std::move(cb)]() mutable { cb(absl::OkStatus()); });
    }
    barriers_.erase(it);  // complete: the name may be reused at once
    return 0;
  }
  return id;
}

void Job::CancelBarrierWaiter(uint64_t waiter_id, Effects& fx) {
  absl::MutexLock l(&mu_);
  auto w = barrier_waiters_.find(waiter_id);
  if (w == barrier_waiters_.end()) return;
  auto it = barriers_.find(w->second);
  barrier_waiters_.erase(w);
  if (it == barriers_.end()) return;
  BarrierState& b = it->second;
  auto cb = b.waiters.find(waiter_id);
  if (cb == b.waiters.end()) return;
  fx.Add([done = std::move(cb->second)]() mutable {
    done(absl::CancelledError("the barrier call was cancelled by its caller"));
  });
  b.waiters.erase(cb);
  for (auto a = b.arrived.begin(); a != b.arrived.end(); ++a) {
    if (a->second == waiter_id) {
      b.arrived.erase(a);  // it left the barrier: the others keep waiting for it
      break;
    }
  }
  if (b.arrived.empty()) barriers_.erase(it);
}

void Job::OnBarrierDeadline(const Deadline& d, Effects& fx) {
  absl::MutexLock l(&mu_);
  auto it = barriers_.find(d.node_id);
  if (it == barriers_.end() || it->second.instance != d.incarnation) return;
  BarrierState& b = it->second;
  const MonoTime now = clock_->Now();
  std::vector<std::string> missing;
  size_t total = 0;
  LateBarrier late;
  late.role = b.role;
  for (uint32_t r : b.participants) {
    if (b.arrived.contains(r)) continue;
    late.ranks.emplace(r, true);
    if (++total > kMaxListedInMessage) continue;
    const Member* m = r < by_rank_[static_cast<int>(b.role)].size()
                          ? by_rank_[static_cast<int>(b.role)][r]
                          : nullptr;
    missing.push_back(m == nullptr
                          ? absl::StrCat("rank ", r)
                          : absl::StrCat("rank ", r, " (node '", m->node_id, "', host ", *m->host,
                                         ", last seen ",
                                         FormatSeconds(ToDuration(now - m->last_seen)), " ago)"));
  }
  late.failure = absl::DeadlineExceededError(absl::StrCat(
      "barrier '", d.node_id.view(), "' of job '", params_.id, "' timed out after ",
      FormatSeconds(b.timeout), ": ", b.arrived.size(), " of ", b.participants.size(), " ",
      RoleName(b.role), " participants arrived; missing ", absl::StrJoin(missing, ", "),
      total > missing.size() ? absl::StrCat(" and ", total - missing.size(), " more") : ""));
  for (auto& [wid, cb] : b.waiters) {
    barrier_waiters_.erase(wid);
    fx.Add([cb = std::move(cb), st = late.failure]() mutable { cb(st); });
  }
  barriers_.erase(it);  // the name may start a new round at once
  if (!late.ranks.empty()) late_barriers_[d.node_id.str()] = std::move(late);
}

void Job::FailBarriers(const absl::Status& status, Effects& fx) {
  for (auto& [name, b] : barriers_) {
    for (auto& [wid, cb] : b.waiters) {
      fx.Add([cb = std::move(cb), status]() mutable { cb(status); });
    }
  }
  barriers_.clear();
  barrier_waiters_.clear();
  late_barriers_.clear();
}

// --- shutdown, views, watches -----------------------------------------------------------------

void Job::Shutdown(const absl::Status& status, Effects& fx) {
  absl::MutexLock l(&mu_);
  for (auto& members : members_) {
    for (auto& [id, m] : members) {
      EndSession(m, status, fx);
      if (m.waiter_id == 0) continue;
      m.waiter_id = 0;
      fx.Add([done = std::move(m.done), status]() mutable { done(status); });
      m.done = nullptr;
    }
  }
  waiters_.clear();
  kv_->Fail(status, fx);
  FailBarriers(status, fx);
  for (auto& [id, w] : watches_) {
    fx.Add([w = w.watcher, status] { w->OnEnd(status); });
  }
  watches_.clear();
}

void Job::EndWatches(const absl::Status& status, Effects& fx) {
  absl::MutexLock l(&mu_);
  const uint64_t seq = ++seq_;
  for (auto& [id, w] : watches_) {
    fx.Add([link = w, status, seq] {
      link.order->Deliver(seq, [watcher = link.watcher, status] { watcher->OnEnd(status); });
    });
  }
  watches_.clear();
}

bool Job::IsEnded() {
  absl::MutexLock l(&mu_);
  return state_ == JobState::kFinished || state_ == JobState::kFailed;
}

JobState Job::state() {
  absl::MutexLock l(&mu_);
  return state_;
}

void Job::AddMemberCounts(uint64_t counts[kNumMemberStates]) {
  absl::MutexLock l(&mu_);
  for (int i = 0; i < kNumMemberStates; ++i) counts[i] += member_counts_[i];
}

Topology Job::TopologyOf(const Member& m) const {
  Topology t;
  t.job_id = params_.id;
  t.role = m.role;
  t.node_id = std::string(m.node_id);
  t.rank = m.placement.rank;
  t.world_size = m.role == Role::kWorker ? params_.worker_num : params_.server_num;
  t.local_rank = m.placement.local_rank;
  t.local_world_size = m.placement.local_world_size;
  t.node_rank = m.placement.node_rank;
  t.num_nodes = m.placement.num_nodes;
  t.host = *m.host;
  t.generation = params_.generation;
  t.incarnation = m.incarnation;
  t.worker_num = params_.worker_num;
  t.server_num = params_.server_num;
  t.credential = m.credential.str();
  return t;
}

MemberInfo Job::InfoOf(const Member& m, MonoTime now) const {
  MemberInfo info;
  info.node_id = std::string(m.node_id);
  info.role = m.role;
  if (m.has_rank) {
    info.rank = m.placement.rank;
    info.local_rank = m.placement.local_rank;
    info.node_rank = m.placement.node_rank;
  }
  info.host = *m.host;
  info.host_name = *m.host_name;
  info.device_id = m.device_id;
  info.state = m.state;
  info.last_seen_age = ToDuration(now - m.last_seen);
  info.incarnation = m.incarnation;
  info.reason = m.reason;
  info.connected = m.session.has_value();
  info.device_ip = m.device_ip;
  return info;
}

JobSummary Job::SummaryLocked(bool detailed) {
  const MonoTime now = clock_->Now();
  JobSummary s;
  s.job_id = params_.id;
  s.state = state_;
  s.generation = params_.generation;
  s.topo_timeout_ms = params_.topo_timeout_ms;
  s.node_timeout_ms = params_.node_timeout_ms;
  s.recovery_enabled = params_.recovery_enabled;
  s.age = ToDuration(now - created_at_);
  if (state_ == JobState::kForming && topo_deadline_ != MonoTime::max()) {
    s.topo_deadline_in = std::max(absl::ZeroDuration(), ToDuration(topo_deadline_ - now));
  }
  s.failure_reason = failure_reason_;
  for (int ri = 0; ri < kNumRoles; ++ri) {
    const Role role = static_cast<Role>(ri);
    if (role == Role::kPServer && params_.server_num == 0) continue;
    RoleSummary rs;
    rs.role = role;
    rs.expected = role == Role::kWorker ? params_.worker_num : params_.server_num;
    rs.joined = static_cast<uint32_t>(members_[ri].size());
    rs.left = left_[ri];
    if (state_ == JobState::kForming) {
      rs.waiting = rs.joined;
    } else if (state_ != JobState::kFailed) {
      rs.active = rs.joined - rs.left;
    }
    if (detailed && state_ == JobState::kForming && non_numeric_[ri] == 0) {
      for (uint32_t r = 0; r < rs.expected; ++r) {
        if (pinned_[ri].contains(r)) continue;
        if (rs.missing_ranks.size() == JobRegistry::kMaxMissingRanksListed) {
          rs.missing_ranks_truncated = true;
          break;
        }
        rs.missing_ranks.push_back(r);
      }
    }
    s.roles.push_back(std::move(rs));
  }
  s.dead = dead_;
  if (detailed) {
    for (auto& members : members_) {
      for (auto& [id, m] : members) s.suspect += m.state == MemberState::kSuspect;
    }
    for (auto& rs : s.roles) {
      if (state_ != JobState::kForming && state_ != JobState::kFailed) {
        // Active excludes the dead and the suspect of this role.
        uint32_t not_alive = 0;
        for (auto& [id, m] : members_[RoleIndex(rs.role)]) {
          not_alive += m.state == MemberState::kDead || m.state == MemberState::kSuspect;
        }
        rs.active -= std::min(rs.active, not_alive);
      }
    }
  }
  s.hosts_total = static_cast<uint32_t>(hosts_.size());
  if (detailed) {
    std::vector<std::pair<std::string, uint32_t>> hosts(hosts_.begin(),
                                                        hosts_.end());
    std::sort(hosts.begin(), hosts.end(), [](const auto& a, const auto& b) {
      return HostKey(a.first) < HostKey(b.first);
    });
    for (size_t i = 0; i < hosts.size() && i < JobRegistry::kMaxHostsListed; ++i) {
      s.hosts.push_back(HostSummary{hosts[i].first, hosts[i].second});
    }
  }
  return s;
}

JobSummary Job::Summary() {
  absl::MutexLock l(&mu_);
  return SummaryLocked(/*detailed=*/true);
}

MemberPage Job::ListMembers(uint64_t offset, size_t limit) {
  absl::MutexLock l(&mu_);
  const MonoTime now = clock_->Now();
  MemberPage page;
  page.total = static_cast<uint32_t>(members_[0].size() + members_[1].size());
  std::vector<const Member*> order;
  order.reserve(page.total);
  for (int ri = 0; ri < kNumRoles; ++ri) {
    if (state_ != JobState::kForming && !by_rank_[ri].empty()) {
      for (const Member* m : by_rank_[ri]) {
        if (m != nullptr) order.push_back(m);
      }
    } else {
      std::vector<const Member*> role_members;
      role_members.reserve(members_[ri].size());
      for (const auto& [id, m] : members_[ri]) role_members.push_back(&m);
      std::sort(role_members.begin(), role_members.end(),
                [](const Member* a, const Member* b) { return a->node_id < b->node_id; });
      order.insert(order.end(), role_members.begin(), role_members.end());
    }
  }
  for (uint64_t i = offset; i < order.size() && page.members.size() < limit; ++i) {
    page.members.push_back(InfoOf(*order[i], now));
  }
  const uint64_t end = offset + page.members.size();
  page.next_offset = end < order.size() ? end : 0;
  return page;
}

std::shared_ptr<const JobEvent> Job::Emit(JobEventType type, const Member* member,
                                          std::string message, Effects& fx,
                                          std::vector<DeadMember> dead, bool force) {
  const uint64_t seq = ++seq_;
  if (watches_.empty() && !force) return nullptr;
  auto ev = std::make_shared<JobEvent>();
  ev->seq = seq;
  ev->type = type;
  ev->job = SummaryLocked(/*detailed=*/false);
  if (member != nullptr) ev->member = InfoOf(*member, clock_->Now());
  ev->message = std::move(message);
  ev->wall_time = clock_->WallNow();
  ev->dead = std::move(dead);
  std::shared_ptr<const JobEvent> shared = std::move(ev);
  for (auto& [id, w] : watches_) {
    fx.Add([link = w, shared] {
      if (!link.order->Deliver(shared->seq,
                               [watcher = link.watcher, shared] { watcher->OnEvent(*shared); })) {
        link.watcher->OnEnd(absl::ResourceExhaustedError("watcher fell too far behind"));
      }
    });
  }
  return shared;
}

uint64_t Job::Watch(std::shared_ptr<JobWatcher> watcher, Effects& fx) {
  absl::MutexLock l(&mu_);
  const uint64_t id = next_watch_id_++;
  WatchLink link{std::move(watcher),
                 std::make_shared<OrderedDelivery>(seq_, options_.max_watch_backlog)};
  watches_.emplace(id, link);
  auto snap = std::make_shared<JobEvent>();
  snap->seq = seq_;
  snap->type = JobEventType::kSnapshot;
  snap->job = SummaryLocked(/*detailed=*/true);
  snap->message = absl::StrCat("job '", params_.id, "' is ", JobStateName(state_));
  snap->wall_time = clock_->WallNow();
  fx.Add([link, snap = std::shared_ptr<const JobEvent>(std::move(snap))] {
    link.order->Deliver(snap->seq, [watcher = link.watcher, snap] { watcher->OnEvent(*snap); });
  });
  return id;
}

void Job::Unwatch(uint64_t watch_id) {
  absl::MutexLock l(&mu_);
  watches_.erase(watch_id);
}

}  // namespace ms_rendezvous::core
