// HQ commands on the agent (agent/hq_commands.h) against a real SQLite file:
// each op goes through the CLI's path with the actor hq:NAME, is applied once
// per id (also after a restart), is committed with its id, and a refused
// command changes nothing.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/engine.h"
#include "agent/hq_commands.h"
#include "agent/store.h"
#include "tests/fakes/fake_clock.h"
#include "tests/support/support.h"

namespace storewatch::agent {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// Commits every change at once into the store, and remembers it; or,
/// while `hold` is set, keeps changes back until release(), as a busy writer
/// would.
class CommitSink final : public ChangeSink {
 public:
  explicit CommitSink(Store& store) : store_(store) {}
  void submit(Change change) override {
    changes.push_back(change);
    if (hold) {
      held_.push_back(std::move(change));
      return;
    }
    auto r = store_.commit({change});
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  }
  void release() {
    hold = false;
    auto r = store_.commit(held_);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    held_.clear();
  }
  std::vector<Change> changes;
  bool hold = false;

 private:
  Store& store_;
  std::vector<Change> held_;
};

probes::ProbeResult fail() {
  probes::ProbeResult r;
  r.status = probes::ProbeStatus::fail;
  r.latency = 2ms;
  r.message = "connection refused";
  return r;
}

class HqCommandsTest : public ::testing::Test {
 protected:
  HqCommandsTest() {
    config.store.id = "store-1";
    config::ProbeConfig p;
    p.name = "lane-01-pos";
    p.type = "tcp";
    p.fail_after = 3;
    p.recover_after = 2;
    p.timeout = 1s;
    p.severity = config::Severity::high;
    p.labels = {{"kind", "pos"}};
    config.probes.push_back(p);
    auto opened = Store::open(dir / "storewatch.db", Store::Mode::read_write);
    EXPECT_TRUE(opened.ok());
    store.emplace(std::move(*opened));
    commit_sink = std::make_unique<CommitSink>(*store);
    command_sink = std::make_unique<CommandSink>(*commit_sink);
    engine = std::make_unique<Engine>(std::make_shared<const config::Config>(config), clock,
                                      *command_sink);
    restart_commands();
  }

  /// A fresh HqCommands, as after a daemon restart: it knows only what the
  /// database holds.
  void restart_commands() {
    HqCommandHooks hooks;
    hooks.answer = [this](std::string payload) {
      answers.push_back(json::parse(payload, nullptr, false));
    };
    hooks.resync = [this](std::int64_t from) { resyncs.push_back(from); };
    hooks.run_probe = [this](const std::string& probe) {
      runs.push_back(probe);
      return probe == "lane-01-pos";
    };
    // As after a restart: the config as the test has it now.
    commands.reset();
    running = std::make_unique<RunningConfig>(std::make_shared<const config::Config>(config));
    commands = std::make_unique<HqCommands>(*running, clock, *engine, *store, *command_sink, hooks);
  }

  std::string open_incident() {
    for (int i = 0; i < 3; ++i) {
      engine->on_result("lane-01-pos", fail());
      clock.advance(1s);
    }
    EXPECT_EQ(engine->unresolved().size(), 1u);
    return engine->unresolved().begin()->second.uid;
  }

  json send(const json& command) {
    const std::size_t before = answers.size();
    commands->on_command(command.dump());
    EXPECT_EQ(answers.size(), before + 1) << command.dump();
    return answers.size() > before ? answers.back() : json();
  }

  std::vector<StoredEvent> events(const std::string& uid) {
    auto e = store->events_of(uid);
    EXPECT_TRUE(e.ok());
    return e.ok() ? *e : std::vector<StoredEvent>{};
  }

  std::int64_t command_rows() {
    auto s = store->database().prepare("SELECT count(*) FROM commands");
    EXPECT_TRUE(s.ok());
    auto row = s->step();
    EXPECT_TRUE(row.ok());
    return s->int64(0);
  }

  static json cmd(const std::string& id, const std::string& op, json fields = json::object()) {
    json j{{"v", 1}, {"id", id}, {"op", op}, {"by", "alice"}};
    for (auto& [k, v] : fields.items()) j[k] = v;
    return j;
  }

  test::TempDir dir;
  config::Config config;
  test::FakeClock clock;
  std::optional<Store> store;
  std::unique_ptr<CommitSink> commit_sink;
  std::unique_ptr<CommandSink> command_sink;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<RunningConfig> running;
  std::unique_ptr<HqCommands> commands;
  std::vector<json> answers;
  std::vector<std::int64_t> resyncs;
  std::vector<std::string> runs;
};

TEST_F(HqCommandsTest, AckIsAppliedOnceWithTheHqActorAndKeptWithItsId) {
  const std::string uid = open_incident();
  const std::size_t opened_events = events(uid).size();

  json first = send(cmd("c-1", "ack", {{"incident", uid}, {"note", "dispatching"}}));
  EXPECT_EQ(first["v"], 1);
  EXPECT_EQ(first["id"], "c-1");
  EXPECT_EQ(first["ok"], true) << first.dump();
  EXPECT_EQ(first["op"], "ack");
  EXPECT_EQ(first["incident"]["state"], "acknowledged");

  auto after = events(uid);
  ASSERT_EQ(after.size(), opened_events + 1);
  EXPECT_EQ(after.back().type, "acknowledged");
  EXPECT_EQ(after.back().actor, "hq:alice");
  EXPECT_NE(after.back().body.find("dispatching"), std::string::npos);

  // The event and the command's row went to the store as one change: one
  // transaction.
  ASSERT_FALSE(commit_sink->changes.empty());
  const auto* applied = std::get_if<AppliedCommand>(&commit_sink->changes.back());
  ASSERT_NE(applied, nullptr);
  EXPECT_EQ(applied->command.id, "c-1");
  EXPECT_EQ(applied->command.op, "ack");
  ASSERT_EQ(applied->changes.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<IncidentChange>(applied->changes[0]));
  auto row = store->command("c-1");
  ASSERT_TRUE(row.ok());
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ(json::parse((*row)->result), first);

  // Delivered again: the same answer, marked, and nothing applied.
  json again = send(cmd("c-1", "ack", {{"incident", uid}, {"note", "dispatching"}}));
  EXPECT_EQ(again["duplicate"], true);
  again.erase("duplicate");
  EXPECT_EQ(again, first);
  EXPECT_EQ(events(uid).size(), opened_events + 1);

  // After a restart, from the database.
  restart_commands();
  json later = send(cmd("c-1", "ack", {{"incident", uid}}));
  EXPECT_EQ(later["duplicate"], true);
  EXPECT_EQ(later["ok"], true);
  EXPECT_EQ(events(uid).size(), opened_events + 1);
  EXPECT_EQ(commands->stats().duplicates, 1u);
}

TEST_F(HqCommandsTest, AnAnswerWaitsForItsCommit) {
  const std::string uid = open_incident();
  commit_sink->hold = true;
  commands->on_command(cmd("w-1", "ack", {{"incident", uid}}).dump());
  commands->on_command(cmd("w-1", "ack", {{"incident", uid}}).dump());
  commands->on_command(cmd("w-2", "note", {{"incident", uid}, {"note", "n"}}).dump());
  commands->on_commit();
  EXPECT_TRUE(answers.empty()) << "nothing is said before the commit";
  // A malformed command changes nothing: its refusal needs no commit.
  commands->on_command("{broken");
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0]["ok"], false);

  commit_sink->release();
  commands->on_commit();
  ASSERT_EQ(answers.size(), 4u);
  EXPECT_EQ(answers[1]["id"], "w-1");
  EXPECT_EQ(answers[1]["ok"], true);
  EXPECT_EQ(answers[2]["id"], "w-1");
  EXPECT_EQ(answers[2]["duplicate"], true);
  EXPECT_EQ(answers[3]["id"], "w-2");
  EXPECT_EQ(answers[3]["ok"], true);
  std::size_t acks = 0;
  for (const auto& e : events(uid)) acks += e.type == "acknowledged";
  EXPECT_EQ(acks, 1u);
}

TEST_F(HqCommandsTest, ResolveCloseAndNoteGoThroughTheEngine) {
  const std::string uid = open_incident();
  json note = send(cmd("n-1", "note", {{"incident", uid}, {"note", "cable checked"}}));
  EXPECT_EQ(note["ok"], true) << note.dump();
  json resolved = send(cmd("r-1", "resolve", {{"incident", uid}, {"by", "hq:bob"}}));
  EXPECT_EQ(resolved["ok"], true) << resolved.dump();
  EXPECT_EQ(resolved["incident"]["state"], "resolved");
  json closed = send(cmd("x-1", "close", {{"incident", uid}}));
  EXPECT_EQ(closed["ok"], true) << closed.dump();
  EXPECT_EQ(closed["incident"]["state"], "closed");

  auto ev = events(uid);
  ASSERT_GE(ev.size(), 4u);
  EXPECT_EQ(ev[ev.size() - 3].type, "note");
  EXPECT_EQ(ev[ev.size() - 3].actor, "hq:alice");
  EXPECT_EQ(ev[ev.size() - 2].type, "resolved");
  EXPECT_EQ(ev[ev.size() - 2].actor, "hq:bob") << "\"by\":\"hq:bob\" is not doubled";
  EXPECT_EQ(ev.back().type, "closed");

  // A closed incident takes no ack, and the refusal changes nothing.
  const std::size_t n = events(uid).size();
  json ack = send(cmd("a-2", "ack", {{"incident", uid}}));
  EXPECT_EQ(ack["ok"], false);
  EXPECT_NE(ack["error"].get<std::string>().find("closed"), std::string::npos) << ack.dump();
  EXPECT_EQ(events(uid).size(), n);
  auto stored = store->incident(uid);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->state, IncidentState::closed);
}

TEST_F(HqCommandsTest, UnknownIncidentsAndUidPrefixesAreRefusedAndChangeNothing) {
  const std::string uid = open_incident();
  const std::size_t n = events(uid).size();
  for (const std::string& bad : {std::string("no-such-incident"), uid.substr(0, 8)}) {
    json a = send(cmd("u-" + std::to_string(bad.size()), "ack", {{"incident", bad}}));
    EXPECT_EQ(a["ok"], false) << a.dump();
    EXPECT_NE(a["error"].get<std::string>().find("no incident"), std::string::npos) << a.dump();
  }
  EXPECT_EQ(events(uid).size(), n);
  EXPECT_EQ(engine->unresolved().begin()->second.state, IncidentState::open);
}

TEST_F(HqCommandsTest, TheCliRulesHoldForHq) {
  const std::string uid = open_incident();
  const std::size_t n = events(uid).size();
  // A name with a space, a note over 4 KB, an empty note.
  EXPECT_EQ(send(cmd("b-1", "ack", {{"incident", uid}, {"by", "eve smith"}}))["ok"], false);
  EXPECT_EQ(send(cmd("b-2", "ack", {{"incident", uid}, {"by", ""}}))["ok"], false);
  EXPECT_EQ(send(cmd("b-3", "ack", {{"incident", uid}, {"note", std::string(5000, 'n')}}))["ok"],
            false);
  EXPECT_EQ(send(cmd("b-4", "note", {{"incident", uid}, {"note", ""}}))["ok"], false);
  EXPECT_EQ(events(uid).size(), n);
}

TEST_F(HqCommandsTest, SilenceIsValidatedLikeTheClis) {
  json none = send(cmd("s-1", "silence", {{"match", "kiosk-*"}, {"for", "1h"}, {"reason", "r"}}));
  EXPECT_EQ(none["ok"], false);
  EXPECT_NE(none["error"].get<std::string>().find("matches none"), std::string::npos);
  json no_reason =
      send(cmd("s-2", "silence", {{"match", "lane-*"}, {"for", "1h"}, {"reason", ""}}));
  EXPECT_EQ(no_reason["ok"], false);
  json forever =
      send(cmd("s-3", "silence", {{"match", "lane-*"}, {"for", "400d"}, {"reason", "r"}}));
  EXPECT_EQ(forever["ok"], false);
  json zero = send(cmd("s-4", "silence", {{"match", "lane-*"}, {"for", "0s"}, {"reason", "r"}}));
  EXPECT_EQ(zero["ok"], false);
  EXPECT_TRUE(engine->silences().empty());

  json ok =
      send(cmd("s-5", "silence", {{"match", "kind=pos"}, {"for", "2h"}, {"reason", "refit"}}));
  ASSERT_EQ(ok["ok"], true) << ok.dump();
  EXPECT_EQ(ok["silence"]["created_by"], "hq:alice");
  ASSERT_EQ(engine->silences().size(), 1u);
  auto rows = store->silences(clock.wall_now());
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ(rows->front().created_by, "hq:alice");
  EXPECT_EQ(rows->front().ends_at - rows->front().starts_at, 2h);
  // Again: no second silence.
  EXPECT_EQ(send(cmd("s-5", "silence",
                     {{"match", "kind=pos"}, {"for", "2h"}, {"reason", "x"}}))["duplicate"],
            true);
  EXPECT_EQ(engine->silences().size(), 1u);
}

TEST_F(HqCommandsTest, ProbeRunRunsOnlyConfiguredProbesAndAnswersWithTheResult) {
  json unknown = send(cmd("p-1", "probe_run", {{"probe", "/bin/sh"}}));
  EXPECT_EQ(unknown["ok"], false);
  EXPECT_TRUE(runs.empty()) << "nothing ran";

  commands->on_command(cmd("p-2", "probe_run", {{"probe", "lane-01-pos"}}).dump());
  ASSERT_EQ(runs, std::vector<std::string>{"lane-01-pos"});
  const std::size_t answered = answers.size();
  // Delivered again while it runs: still one run, one answer.
  commands->on_command(cmd("p-2", "probe_run", {{"probe", "lane-01-pos"}}).dump());
  EXPECT_EQ(runs.size(), 1u);
  EXPECT_EQ(answers.size(), answered);

  commands->on_probe_result("other", fail());
  EXPECT_EQ(answers.size(), answered);
  commands->on_probe_result("lane-01-pos", fail());
  ASSERT_EQ(answers.size(), answered + 1);
  json r = answers.back();
  EXPECT_EQ(r["id"], "p-2");
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["result"]["name"], "lane-01-pos");
  EXPECT_EQ(r["result"]["status"], "fail");
  EXPECT_EQ(r["result"]["message"], "connection refused");
  EXPECT_EQ(send(cmd("p-2", "probe_run", {{"probe", "lane-01-pos"}}))["duplicate"], true);
  EXPECT_EQ(runs.size(), 1u);
}

TEST_F(HqCommandsTest, ResyncAsksThePublisher) {
  json r = send(cmd("y-1", "resync", {{"from_seq", 17}, {"by", "hq:gap"}}));
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["from_seq"], 17);
  EXPECT_EQ(resyncs, std::vector<std::int64_t>{17});
  EXPECT_EQ(send(cmd("y-1", "resync", {{"from_seq", 17}, {"by", "hq:gap"}}))["duplicate"], true);
  EXPECT_EQ(resyncs.size(), 1u);
}

TEST_F(HqCommandsTest, MalformedCommandsAreAnsweredAndNotKept) {
  const std::string uid = open_incident();
  const std::size_t n = events(uid).size();
  for (const std::string& payload :
       {std::string("not json"), std::string(R"({"v":2,"id":"m-1","op":"ack","by":"a"})"),
        std::string(R"({"v":1,"id":"m-2","op":"reboot","by":"a"})"),
        cmd("m-3", "ack", {{"incident", 5}}).dump(), std::string(70000, '{'),
        std::string(R"({"v":1,"id":"m-4")") + std::string(1, '\0')}) {
    const std::size_t before = answers.size();
    commands->on_command(payload);
    ASSERT_EQ(answers.size(), before + 1);
    EXPECT_EQ(answers.back()["ok"], false);
    EXPECT_TRUE(answers.back()["error"].is_string());
  }
  EXPECT_EQ(answers[1]["id"], "m-1");
  EXPECT_EQ(answers[2]["id"], "m-2");
  EXPECT_EQ(answers[3]["id"], "m-3");
  EXPECT_TRUE(answers[4]["id"].is_null());
  EXPECT_EQ(answers[5]["id"], "m-4");
  EXPECT_EQ(command_rows(), 0);
  EXPECT_EQ(events(uid).size(), n);
  EXPECT_EQ(commands->stats().refused, 6u);
}

TEST_F(HqCommandsTest, OldCommandIdsArePruned) {
  send(cmd("old-1", "resync", {{"from_seq", 1}}));
  clock.advance(48h);
  send(cmd("new-1", "resync", {{"from_seq", 1}}));
  auto pruned = store->prune_commands(clock.wall_now() - 24h, 1000);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 1);
  EXPECT_FALSE(store->command("old-1")->has_value());
  EXPECT_TRUE(store->command("new-1")->has_value());
}

// --- [sync] command_key_file ----------------------------------------------------

const std::string kHqCmdHexKey(64, 'a');  // 32 bytes of 0xaa

std::string hq_cmd_key_bytes() {
  return std::string(32, static_cast<char>(0xaa));
}

TEST_F(HqCommandsTest, WithAKeyOnlyCommandsSignedForThisStoreAreApplied) {
  const auto key_file = dir / "command.key";
  test::write_file(key_file, kHqCmdHexKey + "\n");
  config.sync.command_key_file = key_file;
  restart_commands();
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(clock.wall_now().time_since_epoch()).count();

  // The attack: anyone on the broker silences every probe for a year.
  json forged = cmd("f-1", "silence", {{"match", "*"}, {"for", "366d"}, {"reason", "x"}});
  json answer = send(forged);
  EXPECT_EQ(answer["ok"], false);
  EXPECT_EQ(answer["id"], "f-1");
  EXPECT_NE(answer["error"].get<std::string>().find("only signed commands"), std::string::npos)
      << answer.dump();
  auto silences = store->silences(clock.wall_now());
  ASSERT_TRUE(silences.ok());
  EXPECT_TRUE(silences->empty());
  EXPECT_EQ(command_rows(), 0) << "refused, not kept: nothing was applied";

  // Signed with the key, for another store, or expired: refused alike.
  auto sign = [&](const json& c, const std::string& store_id, std::int64_t exp) {
    auto p = sync::sign_command(hq_cmd_key_bytes(), store_id, c.dump(), exp);
    EXPECT_TRUE(p.ok());
    return p.ok() ? *p : std::string();
  };
  commands->on_command(sign(forged, "store-2", now + 60));
  EXPECT_EQ(answers.back()["ok"], false);
  EXPECT_NE(answers.back()["error"].get<std::string>().find("signature does not match"),
            std::string::npos);
  commands->on_command(sign(forged, "store-1", now - 1));
  EXPECT_EQ(answers.back()["ok"], false);
  EXPECT_NE(answers.back()["error"].get<std::string>().find("expired"), std::string::npos);
  silences = store->silences(clock.wall_now());
  ASSERT_TRUE(silences.ok());
  EXPECT_TRUE(silences->empty());
  EXPECT_EQ(commands->stats().refused, 3u);

  // HQ's: applied, once.
  json legit = cmd("l-1", "silence", {{"match", "kind=pos"}, {"for", "1h"}, {"reason", "refit"}});
  commands->on_command(sign(legit, "store-1", now + 600));
  ASSERT_EQ(answers.back()["ok"], true) << answers.back().dump();
  commands->on_command(sign(legit, "store-1", now + 600));
  EXPECT_EQ(answers.back()["duplicate"], true);
  silences = store->silences(clock.wall_now());
  ASSERT_TRUE(silences.ok());
  EXPECT_EQ(silences->size(), 1u);
}

TEST_F(HqCommandsTest, AKeyFileThatCannotBeReadRefusesEveryCommand) {
  config.sync.command_key_file = dir / "missing.key";
  restart_commands();
  json answer = send(cmd("r-1", "resync", {{"from_seq", 1}}));
  EXPECT_EQ(answer["ok"], false);
  EXPECT_EQ(answer["id"], "r-1");
  EXPECT_NE(answer["error"].get<std::string>().find("command_key_file cannot be used"),
            std::string::npos)
      << answer.dump();
  EXPECT_TRUE(resyncs.empty());

  // Fixed without a restart: read again at the next command.
  test::write_file(dir / "missing.key", kHqCmdHexKey);
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(clock.wall_now().time_since_epoch()).count();
  auto signed_resync = sync::sign_command(hq_cmd_key_bytes(), "store-1",
                                          cmd("r-2", "resync", {{"from_seq", 4}}).dump(), now + 60);
  ASSERT_TRUE(signed_resync.ok());
  commands->on_command(*signed_resync);
  EXPECT_EQ(answers.back()["ok"], true) << answers.back().dump();
  EXPECT_EQ(resyncs, std::vector<std::int64_t>{4});
}

}  // namespace
}  // namespace storewatch::agent
