#pragma once
/// \file
/// The agent's SQLite database (DESIGN §5), its one source of truth: the
/// `incidents` rows, the `events` timeline that doubles as the outbox to HQ,
/// `sync_state` and `probe_state`. One Store is one connection, used by one
/// thread: the StoreWriter's for changes, the loop's or the CLI's for reads.
///
/// Store is defined in two files: store.cpp (opening, committing changes,
/// the reads) and store_notifications.cpp (the notification outbox: the
/// `notifications` rows). Its schema history is in agent/migrations.h.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "agent/check_state.h"
#include "base/result.h"
#include "db/sqlite.h"
#include "incident/incident.h"
#include "sync/notify_outbox.h"
#include "sync/wire.h"

namespace storewatch::agent {

/// The incident row after a change, and the event recording the change.
/// Committed together in one transaction.
struct IncidentChange {
  Incident incident;
  IncidentEvent event;
  /// The notices this change queues (DESIGN §5 `notifications`); empty for
  /// almost every change.
  std::vector<sync::NoticeRow> notices = {};
};

/// An IncidentChange rendered into the texts of its two rows: times in
/// RFC 3339, the event body as JSON. StoreWriter::submit renders on the
/// caller's thread (the loop), so the writer's thread only binds and steps.
struct IncidentRows {
  static IncidentRows of(IncidentChange&& c);

  std::string uid, dedup_key, probe, condition;
  std::string_view severity, state;  // static text of the enums
  std::string priority;
  std::optional<std::string> suppressed_by;
  bool in_maintenance = false, flapping = false, self_healed = false;
  /// t_fault, t_detect, t_ack, t_restored, t_resolved, t_closed
  std::optional<std::string> times[6];
  int reopen_count = 0;
  std::string summary;
  std::string event_uid, event_type, event_actor;
  std::string at;    ///< the event's time, also the row's updated_at
  std::string body;  ///< the event body (DESIGN §6): extra fields + incident_state
  std::vector<sync::NoticeRow> notices;
};

/// A probe's persisted state, so a restart resumes where it left off.
struct ProbeStateRow {
  std::string probe;
  CheckLevel level = CheckLevel::unknown;
  int failures = 0;
  int successes = 0;
  std::optional<WallTime> t_fault;
  std::optional<WallTime> t_first_ok;
  std::optional<WallTime> last_check;
  std::string last_status;  ///< ok|warn|fail|unknown of the last result
  double latency_ms = 0;
  std::string message;
  std::string flap_history;  ///< FlapHistory::to_string()
  bool flapping = false;
  std::vector<WallTime> attempts;  ///< remediation attempts within the window
  int attempt_failures = 0;        ///< failed attempts in a row (the backoff)
};

/// An ad-hoc silence (`storewatch silence add`).
struct SilenceRow {
  std::string uid;
  std::string match;  ///< ProbeMatch text
  WallTime starts_at;
  WallTime ends_at;
  std::string reason;
  std::string created_by;
  std::optional<WallTime> removed_at;
  std::string removed_by;

  nlohmann::json to_json() const;
};

/// A `sync_state` value (hq_acked_seq, session).
struct SyncValue {
  std::string key;
  std::int64_t value = 0;
  /// Only raise the stored value, never lower it (acks may race).
  bool only_if_higher = false;
};

/// What the engine writes.
using EngineChange = std::variant<IncidentChange, ProbeStateRow, SyncValue, SilenceRow>;

/// An HQ command applied (DESIGN §6): its id and its answer, kept so a
/// command delivered twice is applied once and answered alike.
struct CommandRow {
  std::string id;
  std::string op;
  WallTime applied_at;
  std::string result;  ///< the JSON answered on cmd/result
};

/// An HQ command's row and the changes it made, committed in one
/// transaction: after a crash either both are there or neither is, so a
/// command HQ sends again is applied exactly once.
struct AppliedCommand {
  CommandRow command;
  std::vector<EngineChange> changes;
};

using Change = std::variant<IncidentChange, ProbeStateRow, SyncValue, SilenceRow, AppliedCommand,
                            IncidentRows, sync::NoticeUpdate>;

/// An event as stored, with its seq.
struct StoredEvent {
  std::int64_t seq = 0;
  std::string uid;
  std::string incident_uid;
  std::string type;
  std::string at;
  std::string actor;
  std::string body;  ///< JSON object: incident_state and type-specific fields
};

/// The change as JSON, for the dead_letters table and a person reading it.
nlohmann::json change_json(const Change& change);

/// A change the database refused for good, as kept in `dead_letters`.
struct DeadLetterRow {
  std::int64_t id = 0;
  std::string at;
  std::string what;
  std::string error;
};

/// How many changes `dead_letters` holds, and the newest of them.
struct DeadLetterSummary {
  std::int64_t count = 0;
  std::string newest_at;  ///< RFC 3339, "" when there are none
  std::vector<DeadLetterRow> newest;
};

class Store {
 public:
  enum class Mode { read_only, read_write };

  /// read_write creates the file, sets WAL and synchronous=FULL and migrates;
  /// read_only refuses a missing file or a newer schema.
  static Result<Store> open(const std::filesystem::path& path, Mode mode);

  Store(Store&& other) noexcept : db_(std::move(other.db_)) { other.prepared_.reset(); }
  Store& operator=(Store&& other) noexcept {
    prepared_.reset();
    other.prepared_.reset();
    db_ = std::move(other.db_);
    return *this;
  }
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  /// Runs of incident changes are written this many rows per statement: a
  /// statement's own cost (its cursors, its end) is then paid once for them
  /// (32 was quickest of 16, 32 and 64; tests/bench/engine_bench).
  static constexpr std::size_t kRowsPerStatement = 32;

  /// Commits the changes in one transaction. For each change, the seq of the
  /// event it wrote (0 for changes that write none).
  Result<std::vector<std::int64_t>> commit(const std::vector<Change>& changes);

  /// Incidents, newest detection first. `unresolved_only`: not resolved/closed.
  Result<std::vector<Incident>> incidents(bool unresolved_only,
                                          std::optional<WallTime> detected_since = {});
  /// One incident by uid, or by a unique uid prefix. A prefix that more
  /// than one starts with is an error listing them
  /// (ambiguous_incident_message).
  Result<std::optional<Incident>> incident(const std::string& uid_or_prefix);
  /// The incidents whose uid starts with `prefix`, in uid order, at most
  /// `limit` of them.
  Result<std::vector<Incident>> incidents_with_prefix(const std::string& prefix, int limit);
  /// How many incidents' uids start with `prefix`.
  Result<std::int64_t> count_with_prefix(const std::string& prefix);
  Result<std::vector<StoredEvent>> events_of(const std::string& incident_uid);
  Result<std::vector<StoredEvent>> events_after(std::int64_t after, int limit);
  /// Resolved incidents not yet closed (the engine closes them, or reopens).
  Result<std::vector<Incident>> resolved_incidents();
  Result<std::vector<ProbeStateRow>> probe_states();
  /// Ad-hoc silences; `active_at` set: only those not removed and not ended then.
  Result<std::vector<SilenceRow>> silences(std::optional<WallTime> active_at);
  /// sync_state value, 0 when unset.
  Result<std::int64_t> sync_value(const std::string& key);
  Result<std::int64_t> max_seq();
  /// Events above hq_acked_seq.
  Result<std::int64_t> queued();
  /// Unresolved incidents by severity.
  Result<std::map<std::string, std::int64_t>> open_by_severity();
  /// The HQ command applied under `id`, if any.
  Result<std::optional<CommandRow>> command(const std::string& id);
  /// Forgets at most `limit` command ids applied before `before`, oldest
  /// first; returns how many.
  Result<std::int64_t> prune_commands(WallTime before, std::int64_t limit);
  /// The oldest queued notification of each channel, when due at `now_ms`
  /// (a channel's notices go out in order, across restarts too), oldest first.
  Result<std::vector<sync::Notice>> due_notices(std::int64_t now_ms, int limit);
  /// The earliest next try of the oldest queued notification of a channel.
  Result<std::optional<std::int64_t>> next_notice_due();
  /// The distinct times the channel's notices were sent after `since_ms`.
  Result<std::vector<std::int64_t>> notices_sent_since(const std::string& channel,
                                                       std::int64_t since_ms);
  /// The queued notices of one channel in queue order, at most `limit`.
  Result<std::vector<sync::Notice>> queued_notices(const std::string& channel, int limit);
  /// Forgets at most `limit` notifications sent or dropped before `before_ms`,
  /// oldest first; returns how many. Queued ones are never pruned.
  Result<std::int64_t> prune_notifications(std::int64_t before_ms, std::int64_t limit);
  /// Every notification of one incident (or all when empty), oldest first,
  /// as JSON objects (channel, kind, state, attempts, last_error, …).
  Result<std::vector<nlohmann::json>> notifications(const std::string& incident_uid);

  /// Keeps a change the database refused for good (`what` and `error` in
  /// words), in a transaction of its own.
  Status dead_letter(const Change& change, const std::string& what, const std::string& error);
  /// The count of dead letters and the newest `limit` of them.
  Result<DeadLetterSummary> dead_letters(int limit);

  const std::filesystem::path& path() const { return db_.path(); }
  /// The connection, for modules that own their own SQL (retention, report).
  db::Database& database() { return db_; }

 private:
  explicit Store(db::Database db) : db_(std::move(db)) {}
  /// The statements every change runs, prepared once per connection (the
  /// writer commits tens of thousands of changes a second).
  struct Prepared {
    db::Statement upsert_incident;
    db::Statement insert_event;
    db::Statement upsert_incidents;  ///< kRowsPerStatement rows
    db::Statement insert_events;     ///< kRowsPerStatement rows
    db::Statement upsert_probe_state;
  };

  Result<Prepared*> prepared();
  Status write(const IncidentChange& c, std::int64_t& seq);
  Status write(const IncidentRows& r, std::int64_t& seq);
  /// The IncidentRows at `run` (indexes into `changes`, in order).
  Status write_run(const std::vector<Change>& changes, const std::vector<std::size_t>& run,
                   std::vector<std::int64_t>& seqs);
  Status write(const ProbeStateRow& row);
  Status write(const SyncValue& v);
  Status write(const SilenceRow& v);
  Status write(const AppliedCommand& c, std::int64_t& seq);
  Status write(const sync::NoticeUpdate& u);
  Status write_notices(const IncidentRows& r);

  db::Database db_;
  /// Statements point at db_, so a moved Store prepares them again.
  std::unique_ptr<Prepared> prepared_;
};

/// The stored event in wire form; its body travels as the stored text
/// (`body_text`), not parsed.
Result<wire::Event> to_wire(const StoredEvent& e);

/// The error for a start of a uid that names more than one incident: each
/// candidate by its unique prefix, with its probe, state and detection time;
/// `more` counts those not in `candidates`.
std::string ambiguous_incident_message(const std::string& prefix,
                                       const std::vector<Incident>& candidates, std::size_t more);

/// The most candidates an ambiguous uid start lists.
inline constexpr int kMaxCandidates = 10;

/// The sync_state keys.
inline constexpr const char* kHqAckedSeq = "hq_acked_seq";
inline constexpr const char* kSession = "session";

}  // namespace storewatch::agent
