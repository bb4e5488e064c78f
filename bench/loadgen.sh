#!/usr/bin/env bash
# bench/loadgen.sh [--quick]: the simulator's check rate against a stub process, one request per
# new connection like a real device, side by side with the peers on the same endpoint, same run:
#   - ucupdate-sim, bench/scenarios/check-storm.toml (every device checks exactly once, power-ons
#     within 5 min, --time-scale max): rate = 200 checks / wall time, both from the JSON report;
#     `--threads $SIM_THREADS` (default 1: engine, requests and TLS on one thread, the least CPU
#     per check for a client sharing the machine with the server; SIM_THREADS=0 runs the
#     simulator's own default, one worker per core);
#   - wrk -t2 -cC POSTing the same check XML with `Connection: close` (a generated Lua script);
#   - Locust (pip) FastHttpUser, one process, same body and `Connection: close`: its rate per CPU
#     second, against the simulator's checks per CPU second (user+sys from /usr/bin/time);
#   - oha (crates.io) over plain HTTP, -c C --disable-keepalive, as many requests as the simulator
#     has devices: a load generator on the simulator's own stack (tokio + hyper), so what one
#     connection per request costs such a client before it does any work of its own. A full run
#     installs it into the target directory (cargo, a few minutes, once); a quick run uses it
#     only if it is there. Its ratios are reported, not targets.
# Over plain HTTP, HTTPS with full handshakes (sim --no-tls-resumption; wrk never resumes) and
# HTTPS with resumption (sim only; compared with wrk's full handshakes, which it cannot avoid).
# Targets (docs/BENCHMARKS.md): sim >= 1.0x wrk in checks/s and per CPU second; sim >= 5x Locust
# per CPU second.
source "$(dirname "$0")/lib.sh"

need wrk:wrk /usr/bin/time:time python3:python3
build_bins ucupdate-simulator ucupdate-server-stub
if [ "$QUICK" = 1 ]; then DEVICES=${DEVICES:-1000}; SECS=2; LSECS=5; else DEVICES=${DEVICES:-20000}; SECS=10; LSECS=20; fi
CONNS=${CONNS:-64}
SIM_THREADS=${SIM_THREADS:-1}
SIM_THREAD_ARGS=()
[ "$SIM_THREADS" = 0 ] || SIM_THREAD_ARGS=(--threads "$SIM_THREADS")
SCENARIO=$BENCH_DIR/scenarios/check-storm.toml
LUA=$(wrk_lua close)

start_stub
HTTP_URL=$STUB_INTERNAL
HTTPS_URL=$STUB_TLS

# sim_rate URL [extra flags]: prints "checks/s checks-per-cpu-s"
sim_rate() {
    local url=$1 tag; shift
    tag=$(date +%s%N)
    set +e
    /usr/bin/time -f '%U %S' -o "$WORK/simtime-$tag" timeout 900 "$BIN/ucupdate-sim" run \
        --scenario "$SCENARIO" --devices "$DEVICES" --time-scale max --server "$url" \
        --ca "$STUB_CA" --max-in-flight "$CONNS" "${SIM_THREAD_ARGS[@]}" --no-progress --report "$WORK/sim-$tag.json" "$@" \
        >"$WORK/sim-$tag.out" 2>"$WORK/sim-$tag.err"
    local rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then cat "$WORK/sim-$tag.out" "$WORK/sim-$tag.err" >&2; die "ucupdate-sim exited $rc against $url"; fi
    local ok wall cpu
    ok=$(json "$WORK/sim-$tag.json" 'r["requests"].get("check-internal",{}).get("200",0)')
    wall=$(json "$WORK/sim-$tag.json" 'r["wall_ms"]/1000')
    cpu=$(awk '{print $1+$2}' "$WORK/simtime-$tag")
    [ "$ok" -ge "$DEVICES" ] || die "ucupdate-sim: only $ok of $DEVICES checks answered 200"
    echo "$(div "$ok" "$wall") $(div "$ok" "$cpu")"
}

# Locust, if it installs: prints "checks/s checks-per-cpu-s" or "- -".
LOCUST_OK=0
if python3 -c 'import locust' 2>/dev/null; then LOCUST_OK=1
else
    log "pip install locust"
    if timeout 300 python3 -m pip install --quiet --disable-pip-version-check locust >"$WORK/pip.log" 2>&1 \
        || timeout 300 python3 -m pip install --quiet --disable-pip-version-check --break-system-packages locust >>"$WORK/pip.log" 2>&1; then
        LOCUST_OK=1
    else
        log "locust did not install (see below); its rows are skipped"; tail -5 "$WORK/pip.log" >&2
    fi
fi
cat >"$WORK/locustfile.py" <<'PY'
import os
from locust import FastHttpUser, constant, task

BODY = open(os.environ["BENCH_BODY"], "rb").read()
PATH = os.environ["BENCH_PATH"]
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "Connection": "close"}

class Device(FastHttpUser):
    wait_time = constant(0)
    insecure = True

    @task
    def check(self):
        self.client.post(PATH, data=BODY, headers=HEADERS)
PY
locust_rate() {
    local url=$1 tag host path
    [ "$LOCUST_OK" = 1 ] || { echo "- -"; return; }
    tag=$(date +%s%N); host=$(origin "$url"); path=/${url#*://*/}
    set +e
    BENCH_BODY=$CHECK_BODY BENCH_PATH=$path /usr/bin/time -f '%U %S %e' -o "$WORK/loctime-$tag" \
        timeout $((LSECS + 60)) python3 -m locust -f "$WORK/locustfile.py" --headless -u "$CONNS" -r "$CONNS" \
        -t "${LSECS}s" --host "$host" --csv "$WORK/locust-$tag" --only-summary \
        >"$WORK/locust-$tag.out" 2>&1
    local rc=$?
    set -e
    # Locust exits 1 when any request failed; the counts below tell.
    [ -f "$WORK/locust-${tag}_stats.csv" ] || { tail -20 "$WORK/locust-$tag.out" >&2; die "locust produced no stats (exit $rc)"; }
    python3 - "$WORK/locust-${tag}_stats.csv" "$WORK/loctime-$tag" "$LSECS" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["Name"] == "Aggregated"]
n, failed = int(rows[0]["Request Count"]), int(rows[0]["Failure Count"])
user, sys_, wall = (float(x) for x in open(sys.argv[2]).read().split()[-3:])
if failed:
    print(f"locust: {failed} of {n} requests failed", file=sys.stderr)
ok = n - failed
print(f"{ok/float(sys.argv[3]):.1f} {ok/(user+sys_):.1f}")
PY
}

# oha, pinned (cargo install --locked): prints "checks/s checks-per-cpu-s" or "- -".
OHA_VERSION=1.16.0
OHA=$(command -v oha || true)
[ -n "$OHA" ] || [ ! -x "$TARGET_DIR/bench-tools/bin/oha" ] || OHA=$TARGET_DIR/bench-tools/bin/oha
if [ -z "$OHA" ] && [ "$QUICK" = 0 ]; then
    log "cargo install oha $OHA_VERSION into $TARGET_DIR/bench-tools (once)"
    if timeout 1200 cargo install --quiet --locked --version "$OHA_VERSION" --root "$TARGET_DIR/bench-tools" oha >"$WORK/oha.log" 2>&1; then
        OHA=$TARGET_DIR/bench-tools/bin/oha
    else
        log "oha did not install (see below); its row is skipped"; tail -5 "$WORK/oha.log" >&2
    fi
fi
[ -n "$OHA" ] || log "oha is not installed (a full run installs it): its row is skipped"
oha_rate() {
    local url=$1 tag
    [ -n "$OHA" ] || { echo "- -"; return; }
    tag=$(date +%s%N)
    /usr/bin/time -f '%U %S' -o "$WORK/ohatime-$tag" timeout 900 "$OHA" -n "$DEVICES" -c "$CONNS" \
        --disable-keepalive --no-tui --output-format json -m POST -D "$CHECK_BODY" \
        -H "Content-Type: text/xml; charset=utf-8" -H "Connection: close" "$url" \
        >"$WORK/oha-$tag.json" 2>"$WORK/oha-$tag.err" || { cat "$WORK/oha-$tag.err" >&2; die "oha failed against $url"; }
    python3 - "$WORK/oha-$tag.json" "$WORK/ohatime-$tag" "$DEVICES" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["statusCodeDistribution"].get("200", 0)
if ok < int(sys.argv[3]):
    sys.exit(f"oha: only {ok} of {sys.argv[3]} requests answered 200: {r['statusCodeDistribution']} {r['errorDistribution']}")
user, sys_ = (float(x) for x in open(sys.argv[2]).read().split()[-2:])
print(f"{ok / r['summary']['total']:.1f} {ok / (user + sys_):.1f}")
PY
}

declare -A R
for t in http https-full https-resumed; do
    case $t in
        http) url=$HTTP_URL; flags=() ;;
        https-full) url=$HTTPS_URL; flags=(--no-tls-resumption) ;;
        https-resumed) url=$HTTPS_URL; flags=() ;;
    esac
    log "$t: ucupdate-sim, $DEVICES devices"
    read -r "R[sim-$t]" "R[simcpu-$t]" < <(sim_rate "$url" "${flags[@]}")
    if [ "$t" != https-resumed ]; then
        log "$t: wrk -c$CONNS Connection: close, ${SECS}s"
        R[wrk-$t]=$(wrk_rps "$LUA" "$url" "$SECS" "$CONNS")
        R[wrkcpu-$t]=$(cat "$WORK/wrk-per-cpu")
        log "$t: locust -u$CONNS, ${LSECS}s"
        read -r "R[loc-$t]" "R[loccpu-$t]" < <(locust_rate "$url")
    fi
    if [ "$t" = http ] && [ -n "$OHA" ]; then
        log "$t: oha -n$DEVICES -c$CONNS --disable-keepalive"
        read -r "R[oha-$t]" "R[ohacpu-$t]" < <(oha_rate "$url")
    fi
done
R[wrk-https-resumed]=${R[wrk-https-full]}; R[wrkcpu-https-resumed]=${R[wrkcpu-https-full]}
R[loc-https-resumed]=${R[loc-https-full]}; R[loccpu-https-resumed]=${R[loccpu-https-full]}

echo
echo "loadgen: checks/s, one request per connection, $(date -u +%FT%TZ), profile $BENCH_PROFILE, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "sim: $DEVICES devices, --max-in-flight $CONNS ${SIM_THREAD_ARGS[*]:-(one worker per core)}; wrk: -t2 -c$CONNS -d${SECS}s; locust: -u$CONNS, ${LSECS}s, 1 process"
row transport "sim checks/s" "wrk req/s" "sim/wrk"
for t in http https-full https-resumed; do
    row "$t" "${R[sim-$t]}" "${R[wrk-$t]}" "$(calc "${R[sim-$t]}/${R[wrk-$t]}")"
done
echo "per CPU second of the load generator's own process (user+sys); wrk and Locust never resume TLS"
row transport "sim /cpu-s" "wrk /cpu-s" "locust /cpu-s (req/s)"
for t in http https-full https-resumed; do
    row "$t" "${R[simcpu-$t]}" "${R[wrkcpu-$t]}" "${R[loccpu-$t]} (${R[loc-$t]})"
done
for t in http https-full https-resumed; do
    note=""; [ "$t" = https-resumed ] && note=" (wrk: full handshakes)"
    ratio "sim/wrk $t$note" "$(calc "${R[sim-$t]}/${R[wrk-$t]}")" ">=" 1
    ratio "sim/wrk per CPU-s $t$note" "$(div "${R[simcpu-$t]}" "${R[wrkcpu-$t]}")" ">=" 1
done
if [ -n "$OHA" ]; then
    row "http, oha (tokio + hyper): checks/s, /cpu-s" "${R[oha-http]}" "${R[ohacpu-http]}" ""
    ratio "sim/oha http" "$(div "${R[sim-http]}" "${R[oha-http]}")"
    ratio "sim/oha per CPU-s http" "$(div "${R[simcpu-http]}" "${R[ohacpu-http]}")"
    ratio "oha/wrk http" "$(div "${R[oha-http]}" "${R[wrk-http]}")"
    ratio "oha/wrk per CPU-s http" "$(div "${R[ohacpu-http]}" "${R[wrkcpu-http]}")"
fi
if [ "$LOCUST_OK" = 1 ]; then
    for t in http https-full https-resumed; do
        note=""; [ "$t" = https-resumed ] && note=" (locust: full)"
        ratio "sim/locust per core $t$note" "$(div "${R[simcpu-$t]}" "${R[loccpu-$t]}")" ">=" 5
    done
fi
