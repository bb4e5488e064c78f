#!/usr/bin/env bash
# bench/fleet-memory.sh [--quick]: peak RSS of one `ucupdate-sim` process holding a fleet in a
# steady-like scenario where every device is powered on (bench/scenarios/fleet-steady.toml:
# power-ons within 1 h, 3 virtual hours, --time-scale max) against a separate stub process, so
# the simulator's RSS holds no server state. Peak RSS comes from `/usr/bin/time -v`; the baseline
# is the same run with 1 device. Prints bytes per device above the baseline at each size and the
# least-squares slope. Target (docs/BENCHMARKS.md): at most 512 B per device above the
# baseline at 10M devices (about 5 GB of RAM and half an hour on 2 cores: `SIZES="1 1000000
# 10000000"`).
# Full: 10k, 100k, 1M devices. Quick: 2k, 10k (a smoke test; the slope is noisy there).
# SIZES="1 N..." picks the sizes (the first is the baseline).
source "$(dirname "$0")/lib.sh"

need /usr/bin/time:time python3:python3
build_bins ucupdate-simulator ucupdate-server-stub
if [ -n "${SIZES:-}" ]; then read -r -a sizes <<<"$SIZES"
elif [ "$QUICK" = 1 ]; then sizes=(1 2000 10000); else sizes=(1 10000 100000 1000000); fi
SCENARIO=$BENCH_DIR/scenarios/fleet-steady.toml

start_stub
declare -A RSS WALL
for n in "${sizes[@]}"; do
    log "ucupdate-sim: $n devices"
    set +e
    /usr/bin/time -v -o "$WORK/time-$n.txt" timeout 7200 "$BIN/ucupdate-sim" run \
        --scenario "$SCENARIO" --devices "$n" --time-scale max --server "$STUB_INTERNAL" \
        --no-progress --report "$WORK/report-$n.json" >"$WORK/sim-$n.out" 2>"$WORK/sim-$n.err"
    rc=$?
    set -e
    if [ "$rc" -ge 2 ]; then cat "$WORK/sim-$n.out" "$WORK/sim-$n.err" >&2; die "ucupdate-sim exited $rc at $n devices"; fi
    [ "$rc" -eq 0 ] || log "warning: $n devices: some verdicts failed (exit $rc)"
    RSS[$n]=$(awk -F': ' '/Maximum resident set size/{print $2}' "$WORK/time-$n.txt")
    WALL[$n]=$(json "$WORK/report-$n.json" 'r["wall_ms"]/1000')
done

base=${RSS[1]}
echo
echo "fleet-memory: ucupdate-sim peak RSS, $(date -u +%FT%TZ), profile $BENCH_PROFILE, load $(cut -d' ' -f1-3 /proc/loadavg)"
row devices "peak RSS KiB" "B/device" "wall s"
for n in "${sizes[@]}"; do
    if [ "$n" = 1 ]; then per=baseline; else per=$(calc "(${RSS[$n]}-$base)*1024/$n"); fi
    row "$n" "${RSS[$n]}" "$per" "${WALL[$n]}"
done
# Least-squares slope of RSS (bytes) against devices over the sizes above the baseline.
pts=""
for n in "${sizes[@]}"; do pts+="$n ${RSS[$n]} "; done
slope=$(awk -v p="$pts" 'BEGIN{k=split(p,a," "); for(i=1;i<=k;i+=2){x=a[i];y=a[i+1]*1024;n++;sx+=x;sy+=y;sxx+=x*x;sxy+=x*y}
    printf "%.1f\n", (n*sxy-sx*sy)/(n*sxx-sx*sx)}')
largest=${sizes[-1]}
echo "slope: $slope bytes/device (least squares over ${sizes[*]})"
ratio "fleet bytes/device above baseline @$largest" "$(calc "(${RSS[$largest]}-$base)*1024/$largest")" "<=" 512
ratio "fleet bytes/device slope" "$slope" "<=" 512
