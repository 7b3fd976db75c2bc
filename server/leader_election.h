// LeaderElection: one active daemon among several sharing an etcd cluster (issue "High
// availability on etcd").
//
// The leader is whoever holds the key <prefix>leader, attached to its own etcd lease. Its value
// is the address clients should use for it (--advertise). The protocol, per daemon:
//
//            +-----------+  Txn: create_revision(leader) == 0 ?  put(leader, addr, lease)
//   start -->| CAMPAIGN  |-------------------------------------------------------+
//            +-----------+                                                       | won
//              ^    | lost: read the holder, watch the key                       v
//              |    v                                                      +-----------+
//            +-----------+  key deleted (holder's lease expired / revoked) |  LEADING  |
//            |  STANDBY  |------------------------------------------------>|  (fenced) |
//            +-----------+                                                 +-----------+
//                                                                                | lease lost
//                                                                                v
//                                                                       exit (systemd restarts
//                                                                       the daemon as a standby)
//
// Safety does not rest on timing: every write of the leader's EtcdStateStore carries the fence
// "leader key still held by my lease" in its Txn, so a deposed leader (paused longer than the
// lease TTL, partitioned) cannot write even before it notices. Liveness: a standby takes over
// within the lease TTL plus one campaign round after the leader died.
#ifndef MS_RENDEZVOUS_SERVER_LEADER_ELECTION_H_
#define MS_RENDEZVOUS_SERVER_LEADER_ELECTION_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "store/etcd/etcd_client.h"
#include "store/etcd/etcd_state_store.h"

namespace ms_rendezvous::server {

struct LeaderElectionOptions {
  // The election key, e.g. "/ms-rendezvous/leader".
  std::string key;
  // This daemon's address for clients ("HOST:PORT"); the leader key's value.
  std::string advertise;
  // Lease TTL: a dead leader is replaced after at most this (plus a campaign round). Whole
  // seconds, >= 2 s (etcd's minimum TTL is larger than 1 s in practice).
  absl::Duration lease_ttl = absl::Seconds(5);
};

class LeaderElection {
 public:
  LeaderElection(etcd::EtcdClient* client, LeaderElectionOptions options);
  ~LeaderElection();  // Stops the keep-alive (does not revoke; see Resign()).

  // Blocks until this daemon is the leader, or until Stop(). `on_standby` runs (on this thread)
  // whenever another daemon is seen holding the key, with its address. Returns the fence every
  // write must carry; Cancelled after Stop(); Unavailable when etcd cannot be reached for longer
  // than `give_up` (the caller exits and is restarted).
  absl::StatusOr<core::EtcdFence> Campaign(
      const std::function<void(const std::string& leader)>& on_standby,
      absl::Duration give_up = absl::Minutes(5));

  // After Campaign() won: `on_lost` runs once (on the keep-alive thread) when the lease is gone
  // or could not be renewed for a whole TTL.
  void WatchLeadership(std::function<void(absl::Status)> on_lost);

  // Graceful hand-over (SIGTERM): revokes the lease, which deletes the key, so a standby takes
  // over at once instead of after the TTL.
  absl::Status Resign();

  // Makes Campaign() return Cancelled (from another thread, e.g. on SIGTERM).
  void Stop();

  // The current holder's address ("" when nobody leads), read from etcd.
  absl::StatusOr<std::string> CurrentLeader();

  int64_t lease_id() const { return lease_id_.load(); }

 private:
  // Grants a lease and starts keeping it alive (replacing a lost one).
  absl::Status EnsureLease();

  etcd::EtcdClient* const client_;
  const LeaderElectionOptions options_;
  std::atomic<int64_t> lease_id_{0};

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool key_changed_ ABSL_GUARDED_BY(mu_) = false;  // the watched holder went away
  bool lease_lost_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(absl::Status)> on_lost_ ABSL_GUARDED_BY(mu_);
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<etcd::EtcdLeaseKeepAlive> keepalive_;
};

}  // namespace ms_rendezvous::server

#endif  // MS_RENDEZVOUS_SERVER_LEADER_ELECTION_H_
