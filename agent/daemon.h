#pragma once
/// \file
/// `storewatch run`: the daemon. One io_context thread owns the probes'
/// I/O, the incident engine, the publisher and the control socket; the store
/// writer commits on its own thread; Paho's threads only post.

#include <functional>

#include "config/config.h"

namespace storewatch::agent {

/// Loads the config again from where the running one came from (the same
/// file and conf.d), for SIGHUP.
using ConfigLoader = std::function<config::Loaded<config::Config>()>;

/// Runs until SIGTERM or SIGINT. Returns the process exit code: 0 after a
/// clean stop, 1 when it could not start (each cause logged in one line).
/// SIGHUP reloads the config through `load` (agent/reload.h says what may
/// change without a restart) and re-reads the sync TLS files; without a
/// loader only the TLS files are re-read.
int run_daemon(config::Config config, ConfigLoader load = {});

}  // namespace storewatch::agent
