#include "probes/systemd_unit.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace storewatch::probes {
namespace {

struct UnitType {
  std::string_view suffix;
  std::string_view interface;  ///< the one with `Result`; empty if none
};

constexpr std::array<UnitType, 11> kUnitTypes{{
    {".service", "org.freedesktop.systemd1.Service"},
    {".socket", "org.freedesktop.systemd1.Socket"},
    {".target", ""},
    {".device", ""},
    {".mount", "org.freedesktop.systemd1.Mount"},
    {".automount", "org.freedesktop.systemd1.Automount"},
    {".swap", "org.freedesktop.systemd1.Swap"},
    {".timer", "org.freedesktop.systemd1.Timer"},
    {".path", "org.freedesktop.systemd1.Path"},
    {".slice", ""},
    {".scope", "org.freedesktop.systemd1.Scope"},
}};

const UnitType* type_of(std::string_view unit) {
  for (const auto& t : kUnitTypes) {
    if (unit.size() > t.suffix.size() && unit.ends_with(t.suffix)) return &t;
  }
  return nullptr;
}

bool allowed(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
         c == '_' || c == '.' || c == '\\' || c == '-' || c == '@';
}

ProbeResult with(ProbeStatus status, std::string message) {
  ProbeResult r;
  r.status = status;
  r.message = std::move(message);
  return r;
}

}  // namespace

Result<std::string> unit_name(std::string_view configured) {
  if (configured.empty()) return Error{"unit is empty"};
  auto bad = std::find_if(configured.begin(), configured.end(), [](char c) { return !allowed(c); });
  if (bad != configured.end()) {
    return Error{
        fmt::format("unit \"{}\": '{}' is not allowed in a unit name (only letters, "
                    "digits and :_.\\@-)",
                    configured, *bad)};
  }
  std::string name(configured);
  if (type_of(name) == nullptr) name += ".service";
  if (name.size() > 255) return Error{fmt::format("unit \"{}\" is longer than 255", configured)};
  const auto dot = name.rfind('.');
  const std::string_view prefix = std::string_view(name).substr(0, dot);
  if (prefix.empty() || prefix.starts_with('.')) {
    return Error{fmt::format("unit \"{}\" has no name before its type", configured)};
  }
  const auto at = prefix.find('@');
  if (at != std::string_view::npos) {
    if (prefix.find('@', at + 1) != std::string_view::npos) {
      return Error{fmt::format("unit \"{}\" has more than one '@'", configured)};
    }
    if (at == 0) return Error{fmt::format("unit \"{}\" has no name before '@'", configured)};
    if (at + 1 == prefix.size()) {
      return Error{fmt::format("unit \"{}\" is a template: name an instance, such as {}1{}",
                               configured, prefix, name.substr(dot))};
    }
  }
  return name;
}

std::string type_interface(std::string_view unit) {
  const UnitType* t = type_of(unit);
  return t == nullptr ? std::string() : std::string(t->interface);
}

ProbeResult assess(std::string_view unit, const UnitState& s,
                   std::chrono::system_clock::time_point now) {
  if (s.load_state == "not-found")
    return with(ProbeStatus::fail, fmt::format("unit {} not found", unit));
  if (s.load_state == "masked" && s.active_state != "active") {
    return with(ProbeStatus::fail, fmt::format("{} is masked ({})", unit, s.active_state));
  }
  if (s.load_state == "bad-setting" || s.load_state == "error") {
    return with(ProbeStatus::fail, fmt::format("{} failed to load ({})", unit, s.load_state));
  }

  ProbeResult r;
  const std::string& state = s.active_state;
  std::string detail = s.sub_state;
  if (state == "active") {
    r.status = ProbeStatus::ok;
  } else if (state == "reloading" || state == "activating" || state == "deactivating") {
    r.status = ProbeStatus::warn;
  } else if (state == "inactive") {
    r.status = ProbeStatus::fail;
  } else if (state == "failed") {
    r.status = ProbeStatus::fail;
    if (!s.result.empty() && s.result != "success") detail = s.result;
  } else {
    return with(ProbeStatus::unknown,
                fmt::format("{} is in an unknown state \"{}\" ({})", unit, state, s.sub_state));
  }
  r.message = detail.empty() ? fmt::format("{} {}", unit, state)
                             : fmt::format("{} {} ({})", unit, state, detail);
  if (s.n_restarts && *s.n_restarts > 0) {
    r.message += fmt::format(", restarted {} time{}", *s.n_restarts, *s.n_restarts == 1 ? "" : "s");
  }

  r.metrics["active"] = state == "active" ? 1.0 : 0.0;
  if (s.n_restarts) r.metrics["n_restarts"] = static_cast<double>(*s.n_restarts);
  if (state == "active" && s.active_enter_usec > 0) {
    const auto since = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::microseconds(s.active_enter_usec)));
    const auto up = std::chrono::duration<double>(now - since).count();
    r.metrics["active_seconds"] = std::max(up, 0.0);
  }
  return r;
}

ProbeResult assess_error(std::string_view unit, std::string_view name, std::string_view message) {
  if (name == "org.freedesktop.systemd1.NoSuchUnit") {
    return with(ProbeStatus::fail, fmt::format("unit {} not found", unit));
  }
  if (name == "org.freedesktop.DBus.Error.ServiceUnknown" ||
      name == "org.freedesktop.DBus.Error.NameHasNoOwner") {
    return with(ProbeStatus::unknown,
                fmt::format("systemd is not on the system bus ({}: {})", name, message));
  }
  if (name == "org.freedesktop.DBus.Error.NoReply" ||
      name == "org.freedesktop.DBus.Error.Timeout") {
    return with(ProbeStatus::unknown,
                fmt::format("no reply from systemd about {} ({}: {})", unit, name, message));
  }
  if (name == "org.freedesktop.DBus.Error.AccessDenied") {
    return with(ProbeStatus::unknown,
                fmt::format("access denied asking systemd about {} ({})", unit, message));
  }
  return with(ProbeStatus::unknown,
              fmt::format("systemd could not tell about {}: {}: {}", unit, name, message));
}

}  // namespace storewatch::probes
