#!/usr/bin/env bash
# bench/prepare_device.sh: fills .device/ (ignored by git) with what bench/device_check.sh
# needs on the GPU machine and cannot install there: the doctest header.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device/include/doctest
cp /usr/include/doctest/doctest.h .device/include/doctest/
du -sh .device
