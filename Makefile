# The two commands of the README, and the checks CI runs.
.PHONY: run test lint deploy-check fmt clean

## make run: the whole function set locally (AWS emulator + local gateway on 127.0.0.1:3000).
run:
	bash infra/local/run.sh

## make test: every test, against a private AWS emulator that is started and stopped here.
test:
	bash infra/local/test.sh

## make lint: formatting and clippy, warnings as errors.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

## make deploy-check: the template checked offline (sam validate --lint, cfn-lint) and the
## release Lambda artefacts built with cargo lambda (one bootstrap.zip per function).
deploy-check:
	bash infra/deploy/check.sh

fmt:
	cargo fmt --all

clean:
	rm -rf target .venv .local
