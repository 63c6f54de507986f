#!/usr/bin/env python3
"""storelab — a tiny store simulator for storewatch's demo and tests.

It reads a storewatch config and plays every device its probes watch: for each
`tcp` probe it listens on host:port (addresses in 127.0.0.0/8 work without
set-up). A control socket takes a device down (its listener closes, so
connections are refused, as when a lane's POS service dies) and back up.

  storelab.py serve --config demo.toml --control /tmp/lab.sock
  storelab.py ctl --control /tmp/lab.sock down lane-02-pos
  storelab.py ctl --control /tmp/lab.sock up lane-02-pos
  storelab.py ctl --control /tmp/lab.sock list

Python standard library only.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import tomllib


class Device:
    def __init__(self, name, kind, host, port):
        self.name, self.kind, self.host, self.port = name, kind, host, port
        self.server = None

    @property
    def up(self):
        return self.server is not None

    async def start(self):
        if self.server is None:
            self.server = await asyncio.start_server(
                self.serve, self.host, self.port, reuse_address=True)

    async def stop(self):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def serve(self, reader, writer):
        # A plain TCP device: accept and let the prober close. Bounded so a
        # client that never closes does not keep a task forever.
        try:
            await asyncio.wait_for(reader.read(1024), timeout=5)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


def devices_from_config(path):
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    devices = []
    for probe in cfg.get("probe", []):
        if probe.get("type") == "tcp":
            devices.append(Device(probe["name"], "tcp", probe["host"], int(probe["port"])))
    return devices


async def serve(args):
    devices = {d.name: d for d in devices_from_config(args.config)}
    for d in devices.values():
        await d.start()

    async def control(reader, writer):
        line = (await reader.readline()).decode().strip()
        words = line.split()
        reply = {"ok": False, "error": "usage: up NAME | down NAME | list"}
        if words == ["list"]:
            reply = {"ok": True, "devices": [
                {"name": d.name, "kind": d.kind, "host": d.host, "port": d.port, "up": d.up}
                for d in devices.values()]}
        elif len(words) == 2 and words[0] in ("up", "down"):
            d = devices.get(words[1])
            if d is None:
                reply = {"ok": False, "error": f"no device {words[1]}"}
            else:
                await (d.start() if words[0] == "up" else d.stop())
                reply = {"ok": True, "name": d.name, "up": d.up}
        writer.write((json.dumps(reply) + "\n").encode())
        await writer.drain()
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="play the devices of a storewatch config")
    s.add_argument("--config", required=True)
    s.add_argument("--control", required=True, help="Unix socket for up/down commands")
    c = sub.add_parser("ctl", help="send a command to a running storelab")
    c.add_argument("--control", required=True)
    c.add_argument("words", nargs="+")
    args = p.parse_args()
    if args.cmd == "serve":
        asyncio.run(serve(args))
        return 0
    return ctl(args)


if __name__ == "__main__":
    sys.exit(main())
