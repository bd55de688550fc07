#!/usr/bin/env bash
# The central test: the same config trained on P = 1, 2, 3 and 4 stages, with
# GPipe, 1F1B, ZB-H1 (the B/W split) and interleaved 1F1B (2 and 3 model
# chunks per rank), gives the same parameter fingerprint bit for bit. On a
# mismatch it names the first tensor that differs.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1; shift
ref="" ; refname="" ; runs=0

# agree NAME P ARGS... : trains on P ranks and checks the fingerprint against
# the first run's (the reference)
agree() {
  local name=$1 P=$2; shift 2
  run "$P" train "$CONFIG" "$@" --tensor-hashes "$TMP/h-$name"
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "$name exited with $RC"; }
  fp=$(fingerprint_of "$TMP/out")
  [ -n "$fp" ] || { cat "$TMP/out"; fail "$name printed no fingerprint"; }
  echo "$name: $fp"
  runs=$((runs + 1))
  if [ -z "$ref" ]; then ref=$fp; refname="h-$name"; return; fi
  if [ "$fp" != "$ref" ]; then
    first=$(diff "$TMP/$refname" "$TMP/h-$name" | sed -n 's/^< \([^ ]*\) .*/\1/p' | head -1)
    fail "$name fingerprint $fp differs from ${refname#h-}'s $ref; first tensor that differs: ${first:-?}"
  fi
}

for sched in gpipe 1f1b zbh1; do
  for P in 1 2 3 4; do agree "P=$P-$sched" $P --set pipeline.schedule=$sched "$@"; done
done
# interleaved: rank r holds virtual stages r, r+P, ...; M = 4 must be a multiple of P
for pv in 1:2 2:2 2:3; do
  P=${pv%:*} v=${pv#*:}
  agree "P=$P-interleaved-v=$v" $P --set pipeline.schedule=interleaved --set pipeline.chunks=$v "$@"
done
echo "all $runs runs agree: $ref"

# P = 3 needs M divisible by 3: the same comparison on a batch of 6 micro-batches
ref="" ; refname=""
six=(--set pipeline.micro_batches=6 --set train.batch_size=48)
agree "M=6-P=1-1f1b" 1 "${six[@]}" "$@"
agree "M=6-P=3-interleaved-v=2" 3 --set pipeline.schedule=interleaved --set pipeline.chunks=2 "${six[@]}" "$@"
echo "interleaved on 3 ranks agrees with 1 rank: $ref"
