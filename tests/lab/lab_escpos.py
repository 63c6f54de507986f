"""ESC/POS receipt printers on TCP 9100: answer `DLE EOT n` (10 04 n) with
the real-time status byte for the printer's state.

Status bytes (FIELD-NOTES): every byte matches (b & 0x93) == 0x12; n = 1
printer (0x08 offline), 2 offline cause (0x04 cover open, 0x20 paper end
stop, 0x40 error), 3 error cause (0x08 autocutter, 0x20 unrecoverable,
0x40 auto-recoverable), 4 paper sensor (0x0C near end, 0x60 paper end).
"""

import asyncio

from lab_core import StreamDevice, register

DLE, EOT = 0x10, 0x04

# Replies to DLE EOT 1..4 per fault; faults not listed answer HEALTHY.
HEALTHY = (0x12, 0x12, 0x12, 0x12)
STATUS = {
    "near_end": (0x12, 0x12, 0x12, 0x1E),
    "paper_end": (0x1A, 0x32, 0x12, 0x7E),
    "cover_open": (0x1A, 0x16, 0x12, 0x12),
    # Offline with no cause given (e.g. someone took it offline at the panel).
    "offline": (0x1A, 0x12, 0x12, 0x12),
    "cutter_error": (0x1A, 0x52, 0x1A, 0x12),
    # Bytes that fail the (b & 0x93) == 0x12 pattern: not a status reply.
    "garbage": (0xFF, 0x00, 0x41, 0x12),
}
# "short": answers this many requests, then closes the connection.
SHORT_ANSWERS = 2


@register
class EscposPrinter(StreamDevice):
    """ESC/POS receipt printer: DLE EOT n real-time status on TCP 9100"""
    KIND = "escpos"
    PROBE_TYPE = "escpos"
    DEFAULT_PORT = 9100
    FAULTS = StreamDevice.FAULTS + ("paper_end", "near_end", "cover_open", "offline",
                                    "cutter_error", "garbage", "short", "busy")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # "busy": the printer serves one connection at a time, like the
        # network cards in FIELD-NOTES. The TCP stack still accepts a second
        # connection, but the printer leaves it unanswered until the first
        # one closes (a probe holding its socket blocks receipts this way).
        self.serving = asyncio.Lock()
        self.requests = 0  # DLE EOT requests answered

    def describe(self):
        return {**super().describe(), "requests": self.requests}

    async def session(self, reader, writer):
        if self.fault == "busy":
            async with self.serving:
                await self.serve_status(reader, writer)
        else:
            await self.serve_status(reader, writer)

    async def serve_status(self, reader, writer):
        answered = 0
        pending = b""
        while True:
            data = await reader.read(256)
            if not data:
                return
            pending += data
            # Print data and anything else is ignored; only DLE EOT n counts.
            while True:
                at = pending.find(bytes((DLE, EOT)))
                if at < 0 or at + 2 >= len(pending):
                    pending = pending[at:] if at >= 0 else pending[-1:]
                    break
                n = pending[at + 2]
                pending = pending[at + 3:]
                if not 1 <= n <= 4:
                    continue
                if self.fault == "short" and answered >= SHORT_ANSWERS:
                    return
                writer.write(bytes((STATUS.get(self.fault, HEALTHY)[n - 1],)))
                await writer.drain()
                answered += 1
                self.requests += 1
