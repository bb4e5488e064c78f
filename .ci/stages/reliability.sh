#!/usr/bin/env bash
# Reliability: every cargo-fuzz target in fuzz/ for ~8 s each (about a minute in all),
# then the quick soak (bench/soak.sh --quick: 1,000 simulated devices, 5% of requests faulted).
# Installs what it needs itself: cargo-fuzz (cargo install), and uses a nightly toolchain if one
# is installed, else the stable one with RUSTC_BOOTSTRAP=1 (see docs/PROTOCOL.md, Fuzzing).
# Fails on any fuzzer crash (its input lands in fuzz/artifacts/<target>/) or a failed soak.
# New corpus entries go to a temp dir, so fuzz/corpus/ is only read.
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZ_SECS=${FUZZ_SECS:-8}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz() { (cd fuzz && cargo +nightly fuzz "$@"); }
else
    fuzz() { (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz "$@"); }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ucfuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
targets=$(fuzz list)
echo "fuzz targets: $(echo "$targets" | tr '\n' ' ')"
fuzz build -O
failed=()
for t in $targets; do
    mkdir -p "$work/$t"
    seeds=()
    [ -d "fuzz/corpus/$t" ] && seeds=("corpus/$t")
    if fuzz run -O "$t" "$work/$t" "${seeds[@]}" -- -max_total_time="$FUZZ_SECS" \
        >"$work/$t.log" 2>&1; then
        echo "fuzz $t: ok, $(grep -E '^Done [0-9]+ runs' "$work/$t.log" | tail -1)"
    else
        echo "fuzz $t: FAILED"
        tail -40 "$work/$t.log"
        failed+=("$t")
    fi
done

echo
echo "--- bench/soak.sh --quick"
soak=ok
BENCH_PROFILE=${BENCH_PROFILE:-dev} timeout 900 bash bench/soak.sh --quick || soak=FAILED
echo "--- soak: $soak"

if [ ${#failed[@]} -gt 0 ] || [ "$soak" != ok ]; then
    echo "reliability: fuzz failures: ${failed[*]:-none}; soak: $soak"
    exit 1
fi
echo "reliability: every fuzz target ran clean and the quick soak passed"
