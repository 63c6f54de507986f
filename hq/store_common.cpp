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
  // Decoded for storing (wire::decode_batch_for_store), the fields were
  // read off the text; otherwise they come from the body's tree, which the
  // wire decoder guarantees is an object (a hand-made Event may lack it).
  static const json kNoState = json::object();
  const json* tree = nullptr;
  wire::Event::StateFields f;
  if (e.sent_state) {
    f = *e.sent_state;
  } else {
    auto found = e.body.find("incident_state");
    tree = found != e.body.end() && found->is_object() ? &*found : &kNoState;
    f = {string_field(*tree, "state"), string_field(*tree, "probe"),
         string_field(*tree, "severity"), string_field(*tree, "t_detect"), tree->contains("uid")};
  }
  IncidentColumns out{std::move(f.state), std::move(f.probe), std::move(f.severity), std::nullopt,
                      e.sent_state_text};
  if (f.t_detect) {
    if (auto t = parse_rfc3339(*f.t_detect)) out.t_detect_ms = to_ms(*t);
  }
  // The snapshot as sent; re-encoded only when it is not at hand or lacks
  // its uid.
  if (!f.has_uid || out.snapshot.empty()) {
    json state = tree != nullptr ? *tree : json::parse(e.sent_state_text, nullptr, false);
    if (!state.is_object()) state = json::object();
    if (!f.has_uid) state["uid"] = e.incident;
    scratch = dump(state);
    out.snapshot = scratch;
  }
  return out;
}

}  // namespace storewatch::hq::detail
