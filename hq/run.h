#pragma once
/// \file
/// `storewatch hq run`: the ingest service, from config to exit code.

#include <string>

#include "config/config.h"

namespace storewatch::hq {

/// Opens the HQ database, connects to the broker with a persistent session
/// (the broker queues the stores' events for a day while HQ is down) and
/// ingests until SIGINT or SIGTERM. A broker that is unreachable is retried
/// for as long as it takes. Returns the exit code: 0 after a clean stop, 1
/// when the database or the broker settings are unusable.
int run(const config::HqConfig& config);

/// The MQTT client id HQ uses when the config names none:
/// "storewatch-hq-<hostname>". It must be stable across restarts for the
/// broker to hand the persistent session back, and distinct per worker.
std::string default_client_id();

}  // namespace storewatch::hq
