"""Plain TCP devices: a payment terminal's port, a scale, a store server."""

from lab_core import StreamDevice, drain_until_eof, register


@register
class TcpDevice(StreamDevice):
    """accepts TCP connections and closes when the client does"""
    KIND = "tcp"
    PROBE_TYPE = "tcp"

    async def session(self, reader, writer):
        await drain_until_eof(reader)
