#include "core/job.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/messages.h"
#include "store/state_store.h"

namespace ms_rendezvous::core {
namespace {

constexpr size_t kMaxListedInMessage = 20;

int RoleIndex(Role role) { return static_cast<int>(role); }

std::string FormatSeconds(absl::Duration d) {
  return absl::StrCat(absl::Trunc(d, absl::Milliseconds(100)) / absl::Seconds(1), "s");
}

}  // namespace

// Per-watcher ordering: events are collected under the job lock but delivered after it is
// released, possibly by several threads at once. Each watch keeps the next seq it expects and a
// small reorder buffer, so OnEvent runs in seq order and never concurrently for one watcher.
class Job::WatchState {
 public:
  WatchState(std::shared_ptr<JobWatcher> watcher, uint64_t first_seq, size_t max_backlog)
      : watcher_(std::move(watcher)), next_(first_seq), max_backlog_(max_backlog) {}

  void Deliver(std::shared_ptr<const JobEvent> event) {
    absl::MutexLock l(&mu_);
    if (ended_) return;
    pending_.emplace(event->seq, std::move(event));
    if (pending_.size() > max_backlog_) {
      EndLocked(absl::ResourceExhaustedError(absl::StrCat(
          "watch fell more than ", max_backlog_, " events behind; watch again")));
      return;
    }
    while (!pending_.empty() && pending_.begin()->first == next_) {
      auto ev = std::move(pending_.begin()->second);
      pending_.erase(pending_.begin());
      ++next_;
      watcher_->OnEvent(*ev);
    }
  }

  void End(const absl::Status& status) {
    absl::MutexLock l(&mu_);
    EndLocked(status);
  }
  void Detach() {
    absl::MutexLock l(&mu_);
    ended_ = true;
  }

 private:
  void EndLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ended_) return;
    ended_ = true;
    pending_.clear();
    watcher_->OnEnd(status);
  }

  const std::shared_ptr<JobWatcher> watcher_;
  absl::Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_);
  const size_t max_backlog_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::btree_map<uint64_t, std::shared_ptr<const JobEvent>> pending_ ABSL_GUARDED_BY(mu_);
};

Job::Job(Params params, Clock* clock, const RegistryOptions& options, StateStore* store)
    : params_(std::move(params)),
      clock_(clock),
      options_(options),
      store_(store),
      created_at_(clock->Now()),
      topo_deadline_(params_.topo_timeout_ms < 0
                         ? MonoTime::max()
                         : AddDuration(created_at_, absl::Milliseconds(params_.topo_timeout_ms))) {
  if (store_ != nullptr) {
    store_->PutJob(JobRecord{params_.id, params_.generation, params_.worker_num,
                             params_.server_num, params_.topo_timeout_ms, JobState::kForming, ""})
        .IgnoreError();
  }
}

Job::~Job() = default;

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
  const uint32_t expected = Expected(role);
  const auto& members = members_[RoleIndex(role)];
  auto existing = members.find(spec.node_id);
  if (existing != members.end()) {
    const Member& m = existing->second;
    return absl::AlreadyExistsError(absl::StrCat(
        "Repeated registration node: node id '", spec.node_id, "' (", RoleName(role),
        ") is already registered in job '", params_.id, "' from host ", m.host, " (",
        MemberStateName(m.state), ", joined ",
        FormatSeconds(ToDuration(clock_->Now() - m.joined_at)),
        " ago); give every process a unique MS_NODE_ID, or stop the stale process"));
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
        "node '", spec.node_id, "' is extra: job '", params_.id, "' already has all ",
        expected, " ", RoleName(role), " members (", JobStateName(state_),
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

Job::JoinOutcome Job::Join(const MemberSpec& spec, uint64_t incarnation, uint64_t waiter_id,
                           JoinCallback& done, Effects& fx) {
  absl::MutexLock l(&mu_);
  if (state_ == JobState::kFinished || state_ == JobState::kFailed) {
    return JoinOutcome::kJobEnded;
  }
  absl::Status st = Validate(spec);
  if (!st.ok()) {
    fx.Add([done = std::move(done), st]() mutable { done(st); });
    return JoinOutcome::kDone;
  }
  const int ri = RoleIndex(spec.role);
  auto [it, inserted] = members_[ri].try_emplace(spec.node_id);
  Member& m = it->second;
  m.node_id = spec.node_id;
  m.host = spec.host;
  m.host_key = HostKey(spec.host);
  m.host_name = spec.host_name;
  m.device_id = spec.device_id;
  m.role = spec.role;
  m.incarnation = incarnation;
  m.joined_at = m.last_seen = clock_->Now();
  m.pinned_rank = NumericNodeId(spec.node_id);
  if (m.pinned_rank.has_value()) {
    pinned_[ri].emplace(*m.pinned_rank, spec.node_id);
  } else {
    ++non_numeric_[ri];
  }
  ++host_counts_[m.host];
  m.waiter_id = waiter_id;
  m.done = std::move(done);
  waiters_.emplace(waiter_id, std::make_pair(spec.role, spec.node_id));
  if (store_ != nullptr) {
    store_->PutMember(MemberRecord{params_.id, m.role, m.node_id, m.host, m.host_name,
                                   m.device_id, m.incarnation, m.state, std::nullopt})
        .IgnoreError();
  }
  if (!watches_.empty()) {
    Emit(JobEventType::kMemberJoined, &m,
         absl::StrCat(RoleName(m.role), " '", m.node_id, "' joined from ", m.host), fx);
  }
  if (members_[0].size() == params_.worker_num && members_[1].size() == params_.server_num) {
    Complete(fx);
  }
  return JoinOutcome::kParked;
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
    for (auto& [id, m] : members) {
      inputs.push_back(RankInput{m.node_id, m.host_key, m.device_id, m.pinned_rank});
      order.push_back(&m);
    }
    std::vector<RankOutput> out = AssignRanks(inputs);
    by_rank_[ri].assign(order.size(), nullptr);
    for (size_t i = 0; i < order.size(); ++i) {
      Member* m = order[i];
      m->placement = out[i];
      m->has_rank = true;
      m->state = MemberState::kActive;
      m->last_seen = now;
      by_rank_[ri][out[i].rank] = m;
    }
    total += order.size();
  }
  waiters_.clear();
  fx.Reserve(total + 1);
  for (int ri = 0; ri < kNumRoles; ++ri) {
    for (Member* m : by_rank_[ri]) {
      if (store_ != nullptr) {
        store_->PutMember(MemberRecord{params_.id, m->role, m->node_id, m->host, m->host_name,
                                       m->device_id, m->incarnation, m->state,
                                       m->placement.rank})
            .IgnoreError();
      }
      if (m->waiter_id == 0) continue;
      m->waiter_id = 0;
      fx.Add([done = std::move(m->done), topo = TopologyOf(*m)]() mutable {
        done(std::move(topo));
      });
      m->done = nullptr;
    }
  }
  if (store_ != nullptr) {
    store_->PutJob(JobRecord{params_.id, params_.generation, params_.worker_num,
                             params_.server_num, params_.topo_timeout_ms, state_, ""})
        .IgnoreError();
  }
  Emit(JobEventType::kJobComplete, nullptr,
       absl::StrCat("all ", params_.worker_num, " workers and ", params_.server_num,
                    " servers joined in ", FormatSeconds(ToDuration(now - created_at_))),
       fx);
}

void Job::Fail(const std::string& reason, absl::StatusCode waiter_code, Effects& fx) {
  state_ = JobState::kFailed;
  failure_reason_ = reason;
  const absl::Status st(waiter_code, reason);
  for (auto& members : members_) {
    for (auto& [id, m] : members) {
      m.state = MemberState::kFailed;
      if (m.waiter_id != 0) {
        m.waiter_id = 0;
        fx.Add([done = std::move(m.done), st]() mutable { done(st); });
        m.done = nullptr;
      }
    }
  }
  waiters_.clear();
  if (store_ != nullptr) {
    store_->PutJob(JobRecord{params_.id, params_.generation, params_.worker_num,
                             params_.server_num, params_.topo_timeout_ms, state_, reason})
        .IgnoreError();
  }
  Emit(JobEventType::kJobFailed, nullptr, reason, fx);
}

void Job::Withdraw(MemberMap::iterator it, const std::string& why, Effects& fx) {
  Member& m = it->second;
  const int ri = RoleIndex(m.role);
  if (m.pinned_rank.has_value()) {
    pinned_[ri].erase(*m.pinned_rank);
  } else {
    --non_numeric_[ri];
  }
  auto hc = host_counts_.find(m.host);
  if (hc != host_counts_.end() && --hc->second == 0) host_counts_.erase(hc);
  if (m.waiter_id != 0) {
    waiters_.erase(m.waiter_id);
    fx.Add([done = std::move(m.done), why]() mutable { done(absl::CancelledError(why)); });
  }
  if (store_ != nullptr) store_->DeleteMember(params_.id, m.role, m.node_id).IgnoreError();
  if (!watches_.empty()) Emit(JobEventType::kMemberWithdrawn, &m, why, fx);
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
           absl::StrCat(RoleName(role), " '", node_id,
                        "' withdrew before job '", params_.id,
                        "' was complete (its Join call was cancelled or its connection closed)"),
           fx);
}

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
  return &it->second;
}

absl::StatusOr<HeartbeatResult> Job::Heartbeat(const MemberRef& ref) {
  absl::MutexLock l(&mu_);
  auto m = FindMember(ref);
  if (!m.ok()) return m.status();
  if (state_ == JobState::kFailed) {
    return absl::AbortedError(
        absl::StrCat("job '", params_.id, "' failed: ", failure_reason_));
  }
  (*m)->last_seen = clock_->Now();
  return HeartbeatResult{state_, params_.generation};
}

absl::StatusOr<JobState> Job::Leave(const MemberRef& ref, Effects& fx) {
  absl::MutexLock l(&mu_);
  auto found = FindMember(ref);
  if (!found.ok()) return found.status();
  Member* m = *found;
  switch (state_) {
    case JobState::kForming:
      Withdraw(members_[RoleIndex(ref.role)].find(ref.node_id),
               absl::StrCat(RoleName(ref.role), " '", ref.node_id, "' left job '", params_.id,
                            "' before it was complete"),
               fx);
      return state_;
    case JobState::kComplete:
      if (m->state == MemberState::kLeft) return state_;
      m->state = MemberState::kLeft;
      m->last_seen = clock_->Now();
      ++left_[RoleIndex(ref.role)];
      if (store_ != nullptr) {
        store_->PutMember(MemberRecord{params_.id, m->role, m->node_id, m->host, m->host_name,
                                       m->device_id, m->incarnation, m->state,
                                       m->placement.rank})
            .IgnoreError();
      }
      if (!watches_.empty()) {
        Emit(JobEventType::kMemberLeft, m,
             absl::StrCat(RoleName(m->role), " rank ", m->placement.rank, " ('", m->node_id,
                          "') left"),
             fx);
      }
      if (left_[0] == params_.worker_num && left_[1] == params_.server_num) {
        state_ = JobState::kFinished;
        if (store_ != nullptr) {
          store_->PutJob(JobRecord{params_.id, params_.generation, params_.worker_num,
                                   params_.server_num, params_.topo_timeout_ms, state_, ""})
              .IgnoreError();
        }
        Emit(JobEventType::kJobFinished, nullptr, "every member left", fx);
      }
      return state_;
    case JobState::kFinished:
    case JobState::kFailed:
      return state_;
  }
  return state_;
}

bool Job::OnTopologyTimeout(Effects& fx) {
  absl::MutexLock l(&mu_);
  if (state_ != JobState::kForming) return false;
  Fail(absl::StrCat("Topology build timed out: job '", params_.id, "' was not complete after ",
                    FormatSeconds(absl::Milliseconds(params_.topo_timeout_ms)),
                    " (MS_TOPO_TIMEOUT): ", MissingDescription(),
                    ". Check that the missing processes were started and can reach the "
                    "scheduler, or raise MS_TOPO_TIMEOUT"),
       absl::StatusCode::kDeadlineExceeded, fx);
  return true;
}

std::string Job::MissingDescription() {
  std::vector<std::string> parts;
  for (int ri = 0; ri < kNumRoles; ++ri) {
    const Role role = static_cast<Role>(ri);
    const uint32_t expected = Expected(role);
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
  std::vector<std::pair<std::string, uint32_t>> hosts(host_counts_.begin(), host_counts_.end());
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

void Job::Shutdown(const absl::Status& status, Effects& fx) {
  absl::MutexLock l(&mu_);
  for (auto& members : members_) {
    for (auto& [id, m] : members) {
      if (m.waiter_id == 0) continue;
      m.waiter_id = 0;
      fx.Add([done = std::move(m.done), status]() mutable { done(status); });
      m.done = nullptr;
    }
  }
  waiters_.clear();
  for (auto& [id, w] : watches_) {
    fx.Add([w = w, status] { w->End(status); });
  }
  watches_.clear();
}

void Job::EndWatches(const absl::Status& status, Effects& fx) {
  absl::MutexLock l(&mu_);
  for (auto& [id, w] : watches_) {
    fx.Add([w = w, status] { w->End(status); });
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

Topology Job::TopologyOf(const Member& m) const {
  Topology t;
  t.job_id = params_.id;
  t.role = m.role;
  t.node_id = m.node_id;
  t.rank = m.placement.rank;
  t.world_size = Expected(m.role);
  t.local_rank = m.placement.local_rank;
  t.local_world_size = m.placement.local_world_size;
  t.node_rank = m.placement.node_rank;
  t.num_nodes = m.placement.num_nodes;
  t.host = m.host;
  t.generation = params_.generation;
  t.incarnation = m.incarnation;
  t.worker_num = params_.worker_num;
  t.server_num = params_.server_num;
  return t;
}

MemberInfo Job::InfoOf(const Member& m, MonoTime now) const {
  MemberInfo info;
  info.node_id = m.node_id;
  info.role = m.role;
  if (m.has_rank) {
    info.rank = m.placement.rank;
    info.local_rank = m.placement.local_rank;
    info.node_rank = m.placement.node_rank;
  }
  info.host = m.host;
  info.host_name = m.host_name;
  info.device_id = m.device_id;
  info.state = m.state;
  info.last_seen_age = ToDuration(now - m.last_seen);
  info.incarnation = m.incarnation;
  return info;
}

JobSummary Job::SummaryLocked(bool detailed) {
  const MonoTime now = clock_->Now();
  JobSummary s;
  s.job_id = params_.id;
  s.state = state_;
  s.generation = params_.generation;
  s.topo_timeout_ms = params_.topo_timeout_ms;
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
    rs.expected = Expected(role);
    rs.joined = static_cast<uint32_t>(members_[ri].size());
    rs.left = left_[ri];
    if (state_ == JobState::kForming) {
      rs.waiting = rs.joined;
    } else if (state_ == JobState::kComplete || state_ == JobState::kFinished) {
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
  s.hosts_total = static_cast<uint32_t>(host_counts_.size());
  if (detailed) {
    std::vector<std::pair<std::string, uint32_t>> hosts(host_counts_.begin(),
                                                        host_counts_.end());
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
    if (!by_rank_[ri].empty()) {
      order.insert(order.end(), by_rank_[ri].begin(), by_rank_[ri].end());
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

void Job::Emit(JobEventType type, const Member* member, std::string message, Effects& fx) {
  ++seq_;
  if (watches_.empty()) return;
  auto ev = std::make_shared<JobEvent>();
  ev->seq = seq_;
  ev->type = type;
  ev->job = SummaryLocked(/*detailed=*/false);
  if (member != nullptr) ev->member = InfoOf(*member, clock_->Now());
  ev->message = std::move(message);
  ev->wall_time = clock_->WallNow();
  std::shared_ptr<const JobEvent> shared = std::move(ev);
  for (auto& [id, w] : watches_) {
    fx.Add([w = w, shared] { w->Deliver(shared); });
  }
}

uint64_t Job::Watch(std::shared_ptr<JobWatcher> watcher, Effects& fx) {
  absl::MutexLock l(&mu_);
  const uint64_t id = next_watch_id_++;
  auto ws = std::make_shared<WatchState>(std::move(watcher), seq_, options_.max_watch_backlog);
  watches_.emplace(id, ws);
  auto snap = std::make_shared<JobEvent>();
  snap->seq = seq_;
  snap->type = JobEventType::kSnapshot;
  snap->job = SummaryLocked(/*detailed=*/true);
  snap->message = absl::StrCat("job '", params_.id, "' is ", JobStateName(state_));
  snap->wall_time = clock_->WallNow();
  fx.Add([ws, snap = std::shared_ptr<const JobEvent>(std::move(snap))] { ws->Deliver(snap); });
  return id;
}

void Job::Unwatch(uint64_t watch_id) {
  std::shared_ptr<WatchState> ws;
  {
    absl::MutexLock l(&mu_);
    auto it = watches_.find(watch_id);
    if (it == watches_.end()) return;
    ws = std::move(it->second);
    watches_.erase(it);
  }
  ws->Detach();
}

}  // namespace ms_rendezvous::core
