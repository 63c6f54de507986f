#pragma once
/// \file
/// Decodes the four ESC/POS real-time status bytes a receipt printer sends
/// back to `DLE EOT n` (n = 1 printer, 2 offline cause, 3 error cause, 4 roll
/// paper sensor). Pure: bytes in, a decoded status or an Error out, so the
/// decoding can be tested (and fuzzed) without a printer.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace storewatch::probes::escpos {

/// Requests in the order the probe sends them (the `n` of `DLE EOT n`).
inline constexpr int kStatusRequests = 4;

/// Whether `b` has the fixed bits of a real-time status byte:
/// `(b & 0x93) == 0x12`. Anything else is not a status reply.
constexpr bool is_status_byte(std::uint8_t b) {
  return (b & 0x93) == 0x12;
}

/// What the four status bytes say. Unknown and model-specific bits are
/// ignored: clone printers differ in the details.
struct PrinterStatus {
  // DLE EOT 1: printer status
  bool drawer_pin_high = false;       ///< 0x04: the drawer kick-out connector pin 3
  bool offline = false;               ///< 0x08
  bool waiting_for_recovery = false;  ///< 0x20: waiting for online recovery
  bool feed_button_pressed = false;   ///< 0x40
  // DLE EOT 2: offline cause
  bool cover_open = false;      ///< 0x04
  bool paper_feeding = false;   ///< 0x08: paper is being fed by the feed button
  bool paper_end_stop = false;  ///< 0x20: printing stopped because the paper ran out
  bool error_occurred = false;  ///< 0x40
  // DLE EOT 3: error cause
  bool autocutter_error = false;        ///< 0x08
  bool unrecoverable_error = false;     ///< 0x20
  bool auto_recoverable_error = false;  ///< 0x40: e.g. the head is too hot
  // DLE EOT 4: roll paper sensor
  bool paper_near_end = false;  ///< 0x0C both set
  bool paper_end = false;       ///< 0x60 both set, or the paper-end stop of DLE EOT 2
};

/// Decodes the replies to DLE EOT 1..4, in that order. Fails on a byte that
/// is not a status byte (naming it and its request) and on fewer or more
/// than four bytes. A bad byte is reported even when bytes are missing, so
/// the probe can stop at the first one.
Result<PrinterStatus> decode(std::span<const std::uint8_t> replies);

/// How a decoded status rates: each condition a person must see to, the worst
/// one first ("paper end", "cover open", "offline", then "paper near end").
struct Assessment {
  enum class Level { ok, warn, fail };
  Level level = Level::ok;
  std::vector<std::string> conditions;
};

/// Paper near end alone is a warning; paper end, cover open, offline, the
/// cutter and the other errors are failures.
Assessment assess(const PrinterStatus& status);

}  // namespace storewatch::probes::escpos
