#!/usr/bin/env bash
# Install everything the tests need (cached outside the clone, keyed by the dependency list) and run
# lint and the whole test suite (unit tests and doctests). Extra arguments go to pytest; paths among
# them (read from the directory you call the script from) replace the whole suite:
#   bash scripts/test.sh                  # everything, as CI runs it
#   bash scripts/test.sh -x -k kl         # the whole suite, pytest options added
#   bash scripts/test.sh tests/losses     # ruff, then only tests/losses
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
args=()
paths=0
for a in "$@"; do
    # pytest runs from the clone's root: a relative path of the caller's (tests/x.py::name) goes absolute.
    if [[ "$a" != -* && -e "${a%%::*}" ]]; then
        [[ "$a" != /* ]] && a="$PWD/$a"
        paths=1
    fi
    args+=("$a")
done
# shellcheck source=../.ci/env.sh
source "$root/.ci/env.sh"
cd "$root"
ruff check pixyz_like tests examples benchmarks scripts
# mypy (strictness in pyproject's [tool.mypy]) over the whole package; installed here rather than in an
# extra so adding it did not re-key the cached environment.
python -m mypy --version >/dev/null 2>&1 || python -m pip install --quiet --progress-bar off "mypy>=1.10"
python -m mypy pixyz_like
if [ "$paths" = 1 ]; then
    python -m pytest -q "${args[@]}"
else
    python -m pytest -q pixyz_like tests "${args[@]}"
fi
