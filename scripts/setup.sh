#!/usr/bin/env bash
# Installs the Debian packages pipetrain needs (only those missing) and
# builds it. Usage: scripts/setup.sh [--sanitize]   (sourced by the other
# scripts; safe to run again). Build trees: build/ (release), build-asan/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(build-essential cmake pkg-config git
          libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev hdf5-tools zlib1g-dev
          libcriterion-dev libinih-dev libcjson-dev librandom123-dev libxxhash-dev libdeflate-dev
          dataset-fashion-mnist gnuplot-nox fortunes jq python3-h5py perl)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "pipetrain: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "pipetrain: run as root or install sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

jobs=$(nproc 2>/dev/null || echo 2)
echo "pipetrain: building (release) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" >/dev/null
if [ "${1:-}" = "--sanitize" ]; then
  echo "pipetrain: building (ASan + UBSan) in build-asan/"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPT_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs" >/dev/null
fi
