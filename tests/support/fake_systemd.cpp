// A small org.freedesktop.systemd1 for the `systemd` probe's tests, on the
// bus $DBUS_SYSTEM_BUS_ADDRESS names (a private dbus-daemon the test starts).
//
//   fake_systemd STATE_FILE
//
// It owns the name org.freedesktop.systemd1 and exports, through sd-bus
// vtables, what the probe asks of systemd: Manager.GetUnit and LoadUnit on
// /org/freedesktop/systemd1, and under /org/freedesktop/systemd1/unit/ the
// Unit properties (Id, LoadState, ActiveState, SubState, ActiveEnterTimestamp)
// and the Service, Socket and Timer properties (Result; NRestarts, MainPID).
// For the systemd-restart remediation it has Manager.RestartUnit, which
// answers a job path and then emits Manager.JobRemoved for that job.
//
// STATE_FILE has one unit a line, read again at every request so a test
// changes a unit by rewriting it:
//
//   NAME ACTIVE_STATE SUB_STATE [result=R] [load=L] [restarts=N] [since=USEC] [hang]
//        [restart=JOB_RESULT|never|denied] [signal-first]
//
// A unit not in the file is what systemd makes of a unit without a unit
// file: LoadUnit gives it a path, its LoadState is not-found, and GetUnit
// and RestartUnit answer NoSuchUnit. `hang` makes LoadUnit and GetUnit of the
// unit never answer. RestartUnit's job ends with `restart=` (default "done";
// "failed", "canceled", "timeout"... as systemd's job results), or never
// with `never`; `denied` answers AccessDenied instead of queueing a job.
// `signal-first` emits JobRemoved before the reply (a race a client must
// survive). Every RestartUnit call appends "NAME MODE" to STATE_FILE.restarts.
// Prints "ready" once it owns the name.

#include <systemd/sd-bus.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr const char* kUnitPrefix = "/org/freedesktop/systemd1/unit";

struct Unit {
  std::string load = "loaded";
  std::string active;
  std::string sub;
  std::string result = "success";
  std::uint32_t restarts = 0;
  std::uint64_t since = 0;
  bool hang = false;
  std::string restart = "done";  ///< the restart job's result, "never" or "denied"
  bool signal_first = false;
};

std::string g_state_file;
std::uint32_t g_last_job = 0;
std::vector<sd_bus_message*> g_unanswered;  // calls of hanging units, kept so they stay open

std::map<std::string, Unit> read_units() {
  std::map<std::string, Unit> units;
  std::ifstream in(g_state_file);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string name;
    Unit u;
    if (!(words >> name) || name.starts_with('#')) continue;
    words >> u.active >> u.sub;
    for (std::string w; words >> w;) {
      if (w == "hang") u.hang = true;
      if (w.starts_with("result=")) u.result = w.substr(7);
      if (w.starts_with("load=")) u.load = w.substr(5);
      if (w.starts_with("restarts="))
        u.restarts = static_cast<std::uint32_t>(std::stoul(w.substr(9)));
      if (w.starts_with("since=")) u.since = std::stoull(w.substr(6));
      if (w.starts_with("restart=")) u.restart = w.substr(8);
      if (w == "signal-first") u.signal_first = true;
    }
    units[name] = u;
  }
  return units;
}

// The unit an object path names, and what the state file says of it.
bool unit_at(const char* path, std::string* name, Unit* unit) {
  char* decoded = nullptr;
  if (sd_bus_path_decode(path, kUnitPrefix, &decoded) <= 0) return false;
  *name = decoded;
  std::free(decoded);
  auto units = read_units();
  auto it = units.find(*name);
  if (it != units.end()) {
    *unit = it->second;
  } else {
    *unit = Unit{};
    unit->load = "not-found";
    unit->active = "inactive";
    unit->sub = "dead";
  }
  return true;
}

int reply_path(sd_bus_message* m, const char* name) {
  char* path = nullptr;
  int r = sd_bus_path_encode(kUnitPrefix, name, &path);
  if (r < 0) return r;
  r = sd_bus_reply_method_return(m, "o", path);
  std::free(path);
  return r;
}

int hold(sd_bus_message* m) {
  g_unanswered.push_back(sd_bus_message_ref(m));
  return 1;
}

int load_unit(sd_bus_message* m, void*, sd_bus_error*) {
  const char* name = nullptr;
  int r = sd_bus_message_read(m, "s", &name);
  if (r < 0) return r;
  auto units = read_units();
  auto it = units.find(name);
  if (it != units.end() && it->second.hang) return hold(m);
  return reply_path(m, name);
}

int get_unit(sd_bus_message* m, void*, sd_bus_error* error) {
  const char* name = nullptr;
  int r = sd_bus_message_read(m, "s", &name);
  if (r < 0) return r;
  auto units = read_units();
  auto it = units.find(name);
  if (it == units.end()) {
    return sd_bus_error_setf(error, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not loaded.",
                             name);
  }
  if (it->second.hang) return hold(m);
  return reply_path(m, name);
}

int job_removed(sd_bus* bus, std::uint32_t id, const std::string& job, const char* unit,
                const std::string& result) {
  return sd_bus_emit_signal(bus, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                            "JobRemoved", "uoss", id, job.c_str(), unit, result.c_str());
}

int restart_unit(sd_bus_message* m, void*, sd_bus_error* error) {
  const char* name = nullptr;
  const char* mode = nullptr;
  int r = sd_bus_message_read(m, "ss", &name, &mode);
  if (r < 0) return r;
  {
    std::ofstream log(g_state_file + ".restarts", std::ios::app);
    log << name << ' ' << mode << '\n';
  }
  auto units = read_units();
  auto it = units.find(name);
  if (it == units.end()) {
    return sd_bus_error_setf(error, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not found.",
                             name);
  }
  const Unit& u = it->second;
  if (u.restart == "denied") {
    return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                             "Access denied to restart %s (fake)", name);
  }
  const std::uint32_t id = ++g_last_job;
  const std::string job = "/org/freedesktop/systemd1/job/" + std::to_string(id);
  sd_bus* bus = sd_bus_message_get_bus(m);
  if (u.signal_first && u.restart != "never" &&
      (r = job_removed(bus, id, job, name, u.restart)) < 0) {
    return r;
  }
  r = sd_bus_reply_method_return(m, "o", job.c_str());
  if (r < 0) return r;
  if (!u.signal_first && u.restart != "never") r = job_removed(bus, id, job, name, u.restart);
  return r < 0 ? r : 1;
}

int find_unit(sd_bus*, const char* path, const char*, void* userdata, void** found, sd_bus_error*) {
  std::string name;
  Unit unit;
  if (!unit_at(path, &name, &unit)) return 0;
  // The type's own interface is only on units of that type.
  const char* suffix = static_cast<const char*>(userdata);
  if (suffix != nullptr && !name.ends_with(suffix)) return 0;
  *found = nullptr;
  return 1;
}

int get_property(sd_bus*, const char* path, const char*, const char* property,
                 sd_bus_message* reply, void*, sd_bus_error* error) {
  std::string name;
  Unit u;
  if (!unit_at(path, &name, &u)) {
    return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "no unit at %s", path);
  }
  const std::string p = property;
  if (p == "Id") return sd_bus_message_append(reply, "s", name.c_str());
  if (p == "LoadState") return sd_bus_message_append(reply, "s", u.load.c_str());
  if (p == "ActiveState") return sd_bus_message_append(reply, "s", u.active.c_str());
  if (p == "SubState") return sd_bus_message_append(reply, "s", u.sub.c_str());
  if (p == "ActiveEnterTimestamp") return sd_bus_message_append(reply, "t", u.since);
  if (p == "Result") return sd_bus_message_append(reply, "s", u.result.c_str());
  if (p == "NRestarts") return sd_bus_message_append(reply, "u", u.restarts);
  if (p == "MainPID") return sd_bus_message_append(reply, "u", u.active == "active" ? 4242u : 0u);
  return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "no property %s", property);
}

const sd_bus_vtable kManager[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("GetUnit", "s", "o", get_unit, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("LoadUnit", "s", "o", load_unit, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("RestartUnit", "ss", "o", restart_unit, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL("JobRemoved", "uoss", 0),
    SD_BUS_VTABLE_END,
};

const sd_bus_vtable kUnit[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Id", "s", get_property, 0, 0),
    SD_BUS_PROPERTY("LoadState", "s", get_property, 0, 0),
    SD_BUS_PROPERTY("ActiveState", "s", get_property, 0, 0),
    SD_BUS_PROPERTY("SubState", "s", get_property, 0, 0),
    SD_BUS_PROPERTY("ActiveEnterTimestamp", "t", get_property, 0, 0),
    SD_BUS_VTABLE_END,
};

const sd_bus_vtable kService[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Result", "s", get_property, 0, 0),
    SD_BUS_PROPERTY("NRestarts", "u", get_property, 0, 0),
    SD_BUS_PROPERTY("MainPID", "u", get_property, 0, 0),
    SD_BUS_VTABLE_END,
};

const sd_bus_vtable kWithResult[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Result", "s", get_property, 0, 0),
    SD_BUS_VTABLE_END,
};

int fail(const char* what, int r) {
  std::fprintf(stderr, "fake_systemd: %s: %s\n", what, std::strerror(-r));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fake_systemd STATE_FILE\n");
    return 2;
  }
  g_state_file = argv[1];

  sd_bus* bus = nullptr;
  int r = sd_bus_open_system(&bus);
  if (r < 0) return fail("connect to $DBUS_SYSTEM_BUS_ADDRESS", r);
  r = sd_bus_add_object_vtable(bus, nullptr, "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", kManager, nullptr);
  if (r < 0) return fail("export the manager", r);
  r = sd_bus_add_fallback_vtable(bus, nullptr, kUnitPrefix, "org.freedesktop.systemd1.Unit", kUnit,
                                 find_unit, nullptr);
  if (r < 0) return fail("export units", r);
  static char service[] = ".service";
  static char socket[] = ".socket";
  static char timer[] = ".timer";
  r = sd_bus_add_fallback_vtable(bus, nullptr, kUnitPrefix, "org.freedesktop.systemd1.Service",
                                 kService, find_unit, service);
  if (r >= 0) {
    r = sd_bus_add_fallback_vtable(bus, nullptr, kUnitPrefix, "org.freedesktop.systemd1.Socket",
                                   kWithResult, find_unit, socket);
  }
  if (r >= 0) {
    r = sd_bus_add_fallback_vtable(bus, nullptr, kUnitPrefix, "org.freedesktop.systemd1.Timer",
                                   kWithResult, find_unit, timer);
  }
  if (r < 0) return fail("export unit types", r);
  r = sd_bus_request_name(bus, "org.freedesktop.systemd1", 0);
  if (r < 0) return fail("own org.freedesktop.systemd1", r);
  std::printf("ready\n");
  std::fflush(stdout);

  for (;;) {
    r = sd_bus_process(bus, nullptr);
    if (r < 0) return fail("process", r);
    if (r > 0) continue;
    r = sd_bus_wait(bus, UINT64_MAX);
    if (r < 0 && r != -EINTR) return fail("wait", r);
  }
}
