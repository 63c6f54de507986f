#pragma once
/// \file
/// Work that comes back on an Asio loop: a steady_timer armed, the work run
/// when it fires, the timer armed again. The daemons' flushes, ticks and
/// watchdog pings are each one of these.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <utility>

namespace storewatch {

/// Runs `work` on its executor again and again until cancel(): every
/// `every`, or after the delay each run returns (retention's "again soon"
/// while there is more to do, else "in ten minutes"). Runs only while the
/// loop makes progress — a loop that hangs delays it, which is what a
/// watchdog ping wants. After cancel() no run starts (not even one whose
/// timer had fired already) and nothing of it waits on the loop, so
/// io_context::run() returns by itself once the rest of the work is done.
///
/// Its handler refers to it: destroy it only once the loop runs no more
/// handlers (after run() returned), or cancelled with no handler pending.
class Periodic {
 public:
  using Delay = std::chrono::steady_clock::duration;

  /// Every `every`, the first time `every` after start().
  Periodic(boost::asio::any_io_executor executor, Delay every, std::function<void()> work)
      : timer_(std::move(executor)), first_(every), work_([every, work = std::move(work)] {
          work();
          return every;
        }) {}

  /// After start(first), then again after the delay each run returns.
  Periodic(boost::asio::any_io_executor executor, std::function<Delay()> work)
      : timer_(std::move(executor)), work_(std::move(work)) {}

  Periodic(const Periodic&) = delete;
  Periodic& operator=(const Periodic&) = delete;

  /// Arms the first run after the interval (the first constructor).
  void start() { start(first_); }

  /// Arms the first run after `first`.
  void start(Delay first) {
    stopped_ = false;
    arm(first);
  }

  /// No run starts after this, until start() again. Idempotent; fine from
  /// inside the work itself.
  void cancel() {
    stopped_ = true;
    timer_.cancel();
  }

 private:
  void arm(Delay delay) {
    timer_.expires_after(delay);
    timer_.async_wait([this](const boost::system::error_code& e) {
      // A timer that fired before cancel() still calls back, without an error.
      if (e || stopped_) return;
      const Delay next = work_();
      if (!stopped_) arm(next);
    });
  }

  boost::asio::steady_timer timer_;
  Delay first_{};
  std::function<Delay()> work_;
  bool stopped_ = true;
};

}  // namespace storewatch
