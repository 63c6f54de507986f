// hq run, stores, incidents, report, migrate: HQ's side, on HQ's config and database.
#include <fmt/format.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "config/postgres_uri.h"
#include "hq/hq_database.h"
#include "hq/report.h"
#include "hq/run.h"
#ifdef STOREWATCH_HAVE_POSTGRESQL
#include "hq/migrate.h"
#endif

namespace storewatch::cli {

using nlohmann::json;

namespace {

int cmd_hq_run(const Globals& g) {
  auto cfg = load_hq_config(g);
  if (!cfg) return kUsage;
  return hq::run(*cfg);
}

/// Runs `f` on HQ's database, opened read-only; a bad config is a usage
/// error (2), a database that cannot be read a failure (1).
template <class F>
int with_hq_store(const Globals& g, F&& f) {
  auto cfg = load_hq_config(g);
  if (!cfg) return kUsage;
  auto store = hq::open_hq_database(*cfg, hq::HqOpen::read_only, "storewatch hq (view)");
  if (!store) return fail(store.error());
  return f(**store);
}

json workers_json(const std::vector<hq::WorkerHealth>& workers, WallTime at) {
  auto time = [](WallTime t) { return t == WallTime{} ? json() : json(format_rfc3339(t)); };
  json out = json::array();
  for (const hq::WorkerHealth& w : workers) {
    out.push_back(json{{"worker", w.worker},
                       {"host", w.host},
                       {"pid", w.pid},
                       {"started", time(w.started)},
                       {"heartbeat", time(w.heartbeat)},
                       {"silent", at - w.heartbeat > hq::kWorkerSilentAfter},
                       {"last_commit", time(w.last_commit)},
                       {"batches", w.batches},
                       {"inserted", w.inserted},
                       {"broker_connected", w.broker_connected},
                       {"last_error", w.last_error.empty() ? json() : json(w.last_error)},
                       {"last_error_at", time(w.last_error_at)}});
  }
  return out;
}

/// HQ's own health, one line: its workers as they last recorded
/// themselves, and which are silent (stopped, or cut off from the
/// database). Cut to `width` columns; red when a worker is silent.
std::string health_line(const json& workers, bool colour, std::size_t width) {
  auto fit = [width](const std::string& text) {
    return width == kUnlimited ? text : truncate_display(text, width);
  };
  if (workers.empty()) {
    return fit("HQ: no worker has recorded itself in this database yet (is `storewatch hq run` "
               "running with this config?)") +
           "\n";
  }
  std::vector<std::string> parts;
  int silent = 0;
  for (const json& w : workers) {
    std::string part = w.value("worker", "") + " on " + w.value("host", "?") + ": ";
    if (w.value("silent", false)) {
      ++silent;
      part += "silent since " + ago(w["heartbeat"]);
      if (w["last_error"].is_string()) {
        part += " (last error " + ago(w["last_error_at"]) + ": " +
                w["last_error"].get<std::string>() + ")";
      }
    } else {
      part += w["last_commit"].is_string() ? "committed " + ago(w["last_commit"])
                                           : "up, nothing committed yet";
      if (!w.value("broker_connected", false)) part += ", not connected to the broker";
    }
    parts.push_back(std::move(part));
  }
  std::string line = "HQ: " + std::to_string(workers.size()) + " worker(s)";
  if (silent > 0) line += ", " + std::to_string(silent) + " silent";
  line += " — ";
  for (std::size_t i = 0; i < parts.size(); ++i) line += (i > 0 ? "; " : "") + parts[i];
  return paint(fit(line), silent > 0 ? Colour::red : Colour::none, colour) + "\n";
}

int cmd_hq_workers(const Globals& g, bool as_json) {
  return with_hq_store(g, [&](hq::HqDatabase& store) {
    auto workers = store.workers();
    if (!workers) return fail(workers.error());
    const json list = workers_json(*workers, now());
    if (as_json) {
      print_json(list);
      return kOk;
    }
    std::cout << health_line(list, use_colour(stdout), table_width(false));
    return kOk;
  });
}

int cmd_hq_stores(const Globals& g, bool as_json, bool wide) {
  return with_hq_store(g, [&](hq::HqDatabase& store) {
    auto list = store.stores_json();
    if (!list) return fail(list.error());
    if (as_json) {
      print_json(*list);
      return kOk;
    }
    const bool colour = use_colour(stdout);
    auto workers = store.workers();
    if (!workers) return fail(workers.error());
    std::cout << health_line(workers_json(*workers, now()), colour, table_width(wide));
    // On a narrow terminal LAST SEEN says only how long ago, ACKED SEQ goes.
    Table t({"STORE", "ONLINE", "ACKED SEQ", "OPEN", "LAST SEEN", "MISSING FROM"});
    t.droppable(2, 1);
    for (const auto& s : *list) {
      bool online = s.value("online", false);
      const json& gap = s["gap_from"];
      t.add({s.value("store", ""), online ? "online" : "offline",
             std::to_string(s.value("acked_seq", 0)), std::to_string(s.value("open_incidents", 0)),
             when(s["last_seen"]), gap.is_number() ? std::to_string(gap.get<std::int64_t>()) : "-"},
            {Colour::none, online ? Colour::green : Colour::red, Colour::none, Colour::none,
             Colour::none, gap.is_number() ? Colour::yellow : Colour::none},
            {"", "", "", "", ago(s["last_seen"]), ""});
    }
    std::cout << (t.empty() ? "No stores have reported yet.\n"
                            : t.render(colour, table_width(wide)));
    return kOk;
  });
}

int cmd_hq_incidents(const Globals& g, const std::string& store_id, bool open_only, bool as_json,
                     bool wide) {
  return with_hq_store(g, [&](hq::HqDatabase& store) {
    auto list =
        store.incidents_json(store_id.empty() ? std::nullopt : std::optional(store_id), open_only);
    if (!list) return fail(list.error());
    if (as_json) {
      print_json(*list);
      return kOk;
    }
    if (list->empty()) {
      std::cout << (open_only ? "No open incidents at HQ.\n" : "No incidents at HQ.\n");
      return kOk;
    }
    std::cout << incident_table(*list, true, wide).render(use_colour(stdout), table_width(wide));
    return kOk;
  });
}

int cmd_hq_report(const Globals& g, const std::string& store_id, const std::string& since,
                  bool as_json) {
  auto window = parse_since(since, true, "7d");
  if (!window) return usage(window.error());
  return with_hq_store(g, [&](hq::HqDatabase& store) {
    auto report = hq::build_fleet_report(store, now(), *window,
                                         store_id.empty() ? std::nullopt : std::optional(store_id));
    if (!report) return fail(report.error());
    return print_report(*report, as_json);
  });
}

/// "copied 120,000 of 1,000,000 events (12%)": rewritten in place on a
/// terminal, else a line at each tenth.
class MigrateProgressLine {
 public:
  MigrateProgressLine() : tty_(::isatty(STDERR_FILENO) == 1) {}

  void operator()(std::int64_t done, std::int64_t total) {
    if (total <= 0) return;
    const std::int64_t percent = done * 100 / total;
    const std::string line =
        fmt::format("copied {} of {} events ({}%)", hq::grouped(done), hq::grouped(total), percent);
    if (tty_) {
      std::cerr << '\r' << line << "\x1b[K" << std::flush;
      shown_ = true;
    } else if (percent / 10 > tenth_) {
      tenth_ = percent / 10;
      std::cerr << line << '\n';
    }
  }

  /// Ends the line rewritten in place.
  void finish() {
    if (shown_) std::cerr << '\n';
    shown_ = false;
  }

 private:
  bool tty_;
  bool shown_ = false;
  std::int64_t tenth_ = -1;
};

int cmd_hq_migrate(const Globals& g, const std::string& from, const std::string& to,
                   const std::string& password_file) {
  if (!config::is_postgresql_uri(to)) {
    return usage(Error{fmt::format(
        "hq migrate: --to must be a PostgreSQL URI (postgresql://user@host:5432/storewatch), "
        "not \"{}\"",
        to)});
  }
  if (auto problem = config::postgresql_uri_problem(to)) {
    return usage(Error{fmt::format("hq migrate: --to: {}", *problem)});
  }
#ifdef STOREWATCH_HAVE_POSTGRESQL
  config::HqConfig target;
  if (!password_file.empty()) {
    target.database_password_file = password_file;
  } else if (g.config_given()) {
    // The password file of HQ's config, where the new database is set up.
    auto cfg = load_hq_config(g);
    if (!cfg) return kUsage;
    target.database_password_file = cfg->database_password_file;
  }
  target.postgresql = to;
  MigrateProgressLine progress;
  auto migrated = hq::migrate_to_postgresql(
      from, target, [&](std::int64_t done, std::int64_t total) { progress(done, total); });
  progress.finish();
  if (!migrated) return fail(Error{"hq migrate: " + migrated.error().message});
  std::cout << "storewatch: " << hq::describe(*migrated) << "; from " << from << " to "
            << config::redact_postgresql_uri(to) << "\n";
  return kOk;
#else
  (void)g;
  (void)from;
  (void)password_file;
  return fail(Error{"hq migrate: this storewatch was built without PostgreSQL (libpq)"});
#endif
}

struct HqOptions {
  std::string store;
  bool open_only = false;
  std::string since = "7d";
  bool json_out = false;
  bool wide = false;
  std::string from;
  std::string to;
  std::string password_file;
};

}  // namespace

void add_hq_commands(CLI::App& app, const Globals& g, int& rc) {
  auto o = std::make_shared<HqOptions>();
  auto* hq_cmd = sub(app, "hq", "Headquarters side: ingest store events, fleet views");
  hq_cmd->require_subcommand(1);
  auto* hq_run = sub(*hq_cmd, "run", "Run HQ ingest: store every store's events once, ack them");
  hq_run->callback([&g, &rc] { rc = cmd_hq_run(g); });
  auto* hq_stores =
      sub(*hq_cmd, "stores", "Every store HQ knows: online, acked seq, open incidents");
  hq_stores->add_flag("--json", o->json_out, "Print a JSON array instead of a table");
  hq_stores->add_flag("--wide", o->wide, "Whole rows, whatever the width of the terminal");
  hq_stores->callback([&g, &rc, o] { rc = cmd_hq_stores(g, o->json_out, o->wide); });
  auto* hq_workers = sub(*hq_cmd, "workers",
                         "HQ's ingest workers as each last recorded itself: host, last commit, "
                         "silent ones (stopped, or cut off from the database)");
  hq_workers->add_flag("--json", o->json_out, "Print a JSON array instead of a line");
  hq_workers->callback([&g, &rc, o] { rc = cmd_hq_workers(g, o->json_out); });
  auto* hq_incidents =
      sub(*hq_cmd, "incidents", "Every incident HQ knows (resolved and closed too)");
  hq_incidents->add_option("--store", o->store, "Only this store's incidents");
  hq_incidents->add_flag("--open", o->open_only, "Only incidents not resolved or closed");
  hq_incidents->add_flag("--json", o->json_out, "Print a JSON array instead of a table");
  hq_incidents->add_flag("--wide", o->wide,
                         "Whole uids and rows, whatever the width of the terminal ($COLUMNS)");
  hq_incidents->callback(
      [&g, &rc, o] { rc = cmd_hq_incidents(g, o->store, o->open_only, o->json_out, o->wide); });
  auto* hq_report =
      sub(*hq_cmd, "report",
          "MTTD, MTTA, MTTR and auto-heal rate per store and fleet-wide, from the "
          "incidents the stores sent (docs/METRICS.md definitions, docs/HQ.md shape)");
  hq_report->add_option("--store", o->store, "Only this store");
  hq_report->add_option("--since", o->since,
                        "Incidents detected within this long before now (default 7d)");
  hq_report->add_flag("--json", o->json_out, "Print JSON instead of tables");
  hq_report->callback([&g, &rc, o] { rc = cmd_hq_report(g, o->store, o->since, o->json_out); });
  auto* hq_migrate =
      sub(*hq_cmd, "migrate",
          "Copy a SQLite HQ database into PostgreSQL: stores, events, incidents; run it again "
          "and it copies nothing twice (stop `hq run` first; docs/HQ.md)");
  hq_migrate
      ->add_option("--from", o->from, "HQ's SQLite database, e.g. /var/lib/storewatch-hq/hq.db")
      ->required();
  hq_migrate
      ->add_option("--to", o->to,
                   "The PostgreSQL database, as a URI without a password: "
                   "postgresql://user@host:5432/storewatch")
      ->required();
  hq_migrate->add_option("--password-file", o->password_file,
                         "The PostgreSQL password, first line of this file (default: [hq] "
                         "database_password_file of --config, else libpq's ~/.pgpass)");
  hq_migrate->callback([&g, &rc, o] { rc = cmd_hq_migrate(g, o->from, o->to, o->password_file); });
}

}  // namespace storewatch::cli
