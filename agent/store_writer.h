#pragma once
/// \file
/// The one writer of the agent's database. The loop hands it changes; its
/// own thread commits them in groups (one transaction per batch,
/// synchronous=FULL) so the loop never waits on fsync, then posts "committed"
/// back to the loop — nothing is published to HQ before its commit.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "agent/store.h"
#include "db/checkpoint.h"

namespace storewatch::agent {

/// Where the engine sends its changes; tests bring a fake.
class ChangeSink {
 public:
  virtual ~ChangeSink() = default;
  virtual void submit(Change change) = 0;
};

class StoreWriter final : public ChangeSink {
 public:
  /// `on_commit` runs on the io_context after every committed batch.
  StoreWriter(Store store, boost::asio::io_context& io, std::function<void()> on_commit);
  ~StoreWriter() override;
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  void submit(Change change) override;

  /// Runs `task` on the writer's thread and connection (between batches,
  /// never inside one) first after `first`, then again after the delay each
  /// run returns. Retention uses it: the writer is the database's one
  /// writer. One task; a second call replaces the first.
  void schedule(std::chrono::milliseconds first,
                std::function<std::chrono::milliseconds(Store&)> task);

  /// Commits everything queued, then ends the thread. Idempotent.
  void stop();

  /// Changes queued but not yet committed.
  std::size_t backlog() const;

  /// What the writer has committed so far: group commit at work.
  struct Stats {
    std::uint64_t batches = 0;  ///< transactions committed
    std::uint64_t changes = 0;  ///< changes in them
    std::size_t largest_batch = 0;
    std::uint64_t checkpoints = 0;  ///< WAL checkpoints, off the writer's thread
  };
  Stats stats() const;

 private:
  void loop();

  Store store_;
  // Declared after store_: stops before the connection it watches closes.
  std::unique_ptr<db::BackgroundCheckpoint> checkpoint_;
  boost::asio::io_context& io_;
  std::function<void()> on_commit_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Change> queue_;
  std::size_t in_progress_ = 0;
  Stats stats_;
  bool stopping_ = false;
  std::function<std::chrono::milliseconds(Store&)> task_;
  std::chrono::steady_clock::time_point task_due_{};
  std::thread thread_;
};

}  // namespace storewatch::agent
