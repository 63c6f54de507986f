#!/usr/bin/env python3
"""HQ fleet benchmark (issue 21): a simulated fleet of stores (fleet_sim.py,
real MQTT 5 clients speaking DESIGN §6) against a real mosquitto and 1, 2 or 4
real `storewatch hq run` workers (one share group) on SQLite or PostgreSQL.

For each backend and worker count, on a fresh database:
  (a) drain: the workers start once (their sessions and shared subscription
      exist at the broker) and stop; DRAIN_STORES stores each publish BACKLOG
      events while HQ is down (the broker queues them for HQ's sessions, QoS
      1); then the workers start again and the clock runs until every store's
      retained ack covers its newest seq. Events/s over HQ's first → last
      commit (`received` of the stored rows) and over start → last ack; CPU
      (utime+stime from /proc/<pid>/stat) and peak RSS of each worker and of
      PostgreSQL's processes; database bytes per event (growth / events).
  (b) steady: STEADY_STORES stores connected, each publishing one event every
      PERIOD s on its own phase; after WARMUP s, publish → ack-received
      latencies for SECONDS s (p50/p99 at the simulator).
Each part ends with HQ complete: every event stored once per (store, seq) and
every store's acked_seq equal to its newest seq (exit 1 otherwise).
Then mosquitto's own QoS 1 ceiling, no HQ: sync_load.py's minimal publisher
(100 in flight) to a QoS 1 subscriber, with messages of one batch's size.

--write puts the report in docs/BENCHMARKS.md ("HQ fleet (issue 21)").
Exit 77 (skip) when mosquitto or PostgreSQL's binaries are missing.
"""

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
import sync_load  # noqa: E402
from benchlib import machine, proc_cpu_seconds  # noqa: E402
from sync_load import Procs, busy, log, start_hq, start_mosquitto, status_kb  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SECTION = "## HQ fleet (issue 21)"


def fail(msg):
    raise SystemExit(f"fleet_load: {msg}")


class Sim:
    """fleet_sim.py as a child process; its JSON lines come through a queue."""

    def __init__(self, procs, name, argv):
        self.name, self.procs = name, procs
        self.p = procs.start(name, [sys.executable, f"{HERE}/fleet_sim.py"] + argv,
                             stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            try:
                self.q.put(json.loads(line))
            except ValueError:
                pass
        self.q.put(None)

    def expect(self, phase, timeout, tick=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = self.q.get(timeout=0.1)
            except queue.Empty:
                if tick:
                    tick()
                continue
            if m is None:
                fail(f"{self.name} ended (exit {self.p.wait()}) before '{phase}'")
            if m.get("phase") == phase:
                m["at"] = time.monotonic()
                return m
        fail(f"timed out after {timeout:.0f} s waiting for {self.name}'s '{phase}'")

    def finish(self):
        self.p.stdin.close()
        done = self.expect("done", 60)
        self.p.wait(timeout=30)
        self.procs.stop_named({self.name})
        return done


class Db:
    """HQ's database, SQLite file or PostgreSQL database, read by the bench."""

    def __init__(self, backend, work, tag, pg):
        self.backend, self.pg = backend, pg
        if backend == "sqlite":
            self.path = f"{work}/{tag}/hq.db"
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.uri = self.path
        else:
            self.name = tag.replace("-", "_")
            self.uri = pg.create_database(self.name)

    def rows(self, sql):
        if self.backend == "sqlite":
            return sync_load.query(self.path, sql) or []
        return self.pg.sql(self.name, sql)

    def size(self):
        if self.backend == "sqlite":
            return sum(os.path.getsize(self.path + s) for s in ("", "-wal")
                       if os.path.exists(self.path + s))
        return int(self.pg.sql(self.name, "SELECT pg_database_size(current_database())")[0][0])

    def completeness(self, expected):
        """expected {store: newest seq}: problems, [] when HQ is complete."""
        got = {r[0]: tuple(int(x) for x in r[1:]) for r in self.rows(
            "SELECT store, COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM events "
            "GROUP BY store")}
        acks = {r[0]: int(r[1]) for r in self.rows("SELECT store, acked_seq FROM stores")}
        problems = []
        for store, n in sorted(expected.items()):
            count, distinct, lo, hi = got.get(store, (0, 0, None, None))
            if n and not (count == distinct == n and lo == 1 and hi == n):
                problems.append(f"{store}: wrote 1..{n}, HQ has {count} rows, {distinct} "
                                f"distinct seqs {lo}..{hi}")
            if not n and count:
                problems.append(f"{store}: HQ has {count} events, the store wrote none")
            if acks.get(store, 0) != n:
                problems.append(f"{store}: acked_seq {acks.get(store)}, newest seq {n}")
        for store in sorted(set(got) - set(expected)):
            problems.append(f"HQ has events of an unknown store {store}")
        return problems

    def commit_span(self):
        r = self.rows("SELECT MIN(received), MAX(received), COUNT(*) FROM events")
        if not r or not r[0][2] or int(r[0][2]) == 0:
            return None
        return (int(r[0][1]) - int(r[0][0])) / 1000.0


class Meters:
    """CPU seconds over a window and peak RSS (sampled) of processes."""

    def __init__(self, pids):
        self.pids = dict(pids)  # name -> pid
        self.c0 = {}
        self.rss = {n: 0 for n in self.pids}

    def begin(self):
        self.t0 = time.monotonic()
        self.c0 = {n: proc_cpu_seconds(p) for n, p in self.pids.items()}
        self.sample()

    def add(self, name, pid):
        if name not in self.pids:
            self.pids[name], self.c0[name], self.rss[name] = pid, 0.0, 0

    def sample(self):
        for n, p in self.pids.items():
            self.rss[n] = max(self.rss[n], status_kb(p, "VmRSS"))

    def end(self):
        self.sample()
        self.seconds = time.monotonic() - self.t0
        self.cpu = {n: proc_cpu_seconds(p) - self.c0.get(n, 0.0) for n, p in self.pids.items()}
        self.hwm = {n: status_kb(p, "VmHWM") for n, p in self.pids.items()}
        return self


def start_workers(procs, sw, work, port, tag, workers, db):
    hqs = []
    for w in range(workers):
        _, p = start_hq(procs, sw, work, port, f"hq-{tag}-{w}", "fleet", db.uri)
        hqs.append(p)
    return hqs


def stop_workers(procs, tag, workers):
    procs.stop_named({f"hq-{tag}-{w}" for w in range(workers)})


def pg_meter_names(pg, meters):
    for pid in pg.pids():
        meters.add(f"pg {pid}", pid)


def drain_once(a, procs, sw, work, pg, backend, workers, tag):
    """One drain after an outage, on a broker and database of its own: the
    results, and the broker's port, the database, the workers (still
    running) and each store's newest seq."""
    port, mosq = start_mosquitto(procs, work, f"mosq-{tag}", "max_queued_messages 0\n")
    db = Db(backend, work, tag, pg)
    start_workers(procs, sw, work, port, tag, workers, db)
    stop_workers(procs, tag, workers)
    size0 = db.size()
    sim = Sim(procs, f"sim-drain-{tag}",
              ["drain", "--port", str(port), "--stores", str(a.drain_stores), "--backlog",
               str(a.backlog), "--id-prefix", "drain-", "--acked-timeout", "900"])
    c = sim.expect("connected", 300)
    if not c["ok"]:
        fail(f"not every store connected: {c}")
    pub = sim.expect("published", 600)
    events = pub["events"]
    log(f"  {events} events queued at the broker for HQ ({pub['seconds']:.1f} s); HQ starts")
    t0 = time.monotonic()
    # The same configs (client ids) again: the sessions resume and the broker
    # hands over what it queued at once, ahead of the SUBACK, so the start is
    # not waited for here (the clock runs from the spawn).
    hqs = [procs.start(f"hq-{tag}-{w}", [sw, "hq", "--config", f"{work}/hq-{tag}-{w}.toml", "run"])
           for w in range(workers)]
    meters = Meters({f"hq {w}": p.pid for w, p in enumerate(hqs)})
    meters.begin()
    if pg:
        pg_meter_names(pg, meters)
    last = [0.0]

    def tick():
        procs.check_alive([f"hq-{tag}-{w}" for w in range(workers)])
        if time.monotonic() - last[0] > 0.2:
            if pg:  # the workers' backends, as they connect
                pg_meter_names(pg, meters)
            meters.sample()
            last[0] = time.monotonic()
    acked = sim.expect("acked", 900, tick)
    meters.end()
    t1 = acked["at"]
    span = db.commit_span()
    size1 = db.size()
    hq_cpu = sum(v for n, v in meters.cpu.items() if n.startswith("hq "))
    pg_cpu = sum(v for n, v in meters.cpu.items() if n.startswith("pg "))
    drain = {
        "events": events, "seconds": t1 - t0, "per_second": events / (t1 - t0),
        "span": span, "span_per_second": events / span if span else None,
        "cpu_us_per_event": 1e6 * hq_cpu / events,
        "cpu_us_per_event_worker": [1e6 * meters.cpu[f"hq {w}"] / events
                                    for w in range(workers)],
        "pg_cpu_us_per_event": 1e6 * pg_cpu / events if pg else None,
        "mosq_cpu_us_per_event": None,
        "rss_kb": [meters.rss[f"hq {w}"] for w in range(workers)],
        "hwm_kb": [meters.hwm[f"hq {w}"] for w in range(workers)],
        "bytes_per_event": (size1 - size0) / events,
        "resent_rounds": acked["resent_rounds"], "ok": acked["ok"],
        "event_bytes": pub["event_bytes"]}
    drain_last = sim.finish()["last_seq"]
    log(f"  drain: {drain['per_second']:.0f} events/s start→last ack, "
        f"{drain['span_per_second'] or 0:.0f}/s over the commits; "
        f"{drain['cpu_us_per_event']:.1f} µs CPU/event (all workers); "
        f"RSS {max(drain['hwm_kb']) / 1024:.0f} MB")
    return drain, port, db, hqs, drain_last


def run_config(a, procs, sw, work, pg, backend, workers):
    tag = f"fleet-{backend[:2]}-{workers}w"
    log(f"{backend}, {workers} worker(s): {busy()}")
    res = {"backend": backend, "workers": workers}

    # (a) drain after an outage: --drain-runs times, each on a broker and a
    # database of its own; the run of the median rate is reported, the last
    # one's workers go on into the steady state.
    drains = []
    for r in range(1, a.drain_runs):
        rtag = f"{tag}-r{r}"
        d, _, rdb, _, rlast = drain_once(a, procs, sw, work, pg, backend, workers, rtag)
        problems = rdb.completeness(rlast)
        if problems:
            fail(f"drain run {r}: HQ incomplete: {problems[:3]}")
        drains.append(d)
        stop_workers(procs, rtag, workers)
        procs.stop_named({f"mosq-{rtag}"})
        if backend == "sqlite" and not a.keep:
            shutil.rmtree(os.path.dirname(rdb.path), ignore_errors=True)
    d, port, db, hqs, drain_last = drain_once(a, procs, sw, work, pg, backend, workers, tag)
    drains.append(d)
    res["drain"] = sorted(drains, key=lambda x: x["per_second"])[len(drains) // 2]
    res["drain_runs"] = [{k: x[k] for k in ("per_second", "span_per_second", "cpu_us_per_event",
                                             "pg_cpu_us_per_event")} for x in drains]
    if len(drains) > 1:
        log(f"  median of {len(drains)} drains: {res['drain']['per_second']:.0f} events/s "
            f"(range {min(x['per_second'] for x in drains):.0f}–"
            f"{max(x['per_second'] for x in drains):.0f}), "
            f"{res['drain']['cpu_us_per_event']:.1f} µs CPU/event")

    # (b) steady state.
    sim = Sim(procs, f"sim-steady-{tag}",
              ["steady", "--port", str(port), "--stores", str(a.steady_stores), "--period",
               str(a.period), "--warmup", str(a.warmup), "--seconds", str(a.steady_seconds),
               "--id-prefix", "steady-", "--acked-timeout", "120"])
    c = sim.expect("connected", 300, lambda: procs.check_alive())
    if not c["ok"]:
        fail(f"not every store connected: {c}")
    # Start meters after the warm-up, as the simulator does.
    time.sleep(a.warmup)
    smeters = Meters({f"hq {w}": p.pid for w, p in enumerate(hqs)})
    smeters.begin()
    st = sim.expect("steady", a.steady_seconds + 120, lambda: smeters.sample())
    smeters.end()
    sim_acked = sim.expect("acked", 180)
    steady_last = sim.finish()["last_seq"]
    st_cpu = sum(smeters.cpu.values())
    res["steady"] = {"stores": a.steady_stores, "connect_s": c["seconds"],
                     "measured": st["measured"], "unacked": st["unacked"], "p50": st["p50"],
                     "p90": st["p90"], "p99": st["p99"], "max": st["max"], "lost": st["lost"],
                     "warm_p50": st["warm_p50"], "warm_p99": st["warm_p99"],
                     "warm_max": st["warm_max"], "warm_measured": st["warm_measured"],
                     "cpu_pct": 100.0 * st_cpu / smeters.seconds,
                     "rss_kb": [smeters.hwm[f"hq {w}"] for w in range(workers)],
                     "ok": sim_acked["ok"]}
    log(f"  steady: {st['measured']} acks, p50 {1000 * (st['p50'] or 0):.0f} ms, p99 "
        f"{1000 * (st['p99'] or 0):.0f} ms, {st['unacked']} unacked; warm-up (connect storm) "
        f"p50 {1000 * (st['warm_p50'] or 0):.0f} ms, p99 {1000 * (st['warm_p99'] or 0):.0f} ms")
    problems = db.completeness({**drain_last, **steady_last})
    stop_workers(procs, tag, workers)
    procs.stop_named({f"mosq-{tag}"})
    res["problems"] = problems
    if problems:
        log(f"  INCOMPLETE: {len(problems)} problems, first: {problems[:3]}")
    if backend == "sqlite" and not a.keep:
        shutil.rmtree(os.path.dirname(db.path), ignore_errors=True)
    return res


def ceiling(a, procs, work, batch_bytes, event_bytes):
    out = {}
    for label, size, n in (("batch", batch_bytes, a.ceiling_batches),
                           ("event", event_bytes, a.ceiling_events)):
        r = sync_load.broker_alone(procs, work, n, size)
        if not r["ok"]:
            fail(f"the broker-alone run ({label}) failed")
        out[label] = r
        log(f"mosquitto alone, {size}-byte messages: {r['per_second']:.0f} messages/s")
    return out


def mb(kb):
    return f"{kb / 1024:.0f} MB"


def yes(b):
    return "met" if b else "**not met**"


def drain_range(r):
    """The range of the end-to-end rates of a configuration's drains."""
    runs = r.get("drain_runs") or []
    if len(runs) < 2:
        return ""
    return (f"; {len(runs)} runs {min(x['per_second'] for x in runs):,.0f}–"
            f"{max(x['per_second'] for x in runs):,.0f}")


def report(a, started, results, ceil, batch_events, cmdline, load_before, load_after):
    by = {(r["backend"], r["workers"]): r for r in results}
    best = max(r["drain"]["per_second"] for r in results)
    best_span = max(r["drain"]["span_per_second"] or 0 for r in results)
    ceil_events = ceil["batch"]["per_second"] * batch_events
    lines = [SECTION, "",
             f"Run {started} UTC on {machine()}: mosquitto {sync_load.mosquitto_version()}, "
             f"PostgreSQL {a.pg_version}, `storewatch hq run` (release build), the fleet "
             "simulator tests/bench/fleet_sim.py (Python, Debian's python3-paho-mqtt 1.6.1: "
             "one MQTT 5 client per store, all in one epoll loop) — all on this one machine. "
             f"Load average before / after: {load_before} / {load_after}. " + (
                 "**The 2 cores were shared** with other work when the run started (a load "
                 "average above 1 before it): every figure here is lower than the machine "
                 "alone would give, and varies from run to run."
                 if float(str(load_before).split()[0]) > 1.0 else
                 "Nothing else ran when the run started; the load after it is the "
                 "benchmark's own processes (broker, database, simulator, workers)."), "",
             f"Command: `{cmdline}`", "",
             "Method. Per backend and number of workers, a fresh database; the workers "
             "(one `share_group`, each its own `client_id`) start once and stop, so the "
             "broker keeps their sessions. **(a) Drain after an outage:** "
             f"{a.drain_stores} stores each publish {a.backlog} events (batches of up to 100 "
             "events and 64 KB, QoS 1, 4 in flight, as the agent's defaults; a batch per "
             "store per round, the stores in a new random order each round) while HQ "
             "is down; the broker queues them; then the workers start and the clock runs "
             "until every store has received a retained ack covering its newest seq. "
             f"Each configuration drains {a.drain_runs} times, each on a fresh broker and "
             "database; the table gives the run of the median end-to-end rate (and the "
             "range of all). "
             "Events/s are given over HQ's first → last commit (the `received` stamps of "
             "the stored rows) and end to end (worker start → last ack). CPU is "
             "utime+stime from /proc/<pid>/stat over the drain, RSS the peak (VmHWM) of "
             "each worker; bytes/event the database's growth (SQLite file + WAL; "
             "PostgreSQL `pg_database_size`) over the events stored. **(b) Steady "
             f"state:** {a.steady_stores} stores connected, each one event every "
             f"{a.period:g} s on its own phase; after {a.warmup:g} s of warm-up, the "
             f"latency publish → ack received at the store for {a.steady_seconds:g} s. "
             "Each part ended with HQ complete (every event stored once, every acked_seq "
             "equal to the store's newest seq), checked in the database. PostgreSQL: a "
             "throwaway cluster (initdb, Unix socket, trust), its defaults otherwise "
             "(fsync on, synchronous_commit on, shared_buffers "
             f"{a.pg_shared_buffers}); SQLite: HQ's own settings (WAL, synchronous FULL). "
             "mosquitto: `max_queued_messages 0` (no limit: the queue for HQ's offline "
             "sessions), its defaults otherwise.", "",
             "| backend | workers | drain events/s (commits) | end to end | CPU µs/event (all workers) | CPU per 1,000 events, each worker | PostgreSQL CPU µs/event | peak RSS per worker | DB bytes/event | steady p50 / p99 ack | warm-up p50 / p99 ack (connect storm) | steady CPU (all workers) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        d, s = r["drain"], r["steady"]
        lines.append(
            f"| {r['backend']} | {r['workers']} | {d['span_per_second'] or 0:,.0f} | "
            f"{d['per_second']:,.0f} ({d['seconds']:.1f} s){drain_range(r)} | "
            f"{d['cpu_us_per_event']:.1f} | "
            + " / ".join(f"{x / 1000:.0f} ms" for x in [1e3 * v for v in
                                                         d["cpu_us_per_event_worker"]]) + " | "
            + (f"{d['pg_cpu_us_per_event']:.1f}" if d["pg_cpu_us_per_event"] else "—") + " | "
            + " / ".join(mb(x) for x in d["hwm_kb"]) + " | "
            f"{d['bytes_per_event']:,.0f} | "
            f"{1000 * (s['p50'] or 0):.0f} / {1000 * (s['p99'] or 0):.0f} ms "
            f"({s['measured']:,} acks) | {1000 * (s['warm_p50'] or 0):,.0f} / "
            f"{1000 * (s['warm_p99'] or 0):,.0f} ms | {s['cpu_pct']:.0f} % |")
    lines += ["", "CPU per 1,000 events of each worker is that worker's utime+stime over the "
              "drain divided by the events all workers stored, × 1,000 (ms)."]
    pg2 = by.get(("postgresql", 2))
    pg1 = by.get(("postgresql", 1))
    t = []
    if pg2:
        v2 = pg2["drain"]["per_second"]
        t.append(f"| PostgreSQL, 2 workers, drain ≥ 25,000 events/s (end to end) | {v2:,.0f} | "
                 f"{yes(v2 >= 25000)} |")
        if pg1:
            v1 = pg1["drain"]["per_second"]
            r1, r2 = pg1.get("drain_runs") or [], pg2.get("drain_runs") or []
            overlap = (len(r1) > 1 and len(r2) > 1 and min(x["per_second"] for x in r2)
                       <= max(x["per_second"] for x in r1))
            t.append(f"| PostgreSQL, 2 workers faster than 1 | {v2:,.0f} vs {v1:,.0f} "
                     "(medians)" + (", the runs' ranges overlap" if overlap else "") + " | "
                     + (f"{yes(v2 > v1)} by the medians, not beyond the spread"
                        if overlap and v2 > v1 else yes(v2 > v1)) + " |")
    p99 = max((r["steady"]["p99"] or 99) for r in results)
    t.append(f"| {a.steady_stores} stores steady, ack p99 < 1 s | worst {1000 * p99:.0f} ms | "
             f"{yes(p99 < 1.0 and all(r['steady']['unacked'] == 0 for r in results))} |")
    rss = max(max(r["drain"]["hwm_kb"]) for r in results)
    t.append(f"| a worker < 50 MB RSS while draining | worst {mb(rss)} | {yes(rss < 50 * 1024)} |")
    for backend in ("sqlite", "postgresql"):
        rs = [r for r in results if r["backend"] == backend]
        if rs:
            w = max(r["drain"]["cpu_us_per_event"] for r in rs)
            t.append(f"| {backend}: ≤ 12 µs CPU per event while draining (all workers) | "
                     f"worst {w:.1f} µs | {yes(w <= 12)} |")
    lines += ["", "| target (issue 21) | measured | |", "| --- | --- | --- |"] + t
    cb, ce = ceil["batch"], ceil["event"]
    lines += ["", f"mosquitto's own QoS 1 ceiling, same run, no HQ (sync_load.py's minimal "
              f"publisher, 100 messages in flight, to a QoS 1 subscriber): "
              f"{cb['per_second']:,.0f} messages/s of {cb['size']:,} bytes (one batch of "
              f"{batch_events} events) = {ceil_events:,.0f} events/s; "
              f"{ce['per_second']:,.0f} messages/s of {ce['size']} bytes (one event). The "
              f"best drain above, {best:,.0f} events/s end to end ({best_span:,.0f} over the "
              f"commits), is {best / ceil_events:.3f}× ({best_span / ceil_events:.3f}×) the "
              "broker's ceiling at this batch size: HQ, not the broker, is the limit."]
    lines += ["", "The warm-up column: events published in the first "
              f"{a.warmup:g} s after the last store connected, while HQ was still taking in "
              f"the {a.steady_stores} stores' birth statuses (each worker records every "
              "status: the status subscription is not shared)."]
    if a.notes:
        lines += ["", open(a.notes).read().rstrip("\n")]
    if any(r["problems"] for r in results):
        lines += ["", "**HQ ended incomplete in:** " + ", ".join(
            f"{r['backend']}/{r['workers']}" for r in results if r["problems"])]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=f"{ROOT}/build/release/storewatch")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--drain-stores", type=int, default=1000)
    ap.add_argument("--backlog", type=int, default=100)
    ap.add_argument("--drain-runs", type=int, default=3,
                    help="drains per configuration (the median is reported; this shared machine "
                         "varies by a quarter from run to run)")
    ap.add_argument("--steady-stores", type=int, default=5000)
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--notes", help="a Markdown file appended to the report's section")
    ap.add_argument("--steady-seconds", type=float, default=30.0)
    ap.add_argument("--ceiling-batches", type=int, default=3000)
    ap.add_argument("--ceiling-events", type=int, default=50000)
    ap.add_argument("--pg-shared-buffers", default="128MB")
    ap.add_argument("--merge", help="a --json file of an earlier run: its results for the "
                    "backends not run now go into the report")
    ap.add_argument("--from-json", help="only write docs/BENCHMARKS.md's section from the "
                    "--json file of a run (the run's options must be given again)")
    ap.add_argument("--pg-version", default="?", help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    a = ap.parse_args()

    if a.from_json:
        # Re-renders the section from a --json file (its run's own figures).
        d = json.load(open(a.from_json))
        m = d.get("meta", {})
        a.pg_version = m.get("pg_version", a.pg_version)
        text = report(a, m.get("started", "?"), d["results"], d["ceiling"],
                      m.get("batch_events", 100), m.get("cmdline", "?"),
                      m.get("load_before", "?"), m.get("load_after", "?"))
        benchlib.write_section(f"{ROOT}/docs/BENCHMARKS.md", SECTION, text)
        log("docs/BENCHMARKS.md updated")
        return 0
    backends = a.backends.split(",")
    if not shutil.which("mosquitto"):
        print("fleet_load: SKIP: mosquitto is not installed (scripts/bootstrap.sh)")
        return 77
    if "postgresql" in backends and not (benchlib.pg_bin() and shutil.which("psql")):
        print("fleet_load: SKIP: no PostgreSQL server here (/usr/lib/postgresql/*/bin/initdb, "
              "psql): scripts/bootstrap.sh installs Debian's postgresql")
        return 77
    if not os.access(a.bin, os.X_OK):
        fail(f"{a.bin} is not there: build it first (cmake --preset release)")
    sync_load.raise_nofile()
    # SIGTERM ends the run through the finally below (the PostgreSQL cluster
    # is a daemon: the children's death signal does not reach it).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load_before = benchlib.loadavg()
    work = tempfile.mkdtemp(prefix="storewatch-fleet-")
    procs = Procs(work)
    pg = None
    results = []
    try:
        if "postgresql" in backends:
            pg = benchlib.PgCluster(f"max_connections = 60\nshared_buffers = "
                                    f"{a.pg_shared_buffers}\n")
            a.pg_version = pg.sql("postgres", "SHOW server_version")[0][0]
        else:
            a.pg_version = "—"
        if a.merge:
            # Results of an earlier run for the backends not run now.
            results += [r for r in json.load(open(a.merge))["results"]
                        if r["backend"] not in backends]
        for backend in backends:
            for w in [int(x) for x in a.workers.split(",")]:
                results.append(run_config(a, procs, a.bin, work, pg if backend == "postgresql"
                                          else None, backend, w))
        ceil = None
        if a.write or a.json:
            # Messages of one event and of one 100-event batch as the simulator
            # sends them (envelope included).
            ev = int(results[0]["drain"]["event_bytes"]) if results else 600
            a.batch_events = min(100, (65536 - 60) // (ev + 1))
            ceil = ceiling(a, procs, work, a.batch_events * (ev + 1) + 40, ev + 40)
    finally:
        procs.stop_all()
        if pg:
            pg.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    bad = [r for r in results if r["problems"] or not r["drain"]["ok"] or not r["steady"]["ok"]]
    if procs.bad_exits:
        log("bad exits: " + "; ".join(procs.bad_exits))
    cmdline = "python3 tests/bench/fleet_load.py " + " ".join(
        x for x in sys.argv[1:] if x != "--keep")
    meta = {"started": started, "pg_version": a.pg_version,
            "batch_events": getattr(a, "batch_events", 100), "cmdline": cmdline,
            "load_before": load_before, "load_after": benchlib.loadavg()}
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "ceiling": ceil, "meta": meta}, f, indent=1)
    if a.write and ceil:
        text = report(a, started, results, ceil, meta["batch_events"], cmdline, load_before,
                      meta["load_after"])
        benchlib.write_section(f"{ROOT}/docs/BENCHMARKS.md", SECTION, text)
        log("docs/BENCHMARKS.md updated")
    if bad or procs.bad_exits:
        for r in bad:
            log(f"{r['backend']}/{r['workers']}: incomplete: {r['problems'][:5]}")
        return 1
    log("HQ complete in every part")
    return 0


if __name__ == "__main__":
    sys.exit(main())
