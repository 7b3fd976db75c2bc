#include "server/auth.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/credentials.h"

namespace ms_rendezvous::server {
namespace {

// The first value of `key`, or nullptr.
const grpc::string_ref* Header(const grpc::ServerContextBase& ctx, const char* key) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(key);
  return it == md.end() ? nullptr : &it->second;
}

}  // namespace

std::string JobTokenOf(const grpc::ServerContextBase& ctx) {
  const grpc::string_ref* v = Header(ctx, kJobTokenHeader);
  return v == nullptr ? std::string() : std::string(v->data(), v->size());
}

AdminAuth::AdminAuth(const AdminAuthOptions& options)
    : digest_(core::TokenDigest(options.admin_token)),
      status_requires_token_(options.status_requires_token) {}

void AdminAuth::SetAdminToken(const std::string& token) {
  std::string digest = core::TokenDigest(token);
  absl::MutexLock l(&mu_);
  digest_ = std::move(digest);
}

std::string AdminAuth::Digest() const {
  absl::MutexLock l(&mu_);
  return digest_;
}

absl::Status AdminAuth::CheckRead(const grpc::ServerContextBase& ctx) const {
  if (!status_requires_token_) return absl::OkStatus();
  return CheckToken(ctx, "the status API");
}

absl::Status AdminAuth::CheckWrite(const grpc::ServerContextBase& ctx, const char* call) const {
  if (Digest().empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        call, " is disabled: this daemon has no admin token; start ms-rendezvousd with "
              "--admin-token-file=FILE to allow operators to create, abort and delete jobs "
              "and read their keys"));
  }
  return CheckToken(ctx, call);
}

absl::Status AdminAuth::CheckToken(const grpc::ServerContextBase& ctx, const char* call) const {
  const grpc::string_ref* v = Header(ctx, kAuthorizationHeader);
  if (v == nullptr) {
    return absl::UnauthenticatedError(absl::StrCat(
        call, " requires the admin token: send metadata \"authorization: Bearer <token>\" "
              "(ms-rendezvousctl --admin-token-file or MS_ADMIN_TOKEN)"));
  }
  absl::string_view value(v->data(), v->size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWithIgnoreCase(value, kBearer)) {
    return absl::UnauthenticatedError(absl::StrCat(
        call, ": the authorization metadata must be \"Bearer <token>\""));
  }
  value.remove_prefix(kBearer.size());
  const std::string digest = Digest();
  if (digest.empty() || !core::SecretEquals(core::TokenDigest(value), digest)) {
    return absl::PermissionDeniedError(
        absl::StrCat(call, ": the admin token is wrong (it does not match --admin-token-file)"));
  }
  return absl::OkStatus();
}

}  // namespace ms_rendezvous::server
