#include "sync/notify_payload.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <set>
#include <utility>

namespace storewatch::sync {
namespace {

using json = nlohmann::json;

std::string str(const json& j, const char* key, std::string fallback = {}) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}

const json& obj(const json& j, const char* key) {
  static const json kEmpty = json::object();
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : kEmpty;
}

std::string store_name(const json& notice) {
  const json& store = obj(notice, "store");
  std::string name = str(store, "name");
  std::string id = str(store, "id");
  if (name.empty() || name == id) return id;
  return fmt::format("{} ({})", name, id);
}

std::string what(const json& notice) {
  const std::string kind = str(notice, "kind");
  const json& event = obj(notice, "event");
  if (kind == "opened") return str(event, "type") == "reopened" ? "reopened" : "is down";
  if (kind == "escalated") return "escalated";
  if (kind == "acknowledged") return fmt::format("acknowledged by {}", str(event, "actor"));
  if (kind == "flapping_started") return "is flapping";
  if (kind == "flapping_stopped") return "stopped flapping";
  if (kind == "resolved") return "resolved";
  if (kind == "test") return "test notice";
  return kind;
}

std::string since(const json& notice) {
  const json& inc = obj(notice, "incident");
  if (str(notice, "kind") == "resolved") {
    return fmt::format("down since {}, resolved {}", str(inc, "t_fault", "?"),
                       str(inc, "t_resolved", str(obj(notice, "event"), "at")));
  }
  return fmt::format("since {}", str(inc, "t_fault", str(obj(notice, "event"), "at", "?")));
}

bool good_news(const json& notice) {
  const std::string kind = str(notice, "kind");
  return kind == "resolved" || kind == "flapping_stopped" || kind == "test";
}

/// Slack mrkdwn: &, < and > are control characters.
std::string slack_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string cut(std::string s, std::size_t max) {
  if (s.size() <= max) return s;
  s.resize(max - 3);
  // Do not end inside a UTF-8 sequence.
  while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80) s.pop_back();
  if (!s.empty() && (static_cast<unsigned char>(s.back()) & 0x80) != 0) s.pop_back();
  return s + "...";
}

struct Fact {
  std::string name, value;
};

std::vector<Fact> facts(const json& notice) {
  const json& inc = obj(notice, "incident");
  std::vector<Fact> out = {
      {"Store", store_name(notice)},
      {"Probe", str(inc, "probe")},
      {"Severity", fmt::format("{} ({})", str(inc, "severity"), str(inc, "priority"))},
      {"State", str(inc, "state")},
      {"Since", str(inc, "t_fault", str(obj(notice, "event"), "at"))},
      {"Incident", str(inc, "uid")},
  };
  if (const std::string note = str(obj(notice, "event"), "note"); !note.empty()) {
    out.push_back({"Note", note});
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

Result<ChannelSecrets> load_secrets(const config::NotifyConfig& n) {
  ChannelSecrets s;
  if (!n.url_file.empty()) {
    auto url = config::read_secret(n.url_file);
    if (!url) return Error{fmt::format("url_file: {}", url.error().message)};
    if (!(url->starts_with("https://") || url->starts_with("http://"))) {
      return Error{fmt::format("url_file {}: the URL must start with https:// or http://",
                               n.url_file.string())};
    }
    s.url = std::move(*url);
  }
  if (!n.secret_file.empty()) {
    auto key = config::read_secret(n.secret_file);
    if (!key) return Error{fmt::format("secret_file: {}", key.error().message)};
    if (key->empty()) return Error{fmt::format("secret_file {} is empty", n.secret_file.string())};
    s.hmac_key = std::move(*key);
  }
  if (!n.password_file.empty()) {
    auto pw = config::read_secret(n.password_file);
    if (!pw) return Error{fmt::format("password_file: {}", pw.error().message)};
    s.password = std::move(*pw);
  }
  return s;
}

std::string headline(const json& notice) {
  const json& inc = obj(notice, "incident");
  return fmt::format("[{}] {} {}: {} {}, {} {}", store_name(notice), str(inc, "probe"),
                     what(notice), str(inc, "severity"), str(inc, "priority"), str(inc, "state"),
                     since(notice));
}

std::string slack_payload(const json& notice) {
  const json& inc = obj(notice, "incident");
  json fields = json::array();
  for (const Fact& f : facts(notice)) {
    if (fields.size() == 10) break;  // Slack's limit per section
    fields.push_back({{"type", "mrkdwn"},
                      {"text", cut(fmt::format("*{}*\n{}", f.name, slack_escape(f.value)), 2000)}});
  }
  json blocks = json::array({
      {{"type", "header"},
       {"text",
        {{"type", "plain_text"},
         {"text", cut(fmt::format("{} {} {}", good_news(notice) ? "✅" : "🚨", str(inc, "probe"),
                                  what(notice)),
                      150)}}}},
      {{"type", "section"},
       {"text", {{"type", "mrkdwn"}, {"text", cut(slack_escape(str(inc, "summary", "-")), 3000)}}}},
      {{"type", "section"}, {"fields", std::move(fields)}},
  });
  return json{{"text", slack_escape(headline(notice))}, {"blocks", std::move(blocks)}}.dump();
}

std::string teams_payload(const json& notice) {
  const json& inc = obj(notice, "incident");
  json fact_set = json::array();
  for (const Fact& f : facts(notice)) fact_set.push_back({{"title", f.name}, {"value", f.value}});
  json card = {
      {"$schema", "http://adaptivecards.io/schemas/adaptive-card.json"},
      {"type", "AdaptiveCard"},
      {"version", "1.2"},
      {"body", json::array({
                   {{"type", "TextBlock"},
                    {"text", fmt::format("{} {}", str(inc, "probe"), what(notice))},
                    {"weight", "Bolder"},
                    {"size", "Medium"},
                    {"color", good_news(notice) ? "Good" : "Attention"},
                    {"wrap", true}},
                   {{"type", "TextBlock"}, {"text", str(inc, "summary", "-")}, {"wrap", true}},
                   {{"type", "FactSet"}, {"facts", std::move(fact_set)}},
               })},
  };
  return json{
      {"type", "message"},
      {"summary", headline(notice)},
      {"attachments", json::array({{{"contentType", "application/vnd.microsoft.card.adaptive"},
                                    {"contentUrl", nullptr},
                                    {"content", std::move(card)}}})}}
      .dump();
}

std::string teams_legacy_payload(const json& notice) {
  const json& inc = obj(notice, "incident");
  json fact_list = json::array();
  for (const Fact& f : facts(notice)) fact_list.push_back({{"name", f.name}, {"value", f.value}});
  return json{
      {"@type", "MessageCard"},
      {"@context", "https://schema.org/extensions"},
      {"summary", headline(notice)},
      {"themeColor", good_news(notice) ? "2EB886" : "D70000"},
      {"title", fmt::format("{} {}", str(inc, "probe"), what(notice))},
      {"sections",
       json::array({{{"text", str(inc, "summary", "-")}, {"facts", std::move(fact_list)}}})}}
      .dump();
}

std::string webhook_payload(const json& notice) {
  return notice.dump();
}

std::string group_headline(const std::vector<json>& notices) {
  if (notices.size() == 1) return headline(notices.front());
  std::set<std::string> incidents;
  std::string list;
  for (const json& n : notices) {
    incidents.insert(str(obj(n, "incident"), "uid"));
    list +=
        fmt::format("{}{} {}", list.empty() ? "" : ", ", str(obj(n, "incident"), "probe"), what(n));
  }
  return fmt::format("[{}] {} incident{}: {}", store_name(notices.front()), incidents.size(),
                     incidents.size() == 1 ? "" : "s", list);
}

std::string slack_group_payload(const std::vector<json>& notices) {
  if (notices.size() == 1) return slack_payload(notices.front());
  const bool good = std::all_of(notices.begin(), notices.end(), good_news);
  std::string text = slack_escape(group_headline(notices));
  json blocks =
      json::array({{{"type", "header"},
                    {"text",
                     {{"type", "plain_text"},
                      {"text", cut(fmt::format("{} {} notices from {}", good ? "✅" : "🚨",
                                               notices.size(), store_name(notices.front())),
                                   150)}}}}});
  for (const json& n : notices) {
    const json& inc = obj(n, "incident");
    text += "\n• " + slack_escape(headline(n));
    // Slack takes at most 50 blocks: a header and two per notice (the
    // notifier groups at most kMaxGroup = 20).
    if (blocks.size() + 2 > 50) continue;
    blocks.push_back(
        {{"type", "section"},
         {"text",
          {{"type", "mrkdwn"},
           {"text", cut(fmt::format("{} *{} {}*  {} {}, {} {}\n{}", good_news(n) ? "✅" : "🚨",
                                    slack_escape(str(inc, "probe")), slack_escape(what(n)),
                                    str(inc, "severity"), str(inc, "priority"), str(inc, "state"),
                                    slack_escape(since(n)), slack_escape(str(inc, "summary", "-"))),
                        3000)}}}});
    blocks.push_back(
        {{"type", "context"},
         {"elements",
          json::array({{{"type", "mrkdwn"},
                        {"text", cut(fmt::format("Incident {}", str(inc, "uid")), 2000)}}})}});
  }
  return json{{"text", cut(text, 3000)}, {"blocks", std::move(blocks)}}.dump();
}

std::string teams_group_payload(const std::vector<json>& notices) {
  if (notices.size() == 1) return teams_payload(notices.front());
  const bool good = std::all_of(notices.begin(), notices.end(), good_news);
  json body = json::array(
      {{{"type", "TextBlock"},
        {"text", fmt::format("{} notices from {}", notices.size(), store_name(notices.front()))},
        {"weight", "Bolder"},
        {"size", "Medium"},
        {"color", good ? "Good" : "Attention"},
        {"wrap", true}}});
  for (const json& n : notices) {
    const json& inc = obj(n, "incident");
    json fact_set = json::array();
    for (const Fact& f : facts(n)) fact_set.push_back({{"title", f.name}, {"value", f.value}});
    body.push_back(
        {{"type", "Container"},
         {"separator", true},
         {"items",
          json::array({{{"type", "TextBlock"},
                        {"text", fmt::format("{} {}", str(inc, "probe"), what(n))},
                        {"weight", "Bolder"},
                        {"color", good_news(n) ? "Good" : "Attention"},
                        {"wrap", true}},
                       {{"type", "TextBlock"}, {"text", str(inc, "summary", "-")}, {"wrap", true}},
                       {{"type", "FactSet"}, {"facts", std::move(fact_set)}}})}});
  }
  json card = {{"$schema", "http://adaptivecards.io/schemas/adaptive-card.json"},
               {"type", "AdaptiveCard"},
               {"version", "1.2"},
               {"body", std::move(body)}};
  return json{
      {"type", "message"},
      {"summary", cut(group_headline(notices), 500)},
      {"attachments", json::array({{{"contentType", "application/vnd.microsoft.card.adaptive"},
                                    {"contentUrl", nullptr},
                                    {"content", std::move(card)}}})}}
      .dump();
}

std::string teams_legacy_group_payload(const std::vector<json>& notices) {
  if (notices.size() == 1) return teams_legacy_payload(notices.front());
  const bool good = std::all_of(notices.begin(), notices.end(), good_news);
  json sections = json::array();
  for (const json& n : notices) {
    const json& inc = obj(n, "incident");
    json fact_list = json::array();
    for (const Fact& f : facts(n)) fact_list.push_back({{"name", f.name}, {"value", f.value}});
    sections.push_back({{"activityTitle", fmt::format("{} {}", str(inc, "probe"), what(n))},
                        {"text", str(inc, "summary", "-")},
                        {"facts", std::move(fact_list)}});
  }
  return json{
      {"@type", "MessageCard"},
      {"@context", "https://schema.org/extensions"},
      {"summary", cut(group_headline(notices), 500)},
      {"themeColor", good ? "2EB886" : "D70000"},
      {"title", fmt::format("{} notices from {}", notices.size(), store_name(notices.front()))},
      {"sections", std::move(sections)}}
      .dump();
}

HttpRequest http_request(const config::NotifyConfig& n, const ChannelSecrets& secrets,
                         const json& notice) {
  return http_request(n, secrets, std::vector<json>{notice});
}

HttpRequest http_request(const config::NotifyConfig& n, const ChannelSecrets& secrets,
                         const std::vector<json>& notices) {
  HttpRequest r;
  static const json kNone = json::object();
  const json& first = notices.empty() ? kNone : notices.front();
  switch (n.type) {
    case config::NotifyType::slack: r.body = slack_group_payload(notices); break;
    case config::NotifyType::teams: r.body = teams_group_payload(notices); break;
    case config::NotifyType::teams_legacy: r.body = teams_legacy_group_payload(notices); break;
    case config::NotifyType::webhook:
    case config::NotifyType::email: r.body = webhook_payload(first); break;
  }
  r.headers.push_back("Content-Type: application/json; charset=utf-8");
  if (n.type == config::NotifyType::webhook && !secrets.hmac_key.empty()) {
    r.headers.push_back(
        fmt::format("{}: sha256={}", kSignatureHeader, hmac_sha256_hex(secrets.hmac_key, r.body)));
  }
  return r;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", mac[i]);
  return out;
}

std::string email_message(const config::NotifyConfig& n, const json& notice,
                          std::chrono::system_clock::time_point now, std::string_view message_id) {
  return email_message(n, std::vector<json>{notice}, now, message_id);
}

std::string email_message(const config::NotifyConfig& n, const std::vector<json>& notices,
                          std::chrono::system_clock::time_point now, std::string_view message_id) {
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[64];
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  std::string to;
  for (const std::string& a : n.to) to += (to.empty() ? "" : ", ") + a;
  // The subject is one header line: no CR/LF from the data.
  std::string subject = cut(group_headline(notices), 200);
  std::replace_if(
      subject.begin(), subject.end(), [](char c) { return c == '\r' || c == '\n'; }, ' ');
  std::string body;
  if (notices.size() > 1) {
    body = fmt::format("{} notices from {}:\r\n", notices.size(), store_name(notices.front()));
    for (const json& notice : notices) body += "  - " + headline(notice) + "\r\n";
  }
  for (const json& notice : notices) {
    const json& inc = obj(notice, "incident");
    if (notices.size() > 1) {
      body += fmt::format("\r\n== {} {} ==\r\n", str(inc, "probe"), what(notice));
    }
    body += str(inc, "summary", "-") + "\r\n\r\n";
    for (const Fact& f : facts(notice)) body += fmt::format("{}: {}\r\n", f.name, f.value);
    body += "\r\nTimeline:\r\n";
    for (const auto& [key, label] : {std::pair{"t_fault", "fault"},
                                     {"t_detect", "detected"},
                                     {"t_ack", "acknowledged"},
                                     {"t_restored", "restored"},
                                     {"t_resolved", "resolved"}}) {
      if (const std::string at = str(inc, key); !at.empty()) {
        body += fmt::format("  {}  {}\r\n", at, label);
      }
    }
    body += fmt::format("\r\nEvent: {} at {} by {}\r\n", str(obj(notice, "event"), "type"),
                        str(obj(notice, "event"), "at"), str(obj(notice, "event"), "actor"));
  }
  // Bare LFs in the data become CRLF; a line of a single '.' is escaped by curl.
  std::string crlf;
  for (std::size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r')) crlf += '\r';
    crlf += body[i];
  }
  const std::string domain = n.from.substr(n.from.find('@') + 1);
  return fmt::format(
      "Date: {}\r\nFrom: {}\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{}@{}>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Transfer-Encoding: 8bit\r\n\r\n{}",
      date, n.from, to, subject, message_id, domain, crlf);
}

Outcome classify_http(config::NotifyType type, long status, std::string_view body,
                      std::optional<std::chrono::milliseconds> retry_after) {
  Outcome o;
  o.retry_after = retry_after;
  std::string snippet(body.substr(0, 200));
  std::replace_if(
      snippet.begin(), snippet.end(),
      [](char c) { return std::iscntrl(static_cast<unsigned char>(c)) != 0; }, ' ');
  if (status >= 200 && status < 300) {
    const bool teams =
        type == config::NotifyType::teams || type == config::NotifyType::teams_legacy;
    if (teams) {
      // Teams answers some failures with 200 and an error in the body.
      std::string_view trimmed = body;
      while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front())))
        trimmed.remove_prefix(1);
      while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back())))
        trimmed.remove_suffix(1);
      const std::string l = lower(trimmed);
      if (!(trimmed.empty() || trimmed == "1") &&
          (l.find("error") != std::string::npos || l.find("fail") != std::string::npos)) {
        o.kind = Outcome::Kind::retry;
        o.detail = fmt::format("HTTP {} with an error: {}", status, snippet);
        // "…returned HTTP error 429…": Teams throttled us.
        return o;
      }
    }
    o.kind = Outcome::Kind::sent;
    o.detail = fmt::format("HTTP {}", status);
    return o;
  }
  o.detail = snippet.empty() ? fmt::format("HTTP {}", status)
                             : fmt::format("HTTP {}: {}", status, snippet);
  o.kind =
      status == 408 || status == 429 || status >= 500 ? Outcome::Kind::retry : Outcome::Kind::fatal;
  return o;
}

std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now) {
  constexpr std::chrono::milliseconds kMax = std::chrono::hours(1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front())))
    value.remove_prefix(1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back())))
    value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; })) {
    if (value.size() > 6) return kMax;
    return std::min<std::chrono::milliseconds>(std::chrono::seconds(std::stol(std::string(value))),
                                               kMax);
  }
  std::tm tm{};
  const std::string text(value);
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
  if (at <= now) return std::chrono::milliseconds(0);
  return std::min<std::chrono::milliseconds>(
      std::chrono::duration_cast<std::chrono::milliseconds>(at - now), kMax);
}

std::chrono::milliseconds retry_delay(int attempts,
                                      std::optional<std::chrono::milliseconds> retry_after) {
  constexpr std::chrono::milliseconds kFirst = std::chrono::seconds(5);
  constexpr std::chrono::milliseconds kCap = std::chrono::minutes(10);
  std::chrono::milliseconds d = kFirst;
  for (int i = 1; i < attempts && d < kCap; ++i) d *= 2;
  d = std::min(d, kCap);
  if (retry_after && *retry_after > d) d = *retry_after;
  return d;
}

std::string scrub(std::string text, const ChannelSecrets& secrets) {
  for (const std::string* s : {&secrets.url, &secrets.hmac_key, &secrets.password}) {
    if (s->size() < 4) continue;
    for (std::size_t at = text.find(*s); at != std::string::npos; at = text.find(*s, at)) {
      text.replace(at, s->size(), "[secret]");
    }
  }
  return text;
}

}  // namespace storewatch::sync
