#!/usr/bin/env bash
# Fuzz the whole API for longer than the test suite does: the same schemathesis run as
# tests/integration/test_api_fuzz.py (a portal on loopback, the live dev cluster, as
# alice and as carol, fenced into a throwaway folder, no 5xx and no answer the spec does
# not describe), with more examples per operation and more time. Each run draws new
# random cases; a failure prints the broken check and a curl command per operation.
#
#   scripts/fuzz_api.sh                 # 200 examples per operation and mode, 30 min per user
#   scripts/fuzz_api.sh 50 600          # 50 examples, 10 min per user
#   scripts/fuzz_api.sh 500 3600 -k carol   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export HPCPORTAL_FUZZ_EXAMPLES="${1:-200}"
export HPCPORTAL_FUZZ_SECONDS="${2:-1800}"
shift $(($# < 2 ? $# : 2))
exec .venv/bin/pytest tests/integration/test_api_fuzz.py -q -p no:cacheprovider "$@"
