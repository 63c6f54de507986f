#pragma once
/// \file
/// The store simulator (tests/lab/storelab.py) as a test fixture: it plays
/// the devices of a lab file on loopback and switches their faults while a
/// test runs.

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "tests/support/support.h"

namespace storewatch::test {

class StoreLab {
 public:
  /// Starts storelab with `devices_toml` as its lab file ([[device]] tables)
  /// and waits until its control socket answers. https devices get their
  /// certificates from a test CA in pki_dir().
  explicit StoreLab(const std::string& devices_toml);
  ~StoreLab();
  StoreLab(const StoreLab&) = delete;
  StoreLab& operator=(const StoreLab&) = delete;

  /// Sends one control command ("list", "fault NAME FAULT", ...) and returns
  /// the reply object.
  nlohmann::json ctl(const std::string& command) const;
  /// Switches a device's fault ("none" clears it); throws if storelab refuses.
  void fault(const std::string& device, const std::string& fault) const;
  /// The device's counters: connections, open_connections, max_open, fault.
  nlohmann::json stats(const std::string& device) const;

  const std::filesystem::path& dir() const { return dir_.path(); }
  /// storelab's `--pki` directory: the test CA is pki_dir()/ca.pem.
  std::filesystem::path pki_dir() const { return dir_ / "pki"; }
  /// The CA file an https client should trust (`ca_file`).
  std::filesystem::path ca_file() const { return pki_dir() / "ca.pem"; }

 private:
  TempDir dir_;
  std::filesystem::path socket_;
  std::unique_ptr<Child> child_;
};

/// tests/lab/storelab.py in the source tree.
std::filesystem::path storelab_script();

}  // namespace storewatch::test
