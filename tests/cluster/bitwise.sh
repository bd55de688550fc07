#!/usr/bin/env bash
# Bitwise across hosts: with pipeline.reduction = invariant the fingerprint of
# one rank equals that of P = 2 on 2 hosts and P = 3 on 3 hosts (one rank per
# host, pipeline transfers over TCP between hosts) and of a 2 × 2 grid on 2
# hosts mapped by node (stage 0 and stage 1 of each replica on different hosts).
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
base=(--set train.steps=4 --set pipeline.reduction=invariant)

run 1 train "$CONFIG" "${base[@]}" --tensor-hashes "$TMP/h-ref"
[ "$RC" -eq 0 ] || { cat "$TMP/out"; fail "the reference on one rank exited with $RC"; }
ref=$(fingerprint_of "$TMP/out")
[ -n "$ref" ] || { cat "$TMP/out"; fail "the reference printed no fingerprint"; }
echo "1 rank (mpiexec): $ref"

hosts_up 3
# same NAME: the fingerprint of $TMP/out equals the reference
same() {
  [ "$RC" -eq 0 ] || { cat "$TMP/out"; fail "$1 exited with $RC"; }
  fp=$(fingerprint_of "$TMP/out")
  [ -n "$fp" ] || { cat "$TMP/out"; fail "$1 printed no fingerprint"; }
  if [ "$fp" != "$ref" ]; then
    first=$(diff "$TMP/h-ref" "$TMP/h-$1" | sed -n 's/^< \([^ ]*\) .*/\1/p' | head -1)
    fail "$1: fingerprint $fp differs from one rank's $ref; first tensor that differs: ${first:-?}"
  fi
  echo "$1: $fp"
}

hrun 2 2 --mca btl_base_verbose 30 -- train "$CONFIG" "${base[@]}" --tensor-hashes "$TMP/h-P=2-on-2-hosts"
same P=2-on-2-hosts
on_hosts 2
hrun 3 3 --mca btl_base_verbose 30 -- train "$CONFIG" "${base[@]}" --tensor-hashes "$TMP/h-P=3-on-3-hosts"
same P=3-on-3-hosts
on_hosts 3
hrun 2 4 --map-by node -- train "$CONFIG" "${base[@]}" --set pipeline.data_parallel=2 \
  --tensor-hashes "$TMP/h-P=2,D=2-on-2-hosts"
same P=2,D=2-on-2-hosts
for r in 0 1 2 3; do
  grep -q "^  rank $r: stage $((r % 2)) of replica $((r / 2)) on $(hosts_name $((r % 2 + 1)))$" "$TMP/out" ||
    { cat "$TMP/out"; fail "P=2,D=2: rank $r is not on $(hosts_name $((r % 2 + 1)))"; }
done
echo "all agree across hosts: $ref"
