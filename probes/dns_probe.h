#pragma once
/// \file
/// `dns`: resolves `query` through one DNS server (the first nameserver of
/// /etc/resolv.conf unless `server` says otherwise) over UDP, and over TCP
/// when the UDP reply is truncated. Timeout, NXDOMAIN, SERVFAIL, REFUSED, an
/// empty answer, an unexpected answer and a malformed reply are distinct
/// results.

#include <boost/asio/ip/udp.hpp>

#include <filesystem>
#include <string_view>

#include "base/result.h"
#include "probes/probe.h"

namespace storewatch::probes {

ProbeType dns_probe_type();

/// A server as the `server` key takes it: "IP", "IP:port", "[IPv6]:port" or
/// a bare IPv6 address; the port defaults to 53.
Result<boost::asio::ip::udp::endpoint> parse_dns_server(std::string_view text);

/// The first `nameserver` line of a resolv.conf file.
Result<std::string> first_nameserver(const std::filesystem::path& resolv_conf);

}  // namespace storewatch::probes
