#!/usr/bin/env bash
# Load: `bash bench/load.sh [builds]` (default 1000). Starts the AWS emulator and the local
# gateway of `make run` (with its in-process Jenkins stand-in) on free ports, with an API token,
# then runs the load driver (bench/src/bin/load.rs): every build submitted at once, each with its
# own status and log webhook on the driver's receivers; it waits until every build is terminal
# and checks every receiver. Then prints the gateway's peak memory (VmHWM) and stops everything.
# Exits non-zero when a check fails.
#
# Settings (environment): POLL_INTERVAL (default 1s), LOG_WINDOW (default 5s), LOAD_DEADLINE_S
# (default 480: the driver's bound from the first create to the last check), LOAD_PROFILE (debug,
# as `make run`; or release), RUST_LOG (default warn: the gateway's log, in .local/).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../infra/local/env.sh"

builds="${1:-${LOAD_BUILDS:-1000}}"
profile="${LOAD_PROFILE:-debug}"
target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
release_flag=()
[ "$profile" = release ] && release_flag=(--release)

ensure_venv
cargo build --quiet "${release_flag[@]}" --bin local-gateway --bin load
# A copy of this build: a shared CARGO_TARGET_DIR may get another checkout's binary meanwhile.
bin="$STATE_DIR/load-bin"
mkdir -p "$bin"
cp "$target/$profile/local-gateway" "$target/$profile/load" "$bin/"

gateway_pid=""
stop_all() {
  if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then
    kill -INT "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  stop_moto
}
trap stop_all EXIT INT TERM

start_moto "$(free_port)"
port="$(free_port)"
token="load-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
gateway_log="$STATE_DIR/load-gateway-$port.log"
mkdir -p "$STATE_DIR" && : >"$gateway_log"
export POLL_INTERVAL="${POLL_INTERVAL:-1s}" LOG_WINDOW="${LOG_WINDOW:-5s}"
# Docker simulated: the bench measures the shuttle, not a thousand buildah runs.
PORT="$port" JENKINS_PORT="$(free_port)" LOCAL_STACK_PREFIX="load$port" JENKINS_STANDIN_DOCKER=simulated \
  SHUTTLE_API_TOKENS="$token" ALLOWED_PRIVATE_CIDRS="127.0.0.0/8,::1/128" RUST_LOG="${RUST_LOG:-warn}" \
  "$bin/local-gateway" >"$gateway_log" 2>&1 &
gateway_pid=$!
for _ in $(seq 1 150); do
  grep -q '^ready ' "$gateway_log" && break
  kill -0 "$gateway_pid" 2>/dev/null || { log "the gateway exited; see $gateway_log"; exit 1; }
  sleep 0.2
done
grep -q '^ready ' "$gateway_log" || { log "the gateway did not get ready within 30 s; see $gateway_log"; exit 1; }
log "gateway ready on 127.0.0.1:$port (pid $gateway_pid, $profile build; POLL_INTERVAL=$POLL_INTERVAL LOG_WINDOW=$LOG_WINDOW; log $gateway_log)"

started=$(date +%s%N)
status=0
"$bin/load" --url "http://127.0.0.1:$port" --token "$token" --builds "$builds" --deadline-s "${LOAD_DEADLINE_S:-480}" || status=$?
elapsed=$(awk -v ns="$(($(date +%s%N) - started))" 'BEGIN { printf "%.1f", ns / 1e9 }')

# The gateway's peak resident memory, read before it stops (the AWS emulator's for comparison).
peak_mib() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
printf 'wall time          %s s (driver, from start to the last check)\n' "$elapsed"
printf 'gateway peak RSS   %s MiB (VmHWM of pid %s)\n' "$(peak_mib "$gateway_pid")" "$gateway_pid"
printf 'moto peak RSS      %s MiB (the AWS emulator, for comparison)\n' "$(peak_mib "$MOTO_PID")"
if grep -qE ' (WARN|ERROR) ' "$gateway_log"; then
  printf 'gateway warnings   %s (see %s)\n' "$(grep -cE ' (WARN|ERROR) ' "$gateway_log")" "$gateway_log"
fi
exit "$status"
