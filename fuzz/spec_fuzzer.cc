// Arbitrary bytes into a MemberSpec (job id, node id, host, counts, timeouts) and into KV keys
// and values. The core must only ever return statuses: no crash, no UB, no leak.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/clock.h"
#include "core/job_registry.h"
#include "fuzz/fuzz_util.h"
#include "store/memory_state_store.h"

namespace msr = ms_rendezvous::core;
using ms_rendezvous::fuzz::CallCount;
using ms_rendezvous::fuzz::FakeSession;

namespace {

msr::MemberSpec Spec(FuzzedDataProvider& in) {
  msr::MemberSpec s;
  s.job_id = in.ConsumeRandomLengthString(160);
  s.role = in.ConsumeBool() ? msr::Role::kPServer : msr::Role::kWorker;
  s.node_id = in.ConsumeRandomLengthString(160);
  s.host = in.ConsumeRandomLengthString(300);
  s.host_name = in.ConsumeRandomLengthString(64);
  s.device_id = in.ConsumeIntegral<int32_t>();
  // Small counts mostly (a job of 2^32 members would be refused anyway, but keep it cheap).
  s.worker_num = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 4)
                                  : in.ConsumeIntegral<uint32_t>();
  s.server_num = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 2)
                                  : in.ConsumeIntegral<uint32_t>();
  s.topo_timeout_ms = in.ConsumeIntegral<int64_t>();
  s.node_timeout_ms = in.ConsumeIntegral<int64_t>();
  s.enable_recovery = in.ConsumeBool();
  s.heartbeat_disabled = in.ConsumeBool();
  s.device_ip = in.ConsumeRandomLengthString(64);
  s.job_token = in.ConsumeRandomLengthString(40);
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  msr::FakeClock clock;
  msr::MemoryStateStore store;
  msr::RegistryOptions opts;
  opts.max_members_per_job = 16;  // larger jobs are refused: keeps each input cheap
  opts.kv_limits.max_key_bytes = 64;
  opts.kv_limits.max_value_bytes = 256;
  opts.kv_limits.max_keys_per_job = 8;
  msr::JobRegistry reg(&clock, opts, &store);
  for (int i = 0; i < 4 && in.remaining_bytes() > 0; ++i) {
    msr::MemberSpec spec = Spec(in);
    auto c = std::make_shared<CallCount>();
    if (in.ConsumeIntegralInRange<int>(0, 3) == 0) {  // the operator calls
      (void)reg.CreateJob(spec);
      (void)reg.AbortJob(spec.job_id, in.ConsumeRandomLengthString(100));
      (void)reg.DeleteJob(spec.job_id);
      (void)reg.JobTokenMatches(spec.job_id, spec.job_token);
      continue;
    }
    if (in.ConsumeBool()) {
      reg.Join(spec, [c](absl::StatusOr<msr::Topology>) { c->Hit(); });
      continue;
    }
    auto session = std::make_shared<FakeSession>();
    auto ref = reg.JoinSession(spec, session);
    (void)reg.GetJob(spec.job_id);
    (void)reg.ListMembers(spec.job_id, in.ConsumeIntegral<uint64_t>(), 10);
    if (!ref.ok()) continue;
    for (int k = 0; k < 4 && in.remaining_bytes() > 0; ++k) {
      std::string key = in.ConsumeRandomLengthString(80);
      std::string value = in.ConsumeRandomLengthString(300);
      auto cb = [] {
        auto n = std::make_shared<CallCount>();
        return [n](auto) { n->Hit(); };
      };
      reg.KvSet(*ref, key, value, cb());
      reg.KvGet(*ref, key, absl::Milliseconds(in.ConsumeIntegral<int32_t>()), cb());
      reg.KvWait(*ref, {key, value}, absl::ZeroDuration(), cb());
      reg.KvAdd(*ref, key, in.ConsumeIntegral<int64_t>(), cb());
      reg.KvCompareSet(*ref, key, value, in.ConsumeRandomLengthString(40), cb());
      (void)reg.KvList(*ref, key, value, in.ConsumeIntegralInRange<size_t>(0, 20));
      reg.Barrier(*ref, key, absl::Milliseconds(in.ConsumeIntegral<int32_t>()),
                  {in.ConsumeIntegral<uint32_t>()}, cb());
      reg.KvDelete(*ref, key, cb());
    }
    (void)reg.Heartbeat(*ref);
    if (in.ConsumeBool()) (void)reg.ReportError(*ref, in.ConsumeRandomLengthString(100));
    (void)reg.Leave(*ref);
  }
  (void)reg.ListJobs(in.ConsumeRandomLengthString(20), 10);
  clock.Advance(absl::Hours(2));
  reg.ProcessDeadlines();
  reg.Shutdown();
  return 0;
}
