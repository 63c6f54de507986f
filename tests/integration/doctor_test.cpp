// `storewatch doctor` through the real binary: a prepared database with the
// daemon down and up, a real mosquitto (up, then stopped), the simulator's
// NTP servers (in step and 5 s off), a missing config and a corrupt
// database file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <csignal>
#include <memory>

#include "tests/support/daemon.h"
#include "tests/support/store_lab.h"
#include "tests/support/support.h"

namespace storewatch::test {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class Doctor : public ::testing::Test {
 protected:
  Doctor()
      : lane_port(free_port()),
        ntp_port(free_port()),
        skewed_ntp_port(free_port()),
        lab(fmt::format(R"([[device]]
name = "lane-01"
kind = "tcp"
host = "127.0.0.1"
port = {}

[[device]]
name = "ntp"
kind = "ntp"
host = "127.0.0.1"
port = {}

[[device]]
name = "ntp-5s"
kind = "ntp"
host = "127.0.0.1"
port = {}
offset = -5.0
)",
                        lane_port, ntp_port, skewed_ntp_port)) {}

  void write_config(int clock_port) {
    config = dir / "storewatch.toml";
    auto c = DaemonConfig::in(dir, "store-0042");
    c.broker = broker.uri();
    c.body = tcp_probe_toml("lane-01", lane_port, "interval = \"200ms\"\ntimeout = \"150ms\"\n") +
             fmt::format(R"(
[[probe]]
name = "ntp-clock"
type = "system"
check = "clock"
ntp_server = "127.0.0.1:{}"
interval = "1m"
timeout = "1s"
)",
                         clock_port);
    c.write(config);
  }

  void start_daemon() {
    daemon = launch_daemon(config, dir / "logs");
    ASSERT_TRUE(wait_until([&] { return daemon_is_connected(config); })) << daemon->err();
  }

  RunResult cli(std::vector<std::string> args) { return run_cli(config, std::move(args)); }

  /// `doctor --json`: the document, checks by name, and the exit code.
  struct Verdict {
    int exit_code = -1;
    json doc;
    std::map<std::string, json> checks;
    std::string status(const std::string& name) const {
      auto it = checks.find(name);
      return it == checks.end() ? "missing" : it->second.value("status", "");
    }
    std::string summary(const std::string& name) const {
      auto it = checks.find(name);
      return it == checks.end() ? "" : it->second.value("summary", "");
    }
  };
  Verdict doctor() {
    auto r = cli({"doctor", "--json", "--timeout", "2s"});
    Verdict v;
    v.exit_code = r.exit_code;
    v.doc = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(v.doc.is_object()) << r.out << r.err;
    if (v.doc.is_object()) {
      for (const auto& c : v.doc["checks"]) v.checks[c["check"].get<std::string>()] = c;
    }
    return v;
  }

  TempDir dir;
  int lane_port, ntp_port, skewed_ntp_port;
  StoreLab lab;
  Broker broker;
  std::filesystem::path config;
  std::unique_ptr<Child> daemon;
};

TEST_F(Doctor, DaemonDownWithAPreparedDatabase) {
  write_config(ntp_port);
  start_daemon();
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->err();

  auto v = doctor();
  EXPECT_EQ(v.exit_code, 1);  // the daemon is not running: a failure
  EXPECT_FALSE(v.doc["ok"]);
  EXPECT_EQ(v.status("config"), "ok") << v.summary("config");
  EXPECT_EQ(v.status("database"), "ok") << v.summary("database");
  EXPECT_EQ(v.checks["database"]["data"]["quick_check"], "ok");
  EXPECT_GE(v.checks["database"]["data"]["schema_version"].get<int>(), 1);
  EXPECT_EQ(v.status("daemon"), "fail");
  EXPECT_THAT(v.summary("daemon"), HasSubstr("not running"));
  // No daemon to ask: the broker is reached directly.
  EXPECT_EQ(v.status("broker"), "ok") << v.summary("broker");
  EXPECT_EQ(v.checks["broker"]["data"]["source"], "direct");
  // This test broker lets anyone in: said, as a warning, with the fix.
  EXPECT_EQ(v.status("broker_auth"), "warn") << v.summary("broker_auth");
  EXPECT_TRUE(v.checks["broker_auth"]["data"]["anonymous_accepted"]);
  EXPECT_THAT(v.summary("broker_auth"), HasSubstr("lets in clients without"));
  EXPECT_THAT(v.checks["broker_auth"]["fix"].dump(), HasSubstr("docs/SYNC.md"));
  EXPECT_THAT(v.checks["broker_auth"]["fix"].dump(), HasSubstr("allow_anonymous false"));
  // Measured against the simulator's NTP server, in step.
  EXPECT_EQ(v.status("clock"), "ok") << v.summary("clock");
  EXPECT_LT(std::abs(v.checks["clock"]["data"]["probes"][0]["offset_ms"].get<double>()), 250);
  EXPECT_NE(v.status("disk"), "skip");

  // The text a technician reads: what failed and the command that fixes it.
  auto text = cli({"doctor"});
  EXPECT_EQ(text.exit_code, 1);
  EXPECT_THAT(text.out, HasSubstr("FAIL  daemon"));
  EXPECT_THAT(text.out, HasSubstr("fix: sudo systemctl start storewatch"));
  EXPECT_THAT(text.out, HasSubstr("quick_check ok"));

  broker.stop();
  v = doctor();
  EXPECT_EQ(v.status("broker"), "fail");
  EXPECT_THAT(v.summary("broker"), HasSubstr("cannot connect to 127.0.0.1"));
  EXPECT_THAT(v.checks["broker"]["fix"].dump(), HasSubstr("nc -vz 127.0.0.1"));
  EXPECT_EQ(v.status("broker_auth"), "skip");
}

TEST_F(Doctor, DaemonUp) {
  write_config(ntp_port);
  start_daemon();
  auto v = doctor();
  for (const char* name : {"config", "database", "daemon", "broker", "clock"}) {
    EXPECT_EQ(v.status(name), "ok") << name << ": " << v.summary(name);
  }
  EXPECT_EQ(v.checks["daemon"]["data"]["pid"], daemon->pid());
  EXPECT_EQ(v.checks["broker"]["data"]["source"], "daemon");
  EXPECT_TRUE(v.checks["broker"]["data"]["connected"]);
  EXPECT_EQ(v.exit_code, v.status("disk") == "fail" ? 1 : 0);

  // The broker goes away: the daemon reports itself offline, and the direct
  // check says where it breaks.
  broker.stop();
  ASSERT_TRUE(wait_until([&] {
    auto j = json::parse(cli({"sync", "status", "--json"}).out, nullptr, false);
    return j.is_object() && !j.value("connected", true);
  }));
  v = doctor();
  EXPECT_EQ(v.exit_code, 1);
  EXPECT_EQ(v.status("daemon"), "ok");
  EXPECT_EQ(v.status("broker"), "fail");
  EXPECT_THAT(v.summary("broker"), HasSubstr("offline"));
  EXPECT_THAT(v.checks["broker"]["details"].dump(), HasSubstr("from here: cannot connect"));
}

TEST_F(Doctor, ASkewedClockFails) {
  write_config(skewed_ntp_port);
  auto v = doctor();
  EXPECT_EQ(v.exit_code, 1);
  EXPECT_EQ(v.status("clock"), "fail") << v.summary("clock");
  EXPECT_NEAR(v.checks["clock"]["data"]["probes"][0]["offset_ms"].get<double>(), -5000, 300);
  EXPECT_THAT(v.checks["clock"]["fix"].dump(), HasSubstr("timedatectl"));
}

TEST_F(Doctor, AMissingConfigFailsAndSkipsTheRest) {
  config = dir / "nowhere.toml";
  auto v = doctor();
  EXPECT_EQ(v.exit_code, 1);
  EXPECT_EQ(v.status("config"), "fail");
  EXPECT_THAT(v.summary("config"), HasSubstr("does not exist"));
  for (const char* name : {"database", "daemon", "broker", "broker_auth", "clock", "disk"}) {
    EXPECT_EQ(v.status(name), "skip") << name;
  }
  EXPECT_EQ(v.doc["checks"].size(), 7u);
}

TEST_F(Doctor, ACorruptDatabaseFileFails) {
  write_config(ntp_port);
  write_file(dir / "data" / "storewatch.db", std::string(16384, '\x5a'));
  auto v = doctor();
  EXPECT_EQ(v.exit_code, 1);
  EXPECT_EQ(v.status("database"), "fail");
  EXPECT_THAT(v.summary("database"), HasSubstr("corrupt"));
  EXPECT_THAT(v.checks["database"]["fix"].dump(), HasSubstr("sudo systemctl stop storewatch"));
}

TEST_F(Doctor, ADatabaseYouCannotReadSaysHowToGetAccess) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run doctor as another user (nobody)";
  if (auto why = nobody_cannot_run_storewatch(); !why.empty()) GTEST_SKIP() << why;
  write_config(ntp_port);
  start_daemon();
  ASSERT_EQ(daemon->stop(SIGTERM), 0) << daemon->err();
  namespace fs = std::filesystem;
  const auto open_dir = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                        fs::perms::others_read | fs::perms::others_exec;
  fs::permissions(dir.path(), open_dir);
  fs::permissions(dir / "data", open_dir);
  fs::permissions(dir / "data" / "storewatch.db", fs::perms::owner_read | fs::perms::owner_write);
  std::vector<std::string> cmd = {"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"};
  for (auto& a : storewatch_command({"--config", config.string(), "doctor", "--json"})) {
    cmd.push_back(a);
  }
  auto r = run(cmd);
  auto doc = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << r.out << r.err;
  EXPECT_EQ(r.exit_code, 1);
  const json& db = doc["checks"][1];
  EXPECT_EQ(db["check"], "database");
  EXPECT_EQ(db["status"], "fail");
  EXPECT_THAT(db["summary"].get<std::string>(), HasSubstr("you (nobody) cannot read"));
  EXPECT_FALSE(db["data"]["readable"]);
  EXPECT_THAT(db["fix"].dump(), HasSubstr("sudo usermod -aG storewatch nobody"));
}

// Issue 18: a broker that lets anyone in is a warning; one that wants a
// login is ok, and doctor never uses the store's own login or client id.
TEST(DoctorBrokerAuth, ABrokerThatWantsALoginIsOk) {
  TempDir dir;
  Broker broker({{"store-0042", "pw-0042-x"}}, {});
  write_file(dir / "mqtt-password", "pw-0042-x\n");
  const auto config = dir / "storewatch.toml";
  auto c = DaemonConfig::in(dir, "store-0042");
  c.broker = broker.uri();
  c.sync_keys = fmt::format("username = \"store-0042\"\npassword_file = \"{}\"\n",
                            (dir / "mqtt-password").string());
  c.body = tcp_probe_toml("lane-01", free_port());
  c.write(config);
  auto r = run_cli(config, {"doctor", "--json"});
  json doc = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << r.out << r.err;
  json auth;
  for (const auto& c : doc["checks"]) {
    if (c["check"] == "broker_auth") auth = c;
  }
  ASSERT_TRUE(auth.is_object()) << doc.dump();
  EXPECT_EQ(auth["status"], "ok") << auth.dump();
  EXPECT_FALSE(auth["data"]["anonymous_accepted"]);
  EXPECT_THAT(auth["summary"].get<std::string>(), HasSubstr("refuses clients without credentials"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("mqtt:"))) << "the attempt is not logged";
}

// The direct broker check's TLS handshake against real TLS servers (the
// simulator's https devices and its test CA): verified, expired, wrong host.
TEST(DoctorTls, TheBrokersCertificateIsVerified) {
  std::map<std::string, int> ports;
  std::string lab_toml;
  for (const char* cert : {"good", "expired", "wrong_host"}) {
    ports[cert] = free_port();
    lab_toml += fmt::format(
        "[[device]]\nname = \"tls-{0}\"\nkind = \"https\"\nhost = \"127.0.0.1\"\nport = "
        "{1}\ncert = \"{0}\"\n\n",
        cert, ports[cert]);
  }
  StoreLab lab(lab_toml);
  TempDir dir;
  auto doctor = [&](const std::string& cert) {
    const auto config = dir / (cert + ".toml");
    auto c = DaemonConfig::in(dir, "store-0042");
    c.broker = fmt::format("ssl://127.0.0.1:{}", ports.at(cert));
    c.sync_keys = fmt::format("ca_file = \"{}\"\n", lab.ca_file().string());
    c.write(config);
    auto r = run_cli(config, {"doctor", "--json"});
    auto doc = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(doc.is_object()) << r.out << r.err;
    return doc.is_object() ? doc["checks"][3] : json();
  };
  json broker = doctor("good");
  EXPECT_EQ(broker["check"], "broker");
  EXPECT_EQ(broker["status"], "ok") << broker.dump();
  EXPECT_THAT(broker["data"]["tls"].get<std::string>(),
              HasSubstr("certificate verified for 127.0.0.1"));

  broker = doctor("expired");
  EXPECT_EQ(broker["status"], "fail");
  EXPECT_THAT(broker["summary"].get<std::string>(), HasSubstr("certificate has expired"));
  EXPECT_THAT(broker["fix"].dump(), HasSubstr("openssl s_client"));

  broker = doctor("wrong_host");
  EXPECT_EQ(broker["status"], "fail");
  EXPECT_THAT(broker["summary"].get<std::string>(), HasSubstr("not trusted"));
}

TEST_F(Doctor, HelpExplainsIt) {
  write_config(ntp_port);
  auto r = cli({"doctor", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("quick_check"));
  EXPECT_THAT(r.out, HasSubstr("--json"));
  EXPECT_THAT(r.out, HasSubstr("--timeout"));
  EXPECT_EQ(cli({"doctor", "--timeout", "soon"}).exit_code, 2);
}

}  // namespace
}  // namespace storewatch::test
