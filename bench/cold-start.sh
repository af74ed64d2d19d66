#!/usr/bin/env bash
# Cold start (issue 7): `bash bench/cold-start.sh [runs]` (default 15). Builds every function's
# release binary and a hello-world `lambda_runtime` binary with the same profile, then times each
# from exec to its first `GET …/runtime/invocation/next` on a local Runtime API emulator
# (`bench/src/bin/cold-start.rs`), as a ratio to the hello-world binary; goal: ≤ 2×.
# The release build takes ≈10 minutes on 2 cores the first time. No network in init: every AWS
# endpoint is 127.0.0.1:1, so a connection attempt at start would fail the function or show here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs="${1:-15}"
functions=(create stop delete status sources poller)
bins=()
for function in "${functions[@]}"; do bins+=(--bin "$function"); done
cargo build --release --quiet "${bins[@]}" --bin hello-world --bin cold-start
release="${CARGO_TARGET_DIR:-target}/release"

binaries=("$release/hello-world")
for function in "${functions[@]}"; do binaries+=("$release/$function"); done

# The environment of a function in Lambda (template.yaml), open mode, dummy credentials.
env -i \
    AWS_LAMBDA_FUNCTION_NAME=bench AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 AWS_LAMBDA_FUNCTION_VERSION='$LATEST' \
    AWS_LAMBDA_LOG_FORMAT=JSON AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
    AWS_ENDPOINT_URL=http://127.0.0.1:1 \
    TABLE_NAME=builds S3_BUCKET=sources S3_LOCATION=us-east-1 POLL_QUEUE_URL=http://127.0.0.1:1/000000000000/poll KMS_KEY_ID=alias/shuttle \
    BUILD_SHUTTLE_HOST=https://shuttle.example JENKINS_URL=https://jenkins.example SHUTTLE_OPEN_MODE=true \
    "$release/cold-start" "$runs" "${binaries[@]}"
