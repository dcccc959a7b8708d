#!/usr/bin/env bash
# Regenerate the committed Thrift code for the tests and examples.
# Needs the `thrift` compiler (Debian: apt-get install thrift-compiler); the committed code
# was made with the version recorded in each gen/COMPILER file.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v thrift >/dev/null || { echo "regen.sh: the 'thrift' compiler is not installed (apt-get install thrift-compiler)" >&2; exit 1; }
version=$(thrift -version)

gen() { # gen IDL OUTDIR GENERATOR[,OPTIONS]
  local idl=$1 out=$2 generator=$3
  mkdir -p "$out"
  thrift --gen "$generator" -out "$out" "$idl"
  find "$out" -name '*-remote' -delete
  echo "$version (thrift --gen $generator $(basename "$idl"))" >"$out/COMPILER"
}

# Both flavours of the test IDL live side by side, so each gets its own package prefix.
rm -rf tests/gen/py tests/gen/pytwisted tests/gen/twisted examples/hello/gen
gen tests/gen/Test.thrift tests/gen/py py:package_prefix=tests.gen.py.
gen tests/gen/Test.thrift tests/gen/pytwisted py:twisted,package_prefix=tests.gen.pytwisted.
gen examples/hello/HelloService.thrift examples/hello/gen py

# The conformance IDL (tests/test_conformance.py), both flavours, each in its own folder.
rm -rf tests/gen/conformance_py tests/gen/conformance_pytwisted
gen tests/gen/Conformance.thrift tests/gen/conformance_py py:package_prefix=tests.gen.conformance_py.
gen tests/gen/Conformance.thrift tests/gen/conformance_pytwisted py:twisted,package_prefix=tests.gen.conformance_pytwisted.

# Node.js code (thrift --gen js:node) for the npm `thrift` peers of tests/test_node.py.
rm -rf tests/gen/js tests/gen/conformance_js
gen tests/gen/Test.thrift tests/gen/js js:node
gen tests/gen/Conformance.thrift tests/gen/conformance_js js:node
