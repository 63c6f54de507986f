"""An NTP server (SNTP, RFC 4330) for the `system` probe's clock check: it
answers with this machine's time shifted by `offset` seconds, so a test can
play a skewed clock."""

import struct
import time

from lab_core import DatagramDevice, register

# Seconds from 1900-01-01 (NTP's epoch) to 1970-01-01.
NTP_EPOCH_OFFSET = 2208988800


def ntp_timestamp(unix_seconds):
    seconds = int(unix_seconds)
    fraction = int((unix_seconds - seconds) * (1 << 32)) & 0xFFFFFFFF
    return ((seconds + NTP_EPOCH_OFFSET) & 0xFFFFFFFF, fraction)


@register
class NtpServer(DatagramDevice):
    """answers SNTP client requests with the local time plus `offset` seconds"""
    KIND = "ntp"
    DEFAULT_PORT = 123
    PROBE_TYPE = "system"
    OPTIONS = ("offset", "stratum")
    # kod: kiss-o'-death RATE; unsynchronized: stratum 16, leap 3;
    # garbage: 13 bytes that are no NTP packet.
    FAULTS = DatagramDevice.FAULTS + ("kod", "unsynchronized", "garbage")

    @classmethod
    def from_probe(cls, probe):
        # Only clock checks talk to an NTP server; others need no device.
        if probe.get("type") != "system" or probe.get("check") != "clock":
            return None
        server = probe.get("ntp_server", "")
        if not server:
            return None
        host, port = server, cls.DEFAULT_PORT
        if server.startswith("["):
            host, _, rest = server[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif server.count(":") == 1:
            host, port = server.split(":")
            port = int(port)
        return cls(probe["name"], host, port)

    def answer(self, data):
        if len(data) < 48:
            return None
        mode = data[0] & 7
        if mode != 3:  # only client requests
            return None
        version = (data[0] >> 3) & 7
        originate = data[40:48]  # the client's transmit timestamp
        now = time.time() + float(self.options.get("offset", 0))
        leap, stratum, ref_id = 0, int(self.options.get("stratum", 2)), b"LAB\0"
        if self.fault == "garbage":
            return b"not an ntp!\r\n"
        if self.fault == "kod":
            leap, stratum, ref_id = 3, 0, b"RATE"
        elif self.fault == "unsynchronized":
            leap, stratum = 3, 16
        first = (leap << 6) | (version << 3) | 4
        ref = ntp_timestamp(now - 16)
        rx = ntp_timestamp(now)
        tx = ntp_timestamp(time.time() + float(self.options.get("offset", 0)))
        return (struct.pack("!BBbb", first, stratum, 6, -20)
                + struct.pack("!II", 0, 0) + ref_id
                + struct.pack("!II", *ref) + originate
                + struct.pack("!II", *rx) + struct.pack("!II", *tx))
