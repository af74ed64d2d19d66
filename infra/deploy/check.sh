#!/usr/bin/env bash
# `make deploy-check`: what can be checked of a deployment without an AWS account.
#   1. the template, offline: `sam validate --lint` and `cfn-lint` (both from PyPI);
#   2. the release Lambda artefacts: `cargo lambda build --release` (cargo-lambda from PyPI, with
#      zig for the glibc of provided.al2023), one bootstrap.zip per function, sizes printed;
#   3. a deployment rehearsal (infra/deploy/rehearse.py): each bootstrap started with exactly the
#      environment template.yaml gives it, on a private AWS emulator, under a Runtime API emulator,
#      and invoked with every event the template routes to it, in AWS's own shapes.
# Tools go into the repository's .venv, like the AWS emulator of `make test`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../local/env.sh"
cd "$REPO_ROOT"

FUNCTIONS=(create stop delete status sources poller)
DEPLOY_TOOLS=('aws-sam-cli>=1.120,<2' 'cfn-lint>=1,<2' 'cargo-lambda>=1.8,<2')

ensure_venv
if [ ! -x "$VENV/bin/sam" ] || [ ! -x "$VENV/bin/cfn-lint" ] || [ ! -x "$VENV/bin/cargo-lambda" ]; then
  log "installing the deploy tools into $VENV: ${DEPLOY_TOOLS[*]}"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${DEPLOY_TOOLS[@]}"
fi
export PATH="$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0

log "sam validate --lint"
# Offline: a region is needed to load the template's transform, no credentials are.
AWS_DEFAULT_REGION="${AWS_REGION}" sam validate --lint --template-file template.yaml
log "cfn-lint"
cfn-lint template.yaml
log "the template's Rules (infra/deploy/rules_test.py)"
"$VENV/bin/python" infra/deploy/rules_test.py

# x86_64 by default (the machine's own target needs no download); ARCH=arm64 for the template's default.
arch_flag=()
if [ "${ARCH:-x86_64}" = arm64 ]; then
  arch_flag=(--arm64)
fi
log "cargo lambda build --release ${arch_flag[*]:-} (${FUNCTIONS[*]})"
start=$(date +%s)
bins=()
for function in "${FUNCTIONS[@]}"; do bins+=(--bin "$function"); done
cargo lambda build --release "${arch_flag[@]}" --output-format zip "${bins[@]}"
log "built in $(( $(date +%s) - start )) s"

printf '%-10s %12s %12s\n' function bootstrap zip
for function in "${FUNCTIONS[@]}"; do
  zip="target/lambda/$function/bootstrap.zip"
  [ -f "$zip" ] || { log "missing $zip"; exit 1; }
  size=$(python3 -c "import zipfile,sys; print(zipfile.ZipFile(sys.argv[1]).getinfo('bootstrap').file_size)" "$zip")
  printf '%-10s %12s %12s\n' "$function" "$size" "$(stat -c %s "$zip")"
done

# The bootstraps run on this machine: a build for another architecture is not rehearsed here.
machine="$(uname -m)"
[ "$machine" = aarch64 ] && machine=arm64
if [ "${ARCH:-x86_64}" != "$machine" ]; then
  log "deployment rehearsal skipped: ${ARCH:-x86_64} bootstraps on a $machine machine (ARCH=$machine rehearses them)"
else
  log "deployment rehearsal (infra/deploy/rehearse.py)"
  start=$(date +%s)
  "$VENV/bin/python" infra/deploy/rehearse.py
  log "rehearsed in $(( $(date +%s) - start )) s"
fi
