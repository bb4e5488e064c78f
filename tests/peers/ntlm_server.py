#!/usr/bin/env python3
"""An independent NTLM-protected Device Update check handler for interop tests.

pyspnego (https://pypi.org/project/pyspnego/) is the NTLM acceptor; nobody on this project
wrote it. It reads its accounts from the file named by NTLM_USER_FILE, one
`DOMAIN:USER:PASSWORD` per line. The server speaks HTTP/1.1 with keep-alive, keeps the NTLM
handshake per TCP connection (one handler object serves one connection), and answers an
authenticated POST with the canned check response read from the file named on the command line.

Usage: ntlm_server.py RESPONSE_XML_FILE
Prints `PORT <n>` on stdout once it listens on 127.0.0.1:<n>, then serves until killed.
"""

import base64
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import spnego

CANNED = b""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # NTLM state of this connection: the acceptor after a Type 1, the user after a Type 3.
        self.acceptor = None
        self.user = None

    def log_message(self, fmt, *args):
        sys.stderr.write("ntlm_server: " + (fmt % args) + "\n")

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.user is None:
            token = self.ntlm_token()
            if token is None:
                self.acceptor = None
                return self.reply(401, b"NTLM required\n", [("WWW-Authenticate", "NTLM")])
            kind = token[8] if len(token) > 8 and token.startswith(b"NTLMSSP\0") else 0
            if kind == 1:
                self.acceptor = spnego.server(protocol="ntlm")
                try:
                    challenge = self.acceptor.step(token)
                except Exception as e:  # a malformed Type 1
                    self.acceptor = None
                    return self.reply(401, str(e).encode(), [("WWW-Authenticate", "NTLM")])
                value = "NTLM " + base64.b64encode(challenge).decode()
                return self.reply(401, b"", [("WWW-Authenticate", value)])
            if kind == 3 and self.acceptor is not None:
                acceptor, self.acceptor = self.acceptor, None
                try:
                    acceptor.step(token)
                except Exception as e:  # wrong password, bad MIC, ...
                    return self.reply(
                        401, type(e).__name__.encode(), [("WWW-Authenticate", "NTLM")]
                    )
                if not acceptor.complete:
                    return self.reply(401, b"incomplete", [("WWW-Authenticate", "NTLM")])
                self.user = str(acceptor.client_principal)
            else:
                return self.reply(401, b"out of order", [("WWW-Authenticate", "NTLM")])
        self.reply(200, CANNED, [("Content-Type", "text/xml; charset=utf-8")])

    def ntlm_token(self):
        value = self.headers.get("Authorization") or ""
        scheme, _, rest = value.strip().partition(" ")
        if scheme.upper() != "NTLM" or not rest.strip():
            return None
        try:
            return base64.b64decode(rest.strip())
        except Exception:
            return None


def main():
    global CANNED
    with open(sys.argv[1], "rb") as f:
        CANNED = f.read()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
