#include "sync/wire.h"

#include <fmt/format.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "base/json_text.h"
#include "config/config.h"
#include "sync/batch_scan.h"

namespace storewatch::wire {
namespace {

using nlohmann::json;

// What every decoder checks before parsing: the size cap, and no NUL byte
// (nlohmann's parser takes one for the end of the input: JSON text never
// holds one, and what follows it would otherwise pass unread).
Status check_payload(std::string_view payload) {
  if (payload.size() > kMaxPayload) {
    return Error{
        fmt::format("payload of {} bytes is over the {} byte cap", payload.size(), kMaxPayload)};
  }
  if (payload.find('\0') != std::string_view::npos) return Error{"payload is not JSON"};
  return {};
}

// A "v" that is an integer but not this build's (`shown` as written).
Error wrong_version(std::string_view shown) {
  return Error{fmt::format("payload has \"v\":{}, this build speaks {}", shown, kVersion)};
}

Result<json> parse_object(std::string_view payload) {
  if (auto st = check_payload(payload); !st) return st.error();
  json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error{"payload is not JSON"};
  if (!j.is_object()) return Error{"payload is not a JSON object"};
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer()) return Error{"payload has no integer \"v\""};
  if (v->get<std::int64_t>() != kVersion) return wrong_version(v->dump());
  return j;
}

// Spans in JSON text that nlohmann::json has already accepted as valid, so
// a scanner only needs to tell strings (with their escapes) from structure.

std::size_t skip_ws(std::string_view s, std::size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

// `i` at the opening quote; returns the index after the closing one.
// Plain loops, not find_first_of: libstdc++'s calls memchr on the set for
// every character of the text, which was HQ's largest cost per event.
std::size_t skip_string(std::string_view s, std::size_t i) {
  const std::size_t n = s.size();
  for (++i; i < n; ++i) {
    const char c = s[i];
    if (c == '"') return i + 1;
    if (c == '\\') ++i;  // a backslash and the character it escapes
  }
  return n;
}

// `i` at a value's first character; returns the index after it.
std::size_t skip_value(std::string_view s, std::size_t i) {
  if (i >= s.size()) return s.size();
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] != '{' && s[i] != '[') {
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' &&
           s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
      ++i;
    }
    return i;
  }
  int depth = 0;
  const std::size_t n = s.size();
  while (i < n) {
    const char c = s[i];
    if (c == '"') {
      i = skip_string(s, i);
      continue;
    }
    if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      return i + 1;
    }
    ++i;
  }
  return n;
}

// The text of member `key` (its last one, as the parser keeps) of the object
// at `i`; empty when absent. Keys are compared as written, so a key with an
// escape in it ("ev\u0065nts") could be `key` to the parser and not to the
// scan: then the scan gives up (empty), since it could otherwise return a
// member the parser did not keep.
std::string_view member(std::string_view s, std::size_t i, std::string_view key) {
  std::string_view found;
  i = skip_ws(s, i);
  if (i >= s.size() || s[i] != '{') return found;
  ++i;
  for (;;) {
    i = skip_ws(s, i);
    if (i >= s.size() || s[i] != '"') return found;
    const std::size_t key_end = skip_string(s, i);
    const std::string_view k = s.substr(i + 1, key_end - i - 2);
    if (k.find('\\') != std::string_view::npos) return {};
    i = skip_ws(s, key_end);
    if (i >= s.size() || s[i] != ':') return found;
    const std::size_t value = skip_ws(s, i + 1);
    i = skip_value(s, value);
    if (k == key) found = s.substr(value, i - value);
    i = skip_ws(s, i);
    if (i >= s.size() || s[i] != ',') return found;
    ++i;
  }
}

// The texts of the elements of the array `a`.
std::vector<std::string_view> elements(std::string_view a) {
  std::vector<std::string_view> out;
  std::size_t i = skip_ws(a, 0);
  if (i >= a.size() || a[i] != '[') return out;
  ++i;
  for (;;) {
    i = skip_ws(a, i);
    if (i >= a.size() || a[i] == ']') return out;
    const std::size_t start = i;
    i = skip_value(a, i);
    out.push_back(a.substr(start, i - start));
    i = skip_ws(a, i);
    if (i >= a.size() || a[i] != ',') return out;
    ++i;
  }
}

template <class T>
bool get_field(const json& j, const char* key, T& out) {
  auto it = j.find(key);
  if (it == j.end()) return false;
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return false;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return false;
  } else {
    if (!it->is_number_integer()) return false;
  }
  out = it->get<T>();
  return true;
}

// What decode_batch_for_store() takes from a batch as nlohmann's SAX parser
// walks it: the batch's "v" and "store", and of each element of its
// "events" the header fields and those of its "incident_state". A member
// seen twice is taken as the tree parser takes it: the last one counts.
class BatchSax {
 public:
  struct SentEvent {
    bool is_object = false;
    std::optional<std::int64_t> seq;
    std::optional<std::string> uid, incident, type, at, actor;
    bool state_is_object = false;
    Event::StateFields state;
  };

  std::optional<std::int64_t> v;
  std::optional<std::uint64_t> v_unsigned;  // a "v" above INT64_MAX
  std::optional<std::string> store;
  bool events_is_array = false;
  std::vector<SentEvent> events;

  bool null() { return scalar(); }
  bool boolean(bool) { return scalar(); }
  bool number_integer(std::int64_t n) {
    scalar();
    if (frames_.empty()) return true;
    if (frames_.back() == Role::batch && key_ == "v") v = n, v_unsigned.reset();
    if (frames_.back() == Role::event && key_ == "seq") events.back().seq = n;
    return true;
  }
  bool number_unsigned(std::uint64_t n) {
    if (n <= static_cast<std::uint64_t>(INT64_MAX)) {
      return number_integer(static_cast<std::int64_t>(n));
    }
    scalar();
    if (!frames_.empty() && frames_.back() == Role::batch && key_ == "v") v.reset(), v_unsigned = n;
    return true;
  }
  bool number_float(double, const std::string&) { return scalar(); }
  bool binary(nlohmann::json::binary_t&) { return scalar(); }
  bool string(std::string& text) {
    scalar();
    if (frames_.empty()) return true;
    switch (frames_.back()) {
      case Role::batch:
        if (key_ == "store") store = std::move(text);
        break;
      case Role::event:
        if (auto* field = header_field(events.back())) *field = std::move(text);
        break;
      case Role::state:
        if (auto* field = state_field(events.back().state)) *field = std::move(text);
        break;
      default: break;
    }
    return true;
  }
  bool key(std::string& k) {
    key_ = std::move(k);
    if (!frames_.empty() && frames_.back() == Role::state && key_ == "uid") {
      events.back().state.has_uid = true;
    }
    return true;
  }
  bool start_object(std::size_t) { return open(true); }
  bool start_array(std::size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception&) {
    return false;
  }

  bool top_is_object = false;

 private:
  enum class Role { other, batch, events, event, state };

  // A value that is not a container, in the current frame: it resets what
  // the member it replaces set.
  bool scalar() {
    if (frames_.empty()) return true;
    switch (frames_.back()) {
      case Role::batch:
        if (key_ == "v") v.reset(), v_unsigned.reset();
        if (key_ == "store") store.reset();
        if (key_ == "events") events_is_array = false, events.clear();
        break;
      case Role::events:
        events.emplace_back();  // not an object
        break;
      case Role::event:
        if (key_ == "seq") events.back().seq.reset();
        if (auto* field = header_field(events.back())) field->reset();
        if (key_ == "incident_state") events.back().state_is_object = false;
        break;
      case Role::state:
        if (auto* field = state_field(events.back().state)) field->reset();
        break;
      default: break;
    }
    return true;
  }

  bool open(bool object) {
    Role role = Role::other;
    if (frames_.empty()) {
      top_is_object = object;
      if (object) role = Role::batch;
    } else {
      scalar();  // a container replaces the member as a scalar would...
      switch (frames_.back()) {
        case Role::batch:  // ...and then takes its place
          if (key_ == "events" && !object) role = Role::events, events_is_array = true;
          break;
        case Role::events:
          if (object) events.back().is_object = true, role = Role::event;
          break;
        case Role::event:
          if (key_ == "incident_state" && object) {
            events.back().state_is_object = true;
            events.back().state = {};
            role = Role::state;
          }
          break;
        default: break;
      }
    }
    frames_.push_back(role);
    return true;
  }

  bool close() {
    frames_.pop_back();
    return true;
  }

  std::optional<std::string>* header_field(SentEvent& e) {
    if (key_ == "uid") return &e.uid;
    if (key_ == "incident") return &e.incident;
    if (key_ == "type") return &e.type;
    if (key_ == "at") return &e.at;
    if (key_ == "actor") return &e.actor;
    return nullptr;
  }

  std::optional<std::string>* state_field(Event::StateFields& s) {
    if (key_ == "state") return &s.state;
    if (key_ == "probe") return &s.probe;
    if (key_ == "severity") return &s.severity;
    if (key_ == "t_detect") return &s.t_detect;
    return nullptr;
  }

  std::vector<Role> frames_;
  std::string key_;
};

}  // namespace

std::string Topics::topic(std::string_view store, std::string_view kind) const {
  return fmt::format("{}/stores/{}/{}", prefix_, store, kind);
}

std::optional<Topics::Parsed> Topics::parse(std::string_view topic) const {
  std::string head = prefix_ + "/stores/";
  if (!topic.starts_with(head)) return std::nullopt;
  topic.remove_prefix(head.size());
  auto slash = topic.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  Parsed p{std::string(topic.substr(0, slash)), std::string(topic.substr(slash + 1))};
  if (!config::is_valid_store_id(p.store) || p.kind.empty()) return std::nullopt;
  return p;
}

json Event::to_json() const {
  json j = body.is_object() ? body : json::object();
  j["seq"] = seq;
  j["uid"] = uid;
  j["incident"] = incident;
  j["type"] = type;
  j["at"] = at;
  j["actor"] = actor;
  return j;
}

std::string Event::text() const {
  std::string out;
  std::string_view members;  // the body's members, without the braces
  std::string dumped;
  if (!body_text.empty()) {
    members = body_text;
  } else if (body.is_object()) {
    // Never throws: invalid UTF-8 (which a decoded body cannot hold) is replaced.
    dumped = body.dump(-1, ' ', false, json::error_handler_t::replace);
    members = dumped;
  }
  if (members.size() >= 2 && members.front() == '{' && members.back() == '}') {
    members = members.substr(1, members.size() - 2);
  } else {
    members = {};
  }
  out.reserve(members.size() + uid.size() + incident.size() + type.size() + at.size() +
              actor.size() + 96);
  out += '{';
  out += members;
  if (!members.empty()) out += ',';
  json_text::append_key(out, "seq");
  out += std::to_string(seq);
  for (auto [key, value] : {std::pair<std::string_view, const std::string*>{"uid", &uid},
                            {"incident", &incident},
                            {"type", &type},
                            {"at", &at},
                            {"actor", &actor}}) {
    out += ',';
    json_text::append_key(out, key);
    json_text::append_string(out, *value);
  }
  out += '}';
  return out;
}

Result<Event> Event::from_json(json&& j) {
  if (!j.is_object()) return Error{"event is not an object"};
  Event e;
  if (!get_field(j, "seq", e.seq) || e.seq < 1)
    return Error{"event has no positive integer \"seq\""};
  for (auto [key, out] :
       {std::pair{"uid", &e.uid}, std::pair{"incident", &e.incident}, std::pair{"type", &e.type},
        std::pair{"at", &e.at}, std::pair{"actor", &e.actor}}) {
    if (!get_field(j, key, *out) || out->empty()) {
      return Error{fmt::format("event {} has no string \"{}\"", e.seq, key)};
    }
  }
  auto state = j.find("incident_state");
  if (state == j.end() || !state->is_object()) {
    return Error{fmt::format("event {} has no object \"incident_state\"", e.seq)};
  }
  e.body = std::move(j);
  for (const char* k : {"seq", "uid", "incident", "type", "at", "actor"}) e.body.erase(k);
  return e;
}

std::string batch_payload(std::string_view store, const std::vector<std::string>& event_texts) {
  std::size_t size = batch_overhead(store);
  for (const auto& t : event_texts) size += t.size() + 1;
  std::string out;
  out.reserve(size);
  out += "{\"events\":[";
  for (std::size_t i = 0; i < event_texts.size(); ++i) {
    if (i > 0) out += ',';
    out += event_texts[i];
  }
  out += "],\"store\":";
  json_text::append_string(out, store);
  out += ",\"v\":";
  out += std::to_string(kVersion);
  out += '}';
  return out;
}

std::string encode_batch(const Batch& batch) {
  std::vector<std::string> texts;
  texts.reserve(batch.events.size());
  for (const Event& e : batch.events) texts.push_back(e.text());
  return batch_payload(batch.store, texts);
}

Result<Batch> decode_batch(std::string_view payload) {
  auto j = parse_object(payload);
  if (!j) return j.error();
  Batch b;
  if (!get_field(*j, "store", b.store) || !config::is_valid_store_id(b.store)) {
    return Error{"batch has no valid \"store\""};
  }
  auto events = j->find("events");
  if (events == j->end() || !events->is_array()) return Error{"batch has no \"events\" array"};
  // The texts as sent, found in the payload the parser accepted; when the
  // scan does not line up with the tree, they are left empty.
  std::vector<std::string_view> texts = elements(member(payload, 0, "events"));
  if (texts.size() != events->size()) texts.clear();
  b.events.reserve(events->size());
  for (std::size_t i = 0; i < events->size(); ++i) {
    auto e = Event::from_json(std::move((*events)[i]));
    if (!e) return e.error();
    if (!texts.empty()) {
      const std::string_view state = member(texts[i], 0, "incident_state");
      if (state.size() >= 2 && state.front() == '{' && state.back() == '}') {
        e->sent_text = texts[i];
        e->sent_state_text = state;
      }
    }
    b.events.push_back(std::move(*e));
  }
  return b;
}

Result<Batch> decode_batch_for_store(std::string_view payload) {
  // The checks and errors of parse_object() and decode_batch(), in order.
  if (auto st = check_payload(payload); !st) return st.error();
  // What agents send takes one pass; anything else the parser decides.
  if (auto fast = scan_batch(payload)) return std::move(*fast);
  BatchSax sax;
  if (!json::sax_parse(payload.begin(), payload.end(), &sax)) {
    return Error{"payload is not JSON"};
  }
  if (!sax.top_is_object) return Error{"payload is not a JSON object"};
  if (!sax.v && !sax.v_unsigned) return Error{"payload has no integer \"v\""};
  if (sax.v_unsigned || *sax.v != kVersion) {
    return wrong_version(sax.v ? std::to_string(*sax.v) : std::to_string(*sax.v_unsigned));
  }
  if (!sax.store || !config::is_valid_store_id(*sax.store)) {
    return Error{"batch has no valid \"store\""};
  }
  if (!sax.events_is_array) return Error{"batch has no \"events\" array"};
  for (const auto& e : sax.events) {
    if (!e.is_object) return Error{"event is not an object"};
    if (!e.seq || *e.seq < 1) return Error{"event has no positive integer \"seq\""};
    for (auto [key, field] :
         {std::pair{"uid", &e.uid}, std::pair{"incident", &e.incident}, std::pair{"type", &e.type},
          std::pair{"at", &e.at}, std::pair{"actor", &e.actor}}) {
      if (!*field || (*field)->empty()) {
        return Error{fmt::format("event {} has no string \"{}\"", *e.seq, key)};
      }
    }
    if (!e.state_is_object) {
      return Error{fmt::format("event {} has no object \"incident_state\"", *e.seq)};
    }
  }
  // The texts as sent. The scan compares keys as written, the parser as
  // meant: where they differ (an escaped key), the tree decides.
  std::vector<std::string_view> texts = elements(member(payload, 0, "events"));
  if (texts.size() != sax.events.size()) return decode_batch(payload);
  Batch b;
  b.store = std::move(*sax.store);
  b.events.reserve(texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const std::string_view state = member(texts[i], 0, "incident_state");
    if (state.size() < 2 || state.front() != '{' || state.back() != '}') {
      return decode_batch(payload);
    }
    BatchSax::SentEvent& s = sax.events[i];
    Event& e = b.events.emplace_back();
    e.body = json();
    e.seq = *s.seq;
    e.uid = std::move(*s.uid);
    e.incident = std::move(*s.incident);
    e.type = std::move(*s.type);
    e.at = std::move(*s.at);
    e.actor = std::move(*s.actor);
    e.sent_text = texts[i];
    e.sent_state_text = state;
    e.sent_state = std::move(s.state);
  }
  return b;
}

std::size_t encoded_size(const Event& e) {
  return e.text().size() + 1;
}

std::size_t batch_overhead(std::string_view store) {
  // {"events":[],"store":"S","v":1}
  std::string quoted;
  json_text::append_string(quoted, store);
  return 27 + quoted.size() + std::to_string(kVersion).size();
}

std::string encode_status(const StoreStatus& s) {
  json j{{"v", kVersion},        {"store", s.store}, {"online", s.online}, {"session", s.session},
         {"version", s.version}, {"open", s.open},   {"queued", s.queued}, {"at", s.at}};
  if (!s.config_hash.empty()) j["config_hash"] = s.config_hash;
  if (!s.reason.empty()) j["reason"] = s.reason;
  return j.dump();
}

Result<StoreStatus> decode_status(std::string_view payload) {
  auto j = parse_object(payload);
  if (!j) return j.error();
  StoreStatus s;
  if (!get_field(*j, "store", s.store) || !config::is_valid_store_id(s.store)) {
    return Error{"status has no valid \"store\""};
  }
  if (!get_field(*j, "online", s.online)) return Error{"status has no boolean \"online\""};
  get_field(*j, "session", s.session);
  get_field(*j, "version", s.version);
  get_field(*j, "queued", s.queued);
  get_field(*j, "at", s.at);
  get_field(*j, "config_hash", s.config_hash);
  get_field(*j, "reason", s.reason);
  if (auto open = j->find("open"); open != j->end() && open->is_object()) {
    for (const auto& [k, v] : open->items()) {
      if (v.is_number_integer()) s.open[k] = v.get<std::int64_t>();
    }
  }
  return s;
}

std::string encode_ack(std::int64_t acked_seq) {
  return json{{"v", kVersion}, {"acked_seq", acked_seq}}.dump();
}

Result<std::int64_t> decode_ack(std::string_view payload) {
  auto j = parse_object(payload);
  if (!j) return j.error();
  std::int64_t seq = 0;
  if (!get_field(*j, "acked_seq", seq) || seq < 0) {
    return Error{"ack has no non-negative integer \"acked_seq\""};
  }
  return seq;
}

}  // namespace storewatch::wire
