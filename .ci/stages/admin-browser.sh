#!/usr/bin/env bash
# The admin API's browser-origin test: a real browser (headless Chromium) loads a page from another
# loopback origin whose script tries to approve a pending rule through the stub's admin API,
# with a `no-cors` fetch (text/plain and a JSON body) and an auto-submitted form POST. The
# requests must reach the server (its log shows each refused as cross-origin) and change
# nothing: the rule is still pending afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
cargo build -q -p ucupdate-server-stub --bin ucupdate-server
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "admin browser: $*"; cat "$work/server.log" 2>/dev/null | tail -20; exit 1; }

RUST_LOG=warn target/debug/ucupdate-server serve --init --data "$work/data" --internal 127.0.0.1:0 \
    --internal-tls off --external off --admin 127.0.0.1:0 >"$work/urls" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^admin-token ' "$work/urls" && break; sleep 0.1; done
admin=$(awk '$1=="admin"{print $2}' "$work/urls")
token_file=$(awk '$1=="admin-token"{print $2}' "$work/urls")
[ -n "$admin" ] && [ -s "$token_file" ] || fail "the server printed no admin listener or token file"
auth="Authorization: Bearer $(cat "$token_file")"
key=UCPhone/Polycom/CX700/A/ENU/CPE
printf 'image' >"$work/CPE.nbt"
curl -sf -H "$auth" -H 'Content-Type: application/octet-stream' -T "$work/CPE.nbt" \
    "${admin%/}/admin/files/$key/2.0.0.0/CPE.nbt" >/dev/null || fail "publish refused"
approve="${admin%/}/admin/rules/$key/approve"

mkdir "$work/site"
cat >"$work/site/attack.html" <<EOF
<!doctype html>
<html><body>
<iframe name="sink" style="display:none"></iframe>
<form id="f" method="POST" action="$approve" enctype="text/plain" target="sink">
  <input name='{"x":"' value='"}'>
</form>
<script>
(async () => {
  const tries = [
    { method: 'POST', mode: 'no-cors', body: 'approve please' },
    { method: 'POST', mode: 'no-cors', body: '{}', headers: { 'Content-Type': 'application/json' } },
    { method: 'POST', mode: 'no-cors', body: '{}', credentials: 'include' },
  ];
  for (const t of tries) {
    try { await fetch('$approve', t); } catch (e) { /* opaque or refused: either way */ }
  }
  document.getElementById('f').submit();
  setTimeout(() => { document.title = 'attack-done'; }, 500);
})();
</script>
</body></html>
EOF
# The attacker's origin: another loopback port.
site_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$site_port" --bind 127.0.0.1 --directory "$work/site" >"$work/site.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$site_port/attack.html" >/dev/null && break; sleep 0.1; done

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$work/profile"
       --virtual-time-budget=5000)
timeout 120 chromium "${flags[@]}" --dump-dom "http://127.0.0.1:$site_port/attack.html" \
    >"$work/dom.html" 2>"$work/chromium.log" || true
grep -q 'attack-done' "$work/dom.html" || fail "the attack page did not run to its end (see chromium.log)"

refused=$(grep -c 'cross-origin admin request refused' "$work/server.log" || true)
[ "$refused" -ge 2 ] || fail "the browser's requests did not reach the admin API ($refused refused)"
rules=$(curl -sf -H "$auth" "${admin%/}/admin/rules") || fail "cannot list rules"
approved=$(python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["approved"])' <<<"$rules")
[ "$approved" = "None" ] || fail "a cross-origin page approved the rule: $rules"
echo "admin browser: $refused cross-origin requests from headless Chromium refused; the rule is still pending"
