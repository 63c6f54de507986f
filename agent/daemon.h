#pragma once
/// \file
/// `storewatch run`: the daemon. One io_context thread owns the probes'
/// I/O, the incident engine, the publisher and the control socket; the store
/// writer commits on its own thread; Paho's threads only post.

#include "config/config.h"

namespace storewatch::agent {

/// Runs until SIGTERM or SIGINT. Returns the process exit code: 0 after a
/// clean stop, 1 when it could not start (each cause logged in one line).
int run_daemon(const config::Config& config);

}  // namespace storewatch::agent
