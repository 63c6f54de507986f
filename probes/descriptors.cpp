#include "probes/descriptors.h"

#include <dirent.h>
#include <sys/resource.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace storewatch::probes {

namespace {
// Within this many descriptors of the limit, a failure is taken for EMFILE
// whatever its message says (a library may word it its own way).
constexpr long kHeadroom = 8;
}  // namespace

DescriptorUse descriptor_use() {
  DescriptorUse use;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    use.limit = rl.rlim_cur == RLIM_INFINITY ? -1 : static_cast<long>(rl.rlim_cur);
  }
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    use.open = -1;
    return use;
  }
  long n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  use.open = n - 1;  // the directory's own descriptor
  return use;
}

std::optional<std::string> out_of_descriptors(const ProbeResult& result) {
  if (result.status == ProbeStatus::ok || result.status == ProbeStatus::warn) return std::nullopt;
  const bool said = result.message.find(std::strerror(EMFILE)) != std::string::npos ||
                    result.message.find(std::strerror(ENFILE)) != std::string::npos;
  const DescriptorUse use = descriptor_use();
  const bool near_limit = use.open < 0 || (use.limit > 0 && use.open + kHeadroom >= use.limit);
  if (!said && !near_limit) return std::nullopt;
  if (use.open < 0) return std::string("storewatch is out of file descriptors");
  if (said && !near_limit && result.message.find(std::strerror(ENFILE)) != std::string::npos) {
    return std::string("the system is out of file descriptors (ENFILE)");
  }
  if (said && !near_limit) {
    // EMFILE when the check ran, freed since.
    return fmt::format("storewatch was out of file descriptors ({} of {} open now)", use.open,
                       use.limit);
  }
  return fmt::format("storewatch is out of file descriptors ({} of {} open)", use.open, use.limit);
}

}  // namespace storewatch::probes
