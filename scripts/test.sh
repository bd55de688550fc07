#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds a release tree and a
# sanitizer tree, runs the unit tests under ASan + UBSan and the multi-rank
# and command-line tests on the release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --sanitize

if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
# Leaks inside Open MPI and OpenBLAS's thread pool are not ours to report.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

status=0
echo "== unit tests (ASan + UBSan) =="
ctest --test-dir build-asan -L unit --output-on-failure -j2 || status=1
if ctest --test-dir build -N -L mpi | grep -q "Total Tests: [1-9]"; then
  echo "== multi-rank and command-line tests (release) =="
  ctest --test-dir build -L mpi --output-on-failure || status=1
fi
exit $status
