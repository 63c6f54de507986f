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

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/duration.h"
#include "base/result.h"

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
  /// The command came in a signed envelope whose signature and expiry were
  /// checked against the store's key.
  bool authenticated = false;
  /// The payload was a signed envelope (checked or, without a key, not).
  bool was_signed = false;
};

/// An unsigned command (DESIGN §6), or a signed envelope taken apart without
/// checking its signature (what a store without a key does).
ParsedCommand parse_command(std::string_view payload);

// --- Signed commands (docs/SYNC.md, "Signed commands") -----------------------
//
// A signed command is an envelope around the command's exact JSON text:
//
//   {"v":1,"id":ID,"exp":EXP,"cmd":"<the command's JSON text>","sig":HEX}
//
// `sig` is the HMAC-SHA256, in 64 lowercase hex digits, with the key of
// `command_key_file`, of the bytes
//
//   "storewatch-cmd-v1" LF store LF id LF exp LF cmd
//
// where store is the id of the store the command is for (the S of
// P/stores/S/cmd), id the command's id (the envelope's and the command's own,
// which must be equal), exp the envelope's "exp" in decimal (Unix seconds,
// UTC) and cmd the string value of "cmd" as decoded from JSON. No JSON is
// re-encoded to check it: the signed bytes are the string HQ sent.

/// The first line of the signed bytes.
inline constexpr std::string_view kCommandSignatureLabel = "storewatch-cmd-v1";
/// How long HQ's signature on a command lasts.
inline constexpr std::chrono::seconds kCommandLifetime{600};
/// The furthest in the future a store accepts a command's `exp`: an applied
/// id is kept for `[agent] retention`, at least an hour, so a signed command
/// cannot be applied again once its id is forgotten.
inline constexpr std::chrono::seconds kMaxCommandLifetime{3600};

/// The bytes a signature covers (see above).
std::string command_signing_input(std::string_view store, std::string_view id, std::int64_t exp,
                                  std::string_view cmd);

/// HMAC-SHA256 of `input` with `key`, as 64 lowercase hex digits.
std::string command_signature(std::string_view key, std::string_view input);

/// Wraps `command` (a command's JSON text with a valid "id") in a signed
/// envelope for `store`, valid until `exp` (Unix seconds).
Result<std::string> sign_command(std::string_view key, std::string_view store,
                                 std::string_view command, std::int64_t exp);

/// What a store checks commands with.
struct CommandAuth {
  std::string store;  ///< its id: a signature is for one store
  /// Its key (raw bytes, config::read_command_key); nullopt: no key, and any
  /// well-formed command, signed or not, is taken.
  std::optional<std::string> key;
  std::int64_t now = 0;  ///< its clock, Unix seconds
};

/// parse_command, and with a key: an unsigned command, a signature that does
/// not match, or an `exp` in the past or more than kMaxCommandLifetime ahead
/// is refused. The signature is compared in constant time.
ParsedCommand parse_command(std::string_view payload, const CommandAuth& auth);

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
