#!/usr/bin/env bash
# Run the txthrift benchmark harness: bash benchmarks/run.sh [--quick] [--only NAME,...]
# Uses $PYTHON if set; otherwise the repository's .venv (made by scripts/setup.sh), with the
# benchmark-only packages (thriftpy2, matplotlib, py-spy) added to it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    bash "$here/../scripts/setup.sh"
    PYTHON="$here/../.venv/bin/python"
    "$PYTHON" -m pip install --quiet thriftpy2 matplotlib py-spy
fi
exec "$PYTHON" "$here/run.py" "$@"
