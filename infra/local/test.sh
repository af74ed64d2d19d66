#!/usr/bin/env bash
# `make test`: every test. Starts a private AWS emulator on a free port for the integration
# and end-to-end tests (each test makes its own randomly named table, bucket and queue),
# runs the suite, and stops the emulator whatever happens. The Kafka tests start their own
# broker each, on a free port, from the binary in SHUTTLE_TEST_KAFKA_BROKER (Tansu, in .venv/).
# Builds are real (buildah through the Jenkins stand-in's docker shim): an image registry on a
# free port, seeded with the base images, is SHUTTLE_TEST_REGISTRY.
# Then every AWS call the functions made is checked against their IAM policies in template.yaml
# (infra/iam, on Node.js).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ensure_venv
ensure_kafka_broker
ensure_image_tools
SHUTTLE_TEST_KAFKA_BROKER="$(kafka_broker_bin)"
export SHUTTLE_TEST_KAFKA_BROKER
# Build first, so the emulator is not left waiting through a cold build.
cargo test --workspace --no-run --quiet
# Every AWS call the functions make in the tests is recorded here (tests/src/aws_calls.rs), and
# checked after the tests against that function's own IAM policy in template.yaml (infra/iam).
AWS_CALLS_DIR="$STATE_DIR/aws-calls"
rm -rf "$AWS_CALLS_DIR"
export SHUTTLE_AWS_CALLS_DIR="$AWS_CALLS_DIR"
stop_all() { stop_registry; stop_moto; }
trap stop_all EXIT INT TERM
start_moto "${MOTO_PORT:-$(free_port)}"
start_registry "$(free_port)"
export SHUTTLE_TEST_REGISTRY="$REGISTRY_ADDRESS"
# The tests that freeze the emulator (tests/tests/faults_emulator.rs) find it by its pid.
export MOTO_PID
cargo test --workspace "$@"

log "the IAM checker's own tests (infra/iam)"
bash infra/iam/test.sh
if compgen -G "$AWS_CALLS_DIR/*.jsonl" >/dev/null; then
  log "IAM check: every AWS call of the functions against the function's own policy in template.yaml"
  node infra/iam/check-calls.mjs "$AWS_CALLS_DIR"/*.jsonl
else
  log "IAM check: no function made an AWS call in the tests that ran"
fi
