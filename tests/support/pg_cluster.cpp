#include "tests/support/pg_cluster.h"

#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>
#include <system_error>

namespace storewatch::test {
namespace fs = std::filesystem;

namespace {

/// The newest PostgreSQL's bin directory of Debian's layout, or empty.
fs::path find_bin() {
  std::error_code ec;
  fs::path best;
  int best_version = 0;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string name = entry.path().filename().string();
    const int version = std::atoi(name.c_str());
    if (version > best_version && fs::exists(entry.path() / "bin/initdb", ec) &&
        fs::exists(entry.path() / "bin/pg_ctl", ec)) {
      best = entry.path() / "bin";
      best_version = version;
    }
  }
  return best;
}

/// Where clusters live: memory (/dev/shm) where there is one — a cluster
/// is a thousand small files, and a test's data is thrown away — else the
/// temporary directory.
fs::path cluster_root() {
  std::error_code ec;
  if (fs::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK | X_OK) == 0) {
    return "/dev/shm";
  }
  return fs::temp_directory_path();
}

}  // namespace

std::string PgCluster::unavailable() {
  if (find_bin().empty()) {
    return "no PostgreSQL server here (/usr/lib/postgresql/*/bin/initdb and pg_ctl): "
           "scripts/bootstrap.sh installs Debian's postgresql";
  }
  return {};
}

fs::path PgCluster::make_template() const {
  const fs::path tmpl =
      cluster_root() / ("storewatch-pg-template-" + bin_.parent_path().filename().string() + "-" +
                        std::to_string(::geteuid()));
  // Several test processes at once: one makes it, the others wait for it.
  const std::string lock_path = tmpl.string() + ".lock";
  const int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) {
    if (lock >= 0) ::close(lock);
    throw std::runtime_error("cannot lock " + lock_path);
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  std::error_code ec;
  if (fs::exists(tmpl / "PG_VERSION", ec)) return tmpl;
  const fs::path making = tmpl.string() + ".making";
  fs::remove_all(making, ec);
  fs::create_directories(making, ec);
  if (::geteuid() == 0) {
    const passwd* nobody = ::getpwnam("nobody");
    if (nobody == nullptr || ::chown(making.c_str(), nobody->pw_uid, nobody->pw_gid) != 0) {
      throw std::runtime_error("cannot give " + making.string() + " to user nobody");
    }
  }
  auto r = run(as_owner({(bin_ / "initdb").string(), "-D", making.string(), "-U", "storewatch",
                         "--auth-local=trust", "--auth-host=scram-sha-256", "-N", "-E", "UTF8",
                         "--locale=C.UTF-8"}),
               {}, std::chrono::seconds(120));
  if (r.exit_code != 0) throw std::runtime_error("initdb failed: " + r.out + r.err);
  fs::remove_all(tmpl, ec);
  fs::rename(making, tmpl, ec);
  if (ec) throw std::runtime_error("cannot move the template cluster into place: " + ec.message());
  return tmpl;
}

std::vector<std::string> PgCluster::as_owner(std::vector<std::string> argv) const {
  if (::geteuid() != 0) return argv;
  std::vector<std::string> out{"runuser", "-u", "nobody", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

PgCluster::PgCluster() {
  bin_ = find_bin();
  if (bin_.empty()) throw std::runtime_error(unavailable());
  // Not under a private (0700) temporary directory: nobody must reach it.
  std::string pattern = (cluster_root() / "storewatch-pg-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp: " +
                             std::error_code(errno, std::generic_category()).message());
  }
  dir_ = pattern;
  if (::geteuid() == 0) {
    const passwd* nobody = ::getpwnam("nobody");
    if (nobody == nullptr || ::chown(dir_.c_str(), nobody->pw_uid, nobody->pw_gid) != 0) {
      throw std::runtime_error("cannot give " + dir_.string() + " to user nobody");
    }
  }
  port_ = free_port();
  // A copy of one initdb'd template (made once per machine and PostgreSQL
  // version): a test's cluster costs a copy, not an initdb.
  const fs::path tmpl = make_template();
  auto r = run(as_owner({"cp", "-a", tmpl.string(), (dir_ / "data").string()}), {},
               std::chrono::seconds(120));
  if (r.exit_code != 0) throw std::runtime_error("copying the template cluster failed: " + r.err);
  // Only the tests' own clients, on the socket and on loopback.
  write_file(dir_ / "data/postgresql.auto.conf",
             "listen_addresses = '127.0.0.1'\nport = " + std::to_string(port_) +
                 "\nunix_socket_directories = '" + dir_.string() +
                 "'\nfsync = off\nmax_connections = 40\nshared_buffers = 32MB\n");
  if (::geteuid() == 0) {
    const passwd* nobody = ::getpwnam("nobody");
    if (::chown((dir_ / "data/postgresql.auto.conf").c_str(), nobody->pw_uid, nobody->pw_gid) !=
        0) {
      throw std::runtime_error("cannot give postgresql.auto.conf to nobody");
    }
  }
  start();
}

PgCluster::~PgCluster() {
  if (running_) {
    (void)run(as_owner({(bin_ / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-m",
                        "immediate", "-w", "stop"}),
              {}, std::chrono::seconds(30));
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

void PgCluster::start() {
  auto r = run(as_owner({(bin_ / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-l",
                         (dir_ / "server.log").string(), "-w", "-t", "60", "start"}),
               {}, std::chrono::seconds(90));
  if (r.exit_code != 0) {
    throw std::runtime_error("pg_ctl start failed: " + r.out + r.err + "\n" + log());
  }
  running_ = true;
}

void PgCluster::stop(const std::string& mode) {
  auto r = run(as_owner({(bin_ / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-m", mode,
                         "-w", "-t", "60", "stop"}),
               {}, std::chrono::seconds(90));
  if (r.exit_code != 0) throw std::runtime_error("pg_ctl stop failed: " + r.out + r.err);
  running_ = false;
}

void PgCluster::restart() {
  auto r =
      run(as_owner({(bin_ / "pg_ctl").string(), "-D", (dir_ / "data").string(), "-l",
                    (dir_ / "server.log").string(), "-m", "fast", "-w", "-t", "60", "restart"}),
          {}, std::chrono::seconds(90));
  if (r.exit_code != 0) {
    throw std::runtime_error("pg_ctl restart failed: " + r.out + r.err + "\n" + log());
  }
  running_ = true;
}

std::string PgCluster::log() const {
  std::error_code ec;
  if (!fs::exists(dir_ / "server.log", ec)) return {};
  return read_file(dir_ / "server.log");
}

std::string PgCluster::uri(const std::string& name) const {
  return "postgresql://storewatch@/" + name + "?host=" + dir_.string() +
         "&port=" + std::to_string(port_);
}

std::string PgCluster::tcp_uri(const std::string& name) const {
  return "postgresql://storewatch@127.0.0.1:" + std::to_string(port_) + "/" + name;
}

std::string PgCluster::create_database(const std::string& name) {
  sql("postgres", "CREATE DATABASE " + name);
  return uri(name);
}

std::string PgCluster::sql(const std::string& name, const std::string& statement) {
  auto r = run({"psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", dir_.string(), "-p",
                std::to_string(port_), "-U", "storewatch", "-d", name, "-c", statement},
               {}, std::chrono::seconds(60));
  if (r.exit_code != 0) {
    throw std::runtime_error("psql failed (" + statement + "): " + r.err);
  }
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace storewatch::test
