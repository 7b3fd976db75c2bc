// Small helpers absl 20220623 lacks.
#ifndef MS_RENDEZVOUS_CORE_STATUS_UTIL_H_
#define MS_RENDEZVOUS_CORE_STATUS_UTIL_H_

#include "absl/status/status.h"

#define MSR_CONCAT_INNER_(a, b) a##b
#define MSR_CONCAT_(a, b) MSR_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status msr_status_ = (expr);               \
    if (!msr_status_.ok()) return msr_status_;         \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates the StatusOr `expr`, returns its status on error,
// otherwise moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(MSR_CONCAT_(msr_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // MS_RENDEZVOUS_CORE_STATUS_UTIL_H_
