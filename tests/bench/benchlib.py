"""What the benchmark scripts share. Python standard library only."""

import socket
import time


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout, what, poll=0.05, who="bench"):
    """Polls pred() every `poll` s until it returns something true (returned)
    or `timeout` s pass (exits saying what it waited for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(poll)
    raise SystemExit(f"{who}: timed out after {timeout} s waiting for {what}")
