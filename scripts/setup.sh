#!/usr/bin/env bash
# Installs the Debian packages pipetrain needs (only those missing) and
# builds it. Usage: scripts/setup.sh [--sanitize]   (sourced by the other
# scripts; safe to run again). Build trees: build/ (release), build-asan/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(build-essential cmake pkg-config git
          libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-dev hdf5-tools zlib1g-dev
          libcriterion-dev libinih-dev libcjson-dev librandom123-dev libxxhash-dev libdeflate-dev
          dataset-fashion-mnist gnuplot-nox fortunes jq python3-h5py perl
          iproute2 util-linux slurm-wlm munge)
# slurm-wlm and munge: tests/cluster/slurm.sh starts its own daemons. Where
# /usr/sbin/policy-rc.d allows it (not in containers), installing munge also
# starts the system's munged; nothing here uses it.

bash scripts/install-packages.sh "${PACKAGES[@]}"

jobs=$(nproc 2>/dev/null || echo 2)
echo "pipetrain: building (release) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" >/dev/null
if [ "${1:-}" = "--sanitize" ]; then
  echo "pipetrain: building (ASan + UBSan) in build-asan/"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPT_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$jobs" >/dev/null
fi
