#pragma once
/// \file
/// A private dbus-daemon and the fake org.freedesktop.systemd1 on it
/// (tests/support/fake_systemd.cpp), for the tests of what talks to systemd:
/// CI machines have no systemd as PID 1 and no system bus. Code in the test
/// process finds the bus through $DBUS_SYSTEM_BUS_ADDRESS, which the lab sets.

#include <string>
#include <vector>

#include "tests/support/support.h"

namespace storewatch::test {

class SystemdLab {
 public:
  SystemdLab();
  ~SystemdLab();
  SystemdLab(const SystemdLab&) = delete;
  SystemdLab& operator=(const SystemdLab&) = delete;

  std::string address() const { return "unix:path=" + (dir_ / "bus").string(); }

  /// Replaces the units the fake knows (its state file's format, see fake_systemd.cpp).
  void set_units(const std::string& lines);

  void start_bus();
  void stop_bus();
  void start_systemd();

  Child& systemd() { return *systemd_; }

  /// How many connections the bus has (unique names), this count's own included.
  int connections() const;

  /// The RestartUnit calls the fake has had, oldest first: "NAME MODE".
  std::vector<std::string> restarts() const;

 private:
  TempDir dir_;
  std::unique_ptr<Child> bus_;
  std::unique_ptr<Child> systemd_;
};

}  // namespace storewatch::test
