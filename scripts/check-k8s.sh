#!/usr/bin/env bash
# Render deploy/kubernetes with `kubectl kustomize` and validate every object against the
# Kubernetes schema (PyPI kubernetes-validate, --strict: unknown fields fail). No cluster runs
# here: this checks what `kubectl apply -k` would send, not what a cluster would do with it.
#
# Usage: scripts/check-k8s.sh [PYTHON]   (PYTHON: an interpreter that has kubernetes_validate
# and PyYAML; default python3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${1:-python3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for overlay in base podmonitor; do
    kubectl kustomize "$here/deploy/kubernetes/$overlay" >"$out/$overlay.yaml"
    # The PodMonitor is a prometheus-operator CRD: no schema ships for it, so it is only warned.
    "$py" -m kubernetes_validate --strict --quiet "$out/$overlay.yaml"
done

# The invariants the docs promise: an Indexed Job with parallelism = completions = shards, the
# shard count and the common start passed to every pod, /metrics reachable from outside the pod.
"$py" - "$out/base.yaml" "$out/podmonitor.yaml" "$here/deploy/kubernetes/prometheus-scrape.yml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
job = next(d for d in docs if d["kind"] == "Job")
spec = job["spec"]
assert spec["completionMode"] == "Indexed", "the Job must be Indexed (JOB_COMPLETION_INDEX)"
assert spec["parallelism"] == spec["completions"], "parallelism must equal completions"
c = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e for e in c["env"]}
assert env["LOADSPEC_SHARDS"]["value"] == str(spec["completions"]), "LOADSPEC_SHARDS != completions"
assert "configMapKeyRef" in env["LOADSPEC_START_AT"]["valueFrom"], "LOADSPEC_START_AT from the ConfigMap"
assert env["LOADSPEC__SERVER__LISTEN"]["value"].startswith("0.0.0.0:"), "metrics must bind 0.0.0.0"
ann = job["spec"]["template"]["metadata"]["annotations"]
port = str(c["ports"][0]["containerPort"])
assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == port
cms = {d["metadata"]["name"].rsplit("-", 1)[0]: d for d in docs if d["kind"] == "ConfigMap"}
assert "plan.toml" in cms["loadspec-plan"]["data"], "the plan ConfigMap"
pm = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d and d["kind"] == "PodMonitor"]
assert len(pm) == 1 and pm[0]["spec"]["podMetricsEndpoints"][0]["port"] == c["ports"][0]["name"]
scrape = yaml.safe_load(open(sys.argv[3]))
job_cfg = scrape["scrape_configs"][0]
assert job_cfg["kubernetes_sd_configs"][0]["role"] == "pod"
print(f"check-k8s: {len(docs)} objects valid; Indexed Job of {spec['completions']} shards; PodMonitor and scrape config consistent")
PY
