// Reads the daemon's Prometheus text endpoint (--metrics-listen): the bench's view of what the
// daemon itself counted (heartbeats accepted, members declared dead), as opposed to what the
// bench sent.
#ifndef MS_RENDEZVOUS_TOOLS_BENCH_METRICS_SCRAPE_H_
#define MS_RENDEZVOUS_TOOLS_BENCH_METRICS_SCRAPE_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ms_rendezvous::bench {

// Sample values by series, e.g. `ms_rendezvous_failures_detected_total{kind="disconnected"}`.
using MetricSamples = std::map<std::string, double>;

// GET http://HOST:PORT/metrics (HTTP/1.0, blocking, at most `timeout`) and parse the samples.
// Errors: Unavailable when the endpoint cannot be reached or does not answer 200 in time.
absl::StatusOr<MetricSamples> ScrapeMetrics(const std::string& host_port,
                                            absl::Duration timeout = absl::Seconds(5));

// Parses Prometheus text exposition format (comments skipped, timestamps ignored).
MetricSamples ParseMetricsText(absl::string_view text);

// Sum of every series of metric `name` (all label sets); 0 when absent.
double SumOf(const MetricSamples& samples, absl::string_view name);

}  // namespace ms_rendezvous::bench

#endif  // MS_RENDEZVOUS_TOOLS_BENCH_METRICS_SCRAPE_H_
