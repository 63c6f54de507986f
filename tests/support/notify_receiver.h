#pragma once
/// \file
/// A local HTTP receiver for notification tests (tests/support/notify_receiver.py):
/// records every request and answers as told — 200, 429 with Retry-After, a
/// Teams error body with 200, slowly — and can be taken down and brought back
/// on the same port. Its record survives restarts.

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/support.h"

namespace storewatch::test {

class NotifyReceiver {
 public:
  /// Starts it on a free port (`start_now` false: down until start()).
  /// With `cert_file` and `key_file` it speaks https.
  explicit NotifyReceiver(bool start_now = true, std::string cert_file = {},
                          std::string key_file = {});
  ~NotifyReceiver();

  int port() const { return port_; }
  std::string url(const std::string& path = "/hook") const;

  void start();
  void stop();

  /// How it answers from now on.
  void answer(int status, const std::string& body = "ok",
              std::optional<std::string> retry_after = std::nullopt, int delay_ms = 0);
  /// Answers `status` with a body that never ends (a minute at most).
  void answer_endlessly(int status);

  /// Every request so far: {method, path, headers, body, status, at}.
  std::vector<nlohmann::json> requests() const;
  /// The requests it answered with 2xx, bodies parsed as JSON.
  std::vector<nlohmann::json> accepted_bodies() const;

 private:
  void behave(nlohmann::json behaviour);
  TempDir dir_;
  int port_ = 0;
  std::string cert_file_, key_file_;
  std::unique_ptr<Child> child_;
};

}  // namespace storewatch::test
