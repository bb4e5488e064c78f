#!/usr/bin/env bash
# bench/compressed-time.sh [--quick]: a 7-virtual-day steady + rollout run
# (bench/scenarios/week.toml: power-ons over day 1, 24 h polling, publish to the test devices,
# sign-ins, approve at 48 h) of 100,000 devices on the embedded stub at --time-scale max.
# Measures wall time (the process, and the report's wall_ms) and requires exit code 0: every
# device's verdict correct. Target (docs/BENCHMARKS.md): under 60 s with every verdict correct.
# Quick: 500 devices (a smoke test of the scenario and the verdicts).
# DEVICES=N overrides the fleet size; TRANSPORT=tcp runs the devices over loopback TCP instead
# of the embedded default, in-memory pipes (`--transport`, docs/SIMULATOR.md).
source "$(dirname "$0")/lib.sh"

need python3:python3
build_bins ucupdate-simulator
if [ "$QUICK" = 1 ]; then DEVICES=${DEVICES:-500}; else DEVICES=${DEVICES:-100000}; fi

TRANSPORT_ARGS=()
[ -n "${TRANSPORT:-}" ] && TRANSPORT_ARGS=(--transport "$TRANSPORT")

log "ucupdate-sim: week, $DEVICES devices ${TRANSPORT_ARGS[*]}"
start=$(date +%s.%N)
set +e
timeout 1800 "$BIN/ucupdate-sim" run --scenario "$BENCH_DIR/scenarios/week.toml" --devices "$DEVICES" \
    --time-scale max --no-progress "${TRANSPORT_ARGS[@]}" --report "$WORK/week.json" >"$WORK/week.out" 2>"$WORK/week.err"
rc=$?
set -e
end=$(date +%s.%N)
[ "$rc" -le 1 ] || { cat "$WORK/week.out" "$WORK/week.err" >&2; die "ucupdate-sim exited $rc"; }
wall=$(calc "$end-$start")
echo
echo "compressed-time: 7 virtual days, $(date -u +%FT%TZ), profile $BENCH_PROFILE, load $(cut -d' ' -f1-3 /proc/loadavg)"
row devices "wall s" "report wall s" "passed/failed"
row "$DEVICES" "$wall" "$(json "$WORK/week.json" 'r["wall_ms"]/1000')" \
    "$(json "$WORK/week.json" 'str(r["verdicts"]["passed"])+"/"+str(r["verdicts"]["failed"])')"
json "$WORK/week.json" '"transport: %s (%d connections in memory)" % (r.get("transport", "tcp"), r.get("in_memory_connections", 0))' 
json "$WORK/week.json" '"checks: %d, downloads: %d, bytes: %d" % (sum(r["requests"].get("check-internal",{}).values()), sum(r["requests"].get("download",{}).values()), r["bytes_downloaded"])'
if [ "$rc" -ne 0 ]; then
    sed -n '1,40p' "$WORK/week.out"
    echo "verdicts: FAILED (exit $rc)"
fi
ratio "week wall seconds @$DEVICES devices" "$wall" "<=" 60
ratio "week verdicts correct (1 = exit 0)" "$([ "$rc" -eq 0 ] && echo 1 || echo 0)" ">=" 1
