// The system probe: disk, memory and load of this machine, and the clock
// against the store simulator's NTP server.

#include <sys/statvfs.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/integration/probe_harness.h"
#include "tests/support/store_lab.h"

namespace storewatch::test {
namespace {

using ::testing::HasSubstr;

/// The config errors of one [[probe]] body, joined.
std::string config_errors(const std::string& probe_toml) {
  try {
    probe_config(probe_toml);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

// --- disk ----------------------------------------------------------------------

TEST(SystemDisk, MeasuresARealFileSystem) {
  TempDir dir;
  auto r = run_probe(
      fmt::format("type = \"system\"\ncheck = \"disk\"\npath = \"{}\"", dir.path().string()));
  ASSERT_NE(status_of(r), "unknown") << r.message;
  // What df would say for the same file system.
  struct statvfs st {};
  ASSERT_EQ(::statvfs(dir.path().c_str(), &st), 0);
  const double used = static_cast<double>(st.f_blocks - st.f_bfree);
  const double expected = 100.0 * used / (used + static_cast<double>(st.f_bavail));
  EXPECT_NEAR(r.metrics.at("used_pct"), expected, 1.0);
  EXPECT_NEAR(r.metrics.at("total_bytes"),
              static_cast<double>(st.f_blocks) * static_cast<double>(st.f_frsize), 1.0);
  EXPECT_GT(r.metrics.at("free_bytes"), 0);
  const std::string expected_status = expected >= 90 ? "fail" : expected >= 80 ? "warn" : "ok";
  EXPECT_EQ(status_of(r), expected_status) << r.message;
  EXPECT_THAT(r.message, HasSubstr("disk " + dir.path().string()));
}

TEST(SystemDisk, DefaultPathIsRootAndThresholdsApply) {
  auto r = run_probe("type = \"system\"\ncheck = \"disk\"\nwarn = 0\ncrit = 0.0001");
  EXPECT_EQ(status_of(r), "fail") << r.message;
  EXPECT_THAT(r.message, HasSubstr("disk / "));
  EXPECT_THAT(r.message, HasSubstr("(fail at 0.0001%)"));
}

TEST(SystemDisk, MissingPathFailsSayingSo) {
  auto r = run_probe("type = \"system\"\ncheck = \"disk\"\npath = \"/no/such/mount\"");
  EXPECT_EQ(status_of(r), "fail");
  EXPECT_THAT(r.message, HasSubstr("/no/such/mount"));
  EXPECT_THAT(r.message, HasSubstr("No such file or directory"));
}

// --- memory and load -------------------------------------------------------------

TEST(SystemMemory, ReportsUsedAndAvailable) {
  auto r = run_probe("type = \"system\"\ncheck = \"memory\"");
  ASSERT_NE(status_of(r), "unknown") << r.message;
  EXPECT_GT(r.metrics.at("used_pct"), 0);
  EXPECT_LT(r.metrics.at("used_pct"), 100);
  EXPECT_GT(r.metrics.at("available_bytes"), 0);
  EXPECT_THAT(r.message, HasSubstr("memory "));
  EXPECT_THAT(r.message, HasSubstr("available of"));

  auto low = run_probe("type = \"system\"\ncheck = \"memory\"\nwarn = 0\ncrit = 0.001");
  EXPECT_EQ(status_of(low), "fail") << low.message;
}

TEST(SystemLoad, ReportsLoadPerCore) {
  auto r = run_probe("type = \"system\"\ncheck = \"load\"\nwarn = 0.5\ncrit = 1000");
  ASSERT_NE(status_of(r), "unknown") << r.message;
  const double cpus = static_cast<double>(::sysconf(_SC_NPROCESSORS_ONLN));
  EXPECT_NEAR(r.metrics.at("load1_per_core"), r.metrics.at("load1") / cpus, 1e-9);
  EXPECT_GE(r.metrics.at("load5"), 0);
  EXPECT_GE(r.metrics.at("load15"), 0);
  EXPECT_EQ(status_of(r), r.metrics.at("load1_per_core") >= 0.5 ? "warn" : "ok") << r.message;
  EXPECT_THAT(r.message, HasSubstr("per core"));
}

// --- config ------------------------------------------------------------------------

TEST(SystemConfig, CrossKeyChecks) {
  EXPECT_THAT(config_errors("type = \"system\"\ncheck = \"memory\"\npath = \"/\""),
              HasSubstr("path is only for check = \"disk\""));
  EXPECT_THAT(config_errors("type = \"system\"\ncheck = \"disk\"\nntp_server = \"127.0.0.1\""),
              HasSubstr("ntp_server is only for check = \"clock\""));
  EXPECT_THAT(config_errors("type = \"system\"\ncheck = \"disk\"\nwarn = 95\ncrit = 90"),
              HasSubstr("warn (95) must be below crit (90)"));
  EXPECT_THAT(config_errors("type = \"system\"\ncheck = \"disk\"\nwarn = 95"),
              HasSubstr("warn (95) must be below crit (90) (the default)"));
  EXPECT_THAT(config_errors("type = \"system\"\ncheck = \"memory\"\ncrit = 120"),
              HasSubstr("at most 100"));
  EXPECT_THAT(config_errors("type = \"system\"\ncheck = \"clock\"\nntp_server = \"ntp:99999\""),
              HasSubstr("not 1..65535"));
  EXPECT_THAT(config_errors("type = \"system\"\ncheck = \"swap\""), HasSubstr("check"));
  EXPECT_THAT(config_errors("type = \"system\""), HasSubstr("check"));
  EXPECT_EQ(config_errors("type = \"system\"\ncheck = \"clock\"\nntp_server = \"[::1]:1234\""
                          "\nwarn = 0.1\ncrit = 0.2"),
            "");
}

// --- clock against the simulator ------------------------------------------------------

class SystemClockLab : public ::testing::Test {
 protected:
  int port_ok = free_port(), port_warn = free_port(), port_fail = free_port();
  StoreLab lab{fmt::format(R"([[device]]
name = "ntp"
kind = "ntp"
host = "127.0.0.1"
port = {}

[[device]]
name = "ntp-1s"
kind = "ntp"
host = "127.0.0.1"
port = {}
offset = 1.0

[[device]]
name = "ntp-5s"
kind = "ntp"
host = "127.0.0.1"
port = {}
offset = -5.0
)",
                           port_ok, port_warn, port_fail)};

  static std::string clock(int port, const std::string& extra = "") {
    return fmt::format(
        "type = \"system\"\ncheck = \"clock\"\nntp_server = \"127.0.0.1:{}\"\ntimeout = "
        "\"2s\"\n{}",
        port, extra);
  }
};

TEST_F(SystemClockLab, InStepIsOk) {
  auto r = run_probe(clock(port_ok));
  ASSERT_EQ(status_of(r), "ok") << r.message;
  EXPECT_LT(std::abs(r.metrics.at("offset_ms")), 250);
  EXPECT_GE(r.metrics.at("delay_ms"), 0);
  EXPECT_EQ(r.metrics.at("stratum"), 2);
  EXPECT_THAT(r.message, HasSubstr(fmt::format("against 127.0.0.1:{} (stratum 2", port_ok)));
}

TEST_F(SystemClockLab, OneSecondOffIsAWarn) {
  auto r = run_probe(clock(port_warn));
  EXPECT_EQ(status_of(r), "warn") << r.message;
  EXPECT_NEAR(r.metrics.at("offset_ms"), 1000, 250);
  EXPECT_THAT(r.message, HasSubstr("(warn at 0.5 s)"));
}

TEST_F(SystemClockLab, FiveSecondsOffIsAFail) {
  auto r = run_probe(clock(port_fail));
  EXPECT_EQ(status_of(r), "fail") << r.message;
  EXPECT_NEAR(r.metrics.at("offset_ms"), -5000, 250);
  EXPECT_THAT(r.message, HasSubstr("(fail at 2 s)"));
  // Thresholds are the user's to move.
  auto lenient = run_probe(clock(port_fail, "warn = 10\ncrit = 20"));
  EXPECT_EQ(status_of(lenient), "ok") << lenient.message;
}

TEST_F(SystemClockLab, KissOfDeathIsUnknownWithItsCode) {
  lab.fault("ntp", "kod");
  auto r = run_probe(clock(port_ok));
  EXPECT_EQ(status_of(r), "unknown") << r.message;
  EXPECT_THAT(r.message, HasSubstr("kiss-o'-death: RATE"));
}

TEST_F(SystemClockLab, UnsynchronizedServerIsUnknown) {
  lab.fault("ntp", "unsynchronized");
  auto r = run_probe(clock(port_ok));
  EXPECT_EQ(status_of(r), "unknown") << r.message;
  EXPECT_THAT(r.message, HasSubstr("not synchronized (stratum 16, leap indicator 3)"));
}

TEST_F(SystemClockLab, GarbageIsUnknown) {
  lab.fault("ntp", "garbage");
  auto r = run_probe(clock(port_ok));
  EXPECT_EQ(status_of(r), "unknown") << r.message;
  EXPECT_THAT(r.message, HasSubstr("invalid reply from NTP server"));
}

TEST_F(SystemClockLab, HungServerTimesOutWithinTheTimeout) {
  lab.fault("ntp", "hang");
  auto r = run_probe(fmt::format(
      "type = \"system\"\ncheck = \"clock\"\nntp_server = \"127.0.0.1:{}\"\ntimeout = \"1s\"",
      port_ok));
  EXPECT_EQ(status_of(r), "fail") << r.message;
  EXPECT_THAT(r.message, HasSubstr(fmt::format("no reply from NTP server 127.0.0.1:{} within 900ms",
                                               port_ok)));
  EXPECT_LT(r.latency, 1s);
}

TEST_F(SystemClockLab, DownServerIsRefused) {
  lab.fault("ntp", "down");
  auto r = run_probe(clock(port_ok));
  EXPECT_EQ(status_of(r), "fail") << r.message;
  EXPECT_THAT(r.message, HasSubstr("connection refused"));
}

TEST_F(SystemClockLab, NameThatDoesNotResolve) {
  auto r =
      run_probe("type = \"system\"\ncheck = \"clock\"\nntp_server = \"ntp.no-such-store.invalid\"");
  EXPECT_EQ(status_of(r), "fail") << r.message;
  EXPECT_THAT(r.message, HasSubstr("cannot resolve NTP server ntp.no-such-store.invalid:123"));
}

TEST_F(SystemClockLab, ProbeRunPrintsTheDesignShapeForEachCheck) {
  TempDir dir;
  auto r = run_probe_cli(dir, clock(port_ok));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(r.result.is_object()) << r.err;
  EXPECT_EQ(r.result["type"], "system");
  EXPECT_EQ(r.result["status"], "ok");
  for (const char* m : {"offset_ms", "delay_ms", "stratum"}) {
    EXPECT_TRUE(r.result["metrics"][m].is_number()) << m;
  }
  auto disk = run_probe_cli(dir, "type = \"system\"\ncheck = \"disk\"\nwarn = 99.98\ncrit = 99.99");
  ASSERT_TRUE(disk.result.is_object()) << disk.err;
  for (const char* m : {"used_pct", "free_bytes", "total_bytes"}) {
    EXPECT_TRUE(disk.result["metrics"][m].is_number()) << m;
  }
  auto memory = run_probe_cli(dir, "type = \"system\"\ncheck = \"memory\"");
  ASSERT_TRUE(memory.result.is_object()) << memory.err;
  EXPECT_TRUE(memory.result["metrics"]["available_bytes"].is_number());
  auto load = run_probe_cli(dir, "type = \"system\"\ncheck = \"load\"\nwarn = 1000\ncrit = 2000");
  ASSERT_EQ(load.exit_code, 0) << load.err;
  EXPECT_EQ(load.result["status"], "ok");
  EXPECT_TRUE(load.result["metrics"]["load1_per_core"].is_number());
}

}  // namespace
}  // namespace storewatch::test
