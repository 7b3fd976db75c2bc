#include "server/metrics.h"

#include <exception>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace ms_rendezvous::server {
namespace {

const prometheus::Histogram::BucketBoundaries& RpcBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
      0.25,   0.5,     1,      2.5,   5,      10,    30,   60,    300,  1800};
  return *b;
}

const prometheus::Histogram::BucketBoundaries& DetectionBuckets() {
  static const auto* b = new prometheus::Histogram::BucketBoundaries{
      0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 15, 30, 45, 60, 120, 300, 600};
  return *b;
}

}  // namespace

// Jobs and members by state, computed at scrape time.
class Metrics::StateGauges final : public prometheus::Collectable {
 public:
  explicit StateGauges(const std::atomic<core::JobRegistry*>* registry) : registry_(registry) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    core::JobRegistry* registry = registry_->load();
    if (registry == nullptr) return {};
    const core::RegistryCounts counts = registry->Counts();
    std::vector<prometheus::MetricFamily> out(2);
    out[0].name = "ms_rendezvous_jobs";
    out[0].help = "Jobs known to the daemon, by state";
    out[0].type = prometheus::MetricType::Gauge;
    for (int i = 0; i < core::kNumJobStates; ++i) {
      prometheus::ClientMetric m;
      m.label.push_back(
          {"state", std::string(core::JobStateName(static_cast<core::JobState>(i)))});
      m.gauge.value = static_cast<double>(counts.jobs[i]);
      out[0].metric.push_back(std::move(m));
    }
    out[1].name = "ms_rendezvous_members";
    out[1].help = "Members of known jobs, by state";
    out[1].type = prometheus::MetricType::Gauge;
    for (int i = 0; i < core::kNumMemberStates; ++i) {
      prometheus::ClientMetric m;
      m.label.push_back(
          {"state", std::string(core::MemberStateName(static_cast<core::MemberState>(i)))});
      m.gauge.value = static_cast<double>(counts.members[i]);
      out[1].metric.push_back(std::move(m));
    }
    return out;
  }

 private:
  const std::atomic<core::JobRegistry*>* const registry_;
};

Metrics::Metrics()
    : prom_(std::make_shared<prometheus::Registry>()),
      gauges_(std::make_shared<StateGauges>(&registry_)) {
  auto& joins = prometheus::BuildCounter()
                    .Name("ms_rendezvous_joins_total")
                    .Help("Members registered (new or recovered), by role")
                    .Register(*prom_);
  for (int r = 0; r < core::kNumRoles; ++r) {
    joins_[r] = &joins.Add({{"role", std::string(core::RoleName(static_cast<core::Role>(r)))}});
  }
  rejections_ = &prometheus::BuildCounter()
                     .Name("ms_rendezvous_rejections_total")
                     .Help("Joins refused, by reason (status code)")
                     .Register(*prom_);
  for (int c = 0; c < static_cast<int>(rejections_by_code_.size()); ++c) {
    if (c == 0) continue;  // OK is never a rejection
    rejections_by_code_[c] = &rejections_->Add(
        {{"reason", absl::StatusCodeToString(static_cast<absl::StatusCode>(c))}});
  }
  heartbeats_ = &prometheus::BuildCounter()
                     .Name("ms_rendezvous_heartbeats_total")
                     .Help("Heartbeats accepted")
                     .Register(*prom_)
                     .Add({});
  auto& failures = prometheus::BuildCounter()
                       .Name("ms_rendezvous_failures_detected_total")
                       .Help("Members declared dead, by how the failure was detected")
                       .Register(*prom_);
  for (int k = 0; k < static_cast<int>(failures_.size()); ++k) {
    failures_[k] = &failures.Add(
        {{"kind", std::string(core::DeathKindName(static_cast<core::DeathKind>(k)))}});
  }
  detection_latency_ = &prometheus::BuildHistogram()
                            .Name("ms_rendezvous_detection_latency_seconds")
                            .Help("From when a member was last heard from to when it was "
                                  "declared dead")
                            .Register(*prom_)
                            .Add({}, DetectionBuckets());
  auto& kv = prometheus::BuildCounter()
                 .Name("ms_rendezvous_kv_ops_total")
                 .Help("Job key/value store and barrier operations, by op")
                 .Register(*prom_);
  for (int o = 0; o < static_cast<int>(kv_ops_.size()); ++o) {
    kv_ops_[o] = &kv.Add({{"op", std::string(core::KvOpName(static_cast<core::KvOp>(o)))}});
  }
  rpc_latency_ = &prometheus::BuildHistogram()
                      .Name("ms_rendezvous_rpc_latency_seconds")
                      .Help("gRPC call latency (parked calls: until answered), by method")
                      .Register(*prom_);
  sessions_ = &prometheus::BuildGauge()
                   .Name("ms_rendezvous_sessions_connected")
                   .Help("Member session streams currently connected")
                   .Register(*prom_)
                   .Add({});
}

Metrics::~Metrics() { exposer_.reset(); }

absl::Status Metrics::Listen(const std::string& listen) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-listen ", listen, ": cannot listen: ", e.what()));
  }
  exposer_->RegisterCollectable(prom_);
  exposer_->RegisterCollectable(gauges_);
  std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? 0 : ports[0];
  return absl::OkStatus();
}

std::string Metrics::Render() const {
  std::vector<prometheus::MetricFamily> families = prom_->Collect();
  for (auto& f : gauges_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

void Metrics::OnJoin(core::Role role) { joins_[static_cast<int>(role)]->Increment(); }

void Metrics::OnRejection(absl::string_view code) {
  for (size_t c = 1; c < rejections_by_code_.size(); ++c) {
    if (absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) == code) {
      rejections_by_code_[c]->Increment();
      return;
    }
  }
  rejections_->Add({{"reason", std::string(code)}}).Increment();
}

void Metrics::OnHeartbeat() { heartbeats_->Increment(); }

void Metrics::OnMemberDead(core::DeathKind kind, absl::Duration latency) {
  failures_[static_cast<int>(kind)]->Increment();
  detection_latency_->Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::OnKvOp(core::KvOp op) { kv_ops_[static_cast<int>(op)]->Increment(); }

void Metrics::OnRpcDone(const char* method, absl::Duration latency) {
  prometheus::Histogram* h = nullptr;
  {
    absl::ReaderMutexLock l(&rpc_mu_);
    auto it = rpc_by_method_.find(method);
    if (it != rpc_by_method_.end()) h = it->second;
  }
  if (h == nullptr) {
    absl::MutexLock l(&rpc_mu_);
    auto [it, added] = rpc_by_method_.try_emplace(method, nullptr);
    if (added) it->second = &rpc_latency_->Add({{"method", method}}, RpcBuckets());
    h = it->second;
  }
  h->Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::OnSessionOpened() { sessions_->Increment(); }
void Metrics::OnSessionClosed() { sessions_->Decrement(); }

}  // namespace ms_rendezvous::server
