#!/usr/bin/env bash
# scripts/demo.sh ["PROMPT"]: installs dependencies, builds, and runs the main job: mmgen on the
# default models (mm-mini, models/mini/), writing demo.png. Extra arguments go to mmgen.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh build
prompt=${1:-red apple}
shift || true
./build/mmgen "$prompt" --out demo.png "$@"
