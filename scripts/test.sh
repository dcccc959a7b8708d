#!/usr/bin/env bash
# The test command: set up .venv, then run every check CI runs, in this order:
#   pytest (the whole suite), trial (tests.test_trial_smoke), ruff, mypy.
# Every check runs even when an earlier one fails; the exit status is non-zero if any failed.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k examples -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

failed=()
check() { # check NAME COMMAND...: run a check, remember it if it fails
  local name=$1 status=0
  shift
  echo "== $name"
  "$@" || status=$?
  if [ "$status" -ne 0 ]; then
    # Any non-zero status fails, pytest's 5 ("no tests collected") included.
    echo "== $name FAILED (exit status $status)" >&2
    failed+=("$name")
  fi
}

check pytest .venv/bin/python -m pytest "$@"
check trial .venv/bin/trial tests.test_trial_smoke
check ruff .venv/bin/ruff check txthrift tests
check mypy .venv/bin/mypy txthrift

if [ "${#failed[@]}" -ne 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all checks passed"
