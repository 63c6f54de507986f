#include "probes/escpos_status.h"

#include <fmt/format.h>

#include <algorithm>

namespace storewatch::probes::escpos {
namespace {

constexpr bool bit(std::uint8_t b, std::uint8_t mask) {
  return (b & mask) == mask;
}

}  // namespace

Result<PrinterStatus> decode(std::span<const std::uint8_t> replies) {
  const std::size_t checked = std::min<std::size_t>(replies.size(), kStatusRequests);
  for (std::size_t i = 0; i < checked; ++i) {
    if (!is_status_byte(replies[i])) {
      return Error{
          fmt::format("garbage reply: DLE EOT {} was answered with 0x{:02X}, not a status byte "
                      "(expected (b & 0x93) == 0x12)",
                      i + 1, replies[i])};
    }
  }
  if (replies.size() < kStatusRequests) {
    return Error{
        fmt::format("short reply: {} of {} status bytes", replies.size(), kStatusRequests)};
  }
  if (replies.size() > kStatusRequests) {
    return Error{fmt::format("long reply: {} bytes where {} status bytes were asked for",
                             replies.size(), kStatusRequests)};
  }
  const std::uint8_t printer = replies[0], offline = replies[1], error = replies[2],
                     paper = replies[3];
  PrinterStatus s;
  s.drawer_pin_high = bit(printer, 0x04);
  s.offline = bit(printer, 0x08);
  s.waiting_for_recovery = bit(printer, 0x20);
  s.feed_button_pressed = bit(printer, 0x40);
  s.cover_open = bit(offline, 0x04);
  s.paper_feeding = bit(offline, 0x08);
  s.paper_end_stop = bit(offline, 0x20);
  s.error_occurred = bit(offline, 0x40);
  s.autocutter_error = bit(error, 0x08);
  s.unrecoverable_error = bit(error, 0x20);
  s.auto_recoverable_error = bit(error, 0x40);
  s.paper_near_end = bit(paper, 0x0C);
  s.paper_end = bit(paper, 0x60) || s.paper_end_stop;
  return s;
}

Assessment assess(const PrinterStatus& s) {
  using Level = Assessment::Level;
  Assessment a;
  auto add = [&a](Level level, std::string condition) {
    a.conditions.push_back(std::move(condition));
    if (level > a.level) a.level = level;
  };
  if (s.paper_end) add(Level::fail, "paper end");
  if (s.cover_open) add(Level::fail, "cover open");
  if (s.autocutter_error) add(Level::fail, "autocutter error");
  if (s.unrecoverable_error) add(Level::fail, "unrecoverable error");
  if (s.auto_recoverable_error) add(Level::fail, "auto-recoverable error");
  // The error bit of DLE EOT 2 with no cause in DLE EOT 3: say so rather than
  // call the printer healthy.
  if (s.error_occurred && !s.autocutter_error && !s.unrecoverable_error &&
      !s.auto_recoverable_error) {
    add(Level::fail, "error (cause not reported)");
  }
  if (s.offline) add(Level::fail, "offline");
  // Near end is implied by paper end; only worth a word on its own.
  if (s.paper_near_end && !s.paper_end) add(Level::warn, "paper near end");
  return a;
}

}  // namespace storewatch::probes::escpos
