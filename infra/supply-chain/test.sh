#!/usr/bin/env bash
# `make deny`, second half: the advisory check can fail, and fails for the right reason.
#   1. the real snapshot: `deny.sh advisories` passes (the snapshot is laid out where cargo-deny
#      looks, and no advisory in it hits Cargo.lock);
#   2. a copy of the snapshot with two advisories planted against a crate of Cargo.lock: one whose
#      affected range is exactly our version (RUSTSEC-9999-0001), one patched in our version
#      (RUSTSEC-9999-0002). The check must fail, name the first, and not name the second.
# Planted ids are not RUSTSEC-0000-0000: cargo-deny skips that placeholder id, as rustsec does.
# Without a snapshot there is nothing to test: a loud warning, and success (as in deny.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO_ROOT"
start=$EPOCHREALTIME

# The crate the advisories are planted against: a direct dependency of the workspace, so it is in
# the graph whatever the features.
PLANTED_CRATE=bytes

refuse_bad_advisory_db_setting
if ! real_db="$(find_advisory_db)"; then
  say "WARNING: no RustSec snapshot: the advisory check was NOT tested"
  exit 0
fi

version="$(awk -v crate="$PLANTED_CRATE" '
  $0 == "name = \"" crate "\"" { found = 1; next }
  found && /^version = / { gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
[ -n "$version" ] || { say "no $PLANTED_CRATE in Cargo.lock: choose another PLANTED_CRATE"; exit 1; }

# The copy of the database is some 2,000 files and directories: on tmpfs (/dev/shm) copying and
# deleting them takes a tenth of a second, on this machine's disk 4 s.
scratch_parent="${TMPDIR:-/tmp}"
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  scratch_parent=/dev/shm
fi
scratch="$(mktemp -d "$scratch_parent/shuttle-deny-test.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
failures=0

say "test: the real snapshot passes"
if ADVISORY_DB="$real_db" bash infra/supply-chain/deny.sh advisories >"$scratch/real.log" 2>&1; then
  say "ok: no advisory of $real_db hits Cargo.lock"
else
  cat "$scratch/real.log" >&2
  say "FAIL: the check fails on the real snapshot (see above)"
  failures=$(( failures + 1 ))
fi

# plant_advisory DB ID VERSIONS: writes an advisory against $PLANTED_CRATE into DB, in the RustSec
# format (EXAMPLE_ADVISORY.md of the database), with the [versions] lines VERSIONS.
plant_advisory() {
  local db="$1" id="$2" versions="$3"
  mkdir -p "$db/crates/$PLANTED_CRATE"
  cat >"$db/crates/$PLANTED_CRATE/$id.md" <<ADVISORY
\`\`\`toml
[advisory]
id = "$id"
package = "$PLANTED_CRATE"
date = "2026-01-01"
url = "https://example.invalid/$id"
categories = ["memory-corruption"]

[versions]
$versions
\`\`\`

# A planted advisory: infra/supply-chain/test.sh

Not a real advisory. It exists only in a temporary copy of the database.
ADVISORY
}

say "test: a planted advisory against $PLANTED_CRATE $version fails the check"
cp -R "$real_db" "$scratch/advisory-db"
chmod -R u+w "$scratch/advisory-db"
plant_advisory "$scratch/advisory-db" RUSTSEC-9999-0001 "patched = [\"> $version\"]
unaffected = [\"< $version\"]"
plant_advisory "$scratch/advisory-db" RUSTSEC-9999-0002 "patched = [\">= $version\"]"
if ADVISORY_DB="$scratch/advisory-db" bash infra/supply-chain/deny.sh advisories >"$scratch/planted.log" 2>&1; then
  cat "$scratch/planted.log" >&2
  say "FAIL: the check passes with RUSTSEC-9999-0001 planted against $PLANTED_CRATE $version"
  failures=$(( failures + 1 ))
elif ! grep -q "RUSTSEC-9999-0001" "$scratch/planted.log" || ! grep -q "$PLANTED_CRATE $version " "$scratch/planted.log"; then
  cat "$scratch/planted.log" >&2
  say "FAIL: the check fails, but not naming RUSTSEC-9999-0001 and $PLANTED_CRATE $version (see above)"
  failures=$(( failures + 1 ))
elif grep -q "RUSTSEC-9999-0002" "$scratch/planted.log"; then
  cat "$scratch/planted.log" >&2
  say "FAIL: RUSTSEC-9999-0002 is reported, but $PLANTED_CRATE $version is its patched version"
  failures=$(( failures + 1 ))
else
  say "ok: RUSTSEC-9999-0001 fails the check on $PLANTED_CRATE $version; RUSTSEC-9999-0002 (patched) does not"
fi

[ "$failures" -eq 0 ] || { say "$failures supply-chain test(s) failed ($(seconds_since "$start") s)"; exit 1; }
say "supply-chain tests passed in $(seconds_since "$start") s"
