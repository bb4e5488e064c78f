#!/usr/bin/env bash
# bench/soak.sh [--quick]: the reliability soak. ucupdate-sim (release) runs
# bench/scenarios/soak.toml — 10,000 devices, 30 virtual days, two rollouts, 5% of requests
# faulted at random (every fault kind but the stalls) for the first 25 days — on the embedded
# stub at --time-scale 1440 (a virtual day per wall minute: 30 wall minutes), sampling the
# process's RSS every minute from /proc/PID/status. Passes when: every device's final verdict is
# correct (exit 0), no error class appears that no injected fault explains, there are no more
# errors than injected faults, and memory is flat (the last sample at most 1.5x the sample after
# warm-up).
# Quick (CI): bench/scenarios/soak-quick.toml, 1,000 devices, 3 days at --time-scale max,
# RSS every 2 s (too short a run to judge flatness: that needs 10 samples).
# Environment: DEVICES, TIME_SCALE, SAMPLE_SECS override; SOAK_OUT=DIR keeps the report and the
# RSS samples there (default: a temp dir, removed on exit).
source "$(dirname "$0")/lib.sh"

need python3:python3
build_bins ucupdate-simulator
if [ "$QUICK" = 1 ]; then
    SCENARIO=$BENCH_DIR/scenarios/soak-quick.toml
    DEVICES=${DEVICES:-1000}; TIME_SCALE=${TIME_SCALE:-max}; SAMPLE_SECS=${SAMPLE_SECS:-2}; LIMIT=600
else
    SCENARIO=$BENCH_DIR/scenarios/soak.toml
    DEVICES=${DEVICES:-10000}; TIME_SCALE=${TIME_SCALE:-1440}; SAMPLE_SECS=${SAMPLE_SECS:-60}; LIMIT=3600
fi
OUT=${SOAK_OUT:-$WORK}
mkdir -p "$OUT"

log "ucupdate-sim: $(basename "$SCENARIO"), $DEVICES devices, time scale $TIME_SCALE"
UCUPDATE_LOG=error "$BIN/ucupdate-sim" run --scenario "$SCENARIO" \
    --devices "$DEVICES" --time-scale "$TIME_SCALE" --no-progress \
    --report "$OUT/soak.json" >"$OUT/soak.out" 2>"$OUT/soak.err" &
SIM=$!
PIDS+=("$SIM")
echo "elapsed_s,rss_kib" >"$OUT/rss.csv"
start=$(date +%s)
# Bounded: the simulator is killed (by its PID) after $LIMIT seconds. It is started directly,
# not under timeout(1), so that $SIM is the process whose RSS is sampled.
while kill -0 "$SIM" 2>/dev/null; do
    if [ $(( $(date +%s) - start )) -gt "$LIMIT" ]; then
        kill "$SIM"
        die "ucupdate-sim still running after $LIMIT s"
    fi
    rss=$(proc_kib "$SIM" VmRSS)
    # Empty when the run ended between the check above and the read (a zombie has no VmRSS).
    if [ -n "$rss" ] && [ "$rss" != 0 ]; then
        echo "$(( $(date +%s) - start )),$rss" >>"$OUT/rss.csv"
    fi
    # Sleep in short steps so the end of the run is noticed promptly.
    for _ in $(seq "$SAMPLE_SECS"); do
        kill -0 "$SIM" 2>/dev/null || break
        sleep 1
    done
done
set +e
wait "$SIM"
rc=$?
set -e
wall=$(( $(date +%s) - start ))
[ "$rc" -le 1 ] || { cat "$OUT/soak.out" "$OUT/soak.err" >&2; die "ucupdate-sim exited $rc"; }

echo
echo "soak: $(basename "$SCENARIO"), $DEVICES devices, $(date -u +%FT%TZ), profile $BENCH_PROFILE, load $(cut -d' ' -f1-3 /proc/loadavg)"
sed -n '1,3p' "$OUT/soak.out"
grep -E '^(errors by class|faults injected):' "$OUT/soak.out" || true
echo "RSS samples (s,KiB): $(tail -n +2 "$OUT/rss.csv" | tr '\n' ' ')"
python3 - "$OUT/soak.json" "$OUT/rss.csv" "$rc" "$wall" <<'EOF'
import csv, json, sys
report, rss_csv, rc, wall = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3]), sys.argv[4]
# The classes an injected fault can produce (no stalls are injected, so no timeouts).
explained = {"connect", "transport", "http5xx", "unauthorized", "hash_mismatch"}
errors = report.get("errors", {})
faults = report.get("faults_injected", {})
unexpected = {k: v for k, v in errors.items() if k not in explained}
samples = [int(r["rss_kib"]) for r in csv.DictReader(open(rss_csv))]
# Warm-up: the first fifth of the run (the fleet and the server's inventory fill up).
base = samples[len(samples) // 5] if samples else 0
last = samples[-1] if samples else 0
growth = last / base if base else 0.0
v = report["verdicts"]
print(f"wall {wall} s; verdicts {v['passed']} passed / {v['failed']} failed (exit {rc})")
print(f"errors {sum(errors.values())} <= faults injected {sum(faults.values())}; unexpected classes: {unexpected or 'none'}")
print(f"RSS KiB: first {samples[0] if samples else 0}, after warm-up {base}, peak {max(samples, default=0)}, last {last} (x{growth:.2f})")
ok = rc == 0 and not unexpected and sum(errors.values()) <= sum(faults.values()) \
    and sum(faults.values()) > 0 and (len(samples) < 10 or growth <= 1.5)
print("soak: PASS" if ok else "soak: FAIL")
sys.exit(0 if ok else 1)
EOF
