"""HTTP devices: a POS lane's health endpoint, plain (kind `http`) or on TLS
(kind `https`, e.g. a payment gateway) with a certificate that is good or
broken in one chosen way.

Every https device's certificate comes from a small test PKI that storelab
writes with the `openssl` command-line tool into the directory of
`serve --pki DIR`: DIR/ca.pem is the CA a client should trust; the leaf of
`cert = "unknown_ca"` is signed by a second CA that is not in ca.pem."""

import asyncio
import datetime
import ipaddress
import json
import os
import re
import ssl
import subprocess
import urllib.parse

import lab_core
from lab_core import StreamDevice, register

# cert option -> (valid from, valid until) relative to now, and whether the
# leaf names the device's own host.
CERTS = {
    "good": (datetime.timedelta(days=-1), datetime.timedelta(days=365), True),
    "expired": (datetime.timedelta(days=-60), datetime.timedelta(days=-30), True),
    "not_yet_valid": (datetime.timedelta(days=30), datetime.timedelta(days=365), True),
    "wrong_host": (datetime.timedelta(days=-1), datetime.timedelta(days=365), False),
    "unknown_ca": (datetime.timedelta(days=-1), datetime.timedelta(days=365), True),
    # A few hours past 10 days so a client that rounds down sees 10.
    "expiring": (datetime.timedelta(days=-300), datetime.timedelta(days=10, hours=6), True),
}
WRONG_HOST = "wrong-host.storelab.invalid"
MAX_REQUEST_BYTES = 64 * 1024  # request bodies up to this are read, larger ones ignored


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {r.stderr.strip()}")


class Pki:
    """The test CAs and the leaf certificates, made once and kept in the
    directory (one leaf per cert kind and host); a directory used before is
    reused as it is."""

    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._make_ca("ca", "storelab test CA")
        self._make_ca("other-ca", "storelab other CA (untrusted)")

    @property
    def ca_file(self):
        return os.path.join(self.dir, "ca.pem")

    def _make_ca(self, name, cn):
        home = os.path.join(self.dir, name + ".d")
        if os.path.exists(os.path.join(self.dir, f"{name}.pem")) and os.path.isdir(home):
            return  # a --pki directory used before: keep its CA (clients may trust it)
        os.makedirs(os.path.join(home, "certs"), exist_ok=True)
        open(os.path.join(home, "index.txt"), "w").close()
        with open(os.path.join(home, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(home, "ca.cnf"), "w") as f:
            f.write(f"""[ca]
default_ca = lab
[lab]
dir = {home}
database = $dir/index.txt
new_certs_dir = $dir/certs
serial = $dir/serial
default_md = sha256
policy = any
unique_subject = no
email_in_dn = no
[any]
commonName = supplied
""")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-noenc", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "3650",
                "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)

    def leaf(self, cert, host):
        """(cert file, key file) of a leaf of kind `cert` for a device at `host`."""
        safe = re.sub(r"[^A-Za-z0-9.-]", "_", host)
        base = os.path.join(self.dir, f"{cert}-{safe}")
        if os.path.exists(base + ".pem"):
            return base + ".pem", base + ".key"
        not_before, not_after, right_host = CERTS[cert]
        if right_host:
            names = ["DNS:localhost", "IP:127.0.0.1"]
            try:
                ip = ipaddress.ip_address(host)
                if f"IP:{ip}" not in names:
                    names.append(f"IP:{ip}")
            except ValueError:
                names.append(f"DNS:{host}")
            cn = host
        else:
            names, cn = [f"DNS:{WRONG_HOST}"], WRONG_HOST
        with open(base + ".ext", "w") as f:
            f.write(f"subjectAltName = {', '.join(names)}\n"
                    "basicConstraints = CA:FALSE\n"
                    "keyUsage = critical, digitalSignature\n"
                    "extendedKeyUsage = serverAuth\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-noenc", "-keyout", base + ".key", "-out", base + ".csr",
                "-subj", f"/CN={cn}", cwd=self.dir)
        ca = "other-ca" if cert == "unknown_ca" else "ca"
        now = datetime.datetime.now(datetime.timezone.utc)
        stamp = lambda t: (now + t).strftime("%Y%m%d%H%M%SZ")  # noqa: E731
        openssl("ca", "-batch", "-notext", "-config", os.path.join(ca + ".d", "ca.cnf"),
                "-cert", f"{ca}.pem", "-keyfile", f"{ca}.key",
                "-startdate", stamp(not_before), "-enddate", stamp(not_after),
                "-extfile", base + ".ext", "-in", base + ".csr", "-out", base + ".pem",
                cwd=self.dir)
        return base + ".pem", base + ".key"


_pki = None


def pki():
    """The storelab's PKI, made on first use in SETTINGS['pki']."""
    global _pki
    if _pki is None:
        directory = lab_core.SETTINGS.get("pki")
        if not directory:
            raise RuntimeError("https devices need serve --pki DIR")
        _pki = Pki(directory)
    return _pki


async def read_request(reader):
    """(method, path) of one HTTP/1.x request; its body is read and dropped."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ConnectionError("request head too long")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise ConnectionError("bad request line")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise ConnectionError("bad Content-Length")
    if 0 < length <= MAX_REQUEST_BYTES:
        await reader.readexactly(length)
    return parts[0], parts[1]


@register
class HttpDevice(StreamDevice):
    """a POS lane's HTTP health endpoint: any method, any path -> 200 JSON"""
    KIND = "http"
    DEFAULT_PORT = 8080
    PROBE_TYPE = "http"
    FAULTS = StreamDevice.FAULTS + ("http500", "http503", "degraded", "endless")
    # endless: 200 with a body that never ends (no Content-Length; its first
    # line the usual JSON, then filler), as a broken endpoint streams; the
    # session's time limit (HANG_SECONDS) and ENDLESS_MAX_BYTES bound it.
    ENDLESS_MAX_BYTES = 64 << 30

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests = 0        # requests answered
        self.last_request = ""  # "METHOD PATH" of the latest one
        self.endless_bytes = 0  # body bytes the endless fault got out

    @classmethod
    def from_probe(cls, probe):
        if probe.get("type") != cls.PROBE_TYPE or "url" not in probe:
            return None
        url = urllib.parse.urlsplit(probe["url"])
        kind = HttpsDevice if url.scheme == "https" else HttpDevice
        port = url.port or (443 if url.scheme == "https" else 80)
        return kind(probe["name"], url.hostname, port)

    def answer(self):
        """(status line, JSON body) for the current fault."""
        if self.fault == "http500":
            return "500 Internal Server Error", {"status": "error", "lane": self.name}
        if self.fault == "http503":
            return "503 Service Unavailable", {"status": "unavailable", "lane": self.name}
        if self.fault == "degraded":
            return "200 OK", {"status": "degraded", "lane": self.name}
        return "200 OK", {"status": "ok", "lane": self.name}

    async def session(self, reader, writer):
        method, path = await read_request(reader)
        self.requests += 1
        self.last_request = f"{method} {path}"
        status, body = self.answer()
        payload = (json.dumps(body) + "\n").encode()
        if self.fault == "endless":
            writer.write((f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                          "Connection: close\r\n\r\n").encode() + payload)
            filler = b" " * (64 * 1024)
            sent = 0
            while sent < self.ENDLESS_MAX_BYTES:
                writer.write(filler)
                await writer.drain()  # ConnectionError once the client stops reading
                sent += len(filler)
                self.endless_bytes += len(filler)
            return
        head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
        writer.write(head if method == "HEAD" else head + payload)
        await writer.drain()


    def describe(self):
        return {**super().describe(), "requests": self.requests,
                "last_request": self.last_request, "endless_bytes": self.endless_bytes}


@register
class HttpsDevice(HttpDevice):
    """the same health endpoint on TLS, its certificate chosen by `cert`"""
    KIND = "https"
    DEFAULT_PORT = 8443
    PROBE_TYPE = None  # HttpDevice.from_probe plays https:// urls
    OPTIONS = ("cert",)

    def __init__(self, *args, cert="good", **kwargs):
        super().__init__(*args, **kwargs)
        if cert not in CERTS:
            raise ValueError(f"cert {cert!r} is not one of {', '.join(CERTS)}")
        self.cert = cert
        self.ssl_context = None

    async def start(self):
        cert_file, key_file = pki().leaf(self.cert, self.host)
        self.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl_context.load_cert_chain(cert_file, key_file)
        await super().start()

    def server_options(self):
        return {"ssl": self.ssl_context, "ssl_handshake_timeout": 10}

    def describe(self):
        return {**super().describe(), "cert": self.cert}
