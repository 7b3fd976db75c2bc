// EtcdClient against real etcd 3.4 members: the hand-written protos interoperate (KV, Txn,
// Compact, leases, watches), Range pages at one revision, failover to the next endpoint, errors
// that name the endpoint and the operation, lease keep-alive and expiry, and a watch that
// survives the loss of the member it was on without missing or repeating an event.
#include "store/etcd/etcd_client.h"

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "etcd/etcd_cluster.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace ms_rendezvous::etcd {
namespace {

using ::ms_rendezvous::testing::EtcdCluster;
using ::ms_rendezvous::testing::IsOk;
using ::ms_rendezvous::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::unique_ptr<EtcdClient> MustClient(std::vector<std::string> endpoints,
                                       absl::Duration call_timeout = absl::Seconds(5)) {
  EtcdClientOptions o;
  o.endpoints = std::move(endpoints);
  o.call_timeout = call_timeout;
  o.dial_timeout = absl::Seconds(5);
  auto c = EtcdClient::Create(o);
  EXPECT_THAT(c, IsOk());
  return c.ok() ? *std::move(c) : nullptr;
}

// A port nothing listens on (bound, read and closed).
std::string DeadEndpoint() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
}

TEST(EtcdClientTest, PrefixEnd) {
  EXPECT_EQ(EtcdClient::PrefixEnd("/a/"), "/a0");
  EXPECT_EQ(EtcdClient::PrefixEnd("ab"), "ac");
  EXPECT_EQ(EtcdClient::PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(EtcdClient::PrefixEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
}

TEST(EtcdClientTest, RejectsBadEndpoints) {
  EtcdClientOptions o;
  EXPECT_THAT(EtcdClient::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no endpoints")));
  o.endpoints = {"https://10.0.0.1:2379"};
  EXPECT_THAT(EtcdClient::Create(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("is https:// but no TLS is configured")));
  o.endpoints = {"10.0.0.1"};
  EXPECT_THAT(EtcdClient::Create(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("'10.0.0.1' is not host:port")));
  o.endpoints = {"http://127.0.0.1:2379/"};
  auto c = EtcdClient::Create(o);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ((*c)->EndpointList(), "127.0.0.1:2379");
}

TEST(EtcdClientTest, KvTxnAndPagedRangeAtOneRevision) {
  MSR_REQUIRE_ETCD();
  auto cluster = EtcdCluster::Start(1);
  ASSERT_THAT(cluster, IsOk());
  auto client = MustClient((*cluster)->Endpoints());
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Connect(), IsOk());

  // Binary keys and values survive.
  const std::string bin_key("/t/k\0\xff", 6);
  const std::string bin_value("\0\x01\x80\xff", 4);
  ASSERT_THAT(client->Put(bin_key, bin_value), IsOk());
  etcdserverpb::RangeRequest get;
  get.set_key(bin_key);
  auto got = client->Range(get);
  ASSERT_THAT(got, IsOk());
  ASSERT_EQ(got->kvs_size(), 1);
  EXPECT_EQ(got->kvs(0).value(), bin_value);
  EXPECT_GT(got->kvs(0).create_revision(), 0);

  for (int i = 0; i < 25; ++i) {
    ASSERT_THAT(client->Put(absl::StrCat("/t/p/", 100 + i), absl::StrCat("v", i)), IsOk());
  }
  // A scan in pages of 4 reads at the revision of its first page: writes made after the first
  // page (by the visitor itself) are not seen.
  std::vector<std::string> seen;
  int64_t at = 0;
  auto rev = client->RangeAll("/t/p/", EtcdClient::PrefixEnd("/t/p/"), 0, 4, absl::Seconds(5),
                              [&](const mvccpb::KeyValue& kv) {
                                seen.push_back(kv.key());
                                if (seen.size() == 1) {
                                  EXPECT_THAT(client->Put("/t/p/999", "late"), IsOk());
                                  EXPECT_THAT(client->DeleteRange("/t/p/124", ""), IsOk());
                                }
                                return absl::OkStatus();
                              });
  ASSERT_THAT(rev, IsOk());
  at = *rev;
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "/t/p/100");
  EXPECT_EQ(seen.back(), "/t/p/124");
  // The same scan at the newest revision sees both writes.
  seen.clear();
  rev = client->RangeAll("/t/p/", EtcdClient::PrefixEnd("/t/p/"), 0, 1000, absl::Seconds(5),
                         [&](const mvccpb::KeyValue& kv) {
                           seen.push_back(kv.key());
                           return absl::OkStatus();
                         });
  ASSERT_THAT(rev, IsOk());
  EXPECT_GT(*rev, at);
  EXPECT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.back(), "/t/p/999");

  // Txn: a compare that holds runs `success`, one that does not runs `failure`.
  etcdserverpb::TxnRequest txn;
  etcdserverpb::Compare* cmp = txn.add_compare();
  cmp->set_key("/t/p/100");
  cmp->set_target(etcdserverpb::Compare::VALUE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_value("v0");
  txn.add_success()->mutable_request_put()->set_key("/t/txn");
  txn.mutable_success(0)->mutable_request_put()->set_value("yes");
  txn.add_failure()->mutable_request_range()->set_key("/t/p/100");
  auto t = client->Txn(txn);
  ASSERT_THAT(t, IsOk());
  EXPECT_TRUE(t->succeeded());
  cmp->set_value("other");
  t = client->Txn(txn);
  ASSERT_THAT(t, IsOk());
  EXPECT_FALSE(t->succeeded());
  ASSERT_EQ(t->responses_size(), 1);
  EXPECT_EQ(t->responses(0).response_range().kvs(0).value(), "v0");

  // etcd's one-write-per-key rule, as the store relies on it.
  etcdserverpb::TxnRequest dup;
  dup.add_success()->mutable_request_delete_range()->set_key("/t/p/");
  dup.mutable_success(0)->mutable_request_delete_range()->set_range_end(
      EtcdClient::PrefixEnd("/t/p/"));
  dup.add_success()->mutable_request_put()->set_key("/t/p/100");
  EXPECT_THAT(client->Txn(dup),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate key")));

  // Compact: the old revision is gone for reads.
  ASSERT_THAT(client->Compact(at, /*physical=*/true), IsOk());
  etcdserverpb::RangeRequest old;
  old.set_key("/t/p/100");
  old.set_revision(at - 1);
  EXPECT_THAT(client->Range(old), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("compacted")));
}

TEST(EtcdClientTest, FailsOverAndNamesEndpointsAndOperation) {
  MSR_REQUIRE_ETCD();
  auto cluster = EtcdCluster::Start(1);
  ASSERT_THAT(cluster, IsOk());
  const std::string dead = DeadEndpoint();
  auto client = MustClient({dead, (*cluster)->Endpoint(0)});
  ASSERT_NE(client, nullptr);
  ASSERT_THAT(client->Connect(), IsOk());
  // Reads and writes both go through: the dead endpoint refuses connections, so even a write
  // may move on (it never left the process).
  ASSERT_THAT(client->Put("/f/k", "v"), IsOk());
  etcdserverpb::RangeRequest get;
  get.set_key("/f/k");
  ASSERT_THAT(client->Range(get), IsOk());

  auto nobody = MustClient({dead, DeadEndpoint()}, absl::Seconds(2));
  ASSERT_NE(nobody, nullptr);
  auto err = nobody->Put("/f/k", "v");
  EXPECT_THAT(
      err, StatusIs(absl::StatusCode::kUnavailable, AllOf(HasSubstr("etcd Put"), HasSubstr(dead))));
  const absl::Time start = absl::Now();
  EtcdClientOptions o;
  o.endpoints = {dead};
  o.dial_timeout = absl::Milliseconds(500);
  auto one = EtcdClient::Create(o);
  ASSERT_THAT(one, IsOk());
  EXPECT_THAT((*one)->Connect(), StatusIs(absl::StatusCode::kUnavailable,
                                          AllOf(HasSubstr("cannot reach etcd at " + dead),
                                                HasSubstr("within 500ms"))));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(EtcdClientTest, LeaseKeepAliveExpiryAndRevoke) {
  MSR_REQUIRE_ETCD();
  auto cluster = EtcdCluster::Start(1);
  ASSERT_THAT(cluster, IsOk());
  auto client = MustClient((*cluster)->Endpoints());
  ASSERT_NE(client, nullptr);

  auto grant = client->LeaseGrant(absl::Seconds(2));
  ASSERT_THAT(grant, IsOk());
  const int64_t lease = grant->id();
  ASSERT_GT(lease, 0);
  EXPECT_EQ(grant->ttl(), 2);
  ASSERT_THAT(client->Put("/l/key", "v", lease), IsOk());

  std::atomic<int> lost{0};
  auto keeper = client->KeepAlive(lease, absl::Seconds(2), [&](absl::Status) { ++lost; });
  absl::SleepFor(absl::Seconds(4));  // twice the TTL: alive only thanks to the renewals
  auto ttl = client->LeaseTimeToLive(lease, /*keys=*/true);
  ASSERT_THAT(ttl, IsOk());
  EXPECT_GT(ttl->ttl(), 0);
  ASSERT_EQ(ttl->keys_size(), 1);
  EXPECT_EQ(ttl->keys(0), "/l/key");
  EXPECT_GE(keeper->renewals(), 3);
  EXPECT_EQ(lost.load(), 0);

  // Without renewals the lease expires and takes its key with it.
  keeper->Stop();
  absl::SleepFor(absl::Seconds(3.5));
  ttl = client->LeaseTimeToLive(lease);
  ASSERT_THAT(ttl, IsOk());
  EXPECT_EQ(ttl->ttl(), -1);
  etcdserverpb::RangeRequest get;
  get.set_key("/l/key");
  auto gone = client->Range(get);
  ASSERT_THAT(gone, IsOk());
  EXPECT_EQ(gone->kvs_size(), 0);
  EXPECT_EQ(lost.load(), 0);  // stopped: no callback

  // A keep-alive of a lease that is revoked under it reports NotFound once.
  grant = client->LeaseGrant(absl::Seconds(5));
  ASSERT_THAT(grant, IsOk());
  absl::Notification notified;
  absl::Status why;
  auto k2 = client->KeepAlive(grant->id(), absl::Seconds(5), [&](absl::Status s) {
    why = s;
    notified.Notify();
  });
  ASSERT_THAT(client->LeaseRevoke(grant->id()), IsOk());
  ASSERT_TRUE(notified.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_THAT(why, StatusIs(absl::StatusCode::kNotFound, HasSubstr("expired or was revoked")));
  EXPECT_THAT(client->LeaseRevoke(grant->id()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("etcd LeaseRevoke on")));
}

// Events as "PUT key=value" / "DELETE key", in delivery order.
class EventLog {
 public:
  void Add(const std::vector<mvccpb::Event>& events) {
    absl::MutexLock l(&mu_);
    for (const mvccpb::Event& e : events) {
      lines_.push_back(e.type() == mvccpb::Event::PUT
                           ? absl::StrCat("PUT ", e.kv().key(), "=", e.kv().value())
                           : absl::StrCat("DELETE ", e.kv().key()));
    }
  }
  bool WaitFor(size_t n, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto enough = [&]() { return lines_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  std::vector<std::string> lines() {
    absl::MutexLock l(&mu_);
    return lines_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_;
};

TEST(EtcdClientTest, WatchFromRevisionSurvivesLosingItsMember) {
  MSR_REQUIRE_ETCD();
  auto cluster = EtcdCluster::Start(3);
  ASSERT_THAT(cluster, IsOk());
  EtcdCluster& c = **cluster;
  auto client = MustClient(c.Endpoints(), absl::Seconds(3));
  ASSERT_NE(client, nullptr);

  auto first = client->Put("/w/a", "1");
  ASSERT_THAT(first, IsOk());
  const int64_t from = first->header().revision();
  ASSERT_THAT(client->Put("/w/b", "2"), IsOk());
  ASSERT_THAT(client->Put("/other", "x"), IsOk());  // outside the watched prefix
  ASSERT_THAT(client->DeleteRange("/w/a", ""), IsOk());

  EventLog log;
  std::atomic<int> ended{0};
  // The watch starts on the preferred endpoint, member 0.
  auto watch = client->Watch(
      "/w/", EtcdClient::PrefixEnd("/w/"), from,
      [&](const std::vector<mvccpb::Event>& ev, int64_t) { log.Add(ev); },
      [&](absl::Status) { ++ended; });
  ASSERT_THAT(watch, IsOk());
  // History from `from` on is replayed.
  ASSERT_TRUE(log.WaitFor(3, absl::Seconds(10)));
  EXPECT_THAT(log.lines(), ::testing::ElementsAre("PUT /w/a=1", "PUT /w/b=2", "DELETE /w/a"));

  // The member the watch is on dies; writes go on through the others; the watch moves to
  // another member and resumes right after the last event it delivered.
  c.Kill(0);
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<etcdserverpb::PutResponse> put;
    for (int attempt = 0; attempt < 20; ++attempt) {
      put = client->Put(absl::StrCat("/w/n", i), absl::StrCat(i));
      if (put.ok()) break;
      absl::SleepFor(absl::Milliseconds(200));
    }
    ASSERT_THAT(put, IsOk());
  }
  ASSERT_TRUE(log.WaitFor(8, absl::Seconds(20))) << ::testing::PrintToString(log.lines());
  EXPECT_THAT(log.lines(),
              ::testing::ElementsAre("PUT /w/a=1", "PUT /w/b=2", "DELETE /w/a", "PUT /w/n0=0",
                                     "PUT /w/n1=1", "PUT /w/n2=2", "PUT /w/n3=3", "PUT /w/n4=4"));
  EXPECT_EQ(ended.load(), 0);
  (*watch)->Stop();

  // A watch from a compacted revision ends at once with OutOfRange (etcd creates the watcher,
  // then cancels it).
  auto now = client->Put("/w/last", "z");
  ASSERT_THAT(now, IsOk());
  ASSERT_THAT(client->Compact(now->header().revision(), true), IsOk());
  absl::Notification stale_ended;
  absl::Status stale_status;
  std::atomic<int> stale_events{0};
  auto stale = client->Watch(
      "/w/", EtcdClient::PrefixEnd("/w/"), from,
      [&](const std::vector<mvccpb::Event>&, int64_t) { ++stale_events; },
      [&](absl::Status s) {
        stale_status = s;
        stale_ended.Notify();
      });
  if (stale.ok()) {
    ASSERT_TRUE(stale_ended.WaitForNotificationWithTimeout(absl::Seconds(10)));
  } else {
    stale_status = stale.status();
  }
  EXPECT_THAT(stale_status, StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("compacted")));
  EXPECT_EQ(stale_events.load(), 0);
}

}  // namespace
}  // namespace ms_rendezvous::etcd
