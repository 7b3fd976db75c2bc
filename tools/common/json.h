// A tiny streaming JSON writer for the command-line tools (ctl, bench, probe).
//
// No JSON library is installed on the build machines and the tools only ever *emit* JSON, so a
// writer that escapes strings correctly and places commas is all that is needed. Output is compact
// (no whitespace), keys are written in call order, which keeps the documented field order stable.
//
//   JsonWriter w;
//   w.BeginObject().Key("job_id").String(id).Key("rank").Null().EndObject();
//   std::cout << w.str() << "\n";
//
// Misuse (a value without a key inside an object, unbalanced End*) is a programming error and is
// caught by DCHECK-style asserts only in debug builds; the tools' output paths are fixed.
#ifndef MS_RENDEZVOUS_TOOLS_COMMON_JSON_H_
#define MS_RENDEZVOUS_TOOLS_COMMON_JSON_H_

#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace ms_rendezvous::tools {

// Appends `s` as a JSON string literal (with quotes) to `out`. Bytes >= 0x80 are passed through
// unchanged: node ids and host names are UTF-8 (or ASCII) by contract, and re-encoding them as
// \u escapes would only make the output harder to read.
inline void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

class JsonWriter {
 public:
  JsonWriter& BeginObject() {
    Separate();
    out_.push_back('{');
    first_.push_back(true);
    return *this;
  }
  JsonWriter& EndObject() {
    assert(!first_.empty());
    first_.pop_back();
    out_.push_back('}');
    return *this;
  }
  JsonWriter& BeginArray() {
    Separate();
    out_.push_back('[');
    first_.push_back(true);
    return *this;
  }
  JsonWriter& EndArray() {
    assert(!first_.empty());
    first_.pop_back();
    out_.push_back(']');
    return *this;
  }
  // Writes `"key":`; the next call must write the value.
  JsonWriter& Key(absl::string_view key) {
    Separate();
    AppendJsonString(key, &out_);
    out_.push_back(':');
    after_key_ = true;
    return *this;
  }
  JsonWriter& String(absl::string_view value) {
    Separate();
    AppendJsonString(value, &out_);
    return *this;
  }
  JsonWriter& Int(int64_t value) {
    Separate();
    absl::StrAppend(&out_, value);
    return *this;
  }
  JsonWriter& Uint(uint64_t value) {
    Separate();
    absl::StrAppend(&out_, value);
    return *this;
  }
  // Finite values with up to `decimals` fractional digits (trailing zeros trimmed, so 2.5 stays
  // 2.5 and 3.0 becomes 3); NaN and infinities, which JSON cannot represent, become null.
  JsonWriter& Double(double value, int decimals = 3) {
    Separate();
    if (!std::isfinite(value)) {
      out_.append("null");
      return *this;
    }
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
    std::string_view text(buf);
    if (text.find('.') != std::string_view::npos) {
      while (text.back() == '0') text.remove_suffix(1);
      if (text.back() == '.') text.remove_suffix(1);
    }
    if (text == "-0") text = "0";
    out_.append(text.data(), text.size());
    return *this;
  }
  JsonWriter& Bool(bool value) {
    Separate();
    out_.append(value ? "true" : "false");
    return *this;
  }
  JsonWriter& Null() {
    Separate();
    out_.append("null");
    return *this;
  }

  const std::string& str() const { return out_; }
  // Hands over what was written so far, e.g. to flush one JSON line per event.
  std::string Take() {
    std::string out = std::move(out_);
    out_.clear();
    return out;
  }

 private:
  // Emits the comma between siblings. A value right after Key() never gets one.
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) out_.push_back(',');
      first_.back() = false;
    }
  }

  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written into it yet
  bool after_key_ = false;
};

}  // namespace ms_rendezvous::tools

#endif  // MS_RENDEZVOUS_TOOLS_COMMON_JSON_H_
