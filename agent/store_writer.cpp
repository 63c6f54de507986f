#include "agent/store_writer.h"

#include <boost/asio/post.hpp>

#include <algorithm>

#include "config/log.h"

namespace storewatch::agent {

namespace {
// Changes per transaction: one fsync for up to this many. 2,048 rather than
// 512 takes a burst from 22k to 30k changes/s (tests/bench/engine_bench);
// a transaction this size still commits in tens of milliseconds.
constexpr std::size_t kMaxBatch = 2048;
// WAL pages (4 KB) before a checkpoint on the checkpoint thread, and past
// which the writer checkpoints itself (a 64 MB WAL) rather than let it grow.
constexpr int kCheckpointPages = 4000;
constexpr int kCheckpointLimitPages = 16000;
}  // namespace

StoreWriter::StoreWriter(Store store, boost::asio::io_context& io, std::function<void()> on_commit)
    : store_(std::move(store)), io_(io), on_commit_(std::move(on_commit)) {
  auto checkpoint =
      db::BackgroundCheckpoint::start(store_.database(), kCheckpointPages, kCheckpointLimitPages);
  if (checkpoint) {
    checkpoint_ = std::move(*checkpoint);
  } else {
    log::warn("store: checkpoints stay on the writer's thread: {}", checkpoint.error().message);
  }
  thread_ = std::thread([this] { loop(); });
}

StoreWriter::~StoreWriter() {
  stop();
}

void StoreWriter::submit(Change change) {
  // Rendered here, on the caller's thread: the writer's thread is the
  // bottleneck of a burst, so it only binds and steps.
  if (auto* c = std::get_if<IncidentChange>(&change)) {
    change = IncidentRows::of(std::move(*c));
  }
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(change));
  }
  wake_.notify_one();
}

std::size_t StoreWriter::backlog() const {
  std::lock_guard lock(mutex_);
  return queue_.size() + in_progress_;
}

StoreWriter::Stats StoreWriter::stats() const {
  Stats s;
  {
    std::lock_guard lock(mutex_);
    s = stats_;
  }
  if (checkpoint_) s.checkpoints = checkpoint_->stats().background;
  return s;
}

void StoreWriter::schedule(std::chrono::milliseconds first,
                           std::function<std::chrono::milliseconds(Store&)> task) {
  {
    std::lock_guard lock(mutex_);
    task_ = std::move(task);
    task_due_ = std::chrono::steady_clock::now() + first;
  }
  wake_.notify_one();
}

void StoreWriter::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void StoreWriter::loop() {
  std::chrono::milliseconds backoff{100};
  int failures_while_stopping = 0;
  for (;;) {
    std::vector<Change> batch;
    std::function<std::chrono::milliseconds(Store&)> task;
    {
      std::unique_lock lock(mutex_);
      auto task_is_due = [this] {
        return task_ && !stopping_ && std::chrono::steady_clock::now() >= task_due_;
      };
      auto ready = [&] { return stopping_ || !queue_.empty() || task_is_due(); };
      if (task_) {
        wake_.wait_until(lock, task_due_, ready);
      } else {
        wake_.wait(lock, ready);
      }
      if (task_is_due()) {
        task = task_;
      } else if (queue_.empty()) {
        if (stopping_) return;  // stopping, and everything is committed
        continue;
      }
    }
    if (task) {
      // Between batches: changes queued meanwhile wait at most one bounded run.
      const auto next = task(store_);
      std::lock_guard lock(mutex_);
      task_due_ = std::chrono::steady_clock::now() + next;
      continue;
    }
    {
      std::unique_lock lock(mutex_);
      if (queue_.empty()) continue;
      std::size_t n = std::min(queue_.size(), kMaxBatch);
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      in_progress_ = n;
    }
    auto committed = store_.commit(batch);
    if (committed) {
      backoff = std::chrono::milliseconds{100};
      {
        std::lock_guard lock(mutex_);
        in_progress_ = 0;
        ++stats_.batches;
        stats_.changes += batch.size();
        stats_.largest_batch = std::max(stats_.largest_batch, batch.size());
      }
      // The batch is freed on the loop too: its thousands of strings are the
      // writer's time otherwise.
      boost::asio::post(io_, [done = std::move(batch), on_commit = on_commit_] {
        if (on_commit) on_commit();
      });
      continue;
    }
    // Never drop a change: put the batch back and try again. A full disk or a
    // locked file may clear; the log says what is wrong meanwhile.
    log::error("store: commit of {} changes failed, retrying in {} ms: {}", batch.size(),
               backoff.count(), committed.error().message);
    std::unique_lock lock(mutex_);
    queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                  std::make_move_iterator(batch.end()));
    in_progress_ = 0;
    if (stopping_ && ++failures_while_stopping >= 5) {
      log::error("store: giving up at shutdown with {} changes not committed", queue_.size());
      return;
    }
    wake_.wait_for(lock, backoff, [this] { return false; });
    backoff = std::min(backoff * 2, std::chrono::milliseconds{30'000});
  }
}

}  // namespace storewatch::agent
