#!/usr/bin/env bash
# Install what the tests need, bring up the dev cluster, and run the whole suite:
# ruff, mypy (strict) and pytest (unit tests on recorded Slurm output, integration
# tests on the live cluster, database tests on SQLite and PostgreSQL).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
need_root
system_packages
postgres_up
postgres_test_role
python_env test
app_runtimes
cd "$REPO"
"$VENV/bin/hpcportal" dev-cluster up
log "ruff"
"$VENV/bin/ruff" check src tests bench
"$VENV/bin/ruff" format --check src tests bench
log "mypy"
"$VENV/bin/mypy"
log "pytest"
export CI="${CI:-1}"  # database tests must not skip PostgreSQL here
status=0
"$VENV/bin/pytest" -p no:cacheprovider "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
