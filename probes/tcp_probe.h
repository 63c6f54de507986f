#pragma once
/// \file
/// `tcp`: connects to host:port and reports the connect time. The connection
/// is closed at once; nothing is sent.

#include "probes/probe.h"

namespace storewatch::probes {

ProbeType tcp_probe_type();

}  // namespace storewatch::probes
