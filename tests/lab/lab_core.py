"""storelab's device model: a Device has a kind, an address and a fault that
can change at run time. Kind modules subclass StreamDevice (TCP) or
DatagramDevice (UDP) and register themselves with @register."""

import asyncio
import socket

# kind name -> Device subclass
KINDS = {}

# Options of `storelab.py serve` that device kinds read, set before any
# device starts: "pki" is the directory for test certificates.
SETTINGS = {}

# How long "slow" delays an answer, and how long "hang" holds a connection.
SLOW_SECONDS = 2.0
HANG_SECONDS = 120.0


def register(cls):
    KINDS[cls.KIND] = cls
    return cls


class Device:
    """Base: a named device at host:port with a switchable fault."""
    KIND = ""
    DEFAULT_PORT = 0
    # Faults every device has; kinds extend this tuple.
    FAULTS = ("none", "down", "hang", "slow")
    # The storewatch probe type this kind plays in `serve --config` mode.
    PROBE_TYPE = None
    # Keys a lab file may set besides name, kind, host, port, fault.
    OPTIONS = ()

    def __init__(self, name, host, port, fault="none", **options):
        self.name, self.host, self.port = name, host, int(port)
        self.fault = "none"
        self.initial_fault = fault
        self.options = options
        self.connections = 0       # connections (or datagrams) seen
        self.open_connections = 0  # connections open right now
        self.max_open = 0          # most connections open at once

    @classmethod
    def from_spec(cls, d):
        extra = set(d) - {"name", "kind", "host", "port", "fault"} - set(cls.OPTIONS)
        if extra:
            raise ValueError(f"unknown keys {sorted(extra)} for kind {cls.KIND} "
                             f"(its options: {', '.join(cls.OPTIONS) or 'none'})")
        fault = d.get("fault", "none")
        if fault not in cls.FAULTS:
            raise ValueError(f"kind {cls.KIND} has no fault {fault!r}")
        options = {k: d[k] for k in cls.OPTIONS if k in d}
        return cls(d["name"], d["host"], d.get("port", cls.DEFAULT_PORT), fault, **options)

    @classmethod
    def from_probe(cls, probe):
        """A device for a storewatch [[probe]] table, or None if not this kind's."""
        if cls.PROBE_TYPE is None or probe.get("type") != cls.PROBE_TYPE:
            return None
        return cls(probe["name"], probe["host"], probe.get("port", cls.DEFAULT_PORT))

    @classmethod
    def faults(cls):
        return cls.FAULTS

    @property
    def kind(self):
        return self.KIND

    @property
    def up(self):
        return self.fault != "down"

    async def start(self):
        await self.set_fault(self.initial_fault)

    async def stop(self):
        await self.close_listener()

    async def set_fault(self, fault):
        self.fault = fault
        if fault == "down":
            await self.close_listener()
        else:
            await self.open_listener()

    async def open_listener(self):
        raise NotImplementedError

    async def close_listener(self):
        raise NotImplementedError

    def describe(self):
        return {"name": self.name, "kind": self.KIND, "host": self.host, "port": self.port,
                "fault": self.fault, "up": self.up, "connections": self.connections,
                "open_connections": self.open_connections, "max_open": self.max_open}


def bound_tcp_socket(host, port):
    """A TCP socket bound to host:port and not listening. Connections to it
    are refused, as to a closed port, but the kernel hands the port to no one
    else meanwhile: not to a client's ephemeral port, and not to a connect()
    to the port itself (a TCP self-connect, which would look like a device
    that is up)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class StreamDevice(Device):
    """A TCP device. Subclasses implement session(reader, writer); the base
    counts connections and plays the common faults: hang (accept, then never
    answer), slow (answer after SLOW_SECONDS). While down, its port stays
    bound (see bound_tcp_socket), so it comes back on the same port."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.server = None
        self.held = None  # the bound socket while down

    def server_options(self):
        """Extra keyword arguments for asyncio.start_server (TLS, say)."""
        return {}

    async def open_listener(self):
        if self.server is None:
            sock = self.held or bound_tcp_socket(self.host, self.port)
            self.held = None
            self.port = sock.getsockname()[1]
            self.server = await asyncio.start_server(
                self._handle, sock=sock, backlog=1024, **self.server_options())

    async def close_listener(self):
        if self.server is not None:
            self.server.close()  # closes the listening socket now
            self.server = None
        if self.held is None:
            self.held = bound_tcp_socket(self.host, self.port)
            self.port = self.held.getsockname()[1]

    async def stop(self):
        await super().stop()
        if self.held is not None:
            self.held.close()
            self.held = None

    async def _handle(self, reader, writer):
        self.connections += 1
        self.open_connections += 1
        self.max_open = max(self.max_open, self.open_connections)
        try:
            if self.fault == "hang":
                # Read and discard until the client gives up; never answer.
                await asyncio.wait_for(drain_until_eof(reader), timeout=HANG_SECONDS)
                return
            if self.fault == "slow":
                await asyncio.sleep(SLOW_SECONDS)
            await asyncio.wait_for(self.session(reader, writer), timeout=HANG_SECONDS)
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()

    async def session(self, reader, writer):
        raise NotImplementedError


async def drain_until_eof(reader):
    while await reader.read(4096):
        pass


class DatagramDevice(Device):
    """A UDP device. Subclasses implement answer(data) -> bytes or None; hang
    drops every request, slow answers after SLOW_SECONDS."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.transport = None

    async def open_listener(self):
        if self.transport is None:
            loop = asyncio.get_running_loop()
            device = self

            class Protocol(asyncio.DatagramProtocol):
                def datagram_received(self, data, addr):
                    device.connections += 1
                    if device.fault == "hang":
                        return
                    reply = device.answer(data)
                    if reply is None:
                        return
                    if device.fault == "slow":
                        loop.call_later(SLOW_SECONDS, device._send, reply, addr)
                    else:
                        device._send(reply, addr)

            self.transport, _ = await loop.create_datagram_endpoint(
                Protocol, local_addr=(self.host, self.port), reuse_port=False)

    def _send(self, reply, addr):
        if self.transport is not None:
            self.transport.sendto(reply, addr)

    async def close_listener(self):
        if self.transport is not None:
            self.transport.close()
            self.transport = None
            # The socket itself closes on the loop's next turn: let it, so a
            # query right after `down` is refused rather than dropped.
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    def answer(self, data):
        raise NotImplementedError
