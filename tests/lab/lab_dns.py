"""A tiny authoritative DNS server: a small built-in store zone plus the
records a lab file gives, over UDP and (for truncated answers) TCP on the
same port.

  [[device]]
  name = "store-dns"
  kind = "dns"
  host = "127.0.0.1"
  port = 5353
  records = { "pos.store.lan" = "10.20.1.11", "alias.store.lan" = "CNAME pos.store.lan",
              "store.lan" = ["MX 10 mail.store.lan", "TXT hello"] }

A record value is an IPv4 address (A), an IPv6 address (AAAA) or "TYPE
data" for CNAME, MX ("MX 10 mail.store.lan"), TXT, NS and PTR; a list gives
several records. A name in `records` replaces the built-in one.
"""

import asyncio
import ipaddress
import struct

from lab_core import DatagramDevice, HANG_SECONDS, SLOW_SECONDS, drain_until_eof, register

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
UDP_LIMIT = 512  # no EDNS: a bigger answer is truncated (TC) over UDP
TTL = 60

BUILTIN = {
    "store.lan": ["NS ns.store.lan", "MX 10 mail.store.lan", "TXT v=spf1 -all"],
    "ns.store.lan": ["10.20.0.53"],
    "mail.store.lan": ["10.20.0.25"],
    "gateway.store.lan": ["10.20.0.1", "fd00:20::1"],
    "pos.store.lan": ["10.20.1.11"],
    "www.store.lan": ["CNAME gateway.store.lan"],
    # Forty addresses do not fit in 512 bytes: answered over TCP only.
    "many.store.lan": [f"10.20.9.{i}" for i in range(1, 41)],
}


def parse_record(value):
    """'10.0.0.1' -> (A, bytes), 'MX 10 mail.x' -> (MX, bytes), ..."""
    value = value.strip()
    try:
        ip = ipaddress.ip_address(value)
        return (TYPES["A"], ip.packed) if ip.version == 4 else (TYPES["AAAA"], ip.packed)
    except ValueError:
        pass
    rtype, _, data = value.partition(" ")
    rtype = rtype.upper()
    if rtype not in TYPES:
        raise ValueError(f"record {value!r}: give an IP address or TYPE data "
                         f"(TYPE one of {', '.join(TYPES)})")
    data = data.strip()
    if rtype in ("A", "AAAA"):
        return TYPES[rtype], ipaddress.ip_address(data).packed
    if rtype in ("CNAME", "NS", "PTR"):
        return TYPES[rtype], encode_name(data)
    if rtype == "MX":
        pref, _, host = data.partition(" ")
        return TYPES[rtype], struct.pack("!H", int(pref)) + encode_name(host.strip())
    # TXT: one character-string per 255 bytes
    raw = data.encode()
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return TYPES[rtype], b"".join(bytes((len(c),)) + c for c in chunks)


def encode_name(name):
    name = name.rstrip(".")
    out = b""
    for label in name.split(".") if name else []:
        out += bytes((len(label),)) + label.encode()
    return out + b"\x00"


def read_qname(data, pos):
    labels = []
    while True:
        if pos >= len(data):
            raise ValueError("truncated name")
        n = data[pos]
        if n == 0:
            return ".".join(labels), pos + 1
        if n & 0xC0:
            raise ValueError("compression in a query")
        labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n


def load_zone(extra):
    zone = {}
    for source in (BUILTIN, extra or {}):
        for name, values in source.items():
            if isinstance(values, str):
                values = [values]
            zone[name.lower().rstrip(".")] = [parse_record(v) for v in values]
    return zone


@register
class DnsServer(DatagramDevice):
    """authoritative DNS server for a small store zone (UDP, TCP when truncated)"""
    KIND = "dns"
    PROBE_TYPE = "dns"
    DEFAULT_PORT = 53
    OPTIONS = ("records",)
    FAULTS = DatagramDevice.FAULTS + ("servfail", "refused", "truncated", "garbage")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.zone = load_zone(self.options.get("records"))
        self.tcp_server = None
        self.tcp_queries = 0

    @classmethod
    def from_probe(cls, probe):
        if probe.get("type") != cls.PROBE_TYPE or not probe.get("server"):
            return None
        host, port = split_server(probe["server"])
        return cls(probe["name"], host, port)

    def describe(self):
        return {**super().describe(), "tcp_queries": self.tcp_queries}

    async def open_listener(self):
        await super().open_listener()
        if self.tcp_server is None:
            self.tcp_server = await asyncio.start_server(
                self._tcp_session, self.host, self.port, reuse_address=True)

    async def close_listener(self):
        await super().close_listener()  # the UDP socket is closed when it returns
        if self.tcp_server is not None:
            self.tcp_server.close()
            self.tcp_server = None

    async def _tcp_session(self, reader, writer):
        self.open_connections += 1
        self.max_open = max(self.max_open, self.open_connections)
        try:
            if self.fault == "hang":
                await asyncio.wait_for(drain_until_eof(reader), timeout=HANG_SECONDS)
                return
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                query = await reader.readexactly(length)
                self.tcp_queries += 1
                if self.fault == "slow":
                    await asyncio.sleep(SLOW_SECONDS)
                reply = self.reply(query, over_tcp=True)
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()

    def answer(self, data):
        return self.reply(data, over_tcp=False)

    def reply(self, query, over_tcp):
        if len(query) < 12:
            return None
        qid, flags, qdcount = struct.unpack("!HHH", query[:6])
        rd = flags & 0x0100
        try:
            if qdcount != 1 or flags & 0x8000:
                raise ValueError("not one question")
            qname, pos = read_qname(query, 12)
            qtype, qclass = struct.unpack("!HH", query[pos:pos + 4])
        except (ValueError, struct.error):
            return struct.pack("!HHHHHH", qid, 0x8000 | rd | FORMERR, 0, 0, 0, 0)
        question = encode_name(qname) + struct.pack("!HH", qtype, qclass)

        def message(rcode, answers=(), tc=False):
            head = struct.pack("!HHHHHH", qid, 0x8400 | rd | (0x0200 if tc else 0) | rcode,
                               1, len(answers), 0, 0)
            return head + question + b"".join(answers)

        if self.fault == "garbage":
            # Looks like our reply, but the answer's name points at itself.
            at = 12 + len(question)
            loop = struct.pack("!H", 0xC000 | at) + struct.pack("!HHIH", qtype, 1, TTL, 4) + \
                b"\x7f\x00\x00\x01"
            return struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, 1, 0, 0) + question + loop
        if self.fault == "servfail":
            return message(SERVFAIL)
        if self.fault == "refused":
            return message(REFUSED)
        if self.fault == "truncated" and not over_tcp:
            return message(NOERROR, tc=True)

        name = qname.lower().rstrip(".")
        if name not in self.zone:
            return message(NXDOMAIN)
        answers = []
        for _ in range(8):  # a CNAME chain is followed this far
            records = self.zone.get(name, [])
            owner = b"\xc0\x0c" if name == qname.lower().rstrip(".") else encode_name(name)
            matching = [r for r in records if r[0] == qtype]
            cname = [r for r in records if r[0] == TYPES["CNAME"]]
            if matching or not cname or qtype == TYPES["CNAME"]:
                answers += [owner + struct.pack("!HHIH", t, 1, TTL, len(d)) + d
                            for t, d in matching]
                break
            t, d = cname[0]
            answers.append(owner + struct.pack("!HHIH", t, 1, TTL, len(d)) + d)
            name, _ = read_qname(d, 0)
            name = name.lower()
        reply = message(NOERROR, answers)
        if not over_tcp and len(reply) > UDP_LIMIT:
            return message(NOERROR, tc=True)
        return reply


def split_server(text):
    """'IP', 'IP:port' or '[IPv6]:port' -> (host, port); port 53 by default."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53
