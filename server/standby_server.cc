#include "server/standby_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/byte_buffer.h"
#include "ms/rendezvous/v1/rendezvous.pb.h"
#include "server/tls.h"

namespace ms_rendezvous::server {
namespace {

constexpr char kHealthCheck[] = "/grpc.health.v1.Health/Check";
constexpr char kServerInfo[] = "/ms.rendezvous.v1.RendezvousAdmin/GetServerInfo";

template <typename Message>
grpc::ByteBuffer Serialize(const Message& m) {
  grpc::ByteBuffer buffer;
  bool own = false;
  grpc::SerializationTraits<Message>::Serialize(m, &buffer, &own);
  return buffer;
}

}  // namespace

struct StandbyServer::Impl : public grpc::CallbackGenericService {
  std::unique_ptr<grpc::Server> server;
  std::string store;
  absl::Mutex mu;
  std::string self ABSL_GUARDED_BY(mu);
  std::string leader ABSL_GUARDED_BY(mu);

  std::string Self() {
    absl::MutexLock l(&mu);
    return self;
  }

  std::string Leader() {
    absl::MutexLock l(&mu);
    return leader;
  }

  // One call: answered from what the standby knows, never from state.
  class Reactor final : public grpc::ServerGenericBidiReactor {
   public:
    Reactor(Impl* impl, std::string method) : impl_(impl), method_(std::move(method)) {
      if (method_ == kHealthCheck || method_ == kServerInfo) {
        StartRead(&request_);
        return;
      }
      const std::string leader = impl_->Leader();
      Finish(grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          leader.empty()
              ? absl::StrCat("this ms-rendezvousd (", impl_->Self(),
                             ") is a standby and no leader is elected yet; retry shortly")
              : absl::StrCat("this ms-rendezvousd (", impl_->Self(),
                             ") is a standby; the leader is ", leader,
                             ": list every daemon in MS_SCHED_HOST so clients move there")));
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "no request"));
        return;
      }
      if (method_ == kHealthCheck) {
        grpc::health::v1::HealthCheckRequest req;
        grpc::health::v1::HealthCheckResponse resp;
        if (!grpc::SerializationTraits<grpc::health::v1::HealthCheckRequest>::Deserialize(
                 &request_, &req)
                 .ok()) {
          Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad HealthCheckRequest"));
          return;
        }
        // The process is healthy; it does not serve members.
        resp.set_status(req.service().empty() ? grpc::health::v1::HealthCheckResponse::SERVING
                                              : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
        response_ = Serialize(resp);
      } else {
        ::ms::rendezvous::v1::ServerInfo info;
        info.set_role("standby");
        info.set_leader(impl_->Leader());
        info.set_store(impl_->store);
        info.set_self(impl_->Self());
        response_ = Serialize(info);
      }
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void OnDone() override { delete this; }

   private:
    Impl* const impl_;
    const std::string method_;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer response_;
  };

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new Reactor(this, ctx->method());
  }
};

absl::StatusOr<std::unique_ptr<StandbyServer>> StandbyServer::Start(const ServerOptions& options,
                                                                    std::string self,
                                                                    std::string store) {
  auto impl = std::make_unique<Impl>();
  {
    absl::MutexLock l(&impl->mu);
    impl->self = std::move(self);
  }
  impl->store = std::move(store);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, ServerCredentialsFor(options.tls), &port);
  builder.RegisterCallbackGenericService(impl.get());
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.listen,
        ": the port is in use or the address is not local (is another ms-rendezvousd running?)"));
  }
  return std::unique_ptr<StandbyServer>(new StandbyServer(std::move(impl), port));
}

StandbyServer::StandbyServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {}

StandbyServer::~StandbyServer() { Shutdown(); }

void StandbyServer::SetLeader(const std::string& leader) {
  absl::MutexLock l(&impl_->mu);
  impl_->leader = leader;
}

std::string StandbyServer::leader() { return impl_->Leader(); }

void StandbyServer::SetSelf(const std::string& self) {
  absl::MutexLock l(&impl_->mu);
  impl_->self = self;
}

void StandbyServer::Shutdown() {
  if (impl_->server == nullptr) return;
  impl_->server->Shutdown(std::chrono::system_clock::now());
  impl_->server->Wait();
  impl_->server.reset();
}

}  // namespace ms_rendezvous::server
