#include "sync/commands.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <limits>
#include <set>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/clock.h"

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

namespace {

/// The payload as a JSON object, or nullopt with `out` saying why not.
std::optional<json> parse_payload(std::string_view payload, ParsedCommand& out) {
  auto refuse = [&out](std::string why) {
    out.command.reset();
    out.error = std::move(why);
    return std::nullopt;
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
  // nlohmann's parser takes a NUL byte for the end of the input: JSON text
  // never holds one, and what follows it would otherwise pass unread.
  json j = payload.find('\0') != std::string_view::npos
               ? json(json::value_t::discarded)
               : json::parse(payload.begin(), payload.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    out.id = scan_command_id(payload);
    return refuse("the command is not JSON (or not UTF-8)");
  }
  if (!j.is_object()) return refuse("the command is not a JSON object");
  return j;
}

/// A signed envelope has these; an unsigned command never does.
bool is_envelope(const json& j) {
  return j.contains("sig") || j.contains("cmd") || j.contains("exp");
}

/// A command's "id" (DESIGN §6), or why it is not one.
Result<std::string> command_id_of(const json& j) {
  auto id = j.find("id");
  if (id == j.end()) return Error{"\"id\" is missing"};
  if (!id->is_string() || !valid_command_id(id->get_ref<const std::string&>())) {
    return Error{fmt::format("\"id\" must be a string of 1 to {} characters [A-Za-z0-9._:-]",
                             kMaxCommandId)};
  }
  return id->get<std::string>();
}

/// The fields of an unsigned command (DESIGN §6), already a JSON object.
ParsedCommand parse_fields(const json& j) {
  ParsedCommand out;
  auto refuse = [&out](std::string why) {
    out.command.reset();
    out.error = std::move(why);
    return out;
  };

  auto id = command_id_of(j);
  if (!id) return refuse(id.error().message);
  Command cmd;
  cmd.id = std::move(*id);
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

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// `hex` (64 digits) as 32 bytes; nullopt when it is not that.
std::optional<std::array<unsigned char, 32>> signature_bytes(std::string_view hex) {
  std::array<unsigned char, 32> out{};
  if (hex.size() != 2 * out.size()) return std::nullopt;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = hex_digit(hex[2 * i]);
    const int lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<unsigned char>((hi << 4) | lo);
  }
  return out;
}

std::array<unsigned char, 32> hmac_sha256(std::string_view key, std::string_view input) {
  std::array<unsigned char, 32> out{};
  unsigned int len = 0;
  ::HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), out.data(), &len);
  return out;
}

std::string unix_time_text(std::int64_t seconds) {
  constexpr std::int64_t kYear9999 = 253'402'300'799;
  if (seconds < 0 || seconds > kYear9999) return fmt::format("{} (Unix seconds)", seconds);
  return format_rfc3339(WallTime(std::chrono::seconds(seconds)));
}

const std::set<std::string_view>& envelope_fields() {
  static const std::set<std::string_view> kFields = {"v", "id", "exp", "cmd", "sig"};
  return kFields;
}

/// A signed envelope: its own fields, then (with a key) its signature and
/// expiry, then the command it carries.
ParsedCommand parse_envelope(const json& j, const CommandAuth& auth) {
  ParsedCommand out;
  out.was_signed = true;
  auto refuse = [&out](std::string why) {
    out.command.reset();
    out.authenticated = false;
    out.error = std::move(why);
    return out;
  };
  auto id = command_id_of(j);
  if (!id) return refuse(id.error().message);
  out.id = std::move(*id);
  auto v = j.find("v");
  if (v == j.end()) return refuse("\"v\" is missing");
  const auto version = as_int64(*v);
  if (!version || *version != 1) return refuse("\"v\" must be the integer 1");
  for (const auto& [key, value] : j.items()) {
    if (!envelope_fields().contains(key)) {
      return refuse(fmt::format("\"{}\" is not a field of a signed command (v, id, exp, cmd, sig)",
                                shown(key)));
    }
  }
  auto exp_it = j.find("exp");
  if (exp_it == j.end()) return refuse("the signed command has no \"exp\"");
  const auto exp = as_int64(*exp_it);
  if (!exp || *exp < 0) return refuse("\"exp\" must be an integer (Unix seconds)");
  auto cmd = j.find("cmd");
  if (cmd == j.end()) return refuse("the signed command has no \"cmd\"");
  if (!cmd->is_string()) return refuse("\"cmd\" must be a string: the command's JSON text");
  auto sig = j.find("sig");
  if (sig == j.end()) return refuse("the signed command has no \"sig\"");
  if (!sig->is_string()) return refuse("\"sig\" must be a string of 64 hex digits");
  const std::string& text = cmd->get_ref<const std::string&>();

  if (auth.key) {
    auto given = signature_bytes(sig->get_ref<const std::string&>());
    if (!given) return refuse("\"sig\" must be 64 hex digits (HMAC-SHA256)");
    const auto expected =
        hmac_sha256(*auth.key, command_signing_input(auth.store, *out.id, *exp, text));
    if (CRYPTO_memcmp(given->data(), expected.data(), expected.size()) != 0) {
      return refuse(fmt::format(
          "the signature does not match: the command was not signed for store {} with its "
          "command key ([sync] command_key_file), or it was changed on the way",
          auth.store));
    }
    if (*exp < auth.now) {
      return refuse(fmt::format(
          "the signed command expired at {} (this gateway's clock says {}); HQ signs a command "
          "anew when it sends it again. If every command is refused so, check the clocks "
          "(timedatectl)",
          unix_time_text(*exp), unix_time_text(auth.now)));
    }
    if (*exp - auth.now > kMaxCommandLifetime.count()) {
      return refuse(fmt::format(
          "the signed command is valid until {}, more than {} s after this gateway's clock ({}): "
          "refused, as it could outlive the record that it was applied. Check the clocks "
          "(timedatectl)",
          unix_time_text(*exp), kMaxCommandLifetime.count(), unix_time_text(auth.now)));
    }
  }

  ParsedCommand inner;
  auto inner_json = parse_payload(text, inner);
  if (!inner_json) return refuse("the signed command: " + inner.error);
  if (is_envelope(*inner_json)) return refuse("the signed command holds another signed command");
  inner = parse_fields(*inner_json);
  if (!inner.command) return refuse(inner.error);
  if (inner.command->id != *out.id) {
    return refuse(fmt::format("the signed command's id \"{}\" is not the envelope's \"{}\"",
                              inner.command->id, *out.id));
  }
  out.command = std::move(inner.command);
  out.authenticated = auth.key.has_value();
  return out;
}

}  // namespace

ParsedCommand parse_command(std::string_view payload) {
  return parse_command(payload, CommandAuth{});
}

ParsedCommand parse_command(std::string_view payload, const CommandAuth& auth) {
  ParsedCommand out;
  auto j = parse_payload(payload, out);
  if (!j) return out;
  if (is_envelope(*j)) return parse_envelope(*j, auth);
  out = parse_fields(*j);
  if (auth.key) {
    out.command.reset();
    out.error =
        "this store takes only signed commands ([sync] command_key_file is set), and this one "
        "is not signed";
  }
  return out;
}

std::string command_signing_input(std::string_view store, std::string_view id, std::int64_t exp,
                                  std::string_view cmd) {
  std::string out;
  out.reserve(kCommandSignatureLabel.size() + store.size() + id.size() + cmd.size() + 24);
  out += kCommandSignatureLabel;
  out += '\n';
  out += store;
  out += '\n';
  out += id;
  out += '\n';
  out += std::to_string(exp);
  out += '\n';
  out += cmd;
  return out;
}

std::string command_signature(std::string_view key, std::string_view input) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : hmac_sha256(key, input)) {
    out += kHex[b >> 4];
    out += kHex[b & 0x0f];
  }
  return out;
}

Result<std::string> sign_command(std::string_view key, std::string_view store,
                                 std::string_view command, std::int64_t exp) {
  // A NUL would end the parse early and the rest, unchecked, would be signed.
  json j = command.find('\0') != std::string_view::npos
               ? json(json::value_t::discarded)
               : json::parse(command.begin(), command.end(), nullptr, /*allow_exceptions=*/false);
  auto id = j.is_object() ? j.find("id") : j.end();
  if (!j.is_object() || id == j.end() || !id->is_string() ||
      !valid_command_id(id->get_ref<const std::string&>())) {
    return Error{"cannot sign a command without a valid \"id\""};
  }
  const std::string cmd_id = id->get<std::string>();
  json envelope{
      {"v", 1},
      {"id", cmd_id},
      {"exp", exp},
      {"cmd", std::string(command)},
      {"sig", command_signature(key, command_signing_input(store, cmd_id, exp, command))}};
  return envelope.dump(-1, ' ', false, json::error_handler_t::replace);
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
