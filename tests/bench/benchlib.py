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
