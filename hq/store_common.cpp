#include "hq/store_common.h"

namespace storewatch::hq::detail {

using nlohmann::json;

std::optional<std::string> string_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

IncidentColumns incident_columns(const wire::Event& e, std::string& scratch) {
  if (e.sent_state) {
    // Decoded for storing: the fields were read off the text, no tree.
    const wire::Event::StateFields& f = *e.sent_state;
    IncidentColumns out{f.state, f.probe, f.severity, std::nullopt, e.sent_state_text};
    if (f.t_detect) {
      if (auto t = parse_rfc3339(*f.t_detect)) out.t_detect_ms = to_ms(*t);
    }
    if (!f.has_uid) {
      json with_uid = json::parse(e.sent_state_text, nullptr, /*allow_exceptions=*/false);
      if (!with_uid.is_object()) with_uid = json::object();
      with_uid["uid"] = e.incident;
      scratch = dump(with_uid);
      out.snapshot = scratch;
    }
    return out;
  }
  // The wire decoder guarantees an object; a hand-made Event may lack it.
  static const json kNoState = json::object();
  auto found = e.body.find("incident_state");
  const json& state = found != e.body.end() && found->is_object() ? *found : kNoState;
  IncidentColumns out{string_field(state, "state"), string_field(state, "probe"),
                      string_field(state, "severity"), std::nullopt, e.sent_state_text};
  if (auto text = string_field(state, "t_detect")) {
    if (auto t = parse_rfc3339(*text)) out.t_detect_ms = to_ms(*t);
  }
  if (!state.contains("uid")) {
    json with_uid = state;
    with_uid["uid"] = e.incident;
    scratch = dump(with_uid);
    out.snapshot = scratch;
  } else if (out.snapshot.empty()) {
    scratch = dump(state);
    out.snapshot = scratch;
  }
  return out;
}

}  // namespace storewatch::hq::detail
