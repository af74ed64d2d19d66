#!/usr/bin/env bash
# The fuzz suite (proptest properties named `fuzz_*`), run long: `bash bench/fuzz.sh [cases] [cargo args]`.
# Every property runs `cases` generated inputs (PROPTEST_CASES; default 100000, `make test` runs
# proptest's default of 256). Prints the properties run, the total executions and the time taken.
# Extra arguments go to `cargo test`, e.g. `bash bench/fuzz.sh 1000000 --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cases="${1:-100000}"
shift || true
packages=(-p shuttle-core -p shuttle-adapters -p poller)

cargo test "${packages[@]}" "$@" --no-run --quiet
output="$(mktemp)"
trap 'rm -f "$output"' EXIT
start=$(date +%s%N)
status=0
PROPTEST_CASES="$cases" cargo test "${packages[@]}" "$@" fuzz_ -- --test-threads="${FUZZ_THREADS:-$(nproc)}" >"$output" 2>&1 || status=$?
elapsed=$(awk -v ns="$(($(date +%s%N) - start))" 'BEGIN { printf "%.1f", ns / 1e9 }')
passed=$(grep -cE '^test .*fuzz_.* \.\.\. ok$' "$output" || true)
failed=$(grep -cE '^test .*fuzz_.* \.\.\. FAILED$' "$output" || true)
if [ "$status" -ne 0 ]; then
    grep -E 'Test failed|minimal failing input|panicked' -A12 "$output" >&2 || cat "$output" >&2
fi
printf 'properties: %d passed, %d failed\ncases per property: %d\nexecutions: %d\ntime: %s s\n' \
    "$passed" "$failed" "$cases" "$((passed * cases))" "$elapsed"
exit "$status"
