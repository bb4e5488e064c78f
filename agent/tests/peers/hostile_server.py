#!/usr/bin/env python3
"""A hostile Device Update server for the agent's download-rule tests (issue 12, rules 3-6).

Nobody on the agent side wrote its HTTP: Python's http.server answers. It listens on two
loopback ports, a "check" port and a "files" port, so an offer can name a foreign origin.

- Any POST (a check) gets the canned reply read from RESPONSE_XML_FILE, with `{CHECK_PORT}`
  and `{FILE_PORT}` replaced by the two ports.
- Any GET (a file) is recorded as `GET <port> <path>` in HITS_FILE. A file of that base name
  in FILES_DIR (a catalog the test signed, a swapped image) is served as it is; any other GET is
  answered 200 with no Content-Length and an endless body (close-delimited), until the client
  hangs up.

Usage: hostile_server.py RESPONSE_XML_FILE HITS_FILE [FILES_DIR]
Prints `PORTS <check> <files>` on stdout once both listen, then serves until killed.
"""

import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CANNED = b""
HITS = ""
FILES = None
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("hostile_server: " + (fmt % args) + "\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(CANNED)))
        self.end_headers()
        self.wfile.write(CANNED)

    def do_GET(self):
        with LOCK:
            with open(HITS, "a") as hits:
                hits.write("GET %d %s\n" % (self.server.server_address[1], self.path))
        name = os.path.basename(self.path)
        if FILES and name and os.path.isfile(os.path.join(FILES, name)):
            body = open(os.path.join(FILES, name), "rb").read()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"X" * 65536
        try:
            while True:
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    global CANNED, HITS, FILES
    template = open(sys.argv[1], "rb").read()
    HITS = sys.argv[2]
    FILES = sys.argv[3] if len(sys.argv) > 3 else None
    open(HITS, "a").close()
    check = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    files = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    check_port, file_port = check.server_address[1], files.server_address[1]
    CANNED = template.replace(b"{CHECK_PORT}", str(check_port).encode()).replace(
        b"{FILE_PORT}", str(file_port).encode()
    )
    for server in (check, files):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("PORTS %d %d" % (check_port, file_port), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
