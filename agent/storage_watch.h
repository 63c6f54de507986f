#pragma once
/// \file
/// The agent's storage incident (kConditionStorage) and the retention that
/// keeps the database in bounds. The incident has two sources: retention
/// (the database stuck over its cap) and the store writer (commits failing,
/// a full disk). One incident says whichever are true; it resolves when
/// none is (and no dead letter waits for a person: Engine::dead_letter).

#include <boost/asio/io_context.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "agent/engine.h"
#include "agent/retention.h"
#include "agent/store.h"
#include "agent/store_writer.h"

namespace storewatch::agent {

/// Commits failing for this long are the agent's storage incident (a lock
/// held for a moment is not); a full disk is one at once.
inline constexpr auto kWriterFailingFor = std::chrono::seconds(10);

/// The store writer's trouble in words, or nullopt when it commits. Worded
/// the same while it lasts: the incident is raised once, not per figure.
std::optional<std::string> writer_problem(const StoreWriter::Health& h,
                                          const std::filesystem::path& db,
                                          std::chrono::steady_clock::time_point now);

class StorageWatch {
 public:
  /// Hands retention to `writer` at once: it runs on the writer's thread,
  /// between its batches (the writer is the database's one writer), first
  /// after 5 s, then every 10 minutes, or again after a second while there
  /// is more to prune. `policy` is copied: nothing the writer's thread reads
  /// is shared with the loop but the figures (atomics) and what it posts.
  /// The writer must stop before the watch goes.
  StorageWatch(boost::asio::io_context& io, Engine& engine, StoreWriter& writer,
               std::filesystem::path db, PrunePolicy policy);
  StorageWatch(const StorageWatch&) = delete;
  StorageWatch& operator=(const StorageWatch&) = delete;

  /// The writer's condition now (every second, and as it changes). Loop.
  void check_writer();

  /// What the last retention run measured: `agent.storage` of `status`.
  nlohmann::json to_json() const;

 private:
  /// One bounded retention run on the writer's thread; returns when to run
  /// again.
  std::chrono::milliseconds prune(Store& store);
  /// Tells the engine what is true now (loop).
  void report();

  boost::asio::io_context& io_;
  Engine& engine_;
  const StoreWriter& writer_;
  const std::filesystem::path db_;
  const Millis retention_;
  // The writer's thread's alone.
  Pruner pruner_;
  // Written by the writer's thread, read on the loop.
  std::atomic<std::int64_t> used_bytes_{0};
  std::atomic<std::int64_t> cap_bytes_{0};
  std::atomic<bool> over_cap_{false};
  // The loop's.
  std::optional<std::string> cap_;
  std::optional<std::string> writer_trouble_;
};

}  // namespace storewatch::agent
