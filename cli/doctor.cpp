#include "cli/doctor.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <random>

#include "agent/control_server.h"
#include "agent/store.h"
#include "base/table.h"
#include "probes/registry.h"
#include "probes/run_once.h"
#include "sync/mqtt_transport.h"

namespace storewatch::cli {

using nlohmann::json;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;
/// A WAL this big means checkpoints are not keeping up (a reader holding
/// an old snapshot, or a stuck writer): the daemon keeps it near 16 MB.
constexpr std::uint64_t kWalWarn = 64 * kMiB;
/// Queued events older than this while connected: HQ is not acknowledging.
constexpr double kAckLagWarnSeconds = 600;

const char* const kStartDaemon = "sudo systemctl start storewatch";
const char* const kDaemonLog = "journalctl -u storewatch -n 50 --no-pager   (why it stopped)";

std::string user_name(uid_t uid) {
  if (const passwd* pw = ::getpwuid(uid); pw != nullptr) return pw->pw_name;
  return std::to_string(uid);
}

std::string group_name(gid_t gid) {
  if (const group* gr = ::getgrgid(gid); gr != nullptr) return gr->gr_name;
  return std::to_string(gid);
}

/// "storewatch:storewatch 0640" of a file.
std::string owner_and_mode(const struct stat& st) {
  return fmt::format("{}:{} {:04o}", user_name(st.st_uid), group_name(st.st_gid),
                     st.st_mode & 07777);
}

std::string me() {
  return user_name(::geteuid());
}

/// The fix for a file the current user cannot read or reach.
std::vector<std::string> permission_fix() {
  const std::string user = me();
  return {fmt::format("sudo usermod -aG storewatch {}   (then log out and in again)", user),
          "or run the command as root: sudo storewatch doctor"};
}

/// Stop, move the database and its WAL aside (kept: events not yet at HQ
/// are in it), start with a new one.
std::vector<std::string> move_aside(const fs::path& data_dir) {
  const fs::path broken = data_dir / "broken";
  return {"sudo systemctl stop storewatch",
          fmt::format("sudo sh -c 'mkdir -p {0} && mv {1}/storewatch.db* {0}/'   (keep it: "
                      "events not yet at HQ are in it)",
                      broken.string(), data_dir.string()),
          "sudo systemctl start storewatch   (starts a new, empty database)",
          fmt::format("sudo sqlite3 {}/storewatch.db .recover > /tmp/storewatch-recovered.sql   "
                      "(what can still be read, for analysis)",
                      broken.string())};
}

std::uint64_t size_of(const fs::path& p) {
  std::error_code ec;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : static_cast<std::uint64_t>(n);
}

/// "2026-11-27 11:55:07Z (3m ago)" from RFC 3339 text, as the CLI's tables show times.
std::string when(const std::string& rfc3339) {
  auto t = parse_rfc3339(rfc3339);
  if (!t) return rfc3339.empty() ? std::string("?") : rfc3339;
  const std::string s = format_rfc3339(*t);
  return s.substr(0, 10) + " " + s.substr(11, 8) + "Z (" +
         format_ago(*t, SystemClock().wall_now()) + ")";
}

std::string plural(std::size_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

}  // namespace

std::string_view to_string(CheckStatus s) {
  switch (s) {
    case CheckStatus::ok: return "ok";
    case CheckStatus::warn: return "warn";
    case CheckStatus::fail: return "fail";
    case CheckStatus::skip: return "skip";
  }
  return "?";
}

std::string human_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, kUnits[unit]);
}

json DoctorCheck::to_json() const {
  return json{{"check", name},      {"status", to_string(status)},
              {"summary", summary}, {"details", details},
              {"fix", fix},         {"data", data}};
}

int DoctorReport::exit_code() const {
  return std::any_of(checks.begin(), checks.end(),
                     [](const DoctorCheck& c) { return c.status == CheckStatus::fail; })
             ? 1
             : 0;
}

json DoctorReport::to_json() const {
  json list = json::array();
  json counts{{"ok", 0}, {"warn", 0}, {"fail", 0}, {"skip", 0}};
  for (const auto& c : checks) {
    list.push_back(c.to_json());
    counts[std::string(to_string(c.status))] =
        counts[std::string(to_string(c.status))].get<int>() + 1;
  }
  return json{{"ok", exit_code() == 0},
              {"config", config_file},
              {"checks", std::move(list)},
              {"counts", std::move(counts)}};
}

std::string DoctorReport::render(bool colour) const {
  std::string out = fmt::format("storewatch doctor, config {}\n\n", config_file);
  std::size_t width = 0;
  for (const auto& c : checks) width = std::max(width, c.name.size());
  int fails = 0;
  int warns = 0;
  for (const auto& c : checks) {
    Colour col = Colour::none;
    std::string word(to_string(c.status));
    switch (c.status) {
      case CheckStatus::ok: col = Colour::green; break;
      case CheckStatus::warn:
        col = Colour::yellow;
        ++warns;
        break;
      case CheckStatus::fail:
        col = Colour::red;
        word = "FAIL";
        ++fails;
        break;
      case CheckStatus::skip: col = Colour::dim; break;
    }
    const std::string indent(2 + 4 + 2 + width + 2, ' ');
    out += fmt::format("  {}  {:<{}}  {}\n", paint(fmt::format("{:<4}", word), col, colour), c.name,
                       width, c.summary);
    for (const auto& d : c.details) out += indent + d + "\n";
    for (std::size_t i = 0; i < c.fix.size(); ++i) {
      out += indent + (i == 0 ? paint("fix: ", Colour::bold, colour) : std::string("     ")) +
             c.fix[i] + "\n";
    }
  }
  out += "\n";
  if (fails == 0 && warns == 0) {
    out += "Everything storewatch needs looks fine.\n";
  } else {
    out += fmt::format("{}, {}: see the fixes above.\n",
                       plural(static_cast<std::size_t>(fails), "problem"),
                       plural(static_cast<std::size_t>(warns), "warning"));
  }
  return out;
}

// --- config ------------------------------------------------------------------

DoctorCheck check_config(const fs::path& file, const config::Loaded<config::Config>& loaded) {
  DoctorCheck c;
  c.name = "config";
  std::size_t errors = 0;
  std::size_t warnings = 0;
  for (const auto& d : loaded.diagnostics) {
    c.details.push_back(config::to_string(d));
    (d.kind == config::Diagnostic::Kind::error ? errors : warnings) += 1;
  }
  c.data = json{{"file", file.string()}, {"errors", errors}, {"warnings", warnings}};
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("{} does not exist", file.string());
    c.fix = {
        "point --config (or $STOREWATCH_CONFIG) at the store's config, or install one: see "
        "config/examples/storewatch.toml",
        "storewatch config check   (then, to validate it)"};
    return c;
  }
  if (!loaded.ok()) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("{} has {}", file.string(), plural(errors, "error"));
    c.fix = {fmt::format("edit the lines named above, then: storewatch --config {} config check",
                         file.string()),
             "sudo systemctl reload storewatch   (applies it; a bad config is refused and the "
             "running one stays)"};
    return c;
  }
  const config::Config& cfg = *loaded.config;
  c.data["store"] = cfg.store.id;
  c.data["probes"] = cfg.probes.size();
  c.data["files"] = cfg.files.size();
  c.summary = fmt::format("{}: store {}, {}, {} read", file.string(), cfg.store.id,
                          plural(cfg.probes.size(), "probe"), plural(cfg.files.size(), "file"));
  if (warnings > 0) {
    c.status = CheckStatus::warn;
    c.summary += fmt::format("; {}", plural(warnings, "warning"));
    c.fix = {
        "create the files named above on this gateway (secrets, CA, commands), or fix their "
        "paths in the config"};
  }
  return c;
}

// --- database ----------------------------------------------------------------

DoctorCheck check_database(const config::Config& cfg, std::int64_t* db_bytes) {
  DoctorCheck c;
  c.name = "database";
  const fs::path path = cfg.agent.data_dir / "storewatch.db";
  const fs::path wal = path.string() + "-wal";
  const fs::path shm = path.string() + "-shm";
  c.data = json{{"path", path.string()}};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    c.status = CheckStatus::fail;
    if (err == EACCES) {
      c.summary = fmt::format("{}: you ({}) may not enter {}", path.string(), me(),
                              cfg.agent.data_dir.string());
      c.fix = permission_fix();
    } else {
      c.summary = fmt::format("no database at {}: the daemon creates it when it first starts",
                              path.string());
      c.fix = {kStartDaemon, fmt::format("check [agent] data_dir in the config (now {})",
                                         cfg.agent.data_dir.string())};
    }
    return c;
  }
  const std::uint64_t main_bytes = static_cast<std::uint64_t>(st.st_size);
  const std::uint64_t wal_bytes = size_of(wal);
  const std::uint64_t total = main_bytes + wal_bytes + size_of(shm);
  if (db_bytes != nullptr) *db_bytes = static_cast<std::int64_t>(total);
  c.data["owner"] = owner_and_mode(st);
  c.data["size_bytes"] = main_bytes;
  c.data["wal_bytes"] = wal_bytes;
  c.data["max_bytes"] = cfg.agent.max_db_bytes;
  c.data["readable"] = true;
  for (const fs::path& p : {path, wal}) {
    struct stat pst {};
    if (::stat(p.c_str(), &pst) == 0 && ::access(p.c_str(), R_OK) != 0) {
      c.status = CheckStatus::fail;
      c.data["readable"] = false;
      c.summary =
          fmt::format("you ({}) cannot read {} ({})", me(), p.string(), owner_and_mode(pst));
      c.fix = permission_fix();
      return c;
    }
  }

  auto store = agent::Store::open(path, agent::Store::Mode::read_only);
  if (!store) {
    c.status = CheckStatus::fail;
    c.summary = store.error().message;
    if (c.summary.find("newer") != std::string::npos) {
      c.fix = {"upgrade storewatch to the release that wrote it: sudo apt install storewatch"};
    } else {
      c.fix = move_aside(cfg.agent.data_dir);
    }
    return c;
  }
  db::Database& db = store->database();
  auto version = db::schema_version(db);
  if (version) c.data["schema_version"] = *version;

  // quick_check: every page and index entry, O(N) like integrity_check but
  // without matching indexes to tables, so fast enough on a gateway.
  std::vector<std::string> problems;
  auto stmt = db.prepare("PRAGMA quick_check(20)");
  Status run = stmt ? stmt->each([&](db::Statement& s) {
    // One row may hold several problems, a line each.
    std::string text = s.text(0);
    for (std::size_t start = 0; start <= text.size();) {
      std::size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      // "*** in database main ***" heads the list: not a problem itself.
      if (end > start && text.compare(start, 3, "***") != 0) {
        problems.push_back(text.substr(start, end - start));
      }
      start = end + 1;
    }
    return true;
  })
                    : Status(stmt.error());
  if (!run) problems = {run.error().message};
  const bool intact = problems.size() == 1 && problems.front() == "ok";
  c.data["quick_check"] = intact ? json("ok") : json(problems);

  const std::string figures =
      fmt::format("{}, WAL {}, schema {}", human_bytes(main_bytes), human_bytes(wal_bytes),
                  version ? std::to_string(*version) : std::string("?"));
  if (!intact) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("{} is damaged ({}): quick_check found {}", path.string(), figures,
                            plural(problems.size(), "problem"));
    constexpr std::size_t kShown = 6;
    c.details.assign(problems.begin(), problems.begin() + static_cast<std::ptrdiff_t>(
                                                              std::min(problems.size(), kShown)));
    if (problems.size() > kShown) {
      c.details.push_back(fmt::format("… {} more: sudo sqlite3 {} 'PRAGMA quick_check' lists them",
                                      problems.size() - kShown, path.string()));
    }
    c.fix = move_aside(cfg.agent.data_dir);
    return c;
  }
  c.summary = fmt::format("{}: {}, quick_check ok", path.string(), figures);
  if (auto letters = store->dead_letters(3); letters && letters->count > 0) {
    // Changes the database refused for good: the store writer kept them
    // aside and went on; a person should see what they were.
    c.status = CheckStatus::fail;
    c.data["dead_letters"] = letters->count;
    c.summary += fmt::format("; {} refused by the database, kept in dead_letters",
                             plural(static_cast<std::size_t>(letters->count), "change"));
    for (const auto& l : letters->newest) {
      c.details.push_back(fmt::format("{}: {}: {}", when(l.at), l.what, l.error));
    }
    c.fix = {fmt::format("sudo sqlite3 -readonly {} 'SELECT id, at, what, error, change FROM "
                         "dead_letters'   (every one, with the change as JSON)",
                         path.string()),
             "report them with the database's schema version: they point at a defect of "
             "storewatch; incidents go on being recorded meanwhile"};
  }
  const auto cap = static_cast<std::uint64_t>(std::max<std::int64_t>(cfg.agent.max_db_bytes, 0));
  if (cap > 0 && total * 10 >= cap * 9) {
    c.status = CheckStatus::warn;
    c.details.push_back(
        fmt::format("{} of its {} cap (max_db_size): the oldest synced history is "
                    "pruned first; events not yet at HQ never are",
                    human_bytes(total), human_bytes(cap)));
    c.fix = {"storewatch sync status   (a long queue means HQ is not acknowledging: fix the link)",
             "or raise [agent] max_db_size if the disk has room"};
  }
  if (wal_bytes >= kWalWarn) {
    c.status = CheckStatus::warn;
    c.details.push_back(
        fmt::format("the WAL is {}: checkpoints are not keeping up (a reader "
                    "holding an old snapshot?)",
                    human_bytes(wal_bytes)));
    c.fix.push_back("sudo systemctl restart storewatch   (checkpoints the WAL)");
  }
  return c;
}

// --- daemon (control socket) -------------------------------------------------

DoctorCheck check_daemon(const config::Config& cfg, std::chrono::milliseconds timeout,
                         std::optional<json>* live) {
  DoctorCheck c;
  c.name = "daemon";
  const fs::path& path = cfg.agent.control_socket;
  c.data = json{{"socket", path.string()}, {"running", false}};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    c.status = CheckStatus::fail;
    if (errno == EACCES) {
      c.summary = fmt::format("you ({}) may not reach {}", me(), path.string());
      c.fix = permission_fix();
    } else {
      c.summary = fmt::format("not running: no control socket at {}", path.string());
      c.fix = {kStartDaemon, kDaemonLog};
    }
    return c;
  }
  c.data["owner"] = owner_and_mode(st);
  if (!S_ISSOCK(st.st_mode)) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("{} is not a socket", path.string());
    c.fix = {fmt::format("sudo rm {}   (the daemon makes it at start)", path.string()),
             "sudo systemctl restart storewatch"};
    return c;
  }
  // Connect once by hand first: the errno says why better than any answer.
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    const int rc = fd < 0 ? -1 : ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    const int err = errno;
    if (fd >= 0) ::close(fd);
    if (rc != 0) {
      c.status = CheckStatus::fail;
      if (err == EACCES || err == EPERM) {
        c.summary = fmt::format("you ({}) may not connect to {} ({})", me(), path.string(),
                                owner_and_mode(st));
        c.fix = permission_fix();
      } else if (err == ECONNREFUSED) {
        c.summary =
            fmt::format("not running: {} is left over, nothing listens on it", path.string());
        c.fix = {"sudo systemctl restart storewatch", kDaemonLog};
      } else {
        c.summary = fmt::format("cannot connect to {}: {}", path.string(), std::strerror(err));
        c.fix = {"sudo systemctl restart storewatch", kDaemonLog};
      }
      return c;
    }
  }
  auto answer =
      agent::control_request(path, json{{"v", agent::kControlVersion}, {"op", "status"}}, timeout);
  if (!answer || !answer->value("ok", false) || !answer->contains("status")) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("the daemon at {} does not answer within {} ms{}", path.string(),
                            timeout.count(), answer ? "" : ": " + answer.error().message);
    c.fix = {"sudo systemctl restart storewatch", kDaemonLog};
    return c;
  }
  json status = (*answer)["status"];
  const json agent = status.value("agent", json::object());
  int failing = 0;
  for (const auto& p : status.value("probes", json::array())) {
    failing += p.value("state", "") == "hard_fail" ? 1 : 0;
  }
  const std::size_t probes = status.value("probes", json::array()).size();
  c.data["running"] = true;
  c.data["pid"] = agent.value("pid", 0);
  c.data["version"] = agent.value("version", "");
  c.data["started_at"] = agent.value("started_at", "");
  c.data["store"] = status.value("store", "");
  c.data["failing_probes"] = failing;
  c.summary = fmt::format("running, pid {}, version {}, up since {}; {}, {} failing",
                          agent.value("pid", 0), agent.value("version", "?"),
                          when(agent.value("started_at", "")), plural(probes, "probe"), failing);
  if (status.value("store", "") != cfg.store.id) {
    c.status = CheckStatus::warn;
    c.details.push_back(fmt::format(
        "the daemon runs store {}, this config says {}: it was started with another config",
        status.value("store", "?"), cfg.store.id));
    c.fix.push_back("sudo systemctl restart storewatch   (to run this config)");
  }
  if (agent.value("version", "") != STOREWATCH_VERSION) {
    c.status = CheckStatus::warn;
    c.details.push_back(fmt::format("the daemon runs version {}, this command is {}",
                                    agent.value("version", "?"), STOREWATCH_VERSION));
    c.fix.push_back("sudo systemctl restart storewatch   (runs the installed version)");
  }
  if (failing > 0) {
    c.details.push_back("storewatch status   (shows which probes fail and why)");
  }
  const json writer = agent.value("store_writer", json::object());
  c.data["store_backlog"] = writer.value("backlog", 0);
  if (const std::string error = writer.value("last_error", std::string());
      !error.empty() && writer.value("backlog", 0) > 0) {
    // The daemon runs but cannot write its database: what it learns waits
    // in memory, and goes if it stops.
    c.status = CheckStatus::fail;
    const bool full = writer.value("disk_full", false);
    c.summary += fmt::format("; it cannot write its database: {} wait in memory ({})",
                             plural(writer.value("backlog", std::size_t{0}), "change"),
                             full ? "the disk is full" : error);
    c.details.push_back(error);
    if (full) {
      c.fix.push_back(fmt::format(
          "free space on the disk holding {} (the disk check below says how much is left): the "
          "daemon writes what waits within a second of there being room",
          cfg.agent.data_dir.string()));
      c.fix.push_back("do not stop the daemon meanwhile: what waits in memory would be lost");
    } else {
      c.fix.push_back("sudo systemctl restart storewatch   (if it lasts; what waits is lost)");
      c.fix.push_back(kDaemonLog);
    }
  }
  if (live != nullptr) *live = std::move(status);
  return c;
}

// --- broker ------------------------------------------------------------------

std::optional<BrokerAddress> broker_address(std::string_view uri) {
  const std::size_t sep = uri.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  BrokerAddress a;
  a.scheme = std::string(uri.substr(0, sep));
  if (a.scheme == "tcp" || a.scheme == "mqtt") {
    a.port = 1883;
  } else if (a.scheme == "ssl" || a.scheme == "mqtts") {
    a.port = 8883;
    a.tls = true;
  } else if (a.scheme == "ws") {
    a.port = 80;
  } else if (a.scheme == "wss") {
    a.port = 443;
    a.tls = true;
  } else {
    return std::nullopt;
  }
  std::string_view rest = uri.substr(sep + 3);
  rest = rest.substr(0, rest.find('/'));
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    a.host = std::string(rest.substr(1, close - 1));
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return std::nullopt;
      port = rest.substr(close + 2);
    }
  } else if (const std::size_t colon = rest.find(':'); colon != std::string_view::npos) {
    a.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
  } else {
    a.host = std::string(rest);
  }
  if (a.host.empty()) return std::nullopt;
  if (!port.empty()) {
    int n = 0;
    for (char ch : port) {
      if (ch < '0' || ch > '9' || n > 65535) return std::nullopt;
      n = n * 10 + (ch - '0');
    }
    if (n < 1 || n > 65535) return std::nullopt;
    a.port = n;
  }
  return a;
}

namespace {

/// What a direct connection to the broker found.
struct Reach {
  bool ok = false;
  std::string stage;  ///< resolve|connect|tls: where it stopped (or "tls" when all passed)
  std::string error;
  double connect_ms = 0;
  std::string address;  ///< the address connected to
  std::string tls;      ///< "TLSv1.3, certificate verified for HOST"
  std::vector<std::string> notes;
};

/// Runs `io` until `done` or `timeout`; false on timeout.
bool run_until(asio::io_context& io, const bool& done, std::chrono::milliseconds timeout) {
  io.restart();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    io.run_one_until(deadline);
  }
  return done;
}

Reach reach_broker(const BrokerAddress& a, const config::BrokerConfig& b,
                   std::chrono::milliseconds timeout) {
  Reach r;
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  bool done = false;
  boost::system::error_code ec;
  asio::ip::tcp::resolver::results_type endpoints;
  r.stage = "resolve";
  resolver.async_resolve(a.host, std::to_string(a.port),
                         [&](const boost::system::error_code& e, auto results) {
                           ec = e;
                           endpoints = std::move(results);
                           done = true;
                         });
  if (!run_until(io, done, timeout)) {
    resolver.cancel();
    r.error = fmt::format("resolving {} took longer than {} ms", a.host, timeout.count());
    return r;
  }
  if (ec) {
    r.error = fmt::format("cannot resolve {}: {}", a.host, ec.message());
    return r;
  }

  asio::ssl::context ctx(asio::ssl::context::tls_client);
  if (a.tls) {
    boost::system::error_code e;
    if (!b.ca_file.empty()) {
      ctx.load_verify_file(b.ca_file.string(), e);
      if (e) r.notes.push_back(fmt::format("ca_file {}: {}", b.ca_file.string(), e.message()));
    } else {
      ctx.set_default_verify_paths(e);
    }
    if (!b.cert_file.empty() && !b.key_file.empty()) {
      if (::access(b.key_file.c_str(), R_OK) != 0) {
        r.notes.push_back(
            fmt::format("you ({}) cannot read key_file {}: the handshake goes without the client "
                        "certificate (sudo storewatch doctor checks it too)",
                        me(), b.key_file.string()));
      } else {
        ctx.use_certificate_chain_file(b.cert_file.string(), e);
        if (!e) ctx.use_private_key_file(b.key_file.string(), asio::ssl::context::pem, e);
        if (e) r.notes.push_back(fmt::format("client certificate: {}", e.message()));
      }
    }
    ctx.set_verify_mode(asio::ssl::verify_peer);
  }
  asio::ssl::stream<asio::ip::tcp::socket> stream(io, ctx);
  auto& socket = stream.lowest_layer();

  r.stage = "connect";
  done = false;
  const auto t0 = std::chrono::steady_clock::now();
  asio::ip::tcp::endpoint connected;
  asio::async_connect(socket, endpoints,
                      [&](const boost::system::error_code& e, const asio::ip::tcp::endpoint& ep) {
                        ec = e;
                        connected = ep;
                        done = true;
                      });
  if (!run_until(io, done, timeout)) {
    boost::system::error_code ignored;
    socket.close(ignored);
    io.restart();
    io.poll();
    r.error = fmt::format("no answer from {}:{} within {} ms (a firewall dropping packets?)",
                          a.host, a.port, timeout.count());
    return r;
  }
  if (ec) {
    r.error = fmt::format("cannot connect to {}:{}: {}", a.host, a.port, ec.message());
    return r;
  }
  r.connect_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  r.address = fmt::format("{}", connected.address().to_string());
  if (!a.tls) {
    r.ok = true;
    return r;
  }

  r.stage = "tls";
  SSL_set_tlsext_host_name(stream.native_handle(), a.host.c_str());
  stream.set_verify_callback(asio::ssl::host_name_verification(a.host));
  done = false;
  stream.async_handshake(asio::ssl::stream_base::client, [&](const boost::system::error_code& e) {
    ec = e;
    done = true;
  });
  if (!run_until(io, done, timeout)) {
    boost::system::error_code ignored;
    socket.close(ignored);
    io.restart();
    io.poll();
    r.error = fmt::format("the TLS handshake with {}:{} took longer than {} ms", a.host, a.port,
                          timeout.count());
    return r;
  }
  if (ec) {
    const long verify = SSL_get_verify_result(stream.native_handle());
    r.error = verify != X509_V_OK ? fmt::format("the broker's certificate is not trusted: {}",
                                                X509_verify_cert_error_string(verify))
                                  : fmt::format("TLS handshake failed: {}", ec.message());
    return r;
  }
  r.ok = true;
  r.tls = fmt::format("{}, certificate verified for {}", SSL_get_version(stream.native_handle()),
                      a.host);
  boost::system::error_code ignored;
  socket.close(ignored);
  return r;
}

std::vector<std::string> reach_fix(const Reach& r, const BrokerAddress& a,
                                   const config::BrokerConfig& b) {
  if (r.stage == "resolve") {
    return {fmt::format("getent hosts {}   (does the name resolve here?)", a.host),
            "resolvectl status   (which DNS servers the gateway uses)"};
  }
  if (r.stage == "connect") {
    return {
        fmt::format("nc -vz {} {}   (is the port reachable from this gateway?)", a.host, a.port),
        "check the store's WAN link and firewall, and [sync] broker in the config"};
  }
  return {fmt::format("openssl s_client -connect {}:{} -servername {}{} </dev/null", a.host, a.port,
                      a.host, b.ca_file.empty() ? "" : " -CAfile " + b.ca_file.string()),
          "check [sync] ca_file, cert_file and key_file, and the gateway's clock (timedatectl)"};
}

}  // namespace

DoctorCheck check_broker(const config::Config& cfg, const json* live,
                         std::chrono::milliseconds timeout) {
  DoctorCheck c;
  c.name = "broker";
  c.data = json{{"broker", cfg.sync.broker}};
  auto address = broker_address(cfg.sync.broker);
  if (live != nullptr) {
    const json sync = live->value("sync", json::object());
    c.data["source"] = "daemon";
    c.data["connected"] = sync.value("connected", false);
    c.data["queued"] = sync.value("queued", 0);
    c.data["hq_acked_seq"] = sync.value("hq_acked_seq", 0);
    if (sync.value("connected", false)) {
      c.summary = fmt::format("the daemon is connected to {} since {}; {} queued, HQ acked seq {}",
                              cfg.sync.broker, when(sync.value("since", std::string())),
                              plural(sync.value("queued", std::size_t{0}), "event"),
                              sync.value("hq_acked_seq", 0));
      const json age = sync.value("oldest_queued_age_s", json());
      if (age.is_number() && age.get<double>() > kAckLagWarnSeconds) {
        c.status = CheckStatus::warn;
        c.details.push_back(
            fmt::format("the oldest queued event is {:.0f} min old: HQ is not acknowledging",
                        age.get<double>() / 60));
        c.fix = {"storewatch sync status",
                 "at HQ: storewatch hq stores   (is HQ's ingest running and seeing this store?)"};
      }
      return c;
    }
    c.status = CheckStatus::fail;
    const std::string error = sync.value("last_error", std::string());
    c.summary = fmt::format("the daemon is offline from {}{}", cfg.sync.broker,
                            error.empty() ? "" : ": " + error);
    c.details.push_back(fmt::format("offline since {}, {} queued (kept until HQ acknowledges)",
                                    when(sync.value("since", std::string())),
                                    plural(sync.value("queued", std::size_t{0}), "event")));
  } else {
    c.data["source"] = "direct";
  }
  if (!address) {
    c.status = CheckStatus::fail;
    c.summary = fmt::format("cannot take the broker URI {} apart", cfg.sync.broker);
    c.fix = {"storewatch config check"};
    return c;
  }
  Reach r = reach_broker(*address, cfg.sync, timeout);
  c.data["reachable"] = r.ok;
  c.data["connect_ms"] =
      r.ok || r.stage == "tls" ? json(std::round(r.connect_ms * 10) / 10) : json(nullptr);
  c.data["tls"] = address->tls ? json(r.tls) : json(nullptr);
  if (!r.ok) c.data["error"] = r.error;
  for (auto& n : r.notes) c.details.push_back(std::move(n));
  const std::string how =
      r.ok ? fmt::format("{}:{} answers (TCP connect in {:.1f} ms{})", address->host, address->port,
                         r.connect_ms, r.tls.empty() ? "" : "; " + r.tls)
           : r.error;
  if (live != nullptr) {
    // The daemon is offline: the direct check says where it breaks.
    c.details.push_back("from here: " + how);
    c.fix = r.ok ? std::vector<std::string>{"storewatch sync status   (the daemon's last error)",
                                            "check [sync] username, password_file and the "
                                            "broker's ACL for this store's client id"}
                 : reach_fix(r, *address, cfg.sync);
    return c;
  }
  if (r.ok) {
    c.summary = how;
    c.details.push_back("the daemon does not run: the MQTT login itself was not tried");
    if (!r.notes.empty()) c.status = CheckStatus::warn;
    return c;
  }
  c.status = CheckStatus::fail;
  c.summary = r.error;
  c.fix = reach_fix(r, *address, cfg.sync);
  return c;
}

// --- broker_auth ---------------------------------------------------------------

namespace {

/// What one anonymous connection attempt found.
struct AnonymousAttempt {
  bool connected = false;
  bool answered = false;  ///< connected, or refused by the broker or TLS
  std::string error;
};

class OneAttempt final : public sync::TransportListener {
 public:
  void on_connected() override { connected = done = true; }
  void on_disconnected(const std::string& reason) override {
    if (done) return;
    error = reason;
    done = true;
  }
  bool done = false;
  bool connected = false;
  std::string error;
};

AnonymousAttempt connect_anonymously(const config::SyncConfig& sync,
                                     std::chrono::milliseconds timeout) {
  AnonymousAttempt a;
  sync::MqttOptions o;
  o.broker = sync;
  o.broker.username.clear();
  o.broker.password_file.clear();
  o.broker.cert_file.clear();
  o.broker.key_file.clear();
  // Never the store's id: the broker would hand it the daemon's connection.
  std::random_device rd;
  o.client_id = fmt::format("storewatch-doctor-{:08x}", rd());
  // The transport logs its attempts; the check says what they found.
  const log::Level level = log::level();
  log::set_level(log::Level::error);
  asio::io_context io;
  auto transport = sync::MqttTransport::create(io, o);
  if (!transport) {
    log::set_level(level);
    a.error = transport.error().message;
    return a;
  }
  OneAttempt listener;
  (*transport)->start(listener);
  {
    // Paho answers from its own thread, posting onto `io`: keep it running
    // until then.
    auto work = asio::make_work_guard(io);
    run_until(io, listener.done, timeout);
  }
  (*transport)->stop(std::chrono::milliseconds(0));
  transport->reset();
  io.restart();
  io.poll();
  log::set_level(level);
  a.connected = listener.connected;
  a.error = listener.done ? listener.error : fmt::format("no answer within {} ms", timeout.count());
  a.answered = listener.done;
  return a;
}

}  // namespace

DoctorCheck check_broker_auth(const config::Config& cfg, std::chrono::milliseconds timeout) {
  DoctorCheck c;
  c.name = "broker_auth";
  c.data = json{{"broker", cfg.sync.broker}};
  const AnonymousAttempt a = connect_anonymously(cfg.sync, timeout);
  c.data["anonymous_accepted"] = a.connected;
  if (!a.connected) c.data["error"] = a.error;
  if (a.connected) {
    c.status = CheckStatus::warn;
    c.summary = fmt::format(
        "{} lets in clients without a user name, password or certificate: anyone who reaches "
        "it can publish as any store and command every store",
        cfg.sync.broker);
    c.details.push_back(
        "HQ then believes forged events, statuses and stores, and a store without "
        "[sync] command_key_file takes forged commands");
    c.fix = {
        "give each store its own broker login (username = store id, password_file) or client "
        "certificate, and HQ its own",
        "on the broker: allow_anonymous false, and the acl_file of docs/SYNC.md (\"Who may "
        "publish what\"): each store only its own topics",
        "set [sync] command_key_file so the store takes only commands HQ signed"};
    return c;
  }
  const bool refused_by_broker = a.error.find("refused by broker") != std::string::npos;
  const bool tls_with_cert =
      broker_address(cfg.sync.broker).value_or(BrokerAddress{}).tls && !cfg.sync.cert_file.empty();
  if (refused_by_broker || tls_with_cert) {
    c.summary =
        fmt::format("{} refuses clients without credentials ({})", cfg.sync.broker, a.error);
    return c;
  }
  c.status = CheckStatus::skip;
  c.summary = fmt::format(
      "not checked: an anonymous connection to {} failed before the broker "
      "could refuse it ({}); see the broker check",
      cfg.sync.broker, a.error);
  return c;
}

// --- clock -------------------------------------------------------------------

DoctorCheck check_clock(const config::Config& cfg) {
  DoctorCheck c;
  c.name = "clock";
  std::vector<const config::ProbeConfig*> clocks;
  for (const auto& p : cfg.probes) {
    if (p.type == "system" && p.has("check") && p.str("check") == "clock") clocks.push_back(&p);
  }
  const bool synced = SystemClock().wall_synced();
  c.data = json{{"kernel_synchronised", synced}, {"probes", json::array()}};
  const std::vector<std::string> sync_fix = {
      "timedatectl status   (is NTP on and synchronised?)",
      "sudo timedatectl set-ntp true; systemctl status systemd-timesyncd"};
  if (clocks.empty()) {
    c.status = synced ? CheckStatus::skip : CheckStatus::warn;
    c.summary = fmt::format(
        "skew not checked: the config has no clock probe; the kernel says the clock is {}",
        synced ? "NTP-synchronised" : "NOT synchronised");
    c.details.push_back(
        "to measure it, add: [[probe]] name = \"clock\", type = \"system\", check = \"clock\", "
        "ntp_server = \"<the store's NTP server>\"");
    if (!synced) {
      c.details.push_back("incidents opened now are flagged clock_synced = false");
      c.fix = sync_fix;
    }
    return c;
  }
  const auto results = probes::run_many(clocks, cfg.agent.max_concurrent_checks);
  CheckStatus worst = CheckStatus::ok;
  auto rank = [](CheckStatus s) { return s == CheckStatus::fail ? 2 : s == CheckStatus::warn; };
  for (std::size_t i = 0; i < clocks.size(); ++i) {
    const auto& r = results[i];
    CheckStatus s = CheckStatus::ok;
    if (r.status == probes::ProbeStatus::warn || r.status == probes::ProbeStatus::unknown) {
      s = CheckStatus::warn;
    } else if (r.status == probes::ProbeStatus::fail) {
      s = CheckStatus::fail;
    }
    if (rank(s) > rank(worst)) worst = s;
    json entry{{"probe", clocks[i]->name},
               {"status", probes::to_string(r.status)},
               {"message", r.message}};
    if (auto it = r.metrics.find("offset_ms"); it != r.metrics.end()) {
      entry["offset_ms"] = it->second;
    }
    c.data["probes"].push_back(std::move(entry));
    c.details.push_back(
        fmt::format("{}: {} {}", clocks[i]->name, probes::to_string(r.status), r.message));
  }
  c.status = worst;
  if (clocks.size() == 1) {
    c.summary = results[0].message;
    c.details.clear();
  } else {
    c.summary = fmt::format("{} clock probes", clocks.size());
  }
  if (!synced) c.details.push_back("the kernel says the clock is NOT synchronised");
  if (worst != CheckStatus::ok) c.fix = sync_fix;
  return c;
}

// --- disk --------------------------------------------------------------------

CheckStatus disk_status(std::uint64_t free_bytes, std::uint64_t total_bytes,
                        std::uint64_t free_inodes, std::uint64_t total_inodes,
                        std::uint64_t headroom) {
  if (free_bytes < 64 * kMiB || (total_inodes > 0 && free_inodes < 1000)) {
    return CheckStatus::fail;
  }
  if (free_bytes * 10 < total_bytes || free_bytes < headroom) return CheckStatus::warn;
  return CheckStatus::ok;
}

DoctorCheck check_disk(const config::Config& cfg, std::int64_t db_bytes) {
  DoctorCheck c;
  c.name = "disk";
  // The state directory, or the nearest parent that exists (before the
  // daemon's first start).
  fs::path dir = cfg.agent.data_dir;
  std::error_code ec;
  while (!fs::exists(dir, ec) && dir.has_parent_path() && dir != dir.parent_path()) {
    dir = dir.parent_path();
  }
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0) {
    c.status = CheckStatus::fail;
    c.summary =
        fmt::format("cannot read the free space of {}: {}", dir.string(), std::strerror(errno));
    return c;
  }
  const std::uint64_t unit = vfs.f_frsize != 0 ? vfs.f_frsize : vfs.f_bsize;
  const std::uint64_t free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * unit;
  const std::uint64_t total = static_cast<std::uint64_t>(vfs.f_blocks) * unit;
  const std::uint64_t cap =
      static_cast<std::uint64_t>(std::max<std::int64_t>(cfg.agent.max_db_bytes, 0));
  const std::uint64_t used = static_cast<std::uint64_t>(std::max<std::int64_t>(db_bytes, 0));
  const std::uint64_t headroom = cap > used ? cap - used : 0;
  c.status = disk_status(free_bytes, total, vfs.f_favail, vfs.f_files, headroom);
  const double percent =
      total > 0 ? 100.0 * static_cast<double>(free_bytes) / static_cast<double>(total) : 0;
  c.data = json{{"path", dir.string()},        {"free_bytes", free_bytes},
                {"total_bytes", total},        {"free_percent", std::round(percent * 10) / 10},
                {"free_inodes", vfs.f_favail}, {"db_may_grow_bytes", headroom}};
  c.summary = fmt::format("{}: {} free of {} ({:.0f} %)", dir.string(), human_bytes(free_bytes),
                          human_bytes(total), percent);
  if (c.status != CheckStatus::ok) {
    if (free_bytes < headroom) {
      c.details.push_back(fmt::format("the database may grow by {} more before its max_db_size cap",
                                      human_bytes(headroom)));
    }
    if (vfs.f_files > 0 && vfs.f_favail < 1000) {
      c.details.push_back(fmt::format("only {} inodes left", vfs.f_favail));
    }
    c.fix = {fmt::format("sudo du -xh --max-depth=2 {} | sort -h | tail   (what uses the space)",
                         dir.root_path().string()),
             "sudo journalctl --vacuum-size=100M   (old logs)",
             "sudo apt-get clean   (downloaded packages)"};
  }
  return c;
}

// --- all ---------------------------------------------------------------------

DoctorReport run_doctor(const DoctorOptions& options) {
  DoctorReport report;
  report.config_file = options.config.string();
  config::LoadOptions load;
  load.conf_dir = options.conf_dir;
  load.probe_types = probes::schemas();
  auto loaded = config::load(options.config, load);
  report.checks.push_back(check_config(options.config, loaded));
  if (!loaded.ok()) {
    for (const char* name : {"database", "daemon", "broker", "broker_auth", "clock", "disk"}) {
      DoctorCheck c;
      c.name = name;
      c.status = CheckStatus::skip;
      c.summary = "not checked: it needs a config that loads (paths, broker, probes)";
      report.checks.push_back(std::move(c));
    }
    return report;
  }
  const config::Config& cfg = *loaded.config;
  std::int64_t db_bytes = 0;
  report.checks.push_back(check_database(cfg, &db_bytes));
  std::optional<json> live;
  report.checks.push_back(check_daemon(cfg, options.timeout, &live));
  report.checks.push_back(check_broker(cfg, live ? &*live : nullptr, options.timeout));
  if (report.checks.back().data.value("reachable", true)) {
    report.checks.push_back(check_broker_auth(cfg, options.timeout));
  } else {
    DoctorCheck c;
    c.name = "broker_auth";
    c.status = CheckStatus::skip;
    c.summary = "not checked: the broker cannot be reached (see the broker check)";
    report.checks.push_back(std::move(c));
  }
  report.checks.push_back(check_clock(cfg));
  report.checks.push_back(check_disk(cfg, db_bytes));
  return report;
}

}  // namespace storewatch::cli
