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
  }
  return "?";
}

}  // namespace ms_rendezvous::core
