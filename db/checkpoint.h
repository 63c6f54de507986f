#pragma once
/// \file
/// WAL checkpoints off the writer's thread. SQLite checkpoints on the
/// connection that commits, right after the commit that fills the WAL: the
/// writer then copies megabytes back into the database and waits for fsync
/// before it can take its next batch. Here the writer's connection only
/// signals; a thread with its own connection checkpoints (PASSIVE: it never
/// blocks the writer), so the writer keeps committing meanwhile.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "db/sqlite.h"

namespace storewatch::db {

class BackgroundCheckpoint {
 public:
  /// Takes over `writer`'s checkpoints: once its WAL holds `threshold` pages
  /// after a commit, the thread copies it back. Should the WAL reach `limit`
  /// pages all the same (a writer outrunning the disk), the writer's own
  /// commit checkpoints, as SQLite would have, so the WAL stays bounded.
  /// `writer` must outlive this object and commit on one thread.
  static Result<std::unique_ptr<BackgroundCheckpoint>> start(Database& writer, int threshold,
                                                             int limit);
  /// Stops the thread and hands checkpoints back to the writer's connection.
  ~BackgroundCheckpoint();
  BackgroundCheckpoint(const BackgroundCheckpoint&) = delete;
  BackgroundCheckpoint& operator=(const BackgroundCheckpoint&) = delete;

  struct Stats {
    std::uint64_t background = 0;  ///< checkpoints run by the thread
    std::uint64_t inline_ = 0;     ///< by the writer, past `limit`
  };
  Stats stats() const;

 private:
  BackgroundCheckpoint(Database& writer, Database own, int threshold, int limit);
  static int on_commit(void* self, struct sqlite3* db, const char* name, int pages);
  void loop();

  Database& writer_;
  Database own_;
  const int threshold_;
  const int limit_;
  std::mutex running_;  ///< held while a checkpoint runs
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool due_ = false;
  bool stopping_ = false;
  Stats stats_;
  std::thread thread_;
};

}  // namespace storewatch::db
