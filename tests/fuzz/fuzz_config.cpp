// The TOML config loader, the whole load and validation from text: the
// agent's (storewatch.toml, with every probe type's key table) and HQ's
// (hq.toml) on the same input. load_string is load() without the file
// reads: the same parse and validate.

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "config/config.h"
#include "probes/registry.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using storewatch::config::Diagnostic;

// Every diagnostic formats, and no exception escaped into one (the loader
// turns those into "internal error while loading: …"; other messages may
// quote the input, which may say anything).
template <class Loaded>
void check_loaded(const Loaded& loaded) {
  bool any_error = false;
  for (const Diagnostic& d : loaded.diagnostics) {
    FUZZ_CHECK(!d.message.starts_with("internal error while loading"));
    FUZZ_CHECK(!storewatch::config::to_string(d).empty());
    any_error = any_error || d.kind == Diagnostic::Kind::error;
  }
  FUZZ_CHECK(loaded.ok() == !any_error);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace config = storewatch::config;
  static const bool quiet = [] {
    storewatch::log::set_level(storewatch::log::Level::error);
    return true;
  }();
  (void)quiet;
  // A config is a few KB; longer inputs only slow the fuzzer down.
  if (size > 64 * 1024) return 0;
  const std::string_view text = storewatch::fuzz::text_of(data, size);

  auto agent = config::load_string(text, "storewatch.toml", storewatch::probes::schemas());
  check_loaded(agent);
  if (agent.ok()) {
    const config::Config& c = *agent.config;
    FUZZ_CHECK(config::is_valid_store_id(c.store.id));
    for (const auto& p : c.probes) FUZZ_CHECK(c.find_probe(p.name) != nullptr);
  }

  auto hq = config::load_hq_string(text, "hq.toml");
  check_loaded(hq);
  return 0;
}
