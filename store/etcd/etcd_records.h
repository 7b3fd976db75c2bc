// EtcdStateStore's on-etcd format: the key layout under a prefix and the record values
// (store/etcd/records.proto). Internal to store/etcd/; separate so it can be tested without etcd.
//
// Layout under <prefix> (which ends with '/'):
//   jobs/<job>                      Job record
//   members/<job>/<role>/<node>     Member record; <role> is "worker" or "pserver"
//   kv/<job>/<hex of key>           Kv record (lowercase hex: any bytes, an empty key too)
//   journal/commit                  JournalCommit, only while a batch too large for one txn is
//   journal/chunks/<id>/<index>     being applied (see etcd_state_store.h)
// <job> and <node> are escaped: bytes outside [A-Za-z0-9._:-] become %XX (uppercase hex), so no
// escaped segment contains '/', and members/<job>/ selects exactly one job's members whatever
// its id. The records carry every field themselves; Load() reads them and checks that each sits
// under the key its content names (a record copied to a wrong key is reported, never loaded).
#ifndef MS_RENDEZVOUS_STORE_ETCD_ETCD_RECORDS_H_
#define MS_RENDEZVOUS_STORE_ETCD_ETCD_RECORDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/state_store.h"

namespace ms_rendezvous::core::etcd_store {

class EtcdKeys {
 public:
  explicit EtcdKeys(std::string prefix) : prefix_(std::move(prefix)) {}

  const std::string& prefix() const { return prefix_; }

  std::string Job(absl::string_view job_id) const;
  std::string Member(absl::string_view job_id, Role role, absl::string_view node_id) const;
  std::string Kv(absl::string_view job_id, absl::string_view key) const;

  std::string JobsPrefix() const { return prefix_ + "jobs/"; }
  std::string MembersPrefix() const { return prefix_ + "members/"; }
  std::string KvPrefix() const { return prefix_ + "kv/"; }
  std::string JournalPrefix() const { return prefix_ + "journal/"; }
  // Every member / key of one job (with EtcdClient::PrefixEnd as the range end).
  std::string MembersOfJob(absl::string_view job_id) const;
  std::string KvOfJob(absl::string_view job_id) const;

  std::string JournalCommit() const { return prefix_ + "journal/commit"; }
  std::string JournalChunk(uint64_t id, uint32_t index) const;

  // %XX-escapes every byte outside [A-Za-z0-9._:-].
  static std::string Escape(absl::string_view segment);
  static std::string Hex(absl::string_view bytes);
  static absl::string_view RoleSegment(Role role);

 private:
  std::string prefix_;
};

// Serialized records. Decoding checks enum ranges (DataLoss naming `key` when a value is not a
// valid record of its kind).
std::string EncodeJob(const JobRecord& job);
std::string EncodeMember(const MemberRecord& member);
std::string EncodeKv(const KvRecord& kv);
absl::StatusOr<JobRecord> DecodeJob(absl::string_view value, absl::string_view key);
absl::StatusOr<MemberRecord> DecodeMember(absl::string_view value, absl::string_view key);
absl::StatusOr<KvRecord> DecodeKv(absl::string_view value, absl::string_view key);

// A batch for the journal (every mutation with every field).
std::string EncodeBatch(const std::vector<Mutation>& batch);
absl::StatusOr<std::vector<Mutation>> DecodeBatch(absl::string_view bytes);

struct JournalCommitInfo {
  uint64_t id = 0;
  uint32_t chunks = 0;
  uint64_t bytes = 0;
};
std::string EncodeJournalCommit(const JournalCommitInfo& info);
absl::StatusOr<JournalCommitInfo> DecodeJournalCommit(absl::string_view value,
                                                      absl::string_view key);

// One etcd write a mutation turns into.
struct KeyOp {
  enum class Kind { kPut, kDelete, kDeleteRange };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;      // kPut
  std::string range_end;  // kDeleteRange
};

// The etcd writes of one mutation, in order: kPut* one put, kDelete{Member,Kv} one delete,
// kDeleteJob the job's key plus members/<job>/ and kv/<job>/ as two range deletes.
std::vector<KeyOp> ToKeyOps(const EtcdKeys& keys, const Mutation& m);

}  // namespace ms_rendezvous::core::etcd_store

#endif  // MS_RENDEZVOUS_STORE_ETCD_ETCD_RECORDS_H_
