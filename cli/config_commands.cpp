// notify test, config check, config polkit and doctor: the commands that set
// up and check the gateway from its config.
#include <CLI/CLI.hpp>

#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "agent/notices.h"
#include "agent/polkit_rule.h"
#include "cli/commands.h"
#include "cli/doctor.h"
#include "probes/registry.h"

namespace storewatch::cli {

namespace {

std::string count(std::size_t n, const char* what) {
  return fmt::format("{} {}{}", n, what, n == 1 ? "" : "s");
}

/// Prints the diagnostics and, with errors, "FILE: N errors"; true when there is none.
template <class T>
bool report_check(const std::filesystem::path& file, const config::Loaded<T>& loaded) {
  print_diagnostics(loaded.diagnostics);
  if (loaded.ok()) return true;
  std::size_t errors = 0;
  for (const auto& d : loaded.diagnostics) errors += d.kind == config::Diagnostic::Kind::error;
  std::cerr << fmt::format("{}: {}\n", file.string(), count(errors, "error"));
  return false;
}

int check_agent_config(const Globals& g, const std::filesystem::path& file) {
  config::LoadOptions options;
  if (!g.conf_dir.empty()) options.conf_dir = g.conf_dir;
  options.probe_types = probes::schemas();
  auto loaded = config::load(file, options);
  if (!report_check(file, loaded)) return kUsage;
  const auto& c = *loaded.config;
  std::string extra;
  if (!c.remediations.empty()) extra += ", " + count(c.remediations.size(), "remediation");
  if (!c.silences.empty()) extra += ", " + count(c.silences.size(), "silence");
  std::cout << fmt::format("{}: ok — store {}, {}{}, {} read\n", file.string(), c.store.id,
                           count(c.probes.size(), "probe"), extra, count(c.files.size(), "file"));
  return kOk;
}

int check_hq_config(const std::filesystem::path& file) {
  auto loaded = config::load_hq(file);
  if (!report_check(file, loaded)) return kUsage;
  const auto& c = *loaded.config;
  const std::string enroll = c.enroll == config::HqConfig::Enroll::list
                                 ? fmt::format("enroll list ({})", count(c.stores.size(), "store"))
                                 : std::string("enroll auto");
  std::cout << fmt::format("{}: ok — HQ config, broker {}, database {}, {}\n", file.string(),
                           c.broker, c.database_name(), enroll);
  return kOk;
}

/// `config check` and `hq config check`: an agent's config or HQ's, told
/// apart by their tables ([hq] is HQ's), each checked by its own loader.
int cmd_config_check(const Globals& g, const std::filesystem::path& file) {
  const config::FileKind kind = config::file_kind(file);
  if (kind.kind == config::FileKind::hq) return check_hq_config(file);
  if (kind.kind == config::FileKind::mixed) {
    std::cerr << fmt::format(
        "{}: error: [hq] is HQ's table, but this file also has the agent's {} (at {}): the "
        "agent's config and HQ's are two files (storewatch.toml and hq.toml); move [hq] to a "
        "file of its own and check each with `storewatch config check -c FILE`\n",
        config::to_string(kind.hq_at), kind.agent_table, config::to_string(kind.agent_at));
    std::cerr << fmt::format("{}: 1 error\n", file.string());
    return kUsage;
  }
  return check_agent_config(g, file);
}

int cmd_doctor(const Globals& g, const std::string& timeout, bool as_json) {
  auto t = parse_duration_option("--timeout", timeout, true, "3s");
  if (!t) return usage(t.error());
  DoctorOptions options;
  options.config = g.agent_config();
  if (!g.conf_dir.empty()) options.conf_dir = g.conf_dir;
  options.timeout = *t;
  const DoctorReport report = run_doctor(options);
  if (as_json) {
    print_json(report.to_json());
  } else {
    std::cout << report.render(use_colour(stdout));
  }
  return report.exit_code();
}

struct ConfigOptions {
  std::string channel;
  std::string polkit_out;
  std::string doctor_timeout = "3s";
  bool json_out = false;
};

}  // namespace

void add_config_commands(CLI::App& app, const Globals& g, int& rc) {
  auto o = std::make_shared<ConfigOptions>();
  auto* notify_cmd = sub(app, "notify", "The [[notify]] channels (Slack, Teams, email, webhook)");
  notify_cmd->require_subcommand(1);
  auto* notify_test_cmd =
      sub(*notify_cmd, "test",
          "Send a test notice through one channel now and print what happened (needs no "
          "daemon; exit 0 sent, 1 failed, 2 unknown channel)");
  notify_test_cmd->add_option("NAME", o->channel, "The [[notify]] name")->required();
  notify_test_cmd->add_flag("--json", o->json_out, "Print JSON instead of text");
  notify_test_cmd->callback([&g, &rc, o] {
    auto cfg = load_agent_config(g);
    rc = cfg ? agent::notify_test(*cfg, o->channel, o->json_out) : kUsage;
  });

  auto* config_cmd = sub(app, "config", "Work with the config file");
  config_cmd->require_subcommand(1);
  auto* check = sub(*config_cmd, "check",
                    "Validate the config, the agent's or HQ's (a file with [hq]): exit 0, or print "
                    "every error as file:line:col and exit 2. Missing secret or CA files are "
                    "warnings. Creates nothing.");
  check->callback([&g, &rc] { rc = cmd_config_check(g, g.agent_config()); });
  auto* polkit = sub(*config_cmd, "polkit",
                     "Print the polkit rule that lets user storewatch restart exactly the units "
                     "of the config's systemd-restart remediations (exit 2 on config errors)");
  polkit->add_option("-o,--output", o->polkit_out,
                     "Write it to FILE at once instead, e.g. "
                     "/etc/polkit-1/rules.d/50-storewatch.rules; left as it was on errors");
  polkit->callback([&g, &rc, o] {
    auto cfg = load_agent_config(g);
    if (!cfg) {
      rc = kUsage;
      return;
    }
    const std::string rule = agent::polkit_rule(agent::restart_units(*cfg));
    if (o->polkit_out.empty()) {
      std::cout << rule;
    } else if (auto w = agent::write_polkit_rule(o->polkit_out, rule); !w) {
      rc = fail(w.error());
      return;
    }
    rc = kOk;
  });

  auto* doctor = sub(
      app, "doctor",
      "Check everything storewatch needs on this gateway and say what to do about each problem: "
      "the config (every error as file:line:col), the database (quick_check, size, WAL, schema "
      "version, readable by you), the daemon behind the control socket, the broker (the "
      "daemon's link, or a direct TCP/TLS connect when it is down), the clock's skew (with the "
      "config's system clock probes) and the free disk space of the state directory. Needs no "
      "daemon and changes nothing. Exit 0 when no check fails (warnings included), 1 when one "
      "does, 2 for a usage error. docs/DOCTOR.md has the checks and the JSON shape.");
  doctor->add_option("--timeout", o->doctor_timeout,
                     "How long each network step may take: the daemon's answer, the broker's "
                     "connect and TLS handshake (default 3s)");
  doctor->add_flag("--json", o->json_out, "Print JSON (docs/DOCTOR.md shape) instead of text");
  doctor->callback([&g, &rc, o] { rc = cmd_doctor(g, o->doctor_timeout, o->json_out); });
}

void add_hq_config_commands(CLI::App& app, const Globals& g, int& rc) {
  CLI::App* hq_cmd = app.get_subcommand("hq");
  auto* config_cmd = sub(*hq_cmd, "config", "Work with HQ's config file");
  config_cmd->require_subcommand(1);
  auto* check = sub(*config_cmd, "check",
                    "Validate HQ's config (default $STOREWATCH_HQ_CONFIG or "
                    "/etc/storewatch/hq.toml) without running HQ: exit 0, or print every error "
                    "as file:line:col and exit 2. Creates nothing.");
  check->callback([&g, &rc] { rc = cmd_config_check(g, g.hq_config()); });
}

}  // namespace storewatch::cli
