#!/usr/bin/env python3
"""A small local HTTP proxy for the notification tests, standard library only:
tunnels CONNECT host:port (for https and smtp through the proxy) and forwards
plain requests with an absolute URI (http:// through the proxy). Records each
request it handles (method, target) as one JSON line in --log, before acting
on it, so a test can tell the proxy was used."""
import argparse
import http.client
import json
import select
import socket
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()

    def record(method, target):
        with open(args.log, "a") as f:
            f.write(json.dumps({"method": method, "target": target}) + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_CONNECT(self):
            record("CONNECT", self.path)
            host, _, port = self.path.rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10)
            except (OSError, ValueError) as e:
                self.send_error(502, f"cannot reach {self.path}: {e}")
                return
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            client = self.connection
            try:
                while True:
                    ready, _, _ = select.select([client, upstream], [], [], 30)
                    if not ready:
                        return
                    for s in ready:
                        data = s.recv(65536)
                        if not data:
                            return
                        (upstream if s is client else client).sendall(data)
            except OSError:
                return
            finally:
                upstream.close()
                self.close_connection = True

        def forward(self):
            record(self.command, self.path)
            url = urllib.parse.urlsplit(self.path)
            if url.scheme != "http" or not url.hostname:
                self.send_error(400, "absolute http:// URI expected")
                return
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("proxy-connection", "connection", "host")}
            try:
                conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
                conn.request(self.command, url.path + ("?" + url.query if url.query else ""),
                             body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            except OSError as e:
                self.send_error(502, str(e))
                return
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = forward
        do_GET = forward

        def log_message(self, fmt, *a):
            sys.stderr.write("proxy: " + (fmt % a) + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
