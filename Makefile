# The two commands of the README, and the checks CI runs.
.PHONY: run test lint deny deploy-check fmt clean

## make run: the whole function set locally (AWS emulator + local gateway on 127.0.0.1:3000).
run:
	bash infra/local/run.sh

## make test: every test, against a private AWS emulator that is started and stopped here.
test:
	bash infra/local/test.sh

## make lint: formatting, the supply-chain check (make deny) and clippy, warnings as errors.
lint:
	cargo fmt --all --check
	$(MAKE) --no-print-directory deny
	cargo clippy --workspace --all-targets --quiet -- -D warnings

## make deny: cargo deny check, offline (deny.toml: advisories against the RustSec snapshot in
## ../shared/advisory-db, bans, licenses, sources), then its test: a copy of the snapshot with an
## advisory planted against a crate of Cargo.lock must fail it. See infra/supply-chain/README.md.
deny:
	bash infra/supply-chain/deny.sh
	bash infra/supply-chain/test.sh

## make deploy-check: the template checked offline (sam validate --lint, cfn-lint) and the
## release Lambda artefacts built with cargo lambda (one bootstrap.zip per function).
deploy-check:
	bash infra/deploy/check.sh

fmt:
	cargo fmt --all

clean:
	rm -rf target .venv .local
