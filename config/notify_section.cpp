// [[notify]]: the channels incidents are notified through (DESIGN §7).
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>

#include "config/sections.h"

namespace storewatch::config {

std::string_view to_string(NotifyType t) {
  switch (t) {
    case NotifyType::slack: return "slack";
    case NotifyType::teams: return "teams";
    case NotifyType::teams_legacy: return "teams-legacy";
    case NotifyType::webhook: return "webhook";
    case NotifyType::email: return "email";
  }
  return "webhook";
}

namespace {
constexpr std::array<NotifyOn, 6> kAllOn = {NotifyOn::opened,           NotifyOn::escalated,
                                            NotifyOn::acknowledged,     NotifyOn::flapping_started,
                                            NotifyOn::flapping_stopped, NotifyOn::resolved};
}  // namespace

std::string_view to_string(NotifyOn on) {
  switch (on) {
    case NotifyOn::opened: return "opened";
    case NotifyOn::escalated: return "escalated";
    case NotifyOn::acknowledged: return "acknowledged";
    case NotifyOn::flapping_started: return "flapping_started";
    case NotifyOn::flapping_stopped: return "flapping_stopped";
    case NotifyOn::resolved: return "resolved";
  }
  return "opened";
}

std::optional<NotifyOn> parse_notify_on(std::string_view s) {
  for (NotifyOn on : kAllOn) {
    if (to_string(on) == s) return on;
  }
  return std::nullopt;
}

const NotifyConfig* Config::find_notify(std::string_view name) const {
  for (const NotifyConfig& n : notify) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

namespace detail {
namespace {

constexpr std::string_view kTypes = "slack|teams|teams-legacy|webhook|email";

std::optional<NotifyType> parse_type(std::string_view s) {
  for (NotifyType t : {NotifyType::slack, NotifyType::teams, NotifyType::teams_legacy,
                       NotifyType::webhook, NotifyType::email}) {
    if (to_string(t) == s) return t;
  }
  return std::nullopt;
}

bool has_space(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) != 0 ||
           std::iscntrl(static_cast<unsigned char>(c)) != 0;
  });
}

/// A mailbox as SMTP needs it: local@domain, no spaces, no angle brackets.
bool plain_address(std::string_view a) {
  const auto at = a.find('@');
  return at != std::string_view::npos && at > 0 && at + 1 < a.size() &&
         a.find('@', at + 1) == std::string_view::npos && !has_space(a) &&
         a.find_first_of("<>,;\"") == std::string_view::npos;
}

struct NotifySource {
  bool named = false;
  SourcePos name;
};

void read_one(Context& ctx, const toml::table& table, std::size_t number, NotifyConfig& n,
              NotifySource& src) {
  n.where = position(table.source());
  std::string scope = fmt::format("[[notify]] #{}", number);
  if (const toml::node* name = table.get("name")) {
    Value v(ctx, scope, "name", *name);
    if (auto id = v.identifier("channel name", "_.-", 64)) {
      n.name = *id;
      src.named = true;
      src.name = v.where();
      scope = fmt::format("[[notify]] \"{}\"", *id);
    }
  }
  std::optional<NotifyType> type;
  if (const toml::node* node = table.get("type")) {
    Value v(ctx, scope, "type", *node);
    if (auto t = v.choice(kTypes)) type = parse_type(*t);
    if (type) n.type = *type;
  }
  const bool email = type && *type == NotifyType::email;
  const bool http = type && *type != NotifyType::email;
  // A key of the other kind of channel is an error; with an unknown type,
  // the type error says enough.
  const auto only = [&](const Value& v, bool for_email) {
    if (!type || email == for_email) return true;
    v.error(fmt::format("is for {} channels; this channel is type {}",
                        for_email ? "email" : "slack, teams and webhook", to_string(*type)));
    return false;
  };
  const Field fields[] = {
      {"name", [](const Value&) {}, true},
      {"type", [](const Value&) {}, true},
      {"url_file",
       [&](const Value& v) {
         if (!only(v, false)) return;
         if (auto f = v.file(Empty::error)) n.url_file = *f;
       },
       http},
      {"secret_file",
       [&](const Value& v) {
         if (type && *type != NotifyType::webhook) {
           v.error(
               fmt::format("is for webhook channels; this channel is type {}", to_string(*type)));
           return;
         }
         if (auto f = v.file(Empty::allowed)) n.secret_file = *f;
       }},
      {"smtp_url",
       [&](const Value& v) {
         if (!only(v, true)) return;
         auto url = v.string();
         if (!url) return;
         if (!(url->starts_with("smtp://") || url->starts_with("smtps://")) || has_space(*url) ||
             url->size() <= 8) {
           v.error(fmt::format("\"{}\" must be smtp://host[:port] or smtps://host[:port]", *url));
         } else if (url->find('@') != std::string::npos) {
           v.error("must not hold credentials: use username and password_file");
         } else {
           n.smtp_url = *url;
         }
       },
       email},
      {"starttls",
       [&](const Value& v) {
         if (!only(v, true)) return;
         if (auto c = v.choice("required|optional|off")) n.starttls = *c;
       }},
      {"from",
       [&](const Value& v) {
         if (!only(v, true)) return;
         auto a = v.string();
         if (!a) return;
         if (!plain_address(*a)) {
           v.error(fmt::format("\"{}\" is not a mail address such as storewatch@example.com", *a));
         } else {
           n.from = *a;
         }
       },
       email},
      {"to",
       [&](const Value& v) {
         if (!only(v, true)) return;
         auto list = v.string_array();
         if (!list) return;
         if (list->empty()) {
           v.error("must name at least one recipient");
           return;
         }
         for (const std::string& a : *list) {
           if (!plain_address(a)) {
             v.error(fmt::format("\"{}\" is not a mail address such as ops@example.com", a));
             return;
           }
         }
         n.to = std::move(*list);
       },
       email},
      {"username",
       [&](const Value& v) {
         if (!only(v, true)) return;
         if (auto u = v.string()) n.username = *u;
       }},
      {"password_file",
       [&](const Value& v) {
         if (!only(v, true)) return;
         if (auto f = v.file(Empty::allowed)) n.password_file = *f;
       }},
      {"min_severity",
       [&](const Value& v) {
         auto s = v.string();
         if (!s) return;
         if (auto parsed = parse_severity(*s)) {
           n.min_severity = *parsed;
         } else {
           v.error(fmt::format("\"{}\" is not a severity: use critical, high, medium, low or info",
                               *s));
         }
       }},
      {"match",
       [&](const Value& v) {
         // One pattern or a list of them.
         std::vector<std::string> texts;
         if (v.node().is_string()) {
           texts.push_back(*v.string());
         } else if (auto list = v.string_array()) {
           texts = std::move(*list);
         } else {
           return;
         }
         for (const std::string& t : texts) {
           std::string problem;
           if (auto m = ProbeMatch::parse(t, &problem)) {
             n.match.push_back(std::move(*m));
           } else {
             v.error(problem);
             return;
           }
         }
       }},
      {"on",
       [&](const Value& v) {
         auto list = v.string_array();
         if (!list) return;
         unsigned bits = 0;
         for (const std::string& s : *list) {
           auto on = parse_notify_on(s);
           if (!on) {
             v.error(
                 fmt::format("\"{}\" is not a transition: use opened, escalated, acknowledged, "
                             "flapping_started, flapping_stopped or resolved",
                             s));
             return;
           }
           bits |= static_cast<unsigned>(*on);
         }
         if (bits == 0) {
           v.error("must name at least one transition (remove the [[notify]] to silence it)");
           return;
         }
         n.on = bits;
       }},
      {"group_wait",
       [&](const Value& v) {
         auto d = v.duration();
         if (!d) return;
         if (*d > std::chrono::minutes(10)) {
           v.error(fmt::format("must be at most 10m, got \"{}\"", format_duration(*d)));
           return;
         }
         if (type && *type == NotifyType::webhook && d->count() > 0) {
           v.error(
               "webhook channels do not group: each notice is one POST (use \"0s\" or "
               "leave it out)");
           return;
         }
         n.group_wait = *d;
       }},
      {"rate_limit",
       [&](const Value& v) {
         if (auto r = v.integer(0, 3600)) n.rate_limit = static_cast<int>(*r);
       }},
      {"proxy",
       [&](const Value& v) {
         auto p = v.string();
         if (!p) return;
         if (!(p->starts_with("http://") || p->starts_with("https://") ||
               p->starts_with("socks5://") || p->starts_with("socks5h://")) ||
             has_space(*p)) {
           v.error(fmt::format(
               "\"{}\" must be http://, https://, socks5:// or socks5h:// host:port", *p));
           return;
         }
         n.proxy = *p;
       }},
      {"ca_file",
       [&](const Value& v) {
         if (auto f = v.file(Empty::error)) n.ca_file = *f;
       }},
      {"timeout",
       [&](const Value& v) {
         if (auto d = v.duration(Millis(100))) n.timeout = *d;
       }},
      {"notify_ttl",
       [&](const Value& v) {
         if (auto d = v.duration(std::chrono::seconds(1))) n.notify_ttl = *d;
       }},
  };
  // Webhook receivers are programs: one POST per notice, at once.
  if (type && *type == NotifyType::webhook) n.group_wait = Millis(0);
  read_fields(ctx, scope, table, fields, n.where);
  if (!n.username.empty() && n.password_file.empty() && email) {
    ctx.error(n.where, fmt::format("{}: username is set but password_file is not", scope));
  }
}

}  // namespace

void read_notify(Context& ctx, const toml::node* node, Config& out) {
  if (node == nullptr) return;
  const toml::array& array = *node->as_array();
  std::vector<NotifySource> sources(array.size());
  out.notify.resize(array.size());
  for (std::size_t i = 0; i < array.size(); ++i) {
    read_one(ctx, *array.get(i)->as_table(), i + 1, out.notify[i], sources[i]);
  }
  std::map<std::string_view, std::size_t> first;
  for (std::size_t i = 0; i < out.notify.size(); ++i) {
    if (!sources[i].named) continue;
    auto [it, inserted] = first.emplace(out.notify[i].name, i);
    if (inserted) continue;
    ctx.error(sources[i].name,
              fmt::format("[[notify]] \"{}\" name: duplicate channel name; the first is at {}",
                          out.notify[i].name, to_string(sources[it->second].name)));
  }
}

}  // namespace detail
}  // namespace storewatch::config
