#pragma once
/// \file
/// The MQTT contract, version 1 (DESIGN §6): topics and payloads shared by the
/// agent's publisher and by `storewatch hq`. Decoders never throw: outside
/// input that does not match the contract comes back as an Error.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace storewatch::wire {

inline constexpr int kVersion = 1;
/// Largest payload either side sends or accepts.
inline constexpr std::size_t kMaxPayload = 64 * 1024;

/// The topics of one prefix ("storewatch/v1").
class Topics {
 public:
  explicit Topics(std::string prefix) : prefix_(std::move(prefix)) {}

  std::string events(std::string_view store) const { return topic(store, "events"); }
  std::string status(std::string_view store) const { return topic(store, "status"); }
  std::string ack(std::string_view store) const { return topic(store, "ack"); }
  std::string cmd(std::string_view store) const { return topic(store, "cmd"); }
  std::string cmd_result(std::string_view store) const { return topic(store, "cmd/result"); }
  /// "P/stores/+/KIND", for HQ's subscriptions.
  std::string all(std::string_view kind) const { return topic("+", kind); }

  /// Splits "P/stores/S/KIND" into S and KIND; nullopt for other topics.
  struct Parsed {
    std::string store;
    std::string kind;
  };
  std::optional<Parsed> parse(std::string_view topic) const;

 private:
  std::string topic(std::string_view store, std::string_view kind) const;
  std::string prefix_;
};

/// One incident event as it travels: the header fields plus the stored body
/// (an object holding `incident_state` and any type-specific fields).
struct Event {
  std::int64_t seq = 0;
  std::string uid;
  std::string incident;  ///< incident uid
  std::string type;      ///< opened|resolved|… (DESIGN §6)
  std::string at;        ///< RFC 3339 UTC ms
  std::string actor;     ///< agent|cli:NAME|hq:NAME
  nlohmann::json body = nlohmann::json::object();
  /// The body as JSON object text, when it is at hand as text (the agent's
  /// outbox reads it so from its database): text() then splices it instead
  /// of parsing and dumping it. Empty: `body` is the body.
  std::string body_text = {};
  /// As decode_batch found them in the payload: the event object's text and
  /// its `incident_state` object's text, so HQ stores what came without
  /// dumping its trees again. Empty when not found (then use text()).
  std::string sent_text = {};
  std::string sent_state_text = {};
  /// The fields of `incident_state` HQ keeps in its incidents table, as
  /// decode_batch_for_store() read them off the text (each absent when not
  /// a string). Set only by it, and then `body` is left empty: the event is
  /// sent_text.
  struct StateFields {
    std::optional<std::string> state, probe, severity, t_detect;
    bool has_uid = false;
  };
  std::optional<StateFields> sent_state = {};

  nlohmann::json to_json() const;
  /// The event as one JSON object's text: the body's members, then the
  /// header fields. A body member named like a header field (a remediation's
  /// "type") is thus followed by the header's, which is the one a reader
  /// keeps, as in to_json().
  std::string text() const;
  static Result<Event> from_json(nlohmann::json&& j);
};

/// `{"v":1,"store":S,"events":[…]}`.
struct Batch {
  std::string store;
  std::vector<Event> events;
};
std::string encode_batch(const Batch& batch);
/// A batch's payload from its events' text() (what encode_batch sends).
std::string batch_payload(std::string_view store, const std::vector<std::string>& event_texts);
Result<Batch> decode_batch(std::string_view payload);
/// decode_batch() for storing the batch as it came (HQ): the same checks
/// and errors, but no JSON tree is built. A batch of the plain shape agents
/// send is validated and taken apart in one pass (scan_batch(),
/// sync/batch_scan.h). Anything else is validated by nlohmann's SAX parser,
/// which hands over the header fields and those of each `incident_state`.
/// Either way each event gets sent_text, sent_state_text and sent_state,
/// and an empty `body`. A payload whose texts the scanner cannot line up
/// with what the parser saw (an escaped key) is decoded by decode_batch()
/// instead.
Result<Batch> decode_batch_for_store(std::string_view payload);

/// Size of one event inside a batch payload, for the 64 KB cap.
std::size_t encoded_size(const Event& e);
/// Size of a batch's envelope without events.
std::size_t batch_overhead(std::string_view store);

/// The retained birth / last-will message.
struct StoreStatus {
  std::string store;
  bool online = false;
  std::int64_t session = 0;
  std::string version;
  std::map<std::string, std::int64_t> open;  ///< open incidents by severity
  std::int64_t queued = 0;                   ///< events not yet acked by HQ
  std::string at;
  /// "sha256:<hex>" of the running config's files (main file, then conf.d in
  /// name order); "" when unknown.
  std::string config_hash = {};
  /// Why the store is offline: "shutdown" (sent by the agent as it stops) or
  /// "connection_lost" (the last will, sent by the broker); "" when online.
  std::string reason = {};
};
std::string encode_status(const StoreStatus& s);
Result<StoreStatus> decode_status(std::string_view payload);

/// `{"v":1,"acked_seq":N}`.
std::string encode_ack(std::int64_t acked_seq);
Result<std::int64_t> decode_ack(std::string_view payload);

}  // namespace storewatch::wire
