#!/usr/bin/env bash
# Make a Python virtualenv with grpcio and grpcio-tools from PyPI for the tests, in DIR
# (default /var/cache/kcore/tools/grpcio-venv), on Debian's python3 (python3-venv).
# PyPI's grpcio, not Debian's python3-grpcio: the tests use the client as people install it
# (since 1.57 it sends the socket path as :authority on unix sockets).
# Cached: does nothing when DIR already has these versions. Prints the venv's python.
#   scripts/fetch-grpcio.sh [DIR]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/pyvenv.sh
. "$(dirname "$0")/lib/pyvenv.sh"

GRPCIO=1.85.1
pyvenv fetch-grpcio "${1:-/var/cache/kcore/tools/grpcio-venv}" \
    "grpcio==$GRPCIO grpcio-tools==$GRPCIO" 'import grpc, grpc_tools.protoc'
