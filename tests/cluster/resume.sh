#!/usr/bin/env bash
# Checkpoints across hosts: saved on 2 hosts (P = 2) after step N and resumed on
# one host (plain mpiexec, 1 rank); saved on one host (2 ranks) and resumed on 2
# hosts; both end with the fingerprint of the run straight through.
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
N=3
base=(--set train.steps=$((2 * N)) --set checkpoint.keep=0)

run 1 train "$CONFIG" "${base[@]}"
[ "$RC" -eq 0 ] || { cat "$TMP/out"; fail "the reference run exited with $RC"; }
ref=$(fingerprint_of "$TMP/out")
echo "reference (2N straight, 1 rank): $ref"

hosts_up 2
ok() { # ok WHAT: the run succeeded and ended with the reference fingerprint
  [ "$RC" -eq 0 ] || { cat "$TMP/out"; fail "$1 exited with $RC"; }
  fp=$(fingerprint_of "$TMP/out")
  [ "$fp" = "$ref" ] || { cat "$TMP/out"; fail "$1: fingerprint $fp, expected $ref"; }
}
stopped() { # stopped WHAT DIR: the run succeeded and DIR's latest checkpoint is step N
  [ "$RC" -eq 0 ] || { cat "$TMP/out"; fail "$1 exited with $RC"; }
  [ "$(cat "$2/latest")" = "step-$(printf %06d $N)" ] || fail "$1: latest is '$(cat "$2/latest")'"
}

dir=$TMP/hosts-to-one
hrun 2 2 -- train "$CONFIG" "${base[@]}" --set checkpoint.dir="$dir" --stop-after $N
stopped "P=2 on 2 hosts --stop-after $N" "$dir"
run 1 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$dir" --resume "$dir"
ok "resume on 1 rank of a checkpoint saved on 2 hosts"
echo "saved on 2 hosts after step $N, resumed on 1 rank: $fp"

dir=$TMP/one-to-hosts
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$dir" --stop-after $N
stopped "P=2 on one host --stop-after $N" "$dir"
hrun 2 2 -- train "$CONFIG" "${base[@]}" --set checkpoint.dir="$dir" --resume "$dir"
ok "resume on 2 hosts of a checkpoint saved on one host"
echo "saved on one host (2 ranks) after step $N, resumed on 2 hosts: $fp"
