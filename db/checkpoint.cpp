#include "db/checkpoint.h"

#include <sqlite3.h>

namespace storewatch::db {

Result<std::unique_ptr<BackgroundCheckpoint>> BackgroundCheckpoint::start(Database& writer,
                                                                          int threshold,
                                                                          int limit) {
  auto own = Database::open(writer.path(), Database::Mode::read_write);
  if (!own) return own.error();
  // The checkpoint syncs the WAL before and the database after it copies.
  if (auto st = own->exec("PRAGMA synchronous=FULL"); !st) return st.error();
  if (auto st = own->exec("PRAGMA wal_autocheckpoint=0"); !st) return st.error();
  return std::unique_ptr<BackgroundCheckpoint>(
      new BackgroundCheckpoint(writer, std::move(*own), threshold, limit));
}

BackgroundCheckpoint::BackgroundCheckpoint(Database& writer, Database own, int threshold, int limit)
    : writer_(writer), own_(std::move(own)), threshold_(threshold), limit_(limit) {
  thread_ = std::thread([this] { loop(); });
  // Replaces the writer's automatic checkpoint, which is itself a WAL hook.
  sqlite3_wal_hook(writer_.handle(), &BackgroundCheckpoint::on_commit, this);
}

BackgroundCheckpoint::~BackgroundCheckpoint() {
  sqlite3_wal_autocheckpoint(writer_.handle(), threshold_);
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

BackgroundCheckpoint::Stats BackgroundCheckpoint::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

int BackgroundCheckpoint::on_commit(void* self, sqlite3* db, const char* name, int pages) {
  auto* c = static_cast<BackgroundCheckpoint*>(self);
  if (pages >= c->limit_) {
    // The thread has not kept up: wait for its run to end, then checkpoint
    // here. The writer adds no frames meanwhile (it is the one writing), so
    // this copies everything no reader still needs and the next commit
    // starts the WAL afresh. PASSIVE, as SQLite's own: a reader on an old
    // snapshot limits it but never blocks it.
    std::lock_guard running(c->running_);
    if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) ==
        SQLITE_OK) {
      std::lock_guard lock(c->mutex_);
      ++c->stats_.inline_;
    }
    return SQLITE_OK;
  }
  if (pages >= c->threshold_) {
    {
      std::lock_guard lock(c->mutex_);
      c->due_ = true;
    }
    c->wake_.notify_one();
  }
  return SQLITE_OK;
}

void BackgroundCheckpoint::loop() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return due_ || stopping_; });
      if (stopping_) return;
      due_ = false;
    }
    // PASSIVE copies what no reader still needs and never waits; a commit
    // meanwhile just appends after it. Failures (busy) retry on the next
    // signal.
    std::unique_lock running(running_);
    const int rc = sqlite3_wal_checkpoint_v2(own_.handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                             nullptr, nullptr);
    running.unlock();
    if (rc == SQLITE_OK) {
      std::lock_guard lock(mutex_);
      ++stats_.background;
    }
  }
}

}  // namespace storewatch::db
