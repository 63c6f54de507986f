// Issue 20, items 3 and 4: short uids that stay unique, and tables that fit
// 80 columns. Two incidents opened within the same second share their first
// 8 characters (UUIDv7 is time-ordered): the tables tell them apart, and a
// start of a uid that names both is answered with the candidates, by
// `incident show` (read-only) and by the daemon (`ack`). `COLUMNS=80`
// tables have no line over 80 columns; a pipe without COLUMNS gets whole
// rows, `--wide` whole uids, `--json` is untouched.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <span>
#include <sstream>

#include "agent/store.h"
#include "base/clock.h"
#include "base/table.h"
#include "hq/hq_store.h"
#include "incident/incident.h"
#include "sync/wire.h"
#include "tests/support/daemon.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> column_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::size_t widest_line(const std::string& text) {
  std::size_t w = 0;
  for (const auto& l : column_lines(text)) w = std::max(w, display_width(l));
  return w;
}

/// The first word of the table row that names `probe`.
std::string shown_uid_of(const std::string& table, const std::string& probe) {
  for (const auto& l : column_lines(table)) {
    if (l.find(probe) != std::string::npos) return l.substr(0, l.find(' '));
  }
  return "";
}

constexpr const char* kLongSummary =
    "lane-01-pos is down: HTTP 503, expected 200 from http://10.0.1.21:8080/health (the POS "
    "application does not answer)";

class CliColumns : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = DaemonConfig::in(dir_, "store-cols");
    config.body = tcp_probe_toml("lane-01-pos", 1) + "\n" + tcp_probe_toml("lane-02-pos", 1) +
                  "\n" + tcp_probe_toml("printer-01", 1);
    config.write(config_);
    prepare();
  }

  /// Lanes 1 and 2 opened 300 ms apart two hours ago (their uids share the
  /// first 8 characters and more), the printer's two days ago and resolved.
  void prepare() {
    using namespace agent;
    using namespace std::chrono_literals;
    std::filesystem::create_directories(dir_ / "data");
    auto db = Store::open(dir_ / "data" / "storewatch.db", Store::Mode::read_write);
    ASSERT_TRUE(db) << db.error().message;
    // The first 8 hex digits are the time in ms >> 16: start 1 s into such a
    // 65.536 s block so that both fall in it.
    const WallTime now = SystemClock().wall_now();
    const auto block = std::chrono::milliseconds(65536);
    WallTime t0 = now - 2h - 5min;
    t0 -= (t0.time_since_epoch() % block);
    t0 += 1s;
    std::vector<Change> changes;
    auto open = [&](const std::string& probe, WallTime at, const std::string& summary) {
      Incident inc;
      inc.uid = new_uid(at);
      inc.probe = probe;
      inc.condition = "down";
      inc.dedup_key = "store-cols:" + probe + ":down";
      inc.severity = config::Severity::high;
      inc.priority = "P2";
      inc.t_fault = at - 20s;
      inc.t_detect = at;
      inc.summary = summary;
      changes.push_back(
          IncidentChange{inc, IncidentEvent{new_uid(at), "opened", at, "agent", json::object()}});
      return inc;
    };
    lane1_ = open("lane-01-pos", t0, kLongSummary).uid;
    lane2_ = open("lane-02-pos", t0 + 300ms, "lane-02-pos is down: connection refused").uid;
    Incident printer = open("printer-01", now - 48h, "printer-01 is down: paper out");
    printer.state = IncidentState::resolved;
    printer.t_restored = printer.t_resolved = now - 47h;
    changes.push_back(IncidentChange{printer, IncidentEvent{new_uid(now - 47h), "resolved",
                                                            now - 47h, "agent", json::object()}});
    printer_ = printer.uid;
    auto committed = db->commit(changes);
    ASSERT_TRUE(committed) << committed.error().message;
    ASSERT_EQ(lane1_.substr(0, 8), lane2_.substr(0, 8));
  }

  /// The CLI on a pipe, without colour and, unless `env` says, without COLUMNS.
  RunResult sw(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    env.emplace("NO_COLOR", "1");
    env.emplace("COLUMNS", "");
    return run_cli(config_, std::move(args), std::move(env));
  }

  TempDir dir_;
  std::filesystem::path config_ = dir_ / "storewatch.toml";
  std::string lane1_, lane2_, printer_;
};

TEST_F(CliColumns, TablesShowTheShortestUidStartThatNoOtherRowShares) {
  auto r = sw({"incidents", "--all"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string one = shown_uid_of(r.out, "lane-01-pos");
  const std::string two = shown_uid_of(r.out, "lane-02-pos");
  const std::string printer = shown_uid_of(r.out, "printer-01");
  EXPECT_GT(one.size(), 8u) << r.out;
  EXPECT_GT(two.size(), 8u) << r.out;
  EXPECT_EQ(printer, printer_.substr(0, 8)) << r.out;
  EXPECT_EQ(lane1_.rfind(one, 0), 0u) << one;
  EXPECT_EQ(lane2_.rfind(two, 0), 0u) << two;
  EXPECT_NE(lane2_.rfind(one, 0), 0u) << one << " names both";
  EXPECT_NE(lane1_.rfind(two, 0), 0u) << two << " names both";
  EXPECT_LT(one.size(), lane1_.size()) << "not the whole uid";

  // What a table shows is enough to name the incident.
  auto show = sw({"incident", "show", two});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("incident " + lane2_ + "\n"));
}

TEST_F(CliColumns, AStartThatNamesSeveralListsThemWithProbeStateAndDetection) {
  auto r = sw({"incident", "show", lane1_.substr(0, 8)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              HasSubstr("'" + lane1_.substr(0, 8) + "' matches 2 incidents; give more of the uid"));
  const std::string row1 = [&] {
    for (const auto& l : column_lines(r.err)) {
      if (l.find("lane-01-pos") != std::string::npos) return l;
    }
    return std::string();
  }();
  ASSERT_FALSE(row1.empty()) << r.err;
  const std::string prefix = row1.substr(2, row1.find(' ', 2) - 2);
  EXPECT_GT(prefix.size(), 8u) << r.err;
  EXPECT_EQ(lane1_.rfind(prefix, 0), 0u) << r.err;
  EXPECT_THAT(row1, HasSubstr("open"));
  EXPECT_THAT(row1, HasSubstr("Z"));  // the detection time
  EXPECT_THAT(r.err, HasSubstr("lane-02-pos"));
  EXPECT_THAT(r.err, Not(HasSubstr("printer-01")));
}

TEST_F(CliColumns, TheDaemonAnswersAnAmbiguousAckWithTheCandidates) {
  auto daemon = launch_daemon(config_, dir_ / "logs");
  ASSERT_TRUE(wait_until([&] { return daemon_is_running(config_); })) << daemon->err();
  auto r = sw({"ack", lane1_.substr(0, 8), "--by", "dana"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err,
              HasSubstr("'" + lane1_.substr(0, 8) + "' matches 2 incidents; give more of the uid"));
  EXPECT_THAT(r.err, HasSubstr("lane-01-pos"));
  EXPECT_THAT(r.err, HasSubstr("lane-02-pos"));
  EXPECT_THAT(r.err, HasSubstr("DETECTED"));
  // The unique start the table shows is enough.
  const std::string two = shown_uid_of(sw({"incidents"}).out, "lane-02-pos");
  auto ack = sw({"ack", two, "--by", "dana", "--json"});
  ASSERT_EQ(ack.exit_code, 0) << ack.err;
  EXPECT_EQ(json::parse(ack.out)["uid"], lane2_);
}

TEST_F(CliColumns, SilencesAddedTogetherAreToldApartAndAnAmbiguousRemoveListsThem) {
  auto daemon = launch_daemon(config_, dir_ / "logs");
  ASSERT_TRUE(wait_until([&] { return daemon_is_running(config_); })) << daemon->err();
  // Added a moment apart, two silences share their first 8 characters
  // unless a 65.5 s block ends between them: then the next two do.
  std::vector<std::string> ids;
  for (int i = 0;
       i < 4 && (ids.size() < 2 || ids[ids.size() - 2].substr(0, 8) != ids.back().substr(0, 8));
       ++i) {
    auto add =
        sw({"silence", "add", "--match", fmt::format("lane-0{}-pos", i + 1), "--for", "1h",
            "--reason", "a long reason for the silence, to be cut on a narrow terminal", "--json"});
    ASSERT_EQ(add.exit_code, 0) << add.err;
    ids.push_back(json::parse(add.out)["uid"]);
  }
  const std::string a = ids[ids.size() - 2], b = ids.back();
  ASSERT_EQ(a.substr(0, 8), b.substr(0, 8));

  auto list = sw({"silence", "list"}, {{"COLUMNS", "60"}});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_LE(widest_line(list.out), 60u) << list.out;
  const std::string shown_a = shown_uid_of(list.out, fmt::format("lane-0{}-pos", ids.size() - 1));
  EXPECT_GT(shown_a.size(), 8u) << list.out;
  EXPECT_EQ(a.rfind(shown_a, 0), 0u) << list.out;
  EXPECT_NE(b.rfind(shown_a, 0), 0u) << list.out;
  EXPECT_THAT(sw({"silence", "list", "--wide"}, {{"COLUMNS", "60"}}).out, HasSubstr(a));

  auto remove = sw({"silence", "remove", a.substr(0, 8), "--by", "dana"});
  EXPECT_EQ(remove.exit_code, 1);
  EXPECT_THAT(remove.err, HasSubstr("'" + a.substr(0, 8) + "' matches"));
  EXPECT_THAT(remove.err, HasSubstr("silences; give more of the uid"));
  EXPECT_THAT(remove.err, HasSubstr(fmt::format("lane-0{}-pos", ids.size() - 1)));
  EXPECT_THAT(remove.err, HasSubstr(fmt::format("lane-0{}-pos", ids.size())));
  auto removed = sw({"silence", "remove", shown_a, "--by", "dana"});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_THAT(removed.out, HasSubstr(a));
}

TEST_F(CliColumns, EightyColumnsFitWithTheSummaryCut) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"incidents"}, {"incidents", "--all"}}) {
    auto r = sw(args, {{"COLUMNS", "80"}});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_LE(widest_line(r.out), 80u) << r.out;
  }
  // incident show's timeline (its header says the whole summary).
  auto show = sw({"incident", "show", lane1_}, {{"COLUMNS", "80"}});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  const auto timeline = show.out.find("\ntimeline\n");
  ASSERT_NE(timeline, std::string::npos) << show.out;
  EXPECT_LE(widest_line(show.out.substr(timeline)), 80u) << show.out;
  auto r = sw({"incidents"}, {{"COLUMNS", "80"}});
  EXPECT_EQ(column_lines(r.out).size(), 3u) << r.out;  // no row wrapped or split
  EXPECT_THAT(r.out, HasSubstr("…")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("lane-01-pos is down")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("2h ago")) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr(lane1_))) << r.out;
}

TEST_F(CliColumns, APipeWithoutColumnsGetsWholeRows) {
  auto r = sw({"incidents", "--all"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(kLongSummary));
  EXPECT_THAT(r.out, HasSubstr("Z (2h ago)"));
  EXPECT_THAT(r.out, HasSubstr("PRIO"));
  EXPECT_GT(widest_line(r.out), 160u);
}

TEST_F(CliColumns, WideGivesWholeUidsAndRowsWhateverColumnsSays) {
  auto r = sw({"incidents", "--all", "--wide"}, {{"COLUMNS", "80"}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(shown_uid_of(r.out, "lane-01-pos"), lane1_);
  EXPECT_EQ(shown_uid_of(r.out, "lane-02-pos"), lane2_);
  EXPECT_EQ(shown_uid_of(r.out, "printer-01"), printer_);
  EXPECT_THAT(r.out, HasSubstr(kLongSummary));
  EXPECT_THAT(r.out, Not(HasSubstr("…")));
}

TEST_F(CliColumns, JsonIsUntouchedByColumns) {
  auto narrow = sw({"incidents", "--all", "--json"}, {{"COLUMNS", "80"}});
  auto whole = sw({"incidents", "--all", "--json"});
  ASSERT_EQ(narrow.exit_code, 0) << narrow.err;
  EXPECT_EQ(narrow.out, whole.out);
  json list = json::parse(narrow.out);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0]["uid"], lane2_);  // newest detection first
  EXPECT_EQ(list[1]["uid"], lane1_);
  EXPECT_EQ(list[1]["summary"], kLongSummary);
}

/// HQ's side: two stores' incidents, opened 300 ms apart, long summaries.
class HqColumns : public ::testing::Test {
 protected:
  void SetUp() override {
    using namespace std::chrono_literals;
    write_file(config_, fmt::format("[hq]\nbroker = \"tcp://127.0.0.1:1\"\ndatabase = \"{}\"\n",
                                    database_.string()));
    auto store = hq::HqStore::open(database_, db::Database::Mode::read_write);
    ASSERT_TRUE(store) << store.error().message;
    const WallTime now = SystemClock().wall_now();
    const auto block = std::chrono::milliseconds(65536);
    WallTime t0 = now - 1h - 5min;
    t0 -= (t0.time_since_epoch() % block);
    t0 += 1s;
    std::vector<wire::Batch> batches;
    for (int k = 0; k < 2; ++k) {
      const WallTime at = t0 + k * 300ms;
      const std::string uid = new_uid(at);
      uids_.push_back(uid);
      Incident inc;
      inc.uid = uid;
      inc.probe = fmt::format("lane-0{}-pos", k + 1);
      inc.dedup_key = "x";
      inc.severity = config::Severity::high;
      inc.priority = "P2";
      inc.t_fault = at - 20s;
      inc.t_detect = at;
      inc.summary = std::string(kLongSummary);
      wire::Event e;
      e.seq = 1;
      e.uid = new_uid(at);
      e.incident = uid;
      e.type = "opened";
      e.at = format_rfc3339(at);
      e.body = json{{"incident_state", inc.to_json()}};
      batches.push_back(wire::Batch{fmt::format("store-00{}", 42 + k), {e}});
    }
    auto ingested = store->ingest(std::span<const wire::Batch>(batches), now);
    ASSERT_TRUE(ingested) << ingested.error().message;
    ASSERT_EQ(uids_[0].substr(0, 8), uids_[1].substr(0, 8));
  }

  RunResult hq(std::vector<std::string> args, const std::string& columns) {
    args.insert(args.begin(), {"hq", "--config", config_.string()});
    return run(storewatch_command(std::move(args)), {{"NO_COLOR", "1"}, {"COLUMNS", columns}});
  }

  TempDir dir_;
  std::filesystem::path config_ = dir_ / "hq.toml";
  std::filesystem::path database_ = dir_ / "hq.db";
  std::vector<std::string> uids_;
};

TEST_F(HqColumns, IncidentsFitEightyColumnsAndTellCloseUidsApart) {
  auto r = hq({"incidents"}, "80");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LE(widest_line(r.out), 80u) << r.out;
  EXPECT_EQ(column_lines(r.out).size(), 3u) << r.out;
  EXPECT_THAT(r.out, HasSubstr("store-0042")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("…")) << r.out;
  for (const auto& uid : uids_) EXPECT_THAT(r.out, Not(HasSubstr(uid))) << r.out;
  // Each row's uid, after the store: a start of its own uid only.
  for (const auto& line : column_lines(r.out)) {
    if (line.rfind("store-", 0) != 0) continue;
    const auto from = line.find("  ") + line.substr(line.find("  ")).find_first_not_of(' ');
    const std::string shown = line.substr(from, line.find(' ', from) - from);
    EXPECT_GT(shown.size(), 8u) << line;
    EXPECT_NE(uids_[0].rfind(shown, 0) == 0, uids_[1].rfind(shown, 0) == 0) << line;
  }

  auto whole = hq({"incidents"}, "");
  EXPECT_THAT(whole.out, HasSubstr(kLongSummary));
  auto wide = hq({"incidents", "--wide"}, "80");
  for (const auto& uid : uids_) EXPECT_THAT(wide.out, HasSubstr(uid)) << wide.out;
  EXPECT_EQ(hq({"incidents", "--json"}, "80").out, hq({"incidents", "--json"}, "").out);

  auto stores = hq({"stores"}, "40");
  ASSERT_EQ(stores.exit_code, 0) << stores.err;
  EXPECT_LE(widest_line(stores.out), 40u) << stores.out;
  EXPECT_THAT(stores.out, HasSubstr("store-0043")) << stores.out;
}

}  // namespace
}  // namespace storewatch::test
