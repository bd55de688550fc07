#!/usr/bin/env bash
# The main job: installs what is missing, builds, and trains the Fashion-MNIST
# MLP (examples/fashion_mlp.ini) on 2 pipeline stages. Extra arguments are
# passed to pipetrain (e.g. --set train.steps=500).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OPENBLAS_NUM_THREADS=1
np=2
extra=()
[ "$(nproc)" -lt "$np" ] && extra+=(--oversubscribe)
bind=(--bind-to core)
[ "$(nproc)" -lt "$np" ] && bind=(--bind-to none)
mkdir -p runs
start=$(date +%s)
mpirun -np $np "${bind[@]}" "${extra[@]}" build/pipetrain train examples/fashion_mlp.ini \
    --set log.metrics=runs/fashion_mlp.csv "$@"
echo "main job: $(( $(date +%s) - start )) s from start to finish"
tools/pipetrain-plot runs/fashion_mlp.csv runs/fashion_mlp.png || true
