#include "sync/commands.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <limits>
#include <set>

namespace storewatch::sync {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxUid = 128;
constexpr std::size_t kMaxMatch = 256;
constexpr std::size_t kMaxProbe = 64;
constexpr std::size_t kMaxDurationText = 32;

struct OpSpec {
  CommandOp op;
  std::string_view name;
  std::set<std::string_view> fields;  ///< besides v, id, op and by
};

const std::array<OpSpec, 7>& ops() {
  static const std::array<OpSpec, 7> kOps = {{
      {CommandOp::ack, "ack", {"incident", "note"}},
      {CommandOp::resolve, "resolve", {"incident", "note"}},
      {CommandOp::close, "close", {"incident", "note"}},
      {CommandOp::note, "note", {"incident", "note"}},
      {CommandOp::silence, "silence", {"match", "for", "reason"}},
      {CommandOp::probe_run, "probe_run", {"probe"}},
      {CommandOp::resync, "resync", {"from_seq"}},
  }};
  return kOps;
}

/// Outside text in an error message: printable ASCII, at most 40 characters.
std::string shown(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 40)) {
    out += (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? c : '?';
  }
  if (text.size() > 40) out += "…";
  return out;
}

/// A JSON integer that fits in int64 (not a float, not a bool, not 2^64-1).
std::optional<std::int64_t> as_int64(const json& j) {
  if (j.is_number_unsigned()) {
    const auto u = j.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(u);
  }
  if (j.is_number_integer()) return j.get<std::int64_t>();
  return std::nullopt;
}

/// Reads a JSON string token starting at the quote `s[i]`; on success `i` is
/// just past the closing quote and `raw` holds the characters between (escapes
/// left as they are). False when it does not end within `s`.
bool read_string(std::string_view s, std::size_t& i, std::string_view* raw = nullptr) {
  const std::size_t start = ++i;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\\') {
      i += 2;
      continue;
    }
    if (c == '"') {
      if (raw != nullptr) *raw = s.substr(start, i - start);
      ++i;
      return true;
    }
    ++i;
  }
  return false;
}

/// Identifiers that end up in logs and error messages: no control
/// characters, quotes or backslashes.
bool plain_text(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') return false;
  }
  return true;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/// The string field `key` of `j`: refused when missing (and `required`), not a
/// string, or longer than `max` bytes (`max` 0: no cap here).
std::optional<std::string> string_field(const json& j, const char* key, bool required,
                                        std::size_t max, std::string& error) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) error = fmt::format("\"{}\" is missing", key);
    return std::nullopt;
  }
  if (!it->is_string()) {
    error = fmt::format("\"{}\" must be a string", key);
    return std::nullopt;
  }
  std::string value = it->get<std::string>();
  if (max > 0 && value.size() > max) {
    error = fmt::format("\"{}\" is {} bytes; at most {}", key, value.size(), max);
    return std::nullopt;
  }
  return value;
}

}  // namespace

std::string_view to_string(CommandOp op) {
  for (const auto& spec : ops()) {
    if (spec.op == op) return spec.name;
  }
  return "?";
}

bool valid_command_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxCommandId) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

int nesting_depth(std::string_view payload, int limit) {
  int depth = 0;
  int deepest = 0;
  for (std::size_t i = 0; i < payload.size();) {
    const char c = payload[i];
    if (c == '"') {
      if (!read_string(payload, i)) break;
      continue;
    }
    if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return limit + 1;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
    ++i;
  }
  return deepest;
}

std::optional<std::string> scan_command_id(std::string_view payload) {
  const std::string_view s = payload.substr(0, kCommandIdScan);
  std::size_t i = 0;
  while (i < s.size() && is_space(s[i])) ++i;
  if (i >= s.size() || s[i] != '{') return std::nullopt;
  // Only the top-level object's keys count: an "id" inside a nested value
  // or inside a string is not the command's.
  int depth = 0;
  bool expect_key = false;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"') {
      std::string_view token;
      const bool key = expect_key && depth == 1;
      if (!read_string(s, i, &token)) return std::nullopt;
      expect_key = false;
      if (!key || token != "id") continue;
      while (i < s.size() && is_space(s[i])) ++i;
      if (i >= s.size() || s[i] != ':') return std::nullopt;
      ++i;
      while (i < s.size() && is_space(s[i])) ++i;
      if (i >= s.size() || s[i] != '"') return std::nullopt;
      std::string_view value;
      if (!read_string(s, i, &value) || !valid_command_id(value)) return std::nullopt;
      return std::string(value);
    }
    if (c == '{' || c == '[') {
      ++depth;
      expect_key = c == '{' && depth == 1;
    } else if (c == '}' || c == ']') {
      if (--depth <= 0) return std::nullopt;  // the top-level object ended
      expect_key = false;
    } else if (c == ',') {
      expect_key = depth == 1;
    } else if (c == ':') {
      expect_key = false;
    }
    ++i;
  }
  return std::nullopt;
}

ParsedCommand parse_command(std::string_view payload) {
  ParsedCommand out;
  auto refuse = [&out](std::string why) {
    out.command.reset();
    out.error = std::move(why);
    return out;
  };
  if (payload.size() > kMaxCommandPayload) {
    out.id = scan_command_id(payload);
    return refuse(
        fmt::format("the command is {} bytes; at most {}", payload.size(), kMaxCommandPayload));
  }
  if (nesting_depth(payload, kMaxCommandDepth) > kMaxCommandDepth) {
    out.id = scan_command_id(payload);
    return refuse(fmt::format("the command nests deeper than {} levels", kMaxCommandDepth));
  }
  json j = json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    out.id = scan_command_id(payload);
    return refuse("the command is not JSON (or not UTF-8)");
  }
  if (!j.is_object()) return refuse("the command is not a JSON object");

  auto id = j.find("id");
  if (id == j.end()) return refuse("\"id\" is missing");
  if (!id->is_string() || !valid_command_id(id->get_ref<const std::string&>())) {
    return refuse(fmt::format("\"id\" must be a string of 1 to {} characters [A-Za-z0-9._:-]",
                              kMaxCommandId));
  }
  Command cmd;
  cmd.id = id->get<std::string>();
  out.id = cmd.id;

  auto v = j.find("v");
  if (v == j.end()) return refuse("\"v\" is missing");
  const auto version = as_int64(*v);
  if (!version) return refuse("\"v\" must be an integer");
  if (*version != 1) {
    return refuse(
        fmt::format("version {} is not supported; this agent speaks version 1", *version));
  }

  auto op = j.find("op");
  if (op == j.end()) return refuse("\"op\" is missing");
  if (!op->is_string()) return refuse("\"op\" must be a string");
  const OpSpec* spec = nullptr;
  for (const auto& s : ops()) {
    if (s.name == op->get_ref<const std::string&>()) spec = &s;
  }
  if (spec == nullptr) {
    return refuse(fmt::format(
        "unknown op \"{}\" (ops: ack, resolve, close, note, silence, probe_run, resync)",
        shown(op->get_ref<const std::string&>())));
  }
  cmd.op = spec->op;

  for (const auto& [key, value] : j.items()) {
    if (key == "v" || key == "id" || key == "op" || key == "by") continue;
    if (!spec->fields.contains(key)) {
      return refuse(fmt::format("\"{}\" is not a field of op {}", shown(key), spec->name));
    }
  }

  std::string error;
  auto by = string_field(j, "by", true, 0, error);
  if (!by) return refuse(error);
  // HQ may name itself "hq:gap"; the actor is "hq:" + the rest either way.
  cmd.by = by->starts_with("hq:") ? by->substr(3) : *by;

  switch (cmd.op) {
    case CommandOp::ack:
    case CommandOp::resolve:
    case CommandOp::close:
    case CommandOp::note: {
      auto incident = string_field(j, "incident", true, kMaxUid, error);
      if (!incident) return refuse(error);
      if (!valid_command_id(*incident)) {
        return refuse("\"incident\" must be an incident's uid");
      }
      cmd.incident = std::move(*incident);
      auto note = string_field(j, "note", cmd.op == CommandOp::note, 0, error);
      if (!note && !error.empty()) return refuse(error);
      cmd.note = note.value_or("");
      break;
    }
    case CommandOp::silence: {
      auto match = string_field(j, "match", true, kMaxMatch, error);
      if (!match) return refuse(error);
      auto length = string_field(j, "for", true, kMaxDurationText, error);
      if (!length) return refuse(error);
      auto reason = string_field(j, "reason", true, 0, error);
      if (!reason) return refuse(error);
      if (match->empty() || !plain_text(*match)) {
        return refuse("\"match\" must be probe names or labels, as for --match");
      }
      auto d = parse_duration(*length);
      if (!d) {
        return refuse(
            fmt::format("\"for\" \"{}\" is not a duration (30m, 2h, 1d)", shown(*length)));
      }
      cmd.match = std::move(*match);
      cmd.length = *d;
      cmd.reason = std::move(*reason);
      break;
    }
    case CommandOp::probe_run: {
      auto probe = string_field(j, "probe", true, kMaxProbe, error);
      if (!probe) return refuse(error);
      if (probe->empty() || !plain_text(*probe)) return refuse("\"probe\" must be a probe's name");
      cmd.probe = std::move(*probe);
      break;
    }
    case CommandOp::resync: {
      auto from = j.find("from_seq");
      if (from == j.end()) return refuse("\"from_seq\" is missing");
      auto seq = as_int64(*from);
      if (!seq || *seq < 0) return refuse("\"from_seq\" must be an integer 0 or above");
      cmd.from_seq = *seq;
      break;
    }
  }
  out.command = std::move(cmd);
  return out;
}

std::string command_done(const std::string& id, const json& fields) {
  json out{{"v", 1}, {"id", id}, {"ok", true}};
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) out[key] = value;
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string command_refused(const std::optional<std::string>& id, std::string_view why) {
  json out{{"v", 1}, {"id", id ? json(*id) : json()}, {"ok", false}, {"error", std::string(why)}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace storewatch::sync
