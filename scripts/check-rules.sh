#!/bin/sh
# Lint every Prometheus rules file and run every promtool unit test under prometheus/tests.
# Called by .ci/run; also handy before committing a rule change.
set -eu
cd "$(dirname "$0")/.."
PROMTOOL="${PROMTOOL:-promtool}"
command -v "$PROMTOOL" >/dev/null 2>&1 || { echo "check-rules: $PROMTOOL not found (apt-get install prometheus)" >&2; exit 1; }

"$PROMTOOL" check config prometheus/prometheus.yml
"$PROMTOOL" check rules prometheus/rules/*.yml
"$PROMTOOL" test rules prometheus/tests/*.yml

# Coverage: every recording rule is the `expr` of at least one promql_expr_test, and every
# alert has an alert_rule_test (firing and not firing cases are reviewed in the test files).
missing=0
for name in $(sed -n 's/^ *- record: *//p' prometheus/rules/*.yml | sort -u); do
  grep -q "expr: $name\$" prometheus/tests/*.yml || { echo "check-rules: no promtool test for record $name" >&2; missing=1; }
done
for name in $(sed -n 's/^ *- alert: *//p' prometheus/rules/*.yml | sort -u); do
  n=$(grep -c "alertname: $name\$" prometheus/tests/*.yml | awk -F: '{s+=$2} END {print s}')
  [ "$n" -ge 2 ] || { echo "check-rules: alert $name needs a firing and a not-firing test" >&2; missing=1; }
done
[ "$missing" -eq 0 ]
echo "check-rules: every record and alert has a promtool test"
