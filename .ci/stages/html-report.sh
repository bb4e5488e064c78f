#!/usr/bin/env bash
# Loads the simulator's HTML report in headless Chromium and checks that the page renders with no
# console errors, that every section and plot is in the rendered DOM, and (html-report-check.py,
# on the screenshot) that each legend's series colour is actually painted.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build -q -p ucupdate-simulator --bin ucupdate-sim
target/debug/ucupdate-sim run --devices 200 --no-progress --html "$work/report.html" >/dev/null
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$work/profile"
       --enable-logging=stderr --v=0 --virtual-time-budget=2000)
chromium "${flags[@]}" --dump-dom "file://$work/report.html" >"$work/dom.html" 2>"$work/chromium.log"
chromium "${flags[@]}" --window-size=1000,4000 --screenshot="$work/report.png" "file://$work/report.html" \
    >/dev/null 2>>"$work/chromium.log"
fail=0
python3 .ci/stages/html-report-check.py "$work/dom.html" "$work/report.png" || fail=1
polylines=$(grep -o '<polyline' "$work/dom.html" | wc -l)
rects=$(grep -o '<rect' "$work/dom.html" | wc -l)
if [ "$polylines" -lt 3 ] || [ "$rects" -lt 4 ]; then
    echo "html report: plots are empty (polylines=$polylines rects=$rects)"; fail=1
fi
if grep -E 'CONSOLE|Uncaught' "$work/chromium.log" | grep -v 'ERROR:dbus' ; then
    echo "html report: the page logged console errors"; fail=1
fi
if [ ! -s "$work/report.png" ]; then
    echo "html report: no screenshot"; fail=1
fi
if [ -n "${ARTIFACTS:-}" ]; then cp "$work/report.html" "$work/report.png" "$ARTIFACTS/" ; fi
[ "$fail" -eq 0 ] && echo "html report: renders in headless Chromium with every section and plot ($polylines polylines, $rects bars)"
exit "$fail"
