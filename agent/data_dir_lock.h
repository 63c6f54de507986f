#pragma once
/// \file
/// One daemon per data directory: an flock on `<data_dir>/storewatch.lock`,
/// held for the life of the process (the kernel drops it on any exit).

#include <filesystem>

#include "base/result.h"

namespace storewatch::agent {

class DataDirLock {
 public:
  /// Takes the lock and writes this process's pid into the file; an Error
  /// naming the pid of the daemon that holds it already.
  static Result<DataDirLock> acquire(const std::filesystem::path& dir);

  DataDirLock(DataDirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;
  DataDirLock& operator=(DataDirLock&&) = delete;
  ~DataDirLock();

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace storewatch::agent
