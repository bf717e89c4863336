# Sourced by .ci/run and the README commands: build (once) and activate the project's virtual
# environment. It lives outside the clone, keyed by a hash of the dependency list, so repeated CI runs
# reuse one multi-GB torch install instead of piling up a new one each time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
key="$(python3 - "$root/pyproject.toml" <<'PY'
import hashlib, sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = sorted(data["dependencies"]) + sorted(sum(data.get("optional-dependencies", {}).values(), []))
print(hashlib.sha256("\n".join(deps).encode()).hexdigest()[:16])
PY
)"
cache="${PIXYZ_LIKE_ENV_CACHE:-$HOME/.cache/pixyz_like}"
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ]; then
    mkdir -p "$cache"
    # Old environments for other dependency lists are removed so the cache holds one at a time.
    find "$cache" -maxdepth 1 -name 'venv-*' ! -name "venv-$key" -exec rm -rf {} + 2>/dev/null || true
    rm -rf "$venv"
    python3 -m venv "$venv"
    # pip is held below 24.1 only because Pixyz 0.3.3's wheel metadata is malformed for newer pips.
    "$venv/bin/pip" install --quiet --upgrade "pip<24.1" "setuptools>=77" wheel
    # Dependencies only; the project itself is installed editable below on every run (cheap).
    "$venv/bin/pip" install --quiet "$root[test,docs]"
    "$venv/bin/pip" uninstall --quiet -y pixyz_like
    # Pixyz 0.3.3 is the parity oracle for tests and benchmarks, never a runtime dependency. Its wheel's
    # metadata is malformed for current pip, so it goes in without dependency resolution (its
    # dependencies networkx and scipy are in the test extra).
    "$venv/bin/pip" install --quiet --no-deps pixyz==0.3.3
    touch "$venv/.complete"
fi
"$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e "$root" >/dev/null
# shellcheck disable=SC1091
source "$venv/bin/activate"
