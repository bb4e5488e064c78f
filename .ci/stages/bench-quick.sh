#!/usr/bin/env bash
# The benchmark harness's quick mode, so it cannot rot: every bench/*.sh script with
# --quick, on the debug binaries `cargo test` already built (BENCH_PROFILE=dev). Each script
# installs its own peers (apt-get, pip). A script that breaks fails this stage; a missed ratio
# never does (the numbers of a quick run on a CI machine mean nothing; docs/BENCHMARKS.md holds
# the full runs).
set -uo pipefail
cd "$(dirname "$0")/../.."
export BENCH_PROFILE=${BENCH_PROFILE:-dev}
failed=()
for script in bench/fleet-memory.sh bench/loadgen.sh bench/compressed-time.sh bench/server.sh bench/agent.sh bench/ntlm.sh bench/catalog-verify.sh; do
    printf '\n--- %s --quick\n' "$script"
    start=$(date +%s)
    if timeout 900 bash "$script" --quick; then
        echo "--- $script: ok ($(( $(date +%s) - start ))s)"
    else
        echo "--- $script: FAILED (exit $?, $(( $(date +%s) - start ))s)"
        failed+=("$script")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench-quick: broken: ${failed[*]}"
    exit 1
fi
echo "bench-quick: every script ran"
