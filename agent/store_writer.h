#pragma once
/// \file
/// The one writer of the agent's database. The loop hands it changes; its
/// own thread commits them in groups (one transaction per batch,
/// synchronous=FULL) so the loop never waits on fsync, then posts "committed"
/// back to the loop — nothing is published to HQ before its commit.
///
/// The writer always makes progress (docs/INCIDENTS.md, "When the database
/// cannot take a change"):
/// - a failure a retry may fix (the disk is full, a lock, an I/O error) is
///   retried with a backoff, and sooner once space comes back;
/// - a full disk first costs a reserve: the writer keeps a file of
///   kReserveBytes next to the database (`storewatch.reserve`) and deletes
///   it when a commit fails for want of space, so the changes of the next
///   minutes — the storage incident among them, which HQ then hears of —
///   are still written; the reserve is made again once there is room;
/// - a failure a retry cannot fix (a constraint, a schema error) is never
///   retried as it was: the batch is split to isolate the change that fails,
///   the rest is committed, and that change goes to the `dead_letters` table
///   (and the log, at error) and is reported through `on_dead_letter`;
/// - what waits in memory is bounded: a probe's state, a sync value and a
///   notice's delivery state keep only their newest version; incident
///   changes are never dropped (docs/INCIDENTS.md has the one exception, an
///   informational event past kMaxBacklog).

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
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
  /// A number that the sink's `committed()` count reaches once every change
  /// submitted so far (and the one being gathered, see CommandSink) is
  /// durable. 0 for sinks that commit as they are handed a change.
  virtual std::uint64_t ticket() const { return 0; }
};

/// A change that could not be stored, and why (the writer's thread made it).
struct DeadLetter {
  std::string what;   ///< the change, in words ("incident 0193…: note by cli:dana")
  std::string error;  ///< SQLite's message
  bool kept = true;   ///< false: the dead_letters table refused it too
};

class StoreWriter final : public ChangeSink {
 public:
  /// Changes waiting in memory past which informational events (`updated`,
  /// and notes by the agent itself) are dropped; incident transitions, and
  /// notes by people, are kept whatever the backlog.
  static constexpr std::size_t kMaxBacklog = 50'000;
  /// The space kept in reserve for a full disk: some thousand incident
  /// changes.
  static constexpr std::int64_t kReserveBytes = 4 * 1024 * 1024;

  /// `on_commit` runs on the io_context after every committed batch;
  /// `on_dead_letter` runs there for each change moved to `dead_letters`, and
  /// `on_trouble` whenever commits start or stop failing, the disk fills or
  /// the reserve is given up or made again (health() says how things are).
  StoreWriter(Store store, boost::asio::io_context& io, std::function<void()> on_commit,
              std::function<void(DeadLetter)> on_dead_letter = nullptr,
              std::function<void()> on_trouble = nullptr);
  ~StoreWriter() override;
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  void submit(Change change) override;
  /// Changes submitted so far.
  std::uint64_t ticket() const override;
  /// Changes done so far, in submission order: committed, or moved to
  /// dead_letters. Every change of a ticket up to this number is done.
  std::uint64_t committed() const { return committed_.load(); }

  /// Runs `task` on the writer's thread and connection (between batches,
  /// never inside one) first after `first`, then again after the delay each
  /// run returns. Retention uses it: the writer is the database's one
  /// writer. One task; a second call replaces the first.
  void schedule(std::chrono::milliseconds first,
                std::function<std::chrono::milliseconds(Store&)> task);

  /// Commits everything queued, then ends the thread. Gives up after a few
  /// tries when commits keep failing (the changes left are logged).
  /// Idempotent.
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

  /// The writer's condition, for `status`, `doctor` and the storage incident.
  struct Health {
    std::size_t backlog = 0;           ///< changes waiting (queued and in a batch)
    std::size_t incident_changes = 0;  ///< of them, incident changes
    std::uint64_t coalesced = 0;       ///< older versions replaced by a newer one
    std::uint64_t dropped = 0;         ///< informational events dropped past kMaxBacklog
    std::uint64_t dead_letters = 0;    ///< changes moved to dead_letters since start
    bool disk_full = false;            ///< the last commit failed for want of space
    /// The reserve was given up to a full disk and is not back yet: the
    /// writer commits into it.
    bool reserve_released = false;
    std::string last_error;  ///< of the last failed commit; "" once one succeeds
    /// When the current run of failed commits began (steady clock).
    std::optional<std::chrono::steady_clock::time_point> failing_since;
    /// The last time the writer committed, or had nothing to do.
    std::chrono::steady_clock::time_point progress_at{};
  };
  Health health() const;

  /// Whether the writer is wedged: changes wait and it has not committed
  /// for `limit`, for a reason a restart may clear (a lock, an I/O error, a
  /// stuck call). A full disk does not count: a restart makes no space, and
  /// would lose what waits in memory. The daemon stops feeding systemd's
  /// watchdog while this is true.
  bool stalled(std::chrono::steady_clock::time_point now, std::chrono::milliseconds limit) const;

 private:
  void loop();
  /// Commits `batch` in order, isolating changes that fail for good.
  /// Returns the failure a retry may fix, with how many changes at the
  /// front of `batch` were done before it (committed or dead-lettered);
  /// nullopt when every change is done.
  std::optional<Error> commit_isolating(std::vector<Change>& batch, std::size_t& done);
  void dead_letter(const Change& change, const Error& error);
  /// Waits out a failed commit: `backoff`, but wakes early when the disk
  /// gains space or the writer is stopping.
  void wait_after_failure(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds backoff,
                          bool disk_full);
  /// The key under which `change` replaces an older version of itself, or ""
  /// for changes that are all kept.
  static std::string coalesce_key(const Change& change);
  /// Makes the reserve file when it is missing and there is room for it and
  /// as much again; returns whether it exists.
  bool make_reserve();
  /// Deletes the reserve to make room; false when there was none.
  bool release_reserve();

  Store store_;
  std::filesystem::path reserve_;
  std::chrono::steady_clock::time_point reserve_checked_{};
  // Declared after store_: stops before the connection it watches closes.
  std::unique_ptr<db::BackgroundCheckpoint> checkpoint_;
  boost::asio::io_context& io_;
  std::function<void()> on_commit_;
  std::function<void(DeadLetter)> on_dead_letter_;
  std::function<void()> on_trouble_;
  /// Posts on_trouble_ (mutex_ held or not; it only posts).
  void trouble();
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Change> queue_;
  /// The position in submission order of queue_.front().
  std::uint64_t queue_base_ = 0;
  /// Newest queued version of each coalescing change: its position.
  std::map<std::string, std::uint64_t> latest_;
  std::size_t queued_incident_changes_ = 0;
  std::size_t in_progress_ = 0;
  std::uint64_t submitted_ = 0;
  std::atomic<std::uint64_t> committed_{0};
  Stats stats_;
  Health health_;
  bool stopping_ = false;
  std::function<std::chrono::milliseconds(Store&)> task_;
  std::chrono::steady_clock::time_point task_due_{};
  std::thread thread_;
};

}  // namespace storewatch::agent
