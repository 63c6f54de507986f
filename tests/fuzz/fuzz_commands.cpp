// HQ command decoding (sync/commands.h) as the agent's HqCommands takes a
// payload off `P/stores/S/cmd`: parse_command, the answer for a refused
// payload, and, for a well-formed command, what the agent reads from it
// next (a silence's match, and whether it matches).

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "sync/commands.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace sync = storewatch::sync;
  using nlohmann::json;
  // Past the cap only the first KB is scanned; a bit past it is enough.
  if (size > sync::kMaxCommandPayload + 1024) return 0;
  const std::string_view payload = storewatch::fuzz::text_of(data, size);

  const sync::ParsedCommand parsed = sync::parse_command(payload);
  if (parsed.id) FUZZ_CHECK(sync::valid_command_id(*parsed.id));
  if (!parsed.command) {
    FUZZ_CHECK(!parsed.error.empty());
    // The refusal HQ gets back is JSON carrying the id found.
    const json answer = json::parse(sync::command_refused(parsed.id, parsed.error), nullptr, false);
    FUZZ_CHECK(answer.is_object());
    FUZZ_CHECK(answer.at("ok") == false);
    if (parsed.id) FUZZ_CHECK(answer.at("id") == *parsed.id);
    return 0;
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
  return 0;
}
