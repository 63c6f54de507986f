#pragma once
/// \file
/// HQ commands on `P/stores/S/cmd` (DESIGN §6, docs/SYNC.md): parsing and
/// validating the payload, and encoding the answer for `P/stores/S/cmd/result`.
/// Pure functions of the bytes received, so hostile input is unit-tested
/// without a broker. What a command may do once it is well-formed (is the
/// incident known, does the match hit a configured probe) is the agent's
/// shared CLI path (agent/control_ops.h), not this file's.
///
/// A payload is refused when it is over 64 KB, not UTF-8 JSON, nested deeper
/// than a command ever is, not an object, of another version, of an unknown
/// op, missing a field the op needs, carrying a field of the wrong type or one
/// the op does not take. The answer to a refused payload still carries its
/// `id` when one can be found: from the parsed object, or, for a payload that
/// does not parse, by a bounded scan of its first KB; otherwise `"id":null`.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/duration.h"

namespace storewatch::sync {

/// Largest command payload accepted (the contract's 64 KB cap).
inline constexpr std::size_t kMaxCommandPayload = 64 * 1024;
/// How far into a payload that does not parse the id is looked for.
inline constexpr std::size_t kCommandIdScan = 1024;
/// Ids are 1 to this many characters of [A-Za-z0-9._:-] (a uuid fits).
inline constexpr std::size_t kMaxCommandId = 128;
/// A command is one flat object; anything nested deeper is refused before
/// it is parsed.
inline constexpr int kMaxCommandDepth = 8;

enum class CommandOp { ack, resolve, close, note, silence, probe_run, resync };
std::string_view to_string(CommandOp op);

/// A well-formed command. Which fields are set depends on the op.
struct Command {
  std::string id;
  CommandOp op = CommandOp::ack;
  /// Who at HQ, without the "hq:" prefix (a "by" of "hq:gap" gives "gap").
  std::string by;
  std::string incident;       ///< ack|resolve|close|note: the incident's full uid
  std::string note;           ///< ack|resolve|close: optional; note: required
  std::string match;          ///< silence: probe names or labels (like --match)
  Millis length{0};           ///< silence: "for", a duration ("2h")
  std::string reason;         ///< silence
  std::string probe;          ///< probe_run: a configured probe's name
  std::int64_t from_seq = 0;  ///< resync: re-send events with seq >= this

  /// The actor its events are recorded with: "hq:" + by.
  std::string actor() const { return "hq:" + by; }
};

/// What parse_command makes of a payload: a command, or why it is refused
/// and the id to answer with (nullopt: `"id":null`).
struct ParsedCommand {
  std::optional<Command> command;
  std::optional<std::string> id;
  std::string error;
};

ParsedCommand parse_command(std::string_view payload);

/// Whether `id` is a usable command id (see kMaxCommandId).
bool valid_command_id(std::string_view id);

/// The top-level "id" of a JSON object found in the first kCommandIdScan
/// bytes of `payload`, without parsing the rest; nullopt when there is none,
/// it is not a string that ends within those bytes, or it is not a valid id.
std::optional<std::string> scan_command_id(std::string_view payload);

/// How deeply `payload` nests objects and arrays (strings are skipped);
/// stops counting once past `limit` and returns limit + 1.
int nesting_depth(std::string_view payload, int limit);

/// `{"v":1,"id":ID,"ok":true, …fields}`.
std::string command_done(const std::string& id, const nlohmann::json& fields);
/// `{"v":1,"id":ID|null,"ok":false,"error":WHY}`.
std::string command_refused(const std::optional<std::string>& id, std::string_view why);

}  // namespace storewatch::sync
