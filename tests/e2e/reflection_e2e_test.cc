// The daemon serves gRPC server reflection (so grpcurl and similar tools work against it) and
// the standard health service. Runs the real daemon process.
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "subprocess.h"

namespace ms_rendezvous::testing {
namespace {

namespace refl = ::grpc::reflection::v1alpha;

TEST(DaemonReflection, ListServices_NamesOurServicesAndHealth) {
  Daemon d;
  ASSERT_GT(d.port(), 0);
  auto channel = grpc::CreateChannel(d.address(), grpc::InsecureChannelCredentials());
  auto stub = refl::ServerReflection::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&ctx);
  refl::ServerReflectionRequest req;
  req.set_list_services("");
  ASSERT_TRUE(stream->Write(req));
  refl::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  std::set<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.insert(s.name());
  EXPECT_TRUE(names.count("ms.rendezvous.v1.Rendezvous")) << ::testing::PrintToString(names);
  EXPECT_TRUE(names.count("ms.rendezvous.v1.RendezvousAdmin"));
  EXPECT_TRUE(names.count("grpc.health.v1.Health"));

  // The descriptors are served too: a client can discover the request types.
  refl::ServerReflectionRequest file_req;
  file_req.set_file_containing_symbol("ms.rendezvous.v1.Rendezvous");
  ASSERT_TRUE(stream->Write(file_req));
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_GT(resp.file_descriptor_response().file_descriptor_proto_size(), 0);
  EXPECT_THAT(resp.file_descriptor_response().file_descriptor_proto(0),
              ::testing::HasSubstr("ms/rendezvous/v1/rendezvous.proto"));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace ms_rendezvous::testing
