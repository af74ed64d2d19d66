#!/usr/bin/env bash
# `make run`: the AWS emulator on 127.0.0.1:${MOTO_PORT:-5000} and a Kafka broker (Tansu, in
# memory) on 127.0.0.1:${KAFKA_PORT:-19092}, then the local gateway on 127.0.0.1:${PORT:-3000}.
# Unless JENKINS_URL is set (with JENKINS_USER / JENKINS_TOKEN), the gateway also runs the
# Jenkins stand-in, inside its process, on 127.0.0.1:${JENKINS_PORT:-8080}, whose builds are real
# (buildah) and push to the image registry on 127.0.0.1:${REGISTRY_PORT:-5001}, seeded with
# base/busybox:1 and read as the Docker Hub mirror (FROM busybox:1). Ctrl-C stops everything.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ensure_venv
ensure_kafka_broker
ensure_kafka_client
cargo build --quiet --bin local-gateway
stop_all() { stop_registry; stop_kafka; stop_moto; }
trap stop_all EXIT INT TERM
start_moto "${MOTO_PORT:-5000}"
# The gateway gets the broker's address as KAFKA_BOOTSTRAP; builds reach it through their webhooks.
start_kafka "${KAFKA_PORT:-19092}"
log "Kafka webhooks: kafka://$KAFKA_BOOTSTRAP/<topic>; print a topic: .venv/bin/python infra/local/kafka-tail.py <topic>"
if ensure_image_tools; then
  start_registry "${REGISTRY_PORT:-5001}"
  export JENKINS_STANDIN_DOCKER_HUB_MIRROR="${JENKINS_STANDIN_DOCKER_HUB_MIRROR:-$REGISTRY_ADDRESS}"
else
  log "no image registry: the Jenkins stand-in simulates Docker (its build logs say so)"
fi
# The gateway runs the poller too: the same malloc setting as the poller in Lambda.
MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-$(template_malloc_threshold)}"
export MALLOC_MMAP_THRESHOLD_
"${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/local-gateway"
