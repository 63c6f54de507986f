#pragma once
/// \file
/// Whether a failed check failed for the agent's own reason: storewatch is
/// out of file descriptors (EMFILE, or the system's ENFILE), so the probe
/// could not open its socket, pipe or file. Such a failure says nothing of
/// the device: it is the agent's own incident, never the probe's.

#include <optional>
#include <string>

#include "probes/probe.h"

namespace storewatch::probes {

/// Open descriptors of this process and its soft limit (RLIMIT_NOFILE);
/// `open` is -1 when /proc/self/fd cannot be read (itself a sign of EMFILE).
struct DescriptorUse {
  long open = 0;
  long limit = 0;
};
DescriptorUse descriptor_use();

/// For a failed result: why it is the agent's fault ("storewatch is out of
/// file descriptors (1024 of 1024 open)"), or nullopt when it is not.
/// Looks at the message (strerror of EMFILE/ENFILE, which every probe
/// reports as it got it) and at how many descriptors are open now.
std::optional<std::string> out_of_descriptors(const ProbeResult& result);

}  // namespace storewatch::probes
