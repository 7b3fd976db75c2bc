// Credentials of the core: job tokens and member credentials.
//
// Two secrets guard what a process may do (see README "Security"):
//   * A job token (MS_JOB_TOKEN) is fixed when the job is created (by its first member or by an
//     operator's CreateJob). Every later join must present the same token; a job created without
//     one admits only members presenting none. The core keeps only the token's SHA-256 digest.
//   * A member credential is issued by the daemon at each registration (128 random bits) and
//     returned only to that registration. Every follow-up call naming the member (heartbeat,
//     leave, resume, report error, KV, barrier) must carry it, so a process can act only as
//     itself: a member of the same job that reads another member's incarnation from the status
//     API still cannot leave, heartbeat or write as that member.
#ifndef MS_RENDEZVOUS_CORE_CREDENTIALS_H_
#define MS_RENDEZVOUS_CORE_CREDENTIALS_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace ms_rendezvous::core {

// SHA-256 of `token` as 64 lowercase hex characters; empty for an empty token (no token).
std::string TokenDigest(absl::string_view token);

// Constant-time comparison (the time does not depend on where the inputs differ).
bool SecretEquals(absl::string_view a, absl::string_view b);

// A fresh member credential: 128 bits from the kernel's CSPRNG as 32 lowercase hex characters.
std::string NewMemberCredential();
inline constexpr size_t kCredentialChars = 32;  // NewMemberCredential().size()

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_CREDENTIALS_H_
