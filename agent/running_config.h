#pragma once
/// \file
/// The config in force: an immutable snapshot, replaced as a whole when a
/// reload is accepted (agent/reload.h), never edited in place.

#include <memory>
#include <utility>

#include "config/config.h"

namespace storewatch::agent {

/// Which snapshot is the running config. The loop's parts that read it at
/// each use (HQ commands, the control handlers, notices, `status`) hold this
/// and dereference it each time; a part that keeps pointers into a snapshot
/// (the engine, the scheduler, the notifier) holds a share() of its own, so
/// the snapshot it points into lives as long as it does. Loop thread only:
/// another thread gets a copy of what it needs.
class RunningConfig {
 public:
  explicit RunningConfig(std::shared_ptr<const config::Config> config)
      : current_(std::move(config)) {}

  const config::Config& operator*() const { return *current_; }
  const config::Config* operator->() const { return current_.get(); }

  /// The snapshot in force now, for a part that keeps pointers into it.
  std::shared_ptr<const config::Config> share() const { return current_; }

  /// Makes `next` the running config; who still holds the old one keeps it.
  void replace(std::shared_ptr<const config::Config> next) { current_ = std::move(next); }

 private:
  std::shared_ptr<const config::Config> current_;
};

}  // namespace storewatch::agent
