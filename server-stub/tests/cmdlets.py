"""An administrator's script against the stub's admin API, written with nothing but urllib:
the cmdlet model as a Lync admin would script it (New-CsTestDevice, Get-CsDeviceUpdateRule by
identity, Approve by id, Set-CsDeviceUpdateConfiguration, Clear-CsDeviceUpdateFile).
Prints one JSON object per step: {"step", "status", "body"}.

Usage: python3 cmdlets.py ADMIN_URL TOKEN_FILE
"""
import json
import sys
import urllib.error
import urllib.request

base = sys.argv[1].rstrip("/")
with open(sys.argv[2], encoding="ascii") as f:
    token = f.read().strip()


def call(step, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if method != "GET":
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    out = {"step": step, "status": status, "body": json.loads(text)}
    print(json.dumps(out))
    return out


call("new-test-device", "POST", "/admin/test-devices/site:Redmond/Lab%20Phone",
     {"identifier_type": "MACAddress", "identifier": "00:04:f2:00:01:76"})
call("new-bad-mac", "POST", "/admin/test-devices/global/Bad", {"mac": "00-04-F2-00-01"})
call("get-test-device", "GET", "/admin/test-devices/site:Redmond/Lab%20Phone")
rules = call("get-rules", "GET", "/admin/rules")["body"]
identity = rules[0]["identity"]
call("get-rule", "GET", "/admin/rules/" + identity)
call("approve", "POST", "/admin/rules/" + rules[0]["id"] + "/approve")
call("set-configuration", "PUT", "/admin/configuration",
     {"LogFlushInterval": 600, "ValidLogFileTypes": ["CELog", "Watson"]})
call("set-bad-configuration", "PUT", "/admin/configuration", {"LogFlushInterval": 7200})
call("clear-files", "POST", "/admin/files/clear")
