// End-to-end metrics (issue 7): a daemon with --metrics-listen, probes holding a job with
// heartbeats, /metrics scraped with curl while the job runs.
#include <stdio.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "subprocess.h"

namespace ms_rendezvous::testing {
namespace {

using Env = Subprocess::Env;

std::string Curl(int port) { return ScrapeMetrics(port); }
double Sample(const std::string& text, const std::string& name) { return MetricSum(text, name); }

TEST(MetricsE2E, CountersMoveWhileAJobRuns) {
  const std::string port_file = absl::StrCat(TempDir(), "/metrics-port-", getpid());
  Daemon d({"--metrics-listen", "127.0.0.1:0", "--metrics-port-file", port_file});
  int mport = 0;
  for (int i = 0; i < 500 && mport == 0; ++i) {
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(port_file)), &mport)) {
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  ASSERT_GT(mport, 0) << "no --metrics-port-file";

  const std::string before = Curl(mport);
  ASSERT_NE(before.find("ms_rendezvous_joins_total"), std::string::npos) << before;
  EXPECT_EQ(Sample(before, "ms_rendezvous_joins_total"), 0);
  EXPECT_EQ(Sample(before, "ms_rendezvous_heartbeats_total"), 0);

  std::vector<std::unique_ptr<Subprocess>> probes;
  for (int i = 0; i < 3; ++i) {
    probes.push_back(std::make_unique<Subprocess>(
        "ms-rendezvous-probe", std::vector<std::string>{"--hold", "60"},
        Env{{"MS_SCHED_HOST", "127.0.0.1"}, {"MS_SCHED_PORT", std::to_string(d.port())},
            {"MS_JOB_ID", "metrics"}, {"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "3"},
            {"MS_NODE_ID", std::to_string(i)}, {"MS_NODE_TIMEOUT", "2"}}));
  }
  for (auto& p : probes) ASSERT_TRUE(WaitForStdout(*p, "\"rank\"", absl::Seconds(60)));

  // First scrape during the job: 3 joins; then heartbeats must keep moving.
  const std::string first = Curl(mport);
  EXPECT_EQ(Sample(first, "ms_rendezvous_joins_total"), 3) << first;
  const double hb1 = Sample(first, "ms_rendezvous_heartbeats_total");
  ASSERT_GE(hb1, 0) << first;
  EXPECT_NE(first.find("ms_rendezvous_jobs{state=\"complete\"} 1"), std::string::npos) << first;
  EXPECT_NE(first.find("ms_rendezvous_members{state=\"active\"} 3"), std::string::npos) << first;
  EXPECT_EQ(Sample(first, "ms_rendezvous_sessions_connected"), 3) << first;
  // Stream latencies: every session's join (join received -> topology) was timed.
  EXPECT_NE(first.find("ms_rendezvous_rpc_latency_seconds_count{method=\"SessionJoin\"} 3"),
            std::string::npos)
      << first;

  double hb2 = hb1;
  std::string second;
  for (int i = 0; i < 150 && hb2 <= hb1; ++i) {
    absl::SleepFor(absl::Milliseconds(200));
    second = Curl(mport);
    hb2 = Sample(second, "ms_rendezvous_heartbeats_total");
  }
  EXPECT_GT(hb2, hb1) << "heartbeat counter did not move:\n" << second;
  EXPECT_GT(Sample(second, "ms_rendezvous_joins_total"), Sample(before, "ms_rendezvous_joins_total"));
  for (auto& p : probes) p->Signal(SIGTERM);
}

}  // namespace
}  // namespace ms_rendezvous::testing
