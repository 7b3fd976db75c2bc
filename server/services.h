// The two gRPC services of the daemon. Thin: each handler converts proto <-> core and calls the
// JobRegistry; no rendezvous logic lives here.
#ifndef MS_RENDEZVOUS_SERVER_SERVICES_H_
#define MS_RENDEZVOUS_SERVER_SERVICES_H_

#include "core/job_registry.h"
#include "server/auth.h"
#include "server/server.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"

namespace ms_rendezvous::server {

// Number of Join calls completed by this process (any outcome), for memory housekeeping.
uint64_t CompletedJoinCalls();

// Worker-facing: Session (join + heartbeats + pushed events on one stream), and the unary
// Join (register + wait, one round trip, parked in the core), Heartbeat, Leave.
class RendezvousService final : public ::ms::rendezvous::v1::Rendezvous::CallbackService {
 public:
  explicit RendezvousService(core::JobRegistry* registry) : registry_(registry) {}

  grpc::ServerBidiReactor<::ms::rendezvous::v1::SessionRequest,
                          ::ms::rendezvous::v1::SessionResponse>*
  Session(grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx,
                                 const ::ms::rendezvous::v1::JoinRequest* req,
                                 ::ms::rendezvous::v1::JoinResponse* resp) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const ::ms::rendezvous::v1::HeartbeatRequest* req,
                                      ::ms::rendezvous::v1::HeartbeatResponse* resp) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx,
                                  const ::ms::rendezvous::v1::LeaveRequest* req,
                                  ::ms::rendezvous::v1::LeaveResponse* resp) override;

 private:
  core::JobRegistry* const registry_;
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
