#!/usr/bin/env bash
# Run the txthrift benchmark harness: bash benchmarks/run.sh [--quick] [--only NAME,...]
# Uses $PYTHON, else /tmp/venv/bin/python if present, else python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x /tmp/venv/bin/python ]]; then PYTHON=/tmp/venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" "$here/run.py" "$@"
