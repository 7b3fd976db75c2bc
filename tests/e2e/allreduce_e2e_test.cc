// End-to-end hand-off to a real collective library: 8 ms-rendezvous-probe --allreduce processes
// against one ms-rendezvousd build a Gloo full mesh through the job KV and allreduce (sum)
// element i = rank*100 + i; every one must print ok:true with the right sum (issue 4).
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "subprocess.h"

namespace ms_rendezvous::testing {
namespace {

using ::testing::HasSubstr;

TEST(AllreduceE2E, EightProbesAgainstOneDaemon_EveryOnePrintsTheCorrectSum) {
  Daemon d;
  ASSERT_GT(d.port(), 0);
  constexpr int kWorld = 8;
  std::vector<std::unique_ptr<Subprocess>> probes;
  for (int i = 0; i < kWorld; ++i) {
    Subprocess::Env env = d.SchedEnv();
    env["MS_ROLE"] = "MS_WORKER";
    env["MS_WORKER_NUM"] = absl::StrCat(kWorld);
    env["MS_JOB_ID"] = "allreduce";
    env["MS_NODE_ID"] = absl::StrCat(i);
    env["MS_WORKER_IP"] = "127.0.0.1";
    env["MS_TOPO_TIMEOUT"] = "60";
    probes.push_back(
        std::make_unique<Subprocess>("ms-rendezvous-probe", std::vector<std::string>{"--allreduce"},
                                     env));
  }
  // Element i of the sum: 100 * (0+1+..+7) + 8 * i.
  std::vector<std::string> expected;
  for (int i = 0; i < 8; ++i) expected.push_back(absl::StrCat(100 * kWorld * (kWorld - 1) / 2 + kWorld * i));
  const std::string expected_json = absl::StrCat("[", absl::StrJoin(expected, ","), "]");
  std::set<int> ranks;
  for (int i = 0; i < kWorld; ++i) {
    std::optional<int> code = probes[i]->Wait(absl::Seconds(90));
    const std::string out = probes[i]->Stdout();
    ASSERT_TRUE(code.has_value()) << "probe " << i << " did not exit; stderr: " << probes[i]->Stderr();
    EXPECT_EQ(*code, 0) << "probe " << i << " stdout: " << out << " stderr: " << probes[i]->Stderr();
    std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
    ASSERT_EQ(lines.size(), 2u) << out;
    ranks.insert(JsonInt(lines[0], "rank"));
    EXPECT_THAT(lines[1], HasSubstr("\"check\":\"allreduce\""));
    EXPECT_THAT(lines[1], HasSubstr("\"ok\":true"));
    EXPECT_THAT(lines[1], HasSubstr(absl::StrCat("\"result\":", expected_json)));
    EXPECT_THAT(lines[1], HasSubstr(absl::StrCat("\"expected\":", expected_json)));
  }
  EXPECT_EQ(ranks.size(), static_cast<size_t>(kWorld));
}

}  // namespace
}  // namespace ms_rendezvous::testing
