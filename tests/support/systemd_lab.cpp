#include "tests/support/systemd_lab.h"

#include <signal.h>
#include <systemd/sd-bus.h>

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace storewatch::test {

SystemdLab::SystemdLab() {
  write_file(dir_ / "bus.conf", fmt::format(R"(<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
)",
                                            (dir_ / "bus").string()));
  set_units("");
  start_bus();
  start_systemd();
  ::setenv("DBUS_SYSTEM_BUS_ADDRESS", address().c_str(), 1);
}

SystemdLab::~SystemdLab() {
  if (systemd_) ::kill(systemd_->pid(), SIGCONT);
}

void SystemdLab::set_units(const std::string& lines) {
  write_file(dir_ / "units.tmp", lines);
  std::filesystem::rename(dir_ / "units.tmp", dir_ / "units");
}

void SystemdLab::start_bus() {
  bus_ = std::make_unique<Child>(
      std::vector<std::string>{"dbus-daemon", "--config-file=" + (dir_ / "bus.conf").string(),
                               "--nofork", "--print-address"},
      dir_ / "logs");
  if (!wait_until(
          [&] { return bus_->out().find("unix:") != std::string::npos || !bus_->running(); }) ||
      !bus_->running()) {
    throw std::runtime_error("dbus-daemon did not start: " + bus_->err());
  }
}

void SystemdLab::stop_bus() {
  bus_->stop(SIGTERM);
  bus_.reset();
}

void SystemdLab::start_systemd() {
  systemd_ = std::make_unique<Child>(
      target_command(STOREWATCH_FAKE_SYSTEMD, {(dir_ / "units").string()}), dir_ / "logs",
      std::map<std::string, std::string>{{"DBUS_SYSTEM_BUS_ADDRESS", address()}});
  if (!wait_until([&] {
        return systemd_->out().find("ready") != std::string::npos || !systemd_->running();
      }) ||
      !systemd_->running()) {
    throw std::runtime_error("fake_systemd did not start: " + systemd_->err());
  }
}

int SystemdLab::connections() const {
  sd_bus* bus = nullptr;
  sd_bus_message* reply = nullptr;
  sd_bus_error error = SD_BUS_ERROR_NULL;
  char** names = nullptr;
  int n = -1;
  if (sd_bus_new(&bus) >= 0 && sd_bus_set_address(bus, address().c_str()) >= 0 &&
      sd_bus_set_bus_client(bus, 1) >= 0 && sd_bus_start(bus) >= 0 &&
      sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                         "org.freedesktop.DBus", "ListNames", &error, &reply, "") >= 0 &&
      sd_bus_message_read_strv(reply, &names) >= 0) {
    n = 0;
    for (char** p = names; p != nullptr && *p != nullptr; ++p) {
      if (**p == ':') ++n;
      std::free(*p);
    }
    std::free(names);
  }
  sd_bus_error_free(&error);
  sd_bus_message_unref(reply);
  sd_bus_flush_close_unref(bus);
  return n;
}

std::vector<std::string> SystemdLab::restarts() const {
  std::vector<std::string> calls;
  std::ifstream in(dir_ / "units.restarts");
  for (std::string line; std::getline(in, line);) calls.push_back(line);
  return calls;
}

}  // namespace storewatch::test
