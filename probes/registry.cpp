#include "probes/registry.h"

#include <algorithm>
#include <stdexcept>

#include "probes/dns_probe.h"
#include "probes/escpos_probe.h"
#include "probes/exec_probe.h"
#include "probes/http_probe.h"
#include "probes/icmp_probe.h"
#include "probes/system_probe.h"
#include "probes/systemd_probe.h"
#include "probes/tcp_probe.h"

namespace storewatch::probes {
namespace {

// One line per probe type.
// clang-format off
const ProbeType kTypes[] = {
    tcp_probe_type(),
    icmp_probe_type(),
    http_probe_type(),
    dns_probe_type(),
    escpos_probe_type(),
    exec_probe_type(),
    system_probe_type(),
    systemd_probe_type(),
};
// clang-format on

const std::vector<config::ProbeTypeSchema> kSchemas = [] {
  std::vector<config::ProbeTypeSchema> out;
  for (const ProbeType& t : kTypes) out.push_back(t.schema);
  return out;
}();

}  // namespace

std::string_view to_string(ProbeStatus s) {
  switch (s) {
    case ProbeStatus::ok: return "ok";
    case ProbeStatus::warn: return "warn";
    case ProbeStatus::fail: return "fail";
    case ProbeStatus::unknown: return "unknown";
  }
  return "unknown";
}

std::span<const ProbeType> all_types() {
  return kTypes;
}

const ProbeType* find_type(std::string_view type) {
  auto it = std::find_if(std::begin(kTypes), std::end(kTypes),
                         [&](const ProbeType& t) { return t.schema.type == type; });
  return it == std::end(kTypes) ? nullptr : &*it;
}

std::span<const config::ProbeTypeSchema> schemas() {
  return kSchemas;
}

std::unique_ptr<Probe> create(const config::ProbeConfig& config,
                              boost::asio::any_io_executor executor) {
  const ProbeType* t = find_type(config.type);
  if (t == nullptr) throw std::logic_error("probe type not registered: " + config.type);
  return t->create(config, std::move(executor));
}

}  // namespace storewatch::probes
