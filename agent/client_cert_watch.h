#pragma once
/// \file
/// The client certificate the link to HQ uses, and the warning before it
/// expires: a log line, `sync status` and the agent's own incident
/// (kConditionClientCert).

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "agent/engine.h"
#include "config/config.h"
#include "sync/client_cert.h"

namespace storewatch::agent {

class ClientCertWatch {
 public:
  /// `sync`'s cert_file is read again by load(): it must outlive the watch.
  ClientCertWatch(const config::SyncConfig& sync, Engine& engine) : sync_(sync), engine_(engine) {}

  /// Reads cert_file as it is now: at start, and after the TLS files were
  /// reloaded.
  void load();

  /// Compares the expiry of the certificate in use with now (daily, and
  /// after each load).
  void check();

  /// The `client_cert` member of `sync status` (agent/status.h).
  nlohmann::json to_json() const;

 private:
  const config::SyncConfig& sync_;
  Engine& engine_;
  std::optional<sync::CertInfo> info_;
  std::string error_;
  bool warned_ = false;
};

}  // namespace storewatch::agent
