#!/usr/bin/env python3
"""A fleet of N stores speaking the storewatch wire protocol (DESIGN §6) to a
real MQTT broker, for tests/bench/fleet_load.py.

Each store is its own Paho MQTT 5 client (client id = store id, clean start,
keep-alive 30 s) with the last will `{"online":false,"reason":"connection_lost"}`
retained on P/stores/S/status; on connect it publishes its retained birth
status, subscribes to its retained P/stores/S/ack and sends every event above
the highest ack it has seen, in seq order, as `{"v":1,"store":S,"events":[…]}`
batches of up to BATCH events at QoS 1 with at most INFLIGHT batches not yet
PUBACKed — as `storewatch run` does (docs/SYNC.md). When events are
outstanding and the ack has not moved for ACK_TIMEOUT, everything above the
ack is sent again (2×, 4×, 8× the wait for rounds in a row). A lost connection
is re-made with full jitter, and sending starts again from the ack.

All clients share one epoll loop in one thread (Paho's loop_read/loop_write/
loop_misc driven from outside), so 5,000 of them fit one process.

Modes:
  drain   connect, publish BACKLOG events per store (HQ may be down: the broker
          queues them for HQ's session), print {"phase":"published"} once the
          broker PUBACKed them all, then {"phase":"acked"} once every store's
          ack reached its newest seq.
  steady  connect, then each store publishes one event every PERIOD s (each on
          its own phase); after WARMUP s, latencies publish → ack covering the
          seq are recorded for SECONDS s; prints {"phase":"steady", p50, p99…};
          then waits until every store is acked and prints {"phase":"acked"}.
Both then wait for stdin to close (or SIGTERM), publish the retained
`{"online":false,"reason":"shutdown"}` status and disconnect; the last line is
{"phase":"done","last_seq":{store: newest seq}}. Lines go to stdout as JSON.
"""

import argparse
import json
import os
import random
import resource
import selectors
import signal
import sys
import threading
import time

try:
    import paho.mqtt.client as mqtt
except ImportError:  # Debian's python3-paho-mqtt, under another interpreter
    sys.path.append("/usr/lib/python3/dist-packages")
    import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402


def out(**kw):
    kw.setdefault("t", time.monotonic())
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def uid():
    h = random.getrandbits(128)
    h = (h & ~(0xF << 76)) | (0x7 << 76)
    s = f"{h:032x}"
    return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"


class Store:
    def __init__(self, fleet, sid):
        self.fleet = fleet
        self.id = sid
        self.events = {}       # seq -> event text (kept until acked, like the outbox)
        self.seq = 0           # newest seq written
        self.acked = 0         # highest ack seen
        self.next = 1          # next seq to send on this connection
        self.inflight = 0      # batches not PUBACKed
        self.mids = {}         # mid -> last seq of the batch
        self.ack_moved = time.monotonic()
        self.overdue = 0
        self.connected = False
        self.published_to = 0  # highest seq PUBACKed by the broker
        self.attempt = 0
        self.reconnect_at = None
        self.pub_time = {}     # seq -> publish time (steady mode, measured ones)
        self.incident = uid()
        self.c = self.make_client()

    def make_client(self):
        f = self.fleet
        c = mqtt.Client(client_id=self.id, protocol=mqtt.MQTTv5, userdata=self)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        will = Properties(PacketTypes.WILLMESSAGE)
        c.will_set(f.topic(self.id, "status"), self.status(False, "connection_lost"), qos=1,
                   retain=True, properties=will)
        c.on_connect = on_connect
        c.on_message = on_message
        c.on_publish = on_publish
        c.on_disconnect = on_disconnect
        return c

    def status(self, online, reason=""):
        s = {"v": 1, "store": self.id, "online": online, "session": self.fleet.session,
             "version": "fleet-sim", "open": {"critical": 0, "high": 0, "medium": 0, "low": 0,
                                               "info": 0},
             "queued": self.seq - self.acked, "at": now_rfc3339()}
        if reason:
            s["reason"] = reason
        return json.dumps(s, separators=(",", ":"))

    def write_event(self):
        """One incident event, as the agent's outbox holds it (body members,
        then the header fields; about 600 bytes)."""
        self.seq += 1
        n = self.seq
        at = now_rfc3339()
        opened = n % 2 == 1
        if opened:
            self.incident = uid()
        probe = f"lane-{n % 24:02d}-pos"
        state = {"uid": self.incident, "probe": probe, "state": "open" if opened else "resolved",
                 "severity": "high", "priority": "P2", "t_fault": at, "t_detect": at,
                 "t_ack": None, "t_restored": None if opened else at,
                 "t_resolved": None if opened else at, "t_closed": None, "self_healed": False,
                 "suppressed_by": None, "flapping": False, "in_maintenance": False,
                 "reopen_count": 0,
                 "summary": f"{probe}: connect to 10.20.1.{n % 250}:8080 failed: "
                            "connection refused" if opened else f"{probe}: recovered",
                 "dedup_key": f"{self.id}/{probe}", "condition": "down"}
        e = {"incident_state": state, "seq": n, "uid": uid(), "incident": self.incident,
             "type": "opened" if opened else "resolved", "at": at, "actor": "agent"}
        text = json.dumps(e, separators=(",", ":"))
        self.events[n] = text
        self.fleet.event_bytes += len(text)
        return n

    def pump(self, most=None):
        """Sends batches above the ack while the window allows (at most
        `most` of them, if given)."""
        f = self.fleet
        if not self.connected:
            return
        while self.inflight < f.inflight and self.next <= self.seq and most != 0:
            if most is not None:
                most -= 1
            # Up to `batch` events and at most 64 KB (wire::kMaxPayload) a message.
            room = 65536 - (30 + len(self.id))
            texts, last = [], self.next - 1
            while last < self.seq and len(texts) < f.batch:
                t = self.events[last + 1]
                if texts and len(t) + 1 > room:
                    break
                texts.append(t)
                room -= len(t) + 1
                last += 1
            payload = ('{"events":[' + ",".join(texts) + '],"store":"' + self.id + '","v":1}')
            t = time.monotonic()
            if f.measuring is not None:
                for s in range(self.next, last + 1):
                    self.pub_time.setdefault(s, (t, f.measuring))
            info = self.c.publish(f.topic(self.id, "events"), payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            self.mids[info.mid] = last
            self.inflight += 1
            self.next = last + 1
            f.dirty.add(self)

    def on_ack(self, n):
        if n <= self.acked:
            return
        if n > self.seq:
            self.fleet.errors.append(f"{self.id}: ack {n} above the newest seq {self.seq}")
            return
        t = time.monotonic()
        for s in range(self.acked + 1, n + 1):
            self.events.pop(s, None)
            p = self.pub_time.pop(s, None)
            if p is not None:
                (self.fleet.latencies if p[1] else self.fleet.warm_latencies).append(t - p[0])
        self.acked = n
        self.ack_moved = t
        self.overdue = 0
        if self.next <= n:
            self.next = n + 1

    def check_overdue(self, now):
        f = self.fleet
        if not self.connected or self.acked >= self.seq or self.next <= self.acked + 1:
            return
        wait = f.ack_timeout * (1 << min(self.overdue, 3))
        if now - self.ack_moved >= wait:
            self.overdue += 1
            self.ack_moved = now
            self.next = self.acked + 1
            f.resent_rounds += 1
            self.pump()


def on_connect(c, store, flags, rc, props=None):
    f = store.fleet
    if rc != 0:
        f.errors.append(f"{store.id}: CONNACK {rc}")
        return
    store.connected = True
    store.attempt = 0
    store.inflight = 0
    store.mids.clear()
    store.next = store.acked + 1
    c.publish(f.topic(store.id, "status"), store.status(True), qos=1, retain=True)
    c.subscribe(f.topic(store.id, "ack"), qos=1)
    f.connected += 1
    store.pump()
    f.dirty.add(store)


def on_disconnect(c, store, rc, props=None):
    f = store.fleet
    if store.connected:
        f.connected -= 1
    store.connected = False
    if not f.stopping:
        f.lost += 1
        store.attempt += 1
        store.reconnect_at = time.monotonic() + random.uniform(
            0, min(30.0, 0.5 * (1 << min(store.attempt, 6))))


def on_message(c, store, msg):
    try:
        j = json.loads(msg.payload)
        n = int(j["acked_seq"])
    except (ValueError, KeyError, TypeError):
        store.fleet.errors.append(f"{store.id}: bad ack {msg.payload[:100]!r}")
        return
    store.on_ack(n)


def on_publish(c, store, mid):
    last = store.mids.pop(mid, None)
    if last is None:
        return
    store.inflight -= 1
    store.published_to = max(store.published_to, last)
    store.pump()


class Fleet:
    def __init__(self, a):
        self.a = a
        self.prefix = a.prefix
        self.batch = a.batch
        self.inflight = a.inflight
        self.ack_timeout = a.ack_timeout
        self.session = int(time.time())
        self.sel = selectors.EpollSelector()
        self.fds = {}
        self.dirty = set()
        self.errors = []
        self.latencies = []       # publish → ack, events published in the window
        self.warm_latencies = []  # the same for the warm-up (the connect storm)
        self.measuring = None     # None: not timed; False: warm-up; True: window
        self.connected = 0
        self.lost = 0
        self.resent_rounds = 0
        self.event_bytes = 0
        self.stopping = False
        self.stores = [Store(self, f"{a.id_prefix}{i:05d}") for i in range(a.stores)]

    def topic(self, store, kind):
        return f"{self.prefix}/stores/{store}/{kind}"

    def register(self, store):
        sock = store.c.socket()
        if sock is None:
            return
        fd = sock.fileno()
        old = self.fds.get(fd)
        if old is not None:
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
        self.sel.register(fd, selectors.EVENT_READ, store)
        self.fds[fd] = store

    def connect(self, store):
        try:
            store.c.connect(self.a.host, self.a.port, keepalive=30, clean_start=True)
        except OSError as e:
            self.errors.append(f"{store.id}: connect: {e}")
            store.attempt += 1
            store.reconnect_at = time.monotonic() + random.uniform(0, 2.0)
            return
        store.reconnect_at = None
        self.register(store)
        self.dirty.add(store)

    def step(self, timeout=0.02):
        for key, _ in self.sel.select(timeout):
            store = key.data
            rc = store.c.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self.drop(key.fd, store)
            else:
                self.dirty.add(store)
        dirty, self.dirty = self.dirty, set()
        for store in dirty:
            if store.c.want_write():
                rc = store.c.loop_write()
                if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                    sock = store.c.socket()
                    self.drop(sock.fileno() if sock else None, store)
                elif store.c.want_write():
                    self.dirty.add(store)

    def drop(self, fd, store):
        if fd is not None and self.fds.get(fd) is store:
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
            del self.fds[fd]

    def housekeeping(self, now):
        for s in self.stores:
            if s.reconnect_at is not None and now >= s.reconnect_at:
                self.connect(s)
            elif s.connected:
                s.c.loop_misc()
                s.check_overdue(now)

    def run_until(self, pred, timeout=None, every=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        last_misc = time.monotonic()
        while not pred():
            if deadline is not None and time.monotonic() > deadline:
                return False
            self.step()
            now = time.monotonic()
            if now - last_misc >= 1.0:
                self.housekeeping(now)
                last_misc = now
            if every:
                every(now)
        return True

    def connect_all(self):
        t0 = time.monotonic()
        for i, s in enumerate(self.stores):
            self.connect(s)
            if i % 100 == 99:
                self.step(0)
        ok = self.run_until(lambda: self.connected >= len(self.stores), timeout=300)
        out(phase="connected", stores=self.connected, seconds=time.monotonic() - t0, ok=ok,
            errors=self.errors[:5])

    def all_acked(self):
        return all(s.acked >= s.seq for s in self.stores)

    def shutdown(self):
        self.stopping = True
        for s in self.stores:
            if s.connected:
                s.c.publish(self.topic(s.id, "status"), s.status(False, "shutdown"), qos=1,
                            retain=True)
                self.dirty.add(s)
        self.run_until(lambda: all(not s.connected or not s.c._out_messages
                                   for s in self.stores), timeout=20)
        for s in self.stores:
            if s.connected:
                s.c.disconnect()
                self.dirty.add(s)
        self.step(0)
        for s in self.stores:
            if s.c.want_write():
                s.c.loop_write()


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["drain", "steady"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prefix", default="storewatch/v1")
    ap.add_argument("--id-prefix", default="fleet-")
    ap.add_argument("--stores", type=int, default=1000)
    ap.add_argument("--backlog", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100, help="batch_max_events")
    ap.add_argument("--inflight", type=int, default=4, help="inflight_batches")
    ap.add_argument("--ack-timeout", type=float, default=30.0)
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--acked-timeout", type=float, default=600.0)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Paho makes a socket pair per client besides its socket: 3 descriptors.
    if 3 * a.stores + 64 > hard:
        raise SystemExit(f"fleet_sim: {a.stores} stores need {3 * a.stores + 64} file "
                         f"descriptors, the hard limit is {hard}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    fleet = Fleet(a)
    fleet.connect_all()
    if a.mode == "drain":
        t0 = time.monotonic()
        for s in fleet.stores:
            for _ in range(a.backlog):
                s.write_event()
        # Stores are independent: their batches reach the broker interleaved,
        # not each store's back to back. A batch per store per round, the
        # stores in a new random order each round (back to back, the
        # broker's round-robin over the workers' shared subscription gave
        # every store's first batch to one worker and its second to another).
        order = list(fleet.stores)
        for _ in range(a.inflight):
            random.shuffle(order)
            for s in order:
                s.pump(most=1)
        fleet.run_until(lambda: all(s.published_to >= s.seq for s in fleet.stores) or
                        stop.is_set())
        n = sum(s.seq for s in fleet.stores)
        out(phase="published", events=n, event_bytes=fleet.event_bytes / max(1, n),
            seconds=time.monotonic() - t0)
    else:
        start = time.monotonic()
        phase = {s.id: random.uniform(0, a.period) for s in fleet.stores}
        due = sorted((start + phase[s.id], i) for i, s in enumerate(fleet.stores))
        import heapq
        heapq.heapify(due)
        end_measure = start + a.warmup + a.seconds
        sent = {"n": 0}

        def tick(now):
            fleet.measuring = a.warmup <= now - start < a.warmup + a.seconds
            while due and due[0][0] <= now and now < end_measure:
                at, i = heapq.heappop(due)
                s = fleet.stores[i]
                s.write_event()
                sent["n"] += 1
                s.pump()
                heapq.heappush(due, (at + a.period, i))
        fleet.run_until(lambda: time.monotonic() >= end_measure or stop.is_set(), every=tick)
        fleet.measuring = None
        # Events published in the window and not yet acked count at the end.
        fleet.run_until(lambda: all(not any(p[1] for p in s.pub_time.values())
                                    for s in fleet.stores) or stop.is_set(), timeout=30)
        lat = fleet.latencies
        missing = sum(1 for s in fleet.stores for p in s.pub_time.values() if p[1])
        out(phase="steady", measured=len(lat), unacked=missing, sent=sent["n"],
            p50=pct(lat, 50), p90=pct(lat, 90), p99=pct(lat, 99), max=max(lat, default=None),
            connected=fleet.connected, lost=fleet.lost,
            warm_measured=len(fleet.warm_latencies), warm_p50=pct(fleet.warm_latencies, 50),
            warm_p99=pct(fleet.warm_latencies, 99), warm_max=max(fleet.warm_latencies,
                                                                  default=None))
    ok = fleet.run_until(lambda: fleet.all_acked() or stop.is_set(), timeout=a.acked_timeout)
    out(phase="acked", ok=ok and fleet.all_acked(), events=sum(s.seq for s in fleet.stores),
        resent_rounds=fleet.resent_rounds, lost=fleet.lost, errors=fleet.errors[:5])
    fleet.run_until(lambda: stop.is_set())
    fleet.shutdown()
    out(phase="done", last_seq={s.id: s.seq for s in fleet.stores}, errors=fleet.errors[:5])


if __name__ == "__main__":
    main()
