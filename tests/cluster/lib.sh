# shellcheck shell=bash
# Shared helpers of the cluster tests: the multi-rank helpers (run, fail,
# fingerprint_of, $TMP) and the hosts of hosts.sh, removed again on any exit.
# Skips the test (exit 77) where network namespaces cannot be made.
# shellcheck source=tests/mpi/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../mpi/lib.sh"
# shellcheck source=tests/cluster/hosts.sh
. "$(dirname "${BASH_SOURCE[0]}")/hosts.sh"
trap 'hosts_down; rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if ! why=$(hosts_available 2>&1); then
  echo "SKIPPED: ${why#hosts: }"
  exit 77
fi
export HOSTS_TIMEOUT=120

# hrun K NP [MPIRUN-OPTIONS...] -- ARGS... : runs pipetrain on NP ranks over
# hosts 1..K (one slot each, oversubscribed beyond), output in $TMP/out, exit
# code in $RC
hrun() {
  local k=$1 np=$2 opts=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  set +e
  hosts_mpirun --host "$(hosts_names "$k")" -np "$np" -x OPENBLAS_NUM_THREADS=1 "${opts[@]}" \
    "$PIPETRAIN" "$@" >"$TMP/out" 2>&1
  # shellcheck disable=SC2034 # read by the tests
  RC=$?
  set -e
}

# on_hosts K: checks in the output of a run with --mca btl_base_verbose 30 that
# ranks ran on each of hosts 1..K and that TCP connections reached hosts 2..K
on_hosts() {
  local i
  for ((i = 1; i <= $1; i++)); do
    grep -q "^\[$(hosts_name "$i"):[0-9]*\] btl: tcp: " "$TMP/out" ||
      { cat "$TMP/out"; fail "no rank reported its TCP transport from $(hosts_name "$i")"; }
  done
  for ((i = 2; i <= $1; i++)); do
    grep -q "btl:tcp: now connected to $(hosts_addr "$i")," "$TMP/out" ||
      { cat "$TMP/out"; fail "no TCP connection to $(hosts_name "$i") ($(hosts_addr "$i"))"; }
  done
}
