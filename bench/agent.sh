#!/usr/bin/env bash
# bench/agent.sh [--quick]: the agent's download path (`ucupdate_agent::net::download_to`, through
# bench/agent-download's `ucbench download`: streaming SHA-256, size and digest verified, written
# to a file and fsynced) against curl fetching the same file from the same stub over loopback
# HTTPS into a file, alternating, median of 5 (quick: 3); and the agent's peak RSS (VmHWM of a process that
# does nothing else) for a small and a large image, which must not differ much (constant memory).
# Also prints the agent's armv7/aarch64 `device` binary sizes if .ci/stages/arm.sh left them in
# target/ (or ARM_TARGET_DIR). Targets (docs/BENCHMARKS.md): >= 0.9x curl; peak RSS <= 8 MiB for 200 MB; armv7 <= 2 MB.
# Full: 20 MB and 200 MB. Quick: 2 MB and 20 MB.
source "$(dirname "$0")/lib.sh"

need curl:curl python3:python3
build_bins ucupdate-server-stub
build_helper
if [ "$QUICK" = 1 ]; then SIZES=(2 20); RUNS=3; else SIZES=(20 200); RUNS=${RUNS:-5}; fi
start_stub

KEY=UCPhone/Polycom/CX700/A/ENU/CPE
IFS=/ read -r dt br mo rev loc ut <<<"$KEY"
declare -A URL SHA
v=0
for mb in "${SIZES[@]}"; do
    v=$((v + 1)); version=1.0.700.$v
    head -c $((mb * 1000000)) /dev/urandom >"$WORK/img-$mb.nbt"
    curl -sf -H "Authorization: Bearer $(cat "$STUB_TOKEN_FILE")" -H "Content-Type: application/octet-stream" -T "$WORK/img-$mb.nbt" "${STUB_ADMIN%/}/admin/files/$KEY/$version/CPE.nbt" >/dev/null || die "publish refused"
    URL[$mb]=$(origin "$STUB_TLS")/DeviceUpdateFiles_Int/$dt/$br/$mo/$rev/$loc/$version/$ut/CPE.nbt
    SHA[$mb]=$(sha256sum "$WORK/img-$mb.nbt" | cut -d' ' -f1)
    rm -f "$WORK/img-$mb.nbt"
done

median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
declare -A A C H HMAX
for mb in "${SIZES[@]}"; do
    a=(); c=(); h=()
    for i in $(seq "$RUNS"); do
        rm -f "$WORK/agent.out" "$WORK/curl.out"
        out=$(timeout 600 "$HELPER" download "${URL[$mb]}" "$STUB_CA" $((mb * 1000000)) "${SHA[$mb]}" "$WORK/agent.out") \
            || die "ucbench download failed: $out"
        a+=("$(json <(echo "$out") 'r["mib_per_s"]')"); h+=("$(json <(echo "$out") 'r["vm_hwm_kib"]')")
        rm -f "$WORK/agent.out"
        c+=("$(curl -sf --cacert "$STUB_CA" -o "$WORK/curl.out" -w '%{speed_download}' "${URL[$mb]}" | awk '{printf "%.1f\n", $1/1048576}')") \
            || die "curl download failed"
    done
    rm -f "$WORK/curl.out"
    A[$mb]=$(median "${a[@]}"); C[$mb]=$(median "${c[@]}")
    H[$mb]=$(median "${h[@]}"); HMAX[$mb]=$(printf '%s\n' "${h[@]}" | sort -g | tail -1)
    log "$mb MB: agent ${a[*]} MiB/s (VmHWM ${h[*]} KiB), curl ${c[*]} MiB/s"
done

echo
echo "agent: download over loopback HTTPS, $(date -u +%FT%TZ), profile $BENCH_PROFILE, load $(cut -d' ' -f1-3 /proc/loadavg)"
row image "agent MiB/s" "curl MiB/s" "peak RSS KiB med/max"
for mb in "${SIZES[@]}"; do row "$mb MB" "${A[$mb]}" "${C[$mb]}" "${H[$mb]}/${HMAX[$mb]}"; done
big=${SIZES[-1]}; small=${SIZES[0]}
sizes_line=""
# .ci/stages/arm.sh builds into $CARGO_TARGET_DIR or target/; ARM_TARGET_DIR names another.
ARM_DIRS=("$TARGET_DIR"); [ -n "${ARM_TARGET_DIR:-}" ] && ARM_DIRS+=("$ARM_TARGET_DIR")
for f in "${ARM_DIRS[@]/%//armv7-unknown-linux-gnueabihf/device/ucupdate-agent}" \
         "${ARM_DIRS[@]/%//aarch64-unknown-linux-gnu/device/ucupdate-agent}"; do
    [ -f "$f" ] && sizes_line+="$f $(stat -c %s "$f") bytes; "
done
echo "device-profile binaries: ${sizes_line:-none in ${ARM_DIRS[*]} (run .ci/stages/arm.sh)}"
ratio "agent/curl download ${big} MB" "$(calc "${A[$big]}/${C[$big]}")" ">=" 0.9
ratio "agent peak RSS MiB @${big} MB (worst run)" "$(calc "${HMAX[$big]}/1024")" "<=" 8
ratio "agent peak RSS ${big} MB / ${small} MB (medians)" "$(calc "${H[$big]}/${H[$small]}")" "<=" 1.1
for f in "${ARM_DIRS[@]/%//armv7-unknown-linux-gnueabihf/device/ucupdate-agent}"; do
    [ -f "$f" ] && ratio "armv7 agent binary MB ($f)" "$(calc "$(stat -c %s "$f")/1000000")" "<=" 2
done
exit 0
