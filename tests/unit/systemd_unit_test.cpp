// The systemd probe's reading of unit names and unit states.

#include "probes/systemd_unit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace storewatch::probes {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

const auto kUnitNow = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));

std::uint64_t usec_before_now(std::chrono::seconds ago) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>((kUnitNow - ago).time_since_epoch())
          .count());
}

UnitState state(std::string active, std::string sub, std::string result = "success") {
  UnitState s;
  s.load_state = "loaded";
  s.active_state = std::move(active);
  s.sub_state = std::move(sub);
  s.result = std::move(result);
  return s;
}

TEST(UnitName, KeepsANameWithAUnitType) {
  EXPECT_EQ(*unit_name("pos-sync.service"), "pos-sync.service");
  EXPECT_EQ(*unit_name("backup.timer"), "backup.timer");
  EXPECT_EQ(*unit_name("printer-spool.socket"), "printer-spool.socket");
  EXPECT_EQ(*unit_name("srv-data.mount"), "srv-data.mount");
  EXPECT_EQ(*unit_name("-.mount"), "-.mount");
  EXPECT_EQ(*unit_name("getty@tty1.service"), "getty@tty1.service");
  EXPECT_EQ(*unit_name("multi-user.target"), "multi-user.target");
}

TEST(UnitName, AddsServiceWithoutAUnitType) {
  EXPECT_EQ(*unit_name("pos-sync"), "pos-sync.service");
  EXPECT_EQ(*unit_name("lane.01"), "lane.01.service");
  EXPECT_EQ(*unit_name("vpn@store"), "vpn@store.service");
}

TEST(UnitName, RejectsWhatSystemdWould) {
  EXPECT_FALSE(unit_name(""));
  EXPECT_THAT(unit_name("pos sync").error().message, HasSubstr("' ' is not allowed"));
  EXPECT_THAT(unit_name("pos/sync.service").error().message, HasSubstr("'/' is not allowed"));
  EXPECT_THAT(unit_name(".service").error().message, HasSubstr("no name before its type"));
  EXPECT_THAT(unit_name("getty@.service").error().message, HasSubstr("template"));
  EXPECT_THAT(unit_name("getty@.service").error().message, HasSubstr("getty@1.service"));
  EXPECT_THAT(unit_name("@tty1.service").error().message, HasSubstr("no name before '@'"));
  EXPECT_THAT(unit_name("a@b@c.service").error().message, HasSubstr("more than one '@'"));
  EXPECT_THAT(unit_name(std::string(300, 'a')).error().message, HasSubstr("longer than 255"));
}

TEST(TypeInterface, NamesTheInterfaceThatHasResult) {
  EXPECT_EQ(type_interface("a.service"), "org.freedesktop.systemd1.Service");
  EXPECT_EQ(type_interface("a.timer"), "org.freedesktop.systemd1.Timer");
  EXPECT_EQ(type_interface("a.socket"), "org.freedesktop.systemd1.Socket");
  EXPECT_EQ(type_interface("a.target"), "");
  EXPECT_EQ(type_interface("a.device"), "");
}

TEST(Assess, ActiveIsOkWithUptimeAndRestarts) {
  auto s = state("active", "running");
  s.n_restarts = 2;
  s.active_enter_usec = usec_before_now(90s);
  auto r = assess("pos-sync.service", s, kUnitNow);
  EXPECT_EQ(r.status, ProbeStatus::ok);
  EXPECT_EQ(r.message, "pos-sync.service active (running), restarted 2 times");
  EXPECT_EQ(r.metrics.at("active"), 1.0);
  EXPECT_EQ(r.metrics.at("n_restarts"), 2.0);
  EXPECT_DOUBLE_EQ(r.metrics.at("active_seconds"), 90.0);
}

TEST(Assess, TransitionsWarn) {
  for (const char* st : {"activating", "deactivating", "reloading"}) {
    auto r = assess("a.service", state(st, "start-pre"), kUnitNow);
    EXPECT_EQ(r.status, ProbeStatus::warn) << st;
    EXPECT_EQ(r.metrics.at("active"), 0.0);
  }
}

TEST(Assess, FailedSaysWhy) {
  auto r = assess("backup.service", state("failed", "failed", "exit-code"), kUnitNow);
  EXPECT_EQ(r.status, ProbeStatus::fail);
  EXPECT_EQ(r.message, "backup.service failed (exit-code)");
  auto no_result = assess("a.target", state("failed", "failed", ""), kUnitNow);
  EXPECT_EQ(no_result.message, "a.target failed (failed)");
}

TEST(Assess, InactiveFails) {
  auto r = assess("a.service", state("inactive", "dead"), kUnitNow);
  EXPECT_EQ(r.status, ProbeStatus::fail);
  EXPECT_EQ(r.message, "a.service inactive (dead)");
  EXPECT_EQ(r.metrics.count("active_seconds"), 0u);
}

TEST(Assess, LoadStates) {
  auto s = state("inactive", "dead");
  s.load_state = "not-found";
  EXPECT_EQ(assess("nope.service", s, kUnitNow).message, "unit nope.service not found");
  EXPECT_EQ(assess("nope.service", s, kUnitNow).status, ProbeStatus::fail);
  s.load_state = "masked";
  EXPECT_THAT(assess("a.service", s, kUnitNow).message, HasSubstr("masked"));
  s.load_state = "bad-setting";
  EXPECT_THAT(assess("a.service", s, kUnitNow).message, HasSubstr("failed to load (bad-setting)"));
  EXPECT_EQ(assess("a.service", s, kUnitNow).status, ProbeStatus::fail);
}

TEST(Assess, AnUnknownStateIsUnknown) {
  auto r = assess("a.service", state("maintenance", "x"), kUnitNow);
  EXPECT_EQ(r.status, ProbeStatus::unknown);
  EXPECT_THAT(r.message, HasSubstr("\"maintenance\""));
}

TEST(AssessError, NamesTheError) {
  auto missing = assess_error("a.service", "org.freedesktop.systemd1.NoSuchUnit", "not loaded");
  EXPECT_EQ(missing.status, ProbeStatus::fail);
  EXPECT_EQ(missing.message, "unit a.service not found");
  auto absent = assess_error("a.service", "org.freedesktop.DBus.Error.ServiceUnknown", "x");
  EXPECT_EQ(absent.status, ProbeStatus::unknown);
  EXPECT_THAT(absent.message, HasSubstr("systemd is not on the system bus"));
  auto denied = assess_error("a.service", "org.freedesktop.DBus.Error.AccessDenied", "no");
  EXPECT_THAT(denied.message, HasSubstr("access denied"));
  auto other = assess_error("a.service", "org.example.Odd", "odd");
  EXPECT_EQ(other.status, ProbeStatus::unknown);
  EXPECT_THAT(other.message, HasSubstr("org.example.Odd: odd"));
}

}  // namespace
}  // namespace storewatch::probes
