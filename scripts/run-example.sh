#!/usr/bin/env bash
# Run the main job: the hello example served by `twistd thrift` in the foreground, on
# $PORT (default tcp:9090:interface=127.0.0.1; any server endpoint description works).
# On a fresh machine it first sets up .venv with scripts/setup.sh.  Stop it with Ctrl-C or
# SIGTERM: calls in flight get their replies first.
#
#     bash scripts/run-example.sh
#     python examples/hello/seed_client.py 9090     # in another shell
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python -c 'import txthrift' >/dev/null 2>&1; then
  bash scripts/setup.sh
fi

export PYTHONPATH="$PWD/examples/hello:$PWD/examples/hello/gen${PYTHONPATH:+:$PYTHONPATH}"
exec .venv/bin/twistd -n --pidfile= thrift \
  --handler hello_handler.HelloServiceHandler \
  --port "${PORT:-tcp:9090:interface=127.0.0.1}"
