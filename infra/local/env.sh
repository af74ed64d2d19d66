# Sourced by the local-stack scripts: the repository-local AWS emulator (moto's server from PyPI).
# Nothing here touches real AWS: every AWS call goes to the emulator on loopback.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO_ROOT/.venv"
STATE_DIR="$REPO_ROOT/.local"
MOTO_VERSION_SPEC='moto[server]>=5.1,<6'

export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
# The SDK would otherwise look for an EC2 instance-metadata service.
export AWS_EC2_METADATA_DISABLED=true

log() { printf '[local-stack] %s\n' "$*" >&2; }

# The poller's malloc setting as template.yaml gives it in Lambda (glibc's mmap threshold, held
# where large log buffers go back to the system when freed).
template_malloc_threshold() {
  local threshold
  threshold="$(sed -n 's/^ *MALLOC_MMAP_THRESHOLD_: *"\([0-9]*\)".*/\1/p' "$REPO_ROOT/template.yaml")"
  [ -n "$threshold" ] || { echo "template.yaml gives the poller no MALLOC_MMAP_THRESHOLD_" >&2; return 1; }
  echo "$threshold"
}

ensure_venv() {
  if [ ! -x "$VENV/bin/moto_server" ]; then
    log "installing the AWS emulator ($MOTO_VERSION_SPEC) into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_VERSION_SPEC"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_moto PORT: starts the emulator on 127.0.0.1:PORT, waits until it answers, and
# exports AWS_ENDPOINT_URL. Its pid is in MOTO_PID.
start_moto() {
  local port="$1"
  mkdir -p "$STATE_DIR"
  if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)"; then
    log "port $port is already in use: stop what runs there or choose another port (MOTO_PORT)"
    return 1
  fi
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$STATE_DIR/moto-$port.log" 2>&1 &
  MOTO_PID=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/', timeout=1)" 2>/dev/null; then
      log "AWS emulator ready at $AWS_ENDPOINT_URL (pid $MOTO_PID)"
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      log "the AWS emulator exited; see $STATE_DIR/moto-$port.log"
      return 1
    fi
    sleep 0.2
  done
  log "the AWS emulator did not answer within 20 s; see $STATE_DIR/moto-$port.log"
  return 1
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
}
