// Multi-step fuzzer of the core: up to 64 operations (join, session join, heartbeat, session
// closed, resume, report error, leave, KV, barrier, cancel, clock advance + ProcessDeadlines,
// forged calls naming another member, operator create/abort/delete; members mostly present
// their job's token) over 2 jobs x 4 members against a FakeClock, with invariants checked after
// every step.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/job_registry.h"
#include "fuzz/fuzz_util.h"
#include "store/memory_state_store.h"

namespace msr = ms_rendezvous::core;
using ms_rendezvous::fuzz::CallCount;
using ms_rendezvous::fuzz::FakeSession;

namespace {

constexpr int kJobs = 2;
constexpr int kMembers = 4;

struct Slot {
  msr::MemberRef ref;
  bool has_ref = false;
  std::shared_ptr<FakeSession> session;
};

absl::Duration SmallDuration(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return absl::ZeroDuration();
    case 1: return absl::Milliseconds(in.ConsumeIntegralInRange<int>(1, 5000));
    case 2: return absl::Seconds(in.ConsumeIntegralInRange<int>(1, 120));
    default: return absl::InfiniteDuration();
  }
}

std::string Key(FuzzedDataProvider& in) {
  static const char* kKeys[] = {"a", "b", "counter", "k/1"};
  return kKeys[in.ConsumeIntegralInRange<int>(0, 3)];
}

void CheckInvariants(msr::JobRegistry& reg, const msr::RegistryOptions& opts) {
  auto jobs = reg.ListJobs("", 100);
  size_t live = 0;
  for (const auto& s : jobs) {
    if (s.state == msr::JobState::kForming || s.state == msr::JobState::kComplete ||
        s.state == msr::JobState::kDegraded) {
      ++live;
    }
    auto detail = reg.GetJob(s.job_id);
    MSR_FUZZ_CHECK(detail.ok());
    auto page = reg.ListMembers(s.job_id, 0, 1000);
    MSR_FUZZ_CHECK(page.ok());
    MSR_FUZZ_CHECK(page->total == page->members.size());
    uint32_t suspect = 0;
    for (const auto& m : page->members) {
      suspect += m.state == msr::MemberState::kSuspect;
      // An active member holds a rank; a forming job has handed out none.
      if (m.state == msr::MemberState::kActive) MSR_FUZZ_CHECK(m.rank.has_value());
      if (detail->state == msr::JobState::kForming) {
        MSR_FUZZ_CHECK(!m.rank.has_value());
        MSR_FUZZ_CHECK(m.state == msr::MemberState::kWaiting ||
                       m.state == msr::MemberState::kSuspect);
      }
    }
    MSR_FUZZ_CHECK(suspect == detail->suspect);
    for (const auto& rs : detail->roles) {
      std::vector<uint32_t> ranks;
      uint32_t joined = 0;
      for (const auto& m : page->members) {
        if (m.role != rs.role) continue;
        ++joined;
        if (m.rank.has_value()) ranks.push_back(*m.rank);
      }
      MSR_FUZZ_CHECK(joined == rs.joined);
      MSR_FUZZ_CHECK(rs.joined <= rs.expected);
      MSR_FUZZ_CHECK(rs.left <= rs.joined);
      MSR_FUZZ_CHECK(rs.active + rs.left <= rs.joined);
      if (detail->state == msr::JobState::kForming) MSR_FUZZ_CHECK(rs.waiting == rs.joined);
      if (detail->state == msr::JobState::kComplete) {
        // Ranks of a complete job: a permutation of 0..n-1.
        MSR_FUZZ_CHECK(ranks.size() == rs.expected);
        std::sort(ranks.begin(), ranks.end());
        for (uint32_t i = 0; i < ranks.size(); ++i) MSR_FUZZ_CHECK(ranks[i] == i);
      }
    }
  }
  if (opts.max_jobs != 0) MSR_FUZZ_CHECK(live <= opts.max_jobs);
  auto counts = reg.Counts();
  uint64_t total = 0;
  for (uint64_t c : counts.jobs) total += c;
  MSR_FUZZ_CHECK(total == jobs.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  msr::FakeClock clock;
  msr::MemoryStateStore store;
  msr::RegistryOptions opts;
  opts.max_jobs = in.ConsumeIntegralInRange<int>(0, 2);
  opts.disconnect_grace = absl::Seconds(2);
  opts.default_node_timeout = absl::Seconds(10);
  opts.default_topo_timeout = absl::Seconds(60);
  opts.finished_job_ttl = absl::Seconds(30);
  opts.kv_limits.max_keys_per_job = 3;
  opts.kv_limits.max_value_bytes = 64;
  std::vector<std::shared_ptr<CallCount>> join_calls;
  {
    msr::JobRegistry reg(&clock, opts, in.ConsumeBool() ? &store : nullptr);
    uint32_t worker_num[kJobs], server_num[kJobs];
    bool recovery[kJobs];
    std::string token[kJobs];  // the job token members normally present ("" = none)
    for (int j = 0; j < kJobs; ++j) {
      token[j] = in.ConsumeBool() ? "" : "tok" + std::to_string(j);
      worker_num[j] = in.ConsumeIntegralInRange<uint32_t>(1, 3);
      server_num[j] = in.ConsumeIntegralInRange<uint32_t>(0, 1);
      recovery[j] = in.ConsumeBool();
    }
    Slot slots[kJobs][kMembers];
    std::vector<uint64_t> waiters;
    for (int step = 0; step < 64 && in.remaining_bytes() > 0; ++step) {
      const int j = in.ConsumeIntegralInRange<int>(0, kJobs - 1);
      const int m = in.ConsumeIntegralInRange<int>(0, kMembers - 1);
      Slot& slot = slots[j][m];
      const std::string job_id = j == 0 ? "job-a" : "job-b";
      auto spec = [&] {
        msr::MemberSpec s;
        s.job_id = job_id;
        s.role = (m == 3 && in.ConsumeBool()) ? msr::Role::kPServer : msr::Role::kWorker;
        s.node_id = in.ConsumeBool() ? std::to_string(m) : "n" + std::to_string(m);
        s.host = "10.0.0." + std::to_string(m % 2);
        // Mostly the job's counts; sometimes a disagreeing one.
        s.worker_num = in.ConsumeIntegralInRange<int>(0, 7) == 0 ? worker_num[j] + 1
                                                                 : worker_num[j];
        s.server_num = server_num[j];
        s.enable_recovery = recovery[j];
        s.topo_timeout_ms = in.ConsumeIntegralInRange<int>(-1, 3) * 20000;
        s.node_timeout_ms = in.ConsumeIntegralInRange<int>(-1, 2) * 5000;
        s.heartbeat_disabled = in.ConsumeIntegralInRange<int>(0, 3) == 0;
        // Mostly the job's token; sometimes none or the other job's.
        switch (in.ConsumeIntegralInRange<int>(0, 7)) {
          case 0: s.job_token = ""; break;
          case 1: s.job_token = token[1 - j]; break;
          default: s.job_token = token[j]; break;
        }
        return s;
      };
      auto status_cb = [] {
        auto c = std::make_shared<CallCount>();
        return [c](auto) { c->Hit(); };
      };
      switch (in.ConsumeIntegralInRange<int>(0, 21)) {
        case 0: {  // unary join
          auto c = std::make_shared<CallCount>();
          join_calls.push_back(c);
          msr::MemberSpec s = spec();
          uint64_t id = reg.Join(s, [c](absl::StatusOr<msr::Topology>) { c->Hit(); });
          if (in.ConsumeBool() && id != 0) reg.CancelJoin(job_id, id);
          break;
        }
        case 1: {  // session join
          auto session = std::make_shared<FakeSession>();
          auto ref = reg.JoinSession(spec(), session);
          if (ref.ok()) {
            slot.ref = *ref;
            slot.has_ref = true;
            slot.session = session;
          }
          break;
        }
        case 2:
          if (slot.has_ref) (void)reg.Heartbeat(slot.ref);
          break;
        case 3:
          if (slot.has_ref && slot.session) reg.SessionClosed(slot.ref, slot.session.get());
          break;
        case 4:
          if (slot.has_ref) {
            auto session = std::make_shared<FakeSession>();
            if (reg.ResumeSession(slot.ref, in.ConsumeIntegralInRange<uint64_t>(0, 3), session)
                    .ok()) {
              slot.session = session;
            }
          }
          break;
        case 5:
          if (slot.has_ref) (void)reg.ReportError(slot.ref, "fuzz error");
          break;
        case 6:
          if (slot.has_ref) (void)reg.Leave(slot.ref);
          break;
        case 7:
          if (slot.has_ref) {
            reg.KvSet(slot.ref, Key(in), in.ConsumeRandomLengthString(80), status_cb());
          }
          break;
        case 8:
          if (slot.has_ref) {
            uint64_t id = reg.KvGet(slot.ref, Key(in), SmallDuration(in), status_cb());
            if (id != 0) waiters.push_back(id);
          }
          break;
        case 9:
          if (slot.has_ref) {
            std::vector<std::string> keys{Key(in)};
            if (in.ConsumeBool()) keys.push_back(Key(in));
            uint64_t id = reg.KvWait(slot.ref, keys, SmallDuration(in), status_cb());
            if (id != 0) waiters.push_back(id);
          }
          break;
        case 10:
          if (slot.has_ref) {
            reg.KvAdd(slot.ref, Key(in), in.ConsumeIntegral<int64_t>(), status_cb());
          }
          break;
        case 11:
          if (slot.has_ref) {
            reg.KvCompareSet(slot.ref, Key(in), in.ConsumeRandomLengthString(8),
                             in.ConsumeRandomLengthString(8), status_cb());
          }
          break;
        case 12:
          if (slot.has_ref) reg.KvDelete(slot.ref, Key(in), status_cb());
          break;
        case 13:
          if (slot.has_ref) {
            std::vector<uint32_t> ranks;
            if (in.ConsumeBool()) {
              for (uint32_t r = 0; r < worker_num[j]; ++r) ranks.push_back(r);
            }
            if (in.ConsumeIntegralInRange<int>(0, 7) == 0) ranks.push_back(7);
            uint64_t id = reg.Barrier(slot.ref, in.ConsumeBool() ? "b1" : "b2",
                                      SmallDuration(in), ranks, status_cb());
            if (id != 0) waiters.push_back(id);
          }
          break;
        case 14:
          if (!waiters.empty()) {
            size_t i = in.ConsumeIntegralInRange<size_t>(0, waiters.size() - 1);
            reg.CancelWaiter(job_id, waiters[i]);
          }
          break;
        case 15:
          if (slot.has_ref) {
            (void)reg.KvList(slot.ref, "", "", 10);
            (void)reg.KvNumKeys(slot.ref);
          }
          break;
        case 18: {  // a forged call: another member's ref with this member's credential
          const int oj = in.ConsumeIntegralInRange<int>(0, kJobs - 1);
          const int om = in.ConsumeIntegralInRange<int>(0, kMembers - 1);
          Slot& other = slots[oj][om];
          if (!slot.has_ref || !other.has_ref || &other == &slot) break;
          msr::MemberRef forged = other.ref;
          forged.credential = slot.ref.credential;
          const std::string target = forged.job_id;
          auto before = reg.ListMembers(target, 0, 1000);
          absl::Status st;
          switch (in.ConsumeIntegralInRange<int>(0, 2)) {
            case 0: st = reg.Heartbeat(forged).status(); break;
            case 1: st = reg.Leave(forged).status(); break;
            default: st = reg.ReportError(forged, "forged"); break;
          }
          // Never accepted, and the target job did not change.
          MSR_FUZZ_CHECK(!st.ok());
          auto after = reg.ListMembers(target, 0, 1000);
          MSR_FUZZ_CHECK(before.ok() == after.ok());
          if (before.ok()) {
            MSR_FUZZ_CHECK(before->members.size() == after->members.size());
            for (size_t i = 0; i < before->members.size(); ++i) {
              MSR_FUZZ_CHECK(before->members[i].state == after->members[i].state);
              MSR_FUZZ_CHECK(before->members[i].incarnation == after->members[i].incarnation);
            }
          }
          break;
        }
        case 19: {  // operator: create the job ahead of its members
          msr::MemberSpec s = spec();
          auto created = reg.CreateJob(s);
          if (created.ok()) MSR_FUZZ_CHECK(created->state == msr::JobState::kForming);
          break;
        }
        case 20: {  // operator: abort
          absl::Status st = reg.AbortJob(job_id, "fuzz abort");
          if (st.ok()) MSR_FUZZ_CHECK(reg.GetJob(job_id)->state == msr::JobState::kFailed);
          break;
        }
        case 21: {  // operator: delete (only ended jobs)
          auto state = reg.GetJob(job_id);
          absl::Status st = reg.DeleteJob(job_id);
          if (st.ok()) {
            MSR_FUZZ_CHECK(state.ok() && (state->state == msr::JobState::kFinished ||
                                          state->state == msr::JobState::kFailed));
            MSR_FUZZ_CHECK(!reg.GetJob(job_id).ok());
          }
          break;
        }
        default:  // time passes
          clock.Advance(absl::Milliseconds(in.ConsumeIntegralInRange<int>(0, 70000)));
          reg.ProcessDeadlines();
          break;
      }
      CheckInvariants(reg, opts);
    }
    reg.Shutdown();
    reg.ProcessDeadlines();
    CheckInvariants(reg, opts);
    // After shutdown every unary join has been completed, exactly once.
    for (const auto& c : join_calls) MSR_FUZZ_CHECK(c->calls == 1);
  }
  return 0;
}
