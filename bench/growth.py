#!/usr/bin/env python3
"""bench/growth.py BIN [SERVE_ARGS...] [-- BIN [SERVE_ARGS...]]...: what anonymous clients make one `ucupdate-server
serve` keep, per binary: 400 checks from made-up devices with 550 modules
each, the same with 32 modules (the default cap), and 30 x 1 MB log uploads under made-up ids.
Prints the time of each phase, the status counts and the data directory's size by part after a
clean stop. Loopback only; every server started is ended by its pid."""
import http.client, os, shutil, signal, subprocess, sys, tempfile, time

def check_body(i, modules):
    mods = "".join(f'<Module FileName="M{m}.nbt" Version="1.0.0.{m}"/>' for m in range(modules))
    mac = f"02-00-00-00-{i // 256:02X}-{i % 256:02X}"
    return (f"<DeviceUpdateRequest><DeviceType>UCPhone</DeviceType><Brand>Polycom</Brand>"
            f"<Model>CX700</Model><Revision>A</Revision><Locale>ENU</Locale>"
            f"<MacAddress>{mac}</MacAddress><Modules>{mods}</Modules></DeviceUpdateRequest>").encode()

def du(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total

def run(binary, extra):
    data = tempfile.mkdtemp(prefix="ucgrowth-")
    proc = subprocess.Popen([binary, "serve", "--data", data, "--internal", "127.0.0.1:0",
                             "--internal-tls", "off", "--external", "off", "--admin", "off"] + extra,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = None
        for line in proc.stdout:
            if line.startswith("internal "):
                port = int(line.split(":")[-1].split("/")[0]); break
        c = http.client.HTTPConnection("127.0.0.1", port)
        out = {}
        for name, modules, base in [("400 x 550 modules", 550, 0), ("400 x 32 modules", 32, 1000)]:
            statuses = {}
            t0 = time.monotonic()
            for i in range(400):
                c.request("POST", "/RequestHandler/ucdevice.upx", check_body(base + i, modules),
                          {"Content-Type": "text/xml; charset=utf-8"})
                r = c.getresponse(); r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
            out[name] = (time.monotonic() - t0, statuses)
        statuses = {}
        t0 = time.monotonic()
        for i in range(30):
            c.request("POST", f"/RequestHandler/ucdevice.upx?action=logupload&type=CELog&file=big.txt&device=FAKE-{i}",
                      b"x" * 1_024_000, {"Content-Type": "application/octet-stream"})
            r = c.getresponse(); r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
        out["30 x 1 MB logs"] = (time.monotonic() - t0, statuses)
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    parts = {p: du(os.path.join(data, p)) for p in sorted(os.listdir(data))
             if p not in ("ca.pem", "store", "tmp")}
    shutil.rmtree(data)
    print(f"## {binary} {' '.join(extra)}")
    for name, (secs, statuses) in out.items():
        print(f"{name:20} {secs:6.2f} s  statuses {dict(sorted(statuses.items()))}")
    print("data dir: " + ", ".join(f"{p} {n / 1e6:.2f} MB" for p, n in parts.items()))

groups, cur = [], []
for a in sys.argv[1:] + ["--"]:
    if a == "--":
        if cur:
            groups.append(cur)
        cur = []
    else:
        cur.append(a)
for g in groups:
    run(g[0], g[1:])
