#include "agent/store_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include <fmt/format.h>

#include <algorithm>

#include "base/log.h"

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
// Backoff after a failed commit: from the first to the longest wait.
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{30'000};
// While the disk is full: how often free space is looked at, and the longest
// wait before trying again anyway (space freed and taken again in between).
constexpr std::chrono::milliseconds kSpacePoll{250};
constexpr std::chrono::milliseconds kMaxFullBackoff{5'000};
// Tries at shutdown before the changes left are given up (and logged).
constexpr int kTriesWhileStopping = 5;
// How often a writer whose reserve is missing looks for room to make it again.
constexpr std::chrono::seconds kReserveCheck{1};

/// Bytes available to the writer in the file system holding `path`, or -1.
std::int64_t free_bytes(const std::filesystem::path& path) {
  struct statvfs s {};
  if (::statvfs(path.parent_path().empty() ? "." : path.parent_path().c_str(), &s) != 0) {
    return -1;
  }
  return static_cast<std::int64_t>(s.f_bavail) * static_cast<std::int64_t>(s.f_frsize);
}

/// An informational event that may be dropped past kMaxBacklog.
bool informational(const Change& change) {
  const auto* r = std::get_if<IncidentRows>(&change);
  return r != nullptr &&
         (r->event_type == "updated" || (r->event_type == "note" && r->event_actor == "agent"));
}

bool is_incident_change(const Change& change) {
  return std::holds_alternative<IncidentRows>(change) ||
         std::holds_alternative<IncidentChange>(change) ||
         std::holds_alternative<AppliedCommand>(change);
}

/// A change in a technician's words, for the log and the dead_letters table.
std::string describe(const Change& change) {
  return std::visit(
      [](const auto& c) -> std::string {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, IncidentRows>) {
          return fmt::format("incident {} ({}): {} by {}, event {}", c.uid, c.probe, c.event_type,
                             c.event_actor, c.event_uid);
        } else if constexpr (std::is_same_v<T, IncidentChange>) {
          return fmt::format("incident {} ({}): {} by {}, event {}", c.incident.uid,
                             c.incident.probe, c.event.type, c.event.actor, c.event.uid);
        } else if constexpr (std::is_same_v<T, ProbeStateRow>) {
          return fmt::format("probe state of {}", c.probe);
        } else if constexpr (std::is_same_v<T, SyncValue>) {
          return fmt::format("sync value {} = {}", c.key, c.value);
        } else if constexpr (std::is_same_v<T, SilenceRow>) {
          return fmt::format("silence {} ({})", c.uid, c.match);
        } else if constexpr (std::is_same_v<T, AppliedCommand>) {
          return fmt::format("HQ command {} ({}) and its {} changes", c.command.id, c.command.op,
                             c.changes.size());
        } else {
          return fmt::format("delivery state of notice {}", c.id);
        }
      },
      change);
}

}  // namespace

StoreWriter::StoreWriter(Store store, boost::asio::io_context& io, std::function<void()> on_commit,
                         std::function<void(DeadLetter)> on_dead_letter,
                         std::function<void()> on_trouble)
    : store_(std::move(store)),
      reserve_(store_.path().parent_path() / "storewatch.reserve"),
      io_(io),
      on_commit_(std::move(on_commit)),
      on_dead_letter_(std::move(on_dead_letter)),
      on_trouble_(std::move(on_trouble)) {
  auto checkpoint =
      db::BackgroundCheckpoint::start(store_.database(), kCheckpointPages, kCheckpointLimitPages);
  if (checkpoint) {
    checkpoint_ = std::move(*checkpoint);
  } else {
    log::warn("store: checkpoints stay on the writer's thread: {}", checkpoint.error().message);
  }
  health_.progress_at = std::chrono::steady_clock::now();
  if (!make_reserve()) {
    log::warn("store: no room for the {} MB reserve for a full disk next to {}",
              kReserveBytes / (1024 * 1024), store_.path().string());
  }
  thread_ = std::thread([this] { loop(); });
}

void StoreWriter::trouble() {
  if (on_trouble_) boost::asio::post(io_, on_trouble_);
}

bool StoreWriter::make_reserve() {
  struct stat st {};
  if (::stat(reserve_.c_str(), &st) == 0 && st.st_size >= kReserveBytes) return true;
  const std::int64_t free_now = free_bytes(store_.path());
  if (free_now >= 0 && free_now < 2 * kReserveBytes) return false;
  int fd = ::open(reserve_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  // Blocks allocated, not a sparse file: the space is really held.
  const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(kReserveBytes));
  const bool ok = rc == 0 && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) ::unlink(reserve_.c_str());
  return ok;
}

bool StoreWriter::release_reserve() {
  if (::unlink(reserve_.c_str()) != 0) return false;
  log::error(
      "store: the disk holding {} is full; released the {} MB reserve to go on writing. Free "
      "space on it",
      store_.path().string(), kReserveBytes / (1024 * 1024));
  return true;
}

StoreWriter::~StoreWriter() {
  stop();
}

std::string StoreWriter::coalesce_key(const Change& change) {
  if (const auto* p = std::get_if<ProbeStateRow>(&change)) return "probe_state\n" + p->probe;
  if (const auto* v = std::get_if<SyncValue>(&change)) return "sync_value\n" + v->key;
  if (const auto* n = std::get_if<sync::NoticeUpdate>(&change)) {
    return "notice\n" + std::to_string(n->id);
  }
  return {};
}

void StoreWriter::submit(Change change) {
  // Rendered here, on the caller's thread: the writer's thread is the
  // bottleneck of a burst, so it only binds and steps.
  if (auto* c = std::get_if<IncidentChange>(&change)) {
    change = IncidentRows::of(std::move(*c));
  }
  const std::string key = coalesce_key(change);
  {
    std::lock_guard lock(mutex_);
    if (!key.empty()) {
      // A newer version of something still waiting replaces it where it
      // waits: a probe's state, a sync value or a notice's delivery state
      // is only ever needed as it is now.
      auto it = latest_.find(key);
      if (it != latest_.end() && it->second >= queue_base_) {
        Change& older = queue_[static_cast<std::size_t>(it->second - queue_base_)];
        const auto* old_value = std::get_if<SyncValue>(&older);
        auto* new_value = std::get_if<SyncValue>(&change);
        if (old_value != nullptr && new_value != nullptr && new_value->only_if_higher) {
          new_value->value = std::max(new_value->value, old_value->value);
        }
        older = std::move(change);
        ++health_.coalesced;
        return;
      }
    }
    if (queue_.size() + in_progress_ >= kMaxBacklog && informational(change)) {
      if (health_.dropped++ == 0) {
        log::error(
            "store: {} changes wait to be written; informational events are dropped until the "
            "backlog shrinks (incident transitions are kept)",
            queue_.size() + in_progress_);
      }
      return;
    }
    if (!key.empty()) latest_[key] = queue_base_ + queue_.size();
    if (is_incident_change(change)) ++queued_incident_changes_;
    queue_.push_back(std::move(change));
    ++submitted_;
  }
  wake_.notify_one();
}

std::uint64_t StoreWriter::ticket() const {
  std::lock_guard lock(mutex_);
  return submitted_;
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

StoreWriter::Health StoreWriter::health() const {
  std::lock_guard lock(mutex_);
  Health h = health_;
  h.backlog = queue_.size() + in_progress_;
  h.incident_changes = queued_incident_changes_;
  return h;
}

bool StoreWriter::stalled(std::chrono::steady_clock::time_point now,
                          std::chrono::milliseconds limit) const {
  std::lock_guard lock(mutex_);
  if (queue_.empty() && in_progress_ == 0) return false;
  if (health_.disk_full) return false;
  return now - health_.progress_at > limit;
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

void StoreWriter::dead_letter(const Change& change, const Error& error) {
  DeadLetter letter{describe(change), error.message, true};
  if (auto st = store_.dead_letter(change, letter.what, letter.error); !st) {
    letter.kept = false;
    log::error("store: {} could not be stored ({}), nor kept in dead_letters ({}); it is lost",
               letter.what, letter.error, st.error().message);
  } else {
    log::error(
        "store: {} could not be stored ({}); kept in the dead_letters table (storewatch doctor "
        "shows it), the other changes go on",
        letter.what, letter.error);
  }
  {
    std::lock_guard lock(mutex_);
    ++health_.dead_letters;
  }
  if (on_dead_letter_) {
    boost::asio::post(io_, [letter = std::move(letter), f = on_dead_letter_] { f(letter); });
  }
}

std::optional<Error> StoreWriter::commit_isolating(std::vector<Change>& batch, std::size_t& done) {
  done = 0;
  // Ranges of the batch still to commit, front first: a range that fails
  // for good is split in halves until the change that fails stands alone.
  std::vector<std::pair<std::size_t, std::size_t>> ranges{{0, batch.size()}};
  std::vector<Change> part;
  while (!ranges.empty()) {
    auto [from, to] = ranges.back();
    ranges.pop_back();
    std::optional<Error> failed;
    if (from == 0 && to == batch.size()) {
      auto r = store_.commit(batch);
      if (!r) failed = r.error();
    } else {
      // Moved out for the attempt and back after it, whatever it gave.
      part.assign(std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(from)),
                  std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(to)));
      auto r = store_.commit(part);
      std::move(part.begin(), part.end(), batch.begin() + static_cast<std::ptrdiff_t>(from));
      if (!r) failed = r.error();
    }
    if (!failed) {
      done = to;
      continue;
    }
    if (db::retry_may_fix(*failed)) return failed;
    if (to - from == 1) {
      dead_letter(batch[from], *failed);
      done = to;
      continue;
    }
    const std::size_t mid = from + (to - from) / 2;
    ranges.emplace_back(mid, to);  // after the first half
    ranges.emplace_back(from, mid);
  }
  return std::nullopt;
}

void StoreWriter::wait_after_failure(std::unique_lock<std::mutex>& lock,
                                     std::chrono::milliseconds backoff, bool full) {
  const auto until = std::chrono::steady_clock::now() + backoff;
  if (!full) {
    wake_.wait_until(lock, until, [this] { return stopping_; });
    return;
  }
  // A full disk: try again as soon as there is more space than when the
  // commit failed, not only when the backoff ends.
  const std::int64_t at_failure = free_bytes(store_.path());
  while (!stopping_ && std::chrono::steady_clock::now() < until) {
    wake_.wait_for(lock, kSpacePoll, [this] { return stopping_; });
    lock.unlock();
    const std::int64_t now_free = free_bytes(store_.path());
    lock.lock();
    if (at_failure >= 0 && now_free > at_failure) return;
  }
}

void StoreWriter::loop() {
  std::chrono::milliseconds backoff = kFirstBackoff;
  // Changes per transaction now: halved after each commit that failed for
  // want of space (a smaller one may fit where the whole batch does not),
  // back to kMaxBatch after a success.
  std::size_t batch_limit = kMaxBatch;
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
      if (!ready()) {
        // Idle: nothing waits, which is progress as far as the watchdog goes.
        health_.progress_at = std::chrono::steady_clock::now();
        if (health_.reserve_released) {
          // Look for room for the reserve now and then, busy or not.
          wake_.wait_for(lock, kReserveCheck, ready);
          lock.unlock();
          const bool back = make_reserve();
          lock.lock();
          if (back) {
            log::info("store: there is room again; the reserve for a full disk is back");
            health_.reserve_released = false;
            trouble();
          }
        } else if (task_) {
          wake_.wait_until(lock, task_due_, ready);
        } else {
          wake_.wait(lock, ready);
        }
        health_.progress_at = std::chrono::steady_clock::now();
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
      std::size_t n = std::min(queue_.size(), batch_limit);
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      queue_base_ += n;
      in_progress_ = n;
    }
    std::size_t done = 0;
    const std::optional<Error> failed = commit_isolating(batch, done);
    std::size_t incident_changes_done = 0;
    for (std::size_t i = 0; i < done; ++i) incident_changes_done += is_incident_change(batch[i]);
    if (done > 0) {
      committed_ += done;
      {
        std::lock_guard lock(mutex_);
        in_progress_ -= done;
        queued_incident_changes_ -= incident_changes_done;
        ++stats_.batches;
        stats_.changes += done;
        stats_.largest_batch = std::max(stats_.largest_batch, done);
        health_.progress_at = std::chrono::steady_clock::now();
      }
      std::vector<Change> finished(
          std::make_move_iterator(batch.begin()),
          std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(done)));
      batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(done));
      // The batch is freed on the loop too: its thousands of strings are the
      // writer's time otherwise.
      boost::asio::post(io_, [finished = std::move(finished), on_commit = on_commit_] {
        if (on_commit) on_commit();
      });
    }
    if (!failed) {
      backoff = kFirstBackoff;
      batch_limit = kMaxBatch;
      bool released = false;
      {
        std::lock_guard lock(mutex_);
        if (health_.failing_since && !health_.reserve_released) {
          log::info("store: commits succeed again; {} changes wait", queue_.size());
        }
        if (health_.failing_since) trouble();
        health_.failing_since.reset();
        health_.disk_full = false;
        health_.last_error.clear();
        released = health_.reserve_released;
      }
      const auto now = std::chrono::steady_clock::now();
      if (released && now - reserve_checked_ >= kReserveCheck) {
        reserve_checked_ = now;
        if (make_reserve()) {
          log::info("store: there is room again; the reserve for a full disk is back");
          std::lock_guard lock(mutex_);
          health_.reserve_released = false;
          trouble();
        }
      }
      continue;
    }
    if (db::disk_full(*failed) && release_reserve()) {
      // Room for what waits: try again at once.
      std::lock_guard lock(mutex_);
      queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                    std::make_move_iterator(batch.end()));
      queue_base_ -= batch.size();
      in_progress_ = 0;
      health_.reserve_released = true;
      trouble();
      continue;
    }
    // A failure a retry may fix (a full disk, a lock, an I/O error): never
    // drop a change; put what is left back in front and try again.
    const bool full = db::disk_full(*failed);
    if (full) batch_limit = std::max<std::size_t>(1, std::min(batch_limit, batch.size()) / 2);
    log::error("store: commit of {} changes failed, retrying in {} ms: {}", batch.size(),
               full ? std::min(backoff, kMaxFullBackoff).count() : backoff.count(),
               failed->message);
    std::unique_lock lock(mutex_);
    queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                  std::make_move_iterator(batch.end()));
    queue_base_ -= batch.size();
    in_progress_ = 0;
    if (!health_.failing_since || health_.disk_full != full) trouble();
    if (!health_.failing_since) health_.failing_since = std::chrono::steady_clock::now();
    health_.disk_full = full;
    health_.last_error = failed->message;
    if (stopping_ && ++failures_while_stopping >= kTriesWhileStopping) {
      log::error("store: giving up at shutdown with {} changes not committed", queue_.size());
      return;
    }
    wait_after_failure(lock, full ? std::min(backoff, kMaxFullBackoff) : backoff, full);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

}  // namespace storewatch::agent
