// ms_rendezvous::GlooStore: a gloo::rendezvous::Store over the job's key/value store in the
// ms-rendezvous daemon, so that Gloo contexts bootstrap from the same rendezvous that placed the
// process (no file system or Redis store needed):
//
//   auto client = ms_rendezvous::Client::FromEnv();  ... Join() ...
//   ms_rendezvous::GlooStore store(client->get(), absl::StrCat("gloo/g", topo.generation, "/"));
//   auto dev = gloo::transport::tcp::CreateDevice(attr);
//   auto ctx = std::make_shared<gloo::rendezvous::Context>(topo.rank, topo.world_size);
//   ctx->connectFullMesh(store, dev);
//
// Built into the separate library target ms_rendezvous_gloo (libgloo-dev), so that the core
// client library does not depend on Gloo.
//
// Gloo's Store reports failures by exception: every method throws gloo::IoException whose
// message carries the ms_rendezvous status (e.g. "ms_rendezvous GlooStore: get('gloo/g1/0'):
// ABORTED: ... MS_WORKER rank 3 ... reported: ..."). Calls block at most the timeout Gloo
// passes (wait) or the store's default timeout (get, wait without timeout), and end early with
// the job's failure when the session fails. Thread-safe as the Client is.
#ifndef MS_RENDEZVOUS_GLOO_STORE_H_
#define MS_RENDEZVOUS_GLOO_STORE_H_

#include <chrono>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gloo/rendezvous/store.h"
#include "ms_rendezvous/client.h"

namespace ms_rendezvous {

class GlooStore : public ::gloo::rendezvous::Store {
 public:
  // `client` must be joined and outlive the store. Every key is stored as prefix + key: use a
  // prefix naming the job generation (and the context, when a process builds several) so that
  // a reused job id or a second context never reads stale addresses. `default_timeout` bounds
  // get() and wait(keys) (Gloo's own default: 30 s); InfiniteDuration = until the job ends.
  GlooStore(Client* client, std::string prefix,
            absl::Duration default_timeout = absl::Milliseconds(
                std::chrono::milliseconds(::gloo::rendezvous::Store::kDefaultTimeout).count()));
  ~GlooStore() override = default;

  // Client::KvSet(prefix + key).
  void set(const std::string& key, const std::vector<char>& data) override;
  // Client::KvGet(prefix + key, default timeout): waits for the key as Gloo's stores do.
  std::vector<char> get(const std::string& key) override;
  // Client::KvWait(prefix + keys, default timeout).
  void wait(const std::vector<std::string>& keys) override;
  // Client::KvWait(prefix + keys, timeout); a zero or negative timeout checks once.
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

  const std::string& prefix() const { return prefix_; }

 private:
  Client* const client_;
  const std::string prefix_;
  const absl::Duration default_timeout_;
};

}  // namespace ms_rendezvous

#endif  // MS_RENDEZVOUS_GLOO_STORE_H_
