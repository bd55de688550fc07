#!/usr/bin/env bash
# The central test: the same config trained on P = 1, 2, 3 and 4 stages, with
# GPipe, 1F1B and ZB-H1 (the B/W split), gives the same parameter fingerprint bit for bit. On a
# mismatch it names the first tensor that differs.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1; shift
ref="" ; refname=""
for sched in gpipe 1f1b zbh1; do
  for P in 1 2 3 4; do
    run $P train "$CONFIG" --set pipeline.schedule=$sched "$@" --tensor-hashes "$TMP/h-$sched-$P"
    [ $RC -eq 0 ] || { cat "$TMP/out"; fail "P=$P $sched exited with $RC"; }
    fp=$(fingerprint_of "$TMP/out")
    [ -n "$fp" ] || { cat "$TMP/out"; fail "P=$P $sched printed no fingerprint"; }
    echo "P=$P $sched: $fp"
    if [ -z "$ref" ]; then ref=$fp; refname="h-$sched-$P"; continue; fi
    if [ "$fp" != "$ref" ]; then
      first=$(diff <(cat "$TMP/$refname") <(cat "$TMP/h-$sched-$P") | sed -n 's/^< \([^ ]*\) .*/\1/p' | head -1)
      fail "P=$P $sched fingerprint $fp differs from $refname's $ref; first tensor that differs: ${first:-?}"
    fi
  done
done
echo "all 8 runs agree: $ref"
