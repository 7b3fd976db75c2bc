#include "server/leader_election.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "glog/logging.h"

namespace ms_rendezvous::server {
namespace {

namespace pb = ::etcdserverpb;

// How often a standby re-reads the key even without a watch event (a watch that broke and was
// re-created may take a moment; this bounds the damage of any missed event).
constexpr absl::Duration kRecheck = absl::Seconds(1);

}  // namespace

LeaderElection::LeaderElection(etcd::EtcdClient* client, LeaderElectionOptions options)
    : client_(client), options_(std::move(options)) {}

LeaderElection::~LeaderElection() {
  Stop();
  keepalive_.reset();
}

void LeaderElection::Stop() {
  absl::MutexLock l(&mu_);
  stop_ = true;
}

absl::Status LeaderElection::EnsureLease() {
  {
    absl::MutexLock l(&mu_);
    if (lease_id_.load() != 0 && !lease_lost_) return absl::OkStatus();
    lease_lost_ = false;
  }
  keepalive_.reset();
  absl::StatusOr<pb::LeaseGrantResponse> lease = client_->LeaseGrant(options_.lease_ttl);
  if (!lease.ok()) return lease.status();
  lease_id_.store(lease->id());
  keepalive_ = client_->KeepAlive(lease->id(), absl::Seconds(lease->ttl()), [this](absl::Status st) {
    std::function<void(absl::Status)> on_lost;
    {
      absl::MutexLock l(&mu_);
      lease_lost_ = true;
      if (leading_) on_lost = on_lost_;
    }
    if (on_lost) on_lost(st);
  });
  return absl::OkStatus();
}

absl::StatusOr<core::EtcdFence> LeaderElection::Campaign(
    const std::function<void(const std::string& leader)>& on_standby, absl::Duration give_up) {
  absl::Time unreachable_since = absl::InfiniteFuture();
  std::optional<std::string> last_seen_leader;  // reported to on_standby when it changes
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      if (stop_) return absl::CancelledError("leader election stopped");
      key_changed_ = false;
    }
    absl::Status st = EnsureLease();
    pb::TxnResponse resp;
    if (st.ok()) {
      pb::TxnRequest txn;
      pb::Compare* free = txn.add_compare();
      free->set_key(options_.key);
      free->set_target(pb::Compare::CREATE);
      free->set_result(pb::Compare::EQUAL);
      free->set_create_revision(0);
      pb::PutRequest* put = txn.add_success()->mutable_request_put();
      put->set_key(options_.key);
      put->set_value(options_.advertise);
      put->set_lease(lease_id_.load());
      txn.add_failure()->mutable_request_range()->set_key(options_.key);
      absl::StatusOr<pb::TxnResponse> r = client_->Txn(txn);
      if (r.ok()) {
        resp = *std::move(r);
      } else {
        st = r.status();
      }
    }
    if (!st.ok()) {
      const absl::Time now = absl::Now();
      if (unreachable_since == absl::InfiniteFuture()) unreachable_since = now;
      if (now - unreachable_since > give_up) {
        return absl::UnavailableError(absl::StrCat(
            "leader election: etcd at ", client_->EndpointList(), " unreachable for ",
            absl::FormatDuration(now - unreachable_since), ": ", st.message()));
      }
      LOG(WARNING) << "leader election: " << st.message() << "; retrying";
      absl::SleepFor(kRecheck);
      continue;
    }
    unreachable_since = absl::InfiniteFuture();
    if (resp.succeeded()) {
      const int64_t lease = lease_id_.load();
      {
        absl::MutexLock l(&mu_);
        leading_ = true;
      }
      LOG(INFO) << "leader election: this daemon (" << options_.advertise << ") leads; key "
                << options_.key << " held by lease " << lease << " (ttl "
                << absl::FormatDuration(options_.lease_ttl) << ")";
      return core::EtcdFence::HeldByLease(options_.key, lease);
    }
    // Somebody else holds the key: note who, then wait for it to go away.
    std::string holder;
    int64_t holder_lease = 0;
    if (resp.responses_size() > 0 && resp.responses(0).response_range().kvs_size() > 0) {
      const auto& kv = resp.responses(0).response_range().kvs(0);
      holder = kv.value();
      holder_lease = kv.lease();
    }
    if (holder_lease != 0 && holder_lease == lease_id_.load()) {
      // Our own key from an earlier round whose answer was lost: we lead.
      absl::MutexLock l(&mu_);
      leading_ = true;
      return core::EtcdFence::HeldByLease(options_.key, holder_lease);
    }
    if (!last_seen_leader.has_value() || holder != *last_seen_leader) {
      last_seen_leader = holder;
      if (on_standby) on_standby(holder);
    }
    auto watch = client_->Watch(
        options_.key, "", resp.header().revision() + 1,
        [this](const std::vector<mvccpb::Event>& events, int64_t) {
          for (const auto& e : events) {
            if (e.type() == mvccpb::Event::DELETE) {
              absl::MutexLock l(&mu_);
              key_changed_ = true;
            }
          }
        },
        [this](absl::Status) {
          absl::MutexLock l(&mu_);
          key_changed_ = true;  // the watch ended: look again
        });
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](LeaderElection* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(e->mu_) {
              return e->key_changed_ || e->stop_;
            },
            this),
        watch.ok() ? kRecheck * 5 : kRecheck);
  }
}

void LeaderElection::WatchLeadership(std::function<void(absl::Status)> on_lost) {
  bool lost_already = false;
  {
    absl::MutexLock l(&mu_);
    on_lost_ = on_lost;
    lost_already = lease_lost_;
  }
  if (lost_already) on_lost(absl::UnavailableError("the leader lease was lost while taking over"));
}

absl::Status LeaderElection::Resign() {
  const int64_t lease = lease_id_.load();
  {
    absl::MutexLock l(&mu_);
    leading_ = false;  // a revoke is not a loss to report
  }
  keepalive_.reset();
  if (lease == 0) return absl::OkStatus();
  return client_->LeaseRevoke(lease, absl::Seconds(2));
}

absl::StatusOr<std::string> LeaderElection::CurrentLeader() {
  pb::RangeRequest req;
  req.set_key(options_.key);
  absl::StatusOr<pb::RangeResponse> r = client_->Range(req);
  if (!r.ok()) return r.status();
  return r->kvs_size() > 0 ? r->kvs(0).value() : std::string();
}

}  // namespace ms_rendezvous::server
