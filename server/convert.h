// proto <-> core conversions and absl::Status <-> grpc::Status. The only place that knows both.
#ifndef MS_RENDEZVOUS_SERVER_CONVERT_H_
#define MS_RENDEZVOUS_SERVER_CONVERT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/types.h"
#include "grpcpp/support/status.h"
#include "ms/rendezvous/v1/rendezvous.pb.h"

namespace ms_rendezvous::server {

namespace pb = ::ms::rendezvous::v1;

grpc::Status ToGrpc(const absl::Status& status);

// Role from the wire; InvalidArgument for ROLE_UNSPECIFIED or unknown values.
absl::StatusOr<core::Role> RoleFromProto(pb::Role role, const std::string& field);
pb::Role RoleToProto(core::Role role);
pb::JobState JobStateToProto(core::JobState state);
pb::MemberState MemberStateToProto(core::MemberState state);
pb::JobEventType EventTypeToProto(core::JobEventType type);

absl::StatusOr<core::MemberSpec> SpecFromProto(const pb::MemberSpec& in);
absl::StatusOr<core::MemberRef> RefFromProto(const pb::MemberRef& in);
void TopologyToProto(const core::Topology& in, pb::Topology* out);
void MemberInfoToProto(const core::MemberInfo& in, pb::MemberInfo* out);
void JobSummaryToProto(const core::JobSummary& in, pb::JobSummary* out);
void DeadMemberToProto(const core::DeadMember& in, pb::DeadMember* out);
void JobEventToProto(const core::JobEvent& in, pb::JobEvent* out);

// The host part of a gRPC peer URI ("ipv4:10.0.0.1:5000" -> "10.0.0.1",
// "ipv6:[::1]:5000" -> "::1"); the input unchanged when it has another form.
std::string HostFromPeer(const std::string& peer);

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_CONVERT_H_
