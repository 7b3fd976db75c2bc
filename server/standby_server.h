// StandbyServer: what a daemon that does not lead serves on its port while it waits to take
// over (see server/leader_election.h).
//
// Every rendezvous, job-store and admin call is answered at once with UNAVAILABLE naming the
// leader, so a client whose MS_SCHED_HOST lists several daemons moves on to the next address
// (it does so on every failed attempt). Exceptions, so operators and load balancers see the
// standby for what it is:
//   * grpc.health.v1.Health/Check: SERVING for "" (the process is fine), NOT_SERVING for
//     "ms.rendezvous.v1.Rendezvous" (it serves no members; Kubernetes readiness uses this);
//   * RendezvousAdmin/GetServerInfo: role "standby" and the leader's address.
// No state is loaded: the standby reads etcd only when it wins the election, after this server
// has been shut down and the real RendezvousServer takes the port.
#ifndef MS_RENDEZVOUS_SERVER_STANDBY_SERVER_H_
#define MS_RENDEZVOUS_SERVER_STANDBY_SERVER_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/server.h"

namespace ms_rendezvous::server {

class StandbyServer {
 public:
  // Binds options.listen (port 0 picks one) with the same transport security and limits as the
  // leader would use. `store` describes the state store for GetServerInfo.
  static absl::StatusOr<std::unique_ptr<StandbyServer>> Start(const ServerOptions& options,
                                                              std::string self,
                                                              std::string store);
  ~StandbyServer();

  int port() const { return port_; }
  // The leader clients are sent to ("" while unknown).
  void SetLeader(const std::string& leader);
  // This daemon's advertised address (known once the port is bound).
  void SetSelf(const std::string& self);
  std::string leader();
  // Stops serving and releases the port (the leader's server binds it next).
  void Shutdown();

  struct Impl;

 private:
  explicit StandbyServer(std::unique_ptr<Impl> impl, int port);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_STANDBY_SERVER_H_
