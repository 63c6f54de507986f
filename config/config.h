#pragma once
/// \file
/// The typed configuration of the agent (`storewatch.toml` + `conf.d/*.toml`)
/// and of HQ (`hq.toml`), and their loaders. Loading validates everything and
/// collects every problem as a Diagnostic with its file:line:col; nothing is
/// created on disk. The key names are a contract (DESIGN §7).

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/duration.h"
#include "config/log.h"
#include "config/result.h"

namespace storewatch::config {

using namespace std::chrono_literals;

/// Where a value came from. line == 0 means the file as a whole (e.g. a key
/// that is missing).
struct SourcePos {
  std::string file;
  int line = 0;
  int column = 0;
};

/// "file:line:col" or "file".
std::string to_string(const SourcePos& pos);

/// One problem found while loading. Errors make a config unusable; warnings
/// (a secret or CA file that is missing on this machine) do not.
struct Diagnostic {
  enum class Kind { error, warning };
  SourcePos where;
  Kind kind = Kind::error;
  std::string message;
};

/// "file:line:col: error: message" (or "warning:").
std::string to_string(const Diagnostic& d);

/// The store id rule, [A-Za-z0-9_-]{1,64}: the id is the MQTT client id and a
/// topic segment, so anything else could address another store's topics.
inline constexpr std::string_view kStoreIdExtraChars = "_-";
inline constexpr std::size_t kStoreIdMaxLength = 64;
bool is_valid_store_id(std::string_view id);

/// Reads a secret from a `*_file` key (DESIGN §7): the whole file with
/// surrounding whitespace trimmed, or why it cannot be read.
Result<std::string> read_secret(const std::filesystem::path& file);

enum class Severity { critical, high, medium, low, info };
std::string_view to_string(Severity s);
std::optional<Severity> parse_severity(std::string_view s);

// ---------------------------------------------------------------------------
// Probe-type keys. config/ knows no probe types: probes/ hands the loader one
// KeySpec table per type, and the loader validates each [[probe]]'s extra keys
// against it (unknown keys are errors, defaults are filled in).

/// The kind of value a probe-type key takes.
enum class KeyKind {
  string,        ///< any string
  host,          ///< a host name or IP address literal
  integer,       ///< a TOML integer
  boolean,       ///< a TOML boolean
  duration,      ///< a duration string ("3s")
  port,          ///< an integer 1..65535
  string_array,  ///< an array of strings
  string_table,  ///< an inline table of string values
  file,          ///< a path; missing on this machine is a warning
  number,        ///< a TOML integer or float, read as a double
  choice,        ///< one of the strings in KeySpec::choices
  command,       ///< an argv array; an absolute argv[0] missing here is a warning
};

/// One key a probe type accepts.
struct KeySpec {
  constexpr KeySpec(std::string_view name_, KeyKind kind_, bool required_,
                    std::string_view default_value_, std::string_view description_,
                    std::string_view choices_ = {})
      : name(name_),
        kind(kind_),
        required(required_),
        default_value(default_value_),
        description(description_),
        choices(choices_) {}

  std::string_view name;
  KeyKind kind = KeyKind::string;
  bool required = false;
  /// Default as config would write it ("9100", "3s", "false"); empty = none.
  std::string_view default_value;
  std::string_view description;
  /// For KeyKind::choice: the allowed values, separated by '|' ("A|AAAA|MX").
  std::string_view choices;
};

struct ProbeConfig;

/// The keys of one probe type.
struct ProbeTypeSchema {
  std::string_view type;
  std::span<const KeySpec> keys;
  /// Checks across the type's keys once each key is valid on its own (a
  /// `system` disk check needs a `path`). Returns one message per problem,
  /// reported at the probe; nullptr when every combination is fine.
  std::vector<std::string> (*validate)(const ProbeConfig& probe) = nullptr;
};

/// A validated value of a probe-type key.
using KeyValue = std::variant<std::string, std::int64_t, bool, Millis, std::vector<std::string>,
                              std::map<std::string, std::string>, double>;

// ---------------------------------------------------------------------------
// The agent's config.

struct StoreConfig {
  std::string id;  ///< [A-Za-z0-9_-]{1,64}: MQTT client id and topic segment
  std::string name;
  std::string timezone = "UTC";
  std::string trading_hours;
  SourcePos where;
};

struct AgentConfig {
  std::filesystem::path data_dir = "/var/lib/storewatch";
  std::filesystem::path control_socket = "/run/storewatch/control.sock";
  log::Level log_level = log::Level::info;
  int max_concurrent_checks = 64;  ///< global cap on probes running at once
};

/// How to reach an MQTT broker; shared by the agent's [sync] and HQ's [hq].
struct BrokerConfig {
  std::string broker = "tcp://127.0.0.1:1883";  ///< tcp:// ssl:// ws:// wss://
  std::string topic_prefix = "storewatch/v1";
  std::filesystem::path ca_file;
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  std::string username;
  std::filesystem::path password_file;
  Millis keepalive = 30s;
  Millis reconnect_max = 5min;  ///< cap of the full-jitter reconnect backoff
};

struct SyncConfig : BrokerConfig {
  int batch_max_events = 100;  ///< events per MQTT message (also capped at 64 KB)
  int inflight_batches = 4;    ///< batches published but not yet PUBACKed
  Millis ack_timeout = 30s;    ///< re-send un-acked events when HQ's ack is this late
};

struct ProbeConfig {
  std::string name;  ///< unique; [A-Za-z0-9_.-]{1,64}
  std::string type;
  Millis interval = 15s;
  Millis timeout = 3s;
  int fail_after = 3;
  int recover_after = 2;
  Severity severity = Severity::medium;
  std::vector<std::string> depends_on;
  std::map<std::string, std::string> labels;
  /// The type's own keys, validated, defaults filled in.
  std::map<std::string, KeyValue> options;
  SourcePos where;

  /// Typed access to options; the loader guarantees presence and type of
  /// every key that is required or has a default.
  const std::string& str(std::string_view key) const;
  std::int64_t integer(std::string_view key) const;
  bool boolean(std::string_view key) const;
  Millis duration(std::string_view key) const;
  const std::vector<std::string>& strings(std::string_view key) const;
  const std::map<std::string, std::string>& table(std::string_view key) const;
  double number(std::string_view key) const;
  bool has(std::string_view key) const;
};

struct Config {
  StoreConfig store;
  AgentConfig agent;
  SyncConfig sync;
  std::vector<ProbeConfig> probes;
  /// Every file that was read, main file first.
  std::vector<std::filesystem::path> files;

  const ProbeConfig* find_probe(std::string_view name) const;
};

struct LoadOptions {
  /// Drop-in directory; unset means `<dir of file>/conf.d`. Missing is fine.
  std::optional<std::filesystem::path> conf_dir;
  std::span<const ProbeTypeSchema> probe_types;
};

template <class T>
struct Loaded {
  std::optional<T> config;  ///< set when there is no error
  std::vector<Diagnostic> diagnostics;

  bool ok() const { return config.has_value(); }
};

/// Reads `file`, then every `*.toml` of the drop-in directory in name order.
/// Tables merge key by key, a later file overriding an earlier one; arrays of
/// tables ([[probe]]) append.
Loaded<Config> load(const std::filesystem::path& file, const LoadOptions& options);

/// Same, from text (tests, fuzzing); `name` is used in diagnostics.
Loaded<Config> load_string(std::string_view text, const std::string& name,
                           std::span<const ProbeTypeSchema> probe_types);

// ---------------------------------------------------------------------------
// HQ's config.

struct HqConfig : BrokerConfig {
  std::filesystem::path database = "/var/lib/storewatch-hq/hq.db";
  std::string share_group;  ///< optional: $share/GROUP/… so workers split the stores
  std::string client_id;    ///< default "storewatch-hq-<hostname>"
};

Loaded<HqConfig> load_hq(const std::filesystem::path& file);
Loaded<HqConfig> load_hq_string(std::string_view text, const std::string& name);

}  // namespace storewatch::config
