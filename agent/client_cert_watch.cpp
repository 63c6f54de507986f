#include "agent/client_cert_watch.h"

#include <utility>

#include "agent/status.h"
#include "base/clock.h"
#include "base/log.h"

namespace storewatch::agent {

void ClientCertWatch::load() {
  if (sync_.cert_file.empty()) {
    // No certificate (any more): an incident of an earlier run is over.
    engine_.set_client_cert_problem(std::nullopt, config::Severity::high);
    return;
  }
  auto cert = sync::read_cert(sync_.cert_file);
  if (!cert) {
    error_ = cert.error().message;
    log::warn("sync: cannot read the client certificate's expiry: {}", error_);
    return;
  }
  error_.clear();
  info_ = std::move(*cert);
  log::info("sync: client certificate {} ({}) valid until {}", info_->file.string(), info_->subject,
            format_rfc3339(info_->not_after));
  check();
}

void ClientCertWatch::check() {
  if (!info_) return;
  const WallTime now = SystemClock().wall_now();
  auto problem = sync::expiry_problem(*info_, sync_.cert_warn_days, now);
  if (problem) {
    log::warn("sync: {}", *problem);
  } else if (warned_) {
    log::info("sync: the client certificate in use is valid until {}; expiry warning cleared",
              format_rfc3339(info_->not_after));
  }
  warned_ = problem.has_value();
  engine_.set_client_cert_problem(
      problem, info_->not_after <= now ? config::Severity::critical : config::Severity::high);
}

nlohmann::json ClientCertWatch::to_json() const {
  return client_cert_json(sync_, info_, error_, SystemClock().wall_now());
}

}  // namespace storewatch::agent
