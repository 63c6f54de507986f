#pragma once
/// \file
/// `http`: one request to a URL (a POS lane's health endpoint, a store
/// server) through the loop's shared libcurl multi handle. Checks the status
/// and optionally a body substring; HTTPS verifies the certificate and
/// reports its days to expiry.

#include "probes/probe.h"

namespace storewatch::probes {

ProbeType http_probe_type();

}  // namespace storewatch::probes
