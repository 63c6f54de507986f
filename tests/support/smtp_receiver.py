#!/usr/bin/env python3
"""A minimal local SMTP receiver for the email notification tests, standard
library only: records each message (envelope, data, whether the session was
encrypted, who authenticated) as one JSON line in --log. It speaks just enough
of RFC 5321 for libcurl: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT, and
as told STARTTLS (RFC 3207), implicit TLS (smtps) and AUTH PLAIN (RFC 4954).

  --tls starttls|smtps  with --cert and --key: offer STARTTLS, or speak TLS
                        from the first byte
  --auth USER:PASSWORD  offer AUTH PLAIN and require it before MAIL
"""
import argparse
import base64
import json
import socketserver
import ssl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--tls", choices=["none", "starttls", "smtps"], default="none")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--auth")
    args = ap.parse_args()

    context = None
    if args.tls != "none":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)

    def record(entry):
        with open(args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line):
            try:
                self.wfile.write((line + "\r\n").encode())
                self.wfile.flush()
            except OSError:
                pass  # the client hung up; readline() sees the end next

        def wrap(self):
            self.connection = context.wrap_socket(self.connection, server_side=True)
            self.rfile = self.connection.makefile("rb")
            self.wfile = self.connection.makefile("wb")
            self.tls = True

        def check_plain(self, encoded):
            try:
                parts = base64.b64decode(encoded, validate=True).split(b"\0")
            except ValueError:
                return None
            if len(parts) != 3:
                return None
            user, password = parts[1].decode(), parts[2].decode()
            return user if f"{user}:{password}" == args.auth else None

        def handle(self):
            self.tls = False
            self.user = None
            if args.tls == "smtps":
                try:
                    self.wrap()
                except (ssl.SSLError, OSError) as e:
                    record({"event": "tls_failed", "error": str(e)})
                    return
            self.reply("220 localhost storewatch test SMTP")
            mail_from, rcpt = None, []
            while True:
                raw = self.rfile.readline(65536)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line[:4].upper()
                if verb in ("EHLO", "HELO"):
                    extensions = []
                    if args.tls == "starttls" and not self.tls:
                        extensions.append("STARTTLS")
                    if args.auth:
                        extensions.append("AUTH PLAIN")
                    lines = ["localhost"] + extensions
                    for i, ext in enumerate(lines):
                        self.reply(("250 " if i == len(lines) - 1 else "250-") + ext)
                elif line.upper() == "STARTTLS" and args.tls == "starttls" and not self.tls:
                    self.reply("220 go ahead")
                    try:
                        self.wrap()
                    except (ssl.SSLError, OSError) as e:
                        record({"event": "tls_failed", "error": str(e)})
                        return
                    mail_from, rcpt = None, []
                elif verb == "AUTH" and args.auth:
                    words = line.split()
                    if len(words) < 2 or words[1].upper() != "PLAIN":
                        self.reply("504 only PLAIN")
                        continue
                    if len(words) == 3:
                        encoded = words[2]
                    else:
                        self.reply("334 ")
                        encoded = self.rfile.readline(65536).decode().strip()
                    user = self.check_plain(encoded)
                    if user is None:
                        record({"event": "auth_failed"})
                        self.reply("535 5.7.8 authentication failed")
                    else:
                        self.user = user
                        self.reply("235 2.7.0 authenticated")
                elif verb == "MAIL":
                    if args.auth and self.user is None:
                        self.reply("530 5.7.0 authentication required")
                        continue
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
                    record({"from": mail_from, "to": rcpt, "tls": self.tls, "user": self.user,
                            "data": data.decode("utf-8", "replace")})
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
