#pragma once
/// \file
/// `icmp`: sends `count` echo requests to a host, `echo_interval` apart, and
/// reports loss and round-trip times. IPv4 and IPv6; an unprivileged datagram
/// ICMP socket where net.ipv4.ping_group_range allows, else a raw socket.

#include "probes/probe.h"

namespace storewatch::probes {

ProbeType icmp_probe_type();

}  // namespace storewatch::probes
