#include "tools/bench/session_group.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "glog/logging.h"

namespace ms_rendezvous::bench {

std::string MemberNodeId(bool named_nodes, uint32_t i) {
  return named_nodes ? absl::StrFormat("bench-node-%08d", i) : absl::StrCat(i);
}

std::string SessionGroup::NodeId(uint32_t i) const {
  return MemberNodeId(spec_.named_nodes, spec_.first_node + i);
}

SessionGroup::SessionGroup(std::vector<v1::Rendezvous::Stub*> stubs, GroupSpec spec)
    : stubs_(std::move(stubs)),
      spec_(std::move(spec)),
      members_(new MemberState[spec_.members]),
      streams_(spec_.members),
      open_(new std::atomic<bool>[spec_.members]),
      resume_started_(new std::atomic<bool>[spec_.members]),
      leaving_(new std::atomic<bool>[spec_.members]),
      retry_(std::make_unique<RetryScheduler>()) {
  for (uint32_t i = 0; i < spec_.members; ++i) {
    open_[i] = false;
    resume_started_[i] = false;
    leaving_[i] = false;
  }
  callbacks_.on_topology = [this](SessionStream* s, const v1::Topology& t) { OnTopology(s, t); };
  callbacks_.on_event = [this](SessionStream* s, const v1::JobEvent& e) { OnEvent(s, e); };
  callbacks_.on_done = [this](SessionStream* s, const grpc::Status& st) { OnDone(s, st); };
  callbacks_.heartbeats_written = &heartbeats_written_;
}

SessionGroup::~SessionGroup() {
  closing_ = true;
  retry_.reset();  // no resume attempt starts from here on
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    for (uint32_t i = 0; i < spec_.members; ++i) {
      if (open_[i] && !streams_[i].empty()) streams_[i].back()->Cancel();
    }
  }
  int64_t deadline = NowNs() + 30'000'000'000;
  while (open_count_.load() > 0 && NowNs() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (open_count_.load() > 0) {
    // Freeing a reactor gRPC still uses would crash; leak them instead (the process is ending).
    LOG(WARNING) << open_count_.load() << " session streams did not end; leaking them";
    for (auto& v : streams_) {
      for (auto& s : v) s.release();
    }
  }
}

void SessionGroup::StartStream(uint32_t i, v1::SessionRequest first, bool wait_for_ready) {
  SessionStream* s;
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    streams_[i].push_back(std::make_unique<SessionStream>(i, &callbacks_));
    s = streams_[i].back().get();
  }
  s->resume = first.has_resume();
  ++members_[i].attempts;
  members_[i].start_ns = NowNs();
  open_[i] = true;
  ++open_count_;
  s->Start(stubs_[i % stubs_.size()], std::move(first), wait_for_ready);
}

void SessionGroup::JoinAll(const std::function<void()>& before,
                           std::function<void(uint32_t)> joined) {
  const uint32_t n = spec_.members;
  on_joined_ = std::move(joined);
  phase_ = Phase::kJoin;
  pending_ = std::make_unique<Countdown>(n);
  std::vector<v1::SessionRequest> joins(n);
  for (uint32_t i = 0; i < n; ++i) {
    v1::MemberSpec* m = joins[i].mutable_join()->mutable_member();
    m->set_job_id(spec_.job_id);
    m->set_role(v1::ROLE_WORKER);
    m->set_node_id(NodeId(i));
    m->set_host_name("ms-rendezvous-bench");
    m->set_device_id(-1);
    m->set_worker_num(spec_.world != 0 ? spec_.world : n);
    m->set_topo_timeout_ms(static_cast<int64_t>(spec_.topo_timeout_s * 1000));
    m->set_node_timeout_ms(static_cast<int64_t>(spec_.node_timeout_s * 1000));
    m->set_enable_recovery(spec_.recovery);
  }
  if (before) before();
  // Members are started back to back, as a launcher starting N processes would.
  for (uint32_t i = 0; i < n; ++i) StartStream(i, std::move(joins[i]), /*wait_for_ready=*/true);
  pending_->Wait();
  phase_ = Phase::kHold;
}

void SessionGroup::Kill(uint32_t i) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  if (!streams_[i].empty()) streams_[i].back()->Cancel();
}

bool SessionGroup::WaitEnded(int64_t except, absl::Duration timeout) {
  const int64_t deadline = NowNs() + absl::ToInt64Nanoseconds(timeout);
  while (true) {
    int64_t open = open_count_.load();
    if (except >= 0 && open_[except]) --open;
    if (open <= 0) return true;
    if (NowNs() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void SessionGroup::ResumeAll(int64_t deadline_ns) {
  const uint32_t n = spec_.members;
  resume_deadline_ns_ = deadline_ns;
  for (uint32_t i = 0; i < n; ++i) members_[i].topology_ns = 0;
  pending_ = std::make_unique<Countdown>(n);
  phase_ = Phase::kResume;
  for (uint32_t i = 0; i < n; ++i) {
    // A stream still open has not seen the daemon go yet; its OnDone starts the resume.
    if (!open_[i] && !resume_started_[i].exchange(true)) ScheduleResume(i, JitteredBackoff(0));
  }
  pending_->Wait();
  phase_ = Phase::kHold;
}

void SessionGroup::ScheduleResume(uint32_t i, absl::Duration backoff) {
  grpc::Channel* channel = channels_.empty() ? nullptr : channels_[i % channels_.size()];
  retry_->Schedule(channel, NowNs() + absl::ToInt64Nanoseconds(backoff),
                   [this, i] { TryResume(i); });
}

void SessionGroup::TryResume(uint32_t i) {
  if (closing_) return;
  const MemberState& m = members_[i];
  v1::SessionRequest req;
  v1::ResumeRequest* resume = req.mutable_resume();
  v1::MemberRef* ref = resume->mutable_member();
  ref->set_job_id(spec_.job_id);
  ref->set_role(v1::ROLE_WORKER);
  ref->set_node_id(NodeId(i));
  ref->set_incarnation(m.joined.incarnation());
  ref->set_credential(m.joined.credential());
  resume->set_generation(m.joined.generation());
  // Not wait_for_ready: while the port is down the attempt fails at once and our backoff (not
  // gRPC's queue) decides when to try again, as the client library does.
  StartStream(i, std::move(req), /*wait_for_ready=*/false);
}

uint64_t SessionGroup::LeaveAll(std::string* first_error) {
  const uint32_t n = spec_.members;
  std::vector<uint32_t> leaving;
  for (uint32_t i = 0; i < n; ++i) {
    if (open_[i] && members_[i].topology_ns != 0) leaving.push_back(i);
  }
  pending_ = std::make_unique<Countdown>(leaving.size());
  phase_ = Phase::kLeave;
  for (uint32_t i : leaving) leaving_[i] = true;
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    for (uint32_t i : leaving) {
      v1::MemberRef ref;
      ref.set_job_id(spec_.job_id);
      ref.set_role(v1::ROLE_WORKER);
      ref.set_node_id(NodeId(i));
      ref.set_incarnation(members_[i].topology.incarnation());
      ref.set_credential(members_[i].topology.credential());
      streams_[i].back()->Leave(ref);
    }
  }
  if (!pending_->WaitFor(absl::Seconds(120))) {
    if (first_error->empty()) *first_error = "leaves not answered within 120 s";
    return pending_->remaining();
  }
  uint64_t failed = 0;
  for (uint32_t i : leaving) {
    const grpc::Status& st = members_[i].status;
    if (st.ok()) continue;
    ++failed;
    if (first_error->empty()) {
      *first_error =
          absl::StrCat(absl::StatusCodeToString(static_cast<absl::StatusCode>(st.error_code())),
                       ": ", st.error_message());
    }
  }
  return failed;
}

int64_t SessionGroup::Heartbeat(uint32_t i) {
  std::lock_guard<std::mutex> lock(streams_mu_);
  if (!open_[i] || streams_[i].empty()) return -1;
  return streams_[i].back()->Heartbeat();
}

void SessionGroup::OnTopology(SessionStream* s, const v1::Topology& t) {
  MemberState& m = members_[s->member()];
  if (m.topology_ns != 0) return;  // one per stream; later ones would be a daemon bug
  m.topology_ns = NowNs();
  m.topology = t;
  Phase phase = phase_;
  if (!s->resume) {
    m.joined = t;
    if (phase == Phase::kJoin) {
      if (on_joined_) on_joined_(s->member());
      pending_->Done();
    }
  } else if (phase == Phase::kResume) {
    pending_->Done();
  }
}

void SessionGroup::OnEvent(SessionStream* s, const v1::JobEvent& e) {
  MemberState& m = members_[s->member()];
  ++m.events;
  if ((e.type() == v1::JOB_EVENT_JOB_FAILED || e.type() == v1::JOB_EVENT_MEMBER_DEAD) &&
      m.failed_ns == 0) {
    m.failed_ns = NowNs();
    for (const auto& d : e.dead()) m.dead_node_ids.push_back(d.node_id());
  }
}

void SessionGroup::OnDone(SessionStream* s, const grpc::Status& status) {
  const uint32_t i = s->member();
  MemberState& m = members_[i];
  m.done_ns = NowNs();
  m.status = status;
  const bool had_topology = m.topology_ns != 0;
  open_[i] = false;
  const Phase phase = phase_;
  switch (phase) {
    case Phase::kJoin:
      if (!had_topology) pending_->Done();
      break;
    case Phase::kHold:
      break;
    case Phase::kResume:
      if (!s->resume) {
        // The pre-restart stream noticed the daemon went away: start resuming after the
        // client library's first wait (50 ms x [0.5, 1.5), shorter once the channel is READY).
        if (!resume_started_[i].exchange(true)) ScheduleResume(i, JitteredBackoff(0));
      } else if (!had_topology) {
        if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
            NowNs() < resume_deadline_ns_.load() && !closing_) {
          // attempts counts the join too: after the n-th resume attempt the n+1-th wait.
          ScheduleResume(i, JitteredBackoff(m.attempts >= 1 ? m.attempts - 1 : 0));
        } else {
          pending_->Done();  // gave up: status says why
        }
      }
      break;
    case Phase::kLeave:
      if (leaving_[i].exchange(false)) pending_->Done();
      break;
  }
  --open_count_;  // last: the destructor may free the stream once this reaches 0
}

}  // namespace ms_rendezvous::bench
