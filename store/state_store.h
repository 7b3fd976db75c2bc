// StateStore: where the registry writes what must survive a daemon restart.
//
// The core describes every membership change as Mutations (never heartbeats) and hands them to
// Commit() as one batch per API call. A store applies batches durably and IN ORDER and then runs
// the batch's completion; the registry delivers acknowledgements (topologies, leave results,
// events) only from that completion, so nothing is acknowledged before it is durable.
//
// Stores: MemoryStateStore (no --state-dir: completes at once, nothing survives the process),
// SqliteStateStore (embedded default with --state-dir: WAL, group commit of queued batches in
// one transaction). An etcd store (HA) plugs in here later.
//
// Crash contract: after a crash, Load() returns a prefix of the committed batches: every batch
// whose completion ran, possibly followed by batches that were written but not yet acknowledged.
// A batch is never partially visible.
#ifndef MS_RENDEZVOUS_STORE_STATE_STORE_H_
#define MS_RENDEZVOUS_STORE_STATE_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/types.h"

namespace ms_rendezvous::core {

// A job's identity and spec (what the first member fixed) and its state.
struct JobRecord {
  std::string job_id;
  uint64_t generation = 0;
  uint32_t worker_num = 0;
  uint32_t server_num = 0;
  int64_t topo_timeout_ms = 0;
  int64_t node_timeout_ms = 0;
  bool recovery_enabled = false;
  JobState state = JobState::kForming;
  std::string failure_reason;
  // SHA-256 of the job token (MS_JOB_TOKEN) the job was created with; empty: no token. The
  // token itself is never stored.
  std::string token_digest;
};

// One registration. Key: (job_id, role, node_id).
struct MemberRecord {
  std::string job_id;
  Role role = Role::kWorker;
  std::string node_id;
  std::string host;
  std::string host_name;
  int32_t device_id = -1;
  std::string device_ip;
  uint64_t incarnation = 0;
  // The member credential issued at registration (random, 128 bits, hex). Follow-up calls must
  // present it; kept so a member can resume after a daemon restart.
  std::string credential;
  MemberState state = MemberState::kWaiting;  // never kSuspect (liveness is not persisted)
  std::string reason;                          // why DEAD / FAILED
  std::optional<uint32_t> rank;
  uint32_t local_rank = 0;
  uint32_t local_world_size = 0;
  uint32_t node_rank = 0;
  uint32_t num_nodes = 0;
};

// One key of a job's key/value store. Key: (job_id, key); keys and values are bytes.
struct KvRecord {
  std::string job_id;
  std::string key;
  std::string value;
};

struct Mutation {
  enum class Kind { kPutJob, kDeleteJob, kPutMember, kDeleteMember, kPutKv, kDeleteKv };
  Kind kind = Kind::kPutJob;
  JobRecord job;        // kPutJob; kDeleteJob uses job.job_id (and removes its members and keys)
  MemberRecord member;  // kPutMember; kDeleteMember uses job_id, role, node_id
  KvRecord kv;          // kPutKv; kDeleteKv uses job_id, key
};

struct StoredState {
  std::vector<JobRecord> jobs;        // ordered by job id
  std::vector<MemberRecord> members;  // ordered by (job id, role, node id)
  std::vector<KvRecord> kv;           // ordered by (job id, key)
};

class StateStore {
 public:
  using CommitCallback = absl::AnyInvocable<void(absl::Status)>;

  virtual ~StateStore() = default;

  // Applies `batch` atomically and durably, after every batch submitted before it, then calls
  // `done` (OK, or why it could not be made durable). May call `done` before returning (memory
  // store) or later on the store's own thread. Never blocks on I/O.
  virtual void Commit(std::vector<Mutation> batch, CommitCallback done) = 0;

  // Everything stored, for recovery at start. Call before the first Commit.
  virtual absl::StatusOr<StoredState> Load() = 0;

  // True when committed state survives the process (the daemon logs it at start).
  virtual bool durable() const = 0;
  // Human-readable description for the start-up log ("memory", "sqlite:/var/lib/...").
  virtual std::string Describe() const = 0;
};

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_STORE_STATE_STORE_H_
