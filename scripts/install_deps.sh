#!/usr/bin/env bash
# scripts/install_deps.sh: installs what mm needs to build and test, from Debian 12's packages.
# Skips apt entirely when everything is already there. Needs root (or sudo).
set -euo pipefail
packages=(g++ make cmake pkg-config doctest-dev libstb-dev nlohmann-json3-dev libyaml-cpp-dev
          libpcre2-dev zlib1g-dev libminizip-dev libicu-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
