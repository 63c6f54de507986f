#pragma once
/// \file
/// Every probe type storewatch knows, chosen by the `type` key in config.

#include <span>
#include <string_view>
#include <vector>

#include "probes/probe.h"

namespace storewatch::probes {

/// All probe types, in registration order.
std::span<const ProbeType> all_types();

/// The type named `type`, or nullptr.
const ProbeType* find_type(std::string_view type);

/// The key tables the config loader validates [[probe]] tables against.
std::span<const config::ProbeTypeSchema> schemas();

/// Creates the probe for a validated config (its type must exist).
std::unique_ptr<Probe> create(const config::ProbeConfig& config,
                              boost::asio::any_io_executor executor);

}  // namespace storewatch::probes
