#include "config/config.h"
#include "config/postgres_uri.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "probes/registry.h"
#include "tests/support/support.h"

namespace storewatch::config {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// A directory of its own per test, removed afterwards.
/// The shared temp dir, plus writing a file into it.
class TempDir : public test::TempDir {
 public:
  fs::path write(const fs::path& name, std::string_view text) const {
    fs::path file = path() / name;
    test::write_file(file, std::string(text));
    return file;
  }
};

constexpr std::string_view kValid = R"([store]
id = "store-0042"

[[probe]]
name = "lan-switch"
type = "tcp"
host = "10.20.0.2"
port = 22
)";

Loaded<Config> parse(std::string_view text) {
  return load_string(text, "test.toml", probes::schemas());
}

std::string dump(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  for (const Diagnostic& d : diagnostics) out += to_string(d) + "\n";
  return out;
}

std::vector<Diagnostic> of_kind(const std::vector<Diagnostic>& diagnostics, Diagnostic::Kind k) {
  std::vector<Diagnostic> out;
  for (const Diagnostic& d : diagnostics) {
    if (d.kind == k) out.push_back(d);
  }
  return out;
}

std::vector<Diagnostic> errors(const std::vector<Diagnostic>& d) {
  return of_kind(d, Diagnostic::Kind::error);
}

std::vector<Diagnostic> warnings(const std::vector<Diagnostic>& d) {
  return of_kind(d, Diagnostic::Kind::warning);
}

// The one error `text` gives; fails the test when there is not exactly one.
template <class T>
Diagnostic only_error(const Loaded<T>& loaded) {
  EXPECT_FALSE(loaded.ok());
  const auto e = errors(loaded.diagnostics);
  EXPECT_EQ(e.size(), 1u) << dump(loaded.diagnostics);
  return e.empty() ? Diagnostic{} : e.front();
}

Diagnostic only_error(std::string_view text) {
  return only_error(parse(text));
}

// The valid config with `lines` added to the [[probe]].
std::string with_probe_keys(std::string_view lines) {
  return std::string(kValid) + std::string(lines) + "\n";
}

// ---------------------------------------------------------------------------
// Files

TEST(ConfigLoad, MissingFileIsOneLineNamingFileAndReason) {
  TempDir dir;
  const fs::path file = dir.path() / "storewatch.toml";
  auto loaded = load(file, {});
  ASSERT_EQ(loaded.diagnostics.size(), 1u);
  EXPECT_EQ(to_string(loaded.diagnostics[0]),
            file.string() + ": error: cannot read config file: No such file or directory");
  EXPECT_FALSE(loaded.ok());
}

TEST(ConfigLoad, DirectoryAsMainFileIsAnError) {
  TempDir dir;
  auto loaded = load(dir.path(), {});
  ASSERT_EQ(loaded.diagnostics.size(), 1u);
  EXPECT_THAT(loaded.diagnostics[0].message, HasSubstr("Is a directory"));
  EXPECT_EQ(loaded.diagnostics[0].where.line, 0);
}

TEST(ConfigLoad, ReadsTheMainFileAndListsIt) {
  TempDir dir;
  const fs::path file = dir.write("storewatch.toml", kValid);
  auto loaded = load(file, {.conf_dir = std::nullopt, .probe_types = probes::schemas()});
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->files, std::vector<fs::path>{file});
  EXPECT_EQ(loaded.config->store.id, "store-0042");
}

TEST(ConfigLoad, NonTomlInputIsAnErrorWithItsPosition) {
  for (std::string_view text :
       {std::string_view("\x7f\x45LF\x02\x01\x01\x00\x00", 9),
        std::string_view("this is not toml\n"), std::string_view("[store\nid = 1\n"),
        std::string_view("{\"store\": {\"id\": \"x\"}}\n")}) {
    auto loaded = parse(text);
    ASSERT_EQ(loaded.diagnostics.size(), 1u) << dump(loaded.diagnostics);
    const Diagnostic& d = loaded.diagnostics[0];
    EXPECT_EQ(d.kind, Diagnostic::Kind::error);
    EXPECT_THAT(d.message, HasSubstr("invalid TOML"));
    EXPECT_EQ(d.where.file, "test.toml");
    EXPECT_GE(d.where.line, 1);
    EXPECT_FALSE(loaded.ok());
  }
}

TEST(ConfigLoad, TomlSyntaxErrorPointsAtLineAndColumn) {
  auto d = only_error("[store]\nid = \"x\"\nname = \"unterminated\n");
  EXPECT_EQ(d.where.line, 3);
  EXPECT_EQ(to_string(d).substr(0, 12), "test.toml:3:");
}

TEST(ConfigLoad, BinaryFileOnDiskIsAnError) {
  TempDir dir;
  const fs::path file = dir.write("storewatch.toml", std::string("\0\1\2\3\xff\xfe", 6));
  auto loaded = load(file, {.conf_dir = std::nullopt, .probe_types = probes::schemas()});
  EXPECT_FALSE(loaded.ok());
  ASSERT_EQ(loaded.diagnostics.size(), 1u);
  EXPECT_THAT(loaded.diagnostics[0].message, HasSubstr("invalid TOML"));
}

// ---------------------------------------------------------------------------
// Output

TEST(ConfigLoad, DiagnosticsPrintLikeACompiler) {
  EXPECT_EQ(to_string(SourcePos{"a.toml", 3, 7}), "a.toml:3:7");
  EXPECT_EQ(to_string(SourcePos{"a.toml", 0, 0}), "a.toml");
  EXPECT_EQ(to_string(Diagnostic{{"a.toml", 3, 7}, Diagnostic::Kind::error, "bad"}),
            "a.toml:3:7: error: bad");
  EXPECT_EQ(to_string(Diagnostic{{"a.toml", 2, 1}, Diagnostic::Kind::warning, "hmm"}),
            "a.toml:2:1: warning: hmm");
  EXPECT_EQ(to_string(Diagnostic{{"a.toml", 0, 0}, Diagnostic::Kind::error, "gone"}),
            "a.toml: error: gone");
}

TEST(ConfigLoad, SeverityNamesRoundTrip) {
  for (Severity s :
       {Severity::critical, Severity::high, Severity::medium, Severity::low, Severity::info}) {
    EXPECT_EQ(parse_severity(to_string(s)), s);
  }
  EXPECT_EQ(parse_severity("urgent"), std::nullopt);
  EXPECT_EQ(parse_severity("High"), std::nullopt);
}

// ---------------------------------------------------------------------------
// Values and defaults

TEST(ConfigLoad, MinimalConfigGetsTheDefaults) {
  auto loaded = parse(kValid);
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_TRUE(loaded.diagnostics.empty()) << dump(loaded.diagnostics);
  const Config& c = *loaded.config;
  EXPECT_EQ(c.store.timezone, "UTC");
  EXPECT_EQ(c.agent.data_dir, "/var/lib/storewatch");
  EXPECT_EQ(c.agent.control_socket, "/run/storewatch/control.sock");
  EXPECT_EQ(c.agent.log_level, log::Level::info);
  EXPECT_EQ(c.agent.max_concurrent_checks, 64);
  EXPECT_EQ(c.sync.broker, "tcp://127.0.0.1:1883");
  EXPECT_EQ(c.sync.topic_prefix, "storewatch/v1");
  EXPECT_EQ(c.sync.keepalive, Millis(30s));
  EXPECT_EQ(c.sync.batch_max_events, 100);
  EXPECT_EQ(c.sync.cert_warn_days, 21);
  ASSERT_EQ(c.probes.size(), 1u);
  const ProbeConfig& p = c.probes[0];
  EXPECT_EQ(p.name, "lan-switch");
  EXPECT_EQ(p.type, "tcp");
  EXPECT_EQ(p.interval, Millis(15s));
  EXPECT_EQ(p.timeout, Millis(3s));
  EXPECT_EQ(p.fail_after, 3);
  EXPECT_EQ(p.recover_after, 2);
  EXPECT_EQ(p.severity, Severity::medium);
  EXPECT_EQ(p.str("host"), "10.20.0.2");
  EXPECT_EQ(p.integer("port"), 22);
  EXPECT_EQ(p.where.line, 4);
  EXPECT_EQ(p.where.column, 1);
  EXPECT_EQ(c.files, std::vector<fs::path>{"test.toml"});
}

TEST(ConfigLoad, ReadsEveryKey) {
  auto loaded = parse(R"([store]
id = "store-0042"
name = "Springfield #42"
timezone = "America/Chicago"
trading_hours = "Mon-Sat 07:00-22:00"

[agent]
data_dir = "/srv/storewatch"
control_socket = "/run/sw.sock"
log_level = "debug"
max_concurrent_checks = 10000

[sync]
broker = "wss://mqtt.example.com:443/mqtt"
topic_prefix = "chain/storewatch/v1"
username = "store-0042"
keepalive = "1m"
reconnect_max = "10m"
batch_max_events = 10000
inflight_batches = 1000
ack_timeout = "45s"
cert_warn_days = 0

[[probe]]
name = "a"
type = "tcp"
host = "pos-01.store.example.com"
port = 65535
interval = "1h30m"
timeout = "500ms"
fail_after = 1000
recover_after = 1
severity = "info"
labels = { lane = "01", "kind.sub" = "pos" }

[[probe]]
name = "b"
type = "tcp"
host = "fe80::1"
port = 1
depends_on = ["a"]
)");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  const Config& c = *loaded.config;
  EXPECT_EQ(c.store.name, "Springfield #42");
  EXPECT_EQ(c.store.timezone, "America/Chicago");
  EXPECT_EQ(c.store.trading_hours, "Mon-Sat 07:00-22:00");
  EXPECT_EQ(c.agent.data_dir, "/srv/storewatch");
  EXPECT_EQ(c.agent.control_socket, "/run/sw.sock");
  EXPECT_EQ(c.agent.log_level, log::Level::debug);
  EXPECT_EQ(c.agent.max_concurrent_checks, 10000);
  EXPECT_EQ(c.sync.broker, "wss://mqtt.example.com:443/mqtt");
  EXPECT_EQ(c.sync.topic_prefix, "chain/storewatch/v1");
  EXPECT_EQ(c.sync.username, "store-0042");
  EXPECT_EQ(c.sync.keepalive, Millis(1min));
  EXPECT_EQ(c.sync.reconnect_max, Millis(10min));
  EXPECT_EQ(c.sync.batch_max_events, 10000);
  EXPECT_EQ(c.sync.inflight_batches, 1000);
  EXPECT_EQ(c.sync.ack_timeout, Millis(45s));
  EXPECT_EQ(c.sync.cert_warn_days, 0);
  const ProbeConfig* a = c.find_probe("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->interval, Millis(90min));
  EXPECT_EQ(a->timeout, Millis(500));
  EXPECT_EQ(a->fail_after, 1000);
  EXPECT_EQ(a->recover_after, 1);
  EXPECT_EQ(a->severity, Severity::info);
  EXPECT_EQ(a->labels, (std::map<std::string, std::string>{{"lane", "01"}, {"kind.sub", "pos"}}));
  const ProbeConfig* b = c.find_probe("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->depends_on, std::vector<std::string>{"a"});
  EXPECT_EQ(b->str("host"), "fe80::1");
  EXPECT_EQ(c.find_probe("c"), nullptr);
}

TEST(ConfigLoad, ProbeOptionAccessorsThrowOnProgrammingErrors) {
  auto loaded = parse(kValid);
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  const ProbeConfig& p = loaded.config->probes[0];
  EXPECT_TRUE(p.has("host"));
  EXPECT_FALSE(p.has("path"));
  EXPECT_THROW(static_cast<void>(p.str("path")), std::logic_error);
  EXPECT_THROW(static_cast<void>(p.str("port")), std::logic_error);
  EXPECT_THROW(static_cast<void>(p.integer("host")), std::logic_error);
  EXPECT_THROW(static_cast<void>(p.boolean("host")), std::logic_error);
  EXPECT_THROW(static_cast<void>(p.duration("host")), std::logic_error);
  EXPECT_THROW(static_cast<void>(p.strings("host")), std::logic_error);
}

// A probe type with a key of every kind, for the schema-driven part.
constexpr KeySpec kKitchenSinkKeys[] = {
    {"target", KeyKind::host, true, "", "device"},
    {"port", KeyKind::port, false, "9100", ""},
    {"retries", KeyKind::integer, false, "2", ""},
    {"strict", KeyKind::boolean, false, "false", ""},
    {"wait", KeyKind::duration, false, "3s", ""},
    {"path", KeyKind::string, false, "/health", ""},
    {"args", KeyKind::string_array, false, R"(["-v"])", ""},
    {"headers", KeyKind::string_table, false, R"({ accept = "json" })", ""},
    {"cert", KeyKind::file, false, "", ""},
    {"note", KeyKind::string, false, "", ""},
    {"ratio", KeyKind::number, false, "0.5", ""},
    {"record", KeyKind::choice, false, "A", "", "A|AAAA|MX"},
    {"run", KeyKind::command, false, "", ""},
};

std::vector<std::string> validate_sink(const ProbeConfig& p) {
  if (p.integer("retries") > 5 && p.boolean("strict")) return {"strict allows at most 5 retries"};
  return {};
}
constexpr ProbeTypeSchema kKitchenSink[] = {{"sink", kKitchenSinkKeys, &validate_sink}};

Loaded<Config> parse_sink(std::string_view probe_lines) {
  return load_string(
      std::string("[store]\nid = \"s\"\n\n[[probe]]\nname = \"p\"\ntype = \"sink\"\n") +
          std::string(probe_lines) + "\n",
      "sink.toml", kKitchenSink);
}

TEST(ConfigLoad, ProbeTypeDefaultsAreParsedAndFilledIn) {
  auto loaded = parse_sink("target = \"printer-01\"");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  const ProbeConfig& p = loaded.config->probes[0];
  EXPECT_EQ(p.integer("port"), 9100);
  EXPECT_EQ(p.integer("retries"), 2);
  EXPECT_FALSE(p.boolean("strict"));
  EXPECT_EQ(p.duration("wait"), Millis(3s));
  EXPECT_EQ(p.str("path"), "/health");
  EXPECT_EQ(p.strings("args"), std::vector<std::string>{"-v"});
  using Table = std::map<std::string, std::string>;
  EXPECT_EQ(std::get<Table>(p.options.at("headers")), (Table{{"accept", "json"}}));
  EXPECT_FALSE(p.has("cert"));
  EXPECT_FALSE(p.has("note"));
  EXPECT_DOUBLE_EQ(p.number("ratio"), 0.5);
  EXPECT_EQ(p.str("record"), "A");
}

TEST(ConfigLoad, NumberKeysTakeIntegersAndFloats) {
  auto loaded = parse_sink("target = \"p\"\nratio = 3");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_DOUBLE_EQ(loaded.config->probes[0].number("ratio"), 3.0);
  auto bad = only_error(parse_sink("target = \"p\"\nratio = \"3\""));
  EXPECT_THAT(bad.message, HasSubstr("ratio: expected a number, got a string"));
  auto inf = only_error(parse_sink("target = \"p\"\nratio = inf"));
  EXPECT_THAT(inf.message, HasSubstr("ratio: must be a finite number"));
}

TEST(ConfigLoad, ChoiceKeysListTheAllowedValues) {
  auto loaded = parse_sink("target = \"p\"\nrecord = \"MX\"");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->probes[0].str("record"), "MX");
  auto d = only_error(parse_sink("target = \"p\"\nrecord = \"TXT\""));
  EXPECT_THAT(d.message, HasSubstr("record: \"TXT\" is not one of A,AAAA,MX"));
  EXPECT_EQ(d.where.line, 8);
}

TEST(ConfigLoad, CommandsMissingHereAreWarningsNotErrors) {
  auto missing = parse_sink("target = \"p\"\nrun = [\"/no/such/check_pos\", \"-w\", \"1\"]");
  ASSERT_TRUE(missing.ok()) << dump(missing.diagnostics);
  ASSERT_EQ(warnings(missing.diagnostics).size(), 1u) << dump(missing.diagnostics);
  EXPECT_THAT(warnings(missing.diagnostics)[0].message,
              HasSubstr("run: /no/such/check_pos does not exist on this machine"));
  EXPECT_EQ(missing.config->probes[0].strings("run"),
            (std::vector<std::string>{"/no/such/check_pos", "-w", "1"}));

  TempDir dir;
  test::write_file(dir / "not-executable", "#!/bin/sh\n");
  auto plain =
      parse_sink(fmt::format("target = \"p\"\nrun = [\"{}\"]", (dir / "not-executable").string()));
  ASSERT_EQ(warnings(plain.diagnostics).size(), 1u) << dump(plain.diagnostics);
  EXPECT_THAT(warnings(plain.diagnostics)[0].message, HasSubstr("is not an executable file"));

  // A bare name is looked up when the probe runs; /bin/sh exists everywhere.
  for (const char* ok : {"check_tcp", "/bin/sh"}) {
    auto fine = parse_sink(fmt::format("target = \"p\"\nrun = [\"{}\"]", ok));
    EXPECT_TRUE(warnings(fine.diagnostics).empty()) << dump(fine.diagnostics);
  }
}

TEST(ConfigLoad, TypeValidatorRunsOnlyWhenEveryKeyIsValid) {
  auto d = only_error(parse_sink("target = \"p\"\nretries = 9\nstrict = true"));
  EXPECT_EQ(to_string(d), "sink.toml:4:1: error: [[probe]] \"p\": strict allows at most 5 retries");
  // A key error already explains the probe; the validator does not pile on.
  auto loaded = parse_sink("target = \"p\"\nretries = 9\nstrict = true\nport = 0");
  EXPECT_EQ(errors(loaded.diagnostics).size(), 1u) << dump(loaded.diagnostics);
}

TEST(ConfigLoad, ProbeTypeKeysAreValidatedByKind) {
  auto loaded = parse_sink(R"(target = "printer-01"
port = 70000
retries = "2"
strict = "yes"
wait = "3 s"
path = 1
args = ["-v", 2]
headers = { accept = 1 }
cert = "relative.pem")");
  const auto e = errors(loaded.diagnostics);
  ASSERT_EQ(e.size(), 8u) << dump(loaded.diagnostics);
  const std::string all = dump(loaded.diagnostics);
  EXPECT_THAT(all, HasSubstr("port: must be between 1 and 65535, got 70000"));
  EXPECT_THAT(all,
              HasSubstr("retries: expected an integer, got a string (write 2 without quotes)"));
  EXPECT_THAT(all, HasSubstr("strict: expected a boolean (true or false), got a string"));
  EXPECT_THAT(all, HasSubstr("wait: \"3 s\" is not a duration"));
  EXPECT_THAT(all, HasSubstr("path: expected a string, got an integer"));
  EXPECT_THAT(all, HasSubstr("args[1]: expected a string, got an integer"));
  EXPECT_THAT(all, HasSubstr("headers.accept: expected a string, got an integer"));
  EXPECT_THAT(all, HasSubstr("cert: must be an absolute path"));
}

TEST(ConfigLoad, ProbeTypeRequiredKeyMissingIsReportedAtTheProbe) {
  auto d = only_error(parse_sink("port = 9100"));
  EXPECT_EQ(to_string(d), "sink.toml:4:1: error: [[probe]] \"p\": missing required key \"target\"");
}

TEST(ConfigLoad, MissingTcpKeysAreErrors) {
  auto loaded = parse("[store]\nid = \"s\"\n[[probe]]\nname = \"p\"\ntype = \"tcp\"\n");
  const auto e = errors(loaded.diagnostics);
  ASSERT_EQ(e.size(), 2u) << dump(loaded.diagnostics);
  EXPECT_THAT(dump(e), HasSubstr("missing required key \"host\""));
  EXPECT_THAT(dump(e), HasSubstr("missing required key \"port\""));
}

TEST(ConfigLoad, ProbeFileKeyMissingOnThisMachineIsAWarning) {
  auto loaded = parse_sink("target = \"p\"\ncert = \"/nonexistent/storewatch/cert.pem\"");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  ASSERT_EQ(warnings(loaded.diagnostics).size(), 1u);
  EXPECT_THAT(loaded.diagnostics[0].message, HasSubstr("does not exist on this machine"));
  EXPECT_EQ(loaded.config->probes[0].str("cert"), "/nonexistent/storewatch/cert.pem");
}

// ---------------------------------------------------------------------------
// Unknown keys and tables

TEST(ConfigLoad, UnknownKeyInEverySectionIsAnError) {
  struct Case {
    std::string text;
    std::string scope;
  };
  const std::string probe = "[[probe]]\nname = \"p\"\ntype = \"tcp\"\nhost = \"h\"\nport = 1\n";
  const Case cases[] = {
      {"[store]\nid = \"s\"\ncolour = \"red\"\n", "[store]"},
      {"[store]\nid = \"s\"\n[agent]\ncolour = \"red\"\n", "[agent]"},
      {"[store]\nid = \"s\"\n[sync]\ncolour = \"red\"\n", "[sync]"},
      {"[store]\nid = \"s\"\n" + probe + "colour = \"red\"\n", "[[probe]] \"p\""},
      {"[store]\nid = \"s\"\n[incidents]\ncolour = \"red\"\n", "[incidents]"},
      {"[store]\nid = \"s\"\n[[remediation]]\nname = \"r\"\ntype = \"http\"\n"
       "url = \"http://h/\"\ncolour = \"red\"\n",
       "[[remediation]] \"r\""},
      {"[store]\nid = \"s\"\n" + probe +
           "[[silence]]\nmatch = \"p\"\nschedule = \"daily 02:00-03:00\"\nreason = \"x\"\n"
           "colour = \"red\"\n",
       "[[silence]] #1"},
  };
  for (const Case& c : cases) {
    auto d = only_error(c.text);
    EXPECT_THAT(d.message, HasSubstr(c.scope + ": unknown key \"colour\" (known keys: "));
    EXPECT_EQ(d.where.column, 1) << c.text;
    EXPECT_GT(d.where.line, 1) << c.text;
  }
}

TEST(ConfigLoad, UnknownProbeTypeKeyListsTheTypesKeys) {
  auto d = only_error(with_probe_keys("path = \"/health\""));
  EXPECT_THAT(d.message, HasSubstr("[[probe]] \"lan-switch\": unknown key \"path\""));
  EXPECT_THAT(d.message, HasSubstr("host, port"));
  EXPECT_EQ(d.where.line, 9);
  EXPECT_EQ(d.where.column, 1);
}

TEST(ConfigLoad, UnknownTableIsAnError) {
  auto d = only_error(std::string(kValid) + "\n[[alert]]\nname = \"ops\"\n");
  EXPECT_THAT(d.message, HasSubstr("unknown table [[alert]]"));
  EXPECT_THAT(d.message,
              HasSubstr("[store], [agent], [sync], [[probe]], [incidents], [[remediation]], "
                        "[[silence]], [[notify]]"));
  EXPECT_EQ(d.where.line, 10);
  d = only_error(std::string(kValid) + "\n[alert]\nname = \"ops\"\n");
  EXPECT_THAT(d.message, HasSubstr("unknown table [alert]"));
  d = only_error("colour = \"red\"\n" + std::string(kValid));
  EXPECT_THAT(d.message, HasSubstr("unknown top-level key \"colour\""));
  EXPECT_EQ(d.where.line, 1);
}

TEST(ConfigLoad, SectionOfTheWrongShapeIsAnError) {
  auto d = only_error("[store]\nid = \"s\"\n[probe]\nname = \"p\"\n");
  EXPECT_THAT(d.message, HasSubstr("probe must be an array of tables: write [[probe]]"));
  d = only_error("[[store]]\nid = \"s\"\n");
  EXPECT_THAT(d.message, HasSubstr("store must be a table: write [store]"));
  d = only_error("store = \"s\"\n");
  EXPECT_THAT(d.message, HasSubstr("got a string"));
}

// ---------------------------------------------------------------------------
// Types and values

TEST(ConfigLoad, WrongTypeNamesExpectedAndActual) {
  auto d = only_error(with_probe_keys("interval = 15"));
  EXPECT_THAT(d.message,
              HasSubstr("interval: expected a duration string like \"15s\", got an integer"));
  d = only_error("[store]\nid = 42\n");
  EXPECT_THAT(d.message, HasSubstr("[store] id: expected a string, got an integer"));
  d = only_error(std::string(kValid) + "[agent]\nmax_concurrent_checks = 1.5\n");
  EXPECT_THAT(d.message, HasSubstr("expected an integer, got a float"));
  d = only_error(with_probe_keys("labels = \"lane-01\""));
  EXPECT_THAT(d.message, HasSubstr("labels: expected a table of strings"));
  d = only_error(with_probe_keys("depends_on = \"x\""));
  EXPECT_THAT(d.message, HasSubstr("depends_on: expected an array of strings, got a string"));
  d = only_error(std::string(kValid) + "[sync]\nusername = 2024-01-01\n");
  EXPECT_THAT(d.message, HasSubstr("expected a string, got a date"));
}

TEST(ConfigLoad, QuotedPortGetsAHint) {
  const std::string text =
      "[store]\nid = \"s\"\n[[probe]]\nname = \"p\"\ntype = \"tcp\"\n"
      "host = \"h\"\nport = \"8080\"\n";
  auto d = only_error(text);
  EXPECT_THAT(d.message, HasSubstr("port: expected an integer, got a string (write 8080 without "
                                   "quotes)"));
  EXPECT_EQ(d.where.line, 7);
  EXPECT_EQ(d.where.column, 8);
}

TEST(ConfigLoad, BadDurationSaysWhatIsWrongWithAnExample) {
  struct Case {
    std::string_view text;
    std::string_view says;
  };
  for (const Case& c :
       {Case{"15", "it has no unit; write e.g. \"15s\""},
        Case{"1.5s", "fractions are not supported"}, Case{"-5s", "must not be negative"},
        Case{"", "it is empty"}, Case{"fast", "e.g. \"15s\""},
        Case{"15 s", "must not contain spaces"}, Case{"5sec", "e.g. \"15s\""}}) {
    auto d = only_error(with_probe_keys(fmt::format("interval = \"{}\"", c.text)));
    EXPECT_THAT(d.message, HasSubstr(fmt::format("interval: \"{}\" is not a duration", c.text)));
    EXPECT_THAT(d.message, HasSubstr(c.says)) << c.text;
    EXPECT_EQ(d.where.line, 9);
    EXPECT_EQ(d.where.column, 12);
  }
}

TEST(ConfigLoad, IntervalMayBeAsShortAs100ms) {
  auto loaded = parse(with_probe_keys("interval = \"100ms\"\ntimeout = \"50ms\""));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->probes[0].interval, Millis(100));
  auto d = only_error(with_probe_keys("interval = \"99ms\"\ntimeout = \"50ms\""));
  EXPECT_THAT(d.message, HasSubstr("interval: must be at least 100ms, got \"99ms\""));
  EXPECT_EQ(d.where.line, 9);
}

TEST(ConfigLoad, TimeoutMustBePositiveAndLongerThanIntervalWarns) {
  auto d = only_error(with_probe_keys("timeout = \"0s\""));
  EXPECT_THAT(d.message, HasSubstr("timeout: must be longer than 0s"));
  auto loaded = parse(with_probe_keys("interval = \"1s\"\ntimeout = \"5s\""));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  ASSERT_EQ(loaded.diagnostics.size(), 1u);
  EXPECT_EQ(loaded.diagnostics[0].kind, Diagnostic::Kind::warning);
  EXPECT_THAT(loaded.diagnostics[0].message, HasSubstr("5s is longer than the interval 1s"));
  EXPECT_EQ(loaded.diagnostics[0].where.line, 10);
}

TEST(ConfigLoad, PortOutOfRangeIsAnError) {
  for (int port : {0, 65536, -1}) {
    const std::string text =
        "[store]\nid = \"s\"\n[[probe]]\nname = \"p\"\ntype = \"tcp\"\n"
        "host = \"h\"\nport = " +
        std::to_string(port) + "\n";
    auto d = only_error(text);
    EXPECT_THAT(d.message,
                HasSubstr("port: must be between 1 and 65535, got " + std::to_string(port)));
    EXPECT_EQ(to_string(d.where), "test.toml:7:8");
  }
  for (int port : {1, 65535}) {
    const std::string text =
        "[store]\nid = \"s\"\n[[probe]]\nname = \"p\"\ntype = \"tcp\"\n"
        "host = \"h\"\nport = " +
        std::to_string(port) + "\n";
    EXPECT_TRUE(parse(text).ok()) << port;
  }
}

TEST(ConfigLoad, HostMustBeANameOrAnAddress) {
  for (std::string_view good : {"10.20.0.2", "printer-01", "pos.store-42.example.com", "::1",
                                "fe80::1%eth0", "2001:db8::7", "localhost."}) {
    auto loaded = parse(fmt::format(
        "[store]\nid = \"s\"\n[[probe]]\nname = \"p\"\ntype = \"tcp\"\nhost = \"{}\"\nport = 1\n",
        good));
    EXPECT_TRUE(loaded.ok()) << good << "\n" << dump(loaded.diagnostics);
  }
  for (std::string_view bad : {"", "printer 01", "http://10.20.0.2/", "10.20.0.300", "10.20.0",
                               "-printer", "a..b", "fe80::zz", "pos_01!"}) {
    auto loaded = parse(fmt::format(
        "[store]\nid = \"s\"\n[[probe]]\nname = \"p\"\ntype = \"tcp\"\nhost = \"{}\"\nport = 1\n",
        bad));
    const Diagnostic d = only_error(loaded);
    EXPECT_THAT(d.message, HasSubstr("host: ")) << bad;
    EXPECT_EQ(to_string(d.where), "test.toml:6:8") << bad;
  }
}

TEST(ConfigLoad, BadOrUnsafeStoreIdIsAnError) {
  const std::string long_id(65, 'a');
  for (const std::string& bad : {std::string("../etc"), long_id, std::string(), std::string("a b"),
                                 std::string("store/0042"), std::string("store.42"),
                                 std::string("st#re"), std::string("store+1")}) {
    auto d = only_error(fmt::format("[store]\nid = \"{}\"\n", bad));
    EXPECT_THAT(d.message, HasSubstr("is not a valid store id: use 1 to 64 letters, digits"))
        << bad;
    EXPECT_EQ(to_string(d.where), "test.toml:2:6");
  }
  EXPECT_TRUE(parse(fmt::format("[store]\nid = \"{}\"\n", std::string(64, 'a'))).ok());
  EXPECT_TRUE(parse("[store]\nid = \"Store_0042-b\"\n").ok());
}

TEST(ConfigLoad, BadOrUnsafeProbeNameIsAnError) {
  for (const std::string& bad : {std::string("../etc"), std::string(65, 'p'), std::string(),
                                 std::string("a b"), std::string("lane/01")}) {
    auto d = only_error(fmt::format(
        "[store]\nid = \"s\"\n[[probe]]\nname = \"{}\"\ntype = \"tcp\"\nhost = \"h\"\nport = 1\n",
        bad));
    EXPECT_THAT(d.message, HasSubstr("[[probe]] #1 name: "));
    EXPECT_THAT(d.message, HasSubstr("is not a valid probe name")) << bad;
    EXPECT_EQ(to_string(d.where), "test.toml:4:8");
  }
  EXPECT_TRUE(parse(fmt::format("[store]\nid = \"s\"\n[[probe]]\nname = \"{}\"\ntype = \"tcp\"\n"
                                "host = \"h\"\nport = 1\n",
                                std::string(64, 'p')))
                  .ok());
}

TEST(ConfigLoad, MissingRequiredKeysAreReported) {
  // No [store] at all: the file's start, as a place an editor can jump to.
  auto d = only_error("[agent]\nlog_level = \"info\"\n");
  EXPECT_EQ(to_string(d), "test.toml:1:1: error: [store]: missing required key \"id\"");
  d = only_error("");
  EXPECT_EQ(to_string(d), "test.toml:1:1: error: [store]: missing required key \"id\"");
  // A [store] without the key: its header.
  d = only_error("[agent]\nlog_level = \"info\"\n\n  [store]\nname = \"x\"\n");
  EXPECT_EQ(to_string(d), "test.toml:4:3: error: [store]: missing required key \"id\"");
  auto loaded = parse("[store]\nid = \"s\"\n[[probe]]\nhost = \"h\"\nport = 1\n");
  const auto e = errors(loaded.diagnostics);
  ASSERT_EQ(e.size(), 2u) << dump(loaded.diagnostics);
  EXPECT_EQ(to_string(e[0]), "test.toml:3:1: error: [[probe]] #1: missing required key \"name\"");
  EXPECT_EQ(to_string(e[1]), "test.toml:3:1: error: [[probe]] #1: missing required key \"type\"");
}

TEST(ConfigLoad, UnknownProbeTypeListsTheKnownTypes) {
  // Not a type anyone will add; the list grows with every type registered.
  auto d =
      only_error("[store]\nid = \"s\"\n[[probe]]\nname = \"p\"\ntype = \"fax\"\nhost = \"h\"\n");
  // Every registered type is listed, whichever types a build has.
  std::string known;
  for (const auto& schema : probes::schemas()) {
    known += (known.empty() ? "" : ", ") + std::string(schema.type);
  }
  EXPECT_EQ(to_string(d),
            "test.toml:5:8: error: [[probe]] \"p\" type: unknown probe type \"fax\" "
            "(known types: " +
                known + ")");
}

TEST(ConfigLoad, DuplicateProbeNameSaysWhereTheFirstIs) {
  auto d =
      only_error(std::string(kValid) +
                 "\n[[probe]]\nname = \"lan-switch\"\ntype = \"tcp\"\nhost = \"h\"\nport = 1\n");
  EXPECT_EQ(to_string(d.where), "test.toml:11:8");
  EXPECT_THAT(d.message, HasSubstr("duplicate probe name; the first is at test.toml:5:8"));
}

TEST(ConfigLoad, StreaksMustBeAtLeastOne) {
  for (std::string_view key : {"fail_after", "recover_after"}) {
    for (int bad : {0, -1, 1001}) {
      auto d = only_error(with_probe_keys(fmt::format("{} = {}", key, bad)));
      EXPECT_THAT(d.message,
                  HasSubstr(fmt::format("{}: must be between 1 and 1000, got {}", key, bad)));
      EXPECT_EQ(d.where.line, 9);
    }
    EXPECT_TRUE(parse(with_probe_keys(fmt::format("{} = 1", key))).ok());
  }
}

TEST(ConfigLoad, BadSeverityIsAnError) {
  auto d = only_error(with_probe_keys("severity = \"urgent\""));
  EXPECT_THAT(d.message, HasSubstr("severity: \"urgent\" is not a severity: use critical, high, "
                                   "medium, low or info"));
  EXPECT_EQ(to_string(d.where), "test.toml:9:12");
  auto loaded = parse(with_probe_keys("severity = \"critical\""));
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded.config->probes[0].severity, Severity::critical);
}

TEST(ConfigLoad, BadLogLevelIsAnError) {
  auto d = only_error("[store]\nid = \"store-0042\"\n\n[agent]\nlog_level = \"verbose\"\n");
  EXPECT_EQ(to_string(d),
            "test.toml:5:13: error: [agent] log_level: \"verbose\" is not a log "
            "level: use debug, info, warn or error");
}

TEST(ConfigLoad, AgentPathsMustBeAbsolute) {
  auto d = only_error(std::string(kValid) + "[agent]\ndata_dir = \"var/lib/storewatch\"\n");
  EXPECT_THAT(d.message,
              HasSubstr("[agent] data_dir: must be an absolute path, got \"var/lib/storewatch\""));
  EXPECT_EQ(to_string(d.where), "test.toml:10:12");
  d = only_error(std::string(kValid) + "[agent]\ncontrol_socket = \"control.sock\"\n");
  EXPECT_THAT(d.message, HasSubstr("control_socket: must be an absolute path"));
  d = only_error(std::string(kValid) + "[agent]\ncontrol_socket = \"/" + std::string(120, 's') +
                 "\"\n");
  EXPECT_THAT(d.message, HasSubstr("a unix socket path holds at most 107"));
}

TEST(ConfigLoad, MaxConcurrentChecksRange) {
  for (int bad : {0, 10001}) {
    auto d =
        only_error(std::string(kValid) + fmt::format("[agent]\nmax_concurrent_checks = {}\n", bad));
    EXPECT_THAT(d.message, HasSubstr("must be between 1 and 10000"));
  }
}

TEST(ConfigLoad, BadBrokerUriIsAnError) {
  for (std::string_view bad :
       {"127.0.0.1:1883", "mqtt://broker:1883", "tcp://", "tcp://:1883", "tcp://broker:0",
        "tcp://broker:65536", "tcp://broker:x", "tcp://broker:", "tcp://broker/mqtt",
        "ssl://user:pw@broker:8883", "tcp://bro ker:1883", "tcp://[::1:1883", "tcp://::1:1883",
        "tcp://[broker]:1883"}) {
    auto d = only_error(std::string(kValid) + fmt::format("[sync]\nbroker = \"{}\"\n", bad));
    EXPECT_THAT(d.message, HasSubstr("[sync] broker: ")) << bad;
    EXPECT_EQ(to_string(d.where), "test.toml:10:10") << bad;
  }
  for (std::string_view good :
       {"tcp://127.0.0.1:1883", "tcp://broker", "ssl://mqtt.hq.example.com:8883",
        "ws://broker:80/mqtt", "wss://broker/mqtt", "tcp://[::1]:1883", "wss://[2001:db8::1]"}) {
    auto loaded = parse(std::string(kValid) + fmt::format("[sync]\nbroker = \"{}\"\n", good));
    EXPECT_TRUE(loaded.ok()) << good << "\n" << dump(loaded.diagnostics);
  }
}

TEST(ConfigLoad, BadTopicPrefixIsAnError) {
  for (std::string_view bad : {"", "storewatch/+", "storewatch/#", "/storewatch", "storewatch/",
                               "store//watch", "$SYS/storewatch"}) {
    auto d = only_error(std::string(kValid) + fmt::format("[sync]\ntopic_prefix = \"{}\"\n", bad));
    EXPECT_THAT(d.message, HasSubstr("[sync] topic_prefix: ")) << bad;
  }
}

TEST(ConfigLoad, SyncNumbersAndDurationsAreChecked) {
  auto loaded = parse(std::string(kValid) + R"([sync]
keepalive = "0s"
reconnect_max = "0ms"
ack_timeout = 30
batch_max_events = 0
inflight_batches = 1001
cert_warn_days = -1
)");
  const auto e = errors(loaded.diagnostics);
  ASSERT_EQ(e.size(), 6u) << dump(loaded.diagnostics);
  const std::string all = dump(e);
  EXPECT_THAT(all, HasSubstr("keepalive: must be at least 1s"));
  EXPECT_THAT(all, HasSubstr("reconnect_max: must be longer than 0s"));
  EXPECT_THAT(all, HasSubstr("ack_timeout: expected a duration string"));
  EXPECT_THAT(all, HasSubstr("batch_max_events: must be between 1 and 10000, got 0"));
  EXPECT_THAT(all, HasSubstr("inflight_batches: must be between 1 and 1000, got 1001"));
  EXPECT_THAT(all, HasSubstr("cert_warn_days: must be between 0 and 3650, got -1"));
}

TEST(ConfigLoad, MissingSecretFileIsAWarningAndStillOk) {
  TempDir dir;
  const fs::path password = dir.write("mqtt-password", "s3cret\n");
  auto loaded = parse(std::string(kValid) + fmt::format(R"([sync]
broker = "ssl://mqtt.example.com:8883"
ca_file = "/nonexistent/storewatch/ca.pem"
username = "store-0042"
password_file = "{}"
)",
                                                        password.string()));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  ASSERT_EQ(loaded.diagnostics.size(), 1u) << dump(loaded.diagnostics);
  const Diagnostic& w = loaded.diagnostics[0];
  EXPECT_EQ(w.kind, Diagnostic::Kind::warning);
  EXPECT_EQ(to_string(w),
            "test.toml:11:11: warning: [sync] ca_file: "
            "/nonexistent/storewatch/ca.pem does not exist on this machine");
  EXPECT_EQ(loaded.config->sync.ca_file, "/nonexistent/storewatch/ca.pem");
  EXPECT_EQ(loaded.config->sync.password_file, password);
}

TEST(ConfigLoad, SecretFileMustBeAnAbsolutePathToAFile) {
  TempDir dir;
  auto d = only_error(std::string(kValid) + "[sync]\npassword_file = \"secrets/mqtt\"\n");
  EXPECT_THAT(d.message, HasSubstr("password_file: must be an absolute path"));
  d = only_error(std::string(kValid) +
                 fmt::format("[sync]\nkey_file = \"{}\"\n", dir.path().string()));
  EXPECT_THAT(d.message, HasSubstr("is a directory, not a file"));
  auto loaded = parse(std::string(kValid) + "[sync]\nca_file = \"\"\n");
  EXPECT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
}

TEST(ConfigLoad, BadTimezoneIsAnError) {
  auto d = only_error("[store]\nid = \"s\"\ntimezone = \"../../etc/passwd\"\n");
  EXPECT_THAT(d.message, HasSubstr("is not a time zone name"));
  EXPECT_TRUE(parse("[store]\nid = \"s\"\ntimezone = \"America/Chicago\"\n").ok());
}

TEST(ConfigLoad, LabelsNeedSafeKeysAndStringValues) {
  auto loaded = parse(with_probe_keys("labels = { \"lane 01\" = \"x\", kind = 3 }"));
  const auto e = errors(loaded.diagnostics);
  ASSERT_EQ(e.size(), 2u) << dump(loaded.diagnostics);
  EXPECT_THAT(dump(e), HasSubstr("\"lane 01\" is not a valid key"));
  EXPECT_THAT(dump(e), HasSubstr("labels.kind: expected a string, got an integer"));
}

// ---------------------------------------------------------------------------
// depends_on

std::string two_probes(std::string_view a_deps, std::string_view b_deps) {
  return fmt::format(R"([store]
id = "s"

[[probe]]
name = "a"
type = "tcp"
host = "h"
port = 1
depends_on = {}

[[probe]]
name = "b"
type = "tcp"
host = "h"
port = 1
depends_on = {}
)",
                     a_deps, b_deps);
}

TEST(ConfigLoad, DependsOnUnknownProbeIsAnError) {
  auto d = only_error(two_probes("[]", R"(["a", "lan-switch"])"));
  EXPECT_EQ(to_string(d),
            "test.toml:16:20: error: [[probe]] \"b\" depends_on: unknown probe \"lan-switch\"");
}

TEST(ConfigLoad, DependsOnItselfIsAnError) {
  auto d = only_error(two_probes(R"(["a"])", "[]"));
  EXPECT_EQ(to_string(d),
            "test.toml:9:15: error: [[probe]] \"a\" depends_on: a probe cannot depend on itself");
}

TEST(ConfigLoad, DependsOnTwiceIsAnError) {
  auto d = only_error(two_probes("[]", R"(["a", "a"])"));
  EXPECT_THAT(d.message, HasSubstr("\"a\" is listed twice"));
}

TEST(ConfigLoad, DependencyCycleIsAnError) {
  auto d = only_error(two_probes(R"(["b"])", R"(["a"])"));
  EXPECT_EQ(to_string(d),
            "test.toml:16:15: error: [[probe]] \"b\" depends_on: dependency cycle: "
            "a -> b -> a");
}

TEST(ConfigLoad, LongerDependencyCycleIsReportedOnce) {
  std::string text = "[store]\nid = \"s\"\n";
  for (auto [name, dep] :
       {std::pair{"a", "c"}, std::pair{"b", "a"}, std::pair{"c", "b"}, std::pair{"d", "a"}}) {
    text += fmt::format(
        "[[probe]]\nname = \"{}\"\ntype = \"tcp\"\nhost = \"h\"\nport = 1\ndepends_on = [\"{}\"]\n",
        name, dep);
  }
  auto d = only_error(text);
  EXPECT_THAT(d.message, HasSubstr("dependency cycle: a -> c -> b -> a"));
}

TEST(ConfigLoad, DependencyChainWithoutCycleIsFine) {
  auto loaded = parse(two_probes("[]", R"(["a"])"));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
}

// ---------------------------------------------------------------------------
// Many errors at once, and their exact positions

TEST(ConfigLoad, EveryErrorInAFileIsReportedInOrder) {
  auto loaded = parse(R"([store]
id = "a b"
colour = "red"

[agent]
data_dir = "relative"
log_level = "loud"

[[probe]]
name = "p"
type = "tcp"
host = "h"
port = 0
interval = "5"
severity = "urgent"
depends_on = ["nope"]

[[alert]]
name = "ops"
)");
  EXPECT_FALSE(loaded.ok());
  const auto e = errors(loaded.diagnostics);
  ASSERT_EQ(e.size(), 9u) << dump(loaded.diagnostics);
  const std::vector<std::pair<int, int>> expected = {{2, 6},   {3, 1},   {6, 12},  {7, 13}, {13, 8},
                                                     {14, 12}, {15, 12}, {16, 15}, {18, 3}};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(e[i].where.line, expected[i].first) << dump(e);
    EXPECT_EQ(e[i].where.column, expected[i].second) << dump(e);
  }
  EXPECT_THAT(dump(e), HasSubstr("unknown table [[alert]]"));
}

// ---------------------------------------------------------------------------
// Drop-ins

TEST(ConfigLoad, DropInsOverrideKeysAndAppendProbes) {
  TempDir dir;
  const fs::path main = dir.write("storewatch.toml", std::string(kValid) + R"(
[agent]
log_level = "info"
data_dir = "/var/lib/storewatch"

[sync]
broker = "ssl://mqtt.hq.example.com:8883"
)");
  const fs::path second = dir.write("conf.d/20-lanes.toml", R"([[probe]]
name = "lane-01-pos"
type = "tcp"
host = "10.20.1.11"
port = 8080
depends_on = ["lan-switch"]
)");
  const fs::path first = dir.write("conf.d/10-demo.toml", R"([sync]
broker = "tcp://127.0.0.1:18830"

[agent]
log_level = "debug"
)");
  dir.write("conf.d/README", "not toml, ignored");
  dir.write("conf.d/.hidden.toml", "not toml either");
  auto loaded = load(main, {.conf_dir = std::nullopt, .probe_types = probes::schemas()});
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  const Config& c = *loaded.config;
  EXPECT_EQ(c.files, (std::vector<fs::path>{main, first, second}));
  EXPECT_EQ(c.sync.broker, "tcp://127.0.0.1:18830");
  EXPECT_EQ(c.agent.log_level, log::Level::debug);
  EXPECT_EQ(c.agent.data_dir, "/var/lib/storewatch");
  ASSERT_EQ(c.probes.size(), 2u);
  EXPECT_EQ(c.probes[0].name, "lan-switch");
  EXPECT_EQ(c.probes[1].name, "lane-01-pos");
  EXPECT_EQ(c.probes[1].where.file, second.string());
}

TEST(ConfigLoad, DiagnosticsPointAtTheFileThatHoldsTheValue) {
  TempDir dir;
  const fs::path main = dir.write("storewatch.toml", kValid);
  const fs::path drop_in = dir.write("conf.d/50-local.toml", R"([agent]
log_level = "loud"

[[probe]]
name = "lan-switch"
type = "tcp"
host = "10.20.0.3"
port = 22
)");
  auto loaded = load(main, {.conf_dir = std::nullopt, .probe_types = probes::schemas()});
  const auto e = errors(loaded.diagnostics);
  ASSERT_EQ(e.size(), 2u) << dump(loaded.diagnostics);
  EXPECT_EQ(to_string(e[0].where), drop_in.string() + ":2:13");
  EXPECT_EQ(to_string(e[1].where), drop_in.string() + ":5:8");
  EXPECT_THAT(e[1].message,
              HasSubstr("duplicate probe name; the first is at " + main.string() + ":5:8"));
}

TEST(ConfigLoad, ExplicitConfDirAndSyntaxErrorInADropIn) {
  TempDir dir;
  const fs::path main = dir.write("etc/storewatch.toml", kValid);
  const fs::path broken = dir.write("drop/a.toml", "[agent\n");
  dir.write("drop/b.toml", "[sync]\nbroker = \"x\"\n");
  auto loaded = load(main, {.conf_dir = dir.path() / "drop", .probe_types = probes::schemas()});
  ASSERT_EQ(loaded.diagnostics.size(), 1u) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.diagnostics[0].where.file, broken.string());
  EXPECT_EQ(loaded.diagnostics[0].where.line, 1);
  EXPECT_FALSE(loaded.ok());
}

TEST(ConfigLoad, MissingConfDirIsFineAndNothingIsCreated) {
  TempDir dir;
  const fs::path data = dir.path() / "data";
  const fs::path main =
      dir.write("storewatch.toml",
                std::string(kValid) + fmt::format("[agent]\ndata_dir = \"{}\"\ncontrol_socket = "
                                                  "\"{}/run/control.sock\"\n",
                                                  data.string(), dir.path().string()));
  auto loaded = load(main, {.conf_dir = dir.path() / "nope.d", .probe_types = probes::schemas()});
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_FALSE(fs::exists(dir.path() / "nope.d"));
  EXPECT_FALSE(fs::exists(dir.path() / "conf.d"));
  EXPECT_FALSE(fs::exists(data));
  EXPECT_FALSE(fs::exists(dir.path() / "run"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

TEST(ConfigLoad, ConfigIsSetOnlyWithoutErrors) {
  auto loaded = parse(std::string(kValid) + "[sync]\nca_file = \"/nonexistent/ca.pem\"\n");
  EXPECT_TRUE(loaded.ok());
  EXPECT_EQ(warnings(loaded.diagnostics).size(), 1u);
  loaded =
      parse(std::string(kValid) + "[sync]\nca_file = \"/nonexistent/ca.pem\"\nkeepalive = 1\n");
  EXPECT_FALSE(loaded.ok());
  EXPECT_FALSE(loaded.config.has_value());
  EXPECT_EQ(loaded.diagnostics.size(), 2u);
}

// ---------------------------------------------------------------------------
// HQ

TEST(ConfigLoadHq, ValidConfig) {
  auto loaded = load_hq_string(R"([hq]
broker = "ssl://mqtt.hq.example.com:8883"
topic_prefix = "storewatch/v1"
database = "/var/lib/storewatch-hq/hq.db"
share_group = "storewatch-hq"
client_id = "hq-worker-1"
keepalive = "1m"
)",
                               "hq.toml");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  const HqConfig& h = *loaded.config;
  EXPECT_EQ(h.broker, "ssl://mqtt.hq.example.com:8883");
  EXPECT_EQ(h.database, "/var/lib/storewatch-hq/hq.db");
  EXPECT_EQ(h.share_group, "storewatch-hq");
  EXPECT_EQ(h.client_id, "hq-worker-1");
  EXPECT_EQ(h.keepalive, Millis(1min));
}

TEST(ConfigLoadHq, ClientIdDefaultsToTheHostName) {
  auto loaded = load_hq_string("[hq]\ndatabase = \"/tmp/hq.db\"\n", "hq.toml");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_THAT(loaded.config->client_id, StartsWith("storewatch-hq"));
  EXPECT_TRUE(loaded.config->share_group.empty());
}

TEST(ConfigLoadHq, DatabaseIsAFileOrAPostgresqlUri) {
  auto loaded = load_hq_string(
      "[hq]\ndatabase = \"postgresql://hq@db.hq.example.com:5432/storewatch?sslmode=verify-full\"\n"
      "database_password_file = \"/etc/storewatch/hq-db.password\"\n",
      "hq.toml");
  if (!have_postgresql()) {
    // The ARM gateways' build: says so, as a config error.
    ASSERT_FALSE(loaded.ok());
    EXPECT_THAT(dump(loaded.diagnostics), HasSubstr("without HQ's PostgreSQL backend"));
    return;
  }
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->postgresql,
            "postgresql://hq@db.hq.example.com:5432/storewatch?sslmode=verify-full");
  EXPECT_EQ(loaded.config->database_password_file, "/etc/storewatch/hq-db.password");
  EXPECT_EQ(loaded.config->database_name(),
            "postgresql://hq@db.hq.example.com:5432/storewatch?sslmode=verify-full");

  // A password in the URI is refused and never repeated.
  loaded = load_hq_string("[hq]\ndatabase = \"postgresql://hq:s3cret@db/storewatch\"\n", "hq.toml");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(dump(loaded.diagnostics), HasSubstr("hq.toml:2:"));
  EXPECT_THAT(dump(loaded.diagnostics), HasSubstr("database_password_file"));
  EXPECT_THAT(dump(loaded.diagnostics), Not(HasSubstr("s3cret")));
  loaded = load_hq_string("[hq]\ndatabase = \"postgresql://db/storewatch?password=s3cret\"\n",
                          "hq.toml");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(dump(loaded.diagnostics), Not(HasSubstr("s3cret")));

  // What libpq cannot read, in libpq's words.
  loaded = load_hq_string("[hq]\ndatabase = \"postgresql://[::1/storewatch\"\n", "hq.toml");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(dump(loaded.diagnostics), HasSubstr("not a PostgreSQL connection URI"));
  loaded = load_hq_string("[hq]\ndatabase = \"postgresql://db:port/storewatch\"\n", "hq.toml");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(dump(loaded.diagnostics), HasSubstr("the port \"port\" is not a number"));
  loaded = load_hq_string("[hq]\ndatabase = \"postgresql://db/x?nosuchoption=1\"\n", "hq.toml");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(dump(loaded.diagnostics), HasSubstr("nosuchoption"));
}

TEST(ConfigLoadHq, RedactsPasswordsOfUris) {
  EXPECT_EQ(redact_postgresql_uri("postgresql://hq:s3cret@db:5432/x"),
            "postgresql://hq:***@db:5432/x");
  EXPECT_EQ(redact_postgresql_uri("postgresql://db/x?sslmode=require&password=s3cret"),
            "postgresql://db/x?sslmode=require&password=***");
  EXPECT_EQ(redact_postgresql_uri("postgresql://hq@db/x"), "postgresql://hq@db/x");
}

TEST(ConfigLoadHq, ResyncAfter) {
  auto loaded = load_hq_string("[hq]\ndatabase = \"/tmp/hq.db\"\n", "hq.toml");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->resync_after, Millis(30s));
  loaded = load_hq_string("[hq]\nresync_after = \"2m\"\n", "hq.toml");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->resync_after, Millis(2min));
  loaded = load_hq_string("[hq]\nresync_after = \"10ms\"\n", "hq.toml");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(dump(loaded.diagnostics), HasSubstr("resync_after"));
}

TEST(ConfigLoadHq, Retention) {
  auto loaded = load_hq_string("[hq]\n", "hq.toml");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->retention, Millis(24h * 400));
  loaded = load_hq_string("[hq]\nretention = \"90d\"\n", "hq.toml");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->retention, Millis(24h * 90));
  for (const char* bad : {"\"30m\"", "\"forever\"", "400"}) {
    loaded = load_hq_string(std::string("[hq]\nretention = ") + bad + "\n", "hq.toml");
    ASSERT_FALSE(loaded.ok()) << bad;
    EXPECT_THAT(dump(loaded.diagnostics), HasSubstr("retention")) << bad;
  }
}

TEST(ConfigLoadHq, ErrorsAreCollected) {
  auto loaded = load_hq_string(R"([hq]
broker = "mqtt://broker"
database = "hq.db"
share_group = "a/b"
colour = "red"

[store]
id = "s"
)",
                               "hq.toml");
  EXPECT_FALSE(loaded.ok());
  const auto e = errors(loaded.diagnostics);
  ASSERT_EQ(e.size(), 5u) << dump(loaded.diagnostics);
  EXPECT_EQ(to_string(e[0].where), "hq.toml:2:10");
  EXPECT_THAT(e[0].message, HasSubstr("[hq] broker: "));
  EXPECT_THAT(e[1].message, HasSubstr("[hq] database: must be an absolute path"));
  EXPECT_THAT(e[2].message, HasSubstr("is not a valid share group"));
  EXPECT_THAT(e[3].message, HasSubstr("[hq]: unknown key \"colour\""));
  EXPECT_THAT(e[4].message, HasSubstr("unknown table [store] (known: [hq])"));
}

TEST(ConfigLoadHq, MissingFileIsOneError) {
  TempDir dir;
  auto loaded = load_hq(dir.path() / "hq.toml");
  ASSERT_EQ(loaded.diagnostics.size(), 1u);
  EXPECT_EQ(to_string(loaded.diagnostics[0]),
            (dir.path() / "hq.toml").string() +
                ": error: cannot read config file: No such file or directory");
}

// ---------------------------------------------------------------------------
// The shipped examples

TEST(ConfigExamples, EveryExampleLoadsWithoutErrors) {
  const fs::path examples = fs::path(STOREWATCH_SOURCE_DIR) / "config" / "examples";
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(examples)) {
    if (entry.path().extension() != ".toml") continue;
    ++checked;
    if (entry.path().filename() == "hq.toml") {
      auto loaded = load_hq(entry.path());
      EXPECT_TRUE(loaded.ok()) << entry.path() << "\n" << dump(loaded.diagnostics);
      EXPECT_TRUE(errors(loaded.diagnostics).empty()) << dump(loaded.diagnostics);
      continue;
    }
    auto loaded = load(entry.path(),
                       {.conf_dir = examples / "conf.d.none", .probe_types = probes::schemas()});
    EXPECT_TRUE(loaded.ok()) << entry.path() << "\n" << dump(loaded.diagnostics);
    EXPECT_TRUE(errors(loaded.diagnostics).empty()) << dump(loaded.diagnostics);
  }
  EXPECT_GE(checked, 3);
}

TEST(ConfigExamples, DemoStoreIsWhatTheDemoScriptExpects) {
  const fs::path demo = fs::path(STOREWATCH_SOURCE_DIR) / "config" / "examples" / "demo.toml";
  auto loaded = load(demo, {.conf_dir = std::nullopt, .probe_types = probes::schemas()});
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  // Only the secrets the demo's drop-in replaces may be missing here.
  for (const Diagnostic& d : loaded.diagnostics) {
    EXPECT_EQ(d.kind, Diagnostic::Kind::warning) << dump(loaded.diagnostics);
    EXPECT_THAT(d.message, HasSubstr("/etc/storewatch/secrets/")) << dump(loaded.diagnostics);
  }
  const Config& c = *loaded.config;
  EXPECT_EQ(c.store.id, "demo-store");
  // Per-store login and signed commands, as docs/SYNC.md leads with.
  EXPECT_EQ(c.sync.username, c.store.id);
  EXPECT_FALSE(c.sync.password_file.empty());
  EXPECT_FALSE(c.sync.command_key_file.empty());
  ASSERT_EQ(c.probes.size(), 7u);
  // The demo takes lane-02-pos (an http health endpoint) down and up.
  const ProbeConfig* lane = c.find_probe("lane-02-pos");
  ASSERT_NE(lane, nullptr);
  EXPECT_EQ(lane->type, "http");
  EXPECT_EQ(lane->str("url"), "http://127.20.1.12:8080/health");
  const ProbeConfig* printer = c.find_probe("printer-01");
  ASSERT_NE(printer, nullptr);
  EXPECT_EQ(printer->type, "escpos");
  const ProbeConfig* gw = c.find_probe("payment-gw");
  ASSERT_NE(gw, nullptr);
  EXPECT_EQ(gw->str("host"), "127.20.0.40");
  EXPECT_EQ(gw->integer("port"), 8443);
  EXPECT_EQ(gw->interval, Millis(1s));
  EXPECT_EQ(gw->timeout, Millis(500));
  EXPECT_EQ(gw->severity, Severity::critical);
  EXPECT_EQ(gw->depends_on, std::vector<std::string>{"lan-switch"});
}

// ---------------------------------------------------------------------------
// Command keys ([sync] command_key_file, [hq] command_key_file, command_keys_dir)

const std::string kGoodHexKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

TEST(CommandKey, IsHexOfAtLeast32BytesWithWhitespaceIgnored) {
  TempDir dir;
  auto key = read_command_key(dir.write("good", "  " + kGoodHexKey + "\n"));
  ASSERT_TRUE(key) << key.error().message;
  ASSERT_EQ(key->size(), 32u);
  EXPECT_EQ(static_cast<unsigned char>((*key)[1]), 0x11);
  EXPECT_EQ(static_cast<unsigned char>((*key)[31]), 0xff);
  auto upper = read_command_key(dir.write("upper", "AABBCCDDEEFF" + kGoodHexKey));
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper->size(), 38u);

  auto short_key = read_command_key(dir.write("short", kGoodHexKey.substr(0, 62)));
  ASSERT_FALSE(short_key);
  EXPECT_THAT(short_key.error().message, HasSubstr("a key of 31 bytes; at least 32"));
  EXPECT_THAT(short_key.error().message, HasSubstr("openssl rand -hex 32 >"));
  for (const std::string& bad : {kGoodHexKey + "0", kGoodHexKey + "zz", std::string("my secret"),
                                 kGoodHexKey.substr(0, 32) + " " + kGoodHexKey.substr(32)}) {
    auto r = read_command_key(dir.write("bad", bad));
    ASSERT_FALSE(r) << bad;
    EXPECT_THAT(r.error().message, HasSubstr("hex digits")) << bad;
  }
  auto huge = read_command_key(dir.write("huge", std::string(4096, 'a')));
  ASSERT_FALSE(huge);
  EXPECT_THAT(huge.error().message, HasSubstr("not a command key file"));
  auto missing = read_command_key(dir.path() / "nope");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr("No such file"));
}

TEST(CommandKey, ConfigCheckValidatesTheStoresKeyFile) {
  TempDir dir;
  const fs::path good = dir.write("good.key", kGoodHexKey + "\n");
  auto loaded = parse(std::string(kValid) +
                      fmt::format("[sync]\ncommand_key_file = \"{}\"\n", good.string()));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_TRUE(loaded.diagnostics.empty()) << dump(loaded.diagnostics);
  EXPECT_EQ(loaded.config->sync.command_key_file, good);

  // Missing on this machine: a warning, as for every secret.
  loaded = parse(std::string(kValid) + "[sync]\ncommand_key_file = \"/nonexistent/command.key\"\n");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  ASSERT_EQ(warnings(loaded.diagnostics).size(), 1u) << dump(loaded.diagnostics);
  EXPECT_THAT(dump(loaded.diagnostics), HasSubstr("does not exist on this machine"));

  // There but not a usable key: an error, with what the file must hold.
  const fs::path weak = dir.write("weak.key", "password123\n");
  auto d = only_error(std::string(kValid) +
                      fmt::format("[sync]\ncommand_key_file = \"{}\"\n", weak.string()));
  EXPECT_THAT(d.message, HasSubstr("[sync] command_key_file: "));
  EXPECT_THAT(d.message, HasSubstr("hex digits"));
  EXPECT_EQ(d.where.line, 10);
  const fs::path short_key = dir.write("short.key", kGoodHexKey.substr(0, 40));
  d = only_error(std::string(kValid) +
                 fmt::format("[sync]\ncommand_key_file = \"{}\"\n", short_key.string()));
  EXPECT_THAT(d.message, HasSubstr("at least 32"));
  d = only_error(std::string(kValid) + "[sync]\ncommand_key_file = \"command.key\"\n");
  EXPECT_THAT(d.message, HasSubstr("absolute path"));
}

TEST(CommandKey, UnreadableHereIsAWarning) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every file";
  TempDir dir;
  const fs::path key = dir.write("root-only.key", kGoodHexKey);
  fs::permissions(key, fs::perms::none);
  auto loaded =
      parse(std::string(kValid) + fmt::format("[sync]\ncommand_key_file = \"{}\"\n", key.string()));
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_THAT(dump(warnings(loaded.diagnostics)), HasSubstr("cannot read"));
}

TEST(ConfigLoadHq, EnrollmentLimitsAndKeys) {
  TempDir dir;
  const fs::path fleet = dir.write("fleet.key", kGoodHexKey);
  fs::create_directories(dir.path() / "keys");
  auto loaded = load_hq_string(fmt::format(R"([hq]
database = "/tmp/hq.db"
enroll = "list"
stores = ["store-0042", "store-0043", "store-0042"]
max_seq_jump = 5000
max_session_jump = 200
command_key_file = "{}"
command_keys_dir = "{}"
)",
                                           fleet.string(), (dir.path() / "keys").string()),
                               "hq.toml");
  ASSERT_TRUE(loaded.ok()) << dump(loaded.diagnostics);
  EXPECT_TRUE(loaded.diagnostics.empty()) << dump(loaded.diagnostics);
  const HqConfig& h = *loaded.config;
  EXPECT_EQ(h.enroll, HqConfig::Enroll::list);
  EXPECT_EQ(h.stores, (std::set<std::string>{"store-0042", "store-0043"}));
  EXPECT_TRUE(h.enrolled("store-0043"));
  EXPECT_FALSE(h.enrolled("store-0044"));
  EXPECT_EQ(h.max_seq_jump, 5000);
  EXPECT_EQ(h.max_session_jump, 200);
  EXPECT_EQ(h.command_key_file, fleet);
  EXPECT_EQ(h.command_keys_dir, dir.path() / "keys");

  // The defaults: every store, DESIGN §8's 100,000, no signing.
  loaded = load_hq_string("[hq]\ndatabase = \"/tmp/hq.db\"\n", "hq.toml");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded.config->enroll, HqConfig::Enroll::automatic);
  EXPECT_TRUE(loaded.config->enrolled("anyone"));
  EXPECT_EQ(loaded.config->max_seq_jump, 100'000);
  EXPECT_EQ(loaded.config->max_session_jump, 1'000'000);
  EXPECT_TRUE(loaded.config->command_key_file.empty());
}

TEST(ConfigLoadHq, EnrollmentAndLimitsAreChecked) {
  auto d = only_error(load_hq_string("[hq]\nenroll = \"list\"\n", "hq.toml"));
  EXPECT_EQ(to_string(d.where), "hq.toml:2:10");
  EXPECT_THAT(d.message, HasSubstr("[hq] stores"));
  EXPECT_THAT(d.message, HasSubstr("enroll = \"auto\""));
  d = only_error(load_hq_string("[hq]\nenroll = \"open\"\n", "hq.toml"));
  EXPECT_THAT(d.message, HasSubstr("[hq] enroll: \"open\" is not one of auto,list"));
  d = only_error(
      load_hq_string("[hq]\nenroll = \"list\"\nstores = [\"ok\", \"a/b\"]\n", "hq.toml"));
  EXPECT_THAT(d.message, HasSubstr("[hq] stores"));
  EXPECT_EQ(d.where.line, 3);
  d = only_error(load_hq_string("[hq]\nstores = \"store-0042\"\n", "hq.toml"));
  EXPECT_THAT(d.message, HasSubstr("expected an array of store ids"));
  d = only_error(load_hq_string("[hq]\nmax_seq_jump = 0\n", "hq.toml"));
  EXPECT_THAT(d.message, HasSubstr("[hq] max_seq_jump: must be between 1 and"));
  d = only_error(load_hq_string("[hq]\nmax_session_jump = -5\n", "hq.toml"));
  EXPECT_THAT(d.message, HasSubstr("[hq] max_session_jump"));

  TempDir dir;
  const fs::path not_dir = dir.write("keys", "x");
  d = only_error(load_hq_string(fmt::format("[hq]\ncommand_keys_dir = \"{}\"\n", not_dir.string()),
                                "hq.toml"));
  EXPECT_THAT(d.message, HasSubstr("is not a directory"));
  const fs::path weak = dir.write("weak.key", "abcd");
  d = only_error(
      load_hq_string(fmt::format("[hq]\ncommand_key_file = \"{}\"\n", weak.string()), "hq.toml"));
  EXPECT_THAT(d.message, HasSubstr("at least 32"));

  // Stores listed while every store is taken anyway: said, not refused.
  auto loaded = load_hq_string("[hq]\nstores = [\"store-0042\"]\n", "hq.toml");
  ASSERT_TRUE(loaded.ok());
  EXPECT_THAT(dump(warnings(loaded.diagnostics)), HasSubstr("used only with enroll = \"list\""));
}

TEST(Secrets, AreReadWithSurroundingWhitespaceTrimmed) {
  TempDir dir;
  auto file = dir.write("secret", "  s3cret value \n\n");
  auto secret = read_secret(file);
  ASSERT_TRUE(secret) << secret.error().message;
  EXPECT_EQ(*secret, "s3cret value");
  auto missing = read_secret(dir.path() / "nope");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr((dir.path() / "nope").string()));
}

TEST(StoreId, FollowsTheTopicSafeRule) {
  EXPECT_TRUE(is_valid_store_id("store-0042"));
  EXPECT_TRUE(is_valid_store_id(std::string(64, 'a')));
  for (const std::string& bad :
       {std::string(), std::string(65, 'a'), std::string("a/b"), std::string("a+"),
        std::string("a#"), std::string("a.b"), std::string("a b")}) {
    EXPECT_FALSE(is_valid_store_id(bad)) << bad;
  }
}

}  // namespace
}  // namespace storewatch::config
