#!/usr/bin/env bash
# Regenerates the command spec from a running redis-server 7.0:
#   internal/cmdgen/spec/dump.sh [port]
# The generator reads these two files; commit them with the generated code.
set -euo pipefail
port=${1:-6379}
dir=$(dirname "$0")
redis-cli -p "$port" --json COMMAND DOCS >"$dir/command-docs.json"
redis-cli -p "$port" --json COMMAND INFO >"$dir/command-info.json"
redis-cli -p "$port" INFO server | grep '^redis_version' | tr -d '\r' >"$dir/VERSION"
