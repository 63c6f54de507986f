#pragma once
/// \file
/// Inside cli/: what the command groups of `storewatch` share — the global
/// options, the exit codes, loading the config, the preamble of the commands
/// that read the agent's database, asking the daemon, printing — and each
/// group's `add_*_commands` (cli/*_commands.cpp), which run_cli (cli/cli.cpp)
/// calls in the order `storewatch --help` lists the commands.

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

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

/// The agent's database, read-only: reads work with the daemon down.
Result<agent::Store> open_agent_store(const config::Config& cfg);

/// `--since TEXT` of a command that looks back from now: a duration, and a
/// positive one when `positive`. The error's message names the option and
/// ends with `example` ("e.g. 7d").
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
/// prints why it could not and returns nullopt.
std::optional<nlohmann::json> ask_daemon(const config::Config& cfg, nlohmann::json request);

/// A row of an incidents table (the agent's or HQ's, with its store column).
void add_incident_row(Table& t, const nlohmann::json& i, bool with_store);
std::vector<std::string> incident_headers(bool with_store);

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

}  // namespace storewatch::cli
