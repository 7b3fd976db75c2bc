// End-to-end security (issue 7) with real processes: a daemon serving TLS / mutual TLS with
// throwaway certificates made by openssl for this test, probes and ms-rendezvousctl as clients,
// and the job-token / admin-token workflow through ms-rendezvousctl create/abort/delete.
//
// "Refused before any handler runs" is checked through the daemon's own /metrics: after the
// refused attempts no RPC latency sample, no join and no session exists; after one accepted
// call, its sample does.
#include <stdio.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "subprocess.h"

namespace ms_rendezvous::testing {
namespace {

using Env = Subprocess::Env;

// A private CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a
// second CA with its own client certificate (the "wrong" ones). EC P-256: fast to generate.
class Pki {
 public:
  Pki() : dir_(absl::StrCat(TempDir(), "/pki-", getpid())) {
    mkdir(dir_.c_str(), 0700);
    ok_ = MakeCa("ca") && MakeCa("other-ca") && MakeLeaf("server", "ca", true) &&
          MakeLeaf("client", "ca", false) && MakeLeaf("stranger", "other-ca", false);
  }
  bool ok() const { return ok_; }
  std::string Path(const std::string& name) const { return absl::StrCat(dir_, "/", name); }

 private:
  bool Run(const std::string& cmd) {
    const std::string full = absl::StrCat("cd ", dir_, " && ", cmd, " >>openssl.log 2>&1");
    return std::system(full.c_str()) == 0;
  }
  bool MakeCa(const std::string& name) {
    return Run(absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 ",
                            "-nodes -days 2 -subj /CN=", name, " -keyout ", name, ".key -out ",
                            name, ".pem"));
  }
  bool MakeLeaf(const std::string& name, const std::string& ca, bool server) {
    std::ofstream(Path(name + ".ext"))
        << (server ? "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                   : "extendedKeyUsage=clientAuth\n");
    return Run(absl::StrCat("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ",
                            "-subj /CN=", name, " -keyout ", name, ".key -out ", name, ".csr")) &&
           Run(absl::StrCat("openssl x509 -req -in ", name, ".csr -CA ", ca, ".pem -CAkey ", ca,
                            ".key -CAcreateserial -days 2 -extfile ", name, ".ext -out ", name,
                            ".pem"));
  }

  std::string dir_;
  bool ok_ = false;
};

std::string Curl(int port) { return ScrapeMetrics(port); }

// Sum of every sample of `name` (any labels); 0 when absent (nothing counted yet).
double Sample(const std::string& text, const std::string& name) {
  return std::max(0.0, MetricSum(text, name));
}

int MetricsPort(const std::string& port_file) {
  int port = 0;
  for (int i = 0; i < 500 && port == 0; ++i) {
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(port_file)), &port)) {
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  return port;
}

// Runs ms-rendezvousctl to completion; returns its exit code (stderr in *err).
int Ctl(const std::vector<std::string>& args, const Env& env = {}, std::string* err = nullptr) {
  Subprocess p("ms-rendezvousctl", args, env);
  std::optional<int> code = p.Wait(absl::Seconds(30));
  if (err != nullptr) *err = p.Stderr() + p.Stdout();
  return code.value_or(-1);
}

TEST(SecurityE2E, MutualTls_PlaintextWrongCaAndStrangerRefusedBeforeAnyHandler) {
  Pki pki;
  ASSERT_TRUE(pki.ok()) << ReadFile(pki.Path("openssl.log"));
  const std::string mport_file = absl::StrCat(TempDir(), "/sec-metrics-", getpid());
  Daemon d({"--tls-cert", pki.Path("server.pem"), "--tls-key", pki.Path("server.key"),
            "--tls-client-ca", pki.Path("ca.pem"), "--metrics-listen", "127.0.0.1:0",
            "--metrics-port-file", mport_file});
  ASSERT_GT(d.port(), 0) << d.proc().Stderr();
  const int mport = MetricsPort(mport_file);
  ASSERT_GT(mport, 0);
  const std::string server = d.address();

  std::string err;
  // Plaintext.
  EXPECT_EQ(Ctl({"--server", server, "--timeout-s", "3", "jobs"}, {}, &err), 1) << err;
  // Right CA but no client certificate (mutual TLS).
  EXPECT_EQ(Ctl({"--server", server, "--timeout-s", "3", "--tls-ca", pki.Path("ca.pem"), "jobs"},
                {}, &err),
            1)
      << err;
  // A client certificate from another CA.
  EXPECT_EQ(Ctl({"--server", server, "--timeout-s", "3", "--tls-ca", pki.Path("ca.pem"),
                 "--tls-cert", pki.Path("stranger.pem"), "--tls-key", pki.Path("stranger.key"),
                 "jobs"},
                {}, &err),
            1)
      << err;
  // The wrong CA for the server: the client refuses the daemon.
  EXPECT_EQ(Ctl({"--server", server, "--timeout-s", "3", "--tls-ca", pki.Path("other-ca.pem"),
                 "--tls-cert", pki.Path("client.pem"), "--tls-key", pki.Path("client.key"),
                 "jobs"},
                {}, &err),
            1)
      << err;
  // A probe without TLS never gets a session.
  Subprocess plain("ms-rendezvous-probe", {},
                   Env{{"MS_SCHED_HOST", "127.0.0.1"}, {"MS_SCHED_PORT", std::to_string(d.port())},
                       {"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "2"}, {"MS_NODE_ID", "9"},
                       {"MS_JOB_ID", "tls"}, {"MS_TOPO_TIMEOUT", "2"}});
  std::optional<int> plain_code = plain.Wait(absl::Seconds(30));
  ASSERT_TRUE(plain_code.has_value());
  EXPECT_NE(*plain_code, 0) << plain.Stderr();

  const std::string refused = Curl(mport);
  ASSERT_NE(refused.find("ms_rendezvous_joins_total"), std::string::npos) << refused;
  EXPECT_EQ(Sample(refused, "ms_rendezvous_rpc_latency_seconds_count"), 0) << refused;
  EXPECT_EQ(Sample(refused, "ms_rendezvous_joins_total"), 0) << refused;
  EXPECT_EQ(Sample(refused, "ms_rendezvous_rejections_total"), 0) << refused;
  EXPECT_EQ(Sample(refused, "ms_rendezvous_sessions_connected"), 0) << refused;

  // The right credentials: ctl and two probes.
  const std::vector<std::string> tls = {"--tls-ca", pki.Path("ca.pem"), "--tls-cert",
                                        pki.Path("client.pem"), "--tls-key",
                                        pki.Path("client.key")};
  std::vector<std::string> jobs = {"--server", server, "jobs"};
  jobs.insert(jobs.begin(), tls.begin(), tls.end());
  EXPECT_EQ(Ctl(jobs, {}, &err), 0) << err;
  EXPECT_EQ(Sample(Curl(mport), "ms_rendezvous_rpc_latency_seconds_count"), 1);

  std::vector<std::unique_ptr<Subprocess>> probes;
  for (int i = 0; i < 2; ++i) {
    probes.push_back(std::make_unique<Subprocess>(
        "ms-rendezvous-probe", std::vector<std::string>{},
        Env{{"MS_SCHED_HOST", "127.0.0.1"}, {"MS_SCHED_PORT", std::to_string(d.port())},
            {"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "2"}, {"MS_NODE_ID", std::to_string(i)},
            {"MS_JOB_ID", "tls"}, {"MS_TLS_CA", pki.Path("ca.pem")},
            {"MS_TLS_CERT", pki.Path("client.pem")}, {"MS_TLS_KEY", pki.Path("client.key")}}));
  }
  for (auto& p : probes) {
    std::optional<int> code = p->Wait(absl::Seconds(60));
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 0) << p->Stderr();
    EXPECT_NE(p->Stdout().find("\"rank\""), std::string::npos) << p->Stdout();
  }
  EXPECT_EQ(Sample(Curl(mport), "ms_rendezvous_joins_total"), 2);
}

TEST(SecurityE2E, ServerTls_ProbeWithTheCaJoins_ServerNameOverride) {
  Pki pki;
  ASSERT_TRUE(pki.ok()) << ReadFile(pki.Path("openssl.log"));
  Daemon d({"--tls-cert", pki.Path("server.pem"), "--tls-key", pki.Path("server.key")});
  ASSERT_GT(d.port(), 0) << d.proc().Stderr();
  std::string err;
  EXPECT_EQ(Ctl({"--server", d.address(), "--timeout-s", "3", "health"}, {}, &err), 1) << err;
  EXPECT_EQ(Ctl({"--server", d.address(), "health"}, {{"MS_TLS_CA", pki.Path("ca.pem")}}, &err),
            0)
      << err;
  // Dialled as "localhost" and verified as localhost, by name override.
  EXPECT_EQ(Ctl({"--server", absl::StrCat("localhost:", d.port()), "--tls-ca",
                 pki.Path("ca.pem"), "--tls-server-name", "localhost", "health"},
                {}, &err),
            0)
      << err;
  Subprocess probe("ms-rendezvous-probe", {},
                   Env{{"MS_SCHED_HOST", "127.0.0.1"}, {"MS_SCHED_PORT", std::to_string(d.port())},
                       {"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "1"}, {"MS_JOB_ID", "tls1"},
                       {"MS_TLS_CA", pki.Path("ca.pem")}});
  std::optional<int> code = probe.Wait(absl::Seconds(60));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << probe.Stderr();
}

TEST(SecurityE2E, BadSecurityFlagsAreRefusedAtStart) {
  Pki pki;
  ASSERT_TRUE(pki.ok());
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--tls-cert", pki.Path("server.pem")}, "--tls-cert and --tls-key must be given together"},
      {{"--tls-client-ca", pki.Path("ca.pem")}, "--tls-client-ca (mutual TLS) needs --tls-cert"},
      {{"--tls-cert", "/nonexistent.pem", "--tls-key", pki.Path("server.key")},
       "--tls-cert=\"/nonexistent.pem\": cannot read"},
      {{"--status-requires-token"}, "--status-requires-token needs --admin-token-file"},
      {{"--admin-token-file", "/nonexistent-token"}, "--admin-token-file=\"/nonexistent-token\""},
      {{"--require-job-token=maybe"}, "--require-job-token=\"maybe\" must be true or false"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:0"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    Subprocess p("ms-rendezvousd", args, {});
    std::optional<int> code = p.Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 2) << c.message;
    EXPECT_NE(p.Stderr().find(c.message), std::string::npos) << p.Stderr();
  }
}

TEST(SecurityE2E, OperatorCreatesJobWithToken_MembersNeedIt_AbortAndDelete) {
  const std::string admin = absl::StrCat(TempDir(), "/admin-token-", getpid());
  const std::string job_token = absl::StrCat(TempDir(), "/job-token-", getpid());
  std::ofstream(admin) << "adm1n-t0ken\n";
  std::ofstream(job_token) << "j0b-t0ken\n";
  chmod(admin.c_str(), 0600);
  Daemon d({"--admin-token-file", admin, "--require-job-token"});
  ASSERT_GT(d.port(), 0) << d.proc().Stderr();
  std::string err;
  // Without the admin token: refused, nothing created.
  EXPECT_EQ(Ctl({"--server", d.address(), "create", "train", "--workers", "2"}, {}, &err), 1);
  EXPECT_NE(err.find("UNAUTHENTICATED"), std::string::npos) << err;
  ASSERT_EQ(Ctl({"--server", d.address(), "--admin-token-file", admin, "create", "train",
                 "--workers", "2", "--job-token-file", job_token},
                {}, &err),
            0)
      << err;
  Env member = d.SchedEnv();
  member.insert({{"MS_ROLE", "MS_WORKER"}, {"MS_WORKER_NUM", "2"}, {"MS_JOB_ID", "train"}});
  // A member without the token (and one with a wrong one) is refused at once.
  for (const std::string& token : {std::string(), std::string("guess")}) {
    Env env = member;
    env["MS_NODE_ID"] = "0";
    if (!token.empty()) env["MS_JOB_TOKEN"] = token;
    Subprocess p("ms-rendezvous-probe", {}, env);
    std::optional<int> code = p.Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value());
    EXPECT_NE(*code, 0);
    EXPECT_NE(p.Stderr().find("PERMISSION_DENIED"), std::string::npos) << p.Stderr();
  }
  std::vector<std::unique_ptr<Subprocess>> probes;
  for (int i = 0; i < 2; ++i) {
    Env env = member;
    env["MS_NODE_ID"] = std::to_string(i);
    env["MS_JOB_TOKEN"] = "j0b-t0ken";
    probes.push_back(std::make_unique<Subprocess>(
        "ms-rendezvous-probe", std::vector<std::string>{"--hold", "60"}, env));
  }
  for (auto& p : probes) ASSERT_TRUE(WaitForStdout(*p, "\"rank\"", absl::Seconds(60)));
  // An operator may read the job's store (admin token); anyone else may not.
  EXPECT_EQ(Ctl({"--server", d.address(), "kv", "train"}, {}, &err), 1);
  EXPECT_NE(err.find("UNAUTHENTICATED"), std::string::npos) << err;
  EXPECT_EQ(Ctl({"--server", d.address(), "--admin-token-file", admin, "kv", "train"}, {}, &err),
            0)
      << err;
  ASSERT_EQ(Ctl({"--server", d.address(), "--admin-token-file", admin, "abort", "train",
                 "--reason", "e2e maintenance"},
                {}, &err),
            0)
      << err;
  // Every member learns it and exits non-zero naming the reason.
  for (auto& p : probes) {
    std::optional<int> code = p->Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value());
    EXPECT_NE(*code, 0);
    EXPECT_NE((p->Stdout() + p->Stderr()).find("e2e maintenance"), std::string::npos)
        << p->Stdout() << p->Stderr();
  }
  EXPECT_EQ(Ctl({"--server", d.address(), "--admin-token-file", admin, "delete", "train"}, {},
                &err),
            0)
      << err;
  EXPECT_EQ(Ctl({"--server", d.address(), "job", "train"}, {}, &err), 1);
  EXPECT_NE(err.find("NOT_FOUND"), std::string::npos) << err;
}

TEST(SecurityE2E, Sighup_RotatesTheAdminToken_BadFileKeepsTheOldOne) {
  const std::string admin = absl::StrCat(TempDir(), "/rotate-token-", getpid());
  std::ofstream(admin) << "old-token\n";
  chmod(admin.c_str(), 0600);
  Daemon d({"--admin-token-file", admin});
  ASSERT_GT(d.port(), 0) << d.proc().Stderr();
  auto create = [&](const std::string& job, const std::string& token, std::string* err) {
    const std::string file = absl::StrCat(admin, "-use-", job);
    std::ofstream(file) << token << "\n";
    return Ctl({"--server", d.address(), "--admin-token-file", file, "create", job, "--workers",
                "1"},
               {}, err);
  };
  std::string err;
  ASSERT_EQ(create("j1", "old-token", &err), 0) << err;
  std::ofstream(admin, std::ios::trunc) << "new-token\n";
  d.proc().Signal(SIGHUP);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline && d.proc().Stderr().find("reloaded the admin token") ==
                                       std::string::npos) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(create("j2", "old-token", &err), 1);
  EXPECT_NE(err.find("PERMISSION_DENIED"), std::string::npos) << err;
  EXPECT_EQ(create("j3", "new-token", &err), 0) << err;
  // A broken file on the next SIGHUP keeps the token in force.
  std::ofstream(admin, std::ios::trunc) << "\n";
  d.proc().Signal(SIGHUP);
  const absl::Time deadline2 = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline2 &&
         d.proc().Stderr().find("keeping the current admin token") == std::string::npos) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_NE(d.proc().Stderr().find("keeping the current admin token"), std::string::npos);
  EXPECT_EQ(create("j4", "new-token", &err), 0) << err;
}

}  // namespace
}  // namespace ms_rendezvous::testing
