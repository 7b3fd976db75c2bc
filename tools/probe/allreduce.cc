#include "tools/probe/allreduce.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/probe/json.h"

#ifdef MSR_HAVE_GLOO
#include "gloo/allreduce.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/transport/tcp/attr.h"
#include "gloo/transport/tcp/device.h"
#include "ms_rendezvous/gloo_store.h"
#endif

namespace ms_rendezvous::probe {
namespace {

constexpr size_t kLength = 8;

// True when `host` is a numeric address configured on one of this machine's interfaces (or a
// loopback address).
bool IsLocalAddress(const std::string& host) {
  if (host.empty()) return false;
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST;
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return false;
  bool local = false;
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) == 0) {
    for (ifaddrs* i = ifs; i != nullptr && !local; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != res->ai_family) continue;
      if (res->ai_family == AF_INET) {
        local = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr ==
                reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr.s_addr;
      } else if (res->ai_family == AF_INET6) {
        local = std::memcmp(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr,
                            &reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr,
                            sizeof(in6_addr)) == 0;
      }
    }
    freeifaddrs(ifs);
  }
  freeaddrinfo(res);
  return local;
}

std::string JsonArray(const std::vector<int64_t>& v) {
  return absl::StrCat("[", absl::StrJoin(v, ","), "]");
}

}  // namespace

std::string AllreduceHost(const Topology& topology) {
  return IsLocalAddress(topology.host) ? topology.host : std::string("127.0.0.1");
}

#ifdef MSR_HAVE_GLOO

bool AllreduceAvailable() { return true; }

int RunAllreduceCheck(Client& client, const Topology& topology, absl::Duration timeout,
                      std::ostream& out) {
  const int64_t rank = topology.rank;
  const int64_t world = topology.world_size;
  std::vector<int64_t> data(kLength), expected(kLength);
  for (size_t i = 0; i < kLength; ++i) {
    data[i] = rank * 100 + static_cast<int64_t>(i);
    expected[i] = 100 * world * (world - 1) / 2 + world * static_cast<int64_t>(i);
  }
  JsonObject json;
  json.Add("check", "allreduce");
  try {
    GlooStore store(&client, absl::StrCat("gloo/", topology.generation, "/allreduce/"), timeout);
    ::gloo::transport::tcp::attr attr;
    attr.hostname = AllreduceHost(topology);
    std::shared_ptr<::gloo::transport::Device> device = ::gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<::gloo::rendezvous::Context>(static_cast<int>(rank),
                                                                 static_cast<int>(world));
    context->setTimeout(std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
    context->connectFullMesh(store, device);
    ::gloo::AllreduceOptions opts(context);
    opts.setOutput(data.data(), data.size());
    opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(
        &::gloo::sum<int64_t>));
    opts.setTag(1);
    ::gloo::allreduce(opts);
  } catch (const std::exception& e) {
    out << json.Add("ok", false)
               .AddRaw("result", "null")
               .AddRaw("expected", JsonArray(expected))
               .Add("error", std::string(e.what()))
               .str()
        << std::endl;
    return kExitAllreduceWrong;
  }
  const bool ok = data == expected;
  out << json.Add("ok", ok)
             .AddRaw("result", JsonArray(data))
             .AddRaw("expected", JsonArray(expected))
             .str()
      << std::endl;
  return ok ? 0 : kExitAllreduceWrong;
}

#else  // !MSR_HAVE_GLOO

bool AllreduceAvailable() { return false; }

int RunAllreduceCheck(Client&, const Topology&, absl::Duration, std::ostream& out) {
  out << JsonObject()
             .Add("check", "allreduce")
             .Add("ok", false)
             .Add("error", "built without Gloo (libgloo-dev)")
             .str()
      << std::endl;
  return kExitAllreduceWrong;
}

#endif  // MSR_HAVE_GLOO

}  // namespace ms_rendezvous::probe
