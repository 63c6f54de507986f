// The wire decoders at HQ (sync/wire.h as hq/ingest.cpp uses them): an event
// batch off `P/stores/S/events` (the 64 KB cap, decode_batch, the texts HQ
// stores as sent, and decode_batch_for_store — its one-pass scan or its
// parser — agreeing with decode_batch), a status off `P/stores/S/status`,
// and, on the agent's side of the same contract, an ack.

#include <nlohmann/json.hpp>

#include "sync/batch_scan.h"
#include "sync/wire.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace wire = storewatch::wire;
  using nlohmann::json;
  if (size > wire::kMaxPayload + 1024) return 0;
  const std::string_view payload = storewatch::fuzz::text_of(data, size);

  // JSON text never holds a NUL byte (the parser would stop at one).
  const bool has_nul = payload.find('\0') != std::string_view::npos;

  if (auto batch = wire::decode_batch(payload)) {
    FUZZ_CHECK(!has_nul);
    for (const wire::Event& e : batch->events) {
      FUZZ_CHECK(e.seq >= 1);
      FUZZ_CHECK(!e.uid.empty() && !e.incident.empty() && !e.type.empty() && !e.at.empty() &&
                 !e.actor.empty());
      // What HQ stores as the event's text must be that event: the object
      // the parser read, and its incident_state.
      if (!e.sent_text.empty()) {
        const json sent = json::parse(e.sent_text, nullptr, false);
        FUZZ_CHECK(sent == e.to_json());
        const json state = json::parse(e.sent_state_text, nullptr, false);
        FUZZ_CHECK(state == e.body.at("incident_state"));
      }
      // An event re-encoded (the agent's outbox sends text()) decodes to the
      // same event.
      const json again = json::parse(e.text(), nullptr, false);
      FUZZ_CHECK(again == e.to_json());
    }
    auto round = wire::decode_batch(wire::encode_batch(*batch));
    if (wire::encode_batch(*batch).size() <= wire::kMaxPayload) {
      FUZZ_CHECK(round.ok());
      FUZZ_CHECK(round->store == batch->store);
      FUZZ_CHECK(round->events.size() == batch->events.size());
    }
  }

  // The one-pass scan takes nothing the parser refuses.
  if (!has_nul && size <= wire::kMaxPayload && wire::scan_batch(payload)) {
    FUZZ_CHECK(json::accept(payload));
  }

  // HQ decodes what it stores without trees: the same verdict, error and
  // events as decode_batch.
  {
    auto tree = wire::decode_batch(payload);
    auto stored = wire::decode_batch_for_store(payload);
    FUZZ_CHECK(stored.ok() == tree.ok());
    if (!tree.ok()) {
      FUZZ_CHECK(stored.error().message == tree.error().message);
    } else {
      FUZZ_CHECK(stored->store == tree->store);
      FUZZ_CHECK(stored->events.size() == tree->events.size());
      for (std::size_t i = 0; i < tree->events.size(); ++i) {
        const wire::Event& t = tree->events[i];
        const wire::Event& s = stored->events[i];
        FUZZ_CHECK(s.seq == t.seq && s.uid == t.uid && s.incident == t.incident &&
                   s.type == t.type && s.at == t.at && s.actor == t.actor);
        if (!s.sent_state) continue;  // decoded by decode_batch (an escaped key)
        FUZZ_CHECK(json::parse(s.sent_text, nullptr, false) == t.to_json());
        const json& state = t.body.at("incident_state");
        FUZZ_CHECK(json::parse(s.sent_state_text, nullptr, false) == state);
        for (auto [key, field] :
             {std::pair{"state", &s.sent_state->state}, std::pair{"probe", &s.sent_state->probe},
              std::pair{"severity", &s.sent_state->severity},
              std::pair{"t_detect", &s.sent_state->t_detect}}) {
          auto it = state.find(key);
          const bool is_string = it != state.end() && it->is_string();
          FUZZ_CHECK(field->has_value() == is_string);
          if (is_string) FUZZ_CHECK(**field == it->get<std::string>());
        }
        FUZZ_CHECK(s.sent_state->has_uid == state.contains("uid"));
      }
    }
  }

  if (auto status = wire::decode_status(payload)) {
    FUZZ_CHECK(!has_nul);
    auto round = wire::decode_status(wire::encode_status(*status));
    FUZZ_CHECK(round.ok() && round->store == status->store && round->online == status->online);
  }

  if (auto seq = wire::decode_ack(payload)) {
    FUZZ_CHECK(!has_nul);
    FUZZ_CHECK(*seq >= 0);
    FUZZ_CHECK(wire::decode_ack(wire::encode_ack(*seq)).value() == *seq);
  }
  return 0;
}
