// A tiny JSON object writer for the probe's one-line outputs (no JSON library is a dependency).
#ifndef MS_RENDEZVOUS_TOOLS_PROBE_JSON_H_
#define MS_RENDEZVOUS_TOOLS_PROBE_JSON_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "tools/common/json.h"

namespace ms_rendezvous::probe {

// `text` as a JSON string literal, quotes included (the tools' one escaper: bytes >= 0x80 pass
// through unchanged, control characters are escaped).
inline std::string JsonString(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  tools::AppendJsonString(text, &out);
  return out;
}

// Builds one flat JSON object in insertion order: {"a":1,"b":"x"}.
class JsonObject {
 public:
  JsonObject& Add(absl::string_view key, absl::string_view value) {
    return Raw(key, JsonString(value));
  }
  JsonObject& Add(absl::string_view key, const char* value) { return Raw(key, JsonString(value)); }
  JsonObject& Add(absl::string_view key, const std::string& value) {
    return Raw(key, JsonString(value));
  }
  JsonObject& Add(absl::string_view key, uint64_t value) { return Raw(key, absl::StrCat(value)); }
  JsonObject& Add(absl::string_view key, uint32_t value) { return Raw(key, absl::StrCat(value)); }
  JsonObject& Add(absl::string_view key, int64_t value) { return Raw(key, absl::StrCat(value)); }
  JsonObject& Add(absl::string_view key, int32_t value) { return Raw(key, absl::StrCat(value)); }
  JsonObject& Add(absl::string_view key, bool value) { return Raw(key, value ? "true" : "false"); }
  JsonObject& Add(absl::string_view key, double value) {
    return Raw(key, absl::StrFormat("%.3f", value));
  }
  JsonObject& AddNull(absl::string_view key) { return Raw(key, "null"); }
  // `json` must already be valid JSON (an array or object built elsewhere).
  JsonObject& AddRaw(absl::string_view key, absl::string_view json) { return Raw(key, json); }

  std::string str() const { return absl::StrCat("{", body_, "}"); }

 private:
  JsonObject& Raw(absl::string_view key, absl::string_view json) {
    if (!body_.empty()) body_.push_back(',');
    absl::StrAppend(&body_, JsonString(key), ":", json);
    return *this;
  }
  std::string body_;
};

}  // namespace ms_rendezvous::probe

#endif  // MS_RENDEZVOUS_TOOLS_PROBE_JSON_H_
