#!/usr/bin/env bash
# `make deny` (part of `make lint`): `cargo deny check` of the crate graph against deny.toml,
# offline.
#   advisories  against the RustSec snapshot that find_advisory_db (common.sh) finds. Without one,
#               a loud warning and the three other checks: a missing snapshot does not fail.
#   bans, licenses, sources  from Cargo.lock and the crates' manifests.
# Usage: deny.sh [CHECK...]   (advisories bans licenses sources; all four by default)
# Nothing is compiled. Written: .venv (cargo-deny), Cargo's download cache and a temporary
# directory; never the snapshot, which may be read-only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# cargo-deny opens the database of a URL at <db-path>/<last path segment>-<xxhash64 of the URL>:
# this is the directory of deny.toml's db-urls entry, https://github.com/RustSec/advisory-db.
DB_DIR_NAME=advisory-db-3157b0e258782691
# cargo-audit's limit (cargo-deny's default one): past it, the snapshot is old enough to say so.
STALE_WARNING_DAYS=90

# snapshot_date DB: the day the snapshot was taken (YYYY-MM-DD), from its SNAPSHOT file
# ("rustsec/advisory-db <commit> (<date>)"), else the newest advisory in it, which is no later.
snapshot_date() {
  local db="$1" day=""
  if [ -f "$db/SNAPSHOT" ]; then
    day="$(sed -n 's/.*(\([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}\)).*/\1/p' "$db/SNAPSHOT" | head -n 1)"
  fi
  if [ -z "$day" ]; then
    day="$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$db/crates" | cut -d'"' -f2 | sort | tail -n 1)"
  fi
  [ -n "$day" ] || { say "$db: no SNAPSHOT date and no dated advisory"; return 1; }
  echo "$day"
}

# lay_out_db DB ROOT DAY: makes ROOT a db-path under which cargo-deny --offline finds DB, with no
# git repository and no write into DB. cargo-deny reads <dir>/crates/**/*.md, takes the database's
# age from the modification time of <dir>/.git/FETCH_HEAD (else from git's HEAD, so a plain
# directory needs the file) and locks ROOT/db.lock.
lay_out_db() {
  local db="$1" root="$2" day="$3"
  local dir="$root/$DB_DIR_NAME"
  mkdir -p "$dir/.git"
  ln -s "$db/crates" "$dir/crates"
  touch -d "$day" "$dir/.git/FETCH_HEAD"
}

start=$EPOCHREALTIME
cd "$REPO_ROOT"
refuse_bad_advisory_db_setting
ensure_cargo_deny

checks=("$@")
[ "${#checks[@]}" -gt 0 ] || checks=(advisories bans licenses sources)

db_root="$(mktemp -d "${TMPDIR:-/tmp}/shuttle-advisory-dbs.XXXXXX")"
trap 'rm -rf "$db_root"' EXIT
# deny.toml's db-path; set even when advisories are not checked, as the config names it.
export SHUTTLE_ADVISORY_DB_ROOT="$db_root"

if [[ " ${checks[*]} " == *" advisories "* ]]; then
  if db="$(find_advisory_db)"; then
    day="$(snapshot_date "$db")"
    age_days=$(( ( $(date +%s) - $(date -d "$day" +%s) ) / 86400 ))
    lay_out_db "$db" "$db_root" "$day"
    say "advisories: $db, snapshot of $day ($age_days days old)"
    if [ "$age_days" -gt "$STALE_WARNING_DAYS" ]; then
      say "warning: the snapshot is over $STALE_WARNING_DAYS days old: advisories published since $day are unknown to this check (refresh: infra/supply-chain/README.md)"
    fi
  else
    say "############################################################################"
    say "WARNING: ADVISORIES WERE NOT CHECKED: no RustSec snapshot in"
    say "$REPO_ROOT/../shared/advisory-db or /work/shared/advisory-db (ADVISORY_DB unset)."
    say "Bans, licenses and sources are still checked."
    say "############################################################################"
    remaining=()
    for check in "${checks[@]}"; do
      [ "$check" = advisories ] || remaining+=("$check")
    done
    [ "${#remaining[@]}" -gt 0 ] || exit 0
    checks=("${remaining[@]}")
  fi
fi

# cargo-deny --offline runs `cargo fetch --offline` and `cargo metadata --offline`, which need the
# crates of every platform in Cargo.lock downloaded (a Linux build leaves the Windows and macOS
# ones out). This fetch gets those from crates.io once; it builds nothing.
cargo fetch --locked --quiet

# --offline: no advisory database fetch (cargo-deny 0.20 has no `check --disable-fetch` any more),
# no registry index update, no std-replacement data.
say "cargo deny check ${checks[*]}"
status=0
"$CARGO_DENY" --offline --locked --log-level warn check --hide-inclusion-graph "${checks[@]}" || status=$?
say "cargo deny check took $(seconds_since "$start") s"
exit "$status"
