"""What the benchmark scripts share. Python standard library only."""

import os
import platform
import re
import socket
import time


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout, what, poll=0.05, who="bench"):
    """Polls pred() every `poll` s until it returns something true (returned)
    or `timeout` s pass (exits saying what it waited for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    raise SystemExit(f"{who}: timed out after {timeout} s waiting for {what}")


def machine():
    """CPU model, cores, kernel: the machine line of a report."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.machine())
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def loadavg():
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def write_section(path, section, text):
    """Replaces the Markdown section whose heading line is `section` (up to the
    next "## " heading) in the file at path with `text`, or appends it."""
    old = open(path).read() if os.path.exists(path) else "# storewatch benchmarks\n"
    start = old.find(section)
    if start >= 0:
        nxt = re.search(r"^## ", old[start + len(section):], re.M)
        end = start + len(section) + nxt.start() if nxt else len(old)
        new = old[:start].rstrip("\n") + "\n" + text.rstrip("\n") + "\n" + \
            ("\n" + old[end:] if end < len(old) else "")
    else:
        new = old.rstrip("\n") + "\n" + text.rstrip("\n") + "\n"
    with open(path, "w") as f:
        f.write(new)


# --- PostgreSQL (issue 21's fleet benchmark) ------------------------------------

def pg_bin():
    """The newest Debian PostgreSQL's bin directory (initdb, pg_ctl), or None:
    the layout tests/support/pg_cluster.cpp looks in."""
    best, best_v = None, 0
    try:
        names = os.listdir("/usr/lib/postgresql")
    except OSError:
        return None
    for name in names:
        d = f"/usr/lib/postgresql/{name}/bin"
        try:
            v = int(name.split(".")[0])
        except ValueError:
            continue
        if v > best_v and os.path.exists(f"{d}/initdb") and os.path.exists(f"{d}/pg_ctl"):
            best, best_v = d, v
    return best


class PgCluster:
    """A throwaway PostgreSQL cluster in a temporary directory, as
    tests/support/pg_cluster.cpp starts one: initdb + pg_ctl as user nobody
    when run as root, trust on its Unix socket, loopback only. `conf` is
    appended to postgresql.auto.conf. stop() removes it."""

    def __init__(self, conf=""):
        import pwd
        import shutil
        import subprocess
        import tempfile
        self._shutil, self._sp = shutil, subprocess
        self.bin = pg_bin()
        if not self.bin:
            raise RuntimeError("no PostgreSQL server here (/usr/lib/postgresql/*/bin/initdb)")
        # Not under a private temporary directory: nobody must reach it.
        self.dir = tempfile.mkdtemp(prefix="storewatch-pg-", dir="/tmp")
        self.owner = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("nobody")
            self.owner = (pw.pw_uid, pw.pw_gid)
            os.chown(self.dir, *self.owner)
            os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.data = f"{self.dir}/data"
        self._run([f"{self.bin}/initdb", "-D", self.data, "-U", "storewatch",
                   "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                   "--locale=C.UTF-8"])
        with open(f"{self.data}/postgresql.auto.conf", "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\n{conf}")
        self._run([f"{self.bin}/pg_ctl", "-D", self.data, "-l", f"{self.dir}/server.log",
                   "-w", "-t", "60", "start"])
        self.running = True

    def _run(self, argv):
        if self.owner:
            argv = ["runuser", "-u", "nobody", "--"] + argv
        r = self._sp.run(argv, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {r.stdout}{r.stderr}")
        return r.stdout

    def uri(self, db):
        return f"postgresql://storewatch@/{db}?host={self.dir}&port={self.port}"

    def sql(self, db, statement):
        """Rows of one statement through psql, as lists of strings."""
        r = self._sp.run(["psql", "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
                          "-h", self.dir, "-p", str(self.port), "-U", "storewatch", "-d", db,
                          "-c", statement], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {statement}: {r.stderr.strip()}")
        return [line.split("|") for line in r.stdout.splitlines() if line]

    def create_database(self, db):
        self.sql("postgres", f"CREATE DATABASE {db}")
        return self.uri(db)

    def postmaster_pid(self):
        with open(f"{self.data}/postmaster.pid") as f:
            return int(f.readline())

    def pids(self):
        """The postmaster and its children (backends, checkpointer, …)."""
        top = self.postmaster_pid()
        out = [top]
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == top:
                            out.append(int(name))
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def stop(self):
        if self.running:
            try:
                self._run([f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "-w",
                           "stop"])
            except RuntimeError:
                pass
            self.running = False
        self._shutil.rmtree(self.dir, ignore_errors=True)


def proc_cpu_seconds(pid):
    """utime + stime of a process from /proc/<pid>/stat, in seconds (0 once gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0
