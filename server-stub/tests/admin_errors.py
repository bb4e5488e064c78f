"""Every kind of refusal from the stub's admin API, checked with nothing but urllib: each must
be JSON `{"error": "..."}` with `Content-Type: application/json`, as docs/SERVER.md says
(unknown paths and bad requests included). Exits non-zero on the first reply that is not.

Usage: python3 admin_errors.py ADMIN_URL TOKEN_FILE
"""
import json
import sys
import urllib.error
import urllib.request

base = sys.argv[1].rstrip("/")
with open(sys.argv[2], encoding="ascii") as f:
    token = f.read().strip()

CASES = [
    # (what, method, path, headers, body, expected status)
    ("unknown path", "GET", "/nope", {}, None, 404),
    ("unknown admin path", "GET", "/admin/nope", {}, None, 404),
    ("unknown rule", "GET", "/admin/rules/UCPhone/Polycom/CX700/A/ENU/CPE", {}, None, 404),
    ("approve an unknown rule", "POST", "/admin/rules/UCPhone/Polycom/CX700/A/ENU/CPE/approve",
     {"Content-Type": "application/json"}, b"{}", 404),
    ("bad rule path", "GET", "/admin/rules/zz", {}, None, 400),
    ("bad percent escape", "GET", "/admin/rules/%zz", {}, None, 400),
    ("unknown test device", "GET", "/admin/test-devices/global/nope", {}, None, 404),
    ("bad JSON body", "POST", "/admin/test-devices/global/lab", {"Content-Type": "application/json"},
     b"not json", 400),
    ("no token", "GET", "/admin/rules", {"Authorization": ""}, None, 401),
    ("foreign origin", "GET", "/admin/rules", {"Origin": "http://evil.example"}, None, 403),
    ("no content type", "DELETE", "/admin/rules", {}, None, 415),
]

failed = 0
for what, method, path, headers, body, want in CASES:
    req = urllib.request.Request(base + path, data=body, method=method)
    req.add_header("Authorization", "Bearer " + token)
    for name, value in headers.items():
        if value:
            req.add_header(name, value)
        else:
            req.remove_header(name)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, ctype, text = r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        status, ctype, text = e.code, e.headers.get("Content-Type"), e.read()
    try:
        doc = json.loads(text)
        ok = isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"]
    except ValueError:
        ok = False
    ok = ok and status == want and (ctype or "").startswith("application/json")
    print(f"{'ok  ' if ok else 'FAIL'} {what}: {status} {ctype} {text[:80]!r}")
    failed += not ok
sys.exit(1 if failed else 0)
