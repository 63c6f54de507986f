#!/usr/bin/env python3
"""A local HTTP receiver for the notification tests: records every request
(method, path, headers, body, the answer given) as one JSON line in --log,
and answers as --behaviour (a JSON file re-read on every request) says:
{"status": 200, "body": "ok", "retry_after": "2", "delay_ms": 0}; with
"endless": true the body never ends (streamed for at most a minute, until the
client hangs up). With
--cert and --key it speaks https. Stopping the process is how a test takes
the receiver down; the log survives it."""
import argparse
import json
import os
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--behaviour", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8", "replace")
            try:
                with open(args.behaviour) as f:
                    b = json.load(f)
            except (OSError, ValueError):
                b = {}
            status = int(b.get("status", 200))
            answer = b.get("body", "ok").encode()
            if b.get("delay_ms"):
                time.sleep(b["delay_ms"] / 1000.0)
            record = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
                "status": status,
                "at": time.time(),
            }
            with open(args.log, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                self.send_response(status)
                if b.get("retry_after") is not None:
                    self.send_header("Retry-After", str(b["retry_after"]))
                self.send_header("Content-Type", "text/plain")
                if b.get("endless"):
                    self.end_headers()
                    deadline = time.time() + 60
                    chunk = b"x" * 65536
                    while time.time() < deadline:
                        self.wfile.write(chunk)
                    return
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, fmt, *a):
            sys.stderr.write("receiver: " + (fmt % a) + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.cert:
        # https: each accepted connection does its TLS handshake in its own thread.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
