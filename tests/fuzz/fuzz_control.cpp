// The control socket's request line, as ControlServer reads it before it
// picks a handler (parse_control_request), and the response the server
// writes back for a refused request or an unknown op. (The handlers' own
// fields are read by the daemon's engine and store: the integration tests'
// bad_input suite covers those.)

#include <nlohmann/json.hpp>

#include "agent/control_server.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace agent = storewatch::agent;
  using nlohmann::json;
  // The server reads at most kMaxControlRequest bytes up to a newline.
  if (size > agent::kMaxControlRequest) return 0;
  const std::string_view line = storewatch::fuzz::text_of(data, size);

  auto parsed = agent::parse_control_request(line);
  if (!parsed) {
    // The refusal the server sends must serialize.
    const json refusal{
        {"v", agent::kControlVersion}, {"ok", false}, {"error", parsed.error().message}};
    FUZZ_CHECK(!refusal.dump().empty());
    return 0;
  }
  FUZZ_CHECK(parsed->request.is_object());
  // JSON text never holds a NUL byte (the parser would stop at one).
  FUZZ_CHECK(line.find('\0') == std::string_view::npos);
  FUZZ_CHECK(parsed->request.at("op").get<std::string>() == parsed->op);
  const json unknown{
      {"v", agent::kControlVersion}, {"ok", false}, {"error", "unknown op \"" + parsed->op + "\""}};
  FUZZ_CHECK(!unknown.dump().empty());

  return 0;
}
