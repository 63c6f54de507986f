#pragma once
/// \file
/// Internal to config/: one reader per top-level section. Each gets its
/// section's node (nullptr when absent) and fills its part of the config;
/// config.cpp lists them in one table per config type.

#include <vector>

#include "config/config.h"
#include "config/reader.h"

namespace storewatch::config::detail {

/// [store]
void read_store(Context& ctx, const toml::node* node, Config& out);
/// [agent]
void read_agent(Context& ctx, const toml::node* node, Config& out);
/// [sync]: the broker keys plus batching.
void read_sync(Context& ctx, const toml::node* node, Config& out);
/// [[probe]], then the checks across probes (unique names, depends_on).
void read_probes(Context& ctx, const toml::node* node, Config& out);
/// [incidents]: the lifecycle knobs.
void read_incidents(Context& ctx, const toml::node* node, Config& out);
/// [[remediation]], then unique names.
void read_remediations(Context& ctx, const toml::node* node, Config& out);
/// [[silence]]
void read_silences(Context& ctx, const toml::node* node, Config& out);
/// [[notify]], then unique names.
void read_notify(Context& ctx, const toml::node* node, Config& out);
/// The checks across sections, once every section is read (remediations and
/// probes may come in any order and from any file): a probe's `remediation`,
/// a remediation's `precondition`, silences that match no probe,
/// `only_outside_trading_hours` without trading hours. `root` is the merged
/// document, for the positions of the values.
void check_references(Context& ctx, const toml::table& root, const Config& config);
/// HQ's [hq]: the broker keys plus the database.
void read_hq(Context& ctx, const toml::node* node, HqConfig& out);

/// The keys of BrokerConfig, shared by [sync] and [hq]; each Field writes into `b`.
std::vector<Field> broker_fields(BrokerConfig& b);

/// Where a section's missing keys are reported: its table's header, or the
/// main file's line 1 when the config has no such table.
SourcePos section_file(const Context& ctx, const toml::node* node);

}  // namespace storewatch::config::detail
