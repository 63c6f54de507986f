#pragma once
/// \file
/// Inside cli/: what the command groups of `storewatch` share — the global
/// options, the exit codes, loading the config, the preamble of the commands
/// that read the agent's database, asking the daemon, printing — and each
/// group's `add_*_commands` (cli/*_commands.cpp), which run_cli (cli/cli.cpp)
/// calls in the order `storewatch --help` lists the commands.

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "agent/control_server.h"
#include "agent/store.h"
#include "base/clock.h"
#include "base/duration.h"
#include "base/result.h"
#include "base/table.h"
#include "config/config.h"

namespace CLI {
class App;
}  // namespace CLI

namespace storewatch::cli {

inline constexpr int kOk = 0;
inline constexpr int kFailure = 1;
inline constexpr int kUsage = 2;
/// `status`: the daemon is not running, or runs but does not answer (as
/// `systemctl status` exits 3 for a unit that is not running).
inline constexpr int kNotRunning = 3;
/// `status`: you may not ask the daemon (its control socket refused you).
inline constexpr int kNoPermission = 4;

/// The options every command takes: -c/--config and --conf-dir.
struct Globals {
  std::string config;
  std::string conf_dir;
  bool config_given() const { return !config.empty(); }

  /// -c, else $STOREWATCH_CONFIG, else /etc/storewatch/storewatch.toml.
  std::filesystem::path agent_config() const;
  /// -c, else $STOREWATCH_HQ_CONFIG, else /etc/storewatch/hq.toml.
  std::filesystem::path hq_config() const;
};

/// A subcommand of `parent` that passes the options it does not know (the
/// global ones) up to it.
CLI::App* sub(CLI::App& parent, const char* name, const char* help);

void print_diagnostics(const std::vector<config::Diagnostic>& diagnostics);
/// Loads the agent's config, printing every diagnostic; nullopt on errors.
std::optional<config::Config> load_agent_config(const Globals& g);
std::optional<config::HqConfig> load_hq_config(const Globals& g);

WallTime now();
/// "2026-11-26 22:18:03Z (3m ago)" from an RFC 3339 JSON value, "-" for null.
std::string when(const nlohmann::json& t);
void print_json(const nlohmann::json& j);

/// Prints a report (the agent's or the fleet's): its JSON, or its text with
/// colour on a terminal. Returns kOk.
template <class Report>
int print_report(const Report& report, bool as_json) {
  if (as_json) {
    print_json(report.to_json());
  } else {
    std::cout << report.render(use_colour(stdout));
  }
  return kOk;
}

/// Prints a failure the way every command does and returns its exit code.
int fail(const Error& e);

/// The agent's database, read-only: reads work with the daemon down. When
/// the caller may not reach it, the error says which directory or file
/// refuses whom, and how to get access.
Result<agent::Store> open_agent_store(const config::Config& cfg);

/// How long `status` and `sync status` wait for the daemon's answer: a hung
/// daemon takes the connection (the kernel's backlog) and never answers, and
/// these commands answer within a second all the same.
inline constexpr std::chrono::milliseconds kStatusTimeout{800};

/// The daemon as `status`, `sync status` and `doctor` report it: whether it
/// answered and, if not, why (agent::call_daemon), with its pid when known.
struct DaemonView {
  agent::DaemonState state = agent::DaemonState::not_running;
  int pid = 0;
  std::string socket;
  /// Why it did not answer (or its refusal), for a human; empty when it
  /// answered.
  std::string error;
  /// Its answer to `status` (the DESIGN §7 document) when it gave one.
  std::optional<nlohmann::json> status;

  /// `daemon` of `status --json`: state, socket, pid (when known), error
  /// (when there is one).
  nlohmann::json to_json() const;
  /// "not running", "not answering (pid 42)", … for a human.
  std::string describe() const;
  /// What the user can do about it, one command or step a line; empty when
  /// running.
  std::vector<std::string> fix() const;
  /// `status`'s exit code: 0 running, 3 not running or not answering, 4
  /// permission denied.
  int exit_code() const;
};

/// Asks the daemon of `cfg` for its status within `timeout`.
DaemonView ask_daemon_status(const config::Config& cfg,
                             std::chrono::milliseconds timeout = kStatusTimeout);

/// A duration option's value (`--for 2h`, `--timeout 3s`), and a positive
/// one when `positive`. The one wording of every duration error, the
/// config's hint included (duration_problem): "--for 2 is not a duration: it
/// has no unit; write e.g. \"2s\" or \"2ms\"", "--for 0s must be positive,
/// e.g. 2h".
Result<Millis> parse_duration_option(const char* option, const std::string& text, bool positive,
                                     const char* example);

/// `--since TEXT` of a command that looks back from now: a duration, and a
/// positive one when `positive` (parse_duration_option).
Result<Millis> parse_since(const std::string& text, bool positive, const char* example);

/// What a command that reads the agent's database needs.
struct AgentReading {
  config::Config cfg;
  agent::Store store;
};

/// The preamble of the commands that read the agent's database: loads the
/// config (printing its diagnostics) and opens the database read-only. On
/// errors it has printed why and set `rc` to the command's exit code (2 for
/// the config, 1 for the database).
std::optional<AgentReading> read_agent(const Globals& g, int& rc);

/// Prints a usage error (a bad option value) and returns its exit code, 2.
int usage(const Error& e);

/// Sends a change to the daemon (the one writer) and returns its answer, or
/// prints why it could not and returns nullopt. With `refusal`, a refusal
/// of the daemon's ({"ok":false,…}) is not printed but stored there (for a
/// command that words it itself).
std::optional<nlohmann::json> ask_daemon(const config::Config& cfg, nlohmann::json request,
                                         nlohmann::json* refusal = nullptr);

/// Adds $SUDO_USER (who ran sudo) to a change's request as "sudo_user": the
/// daemon records that person as the actor when the peer is root, and
/// ignores it from anyone else.
void add_sudo_user(nlohmann::json& request);

/// "3m ago" from an RFC 3339 JSON value, "-" for null.
std::string ago(const nlohmann::json& t);

/// The uids of a JSON list's items as a table shows them: each by its
/// shortest start (8 characters or more) that no other item shares, or
/// whole with `wide` (`--wide`).
std::vector<std::string> shown_uids(const nlohmann::json& list, bool wide);

/// The incidents table of a JSON list (the agent's, or HQ's with its store
/// column): uids by shown_uids, and what gives way on a narrow terminal
/// (the summary is cut, DETECTED shortened to "3m ago", PRIO and SEVERITY
/// dropped).
Table incident_table(const nlohmann::json& list, bool with_store, bool wide);

/// The width a listing's table fits: unlimited with `--wide`, else
/// terminal_width(stdout) ($COLUMNS, the terminal's, or unlimited on a pipe).
std::size_t table_width(bool wide);

// The command groups, in the order `storewatch --help` lists them. Each
// adds its commands to `app`; their callbacks read `g` and set `rc`.

/// status, sync status.
void add_status_commands(CLI::App& app, const Globals& g, int& rc);
/// incidents, incident show, ack, resolve, close, note.
void add_incident_commands(CLI::App& app, const Globals& g, int& rc);
/// silence add, list, remove.
void add_silence_commands(CLI::App& app, const Globals& g, int& rc);
/// report.
void add_report_commands(CLI::App& app, const Globals& g, int& rc);
/// probe run, probe types.
void add_probe_commands(CLI::App& app, const Globals& g, int& rc);
/// notify test, config check, config polkit, doctor: the gateway's setup.
void add_config_commands(CLI::App& app, const Globals& g, int& rc);
/// hq run, stores, incidents, report.
void add_hq_commands(CLI::App& app, const Globals& g, int& rc);
/// hq config check (cli/config_commands.cpp), after add_hq_commands.
void add_hq_config_commands(CLI::App& app, const Globals& g, int& rc);

}  // namespace storewatch::cli
