// Test helper for ctl_test.sh: joins members to a job with raw RPCs and blocks until they all
// have their topology, so the test can show ms-rendezvousctl a job that is still forming, and
// (with --session) members whose liveness the daemon tracks.
//
//   ctl_test_join_helper [--session [--recovery]] SERVER JOB_ID WORKER_NUM TOPO_TIMEOUT_S
//                        NODE_ID...
//
// Default: one unary Join per member. Prints "NODE_ID RANK" per member once the job is complete
// and exits 0; on any error prints "ms-rendezvous: CODE: message" to stderr and exits 1.
// --session: one Session stream per member (join, read topology), MS_ENABLE_RECOVERY with
// --recovery. Prints "NODE_ID RANK" as each topology arrives. The streams stay open (the test
// kill -9s the helper to make the daemon see them break); every event read meanwhile is
// printed as "event NODE_ID TYPE dead=ID,ID", the end of each stream as "end NODE_ID CODE"; exits
// 3 once a stream ended after a job_failed event, else 0 (1 on errors).
// Members send MS_NODE_TIMEOUT = 1 h: the helper does not heartbeat, and a slow test machine must
// not see them declared dead by the default 30 s node timeout.
// Deliberately not the client library: the test must exercise only ctl and the wire contract.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "tools/common/grpc_status.h"
#include "tools/common/proto_names.h"

namespace v1 = ::ms::rendezvous::v1;

namespace {

constexpr int64_t kNodeTimeoutMs = 3600 * 1000;
std::mutex print_mu;

void PrintLine(const std::string& line) {
  std::lock_guard<std::mutex> lock(print_mu);
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void PrintError(const grpc::Status& status) {
  std::lock_guard<std::mutex> lock(print_mu);
  std::fprintf(stderr, "ms-rendezvous: %s\n",
               ms_rendezvous::tools::FormatStatus(ms_rendezvous::tools::FromGrpc(status)).c_str());
}

v1::MemberSpec Spec(const char* job_id, const std::string& node_id, int worker_num, int timeout_s,
                    bool recovery) {
  v1::MemberSpec spec;
  spec.set_job_id(job_id);
  spec.set_role(v1::ROLE_WORKER);
  spec.set_node_id(node_id);
  spec.set_host_name("ctl-test");
  spec.set_device_id(-1);
  spec.set_worker_num(worker_num);
  spec.set_topo_timeout_ms(static_cast<int64_t>(timeout_s) * 1000);
  spec.set_node_timeout_ms(kNodeTimeoutMs);
  spec.set_enable_recovery(recovery);
  return spec;
}

int UnaryJoins(v1::Rendezvous::Stub* stub, const char* job_id, int worker_num, int timeout_s,
               const std::vector<std::string>& nodes) {
  struct Call {
    grpc::ClientContext ctx;
    v1::JoinRequest request;
    v1::JoinResponse response;
    grpc::Status status;
  };
  std::vector<Call> calls(nodes.size());
  absl::BlockingCounter done(static_cast<int>(nodes.size()));
  // All members are in flight at once: the job completes only when every one of them waits.
  for (size_t i = 0; i < nodes.size(); ++i) {
    Call& call = calls[i];
    *call.request.mutable_member() = Spec(job_id, nodes[i], worker_num, timeout_s, false);
    call.ctx.set_wait_for_ready(true);
    stub->async()->Join(&call.ctx, &call.request, &call.response, [&call, &done](grpc::Status s) {
      call.status = std::move(s);
      done.DecrementCount();
    });
  }
  done.Wait();
  int rc = 0;
  for (const Call& call : calls) {
    if (!call.status.ok()) {
      PrintError(call.status);
      rc = 1;
      continue;
    }
    std::printf("%s %u\n", call.request.member().node_id().c_str(),
                call.response.topology().rank());
  }
  return rc;
}

// One member's session on its own thread (a test helper with a handful of members).
int SessionMember(v1::Rendezvous::Stub* stub, v1::MemberSpec spec,
                  std::atomic<bool>* saw_failure) {
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  auto stream = stub->Session(&ctx);
  const std::string node_id = spec.node_id();
  v1::SessionRequest join;
  *join.mutable_join()->mutable_member() = std::move(spec);
  // No WritesDone: a half-closed session counts as lost for the daemon.
  if (!stream->Write(join)) {
    PrintError(stream->Finish());
    return 1;
  }
  v1::SessionResponse response;
  bool got_topology = false;
  while (stream->Read(&response)) {
    if (response.has_topology() && !got_topology) {
      got_topology = true;
      PrintLine(absl::StrCat(node_id, " ", response.topology().rank()));
      continue;
    }
    if (response.has_event()) {
      const v1::JobEvent& event = response.event();
      std::string dead;
      for (const auto& d : event.dead()) absl::StrAppend(&dead, dead.empty() ? "" : ",", d.node_id());
      PrintLine(absl::StrCat("event ", node_id, " ",
                             ms_rendezvous::tools::JobEventTypeName(event.type()), " dead=", dead));
      if (event.type() == v1::JOB_EVENT_JOB_FAILED) *saw_failure = true;
    }
  }
  grpc::Status status = stream->Finish();
  PrintLine(absl::StrCat(
      "end ", node_id, " ",
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()))));
  if (!got_topology) {
    PrintError(status);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool session = false, recovery = false;
  int first = 1;
  for (; first < argc && argv[first][0] == '-' && argv[first][1] == '-'; ++first) {
    std::string flag = argv[first];
    if (flag == "--session") {
      session = true;
    } else if (flag == "--recovery") {
      recovery = true;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  int worker_num = 0, timeout_s = 0;
  if (argc - first < 5 || !absl::SimpleAtoi(argv[first + 2], &worker_num) ||
      !absl::SimpleAtoi(argv[first + 3], &timeout_s) || (!session && recovery)) {
    std::fprintf(stderr,
                 "usage: %s [--session [--recovery]] SERVER JOB_ID WORKER_NUM "
                 "TOPO_TIMEOUT_S NODE_ID...\n",
                 argv[0]);
    return 2;
  }
  auto stub = v1::Rendezvous::NewStub(
      grpc::CreateChannel(argv[first], grpc::InsecureChannelCredentials()));
  const char* job_id = argv[first + 1];
  std::vector<std::string> nodes(argv + first + 4, argv + argc);
  if (!session) return UnaryJoins(stub.get(), job_id, worker_num, timeout_s, nodes);

  std::atomic<bool> saw_failure{false};
  std::vector<int> rcs(nodes.size(), 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < nodes.size(); ++i) {
    threads.emplace_back([&, i] {
      rcs[i] = SessionMember(stub.get(), Spec(job_id, nodes[i], worker_num, timeout_s, recovery),
                             &saw_failure);
    });
  }
  for (auto& t : threads) t.join();
  for (int rc : rcs) {
    if (rc != 0) return rc;
  }
  return saw_failure ? 3 : 0;
}
