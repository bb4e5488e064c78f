#!/usr/bin/env bash
# ARM stage (run by .ci/run after the main tests, as root on a fresh Debian machine):
# installs the cross toolchains and qemu-user, builds ucupdate-agent with the `device` profile
# for armv7 and aarch64, prints their sizes, and runs ONE full update of the armv7 binary under
# qemu: DNS discovery (dnsmasq) -> check -> catalog verified -> download -> idle wait -> install
# hook -> reboot hook, against a host ucupdate-server on loopback. The package's catalog is
# signed by a code-signing certificate openssl made (an independent peer), and the agent trusts
# openssl's CA. Fails loudly on any error.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR=never

step() { printf '\n--- arm: %s\n' "$*"; }
fail() { printf '\narm: FAILED: %s\n' "$*" >&2; exit 1; }

ARMV7=armv7-unknown-linux-gnueabihf
AARCH64=aarch64-unknown-linux-gnu
KEY=UCPhone/Polycom/CX700/A/ENU/CPE
NEW_VERSION=2.0.0.0

step "toolchains"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu libc6-dev-armhf-cross libc6-dev-arm64-cross \
    qemu-user dnsmasq-base python3 openssl >/dev/null
rustup target add "$ARMV7" "$AARCH64"

step "build the agent for $ARMV7 and $AARCH64 (profile device)"
cargo build -p ucupdate-agent --profile device --no-default-features --target "$ARMV7"
cargo build -p ucupdate-agent --profile device --no-default-features --target "$AARCH64"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
AGENT_ARMV7="$TARGET_DIR/$ARMV7/device/ucupdate-agent"
AGENT_AARCH64="$TARGET_DIR/$AARCH64/device/ucupdate-agent"
for bin in "$AGENT_ARMV7" "$AGENT_AARCH64"; do
    [ -x "$bin" ] || fail "$bin was not built"
    printf 'size %-60s %9d bytes (%s)\n' "$bin" "$(stat -c %s "$bin")" \
        "$(python3 -c "import sys; print(f'{int(sys.argv[1])/1048576:.2f} MiB')" "$(stat -c %s "$bin")")"
done
arm-linux-gnueabihf-readelf -h "$AGENT_ARMV7" | grep -q 'Machine: *ARM$' \
    || fail "$AGENT_ARMV7 is not an ARM binary"
echo "armv7 binary needs glibc $(arm-linux-gnueabihf-objdump -T "$AGENT_ARMV7" \
    | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$AGENT_AARCH64" --version \
    || fail "the aarch64 agent does not start under qemu"

step "build the server stub for the host"
cargo build -p ucupdate-server-stub --bin ucupdate-server
SERVER="$TARGET_DIR/debug/ucupdate-server"

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
HTTP_PORT=$(free_port)
DNS_PORT=$(free_port)

step "publish and approve $NEW_VERSION (a package imported with the server's CLI)"
pkg="$work/package"
mkdir -p "$pkg/$KEY/$NEW_VERSION"
head -c 300000 /dev/urandom >"$pkg/$KEY/$NEW_VERSION/CPE.nbt"
# The vendor's side: a CA and a code-signing leaf from openssl, and the catalog signed with it.
ca="$work/ca"
mkdir -p "$ca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ca/ca.key" \
    -out "$ca/ca.pem" -subj /CN=arm-stage-ca -days 3650 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ca/signer.key" \
    -out "$ca/signer.csr" -subj /CN=arm-stage-signer 2>/dev/null
printf 'extendedKeyUsage=codeSigning\nkeyUsage=critical,digitalSignature\n' >"$ca/ext"
openssl x509 -req -in "$ca/signer.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -CAcreateserial \
    -out "$ca/signer.pem" -days 3650 -extfile "$ca/ext" 2>/dev/null
"$SERVER" catalog create --cert "$ca/signer.pem" --key "$ca/signer.key" \
    "$pkg/$KEY/$NEW_VERSION/CPE.nbt" -o "$pkg/$KEY/$NEW_VERSION/CPE.cat"
IFS=/ read -r dtype brand model rev locale utype <<<"$KEY"
cat >"$pkg/updateInfo.xml" <<EOF
<Updates><Updates>
  <Update version="$NEW_VERSION" DeviceType="$dtype" Brand="$brand" Model="$model" Revision="$rev" Locale="$locale" UpdateType="$utype">
    <File name="CPE.nbt" source="$dtype/$brand/$model/$rev/$locale/$utype/$NEW_VERSION/CPE.nbt"/>
    <File name="CPE.cat" source="$dtype/$brand/$model/$rev/$locale/$utype/$NEW_VERSION/CPE.cat"/>
  </Update>
</Updates></Updates>
EOF
"$SERVER" import --data "$work/server" "$pkg"
"$SERVER" rules approve --data "$work/server" "$KEY"
"$SERVER" rules list --data "$work/server"

step "start the server (127.0.0.1:$HTTP_PORT) and dnsmasq (127.0.0.1:$DNS_PORT)"
# The files are named by the pool's DNS name, as a real pool names them: the agent takes files
# only from the origin of the check it discovered (docs/AGENT.md, "file origins").
"$SERVER" serve --init --data "$work/server" --internal "127.0.0.1:$HTTP_PORT" \
    --public-internal-url "http://ucupdates-r2.corp.example:$HTTP_PORT/" \
    --internal-tls off --external off --admin off >"$work/server.log" 2>&1 &
pids+=($!)
dnsmasq --keep-in-foreground --port="$DNS_PORT" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --pid-file="$work/dnsmasq.pid" \
    --address=/ucupdates-r2.corp.example/127.0.0.1 >"$work/dnsmasq.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT") 2>/dev/null && break
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT") 2>/dev/null || { cat "$work/server.log"; fail "server did not start"; }

step "one full update of the armv7 agent under qemu-arm"
mkdir -p "$work/agent"
cat >"$work/agent.toml" <<EOF
state_dir = "$work/agent/state"
[device]
brand = "$brand"
model = "$model"
revision = "$rev"
locale = "$locale"
mac = "00-04-F2-00-01-76"
initial_version = "1.0.0.0"
activity_file = "$work/agent/activity"
[machine]
dhcp_domain = "corp.example"
discovery_port = $HTTP_PORT
outside_firewall = false
power_on_jitter = "0s"
idle_before_restart = "2s"
[dns]
nameserver = "127.0.0.1:$DNS_PORT"
[hooks]
install_cmd = 'cp "\$UCUPDATE_IMAGE" "$work/agent/flashed.nbt" && echo "\$UCUPDATE_CURRENT_VERSION -> \$2" > "$work/agent/installed"'
reboot_cmd = 'echo "\$UCUPDATE_VERSION" > "$work/agent/rebooted"'
hook_timeout = "60s"
[trust]
catalog_roots = "$ca/ca.pem"
[agent]
exit_on_reboot = true
EOF
QEMU_ARM=(qemu-arm -L /usr/arm-linux-gnueabihf)
start=$(date +%s)
timeout 300 "${QEMU_ARM[@]}" "$AGENT_ARMV7" run --config "$work/agent.toml" \
    || { cat "$work/server.log"; fail "the agent did not finish the update (exit $?)"; }
echo "update under qemu took $(( $(date +%s) - start )) s"

step "check the result"
[ "$(cat "$work/agent/rebooted")" = "$NEW_VERSION" ] || fail "reboot marker: $(cat "$work/agent/rebooted" 2>&1)"
[ "$(cat "$work/agent/installed")" = "1.0.0.0 -> $NEW_VERSION" ] || fail "install marker: $(cat "$work/agent/installed" 2>&1)"
cmp "$work/agent/flashed.nbt" "$pkg/$KEY/$NEW_VERSION/CPE.nbt" \
    || fail "the installed image differs from the published one"
grep -q "\"current_version\": \"$NEW_VERSION\"" "$work/agent/state/state.json" \
    || { cat "$work/agent/state/state.json"; fail "state.json does not show $NEW_VERSION as current"; }
grep -q '"fallback_version": "1.0.0.0"' "$work/agent/state/state.json" \
    || fail "state.json does not keep 1.0.0.0 as the fallback"
status=$("${QEMU_ARM[@]}" "$AGENT_ARMV7" --config "$work/agent.toml" status)
echo "$status"
grep -Eq "^Version: +$NEW_VERSION\b" <<<"$status" || fail "status does not show $NEW_VERSION"
grep -q "ucupdates-r2.corp.example" <<<"$status" || fail "status does not show the discovered server"

step "ok: armv7 agent discovered, downloaded, installed and rebooted into $NEW_VERSION under qemu"
