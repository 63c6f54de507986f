#include "os/system_bus.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace storewatch::os {

namespace asio = boost::asio;
using std::chrono::steady_clock;

boost::asio::execution_context::id SystemBus::id;

namespace {

// sd_bus_process() calls per turn of the loop before other handlers get theirs.
constexpr int kMessagesPerTurn = 64;

std::string system_bus_address() {
  const char* env = std::getenv("DBUS_SYSTEM_BUS_ADDRESS");
  return env != nullptr && *env != '\0' ? env : "unix:path=/run/dbus/system_bus_socket";
}

}  // namespace

// The user data of one call: owned by its slot, freed when the slot is.
// A match's user data is the same: it counts as in flight until its slot is
// released, and its handler gets the signals (or the AddMatch error).
struct SystemBus::Pending {
  SystemBus* owner;  ///< null once the service is gone
  ReplyHandler handler;
  bool answered = false;  ///< a call's reply came; never set for a match
};

void SystemBus::free_pending(void* userdata) {
  auto* p = static_cast<Pending*>(userdata);
  if (p->owner != nullptr) {
    p->owner->pending_.erase(p);
    if (!p->answered) p->owner->call_ended();
  }
  delete p;
}

int SystemBus::on_reply(sd_bus_message* m, void* userdata, sd_bus_error* /*ret_error*/) {
  // The handler may release its own slot; hold it (and so the handler) until
  // the handler has returned.
  sd_bus_slot* slot = sd_bus_slot_ref(sd_bus_get_current_slot(sd_bus_message_get_bus(m)));
  auto* p = static_cast<Pending*>(userdata);
  if (!p->answered) {
    p->answered = true;
    if (p->owner != nullptr) p->owner->call_ended();
  }
  if (sd_bus_message_is_method_error(m, nullptr) > 0) {
    p->handler(nullptr, sd_bus_message_get_error(m));
  } else {
    p->handler(m, nullptr);
  }
  sd_bus_slot_unref(slot);
  return 0;
}

int SystemBus::on_signal(sd_bus_message* m, void* userdata, sd_bus_error* /*ret_error*/) {
  // As in on_reply: the handler may release the match's own slot.
  sd_bus_slot* slot = sd_bus_slot_ref(sd_bus_get_current_slot(sd_bus_message_get_bus(m)));
  static_cast<Pending*>(userdata)->handler(m, nullptr);
  sd_bus_slot_unref(slot);
  return 0;
}

int SystemBus::on_match_installed(sd_bus_message* m, void* userdata, sd_bus_error* /*ret_error*/) {
  if (sd_bus_message_is_method_error(m, nullptr) <= 0) return 0;
  // The current slot is sd-bus's own AddMatch call, not the match's: a
  // handler that releases the match frees `userdata`, so call a copy.
  ReplyHandler handler = static_cast<Pending*>(userdata)->handler;
  handler(nullptr, sd_bus_message_get_error(m));
  return 0;
}

SystemBus::SystemBus(asio::execution_context& context)
    : asio::execution_context::service(context) {}

SystemBus::~SystemBus() {
  close();
  for (Pending* p : pending_) p->owner = nullptr;
}

SystemBus& SystemBus::of(const asio::any_io_executor& executor) {
  auto& context = asio::query(executor, asio::execution::context);
  auto& service = asio::use_service<SystemBus>(context);
  if (!service.timer_ && !service.shut_down_) {
    // The connection must not keep io_context::run() from returning.
    service.executor_ = asio::prefer(executor, asio::execution::outstanding_work.untracked);
    service.timer_.emplace(service.executor_);
  }
  return service;
}

Result<sd_bus*> SystemBus::bus() {
  if (shut_down_ || !timer_) return Error{"the event loop is shutting down"};
  if (bus_ != nullptr && sd_bus_is_open(bus_) > 0) return bus_;
  if (bus_ != nullptr && processing_) return Error{"connection closed"};
  close();

  const std::string address = system_bus_address();
  sd_bus* b = nullptr;
  int r = sd_bus_open_system_with_description(&b, "storewatch");
  if (r < 0) return Error{fmt::format("{} ({})", std::strerror(-r), address)};
  // sd-bus keeps its descriptor: the loop watches a duplicate of it, which it
  // may close at any time without pulling the socket from under sd-bus.
  int fd = sd_bus_get_fd(b);
  int watched = fd < 0 ? -1 : ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (watched < 0) {
    int e = fd < 0 ? -fd : errno;
    sd_bus_close_unref(b);
    return Error{fmt::format("{} ({})", std::strerror(e), address)};
  }
  bus_ = b;
  fd_.emplace(executor_, watched);
  ++generation_;
  schedule_pump();
  return bus_;
}

Result<BusSlot> SystemBus::call(sd_bus_message* call, std::chrono::microseconds timeout,
                                ReplyHandler handler) {
  sd_bus* b = sd_bus_message_get_bus(call);
  if (!connected(b)) return Error{"connection closed"};
  auto* pending = new Pending{this, std::move(handler)};
  sd_bus_slot* slot = nullptr;
  int r = sd_bus_call_async(b, &slot, call, &on_reply, pending,
                            static_cast<std::uint64_t>(std::max<std::int64_t>(timeout.count(), 1)));
  if (r < 0) {
    delete pending;
    return Error{std::strerror(-r)};
  }
  return track(slot, pending);
}

Result<BusSlot> SystemBus::match(sd_bus* bus, const std::string& rule, SignalHandler handler) {
  if (!connected(bus)) return Error{"connection closed"};
  auto* pending = new Pending{this, std::move(handler)};
  sd_bus_slot* slot = nullptr;
  int r =
      sd_bus_add_match_async(bus, &slot, rule.c_str(), &on_signal, &on_match_installed, pending);
  if (r < 0) {
    delete pending;
    return Error{std::strerror(-r)};
  }
  return track(slot, pending);
}

BusSlot SystemBus::track(sd_bus_slot* slot, Pending* pending) {
  sd_bus_slot_set_destroy_callback(slot, &free_pending);
  pending_.insert(pending);
  ++in_flight_;
  schedule_pump();
  return BusSlot(slot);
}

bool SystemBus::connected(sd_bus* bus) const {
  return bus != nullptr && bus == bus_ && sd_bus_is_open(bus) > 0;
}

void SystemBus::shutdown() {
  shut_down_ = true;
  close();
  // The I/O objects go before the context's other services do.
  fd_.reset();
  timer_.reset();
}

void SystemBus::call_ended() {
  if (--in_flight_ == 0) schedule_pump();
}

void SystemBus::stop_waiting() {
  ++generation_;
  reading_ = writing_ = false;
  timer_at_ = steady_clock::time_point::max();
  if (timer_) timer_->cancel();
  boost::system::error_code ignored;
  if (fd_) fd_->cancel(ignored);
}

void SystemBus::close() {
  stop_waiting();
  if (fd_) {
    boost::system::error_code ignored;
    fd_->close(ignored);
    fd_.reset();
  }
  if (bus_ == nullptr) return;
  // A connection that went away still owes its pending calls an error
  // ("Connection terminated"): let sd-bus hand them out before it goes.
  if (!processing_ && !shut_down_) {
    for (int i = 0; i < 100000 && sd_bus_process(bus_, nullptr) > 0; ++i) {
    }
  }
  sd_bus_close_unref(bus_);
  bus_ = nullptr;
}

void SystemBus::schedule_pump() {
  if (pump_posted_ || !timer_) return;
  pump_posted_ = true;
  asio::post(executor_, [this] {
    pump_posted_ = false;
    pump();
  });
}

void SystemBus::pump() {
  if (bus_ == nullptr) return;
  sd_bus* b = sd_bus_ref(bus_);
  processing_ = true;
  int r = 0;
  int n = 0;
  while (n < kMessagesPerTurn && (r = sd_bus_process(b, nullptr)) > 0) ++n;
  processing_ = false;
  if (r < 0) {
    close();  // gone for good; the next check opens a new connection
  } else if (n == kMessagesPerTurn) {
    schedule_pump();
  } else {
    arm();
  }
  sd_bus_unref(b);
}

void SystemBus::arm() {
  if (in_flight_ == 0) {
    // Nothing to wait for: an idle connection must not keep
    // io_context::run() from returning. What comes in meanwhile (or that
    // the bus went away) is read with the next call.
    stop_waiting();
    return;
  }
  const int events = sd_bus_get_events(bus_);
  if (events < 0) {
    close();
    return;
  }
  const std::uint64_t generation = generation_;
  auto woke = [this, generation](bool& waiting) {
    return [this, generation, &waiting](const boost::system::error_code& ec) {
      if (generation != generation_) return;
      waiting = false;
      if (!ec) pump();
    };
  };
  if ((events & POLLIN) != 0 && !reading_) {
    reading_ = true;
    fd_->async_wait(asio::posix::stream_descriptor::wait_read, woke(reading_));
  }
  if ((events & POLLOUT) != 0 && !writing_) {
    writing_ = true;
    fd_->async_wait(asio::posix::stream_descriptor::wait_write, woke(writing_));
  }

  // sd-bus's deadline (a call's timeout, the handshake's) is CLOCK_MONOTONIC,
  // which is steady_clock's clock on Linux.
  std::uint64_t usec = UINT64_MAX;
  if (sd_bus_get_timeout(bus_, &usec) < 0) usec = UINT64_MAX;
  const auto at = usec == UINT64_MAX ? steady_clock::time_point::max()
                                     : steady_clock::time_point(std::chrono::microseconds(usec));
  if (at == timer_at_) return;
  timer_at_ = at;
  timer_->cancel();
  if (at == steady_clock::time_point::max()) return;
  timer_->expires_at(at);
  timer_->async_wait([this, generation, at](const boost::system::error_code& ec) {
    if (ec || generation != generation_ || at != timer_at_) return;
    timer_at_ = steady_clock::time_point::max();
    pump();
  });
}

}  // namespace storewatch::os
