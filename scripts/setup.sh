#!/usr/bin/env bash
# Set up (or bring up to date) the development virtualenv in .venv: txthrift installed
# editable with its test extra, and Twisted's plugin cache refreshed so `twistd thrift` is found.
# Safe to run again and again; quiet unless something fails, then it shows what failed.
# The interpreter is `python3` unless PYTHON names another one.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=.venv

die() { echo "setup.sh: $*" >&2; exit 1; }

# Run a command silently; on failure print its output and stop.
quietly() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "failed: $*"
  fi
  rm -f "$log"
}

isSupported() { # isSupported PYTHON: true for Python 3.10 or later
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null
}

command -v "$python" >/dev/null || die "'$python' not found: install Python 3.10 or later (or set PYTHON)"
isSupported "$python" || die "txthrift needs Python 3.10 or later; '$python' is $("$python" -V 2>&1)"

# Make the virtualenv anew if it is missing, broken or too old.
if [ ! -x "$venv/bin/python" ] || ! isSupported "$venv/bin/python" \
    || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  "$python" -c 'import ensurepip' 2>/dev/null \
    || die "'$python' cannot make virtualenvs (on Debian/Ubuntu: apt-get install python3-venv)"
  quietly "$python" -m venv --clear "$venv"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
quietly "$venv/bin/python" -m pip install --upgrade pip
# Every extra setup.cfg declares (test, websocket, ...), so that every test runs here and in CI.
extras=$("$venv/bin/python" -c 'import configparser
config = configparser.RawConfigParser()
config.read("setup.cfg")
print(",".join(config["options.extras_require"]))')
quietly "$venv/bin/python" -m pip install -e ".[$extras]"
quietly "$venv/bin/python" -c \
  'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'

# Apache's `thrift` compiler, which tests/test_walkthrough.py runs (the README's "your own
# project" steps, done for real): installed when missing where this runs as root with apt-get,
# as CI does; elsewhere that test skips, saying how to install it.
installThrift() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends thrift-compiler \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends thrift-compiler; }
}
# The `openssl` command, which makes the certificates of the TLS tests (tests/_certs.py):
# installed when missing, as the compiler below is.
installOpenssl() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends openssl \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends openssl; }
}
if ! command -v openssl >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  quietly installOpenssl
fi
# HAProxy, which tests/test_pool_hosts.py starts in front of twistd backends (the README's
# "Many hosts"): installed when missing, as openssl is; elsewhere that test skips, saying so.
installHaproxy() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends haproxy \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends haproxy; }
}
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ] && [ "$(id -u)" -eq 0 ] \
    && command -v apt-get >/dev/null; then
  quietly installHaproxy
fi
if ! command -v thrift >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    quietly installThrift
  else
    echo "setup.sh: no 'thrift' compiler, so tests/test_walkthrough.py will skip" \
      "(on Debian or Ubuntu: apt-get install thrift-compiler)" >&2
  fi
fi
