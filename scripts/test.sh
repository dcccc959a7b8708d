#!/usr/bin/env bash
# The test command: set up .venv, then run every check CI runs, in this order:
#   speedups (the C extension was built, where a C compiler exists), pytest (the whole
#   suite, Hypothesis in its fixed "ci" profile), trial (tests.test_trial_smoke,
#   tests.test_testing), ruff, mypy
#   (over the package and the tests; see mypy.ini for what the tests may leave untyped).
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

# txthrift._speedups is optional for users (no compiler: the same loop runs in Python), not
# here: where the compiler Python builds extensions with exists, a missing one fails, or its
# tests would skip without anyone noticing.
speedups() {
  local compiler
  compiler=${CC:-$(.venv/bin/python -c \
    'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')}
  compiler=${compiler%% *}
  if ! command -v "$compiler" >/dev/null; then
    echo "no C compiler ($compiler): txthrift._speedups is not required"
    return 0
  fi
  .venv/bin/python -c 'import txthrift._speedups' || {
    echo "txthrift._speedups was not built although $compiler exists:" \
      "see the output of: .venv/bin/python -m pip install -v -e ." >&2
    return 1
  }
}

# Hypothesis derandomized, with no example database: the same inputs on every run (see
# tests/conftest.py).
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}

check speedups speedups
check pytest .venv/bin/python -m pytest "$@"
check trial .venv/bin/trial tests.test_trial_smoke tests.test_testing
check ruff .venv/bin/ruff check txthrift tests
check mypy .venv/bin/mypy txthrift tests

if [ "${#failed[@]}" -ne 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all checks passed"
