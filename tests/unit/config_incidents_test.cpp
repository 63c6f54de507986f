// The config of the incident engine: [store] trading_hours and timezone,
// [agent] retention and max_db_size, [incidents], [[remediation]],
// [[silence]] and a probe's `remediation`. Every error is checked with the
// file:line:col it is reported at.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "config/config.h"
#include "probes/registry.h"
#include "tests/support/support.h"

namespace storewatch::config {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

Loaded<Config> parse(std::string_view text) {
  return load_string(text, "test.toml", probes::schemas());
}

std::string dump(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  for (const Diagnostic& d : diagnostics) out += to_string(d) + "\n";
  return out;
}

std::vector<std::string> of_kind(const std::vector<Diagnostic>& diagnostics, Diagnostic::Kind k) {
  std::vector<std::string> out;
  for (const Diagnostic& d : diagnostics) {
    if (d.kind == k) out.push_back(to_string(d));
  }
  return out;
}

std::vector<std::string> errors(const Loaded<Config>& loaded) {
  return of_kind(loaded.diagnostics, Diagnostic::Kind::error);
}

std::vector<std::string> warnings(const Loaded<Config>& loaded) {
  return of_kind(loaded.diagnostics, Diagnostic::Kind::warning);
}

// Lines 1-13; what a test adds starts at line 14.
constexpr std::string_view kBase = R"([store]
id = "s"
[[probe]]
name = "lane-01"
type = "tcp"
host = "10.20.1.11"
port = 8080
labels = { lane = "01", kind = "pos" }
[[probe]]
name = "uplink"
type = "tcp"
host = "10.20.0.1"
port = 22
)";

std::string with(std::initializer_list<std::string_view> lines) {
  std::string out(kBase);
  for (std::string_view line : lines) {
    out += line;
    out += '\n';
  }
  return out;
}

std::string lines(std::initializer_list<std::string_view> lines) {
  std::string out;
  for (std::string_view line : lines) {
    out += line;
    out += '\n';
  }
  return out;
}

/// The one diagnostic `text` gives as "test.toml:L:C: error: message".
std::string only_error(const std::string& text) {
  auto loaded = parse(text);
  EXPECT_FALSE(loaded.ok()) << text;
  const auto e = errors(loaded);
  EXPECT_EQ(e.size(), 1u) << text << "\n" << dump(loaded.diagnostics);
  return e.empty() ? std::string() : e.front();
}

// ---------------------------------------------------------------------------
// [store]

TEST(ConfigStore, TradingHoursAreParsed) {
  auto loaded = parse(lines({"[store]", "id = \"s\"", "timezone = \"America/Chicago\"",
                             "trading_hours = \"Mon-Sat 07:00-22:00, Sun 09:00-18:00\""}));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_TRUE(loaded.diagnostics.empty()) << dump(loaded.diagnostics);
  const StoreConfig& s = loaded.config->store;
  EXPECT_EQ(s.trading_hours, "Mon-Sat 07:00-22:00, Sun 09:00-18:00");
  EXPECT_EQ(s.trading.windows().size(), 7u);
  EXPECT_EQ(s.trading.text(), s.trading_hours);

  auto none = parse(lines({"[store]", "id = \"s\""}));
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none.config->store.trading.empty());
  EXPECT_TRUE(none.config->store.trading_hours.empty());
}

TEST(ConfigStore, BadTradingHoursIsAnErrorAtTheValue) {
  EXPECT_EQ(only_error(lines({"[store]", "id = \"s\"", "trading_hours = \"Mon-Sat 07:00-25:00\""})),
            "test.toml:3:17: error: [store] trading_hours: bad schedule \"Mon-Sat 07:00-25:00\": "
            "bad end time \"25:00\" (00:00 to 24:00); expected DAYS HH:MM-HH:MM[, ...] where DAYS "
            "is daily, a day or a range of days (Mon Tue Wed Thu Fri Sat Sun), e.g. \"Mon-Sat "
            "07:00-22:00, Sun 09:00-18:00\"");
  EXPECT_THAT(only_error(lines({"[store]", "id = \"s\"", "trading_hours = \"weekdays 9-5\""})),
              HasSubstr("test.toml:3:17: error: [store] trading_hours: bad schedule \"weekdays "
                        "9-5\": unknown day \"weekdays\""));
  EXPECT_THAT(only_error(lines({"[store]", "id = \"s\"", "trading_hours = 9"})),
              HasSubstr("test.toml:3:17: error: [store] trading_hours: expected a string"));
}

TEST(ConfigStore, UnknownTimeZoneIsAnErrorWhereTheTzDatabaseIsInstalled) {
  auto loaded = parse(lines({"[store]", "id = \"s\"", "timezone = \"Mars/Base\""}));
  if (fs::is_directory("/usr/share/zoneinfo")) {
    ASSERT_EQ(errors(loaded).size(), 1u) << dump(loaded.diagnostics);
    EXPECT_EQ(errors(loaded)[0],
              "test.toml:3:12: error: [store] timezone: unknown time zone \"Mars/Base\" (no "
              "/usr/share/zoneinfo/Mars/Base); use an IANA name like \"America/Chicago\"");
  } else {
    EXPECT_TRUE(loaded.ok());
    ASSERT_EQ(warnings(loaded).size(), 1u) << dump(loaded.diagnostics);
    EXPECT_THAT(warnings(loaded)[0], HasSubstr("this machine has no tz database"));
  }
  // Still a well-formedness error first, whatever the machine has.
  EXPECT_THAT(only_error(lines({"[store]", "id = \"s\"", "timezone = \"../etc/passwd\""})),
              HasSubstr("test.toml:3:12: error: [store] timezone: \"../etc/passwd\" is not a "
                        "time zone name"));
  for (std::string_view zone : {"UTC", "America/Chicago", "Europe/Berlin"}) {
    auto ok = parse(lines({"[store]", "id = \"s\"", fmt::format("timezone = \"{}\"", zone)}));
    EXPECT_TRUE(ok.ok()) << zone << dump(ok.diagnostics);
    EXPECT_TRUE(ok.diagnostics.empty()) << dump(ok.diagnostics);
  }
}

// ---------------------------------------------------------------------------
// [agent]

TEST(ConfigAgent, RetentionAndMaxDbSize) {
  auto defaults = parse(lines({"[store]", "id = \"s\""}));
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults.config->agent.retention, Millis(24h * 30));
  EXPECT_EQ(defaults.config->agent.max_db_bytes, 256 * 1024 * 1024);

  struct Good {
    std::string_view size;
    std::int64_t bytes;
  };
  for (const Good& g : {Good{"1MB", 1 << 20}, Good{"1024KB", 1 << 20},
                        Good{"256MB", std::int64_t{256} << 20}, Good{"1GB", std::int64_t{1} << 30},
                        Good{"2gb", std::int64_t{2} << 30}, Good{"1TB", std::int64_t{1} << 40}}) {
    auto loaded = parse(lines({"[store]", "id = \"s\"", "[agent]", "retention = \"7d\"",
                               fmt::format("max_db_size = \"{}\"", g.size)}));
    ASSERT_TRUE(loaded.ok()) << g.size << dump(loaded.diagnostics);
    EXPECT_EQ(loaded.config->agent.max_db_bytes, g.bytes) << g.size;
    EXPECT_EQ(loaded.config->agent.retention, Millis(24h * 7));
  }
}

TEST(ConfigAgent, BadRetentionOrMaxDbSizeIsAnErrorAtTheValue) {
  const auto agent = [](std::string_view line) {
    return only_error(lines({"[store]", "id = \"s\"", "[agent]", line}));
  };
  EXPECT_EQ(agent("retention = \"30m\""),
            "test.toml:4:13: error: [agent] retention: must be at least 1h, got \"30m\"");
  EXPECT_THAT(agent("retention = \"a month\""),
              HasSubstr("test.toml:4:13: error: [agent] retention: \"a month\" is not a duration"));
  const std::string not_a_size =
      "is not a size: write a whole number and KB, MB, GB or TB (1024-based), e.g. \"256MB\" or "
      "\"1GB\"";
  EXPECT_EQ(agent("max_db_size = \"256\""),
            "test.toml:4:15: error: [agent] max_db_size: \"256\" " + not_a_size);
  EXPECT_EQ(agent("max_db_size = \"1.5GB\""),
            "test.toml:4:15: error: [agent] max_db_size: \"1.5GB\" " + not_a_size);
  EXPECT_EQ(agent("max_db_size = \"256 MB\""),
            "test.toml:4:15: error: [agent] max_db_size: \"256 MB\" " + not_a_size);
  EXPECT_EQ(agent("max_db_size = \"-1GB\""),
            "test.toml:4:15: error: [agent] max_db_size: \"-1GB\" " + not_a_size);
  EXPECT_EQ(agent("max_db_size = \"512KB\""),
            "test.toml:4:15: error: [agent] max_db_size: must be at least 1MB, got \"512KB\"");
  EXPECT_EQ(agent("max_db_size = \"99999999999TB\""),
            "test.toml:4:15: error: [agent] max_db_size: \"99999999999TB\" is too large");
  EXPECT_EQ(agent("max_db_size = 268435456"),
            "test.toml:4:15: error: [agent] max_db_size: expected a size string like \"256MB\" "
            "(KB, MB, GB or TB), got an integer");
}

// ---------------------------------------------------------------------------
// [incidents]

TEST(ConfigIncidents, DefaultsAndEveryKey) {
  auto defaults = parse(kBase);
  ASSERT_TRUE(defaults.ok());
  const IncidentsConfig& d = defaults.config->incidents;
  EXPECT_EQ(d.reopen_window, Millis(30min));
  EXPECT_EQ(d.close_after, Millis(24h));
  EXPECT_EQ(d.flap_high, 30.0);
  EXPECT_EQ(d.flap_low, 20.0);

  auto loaded = parse(with({"[incidents]", "reopen_window = \"1h\"", "close_after = \"2d\"",
                            "flap_high = 50", "flap_low = 12.5"}));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  const IncidentsConfig& c = loaded.config->incidents;
  EXPECT_EQ(c.reopen_window, Millis(1h));
  EXPECT_EQ(c.close_after, Millis(48h));
  EXPECT_EQ(c.flap_high, 50.0);
  EXPECT_EQ(c.flap_low, 12.5);

  // Equal thresholds and zero windows are allowed.
  EXPECT_TRUE(
      parse(with({"[incidents]", "reopen_window = \"0s\"", "flap_high = 25", "flap_low = 25"}))
          .ok());
}

TEST(ConfigIncidents, ErrorsAtTheirValues) {
  EXPECT_EQ(only_error(with({"[incidents]", "flap_high = 30", "flap_low = 40"})),
            "test.toml:16:12: error: [incidents] flap_low: 40 is above flap_high 30; flapping "
            "starts at or above flap_high and stops at or below flap_low");
  // Against the default flap_high.
  EXPECT_EQ(only_error(with({"[incidents]", "flap_low = 35"})),
            "test.toml:15:12: error: [incidents] flap_low: 35 is above flap_high 30; flapping "
            "starts at or above flap_high and stops at or below flap_low");
  EXPECT_EQ(only_error(with({"[incidents]", "flap_high = 101"})),
            "test.toml:15:13: error: [incidents] flap_high: must be a percentage between 0 and "
            "100, got 101");
  EXPECT_EQ(only_error(with({"[incidents]", "flap_low = -1"})),
            "test.toml:15:12: error: [incidents] flap_low: must be a percentage between 0 and "
            "100, got -1");
  EXPECT_THAT(only_error(with({"[incidents]", "flap_high = \"30%\""})),
              HasSubstr("test.toml:15:13: error: [incidents] flap_high: expected a number"));
  EXPECT_THAT(only_error(with({"[incidents]", "reopen_window = \"soon\""})),
              HasSubstr("test.toml:15:17: error: [incidents] reopen_window: \"soon\" is not a "
                        "duration"));
  EXPECT_THAT(only_error(with({"[incidents]", "close_after = 86400"})),
              HasSubstr("test.toml:15:15: error: [incidents] close_after: expected a duration"));
}

// ---------------------------------------------------------------------------
// [[remediation]]

TEST(ConfigRemediation, EveryTypeAndEveryKey) {
  auto loaded = parse(with({
      "[[remediation]]",
      "name = \"restart-lane\"",
      "type = \"exec\"",
      "command = [\"/bin/sh\", \"-c\", \"exit 0\"]",
      "timeout = \"45s\"",
      "max_attempts = 5",
      "window = \"2h\"",
      "backoff = \"5s\"",
      "backoff_max = \"1m\"",
      "verify_after = \"0s\"",
      "only_outside_trading_hours = false",
      "precondition = \"uplink\"",
      "escalate_severity = \"critical\"",
      "[[remediation]]",
      "name = \"pos-agent\"",
      "type = \"systemd-restart\"",
      "unit = \"pos-agent\"",
      "[[remediation]]",
      "name = \"printer.reset\"",
      "type = \"http\"",
      "url = \"https://[fe80::1]:8443/reset?now=1\"",
      "method = \"PUT\"",
      "expect_status = 204",
  }));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_TRUE(loaded.diagnostics.empty()) << dump(loaded.diagnostics);
  const Config& c = *loaded.config;
  ASSERT_EQ(c.remediations.size(), 3u);

  const RemediationConfig* exec = c.find_remediation("restart-lane");
  ASSERT_NE(exec, nullptr);
  EXPECT_EQ(exec->type, RemediationType::exec);
  EXPECT_EQ(exec->command, (std::vector<std::string>{"/bin/sh", "-c", "exit 0"}));
  EXPECT_EQ(exec->timeout, Millis(45s));
  EXPECT_EQ(exec->max_attempts, 5);
  EXPECT_EQ(exec->window, Millis(2h));
  EXPECT_EQ(exec->backoff, Millis(5s));
  EXPECT_EQ(exec->backoff_max, Millis(1min));
  EXPECT_EQ(exec->verify_after, Millis(0));
  EXPECT_FALSE(exec->only_outside_trading_hours);
  EXPECT_EQ(exec->precondition, "uplink");
  EXPECT_EQ(exec->escalate_severity, Severity::critical);
  EXPECT_EQ(exec->where.line, 14);
  EXPECT_EQ(exec->where.column, 1);

  const RemediationConfig* unit = c.find_remediation("pos-agent");
  ASSERT_NE(unit, nullptr);
  EXPECT_EQ(unit->type, RemediationType::systemd_restart);
  EXPECT_EQ(unit->unit, "pos-agent.service");  // as systemctl spells a bare name
  // The defaults.
  EXPECT_EQ(unit->timeout, Millis(30s));
  EXPECT_EQ(unit->max_attempts, 3);
  EXPECT_EQ(unit->window, Millis(1h));
  EXPECT_EQ(unit->backoff, Millis(10s));
  EXPECT_EQ(unit->backoff_max, Millis(10min));
  EXPECT_EQ(unit->verify_after, Millis(20s));
  EXPECT_FALSE(unit->only_outside_trading_hours);
  EXPECT_TRUE(unit->precondition.empty());
  EXPECT_EQ(unit->escalate_severity, std::nullopt);

  const RemediationConfig* http = c.find_remediation("printer.reset");
  ASSERT_NE(http, nullptr);
  EXPECT_EQ(http->type, RemediationType::http);
  EXPECT_EQ(http->url, "https://[fe80::1]:8443/reset?now=1");
  EXPECT_EQ(http->method, "PUT");
  EXPECT_EQ(http->expect_status, 204);
  EXPECT_EQ(c.find_remediation("nope"), nullptr);

  auto post = parse(with({"[[remediation]]", "name = \"h\"", "type = \"http\"",
                          "url = \"http://10.20.1.11:8080/restart\""}));
  ASSERT_TRUE(post.ok()) << dump(post.diagnostics);
  EXPECT_EQ(post.config->remediations[0].method, "POST");
  EXPECT_EQ(post.config->remediations[0].expect_status, 200);

  for (std::string_view u : {"pos-agent.socket", "nightly.timer", "pos@2.service", "data.mount"}) {
    auto ok = parse(with({"[[remediation]]", "name = \"u\"", "type = \"systemd-restart\"",
                          fmt::format("unit = \"{}\"", u)}));
    ASSERT_TRUE(ok.ok()) << u << dump(ok.diagnostics);
    EXPECT_EQ(ok.config->remediations[0].unit, u);
  }
}

TEST(ConfigRemediation, ErrorsAtTheirValues) {
  struct Case {
    std::vector<std::string> lines;  ///< from line 14, after "[[remediation]]", "name = \"r\""
    std::string expected;            ///< the one error, whole
  };
  const std::string r = "[[remediation]] \"r\" ";
  const std::string url_example = "; e.g. \"http://10.20.1.11:8080/restart\"";
  const Case cases[] = {
      // A key of another type.
      {{"type = \"exec\"", "command = [\"/bin/true\"]", "unit = \"pos\""},
       "18:8: error: " + r + "unit: is for type systemd-restart; this remediation is type exec"},
      {{"type = \"systemd-restart\"", "unit = \"pos\"", "url = \"http://h/\""},
       "18:7: error: " + r + "url: is for type http; this remediation is type systemd-restart"},
      {{"type = \"exec\"", "command = [\"/bin/true\"]", "method = \"GET\""},
       "18:10: error: " + r + "method: is for type http; this remediation is type exec"},
      {{"type = \"http\"", "url = \"http://h/\"", "command = [\"/bin/true\"]"},
       "18:11: error: " + r + "command: is for type exec; this remediation is type http"},
      {{"type = \"systemd-restart\"", "unit = \"pos\"", "expect_status = 200"},
       "18:17: error: " + r +
           "expect_status: is for type http; this remediation is type systemd-restart"},
      // The key each type needs.
      {{"type = \"exec\""}, "14:1: error: [[remediation]] \"r\": missing required key \"command\""},
      {{"type = \"systemd-restart\""},
       "14:1: error: [[remediation]] \"r\": missing required key \"unit\""},
      {{"type = \"http\""}, "14:1: error: [[remediation]] \"r\": missing required key \"url\""},
      {{}, "14:1: error: [[remediation]] \"r\": missing required key \"type\""},
      {{"type = \"ssh\""},
       "16:8: error: " + r + "type: \"ssh\" is not one of exec,systemd-restart,http"},
      // exec
      {{"type = \"exec\"", "command = []"},
       "17:11: error: " + r +
           "command: must name the program to run (an empty array runs nothing)"},
      {{"type = \"exec\"", "command = [\"\"]"},
       "17:11: error: " + r + "command: the first element (the program) is empty"},
      {{"type = \"exec\"", "command = [\"bin/restart\"]"},
       "17:11: error: " + r +
           "command: \"bin/restart\" is a relative path; give an absolute path or a bare name "
           "found on PATH"},
      {{"type = \"exec\"", "command = \"/bin/true\""},
       "17:11: error: " + r + "command: expected an array of strings, got a string"},
      // systemd-restart
      {{"type = \"systemd-restart\"", "unit = \"dev-sda.device\""},
       "17:8: error: " + r +
           "unit: \"dev-sda.device\": a device unit cannot be restarted; name a service, socket, "
           "mount or other restartable unit"},
      {{"type = \"systemd-restart\"", "unit = \"pos@.service\""},
       "17:8: error: " + r +
           "unit: \"pos@.service\" is a template: name an instance, such as pos@1.service"},
      {{"type = \"systemd-restart\"", "unit = \"pos agent\""},
       "17:8: error: " + r +
           "unit: \"pos agent\": ' ' is not allowed in a unit name (only letters, digits and "
           ":_.\\@-)"},
      {{"type = \"systemd-restart\"", "unit = \".service\""},
       "17:8: error: " + r + "unit: \".service\" has no name before its type"},
      {{"type = \"systemd-restart\"", "unit = \"\""},
       "17:8: error: " + r + "unit: must not be empty"},
      // http
      {{"type = \"http\"", "url = \"ftp://h/x\""},
       "17:7: error: " + r + "url: \"ftp://h/x\" must start with http:// or https://" +
           url_example},
      {{"type = \"http\"", "url = \"https:///x\""},
       "17:7: error: " + r + "url: \"https:///x\" has no host" + url_example},
      {{"type = \"http\"", "url = \"http://admin:pw@10.0.0.1/\""},
       "17:7: error: " + r +
           "url: \"http://admin:pw@10.0.0.1/\" must not hold credentials (user:password@): "
           "secrets do not go inline in the config"},
      {{"type = \"http\"", "url = \"http://10.0.0.1:99999/\""},
       "17:7: error: " + r +
           "url: \"http://10.0.0.1:99999/\": port \"99999\" is not a number between 1 and 65535"},
      {{"type = \"http\"", "url = \"http://10.0.0.1:/\""},
       "17:7: error: " + r + "url: \"http://10.0.0.1:/\": the port after ':' is empty"},
      {{"type = \"http\"", "url = \"http://bad host/\""},
       "17:7: error: " + r +
           "url: \"http://bad host/\" must not contain spaces or control characters"},
      {{"type = \"http\"", "url = \"http://h/\"", "method = \"DELETE\""},
       "18:10: error: " + r + "method: \"DELETE\" is not one of GET,POST,PUT"},
      {{"type = \"http\"", "url = \"http://h/\"", "expect_status = 600"},
       "18:17: error: " + r + "expect_status: must be between 100 and 599, got 600"},
      // The common keys.
      {{"type = \"http\"", "url = \"http://h/\"", "max_attempts = 0"},
       "18:16: error: " + r + "max_attempts: must be between 1 and 100, got 0"},
      {{"type = \"http\"", "url = \"http://h/\"", "max_attempts = 101"},
       "18:16: error: " + r + "max_attempts: must be between 1 and 100, got 101"},
      {{"type = \"http\"", "url = \"http://h/\"", "timeout = \"0s\""},
       "18:11: error: " + r + "timeout: must be longer than 0s, got \"0s\""},
      {{"type = \"http\"", "url = \"http://h/\"", "window = \"0s\""},
       "18:10: error: " + r + "window: must be longer than 0s, got \"0s\""},
      {{"type = \"http\"", "url = \"http://h/\"", "backoff = \"20m\""},
       "18:11: error: " + r +
           "backoff_max: 10m is shorter than backoff 20m; the wait starts at backoff and doubles "
           "up to backoff_max"},
      {{"type = \"http\"", "url = \"http://h/\"", "backoff_max = \"5s\""},
       "18:15: error: " + r +
           "backoff_max: 5s is shorter than backoff 10s; the wait starts at backoff and doubles "
           "up to backoff_max"},
      {{"type = \"http\"", "url = \"http://h/\"", "only_outside_trading_hours = \"yes\""},
       "18:30: error: " + r +
           "only_outside_trading_hours: expected a boolean (true or false), got a string"},
      {{"type = \"http\"", "url = \"http://h/\"", "escalate_severity = \"urgent\""},
       "18:21: error: " + r +
           "escalate_severity: \"urgent\" is not a severity: use critical, high, medium, low or "
           "info"},
      {{"type = \"http\"", "url = \"http://h/\"", "precondition = \"no-basket\""},
       "18:16: error: " + r +
           "precondition: unknown probe \"no-basket\"; a precondition names a [[probe]] that must "
           "be ok right before the action runs"},
      {{"type = \"http\"", "url = \"http://h/\"", "precondition = \"a b\""},
       "18:16: error: " + r +
           "precondition: \"a b\" is not a valid probe name: use 1 to 64 letters, digits or '_' "
           "'.' '-'"},
      {{"type = \"http\"", "url = \"http://h/\"", "colour = \"red\""},
       "18:1: error: [[remediation]] \"r\": unknown key \"colour\" (known keys: name, type, "
       "command, unit, url, method, expect_status, timeout, max_attempts, window, backoff, "
       "backoff_max, verify_after, only_outside_trading_hours, precondition, "
       "escalate_severity)"},
  };
  for (const Case& c : cases) {
    std::string text = with({"[[remediation]]", "name = \"r\""});
    for (const std::string& line : c.lines) text += line + "\n";
    EXPECT_EQ(only_error(text), "test.toml:" + c.expected) << text;
  }
}

TEST(ConfigRemediation, NamesAreValidAndUnique) {
  EXPECT_EQ(only_error(with({"[[remediation]]", "name = \"re start\"", "type = \"http\"",
                             "url = \"http://h/\""})),
            "test.toml:15:8: error: [[remediation]] #1 name: \"re start\" is not a valid "
            "remediation name: use 1 to 64 letters, digits or '_' '.' '-'");
  EXPECT_EQ(only_error(with({"[[remediation]]", "name = \"r\"", "type = \"http\"",
                             "url = \"http://h/\"", "[[remediation]]", "name = \"r\"",
                             "type = \"exec\"", "command = [\"/bin/true\"]"})),
            "test.toml:19:8: error: [[remediation]] \"r\" name: duplicate remediation name; the "
            "first is at test.toml:15:8");
  EXPECT_EQ(only_error(with({"[[remediation]]", "type = \"http\"", "url = \"http://h/\""})),
            "test.toml:14:1: error: [[remediation]] #1: missing required key \"name\"");
}

TEST(ConfigRemediation, CommandMissingOnThisMachineIsAWarning) {
  auto loaded = parse(with({"[[remediation]]", "name = \"r\"", "type = \"exec\"",
                            "command = [\"/nonexistent/restart-pos\", \"lane-01\"]"}));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(warnings(loaded),
            std::vector<std::string>{"test.toml:17:11: warning: [[remediation]] \"r\" command: "
                                     "/nonexistent/restart-pos does not exist on this machine"});
  // A bare name is looked up on PATH when it runs.
  auto bare = parse(
      with({"[[remediation]]", "name = \"r\"", "type = \"exec\"", "command = [\"restart-pos\"]"}));
  ASSERT_TRUE(bare.ok()) << dump(bare.diagnostics);
  EXPECT_TRUE(bare.diagnostics.empty()) << dump(bare.diagnostics);
}

TEST(ConfigRemediation, OnlyOutsideTradingHoursWithoutTradingHoursWarns) {
  auto loaded = parse(with({"[[remediation]]", "name = \"r\"", "type = \"http\"",
                            "url = \"http://h/\"", "only_outside_trading_hours = true"}));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(warnings(loaded),
            std::vector<std::string>{
                "test.toml:18:30: warning: [[remediation]] \"r\" only_outside_trading_hours: has "
                "no effect: [store] trading_hours is not set, so the store is never in trading "
                "hours and the remediation may run at any time"});

  std::string text = with({"[[remediation]]", "name = \"r\"", "type = \"http\"",
                           "url = \"http://h/\"", "only_outside_trading_hours = true"});
  text.insert(text.find("[[probe]]"), "trading_hours = \"daily 08:00-20:00\"\n");
  auto trading = parse(text);
  ASSERT_TRUE(trading.ok()) << dump(trading.diagnostics);
  EXPECT_TRUE(trading.diagnostics.empty()) << dump(trading.diagnostics);
  EXPECT_TRUE(trading.config->remediations[0].only_outside_trading_hours);
}

// ---------------------------------------------------------------------------
// A probe's remediation

TEST(ConfigProbeRemediation, MayBeDeclaredAfterTheProbe) {
  auto loaded = parse(with(
      {"[[probe]]", "name = \"lane-02\"", "type = \"tcp\"", "host = \"10.20.1.12\"", "port = 8080",
       "remediation = \"restart-lane\"", "[[remediation]]", "name = \"restart-lane\"",
       "type = \"exec\"", "command = [\"/bin/true\"]", "precondition = \"lane-01\""}));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->find_probe("lane-02")->remediation, "restart-lane");
  EXPECT_TRUE(loaded.config->find_probe("lane-01")->remediation.empty());
}

TEST(ConfigProbeRemediation, UnknownRemediationIsAnErrorAtTheValue) {
  const std::vector<std::string_view> probe = {"[[probe]]",      "name = \"lane-02\"",
                                               "type = \"tcp\"", "host = \"10.20.1.12\"",
                                               "port = 8080",    "remediation = \"restart-lane\""};
  std::string text(kBase);
  for (std::string_view line : probe) text += std::string(line) + "\n";
  EXPECT_EQ(only_error(text),
            "test.toml:19:15: error: [[probe]] \"lane-02\" remediation: unknown remediation "
            "\"restart-lane\" (no [[remediation]] is configured)");
  text += "[[remediation]]\nname = \"restart-lane-2\"\ntype = \"exec\"\ncommand = [\"x\"]\n";
  text += "[[remediation]]\nname = \"other\"\ntype = \"exec\"\ncommand = [\"x\"]\n";
  EXPECT_EQ(only_error(text),
            "test.toml:19:15: error: [[probe]] \"lane-02\" remediation: unknown remediation "
            "\"restart-lane\" (known: restart-lane-2, other)");
  EXPECT_EQ(only_error(with({"[[probe]]", "name = \"lane-02\"", "type = \"tcp\"",
                             "host = \"10.20.1.12\"", "port = 8080", "remediation = 3"})),
            "test.toml:19:15: error: [[probe]] \"lane-02\" remediation: expected a string, got an "
            "integer");
}

TEST(ConfigProbeRemediation, AProbeIsNotItsOwnRemediationsPrecondition) {
  EXPECT_EQ(only_error(with({"[[probe]]", "name = \"lane-02\"", "type = \"tcp\"",
                             "host = \"10.20.1.12\"", "port = 8080", "remediation = \"heal\"",
                             "[[remediation]]", "name = \"heal\"", "type = \"exec\"",
                             "command = [\"/bin/true\"]", "precondition = \"lane-02\""})),
            "test.toml:19:15: error: [[probe]] \"lane-02\" remediation: remediation \"heal\" has "
            "this probe as its precondition; the probe fails whenever the remediation would run, "
            "so it never could");
}

TEST(ConfigProbeRemediation, RemediationsAndSilencesInADropIn) {
  test::TempDir dir;
  const fs::path main = dir.path() / "storewatch.toml";
  test::write_file(
      main, with({"[[probe]]", "name = \"lane-02\"", "type = \"tcp\"", "host = \"10.20.1.12\"",
                  "port = 8080", "remediation = \"restart-lane\""}));
  const fs::path drop_in = dir.path() / "conf.d" / "50-heal.toml";
  test::write_file(drop_in, lines({"[[remediation]]", "name = \"restart-lane\"", "type = \"exec\"",
                                   "command = [\"/bin/true\"]", "precondition = \"no-basket\"",
                                   "[[silence]]", "match = \"lane-*\"",
                                   "schedule = \"daily 02:00-03:00\"", "reason = \"updates\""}));
  auto loaded = load(main, {.conf_dir = std::nullopt, .probe_types = probes::schemas()});
  ASSERT_EQ(errors(loaded).size(), 1u) << dump(loaded.diagnostics);
  EXPECT_EQ(errors(loaded)[0], drop_in.string() +
                                   ":5:16: error: [[remediation]] \"restart-lane\" precondition: "
                                   "unknown probe \"no-basket\"; a precondition names a [[probe]] "
                                   "that must be ok right before the action runs");

  test::write_file(drop_in, lines({"[[remediation]]", "name = \"restart-lane\"", "type = \"exec\"",
                                   "command = [\"/bin/true\"]", "[[silence]]", "match = \"lane-*\"",
                                   "schedule = \"daily 02:00-03:00\"", "reason = \"updates\""}));
  auto ok = load(main, {.conf_dir = std::nullopt, .probe_types = probes::schemas()});
  ASSERT_TRUE(ok.ok()) << dump(ok.diagnostics);
  EXPECT_EQ(ok.config->remediations.size(), 1u);
  EXPECT_EQ(ok.config->remediations[0].where.file, drop_in.string());
  EXPECT_EQ(ok.config->silences.size(), 1u);
}

// ---------------------------------------------------------------------------
// [[silence]]

TEST(ConfigSilence, IsRead) {
  auto loaded =
      parse(with({"[[silence]]", "match = \"lane-*\"", "schedule = \"Mon-Fri 22:00-06:00\"",
                  "reason = \"nightly POS updates\"", "[[silence]]", "match = \"kind=pos\"",
                  "schedule = \"daily 02:00-03:00\"", "reason = \"backup\""}));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_TRUE(loaded.diagnostics.empty()) << dump(loaded.diagnostics);
  const auto& s = loaded.config->silences;
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].match.text(), "lane-*");
  EXPECT_TRUE(s[0].match.matches("lane-01", {}));
  EXPECT_EQ(s[0].schedule.text(), "Mon-Fri 22:00-06:00");
  EXPECT_EQ(s[0].schedule.windows().size(), 5u);
  EXPECT_EQ(s[0].reason, "nightly POS updates");
  EXPECT_EQ(s[0].where.line, 14);
  EXPECT_TRUE(s[1].match.matches("lane-01", {{"kind", "pos"}}));
  EXPECT_FALSE(s[1].match.matches("uplink", {}));
}

TEST(ConfigSilence, MatchingNoProbeIsAWarningNamingIt) {
  for (std::string_view match : {"printer-*", "kind=printer", "lane-01x"}) {
    auto loaded = parse(with({"[[silence]]", fmt::format("match = \"{}\"", match),
                              "schedule = \"daily 02:00-03:00\"", "reason = \"r\""}));
    ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
    EXPECT_EQ(warnings(loaded), std::vector<std::string>{fmt::format(
                                    "test.toml:15:9: warning: [[silence]] #1 match: \"{}\" matches "
                                    "no configured probe",
                                    match)});
  }
}

TEST(ConfigSilence, ErrorsAtTheirValues) {
  const auto silence = [](std::string_view match, std::string_view schedule,
                          std::string_view reason) {
    std::vector<std::string> ls = {"[[silence]]"};
    if (!match.empty()) ls.push_back(std::string(match));
    if (!schedule.empty()) ls.push_back(std::string(schedule));
    if (!reason.empty()) ls.push_back(std::string(reason));
    std::string text(kBase);
    for (const std::string& l : ls) text += l + "\n";
    return only_error(text);
  };
  const std::string daily = "schedule = \"daily 02:00-03:00\"";
  EXPECT_EQ(silence("match = \"=pos\"", daily, "reason = \"r\""),
            "test.toml:15:9: error: [[silence]] #1 match: bad match \"=pos\": the label name is "
            "empty; expected a glob on probe names (\"lane-*\") or label=value (\"kind=pos\")");
  EXPECT_EQ(silence("match = \"lane 01\"", daily, "reason = \"r\""),
            "test.toml:15:9: error: [[silence]] #1 match: bad match \"lane 01\": ' ' cannot be in "
            "a probe name or glob; expected a glob on probe names (\"lane-*\") or label=value "
            "(\"kind=pos\")");
  EXPECT_THAT(silence("match = \"lane-*\"", "schedule = \"Mon-Fry 22:00-06:00\"", "reason = \"r\""),
              HasSubstr("test.toml:16:12: error: [[silence]] #1 schedule: bad schedule \"Mon-Fry "
                        "22:00-06:00\": unknown day \"Fry\"; expected DAYS HH:MM-HH:MM"));
  EXPECT_EQ(silence("match = \"lane-*\"", "", "reason = \"r\""),
            "test.toml:14:1: error: [[silence]] #1: missing required key \"schedule\"");
  EXPECT_EQ(silence("", daily, "reason = \"r\""),
            "test.toml:14:1: error: [[silence]] #1: missing required key \"match\"");
  EXPECT_EQ(silence("match = \"lane-*\"", daily, ""),
            "test.toml:14:1: error: [[silence]] #1: missing required key \"reason\"");
  EXPECT_EQ(silence("match = \"lane-*\"", daily, "reason = \"  \""),
            "test.toml:17:10: error: [[silence]] #1 reason: must say why (it is shown with every "
            "failure the silence covers)");
}

}  // namespace
}  // namespace storewatch::config
