#!/usr/bin/env python3
"""A pool speaking the made-up foreign dialect (tests/peers/foreign.toml), written without any
of the project's Rust code: the standard library's HTTP server and ElementTree only.

POST /fw/check.asmx  a SOAP CheckFirmware; offers --offer to a device whose first part's Rev
                     differs from it, else an empty CheckFirmwareResult ("no update").
GET  /DeviceUpdateFiles_Int/...  the offered files (deterministic bytes, or with --files DIR
                     the file at DIR/<the URL's path>, 404 if missing; Range requests,
                     .nbt as application/octet-stream; `..` or backslashes refused).
GET  /stats          JSON counts: checks, offers, downloads.

Prints "PORT <n>" on its first stdout line once it listens (port 0 picks a free one).
"""
import argparse
import json
import os
import sys
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import quoteattr, escape

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
FW = "urn:example:firmware-check:2"
LOCK = threading.Lock()
STATS = {"checks": 0, "offers": 0, "downloads": 0, "bad": 0}


def version_tuple(text):
    parts = text.strip().split(".")
    if len(parts) != 4:
        raise ValueError(text)
    return tuple(int(p) for p in parts)


def file_bytes(path):
    # Deterministic content per path; a few KiB.
    return (("%s\n" % path) * 64).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    offer = "1.0.522.200"
    files = None

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout on its side): nothing to answer

    def count(self, key):
        with LOCK:
            STATS[key] += 1

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                body = json.dumps(STATS).encode()
            return self.send(200, body, "application/json")
        if self.path.startswith("/DeviceUpdateFiles_Int/"):
            lowered = self.path.lower()
            if ".." in self.path or "%2e" in lowered or "\\" in self.path or "%5c" in lowered:
                return self.send(400, b"bad path", "text/plain")
            if Handler.files is not None:
                try:
                    with open(os.path.join(Handler.files, self.path.lstrip("/")), "rb") as f:
                        data = f.read()
                except OSError:
                    return self.send(404, b"no such file", "text/plain")
            else:
                data = file_bytes(self.path)
            self.count("downloads")
            ctype = {"nbt": "application/octet-stream", "cat": "application/vnd.ms-pki.seccat"}.get(
                self.path.rsplit(".", 1)[-1], "application/octet-stream")
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes="):
                first, _, last = rng[6:].partition("-")
                first = int(first or 0)
                last = min(int(last) if last else len(data) - 1, len(data) - 1)
                part = data[first:last + 1]
                self.send_response(206)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, len(data)))
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                self.wfile.write(part)
                return
            return self.send(200, data, ctype)
        self.send(404, b"not found", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if length > 64 * 1024:
            self.close_connection = True
            return self.send(413, b"too large", "text/plain")
        body = self.rfile.read(length)
        if self.path != "/fw/check.asmx":
            return self.send(404, b"not found", "text/plain")
        if not self.headers.get("Content-Type", "").startswith("application/soap+xml"):
            self.count("bad")
            return self.send(415, b"expected application/soap+xml", "text/plain")
        try:
            root = ET.fromstring(body)
            check = root.find("{%s}Body/{%s}CheckFirmware" % (SOAP, FW))
            attrs = {k.split("}")[-1]: v for k, v in check.attrib.items() if k.startswith("{%s}" % FW)}
            ident = [attrs[k] for k in ("kind", "maker", "product", "hw", "lang")]
            parts = [
                (p.findtext("{%s}Name" % FW), version_tuple(p.findtext("{%s}Rev" % FW)))
                for p in check.findall("{%s}Part" % FW)
            ]
            if not parts:
                raise ValueError("no Part")
        except Exception as e:  # a test peer: any malformed check is a 400
            self.count("bad")
            return self.send(400, ("bad check: %s" % e).encode(), "text/plain")
        self.count("checks")
        name, running = parts[0]
        stem = name.rsplit(".", 1)[0]
        result = '<r:CheckFirmwareResult/>'
        # The documented rule: offer whenever the running version differs (older or newer).
        if running != version_tuple(self.offer):
            self.count("offers")
            host = self.headers.get("Host", "127.0.0.1")
            base = "http://%s/DeviceUpdateFiles_Int/%s/%s/%s" % (
                host, "/".join(ident), self.offer, stem)
            result = (
                '<r:CheckFirmwareResult r:count="2" r:internal=%s r:external="">'
                '<r:Offer><r:Rev>%s</r:Rev><r:Stamp>2010-01-01T00:00:00Z</r:Stamp>'
                '<r:Image>%s</r:Image><r:Signature>%s.cat</r:Signature></r:Offer>'
                '</r:CheckFirmwareResult>'
            ) % (quoteattr(base), escape(self.offer), escape(name), escape(stem))
        reply = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<s:Envelope xmlns:s="%s" xmlns:r="%s"><s:Body>%s</s:Body></s:Envelope>\n'
        ) % (SOAP, FW, result)
        self.send(200, reply.encode(), "application/soap+xml; charset=utf-8")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--offer", default="1.0.522.200")
    ap.add_argument("--files", help="serve the offered files from this folder")
    args = ap.parse_args()
    Handler.offer = args.offer
    Handler.files = args.files
    ThreadingHTTPServer.request_queue_size = 1024  # a fleet connects all at once
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
