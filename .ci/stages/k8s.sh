#!/usr/bin/env bash
# deploy/k8s/ as Kubernetes would take it: every manifest, plain and rendered by render.sh,
# validates against the Kubernetes OpenAPI schemas (kubernetes-validate from PyPI, which ships
# the schemas, so no cluster and no network beyond PyPI; --strict rejects unknown fields); the
# rendered values agree (SHARDS = completions = parallelism = the merge Job's SHARDS, one
# START_AT instant, one RUN); a broken manifest fails (the check is not vacuous); the merge Job
# refuses an incomplete set before merging; and deploy/Dockerfile builds and installs every
# binary the manifests run. No image is built here.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v kubernetes-validate >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate >/dev/null 2>&1 \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages kubernetes-validate
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

kubernetes-validate --strict --quiet deploy/k8s/*.yaml || fail=1
deploy/k8s/render.sh --out "$work/run" --shards 3 --start-at 2026-12-01T10:00:00Z \
    --scenario rollout --devices 3000 --admin-shard 1 2>/dev/null
kubernetes-validate --strict --quiet "$work/run"/*.yaml || fail=1

# Not vacuous: a misspelt field and a wrong type must both fail validation.
sed 's/completionMode: Indexed/completionMod: Indexed/' deploy/k8s/sim-shards.yaml > "$work/bad1.yaml"
sed 's/backoffLimit: 0/backoffLimit: none/' deploy/k8s/sim-merge.yaml > "$work/bad2.yaml"
for bad in "$work/bad1.yaml" "$work/bad2.yaml"; do
    if kubernetes-validate --strict --quiet "$bad" >/dev/null 2>&1; then
        echo "k8s: $bad should not validate"; fail=1
    fi
done

python3 - "$work/run" deploy/Dockerfile deploy/k8s <<'PY' || fail=1
import glob, re, sys, yaml
run, dockerfile, plain = sys.argv[1:4]
fail = []
def load(path):
    return yaml.safe_load(open(path))
def env(job):
    c = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in c.get("env", [])}
shards, merge = load(f"{run}/sim-shards.yaml"), load(f"{run}/sim-merge.yaml")
s, m = env(shards), env(merge)
want = {"SHARDS": "3", "START_AT": "2026-12-01T10:00:00Z", "ADMIN_SHARD": "1",
        "SCENARIO": "rollout", "DEVICES": "3000"}
for k, v in want.items():
    if s.get(k) != v:
        fail.append(f"rendered {k} = {s.get(k)!r}, want {v!r}")
for k in ("completions", "parallelism"):
    if str(shards["spec"][k]) != s["SHARDS"]:
        fail.append(f"{k} {shards['spec'][k]} != SHARDS {s['SHARDS']}")
if shards["spec"].get("completionMode") != "Indexed":
    fail.append("the shards Job must be an Indexed Job (JOB_COMPLETION_INDEX)")
for k in ("SHARDS", "RUN"):
    if m.get(k) != s.get(k):
        fail.append(f"merge {k} {m.get(k)!r} != shards {k} {s.get(k)!r}")
for path in glob.glob(f"{plain}/sim-*.yaml"):
    job = load(path)
    if job["kind"] == "Job" and job["spec"].get("completionMode") == "Indexed":
        e = env(job)
        if not (str(job["spec"]["completions"]) == str(job["spec"]["parallelism"]) == e["SHARDS"]):
            fail.append(f"{path}: SHARDS, completions and parallelism differ")
# Every binary a manifest runs is built and installed in the Dockerfile's default (last) stage.
text = open(dockerfile).read()
stages = re.split(r"(?m)^FROM ", text)
last = stages[-1]
build = re.search(r"cargo build --release ([^\n]*)", text)
packages = set(re.findall(r"-p (\S+)", build.group(1))) if build else set()
bins = {"ucupdate-sim": "ucupdate-simulator", "ucupdate-server": "ucupdate-server-stub"}
for path in glob.glob(f"{plain}/*.yaml") + glob.glob(f"{run}/*.yaml"):
    body = open(path).read()
    for binary, package in bins.items():
        if re.search(rf"\b{binary} (run|merge|serve)\b", body):
            if package not in packages:
                fail.append(f"{path} runs {binary}, but the Dockerfile does not build {package}")
            if f"/src/target/release/{binary}" not in last:
                fail.append(f"{path} runs {binary}, but the Dockerfile's default stage does not install it")
for f in fail:
    print(f"k8s: {f}")
sys.exit(1 if fail else 0)
PY

# The merge Job's own shell refuses a set with a shard report missing before it merges (exit 2),
# run here with /reports in a temporary directory and a stand-in ucupdate-sim that would pass.
script=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]["args"][0])' "$work/run/sim-merge.yaml")
script=${script//\/reports/$work/reports}
run_name=$(python3 -c 'import sys, yaml; print({e["name"]: e["value"] for e in yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]["env"]}["RUN"])' "$work/run/sim-merge.yaml")
mkdir -p "$work/bin" "$work/reports/$run_name"
printf '#!/bin/sh\necho merged\n' > "$work/bin/ucupdate-sim"; chmod +x "$work/bin/ucupdate-sim"
touch "$work/reports/$run_name/shard-0.json" "$work/reports/$run_name/shard-2.json"
set +e
PATH="$work/bin:$PATH" SHARDS=3 RUN="$run_name" sh -c "$script" >/dev/null 2>"$work/merge.err"; code=$?
touch "$work/reports/$run_name/shard-1.json"
PATH="$work/bin:$PATH" SHARDS=3 RUN="$run_name" sh -c "$script" >/dev/null 2>&1; complete=$?
set -e
if [ "$code" -ne 2 ] || ! grep -q "2 of 3 shard reports" "$work/merge.err" || [ "$complete" -ne 0 ]; then
    echo "k8s: the merge Job must refuse 2 of 3 reports (exit $code: $(cat "$work/merge.err")) and merge 3 (exit $complete)"
    fail=1
fi

if [ "$fail" -eq 0 ]; then echo "k8s: manifests valid and consistent"; else exit 1; fi
