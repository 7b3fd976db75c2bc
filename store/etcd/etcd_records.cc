#include "store/etcd/etcd_records.h"

#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "store/etcd/records.pb.h"

namespace ms_rendezvous::core::etcd_store {
namespace {

namespace pb = ::ms_rendezvous::etcd_store::v1;

// Tripwire: a field added to JobRecord / MemberRecord / KvRecord needs a field in records.proto
// and a line in Encode* and Decode* below; these mirrors (the fields as stored) then stop
// matching in size. (A small field can hide in padding; the round-trip test sets every field.)
struct JobRecordAsStored {
  std::string job_id;
  uint64_t generation;
  uint32_t worker_num, server_num;
  int64_t topo_timeout_ms, node_timeout_ms;
  bool recovery_enabled;
  JobState state;
  std::string failure_reason;
  std::string token_digest;
};
struct MemberRecordAsStored {
  std::string job_id;
  Role role;
  std::string node_id, host, host_name;
  int32_t device_id;
  std::string device_ip;
  uint64_t incarnation;
  std::string credential;
  MemberState state;
  std::string reason;
  std::optional<uint32_t> rank;
  uint32_t local_rank, local_world_size, node_rank, num_nodes;
};
struct KvRecordAsStored {
  std::string job_id, key, value;
};
static_assert(sizeof(JobRecord) == sizeof(JobRecordAsStored),
              "JobRecord changed: update records.proto, EncodeJob() and DecodeJob()");
static_assert(sizeof(MemberRecord) == sizeof(MemberRecordAsStored),
              "MemberRecord changed: update records.proto, EncodeMember() and DecodeMember()");
static_assert(sizeof(KvRecord) == sizeof(KvRecordAsStored),
              "KvRecord changed: update records.proto, EncodeKv() and DecodeKv()");

bool IsPlain(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

absl::Status Corrupt(absl::string_view key, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("etcd state store: key '", absl::CHexEscape(key),
                                          "' does not hold a valid ", what));
}

void ToProto(const JobRecord& j, pb::Job* p) {
  p->set_job_id(j.job_id);
  p->set_generation(j.generation);
  p->set_worker_num(j.worker_num);
  p->set_server_num(j.server_num);
  p->set_topo_timeout_ms(j.topo_timeout_ms);
  p->set_node_timeout_ms(j.node_timeout_ms);
  p->set_recovery_enabled(j.recovery_enabled);
  p->set_state(static_cast<int32_t>(j.state));
  p->set_failure_reason(j.failure_reason);
  p->set_token_digest(j.token_digest);
}

void ToProto(const MemberRecord& m, pb::Member* p) {
  p->set_job_id(m.job_id);
  p->set_role(static_cast<int32_t>(m.role));
  p->set_node_id(m.node_id);
  p->set_host(m.host);
  p->set_host_name(m.host_name);
  p->set_device_id(m.device_id);
  p->set_device_ip(m.device_ip);
  p->set_incarnation(m.incarnation);
  p->set_credential(m.credential);
  p->set_state(static_cast<int32_t>(m.state));
  p->set_reason(m.reason);
  if (m.rank.has_value()) p->set_rank(*m.rank);
  p->set_local_rank(m.local_rank);
  p->set_local_world_size(m.local_world_size);
  p->set_node_rank(m.node_rank);
  p->set_num_nodes(m.num_nodes);
}

void ToProto(const KvRecord& kv, pb::Kv* p) {
  p->set_job_id(kv.job_id);
  p->set_key(kv.key);
  p->set_value(kv.value);
}

std::optional<JobRecord> FromProto(const pb::Job& p) {
  if (p.state() < 0 || p.state() >= kNumJobStates) return std::nullopt;
  JobRecord j;
  j.job_id = p.job_id();
  j.generation = p.generation();
  j.worker_num = p.worker_num();
  j.server_num = p.server_num();
  j.topo_timeout_ms = p.topo_timeout_ms();
  j.node_timeout_ms = p.node_timeout_ms();
  j.recovery_enabled = p.recovery_enabled();
  j.state = static_cast<JobState>(p.state());
  j.failure_reason = p.failure_reason();
  j.token_digest = p.token_digest();
  return j;
}

std::optional<MemberRecord> FromProto(const pb::Member& p) {
  if (p.role() < 0 || p.role() >= kNumRoles) return std::nullopt;
  if (p.state() < 0 || p.state() >= kNumMemberStates) return std::nullopt;
  MemberRecord m;
  m.job_id = p.job_id();
  m.role = static_cast<Role>(p.role());
  m.node_id = p.node_id();
  m.host = p.host();
  m.host_name = p.host_name();
  m.device_id = p.device_id();
  m.device_ip = p.device_ip();
  m.incarnation = p.incarnation();
  m.credential = p.credential();
  m.state = static_cast<MemberState>(p.state());
  m.reason = p.reason();
  if (p.has_rank()) m.rank = p.rank();
  m.local_rank = p.local_rank();
  m.local_world_size = p.local_world_size();
  m.node_rank = p.node_rank();
  m.num_nodes = p.num_nodes();
  return m;
}

KvRecord FromProto(const pb::Kv& p) { return KvRecord{p.job_id(), p.key(), p.value()}; }

}  // namespace

std::string EtcdKeys::Escape(absl::string_view segment) {
  std::string out;
  out.reserve(segment.size());
  for (char c : segment) {
    if (IsPlain(c)) {
      out.push_back(c);
    } else {
      absl::StrAppendFormat(&out, "%%%02X", static_cast<unsigned char>(c));
    }
  }
  return out;
}

std::string EtcdKeys::Hex(absl::string_view bytes) { return absl::BytesToHexString(bytes); }

absl::string_view EtcdKeys::RoleSegment(Role role) {
  switch (role) {
    case Role::kWorker:
      return "worker";
    case Role::kPServer:
      return "pserver";
  }
  return "unknown-role";
}

std::string EtcdKeys::Job(absl::string_view job_id) const {
  return absl::StrCat(prefix_, "jobs/", Escape(job_id));
}

std::string EtcdKeys::Member(absl::string_view job_id, Role role, absl::string_view node_id) const {
  return absl::StrCat(MembersOfJob(job_id), RoleSegment(role), "/", Escape(node_id));
}

std::string EtcdKeys::Kv(absl::string_view job_id, absl::string_view key) const {
  return absl::StrCat(KvOfJob(job_id), Hex(key));
}

std::string EtcdKeys::MembersOfJob(absl::string_view job_id) const {
  return absl::StrCat(prefix_, "members/", Escape(job_id), "/");
}

std::string EtcdKeys::KvOfJob(absl::string_view job_id) const {
  return absl::StrCat(prefix_, "kv/", Escape(job_id), "/");
}

std::string EtcdKeys::JournalChunk(uint64_t id, uint32_t index) const {
  return absl::StrFormat("%sjournal/chunks/%016x/%08u", prefix_, id, index);
}

std::string EncodeJob(const JobRecord& job) {
  pb::Job p;
  ToProto(job, &p);
  return p.SerializeAsString();
}

std::string EncodeMember(const MemberRecord& member) {
  pb::Member p;
  ToProto(member, &p);
  return p.SerializeAsString();
}

std::string EncodeKv(const KvRecord& kv) {
  pb::Kv p;
  ToProto(kv, &p);
  return p.SerializeAsString();
}

absl::StatusOr<JobRecord> DecodeJob(absl::string_view value, absl::string_view key) {
  pb::Job p;
  if (!p.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return Corrupt(key, "job record");
  }
  std::optional<JobRecord> j = FromProto(p);
  if (!j.has_value()) return Corrupt(key, "job record (state out of range)");
  return *std::move(j);
}

absl::StatusOr<MemberRecord> DecodeMember(absl::string_view value, absl::string_view key) {
  pb::Member p;
  if (!p.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return Corrupt(key, "member record");
  }
  std::optional<MemberRecord> m = FromProto(p);
  if (!m.has_value()) return Corrupt(key, "member record (role or state out of range)");
  return *std::move(m);
}

absl::StatusOr<KvRecord> DecodeKv(absl::string_view value, absl::string_view key) {
  pb::Kv p;
  if (!p.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return Corrupt(key, "key/value record");
  }
  return FromProto(p);
}

std::string EncodeBatch(const std::vector<Mutation>& batch) {
  pb::Batch p;
  for (const Mutation& m : batch) {
    pb::Mutation* pm = p.add_mutations();
    switch (m.kind) {
      case Mutation::Kind::kPutJob:
        pm->set_kind(pb::Mutation::PUT_JOB);
        break;
      case Mutation::Kind::kDeleteJob:
        pm->set_kind(pb::Mutation::DELETE_JOB);
        break;
      case Mutation::Kind::kPutMember:
        pm->set_kind(pb::Mutation::PUT_MEMBER);
        break;
      case Mutation::Kind::kDeleteMember:
        pm->set_kind(pb::Mutation::DELETE_MEMBER);
        break;
      case Mutation::Kind::kPutKv:
        pm->set_kind(pb::Mutation::PUT_KV);
        break;
      case Mutation::Kind::kDeleteKv:
        pm->set_kind(pb::Mutation::DELETE_KV);
        break;
    }
    // Only the record the kind uses (deletes use its key fields).
    switch (m.kind) {
      case Mutation::Kind::kPutJob:
      case Mutation::Kind::kDeleteJob:
        ToProto(m.job, pm->mutable_job());
        break;
      case Mutation::Kind::kPutMember:
      case Mutation::Kind::kDeleteMember:
        ToProto(m.member, pm->mutable_member());
        break;
      case Mutation::Kind::kPutKv:
      case Mutation::Kind::kDeleteKv:
        ToProto(m.kv, pm->mutable_kv());
        break;
    }
  }
  return p.SerializeAsString();
}

absl::StatusOr<std::vector<Mutation>> DecodeBatch(absl::string_view bytes) {
  pb::Batch p;
  if (!p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("etcd state store: the journalled batch does not parse");
  }
  std::vector<Mutation> out;
  out.reserve(p.mutations_size());
  for (const pb::Mutation& pm : p.mutations()) {
    Mutation m;
    bool ok = true;
    switch (pm.kind()) {
      case pb::Mutation::PUT_JOB:
      case pb::Mutation::DELETE_JOB: {
        m.kind = pm.kind() == pb::Mutation::PUT_JOB ? Mutation::Kind::kPutJob
                                                    : Mutation::Kind::kDeleteJob;
        std::optional<JobRecord> j = FromProto(pm.job());
        ok = j.has_value();
        if (ok) m.job = *std::move(j);
        break;
      }
      case pb::Mutation::PUT_MEMBER:
      case pb::Mutation::DELETE_MEMBER: {
        m.kind = pm.kind() == pb::Mutation::PUT_MEMBER ? Mutation::Kind::kPutMember
                                                       : Mutation::Kind::kDeleteMember;
        std::optional<MemberRecord> r = FromProto(pm.member());
        ok = r.has_value();
        if (ok) m.member = *std::move(r);
        break;
      }
      case pb::Mutation::PUT_KV:
      case pb::Mutation::DELETE_KV:
        m.kind =
            pm.kind() == pb::Mutation::PUT_KV ? Mutation::Kind::kPutKv : Mutation::Kind::kDeleteKv;
        m.kv = FromProto(pm.kv());
        break;
      default:
        ok = false;
    }
    if (!ok) {
      return absl::DataLossError(
          "etcd state store: the journalled batch holds an invalid mutation");
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string EncodeJournalCommit(const JournalCommitInfo& info) {
  pb::JournalCommit p;
  p.set_id(info.id);
  p.set_chunks(info.chunks);
  p.set_bytes(info.bytes);
  return p.SerializeAsString();
}

absl::StatusOr<JournalCommitInfo> DecodeJournalCommit(absl::string_view value,
                                                      absl::string_view key) {
  pb::JournalCommit p;
  if (!p.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return Corrupt(key, "journal commit record");
  }
  return JournalCommitInfo{p.id(), p.chunks(), p.bytes()};
}

std::vector<KeyOp> ToKeyOps(const EtcdKeys& keys, const Mutation& m) {
  std::vector<KeyOp> ops;
  switch (m.kind) {
    case Mutation::Kind::kPutJob:
      ops.push_back(KeyOp{KeyOp::Kind::kPut, keys.Job(m.job.job_id), EncodeJob(m.job), ""});
      break;
    case Mutation::Kind::kDeleteJob: {
      ops.push_back(KeyOp{KeyOp::Kind::kDelete, keys.Job(m.job.job_id), "", ""});
      std::string members = keys.MembersOfJob(m.job.job_id);
      std::string members_end = members;
      members_end.back() = static_cast<char>('/' + 1);  // PrefixEnd of ".../": '/' + 1 = '0'
      ops.push_back(
          KeyOp{KeyOp::Kind::kDeleteRange, std::move(members), "", std::move(members_end)});
      std::string kv = keys.KvOfJob(m.job.job_id);
      std::string kv_end = kv;
      kv_end.back() = static_cast<char>('/' + 1);
      ops.push_back(KeyOp{KeyOp::Kind::kDeleteRange, std::move(kv), "", std::move(kv_end)});
      break;
    }
    case Mutation::Kind::kPutMember:
      ops.push_back(KeyOp{KeyOp::Kind::kPut,
                          keys.Member(m.member.job_id, m.member.role, m.member.node_id),
                          EncodeMember(m.member), ""});
      break;
    case Mutation::Kind::kDeleteMember:
      ops.push_back(KeyOp{KeyOp::Kind::kDelete,
                          keys.Member(m.member.job_id, m.member.role, m.member.node_id), "", ""});
      break;
    case Mutation::Kind::kPutKv:
      ops.push_back(KeyOp{KeyOp::Kind::kPut, keys.Kv(m.kv.job_id, m.kv.key), EncodeKv(m.kv), ""});
      break;
    case Mutation::Kind::kDeleteKv:
      ops.push_back(KeyOp{KeyOp::Kind::kDelete, keys.Kv(m.kv.job_id, m.kv.key), "", ""});
      break;
  }
  return ops;
}

}  // namespace ms_rendezvous::core::etcd_store
