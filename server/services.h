// The two gRPC services of the daemon. Thin: each handler converts proto <-> core and calls the
// JobRegistry; no rendezvous logic lives here.
#ifndef MS_RENDEZVOUS_SERVER_SERVICES_H_
#define MS_RENDEZVOUS_SERVER_SERVICES_H_

#include <memory>
#include <thread>
#include <vector>

#include "core/job_registry.h"
#include "grpcpp/completion_queue.h"
#include "server/auth.h"
#include "server/server.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"

namespace ms_rendezvous::server {

// Number of Join calls completed by this process (any outcome), for memory housekeeping.
uint64_t CompletedJoinCalls();

// Worker-facing: Session (join + heartbeats + pushed events on one stream), and the unary
// Join (register + wait, one round trip, parked in the core), Heartbeat, Leave.
//
// Session and Join, the calls that stay open while a job forms (and a session for the job's
// lifetime), are served by SessionServer on its own completion queues (see session_service.cc
// for why); Heartbeat and Leave use the callback API.
using RendezvousServiceBase = ::ms::rendezvous::v1::Rendezvous::WithAsyncMethod_Session<
    ::ms::rendezvous::v1::Rendezvous::WithAsyncMethod_Join<
        ::ms::rendezvous::v1::Rendezvous::WithCallbackMethod_Heartbeat<
            ::ms::rendezvous::v1::Rendezvous::WithCallbackMethod_Leave<
                ::ms::rendezvous::v1::Rendezvous::Service>>>>;

class RendezvousService final : public RendezvousServiceBase {
 public:
  explicit RendezvousService(core::JobRegistry* registry) : registry_(registry) {}

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const ::ms::rendezvous::v1::HeartbeatRequest* req,
                                      ::ms::rendezvous::v1::HeartbeatResponse* resp) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx,
                                  const ::ms::rendezvous::v1::LeaveRequest* req,
                                  ::ms::rendezvous::v1::LeaveResponse* resp) override;

 private:
  core::JobRegistry* const registry_;
};

// A completion-queue tag of SessionServer's queues: what runs when the operation completes.
class QueueTag {
 public:
  virtual void Run(bool ok) = 0;

 protected:
  ~QueueTag() = default;
};

// The QueueTag that calls `(call->*fn)(ok)`.
template <typename Call>
class MethodTag final : public QueueTag {
 public:
  MethodTag(Call* call, void (Call::*fn)(bool)) : call_(call), fn_(fn) {}
  void Run(bool ok) override { (call_->*fn_)(ok); }
  // The tag to hand to gRPC (the queue's thread casts it back to QueueTag*).
  void* tag() { return static_cast<QueueTag*>(this); }

 private:
  Call* const call_;
  void (Call::*const fn_)(bool);
};

// Post one request for a new Session stream / Join call on `cq` (session_service.cc,
// rendezvous_service.cc). Each accepted call posts the next one.
void PostSessionCall(RendezvousService* service, core::JobRegistry* registry,
                     grpc::ServerCompletionQueue* cq);
void PostJoinCall(RendezvousService* service, core::JobRegistry* registry,
                  grpc::ServerCompletionQueue* cq);

// Serves RendezvousService's Session streams and Join calls on `queues` (from ServerBuilder::
// AddCompletionQueue), one thread each; every call stays on the queue it arrived on. Start()
// after the server started; Shutdown() after grpc::Server::Shutdown() returned (it shuts the
// queues down, drains them and joins the threads). Idempotent.
class SessionServer {
 public:
  SessionServer(RendezvousService* service, core::JobRegistry* registry,
                std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues);
  ~SessionServer();
  SessionServer(const SessionServer&) = delete;
  SessionServer& operator=(const SessionServer&) = delete;

  void Start();
  void Shutdown();

 private:
  RendezvousService* const service_;
  core::JobRegistry* const registry_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> threads_;
  bool shut_down_ = false;
};

// Ops-facing: ListJobs, GetJob, ListMembers (paged), WatchJob (stream), and the operator calls
// CreateJob, AbortJob, DeleteJob. Authorization per server/auth.h.
class AdminService final : public ::ms::rendezvous::v1::RendezvousAdmin::CallbackService {
 public:
  AdminService(core::JobRegistry* registry, const AdminAuth* auth,
               const ServerIdentity* identity)
      : registry_(registry), auth_(auth), identity_(identity) {}

  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const ::ms::rendezvous::v1::ListJobsRequest* req,
                                     ::ms::rendezvous::v1::ListJobsResponse* resp) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const ::ms::rendezvous::v1::GetJobRequest* req,
                                   ::ms::rendezvous::v1::GetJobResponse* resp) override;
  grpc::ServerUnaryReactor* ListMembers(grpc::CallbackServerContext* ctx,
                                        const ::ms::rendezvous::v1::ListMembersRequest* req,
                                        ::ms::rendezvous::v1::ListMembersResponse* resp) override;
  grpc::ServerWriteReactor<::ms::rendezvous::v1::JobEvent>* WatchJob(
      grpc::CallbackServerContext* ctx, const ::ms::rendezvous::v1::WatchJobRequest* req) override;
  grpc::ServerUnaryReactor* CreateJob(grpc::CallbackServerContext* ctx,
                                      const ::ms::rendezvous::v1::CreateJobRequest* req,
                                      ::ms::rendezvous::v1::CreateJobResponse* resp) override;
  grpc::ServerUnaryReactor* AbortJob(grpc::CallbackServerContext* ctx,
                                     const ::ms::rendezvous::v1::AbortJobRequest* req,
                                     ::ms::rendezvous::v1::AbortJobResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteJob(grpc::CallbackServerContext* ctx,
                                      const ::ms::rendezvous::v1::DeleteJobRequest* req,
                                      ::ms::rendezvous::v1::DeleteJobResponse* resp) override;
  grpc::ServerUnaryReactor* ListJobKeys(grpc::CallbackServerContext* ctx,
                                        const ::ms::rendezvous::v1::ListJobKeysRequest* req,
                                        ::ms::rendezvous::v1::ListJobKeysResponse* resp) override;
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* ctx,
                                          const ::ms::rendezvous::v1::GetServerInfoRequest* req,
                                          ::ms::rendezvous::v1::ServerInfo* resp) override;

 private:
  // The status API's read check for one job: the admin token, or that job's own token.
  absl::Status CheckRead(const grpc::ServerContextBase& ctx, const std::string& job_id);

  core::JobRegistry* const registry_;
  const AdminAuth* const auth_;          // not owned
  const ServerIdentity* const identity_;  // not owned
};

// Worker-facing job key/value store and barriers. Blocking calls are parked in the core.
class JobStoreService final : public ::ms::rendezvous::v1::JobStore::CallbackService {
 public:
  explicit JobStoreService(core::JobRegistry* registry) : registry_(registry) {}

  grpc::ServerUnaryReactor* Set(grpc::CallbackServerContext* ctx,
                                const ::ms::rendezvous::v1::KvSetRequest* req,
                                ::ms::rendezvous::v1::KvSetResponse* resp) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx,
                                const ::ms::rendezvous::v1::KvGetRequest* req,
                                ::ms::rendezvous::v1::KvGetResponse* resp) override;
  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext* ctx,
                                 const ::ms::rendezvous::v1::KvWaitRequest* req,
                                 ::ms::rendezvous::v1::KvWaitResponse* resp) override;
  grpc::ServerUnaryReactor* Add(grpc::CallbackServerContext* ctx,
                                const ::ms::rendezvous::v1::KvAddRequest* req,
                                ::ms::rendezvous::v1::KvAddResponse* resp) override;
  grpc::ServerUnaryReactor* CompareSet(grpc::CallbackServerContext* ctx,
                                       const ::ms::rendezvous::v1::KvCompareSetRequest* req,
                                       ::ms::rendezvous::v1::KvCompareSetResponse* resp) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx,
                                   const ::ms::rendezvous::v1::KvDeleteRequest* req,
                                   ::ms::rendezvous::v1::KvDeleteResponse* resp) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const ::ms::rendezvous::v1::KvListRequest* req,
                                 ::ms::rendezvous::v1::KvListResponse* resp) override;
  grpc::ServerUnaryReactor* NumKeys(grpc::CallbackServerContext* ctx,
                                    const ::ms::rendezvous::v1::KvNumKeysRequest* req,
                                    ::ms::rendezvous::v1::KvNumKeysResponse* resp) override;
  grpc::ServerUnaryReactor* Barrier(grpc::CallbackServerContext* ctx,
                                    const ::ms::rendezvous::v1::BarrierRequest* req,
                                    ::ms::rendezvous::v1::BarrierResponse* resp) override;

 private:
  core::JobRegistry* const registry_;
};

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_SERVICES_H_
