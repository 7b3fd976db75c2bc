// The "--name=value" / "--name value" convention of the project's command-line tools.
#ifndef MS_RENDEZVOUS_TOOLS_COMMON_FLAG_VALUE_H_
#define MS_RENDEZVOUS_TOOLS_COMMON_FLAG_VALUE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ms_rendezvous::tools {

// Splits the option at argv[*i] into its name and value: "--name=value", or "--name" followed by
// the value in the next argument (then *i is advanced past it). InvalidArgument naming the option
// when the value is missing.
inline absl::Status SplitValuedFlag(int argc, char** argv, int* i, std::string* name,
                                    std::string* value) {
  const absl::string_view arg = argv[*i];
  if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
    *name = std::string(arg.substr(0, eq));
    *value = std::string(arg.substr(eq + 1));
    return absl::OkStatus();
  }
  *name = std::string(arg);
  if (*i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(*name, " needs a value"));
  *value = argv[++*i];
  return absl::OkStatus();
}

}  // namespace ms_rendezvous::tools

#endif  // MS_RENDEZVOUS_TOOLS_COMMON_FLAG_VALUE_H_
