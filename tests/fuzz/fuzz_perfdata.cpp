// The Monitoring Plugins output parser (probes/perfdata.h) on a plugin's
// stdout as the exec probe reads it: the message and the perfdata items,
// which end up in probe results, the database and JSON, so they are bounded
// and valid UTF-8.

#include <cmath>

#include <nlohmann/json.hpp>

#include "probes/perfdata.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// Valid UTF-8 (nlohmann's dump throws on anything else).
bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace probes = storewatch::probes;
  // The exec probe keeps at most 64 KB of a plugin's output.
  if (size > 64 * 1024) return 0;
  const std::string_view out = storewatch::fuzz::text_of(data, size);

  const probes::PluginOutput parsed = probes::parse_plugin_output(out);
  FUZZ_CHECK(valid_utf8(parsed.message));
  // The cap plus "…" (3 bytes).
  FUZZ_CHECK(parsed.message.size() <= probes::kMaxMessageBytes + 3);
  FUZZ_CHECK(parsed.perfdata.size() <= probes::kMaxPerfItems);
  for (const probes::PerfItem& item : parsed.perfdata) {
    FUZZ_CHECK(!item.label.empty());
    FUZZ_CHECK(item.label.size() <= probes::kMaxLabelBytes + 3);
    FUZZ_CHECK(valid_utf8(item.label));
    FUZZ_CHECK(std::isfinite(item.value));
  }

  const auto items = probes::parse_perfdata(out);
  FUZZ_CHECK(items.size() <= probes::kMaxPerfItems);
  const std::string shown = probes::printable(out, 256);
  FUZZ_CHECK(valid_utf8(shown) && shown.size() <= 256 + 3);
  return 0;
}
