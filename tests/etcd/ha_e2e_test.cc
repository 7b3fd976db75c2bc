// High availability end to end (issue 9): a real 3-member etcd cluster on loopback, two
// ms-rendezvousd processes with --store=etcd (one leads, one stands by), ms-rendezvous-probe
// workers and an in-process client library member, all given MS_SCHED_HOST=<A>,<B>.
//
//   * leader kill -9 while the job forms (8 of 16 joined): formation completes through the new
//     leader, ranks unchanged, no member registered twice;
//   * leader kill -9 after completion: every session resumes on the new leader, nobody is
//     declared dead, the job's KV survives;
//   * one etcd member killed: nothing visible; quorum lost: nothing is acknowledged, and the
//     job carries on once the quorum is back;
//   * a leader paused (SIGSTOP) longer than its lease is deposed: after SIGCONT its write is
//     not acknowledged and not stored, and it restarts itself as a standby.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../e2e/subprocess.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "etcd_cluster.h"
#include "gtest/gtest.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "ms_rendezvous/client.h"

namespace ms_rendezvous::testing {
namespace {

namespace pb = ::ms::rendezvous::v1;
using Env = Subprocess::Env;

constexpr char kTtl[] = "2s";

// One ms-rendezvousd on a fixed free port (so it is listed in MS_SCHED_HOST before it starts).
class HaDaemon {
 public:
  HaDaemon(const std::vector<std::string>& etcd, const std::string& prefix)
      : port_(FreePort()) {
    proc_ = std::make_unique<Subprocess>(
        "ms-rendezvousd",
        std::vector<std::string>{"--listen", absl::StrCat("127.0.0.1:", port_), "--store", "etcd",
                                 "--etcd-endpoints", absl::StrJoin(etcd, ","), "--etcd-prefix",
                                 prefix, "--leader-lease-ttl", kTtl},
        Env{});
    auto channel = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
    admin_ = pb::RendezvousAdmin::NewStub(channel);
    kv_ = pb::JobStore::NewStub(channel);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  Subprocess& proc() { return *proc_; }
  pb::JobStore::Stub& kv() { return *kv_; }

  // "leader", "standby", or "" when it does not answer.
  std::string Role() {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    pb::ServerInfo info;
    if (!admin_->GetServerInfo(&ctx, pb::GetServerInfoRequest(), &info).ok()) return "";
    return info.role();
  }
  bool WaitRole(const std::string& role, absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (Role() == role) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  absl::StatusOr<pb::GetJobResponse> Job(const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    pb::GetJobRequest req;
    req.set_job_id(id);
    req.set_max_members(1000);
    pb::GetJobResponse resp;
    grpc::Status st = admin_->GetJob(&ctx, req, &resp);
    if (!st.ok()) return absl::UnavailableError(st.error_message());
    return resp;
  }

 private:
  int port_;
  std::unique_ptr<Subprocess> proc_;
  std::unique_ptr<pb::RendezvousAdmin::Stub> admin_;
  std::unique_ptr<pb::JobStore::Stub> kv_;
};

class HaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MSR_REQUIRE_ETCD();
    auto c = EtcdCluster::Start(3);
    ASSERT_TRUE(c.ok()) << c.status();
    etcd_ = *std::move(c);
    prefix_ = absl::StrCat("/ha-", getpid(), "-", counter_++, "/");
    a_ = std::make_unique<HaDaemon>(etcd_->Endpoints(), prefix_);
    ASSERT_TRUE(a_->WaitRole("leader")) << a_->proc().Stderr();
    b_ = std::make_unique<HaDaemon>(etcd_->Endpoints(), prefix_);
    ASSERT_TRUE(b_->WaitRole("standby")) << b_->proc().Stderr();
  }

  Env MemberEnv(const std::string& job, int n, int node) const {
    return Env{{"MS_SCHED_HOST", a_->address() + "," + b_->address()},
               {"MS_ROLE", "MS_WORKER"},
               {"MS_WORKER_NUM", std::to_string(n)},
               {"MS_NODE_ID", std::to_string(node)},
               {"MS_JOB_ID", job},
               {"MS_TOPO_TIMEOUT", "120"}};
  }
  std::unique_ptr<Subprocess> Probe(const std::string& job, int n, int node) {
    return std::make_unique<Subprocess>("ms-rendezvous-probe",
                                        std::vector<std::string>{"--hold", "120"},
                                        MemberEnv(job, n, node));
  }
  // An in-process member (client library) for the KV checks.
  std::unique_ptr<Client> LibraryMember(const std::string& job, int n, int node) {
    ClientOptions o;
    o.role = Role::kWorker;
    o.sched_host = a_->address() + "," + b_->address();
    o.worker_num = n;
    o.node_id = std::to_string(node);
    o.job_id = job;
    o.topo_timeout = absl::Seconds(120);
    auto c = Client::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // Waits until `d` reports job `id` complete with every member active and connected.
  bool WaitAllActive(HaDaemon& d, const std::string& id, int n, std::string* last,
                     absl::Duration timeout = absl::Seconds(60)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      auto job = d.Job(id);
      if (job.ok()) {
        int ok = 0;
        for (const auto& m : job->members()) {
          ok += m.state() == pb::MEMBER_STATE_ACTIVE && m.connected();
        }
        *last = job->DebugString();
        if (job->job().state() == pb::JOB_STATE_COMPLETE && ok == n) return true;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  static int counter_;
  std::unique_ptr<EtcdCluster> etcd_;
  std::string prefix_;
  std::unique_ptr<HaDaemon> a_, b_;
};
int HaTest::counter_ = 0;

int RankOf(const std::string& out) {
  for (const std::string& line : LinesWith(out, "\"rank\"")) {
    if (line.find("\"event\"") != std::string::npos) continue;
    return JsonInt(line, "rank");
  }
  return -1;
}

TEST_F(HaTest, LeaderKilledMidFormation_CompletesOnNewLeader_SameRanksNoDuplicates) {
  std::vector<std::unique_ptr<Subprocess>> probes;
  for (int i = 0; i < 8; ++i) probes.push_back(Probe("form", 16, i));
  std::map<std::string, uint64_t> incarnations;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    auto job = a_->Job("form");
    if (job.ok() && job->job().roles_size() > 0 && job->job().roles(0).joined() == 8) {
      for (const auto& m : job->members()) incarnations[m.node_id()] = m.incarnation();
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(incarnations.size(), 8u) << "8 members did not join the first leader";
  a_->proc().Signal(SIGKILL);
  ASSERT_TRUE(b_->WaitRole("leader")) << b_->proc().Stderr();
  for (int i = 8; i < 16; ++i) probes.push_back(Probe("form", 16, i));
  for (int i = 0; i < 16; ++i) {
    ASSERT_TRUE(WaitForStdout(*probes[i], "\"rank\"", absl::Seconds(90)))
        << "probe " << i << ": " << probes[i]->Stderr();
    EXPECT_EQ(RankOf(probes[i]->Stdout()), i) << probes[i]->Stdout();
  }
  auto job = b_->Job("form");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->job().state(), pb::JOB_STATE_COMPLETE);
  ASSERT_EQ(job->members_size(), 16);
  std::map<uint32_t, int> ranks;
  for (const auto& m : job->members()) {
    ++ranks[m.rank()];
    auto before = incarnations.find(m.node_id());
    // The first 8 resumed their registrations: same incarnation, not a second join.
    if (before != incarnations.end()) EXPECT_EQ(m.incarnation(), before->second) << m.node_id();
  }
  EXPECT_EQ(ranks.size(), 16u);
  for (auto& p : probes) p->Signal(SIGTERM);
}

TEST_F(HaTest, LeaderKilledAfterCompletion_EverySessionResumes_NoFalseDeath_KvIntact) {
  std::vector<std::unique_ptr<Subprocess>> probes;
  for (int i = 0; i < 15; ++i) probes.push_back(Probe("done", 16, i));
  std::unique_ptr<Client> member = LibraryMember("done", 16, 15);
  ASSERT_NE(member, nullptr);
  absl::StatusOr<Topology> topo = member->Join();
  ASSERT_TRUE(topo.ok()) << topo.status();
  EXPECT_EQ(topo->rank, 15u);
  ASSERT_TRUE(member->KvSet("root_info", "nccl-id-bytes").ok());
  for (auto& p : probes) ASSERT_TRUE(WaitForStdout(*p, "\"rank\"", absl::Seconds(60)));

  const absl::Time killed = absl::Now();
  a_->proc().Signal(SIGKILL);
  ASSERT_TRUE(b_->WaitRole("leader")) << b_->proc().Stderr();
  std::string last;
  ASSERT_TRUE(WaitAllActive(*b_, "done", 16, &last)) << last;
  const absl::Duration failover = absl::Now() - killed;
  std::cout << "failover: kill -9 of the leader to all 16 sessions resumed on the standby: "
            << absl::FormatDuration(failover) << " (lease ttl " << kTtl << ")" << std::endl;
  absl::StatusOr<std::string> value = member->KvGet("root_info", absl::Seconds(10));
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "nccl-id-bytes");
  // Give liveness a few heartbeat rounds: nobody may be declared dead by the failover.
  absl::SleepFor(absl::Seconds(3));
  auto job = b_->Job("done");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->job().state(), pb::JOB_STATE_COMPLETE) << job->DebugString();
  for (const auto& m : job->members()) {
    EXPECT_EQ(m.state(), pb::MEMBER_STATE_ACTIVE) << m.DebugString();
  }
  for (int i = 0; i < 15; ++i) {
    EXPECT_FALSE(LinesWith(probes[i]->Stdout(), "\"resumed\"").empty()) << probes[i]->Stdout();
    EXPECT_TRUE(LinesWith(probes[i]->Stdout(), "job_failed").empty()) << probes[i]->Stdout();
  }
  for (auto& p : probes) p->Signal(SIGTERM);
}

TEST_F(HaTest, EtcdMemberLoss_Invisible_QuorumLoss_NothingAcknowledged_ThenRecovers) {
  std::unique_ptr<Client> m0 = LibraryMember("q", 2, 0);
  std::unique_ptr<Client> m1 = LibraryMember("q", 2, 1);
  ASSERT_NE(m0, nullptr);
  ASSERT_NE(m1, nullptr);
  std::thread join1([&] { EXPECT_TRUE(m1->Join().ok()); });
  ASSERT_TRUE(m0->Join().ok());
  join1.join();
  ASSERT_TRUE(m0->KvSet("before", "1").ok());

  // One etcd member down: invisible.
  etcd_->Kill(2);
  ASSERT_TRUE(m0->KvSet("one-down", "1").ok());
  absl::StatusOr<std::string> v = m1->KvGet("one-down", absl::Seconds(10));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(a_->Role(), "leader");

  // Quorum lost: the member's write is never acknowledged.
  etcd_->Kill(1);
  absl::Status during = m0->KvSet("no-quorum", "1");
  EXPECT_FALSE(during.ok()) << "a write was acknowledged without an etcd quorum";
  std::cout << "write during quorum loss: " << during << std::endl;

  // Quorum back: a leader serves again, the members carry on, the unacknowledged key is absent
  // or present (unknown outcome) but everything acknowledged is there.
  ASSERT_TRUE(etcd_->Restart(1).ok()) << etcd_->LogTail(1);
  ASSERT_TRUE(etcd_->Restart(2).ok()) << etcd_->LogTail(2);
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  bool recovered = false;
  while (absl::Now() < deadline && !recovered) {
    recovered = (a_->Role() == "leader" || b_->Role() == "leader") && m0->KvSet("after", "1").ok();
    if (!recovered) absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_TRUE(recovered) << a_->proc().Stderr() << b_->proc().Stderr();
  for (const char* key : {"before", "one-down", "after"}) {
    absl::StatusOr<std::string> got = m1->KvGet(key, absl::Seconds(10));
    EXPECT_TRUE(got.ok()) << key << ": " << got.status();
  }
}

TEST_F(HaTest, PausedLeaderIsDeposed_ItsWriteIsFencedAndItRejoinsAsStandby) {
  // A member registered through the leader; its ref and credential are what a real client
  // holds, so its writes are legitimate in every respect but the leader's.
  auto channel = grpc::CreateChannel(a_->address(), grpc::InsecureChannelCredentials());
  auto rdv = pb::Rendezvous::NewStub(channel);
  grpc::ClientContext session_ctx;
  auto session = rdv->Session(&session_ctx);
  pb::SessionRequest join;
  pb::MemberSpec* spec = join.mutable_join()->mutable_member();
  spec->set_job_id("fence");
  spec->set_role(pb::ROLE_WORKER);
  spec->set_node_id("0");
  spec->set_worker_num(1);
  spec->set_device_id(-1);
  spec->set_heartbeat_disabled(true);
  spec->set_node_timeout_ms(-1);
  ASSERT_TRUE(session->Write(join));
  pb::SessionResponse r;
  ASSERT_TRUE(session->Read(&r));
  const pb::MemberRef ref = r.registered();
  ASSERT_TRUE(session->Read(&r));
  ASSERT_TRUE(r.has_topology());

  a_->proc().Signal(SIGSTOP);
  ASSERT_TRUE(b_->WaitRole("leader", absl::Seconds(30))) << b_->proc().Stderr();
  // The write reaches the paused leader's socket now and is processed when it wakes up.
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  pb::KvSetRequest set;
  *set.mutable_member() = ref;
  set.set_key("written-by-the-deposed");
  set.set_value("x");
  pb::KvSetResponse set_resp;
  std::optional<grpc::Status> result;
  std::thread writer([&] { result = a_->kv().Set(&ctx, set, &set_resp); });
  absl::SleepFor(absl::Milliseconds(300));
  a_->proc().Signal(SIGCONT);
  writer.join();
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->ok()) << "the deposed leader acknowledged a write";
  std::cout << "deposed leader's write: " << result->error_code() << " " << result->error_message()
            << std::endl;
  // The new leader never saw it.
  grpc::ClientContext get_ctx;
  pb::KvGetRequest get;
  *get.mutable_member() = ref;
  get.set_key("written-by-the-deposed");
  get.set_timeout_ms(0);
  pb::KvGetResponse got;
  grpc::Status gs = b_->kv().Get(&get_ctx, get, &got);
  EXPECT_EQ(gs.error_code(), grpc::StatusCode::NOT_FOUND) << gs.error_message();
  // The old leader stepped down (fenced write or lost lease) and serves as a standby again.
  EXPECT_TRUE(a_->WaitRole("standby")) << a_->proc().Stderr();
  const std::string log = a_->proc().Stderr();
  EXPECT_NE(log.find("stepping down"), std::string::npos) << log;
  session_ctx.TryCancel();
}

// TLS to etcd: a one-member etcd serving https with --client-cert-auth, certificates made by
// openssl for this test; the daemon reaches it only with --etcd-ca/--etcd-cert/--etcd-key.
TEST(HaTlsTest, EtcdOverMutualTls_DaemonLeads_PlaintextRefusedClearly) {
  MSR_REQUIRE_ETCD();
  const std::string dir = absl::StrCat(TempDir(), "/etcd-tls-", getpid());
  const std::string mk = absl::StrCat(
      "mkdir -p ", dir, " && cd ", dir,
      " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
      " -subj /CN=ca -keyout ca.key -out ca.pem"
      " && printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n'"
      " > ext && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
      " -subj /CN=etcd -keyout s.key -out s.csr"
      " && openssl x509 -req -in s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
      " -extfile ext -out s.pem >openssl.log 2>&1");
  ASSERT_EQ(std::system(mk.c_str()), 0) << ReadFile(dir + "/openssl.log");
  const int client = FreePort(), peer = FreePort();
  const std::string url = absl::StrCat("https://127.0.0.1:", client);
  const pid_t etcd = fork();
  if (etcd == 0) {
    const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer);
    const std::string log = dir + "/etcd.log";
    freopen(log.c_str(), "w", stdout);
    freopen(log.c_str(), "a", stderr);
    execl(MSR_ETCD_BIN, "etcd", "--name", "t", "--data-dir", (dir + "/data").c_str(),
          "--listen-client-urls", url.c_str(), "--advertise-client-urls", url.c_str(),
          "--listen-peer-urls", peer_url.c_str(), "--initial-advertise-peer-urls",
          peer_url.c_str(), "--initial-cluster", ("t=" + peer_url).c_str(), "--cert-file",
          (dir + "/s.pem").c_str(), "--key-file", (dir + "/s.key").c_str(), "--trusted-ca-file",
          (dir + "/ca.pem").c_str(), "--client-cert-auth", static_cast<char*>(nullptr));
    _exit(127);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reap{etcd};
  // Without TLS flags: a clear refusal at start.
  Subprocess plain("ms-rendezvousd",
                   {"--listen", "127.0.0.1:0", "--store", "etcd", "--etcd-endpoints", url}, {});
  ASSERT_TRUE(plain.Wait(absl::Seconds(30)).has_value());
  EXPECT_NE(plain.Stderr().find("--etcd-ca"), std::string::npos) << plain.Stderr();
  // With them: it reaches etcd and leads.
  const int port = FreePort();
  Subprocess d("ms-rendezvousd",
               {"--listen", absl::StrCat("127.0.0.1:", port), "--store", "etcd",
                "--etcd-endpoints", url, "--etcd-ca", dir + "/ca.pem", "--etcd-cert",
                dir + "/s.pem", "--etcd-key", dir + "/s.key"},
               {});
  auto admin = pb::RendezvousAdmin::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  std::string role;
  const absl::Time deadline = absl::Now() + absl::Seconds(40);
  while (absl::Now() < deadline && role != "leader") {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    pb::ServerInfo info;
    if (admin->GetServerInfo(&ctx, pb::GetServerInfoRequest(), &info).ok()) role = info.role();
    if (role != "leader") absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(role, "leader") << d.Stderr() << ReadFile(dir + "/etcd.log");
}

}  // namespace
}  // namespace ms_rendezvous::testing
