#!/usr/bin/env bash
# The offline IAM check's own tests: the fixture calls of every function pass against
# template.yaml, and copies of it with one permission taken away fail naming the call.
# Installs the pinned dependencies (npm ci, from package-lock.json) on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ ! -d node_modules/@cloud-copilot/iam-simulate ] || [ ! -d node_modules/js-yaml ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
exec node --test check-calls.test.mjs
