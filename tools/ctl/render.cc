#include "tools/ctl/render.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "tools/common/proto_names.h"

namespace ms_rendezvous::ctl {
namespace {

using tools::JsonWriter;

// Sum of `joined` over the roles: the number of members the job has.
uint64_t TotalJoined(const v1::JobSummary& job) {
  uint64_t total = 0;
  for (const auto& role : job.roles()) total += role.joined();
  return total;
}

bool Forming(const v1::JobSummary& job) { return job.state() == v1::JOB_STATE_FORMING; }

uint32_t MissingCount(const v1::RoleSummary& role) {
  return role.expected() > role.joined() ? role.expected() - role.joined() : 0;
}

std::string TimeoutText(int64_t timeout_ms, const char* negative = "forever") {
  if (timeout_ms < 0) return negative;
  return FormatAge(static_cast<double>(timeout_ms) / 1000.0);
}

// Dead members are listed in full up to this many; the rest are counted ("and N more").
constexpr int kDeadShown = 20;

// "rank 3 node '3'@10.0.0.1 (connection lost ...; last seen 2.1s before)".
std::string DeadText(const v1::DeadMember& d) {
  std::string text;
  if (d.role() == v1::ROLE_PSERVER) absl::StrAppend(&text, tools::RoleName(d.role()), " ");
  absl::StrAppend(&text, d.has_rank() ? absl::StrCat("rank ", d.rank()) : "no rank", " node '",
                  d.node_id(), "'");
  if (!d.host().empty()) absl::StrAppend(&text, "@", d.host());
  absl::StrAppend(&text, " (", d.reason().empty() ? "no reason given" : d.reason(),
                  "; last seen ", FormatAge(d.last_seen_s_ago()), " before)");
  return text;
}

}  // namespace

std::string Table::Render(const std::string& indent) const {
  std::vector<size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line = indent;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string FormatAge(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  if (seconds < 1) return absl::StrFormat("%dms", static_cast<int>(seconds * 1000));
  if (seconds < 60) return absl::StrFormat("%.1fs", seconds);
  auto s = static_cast<int64_t>(seconds);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  if (s < 86400) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  return absl::StrFormat("%dd%02dh", s / 86400, (s % 86400) / 3600);
}

std::string FormatRanks(absl::Span<const uint32_t> ranks) {
  std::vector<uint32_t> sorted(ranks.begin(), ranks.end());
  std::sort(sorted.begin(), sorted.end());
  std::string out;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    absl::StrAppend(&out, sorted[i]);
    if (j > i) absl::StrAppend(&out, "-", sorted[j]);
    i = j + 1;
  }
  return out;
}

std::string MissingText(const v1::JobSummary& job, const v1::RoleSummary& role) {
  uint32_t missing = MissingCount(role);
  if (!Forming(job) || missing == 0) return "";
  if (role.missing_ranks_size() > 0) {
    std::string text =
        absl::StrCat(missing == 1 ? "rank " : "ranks ", FormatRanks(role.missing_ranks()));
    if (role.missing_ranks_truncated()) {
      absl::StrAppend(&text, " and more (", missing, " missing)");
    }
    return text;
  }
  return absl::StrCat(missing, " missing");
}

void WriteJobSummary(const v1::JobSummary& job, JsonWriter& w) {
  w.BeginObject();
  w.Key("job_id").String(job.job_id());
  w.Key("state").String(tools::JobStateName(job.state()));
  w.Key("generation").Uint(job.generation());
  w.Key("age_s").Double(job.age_s());
  w.Key("topo_timeout_ms").Int(job.topo_timeout_ms());
  // Only meaningful while forming with a finite timeout; null says "no deadline running".
  w.Key("topo_deadline_in_s");
  if (Forming(job) && job.topo_timeout_ms() >= 0) {
    w.Double(job.topo_deadline_in_s());
  } else {
    w.Null();
  }
  w.Key("members").Uint(TotalJoined(job));
  w.Key("roles").BeginArray();
  for (const auto& role : job.roles()) {
    w.BeginObject();
    w.Key("role").String(tools::RoleName(role.role()));
    w.Key("expected").Uint(role.expected());
    w.Key("joined").Uint(role.joined());
    w.Key("waiting").Uint(role.waiting());
    w.Key("active").Uint(role.active());
    w.Key("left").Uint(role.left());
    w.Key("missing").Uint(Forming(job) ? MissingCount(role) : 0);
    w.Key("missing_ranks").BeginArray();
    for (uint32_t rank : role.missing_ranks()) w.Uint(rank);
    w.EndArray();
    w.Key("missing_ranks_truncated").Bool(role.missing_ranks_truncated());
    w.EndObject();
  }
  w.EndArray();
  w.Key("hosts_total").Uint(job.hosts_total());
  w.Key("hosts").BeginArray();
  for (const auto& host : job.hosts()) {
    w.BeginObject().Key("host").String(host.host()).Key("members").Uint(host.members()).EndObject();
  }
  w.EndArray();
  w.Key("failure_reason").String(job.failure_reason());
  // Liveness (appended after the original keys so existing consumers keep working).
  w.Key("node_timeout_ms").Int(job.node_timeout_ms());
  w.Key("recovery_enabled").Bool(job.recovery_enabled());
  w.Key("suspect").Uint(job.suspect());
  w.Key("dead").Uint(job.dead());
  w.EndObject();
}

void WriteMember(const v1::MemberInfo& m, JsonWriter& w) {
  w.BeginObject();
  w.Key("node_id").String(m.node_id());
  w.Key("rank");
  m.has_rank() ? w.Uint(m.rank()) : w.Null();
  w.Key("role").String(tools::RoleName(m.role()));
  w.Key("host").String(m.host());
  w.Key("host_name").String(m.host_name());
  w.Key("device_id").Int(m.device_id());
  w.Key("state").String(tools::MemberStateName(m.state()));
  w.Key("last_heartbeat_age_s").Double(m.last_heartbeat_age_s());
  w.Key("incarnation").Uint(m.incarnation());
  w.Key("local_rank");
  m.has_rank() ? w.Uint(m.local_rank()) : w.Null();
  w.Key("node_rank");
  m.has_rank() ? w.Uint(m.node_rank()) : w.Null();
  w.Key("reason").String(m.reason());
  w.Key("connected").Bool(m.connected());
  w.EndObject();
}

void WriteDeadMember(const v1::DeadMember& d, JsonWriter& w) {
  w.BeginObject();
  w.Key("rank");
  d.has_rank() ? w.Uint(d.rank()) : w.Null();
  w.Key("node_id").String(d.node_id());
  w.Key("host").String(d.host());
  w.Key("reason").String(d.reason());
  w.Key("role").String(tools::RoleName(d.role()));
  w.Key("last_seen_s_ago").Double(d.last_seen_s_ago());
  w.EndObject();
}

void WriteEvent(const v1::JobEvent& event, JsonWriter& w) {
  w.BeginObject();
  w.Key("seq").Uint(event.seq());
  w.Key("type").String(tools::JobEventTypeName(event.type()));
  w.Key("unix_time_ms").Int(event.unix_time_ms());
  w.Key("message").String(event.message());
  w.Key("job");
  WriteJobSummary(event.job(), w);
  w.Key("member");
  event.has_member() ? WriteMember(event.member(), w) : static_cast<void>(w.Null());
  // Always present (empty unless job_failed / member_dead), so scripts need no key check.
  w.Key("dead").BeginArray();
  for (const auto& d : event.dead()) WriteDeadMember(d, w);
  w.EndArray();
  w.EndObject();
}

std::string RenderJobsTable(const google::protobuf::RepeatedPtrField<v1::JobSummary>& jobs) {
  if (jobs.empty()) return "no jobs\n";
  Table table({"JOB", "STATE", "GEN", "WORKERS", "PSERVERS", "HOSTS", "AGE", "MISSING"});
  for (const auto& job : jobs) {
    std::string workers = "-", servers = "-";
    std::vector<std::string> missing;
    for (const auto& role : job.roles()) {
      std::string counts = absl::StrCat(role.joined(), "/", role.expected());
      (role.role() == v1::ROLE_PSERVER ? servers : workers) = counts;
      if (Forming(job) && MissingCount(role) > 0) {
        missing.push_back(absl::StrCat(MissingCount(role),
                                       role.role() == v1::ROLE_PSERVER ? " pservers" : " workers"));
      }
    }
    table.AddRow({job.job_id(), std::string(tools::JobStateName(job.state())),
                  absl::StrCat(job.generation()), workers, servers, absl::StrCat(job.hosts_total()),
                  FormatAge(job.age_s()), missing.empty() ? "-" : absl::StrJoin(missing, ", ")});
  }
  return table.Render();
}

std::string RenderMembersTable(const google::protobuf::RepeatedPtrField<v1::MemberInfo>& members,
                               const std::string& indent) {
  Table table({"NODE_ID", "ROLE", "RANK", "LOCAL", "NODE", "HOST", "HOST_NAME", "DEVICE", "STATE",
               "CONNECTED", "SEEN", "INCARNATION", "REASON"});
  for (const auto& m : members) {
    auto rank_or_dash = [&](uint32_t v) { return m.has_rank() ? absl::StrCat(v) : "-"; };
    table.AddRow({m.node_id(), std::string(tools::RoleName(m.role())), rank_or_dash(m.rank()),
                  rank_or_dash(m.local_rank()), rank_or_dash(m.node_rank()),
                  m.host().empty() ? "-" : m.host(), m.host_name().empty() ? "-" : m.host_name(),
                  m.device_id() < 0 ? "-" : absl::StrCat(m.device_id()),
                  std::string(tools::MemberStateName(m.state())), m.connected() ? "yes" : "no",
                  FormatAge(m.last_heartbeat_age_s()) + " ago", absl::StrCat(m.incarnation()),
                  m.reason().empty() ? "-" : m.reason()});
  }
  return table.Render(indent);
}

std::string RenderJob(const v1::GetJobResponse& response) {
  const v1::JobSummary& job = response.job();
  Table head({"job:", job.job_id()});
  head.AddRow({"state:", std::string(tools::JobStateName(job.state()))});
  head.AddRow({"generation:", absl::StrCat(job.generation())});
  head.AddRow({"age:", FormatAge(job.age_s())});
  std::string deadline = absl::StrCat("timeout ", TimeoutText(job.topo_timeout_ms()));
  if (Forming(job) && job.topo_timeout_ms() >= 0) {
    deadline = absl::StrCat("fails in ", FormatAge(job.topo_deadline_in_s()), " (", deadline, ")");
  }
  head.AddRow({"topo deadline:", deadline});
  head.AddRow({"node timeout:", TimeoutText(job.node_timeout_ms(), "never")});
  head.AddRow({"recovery:", job.recovery_enabled() ? "on (a dead member may rejoin and take back its rank)"
                                                   : "off"});
  head.AddRow({"liveness:", absl::StrCat(job.suspect(), " suspect, ", job.dead(), " dead")});
  for (const auto& role : job.roles()) {
    std::string missing = MissingText(job, role);
    if (!missing.empty()) {
      head.AddRow({absl::StrCat("missing ", tools::RoleName(role.role()), ":"), missing});
    }
  }
  std::vector<std::string> hosts;
  for (const auto& host : job.hosts()) {
    hosts.push_back(absl::StrCat(host.host(), " (", host.members(), ")"));
  }
  std::string hosts_text = hosts.empty() ? "none" : absl::StrJoin(hosts, ", ");
  if (job.hosts_total() > static_cast<uint32_t>(job.hosts_size())) {
    absl::StrAppend(&hosts_text, " and ", job.hosts_total() - job.hosts_size(), " more");
  }
  head.AddRow({absl::StrCat("hosts (", job.hosts_total(), "):"), hosts_text});
  if (!job.failure_reason().empty()) head.AddRow({"failure:", job.failure_reason()});

  std::string out = head.Render();
  out += "\n";
  Table roles({"ROLE", "EXPECTED", "JOINED", "WAITING", "ACTIVE", "LEFT", "MISSING"});
  for (const auto& role : job.roles()) {
    roles.AddRow({std::string(tools::RoleName(role.role())), absl::StrCat(role.expected()),
                  absl::StrCat(role.joined()), absl::StrCat(role.waiting()),
                  absl::StrCat(role.active()), absl::StrCat(role.left()),
                  absl::StrCat(Forming(job) ? MissingCount(role) : 0)});
  }
  out += roles.Render();

  uint64_t total = TotalJoined(job);
  out += "\n";
  if (response.members_size() == 0) {
    out += "members: none\n";
    return out;
  }
  if (response.next_page_token().empty()) {
    absl::StrAppend(&out, "members (", response.members_size(), "):\n");
  } else {
    absl::StrAppend(&out, "members (first ", response.members_size(), " of ", total,
                    "; all: ", "ms-rendezvousctl members ", job.job_id(), "):\n");
  }
  out += RenderMembersTable(response.members(), "  ");
  return out;
}

std::string RenderEventLine(const v1::JobEvent& event) {
  const v1::JobSummary& job = event.job();
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(event.unix_time_ms()),
                       absl::UTCTimeZone()),
      "  #", event.seq(), "  ", tools::JobEventTypeName(event.type()));
  if (event.has_member()) {
    const v1::MemberInfo& m = event.member();
    absl::StrAppend(&line, "  ", tools::RoleName(m.role()), " ", m.node_id());
    if (!m.host().empty()) absl::StrAppend(&line, "@", m.host());
    if (m.has_rank()) absl::StrAppend(&line, " rank ", m.rank());
  }
  absl::StrAppend(&line, "  job ", tools::JobStateName(job.state()), " gen ", job.generation());
  for (const auto& role : job.roles()) {
    absl::StrAppend(&line, " ", tools::RoleName(role.role()), " ", role.joined(), "/",
                    role.expected());
  }
  if (!event.message().empty()) absl::StrAppend(&line, "  ", event.message());
  if (event.dead_size() > 0) {
    std::vector<std::string> dead;
    for (int i = 0; i < event.dead_size() && i < kDeadShown; ++i) {
      dead.push_back(DeadText(event.dead(i)));
    }
    absl::StrAppend(&line, "  dead: ", absl::StrJoin(dead, ", "));
    if (event.dead_size() > kDeadShown) {
      absl::StrAppend(&line, " and ", event.dead_size() - kDeadShown, " more");
    }
  }
  return line;
}

}  // namespace ms_rendezvous::ctl
