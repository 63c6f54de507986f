// report: MTTD, MTTA, MTTR and self-healing figures from the agent's database.
#include <CLI/CLI.hpp>

#include <memory>

#include "agent/report.h"
#include "cli/commands.h"

namespace storewatch::cli {

namespace {

/// Always reads the database read-only, whether the daemon runs or not:
/// every figure comes from committed incidents and events.
int cmd_report(const Globals& g, const std::string& since, bool as_json) {
  auto window = parse_since(since, true, "7d");
  if (!window) return usage(window.error());
  int rc = kOk;
  auto read = read_agent(g, rc);
  if (!read) return rc;
  auto report = agent::build_report(read->store, now(), *window);
  if (!report) return fail(report.error());
  return print_report(*report, as_json);
}

struct ReportOptions {
  std::string since = "7d";
  bool json_out = false;
};

}  // namespace

void add_report_commands(CLI::App& app, const Globals& g, int& rc) {
  auto o = std::make_shared<ReportOptions>();
  auto* report = sub(app, "report",
                     "MTTD, MTTA (human acks), MTTR with mean, median and p90; auto-heal rate and "
                     "time to self-heal; the probes with most incidents and most downtime. Reads "
                     "the database; see docs/METRICS.md for the definitions.");
  report->add_option("--since", o->since,
                     "Incidents detected within this long before now (default 7d)");
  report->add_flag("--json", o->json_out, "Print JSON (docs/METRICS.md shape) instead of tables");
  report->callback([&g, &rc, o] { rc = cmd_report(g, o->since, o->json_out); });
}

}  // namespace storewatch::cli
