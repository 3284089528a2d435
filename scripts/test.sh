#!/usr/bin/env bash
# Install what the tests need, bring up the dev clusters, and run the suite on every
# supported Slurm release: ruff, mypy (strict) and pytest (unit tests on recorded Slurm
# output, integration tests on the live cluster, database tests on SQLite and
# PostgreSQL) on Slurm 22.05, then the Slurm-facing integration tests on 24.11 and 26.05.
#
# Usage: scripts/test.sh [--slurm 22.05|24.11|26.05] [--slurm-facing] [pytest args...]
#   (nothing)       the three passes CI runs (.ci/run): the whole suite on 22.05 (the
#                   host's packages, in .devcluster/), then the Slurm-facing selection on
#                   24.11 and on 26.05 (Debian roots made once with debootstrap, cached in
#                   /var/cache/hpcportal/roots; each cluster in .devcluster-REL/). Every
#                   pass runs even if one before failed; the exit status is the first
#                   failure's, and each pass's time is printed.
#   --slurm REL     one release only: the whole suite against its dev cluster.
#   --slurm-facing  only the integration tests whose talk with Slurm differs between
#                   releases (marker slurm_facing, listed in tests/integration/conftest.py),
#                   without ruff and mypy.
#   pytest args     without --slurm, run on 22.05 only (`scripts/test.sh tests/unit -q`).
#   --all-releases  the three passes, with the pytest args given to each.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

release=""
facing=0
all_releases=0
while [ $# -gt 0 ]; do
  case "$1" in
    --all-releases) all_releases=1; shift ;;
    --slurm) release="${2:?--slurm needs a release: 22.05, 24.11 or 26.05}"; shift 2 ;;
    --slurm=*) release="${1#--slurm=}"; shift ;;
    --slurm-facing) facing=1; shift ;;
    *) break ;;
  esac
done
case "$release" in
  "" | 22.05 | 24.11 | 26.05) ;;
  *) echo "unsupported Slurm release '$release': choose 22.05, 24.11 or 26.05" >&2; exit 2 ;;
esac
if [ "$all_releases" = 1 ] && { [ -n "$release" ] || [ "$facing" = 1 ]; }; then
  echo "--all-releases chooses the releases itself: drop --slurm and --slurm-facing" >&2
  exit 2
fi
if [ -z "$release" ] && [ "$facing" = 0 ] && [ $# -eq 0 ]; then
  all_releases=1
fi

# One pass: bring up REL's dev cluster (making its Debian root on a fresh host) and run
# pytest on it: the whole suite with ruff and mypy (WHOLE=1) or the facing selection.
# Called in a condition, where `set -e` does not apply: every step returns its failure.
run_pass() {
  local rel=$1 whole=$2
  shift 2
  if [ "$rel" != 22.05 ]; then
    # Its own directory, so the 22.05 cluster (and its port slot) stays as it is.
    export HPCPORTAL_DEVCLUSTER_DIR="${HPCPORTAL_DEVCLUSTER_DIR:-$REPO/.devcluster-$rel}"
  fi
  export HPCPORTAL_DEVCLUSTER_SLURM="$rel"  # the devcluster fixture brings this one up
  log "dev cluster: Slurm $rel"
  "$VENV/bin/hpcportal" dev-cluster up --slurm "$rel" || return
  mariadb_test_role || return  # after the dev cluster, which starts MariaDB if none runs
  local selection=(-m slurm_facing tests/integration) what="Slurm-facing tests"
  if [ "$whole" = 1 ]; then
    log "ruff"
    "$VENV/bin/ruff" check src tests bench || return
    "$VENV/bin/ruff" format --check src tests bench || return
    log "mypy"
    "$VENV/bin/mypy" || return
    selection=() what="whole suite"
  fi
  log "pytest (Slurm $rel, $what)"
  local status=0
  if [ "$whole" = 1 ] && [ $# -eq 0 ]; then
    # The whole suite in two runs: the integration tests one at a time (they share one
    # dev cluster), then the unit tests on two workers (pytest-xdist; each test has its
    # own temporary folder and database), which halves their part of a CI run.
    pytest_run --durations=25 tests/integration || status=$?
    log "pytest (unit tests, two workers)"
    local units=0
    pytest_run --durations=10 -n 2 tests/unit || units=$?
    [ "$status" != 0 ] || status=$units  # the first failure's status
    return "$status"
  fi
  pytest_run --durations=25 "${selection[@]}" "$@" || status=$?
  return "$status"
}

# pytest with the suite's options; "collected no tests" (exit 5) is a failure here.
# --durations prints the slowest tests, to keep a CI run under an hour.
pytest_run() {
  local status=0
  "$VENV/bin/pytest" -p no:cacheprovider "$@" || status=$?
  if [ "$status" = 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    return 1
  fi
  return "$status"
}

need_root
system_packages
if [ "$all_releases" = 1 ] || { [ -n "$release" ] && [ "$release" != 22.05 ]; }; then
  slurm_root_packages
fi
postgres_up
postgres_test_role
ops_packages
redis_up
python_env test
app_runtimes
cd "$REPO"
export CI="${CI:-1}"  # database tests must not skip PostgreSQL here

if [ "$all_releases" = 0 ]; then
  status=0
  run_pass "${release:-22.05}" "$((1 - facing))" "$@" || status=$?
  exit "$status"
fi

overall=0
summary=()
for pass in "22.05 1" "24.11 0" "26.05 0"; do
  read -r rel whole <<<"$pass"
  started=$SECONDS
  pass_status=0
  # A subshell per pass: each sets its own cluster directory and release (the default
  # one of that release, whatever HPCPORTAL_DEVCLUSTER_DIR says).
  (unset HPCPORTAL_DEVCLUSTER_DIR; run_pass "$rel" "$whole" "$@") || pass_status=$?
  label="Slurm $rel $([ "$whole" = 1 ] && echo 'whole suite' || echo 'Slurm-facing')"
  summary+=("== $label: exit $pass_status in $((SECONDS - started)) s")
  echo "${summary[-1]}" >&2
  if [ "$overall" = 0 ]; then overall=$pass_status; fi
done
printf '%s\n' "${summary[@]}" >&2
exit "$overall"
