// Formatting helpers for error messages: lists are capped so a 100k-member job never produces a
// megabyte-long status message.
#ifndef MS_RENDEZVOUS_CORE_MESSAGES_H_
#define MS_RENDEZVOUS_CORE_MESSAGES_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ms_rendezvous::core {

// "[1, 2, 3]" or "[1, 2, ... and 7 more]": at most `cap` items of `items`, where `total` is the
// full count (items may already be cut short).
template <typename T>
std::string ListCapped(const std::vector<T>& items, size_t cap, size_t total) {
  std::vector<T> shown(items.begin(), items.begin() + std::min(cap, items.size()));
  std::string out = absl::StrCat("[", absl::StrJoin(shown, ", "));
  if (total > shown.size()) absl::StrAppend(&out, ", ... and ", total - shown.size(), " more");
  return out + "]";
}

}  // namespace ms_rendezvous::core

#endif  // MS_RENDEZVOUS_CORE_MESSAGES_H_
