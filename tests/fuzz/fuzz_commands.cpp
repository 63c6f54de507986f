// HQ command decoding (sync/commands.h) as the agent's HqCommands takes a
// payload off `P/stores/S/cmd`, unsigned or in a signed envelope, by a store
// without and with a command key: parse_command, the answer for a refused
// payload, and, for a well-formed command, what the agent reads from it
// next (a silence's match, and whether it matches).

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "sync/commands.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace sync = storewatch::sync;

// The key and clock the signed seeds in corpus/commands were made with.
constexpr std::string_view kKey = "fuzz-command-key-0123456789abcdef";
constexpr std::string_view kStore = "store-0042";
constexpr std::int64_t kNow = 1796601600;  // 2026-12-07T00:00:00Z

// What the agent does with any parsed payload, and what holds for it.
void check(const sync::ParsedCommand& parsed) {
  using nlohmann::json;
  if (parsed.id) FUZZ_CHECK(sync::valid_command_id(*parsed.id));
  if (!parsed.command) {
    FUZZ_CHECK(!parsed.error.empty());
    FUZZ_CHECK(!parsed.authenticated);
    // The refusal HQ gets back is JSON carrying the id found.
    const json answer = json::parse(sync::command_refused(parsed.id, parsed.error), nullptr, false);
    FUZZ_CHECK(answer.is_object());
    FUZZ_CHECK(answer.at("ok") == false);
    if (parsed.id) FUZZ_CHECK(answer.at("id") == *parsed.id);
    return;
  }
  const sync::Command& cmd = *parsed.command;
  FUZZ_CHECK(parsed.id && *parsed.id == cmd.id);
  FUZZ_CHECK(sync::valid_command_id(cmd.id));
  FUZZ_CHECK(!sync::to_string(cmd.op).empty());
  const json done = json::parse(sync::command_done(cmd.id, json{{"op", sync::to_string(cmd.op)}}),
                                nullptr, false);
  FUZZ_CHECK(done.is_object() && done.at("id") == cmd.id);
  if (cmd.op == sync::CommandOp::silence) {
    FUZZ_CHECK(!cmd.match.empty());
    std::string why;
    if (auto m = storewatch::config::ProbeMatch::parse(cmd.match, &why)) {
      (void)m->matches(cmd.reason, {{"lane", cmd.reason}});
    } else {
      FUZZ_CHECK(!why.empty());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Past the cap only the first KB is scanned; a bit past it is enough.
  if (size > sync::kMaxCommandPayload + 1024) return 0;
  const std::string_view payload = storewatch::fuzz::text_of(data, size);

  // A store without a command key, and one with (signatures and expiry).
  const sync::ParsedCommand open = sync::parse_command(payload);
  check(open);
  const sync::CommandAuth auth{std::string(kStore), std::string(kKey), kNow};
  const sync::ParsedCommand keyed = sync::parse_command(payload, auth);
  check(keyed);
  // JSON text never holds a NUL byte (the parser would stop at one).
  if (open.command || keyed.command) FUZZ_CHECK(payload.find('\0') == std::string_view::npos);
  // A key only ever takes commands away.
  if (keyed.command) {
    FUZZ_CHECK(keyed.authenticated && keyed.was_signed);
    FUZZ_CHECK(open.command && open.command->id == keyed.command->id);
  }

  // Any command the open store takes, HQ can sign, and the keyed store then
  // takes it as the same command.
  if (open.command && !open.was_signed) {
    auto envelope = sync::sign_command(kKey, kStore, payload, kNow + 60);
    FUZZ_CHECK(envelope.ok());
    // (The envelope escapes the text: past the cap it is refused whole.)
    if (envelope->size() > sync::kMaxCommandPayload) return 0;
    const sync::ParsedCommand signed_back = sync::parse_command(*envelope, auth);
    FUZZ_CHECK(signed_back.command && signed_back.authenticated);
    FUZZ_CHECK(signed_back.command->id == open.command->id);
    FUZZ_CHECK(signed_back.command->op == open.command->op);
  }
  return 0;
}
