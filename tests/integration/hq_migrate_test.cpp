// `storewatch hq migrate` (docs/HQ.md "Moving from SQLite to PostgreSQL"):
// the real binary copies a SQLite HQ database, written by HQ's own store,
// into a throwaway PostgreSQL cluster; afterwards `hq stores --json` and
// `hq incidents --json` print the same on both, a second run copies nothing,
// and bad input is one line with the right exit code.

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "db/sqlite.h"
#include "hq/hq_database.h"
#include "hq/hq_store.h"
#include "sync/wire.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/support.h"

// Without HQ's PostgreSQL backend (the ARM gateways' build) there is nothing to
// migrate to: `hq migrate` says so.
#ifdef STOREWATCH_HAVE_POSTGRESQL

namespace storewatch::hq {
namespace {

using nlohmann::json;
using testing::HasSubstr;
using testing::Not;
using namespace std::chrono_literals;

/// 2025-11-26T22:18:03.123Z: each month back from it is a partition.
const WallTime kMigrateNow{std::chrono::milliseconds(1'764'195'483'123)};

wire::Event migrate_event(std::int64_t seq, const std::string& incident, const std::string& state,
                          const std::string& actor = "agent") {
  wire::Event e;
  e.seq = seq;
  e.uid = fmt::format("ev-{}-{}", incident, seq);
  e.incident = incident;
  e.type = state == "open" ? "opened" : state;
  e.at = "2025-11-26T22:00:45.000Z";
  e.actor = actor;
  e.body =
      json{{"incident_state",
            {{"uid", incident},
             {"probe", "lane-01-pos"},
             {"state", state},
             {"severity", "high"},
             {"t_detect", fmt::format("2025-11-{:02d}T22:00:{:02d}.000Z", 1 + seq % 25, seq % 60)},
             {"t_resolved", state == "resolved" ? json("2025-11-26T22:30:00.000Z") : json()},
             {"reopen_count", 0},
             {"summary", "lane 01 POS does not answer \"\t\\ tabs and quotes\""}}}};
  return e;
}

class HqMigrateTest : public testing::Test {
 protected:
  void SetUp() override {
    if (auto why = test::PgCluster::unavailable(); !why.empty()) GTEST_SKIP() << why;
    cluster_ = std::make_unique<test::PgCluster>();
    uri_ = cluster_->create_database("hq");
    sqlite_cfg_ = write_config("sqlite.toml", sqlite_.string());
    pg_cfg_ = write_config("pg.toml", uri_);
  }

  std::filesystem::path write_config(const std::string& name, const std::string& database) {
    auto path = dir_ / name;
    test::write_file(
        path, fmt::format("[hq]\nbroker = \"tcp://127.0.0.1:1\"\ndatabase = \"{}\"\n", database));
    return path;
  }

  /// A SQLite HQ database as `hq run` leaves it: `stores` stores, each with
  /// `per_store` events received over the last months, incidents in every
  /// state, statuses, a gap, refused events and a resync.
  void fill_sqlite(int stores, int per_store) {
    auto db = HqStore::open(sqlite_, db::Database::Mode::read_write);
    ASSERT_TRUE(db.ok()) << db.error().message;
    static const char* const kStates[] = {"open", "acknowledged", "resolved", "closed"};
    for (int s = 0; s < stores; ++s) {
      const std::string store = fmt::format("store-{:04d}", s);
      // Batches of 100, received three days apart going back: months.
      for (int from = 1; from <= per_store; from += 100) {
        wire::Batch b{store, {}};
        for (int seq = from; seq < from + 100 && seq <= per_store; ++seq) {
          const std::string incident = fmt::format("inc-{}-{}", s, seq / 4);
          b.events.push_back(migrate_event(seq, incident, kStates[(seq + seq / 4) % 4],
                                           seq % 7 == 0 ? "cli:maria" : "agent"));
        }
        const auto received = kMigrateNow - 72h * ((per_store - from) / 100) + 1ms * s;
        auto r = db->ingest(b, received);
        ASSERT_TRUE(r.ok()) << r.error().message;
      }
      if (s % 2 == 0) {
        ASSERT_TRUE(db->record_status(wire::StoreStatus{store,
                                                        s % 4 == 0,
                                                        3 + s,
                                                        "0.4.0",
                                                        {{"high", 1}},
                                                        s,
                                                        "2025-11-26T22:18:00.000Z"},
                                      kMigrateNow + 1s)
                        .ok());
      }
    }
    // store-0001: a gap above its acked seq, then a resync asked for it; and
    // an event refused for jumping too far.
    const std::string gap = "store-0001";
    ASSERT_TRUE(db->ingest(wire::Batch{gap, {migrate_event(per_store + 5, "inc-gap", "open")}},
                           kMigrateNow + 2s)
                    .ok());
    ASSERT_TRUE(db->claim_resyncs(kMigrateNow + 1h, 30s).ok());
    ASSERT_TRUE(db->ingest(wire::Batch{gap, {migrate_event(per_store + 500'000, "inc-x", "open")}},
                           kMigrateNow + 3s)
                    .ok());
    // A store known only by its status.
    ASSERT_TRUE(db->record_status(
                      wire::StoreStatus{
                          "store-status-only", true, 1, "0.4.0", {}, 0, "2025-11-26T22:18:00.000Z"},
                      kMigrateNow + 4s)
                    .ok());
  }

  test::RunResult storewatch(std::vector<std::string> args) {
    return test::run(test::storewatch_command(std::move(args)), {}, 120s);
  }

  test::RunResult migrate(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"hq", "migrate", "--from", sqlite_.string(), "--to", uri_};
    args.insert(args.end(), extra.begin(), extra.end());
    return storewatch(args);
  }

  /// `hq <args> --json` on one config: its stdout, as printed.
  std::string view(const std::filesystem::path& cfg, std::vector<std::string> args) {
    std::vector<std::string> full{"hq", "--config", cfg.string()};
    full.insert(full.end(), args.begin(), args.end());
    auto r = storewatch(full);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  void expect_same_views() {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"stores", "--json"},
             {"incidents", "--json"},
             {"incidents", "--json", "--open"},
             {"incidents", "--json", "--store", "store-0002"},
         }) {
      const std::string on_sqlite = view(sqlite_cfg_, args);
      const std::string on_pg = view(pg_cfg_, args);
      EXPECT_FALSE(on_sqlite.empty());
      EXPECT_EQ(on_sqlite, on_pg) << "hq " << fmt::format("{}", fmt::join(args, " "));
    }
  }

  test::TempDir dir_;
  std::filesystem::path sqlite_ = dir_ / "var/hq.db";
  std::unique_ptr<test::PgCluster> cluster_;
  std::string uri_;
  std::filesystem::path sqlite_cfg_, pg_cfg_;
};

TEST_F(HqMigrateTest, CopiesEverythingSoBothDatabasesGiveTheSameViewsAndASecondRunCopiesNothing) {
  constexpr int kStores = 5;
  constexpr int kPerStore = 5'000;
  fill_sqlite(kStores, kPerStore);
  const int events = kStores * kPerStore + 1;  // and the one above the gap

  auto first = migrate();
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out,
              HasSubstr(fmt::format("copied {},{:03d} of {},{:03d} events", events / 1000,
                                    events % 1000, events / 1000, events % 1000)));
  EXPECT_THAT(first.out, HasSubstr("and 6 of 6 stores"));
  // Not a terminal: a line at each tenth, the last at 100%.
  EXPECT_THAT(first.err, HasSubstr("(100%)"));
  EXPECT_THAT(first.err, HasSubstr("copied 10,000 of"));
  EXPECT_EQ(first.err.find('\r'), std::string::npos);

  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events"), std::to_string(events));
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(DISTINCT (store, seq)) FROM events"),
            std::to_string(events));
  // Each event in the partition of the month it was received in.
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events_202511"),
            cluster_->sql("hq",
                          "SELECT count(*) FROM events WHERE received >= 1761955200000 "
                          "AND received < 1764547200000"));
  EXPECT_GE(std::stoi(cluster_->sql("hq",
                                    "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                                    "'events'::regclass")),
            2);
  EXPECT_EQ(cluster_->sql("hq", "SELECT max_seq FROM stores WHERE store = 'store-0001'"),
            std::to_string(kPerStore + 5));
  expect_same_views();
  // What the views compared holds what was put in: the gap, the resync and
  // the refused event of store-0001, the status of the store known only by it.
  const json stores = json::parse(view(pg_cfg_, {"stores", "--json"}));
  ASSERT_EQ(stores.size(), 6u);
  EXPECT_EQ(stores[1]["store"], "store-0001");
  EXPECT_EQ(stores[1]["acked_seq"], kPerStore);
  EXPECT_EQ(stores[1]["gap_from"], kPerStore + 1);
  EXPECT_EQ(stores[1]["resyncs"], 1);
  EXPECT_EQ(stores[1]["refused"]["seq_jump"], 1);
  EXPECT_EQ(stores[2]["online"], false);
  EXPECT_EQ(stores[2]["session"], 5);
  EXPECT_EQ(stores[4]["online"], true);
  EXPECT_EQ(stores[4]["session"], 7);
  EXPECT_EQ(stores[5]["store"], "store-status-only");
  EXPECT_EQ(stores[5]["online"], true);
  EXPECT_EQ(json::parse(view(pg_cfg_, {"incidents", "--json"})).size(),
            static_cast<std::size_t>(kStores * (kPerStore / 4 + 1) + 1));

  // Again: nothing is copied twice, and nothing changes.
  const std::string before =
      cluster_->sql("hq", "SELECT md5(string_agg(s::text, ',' ORDER BY store)) FROM stores s");
  auto second = migrate();
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.out, HasSubstr("copied 0 of"));
  EXPECT_THAT(second.out, HasSubstr(", 0 of "));
  EXPECT_THAT(second.out, HasSubstr("and 0 of 6 stores"));
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM events"), std::to_string(events));
  EXPECT_EQ(
      cluster_->sql("hq", "SELECT md5(string_agg(s::text, ',' ORDER BY store)) FROM stores s"),
      before);
  expect_same_views();

  // HQ on PostgreSQL takes over where SQLite left off: a re-send of what
  // was copied is a duplicate, never stored again.
  {
    config::HqConfig cfg;
    cfg.postgresql = uri_;
    auto pg = open_hq_database(cfg, HqOpen::read_write, "hq-migrate-test");
    ASSERT_TRUE(pg.ok()) << pg.error().message;
    auto r = (*pg)->ingest(wire::Batch{"store-0003",
                                       {migrate_event(kPerStore, "inc-3-1250", "closed"),
                                        migrate_event(kPerStore + 1, "inc-3-1250", "reopened")}},
                           kMigrateNow + 1h);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->duplicates, 1);
    EXPECT_EQ(r->inserted, 1);
    EXPECT_EQ(r->acked_seq, kPerStore + 1);
  }
}

TEST_F(HqMigrateTest, HqRunPrunesAtStartTheSameOnBothBackends) {
  constexpr int kPerStore = 2'000;
  fill_sqlite(3, kPerStore);
  ASSERT_EQ(migrate().exit_code, 0);
  const std::string incidents_before = view(sqlite_cfg_, {"incidents", "--json"});

  // Everything was received more than an hour ago: `hq run` with a
  // retention of 1h prunes all the events at start, and the closed
  // incidents with them, on either backend.
  test::Broker broker;
  const std::vector<std::pair<std::string, std::string>> runs{{"sqlite-run.toml", sqlite_.string()},
                                                              {"pg-run.toml", uri_}};
  for (const auto& [name, database] : runs) {
    const auto cfg = dir_ / name;
    test::write_file(cfg, fmt::format("[hq]\nbroker = \"{}\"\ndatabase = \"{}\"\n"
                                      "retention = \"1h\"\nclient_id = \"hq-{}\"\n",
                                      broker.uri(), database, name.substr(0, name.find('-'))));
    test::Child hq(test::storewatch_command({"hq", "--config", cfg.string(), "run"}),
                   dir_ / ("logs-" + name));
    const auto left = [&]() -> std::int64_t {
      if (database == uri_) return std::stoll(cluster_->sql("hq", "SELECT count(*) FROM events"));
      auto db = db::Database::open(sqlite_, db::Database::Mode::read_only);
      auto q = db->prepare("SELECT count(*) FROM events");
      return *q->step() ? q->int64(0) : -1;
    };
    EXPECT_TRUE(test::wait_until([&] { return left() == 0; }, 60s)) << test::logs_of(hq);
    EXPECT_EQ(hq.stop(SIGTERM), 0) << test::logs_of(hq);
  }
  EXPECT_EQ(cluster_->sql("hq",
                          "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                          "'events'::regclass AND inhrelid::regclass::text < 'events_202512'"),
            "0");
  // The stores and their acks stay; what is left of the incidents is the
  // same on both: every one not closed.
  expect_same_views();
  const json incidents = json::parse(view(pg_cfg_, {"incidents", "--json"}));
  EXPECT_LT(incidents.size(), json::parse(incidents_before).size());
  ASSERT_FALSE(incidents.empty());
  for (const json& i : incidents) EXPECT_NE(i["state"], "closed") << i.dump();
  const json stores = json::parse(view(pg_cfg_, {"stores", "--json"}));
  EXPECT_EQ(stores[0]["acked_seq"], kPerStore);
}

TEST_F(HqMigrateTest, ACutShortRunIsFinishedByTheNext) {
  fill_sqlite(2, 3'000);
  // As if a first run had stopped after part of the events: some are there,
  // none of the stores or incidents.
  ASSERT_EQ(migrate().exit_code, 0);
  cluster_->sql("hq",
                "DELETE FROM events WHERE seq % 3 = 0; DELETE FROM incidents WHERE seq % 2 = 0; "
                "DELETE FROM stores WHERE store = 'store-0000'");
  auto again = migrate();
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("copied 2,000 of 6,001 events"));
  EXPECT_THAT(again.out, HasSubstr("and 1 of 3 stores"));
  expect_same_views();
}

TEST_F(HqMigrateTest, ThePasswordComesFromAFileNeverTheCommandLine) {
  fill_sqlite(1, 50);
  cluster_->sql("hq", "ALTER ROLE storewatch PASSWORD 'pg-secret'");
  const std::string tcp = cluster_->tcp_uri("hq");

  // In the URI: refused before anything is tried (it would be on argv).
  auto with_password = storewatch(
      {"hq", "migrate", "--from", sqlite_.string(), "--to",
       "postgresql://storewatch:pg-secret@127.0.0.1:" + std::to_string(cluster_->port()) + "/hq"});
  EXPECT_EQ(with_password.exit_code, 2);
  EXPECT_THAT(with_password.err, HasSubstr("password"));
  EXPECT_THAT(with_password.err, Not(HasSubstr("pg-secret")));

  test::write_file(dir_ / "pg-password", "pg-secret\n");
  auto by_flag = storewatch({"hq", "migrate", "--from", sqlite_.string(), "--to", tcp,
                             "--password-file", (dir_ / "pg-password").string()});
  ASSERT_EQ(by_flag.exit_code, 0) << by_flag.err;
  EXPECT_THAT(by_flag.out, HasSubstr("copied 51 of 51 events"));  // and store-0001's

  // Or [hq] database_password_file of --config.
  const auto cfg = dir_ / "with-password.toml";
  test::write_file(cfg, fmt::format("[hq]\nbroker = \"tcp://127.0.0.1:1\"\ndatabase = \"{}\"\n"
                                    "database_password_file = \"{}\"\n",
                                    tcp, (dir_ / "pg-password").string()));
  auto by_config = storewatch(
      {"hq", "--config", cfg.string(), "migrate", "--from", sqlite_.string(), "--to", tcp});
  ASSERT_EQ(by_config.exit_code, 0) << by_config.err;
  EXPECT_THAT(by_config.out, HasSubstr("copied 0 of 51 events"));
}

TEST_F(HqMigrateTest, BadInputIsOneLineAndTheRightExitCode) {
  fill_sqlite(1, 10);
  test::write_file(dir_ / "notes.txt", std::string(5000, 'x'));
  {
    auto other = db::Database::open(dir_ / "other.db", db::Database::Mode::read_write);
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE(other->exec("CREATE TABLE customers (id INTEGER)").ok());
  }
  const int closed_port = test::free_port();
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string says;
  };
  const std::vector<Case> cases{
      {{"--from", (dir_ / "missing.db").string(), "--to", uri_}, 1, "no such file"},
      {{"--from", (dir_ / "notes.txt").string(), "--to", uri_}, 1, "notes.txt"},
      {{"--from", (dir_ / "other.db").string(), "--to", uri_},
       1,
       "is not a storewatch HQ database"},
      {{"--from", sqlite_.string(), "--to", (dir_ / "hq2.db").string()},
       2,
       "--to must be a PostgreSQL URI"},
      {{"--from", sqlite_.string(), "--to",
        fmt::format("postgresql://storewatch@127.0.0.1:{}/hq?connect_timeout=2", closed_port)},
       1,
       "cannot connect to PostgreSQL"},
      {{"--to", uri_}, 2, "--from"},
      {{"--from", sqlite_.string()}, 2, "--to"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args{"hq", "migrate"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = storewatch(args);
    EXPECT_EQ(r.exit_code, c.exit_code) << fmt::format("{}", fmt::join(args, " ")) << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.says)) << fmt::format("{}", fmt::join(args, " "));
    EXPECT_LE(std::count(r.err.begin(), r.err.end(), '\n'), 2) << r.err;
  }
  // Nothing was written by any of them.
  EXPECT_EQ(cluster_->sql("hq", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0");

  auto help = storewatch({"hq", "migrate", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--password-file"));
  EXPECT_THAT(help.out, HasSubstr("copies nothing twice"));
}

}  // namespace
}  // namespace storewatch::hq

#endif  // STOREWATCH_HAVE_POSTGRESQL
