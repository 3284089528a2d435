#!/usr/bin/env bash
# Install what the tests need, bring up the dev cluster, and run the whole suite:
# ruff, mypy (strict) and pytest (unit tests on recorded Slurm output, integration
# tests on the live cluster, database tests on SQLite and PostgreSQL).
#
# Usage: scripts/test.sh [--slurm 22.05|24.11|26.05] [--slurm-facing] [pytest args...]
#   --slurm REL     run against a dev cluster of that Slurm release (default 22.05, the
#                   host's packages, in .devcluster/); 24.11 and 26.05 run from Debian
#                   roots made once with debootstrap, each in .devcluster-REL/.
#   --slurm-facing  only the integration tests whose talk with Slurm differs between
#                   releases (marker slurm_facing, listed in tests/integration/conftest.py),
#                   without ruff and mypy: the second and third pass of CI.
#   --all-releases  the whole suite on 22.05, then the Slurm-facing selection on 24.11
#                   and on 26.05 (each pass runs even if one before failed; the exit
#                   status is the first failure's). Plain `scripts/test.sh` is unchanged.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

release=22.05
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
  22.05 | 24.11 | 26.05) ;;
  *) echo "unsupported Slurm release '$release': choose 22.05, 24.11 or 26.05" >&2; exit 2 ;;
esac

if [ "$all_releases" = 1 ]; then
  if [ "$release" != 22.05 ] || [ "$facing" = 1 ]; then
    echo "--all-releases chooses the releases itself: drop --slurm and --slurm-facing" >&2
    exit 2
  fi
  self="${BASH_SOURCE[0]}"
  overall=0
  for pass in "22.05" "24.11 --slurm-facing" "26.05 --slurm-facing"; do
    read -r rel flags <<<"$pass"
    started=$SECONDS
    pass_status=0
    # shellcheck disable=SC2086 # flags is empty or one word
    bash "$self" --slurm "$rel" $flags "$@" || pass_status=$?
    echo "== Slurm $rel${flags:+ $flags}: exit $pass_status in $((SECONDS - started)) s" >&2
    if [ "$overall" = 0 ]; then overall=$pass_status; fi
  done
  exit "$overall"
fi

need_root
system_packages
if [ "$release" != 22.05 ]; then
  slurm_root_packages
  # Its own directory, so the 22.05 cluster (and its port slot) stays as it is.
  export HPCPORTAL_DEVCLUSTER_DIR="${HPCPORTAL_DEVCLUSTER_DIR:-$REPO/.devcluster-$release}"
fi
export HPCPORTAL_DEVCLUSTER_SLURM="$release"  # the devcluster fixture brings this one up
postgres_up
postgres_test_role
python_env test
app_runtimes
cd "$REPO"
log "dev cluster: Slurm $release"
"$VENV/bin/hpcportal" dev-cluster up --slurm "$release"
if [ "$facing" = 0 ]; then
  log "ruff"
  "$VENV/bin/ruff" check src tests bench
  "$VENV/bin/ruff" format --check src tests bench
  log "mypy"
  "$VENV/bin/mypy"
fi
log "pytest (Slurm $release)"
export CI="${CI:-1}"  # database tests must not skip PostgreSQL here
selection=()
if [ "$facing" = 1 ]; then
  selection=(-m slurm_facing tests/integration)
fi
status=0
"$VENV/bin/pytest" -p no:cacheprovider "${selection[@]}" "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
