#!/usr/bin/env bash
# Log relay (issue 7): `bash bench/relay.sh [runs]` (default 3; ≈50 s a run, plus the build).
# Starts the AWS emulator on a free port, builds the relay bench (bench/src/bin/relay-bench.rs)
# with `--profile bench` (the release profile without fat LTO: every figure is a ratio against a
# baseline measured in the same run of the same binary, so both sides share the profile), runs
# it and stops the emulator. It prints a markdown table of medians over the runs:
#
# - HTTP relay throughput, bytes/s; goal ≥ 0.5 × a raw loopback TCP copy of the same bytes.
#   Baseline: in the bench process, a tokio socket writes the whole log to another on 127.0.0.1
#   (timed from the first write, connection already made, to the last byte read). Ours: the same
#   log (RELAY_MB of 100-byte numbered lines) appended at once (POSTs of 1 MiB) to a running
#   build of the in-process Jenkins stand-in whose only log target is an HTTP sink (the tests'
#   Receiver, a hyper server recording when each body frame arrives), timed from the first
#   append to the log's last byte at the sink. In that time: the appends themselves, the wait
#   for the poller's next read (POLL_INTERVAL is 100 ms here, so ≤ 0.1 s of it), the Jenkins
#   read, the S3 archive (1 MiB chunk objects in moto, a Python process, before the relay sees
#   any of it), the DynamoDB save of the positions, and the chunked stream to the sink. The
#   table's notes split it: append → first byte at the sink, first → last byte.
# - Kafka relay throughput, lines/s; goal ≥ 0.5 × a bare rdkafka FutureProducer sending the same
#   lines (same key, payload and `log-offset` header as the relay's messages; the adapter's
#   producer settings: idempotent, linger 5 ms, message timeout 10 s) to the same broker. The
#   broker is the tests' one: a Tansu broker process on loopback (until session 10 it was
#   librdkafka's mock cluster in the bench process, so earlier figures are not comparable). Both sides are
#   timed to librdkafka's delivery report of the last line: the baseline awaits its own futures;
#   for ours the poller's Kafka client is the shuttle's adapter (RdKafkaClient) wrapped in a
#   timer that notes when the call holding the last line returns delivered. (Not a consumer:
#   one reads ≈0.1 M lines/s here, slower than the bare producer.) Ours holds the same parts
#   as the HTTP row, the relay's Kafka sends (1 MiB of lines per call, each call awaited before
#   the next) instead of the stream.
# - Line latency p50 and p99 at the HTTP sink: RELAY_PROBES lines per run appended at random
#   gaps (0.25–1.25 poll intervals) to a running build of an app with POLL_INTERVAL
#   RELAY_POLL_MS (default 1000) and the default LOG_WINDOW (20 s, so window hand-overs through
#   SQS are in it); each from its append to its arrival. Goals: p50 ≤ POLL_INTERVAL/2 + 50 ms,
#   p99 ≤ POLL_INTERVAL + 250 ms; the ratio is measured / bound (≤ 1 meets it). Percentiles
#   are nearest-rank: with 50 probes a run's p99 is its largest.
#
# Settings (environment): RELAY_MB (default 10), RELAY_PROBES (default 50), RELAY_POLL_MS (1000),
# RELAY_THROUGHPUT_POLL_MS (100), RUST_LOG (default warn; e.g. `shuttle_core::poll=debug` shows
# each read's archive time). Progress goes to stderr, the table to stdout. Timings are noisy here:
# no figure is asserted anywhere, and nothing fails when a goal is missed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../infra/local/env.sh"

runs="${1:-3}"
target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"

cd "$REPO_ROOT"
ensure_venv
ensure_kafka_broker
SHUTTLE_TEST_KAFKA_BROKER="$(kafka_broker_bin)"
export SHUTTLE_TEST_KAFKA_BROKER
cargo build --quiet --profile bench -p shuttle-bench --bin relay-bench
# The bench profile's output directory is `release`. A copy of this build: a shared
# CARGO_TARGET_DIR may get another checkout's binary meanwhile.
bin="$STATE_DIR/relay-bin"
mkdir -p "$bin"
cp "$target/release/relay-bench" "$bin/"

trap stop_moto EXIT INT TERM
start_moto "$(free_port)"
"$bin/relay-bench" --runs "$runs" --mb "${RELAY_MB:-10}" --probes "${RELAY_PROBES:-50}" \
  --poll-ms "${RELAY_POLL_MS:-1000}" --throughput-poll-ms "${RELAY_THROUGHPUT_POLL_MS:-100}"
