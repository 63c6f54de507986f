// Notifications through the real daemon (issue 8): a device of the store
// simulator goes down and comes back, and local HTTP receivers stand in for
// Slack, Teams and a webhook — up, down, throttling, or answering 200 with a
// Teams error. Every check reads what the receiver got, or the daemon's
// database through the CLI.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <sstream>

#include "base/clock.h"
#include "sync/notify_payload.h"
#include "tests/support/notify_receiver.h"
#include "tests/support/store_lab.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

/// tests/support/smtp_receiver.py, plain SMTP on `port`; each message it
/// accepts is a line of `dir`/mail.jsonl.
std::unique_ptr<Child> smtp_receiver(const std::filesystem::path& dir, int port) {
  return std::make_unique<Child>(
      std::vector<std::string>{"python3",
                               (std::filesystem::path(STOREWATCH_TEST_SOURCE_DIR) / "tests" /
                                "support" / "smtp_receiver.py")
                                   .string(),
                               "--port", std::to_string(port), "--log",
                               (dir / "mail.jsonl").string()},
      dir / "smtp-logs");
}

class DaemonNotifies : public ::testing::Test {
 protected:
  void SetUp() override {
    port = free_port();
    port2 = free_port();
    lab = std::make_unique<StoreLab>(fmt::format(
        "[[device]]\nname = \"lane-01\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\n"
        "[[device]]\nname = \"lane-02\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\n",
        port, port2));
  }

  /// A secret file holding `text`, as url_file and secret_file name them.
  std::string secret(const std::string& name, const std::string& text) {
    write_file(dir / "secrets" / name, text + "\n");
    return (dir / "secrets" / name).string();
  }

  void start(const std::string& notify) {
    config = dir / "storewatch.toml";
    write_file(config, fmt::format(R"([store]
id = "store-0042"
name = "Springfield"

[agent]
data_dir = "{}"
control_socket = "{}"

[sync]
broker = "tcp://127.0.0.1:{}"

[[probe]]
name = "lane-01"
type = "tcp"
host = "127.0.0.1"
port = {}
interval = "200ms"
timeout = "150ms"
fail_after = 2
recover_after = 2
severity = "high"

[[probe]]
name = "lane-02"
type = "tcp"
host = "127.0.0.1"
port = {}
interval = "200ms"
timeout = "150ms"
fail_after = 2
recover_after = 2
severity = "high"

{})",
                                   (dir / "data").string(), (dir / "control.sock").string(),
                                   free_port(), port, port2, notify));
    auto check = cli({"config", "check"});
    ASSERT_EQ(check.exit_code, 0) << check.out << check.err;
    launch();
  }

  void launch() {
    // No proxy from the test's environment between the daemon and loopback.
    daemon = std::make_unique<Child>(
        storewatch_command({"--config", config.string(), "run"}), dir / "logs",
        std::map<std::string, std::string>{{"no_proxy", "127.0.0.1"}, {"NO_PROXY", "127.0.0.1"}});
    ASSERT_TRUE(wait_until([&] {
      return cli({"status", "--json"}).out.find("\"running\": true") != std::string::npos;
    })) << daemon->err();
  }

  RunResult cli(std::vector<std::string> args) {
    std::vector<std::string> full = {"--config", config.string()};
    full.insert(full.end(), args.begin(), args.end());
    return run(storewatch_command(full), {{"no_proxy", "127.0.0.1"}, {"NO_PROXY", "127.0.0.1"}});
  }

  /// The daemon's `notify` counters (status --json), or an empty object.
  json notify_status() {
    const json s = json::parse(cli({"status", "--json"}).out, nullptr, false);
    return s.is_object() && s.contains("notify") ? s["notify"] : json::object();
  }

  /// What a receiver accepted on `path`: the notices' kinds, from the
  /// webhook's own JSON or Slack's text.
  static std::vector<json> accepted(const NotifyReceiver& r, const std::string& path) {
    std::vector<json> out;
    for (const auto& q : r.requests()) {
      const int s = q.value("status", 0);
      if (q.value("path", "") == path && s >= 200 && s < 300) out.push_back(q);
    }
    return out;
  }

  /// One column of the daemon's notifications table (the real file, read
  /// beside the running daemon), in queue order.
  std::vector<std::string> outbox(const std::string& column) {
    auto r = run({"sqlite3", (dir / "data" / "storewatch.db").string(),
                  "SELECT " + column + " FROM notifications ORDER BY id"});
    std::vector<std::string> out;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  /// The open incidents' probes.
  std::set<std::string> open_probes() {
    std::set<std::string> out;
    auto j = json::parse(cli({"incidents", "--json"}).out, nullptr, false);
    if (!j.is_array()) return out;
    for (const auto& i : j) out.insert(i.value("probe", ""));
    return out;
  }

  json incident() {
    auto r = cli({"incidents", "--all", "--json"});
    auto j = json::parse(r.out, nullptr, false);
    return j.is_array() && !j.empty() ? j[0] : json();
  }

  TempDir dir;
  std::filesystem::path config;
  int port = 0;
  int port2 = 0;
  std::unique_ptr<StoreLab> lab;
  std::unique_ptr<Child> daemon;
};

TEST_F(DaemonNotifies, EachChannelHearsOfTheOpeningAndTheResolutionOnce) {
  NotifyReceiver r;
  start(fmt::format(R"(
[[notify]]
name = "store-ops"
type = "slack"
url_file = "{}"
group_wait = "0s"

[[notify]]
name = "hook"
type = "webhook"
url_file = "{}"
secret_file = "{}"

[[notify]]
name = "critical-only"
type = "slack"
url_file = "{}"
min_severity = "critical"
)",
                    secret("slack", r.url("/slack")), secret("hook", r.url("/hook")),
                    secret("hook-key", "s3cret"), secret("crit", r.url("/crit"))));
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until(
      [&] { return accepted(r, "/slack").size() == 1 && accepted(r, "/hook").size() == 1; }, 30s))
      << daemon->err();
  lab->fault("lane-01", "none");
  ASSERT_TRUE(wait_until(
      [&] { return accepted(r, "/slack").size() == 2 && accepted(r, "/hook").size() == 2; }, 30s))
      << daemon->err();
  ASSERT_EQ(incident().value("state", ""), "resolved");

  // Slack: the text names store, probe, severity and state.
  const auto slack = accepted(r, "/slack");
  const json opened = json::parse(slack[0]["body"].get<std::string>());
  const std::string text = opened["text"];
  EXPECT_NE(text.find("Springfield"), std::string::npos) << text;
  EXPECT_NE(text.find("lane-01 is down"), std::string::npos) << text;
  EXPECT_NE(text.find("high"), std::string::npos) << text;
  EXPECT_TRUE(opened["blocks"].is_array());
  const std::string resolved = json::parse(slack[1]["body"].get<std::string>())["text"];
  EXPECT_NE(resolved.find("lane-01 resolved"), std::string::npos) << resolved;

  // The webhook: the incident and event, signed with the key.
  const auto hook = accepted(r, "/hook");
  std::vector<std::string> kinds;
  for (const auto& q : hook) {
    const std::string body = q["body"];
    EXPECT_EQ(q["headers"].value("x-storewatch-signature", ""),
              "sha256=" + sync::hmac_sha256_hex("s3cret", body));
    const json b = json::parse(body);
    kinds.push_back(b["kind"]);
    EXPECT_EQ(b["incident"]["uid"], incident()["uid"]);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"opened", "resolved"}));
  // Below min_severity: nothing, and nothing queued for it either.
  EXPECT_TRUE(r.requests().size() == 4u) << r.requests().size();
  const json st = notify_status();
  EXPECT_EQ(st.value("sent", -1), 4) << st.dump();
  // No secret in the daemon's log.
  EXPECT_EQ(daemon->err().find("/slack"), std::string::npos);
  EXPECT_EQ(daemon->err().find("s3cret"), std::string::npos);
}

TEST_F(DaemonNotifies, AChannelThatWasDownGetsTheNoticeWhenItComesBack) {
  NotifyReceiver r(/*start_now=*/false);
  start(fmt::format("[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl_file = \"{}\"\n",
                    secret("hook", r.url("/hook"))));
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until([&] { return notify_status().value("failed_attempts", 0) >= 1; }, 30s))
      << daemon->err();
  EXPECT_TRUE(r.requests().empty());
  EXPECT_NE(notify_status().value("last_error", "").find("hook:"), std::string::npos);
  r.start();
  ASSERT_TRUE(wait_until([&] { return accepted(r, "/hook").size() == 1; }, 30s)) << daemon->err();
  EXPECT_EQ(json::parse(accepted(r, "/hook")[0]["body"].get<std::string>())["kind"], "opened");
  lab->fault("lane-01", "none");
  ASSERT_TRUE(wait_until([&] { return accepted(r, "/hook").size() == 2; }, 30s)) << daemon->err();
}

TEST_F(DaemonNotifies, QueuedNoticesSurviveARestart) {
  NotifyReceiver r(/*start_now=*/false);
  start(fmt::format("[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl_file = \"{}\"\n",
                    secret("hook", r.url("/hook"))));
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until([&] { return notify_status().value("failed_attempts", 0) >= 1; }, 30s))
      << daemon->err();
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->err();
  // The notice waits in the database; the channel comes back while the daemon is down.
  r.start();
  launch();
  ASSERT_TRUE(wait_until([&] { return accepted(r, "/hook").size() == 1; }, 30s)) << daemon->err();
  const json n = json::parse(accepted(r, "/hook")[0]["body"].get<std::string>());
  EXPECT_EQ(n["kind"], "opened");
  EXPECT_EQ(n["incident"]["uid"], incident()["uid"]);
  EXPECT_EQ(r.requests().size(), 1u);
}

TEST_F(DaemonNotifies, IncidentsOpenedWithinGroupWaitGoOutAsOneMessage) {
  NotifyReceiver r;
  start(fmt::format(R"(
[[notify]]
name = "ops"
type = "slack"
url_file = "{}"
group_wait = "3s"

[[notify]]
name = "hook"
type = "webhook"
url_file = "{}"
)",
                    secret("slack", r.url("/slack")), secret("hook", r.url("/hook"))));
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until([&] { return open_probes().contains("lane-01"); }, 20s)) << daemon->err();
  // When the engine opened it (t_detect), not when this test saw it: under
  // a sanitizer on a busy machine the CLI takes a second to answer.
  double first_open = 0;
  for (const auto& i : json::parse(cli({"incidents", "--json"}).out)) {
    if (i.value("probe", "") != "lane-01") continue;
    auto t = parse_rfc3339(i["t_detect"].get<std::string>());
    ASSERT_TRUE(t) << i.dump();
    first_open = std::chrono::duration<double>(t->time_since_epoch()).count();
  }
  ASSERT_GT(first_open, 0);
  lab->fault("lane-02", "down");
  ASSERT_TRUE(wait_until([&] { return open_probes().size() == 2; }, 20s)) << daemon->err();
  // The webhook does not group: one POST per notice, at once.
  ASSERT_TRUE(wait_until([&] { return accepted(r, "/hook").size() == 2; }, 20s)) << daemon->err();
  // Slack: one message for both, group_wait after the first opening.
  ASSERT_TRUE(wait_until([&] { return !accepted(r, "/slack").empty(); }, 20s)) << daemon->err();
  auto slack = accepted(r, "/slack");
  ASSERT_EQ(slack.size(), 1u);
  EXPECT_GE(slack[0]["at"].get<double>() - first_open, 2.0);
  const json opened = json::parse(slack[0]["body"].get<std::string>());
  const std::string text = opened["text"];
  EXPECT_NE(text.find("2 incidents: lane-01 is down, lane-02 is down"), std::string::npos) << text;
  EXPECT_EQ(opened["blocks"].size(), 5u) << opened.dump();
  EXPECT_TRUE(
      wait_until([&] { return outbox("state") == std::vector<std::string>(4, "sent"); }, 10s));

  // Both recover together: their resolutions are one message too.
  lab->fault("lane-01", "none");
  lab->fault("lane-02", "none");
  ASSERT_TRUE(wait_until([&] { return accepted(r, "/slack").size() == 2; }, 30s)) << daemon->err();
  const std::string resolved =
      json::parse(accepted(r, "/slack")[1]["body"].get<std::string>())["text"];
  EXPECT_NE(resolved.find("2 incidents: lane-0"), std::string::npos) << resolved;
  EXPECT_NE(resolved.find("lane-01 resolved"), std::string::npos) << resolved;
  EXPECT_NE(resolved.find("lane-02 resolved"), std::string::npos) << resolved;
  ASSERT_TRUE(wait_until([&] { return accepted(r, "/hook").size() == 4; }, 20s));
  const json st = notify_status();
  EXPECT_EQ(st.value("sent", -1), 8) << st.dump();  // notices, in 2 + 4 messages
  EXPECT_EQ(accepted(r, "/slack").size(), 2u);
}

TEST_F(DaemonNotifies, AGroupIsFormedFromTheOutboxAfterARestart) {
  NotifyReceiver r;
  start(
      fmt::format("[[notify]]\nname = \"ops\"\ntype = \"teams\"\nurl_file = \"{}\"\n"
                  "group_wait = \"5s\"\n",
                  secret("teams", r.url("/teams"))));
  lab->fault("lane-01", "down");
  lab->fault("lane-02", "down");
  ASSERT_TRUE(wait_until([&] { return outbox("kind").size() == 2; }, 20s)) << daemon->err();
  // Stopped while the group waits: nothing was sent, both notices wait in the file.
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->err();
  EXPECT_TRUE(r.requests().empty());
  EXPECT_EQ(outbox("state"), (std::vector<std::string>{"queued", "queued"}));
  launch();
  ASSERT_TRUE(wait_until([&] { return !r.requests().empty(); }, 20s)) << daemon->err();
  ASSERT_TRUE(
      wait_until([&] { return outbox("state") == std::vector<std::string>(2, "sent"); }, 10s))
      << daemon->err();
  ASSERT_EQ(r.requests().size(), 1u);
  const json card = json::parse(r.requests()[0]["body"].get<std::string>());
  const json& body = card["attachments"][0]["content"]["body"];
  ASSERT_EQ(body.size(), 3u) << card.dump();  // a title and a container per incident
  std::set<std::string> titles;
  for (int i = 1; i < 3; ++i) titles.insert(body[i]["items"][0]["text"].get<std::string>());
  EXPECT_EQ(titles, (std::set<std::string>{"lane-01 is down", "lane-02 is down"}));
}

TEST_F(DaemonNotifies, RateLimitHoldsNoticesBackAcrossRestartsAndNeverDropsThem) {
  NotifyReceiver r;
  const auto channel = [&](int limit) {
    return fmt::format(
        "[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl_file = \"{}\"\n"
        "rate_limit = {}\n",
        secret("hook", r.url("/hook")), limit);
  };
  start(channel(1));
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until([&] { return accepted(r, "/hook").size() == 1; }, 20s)) << daemon->err();
  lab->fault("lane-02", "down");
  ASSERT_TRUE(wait_until([&] { return outbox("state").size() == 2; }, 20s)) << daemon->err();
  // The hour's one message is spent: the second notice waits (bounded look).
  EXPECT_FALSE(wait_until([&] { return r.requests().size() > 1; }, 3s));
  EXPECT_EQ(outbox("state"), (std::vector<std::string>{"sent", "queued"}));
  // A restart does not reset the window: it is read back from the outbox.
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->err();
  launch();
  EXPECT_FALSE(wait_until([&] { return r.requests().size() > 1; }, 3s));
  EXPECT_EQ(outbox("state"), (std::vector<std::string>{"sent", "queued"}));
  // Held, not dropped: with room in the window it goes out.
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->err();
  write_file(dir / "storewatch.toml",
             std::regex_replace(read_file(dir / "storewatch.toml"), std::regex("rate_limit = 1"),
                                "rate_limit = 2"));
  launch();
  ASSERT_TRUE(wait_until([&] { return accepted(r, "/hook").size() == 2; }, 20s)) << daemon->err();
  const json second = json::parse(accepted(r, "/hook")[1]["body"].get<std::string>());
  EXPECT_EQ(second["incident"]["probe"], "lane-02");
  EXPECT_EQ(notify_status().value("dropped", -1), 0);
}

TEST_F(DaemonNotifies, AnIncidentAndItsResolutionReachEmailWithTheirTimeline) {
  const int smtp_port = free_port();
  auto smtp = smtp_receiver(dir.path(), smtp_port);
  ASSERT_TRUE(wait_until([&] { return port_open(smtp_port); }, 10s)) << smtp->err();
  start(fmt::format(R"(
[[notify]]
name = "mail"
type = "email"
smtp_url = "smtp://127.0.0.1:{}"
starttls = "off"
from = "storewatch@store-0042.example.com"
to = ["manager@example.com"]
group_wait = "0s"
)",
                    smtp_port));
  auto mails = [&] {
    std::vector<std::string> out;
    std::ifstream in(dir / "mail.jsonl");
    for (std::string line; std::getline(in, line);) {
      const json j = json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("data")) out.push_back(j["data"]);
    }
    return out;
  };
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until([&] { return mails().size() == 1; }, 30s)) << daemon->err();
  lab->fault("lane-01", "none");
  ASSERT_TRUE(wait_until([&] { return mails().size() == 2; }, 30s)) << daemon->err();
  const auto m = mails();
  const std::string uid = incident().value("uid", "");
  // The subject names the store, the probe and what happened; the body has
  // the incident's facts and its timeline.
  EXPECT_NE(m[0].find("Subject: [Springfield (store-0042)] lane-01 is down: high"),
            std::string::npos)
      << m[0];
  EXPECT_NE(m[0].find(uid), std::string::npos) << m[0];
  EXPECT_NE(m[0].find("Timeline:\r\n"), std::string::npos) << m[0];
  EXPECT_NE(m[0].find("  detected\r\n"), std::string::npos) << m[0];
  EXPECT_EQ(m[0].find("  resolved\r\n"), std::string::npos) << m[0];
  EXPECT_NE(m[1].find("Subject: [Springfield (store-0042)] lane-01 resolved: high"),
            std::string::npos)
      << m[1];
  EXPECT_NE(m[1].find("  restored\r\n"), std::string::npos) << m[1];
  EXPECT_NE(m[1].find("  resolved\r\n"), std::string::npos) << m[1];
  EXPECT_NE(m[1].find("Event: resolved at "), std::string::npos) << m[1];
  EXPECT_EQ(notify_status().value("sent", -1), 2);
}

TEST_F(DaemonNotifies, AReceiverSlowerThanTheTimeoutIsAFailedAttemptAndRetried) {
  NotifyReceiver r;
  r.answer(200, "ok", std::nullopt, /*delay_ms=*/4000);
  start(
      fmt::format("[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl_file = \"{}\"\ntimeout = "
                  "\"1s\"\n",
                  secret("hook", r.url("/hook"))));
  lab->fault("lane-01", "down");
  // The attempt gives up after its timeout, whatever the receiver does later.
  ASSERT_TRUE(wait_until([&] { return notify_status().value("failed_attempts", 0) >= 1; }, 30s))
      << daemon->err();
  const json failed = notify_status();
  EXPECT_EQ(failed.value("sent", -1), 0) << failed.dump();
  EXPECT_NE(failed.value("last_error", "").find("hook: "), std::string::npos) << failed.dump();
  EXPECT_NE(failed.value("last_error", "").find("timed out"), std::string::npos) << failed.dump();
  // Quick again: the retry (5 s backoff) delivers it.
  r.answer(200, "ok");
  ASSERT_TRUE(wait_until([&] { return notify_status().value("sent", 0) == 1; }, 30s))
      << daemon->err();
  const auto q = r.requests();
  ASSERT_GE(q.size(), 2u);
  EXPECT_EQ(q.front()["body"], q.back()["body"]);
  EXPECT_EQ(json::parse(q.back()["body"].get<std::string>())["kind"], "opened");
}

// Issue 18: an answer whose body never ends was read until the channel's
// timeout (a core busy the while), and the notice then counted as failed.
TEST_F(DaemonNotifies, AnEndlessAnswerIsCutShortAndItsStatusDecides) {
  NotifyReceiver r;
  r.answer_endlessly(200);
  start(
      fmt::format("[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl_file = \"{}\"\ntimeout = "
                  "\"20s\"\n",
                  secret("hook", r.url("/hook"))));
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until([&] { return r.requests().size() >= 1; }, 30s)) << daemon->err();
  const auto asked = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return notify_status().value("sent", 0) == 1; }, 30s))
      << notify_status().dump() << daemon->err();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 10s) << "read until the timeout";
  EXPECT_EQ(notify_status().value("failed_attempts", -1), 0) << notify_status().dump();
  EXPECT_EQ(r.requests().size(), 1u);
}

TEST_F(DaemonNotifies, TeamsErrorBodiesAndThrottlingAreRetried) {
  NotifyReceiver r;
  r.answer(200,
           "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP "
           "error 429 with ContextId tcid=0");
  start(
      fmt::format("[[notify]]\nname = \"it\"\ntype = \"teams\"\nurl_file = \"{}\"\n"
                  "group_wait = \"0s\"\n",
                  secret("teams", r.url("/teams"))));
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until([&] { return r.requests().size() >= 1; }, 30s)) << daemon->err();
  r.answer(429, "slow down", "7");
  ASSERT_TRUE(wait_until([&] { return r.requests().size() >= 2; }, 30s)) << daemon->err();
  r.answer(202, "");
  ASSERT_TRUE(wait_until([&] { return r.requests().size() >= 3; }, 30s)) << daemon->err();
  const auto q = r.requests();
  ASSERT_EQ(q.size(), 3u);
  // Each attempt carries the same Adaptive Card.
  const json card = json::parse(q[2]["body"].get<std::string>());
  EXPECT_EQ(card["attachments"][0]["content"]["version"], "1.2");
  EXPECT_EQ(q[0]["body"], q[2]["body"]);
  // After the second failure the wait is the longer of the backoff (10 s) and
  // the 429's Retry-After (7 s).
  const double gap = q[2]["at"].get<double>() - q[1]["at"].get<double>();
  EXPECT_GE(gap, 9.5);
  const json st = notify_status();
  EXPECT_EQ(st.value("sent", -1), 1) << st.dump();
  EXPECT_EQ(st.value("failed_attempts", -1), 2) << st.dump();
}

TEST_F(DaemonNotifies, RetryAfterLongerThanTheBackoffIsHonoured) {
  NotifyReceiver r;
  r.answer(429, "rate_limited", "8");
  start(
      fmt::format("[[notify]]\nname = \"ops\"\ntype = \"slack\"\nurl_file = \"{}\"\n"
                  "group_wait = \"0s\"\n",
                  secret("slack", r.url("/slack"))));
  lab->fault("lane-01", "down");
  ASSERT_TRUE(wait_until([&] { return r.requests().size() >= 1; }, 30s)) << daemon->err();
  r.answer(200, "ok");
  ASSERT_TRUE(wait_until([&] { return r.requests().size() >= 2; }, 30s)) << daemon->err();
  const auto q = r.requests();
  const double gap = q[1]["at"].get<double>() - q[0]["at"].get<double>();
  EXPECT_GE(gap, 7.5);  // the first backoff alone is 5 s
  EXPECT_LT(gap, 20.0);
}

TEST_F(DaemonNotifies, ANoticeUndeliveredPastNotifyTtlIsDroppedWithAnEvent) {
  NotifyReceiver r(/*start_now=*/false);
  start(fmt::format(
      "[[notify]]\nname = \"hook\"\ntype = \"webhook\"\nurl_file = \"{}\"\nnotify_ttl = \"1s\"\n",
      secret("hook", r.url("/secret-path-XYZ"))));
  lab->fault("lane-01", "down");
  json note;
  ASSERT_TRUE(wait_until(
      [&] {
        const json inc = incident();
        if (!inc.is_object()) return false;
        auto show =
            json::parse(cli({"incident", "show", inc["uid"], "--json"}).out, nullptr, false);
        if (!show.is_object()) return false;
        for (const auto& e : show["events"]) {
          if (e.value("type", "") == "note" && e.value("actor", "") == "agent") note = e;
        }
        return note.is_object();
      },
      40s))
      << daemon->err();
  const std::string text = note.dump();
  EXPECT_NE(text.find("opened notice to channel hook dropped"), std::string::npos) << text;
  EXPECT_NE(text.find("notify_ttl"), std::string::npos) << text;
  EXPECT_EQ(text.find("secret-path-XYZ"), std::string::npos) << text;
  EXPECT_EQ(notify_status().value("dropped", -1), 1);
  EXPECT_EQ(daemon->err().find("secret-path-XYZ"), std::string::npos);
}

TEST_F(DaemonNotifies, NotifyTestSendsOneNoticeAndSaysWhatHappened) {
  NotifyReceiver r;
  config = dir / "storewatch.toml";
  write_file(config, fmt::format(R"([store]
id = "store-0042"
[agent]
data_dir = "{}"
[[notify]]
name = "hook"
type = "webhook"
url_file = "{}"
)",
                                 (dir / "data").string(), secret("hook", r.url("/secret-XYZ"))));
  auto ok = cli({"notify", "test", "hook"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("sent a test notice to hook (webhook): HTTP 200"), std::string::npos)
      << ok.out;
  ASSERT_EQ(r.requests().size(), 1u);
  EXPECT_EQ(json::parse(r.requests()[0]["body"].get<std::string>())["kind"], "test");

  r.answer(500, "boom");
  auto bad = cli({"notify", "test", "hook", "--json"});
  EXPECT_EQ(bad.exit_code, 1);
  const json j = json::parse(bad.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << bad.out;
  EXPECT_FALSE(j["sent"]);
  EXPECT_EQ(j["detail"], "HTTP 500: boom");

  r.stop();
  auto down = cli({"notify", "test", "hook"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.out.find("FAILED"), std::string::npos) << down.out;
  EXPECT_EQ(down.out.find("secret-XYZ"), std::string::npos) << down.out;

  auto unknown = cli({"notify", "test", "nope"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("known: hook"), std::string::npos) << unknown.err;
}

}  // namespace
}  // namespace storewatch::test

namespace storewatch::test {
namespace {

TEST(NotifyEmail, NotifyTestSendsAMailOverSmtp) {
  TempDir dir;
  const int smtp_port = free_port();
  auto smtp = smtp_receiver(dir.path(), smtp_port);
  ASSERT_TRUE(wait_until([&] { return port_open(smtp_port); }, 10s)) << smtp->err();
  const auto config = dir / "storewatch.toml";
  write_file(config, fmt::format(R"([store]
id = "store-0042"
name = "Springfield"
[agent]
data_dir = "{}"
[[notify]]
name = "mail"
type = "email"
smtp_url = "smtp://127.0.0.1:{}"
starttls = "off"
from = "storewatch@store-0042.example.com"
to = ["manager@example.com", "it@example.com"]
)",
                                 (dir / "data").string(), smtp_port));
  auto r = run(storewatch_command({"--config", config.string(), "notify", "test", "mail"}));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("SMTP 250"), std::string::npos) << r.out;
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(dir / "mail.jsonl"); }, 5s));
  const json mail = json::parse(read_file(dir / "mail.jsonl"));
  EXPECT_EQ(mail["from"], "<storewatch@store-0042.example.com>");
  EXPECT_EQ(mail["to"], json::array({"<manager@example.com>", "<it@example.com>"}));
  const std::string data = mail["data"];
  for (const char* header : {"Date: ", "Message-ID: <", "From: storewatch@store-0042.example.com",
                             "To: manager@example.com, it@example.com",
                             "Subject: [Springfield (store-0042)] storewatch test notice"}) {
    EXPECT_NE(data.find(header), std::string::npos) << header << " in\n" << data;
  }
}

}  // namespace
}  // namespace storewatch::test
