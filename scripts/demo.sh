#!/usr/bin/env bash
# scripts/demo.sh: installs dependencies, builds, and runs the main job.
# Until the models land that is mmdemo (the engine learning a picture), writing demo.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh build
./build/mmdemo --out demo.png "$@"
