#!/usr/bin/env bash
# Renders sim-shards.yaml and sim-merge.yaml for one run, so that every value the pods must agree
# on is written once: the shard count (SHARDS, `completions`, `parallelism` and the merge Job's
# SHARDS), the start instant (START_AT, resolved here to one RFC 3339 instant even when given
# as +DURATION, so pods scheduled minutes apart still share it), and the run's report directory
# (RUN, derived from the instant unless given). Plain sed over the plain manifests: they stay the
# source, and `kubectl apply -f deploy/k8s/` keeps working without this script.
#
#   deploy/k8s/render.sh --out DIR --shards N [--start-at INSTANT|+DURATION] [--run NAME]
#       [--scenario S] [--devices N] [--time-scale X] [--seed S] [--admin-shard I]
#       [--image IMAGE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="" shards="" start_at="+2m" run="" admin_shard=0
declare -A env=()
image=""
usage() { sed -n '2,12p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2 ;;
        --shards) shards=$2 ;;
        --start-at) start_at=$2 ;;
        --run) run=$2 ;;
        --admin-shard) admin_shard=$2 ;;
        --scenario) env[SCENARIO]=$2 ;;
        --devices) env[DEVICES]=$2 ;;
        --time-scale) env[TIME_SCALE]=$2 ;;
        --seed) env[SEED]=$2 ;;
        --image) image=$2 ;;
        *) usage ;;
    esac
    shift 2 || usage
done
[ -n "$out" ] && [ -n "$shards" ] || usage
case "$shards" in ''|*[!0-9]*|0) echo "render.sh: --shards must be a positive number" >&2; exit 2 ;; esac
case "$admin_shard" in ''|*[!0-9]*) echo "render.sh: --admin-shard must be a number" >&2; exit 2 ;; esac
[ "$admin_shard" -lt "$shards" ] || { echo "render.sh: --admin-shard $admin_shard: shards are 0 to $((shards - 1))" >&2; exit 2; }
case "$start_at" in
    +*) start_at=$(date -u -d "${start_at#+}" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null) \
            || { echo "render.sh: --start-at: GNU date does not read that duration (try +3min)" >&2; exit 2; } ;;
    [0-9]*T*) ;;
    *) start_at=$(date -u -d "@$start_at" +%Y-%m-%dT%H:%M:%SZ) ;;
esac
[ -n "$run" ] || run="run-$(printf '%s' "$start_at" | tr -cd '0-9')"
mkdir -p "$out"
value() { printf 's|{name: %s, value: "[^"]*"}|{name: %s, value: "%s"}|\n' "$1" "$1" "$2"; }
{
    value SHARDS "$shards"
    value START_AT "$start_at"
    value RUN "$run"
    value ADMIN_SHARD "$admin_shard"
    for k in "${!env[@]}"; do value "$k" "${env[$k]}"; done
    printf 's|^  completions: .*|  completions: %s|\n' "$shards"
    printf 's|^  parallelism: .*|  parallelism: %s|\n' "$shards"
    [ -z "$image" ] || printf 's|image: ucupdate-sim:latest|image: %s|\n' "$image"
} > "$out/render.sed"
for f in sim-shards.yaml sim-merge.yaml; do
    sed -f "$out/render.sed" "$here/$f" > "$out/$f"
done
rm "$out/render.sed"
echo "render.sh: $out/sim-shards.yaml and $out/sim-merge.yaml: $shards shards, virtual 0 at $start_at, reports in /reports/$run" >&2
