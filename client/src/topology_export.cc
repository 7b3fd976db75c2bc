#include "ms_rendezvous/topology_export.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace ms_rendezvous {
namespace {

// ---- Member table helpers ------------------------------------------------------------------

std::string Quote(absl::string_view s) { return absl::StrCat("'", absl::CHexEscape(s), "'"); }

std::string DescribeMember(const MemberInfo& m) {
  std::string out = m.rank.has_value() ? absl::StrCat("rank ", *m.rank, " (node ")
                                       : std::string("(node ");
  absl::StrAppend(&out, Quote(m.node_id), ", host ", m.host, ")");
  return out;
}

// The role's members, by rank. Requires every one to hold a rank and the ranks to be 0..N-1.
absl::StatusOr<std::vector<const MemberInfo*>> RankedMembers(const std::vector<MemberInfo>& members,
                                                             Role role) {
  if (role == Role::kScheduler) {
    return absl::InvalidArgumentError(
        "MS_SCHED has no ranks: a rank table is for MS_WORKER or MS_PSERVER");
  }
  std::vector<const MemberInfo*> ranked;
  for (const MemberInfo& m : members) {
    if (m.role != role) continue;
    if (!m.rank.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat(RoleName(role), " member ", DescribeMember(m),
                       " has no rank yet: the job is not complete"));
    }
    ranked.push_back(&m);
  }
  if (ranked.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the member table has no ", RoleName(role), " members"));
  }
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const MemberInfo* a, const MemberInfo* b) { return *a->rank < *b->rank; });
  for (size_t i = 0; i < ranked.size(); ++i) {
    const uint32_t rank = *ranked[i]->rank;
    if (i > 0 && rank == *ranked[i - 1]->rank) {
      return absl::FailedPreconditionError(
          absl::StrCat(RoleName(role), " rank ", rank, " is held by two members: node ",
                       Quote(ranked[i - 1]->node_id), " (host ", ranked[i - 1]->host,
                       ") and node ", Quote(ranked[i]->node_id), " (host ", ranked[i]->host, ")"));
    }
    if (rank != i) {
      return absl::FailedPreconditionError(
          absl::StrCat(RoleName(role), " rank ", i, " is missing from the member table (",
                       ranked.size(), " members, highest rank ", *ranked.back()->rank,
                       "): the job is not complete"));
    }
  }
  return ranked;
}

struct Server {
  std::string host;
  std::vector<const MemberInfo*> members;  // by rank
};

// Groups ranked members (by rank) into servers in node order; fails when a host's ranks are
// not one contiguous block.
absl::StatusOr<std::vector<Server>> ContiguousServers(
    const std::vector<const MemberInfo*>& ranked, Role role) {
  std::vector<Server> servers;
  std::set<std::string> closed;  // hosts whose block ended
  for (const MemberInfo* m : ranked) {
    if (!servers.empty() && servers.back().host == m->host) {
      servers.back().members.push_back(m);
      continue;
    }
    if (closed.count(m->host) > 0) {
      const MemberInfo* before = servers.back().members.back();
      const Server* first = nullptr;
      for (const Server& s : servers) {
        if (s.host == m->host) {
          first = &s;
          break;
        }
      }
      return absl::FailedPreconditionError(absl::StrCat(
          RoleName(role), " ranks are not contiguous per host: rank ", *m->rank, " (node ",
          Quote(m->node_id), ") is on host ", m->host, " like rank ", *first->members.front()->rank,
          ", but rank ", *before->rank, " in between is on host ", before->host,
          ". An HCCL rank table numbers each server's devices as one block in server order; "
          "numeric MS_NODE_IDs probably pinned ranks across hosts (give each host a contiguous "
          "range of node ids, or let the daemon assign ranks)"));
    }
    if (!servers.empty()) closed.insert(servers.back().host);
    servers.push_back(Server{m->host, {m}});
  }
  return servers;
}

// ---- A small JSON writer (pretty, 4-space indent, string values only) -----------------------

void AppendJsonString(absl::string_view s, std::string* out) {
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

void AppendMember(int indent, absl::string_view key, absl::string_view value, bool last,
                  std::string* out) {
  out->append(indent, ' ');
  AppendJsonString(key, out);
  out->append(": ");
  AppendJsonString(value, out);
  out->append(last ? "\n" : ",\n");
}

// ---- A small strict JSON reader (RFC 8259) --------------------------------------------------

struct Json {
  enum Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = kNull;
  std::string text;  // string value, or the number's literal text
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json* Find(absl::string_view key) const {
    for (const auto& [k, v] : members) {
      if (k == key) return &v;
    }
    return nullptr;
  }
};

absl::string_view TypeName(Json::Type type) {
  switch (type) {
    case Json::kNull:
      return "null";
    case Json::kBool:
      return "a boolean";
    case Json::kNumber:
      return "a number";
    case Json::kString:
      return "a string";
    case Json::kArray:
      return "an array";
    case Json::kObject:
      return "an object";
  }
  return "?";
}

class JsonParser {
 public:
  explicit JsonParser(absl::string_view in) : in_(in) {}

  absl::StatusOr<Json> ParseDocument() {
    Json value;
    SkipSpace();
    if (absl::Status s = ParseValue(0, &value); !s.ok()) return s;
    SkipSpace();
    if (pos_ != in_.size()) return Error("unexpected text after the JSON document");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 64;

  absl::Status Error(absl::string_view what) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < in_.size(); ++i) {
      if (in_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("rank table: line ", line, " column ", column, ": ", what));
  }

  void SkipSpace() {
    while (pos_ < in_.size() &&
           (in_[pos_] == ' ' || in_[pos_] == '\t' || in_[pos_] == '\n' || in_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Consume(absl::string_view literal) {
    if (in_.substr(pos_, literal.size()) != literal) return false;
    pos_ += literal.size();
    return true;
  }

  absl::Status ParseValue(int depth, Json* out) {
    if (depth > kMaxDepth) return Error("nested too deeply");
    if (pos_ >= in_.size()) return Error("unexpected end of input: expected a value");
    const char c = in_[pos_];
    if (c == '{') return ParseObject(depth, out);
    if (c == '[') return ParseArray(depth, out);
    if (c == '"') {
      out->type = Json::kString;
      return ParseString(&out->text);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(out);
    if (Consume("true") || Consume("false")) {
      out->type = Json::kBool;
      return absl::OkStatus();
    }
    if (Consume("null")) {
      out->type = Json::kNull;
      return absl::OkStatus();
    }
    return Error(absl::StrCat("unexpected character ", Quote(in_.substr(pos_, 1)),
                              ": expected a value"));
  }

  absl::Status ParseObject(int depth, Json* out) {
    out->type = Json::kObject;
    ++pos_;  // '{'
    SkipSpace();
    if (Consume("}")) return absl::OkStatus();
    for (;;) {
      SkipSpace();
      if (pos_ >= in_.size() || in_[pos_] != '"') {
        return Error("expected a string key (trailing commas are not allowed)");
      }
      std::string key;
      if (absl::Status s = ParseString(&key); !s.ok()) return s;
      if (out->Find(key) != nullptr) {
        return Error(absl::StrCat("duplicate key \"", absl::CHexEscape(key), "\""));
      }
      SkipSpace();
      if (!Consume(":")) return Error("expected ':' after the key");
      SkipSpace();
      Json value;
      if (absl::Status s = ParseValue(depth + 1, &value); !s.ok()) return s;
      out->members.emplace_back(std::move(key), std::move(value));
      SkipSpace();
      if (Consume("}")) return absl::OkStatus();
      if (!Consume(",")) return Error("expected ',' or '}' in an object");
    }
  }

  absl::Status ParseArray(int depth, Json* out) {
    out->type = Json::kArray;
    ++pos_;  // '['
    SkipSpace();
    if (Consume("]")) return absl::OkStatus();
    for (;;) {
      SkipSpace();
      if (pos_ < in_.size() && in_[pos_] == ']') {
        return Error("expected a value (trailing commas are not allowed)");
      }
      Json value;
      if (absl::Status s = ParseValue(depth + 1, &value); !s.ok()) return s;
      out->items.push_back(std::move(value));
      SkipSpace();
      if (Consume("]")) return absl::OkStatus();
      if (!Consume(",")) return Error("expected ',' or ']' in an array");
    }
  }

  absl::Status ParseNumber(Json* out) {
    const size_t start = pos_;
    auto digits = [&] {
      size_t n = 0;
      while (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') {
        ++pos_;
        ++n;
      }
      return n;
    };
    Consume("-");
    if (Consume("0")) {
      if (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') {
        return Error("a number must not have leading zeros");
      }
    } else if (digits() == 0) {
      return Error("malformed number");
    }
    if (Consume(".") && digits() == 0) return Error("malformed number: digits expected after '.'");
    if (Consume("e") || Consume("E")) {
      if (!Consume("+")) Consume("-");
      if (digits() == 0) return Error("malformed number: digits expected in the exponent");
    }
    out->type = Json::kNumber;
    out->text = std::string(in_.substr(start, pos_ - start));
    return absl::OkStatus();
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3f)));
    }
  }

  bool Hex4(uint32_t* out) {
    if (pos_ + 4 > in_.size()) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = in_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v |= c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v |= c - 'A' + 10;
      } else {
        return false;
      }
    }
    pos_ += 4;
    *out = v;
    return true;
  }

  // Length of the well-formed UTF-8 sequence at pos_ (lead byte >= 0x80), 0 when malformed.
  size_t Utf8Length() const {
    const auto byte = [&](size_t i) { return static_cast<unsigned char>(in_[pos_ + i]); };
    const unsigned char b0 = byte(0);
    size_t n = 0;
    uint32_t cp = 0;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      n = 2;
      cp = b0 & 0x1f;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      n = 3;
      cp = b0 & 0x0f;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      n = 4;
      cp = b0 & 0x07;
    } else {
      return 0;
    }
    if (pos_ + n > in_.size()) return 0;
    for (size_t i = 1; i < n; ++i) {
      if ((byte(i) & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (byte(i) & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return 0;
    }
    return n;
  }

  absl::Status ParseString(std::string* out) {
    ++pos_;  // '"'
    out->clear();
    for (;;) {
      if (pos_ >= in_.size()) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(in_[pos_]);
      if (c == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (c < 0x20) return Error("control character in a string (escape it)");
      if (c >= 0x80) {
        const size_t n = Utf8Length();
        if (n == 0) return Error("invalid UTF-8 in a string");
        out->append(in_.data() + pos_, n);
        pos_ += n;
        continue;
      }
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= in_.size()) return Error("unterminated string");
      const char e = in_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return Error("malformed \\u escape: expected 4 hex digits");
          if (cp >= 0xdc00 && cp <= 0xdfff) return Error("unpaired UTF-16 surrogate in \\u escape");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            uint32_t low = 0;
            if (!Consume("\\u") || !Hex4(&low) || low < 0xdc00 || low > 0xdfff) {
              return Error("unpaired UTF-16 surrogate in \\u escape");
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          --pos_;
          return Error(absl::StrCat("invalid escape \\", absl::CHexEscape(absl::string_view(&e, 1))));
      }
    }
  }

  absl::string_view in_;
  size_t pos_ = 0;
};

// ---- Rank table validation ------------------------------------------------------------------

absl::Status FieldError(absl::string_view path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("rank table: ", path, ": ", what));
}

std::string Path(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

absl::StatusOr<const Json*> Field(const Json& object, absl::string_view path,
                                  absl::string_view key, Json::Type type, bool required = true) {
  const Json* v = object.Find(key);
  const std::string where = Path(path, key);
  if (v == nullptr) {
    if (!required) return nullptr;
    return FieldError(where, "missing");
  }
  if (v->type != type) {
    return FieldError(where, absl::StrCat("expected ", TypeName(type), ", got ", TypeName(v->type)));
  }
  return v;
}

absl::StatusOr<uint32_t> DecimalField(const Json& object, absl::string_view path,
                                      absl::string_view key, uint32_t max) {
  absl::StatusOr<const Json*> v = Field(object, path, key, Json::kString);
  if (!v.ok()) return v.status();
  const std::string& text = (*v)->text;
  uint32_t n = 0;
  const bool digits_only =
      !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits_only || !absl::SimpleAtoi(text, &n) || n > max) {
    return FieldError(Path(path, key),
                      absl::StrCat("\"", absl::CHexEscape(text), "\" is not a decimal integer in 0..",
                                   max));
  }
  return n;
}

bool IsIpLiteral(const std::string& text) {
  unsigned char buf[16];
  return inet_pton(AF_INET, text.c_str(), buf) == 1 || inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

}  // namespace

absl::StatusOr<std::string> HcclRankTableJson(const std::vector<MemberInfo>& members, Role role,
                                              const RankTableOptions& options) {
  absl::StatusOr<std::vector<const MemberInfo*>> ranked = RankedMembers(members, role);
  if (!ranked.ok()) return ranked.status();
  absl::StatusOr<std::vector<Server>> servers = ContiguousServers(*ranked, role);
  if (!servers.ok()) return servers.status();

  // Device ids: DEVICE_ID, else the local rank (its index on the host); unique per host.
  auto device_id = [](const MemberInfo& m, size_t index_on_host) -> uint32_t {
    return m.device_id >= 0 ? static_cast<uint32_t>(m.device_id)
                            : static_cast<uint32_t>(index_on_host);
  };
  for (const Server& s : *servers) {
    std::map<uint32_t, const MemberInfo*> seen;
    for (size_t i = 0; i < s.members.size(); ++i) {
      const MemberInfo* m = s.members[i];
      auto [it, inserted] = seen.emplace(device_id(*m, i), m);
      if (!inserted) {
        return absl::FailedPreconditionError(absl::StrCat(
            "host ", s.host, " has device id ", it->first, " twice: ", DescribeMember(*it->second),
            " and ", DescribeMember(*m),
            " (set a distinct DEVICE_ID in each process of a host, or leave it unset everywhere "
            "to number devices by local rank)"));
      }
    }
  }
  if (options.require_device_ip) {
    std::vector<std::string> without;
    for (const MemberInfo* m : *ranked) {
      if (m->device_ip.empty()) without.push_back(DescribeMember(*m));
    }
    if (!without.empty()) {
      const size_t total = without.size();
      constexpr size_t kNamed = 5;
      if (total > kNamed) {
        without.resize(kNamed);
        without.push_back(absl::StrCat("and ", total - kNamed, " more"));
      }
      return absl::FailedPreconditionError(absl::StrCat(
          total, " of ", ranked->size(), " ", RoleName(role),
          " members reported no device IP, which HCCL needs for every device: ",
          absl::StrJoin(without, ", "),
          ". Set MS_DEVICE_IP (the device's RoCE address, e.g. from hccn_tool or "
          "/etc/hccn.conf) in every process, or accept the placeholder ", kUnknownDeviceIp,
          " (RankTableOptions.require_device_ip=false, ms-rendezvousctl ranktable "
          "--allow-missing-device-ip)"));
    }
  }

  std::string out = "{\n";
  AppendMember(4, "version", "1.0", false, &out);
  AppendMember(4, "server_count", absl::StrCat(servers->size()), false, &out);
  AppendMember(4, "status", "completed", false, &out);
  out.append("    \"server_list\": [\n");
  for (size_t si = 0; si < servers->size(); ++si) {
    const Server& s = (*servers)[si];
    out.append("        {\n");
    AppendMember(12, "server_id", s.host, false, &out);
    AppendMember(12, "host_nic_ip", "reserve", false, &out);
    out.append("            \"device\": [\n");
    for (size_t i = 0; i < s.members.size(); ++i) {
      const MemberInfo& m = *s.members[i];
      out.append("                {\n");
      AppendMember(20, "device_id", absl::StrCat(device_id(m, i)), false, &out);
      AppendMember(20, "device_ip", m.device_ip.empty() ? kUnknownDeviceIp : m.device_ip, false,
                   &out);
      AppendMember(20, "rank_id", absl::StrCat(*m.rank), true, &out);
      out.append(i + 1 < s.members.size() ? "                },\n" : "                }\n");
    }
    out.append("            ]\n");
    out.append(si + 1 < servers->size() ? "        },\n" : "        }\n");
  }
  out.append("    ]\n}\n");
  return out;
}

std::string OpenMpiHostfile(const std::vector<MemberInfo>& members, Role role) {
  struct Host {
    std::string host;
    std::optional<uint32_t> lowest_rank;
    size_t first_seen = 0;
    size_t slots = 0;
  };
  std::vector<Host> hosts;
  std::map<std::string, size_t> index;
  for (const MemberInfo& m : members) {
    if (m.role != role) continue;
    auto [it, inserted] = index.emplace(m.host, hosts.size());
    if (inserted) hosts.push_back(Host{m.host, std::nullopt, hosts.size(), 0});
    Host& h = hosts[it->second];
    ++h.slots;
    if (m.rank.has_value() && (!h.lowest_rank.has_value() || *m.rank < *h.lowest_rank)) {
      h.lowest_rank = *m.rank;
    }
  }
  std::stable_sort(hosts.begin(), hosts.end(), [](const Host& a, const Host& b) {
    if (a.lowest_rank.has_value() != b.lowest_rank.has_value()) return a.lowest_rank.has_value();
    if (a.lowest_rank.has_value() && *a.lowest_rank != *b.lowest_rank) {
      return *a.lowest_rank < *b.lowest_rank;
    }
    return a.first_seen < b.first_seen;
  });
  std::string out;
  for (const Host& h : hosts) absl::StrAppend(&out, h.host, " slots=", h.slots, "\n");
  return out;
}

absl::StatusOr<std::string> RankHost(const std::vector<MemberInfo>& members, Role role,
                                     uint32_t rank) {
  for (const MemberInfo& m : members) {
    if (m.role == role && m.rank.has_value() && *m.rank == rank) return m.host;
  }
  return absl::NotFoundError(absl::StrCat("no ", RoleName(role), " member holds rank ", rank,
                                          " (the job is not complete?)"));
}

std::vector<std::pair<std::string, std::string>> LaunchEnv(const Topology& t,
                                                           const std::string& master_addr,
                                                           int master_port, int32_t device_id) {
  const std::string local_rank = absl::StrCat(t.local_rank);
  return {
      {"RANK_ID", absl::StrCat(t.rank)},
      {"RANK_SIZE", absl::StrCat(t.world_size)},
      {"DEVICE_ID", device_id >= 0 ? absl::StrCat(device_id) : local_rank},
      {"RANK", absl::StrCat(t.rank)},
      {"WORLD_SIZE", absl::StrCat(t.world_size)},
      {"LOCAL_RANK", local_rank},
      {"LOCAL_WORLD_SIZE", absl::StrCat(t.local_world_size)},
      {"GROUP_RANK", absl::StrCat(t.node_rank)},
      {"NODE_RANK", absl::StrCat(t.node_rank)},
      {"MASTER_ADDR", master_addr},
      {"MASTER_PORT", absl::StrCat(master_port)},
  };
}

absl::StatusOr<ParsedRankTable> ParseHcclRankTable(const std::string& json) {
  absl::StatusOr<Json> doc = JsonParser(json).ParseDocument();
  if (!doc.ok()) return doc.status();
  if (doc->type != Json::kObject) {
    return FieldError("top level", absl::StrCat("expected an object, got ", TypeName(doc->type)));
  }
  ParsedRankTable table;
  absl::StatusOr<const Json*> version = Field(*doc, "", "version", Json::kString);
  if (!version.ok()) return version.status();
  if ((*version)->text != "1.0") {
    return FieldError("version", absl::StrCat("\"", absl::CHexEscape((*version)->text),
                                              "\" is not supported: expected \"1.0\""));
  }
  table.version = (*version)->text;
  absl::StatusOr<const Json*> status = Field(*doc, "", "status", Json::kString);
  if (!status.ok()) return status.status();
  if ((*status)->text != "completed") {
    return FieldError("status", absl::StrCat("\"", absl::CHexEscape((*status)->text),
                                             "\": expected \"completed\""));
  }
  table.status = (*status)->text;
  absl::StatusOr<uint32_t> server_count = DecimalField(*doc, "", "server_count", 1000000);
  if (!server_count.ok()) return server_count.status();
  absl::StatusOr<const Json*> list = Field(*doc, "", "server_list", Json::kArray);
  if (!list.ok()) return list.status();
  if ((*list)->items.size() != *server_count) {
    return FieldError("server_count", absl::StrCat("\"", *server_count, "\" but server_list has ",
                                                   (*list)->items.size(), " entries"));
  }
  if ((*list)->items.empty()) return FieldError("server_list", "is empty");

  std::set<std::string> server_ids;
  uint32_t next_rank = 0;
  std::vector<std::string> rank_paths;  // rank_id -> the entry that has it
  for (size_t si = 0; si < (*list)->items.size(); ++si) {
    const Json& js = (*list)->items[si];
    const std::string spath = absl::StrCat("server_list[", si, "]");
    if (js.type != Json::kObject) {
      return FieldError(spath, absl::StrCat("expected an object, got ", TypeName(js.type)));
    }
    ParsedRankTableServer server;
    absl::StatusOr<const Json*> id = Field(js, spath, "server_id", Json::kString);
    if (!id.ok()) return id.status();
    if ((*id)->text.empty()) return FieldError(spath + ".server_id", "is empty");
    if (!server_ids.insert((*id)->text).second) {
      return FieldError(spath + ".server_id",
                        absl::StrCat("\"", absl::CHexEscape((*id)->text),
                                     "\" appears twice (each server must be listed once)"));
    }
    server.server_id = (*id)->text;
    absl::StatusOr<const Json*> nic = Field(js, spath, "host_nic_ip", Json::kString, false);
    if (!nic.ok()) return nic.status();
    if (*nic != nullptr) server.host_nic_ip = (*nic)->text;
    absl::StatusOr<const Json*> pod_ip = Field(js, spath, "pod_ip", Json::kString, false);
    if (!pod_ip.ok()) return pod_ip.status();
    if (*pod_ip != nullptr) server.pod_ip = (*pod_ip)->text;
    absl::StatusOr<const Json*> devices = Field(js, spath, "device", Json::kArray);
    if (!devices.ok()) return devices.status();
    if ((*devices)->items.empty()) return FieldError(spath + ".device", "is empty");
    std::set<uint32_t> device_ids;
    for (size_t di = 0; di < (*devices)->items.size(); ++di) {
      const Json& jd = (*devices)->items[di];
      const std::string dpath = absl::StrCat(spath, ".device[", di, "]");
      if (jd.type != Json::kObject) {
        return FieldError(dpath, absl::StrCat("expected an object, got ", TypeName(jd.type)));
      }
      ParsedRankTableDevice device;
      absl::StatusOr<uint32_t> device_id = DecimalField(jd, dpath, "device_id", INT32_MAX);
      if (!device_id.ok()) return device_id.status();
      if (!device_ids.insert(*device_id).second) {
        return FieldError(dpath + ".device_id",
                          absl::StrCat("\"", *device_id, "\" appears twice on server \"",
                                       absl::CHexEscape(server.server_id), "\""));
      }
      device.device_id = *device_id;
      absl::StatusOr<const Json*> ip = Field(jd, dpath, "device_ip", Json::kString, false);
      if (!ip.ok()) return ip.status();
      if (*ip != nullptr) {
        if (!IsIpLiteral((*ip)->text)) {
          return FieldError(dpath + ".device_ip",
                            absl::StrCat("\"", absl::CHexEscape((*ip)->text),
                                         "\" is not an IPv4 or IPv6 address"));
        }
        device.device_ip = (*ip)->text;
      }
      absl::StatusOr<uint32_t> rank_id = DecimalField(jd, dpath, "rank_id", INT32_MAX);
      if (!rank_id.ok()) return rank_id.status();
      if (*rank_id < next_rank) {
        return FieldError(dpath + ".rank_id",
                          absl::StrCat("\"", *rank_id, "\" appears twice (", rank_paths[*rank_id],
                                       " has it too): each rank_id must be listed once"));
      }
      if (*rank_id != next_rank) {
        return FieldError(dpath + ".rank_id",
                          absl::StrCat("\"", *rank_id, "\" where \"", next_rank,
                                       "\" was expected: rank_id counts from 0 and follows the "
                                       "order of the servers and of their devices"));
      }
      ++next_rank;
      rank_paths.push_back(dpath);
      device.rank_id = *rank_id;
      server.devices.push_back(std::move(device));
    }
    table.servers.push_back(std::move(server));
  }
  table.rank_size = next_rank;
  return table;
}

}  // namespace ms_rendezvous
