#include "core/types.h"

namespace ms_rendezvous::core {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kWorker:
      return "MS_WORKER";
    case Role::kPServer:
      return "MS_PSERVER";
  }
  return "?";
}

absl::string_view JobStateName(JobState state) {
  switch (state) {
    case JobState::kForming:
      return "forming";
    case JobState::kComplete:
      return "complete";
    case JobState::kFinished:
      return "finished";
    case JobState::kFailed:
      return "failed";
    case JobState::kDegraded:
      return "degraded";
  }
  return "?";
}

absl::string_view MemberStateName(MemberState state) {
  switch (state) {
    case MemberState::kWaiting:
      return "waiting";
    case MemberState::kActive:
      return "active";
    case MemberState::kLeft:
      return "left";
    case MemberState::kFailed:
      return "failed";
    case MemberState::kSuspect:
      return "suspect";
    case MemberState::kDead:
      return "dead";
  }
  return "?";
}

absl::string_view JobEventTypeName(JobEventType type) {
  switch (type) {
    case JobEventType::kSnapshot:
      return "snapshot";
    case JobEventType::kMemberJoined:
      return "member_joined";
    case JobEventType::kMemberWithdrawn:
      return "member_withdrawn";
    case JobEventType::kMemberLeft:
      return "member_left";
    case JobEventType::kJobComplete:
      return "job_complete";
    case JobEventType::kJobFinished:
      return "job_finished";
    case JobEventType::kJobFailed:
      return "job_failed";
    case JobEventType::kMemberSuspect:
      return "member_suspect";
    case JobEventType::kMemberResumed:
      return "member_resumed";
    case JobEventType::kMemberDead:
      return "member_dead";
    case JobEventType::kMemberRecovered:
      return "member_recovered";
  }
  return "?";
}

}  // namespace ms_rendezvous::core
