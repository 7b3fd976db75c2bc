#include "ms_rendezvous/gloo_store.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gloo/common/error.h"

namespace ms_rendezvous {
namespace {

[[noreturn]] void Throw(const std::string& what, const absl::Status& status) {
  throw ::gloo::IoException(absl::StrCat("ms_rendezvous GlooStore: ", what, ": ",
                                         absl::StatusCodeToString(status.code()), ": ",
                                         status.message()));
}

std::string Describe(const std::vector<std::string>& keys) {
  if (keys.size() == 1) return absl::StrCat("wait('", keys.front(), "')");
  return absl::StrCat("wait(", keys.size(), " keys)");
}

}  // namespace

GlooStore::GlooStore(Client* client, std::string prefix, absl::Duration default_timeout)
    : client_(client), prefix_(std::move(prefix)), default_timeout_(default_timeout) {}

void GlooStore::set(const std::string& key, const std::vector<char>& data) {
  const std::string full = prefix_ + key;
  absl::Status st = client_->KvSet(full, absl::string_view(data.data(), data.size()));
  if (!st.ok()) Throw(absl::StrCat("set('", full, "')"), st);
}

std::vector<char> GlooStore::get(const std::string& key) {
  const std::string full = prefix_ + key;
  absl::StatusOr<std::string> value = client_->KvGet(full, default_timeout_);
  if (!value.ok()) Throw(absl::StrCat("get('", full, "')"), value.status());
  return std::vector<char>(value->begin(), value->end());
}

void GlooStore::wait(const std::vector<std::string>& keys) {
  std::vector<std::string> full;
  full.reserve(keys.size());
  for (const std::string& k : keys) full.push_back(prefix_ + k);
  absl::Status st = client_->KvWait(full, default_timeout_);
  if (!st.ok()) Throw(Describe(full), st);
}

void GlooStore::wait(const std::vector<std::string>& keys,
                     const std::chrono::milliseconds& timeout) {
  std::vector<std::string> full;
  full.reserve(keys.size());
  for (const std::string& k : keys) full.push_back(prefix_ + k);
  const absl::Duration d =
      timeout.count() > 0 ? absl::Milliseconds(timeout.count()) : absl::ZeroDuration();
  absl::Status st = client_->KvWait(full, d);
  if (!st.ok()) Throw(Describe(full), st);
}

}  // namespace ms_rendezvous
