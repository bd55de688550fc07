# Shared helpers of the multi-rank tests. PIPETRAIN and MPIEXEC come from ctest.
set -u
: "${PIPETRAIN:?}" "${MPIEXEC:?}"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# run NP ARGS... : runs pipetrain on NP ranks, output in $TMP/out, exit code in $RC
run() {
  local np=$1; shift
  set +e
  timeout 120 "$MPIEXEC" --oversubscribe -np "$np" "$PIPETRAIN" "$@" >"$TMP/out" 2>&1
  RC=$?
  set -e
}

fingerprint_of() { sed -n 's/^parameter fingerprint: //p' "$1"; }
