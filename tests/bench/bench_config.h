#pragma once
/// \file
/// The benchmarks' configs: `n` tcp probes of a dead port, read through the
/// real loader like the daemon's config (exits with the diagnostics if the
/// text does not load); and the results such a probe gives.

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "config/config.h"
#include "probes/probe.h"
#include "probes/registry.h"

namespace storewatch::bench {

/// `head`: the tables before the probes ([store], [incidents]).
inline config::Config tcp_probes_config(std::string head, int n, int fail_after,
                                        int recover_after) {
  for (int i = 0; i < n; ++i) {
    head += fmt::format(
        "\n[[probe]]\nname = \"p{:04}\"\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = 9\n"
        "interval = \"10s\"\nfail_after = {}\nrecover_after = {}\nseverity = \"high\"\n",
        i, fail_after, recover_after);
  }
  auto loaded = config::load_string(head, "bench.toml", probes::schemas());
  if (!loaded.ok()) {
    std::string errors;
    for (const auto& d : loaded.diagnostics) errors += config::to_string(d) + "\n";
    std::fprintf(stderr, "bench config: %s", errors.c_str());
    std::exit(1);
  }
  return std::move(*loaded.config);
}

/// A tcp probe's result: connected, or refused.
inline probes::ProbeResult result_of(probes::ProbeStatus status) {
  probes::ProbeResult r;
  r.status = status;
  r.latency = std::chrono::microseconds(1234);
  r.message = status == probes::ProbeStatus::ok ? "connected to 127.0.0.1:9 in 1.2 ms"
                                                : "connect to 127.0.0.1:9: connection refused";
  r.metrics["connect_ms"] = 1.234;
  return r;
}

}  // namespace storewatch::bench
