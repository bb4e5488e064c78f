#!/usr/bin/env bash
# bench/agent.sh [--quick]: the agent's download path (`ucupdate_agent::net::download_to`, through
# bench/agent-download's `ucbench download`: streaming SHA-256, size and digest verified, written
# to a file and fsynced) against two peers fetching the same file from the same stub over
# loopback HTTPS: curl into a file (which does not hash), and `curl | sha256sum` (the fair peer:
# it hashes, on a second process); alternating, median of 5 (quick: 3). Each client's CPU
# (user+sys, from /usr/bin/time) per MiB is reported too: it moves much less than the wall rate
# when other work shares the cores. And the agent's peak RSS (VmHWM of a process that does
# nothing else) for a small and a large image, which must not differ much (constant memory).
# Also prints the agent's armv7/aarch64 `device` binary sizes if .ci/stages/arm.sh left them in
# target/ (or ARM_TARGET_DIR). Targets (docs/BENCHMARKS.md): >= 0.9x curl and >= 1.0x
# `curl | sha256sum`; peak RSS <= 8 MiB for 200 MB; armv7 <= 2 MiB (row 5d).
# Full: 20 MB and 200 MB. Quick: 2 MB and 20 MB.
# AGENT_B=PATH (another `ucbench` build, e.g. a copy of the one before a change) is run in every
# round too, right before or after this tree's (alternating), for a same-run A/B: its median and
# the median of the per-round ratios this/B are printed.
source "$(dirname "$0")/lib.sh"

need curl:curl python3:python3 /usr/bin/time:time sha256sum:coreutils
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
# Runs a command under /usr/bin/time; its stdout to stdout, its user+sys seconds to $WORK/cpu.
timed() { /usr/bin/time -o "$WORK/cpu" -f '%U %S' "$@"; }
cpu() { awk '{printf "%.3f\n", $1+$2}' "$WORK/cpu"; }
now() { date +%s.%N; }
# CURL_TLS="--tls13-ciphers TLS_AES_128_GCM_SHA256 --curves P-256" gives curl the suite and
# group the agent offers first (agent/src/net/tls.rs); by default curl negotiates its own
# (OpenSSL's AES-256-GCM-SHA384 over X25519), as the targets were set (docs/BENCHMARKS.md §5).
read -r -a CURL_TLS <<<"${CURL_TLS:-}"
AGENT_B=${AGENT_B:-}
[ -z "$AGENT_B" ] || [ -x "$AGENT_B" ] || die "AGENT_B=$AGENT_B is not an executable"
# One download by the ucbench at $1 into $WORK/agent.out; its JSON line on stdout.
agent_run() {
    rm -f "$WORK/agent.out"
    timed timeout 600 "$1" download "${URL[$mb]}" "$STUB_CA" $((mb * 1000000)) "${SHA[$mb]}" "$WORK/agent.out" \
        || die "ucbench download ($1) failed"
    rm -f "$WORK/agent.out"
}
declare -A A B AB C S H HMAX ACPU CCPU SCPU
for mb in "${SIZES[@]}"; do
    a=(); b=(); ab=(); c=(); s=(); h=(); acpu=(); ccpu=(); scpu=()
    mib=$(calc "$mb*1000000/1048576")
    for i in $(seq "$RUNS"); do
        rm -f "$WORK/curl.out"
        if [ -n "$AGENT_B" ] && [ $((i % 2)) = 0 ]; then outb=$(agent_run "$AGENT_B") || exit 1; fi
        out=$(agent_run "$HELPER") || exit 1
        a+=("$(json <(echo "$out") 'r["mib_per_s"]')"); h+=("$(json <(echo "$out") 'r["vm_hwm_kib"]')")
        acpu+=("$(calc "$(cpu)*1000/$mib")")
        if [ -n "$AGENT_B" ] && [ $((i % 2)) = 1 ]; then outb=$(agent_run "$AGENT_B") || exit 1; fi
        if [ -n "$AGENT_B" ]; then
            b+=("$(json <(echo "$outb") 'r["mib_per_s"]')")
            ab+=("$(calc "${a[-1]}/${b[-1]}")")
        fi
        c+=("$(timed curl "${CURL_TLS[@]}" -sf --cacert "$STUB_CA" -o "$WORK/curl.out" -w '%{speed_download}' "${URL[$mb]}" | awk '{printf "%.1f\n", $1/1048576}')") \
            || die "curl download failed"
        ccpu+=("$(calc "$(cpu)*1000/$mib")")
        rm -f "$WORK/curl.out"
        # The fair peer: the same bytes hashed as they arrive; wall time of the whole pipe, CPU
        # of both processes (bash's `time` cannot split a pipe, so each is timed on its own).
        t0=$(now)
        got=$(timed curl "${CURL_TLS[@]}" -sf --cacert "$STUB_CA" "${URL[$mb]}" | /usr/bin/time -o "$WORK/cpu2" -f '%U %S' sha256sum | cut -d' ' -f1) \
            || die "curl | sha256sum failed"
        t1=$(now)
        [ "$got" = "${SHA[$mb]}" ] || die "curl | sha256sum: digest $got, expected ${SHA[$mb]}"
        s+=("$(calc "$mib/($t1-$t0)")")
        scpu+=("$(calc "($(cpu)+$(awk '{print $1+$2}' "$WORK/cpu2"))*1000/$mib")")
    done
    if [ -n "$AGENT_B" ]; then
        B[$mb]=$(median "${b[@]}"); AB[$mb]=$(median "${ab[@]}")
        log "$mb MB: agent B ($AGENT_B) ${b[*]} MiB/s; this/B per round ${ab[*]}"
    fi
    A[$mb]=$(median "${a[@]}"); C[$mb]=$(median "${c[@]}"); S[$mb]=$(median "${s[@]}")
    ACPU[$mb]=$(median "${acpu[@]}"); CCPU[$mb]=$(median "${ccpu[@]}"); SCPU[$mb]=$(median "${scpu[@]}")
    H[$mb]=$(median "${h[@]}"); HMAX[$mb]=$(printf '%s\n' "${h[@]}" | sort -g | tail -1)
    log "$mb MB: agent ${a[*]} MiB/s (VmHWM ${h[*]} KiB; CPU ms/MiB ${acpu[*]}), curl ${c[*]} MiB/s (${ccpu[*]}), curl|sha256sum ${s[*]} MiB/s (${scpu[*]})"
done

echo
echo "agent: download over loopback HTTPS, $(date -u +%FT%TZ), profile $BENCH_PROFILE, load $(cut -d' ' -f1-3 /proc/loadavg)"
row image "agent MiB/s" "curl MiB/s" "curl|sha256sum MiB/s, peak RSS KiB med/max"
for mb in "${SIZES[@]}"; do row "$mb MB" "${A[$mb]}" "${C[$mb]}" "${S[$mb]}, ${H[$mb]}/${HMAX[$mb]}"; done
row "  client CPU ms per MiB (medians)" "" "" ""
for mb in "${SIZES[@]}"; do row "  $mb MB" "${ACPU[$mb]}" "${CCPU[$mb]}" "${SCPU[$mb]}"; done
big=${SIZES[-1]}; small=${SIZES[0]}
if [ -n "$AGENT_B" ]; then
    for mb in "${SIZES[@]}"; do row "$mb MB, agent B ($AGENT_B)" "${B[$mb]}" "" ""; done
    for mb in "${SIZES[@]}"; do ratio "agent/agent B download ${mb} MB (median per round)" "${AB[$mb]}"; done
fi
sizes_line=""
# .ci/stages/arm.sh builds into $CARGO_TARGET_DIR or target/; ARM_TARGET_DIR names another.
ARM_DIRS=("$TARGET_DIR"); [ -n "${ARM_TARGET_DIR:-}" ] && ARM_DIRS+=("$ARM_TARGET_DIR")
for f in "${ARM_DIRS[@]/%//armv7-unknown-linux-gnueabihf/device/ucupdate-agent}" \
         "${ARM_DIRS[@]/%//aarch64-unknown-linux-gnu/device/ucupdate-agent}"; do
    [ -f "$f" ] && sizes_line+="$f $(stat -c %s "$f") bytes; "
done
echo "device-profile binaries: ${sizes_line:-none in ${ARM_DIRS[*]} (run .ci/stages/arm.sh)}"
ratio "agent/curl download ${big} MB" "$(calc "${A[$big]}/${C[$big]}")" ">=" 0.9
ratio "agent/(curl | sha256sum) download ${big} MB" "$(calc "${A[$big]}/${S[$big]}")" ">=" 1.0
ratio "agent/curl per client CPU ${big} MB" "$(div "${CCPU[$big]}" "${ACPU[$big]}")"
ratio "agent/(curl | sha256sum) per client CPU" "$(div "${SCPU[$big]}" "${ACPU[$big]}")"
ratio "agent peak RSS MiB @${big} MB (worst run)" "$(calc "${HMAX[$big]}/1024")" "<=" 8
ratio "agent peak RSS ${big} MB / ${small} MB (medians)" "$(calc "${H[$big]}/${H[$small]}")" "<=" 1.1
for f in "${ARM_DIRS[@]/%//armv7-unknown-linux-gnueabihf/device/ucupdate-agent}"; do
    [ -f "$f" ] && ratio "armv7 agent binary MiB ($f)" "$(calc "$(stat -c %s "$f")/1048576")" "<=" 2
done
exit 0
