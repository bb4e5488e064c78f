#!/usr/bin/env bash
# Dialect capture: a live `tcpdump -i lo` capture of the Python phone (tests/peers/
# foreign_client.py, with three modules, a download and credentials) checking against the Python pool
# (foreign_server.py) of the made-up foreign dialect, then `ucupdate-sim dialect learn` on that
# pcap (TCP reassembly; the modules become a repeated section) and `dialect check` of the learned file against it. Fails unless both
# succeed and the learned file holds no credential. Installs tcpdump if missing (as root).
# Waits only by polling (the pool's PORT line, tcpdump's "listening on", the reply in the
# pcap); under a minute once ucupdate-sim is built.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v tcpdump >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tcpdump >/dev/null
fi
cargo build -q -p ucupdate-simulator --bin ucupdate-sim
sim=$PWD/target/debug/ucupdate-sim

work=$(mktemp -d "${TMPDIR:-/tmp}/ucdialect.XXXXXX")
pool_pid=
dump_pid=
cleanup() {
    [ -n "$dump_pid" ] && kill "$dump_pid" 2>/dev/null || true
    [ -n "$pool_pid" ] && kill "$pool_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

python3 -u tests/peers/foreign_server.py --port 0 >"$work/pool.out" &
pool_pid=$!
until grep -q '^PORT ' "$work/pool.out"; do kill -0 "$pool_pid"; sleep 0.1; done
port=$(awk '/^PORT/ { print $2 }' "$work/pool.out")

# -Z root: keep writing into this root-only temp dir; -U: each packet written as it comes.
tcpdump -i lo -s 0 -U -Z root -w "$work/check.pcap" "tcp port $port" 2>"$work/tcpdump.err" &
dump_pid=$!
until grep -q 'listening on' "$work/tcpdump.err"; do kill -0 "$dump_pid"; sleep 0.1; done

python3 tests/peers/foreign_client.py --server "http://127.0.0.1:$port" --download \
    --auth "NTLM c2VjcmV0" --part UCUpdater.nbt:1.0.0.7 --part Lang.bin:1.0.522.101
# tcpdump drops what it has not written yet when it is stopped: wait until the reply is in.
until grep -aq '</s:Envelope>' "$work/check.pcap"; do kill -0 "$dump_pid"; sleep 0.1; done
kill -INT "$dump_pid"
wait "$dump_pid" || true
dump_pid=
cat "$work/tcpdump.err"

"$sim" dialect learn "$work/check.pcap" --port "$port" -o "$work/pool.toml" | tee "$work/learn.out"
grep -q 'the check lists 3 modules' "$work/learn.out"
"$sim" dialect check "$work/pool.toml" "$work/check.pcap" --port "$port"
if grep -q -e c2VjcmV0 -e secret-cookie "$work/pool.toml"; then
    echo "dialect-capture: the learned dialect holds a credential"
    exit 1
fi
echo "dialect-capture: learned from a live tcpdump capture and reproduced it byte for byte"
