// Plain value types of the core: what a member says about itself, what it gets back, and what
// ops see. They mirror ms.rendezvous.v1 but carry no protobuf or gRPC dependency; the server
// layer converts (server/convert.h).
#ifndef MS_RENDEZVOUS_CORE_TYPES_H_
#define MS_RENDEZVOUS_CORE_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ms_rendezvous::core {

enum class Role { kWorker = 0, kPServer = 1 };
inline constexpr int kNumRoles = 2;

// See core/job.h for the state diagrams.
enum class JobState { kForming, kComplete, kFinished, kFailed, kDegraded };
enum class MemberState { kWaiting, kActive, kLeft, kFailed, kSuspect, kDead };
inline constexpr int kNumJobStates = 5;     // JobState values are 0..kNumJobStates-1
inline constexpr int kNumMemberStates = 6;  // MemberState values likewise

// MindSpore spelling of a role ("MS_WORKER", "MS_PSERVER"), used in every message.
absl::string_view RoleName(Role role);
absl::string_view JobStateName(JobState state);      // "forming", "complete", ...
absl::string_view MemberStateName(MemberState state);  // "waiting", "active", ...

// What a joining process says about itself. See MemberSpec in rendezvous.proto for the rules.
struct MemberSpec {
  std::string job_id;
  Role role = Role::kWorker;
  std::string node_id;
  std::string host;       // address; the server fills in the peer address when empty
  std::string host_name;  // for humans only
  int32_t device_id = -1;
  uint32_t worker_num = 0;
  uint32_t server_num = 0;
  int64_t topo_timeout_ms = 0;  // 0: registry default; < 0: forever
  int64_t node_timeout_ms = 0;  // MS_NODE_TIMEOUT; 0: registry default; < 0: never
  bool enable_recovery = false;  // MS_ENABLE_RECOVERY
  bool heartbeat_disabled = false;  // MS_DISABLE_HEARTBEAT: a connected session proves liveness
  std::string device_ip;            // MS_DEVICE_IP, for HCCL rank tables
  // MS_JOB_TOKEN as presented by the caller (gRPC metadata, never persisted); empty: none.
  std::string job_token;
  // TokenDigest(job_token), filled in by the registry (the job compares digests only).
  std::string token_digest;
};

// A member's placement, delivered when its job is complete.
struct Topology {
  std::string job_id;
  Role role = Role::kWorker;
  std::string node_id;
  uint32_t rank = 0;
  uint32_t world_size = 0;
  uint32_t local_rank = 0;
  uint32_t local_world_size = 0;
  uint32_t node_rank = 0;
  uint32_t num_nodes = 0;
  std::string host;
  uint64_t generation = 0;
  uint64_t incarnation = 0;
  uint32_t worker_num = 0;
  uint32_t server_num = 0;
  std::string credential;  // the member credential of this registration (credentials.h)
};

// Names one registration in follow-up calls (heartbeat, leave).
struct MemberRef {
  std::string job_id;
  Role role = Role::kWorker;
  std::string node_id;
  uint64_t incarnation = 0;
  // The member credential issued at registration; a mismatch is PermissionDenied.
  std::string credential;
};

struct MemberInfo {
  std::string node_id;
  Role role = Role::kWorker;
  std::optional<uint32_t> rank;  // set once the job is complete
  uint32_t local_rank = 0;
  uint32_t node_rank = 0;
  std::string host;
  std::string host_name;
  int32_t device_id = -1;
  MemberState state = MemberState::kWaiting;
  absl::Duration last_seen_age;
  uint64_t incarnation = 0;
  std::string reason;      // why it is dead / failed
  bool connected = false;  // holds a live session
  std::string device_ip;
};

// A member that died, as told to every survivor.
struct DeadMember {
  Role role = Role::kWorker;
  std::optional<uint32_t> rank;
  std::string node_id;
  std::string host;
  absl::Duration last_seen_ago;
  std::string reason;
};

struct RoleSummary {
  Role role = Role::kWorker;
  uint32_t expected = 0;
  uint32_t joined = 0;
  uint32_t waiting = 0;
  uint32_t active = 0;
  uint32_t left = 0;
  // Filled only while forming and when every joined node id of the role is numeric.
  std::vector<uint32_t> missing_ranks;
  bool missing_ranks_truncated = false;
};

struct HostSummary {
  std::string host;
  uint32_t members = 0;
};

struct JobSummary {
  std::string job_id;
  JobState state = JobState::kForming;
  uint64_t generation = 0;
  std::vector<RoleSummary> roles;
  int64_t topo_timeout_ms = 0;
  absl::Duration age;
  std::optional<absl::Duration> topo_deadline_in;  // forming with a finite timeout only
  std::string failure_reason;
  std::vector<HostSummary> hosts;  // capped (see JobRegistry::kMaxHostsListed)
  uint32_t hosts_total = 0;
  int64_t node_timeout_ms = 0;
  bool recovery_enabled = false;
  uint32_t suspect = 0;  // members per liveness state
  uint32_t dead = 0;
};

enum class JobEventType {
  kSnapshot,
  kMemberJoined,
  kMemberWithdrawn,
  kMemberLeft,
  kJobComplete,
  kJobFinished,
  kJobFailed,
  kMemberSuspect,
  kMemberResumed,
  kMemberDead,
  kMemberRecovered,
};
absl::string_view JobEventTypeName(JobEventType type);  // "member_joined", ...

struct JobEvent {
  uint64_t seq = 0;  // contiguous per job, starting at 1
  JobEventType type = JobEventType::kSnapshot;
  JobSummary job;  // light summary (no missing ranks, no host list) except for snapshots
  std::optional<MemberInfo> member;
  std::string message;
  absl::Time wall_time;
  std::vector<DeadMember> dead;  // kJobFailed, kMemberDead
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_TYPES_H_
