#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include "agent/daemon.h"
#include "base/log.h"
#include "cli/commands.h"
#include "config/config.h"
#include "probes/registry.h"

namespace storewatch::cli {

int run_cli(int argc, char** argv) {
  CLI::App app{
      "storewatch — watches a store's lanes, payment terminals, printers and network; opens "
      "incidents locally (even offline), heals what is safe to heal, and syncs every incident "
      "event to HQ over MQTT.",
      "storewatch"};
  app.set_version_flag("--version", std::string("storewatch ") + STOREWATCH_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 failure, 2 usage or config error.\n"
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }
  return rc;
}

}  // namespace storewatch::cli
