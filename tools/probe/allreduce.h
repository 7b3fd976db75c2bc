// ms-rendezvous-probe --allreduce: proves the hand-off to a real collective library. After the
// join, builds a Gloo full-mesh context over TCP whose addresses are exchanged through the
// job's KV store (ms_rendezvous::GlooStore), runs a sum allreduce of a known vector and prints
//
//   {"check":"allreduce","ok":true|false,"result":[..],"expected":[..]}
//
// (plus "error":".." when Gloo failed). Element i of rank r is r*100 + i (length 8), so the
// expected sum of element i is 100*W*(W-1)/2 + W*i for W ranks.
//
// Transport address: the member's topology host (MS_WORKER_IP, or the address the daemon saw)
// when it is an address of this machine, else 127.0.0.1: Gloo binds its listening socket to it
// and publishes it for the other ranks. On a single test machine every probe therefore uses
// loopback; across machines each rank uses its own routable MS_WORKER_IP.
// Store keys: "gloo/<job generation>/allreduce/<rank>", so that a reused job id never reads
// the addresses of an earlier generation.
#ifndef MS_RENDEZVOUS_TOOLS_PROBE_ALLREDUCE_H_
#define MS_RENDEZVOUS_TOOLS_PROBE_ALLREDUCE_H_

#include <ostream>
#include <string>

#include "absl/time/time.h"
#include "ms_rendezvous/client.h"

namespace ms_rendezvous::probe {

constexpr int kExitAllreduceWrong = 4;

// True when built with Gloo (MSR_HAVE_GLOO); --allreduce is a usage error otherwise.
bool AllreduceAvailable();

// The transport host the check binds to (see above).
std::string AllreduceHost(const Topology& topology);

// Runs the check and prints its JSON line on `out`. Returns 0 when the result is right,
// kExitAllreduceWrong when it is wrong or Gloo failed.
int RunAllreduceCheck(Client& client, const Topology& topology, absl::Duration timeout,
                      std::ostream& out);

}  // namespace ms_rendezvous::probe

#endif  // MS_RENDEZVOUS_TOOLS_PROBE_ALLREDUCE_H_
