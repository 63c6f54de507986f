#pragma once
/// \file
/// The incident engine (DESIGN §4): turns probe results into check levels
/// and incidents — dedup, reopen, close, root cause by `depends_on`, flap
/// detection, maintenance, self-healing and priority. Its state lives in
/// memory on the loop thread; every change is handed to a ChangeSink (the
/// store writer) as an incident row plus its event, committed together, and
/// the remediation state it must not forget (attempts in the window) goes
/// to `probe_state` before the attempt's event.
///
/// Time: everything that waits (close_after, backoff, verify_after, holds)
/// is measured on the monotonic clock; wall-clock times are only recorded.
/// tick() does the waiting work that is due; the daemon calls it every
/// second, tests call it after moving their clock.
///
/// Engine is defined in four files: engine.cpp (results, incidents, root
/// cause, the waiting work, the agent's own condition), engine_actions.cpp
/// (humans' actions: ack, resolve, close, note), engine_healing.cpp
/// (self-healing: attempts, backoff, verify, escalation) and
/// engine_silences.cpp (silences and the end of maintenance).

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/check_state.h"
#include "agent/flap.h"
#include "agent/reload.h"
#include "agent/remediation_runner.h"
#include "agent/store.h"
#include "agent/store_writer.h"
#include "base/clock.h"
#include "config/config.h"
#include "incident/incident.h"
#include "probes/probe.h"

namespace storewatch::agent {

/// What `status` shows of one probe.
struct ProbeView {
  std::string name;
  std::string type;
  CheckLevel level = CheckLevel::unknown;
  std::optional<WallTime> last_check;
  std::string last_status;  ///< ok|warn|fail|unknown, "" before the first check
  double latency_ms = 0;
  std::string message;
  bool flapping = false;
  double flap_percent = 0;
  bool held = false;  ///< hard-failed, waiting for its ancestors' re-checks
  /// Not checked yet: no result since the daemon started (or the probe was
  /// added by a reload), or its check level was reset since (a person
  /// resolved its incident). `message` and `last_check` are then those of
  /// an earlier check.
  bool pending = false;
};

/// A probe that still fails while a person resolves its incident: the
/// resolve starts detection over, so the incident reopens after
/// `checks_to_reopen` more failed checks.
struct StillFailing {
  std::string probe;
  std::string message;         ///< its last result's
  std::optional<WallTime> at;  ///< its last check
  int checks_to_reopen = 1;    ///< failed checks until it reopens
  Millis interval{0};          ///< between its checks
};

/// `actor` as a person reads it, from an action's event body: "cli:dana
/// (via sudo)" when the body says "via":"sudo", "cli:olga (via sudo by
/// dana)" when --by named someone else than the sudo user.
std::string actor_shown(const std::string& actor, const nlohmann::json& body);

/// What the engine asks of the daemon.
struct EngineHooks {
  /// Runs a probe now, outside its schedule; its result comes back through
  /// on_result. Must not call back into the engine synchronously.
  std::function<void(const std::string& probe)> run_now;
  /// Runs remediation actions; nullptr = remediations are recorded as
  /// failed ("no runner").
  RemediationRunner* runner = nullptr;
  /// The notices a change queues (agent/notices.h), written with its event;
  /// nullptr = none.
  std::function<std::vector<sync::NoticeRow>(const Incident&, const IncidentEvent&)> notices;
  /// The committed copy of an incident the engine no longer holds (the
  /// database's, through the loop's connection): resolved incidents are
  /// closed from it after close_after. nullptr = none is found, and such an
  /// incident is not closed by time.
  std::function<std::optional<Incident>(const std::string& uid)> stored;
};

/// What the engine resumes from (agent/store.h reads it at start).
struct EngineSnapshot {
  std::vector<ProbeStateRow> probe_states;
  std::vector<Incident> unresolved;
  std::vector<Incident> resolved;    ///< resolved, not yet closed
  std::vector<SilenceRow> silences;  ///< ad-hoc, not removed, not yet ended
};

/// The name and condition of the agent's own storage incident.
inline constexpr const char* kAgentProbe = "storewatch";

/// Incidents of the agent's own (probe kAgentProbe), by condition.
inline constexpr const char* kConditionStorage = "storage";
inline constexpr const char* kConditionClientCert = "client_cert";
inline constexpr const char* kConditionDescriptors = "descriptors";

class Engine {
 public:
  /// Points into `config` (each probe at its [[probe]] and [[remediation]])
  /// for as long as it holds it: until reconfigure() hands it the next one.
  Engine(std::shared_ptr<const config::Config> config, const Clock& clock, ChangeSink& sink,
         EngineHooks hooks = {});

  /// Resumes from the database: probe levels and counters, flap history,
  /// remediation attempts, unresolved and resolved incidents and silences.
  void restore(EngineSnapshot snapshot);

  /// A reload made `next` the running config (agent/reload.h; `change` is
  /// diff_config of the one this engine holds and `next`): re-points every
  /// probe at its new settings, keeping what the engine knows of the probes
  /// that stay (check levels, flap history, remediation attempts) and every
  /// incident. Probes
  /// removed lose their state and their unresolved incident is resolved
  /// ("the probe was removed from the config"); probes added start unknown;
  /// holds start over; a remediation attempt in flight for a probe whose
  /// remediation changed is abandoned (a remediation_failed event says so).
  void reconfigure(std::shared_ptr<const config::Config> next, const ConfigChange& change);

  /// Feeds one result of one probe.
  void on_result(const std::string& probe, const probes::ProbeResult& result);

  /// Does the waiting work that is due: closes resolved incidents after
  /// close_after, ends holds that waited too long, starts remediation
  /// attempts after their backoff, verifies them, ends maintenance and
  /// follows trading hours.
  void tick();

  /// The daemon is stopping: outcomes of actions it cancels are not
  /// recorded as failures (the next start says they were interrupted).
  void stop();

  /// Hands the probes whose state changed since the last flush to the sink
  /// (results are not written one by one: flash wears).
  void flush_probe_states();

  /// The sink has made every change up to `committed()` durable (see
  /// ChangeSink::ticket): the copies of incidents the engine let go of
  /// before that are no longer needed, the database has them.
  void on_committed(std::uint64_t committed);

  // --- what humans and HQ do ----------------------------------------------

  enum class Action { ack, resolve, close, note };
  static std::optional<Action> parse_action(std::string_view op);

  /// Applies a human action to the incident `uid` (a full uid). An incident
  /// the engine no longer holds is acted on as it is once everything queued
  /// for it is written: the engine keeps the last copy it let go of until
  /// that copy is committed, and otherwise `stored` is the database's copy
  /// (a note is fine on any incident, a close on a resolved one; the rest is
  /// an error). Returns the incident after.
  /// `provenance` (how the actor came to be: {"via":"sudo","sudo_user":N})
  /// is recorded in the event's body. A person's resolve or close without a
  /// note records "resolved by ACTOR" as the event's message. Acknowledging
  /// an acknowledged incident fails with code kAlreadyAcknowledged.
  Result<Incident> act(Action action, const std::string& uid, const std::string& actor,
                       const std::string& note, const std::optional<Incident>& stored,
                       const nlohmann::json& provenance = nlohmann::json::object());
  /// Error::code of an ack of an incident already acknowledged.
  static constexpr int kAlreadyAcknowledged = -409;

  /// The probe of the unresolved incident `uid` when it still fails (its
  /// "down" incident, soft or hard failing), else nullopt.
  std::optional<StillFailing> still_failing(const std::string& uid) const;

  /// Uids of the incidents the engine holds (unresolved, resolved) that
  /// start with `prefix`.
  std::vector<std::string> uids_with_prefix(const std::string& prefix) const;

  /// Adds an ad-hoc silence from now for `length`. `match` must match a
  /// configured probe.
  Result<SilenceRow> add_silence(const std::string& match, Millis length, const std::string& reason,
                                 const std::string& actor);
  /// Ends an ad-hoc silence by uid or unique uid prefix.
  Result<SilenceRow> remove_silence(const std::string& uid_or_prefix, const std::string& actor);
  /// Ad-hoc silences still in force.
  const std::vector<SilenceRow>& silences() const { return silences_; }
  /// Why `probe` is silenced now ("silence 0193…: reason"), or nullopt.
  std::optional<std::string> silenced(const std::string& probe) const;

  /// The agent's own storage condition: `problem` set raises (or keeps) a
  /// critical incident, nullopt resolves it — unless a change was lost to
  /// dead_letters since it opened (dead_letter()): a person looks at that.
  void set_storage_problem(const std::optional<std::string>& problem);

  /// A change could not be stored and went to the dead_letters table
  /// (agent/store_writer.h): raises the storage incident, or records an
  /// `updated` event on the open one, which then stays open until a person
  /// (or HQ) resolves or closes it. `record` false only marks an open storage
  /// incident as waiting for a person (the daemon's start, when dead letters
  /// newer than it are on file).
  void dead_letter(const std::string& what, bool record = true);

  /// The agent itself is out of file descriptors (a probe failed for that
  /// reason, not the device's): `problem` set raises (or keeps) the agent's
  /// own incident, nullopt resolves it.
  void set_descriptor_problem(const std::optional<std::string>& problem);

  /// The agent's own client certificate for the link to HQ: `problem` set
  /// (it expires soon, or has) raises an incident of `severity` (or keeps the
  /// open one), nullopt (a fresh certificate was loaded) resolves it.
  void set_client_cert_problem(const std::optional<std::string>& problem,
                               config::Severity severity);

  // --- views ---------------------------------------------------------------

  std::vector<ProbeView> probes() const;
  /// Unresolved incidents by dedup key.
  const std::map<std::string, Incident>& unresolved() const { return unresolved_; }
  /// Whether the store trades now (urgency follows it).
  bool trading_now() const;

 private:
  /// Self-healing of one probe.
  struct Healing {
    enum class Phase { idle, precondition, running, verify_wait, verifying };
    std::vector<WallTime> attempts;  ///< starts within the window; persisted
    int failures_in_row = 0;         ///< persisted; drives the backoff
    int skips_in_row = 0;
    Phase phase = Phase::idle;
    std::optional<SteadyTime> next_try;  ///< no attempt before
    SteadyTime deadline{};               ///< of the precondition or verify phase
    bool healed = false;                 ///< the last attempt verified ok
    bool trading_skip_reported = false;
    std::string incident_uid;  ///< the incident the current attempt is for
    int attempt = 0;
    std::uint64_t generation = 0;  ///< ignores outcomes of cancelled attempts
    ActionOutcome outcome;
  };

  struct Runtime {
    const config::ProbeConfig* config = nullptr;
    const config::RemediationConfig* remediation = nullptr;
    CheckState check;
    FlapHistory flap;
    bool flapping = false;
    std::optional<WallTime> last_check;
    std::string last_status;
    double latency_ms = 0;
    std::string message;
    bool dirty = false;
    /// A result arrived since the daemon started (or the probe was added).
    bool checked = false;
    // A hard failure held while ancestors are re-checked (DESIGN §4).
    bool held = false;
    SteadyTime held_since{};
    std::set<std::string> awaiting;  ///< ancestors whose fresh result is due
    Healing heal;
  };

  /// The newest resolved incident of a key, held while it may reopen.
  struct Resolved {
    Incident incident;
    SteadyTime at;  ///< when it resolved, on the monotonic clock
  };

  /// A resolved incident to close after close_after: its uid and when it
  /// resolved, nothing more (its row is read back when it is due).
  struct Closing {
    SteadyTime at;
    WallTime t_resolved;
    std::string uid;
  };

  /// The last copy of an incident the engine let go of (closed, or acted on
  /// from the database), until the sink has committed it.
  struct Parked {
    Incident incident;
    std::uint64_t ticket = 0;
  };

  struct Ancestry {
    std::optional<std::string> root;   ///< the root-cause incident to attach to
    std::vector<std::string> pending;  ///< ancestors soft-failing or held themselves
  };

  void locate_zone();
  /// Points the runtimes at the config and builds the depends_on and
  /// precondition maps.
  void wire();
  std::string dedup_key(const std::string& probe) const;
  Runtime& rt(const std::string& probe) { return probes_.at(probe); }
  Incident* unresolved_of(const std::string& probe);
  /// An incident the engine holds: unresolved, or resolved and reopenable.
  Incident* find_incident(const std::string& uid);
  /// The incident as it is once what is queued is written: held, parked, or
  /// the committed copy (`stored`, else hooks_.stored).
  std::optional<Incident> current_copy(const std::string& uid,
                                       const std::optional<Incident>& stored) const;
  /// Keeps `inc` (just emitted, no longer held) until its change commits.
  void park(const Incident& inc);
  Result<Incident> act_on_copy(Action action, Incident inc, const std::string& actor,
                               const std::string& note, const nlohmann::json& provenance);
  ProbeStateRow row_of(const std::string& name, const Runtime& rt) const;
  void persist(const std::string& probe, Runtime& r);
  void emit(const Incident& inc, std::string type, nlohmann::json extra = nlohmann::json::object(),
            const std::string& actor = "agent");
  SteadyTime steady_of(WallTime t) const;
  std::string priority_now(config::Severity severity) const;

  void on_hard_fail(const std::string& probe);
  Ancestry ancestry(const std::string& probe) const;
  void evaluate_hold(const std::string& probe, const std::string& ancestor);
  void release_hold(Runtime& r);
  void raise(const std::string& probe, const std::optional<std::string>& root, bool flapping);
  /// `body` (a person's provenance and message) is merged into the event's.
  void resolve(Incident inc, const std::string& actor, const std::string& note, bool self_healed,
               IncidentState final_state = IncidentState::resolved,
               const nlohmann::json& body = nlohmann::json::object());
  void after_root_gone(const std::string& root_uid);
  void update_flapping(const std::string& probe, Runtime& r);

  void maybe_remediate(const std::string& probe);
  void start_action(const std::string& probe);
  void on_action_done(const std::string& probe, std::uint64_t generation, ActionOutcome outcome);
  void on_precondition(const std::string& probe, const std::string& precondition,
                       const probes::ProbeResult& result);
  void attempt_failed(const std::string& probe, const std::string& why);
  void attempt_succeeded(const std::string& probe, const probes::ProbeResult& verify);
  void escalate(Incident& inc, const std::string& reason);
  nlohmann::json attempt_json(const std::string& probe) const;
  /// attempt_json plus the action's outcome (exit status, first 4 KB of output).
  nlohmann::json outcome_json(const std::string& probe, const std::string& detail) const;
  void run_now(const std::string& probe);
  /// One incident per condition of the agent itself (probe kAgentProbe):
  /// outside probes_, so no check levels, flapping or root cause apply.
  void set_own_problem(const char* condition, config::Severity severity,
                       const std::optional<std::string>& problem);

  void tick_closing(SteadyTime now);
  void tick_reopenable(SteadyTime now);
  void tick_holds(SteadyTime now);
  void tick_healing(SteadyTime now);
  void tick_maintenance();
  void tick_trading();

  std::shared_ptr<const config::Config> config_;
  const Clock& clock_;
  ChangeSink& sink_;
  EngineHooks hooks_;
  config::TimeZone tz_;
  std::map<std::string, Runtime> probes_;
  /// Ancestors of each probe, nearest first, and who needs each probe's
  /// results: its descendants and the probes it is a precondition of.
  std::map<std::string, std::vector<std::string>> ancestors_;
  std::map<std::string, std::vector<std::string>> descendants_;
  std::map<std::string, std::vector<std::string>> precondition_of_;
  std::map<std::string, Incident> unresolved_;
  /// By dedup key: the newest resolved incident of each key, while it may
  /// reopen (reopen_window) and is not closed. Everything else resolved is
  /// in closing_ only: thousands of resolved incidents a day cost a few
  /// dozen bytes each, not their whole row.
  std::map<std::string, Resolved> reopenable_;
  /// reopenable_'s keys by uid.
  std::map<std::string, std::string> reopenable_uids_;
  /// Resolved incidents in the order they resolved, to close after close_after.
  std::deque<Closing> closing_;
  /// Incidents let go of whose last change is not yet committed, by uid.
  std::map<std::string, Parked> parked_;
  void keep_resolved(Incident inc, SteadyTime at);
  void forget_reopenable(const std::string& key);
  /// A person resolved or closed the storage incident after a dead letter.
  bool storage_needs_person_ = false;
  std::optional<SteadyTime> last_descriptor_fault_;
  std::vector<SilenceRow> silences_;
  std::optional<bool> trading_;  ///< at the last tick
  bool stopping_ = false;
};

}  // namespace storewatch::agent
