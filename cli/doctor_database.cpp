// The doctor's database check: the file, its WAL, schema and integrity.
#include "cli/doctor.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

#include "agent/store.h"
#include "cli/doctor_internal.h"

namespace storewatch::cli {

using nlohmann::json;
namespace fs = std::filesystem;
using doctor_internal::kMiB;
using doctor_internal::kStartDaemon;
using doctor_internal::me;
using doctor_internal::owner_and_mode;
using doctor_internal::permission_fix;
using doctor_internal::plural;
using doctor_internal::when;

namespace {

/// A WAL this big means checkpoints are not keeping up (a reader holding
/// an old snapshot, or a stuck writer): the daemon keeps it near 16 MB.
constexpr std::uint64_t kWalWarn = 64 * kMiB;

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

}  // namespace

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

}  // namespace storewatch::cli
