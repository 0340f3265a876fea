#!/usr/bin/env bash
# fuzz.sh PKG TARGET TIME: runs one fuzz target for TIME.
# Go 1.26's fuzzer can end a clean run with "context deadline exceeded" as
# fuzztime runs out (golang/go#75804); that ending, with no failing input
# written, is a pass. Any failing input fails the run.
#
# Minimizing a new input may take up to a minute by default, a whole short
# run: FuzzReader ran 958 inputs in 15s that way, and 768,844 with the
# minimizing bounded to 2s, so it is bounded.
set -uo pipefail
pkg=$1 target=$2 time=$3
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run='^$' -fuzz="^${target}\$" -fuzztime="$time" -fuzzminimizetime=2s "$pkg" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ] && grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
	echo "fuzz: $target ended with the fuzzer's own deadline error and no failing input: counted as a pass"
	exit 0
fi
exit "$rc"
