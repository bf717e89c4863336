# Sourced by .ci/run, scripts/test.sh and scripts/vae.sh: build (once) and activate the project's
# virtual environment. It lives outside the clone, keyed by a hash of pyproject.toml's dependency
# lists and of the interpreter, so repeated runs (and CI) reuse one multi-GB torch install instead
# of piling up a new one each time.
#
# Settings (environment variables):
#   PIXYZ_LIKE_PYTHON=/path/to/python3   the interpreter to build it from (default: python3; 3.11+)
#   PIXYZ_LIKE_SYSTEM_SITE_PACKAGES=1    let the environment see that interpreter's packages, so a
#                                        torch + torchvision already installed there are reused
#   PIXYZ_LIKE_ENV_CACHE=DIR             where environments live (default: ~/.cache/pixyz_like)
#   PIXYZ_LIKE_ENV_REUSE_ONLY=1          never build: stop with status 3 when the environment is not
#                                        built yet (the tests of these scripts use it)
set -euo pipefail
_pl_say() { echo "[pixyz_like env] $*" >&2; }
_pl_fail() { _pl_say "error: $*"; return 1 2>/dev/null || exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_pl_python="${PIXYZ_LIKE_PYTHON:-python3}"
command -v "$_pl_python" >/dev/null 2>&1 ||
    _pl_fail "no Python interpreter '$_pl_python' (set PIXYZ_LIKE_PYTHON to a Python 3.11 or newer)"
# pyproject.toml requires Python 3.11 or newer: the version CI tests. Refuse an older one here, with
# the reason, rather than failing later inside pip (or on tomllib, new in 3.11).
"$_pl_python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    _pl_fail "pixyz_like needs Python 3.11 or newer; '$_pl_python' is $("$_pl_python" -V 2>&1)." \
             "Set PIXYZ_LIKE_PYTHON to a Python 3.11+ interpreter."
_pl_system_site="${PIXYZ_LIKE_SYSTEM_SITE_PACKAGES:-0}"
key="$("$_pl_python" - "$root/pyproject.toml" "$_pl_system_site" <<'PY'
import hashlib, os, sys, tomllib
data = tomllib.load(open(sys.argv[1], "rb"))["project"]
deps = sorted(data["dependencies"]) + sorted(sum(data.get("optional-dependencies", {}).values(), []))
# The interpreter and the site-packages setting are part of the key: each gives a different environment.
deps += [os.path.realpath(sys.executable), "%d.%d" % sys.version_info[:2], "system-site=" + sys.argv[2]]
print(hashlib.sha256("\n".join(deps).encode()).hexdigest()[:16])
PY
)"
cache="${PIXYZ_LIKE_ENV_CACHE:-$HOME/.cache/pixyz_like}"
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ] && [ "${PIXYZ_LIKE_ENV_REUSE_ONLY:-0}" = 1 ]; then
    _pl_say "no environment built at $venv, and PIXYZ_LIKE_ENV_REUSE_ONLY=1 forbids building one"
    unset -f _pl_say _pl_fail
    return 3 2>/dev/null || exit 3
fi
if [ ! -f "$venv/.complete" ]; then
    _pl_say "building $venv (first run only)."
    _pl_say "With PyPI's torch (a CUDA build, several GB to download) the environment takes 6 GB of disk"
    _pl_say "and 4 to 20 minutes to build (measured on 2 cores). To reuse an installed torch, see README.md."
    mkdir -p "$cache"
    # Old environments for other dependency lists are removed so the cache holds one at a time.
    find "$cache" -maxdepth 1 -name 'venv-*' ! -name "venv-$key" -exec rm -rf {} + 2>/dev/null || true
    rm -rf "$venv"
    _pl_venv_args=()
    [ "$_pl_system_site" = 1 ] && _pl_venv_args+=(--system-site-packages)
    _pl_say "1/4 virtual environment (${_pl_venv_args[*]:-isolated}) from $("$_pl_python" -V 2>&1)"
    "$_pl_python" -m venv "${_pl_venv_args[@]}" "$venv"
    # pip is held below 24.1 only because Pixyz 0.3.3's wheel metadata is malformed for newer pips.
    _pl_say "2/4 pip, setuptools, wheel"
    "$venv/bin/pip" install --quiet --upgrade "pip<24.1" "setuptools>=77" wheel
    # Dependencies only; the project itself is installed editable below on every run (cheap).
    # pip's own output shows the progress of the long step (torch).
    _pl_say "3/4 torch, torchvision and the other dependencies (the long step)"
    if ! "$venv/bin/pip" install --progress-bar off "$root[test,docs,examples,tensorboard,lightning,wandb]" 2>&1 |
            { grep -v '^Requirement already satisfied' || true; }; then
        _pl_fail "pip could not install the dependencies (its output is above); the next run starts again"
    fi
    "$venv/bin/pip" uninstall --quiet -y pixyz_like
    # Pixyz 0.3.3 is the parity oracle for tests and benchmarks, never a runtime dependency. Its wheel's
    # metadata is malformed for current pip, so it goes in without dependency resolution (its
    # dependencies networkx and scipy are in the test extra).
    _pl_say "4/4 Pixyz 0.3.3 (the tests' oracle)"
    "$venv/bin/pip" install --quiet --no-deps pixyz==0.3.3
    touch "$venv/.complete"
    _pl_say "ready: $venv ($(du -sh "$venv" 2>/dev/null | cut -f1))"
fi
"$venv/bin/pip" install --quiet --no-deps --no-build-isolation -e "$root" >/dev/null
# shellcheck disable=SC1091
source "$venv/bin/activate"
unset -f _pl_say _pl_fail
