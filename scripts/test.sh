#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds a release tree and a
# sanitizer tree, runs the unit tests under ASan + UBSan and the multi-rank
# and command-line tests on the release build, then the multi-host tests
# (hosts as network namespaces; skipped, with the reason, where they cannot be made)
# and train.sbatch on a single-node Slurm (skipped without slurm-wlm and munge).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --sanitize

if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OPENBLAS_NUM_THREADS=1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
echo "== unit tests (ASan + UBSan) =="
ctest --test-dir build-asan -L unit --output-on-failure -j2 2>&1 | tee -a "$log" || status=1
echo "== multi-rank and command-line tests (release) =="
ctest --test-dir build -L mpi --output-on-failure 2>&1 | tee -a "$log" || status=1
echo "== multi-host tests: hosts as network namespaces (release) =="
if why=$(bash tests/cluster/hosts.sh available 2>&1); then
  ctest --test-dir build -L cluster -E '^cluster_slurm$' --output-on-failure 2>&1 | tee -a "$log" || status=1
else
  echo "multi-host tests skipped: ${why#hosts: }"
fi
echo "== Slurm: examples/slurm/train.sbatch on a single-node Slurm (release) =="
ctest --test-dir build -R '^cluster_slurm$' --output-on-failure 2>&1 | tee -a "$log" || status=1

# One closing line over all the runs.
total=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\)/\1 \2/p' "$log" |
        awk '{f += $1; n += $2} END {print n - f, f}')
read -r passed failed <<<"$total"
echo "tests: $passed passed, $failed failed"
[ "$failed" = 0 ] || status=1
exit $status
