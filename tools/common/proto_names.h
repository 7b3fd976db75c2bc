// Display names of the ms.rendezvous.v1 enums, shared by the tools so that ctl, bench and probe
// spell roles and states the same way the daemon's messages do (core/types.h: RoleName,
// JobStateName, MemberStateName): roles in MindSpore spelling, states in lower case.
// Member liveness: "active" is the "alive" (holds its rank, heard from in time).
#ifndef MS_RENDEZVOUS_TOOLS_COMMON_PROTO_NAMES_H_
#define MS_RENDEZVOUS_TOOLS_COMMON_PROTO_NAMES_H_

#include "absl/strings/string_view.h"
#include "ms/rendezvous/v1/rendezvous.pb.h"

namespace ms_rendezvous::tools {

inline absl::string_view RoleName(ms::rendezvous::v1::Role role) {
  switch (role) {
    case ms::rendezvous::v1::ROLE_WORKER:
      return "MS_WORKER";
    case ms::rendezvous::v1::ROLE_PSERVER:
      return "MS_PSERVER";
    default:
      return "unspecified";
  }
}

inline absl::string_view JobStateName(ms::rendezvous::v1::JobState state) {
  switch (state) {
    case ms::rendezvous::v1::JOB_STATE_FORMING:
      return "forming";
    case ms::rendezvous::v1::JOB_STATE_COMPLETE:
      return "complete";
    case ms::rendezvous::v1::JOB_STATE_FINISHED:
      return "finished";
    case ms::rendezvous::v1::JOB_STATE_FAILED:
      return "failed";
    case ms::rendezvous::v1::JOB_STATE_DEGRADED:
      return "degraded";
    default:
      return "unspecified";
  }
}

inline absl::string_view MemberStateName(ms::rendezvous::v1::MemberState state) {
  switch (state) {
    case ms::rendezvous::v1::MEMBER_STATE_WAITING:
      return "waiting";
    case ms::rendezvous::v1::MEMBER_STATE_ACTIVE:
      return "active";
    case ms::rendezvous::v1::MEMBER_STATE_LEFT:
      return "left";
    case ms::rendezvous::v1::MEMBER_STATE_FAILED:
      return "failed";
    case ms::rendezvous::v1::MEMBER_STATE_SUSPECT:
      return "suspect";
    case ms::rendezvous::v1::MEMBER_STATE_DEAD:
      return "dead";
    default:
      return "unspecified";
  }
}

inline absl::string_view JobEventTypeName(ms::rendezvous::v1::JobEventType type) {
  switch (type) {
    case ms::rendezvous::v1::JOB_EVENT_SNAPSHOT:
      return "snapshot";
    case ms::rendezvous::v1::JOB_EVENT_MEMBER_JOINED:
      return "member_joined";
    case ms::rendezvous::v1::JOB_EVENT_MEMBER_WITHDRAWN:
      return "member_withdrawn";
    case ms::rendezvous::v1::JOB_EVENT_MEMBER_LEFT:
      return "member_left";
    case ms::rendezvous::v1::JOB_EVENT_JOB_COMPLETE:
      return "job_complete";
    case ms::rendezvous::v1::JOB_EVENT_JOB_FINISHED:
      return "job_finished";
    case ms::rendezvous::v1::JOB_EVENT_JOB_FAILED:
      return "job_failed";
    case ms::rendezvous::v1::JOB_EVENT_MEMBER_SUSPECT:
      return "member_suspect";
    case ms::rendezvous::v1::JOB_EVENT_MEMBER_RESUMED:
      return "member_resumed";
    case ms::rendezvous::v1::JOB_EVENT_MEMBER_DEAD:
      return "member_dead";
    case ms::rendezvous::v1::JOB_EVENT_MEMBER_RECOVERED:
      return "member_recovered";
    default:
      return "unspecified";
  }
}

}  // namespace ms_rendezvous::tools

#endif  // MS_RENDEZVOUS_TOOLS_COMMON_PROTO_NAMES_H_
