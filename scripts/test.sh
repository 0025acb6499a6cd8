#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, checks that the
# golden fixtures match their generator, then runs every Rust test (unit, golden, service,
# real Prometheus) with cargo-nextest, and, for a whole run (no arguments), builds the
# release binary as the Dockerfile does and runs it as the container image would
# (scripts/check-image.sh), then runs every fuzz target over its seeds and a fixed number of
# new inputs (scripts/fuzz.sh --runs: the same inputs every time).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-deps.sh
python3 tests/fixtures/gen_fixtures.py --check
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
if [ $# -eq 0 ]; then
  scripts/check-image.sh
  scripts/fuzz.sh --runs 30000
fi
