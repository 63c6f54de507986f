#pragma once
/// \file
/// For the per-type probe tests: a [[probe]] table run once in-process (as
/// `storewatch probe run` does) or through the real binary.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <string>

#include "config/config.h"
#include "probes/registry.h"
#include "probes/run_once.h"
#include "tests/support/support.h"

namespace storewatch::test {

/// Loads `probe_toml` (the body of one [[probe]] table, without name) as a
/// probe named "p"; fails the test on config errors.
inline config::ProbeConfig probe_config(const std::string& probe_toml) {
  auto loaded = config::load_string(
      "[store]\nid = \"store-lab\"\n\n[[probe]]\nname = \"p\"\n" + probe_toml + "\n", "probe.toml",
      probes::schemas());
  std::string diagnostics;
  for (const auto& d : loaded.diagnostics) diagnostics += config::to_string(d) + "\n";
  if (!loaded.ok()) throw std::runtime_error("bad probe config:\n" + diagnostics);
  return loaded.config->probes.at(0);
}

/// Runs the probe once, in this process.
inline probes::ProbeResult run_probe(const std::string& probe_toml) {
  return probes::run_once(probe_config(probe_toml));
}

/// Runs `storewatch probe run p --json` with the probe in a config file of
/// its own; returns the exit code and the parsed JSON (null if none).
struct CliProbeResult {
  int exit_code = -1;
  nlohmann::json result;
  std::string err;
};
inline CliProbeResult run_probe_cli(const TempDir& dir, const std::string& probe_toml) {
  const auto file = dir / "probe-run.toml";
  write_file(file, fmt::format("[store]\nid = \"store-lab\"\n\n[agent]\ndata_dir = \"{}\"\n\n"
                               "[[probe]]\nname = \"p\"\n{}\n",
                               (dir / "data").string(), probe_toml));
  auto r = run(storewatch_command({"--config", file.string(), "probe", "run", "p", "--json"}));
  CliProbeResult out;
  out.exit_code = r.exit_code;
  out.err = r.err;
  out.result = nlohmann::json::parse(r.out, nullptr, false);
  if (out.result.is_discarded()) out.result = nullptr;
  return out;
}

/// "ok", "warn", "fail" or "unknown", for readable EXPECTs.
inline std::string status_of(const probes::ProbeResult& r) {
  return std::string(probes::to_string(r.status));
}

}  // namespace storewatch::test
