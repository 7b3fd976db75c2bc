#include "server/convert.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"

namespace ms_rendezvous::server {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::StatusOr<core::Role> RoleFromProto(pb::Role role, const std::string& field) {
  switch (role) {
    case pb::ROLE_WORKER:
      return core::Role::kWorker;
    case pb::ROLE_PSERVER:
      return core::Role::kPServer;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          field, "=", pb::Role_Name(role).empty() ? std::to_string(role) : pb::Role_Name(role),
          " is not a member role: expected ROLE_WORKER (MS_WORKER) or ROLE_PSERVER "
          "(MS_PSERVER)"));
  }
}

pb::Role RoleToProto(core::Role role) {
  return role == core::Role::kWorker ? pb::ROLE_WORKER : pb::ROLE_PSERVER;
}

pb::JobState JobStateToProto(core::JobState state) {
  switch (state) {
    case core::JobState::kForming:
      return pb::JOB_STATE_FORMING;
    case core::JobState::kComplete:
      return pb::JOB_STATE_COMPLETE;
    case core::JobState::kFinished:
      return pb::JOB_STATE_FINISHED;
    case core::JobState::kFailed:
      return pb::JOB_STATE_FAILED;
    case core::JobState::kDegraded:
      return pb::JOB_STATE_DEGRADED;
  }
  return pb::JOB_STATE_UNSPECIFIED;
}

pb::MemberState MemberStateToProto(core::MemberState state) {
  switch (state) {
    case core::MemberState::kWaiting:
      return pb::MEMBER_STATE_WAITING;
    case core::MemberState::kActive:
      return pb::MEMBER_STATE_ACTIVE;
    case core::MemberState::kLeft:
      return pb::MEMBER_STATE_LEFT;
    case core::MemberState::kFailed:
      return pb::MEMBER_STATE_FAILED;
    case core::MemberState::kSuspect:
      return pb::MEMBER_STATE_SUSPECT;
    case core::MemberState::kDead:
      return pb::MEMBER_STATE_DEAD;
  }
  return pb::MEMBER_STATE_UNSPECIFIED;
}

pb::JobEventType EventTypeToProto(core::JobEventType type) {
  switch (type) {
    case core::JobEventType::kSnapshot:
      return pb::JOB_EVENT_SNAPSHOT;
    case core::JobEventType::kMemberJoined:
      return pb::JOB_EVENT_MEMBER_JOINED;
    case core::JobEventType::kMemberWithdrawn:
      return pb::JOB_EVENT_MEMBER_WITHDRAWN;
    case core::JobEventType::kMemberLeft:
      return pb::JOB_EVENT_MEMBER_LEFT;
    case core::JobEventType::kJobComplete:
      return pb::JOB_EVENT_JOB_COMPLETE;
    case core::JobEventType::kJobFinished:
      return pb::JOB_EVENT_JOB_FINISHED;
    case core::JobEventType::kJobFailed:
      return pb::JOB_EVENT_JOB_FAILED;
    case core::JobEventType::kMemberSuspect:
      return pb::JOB_EVENT_MEMBER_SUSPECT;
    case core::JobEventType::kMemberResumed:
      return pb::JOB_EVENT_MEMBER_RESUMED;
    case core::JobEventType::kMemberDead:
      return pb::JOB_EVENT_MEMBER_DEAD;
    case core::JobEventType::kMemberRecovered:
      return pb::JOB_EVENT_MEMBER_RECOVERED;
  }
  return pb::JOB_EVENT_UNSPECIFIED;
}

absl::StatusOr<core::MemberSpec> SpecFromProto(const pb::MemberSpec& in) {
  core::MemberSpec s;
  auto role = RoleFromProto(in.role(), "member.role");
  if (!role.ok()) return role.status();
  s.job_id = in.job_id();
  s.role = *role;
  s.node_id = in.node_id();
  s.host = in.host();
  s.host_name = in.host_name();
  s.device_id = in.device_id();
  s.worker_num = in.worker_num();
  s.server_num = in.server_num();
  s.topo_timeout_ms = in.topo_timeout_ms();
  s.node_timeout_ms = in.node_timeout_ms();
  s.enable_recovery = in.enable_recovery();
  s.heartbeat_disabled = in.heartbeat_disabled();
  s.device_ip = in.device_ip();
  return s;
}

absl::StatusOr<core::MemberRef> RefFromProto(const pb::MemberRef& in) {
  auto role = RoleFromProto(in.role(), "member.role");
  if (!role.ok()) return role.status();
  return core::MemberRef{in.job_id(), *role, in.node_id(), in.incarnation(), in.credential()};
}

void TopologyToProto(const core::Topology& in, pb::Topology* out) {
  out->set_job_id(in.job_id);
  out->set_role(RoleToProto(in.role));
  out->set_node_id(in.node_id);
  out->set_rank(in.rank);
  out->set_world_size(in.world_size);
  out->set_local_rank(in.local_rank);
  out->set_local_world_size(in.local_world_size);
  out->set_node_rank(in.node_rank);
  out->set_num_nodes(in.num_nodes);
  out->set_host(in.host);
  out->set_generation(in.generation);
  out->set_incarnation(in.incarnation);
  out->set_worker_num(in.worker_num);
  out->set_server_num(in.server_num);
  out->set_credential(in.credential);
}

void MemberInfoToProto(const core::MemberInfo& in, pb::MemberInfo* out) {
  out->set_node_id(in.node_id);
  out->set_role(RoleToProto(in.role));
  if (in.rank.has_value()) {
    out->set_rank(*in.rank);
    out->set_has_rank(true);
    out->set_local_rank(in.local_rank);
    out->set_node_rank(in.node_rank);
  }
  out->set_host(in.host);
  out->set_host_name(in.host_name);
  out->set_device_id(in.device_id);
  out->set_state(MemberStateToProto(in.state));
  out->set_last_heartbeat_age_s(absl::ToDoubleSeconds(in.last_seen_age));
  out->set_incarnation(in.incarnation);
  out->set_reason(in.reason);
  out->set_connected(in.connected);
  out->set_device_ip(in.device_ip);
}

void DeadMemberToProto(const core::DeadMember& in, pb::DeadMember* out) {
  out->set_role(RoleToProto(in.role));
  if (in.rank.has_value()) {
    out->set_rank(*in.rank);
    out->set_has_rank(true);
  }
  out->set_node_id(in.node_id);
  out->set_host(in.host);
  out->set_last_seen_s_ago(absl::ToDoubleSeconds(in.last_seen_ago));
  out->set_reason(in.reason);
}

void JobSummaryToProto(const core::JobSummary& in, pb::JobSummary* out) {
  out->set_job_id(in.job_id);
  out->set_state(JobStateToProto(in.state));
  out->set_generation(in.generation);
  for (const core::RoleSummary& r : in.roles) {
    pb::RoleSummary* o = out->add_roles();
    o->set_role(RoleToProto(r.role));
    o->set_expected(r.expected);
    o->set_joined(r.joined);
    for (uint32_t m : r.missing_ranks) o->add_missing_ranks(m);
    o->set_missing_ranks_truncated(r.missing_ranks_truncated);
    o->set_waiting(r.waiting);
    o->set_active(r.active);
    o->set_left(r.left);
  }
  out->set_topo_timeout_ms(in.topo_timeout_ms);
  out->set_age_s(absl::ToDoubleSeconds(in.age));
  if (in.topo_deadline_in.has_value()) {
    out->set_topo_deadline_in_s(absl::ToDoubleSeconds(*in.topo_deadline_in));
  }
  out->set_failure_reason(in.failure_reason);
  for (const core::HostSummary& h : in.hosts) {
    pb::HostSummary* o = out->add_hosts();
    o->set_host(h.host);
    o->set_members(h.members);
  }
  out->set_hosts_total(in.hosts_total);
  out->set_node_timeout_ms(in.node_timeout_ms);
  out->set_recovery_enabled(in.recovery_enabled);
  out->set_suspect(in.suspect);
  out->set_dead(in.dead);
}

void JobEventToProto(const core::JobEvent& in, pb::JobEvent* out) {
  out->set_seq(in.seq);
  out->set_type(EventTypeToProto(in.type));
  JobSummaryToProto(in.job, out->mutable_job());
  if (in.member.has_value()) MemberInfoToProto(*in.member, out->mutable_member());
  out->set_message(in.message);
  out->set_unix_time_ms(absl::ToUnixMillis(in.wall_time));
  for (const core::DeadMember& d : in.dead) DeadMemberToProto(d, out->add_dead());
}

std::string HostFromPeer(const std::string& peer) {
  if (absl::StartsWith(peer, "ipv4:")) {
    std::string rest = peer.substr(5);
    auto colon = rest.rfind(':');
    return colon == std::string::npos ? rest : rest.substr(0, colon);
  }
  if (absl::StartsWith(peer, "ipv6:")) {
    // gRPC prints IPv6 peers URI-encoded: "ipv6:%5B::1%5D:42812" (and "[::1]:42812" in some
    // versions). Decode the brackets (and a zone's %25) before cutting off the port.
    std::string rest = absl::StrReplaceAll(peer.substr(5), {{"%5B", "["}, {"%5b", "["},
                                                            {"%5D", "]"}, {"%5d", "]"},
                                                            {"%25", "%"}});
    if (!rest.empty() && rest[0] == '[') {
      auto close = rest.find(']');
      if (close != std::string::npos) return rest.substr(1, close - 1);
    }
    return rest;
  }
  return peer;
}

}  // namespace ms_rendezvous::server
