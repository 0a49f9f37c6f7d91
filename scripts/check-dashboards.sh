#!/bin/sh
# Validate grafana/dashboards/*.json against the Grafana foundation SDK's dashboard schema
# (scripts/validate-dashboards.py), and prove the validator rejects broken dashboards.
# Called by .ci/run. The SDK is installed into a venv under target/ (PyPI, pinned to the
# Grafana version docker-compose.yml runs: 10.4).
set -eu
cd "$(dirname "$0")/.."
SDK='grafana-foundation-sdk==1769699796!10.4.0'
VENV="${DASHBOARDS_VENV:-target/dashboards-venv}"
command -v python3 >/dev/null 2>&1 || { echo "check-dashboards: python3 not found (apt-get install python3 python3-venv)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$SDK"
PY="$VENV/bin/python"

"$PY" scripts/validate-dashboards.py grafana/dashboards/*.json

# Each mutation of a real dashboard must be rejected, or the check proves nothing.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for mutation in \
  'd["panels"][0]["gridPos"]["w"] = "12"' \
  'd["panels"][0]["titel"] = "typo"' \
  'd["panels"][0]["type"] = "timeseriez"' \
  'd["panels"][0]["fieldConfig"]["defaults"]["unitt"] = "s"' \
  'd["panels"][0]["targets"][0]["exprr"] = "up"' \
  'd["panels"][0]["options"]["legend"]["displayMode"] = "tabel"' \
  'd["graphTooltip"] = "shared"' \
  'd["panels"][0]["datasource"] = {"type": "nosuchdb", "uid": "x"}'
do
  n=$((n + 1))
  "$PY" - "$tmp/bad-$n.json" "$mutation" <<'PY'
import json, sys
d = json.load(open("grafana/dashboards/loadspec-overview.json"))
exec(sys.argv[2])
json.dump(d, open(sys.argv[1], "w"))
PY
  if "$PY" scripts/validate-dashboards.py "$tmp/bad-$n.json" >/dev/null 2>&1; then
    echo "check-dashboards: the validator accepted a broken dashboard: $mutation" >&2
    exit 1
  fi
done
echo "check-dashboards: dashboards valid; $n broken copies rejected"
