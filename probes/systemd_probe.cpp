#include "probes/systemd_probe.h"

#include <boost/asio/post.hpp>

#include <fmt/format.h>

#include <cstring>

#include "os/system_bus.h"
#include "probes/systemd_unit.h"

namespace storewatch::probes {
namespace {

namespace asio = boost::asio;
using std::chrono::steady_clock;

constexpr config::KeySpec kKeys[] = {
    {"unit", config::KeyKind::string, true, "",
     "the systemd unit to watch, such as \"pos-sync.service\" or \"backup.timer\"; a name "
     "without a type suffix means a .service"},
};

std::vector<std::string> validate(const config::ProbeConfig& probe) {
  auto name = unit_name(probe.str("unit"));
  if (name) return {};
  return {name.error().message};
}

constexpr const char* kSystemd = "org.freedesktop.systemd1";
constexpr const char* kManagerPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
constexpr const char* kUnit = "org.freedesktop.systemd1.Unit";
constexpr const char* kProperties = "org.freedesktop.DBus.Properties";

// sd-bus's own deadline for a reply is a backstop past the probe's timeout:
// the scheduler cancels the check first, so a silent systemd reads "timed out"
// like any other silent device.
constexpr std::chrono::microseconds kReplyGrace = std::chrono::seconds(1);

// One check: shared so that a reply handler outliving the probe finds it.
struct Check {
  Probe::Done done;
  steady_clock::time_point started;
  os::BusSlot slot;  ///< the call in flight; releasing it means its handler never runs
  UnitState state;
  std::string path;
  bool cancelled = false;
};

// Reads the properties of interest from a Properties.GetAll reply (a{sv});
// the others are skipped. Returns a negative errno on a malformed reply.
int read_properties(sd_bus_message* m, UnitState& s) {
  int r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
  if (r < 0) return r;
  while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
    const char* name = nullptr;
    if ((r = sd_bus_message_read(m, "s", &name)) < 0) return r;
    const char* contents = nullptr;
    if ((r = sd_bus_message_peek_type(m, nullptr, &contents)) < 0) return r;
    std::string* text = nullptr;
    if (std::strcmp(name, "ActiveState") == 0) text = &s.active_state;
    if (std::strcmp(name, "SubState") == 0) text = &s.sub_state;
    if (std::strcmp(name, "LoadState") == 0) text = &s.load_state;
    if (std::strcmp(name, "Result") == 0) text = &s.result;
    if (text != nullptr && std::strcmp(contents, "s") == 0) {
      const char* value = nullptr;
      if ((r = sd_bus_message_read(m, "v", "s", &value)) < 0) return r;
      *text = value;
    } else if (std::strcmp(name, "NRestarts") == 0 && std::strcmp(contents, "u") == 0) {
      std::uint32_t value = 0;
      if ((r = sd_bus_message_read(m, "v", "u", &value)) < 0) return r;
      s.n_restarts = value;
    } else if (std::strcmp(name, "ActiveEnterTimestamp") == 0 && std::strcmp(contents, "t") == 0) {
      if ((r = sd_bus_message_read(m, "v", "t", &s.active_enter_usec)) < 0) return r;
    } else if ((r = sd_bus_message_skip(m, "v")) < 0) {
      return r;
    }
    if ((r = sd_bus_message_exit_container(m)) < 0) return r;
  }
  if (r < 0) return r;
  return sd_bus_message_exit_container(m);
}

class SystemdProbe final : public Probe {
 public:
  SystemdProbe(Result<std::string> unit, Millis timeout, asio::any_io_executor ex)
      : unit_(unit.value_or("")),
        invalid_(unit ? std::string() : unit.error().message),
        reply_timeout_(std::chrono::duration_cast<std::chrono::microseconds>(timeout) +
                       kReplyGrace),
        ex_(std::move(ex)) {}

  ~SystemdProbe() override { cancel(); }

  void start(Done done) override {
    cancel();
    auto c = std::make_shared<Check>();
    check_ = c;
    c->done = std::move(done);
    c->started = steady_clock::now();
    if (!invalid_.empty()) {
      ProbeResult r;
      r.status = ProbeStatus::fail;
      r.message = invalid_;
      return finish(c, std::move(r));
    }
    auto bus = os::SystemBus::of(ex_).bus();
    if (!bus) {
      finish(c, unavailable(bus.error().message));
      return;
    }
    ask(c, *bus, kManagerPath, kManager, "LoadUnit", unit_,
        [this](const std::shared_ptr<Check>& c, sd_bus_message* reply) {
          const char* path = nullptr;
          int r = sd_bus_message_read(reply, "o", &path);
          if (r < 0) return finish(c, malformed("LoadUnit", r));
          c->path = path;
          ask(c, sd_bus_message_get_bus(reply), c->path, kProperties, "GetAll", kUnit,
              [this](const std::shared_ptr<Check>& c, sd_bus_message* reply) {
                on_unit(c, reply);
              });
        });
  }

  void cancel() override {
    if (!check_) return;
    check_->cancelled = true;
    check_->slot.reset();
    check_.reset();
  }

 private:
  using Next = std::function<void(const std::shared_ptr<Check>&, sd_bus_message*)>;

  // Calls `member` on systemd with one string argument; `next` gets the reply,
  // and an error ends the check.
  void ask(const std::shared_ptr<Check>& c, sd_bus* bus, const std::string& path,
           const char* interface, const char* member, const std::string& arg, Next next) {
    sd_bus_message* raw = nullptr;
    int r = sd_bus_message_new_method_call(bus, &raw, kSystemd, path.c_str(), interface, member);
    os::BusMessage m(raw);
    if (r >= 0) r = sd_bus_message_append(m.get(), "s", arg.c_str());
    if (r < 0) return finish(c, unavailable(std::strerror(-r)));
    std::weak_ptr<Check> weak = c;
    auto slot = os::SystemBus::of(ex_).call(m.get(), reply_timeout_,
                                            [this, weak, bus, next = std::move(next)](
                                                sd_bus_message* reply, const sd_bus_error* error) {
                                              auto c = weak.lock();
                                              if (!c || c->cancelled) return;
                                              if (error != nullptr) return on_error(c, bus, *error);
                                              next(c, reply);
                                            });
    if (!slot) return finish(c, unavailable(slot.error().message));
    c->slot = std::move(*slot);
  }

  void on_unit(const std::shared_ptr<Check>& c, sd_bus_message* reply) {
    int r = read_properties(reply, c->state);
    if (r < 0) return finish(c, malformed("GetAll", r));
    const std::string interface = type_interface(unit_);
    if (interface.empty() || c->state.load_state != "loaded") return finish(c, assessed(*c));
    ask(c, sd_bus_message_get_bus(reply), c->path, kProperties, "GetAll", interface.c_str(),
        [this](const std::shared_ptr<Check>& c, sd_bus_message* reply) {
          int r = read_properties(reply, c->state);
          if (r < 0) return finish(c, malformed("GetAll", r));
          finish(c, assessed(*c));
        });
  }

  void on_error(const std::shared_ptr<Check>& c, sd_bus* bus, const sd_bus_error& error) {
    const std::string_view name = error.name != nullptr ? error.name : "";
    const std::string_view message = error.message != nullptr ? error.message : "";
    // A connection that went away answers every pending call itself.
    if (!os::SystemBus::of(ex_).connected(bus)) {
      return finish(c, unavailable(message.empty() ? name : message));
    }
    finish(c, assess_error(unit_, name, message));
  }

  ProbeResult assessed(const Check& c) const {
    return assess(unit_, c.state, std::chrono::system_clock::now());
  }

  static ProbeResult unavailable(std::string_view why) {
    ProbeResult r;
    r.status = ProbeStatus::unknown;
    r.message = fmt::format("system bus unavailable: {}", why);
    return r;
  }

  static ProbeResult malformed(std::string_view call, int r) {
    ProbeResult out;
    out.status = ProbeStatus::unknown;
    out.message = fmt::format("malformed {} reply from systemd: {}", call, std::strerror(-r));
    return out;
  }

  // Hands the result over from a fresh handler, never from inside
  // sd_bus_process() or start().
  void finish(const std::shared_ptr<Check>& c, ProbeResult r) {
    r.latency =
        std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now() - c->started);
    asio::post(ex_, [c, r = std::move(r)]() mutable {
      if (c->cancelled || !c->done) return;
      c->slot.reset();
      auto done = std::move(c->done);
      c->done = nullptr;
      done(std::move(r));
    });
  }

  std::string unit_;
  std::string invalid_;  ///< why the configured unit is no unit name (the loader rejects it first)
  std::chrono::microseconds reply_timeout_;
  asio::any_io_executor ex_;
  std::shared_ptr<Check> check_;
};

std::unique_ptr<Probe> create_systemd(const config::ProbeConfig& c, asio::any_io_executor ex) {
  return std::make_unique<SystemdProbe>(unit_name(c.str("unit")), c.timeout, std::move(ex));
}

}  // namespace

ProbeType systemd_probe_type() {
  return {{"systemd", kKeys, &validate}, &create_systemd};
}

}  // namespace storewatch::probes
