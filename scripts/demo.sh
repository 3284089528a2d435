#!/usr/bin/env bash
# Start the demo: the local Slurm dev cluster, the database, and the portal on
# http://127.0.0.1:8080 (SQLite). Stop with Ctrl-C; `hpcportal dev-cluster down` stops Slurm.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
need_root
system_packages
python_env
app_runtimes
cd "$REPO"
"$VENV/bin/hpcportal" dev-cluster up
# The database holds sessions, token hashes and the audit log: keep it in a folder only
# the portal's account can enter (the portal makes the file 0600 and refuses to start
# on one that others can read).
STATE="$REPO/.state"
install -d -m 0700 "$STATE"
chmod 0700 "$STATE"
export HPCPORTAL_DATABASE_URL="${HPCPORTAL_DATABASE_URL:-sqlite:///$STATE/hpcportal.db}"
"$VENV/bin/hpcportal" db upgrade
# Graphs come from the dev cluster's own Prometheus (node exporters, the GPU stand-in).
if [ -z "${HPCPORTAL_PROMETHEUS_URL:-}" ]; then
  HPCPORTAL_PROMETHEUS_URL=$("$VENV/bin/hpcportal" dev-cluster status --json |
    "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin).get("prometheus_url") or "")')
  export HPCPORTAL_PROMETHEUS_URL
fi
log "portal on http://127.0.0.1:8080 (API docs at /api/v1/docs); log in as a demo user above"
exec "$VENV/bin/hpcportal" serve --host 127.0.0.1 --port 8080
