#pragma once
/// \file
/// One sd-bus connection to the system bus per io_context, driven by the
/// loop: the `systemd` probes (up to 1,000 on one thread) share it instead of
/// each opening a connection of its own. The bus is opened on first use and
/// opened again after it went away (dbus-daemon restarted).

#include <systemd/sd-bus.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>

#include "base/result.h"

namespace storewatch::os {

/// Releases an sd-bus slot; a slot released before its reply arrives means
/// its handler never runs.
struct SlotRelease {
  void operator()(sd_bus_slot* s) const { sd_bus_slot_unref(s); }
};
using BusSlot = std::unique_ptr<sd_bus_slot, SlotRelease>;

/// Frees a message built with sd_bus_message_new_method_call.
struct MessageRelease {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using BusMessage = std::unique_ptr<sd_bus_message, MessageRelease>;

/// The shared system-bus connection of one io_context (an Asio service, so it
/// lives exactly as long as the context). Single-threaded: use it from the
/// context's one thread only.
class SystemBus : public boost::asio::execution_context::service {
 public:
  using key_type = SystemBus;
  static boost::asio::execution_context::id id;

  /// The reply, or the error (an error reply or one sd-bus made up, such as
  /// a timeout or "Connection terminated"). Exactly one of them is set.
  using ReplyHandler = std::function<void(sd_bus_message* reply, const sd_bus_error* error)>;

  explicit SystemBus(boost::asio::execution_context& context);
  ~SystemBus() override;

  /// The service of the context `executor` belongs to.
  static SystemBus& of(const boost::asio::any_io_executor& executor);

  /// The connection, opened now if there is none or the last one went away
  /// ($DBUS_SYSTEM_BUS_ADDRESS, else the standard socket). Connecting does
  /// not block: the handshake runs on the loop.
  Result<sd_bus*> bus();

  /// Sends `call` and calls `handler` on the loop with its reply, unless the
  /// returned slot is released first. `timeout` bounds the wait for the reply.
  Result<BusSlot> call(sd_bus_message* call, std::chrono::microseconds timeout,
                       ReplyHandler handler);

  /// Called on the loop with each message a match rule selects, or once
  /// with the error when the bus refused the rule (its AddMatch failed).
  using SignalHandler = std::function<void(sd_bus_message* signal, const sd_bus_error* error)>;

  /// Installs the match `rule` on `bus` (this service's connection) without
  /// waiting: AddMatch goes out before any call sent after this one, so the
  /// bus daemon applies the rule first and no signal that call causes is
  /// missed. `handler` runs for every matching message until the returned
  /// slot is released (which removes the rule). While a match is alive the
  /// connection is read.
  Result<BusSlot> match(sd_bus* bus, const std::string& rule, SignalHandler handler);

  /// Whether `bus` is this service's connection and still usable.
  bool connected(sd_bus* bus) const;

 private:
  struct Pending;
  static void free_pending(void* userdata);
  static int on_reply(sd_bus_message* m, void* userdata, sd_bus_error* ret_error);
  static int on_signal(sd_bus_message* m, void* userdata, sd_bus_error* ret_error);
  static int on_match_installed(sd_bus_message* m, void* userdata, sd_bus_error* ret_error);

  void shutdown() override;
  void call_ended();
  void stop_waiting();
  void close();
  void schedule_pump();
  /// Hands `pending` to `slot` (freed with it) and counts it in flight.
  BusSlot track(sd_bus_slot* slot, Pending* pending);
  void pump();
  void arm();

  boost::asio::any_io_executor executor_;
  sd_bus* bus_ = nullptr;
  std::optional<boost::asio::posix::stream_descriptor> fd_;
  std::optional<boost::asio::steady_timer> timer_;
  std::uint64_t generation_ = 0;  ///< tells waits on a closed connection from current ones
  bool reading_ = false;
  bool writing_ = false;
  bool pump_posted_ = false;
  bool processing_ = false;  ///< inside sd_bus_process(): no reconnecting now
  std::chrono::steady_clock::time_point timer_at_ = std::chrono::steady_clock::time_point::max();
  bool shut_down_ = false;
  int in_flight_ = 0;  ///< calls sent and neither answered nor released, and live matches
  std::unordered_set<Pending*> pending_;  ///< every call's user data, told when the service goes
};

}  // namespace storewatch::os
