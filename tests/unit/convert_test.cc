#include "server/convert.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ms_rendezvous::server {
namespace {

TEST(HostFromPeerTest, Ipv4DropsPort) {
  EXPECT_EQ(HostFromPeer("ipv4:10.1.2.3:5000"), "10.1.2.3");
}

// Regression: gRPC 1.51 URI-encodes IPv6 peers ("%5B::1%5D:port"); the encoded form with the
// port used to become the host, so every IPv6 member counted as its own host.
TEST(HostFromPeerTest, Ipv6UriEncoded_DecodedWithoutPort) {
  EXPECT_EQ(HostFromPeer("ipv6:%5B::1%5D:42812"), "::1");
  EXPECT_EQ(HostFromPeer("ipv6:%5Bfe80::1%25eth0%5D:1"), "fe80::1%eth0");
  EXPECT_EQ(HostFromPeer("ipv6:[2001:db8::7]:80"), "2001:db8::7");
}

TEST(HostFromPeerTest, OtherFormsUnchanged) {
  EXPECT_EQ(HostFromPeer("unix:/tmp/sock"), "unix:/tmp/sock");
}

TEST(ToGrpcTest, KeepsCodeAndMessage) {
  grpc::Status s = ToGrpc(absl::FailedPreconditionError("MS_WORKER_NUM=8 vs 4"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "MS_WORKER_NUM=8 vs 4");
  EXPECT_TRUE(ToGrpc(absl::OkStatus()).ok());
}

TEST(SpecFromProtoTest, UnspecifiedRole_InvalidArgumentNamesField) {
  pb::MemberSpec spec;
  auto s = SpecFromProto(spec);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr("member.role"));
}

}  // namespace
}  // namespace ms_rendezvous::server
