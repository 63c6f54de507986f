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
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/duration.h"
#include "base/log.h"
#include "base/result.h"
#include "config/schedule.h"

namespace storewatch::config {

using namespace std::chrono_literals;

/// Where a value came from. line == 0 means the file as a whole (e.g. a key
/// that is missing).
struct SourcePos {
  std::string file;
  int line = 0;
  int column = 0;

  bool operator==(const SourcePos&) const = default;
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

/// A size as config writes it: "64KB", "1MB", or "1500 bytes" when it is not
/// a whole number of KB.
std::string format_size(std::int64_t bytes);

/// Reads a secret from a `*_file` key (DESIGN §7): the whole file with
/// surrounding whitespace trimmed, or why it cannot be read.
Result<std::string> read_secret(const std::filesystem::path& file);

/// HQ commands' HMAC-SHA256 keys hold at least this many bytes of key material.
inline constexpr std::size_t kMinCommandKeyBytes = 32;
/// A command key file larger than this is not a key file.
inline constexpr std::size_t kMaxCommandKeyBytes = 1024;

/// Reads a command key file (`[sync] command_key_file`, `[hq] command_key_file`,
/// a file of `[hq] command_keys_dir`): the key written as hex digits (at
/// least 64, i.e. 32 bytes; `openssl rand -hex 32` makes one), surrounding
/// whitespace ignored. Returns the key's bytes, or why the file is unusable.
Result<std::string> read_command_key(const std::filesystem::path& file);

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
  size,          ///< a size string ("64KB", "1MB"), at least 1KB; read as bytes (an integer)
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
  std::string trading_hours;  ///< as written; empty = trading at all hours
  /// trading_hours parsed; empty (no windows) when trading_hours is unset.
  WeeklySchedule trading;
  SourcePos where;

  bool operator==(const StoreConfig&) const = default;
};

struct AgentConfig {
  std::filesystem::path data_dir = "/var/lib/storewatch";
  std::filesystem::path control_socket = "/run/storewatch/control.sock";
  log::Level log_level = log::Level::info;
  int max_concurrent_checks = 64;  ///< global cap on probes running at once
  /// Closed incidents and their events that HQ has acknowledged are pruned
  /// after this long; unsynced events never are.
  Millis retention = std::chrono::hours(24 * 30);
  /// Size cap of storewatch.db in bytes (`max_db_size = "256MB"`): past it the
  /// oldest synced history goes first; unsynced events are never dropped.
  std::int64_t max_db_bytes = std::int64_t{256} * 1024 * 1024;

  bool operator==(const AgentConfig&) const = default;
};

/// [incidents]: the lifecycle knobs of DESIGN §4.
struct IncidentsConfig {
  /// A failure of a key whose incident resolved this recently reopens it.
  Millis reopen_window = std::chrono::minutes(30);
  /// A resolved incident closes after this long unless reopened.
  Millis close_after = std::chrono::hours(24);
  /// Flap detection, weighted percent of state changes over the last 21
  /// results: start at or above flap_high, stop at or below flap_low.
  double flap_high = 30.0;
  double flap_low = 20.0;

  bool operator==(const IncidentsConfig&) const = default;
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

  bool operator==(const BrokerConfig&) const = default;
};

struct SyncConfig : BrokerConfig {
  int batch_max_events = 100;  ///< events per MQTT message (also capped at 64 KB)
  int inflight_batches = 4;    ///< batches published but not yet PUBACKed
  Millis ack_timeout = 30s;    ///< re-send un-acked events when HQ's ack is this late
  /// Warn (log, `sync status`, an incident) when the client certificate
  /// expires within this many days; 0 = never.
  int cert_warn_days = 21;
  /// The HMAC-SHA256 key HQ signs its commands with (read_command_key). Set:
  /// unsigned, expired or badly signed commands are refused. Empty: any
  /// well-formed command is taken (DESIGN §6 as before).
  std::filesystem::path command_key_file;

  bool operator==(const SyncConfig&) const = default;
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
  /// The [[remediation]] run when this probe's incident opens; empty = none.
  std::string remediation;
  /// The type's own keys, validated, defaults filled in.
  std::map<std::string, KeyValue> options;
  SourcePos where;

  bool operator==(const ProbeConfig&) const = default;

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

enum class RemediationType { exec, systemd_restart, http };
std::string_view to_string(RemediationType t);

/// [[remediation]]: a named, locally configured healing action (DESIGN §4).
struct RemediationConfig {
  std::string name;  ///< unique; [A-Za-z0-9_.-]{1,64}
  RemediationType type = RemediationType::exec;
  std::vector<std::string> command;  ///< exec: argv, no shell
  std::string unit;                  ///< systemd-restart: "pos-agent.service"
  std::string method = "POST";       ///< http
  std::string url;                   ///< http
  int expect_status = 200;           ///< http
  Millis timeout = std::chrono::seconds(30);
  int max_attempts = 3;                       ///< within `window`, counted across restarts
  Millis window = std::chrono::hours(1);      ///< sliding
  Millis backoff = std::chrono::seconds(10);  ///< first wait; doubles after each failure
  Millis backoff_max = std::chrono::minutes(10);
  Millis verify_after = std::chrono::seconds(20);  ///< then re-run the probe
  bool only_outside_trading_hours = false;
  std::string precondition;  ///< a probe that must be ok right before; empty = none
  /// Raised to on escalation when higher than the probe's severity.
  std::optional<Severity> escalate_severity;
  SourcePos where;

  bool operator==(const RemediationConfig&) const = default;
};

/// Which probes a silence covers: a glob on probe names ("lane-*") or a
/// label ("lane=01", "kind=pos").
class ProbeMatch {
 public:
  /// nullopt with `error` set when `text` is neither a glob nor label=value.
  static std::optional<ProbeMatch> parse(std::string_view text, std::string* error = nullptr);
  bool matches(const std::string& probe, const std::map<std::string, std::string>& labels) const;
  const std::string& text() const { return text_; }

  bool operator==(const ProbeMatch&) const = default;

 private:
  std::string text_;
  std::string label_;  ///< empty: text_ is a glob on the name
  std::string value_;
};

/// [[silence]]: a recurring maintenance window.
struct SilenceConfig {
  ProbeMatch match;
  WeeklySchedule schedule;
  std::string reason;
  SourcePos where;

  bool operator==(const SilenceConfig&) const = default;
};

enum class NotifyType { slack, teams, teams_legacy, webhook, email };
std::string_view to_string(NotifyType t);

/// The incident transitions a [[notify]] channel can be told about (`on`).
enum class NotifyOn : unsigned {
  opened = 1,  ///< opened, reopened, or still failing when a maintenance ends
  escalated = 2,
  acknowledged = 4,
  flapping_started = 8,
  flapping_stopped = 16,
  resolved = 32,  ///< only when the channel was told of the opening
};
std::string_view to_string(NotifyOn on);
std::optional<NotifyOn> parse_notify_on(std::string_view s);
inline constexpr unsigned kDefaultNotifyOn =
    static_cast<unsigned>(NotifyOn::opened) | static_cast<unsigned>(NotifyOn::escalated) |
    static_cast<unsigned>(NotifyOn::flapping_started) | static_cast<unsigned>(NotifyOn::resolved);

/// [[notify]]: one channel people hear about incidents through (DESIGN §7).
struct NotifyConfig {
  std::string name;  ///< unique; [A-Za-z0-9_.-]{1,64}
  NotifyType type = NotifyType::webhook;
  /// slack, teams, teams-legacy, webhook: the file holding the URL (a secret).
  std::filesystem::path url_file;
  /// webhook: the file holding the HMAC-SHA256 key; empty = unsigned.
  std::filesystem::path secret_file;
  /// email
  std::string smtp_url;
  std::string starttls = "required";  ///< required|optional|off
  std::string from;
  std::vector<std::string> to;
  std::string username;
  std::filesystem::path password_file;
  /// Incidents below this severity are not notified.
  Severity min_severity = Severity::info;
  /// Only probes matching one of these (globs or label=value); empty = all.
  std::vector<ProbeMatch> match;
  unsigned on = kDefaultNotifyOn;  ///< NotifyOn bits
  /// The first notice of a group waits this long; notices queued meanwhile
  /// join it (sync/notifier.h). 0 = each notice at once. Webhooks: always 0.
  Millis group_wait = std::chrono::seconds(30);
  int rate_limit = 0;  ///< messages per hour at most; 0 = no limit
  std::string proxy;   ///< http(s)://host:port; empty = https_proxy from the environment
  /// PEM CAs to trust for this channel's TLS (https, smtps, STARTTLS)
  /// instead of the system's; for a private relay or proxy.
  std::filesystem::path ca_file;
  Millis timeout = std::chrono::seconds(10);
  Millis notify_ttl = std::chrono::hours(24);  ///< undelivered notices are dropped after this
  SourcePos where;

  bool operator==(const NotifyConfig&) const = default;
};

struct Config {
  StoreConfig store;
  AgentConfig agent;
  SyncConfig sync;
  IncidentsConfig incidents;
  std::vector<ProbeConfig> probes;
  std::vector<RemediationConfig> remediations;
  std::vector<SilenceConfig> silences;
  std::vector<NotifyConfig> notify;
  /// Every file that was read, main file first.
  std::vector<std::filesystem::path> files;
  /// The drop-in directory load() looked in (read or missing); empty for
  /// load_string(). With files.front(), where to load this config again.
  std::filesystem::path conf_dir;

  /// Every key and section, `where` each was written included.
  bool operator==(const Config&) const = default;

  const ProbeConfig* find_probe(std::string_view name) const;
  const RemediationConfig* find_remediation(std::string_view name) const;
  const NotifyConfig* find_notify(std::string_view name) const;
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
  /// `[hq] database`: a SQLite file (this path), or a PostgreSQL connection
  /// URI (`postgresql`, set instead; docs/HQ.md "Scaling out").
  std::filesystem::path database = "/var/lib/storewatch-hq/hq.db";
  /// The libpq URI when `[hq] database` is one (postgresql://…), else empty.
  std::string postgresql;
  /// The PostgreSQL password, first line of this file; without it libpq's
  /// own PGPASSFILE (~/.pgpass) is used. Never in the TOML.
  std::filesystem::path database_password_file;
  std::string share_group;  ///< optional: $share/GROUP/… so workers split the stores
  std::string client_id;    ///< default "storewatch-hq-<hostname>"
  /// A store's gap above its acked seq that lasts this long gets a `resync`
  /// command (again at most once per this interval while it lasts).
  Millis resync_after = 30s;
  /// Which stores HQ takes events and status from: every store that shows
  /// up (`automatic`, each new one logged once), or only those in `stores`.
  enum class Enroll { automatic, list };
  Enroll enroll = Enroll::automatic;
  std::set<std::string> stores;  ///< enroll = "list": the stores accepted
  /// An event whose seq is more than this above the store's acked seq at HQ
  /// is refused (not stored, not acked; counted and logged).
  std::int64_t max_seq_jump = 100'000;
  /// A status whose session is more than this above the highest HQ has
  /// recorded for the store (0 for a store it has none of) is refused.
  std::int64_t max_session_jump = 1'000'000;
  /// The fleet-wide key HQ signs commands with (read_command_key); a store
  /// with a file of its own in command_keys_dir is signed with that instead.
  std::filesystem::path command_key_file;
  /// One key file per store, named `<store id>.key`.
  std::filesystem::path command_keys_dir;
  /// Events HQ received longer ago than this, and closed incidents whose
  /// newest event is, are pruned (docs/HQ.md "Retention"). On PostgreSQL
  /// whole months of events go at once, so some live up to a month longer.
  Millis retention = std::chrono::hours(24 * 400);

  bool operator==(const HqConfig&) const = default;

  /// Whether HQ takes messages from `store` (enroll and stores).
  bool enrolled(std::string_view store) const;
  /// The database for logs and messages: the SQLite path, or the URI
  /// without any secret.
  std::string database_name() const;
};

Loaded<HqConfig> load_hq(const std::filesystem::path& file);
Loaded<HqConfig> load_hq_string(std::string_view text, const std::string& name);

// ---------------------------------------------------------------------------
// Which program a config file is for (`storewatch config check`).

struct FileKind {
  enum Kind { agent, hq, mixed };
  Kind kind = agent;
  SourcePos hq_at;          ///< where [hq] is (hq, mixed)
  std::string agent_table;  ///< the first of the agent's tables, e.g. "[store]" (mixed)
  SourcePos agent_at;       ///< where it is (mixed)
};

/// Parses `file` only to look at its top-level keys: `hq` when it has [hq]
/// and none of the agent's tables, `mixed` with both, `agent` otherwise —
/// a file that cannot be read or parsed included, which load() then reports.
FileKind file_kind(const std::filesystem::path& file);

}  // namespace storewatch::config
