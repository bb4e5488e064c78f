#!/usr/bin/env bash
# bench/catalog-verify.sh [--quick]: what verifying an update costs the device. A 200 MB image
# (quick: 20 MB) and its catalog, signed by an openssl-made code-signing CA with
# `ucupdate-server catalog create`; then `ucupdate-agent verify-catalog` (the catalog's
# signature and chain, then the image's SHA-256 held to it: the install's decision) against the
# peer `sha256sum` over the same file (which checks no signature at all), alternating, median of
# 5 (quick: 3). If .ci/stages/arm.sh left the armv7 device binary and qemu-arm is installed, the
# same under qemu-arm (absolute seconds; qemu's speed is not a device's). Also prints the
# catalog alone (a 1-byte file) to show the signature check's own cost.
# Target (docs/BENCHMARKS.md): >= 0.9x sha256sum on x86 (the verifier adds only the catalog).
source "$(dirname "$0")/lib.sh"

need openssl:openssl sha256sum:coreutils python3:python3
build_bins ucupdate-agent ucupdate-server-stub
if [ "$QUICK" = 1 ]; then MB=20; RUNS=3; else MB=200; RUNS=${RUNS:-5}; fi

ca=$WORK/ca
mkdir -p "$ca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ca/ca.key" \
    -out "$ca/ca.pem" -subj /CN=bench-ca -days 3650 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$ca/signer.key" \
    -out "$ca/signer.csr" -subj /CN=bench-signer 2>/dev/null
printf 'extendedKeyUsage=codeSigning\nkeyUsage=critical,digitalSignature\n' >"$ca/ext"
openssl x509 -req -in "$ca/signer.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -CAcreateserial \
    -out "$ca/signer.pem" -days 3650 -extfile "$ca/ext" 2>/dev/null
head -c $((MB * 1000000)) /dev/urandom >"$WORK/CPE.nbt"
printf x >"$WORK/tiny.bin"
"$BIN/ucupdate-server" catalog create --cert "$ca/signer.pem" --key "$ca/signer.key" \
    "$WORK/CPE.nbt" "$WORK/tiny.bin" -o "$WORK/CPE.cat" >/dev/null

secs() { python3 -c 'import sys,time,subprocess; t=time.perf_counter(); r=subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); sys.exit(r.returncode) if r.returncode else print(f"{time.perf_counter()-t:.4f}")' "$@"; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }
a=(); p=(); t=()
for _ in $(seq "$RUNS"); do
    a+=("$(secs "$BIN/ucupdate-agent" verify-catalog --roots "$ca/ca.pem" "$WORK/CPE.cat" "$WORK/CPE.nbt")") \
        || die "verify-catalog refused the image"
    p+=("$(secs sha256sum "$WORK/CPE.nbt")")
    t+=("$(secs "$BIN/ucupdate-agent" verify-catalog --roots "$ca/ca.pem" "$WORK/CPE.cat" "$WORK/tiny.bin")")
done
A=$(median "${a[@]}"); P=$(median "${p[@]}"); T=$(median "${t[@]}")
ratio=$(python3 -c "print(f'{float(\"$P\")/float(\"$A\"):.2f}')")
printf '\n| measure (%s MB image, median of %s) | agent verify-catalog | sha256sum | ratio (sha256sum time / agent time) |\n|---|---|---|---|\n' "$MB" "$RUNS"
printf '| x86 %s profile, whole decision | %s s | %s s | %sx |\n' "$BENCH_PROFILE" "$A" "$P" "$ratio"
printf '| x86, the catalog alone (1-byte file) | %s s | | |\n' "$T"

ARM_DIR=${ARM_TARGET_DIR:-$TARGET_DIR}
ARMV7=$ARM_DIR/armv7-unknown-linux-gnueabihf/device/ucupdate-agent
if [ -x "$ARMV7" ] && command -v qemu-arm >/dev/null; then
    q=()
    for _ in $(seq "$RUNS"); do
        q+=("$(secs qemu-arm -L /usr/arm-linux-gnueabihf "$ARMV7" verify-catalog --roots "$ca/ca.pem" "$WORK/CPE.cat" "$WORK/CPE.nbt")") \
            || die "armv7 verify-catalog refused the image"
    done
    printf '| armv7 device binary under qemu-arm, whole decision | %s s | | |\n' "$(median "${q[@]}")"
else
    log "no armv7 device binary or qemu-arm: skipping the qemu row (run .ci/stages/arm.sh first)"
fi
