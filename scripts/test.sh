#!/usr/bin/env bash
# Install everything the tests need (cached outside the clone, keyed by the dependency list) and run
# the whole test suite: lint, unit tests and doctests.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/env.sh
ruff check pixyz_like tests examples benchmarks
python -m pytest -q pixyz_like tests "$@"
