#!/usr/bin/env bash
# `make run`: the AWS emulator on 127.0.0.1:${MOTO_PORT:-5000}, then the local gateway on
# 127.0.0.1:${PORT:-3000}. Unless JENKINS_URL is set (with JENKINS_USER / JENKINS_TOKEN), the
# gateway also runs the Jenkins stand-in, inside its process, on 127.0.0.1:${JENKINS_PORT:-8080}.
# Ctrl-C stops everything.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ensure_venv
cargo build --quiet --bin local-gateway
trap stop_moto EXIT INT TERM
start_moto "${MOTO_PORT:-5000}"
# The gateway runs the poller too: the same malloc setting as the poller in Lambda.
MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-$(template_malloc_threshold)}"
export MALLOC_MMAP_THRESHOLD_
"${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/local-gateway"
