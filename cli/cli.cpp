#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "agent/daemon.h"
#include "base/log.h"
#include "cli/commands.h"
#include "config/config.h"
#include "probes/registry.h"

namespace storewatch::cli {

namespace {

/// Optimal string alignment distance (Damerau–Levenshtein with adjacent
/// transpositions): "incidnets" is 1 from "incidents".
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

/// The commands of `group` close to `typed`: within 2 edits (1 for a word of
/// up to 3 letters), or starting with it; closest first.
std::vector<std::string> closest_commands(const CLI::App& group, const std::string& typed) {
  std::vector<std::pair<std::size_t, std::string>> close;
  const std::size_t limit = typed.size() <= 3 ? 1 : 2;
  for (const CLI::App* s : group.get_subcommands({})) {
    const std::string& name = s->get_name();
    const std::size_t d = edit_distance(typed, name);
    const bool prefix = typed.size() >= 2 && name.starts_with(typed);
    if (d <= limit || prefix) close.emplace_back(prefix ? std::min<std::size_t>(d, 1) : d, name);
  }
  std::sort(close.begin(), close.end());
  std::vector<std::string> out;
  for (auto& [d, name] : close) out.push_back(std::move(name));
  return out;
}

/// "storewatch hq" for the group `hq` of the top-level app.
std::string command_path(const CLI::App* app) {
  std::vector<std::string> names;
  for (; app != nullptr; app = app->get_parent()) names.push_back(app->get_name());
  std::reverse(names.begin(), names.end());
  return fmt::format("{}", fmt::join(names, " "));
}

/// The names of a group's commands, for "needs a command: …".
std::string command_names(const CLI::App& group) {
  std::vector<std::string> names;
  for (const CLI::App* s : group.get_subcommands({})) names.push_back(s->get_name());
  return fmt::format("{}", fmt::join(names, ", "));
}

/// Takes the option `token` of `app` or of a group above it (the global
/// options fall through) a value in the next argument?
bool takes_a_value(const CLI::App* app, const std::string& token) {
  if (token.find('=') != std::string::npos) return false;
  for (; app != nullptr; app = app->get_parent()) {
    if (const CLI::Option* o = app->get_option_no_throw(token)) return o->get_type_size_max() > 0;
  }
  return false;
}

/// Checks the command words before CLI11 parses: a word that is not a
/// command of its group (`storewatch statu`, `storewatch hq storez`) and a
/// group given no command (`storewatch hq`) get a message of their own here,
/// where CLI11 would say "A subcommand is required" for both. Prints it and
/// returns true when there is one; --help and --version are left to CLI11.
/// `reached` is the deepest command named, for the hint of CLI11's errors.
bool command_words_are_wrong(CLI::App& app, int argc, char** argv, const CLI::App*& reached) {
  const CLI::App*& group = reached;
  group = &app;
  for (int i = 1; i < argc; ++i) {
    const std::string token = argv[i];
    if (token == "--") return false;
    if (token == "-h" || token == "--help" || token == "--version") return false;
    if (token.size() > 1 && token[0] == '-') {
      if (takes_a_value(group, token)) ++i;
      continue;
    }
    if (group->get_require_subcommand_min() == 0) return false;  // a command's own argument
    const CLI::App* next = nullptr;
    for (const CLI::App* s : group->get_subcommands({})) {
      if (s->check_name(token)) next = s;
    }
    if (next != nullptr) {
      group = next;
      continue;
    }
    const std::string prefix =
        group == &app ? "" : command_path(group).substr(app.get_name().size() + 1) + " ";
    std::string message = fmt::format("storewatch: unknown command '{}{}'", prefix, token);
    auto close = closest_commands(*group, token);
    if (!close.empty()) {
      for (auto& c : close) c = prefix + c;
      message += fmt::format("; did you mean: {}?", fmt::join(close, ", "));
    }
    std::cerr << message << "\nRun `" << command_path(group) << " --help` for "
              << (group == &app ? "the commands" : "its commands") << ".\n";
    return true;
  }
  if (group->get_require_subcommand_min() > 0) {
    std::cerr << fmt::format(
        "storewatch: `{}` needs a command: {}\nRun `{} --help` for what each does.\n",
        command_path(group), command_names(*group), command_path(group));
    return true;
  }
  return false;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{
      "storewatch — watches a store's lanes, payment terminals, printers and network; opens "
      "incidents locally (even offline), heals what is safe to heal, and syncs every incident "
      "event to HQ over MQTT.",
      "storewatch"};
  const std::string version = std::string("storewatch ") + STOREWATCH_VERSION;
  app.set_version_flag("--version", version);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 failure, 2 usage or config error (an unknown command, a bad option "
      "or value, a config error).\n"
      "Run `storewatch COMMAND --help` for the options of a command.");

  Globals g;
  app.add_option("-c,--config", g.config,
                 "Config file (default $STOREWATCH_CONFIG or /etc/storewatch/storewatch.toml; for "
                 "`hq` commands $STOREWATCH_HQ_CONFIG or /etc/storewatch/hq.toml)");
  app.add_option("--conf-dir", g.conf_dir,
                 "Drop-in directory read after the config file (default: conf.d next to it)");

  int rc = kOk;

  auto* run = sub(app, "run", "Run the daemon: probe, open and resolve incidents, sync to HQ");
  run->callback([&] {
    auto cfg = load_agent_config(g);
    if (!cfg) {
      rc = kUsage;
      return;
    }
    log::set_level(cfg->agent.log_level);
    rc = agent::run_daemon(std::move(*cfg), [&g] {
      config::LoadOptions options;
      if (!g.conf_dir.empty()) options.conf_dir = g.conf_dir;
      options.probe_types = probes::schemas();
      return config::load(g.agent_config(), options);
    });
  });

  // The command groups (cli/*_commands.cpp), in the order --help lists them.
  add_status_commands(app, g, rc);
  add_incident_commands(app, g, rc);
  add_silence_commands(app, g, rc);
  add_report_commands(app, g, rc);
  add_probe_commands(app, g, rc);
  add_config_commands(app, g, rc);
  add_hq_commands(app, g, rc);
  add_hq_config_commands(app, g, rc);

  auto* version_cmd = sub(app, "version", "Print the version (as --version does)");
  version_cmd->callback([&] {
    std::cout << version << "\n";
    rc = kOk;
  });

  const CLI::App* reached = &app;
  if (command_words_are_wrong(app, argc, argv, reached)) return kUsage;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {  // --help, --version
      app.exit(e);
      return kOk;
    }
    // CLI11's message with the prefix every error of storewatch has.
    std::cerr << "storewatch: " << e.what() << "\nRun `" << command_path(reached) << " --help` for "
              << (reached == &app ? "the commands" : "its options") << ".\n";
    return kUsage;
  }
  return rc;
}

}  // namespace storewatch::cli
