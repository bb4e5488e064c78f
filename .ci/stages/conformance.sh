#!/usr/bin/env bash
# The conformance suite against a real `ucupdate-server` process, the way a CI pipeline runs it
# against its own server: every check, JUnit XML written, a non-zero exit on any failure. The
# standalone `ucupdate-conformance` binary runs the suite; one run through `ucupdate-sim
# conformance` shows that the subcommand takes the same flags and prints the same table.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p ucupdate-conformance -p ucupdate-simulator -p ucupdate-server-stub --bins
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
printf 'CONTOSO\\alice:S3cret!\n' >"$work/users"
chmod 600 "$work/users" # the stub refuses a users file others may read
printf 'S3cret!\n' >"$work/password"
# A throwaway catalog CA and code-signing leaf made by an independent tool (openssl): the stub
# signs what its admin API publishes with the leaf, the suite verifies against the CA.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key" 2>/dev/null
openssl req -x509 -new -key "$work/ca.key" -subj "/CN=conformance catalog CA" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -out "$work/catalog-ca.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/signer.key" 2>/dev/null
openssl req -new -key "$work/signer.key" -subj "/CN=conformance catalog signer" \
    -out "$work/signer.csr" 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n' \
    >"$work/signer.ext"
openssl x509 -req -in "$work/signer.csr" -CA "$work/catalog-ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 2 -extfile "$work/signer.ext" -out "$work/signer.pem" 2>/dev/null
# A vendor-style package without a catalog, imported with the signing key and approved before
# the server starts: `import --sign-cert` must give it a CPE.cat the suite verifies (below).
mkdir -p "$work/pkg"
head -c 70001 /dev/urandom >"$work/pkg/CPE.nbt"
printf '%s' '<Updates><Updates><Update version="1.0.522.200" DeviceType="UCPhone" Brand="Polycom"
  Model="CX700" Revision="A" Locale="ENU" UpdateType="CPE"><File name="CPE.nbt"/></Update>
  </Updates></Updates>' >"$work/pkg/updateInfo.xml"
target/debug/ucupdate-server import --data "$work/data" --sign-cert "$work/signer.pem" \
    --sign-key "$work/signer.key" "$work/pkg" >/dev/null
target/debug/ucupdate-server rules approve --data "$work/data" UCPhone/Polycom/CX700/A/ENU/CPE >/dev/null
: >"$work/urls"
target/debug/ucupdate-server serve --init --data "$work/data" --internal 127.0.0.1:0 --internal-tls off \
    --external 127.0.0.1:0 --admin 127.0.0.1:0 --users "$work/users" \
    --sign-cert "$work/signer.pem" --sign-key "$work/signer.key" >"$work/urls" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q '^admin-token ' "$work/urls" && break; sleep 0.1; done
internal=$(awk '$1=="internal"{print $2}' "$work/urls")
external=$(awk '$1=="external"{print $2}' "$work/urls")
admin=$(awk '$1=="admin"{print $2}' "$work/urls")
ca=$(awk '$1=="ca"{print $2}' "$work/urls")
token_file=$(awk '$1=="admin-token"{print $2}' "$work/urls")
flags=(--target "$internal" --external-target "$external" --user 'CONTOSO\alice'
    --password-file "$work/password" --admin "$admin" --admin-token-file "$token_file" --ca "$ca"
    --trust "$work/catalog-ca.pem")
target/debug/ucupdate-conformance "${flags[@]}" --junit "$work/junit.xml" | tee "$work/table"
grep -q '<testsuites' "$work/junit.xml"
# The catalog checks ran (not skipped) and passed: the offered catalog verified with --trust.
for check in catalog-offered catalog-verifies catalog-lists-image; do
    grep -q "^PASS *$check " "$work/table" || { echo "conformance: $check did not pass"; exit 1; }
done
# The imported package, probed without admin as a real model: its signed catalog verifies.
target/debug/ucupdate-conformance --target "$internal" --trust "$work/catalog-ca.pem" \
    --probe-key UCPhone/Polycom/CX700/A/ENU/CPE --probe-version 1.0.522.101 \
    --only catalog-offered,catalog-verifies,catalog-lists-image >"$work/imported"
[ "$(grep -c '^PASS' "$work/imported")" -eq 3 ] || {
    cat "$work/imported"; echo "conformance: the imported package's catalog did not verify"; exit 1; }
# The thin subcommand: the same flags, the same checks with the same outcomes (times differ).
target/debug/ucupdate-sim conformance "${flags[@]}" --junit "$work/sim-junit.xml" >"$work/sim-table"
verdicts() { awk '{print $1, $2}' "$1"; }
if ! diff <(verdicts "$work/table") <(verdicts "$work/sim-table"); then
    echo "conformance: ucupdate-sim conformance differs from ucupdate-conformance"; exit 1
fi
# A typo in a check name is a usage error (exit 2), through either binary.
for bin in "target/debug/ucupdate-conformance" "target/debug/ucupdate-sim conformance"; do
    set +e; $bin --target "$internal" --skip no-such-check >/dev/null 2>&1; code=$?; set -e
    [ "$code" -eq 2 ] || { echo "conformance: $bin exited $code on an unknown check name"; exit 1; }
done
if grep -q 'S3cret!' "$work/server.log" "$work/junit.xml" "$work/sim-junit.xml"; then
    echo "conformance: the password leaked into the server log or a JUnit report"; exit 1
fi
if grep -qF "$(cat "$token_file")" "$work/urls" "$work/server.log" "$work/junit.xml" "$work/table"; then
    echo "conformance: the admin token leaked into the server output or a report"; exit 1
fi
if [ -n "${ARTIFACTS:-}" ]; then cp "$work/junit.xml" "$ARTIFACTS/conformance-junit.xml"; fi
