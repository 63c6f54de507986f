// The ESC/POS real-time status decoder (probes/escpos_status.h): the bytes a
// receipt printer sends back to DLE EOT 1..4, decoded and assessed as the
// escpos probe does, also byte by byte as they arrive (a bad byte stops the
// probe early, so a prefix must decode or fail on its own).

#include <span>

#include "probes/escpos_status.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace escpos = storewatch::probes::escpos;
  if (size > 64) return 0;
  const std::span<const std::uint8_t> replies(data, size);

  for (std::size_t n = 0; n <= size; ++n) {
    auto prefix = escpos::decode(replies.first(n));
    if (!prefix) FUZZ_CHECK(!prefix.error().message.empty());
  }
  auto decoded = escpos::decode(replies);
  if (!decoded) return 0;
  FUZZ_CHECK(size == static_cast<std::size_t>(escpos::kStatusRequests));
  for (std::uint8_t b : replies) FUZZ_CHECK(escpos::is_status_byte(b));
  const escpos::Assessment a = escpos::assess(*decoded);
  FUZZ_CHECK((a.level == escpos::Assessment::Level::ok) == a.conditions.empty());
  for (const std::string& c : a.conditions) FUZZ_CHECK(!c.empty());
  return 0;
}
