# shellcheck shell=bash
# Shared by the bench/*.sh scripts: flags, binaries, the stub, peers, measurements, tables.
# Every process a script starts is recorded and ended by its own PID on exit; every load loop
# is bounded in count and in time; only loopback is used.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (only --quick)" >&2; exit 2 ;;
    esac
done
# BENCH_NO_BUILD=1 uses the binaries already in target/ (while others edit the sources).
# Cargo profile of the binaries under test. Full runs use release; CI's quick mode may reuse the
# debug build `cargo test` left behind (BENCH_PROFILE=dev) so the harness is exercised cheaply.
BENCH_PROFILE=${BENCH_PROFILE:-release}
case "$BENCH_PROFILE" in dev|debug) BENCH_PROFILE=dev; PROFILE_DIR=debug ;; *) PROFILE_DIR=$BENCH_PROFILE ;; esac
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/$PROFILE_DIR
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ucbench.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    [ -n "${BENCH_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Installs Debian packages whose commands are missing: need CMD:PACKAGE...
need() {
    local missing=() spec cmd pkg
    for spec in "$@"; do
        cmd=${spec%%:*} pkg=${spec#*:}
        command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ] || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # RUNLEVEL=1: invoke-rc.d then leaves packaged services (nginx on :80) stopped.
    RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Builds the workspace binaries a script uses (a no-op when they are fresh).
build_bins() {
    [ -z "${BENCH_NO_BUILD:-}" ] || return 0
    local pkgs=() p
    for p in "$@"; do pkgs+=(-p "$p"); done
    log "cargo build --profile $BENCH_PROFILE ${pkgs[*]}"
    (cd "$ROOT" && cargo build --quiet --profile "$BENCH_PROFILE" "${pkgs[@]}")
}

# Builds bench/agent-download (its own workspace) into the shared target dir.
HELPER=$BIN/ucbench
build_helper() {
    [ -z "${BENCH_NO_BUILD:-}" ] || return 0
    log "cargo build --profile $BENCH_PROFILE --manifest-path bench/agent-download/Cargo.toml"
    (cd "$ROOT" && cargo build --quiet --profile "$BENCH_PROFILE" \
        --manifest-path bench/agent-download/Cargo.toml --target-dir "$TARGET_DIR")
}

# Starts `ucupdate-server serve` on loopback ports picked by the kernel and reads them back.
# Sets STUB_PID STUB_DATA STUB_INTERNAL STUB_TLS STUB_EXTERNAL STUB_ADMIN STUB_CA STUB_TOKEN_FILE.
start_stub() {
    STUB_DATA=$(mktemp -d "$WORK/stub.XXXXXX")
    # Devices that never had a user discover ucupdates-r2.<domain> and connect by that name.
    local names=(--tls-name ucupdates-r2.sim.example)
    case " $* " in *" --cert "*) names=() ;; esac
    local out=$STUB_DATA.out
    RUST_LOG=${STUB_LOG:-warn} "$BIN/ucupdate-server" serve --init --data "$STUB_DATA" \
        --internal 127.0.0.1:0 --internal-tls 127.0.0.1:0 --external 127.0.0.1:0 \
        --admin 127.0.0.1:0 --flush-interval-ms 600000 --max-connections 100000 "${names[@]}" "$@" \
        >"$out" 2>"$STUB_DATA.err" &
    STUB_PID=$!
    PIDS+=("$STUB_PID")
    local i
    for i in $(seq 1 100); do
        grep -q '^admin-token ' "$out" 2>/dev/null && break
        kill -0 "$STUB_PID" 2>/dev/null || { cat "$STUB_DATA.err" >&2; die "stub exited"; }
        sleep 0.1
    done
    STUB_INTERNAL=$(awk '$1=="internal"{print $2}' "$out")
    STUB_TLS=$(awk '$1=="internal-tls"{print $2}' "$out")
    STUB_EXTERNAL=$(awk '$1=="external"{print $2}' "$out")
    STUB_ADMIN=$(awk '$1=="admin"{print $2}' "$out")
    STUB_CA=$(awk '$1=="ca"{print $2}' "$out")
    STUB_TOKEN_FILE=$(awk '$1=="admin-token"{print $2}' "$out")
    [ -n "$STUB_INTERNAL" ] && [ -n "$STUB_CA" ] || { cat "$out" "$STUB_DATA.err" >&2; die "stub ports not printed"; }
    log "stub pid $STUB_PID: $STUB_INTERNAL $STUB_TLS $STUB_EXTERNAL admin $STUB_ADMIN"
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# origin of a URL: http://127.0.0.1:1234/x -> http://127.0.0.1:1234
origin() { printf '%s\n' "$1" | sed -E 's#^([a-z]+://[^/]+).*#\1#'; }

# /proc/PID/status field in KiB (VmRSS, VmHWM).
proc_kib() { awk -v f="$2:" '$1==f{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# user+system CPU seconds of a live PID.
proc_cpu() {
    local tck; tck=$(getconf CLK_TCK)
    awk -v t="$tck" '{printf "%.3f\n", ($14+$15)/t}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Arithmetic in awk: calc '1/3' -> 0.333
calc() { awk "BEGIN{printf \"%.3f\n\", $1}"; }
# a/b, or "n/a" when b is 0 (a CPU delta below one clock tick in a quick run).
div() { awk -v a="$1" -v b="$2" 'BEGIN{if (b+0 == 0) print "n/a"; else printf "%.3f\n", a/b}'; }

# A ratio line every script prints: ratio: NAME VALUE target OP GOAL met|missed
# (without OP GOAL: a number that is only reported).
ratio() {
    local name=$1 value=$2 op=${3:--} goal=${4:-} ok
    if [ "$op" = - ]; then printf 'ratio: %-40s %10s  target: none, reported\n' "$name" "$value"; return; fi
    # A figure that could not be measured (`div` by a zero CPU delta in a quick run) is neither.
    if [ "$value" = n/a ]; then printf 'ratio: %-40s %10s  target %s %s  not measured\n' "$name" "$value" "$op" "$goal"; return; fi
    ok=$(awk -v v="$value" -v g="$goal" -v o="$op" 'BEGIN{m=(o==">=")?(v>=g):(v<=g); print m?"met":"missed"}')
    printf 'ratio: %-40s %10s  target %s %s  %s\n' "$name" "$value" "$op" "$goal" "$ok"
}

row() { printf '%-44s %14s %14s %s\n' "$@"; }

# The check request every peer POSTs (the fixture the protocol crate round-trips).
CHECK_BODY=$ROOT/protocol/tests/fixtures/check_request.xml

# A wrk Lua script that POSTs the check body; $1 = keep|close.
wrk_lua() {
    local mode=$1 f=$WORK/wrk-$1.lua
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "text/xml; charset=utf-8"'
        [ "$mode" = close ] && echo 'wrk.headers["Connection"] = "close"'
        printf 'wrk.body = [==[%s]==]\n' "$(cat "$CHECK_BODY")"
    } >"$f"
    echo "$f"
}

# Runs wrk, prints requests/s (and leaves its requests per CPU second in $WORK/wrk-per-cpu);
# also checks nothing but 2xx came back. Args: lua url secs conns
wrk_rps() {
    local lua=$1 url=$2 secs=$3 conns=$4 out
    out=$(/usr/bin/time -f 'cpu %U %S' timeout $((secs + 30)) wrk -t2 -c"$conns" -d"${secs}s" -s "$lua" "$url" 2>&1) \
        || { echo "$out" >&2; die "wrk failed"; }
    echo "$out" >>"$WORK/wrk.log"
    if grep -q 'Non-2xx' <<<"$out"; then echo "$out" >&2; die "wrk got non-2xx answers from $url"; fi
    awk '/^Requests\/sec:/{print $2}' <<<"$out"
    # requests per CPU second of wrk itself (user+sys), for the per-core comparisons
    WRK_PER_CPU=$(awk '/requests in/{n=$1} /^cpu /{c=$2+$3} END{printf "%.1f\n", (c>0)?n/c:0}' <<<"$out")
    echo "$WRK_PER_CPU" >"$WORK/wrk-per-cpu"
}

# JSON field from a report: json FILE PYTHON-EXPR (r = the report)
json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"; }
