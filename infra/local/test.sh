#!/usr/bin/env bash
# `make test`: every test. Starts a private AWS emulator on a free port for the integration
# and end-to-end tests (each test makes its own randomly named table, bucket and queue),
# runs the suite, and stops the emulator whatever happens. The Kafka tests start their own
# broker each, on a free port, from the binary in SHUTTLE_TEST_KAFKA_BROKER (Tansu, in .venv/).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

ensure_venv
ensure_kafka_broker
SHUTTLE_TEST_KAFKA_BROKER="$(kafka_broker_bin)"
export SHUTTLE_TEST_KAFKA_BROKER
# Build first, so the emulator is not left waiting through a cold build.
cargo test --workspace --no-run --quiet
trap stop_moto EXIT INT TERM
start_moto "${MOTO_PORT:-$(free_port)}"
# The tests that freeze the emulator (tests/tests/faults_emulator.rs) find it by its pid.
export MOTO_PID
cargo test --workspace "$@"
