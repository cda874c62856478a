#!/usr/bin/env bash
# Make a Python virtualenv with the official MCP SDK from PyPI (`mcp`), the client the
# tests drive kcore-mcp with, in DIR (default /var/cache/kcore/tools/mcp-venv), on
# Debian's python3 (python3-venv).
# Cached: does nothing when DIR already has this version. Prints the venv's python.
#   scripts/fetch-mcp.sh [DIR]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/pyvenv.sh
. "$(dirname "$0")/lib/pyvenv.sh"

MCP=2.3.0
pyvenv fetch-mcp "${1:-/var/cache/kcore/tools/mcp-venv}" "mcp==$MCP" \
    'import mcp.client.stdio, mcp.client.streamable_http'
