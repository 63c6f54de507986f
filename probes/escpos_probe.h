#pragma once
/// \file
/// `escpos`: a receipt printer's ESC/POS real-time status. Connects, sends
/// `DLE EOT n` for n = 1..4, reads one status byte for each and closes at
/// once: network printers serve one connection at a time, so a probe that
/// held the socket would block receipts.

#include "probes/probe.h"

namespace storewatch::probes {

ProbeType escpos_probe_type();

}  // namespace storewatch::probes
