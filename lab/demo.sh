#!/usr/bin/env bash
# The demo: v1 is deployed and verified, then v2 (whose health check fails) is deployed and the
# runbook rolls every app host back to v1 by itself. Prints the report summary and its path.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNBOOK=.venv/bin/runbook
INV=inventories/lab/hosts.yml

# the lab is shared with test sessions and benchmarks, which reset it: wait for them (as they wait for us)
lockdir=${RUNBOOK_LAB_DIR:-/var/lib/runbook-lab}
if [ -d "$lockdir" ] && command -v flock >/dev/null; then
  exec 9>>"$lockdir/in-use.lock"
  flock -n 9 || { echo "== the lab is in use by a test session; waiting for it"; flock 9; }
fi

echo "== resetting the lab to its initial state"
$RUNBOOK lab reset >/dev/null || exit 3
echo "== deploy v1 (healthy)"
$RUNBOOK run runbooks/deploy.yml -i "$INV" -p version=v1 -p reason="demo: release v1"
rc=$?
if [ $rc -ne 0 ]; then echo "deploying v1 failed (exit $rc)" >&2; exit $rc; fi
echo
echo "== deploy v2 (its /health fails: expect an automatic rollback to v1, exit status 1)"
$RUNBOOK run runbooks/deploy.yml -i "$INV" -p version=v2 -p reason="demo: release v2 with a broken health check"
rc=$?
echo
for h in 127.0.10.11 127.0.10.12; do
  printf '%s /health -> %s\n' "$h" "$(curl -s -m 5 http://$h:8080/health)"
done
if [ $rc -eq 1 ]; then
  echo "demo ok: the failed deploy rolled itself back (exit status 1 = rolled back and verified)"
  exit 0
fi
echo "demo FAILED: expected exit status 1 (rolled back), got $rc" >&2
exit 1
