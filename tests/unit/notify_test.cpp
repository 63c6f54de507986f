// Notifications (issue 8): the [[notify]] section, the rules that decide
// which channels a change notifies, the outbox rows in the store, the
// payloads each channel sends and how their answers are read.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/notices.h"
#include "agent/store.h"
#include "config/config.h"
#include "probes/registry.h"
#include "sync/notifier.h"
#include "sync/notify_payload.h"
#include "tests/support/support.h"

namespace storewatch {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

config::Loaded<config::Config> load(const std::string& body) {
  return config::load_string(
      fmt::format("[store]\nid = \"store-0042\"\nname = \"Springfield\"\n"
                  "[[probe]]\nname = \"lane-01\"\ntype = \"tcp\"\nhost = \"10.0.0.1\"\nport = 1\n"
                  "labels = {{ kind = \"pos\" }}\n"
                  "[[probe]]\nname = \"printer-01\"\ntype = \"tcp\"\nhost = \"10.0.0.2\"\n"
                  "port = 9100\n{}",
                  body),
      "test.toml", probes::schemas());
}

std::string errors(const config::Loaded<config::Config>& l) {
  std::string out;
  for (const auto& d : l.diagnostics) {
    if (d.kind == config::Diagnostic::Kind::error) out += to_string(d) + "\n";
  }
  return out;
}

// --- config -------------------------------------------------------------------

TEST(NotifyConfig, ReadsEveryKeyOfEachChannelType) {
  auto l = load(R"(
[[notify]]
name = "store-ops"
type = "slack"
url_file = "/etc/storewatch/secrets/slack"
min_severity = "high"
match = ["lane-*", "kind=pos"]
on = ["opened", "resolved"]
group_wait = "0s"
rate_limit = 20
proxy = "http://proxy.example:3128"
notify_ttl = "2h"
timeout = "5s"

[[notify]]
name = "hook"
type = "webhook"
url_file = "/etc/storewatch/secrets/hook"
secret_file = "/etc/storewatch/secrets/hook-key"

[[notify]]
name = "mail"
type = "email"
smtp_url = "smtp://mail.example.com:587"
starttls = "optional"
from = "storewatch@example.com"
to = ["a@example.com", "b@example.com"]
username = "sw"
password_file = "/etc/storewatch/secrets/smtp"
)");
  ASSERT_TRUE(l.ok()) << errors(l);
  const auto& n = l.config->notify;
  ASSERT_EQ(n.size(), 3u);
  EXPECT_EQ(n[0].type, config::NotifyType::slack);
  EXPECT_EQ(n[0].min_severity, config::Severity::high);
  EXPECT_EQ(n[0].match.size(), 2u);
  EXPECT_EQ(n[0].on, static_cast<unsigned>(config::NotifyOn::opened) |
                         static_cast<unsigned>(config::NotifyOn::resolved));
  EXPECT_EQ(n[0].rate_limit, 20);
  EXPECT_EQ(n[0].notify_ttl, 2h);
  EXPECT_EQ(n[0].proxy, "http://proxy.example:3128");
  EXPECT_EQ(n[1].secret_file, "/etc/storewatch/secrets/hook-key");
  EXPECT_EQ(n[1].on, config::kDefaultNotifyOn);
  EXPECT_EQ(n[1].notify_ttl, 24h);
  EXPECT_EQ(n[2].to.size(), 2u);
  EXPECT_EQ(n[2].starttls, "optional");
  EXPECT_EQ(n[2].timeout, 10s);  // unset: the default
  EXPECT_EQ(l.config->find_notify("mail"), &n[2]);
  // group_wait: 30 s unless set; a webhook never groups.
  EXPECT_EQ(n[0].group_wait, 0s);
  EXPECT_EQ(n[1].group_wait, 0s);
  EXPECT_EQ(n[2].group_wait, 30s);
}

TEST(NotifyConfig, EmailDefaultsToStarttlsRequired) {
  auto l = load(R"(
[[notify]]
name = "mail"
type = "email"
smtp_url = "smtp://mail.example.com:587"
from = "storewatch@example.com"
to = ["a@example.com"]
)");
  ASSERT_TRUE(l.ok()) << errors(l);
  EXPECT_EQ(l.config->notify[0].starttls, "required");
  EXPECT_EQ(l.config->notify[0].timeout, 10s);
  EXPECT_EQ(l.config->notify[0].group_wait, 30s);
}

TEST(NotifyConfig, GroupWaitDefaultsTo30sAndWebhooksDoNotGroup) {
  auto l = load(R"(
[[notify]]
name = "ops"
type = "teams"
url_file = "/x"
ca_file = "/etc/ssl/private-ca.pem"

[[notify]]
name = "quick"
type = "slack"
url_file = "/x"
group_wait = "2m"
)");
  ASSERT_TRUE(l.ok()) << errors(l);
  EXPECT_EQ(l.config->notify[0].group_wait, 30s);
  EXPECT_EQ(l.config->notify[0].ca_file, "/etc/ssl/private-ca.pem");
  EXPECT_EQ(l.config->notify[1].group_wait, 2min);
  auto bad = load(R"(
[[notify]]
name = "hook"
type = "webhook"
url_file = "/x"
group_wait = "10s"

[[notify]]
name = "slow"
type = "slack"
url_file = "/x"
group_wait = "11m"
)");
  ASSERT_FALSE(bad.ok());
  const std::string e = errors(bad);
  EXPECT_NE(e.find("group_wait: webhook channels do not group"), std::string::npos) << e;
  EXPECT_NE(e.find("must be at most 10m"), std::string::npos) << e;
}

TEST(NotifyConfig, ReportsMistakesWithTheirPlace) {
  auto l = load(R"(
[[notify]]
name = "a"
type = "slack"
smtp_url = "smtp://x"
on = ["opened", "exploded"]
min_severity = "urgent"

[[notify]]
name = "a"
type = "email"
from = "not an address"
to = []

[[notify]]
name = "c"
type = "pager"
)");
  ASSERT_FALSE(l.ok());
  const std::string e = errors(l);
  EXPECT_NE(e.find("[[notify]] \"a\": missing required key \"url_file\""), std::string::npos) << e;
  EXPECT_NE(e.find("smtp_url: is for email channels"), std::string::npos) << e;
  EXPECT_NE(e.find("\"exploded\" is not a transition"), std::string::npos) << e;
  EXPECT_NE(e.find("\"urgent\" is not a severity"), std::string::npos) << e;
  EXPECT_NE(e.find("duplicate channel name"), std::string::npos) << e;
  EXPECT_NE(e.find("\"not an address\" is not a mail address"), std::string::npos) << e;
  EXPECT_NE(e.find("at least one recipient"), std::string::npos) << e;
  EXPECT_NE(e.find("smtp_url"), std::string::npos) << e;
  EXPECT_NE(e.find("test.toml:31:"), std::string::npos) << e;  // the bad type, with its line
}

// --- rules --------------------------------------------------------------------

Incident incident(config::Severity severity, const std::string& probe = "lane-01") {
  Incident i;
  i.uid = "0193-inc";
  i.probe = probe;
  i.dedup_key = "store-0042:" + probe + ":down";
  i.condition = "down";
  i.severity = severity;
  i.priority = "P2";
  i.t_fault = WallTime(1'764'195'483'000ms);
  i.t_detect = WallTime(1'764'195'490'000ms);
  i.summary = probe + " is down: connection refused";
  return i;
}

IncidentEvent event(const std::string& type, json extra = json::object()) {
  return IncidentEvent{"0193-ev", type, WallTime(1'764'195'490'000ms), "agent", std::move(extra)};
}

config::Config rules_config() {
  auto l = load(R"(
[[notify]]
name = "all"
type = "webhook"
url_file = "/x"

[[notify]]
name = "critical-only"
type = "slack"
url_file = "/x"
min_severity = "critical"

[[notify]]
name = "printers"
type = "teams"
url_file = "/x"
match = "printer-*"
on = ["opened", "acknowledged"]
)");
  EXPECT_TRUE(l.ok()) << errors(l);
  return *l.config;
}

std::vector<std::string> channels(const std::vector<sync::NoticeRow>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.channel + ":" + r.kind);
  return out;
}

using V = std::vector<std::string>;

TEST(NotifyRules, SeverityMatchAndTransitionsPickTheChannels) {
  const config::Config cfg = rules_config();
  const auto high = incident(config::Severity::high);
  EXPECT_EQ(channels(agent::notices_for(cfg, high, event("opened"), false)), V{"all:opened"});
  const auto crit = incident(config::Severity::critical);
  EXPECT_EQ(channels(agent::notices_for(cfg, crit, event("reopened"), false)),
            (V{"all:opened", "critical-only:opened"}));
  const auto printer = incident(config::Severity::low, "printer-01");
  EXPECT_EQ(channels(agent::notices_for(cfg, printer, event("opened"), false)),
            (V{"all:opened", "printers:opened"}));
  EXPECT_EQ(channels(agent::notices_for(cfg, printer, event("acknowledged"), false)),
            V{"printers:acknowledged"});
  EXPECT_EQ(channels(agent::notices_for(cfg, printer, event("escalated"), false)),
            V{"all:escalated"});
  // Not transitions anyone is told about.
  for (const char* t : {"remediation_started", "note", "updated", "closed", "suppressed"}) {
    EXPECT_TRUE(agent::notices_for(cfg, high, event(t), false).empty()) << t;
  }
}

TEST(NotifyRules, NothingForSuppressedMaintenanceOrSilencedButResolutionsPass) {
  const config::Config cfg = rules_config();
  auto child = incident(config::Severity::high);
  child.suppressed_by = "0193-root";
  EXPECT_TRUE(agent::notices_for(cfg, child, event("opened"), false).empty());
  auto maint = incident(config::Severity::high);
  maint.in_maintenance = true;
  EXPECT_TRUE(agent::notices_for(cfg, maint, event("opened"), false).empty());
  const auto high = incident(config::Severity::high);
  EXPECT_TRUE(agent::notices_for(cfg, high, event("escalated"), /*silenced=*/true).empty());
  // A resolution goes out, but only where the opening was told (the store checks).
  auto rows = agent::notices_for(cfg, high, event("resolved"), true);
  ASSERT_EQ(channels(rows), V{"all:resolved"});
  EXPECT_TRUE(rows[0].only_if_opening_notified);
  // A maintenance that ends on a probe still failing is an opening.
  EXPECT_EQ(
      channels(agent::notices_for(
          cfg, high, event("updated", {{"reason", "maintenance ended; still failing"}}), false)),
      V{"all:opened"});
}

TEST(NotifyRules, AFlappingIncidentIsToldOnceByFlappingStarted) {
  const config::Config cfg = rules_config();
  auto inc = incident(config::Severity::critical);
  inc.flapping = true;
  EXPECT_TRUE(agent::notices_for(cfg, inc, event("opened"), false).empty());
  EXPECT_EQ(channels(agent::notices_for(cfg, inc, event("flapping_started"), false)),
            (V{"all:flapping_started", "critical-only:flapping_started"}));
  EXPECT_TRUE(agent::notices_for(cfg, inc, event("flapping_stopped"), false).empty());
}

TEST(NotifyRules, TheBodyCarriesStoreIncidentAndEvent) {
  const config::Config cfg = rules_config();
  auto rows = agent::notices_for(cfg, incident(config::Severity::high), event("opened"), false);
  ASSERT_EQ(rows.size(), 1u);
  const json b = json::parse(rows[0].body);
  EXPECT_EQ(b["kind"], "opened");
  EXPECT_EQ(b["store"]["id"], "store-0042");
  EXPECT_EQ(b["incident"]["probe"], "lane-01");
  EXPECT_EQ(b["incident"]["severity"], "high");
  EXPECT_EQ(b["event"]["type"], "opened");
}

// --- the outbox in the store ---------------------------------------------------

TEST(NotifyOutbox, NoticesCommitWithTheirEventAndResolutionsNeedAnOpening) {
  test::TempDir dir;
  auto store = agent::Store::open(dir / "storewatch.db", agent::Store::Mode::read_write);
  ASSERT_TRUE(store) << store.error().message;
  const config::Config cfg = rules_config();
  auto inc = incident(config::Severity::critical);
  auto opened = event("opened");
  agent::IncidentChange c{inc, opened, agent::notices_for(cfg, inc, opened, false)};
  const std::int64_t queued_at = sync::wall_ms();
  ASSERT_TRUE(store->commit({c}));
  // The webhook's notice is due at once; the Slack channel's waits its group_wait (30 s).
  auto due = store->due_notices(sync::wall_ms() + 1000, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].channel, "all");
  auto slack = store->queued_notices("critical-only", 10);
  ASSERT_TRUE(slack);
  ASSERT_EQ(slack->size(), 1u);
  EXPECT_GE((*slack)[0].next_try_ms, queued_at + 30'000);
  EXPECT_LE((*slack)[0].next_try_ms, (*slack)[0].created_ms + 30'000);
  due = store->due_notices(sync::wall_ms() + 31'000, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].channel, "all");
  EXPECT_EQ((*due)[0].incident_uid, inc.uid);
  EXPECT_EQ((*due)[0].event_uid, opened.uid);

  // A resolution is queued for channels that heard of the opening only.
  auto other = incident(config::Severity::critical);
  other.uid = "0193-other";
  auto resolved = event("resolved");
  resolved.uid = "0193-ev2";
  inc.state = IncidentState::resolved;
  other.state = IncidentState::resolved;
  agent::IncidentChange r1{inc, resolved, agent::notices_for(cfg, inc, resolved, false)};
  resolved.uid = "0193-ev3";
  agent::IncidentChange r2{other, resolved, agent::notices_for(cfg, other, resolved, false)};
  ASSERT_TRUE(store->commit({r1, r2}));
  auto all = store->notifications("");
  ASSERT_TRUE(all);
  std::vector<std::string> rows;
  for (const auto& n : *all) {
    rows.push_back(fmt::format("{}:{}:{}", n["incident_uid"].get<std::string>(),
                               n["channel"].get<std::string>(), n["kind"].get<std::string>()));
  }
  EXPECT_EQ(rows, (V{"0193-inc:all:opened", "0193-inc:critical-only:opened",
                     "0193-inc:all:resolved", "0193-inc:critical-only:resolved"}));

  // An attempt's outcome: sent leaves the queue, a retry waits.
  const std::int64_t now = sync::wall_ms();
  ASSERT_TRUE(store->commit(
      {sync::NoticeUpdate{(*due)[0].id, sync::NoticeState::sent, 1, (*due)[0].next_try_ms, "", now},
       sync::NoticeUpdate{(*due)[1].id, sync::NoticeState::queued, 1, now + 60'000, "HTTP 503",
                          0}}));
  due = store->due_notices(now + 1000, 10);
  ASSERT_TRUE(due);
  // A channel's notices go in order: critical-only's resolution waits behind
  // its opening's retry.
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].channel, "all");
  EXPECT_EQ((*due)[0].kind, "resolved");
  auto next = store->next_notice_due();
  ASSERT_TRUE(next && *next);
  EXPECT_EQ(**next, (*due)[0].next_try_ms);
  due = store->due_notices(now + 61'000, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].channel, "critical-only");
  EXPECT_EQ((*due)[0].kind, "opened");

  all = store->notifications("0193-inc");
  EXPECT_EQ((*all)[0]["state"], "sent");
  EXPECT_EQ((*all)[1]["state"], "queued");
  EXPECT_EQ((*all)[1]["last_error"], "HTTP 503");
  EXPECT_EQ((*all)[1]["attempts"], 1);

  // Retention forgets what was sent or dropped, never what is queued, and
  // nothing of an incident not yet closed: an incident open for longer than
  // `retention` still needs its opening's notice for its resolution.
  auto pruned = store->prune_notifications(now + 1, 100);
  ASSERT_TRUE(pruned) << pruned.error().message;
  EXPECT_EQ(*pruned, 0);
  inc.state = IncidentState::closed;
  auto closed = event("closed");
  closed.uid = "0193-ev4";
  ASSERT_TRUE(store->commit({agent::IncidentChange{inc, closed, {}}}));
  pruned = store->prune_notifications(now + 1, 100);
  ASSERT_TRUE(pruned) << pruned.error().message;
  EXPECT_EQ(*pruned, 1);
  pruned = store->prune_notifications(now + 10'000'000, 100);
  ASSERT_TRUE(pruned);
  EXPECT_EQ(*pruned, 0);
  EXPECT_EQ(store->notifications("")->size(), 3u);
}

// --- payloads -------------------------------------------------------------------

json notice(const std::string& kind = "opened") {
  const config::Config cfg = rules_config();
  auto inc = incident(config::Severity::high);
  json n = json::parse(agent::notice_body(cfg, config::NotifyOn::opened, inc, event("opened")));
  n["kind"] = kind;
  return n;
}

TEST(NotifyPayload, SlackHasAFallbackTextAndBlocks) {
  auto n = notice();
  n["incident"]["summary"] = "lane-01 is down: <script> & co";
  const json p = json::parse(sync::slack_payload(n));
  const std::string text = p["text"];
  for (const char* part : {"Springfield", "store-0042", "lane-01", "high", "P2", "open", "since"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << " in " << text;
  }
  ASSERT_TRUE(p["blocks"].is_array());
  EXPECT_EQ(p["blocks"][0]["type"], "header");
  EXPECT_LE(p["blocks"][0]["text"]["text"].get<std::string>().size(), 150u);
  EXPECT_EQ(p["blocks"][1]["text"]["text"], "lane-01 is down: &lt;script&gt; &amp; co");
}

TEST(NotifyPayload, TeamsIsOneAdaptiveCardOfVersion12) {
  const json p = json::parse(sync::teams_payload(notice("resolved")));
  EXPECT_EQ(p["type"], "message");
  ASSERT_EQ(p["attachments"].size(), 1u);
  const json& a = p["attachments"][0];
  EXPECT_EQ(a["contentType"], "application/vnd.microsoft.card.adaptive");
  EXPECT_EQ(a["content"]["type"], "AdaptiveCard");
  EXPECT_EQ(a["content"]["version"], "1.2");
  EXPECT_EQ(a["content"]["body"][0]["color"], "Good");
  const json legacy = json::parse(sync::teams_legacy_payload(notice()));
  EXPECT_EQ(legacy["@type"], "MessageCard");
  EXPECT_EQ(legacy["themeColor"], "D70000");
}

TEST(NotifyPayload, WebhookIsSignedWithHmacSha256) {
  // RFC 4231 test case 2.
  EXPECT_EQ(sync::hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  config::NotifyConfig c;
  c.type = config::NotifyType::webhook;
  sync::ChannelSecrets s{"http://127.0.0.1/hook", "k3y", ""};
  auto r = sync::http_request(c, s, notice());
  EXPECT_EQ(json::parse(r.body)["incident"]["probe"], "lane-01");
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[1], "X-Storewatch-Signature: sha256=" + sync::hmac_sha256_hex("k3y", r.body));
  s.hmac_key.clear();
  EXPECT_EQ(sync::http_request(c, s, notice()).headers.size(), 1u);
}

TEST(NotifyPayload, EmailIsAnRfc5322Message) {
  config::NotifyConfig c;
  c.type = config::NotifyType::email;
  c.from = "sw@store.example.com";
  c.to = {"a@example.com", "b@example.com"};
  auto n = notice();
  n["incident"]["summary"] = "line one\nline two";
  const std::string m =
      sync::email_message(c, n, std::chrono::system_clock::time_point(1'764'195'483s), "123.abc");
  EXPECT_NE(m.find("Date: Wed, 26 Nov 2025 22:18:03 +0000\r\n"), std::string::npos) << m;
  EXPECT_NE(m.find("From: sw@store.example.com\r\n"), std::string::npos);
  EXPECT_NE(m.find("To: a@example.com, b@example.com\r\n"), std::string::npos);
  EXPECT_NE(m.find("Message-ID: <123.abc@store.example.com>\r\n"), std::string::npos);
  EXPECT_NE(m.find("Subject: [Springfield (store-0042)] lane-01 is down"), std::string::npos);
  EXPECT_NE(m.find("\r\n\r\nline one\r\nline two\r\n"), std::string::npos);
  EXPECT_EQ(m.find("\n\n"), std::string::npos);  // no bare LF
}

// --- grouping ---------------------------------------------------------------------

sync::Notice queued(std::int64_t id, const std::string& kind, const std::string& incident,
                    std::int64_t created_ms) {
  sync::Notice n;
  n.id = id;
  n.channel = "ops";
  n.kind = kind;
  n.incident_uid = incident;
  n.created_ms = created_ms;
  n.next_try_ms = created_ms + 30'000;
  return n;
}

TEST(NotifyGroup, OpeningsJoinTheFirstAndNothingOvertakesItsOwnIncident) {
  using I = std::vector<std::size_t>;
  const std::int64_t ttl = 86'400'000;
  // Three openings within the wait, a resolution among them: the openings
  // form one group, the resolution goes later with its own kind.
  std::vector<sync::Notice> q = {queued(1, "opened", "A", 0), queued(2, "opened", "B", 5'000),
                                 queued(3, "resolved", "X", 6'000),
                                 queued(4, "escalated", "C", 20'000),
                                 queued(5, "flapping_started", "D", 25'000)};
  EXPECT_EQ(sync::group_members(q, 30'000, ttl, {}), (I{0, 1, 3, 4}));
  // Not yet queued at `now` (a clock step): not in it.
  EXPECT_EQ(sync::group_members(q, 10'000, ttl, {}), (I{0, 1}));
  // Sent already (update not committed yet): skipped.
  EXPECT_EQ(sync::group_members(q, 30'000, ttl, {2}), (I{0, 3, 4}));
  // A resolution groups with resolutions only.
  std::vector<sync::Notice> r = {queued(1, "resolved", "A", 0), queued(2, "opened", "B", 1'000),
                                 queued(3, "flapping_stopped", "C", 2'000),
                                 queued(4, "acknowledged", "D", 3'000)};
  EXPECT_EQ(sync::group_members(r, 30'000, ttl, {}), (I{0, 2}));
  // A reopening never overtakes the resolution of its own incident before it.
  std::vector<sync::Notice> again = {queued(1, "opened", "A", 0), queued(2, "resolved", "A", 1'000),
                                     queued(3, "opened", "A", 2'000),
                                     queued(4, "opened", "B", 3'000)};
  EXPECT_EQ(sync::group_members(again, 30'000, ttl, {}), (I{0, 3}));
  // At most kMaxGroup in one message; expired ones stay out.
  std::vector<sync::Notice> many;
  for (int i = 0; i < 30; ++i) many.push_back(queued(i + 1, "opened", fmt::format("I{}", i), i));
  EXPECT_EQ(sync::group_members(many, 30'000, ttl, {}).size(), sync::kMaxGroup);
  many[1].created_ms = -100'000;
  EXPECT_EQ(sync::group_members(many, 30'000, 60'000, {})[1], 2u);
  EXPECT_EQ(sync::group_class("opened"), sync::group_class("escalated"));
  EXPECT_NE(sync::group_class("opened"), sync::group_class("resolved"));
}

std::vector<json> three_notices() {
  const config::Config cfg = rules_config();
  std::vector<json> out;
  for (const char* probe : {"lane-01", "lane-02", "printer-01"}) {
    auto inc = incident(config::Severity::high, probe);
    inc.uid = std::string("0193-") + probe;
    out.push_back(
        json::parse(agent::notice_body(cfg, config::NotifyOn::opened, inc, event("opened"))));
  }
  return out;
}

TEST(NotifyPayload, AGroupIsOneMessageListingEachIncident) {
  const auto notices = three_notices();
  const std::string head = sync::group_headline(notices);
  EXPECT_EQ(head,
            "[Springfield (store-0042)] 3 incidents: lane-01 is down, lane-02 is down, "
            "printer-01 is down");

  const json slack = json::parse(sync::slack_group_payload(notices));
  const std::string text = slack["text"];
  EXPECT_EQ(text.rfind(head, 0), 0u) << text;
  ASSERT_EQ(slack["blocks"].size(), 1u + 2 * 3);
  EXPECT_EQ(slack["blocks"][0]["type"], "header");
  for (int i = 0; i < 3; ++i) {
    const std::string section = slack["blocks"][1 + 2 * i]["text"]["text"];
    EXPECT_NE(section.find(notices[i]["incident"]["probe"].get<std::string>()), std::string::npos);
    EXPECT_NE(section.find("connection refused"), std::string::npos) << section;
    EXPECT_NE(slack["blocks"][2 + 2 * i]["elements"][0]["text"].get<std::string>().find(
                  notices[i]["incident"]["uid"].get<std::string>()),
              std::string::npos);
  }
  // One notice: the same message as without grouping.
  EXPECT_EQ(sync::slack_group_payload({notices[0]}), sync::slack_payload(notices[0]));

  const json teams = json::parse(sync::teams_group_payload(notices));
  ASSERT_EQ(teams["attachments"].size(), 1u);
  const json& card = teams["attachments"][0]["content"];
  EXPECT_EQ(card["version"], "1.2");
  ASSERT_EQ(card["body"].size(), 4u);
  EXPECT_EQ(card["body"][1]["type"], "Container");
  EXPECT_EQ(card["body"][3]["items"][0]["text"], "printer-01 is down");
  EXPECT_EQ(teams["summary"], head);

  const json legacy = json::parse(sync::teams_legacy_group_payload(notices));
  EXPECT_EQ(legacy["sections"].size(), 3u);

  config::NotifyConfig c;
  c.type = config::NotifyType::email;
  c.from = "sw@store.example.com";
  c.to = {"a@example.com"};
  const std::string m = sync::email_message(
      c, notices, std::chrono::system_clock::time_point(1'764'195'483s), "1.group");
  EXPECT_NE(m.find("Subject: " + head + "\r\n"), std::string::npos) << m;
  for (const char* probe : {"lane-01", "lane-02", "printer-01"}) {
    EXPECT_NE(m.find(fmt::format("== {} is down ==", probe)), std::string::npos) << m;
    EXPECT_NE(m.find(fmt::format("Incident: 0193-{}", probe)), std::string::npos) << m;
  }
  // Each incident's timeline.
  std::size_t timelines = 0;
  for (auto at = m.find("Timeline:"); at != std::string::npos; at = m.find("Timeline:", at + 1)) {
    ++timelines;
  }
  EXPECT_EQ(timelines, 3u);
  EXPECT_NE(m.find("detected"), std::string::npos);
  EXPECT_EQ(m.find("\n\n"), std::string::npos);
}

// --- answers ------------------------------------------------------------------------

TEST(NotifyAnswer, TeamsErrorBodyWith200IsAFailure) {
  using K = sync::Outcome::Kind;
  constexpr auto teams = config::NotifyType::teams;
  EXPECT_EQ(sync::classify_http(teams, 202, "", std::nullopt).kind, K::sent);
  EXPECT_EQ(sync::classify_http(config::NotifyType::teams_legacy, 200, "1", std::nullopt).kind,
            K::sent);
  auto o = sync::classify_http(
      teams, 200,
      "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error "
      "429",
      std::nullopt);
  EXPECT_EQ(o.kind, K::retry);
  EXPECT_NE(o.detail.find("HTTP 200 with an error"), std::string::npos);
  // Slack's "ok", any 2xx elsewhere.
  EXPECT_EQ(sync::classify_http(config::NotifyType::slack, 200, "ok", std::nullopt).kind, K::sent);
  o = sync::classify_http(config::NotifyType::slack, 429, "rate_limited", 7s);
  EXPECT_EQ(o.kind, K::retry);
  EXPECT_EQ(o.retry_after, 7s);
  EXPECT_EQ(sync::classify_http(config::NotifyType::webhook, 503, "", std::nullopt).kind, K::retry);
  EXPECT_EQ(sync::classify_http(config::NotifyType::slack, 404, "no_service", std::nullopt).kind,
            K::fatal);
}

TEST(NotifyAnswer, RetryAfterAndBackoff) {
  const auto now = std::chrono::system_clock::time_point(1'764'195'483s);
  EXPECT_EQ(sync::parse_retry_after(" 12 ", now), 12s);
  EXPECT_EQ(sync::parse_retry_after("999999999", now), 1h);
  EXPECT_EQ(sync::parse_retry_after("Wed, 26 Nov 2025 22:18:33 GMT", now), 30s);
  EXPECT_EQ(sync::parse_retry_after("Wed, 26 Nov 2025 22:00:00 GMT", now), 0s);
  EXPECT_EQ(sync::parse_retry_after("soon", now), std::nullopt);
  EXPECT_EQ(sync::retry_delay(1, std::nullopt), 5s);
  EXPECT_EQ(sync::retry_delay(2, std::nullopt), 10s);
  EXPECT_EQ(sync::retry_delay(4, std::nullopt), 40s);
  EXPECT_EQ(sync::retry_delay(40, std::nullopt), 10min);
  EXPECT_EQ(sync::retry_delay(1, 30s), 30s);
  EXPECT_EQ(sync::retry_delay(3, 1s), 20s);
}

TEST(NotifyAnswer, SecretsAreScrubbed) {
  sync::ChannelSecrets s{"https://hooks.slack.com/services/T0/B0/XYZ", "key", ""};
  EXPECT_EQ(sync::scrub("bad URL https://hooks.slack.com/services/T0/B0/XYZ!", s),
            "bad URL [secret]!");
}

}  // namespace
}  // namespace storewatch
