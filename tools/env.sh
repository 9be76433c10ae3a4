# Sourced by the tools/*.sh scripts: repository root as working directory, caches outside the
# clone (fetched models, data, cargo target dir), real model and data fetched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export BERTLITE_CACHE=${BERTLITE_CACHE:-$HOME/.cache/bertlite}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BERTLITE_CACHE/target}
tools/setup.sh
