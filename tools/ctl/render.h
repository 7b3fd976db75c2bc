// Rendering of ms.rendezvous.v1 admin messages for ms-rendezvousctl: aligned text tables for
// humans and JSON objects for scripts. Kept apart from the RPC code so that the output format
// (which scripts and the README rely on) lives in one place.
#ifndef MS_RENDEZVOUS_TOOLS_CTL_RENDER_H_
#define MS_RENDEZVOUS_TOOLS_CTL_RENDER_H_

#include <string>
#include <vector>

#include "absl/types/span.h"
#include "ms/rendezvous/v1/rendezvous.pb.h"
#include "tools/common/json.h"

namespace ms_rendezvous::ctl {

namespace v1 = ::ms::rendezvous::v1;

// A text table whose columns are left-aligned to their widest cell, separated by two spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  size_t num_rows() const { return rows_.size() - 1; }
  // Every line is prefixed with `indent` and ends with '\n'; trailing blanks are not emitted.
  std::string Render(const std::string& indent = "") const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "850ms", "12.3s", "5m03s", "2h05m", "3d04h": short and still exact enough for ops.
std::string FormatAge(double seconds);

// Sorted ranks as compact ranges: {0,1,2,5,7,8} -> "0-2, 5, 7-8".
std::string FormatRanks(absl::Span<const uint32_t> ranks);

// Human summary of what a role still lacks: "ranks 1, 3" when the daemon listed the missing ranks
// (numeric node ids), "2 missing" otherwise, "" when nothing is missing or the job is not forming.
std::string MissingText(const v1::JobSummary& job, const v1::RoleSummary& role);

// JSON objects (written into `w` as one value).
void WriteJobSummary(const v1::JobSummary& job, tools::JsonWriter& w);
// Original keys first, liveness keys appended: ..., failure_reason, node_timeout_ms,
// recovery_enabled, suspect, dead.
// DESIGN.md field order: node_id, rank, role, host, host_name, device_id, state,
// last_heartbeat_age_s, incarnation; then local_rank and node_rank, then reason (why dead or
// failed, else "") and connected (holds a live session stream). rank/local_rank/node_rank are
// null until the job is complete.
void WriteMember(const v1::MemberInfo& member, tools::JsonWriter& w);
// {"rank" (null without one),"node_id","host","reason","role","last_seen_s_ago"}: the same first
// keys as the probe's failure event.
void WriteDeadMember(const v1::DeadMember& dead, tools::JsonWriter& w);
// {"seq","type","unix_time_ms","message","job","member","dead":[...]}.
void WriteEvent(const v1::JobEvent& event, tools::JsonWriter& w);

// Human forms.
std::string RenderJobsTable(const google::protobuf::RepeatedPtrField<v1::JobSummary>& jobs);
std::string RenderMembersTable(const google::protobuf::RepeatedPtrField<v1::MemberInfo>& members,
                               const std::string& indent = "");
// The job page of `ctl job ID`: state, timing, node timeout, recovery mode, suspect/dead counts,
// per-role counts, missing ranks, hosts, failure reason and the first members.
std::string RenderJob(const v1::GetJobResponse& response);
// One line, without the trailing newline. Events naming dead members end with "  dead: ..."
// (first 20, then "and N more").
std::string RenderEventLine(const v1::JobEvent& event);

}  // namespace ms_rendezvous::ctl

#endif  // MS_RENDEZVOUS_TOOLS_CTL_RENDER_H_
