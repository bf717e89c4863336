#!/usr/bin/env bash
# Install everything (cached outside the clone) and run the main job: the quick-start VAE on MNIST.
# Extra arguments go to examples/vae.py (e.g. --epochs 1 --data-dir DIR). It runs from the directory
# you call it from, so relative paths (--data-dir, --out) are read from there, not from the clone.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../.ci/env.sh
source "$root/.ci/env.sh"
exec python "$root/examples/vae.py" "$@"
