#!/usr/bin/env python3
"""A phone speaking the made-up foreign dialect (tests/peers/foreign.toml), written without any
of the project's Rust code: one check against --server (one module, or several with --part), printed as JSON, and optionally the
exchange saved as a HAR 1.2 file (--har) and/or a folder of bodies (--save-dir: request.xml,
reply.xml, request.http with the request line and headers), as a capture tool would.

Credentials (--auth) are sent like a real phone would send them, so that tests can prove the
learner strips them.
"""
import argparse
import http.client
import json
import os
import sys
import urllib.parse
import xml.etree.ElementTree as ET

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
FW = "urn:example:firmware-check:2"


def body(a):
    user = "      <fw:Who>%s</fw:Who>\n" % a.user if a.user else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soap:Envelope xmlns:soap="%s" xmlns:fw="%s">\n'
        "  <soap:Body>\n"
        '    <fw:CheckFirmware fw:kind="%s" fw:maker="%s" fw:product="%s" fw:hw="%s" fw:lang="%s">\n'
        "      <fw:Hardware>%s</fw:Hardware>\n"
        "      <fw:Sn>%s</fw:Sn>\n"
        "%s"
        "%s"
        "    </fw:CheckFirmware>\n"
        "  </soap:Body>\n"
        "</soap:Envelope>\n"
    ) % (SOAP, FW, a.device_type, a.brand, a.model, a.revision, a.locale, a.mac, a.serial,
         user, "".join(part(f, v, a.timestamp) for f, v in [(a.file, a.version)] + a.part))


def part(name, version, stamp):
    return ("      <fw:Part><fw:Name>%s</fw:Name><fw:Rev>%s</fw:Rev><fw:Stamp>%s</fw:Stamp></fw:Part>\n"
            % (name, version, stamp))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True, help="http://host:port")
    ap.add_argument("--device-type", default="UCPhone")
    ap.add_argument("--brand", default="Polycom")
    ap.add_argument("--model", default="CX700")
    ap.add_argument("--revision", default="A")
    ap.add_argument("--locale", default="ENU")
    ap.add_argument("--mac", default="00:04:f2:00:01:76")
    ap.add_argument("--serial", default="PCX700-0001")
    ap.add_argument("--user", default="sip:alice@contoso.com")
    ap.add_argument("--file", default="CPE.nbt")
    ap.add_argument("--version", default="1.0.522.101")
    ap.add_argument("--timestamp", default="2009-06-01T10:00:00Z")
    ap.add_argument("--part", action="append", default=[], type=lambda t: tuple(t.split(":", 1)),
                    metavar="FILE:VERSION", help="another module after the first (repeatable)")
    ap.add_argument("--auth", help="an Authorization header value to send")
    ap.add_argument("--har")
    ap.add_argument("--save-dir")
    ap.add_argument("--download", action="store_true", help="GET the offered image too")
    a = ap.parse_args()

    url = urllib.parse.urlparse(a.server)
    payload = body(a).encode()
    headers = {
        "Content-Type": "application/soap+xml; charset=utf-8",
        "SOAPAction": "urn:example:firmware-check:2#CheckFirmware",
        "User-Agent": "FakePhone/2.0",
    }
    if a.auth:
        headers["Authorization"] = a.auth
        headers["Cookie"] = "session=secret-cookie"
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
    conn.request("POST", "/fw/check.asmx", body=payload, headers=headers)
    resp = conn.getresponse()
    reply = resp.read()
    entries = [(("POST", "/fw/check.asmx", headers, payload), resp, reply)]

    out = {"status": resp.status, "offer": None}
    if resp.status == 200:
        root = ET.fromstring(reply)
        result = root.find("{%s}Body/{%s}CheckFirmwareResult" % (SOAP, FW))
        offer = result.find("{%s}Offer" % FW)
        if offer is not None:
            base = result.get("{%s}internal" % FW)
            image = offer.findtext("{%s}Image" % FW)
            out["offer"] = offer.findtext("{%s}Rev" % FW)
            out["base_url"] = base
            out["image"] = image
            if a.download:
                path = urllib.parse.urlparse(base).path + "/" + image
                conn.request("GET", path, headers={"User-Agent": "FakePhone/2.0"})
                d = conn.getresponse()
                data = d.read()
                out["downloaded"] = len(data)
                entries.append((("GET", path, {"User-Agent": "FakePhone/2.0"}, b""), d, data))
    print(json.dumps(out), flush=True)

    if a.save_dir:
        os.makedirs(a.save_dir, exist_ok=True)
        with open(os.path.join(a.save_dir, "request.xml"), "wb") as f:
            f.write(payload)
        with open(os.path.join(a.save_dir, "reply.xml"), "wb") as f:
            f.write(reply)
        with open(os.path.join(a.save_dir, "request.http"), "w") as f:
            f.write("POST /fw/check.asmx HTTP/1.1\r\n")
            for k, v in headers.items():
                f.write("%s: %s\r\n" % (k, v))
    if a.har:
        har_entries = []
        for (method, path, hdrs, data), r, rbody in entries:
            har_entries.append({
                "startedDateTime": "2026-01-01T00:00:00.000Z",
                "time": 1,
                "request": {
                    "method": method,
                    "url": "%s://%s%s" % (url.scheme, url.netloc, path),
                    "httpVersion": "HTTP/1.1",
                    "headers": [{"name": k, "value": v} for k, v in hdrs.items()],
                    "cookies": [],
                    "queryString": [],
                    "headersSize": -1,
                    "bodySize": len(data),
                    **({"postData": {"mimeType": hdrs.get("Content-Type", ""),
                                     "text": data.decode()}} if data else {}),
                },
                "response": {
                    "status": r.status,
                    "statusText": r.reason,
                    "httpVersion": "HTTP/1.1",
                    "headers": [{"name": k, "value": v} for k, v in r.getheaders()],
                    "cookies": [],
                    "content": {"size": len(rbody),
                                "mimeType": r.getheader("Content-Type", ""),
                                **({"text": rbody.decode()} if method == "POST" else {})},
                    "redirectURL": "",
                    "headersSize": -1,
                    "bodySize": len(rbody),
                },
                "cache": {},
                "timings": {"send": 0, "wait": 1, "receive": 0},
            })
        har = {"log": {"version": "1.2", "creator": {"name": "foreign_client.py", "version": "1"},
                       "entries": har_entries}}
        with open(a.har, "w") as f:
            json.dump(har, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
