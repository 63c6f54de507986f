// [store], [agent], [sync] and HQ's [hq]; [sync] and [hq] share the broker keys.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <limits>
#include <system_error>

#include "config/sections.h"

#include "config/postgres_uri.h"

namespace storewatch::config::detail {
namespace {

using namespace std::chrono_literals;

// sockaddr_un::sun_path holds 108 bytes including the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;

// MQTT carries the keepalive as a 16-bit number of seconds.
constexpr Millis kMaxKeepalive = std::chrono::seconds(65535);

constexpr std::string_view kZoneInfo = "/usr/share/zoneinfo";

std::optional<std::string> timezone(const Value& v) {
  auto tz = v.string();
  if (!tz) return std::nullopt;
  const bool well_formed = is_identifier(*tz, "_+-/", 64) && tz->front() != '/' &&
                           tz->back() != '/' && tz->find("..") == std::string::npos &&
                           tz->find("//") == std::string::npos;
  if (!well_formed) {
    v.error(fmt::format("\"{}\" is not a time zone name like \"America/Chicago\" or \"UTC\"", *tz));
    return std::nullopt;
  }
  if (auto zone = TimeZone::locate(*tz); !zone) {
    // A machine without the tz database (a build host, a slim container)
    // cannot tell; the gateway that runs the agent has one.
    std::error_code ec;
    if (std::filesystem::is_directory(kZoneInfo, ec)) {
      v.error(
          fmt::format("unknown time zone \"{}\" (no {}/{}); use an IANA name like "
                      "\"America/Chicago\"",
                      *tz, kZoneInfo, *tz));
      return std::nullopt;
    }
    v.warning(fmt::format("cannot check time zone \"{}\": this machine has no tz database ({})",
                          *tz, kZoneInfo));
  }
  return tz;
}

constexpr Millis kMinRetention = 1h;
constexpr std::int64_t kMinDbBytes = std::int64_t{1} << 20;

std::optional<std::string> topic_prefix(const Value& v) {
  auto prefix = v.string();
  if (!prefix) return std::nullopt;
  std::string_view problem;
  if (prefix->empty()) {
    problem = "must not be empty";
  } else if (prefix->find_first_of("+#") != std::string::npos) {
    problem = "must not contain the wildcards '+' or '#'";
  } else if (prefix->front() == '/' || prefix->back() == '/') {
    problem = "must not start or end with '/'";
  } else if (prefix->find("//") != std::string::npos) {
    problem = "must not contain an empty level (\"//\")";
  } else if (prefix->front() == '$') {
    problem = "must not start with '$' (reserved for $SYS and $share)";
  }
  if (!problem.empty()) {
    v.error(fmt::format("\"{}\" {}; e.g. \"storewatch/v1\"", *prefix, problem));
    return std::nullopt;
  }
  return prefix;
}

std::string default_hq_client_id() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) return "storewatch-hq";
  std::string name(host.data());
  // A host name may hold characters a client id should not.
  std::replace_if(
      name.begin(), name.end(),
      [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '_' && c != '.';
      },
      '-');
  return name.empty() ? "storewatch-hq" : "storewatch-hq-" + name;
}

/// A command key file: a file this machine should have (relative is an
/// error, missing a warning); when it can be read here, its key must be
/// usable (read_command_key), else an error. Unreadable here (a technician
/// checking a root-only file) is a warning: the daemon reads it as its user.
std::optional<std::filesystem::path> command_key_file(const Value& v) {
  auto path = v.file(Empty::allowed);
  if (!path || path->empty()) return path;
  std::error_code ec;
  if (!std::filesystem::exists(*path, ec)) return path;  // file() warned
  if (::access(path->c_str(), R_OK) != 0) {
    v.warning(
        fmt::format("cannot read {} here ({}): not checked; the daemon's user must be able "
                    "to read it",
                    path->string(), std::error_code(errno, std::generic_category()).message()));
    return path;
  }
  if (auto key = read_command_key(*path); !key) {
    v.error(key.error().message);
    return std::nullopt;
  }
  return path;
}

int to_int(std::int64_t v) {
  return static_cast<int>(std::clamp<std::int64_t>(v, std::numeric_limits<int>::min(),
                                                   std::numeric_limits<int>::max()));
}

}  // namespace

SourcePos section_file(const Context& ctx, const toml::node* node) {
  if (node != nullptr && node->source().begin.line > 0) {
    return position(node->source(), ctx.main_file().file);
  }
  // No such table: the key is missing from the config as a whole, which
  // starts at the main file's first line.
  SourcePos start = ctx.main_file();
  start.line = 1;
  start.column = 1;
  return start;
}

void read_store(Context& ctx, const toml::node* node, Config& out) {
  static constexpr std::string_view kScope = "[store]";
  StoreConfig& s = out.store;
  s.where = node != nullptr ? position(node->source()) : ctx.main_file();
  const Field fields[] = {
      {"id",
       [&s](const Value& v) {
         if (auto id = v.identifier("store id", kStoreIdExtraChars, kStoreIdMaxLength)) s.id = *id;
       },
       true},
      {"name",
       [&s](const Value& v) {
         if (auto name = v.string()) s.name = *name;
       }},
      {"timezone",
       [&s](const Value& v) {
         if (auto tz = timezone(v)) s.timezone = *tz;
       }},
      {"trading_hours",
       [&s](const Value& v) {
         auto hours = v.string();
         if (!hours) return;
         s.trading_hours = *hours;
         if (auto schedule = WeeklySchedule::parse(*hours)) {
           s.trading = std::move(*schedule);
         } else {
           v.error(schedule.error().message);
         }
       }},
  };
  read_fields(ctx, kScope, table_or_empty(node), fields, section_file(ctx, node));
}

void read_agent(Context& ctx, const toml::node* node, Config& out) {
  static constexpr std::string_view kScope = "[agent]";
  AgentConfig& a = out.agent;
  const Field fields[] = {
      {"data_dir",
       [&a](const Value& v) {
         if (auto dir = v.absolute_path()) a.data_dir = *dir;
       }},
      {"control_socket",
       [&a](const Value& v) {
         auto path = v.absolute_path();
         if (!path) return;
         if (path->native().size() > kMaxSocketPath) {
           v.error(fmt::format("is {} bytes long; a unix socket path holds at most {}",
                               path->native().size(), kMaxSocketPath));
           return;
         }
         a.control_socket = *path;
       }},
      {"log_level",
       [&a](const Value& v) {
         auto name = v.string();
         if (!name) return;
         if (auto level = log::parse_level(*name)) {
           a.log_level = *level;
         } else {
           v.error(fmt::format("\"{}\" is not a log level: use debug, info, warn or error", *name));
         }
       }},
      {"max_concurrent_checks",
       [&a](const Value& v) {
         if (auto n = v.integer(1, 10'000)) a.max_concurrent_checks = to_int(*n);
       }},
      {"retention",
       [&a](const Value& v) {
         if (auto d = v.duration(kMinRetention)) a.retention = *d;
       }},
      {"max_db_size",
       [&a](const Value& v) {
         if (auto bytes = v.size(kMinDbBytes)) a.max_db_bytes = *bytes;
       }},
  };
  read_fields(ctx, kScope, table_or_empty(node), fields, section_file(ctx, node));
}

std::vector<Field> broker_fields(BrokerConfig& b) {
  auto file_field = [](std::string_view key, std::filesystem::path& target) {
    return Field{key, [&target](const Value& v) {
                   if (auto path = v.file(Empty::allowed)) target = *path;
                 }};
  };
  return {
      {"broker",
       [&b](const Value& v) {
         auto uri = v.string();
         if (!uri) return;
         if (auto problem = broker_uri_problem(*uri)) {
           v.error(*problem);
         } else {
           b.broker = *uri;
         }
       }},
      {"topic_prefix",
       [&b](const Value& v) {
         if (auto prefix = topic_prefix(v)) b.topic_prefix = *prefix;
       }},
      file_field("ca_file", b.ca_file),
      file_field("cert_file", b.cert_file),
      file_field("key_file", b.key_file),
      {"username",
       [&b](const Value& v) {
         if (auto name = v.string()) b.username = *name;
       }},
      file_field("password_file", b.password_file),
      {"keepalive",
       [&b](const Value& v) {
         auto d = v.duration(1s);
         if (!d) return;
         if (*d > kMaxKeepalive) {
           v.error(fmt::format("must be at most {} (MQTT's limit), got \"{}\"",
                               format_duration(kMaxKeepalive), format_duration(*d)));
           return;
         }
         b.keepalive = *d;
       }},
      {"reconnect_max",
       [&b](const Value& v) {
         if (auto d = v.duration(Millis(1))) b.reconnect_max = *d;
       }},
  };
}

void read_sync(Context& ctx, const toml::node* node, Config& out) {
  static constexpr std::string_view kScope = "[sync]";
  SyncConfig& s = out.sync;
  std::vector<Field> fields = broker_fields(s);
  fields.push_back({"batch_max_events", [&s](const Value& v) {
                      if (auto n = v.integer(1, 10'000)) s.batch_max_events = to_int(*n);
                    }});
  fields.push_back({"inflight_batches", [&s](const Value& v) {
                      if (auto n = v.integer(1, 1'000)) s.inflight_batches = to_int(*n);
                    }});
  fields.push_back({"ack_timeout", [&s](const Value& v) {
                      if (auto d = v.duration(Millis(1))) s.ack_timeout = *d;
                    }});
  fields.push_back({"cert_warn_days", [&s](const Value& v) {
                      if (auto n = v.integer(0, 3650)) s.cert_warn_days = to_int(*n);
                    }});
  fields.push_back({"command_key_file", [&s](const Value& v) {
                      if (auto path = command_key_file(v)) s.command_key_file = *path;
                    }});
  read_fields(ctx, kScope, table_or_empty(node), fields, section_file(ctx, node));
}

void read_hq(Context& ctx, const toml::node* node, HqConfig& out) {
  static constexpr std::string_view kScope = "[hq]";
  HqConfig& h = out;
  std::vector<Field> fields = broker_fields(h);
  fields.push_back({"database", [&h](const Value& v) {
                      auto text = v.string();
                      if (!text) return;
                      if (is_postgresql_uri(*text)) {
                        if (auto problem = postgresql_uri_problem(*text)) {
                          v.error(*problem);
                        } else {
                          h.postgresql = *text;
                        }
                        return;
                      }
                      if (auto path = v.absolute_path()) h.database = *path;
                    }});
  fields.push_back({"database_password_file", [&h](const Value& v) {
                      if (auto path = v.file(Empty::allowed)) h.database_password_file = *path;
                    }});
  fields.push_back({"share_group", [&h](const Value& v) {
                      if (auto group = v.identifier("share group", "_-", 64))
                        h.share_group = *group;
                    }});
  fields.push_back({"client_id", [&h](const Value& v) {
                      if (auto id = v.identifier("client id", "_.-", 128)) h.client_id = *id;
                    }});
  fields.push_back({"resync_after", [&h](const Value& v) {
                      if (auto d = v.duration(Millis(100))) h.resync_after = *d;
                    }});
  std::optional<SourcePos> enroll_at;
  std::optional<SourcePos> stores_at;
  fields.push_back({"enroll", [&h, &enroll_at](const Value& v) {
                      auto mode = v.choice("auto|list");
                      if (!mode) return;
                      h.enroll =
                          *mode == "list" ? HqConfig::Enroll::list : HqConfig::Enroll::automatic;
                      enroll_at = v.where();
                    }});
  fields.push_back(
      {"stores", [&h, &stores_at](const Value& v) {
         const auto* array = v.node().as_array();
         if (array == nullptr) {
           v.error(fmt::format("expected an array of store ids, got {}", type_name(v.node())));
           return;
         }
         stores_at = v.where();
         for (std::size_t i = 0; i < array->size(); ++i) {
           if (auto id = v.element(i, *array->get(i))
                             .identifier("store id", kStoreIdExtraChars, kStoreIdMaxLength)) {
             h.stores.insert(*id);
           }
         }
       }});
  fields.push_back({"max_seq_jump", [&h](const Value& v) {
                      if (auto n = v.integer(1, std::int64_t{1} << 53)) h.max_seq_jump = *n;
                    }});
  fields.push_back({"max_session_jump", [&h](const Value& v) {
                      if (auto n = v.integer(1, std::int64_t{1} << 53)) h.max_session_jump = *n;
                    }});
  fields.push_back({"command_key_file", [&h](const Value& v) {
                      if (auto path = command_key_file(v)) h.command_key_file = *path;
                    }});
  fields.push_back({"command_keys_dir", [&h](const Value& v) {
                      auto path = v.absolute_path();
                      if (!path) return;
                      std::error_code ec;
                      const auto status = std::filesystem::status(*path, ec);
                      if (status.type() == std::filesystem::file_type::not_found) {
                        v.warning(fmt::format("{} does not exist on this machine", path->string()));
                      } else if (!ec && !std::filesystem::is_directory(status)) {
                        v.error(fmt::format("{} is not a directory", path->string()));
                        return;
                      }
                      h.command_keys_dir = *path;
                    }});
  fields.push_back({"retention", [&h](const Value& v) {
                      if (auto d = v.duration(kMinRetention)) h.retention = *d;
                    }});
  read_fields(ctx, kScope, table_or_empty(node), fields, section_file(ctx, node));
  if (h.client_id.empty()) h.client_id = default_hq_client_id();
  if (h.enroll == HqConfig::Enroll::list && h.stores.empty() && !ctx.has_errors()) {
    ctx.error(enroll_at.value_or(section_file(ctx, node)),
              "[hq] enroll: \"list\" takes only the stores of [hq] stores, and there are none: "
              "list them (stores = [\"store-0042\", ...]) or use enroll = \"auto\"");
  }
  if (h.enroll == HqConfig::Enroll::automatic && !h.stores.empty()) {
    ctx.warning(stores_at.value_or(section_file(ctx, node)),
                "[hq] stores: used only with enroll = \"list\"; with \"auto\" (the default) "
                "every store is taken in");
  }
}

}  // namespace storewatch::config::detail
