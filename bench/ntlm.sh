#!/usr/bin/env bash
# bench/ntlm.sh [--quick]: NTLM cost.
#   Stub: bench/agent-download's `ucbench checks` (the agent's `net::check_with_stats`, a new TLS
#   connection per check, full handshakes, NTLM Type 1/2/3 on it) with C in flight against the
#   stub's external listener; handshakes per second of wall time and per CPU second of the stub
#   process (/proc/PID/stat), next to the same load anonymous on the internal TLS listener, so
#   the NTLM share of the cost shows.
#   Simulator: the built-in `external` scenario (NTLM on every external check) against the same
#   stub process: its external checks per wall second and per simulator CPU second.
# No target: the number is reported.
source "$(dirname "$0")/lib.sh"

need /usr/bin/time:time python3:python3 curl:curl
build_bins ucupdate-simulator ucupdate-server-stub
build_helper
if [ "$QUICK" = 1 ]; then COUNT=300; SECS=10; DEVICES=200; else COUNT=20000; SECS=15; DEVICES=${DEVICES:-5000}; fi
CONC=${CONC:-32}

"$BIN/ucupdate-sim" users --scenario external --devices "$DEVICES" >"$WORK/users.txt"
echo 'BENCH\bench:Bench-Secret1!' >>"$WORK/users.txt"
chmod 600 "$WORK/users.txt" # the stub refuses a users file others may read
start_stub --users "$WORK/users.txt"

ntlm_ok() { curl -sf "${STUB_ADMIN%/}/metrics" | awk '$1=="ucupdate_ntlm_successes_total"{print $2+0}'; }

# load NAME URL [creds...]: prints "per-wall-s per-stub-cpu-s"
load() {
    local name=$1 url=$2 cpu0 cpu1 out; shift 2
    cpu0=$(proc_cpu "$STUB_PID")
    out=$(UCBENCH_NO_RESUMPTION=1 timeout $((SECS + 60)) "$HELPER" checks "$url" "$STUB_CA" "$CONC" "$COUNT" "$SECS" "$CHECK_BODY" "$@") \
        || die "ucbench checks $name failed: $out"
    cpu1=$(proc_cpu "$STUB_PID")
    [ "$(json <(echo "$out") 'r["failed"]')" = 0 ] || die "$name: failures: $out"
    local ok; ok=$(json <(echo "$out") 'r["ok"]')
    echo "$(json <(echo "$out") 'r["per_sec"]') $(div "$ok" "$(calc "$cpu1-$cpu0")")"
}
log "stub: anonymous checks over TLS (internal-tls), $CONC in flight"
read -r anon_wall anon_cpu < <(load anonymous "$STUB_TLS")
n0=$(ntlm_ok)
log "stub: NTLM checks over TLS (external), $CONC in flight"
read -r ntlm_wall ntlm_cpu < <(load ntlm "$STUB_EXTERNAL" 'BENCH\bench' 'Bench-Secret1!')
n1=$(ntlm_ok)
[ "$((n1 - n0))" -gt 0 ] || die "the stub counted no NTLM success"

log "simulator: external scenario, $DEVICES devices"
n2=$(ntlm_ok)
set +e
/usr/bin/time -f '%U %S' -o "$WORK/simtime" timeout 1200 "$BIN/ucupdate-sim" run --scenario external \
    --devices "$DEVICES" --time-scale max --server "$STUB_INTERNAL" --external-server "$STUB_EXTERNAL" \
    --admin "$STUB_ADMIN" --admin-token-file "$STUB_TOKEN_FILE" --ca "$STUB_CA" --no-progress --report "$WORK/ext.json" >"$WORK/ext.out" 2>"$WORK/ext.err"
rc=$?
set -e
[ "$rc" -le 1 ] || { cat "$WORK/ext.out" "$WORK/ext.err" >&2; die "ucupdate-sim exited $rc"; }
[ "$rc" -eq 0 ] || log "warning: external scenario verdicts failed (exit $rc)"
n3=$(ntlm_ok)
ext_checks=$(json "$WORK/ext.json" 'sum(r["requests"].get("check-external",{}).values())')
ext_wall=$(json "$WORK/ext.json" 'r["wall_ms"]/1000')
sim_cpu=$(awk '{print $1+$2}' "$WORK/simtime")

echo
echo "ntlm: $(date -u +%FT%TZ), profile $BENCH_PROFILE, load $(cut -d' ' -f1-3 /proc/loadavg); new TLS connection (full handshake) per check, $CONC in flight"
row load "per wall s" "per stub CPU s" ""
row "stub anonymous TLS checks" "$anon_wall" "$anon_cpu" ""
row "stub NTLM TLS checks (handshakes)" "$ntlm_wall" "$ntlm_cpu" "($((n1 - n0)) NTLM successes)"
row load "checks/wall s" "NTLM ok/sim CPU s" ""
row "sim external scenario ($DEVICES dev)" "$(calc "$ext_checks/$ext_wall")" "$(div "$((n3 - n2))" "$sim_cpu")" "($ext_checks checks, $((n3 - n2)) NTLM successes, exit $rc)"
ratio "stub NTLM handshakes per core-second" "$ntlm_cpu"
ratio "stub CPU per NTLM check / per anonymous TLS check" "$(div "$anon_cpu" "$ntlm_cpu")"
ratio "sim NTLM handshakes per core-second" "$(div "$((n3 - n2))" "$sim_cpu")"
