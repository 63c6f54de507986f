#pragma once
/// \file
/// Parsers for the /proc files the `system` probe reads, over text so tests
/// can feed them anything.

#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace storewatch::probes::procfs {

/// From /proc/meminfo, in bytes.
struct MemInfo {
  std::uint64_t total_bytes = 0;
  /// MemAvailable: the kernel's estimate of what can be had without
  /// swapping (page cache and reclaimable slab count as available).
  std::uint64_t available_bytes = 0;
};

/// Needs MemTotal and MemAvailable (kernels since 3.14 have it).
Result<MemInfo> parse_meminfo(std::string_view text);

/// /proc/loadavg's three averages.
struct LoadAvg {
  double load1 = 0;
  double load5 = 0;
  double load15 = 0;
};

Result<LoadAvg> parse_loadavg(std::string_view text);

}  // namespace storewatch::probes::procfs
