// Test helper for ctl_test.sh: joins members to a job with raw Join RPCs and blocks until they
// all have their topology, so the test can show ms-rendezvousctl a job that is still forming.
//
//   ctl_test_join_helper SERVER JOB_ID WORKER_NUM TOPO_TIMEOUT_S NODE_ID...
//
// Prints "NODE_ID RANK" per member once the job is complete and exits 0; on any error prints
// "ms-rendezvous: CODE: message" to stderr and exits 1. Deliberately not the client library: the
// test must exercise only ctl and the wire contract.
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/synchronization/blocking_counter.h"
#include "ms/rendezvous/v1/rendezvous.grpc.pb.h"
#include "tools/common/grpc_status.h"

namespace v1 = ::ms::rendezvous::v1;

int main(int argc, char** argv) {
  int worker_num = 0, timeout_s = 0;
  if (argc < 6 || !absl::SimpleAtoi(argv[3], &worker_num) ||
      !absl::SimpleAtoi(argv[4], &timeout_s)) {
    std::fprintf(stderr, "usage: %s SERVER JOB_ID WORKER_NUM TOPO_TIMEOUT_S NODE_ID...\n", argv[0]);
    return 2;
  }
  auto stub =
      v1::Rendezvous::NewStub(grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials()));
  const int n = argc - 5;
  struct Call {
    grpc::ClientContext ctx;
    v1::JoinRequest request;
    v1::JoinResponse response;
    grpc::Status status;
  };
  std::vector<Call> calls(n);
  absl::BlockingCounter done(n);
  // All members are in flight at once: the job completes only when every one of them waits.
  for (int i = 0; i < n; ++i) {
    Call& call = calls[i];
    v1::MemberSpec* spec = call.request.mutable_member();
    spec->set_job_id(argv[2]);
    spec->set_role(v1::ROLE_WORKER);
    spec->set_node_id(argv[5 + i]);
    spec->set_host_name("ctl-test");
    spec->set_device_id(-1);
    spec->set_worker_num(worker_num);
    spec->set_topo_timeout_ms(static_cast<int64_t>(timeout_s) * 1000);
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
      std::fprintf(
          stderr, "ms-rendezvous: %s\n",
          ms_rendezvous::tools::FormatStatus(ms_rendezvous::tools::FromGrpc(call.status)).c_str());
      rc = 1;
      continue;
    }
    std::printf("%s %u\n", call.request.member().node_id().c_str(),
                call.response.topology().rank());
  }
  return rc;
}
