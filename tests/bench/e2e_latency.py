#!/usr/bin/env python3
"""End-to-end latency of storewatch: device down -> local incident -> HQ.

Starts a real mosquitto on a free loopback port, `storewatch hq run`,
`storewatch run` watching one TCP device this script plays, then takes the
device down and up TRIALS times. For each trial it reads the two databases
(not the CLI, so polling adds nothing):

  detect  = t_detect of the incident (agent's DB) - the moment the device went down
  to HQ   = HQ's receive time of the `opened` event - the event's `at`

and checks detect against fail_after x interval + timeout and to-HQ
against one second. Prints a Markdown report; --output appends it to a file.

  tests/bench/e2e_latency.py --bin build/release/cli/storewatch [--trials 20]
"""

import argparse
import datetime
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import free_port  # noqa: E402,F401


def wait(pred, timeout, what):
    return benchlib.wait(pred, timeout, what, poll=0.005, who="e2e_latency")



class Device:
    """A TCP listener that accepts and closes; down() refuses connections."""

    def __init__(self):
        self.port = free_port()
        self.sock = None
        self.up()

    def up(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.running = True
        sock = self.sock

        def loop():
            while self.running and sock is self.sock:
                try:
                    c, _ = sock.accept()
                    c.close()
                except (socket.timeout, OSError):
                    pass

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def down(self):
        self.running = False
        self.thread.join()
        self.sock.close()



def parse_ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def query(path, sql, *args):
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the storewatch binary")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--interval-ms", type=int, default=1000)
    ap.add_argument("--timeout-ms", type=int, default=500)
    ap.add_argument("--fail-after", type=int, default=3)
    ap.add_argument("--output", help="append the Markdown report to this file")
    args = ap.parse_args()
    sw = os.path.abspath(args.bin)

    work = tempfile.mkdtemp(prefix="storewatch-bench-")
    port = free_port()
    device = Device()
    with open(f"{work}/mosquitto.conf", "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    with open(f"{work}/hq.toml", "w") as f:
        f.write(f'[hq]\nbroker = "tcp://127.0.0.1:{port}"\ndatabase = "{work}/hq/hq.db"\n')
    with open(f"{work}/agent.toml", "w") as f:
        f.write(f"""[store]
id = "bench-store"
[agent]
data_dir = "{work}/agent"
control_socket = "{work}/agent/control.sock"
[sync]
broker = "tcp://127.0.0.1:{port}"
[[probe]]
name = "lane-01-pos"
type = "tcp"
host = "127.0.0.1"
port = {device.port}
interval = "{args.interval_ms}ms"
timeout = "{args.timeout_ms}ms"
fail_after = {args.fail_after}
recover_after = 2
""")
    procs = []
    logs = open(f"{work}/logs.txt", "w")
    try:
        procs.append(subprocess.Popen(["mosquitto", "-c", f"{work}/mosquitto.conf"], stdout=logs, stderr=logs))
        wait(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 10, "mosquitto")
        procs.append(subprocess.Popen([sw, "hq", "--config", f"{work}/hq.toml", "run"], stdout=logs, stderr=logs))
        procs.append(subprocess.Popen([sw, "--config", f"{work}/agent.toml", "run"], stdout=logs, stderr=logs))
        agent_db, hq_db = f"{work}/agent/storewatch.db", f"{work}/hq/hq.db"

        def level():
            rows = query(agent_db, "SELECT level FROM probe_state WHERE probe = 'lane-01-pos'")
            return rows[0][0] if rows else None

        def opened(n):
            """The n-th `opened` event (0-based): seq, at, and its incident's t_detect."""
            rows = query(agent_db, "SELECT e.seq, e.at, i.t_detect FROM events e "
                                   "JOIN incidents i ON i.uid = e.incident_uid "
                                   "WHERE e.type = 'opened' ORDER BY e.seq")
            return rows[n] if len(rows) > n else None

        detect, to_hq = [], []
        for trial in range(args.trials):
            wait(lambda: level() == "ok", 30, "the probe to be ok")
            # Go down at a random point of the probe's interval.
            time.sleep((trial * 0.37 % 1.0) * args.interval_ms / 1000)
            device.down()
            t_down = time.time()
            row = wait(lambda: opened(trial), 30, "the incident")
            seq, at, t_detect = row
            hq_rows = wait(lambda: query(hq_db, "SELECT received FROM events WHERE store = 'bench-store' AND seq = ?", seq),
                           30, "the event at HQ")
            detect.append((parse_ts(t_detect) - t_down) * 1000)
            to_hq.append(hq_rows[0][0] - parse_ts(at) * 1000)
            device.up()
            print(f"trial {trial + 1}/{args.trials}: detect {detect[-1]:.0f} ms, to HQ {to_hq[-1]:.0f} ms",
                  file=sys.stderr, flush=True)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        device.down()

    bound = args.fail_after * args.interval_ms + args.timeout_ms
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    report = f"""
## End-to-end latency ({datetime.date.today().isoformat()})

`tests/bench/e2e_latency.py --bin build/release/cli/storewatch --trials {args.trials}` on
{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; real mosquitto, `hq run` and
`run` on loopback; one `tcp` probe, interval {args.interval_ms} ms, timeout {args.timeout_ms} ms,
fail_after {args.fail_after}.

| measure | median | p90 | max | target | met |
| --- | --- | --- | --- | --- | --- |
| device down → local incident (`t_detect`) | {statistics.median(detect):.0f} ms | {pct(detect, 90):.0f} ms | {max(detect):.0f} ms | ≤ fail_after × interval + timeout = {bound} ms | {"yes" if max(detect) <= bound else "NO"} |
| local event → stored at HQ | {statistics.median(to_hq):.0f} ms | {pct(to_hq, 90):.0f} ms | {max(to_hq):.0f} ms | ≤ 1000 ms | {"yes" if max(to_hq) <= 1000 else "NO"} |
"""
    print(report)
    if args.output:
        with open(args.output, "a") as f:
            f.write(report)
    return 0 if max(detect) <= bound and max(to_hq) <= 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
