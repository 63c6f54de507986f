#!/usr/bin/env python3
"""A minimal local SMTP receiver for the email notification tests (no TLS,
no auth): records each message (envelope and data) as one JSON line in --log.
It speaks just enough of RFC 5321 for libcurl: EHLO/HELO, MAIL, RCPT, DATA,
RSET, NOOP, QUIT."""
import argparse
import json
import socketserver


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line):
            self.wfile.write((line + "\r\n").encode())
            self.wfile.flush()

        def handle(self):
            self.reply("220 localhost storewatch test SMTP")
            mail_from, rcpt = None, []
            while True:
                raw = self.rfile.readline(65536)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    self.reply("250 localhost")
                elif verb == "MAIL":
                    mail_from, rcpt = line[10:].strip(), []
                    self.reply("250 OK")
                elif verb == "RCPT":
                    rcpt.append(line[8:].strip())
                    self.reply("250 OK")
                elif verb == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    data = b""
                    while True:
                        chunk = self.rfile.readline(1 << 20)
                        if not chunk or chunk == b".\r\n":
                            break
                        data += chunk[1:] if chunk.startswith(b"..") else chunk
                    with open(args.log, "a") as f:
                        f.write(json.dumps({"from": mail_from, "to": rcpt,
                                            "data": data.decode("utf-8", "replace")}) + "\n")
                    self.reply("250 OK queued")
                elif verb in ("RSET", "NOOP"):
                    self.reply("250 OK")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("502 not implemented")

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
