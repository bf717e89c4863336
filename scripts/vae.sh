#!/usr/bin/env bash
# Install everything (cached outside the clone) and run the main job: the quick-start VAE on MNIST.
# Extra arguments go to examples/vae.py (e.g. --epochs 1).
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/env.sh
python examples/vae.py "$@"
