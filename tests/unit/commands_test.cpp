// HQ command payloads (sync/commands.h): every op parses into its fields;
// hostile and malformed payloads are refused with a reason and, where it can
// be found, their id — and never crash, hang or throw.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <chrono>
#include <limits>
#include <random>
#include <string>

#include "sync/commands.h"

namespace storewatch::sync {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using namespace std::string_literals;

constexpr const char* kId = "0b9f3c1e-6a0e-4a53-9d8e-3f1f3b0a7c11";

json base(const char* op) {
  return json{{"v", 1}, {"id", kId}, {"op", op}, {"by", "alice"}};
}

ParsedCommand parse(const json& j) {
  return parse_command(j.dump());
}

/// Refused, with `id` (nullopt: no id) and an error that says something.
void expect_refused(const ParsedCommand& p, std::optional<std::string> id,
                    const std::string& mentions = "") {
  EXPECT_FALSE(p.command.has_value());
  EXPECT_EQ(p.id, id);
  EXPECT_FALSE(p.error.empty());
  if (!mentions.empty()) {
    EXPECT_NE(p.error.find(mentions), std::string::npos) << p.error;
  }
}

// --- what is accepted --------------------------------------------------------

TEST(CommandParse, IncidentOpsCarryIncidentAndNote) {
  for (const char* op : {"ack", "resolve", "close", "note"}) {
    json j = base(op);
    j["incident"] = "0193a1b2-c3d4";
    j["note"] = "on it";
    auto p = parse(j);
    ASSERT_TRUE(p.command) << op << ": " << p.error;
    EXPECT_EQ(to_string(p.command->op), op);
    EXPECT_EQ(p.command->id, kId);
    EXPECT_EQ(p.command->incident, "0193a1b2-c3d4");
    EXPECT_EQ(p.command->note, "on it");
    EXPECT_EQ(p.command->actor(), "hq:alice");
  }
  json ack = base("ack");
  ack["incident"] = "u";
  auto p = parse(ack);
  ASSERT_TRUE(p.command) << "the note is optional for ack";
  EXPECT_EQ(p.command->note, "");
}

TEST(CommandParse, SilenceProbeRunAndResync) {
  json s = base("silence");
  s["match"] = "lane-*";
  s["for"] = "1h30m";
  s["reason"] = "POS update";
  auto p = parse(s);
  ASSERT_TRUE(p.command) << p.error;
  EXPECT_EQ(p.command->match, "lane-*");
  EXPECT_EQ(p.command->length, 90min);
  EXPECT_EQ(p.command->reason, "POS update");

  json r = base("probe_run");
  r["probe"] = "lane-01-pos";
  p = parse(r);
  ASSERT_TRUE(p.command) << p.error;
  EXPECT_EQ(p.command->probe, "lane-01-pos");

  json y = base("resync");
  y["from_seq"] = 1234;
  y["by"] = "hq:gap";
  p = parse(y);
  ASSERT_TRUE(p.command) << p.error;
  EXPECT_EQ(p.command->from_seq, 1234);
  EXPECT_EQ(p.command->by, "gap") << "HQ's own \"hq:\" prefix is not doubled";
  EXPECT_EQ(p.command->actor(), "hq:gap");
}

TEST(CommandParse, KeyOrderAndWhitespaceDoNotMatter) {
  auto p = parse_command(
      " \n{ \"from_seq\" : 7 ,\"by\":\"x\", \"op\":\"resync\",\t\"v\":1, \"id\" : \"abc\" }\n");
  ASSERT_TRUE(p.command) << p.error;
  EXPECT_EQ(p.command->id, "abc");
  EXPECT_EQ(p.command->from_seq, 7);
}

// --- refused, with the id ----------------------------------------------------

TEST(CommandRefused, WrongVersion) {
  for (json v : {json(2), json(0), json(-1), json("1"), json(1.0), json(true), json(nullptr),
                 json::array({1}), json::object()}) {
    json j = base("ack");
    j["incident"] = "u";
    j["v"] = v;
    expect_refused(parse(j), kId);
  }
  json j = base("ack");
  j["incident"] = "u";
  j.erase("v");
  expect_refused(parse(j), kId, "\"v\" is missing");
  j["v"] = 2;
  expect_refused(parse(j), kId, "version 2");
}

// nlohmann's parser stops at a NUL byte as at the end of the input: a
// command followed by a NUL and bytes nobody read (not even UTF-8) is not
// JSON, and HQ cannot sign one either, since its envelope would carry those
// bytes replaced and never verify (found by tests/fuzz/fuzz_commands).
TEST(CommandRefused, ANulAndWhatFollowsItAreNotJson) {
  json j = base("resync");
  j["from_seq"] = 1;
  const std::string tail = j.dump() + '\0' + "\x91\x91,";
  expect_refused(parse_command(tail), kId, "not JSON");
  EXPECT_FALSE(sign_command("key", "store-0042", tail, 1764195600).ok());
}

TEST(CommandRefused, UnknownOps) {
  for (json op : {json("reboot"), json("exec"), json("ACK"), json(""), json("ack "),
                  json("remediate"), json(std::string(5000, 'a'))}) {
    json j = base("ack");
    j["incident"] = "u";
    j["op"] = op;
    expect_refused(parse(j), kId, "unknown op");
  }
  for (json op : {json(1), json(nullptr), json::array({"ack"}), json::object({{"op", "ack"}})}) {
    json j = base("ack");
    j["op"] = op;
    expect_refused(parse(j), kId, "\"op\" must be a string");
  }
  json j = base("ack");
  j.erase("op");
  expect_refused(parse(j), kId, "\"op\" is missing");
}

TEST(CommandRefused, MissingFields) {
  json ack = base("ack");
  expect_refused(parse(ack), kId, "\"incident\" is missing");
  json note = base("note");
  note["incident"] = "u";
  expect_refused(parse(note), kId, "\"note\" is missing");
  json silence = base("silence");
  silence["match"] = "lane-*";
  silence["reason"] = "r";
  expect_refused(parse(silence), kId, "\"for\" is missing");
  silence["for"] = "1h";
  silence.erase("reason");
  expect_refused(parse(silence), kId, "\"reason\" is missing");
  expect_refused(parse(base("probe_run")), kId, "\"probe\" is missing");
  expect_refused(parse(base("resync")), kId, "\"from_seq\" is missing");
  json no_by = base("resync");
  no_by["from_seq"] = 1;
  no_by.erase("by");
  expect_refused(parse(no_by), kId, "\"by\" is missing");
  json no_id = base("resync");
  no_id["from_seq"] = 1;
  no_id.erase("id");
  expect_refused(parse(no_id), std::nullopt, "\"id\" is missing");
}

TEST(CommandRefused, FieldsOfTheWrongType) {
  const std::vector<json> not_strings = {json(1),       json(1.5),     json(true),
                                         json(nullptr), json::array(), json::object()};
  for (const char* field : {"incident", "note", "by"}) {
    for (const auto& bad : not_strings) {
      json j = base("note");
      j["incident"] = "u";
      j["note"] = "n";
      j[field] = bad;
      expect_refused(parse(j), kId, std::string("\"") + field + "\" must be a string");
    }
  }
  for (const char* field : {"match", "for", "reason"}) {
    json j = base("silence");
    j["match"] = "lane-*";
    j["for"] = "1h";
    j["reason"] = "r";
    j[field] = 3600;
    expect_refused(parse(j), kId, std::string("\"") + field + "\" must be a string");
  }
  json probe = base("probe_run");
  probe["probe"] = json::array({"lane-01-pos"});
  expect_refused(parse(probe), kId, "\"probe\" must be a string");
  // from_seq: an integer that fits in int64, not negative.
  for (json bad : {json("5"), json(5.0), json(-1), json(true), json(nullptr),
                   json(std::numeric_limits<std::uint64_t>::max()), json(1e300)}) {
    json j = base("resync");
    j["from_seq"] = bad;
    expect_refused(parse(j), kId, "from_seq");
  }
  json zero = base("resync");
  zero["from_seq"] = 0;
  EXPECT_TRUE(parse(zero).command) << "0 means from the first event";
}

TEST(CommandRefused, HugeNumbersWrittenOut) {
  for (const char* n : {"1e400", "-1e400", "99999999999999999999999999999999",
                        "18446744073709551616", "9223372036854775808", "1e-400", "-0"}) {
    auto p = parse_command(
        fmt::format(R"({{"v":1,"id":"n1","op":"resync","by":"x","from_seq":{}}})", n));
    if (std::string_view(n) == "-0") {
      // -0 is an integer zero.
      EXPECT_TRUE(p.command) << n << ": " << p.error;
      continue;
    }
    EXPECT_FALSE(p.command) << n;
    EXPECT_FALSE(p.error.empty()) << n;
    auto v = parse_command(fmt::format(R"({{"v":{},"id":"n2","op":"resync","by":"x"}})", n));
    EXPECT_FALSE(v.command) << n;
  }
}

TEST(CommandRefused, FieldsTheOpDoesNotTake) {
  json j = base("probe_run");
  j["probe"] = "lane-01-pos";
  j["command"] = json::array({"/bin/sh", "-c", "reboot"});
  expect_refused(parse(j), kId, "\"command\" is not a field of op probe_run");
  json k = base("ack");
  k["incident"] = "u";
  k["remediation"] = "restart-lane-01";
  expect_refused(parse(k), kId, "is not a field");
  json l = base("resync");
  l["from_seq"] = 1;
  l["incident"] = "u";
  expect_refused(parse(l), kId, "is not a field");
}

TEST(CommandRefused, IdentifiersWithControlCharactersOrQuotes) {
  for (std::string bad : {"a\nb"s, "a\"b"s, ""s, "a\\b"s, "a\0b"s, "\x1b[31m"s}) {
    json ack = base("ack");
    ack["incident"] = bad;
    expect_refused(parse(ack), kId, "\"incident\"");
    json run = base("probe_run");
    run["probe"] = bad;
    expect_refused(parse(run), kId, "\"probe\"");
    json s = base("silence");
    s["match"] = bad;
    s["for"] = "1h";
    s["reason"] = "r";
    expect_refused(parse(s), kId, "\"match\"");
  }
}

TEST(CommandRefused, BadIds) {
  for (json id : {json(""), json(std::string(kMaxCommandId + 1, 'a')), json("has space"),
                  json("quote\"d"), json("new\nline"), json(std::string("nul\0x", 5)), json("é"),
                  json(42), json(nullptr), json::array({"x"})}) {
    json j = base("resync");
    j["from_seq"] = 1;
    j["id"] = id;
    expect_refused(parse(j), std::nullopt, "\"id\"");
  }
  json ok = base("resync");
  ok["from_seq"] = 1;
  ok["id"] = std::string(kMaxCommandId, 'a');
  EXPECT_TRUE(parse(ok).command);
}

TEST(CommandRefused, NotJsonObjects) {
  for (std::string payload :
       {std::string(""), std::string(" "), std::string("null"), std::string("[]"),
        std::string("\"id\""), std::string("42"), std::string("{"), std::string("}"),
        std::string("{\"id\":\"abc\""), std::string("{'id':'abc'}"), std::string("\xff\xfe{}")}) {
    auto p = parse_command(payload);
    EXPECT_FALSE(p.command) << payload;
    EXPECT_FALSE(p.error.empty()) << payload;
  }
  // Truncated, but the id is in its first KB: the answer still names it.
  expect_refused(parse_command(R"({"v":1,"id":"cut-1","op":"ack","incident":"u)"), "cut-1",
                 "not JSON");
  expect_refused(parse_command(R"([{"id":"in-array"}])"), std::nullopt, "not a JSON object");
}

TEST(CommandRefused, NulBytesAndInvalidUtf8) {
  std::string nul = std::string(R"({"v":1,"id":"nul-1","op":"note","by":"x","incident":"u",)") +
                    std::string("\"note\":\"a\0b\"}", 13);
  expect_refused(parse_command(nul), "nul-1", "not JSON");
  std::string raw_nul = std::string(R"({"v":1,"id":"nul-2",)") + std::string(1, '\0') + "}";
  expect_refused(parse_command(raw_nul), "nul-2");
  for (const char* bad : {"\xc3\x28", "\xa0\xa1", "\xe2\x28\xa1", "\xf0\x28\x8c\x28",
                          "\xed\xa0\x80", "\xc0\xaf", "\xff"}) {
    std::string p =
        std::string(R"({"v":1,"id":"utf-1","op":"note","by":"x","incident":"u","note":")") + bad +
        "\"}";
    expect_refused(parse_command(p), "utf-1", "not JSON");
    std::string in_id = std::string(R"({"v":1,"id":"bad)") + bad + R"(","op":"ack"})";
    expect_refused(parse_command(in_id), std::nullopt);
  }
  // An escaped NUL is valid JSON; in a note it is just text, in an id it is refused.
  auto escaped = parse_command(
      R"({"v":1,"id":"nul-3","op":"note","by":"x","incident":"u","note":"a\u0000b"})");
  ASSERT_TRUE(escaped.command) << escaped.error;
  EXPECT_EQ(escaped.command->note, std::string("a\0b", 3));
}

TEST(CommandRefused, DeepNestingIsRefusedBeforeParsing) {
  for (int depth : {kMaxCommandDepth + 1, 1000, 60000}) {
    std::string deep =
        R"({"v":1,"id":"deep-1","x":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
    if (deep.size() > kMaxCommandPayload) continue;
    expect_refused(parse_command(deep), "deep-1", "nests deeper");
    std::string objects = R"({"id":"deep-2","x":)";
    for (int i = 0; i < depth && objects.size() < kMaxCommandPayload - 16; ++i)
      objects += "{\"a\":";
    expect_refused(parse_command(objects), "deep-2");
  }
  // Brackets inside strings are not nesting.
  auto p = parse_command(
      R"({"v":1,"id":"s","op":"note","by":"x","incident":"u","note":"[[[[[[[[[[[[[["})");
  EXPECT_TRUE(p.command) << p.error;
}

TEST(CommandRefused, OversizePayloadsKeepTheirIdWhenItIsInTheFirstKb) {
  json j = base("note");
  j["incident"] = "u";
  j["note"] = std::string(kMaxCommandPayload, 'x');
  // nlohmann orders keys: "by","id","incident","note","op","v" — the id is near the start.
  expect_refused(parse(j), kId, "bytes; at most");

  std::string far = R"({"pad":")" + std::string(2000, 'p') + R"(","id":"far-away",)" +
                    R"("note":")" + std::string(kMaxCommandPayload, 'x') + "\"}";
  expect_refused(parse_command(far), std::nullopt, "bytes; at most");

  // The id straddling the 1 KB line is not taken (it does not end in time).
  std::string pad(kCommandIdScan - 12, ' ');
  std::string straddle = "{" + pad + R"("id":"straddling-the-line","x":")" +
                         std::string(kMaxCommandPayload, 'x') + "\"}";
  expect_refused(parse_command(straddle), std::nullopt);

  // Exactly at the cap is fine, one byte over is not.
  json at = base("note");
  at["incident"] = "u";
  at["note"] = "";
  const std::size_t room = kMaxCommandPayload - at.dump().size();
  at["note"] = std::string(room, 'n');
  ASSERT_EQ(at.dump().size(), kMaxCommandPayload);
  EXPECT_FALSE(parse(at).error.find("bytes; at most") != std::string::npos);
  at["note"] = std::string(room + 1, 'n');
  expect_refused(parse(at), kId, "bytes; at most");
}

// --- the id scan ---------------------------------------------------------------

TEST(CommandIdScan, FindsTheTopLevelIdAnywhereInTheFirstKb) {
  EXPECT_EQ(scan_command_id(R"({"id":"a1"})"), "a1");
  EXPECT_EQ(scan_command_id(R"(  { "v" : 1 , "id" : "a2" , broken)"), "a2");
  EXPECT_EQ(scan_command_id(R"({"x":{"id":"nested"},"id":"a3")"), "a3");
  EXPECT_EQ(scan_command_id(R"({"x":[{"id":"n"}],"y":"\"id\":\"s\"","id":"a4")"), "a4");
  EXPECT_EQ(scan_command_id(R"({"note":"id","id":"a5"})"), "a5") << "a value \"id\" is no key";
  EXPECT_EQ(scan_command_id(R"({"x":{"id":"nested"}})"), std::nullopt);
  EXPECT_EQ(scan_command_id(R"({"note":"{\"id\":\"fake\"}"})"), std::nullopt);
  EXPECT_EQ(scan_command_id(R"(["id","a6"])"), std::nullopt);
  EXPECT_EQ(scan_command_id(R"({"id":42})"), std::nullopt);
  EXPECT_EQ(scan_command_id(R"({"id":"has space"})"), std::nullopt);
  EXPECT_EQ(scan_command_id(R"({"id":"esc\"aped"})"), std::nullopt);
  EXPECT_EQ(scan_command_id(R"({"id":"unterminated)"), std::nullopt);
  EXPECT_EQ(scan_command_id(R"({"a":1}, "id":"after-the-object")"), std::nullopt);
  EXPECT_EQ(scan_command_id(""), std::nullopt);
  EXPECT_EQ(scan_command_id(std::string(5000, '{')), std::nullopt);
  EXPECT_EQ(scan_command_id(std::string(5000, '"')), std::nullopt);

  const std::string before = "{\"pad\":\"" + std::string(900, 'p') + "\",";
  EXPECT_EQ(scan_command_id(before + R"("id":"a7"})"), "a7");
  const std::string beyond = "{\"pad\":\"" + std::string(kCommandIdScan, 'p') + "\",";
  EXPECT_EQ(scan_command_id(beyond + R"("id":"a8"})"), std::nullopt) << "beyond the first KB";
}

TEST(CommandIdScan, NestingDepthSkipsStrings) {
  EXPECT_EQ(nesting_depth(R"({"a":[1,{"b":2}]})", 10), 3);
  EXPECT_EQ(nesting_depth(R"({"a":"[[[{{{"})", 10), 1);
  EXPECT_EQ(nesting_depth(R"({"a":"\"[[["})", 10), 1);
  EXPECT_EQ(nesting_depth(std::string(100000, '['), 8), 9);
  EXPECT_EQ(nesting_depth("", 8), 0);
}

// --- answers -------------------------------------------------------------------

TEST(CommandAnswer, DoneAndRefusedAreTheContractsShapes) {
  json done = json::parse(command_done("id-1", json{{"op", "ack"}, {"incident", {{"uid", "u"}}}}));
  EXPECT_EQ(done["v"], 1);
  EXPECT_EQ(done["id"], "id-1");
  EXPECT_EQ(done["ok"], true);
  EXPECT_EQ(done["op"], "ack");
  EXPECT_EQ(done["incident"]["uid"], "u");

  json refused = json::parse(command_refused("id-2", "no incident u"));
  EXPECT_EQ(refused, (json{{"v", 1}, {"id", "id-2"}, {"ok", false}, {"error", "no incident u"}}));
  json anonymous = json::parse(command_refused(std::nullopt, "not JSON"));
  EXPECT_TRUE(anonymous["id"].is_null());
  EXPECT_EQ(anonymous["ok"], false);
  // An error that quotes bad bytes still makes valid JSON.
  json bytes = json::parse(command_refused("id-3", "bad \xff\xfe bytes"));
  EXPECT_EQ(bytes["ok"], false);
}

// --- fuzz ----------------------------------------------------------------------

/// Mutates valid commands at random (flips, cuts, inserts, repeats) and
/// checks that every outcome is a command or a reason, with an answer that
/// is valid JSON of the contract's shape. The seed is fixed: a failure replays.
TEST(CommandFuzz, MutatedCommandsNeverCrashAndAlwaysGetAnAnswer) {
  std::mt19937 rng(20261127);
  std::vector<std::string> seeds;
  for (const char* op : {"ack", "resolve", "close", "note"}) {
    json j = base(op);
    j["incident"] = "0193a1b2-c3d4-7e5f";
    j["note"] = "checked the cable";
    seeds.push_back(j.dump());
  }
  json s = base("silence");
  s["match"] = "kind=pos";
  s["for"] = "2h";
  s["reason"] = "refit";
  seeds.push_back(s.dump());
  json r = base("resync");
  r["from_seq"] = 42;
  seeds.push_back(r.dump());
  const std::string alphabet = "{}[]\":,\\ 0123456789eE+-.truefalsnid\x00\x7f\xff\xc3"s;
  int commands = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string p = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 6);
    for (int e = 0; e < edits && !p.empty(); ++e) {
      const std::size_t at = rng() % p.size();
      switch (rng() % 5) {
        case 0: p[at] = static_cast<char>(p[at] ^ (1 << (rng() % 8))); break;
        case 1: p.resize(at); break;
        case 2: p.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        case 3: p.erase(at, 1 + rng() % 8); break;
        case 4: p.insert(at, p.substr(at, 1 + rng() % 64)); break;
      }
    }
    ParsedCommand parsed = parse_command(p);
    if (parsed.command) {
      ++commands;
      EXPECT_TRUE(valid_command_id(parsed.command->id));
      EXPECT_EQ(parsed.id, parsed.command->id);
      continue;
    }
    ASSERT_FALSE(parsed.error.empty()) << p;
    if (parsed.id) {
      EXPECT_TRUE(valid_command_id(*parsed.id)) << p;
    }
    json answer = json::parse(command_refused(parsed.id, parsed.error), nullptr, false);
    ASSERT_TRUE(answer.is_object()) << p;
    EXPECT_EQ(answer["v"], 1);
    EXPECT_EQ(answer["ok"], false);
    EXPECT_TRUE(answer["id"].is_null() || answer["id"].is_string());
  }
  // Some mutations leave a valid command (a changed note, say): the fuzz
  // reaches both outcomes.
  EXPECT_GT(commands, 0);
  EXPECT_LT(commands, 20000);
}

TEST(CommandFuzz, RandomBytesAreRefusedQuickly) {
  std::mt19937 rng(7);
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 2000; ++i) {
    std::string p(rng() % 4096, '\0');
    for (auto& c : p) c = static_cast<char>(rng());
    if (i % 2 == 0) p = R"({"id":"rnd-)" + std::to_string(i) + "\"," + p;
    auto parsed = parse_command(p);
    EXPECT_FALSE(parsed.command);
    if (i % 2 == 0) {
      EXPECT_EQ(parsed.id, "rnd-" + std::to_string(i));
    }
  }
  // A command is at most 64 KB; 2,000 of up to 4 KB take far below this.
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s);
}

// --- signed commands (docs/SYNC.md, "Signed commands") -------------------------

const std::string kSignStore = "store-0042";
// 32 bytes: 00 01 02 … 1f.
std::string sign_test_key() {
  std::string k;
  for (int i = 0; i < 32; ++i) k.push_back(static_cast<char>(i));
  return k;
}
constexpr std::int64_t kSignNow = 1'764'195'000;

CommandAuth store_auth(std::optional<std::string> key = sign_test_key(),
                       std::int64_t now = kSignNow) {
  return CommandAuth{kSignStore, std::move(key), now};
}

std::string signed_silence(const std::string& id = "s-1", std::int64_t exp = kSignNow + 600,
                           const std::string& store = kSignStore,
                           const std::string& key = sign_test_key()) {
  json cmd = json{{"v", 1},       {"id", id},      {"op", "silence"},        {"by", "alice"},
                  {"match", "*"}, {"for", "366d"}, {"reason", "maintenance"}};
  auto signed_payload = sign_command(key, store, cmd.dump(), exp);
  EXPECT_TRUE(signed_payload.ok());
  return signed_payload.ok() ? *signed_payload : std::string();
}

TEST(CommandSigned, TheSignatureIsAnHmacOfTheDocumentedBytes) {
  // The bytes and the digest docs/SYNC.md gives (computed independently,
  // with Python's hmac module).
  const std::string cmd = R"({"v":1,"id":"c-1","op":"resync","from_seq":3,"by":"hq:gap"})";
  EXPECT_EQ(command_signing_input("store-0042", "c-1", 1764195600, cmd),
            "storewatch-cmd-v1\nstore-0042\nc-1\n1764195600\n" + cmd);
  EXPECT_EQ(command_signature(sign_test_key(),
                              command_signing_input("store-0042", "c-1", 1764195600, cmd)),
            "b02dae1ee65980f0fe5e6a86814d0c083a49fc2ab261f37f2d54bda9b031e300");

  auto envelope = sign_command(sign_test_key(), "store-0042", cmd, 1764195600);
  ASSERT_TRUE(envelope.ok());
  json j = json::parse(*envelope);
  EXPECT_EQ(j.size(), 5u);
  EXPECT_EQ(j["v"], 1);
  EXPECT_EQ(j["id"], "c-1");
  EXPECT_EQ(j["exp"], 1764195600);
  EXPECT_EQ(j["cmd"], cmd) << "the command's own text, unchanged";
  EXPECT_EQ(j["sig"], "b02dae1ee65980f0fe5e6a86814d0c083a49fc2ab261f37f2d54bda9b031e300");
  EXPECT_FALSE(sign_command(sign_test_key(), "s", R"({"op":"ack"})", 1).ok()) << "no id";
}

TEST(CommandSigned, ASignedCommandIsTakenByTheStoreWithTheKey) {
  auto p = parse_command(signed_silence(), store_auth());
  ASSERT_TRUE(p.command) << p.error;
  EXPECT_TRUE(p.authenticated);
  EXPECT_TRUE(p.was_signed);
  EXPECT_EQ(p.command->id, "s-1");
  EXPECT_EQ(p.command->op, CommandOp::silence);
  EXPECT_EQ(p.command->match, "*");
  EXPECT_EQ(p.command->length, Millis(366 * 24h));
  // Up to its last second.
  EXPECT_TRUE(parse_command(signed_silence("s-1", kSignNow), store_auth()).command);
}

TEST(CommandSigned, WithAKeyAnUnsignedCommandIsRefused) {
  json forged{{"v", 1},       {"id", "f-1"},   {"op", "silence"},        {"by", "alice"},
              {"match", "*"}, {"for", "366d"}, {"reason", "maintenance"}};
  auto p = parse_command(forged.dump(), store_auth());
  expect_refused(p, "f-1", "only signed commands");
  EXPECT_FALSE(p.authenticated);
  // Without a key the same command is taken, as before signing existed.
  EXPECT_TRUE(parse_command(forged.dump(), store_auth(std::nullopt)).command);
}

TEST(CommandSigned, AnExpiredOrFarFutureCommandIsRefused) {
  expect_refused(parse_command(signed_silence("e-1", kSignNow - 1), store_auth()), "e-1",
                 "expired at 2025-11-26T22:09:59.000Z");
  expect_refused(parse_command(signed_silence("e-2", kSignNow - 1), store_auth()), "e-2",
                 "this gateway's clock says 2025-11-26T22:10:00.000Z");
  // Valid beyond the time its id is surely kept: refused.
  const std::int64_t far = kSignNow + kMaxCommandLifetime.count() + 1;
  expect_refused(parse_command(signed_silence("e-3", far), store_auth()), "e-3", "more than");
  EXPECT_TRUE(
      parse_command(signed_silence("e-4", kSignNow + kMaxCommandLifetime.count()), store_auth())
          .command);
  expect_refused(
      parse_command(signed_silence("e-5", std::numeric_limits<std::int64_t>::max()), store_auth()),
      "e-5", "Unix seconds");
}

TEST(CommandSigned, AnotherKeyAnotherStoreOrAChangeBreaksTheSignature) {
  std::string other_key = sign_test_key();
  other_key[0] = 'x';
  expect_refused(
      parse_command(signed_silence("k-1", kSignNow + 60, kSignStore, other_key), store_auth()),
      "k-1", "signature does not match");
  // Signed for another store (with a fleet-wide key): not replayable here.
  expect_refused(parse_command(signed_silence("k-2", kSignNow + 60, "store-0007"), store_auth()),
                 "k-2", "not signed for store store-0042");

  json j = json::parse(signed_silence("k-3"));
  // Each field the signature covers, changed.
  for (const char* field : {"cmd", "exp", "id"}) {
    json changed = j;
    if (std::string(field) == "cmd") {
      std::string text = changed["cmd"];
      text.replace(text.find("366d"), 4, "367d");
      changed["cmd"] = text;
    } else if (std::string(field) == "exp") {
      changed["exp"] = kSignNow + 3000;
    } else {
      changed["id"] = "k-4";
    }
    expect_refused(parse_command(changed.dump(), store_auth()), changed["id"].get<std::string>(),
                   "signature does not match");
  }
  json bad_sig = j;
  bad_sig["sig"] = "abc";
  expect_refused(parse_command(bad_sig.dump(), store_auth()), "k-3", "64 hex digits");
}

TEST(CommandSigned, TheEnvelopeAndWhatItCarriesAreChecked) {
  const std::string key = sign_test_key();
  auto envelope = [&](const std::string& id, const std::string& cmd, json extra = json()) {
    json j{
        {"v", 1},
        {"id", id},
        {"exp", kSignNow + 60},
        {"cmd", cmd},
        {"sig", command_signature(key, command_signing_input(kSignStore, id, kSignNow + 60, cmd))}};
    if (extra.is_object()) {
      for (auto& [k, v] : extra.items()) j[k] = v;
    }
    return j.dump();
  };
  // The command inside must carry the envelope's id.
  json other = base("resync");
  other["from_seq"] = 1;
  expect_refused(parse_command(envelope("m-1", other.dump()), store_auth()), "m-1",
                 "is not the envelope's");
  json inner = base("resync");
  inner["id"] = "m-2";
  inner["from_seq"] = 1;
  EXPECT_TRUE(parse_command(envelope("m-2", inner.dump()), store_auth()).command);
  // Its own rules hold inside the envelope too.
  inner["id"] = "m-3";
  inner["from_seq"] = -1;
  expect_refused(parse_command(envelope("m-3", inner.dump()), store_auth()), "m-3", "from_seq");
  expect_refused(parse_command(envelope("m-4", "not json"), store_auth()), "m-4", "not JSON");
  inner["from_seq"] = 1;
  inner["id"] = "m-5";
  expect_refused(parse_command(envelope("m-5", envelope("m-5", inner.dump())), store_auth()), "m-5",
                 "another signed command");
  // Nothing but v, id, exp, cmd and sig.
  inner["id"] = "m-6";
  expect_refused(parse_command(envelope("m-6", inner.dump(), json{{"op", "ack"}}), store_auth()),
                 "m-6", "not a field of a signed command");
  json no_exp = json::parse(envelope("m-7", inner.dump()));
  no_exp.erase("exp");
  expect_refused(parse_command(no_exp.dump(), store_auth()), "m-7", "no \"exp\"");
}

TEST(CommandSigned, WithoutAKeyASignedCommandIsTakenApart) {
  // A store not given a key yet takes HQ's signed commands (it takes
  // unsigned ones too): HQ can sign before every store has its key.
  auto p = parse_command(signed_silence("u-1", kSignNow - 3600), store_auth(std::nullopt));
  ASSERT_TRUE(p.command) << p.error;
  EXPECT_FALSE(p.authenticated);
  EXPECT_TRUE(p.was_signed);
  EXPECT_EQ(p.command->id, "u-1");
  EXPECT_TRUE(parse_command(signed_silence("u-2")).command);
}

TEST(CommandSigned, EveryDigitOfTheSignatureCounts) {
  const std::string good = signed_silence("t-1");
  json j = json::parse(good);
  const std::string sig = j["sig"];
  for (std::size_t i = 0; i < sig.size(); ++i) {
    std::string wrong = sig;
    wrong[i] = wrong[i] == '0' ? '1' : '0';
    j["sig"] = wrong;
    auto p = parse_command(j.dump(), store_auth());
    EXPECT_FALSE(p.command) << i;
  }
  j["sig"] = sig;
  EXPECT_TRUE(parse_command(j.dump(), store_auth()).command);
}

}  // namespace
}  // namespace storewatch::sync
