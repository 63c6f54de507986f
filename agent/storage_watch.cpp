#include "agent/storage_watch.h"

#include <boost/asio/post.hpp>

#include <fmt/format.h>

#include <utility>

#include "base/clock.h"
#include "base/log.h"

namespace storewatch::agent {

namespace {

constexpr auto kFirstPrune = std::chrono::seconds(5);
constexpr auto kPruneEvery = std::chrono::minutes(10);
constexpr auto kPruneAgain = std::chrono::seconds(1);

}  // namespace

std::optional<std::string> writer_problem(const StoreWriter::Health& h,
                                          const std::filesystem::path& db,
                                          std::chrono::steady_clock::time_point now) {
  if (h.reserve_released && !h.disk_full) {
    return fmt::format(
        "the disk holding {} is full: storewatch gave up its {} MB reserve and writes into it; "
        "free space on the disk (the reserve is made again by itself)",
        db.string(), StoreWriter::kReserveBytes / (1024 * 1024));
  }
  if (!h.failing_since) return std::nullopt;
  if (h.disk_full) {
    return fmt::format(
        "the disk holding {} is full: changes wait in memory until there is space (`storewatch "
        "status` shows how many); they are lost if the agent stops before then",
        db.string());
  }
  if (now - *h.failing_since < kWriterFailingFor) return std::nullopt;
  return fmt::format(
      "the database {} refuses writes: changes wait in memory (`storewatch status` shows how "
      "many); they are lost if the agent stops before it takes them",
      db.string());
}

StorageWatch::StorageWatch(boost::asio::io_context& io, Engine& engine, StoreWriter& writer,
                           std::filesystem::path db, PrunePolicy policy)
    : io_(io),
      engine_(engine),
      writer_(writer),
      db_(std::move(db)),
      retention_(policy.retention),
      pruner_(policy) {
  writer.schedule(kFirstPrune, [this](Store& s) { return prune(s); });
}

void StorageWatch::check_writer() {
  writer_trouble_ = writer_problem(writer_.health(), db_, std::chrono::steady_clock::now());
  report();
}

void StorageWatch::report() {
  if (cap_ && writer_trouble_) {
    engine_.set_storage_problem(*writer_trouble_ + "; and " + *cap_);
  } else if (cap_ || writer_trouble_) {
    engine_.set_storage_problem(cap_ ? cap_ : writer_trouble_);
  } else {
    engine_.set_storage_problem(std::nullopt);
  }
}

nlohmann::json StorageWatch::to_json() const {
  return nlohmann::json{{"used_bytes", used_bytes_.load()},
                        {"cap_bytes", cap_bytes_.load()},
                        {"over_cap", over_cap_.load()}};
}

std::chrono::milliseconds StorageWatch::prune(Store& s) {
  // HQ command ids are kept as long as closed history.
  if (auto r = s.prune_commands(SystemClock().wall_now() - retention_, 1000); !r) {
    log::error("retention: command ids: {}", r.error().message);
  }
  // So are notifications sent or dropped; queued ones never go.
  const auto before = SystemClock().wall_now() - retention_;
  if (auto r = s.prune_notifications(
          std::chrono::duration_cast<std::chrono::milliseconds>(before.time_since_epoch()).count(),
          1000);
      !r) {
    log::error("retention: notifications: {}", r.error().message);
  }
  // A database stuck over its cap is the agent's own critical incident.
  auto set_cap = [this](std::optional<std::string> problem) {
    boost::asio::post(io_, [this, problem = std::move(problem)] {
      cap_ = problem;
      report();
    });
  };
  auto r = pruner_.run(s, SystemClock().wall_now());
  if (!r) {
    log::error("retention: {}", r.error().message);
    return kPruneEvery;
  }
  used_bytes_ = r->used_bytes;
  cap_bytes_ = r->cap_bytes;
  over_cap_ = r->over_cap;
  const auto pruned = r->expired_incidents + r->shed_incidents;
  if (pruned > 0) {
    log::info(
        "retention: pruned {} closed incidents ({} past retention, {} shed for the cap) "
        "and {} events; database {} KB of {} KB",
        pruned, r->expired_incidents, r->shed_incidents, r->expired_events + r->shed_events,
        r->used_bytes / 1024, r->cap_bytes / 1024);
  }
  if (r->stuck_over_cap()) {
    set_cap(
        fmt::format("the database holds {} MB, over its {} MB cap (max_db_size), and all of it "
                    "is unsynced events or open incidents, which are never dropped; the agent "
                    "keeps writing",
                    r->used_bytes / (1024 * 1024), r->cap_bytes / (1024 * 1024)));
  } else if (!r->over_cap) {
    set_cap(std::nullopt);
  }
  return r->more ? std::chrono::milliseconds(kPruneAgain) : std::chrono::milliseconds(kPruneEvery);
}

}  // namespace storewatch::agent
