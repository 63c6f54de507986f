#pragma once
/// \file
/// `storewatch config polkit`: the polkit rule that lets the service user
/// restart exactly the units the config's `systemd-restart` remediations name.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/config.h"

namespace storewatch::agent {

/// The user the packaged units run storewatch as (systemd/storewatch.sysusers).
inline constexpr std::string_view kServiceUser = "storewatch";

/// The units named by the config's `systemd-restart` remediations, as systemd
/// spells them (`.service` added to a bare name), sorted, each once.
std::vector<std::string> restart_units(const config::Config& config);

/// A polkit rules file (JavaScript, ES5) for /etc/polkit-1/rules.d/: for
/// org.freedesktop.systemd1.manage-units asked by `user`, YES when the verb is
/// "restart" and the unit is one of `units`, NO for everything else (other
/// verbs, other units); actions of other users and other ids are left to the
/// rules after it. Deterministic: the same units give the same bytes.
std::string polkit_rule(const std::vector<std::string>& units,
                        std::string_view user = kServiceUser);

/// Writes `rule` to `path` as polkitd should see it: all at once (a temporary
/// file in the same directory, renamed over `path`), mode 0644. On failure
/// `path` is left as it was.
Status write_polkit_rule(const std::filesystem::path& path, const std::string& rule);

}  // namespace storewatch::agent
