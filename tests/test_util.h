// Shared test helpers: a StatusIs matcher (absl 20220623 has none) and status printing.
#ifndef MS_RENDEZVOUS_TESTS_TEST_UTIL_H_
#define MS_RENDEZVOUS_TESTS_TEST_UTIL_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace ms_rendezvous::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// EXPECT_THAT(status_or, StatusIs(absl::StatusCode::kNotFound, HasSubstr("job 'x'")));
MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code) + " and a matching message") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()),
                                       result_listener);
}

// EXPECT_THAT(status_or, StatusIs(absl::StatusCode::kNotFound)): any message.
inline auto StatusIs(absl::StatusCode code) { return StatusIs(code, ::testing::_); }

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.ok();
}

}  // namespace ms_rendezvous::testing

#endif  // MS_RENDEZVOUS_TESTS_TEST_UTIL_H_
