#!/usr/bin/env python3
"""storelab — a store simulator for storewatch's demo, tests and benchmarks.

It plays many fake store devices on loopback addresses (127.0.0.0/8 works
without set-up), each of a kind (plain TCP, POS HTTP health endpoint, ESC/POS
printer, ...) and each with faults you can switch while it runs.

Devices come from a lab file, from a storewatch config, or both:

  # lab.toml
  [[device]]
  name = "printer-01"
  kind = "escpos"          # see `storelab.py kinds`
  host = "127.21.0.31"
  port = 9100
  fault = "near_end"       # optional: start with a fault

  storelab.py serve --devices lab.toml --control /tmp/lab.sock
  storelab.py serve --config demo.toml --control /tmp/lab.sock
  storelab.py ctl --control /tmp/lab.sock fault printer-01 paper_end
  storelab.py ctl --control /tmp/lab.sock fault printer-01 none
  storelab.py ctl --control /tmp/lab.sock down lane-02-pos    # same as: fault NAME down
  storelab.py ctl --control /tmp/lab.sock up lane-02-pos      # same as: fault NAME none
  storelab.py ctl --control /tmp/lab.sock list
  storelab.py ctl --control /tmp/lab.sock stats printer-01    # connections seen, open now
  storelab.py kinds

https devices (kind = "https", cert = "good" | "expired" | "not_yet_valid" |
"wrong_host" | "unknown_ca" | "expiring") get certificates from a test CA that
storelab makes at start-up in `serve --pki DIR`; clients trust DIR/ca.pem.

With --config, every probe whose type has a device kind (tcp, and the kinds
the modules below map) gets a device at its host and port.

Python standard library only.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lab_core  # noqa: E402
from lab_core import Device, StreamDevice, KINDS, register  # noqa: E402

# One import per device kind module; each registers its kinds in KINDS.
import lab_ntp  # noqa: E402,F401
import lab_tcp  # noqa: E402,F401
import lab_escpos  # noqa: E402,F401
import lab_dns  # noqa: E402,F401
import lab_http  # noqa: E402,F401


def devices_from_lab(path):
    with open(path, "rb") as f:
        spec = tomllib.load(f)
    devices = []
    for i, d in enumerate(spec.get("device", []), start=1):
        kind = d.get("kind")
        if kind not in KINDS:
            raise SystemExit(f"storelab: {path}: device #{i}: unknown kind {kind!r} "
                             f"(known: {', '.join(sorted(KINDS))})")
        try:
            devices.append(KINDS[kind].from_spec(d))
        except (KeyError, ValueError) as e:
            raise SystemExit(f"storelab: {path}: device #{i} ({d.get('name')}): {e}")
    return devices


def devices_from_config(path):
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    devices = []
    for probe in cfg.get("probe", []):
        for cls in KINDS.values():
            d = cls.from_probe(probe)
            if d is not None:
                devices.append(d)
                break
    return devices


async def serve(args):
    devices = {}
    for d in (devices_from_lab(args.devices) if args.devices else []) + \
             (devices_from_config(args.config) if args.config else []):
        if d.name in devices:
            raise SystemExit(f"storelab: two devices are named {d.name!r}")
        devices[d.name] = d
    lab_core.SETTINGS["pki"] = args.pki
    for d in devices.values():
        await d.start()

    async def switch(d, fault):
        try:
            await d.set_fault(fault)
        except OSError as e:  # the port could not be bound or listened on
            return {"ok": False, "error": f"{d.name}: {fault}: {e}"}
        return {"ok": True, **d.describe()}

    async def control(reader, writer):
        try:
            line = (await asyncio.wait_for(reader.readline(), timeout=5)).decode().strip()
        except (asyncio.TimeoutError, ConnectionError, UnicodeDecodeError):
            writer.close()
            return
        words = line.split()
        reply = {"ok": False,
                 "error": "usage: list | up NAME | down NAME | fault NAME FAULT | stats NAME"}
        if words == ["list"]:
            reply = {"ok": True, "devices": [d.describe() for d in devices.values()]}
        elif len(words) in (2, 3) and words[0] in ("up", "down", "fault", "stats"):
            d = devices.get(words[1])
            if d is None:
                reply = {"ok": False, "error": f"no device {words[1]}"}
            elif words[0] == "stats" and len(words) == 2:
                reply = {"ok": True, **d.describe()}
            elif words[0] in ("up", "down") and len(words) == 2:
                reply = await switch(d, "none" if words[0] == "up" else "down")
            elif words[0] == "fault" and len(words) == 3:
                if words[2] not in d.faults():
                    reply = {"ok": False, "error": f"{d.name} ({d.kind}) has no fault {words[2]!r}; "
                                                   f"known: {', '.join(d.faults())}"}
                else:
                    reply = await switch(d, words[2])
        writer.write((json.dumps(reply) + "\n").encode())
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    if os.path.exists(args.control):
        os.unlink(args.control)
    ctl = await asyncio.start_unix_server(control, path=args.control)
    print(f"storelab: {len(devices)} devices up, control socket {args.control}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    ctl.close()
    for d in devices.values():
        await d.stop()
    if os.path.exists(args.control):
        os.unlink(args.control)


def ctl(args):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(args.control)
        s.sendall((" ".join(args.words) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    print(json.dumps(reply))
    return 0 if reply.get("ok") else 1


def kinds(_args):
    for name in sorted(KINDS):
        cls = KINDS[name]
        print(f"{name:10} {cls.__doc__.strip().splitlines()[0] if cls.__doc__ else ''}")
        print(f"{'':10} faults: {', '.join(cls.FAULTS)}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="play the devices of a lab file and/or a storewatch config")
    s.add_argument("--devices", help="lab file with [[device]] tables")
    s.add_argument("--config", help="storewatch config: play every device its probes watch")
    s.add_argument("--control", required=True, help="Unix socket for ctl commands")
    s.add_argument("--pki", help="directory for the test CA (DIR/ca.pem) and the https devices' "
                                 "certificates; default: a temporary one next to --control, "
                                 "removed on exit")
    c = sub.add_parser("ctl", help="send a command to a running storelab")
    c.add_argument("--control", required=True)
    c.add_argument("words", nargs="+")
    sub.add_parser("kinds", help="list device kinds and their faults")
    args = p.parse_args()
    if args.cmd == "serve":
        if not args.devices and not args.config:
            p.error("serve needs --devices, --config or both")
        temporary_pki = None
        if not args.pki:
            temporary_pki = args.pki = tempfile.mkdtemp(
                prefix="storelab-pki-", dir=os.path.dirname(os.path.abspath(args.control)))
        try:
            asyncio.run(serve(args))
        finally:
            if temporary_pki:
                shutil.rmtree(temporary_pki, ignore_errors=True)
        return 0
    if args.cmd == "kinds":
        return kinds(args)
    return ctl(args)


if __name__ == "__main__":
    sys.exit(main())
