#pragma once
/// \file
/// What each kind of [[notify]] channel sends for one notice, and how its
/// answer is read (issue 8). Pure functions: the notifier drives the
/// transfers. A notice body is the JSON agent/notices.h writes:
/// {"kind", "store": {id, name}, "incident": {…}, "event": {type, at, actor, …}}.

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace storewatch::sync {

/// A channel's secrets, read from its *_file keys at start. Never logged.
struct ChannelSecrets {
  std::string url;       ///< slack, teams, webhook
  std::string hmac_key;  ///< webhook secret_file; empty = unsigned
  std::string password;  ///< email password_file
};

/// Reads the secrets a channel's config names.
Result<ChannelSecrets> load_secrets(const config::NotifyConfig& n);

/// One line naming store, probe, what happened, severity, state and since
/// when: Slack's `text`, the card's summary, the mail's subject.
std::string headline(const nlohmann::json& notice);

/// The request a channel sends: its body and its extra headers.
struct HttpRequest {
  std::string body;
  std::vector<std::string> headers;  ///< "Name: value"
};

/// Slack incoming webhook: `text` (the fallback) and `blocks`.
std::string slack_payload(const nlohmann::json& notice);
/// Teams Workflows: a message with one Adaptive Card (version 1.2).
std::string teams_payload(const nlohmann::json& notice);
/// The old Office 365 connector MessageCard (`type = "teams-legacy"`).
std::string teams_legacy_payload(const nlohmann::json& notice);
/// A generic webhook: the notice itself.
std::string webhook_payload(const nlohmann::json& notice);

/// A group (sync/notifier.h): several notices of one channel in one
/// message. The headline counts the incidents and names each.
std::string group_headline(const std::vector<nlohmann::json>& notices);
/// Slack: `text` lists each notice; `blocks` a header and one section each.
std::string slack_group_payload(const std::vector<nlohmann::json>& notices);
/// Teams: one Adaptive Card with a container per notice.
std::string teams_group_payload(const std::vector<nlohmann::json>& notices);
/// MessageCard with a section per notice.
std::string teams_legacy_group_payload(const std::vector<nlohmann::json>& notices);

/// The HTTP request of an http channel (not email) for one notice, or for a
/// group when there are several (a webhook never groups: one each).
HttpRequest http_request(const config::NotifyConfig& n, const ChannelSecrets& secrets,
                         const nlohmann::json& notice);
HttpRequest http_request(const config::NotifyConfig& n, const ChannelSecrets& secrets,
                         const std::vector<nlohmann::json>& notices);

/// The signature header's name; its value is "sha256=<hex HMAC-SHA256 of the body>".
inline constexpr std::string_view kSignatureHeader = "X-Storewatch-Signature";
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

/// An RFC 5322 message for an email channel (CRLF line ends).
std::string email_message(const config::NotifyConfig& n, const nlohmann::json& notice,
                          std::chrono::system_clock::time_point now, std::string_view message_id);
/// One message for a group: the group's headline as subject, then each
/// notice's incident with its timeline.
std::string email_message(const config::NotifyConfig& n, const std::vector<nlohmann::json>& notices,
                          std::chrono::system_clock::time_point now, std::string_view message_id);

/// How an attempt ended.
struct Outcome {
  enum class Kind { sent, retry, fatal };
  Kind kind = Kind::retry;
  std::string detail;  ///< "HTTP 200", or what went wrong; no secret
  /// The receiver's Retry-After, when it gave one.
  std::optional<std::chrono::milliseconds> retry_after;
};

/// Reads an HTTP answer: 2xx is sent (for Teams only without an error in
/// the body), 408/429/5xx are retried, other statuses are fatal.
Outcome classify_http(config::NotifyType type, long status, std::string_view body,
                      std::optional<std::chrono::milliseconds> retry_after);

/// Retry-After: delay-seconds or an HTTP-date, relative to `now`; nullopt
/// when unreadable. Capped at one hour.
std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now);

/// The wait before attempt `attempts + 1` after `attempts` failures: 5 s
/// doubling, capped at 10 min; a longer Retry-After wins.
std::chrono::milliseconds retry_delay(int attempts,
                                      std::optional<std::chrono::milliseconds> retry_after);

/// `text` with every occurrence of each secret replaced by "[secret]".
std::string scrub(std::string text, const ChannelSecrets& secrets);

}  // namespace storewatch::sync
