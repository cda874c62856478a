#!/usr/bin/env bash
# kcore-join-env TOKEN_FILE NODE_CERT KCORED ARGS...
#
# Runs kcored with the one-time join token in its environment (KCORE_JOIN_TOKEN), read from
# TOKEN_FILE, while the node has no certificate yet: NODE_CERT (<data-dir>/pki/node.crt)
# or the key beside it (node.key) is missing, which is when kcored joins.
# The token never goes on the command line: /proc/PID/cmdline is readable by every user,
# /proc/PID/environ only by root. Once the node has joined, the token is not read again
# (it is spent; delete the file).
set -eu
token_file=$1
node_cert=$2
shift 2
node_key=${node_cert%.crt}.key
unset KCORE_JOIN_TOKEN
if [ ! -e "$node_cert" ] || [ ! -e "$node_key" ]; then
    if [ -r "$token_file" ]; then
        token=
        IFS=$' \t\r\n' read -r token <"$token_file" || true
        if [ -n "$token" ]; then
            KCORE_JOIN_TOKEN=$token
            export KCORE_JOIN_TOKEN
        else
            echo "kcore-join-env: $token_file is empty: the node cannot join" >&2
        fi
    else
        echo "kcore-join-env: no $node_cert yet and $token_file cannot be read: the node cannot join (kctl node join-token on the controller)" >&2
    fi
fi
exec "$@"
