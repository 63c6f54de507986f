#include "sync/wire.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "sync/batch_scan.h"

#include <optional>
#include <string>
#include <vector>

namespace storewatch::wire {
namespace {

Event event(std::int64_t seq) {
  Event e;
  e.seq = seq;
  e.uid = "ev-" + std::to_string(seq);
  e.incident = "inc-1";
  e.type = "opened";
  e.at = "2026-11-26T22:18:03.123Z";
  e.actor = "agent";
  e.body = {{"incident_state", {{"uid", "inc-1"}, {"state", "open"}}}, {"message", "refused"}};
  return e;
}

TEST(Topics, BuildAndParse) {
  Topics t("storewatch/v1");
  EXPECT_EQ(t.events("store-0042"), "storewatch/v1/stores/store-0042/events");
  EXPECT_EQ(t.cmd_result("s"), "storewatch/v1/stores/s/cmd/result");
  EXPECT_EQ(t.all("events"), "storewatch/v1/stores/+/events");
  auto p = t.parse("storewatch/v1/stores/store-0042/ack");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->store, "store-0042");
  EXPECT_EQ(p->kind, "ack");
  EXPECT_FALSE(t.parse("other/v1/stores/s/ack"));
  EXPECT_FALSE(t.parse("storewatch/v1/stores/../ack"));
  EXPECT_FALSE(t.parse("storewatch/v1/stores/s"));
}

TEST(Batch, RoundTripsWithTheContractsFieldNames) {
  Batch b{"store-1", {event(1), event(2)}};
  std::string payload = encode_batch(b);
  auto j = nlohmann::json::parse(payload);
  EXPECT_EQ(j["v"], 1);
  EXPECT_EQ(j["store"], "store-1");
  ASSERT_EQ(j["events"].size(), 2u);
  for (const char* key : {"seq", "uid", "incident", "type", "at", "actor", "incident_state"}) {
    EXPECT_TRUE(j["events"][0].contains(key)) << key;
  }
  auto back = decode_batch(payload);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->events[1].seq, 2);
  EXPECT_EQ(back->events[1].body["message"], "refused");
  EXPECT_FALSE(back->events[1].body.contains("seq"));
}

TEST(Batch, RejectsWhatBreaksTheContract) {
  for (
      const char* bad : {
          "",
          "not json",
          "[]",
          R"({"store":"s","events":[]})",
          R"({"v":2,"store":"s","events":[]})",
          R"({"v":1,"events":[]})",
          R"({"v":1,"store":"a/b","events":[]})",
          R"({"v":1,"store":"s","events":{}})",
          R"({"v":1,"store":"s","events":[{"seq":0,"uid":"u","incident":"i","type":"t","at":"a","actor":"x","incident_state":{}}]})",
          R"({"v":1,"store":"s","events":[{"seq":1,"uid":"u","incident":"i","type":"t","at":"a","actor":"x"}]})",
          R"({"v":1,"store":"s","events":[{"seq":"1","uid":"u","incident":"i","type":"t","at":"a","actor":"x","incident_state":{}}]})",
      }) {
    EXPECT_FALSE(decode_batch(bad)) << bad;
  }
  EXPECT_FALSE(decode_batch(std::string(kMaxPayload + 1, ' ')));
  // A NUL ends the parser's input: what follows must not pass unread (found
  // by tests/fuzz/fuzz_wire).
  const std::string nul = std::string(R"({"v":1,"store":"s","events":[]})") + '\0' + "\x91,";
  EXPECT_FALSE(decode_batch(nul));
  EXPECT_FALSE(decode_ack(std::string(R"({"v":1,"acked_seq":1})") + '\0' + "junk"));
}

TEST(Ack, RoundTripsAndRejectsNegatives) {
  EXPECT_EQ(*decode_ack(encode_ack(42)), 42);
  EXPECT_FALSE(decode_ack(R"({"v":1,"acked_seq":-1})"));
  EXPECT_FALSE(decode_ack(R"({"v":1})"));
}

TEST(Status, RoundTrips) {
  StoreStatus s{"store-1", true, 7, "0.1.0", {{"critical", 1}}, 3, "2026-11-26T22:18:03.123Z",
                "",        ""};
  auto back = decode_status(encode_status(s));
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->online);
  EXPECT_EQ(back->session, 7);
  EXPECT_EQ(back->open.at("critical"), 1);
  EXPECT_EQ(back->queued, 3);
}

TEST(Status, CarriesTheConfigHashAndTheOfflineReason) {
  StoreStatus s{"store-1", false, 7, "0.1.0", {}, 0, "2026-11-26T22:18:03.123Z", "", ""};
  s.config_hash = "sha256:ab";
  s.reason = "shutdown";
  auto j = nlohmann::json::parse(encode_status(s));
  EXPECT_EQ(j["config_hash"], "sha256:ab");
  EXPECT_EQ(j["reason"], "shutdown");
  auto back = decode_status(encode_status(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->config_hash, "sha256:ab");
  EXPECT_EQ(back->reason, "shutdown");
  // An online status has no reason; the field is left out.
  s.online = true;
  s.reason.clear();
  EXPECT_FALSE(nlohmann::json::parse(encode_status(s)).contains("reason"));
}

TEST(Sizes, EncodedSizeAddsUpToThePayload) {
  Batch b{"store-1", {event(1), event(2), event(3)}};
  std::size_t sum = batch_overhead("store-1");
  for (const auto& e : b.events) sum += encoded_size(e);
  // One separator fewer than events: the estimate errs on the safe side.
  EXPECT_GE(sum, encode_batch(b).size());
  EXPECT_LE(sum, encode_batch(b).size() + b.events.size());
}

TEST(Sizes, TheOverheadIsThatOfAnEmptyBatch) {
  for (const char* store : {"s", "store-0042", "a-very-long-store-id-0000000001"}) {
    EXPECT_EQ(batch_overhead(store), encode_batch(Batch{store, {}}).size()) << store;
  }
}

// The agent sends its stored body text as it is: the same event as from a
// parsed body, field for field.
TEST(EventText, BodyTextIsSplicedAndReadsAsTheParsedBody) {
  Event parsed = event(7);
  Event spliced = event(7);
  spliced.body = nlohmann::json();
  spliced.body_text = parsed.body.dump();
  EXPECT_EQ(nlohmann::json::parse(spliced.text()), parsed.to_json());
  EXPECT_EQ(nlohmann::json::parse(parsed.text()), parsed.to_json());
  EXPECT_EQ(encoded_size(spliced), spliced.text().size() + 1);

  // An empty body gives the header alone.
  spliced.body_text = "{}";
  auto header = nlohmann::json::parse(spliced.text());
  EXPECT_EQ(header.size(), 6u) << header.dump();
  EXPECT_EQ(header["seq"], 7);

  // Header strings are escaped.
  spliced.actor = "cli:\"dana\"\n";
  EXPECT_EQ(nlohmann::json::parse(spliced.text())["actor"], "cli:\"dana\"\n");
}

// A remediation's body has its own "type" (exec, http…): the event's type
// is the one HQ reads, as with to_json().
TEST(EventText, TheHeaderWinsOverABodyFieldOfTheSameName) {
  Event e = event(3);
  e.type = "remediation_failed";
  e.body_text = R"({"incident_state":{"uid":"inc-1","state":"open"},"type":"exec","seq":99})";
  auto back = decode_batch(batch_payload("store-1", {e.text()}));
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->events.size(), 1u);
  EXPECT_EQ(back->events[0].type, "remediation_failed");
  EXPECT_EQ(back->events[0].seq, 3);
}

TEST(Batch, APayloadFromTextsDecodesToTheSameEvents) {
  Batch b{"store-1", {event(1), event(2)}};
  std::vector<std::string> texts;
  for (const auto& e : b.events) texts.push_back(e.text());
  const std::string payload = batch_payload("store-1", texts);
  EXPECT_EQ(payload, encode_batch(b));
  auto back = decode_batch(payload);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->events.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back->events[i].to_json(), b.events[i].to_json());
  }
  EXPECT_TRUE(decode_batch(batch_payload("store-1", {})));
}

// HQ stores each event and its snapshot as they came: decode_batch finds
// their texts in the payload, whatever its spacing and whatever the strings
// inside hold.
TEST(Batch, DecodingKeepsEachEventsTextAndItsSnapshotsAsSent) {
  Event e = event(1);
  e.body["message"] = "a } and a ] and a \" and a \\ in a string: {\"x\":[1]}";
  e.body["incident_state"]["summary"] = "lane 2 is down: \"HTTP 503\" }]";
  const std::string first = e.text();
  const std::string second = event(2).text();
  const std::string payload = batch_payload("store-1", {first, second});
  auto back = decode_batch(payload);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->events.size(), 2u);
  EXPECT_EQ(back->events[0].sent_text, first);
  EXPECT_EQ(back->events[1].sent_text, second);
  EXPECT_EQ(nlohmann::json::parse(back->events[0].sent_state_text), e.body["incident_state"]);

  // Pretty-printed, with the members in another order and a duplicate key
  // (the parser keeps the last one, and so does the scan).
  const std::string spaced =
      "{ \"v\" : 1 ,\n \"events\" : [] , \"store\":\"store-1\",\r\n\t\"events\" : [ "
      "{ \"incident_state\" : { \"uid\" : \"inc-1\" } , \"seq\" : 5, \"uid\":\"e5\", "
      "\"incident\":\"inc-1\", \"type\":\"opened\", \"at\":\"t\", \"actor\":\"agent\" } ] }";
  back = decode_batch(spaced);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->events.size(), 1u);
  EXPECT_EQ(back->events[0].seq, 5);
  EXPECT_EQ(nlohmann::json::parse(back->events[0].sent_text)["uid"], "e5");
  EXPECT_EQ(back->events[0].sent_state_text, R"({ "uid" : "inc-1" })");
}

// A key written with an escape is the same key to the parser ("ev\u0065nts"
// is "events"), and the last one wins: the texts kept as sent must be those
// of the members the parser kept, or none (found by tests/fuzz/fuzz_wire).
TEST(Batch, AnEscapedKeyNeverPairsAnEventWithAnotherEventsText) {
  const std::string first = event(1).text();
  const std::string second = event(2).text();
  const std::string payload =
      R"({"v":1,"store":"store-1","events":[)" + first + R"(],"ev\u0065nts":[)" + second + "]}";
  auto back = decode_batch(payload);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->events.size(), 1u);
  EXPECT_EQ(back->events[0].seq, 2);
  if (!back->events[0].sent_text.empty()) {
    EXPECT_EQ(nlohmann::json::parse(back->events[0].sent_text), back->events[0].to_json());
  }

  // The same inside an event: its incident_state.
  const std::string state_twice =
      R"({"v":1,"store":"store-1","events":[{"seq":3,"uid":"e3","incident":"i","type":"opened",)"
      R"("at":"t","actor":"agent","incident_state":{"uid":"old"},)"
      R"("incident\u005fstate":{"uid":"new"}}]})";
  back = decode_batch(state_twice);
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->events.size(), 1u);
  EXPECT_EQ(back->events[0].body["incident_state"]["uid"], "new");
  if (!back->events[0].sent_state_text.empty()) {
    EXPECT_EQ(nlohmann::json::parse(back->events[0].sent_state_text).value("uid", ""), "new");
  }
}

// HQ decodes what it stores without JSON trees (decode_batch_for_store): it
// accepts and refuses what decode_batch does, with the same error, and gives
// the same events, their texts as sent and the incident_state fields HQ
// keeps. tests/fuzz/fuzz_wire checks the same on every input it makes.
TEST(Batch, DecodingForStoringAgreesWithTheTreeDecoder) {
  Event odd = event(7);
  odd.body["incident_state"] = {{"state", 3},
                                {"probe", "lane-1"},
                                {"severity", nullptr},
                                {"t_detect", "x"},
                                {"nested", {{"state", "no"}, {"uid", 1}}},
                                {"list", {1, "a"}}};
  odd.body["message"] = "a } and a ] and a \" and a \\ in a string: {\"x\":[1]}";
  Event with_uid = event(8);
  with_uid.body["incident_state"]["uid"] = 42;
  with_uid.body["incident_state"]["t_detect"] = "2026-11-26T22:18:03.123Z";
  const std::string ev = R"("uid":"u","incident":"i","type":"t","at":"a","actor":"x")";
  const std::vector<std::string> payloads = {
      "",
      "not json",
      "[]",
      "[{\"v\":1}]",
      "\"text\"",
      R"({"store":"s","events":[]})",
      R"({"v":1.0,"store":"s","events":[]})",
      R"({"v":2,"store":"s","events":[]})",
      R"({"v":18446744073709551615,"store":"s","events":[]})",
      R"({"v":-1,"store":"s","events":[]})",
      R"({"v":1,"v":"1","store":"s","events":[]})",
      R"({"v":"1","v":1,"store":"s","events":[]})",
      R"({"v":1,"events":[]})",
      R"({"v":1,"store":"a/b","events":[]})",
      R"({"v":1,"store":7,"events":[]})",
      R"({"v":1,"store":"s","store":{"a":1},"events":[]})",
      R"({"v":1,"store":"s","events":{}})",
      R"({"v":1,"store":"s","events":[],"events":5})",
      R"({"v":1,"store":"s","events":[1]})",
      R"({"v":1,"store":"s","events":[[]]})",
      R"({"v":1,"store":"s","events":[{"seq":0,)" + ev + R"(,"incident_state":{}}]})",
      R"({"v":1,"store":"s","events":[{"seq":18446744073709551615,)" + ev +
          R"(,"incident_state":{}}]})",
      R"({"v":1,"store":"s","events":[{"seq":1,)" + ev + "}]}",
      R"({"v":1,"store":"s","events":[{"seq":"1",)" + ev + R"(,"incident_state":{}}]})",
      R"({"v":1,"store":"s","events":[{"seq":1,)" + ev + R"(,"uid":"","incident_state":{}}]})",
      R"({"v":1,"store":"s","events":[{"seq":1,)" + ev + R"(,"at":[],"incident_state":{}}]})",
      R"({"v":1,"store":"s","events":[{"seq":1,)" + ev + R"(,"incident_state":[]}]})",
      R"({"v":1,"store":"s","events":[{"seq":1,)" + ev +
          R"(,"incident_state":{"uid":"i"},"incident_state":null}]})",
      R"({"v":1,"store":"s","events":[{"seq":1,)" + ev +
          R"(,"incident_state":1,"incident_state":{"state":"open","state":"resolved"}}]})",
      R"({"v":1,"store":"s","events":[{"seq":1,"seq":2,)" + ev + R"(,"incident_state":{}}]})",
      R"({"v":1,"store":"s","events":[{"seq":1,)" + ev + R"(,"incident_state":{}},]})",
      R"({"v":1,"store":"s","events":[{"seq":1,)" + ev + R"(,"incident_state":{"a":"\xff"}}]})",
      batch_payload("store-1", {event(1).text(), odd.text(), with_uid.text()}),
      R"({"v":1,"store":"store-1","events":[)" + event(1).text() + R"(],"ev\u0065nts":[)" +
          event(2).text() + "]}",
      "{ \"v\" : 1 ,\n \"events\" : [] , \"store\":\"store-1\",\r\n\t\"events\" : [ "
      "{ \"incident_state\" : { \"uid\" : \"inc-1\" } , \"seq\" : 5, \"uid\":\"e5\", "
      "\"incident\":\"inc-1\", \"type\":\"opened\", \"at\":\"t\", \"actor\":\"agent\" } ] }",
  };
  for (const std::string& payload : payloads) {
    SCOPED_TRACE(payload);
    auto tree = decode_batch(payload);
    auto stored = decode_batch_for_store(payload);
    ASSERT_EQ(stored.ok(), tree.ok()) << (tree ? stored.error().message : tree.error().message);
    if (!tree) {
      EXPECT_EQ(stored.error().message, tree.error().message);
      continue;
    }
    EXPECT_EQ(stored->store, tree->store);
    ASSERT_EQ(stored->events.size(), tree->events.size());
    for (std::size_t i = 0; i < tree->events.size(); ++i) {
      const Event& t = tree->events[i];
      const Event& s = stored->events[i];
      EXPECT_EQ(s.seq, t.seq);
      EXPECT_EQ(s.uid, t.uid);
      EXPECT_EQ(s.incident, t.incident);
      EXPECT_EQ(s.type, t.type);
      EXPECT_EQ(s.at, t.at);
      EXPECT_EQ(s.actor, t.actor);
      if (!s.sent_state) continue;  // an escaped key: decoded by decode_batch
      EXPECT_EQ(nlohmann::json::parse(s.sent_text), t.to_json());
      const nlohmann::json& state = t.body.at("incident_state");
      EXPECT_EQ(nlohmann::json::parse(s.sent_state_text), state);
      auto field = [&](const char* key) -> std::optional<std::string> {
        auto it = state.find(key);
        if (it == state.end() || !it->is_string()) return std::nullopt;
        return it->get<std::string>();
      };
      EXPECT_EQ(s.sent_state->state, field("state"));
      EXPECT_EQ(s.sent_state->probe, field("probe"));
      EXPECT_EQ(s.sent_state->severity, field("severity"));
      EXPECT_EQ(s.sent_state->t_detect, field("t_detect"));
      EXPECT_EQ(s.sent_state->has_uid, state.contains("uid"));
    }
  }
  // Every valid payload above but the escaped key's is decoded without trees.
  auto plain = decode_batch_for_store(batch_payload("store-1", {event(1).text(), odd.text()}));
  ASSERT_TRUE(plain);
  EXPECT_TRUE(plain->events[1].sent_state);
  EXPECT_EQ(plain->events[1].sent_state->probe, "lane-1");
  EXPECT_FALSE(plain->events[1].sent_state->state);
  EXPECT_FALSE(plain->events[1].sent_state->has_uid);
}

// The one-pass scan HQ decodes agents' batches with (sync/batch_scan.h)
// says yes only to valid JSON: a value of each kind, put in an event's body,
// is taken by the scan, or left to the parser, and never taken when the
// parser refuses it. tests/fuzz/fuzz_wire checks the same on every input.
TEST(BatchScan, TakesValidJsonOnlyAndLeavesTheUnusualToTheParser) {
  const std::string head =
      R"({"v":1,"store":"store-1","events":[{"seq":3,"uid":"e3","incident":"i","type":"opened",)"
      R"("at":"t","actor":"agent","incident_state":{"state":"open","probe":"p"},"x":)";
  const std::string tail = "}]}";
  struct Case {
    std::string value;
    bool scanned;  // taken by the scan (else by the parser, when valid)
  };
  const std::vector<Case> cases = {
      {R"("plain text")", true},
      {"\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf\"", true},
      {R"("\" \\ \/ \b \f \n \r \t \u00e9 \u0000")", true},
      {R"("\ud83d\ude00")", false},  // a surrogate pair: the parser's
      {"[1, -0, 0.5, -12.25e-3, 1E+2, 123456789012345678901234567890, true, false, null]", true},
      {"{\"a\" : { \"b\" : [ { } , [ ] ] } }", true},
      {"1e299", true},
      {"1e400", false},
      {std::string(400, '9'), false},
      {std::string(60, '[') + std::string(60, ']'), true},
      {std::string(70, '[') + std::string(70, ']'), false},
      // Refused by the parser: never taken.
      {"\"\xff\"", false},
      {"\"\xc0\xaf\"", false},
      {"\"\xc2\"", false},
      {"\"\xe0\x80\xaf\"", false},
      {"\"\xed\xa0\x80\"", false},
      {"\"\xf0\x8f\xbf\xbf\"", false},
      {"\"\xf4\x90\x80\x80\"", false},
      {"\"\xe2\x82\"", false},
      {"\"tab\there\"", false},
      {"\"\x01\"", false},
      {R"("\x")", false},
      {R"("\u12")", false},
      {R"("\u12g4")", false},
      {R"("\udc00")", false},
      {"\"open", false},
      {"01", false},
      {"1.", false},
      {".5", false},
      {"-", false},
      {"+1", false},
      {"1e", false},
      {"1e+", false},
      {"tru", false},
      {"nulls", false},
      {"[1,]", false},
      {"[1 2]", false},
      {R"({"a":1,})", false},
      {R"({"a"})", false},
      {R"({a:1})", false},
      {"'a'", false},
  };
  for (const Case& c : cases) {
    const std::string payload = head + c.value + tail;
    SCOPED_TRACE(payload);
    const bool valid = nlohmann::json::accept(payload);
    auto scanned = scan_batch(payload);
    EXPECT_EQ(scanned.has_value(), c.scanned);
    if (scanned) {
      EXPECT_TRUE(valid);
    }
    auto stored = decode_batch_for_store(payload);
    EXPECT_EQ(stored.ok(), valid);
    if (scanned && stored) {
      ASSERT_EQ(scanned->events.size(), 1u);
      EXPECT_EQ(scanned->events[0].sent_text, stored->events[0].sent_text);
    }
  }

  // A batch as agents send it is scanned, with everything HQ keeps.
  Event odd = event(7);
  odd.body["incident_state"] = {
      {"state", "resolved"}, {"severity", 2}, {"t_detect", "2026-11-26T22:18:03.123Z"}};
  const std::string payload = batch_payload("store-1", {event(1).text(), odd.text()});
  auto b = scan_batch(payload);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->store, "store-1");
  ASSERT_EQ(b->events.size(), 2u);
  EXPECT_EQ(b->events[0].seq, 1);
  EXPECT_EQ(b->events[0].uid, "ev-1");
  EXPECT_EQ(b->events[0].sent_text, event(1).text());
  EXPECT_EQ(nlohmann::json::parse(b->events[0].sent_state_text),
            event(1).body.at("incident_state"));
  EXPECT_EQ(b->events[0].sent_state->state, "open");
  EXPECT_TRUE(b->events[0].sent_state->has_uid);
  EXPECT_EQ(b->events[1].sent_state->state, "resolved");
  EXPECT_FALSE(b->events[1].sent_state->severity);
  EXPECT_EQ(b->events[1].sent_state->t_detect, "2026-11-26T22:18:03.123Z");
  EXPECT_FALSE(b->events[1].sent_state->has_uid);
  EXPECT_TRUE(b->events[1].body.is_null());

  // Escaped where HQ reads, or a field twice: the parser decides.
  for (const std::string& other : {
           std::string(R"({"v":1,"store":"store-1","events":[{"seq":1,"uid":"e\u0031",)"
                       R"("incident":"i","type":"t","at":"a","actor":"x","incident_state":{}}]})"),
           std::string(R"({"v":1,"store":"store-1","events":[{"seq":1,"uid":"e","incident":"i",)"
                       R"("type":"t","at":"a","actor":"x","incident_state":{"state":"a",)"
                       R"("state":"b"}}]})"),
           std::string(R"({"v":1,"v":1,"store":"store-1","events":[]})"),
           std::string("\xef\xbb\xbf") + R"({"v":1,"store":"store-1","events":[]})",
       }) {
    SCOPED_TRACE(other);
    EXPECT_FALSE(scan_batch(other));
    auto tree = decode_batch(other);
    auto stored = decode_batch_for_store(other);
    ASSERT_EQ(stored.ok(), tree.ok());
    if (tree) {
      ASSERT_EQ(stored->events.size(), tree->events.size());
      for (std::size_t i = 0; i < tree->events.size(); ++i) {
        EXPECT_EQ(stored->events[i].uid, tree->events[i].uid);
      }
    }
  }
}

}  // namespace
}  // namespace storewatch::wire
