#!/usr/bin/env bash
# Checkpoints: exact resume on the same and on a different number of stages,
# and crash consistency while a shard is being written.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
N=6            # train 2N steps straight, or N then resume
base=(--set train.steps=$((2 * N)) --set checkpoint.keep=0)

# the reference: 2N steps straight
run 2 train "$CONFIG" "${base[@]}"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "reference run exited with $RC"; }
ref=$(fingerprint_of "$TMP/out")
echo "reference (2N straight): $ref"

# stop after N on P stages, resume on Q stages
for pq in "2 2" "4 1" "4 2" "4 3" "1 4" "3 4"; do
  set -- $pq
  dir="$TMP/run-$1-$2"
  run $1 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$dir" --stop-after $N
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "P=$1 --stop-after $N exited with $RC"; }
  [ "$(cat "$dir/latest")" = "step-$(printf %06d $N)" ] || fail "P=$1: latest is '$(cat "$dir/latest")'"
  run $2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$dir" --resume "$dir"
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "resume on Q=$2 exited with $RC"; }
  fp=$(fingerprint_of "$TMP/out")
  [ "$fp" = "$ref" ] || fail "saved on $1 stages, resumed on $2: fingerprint $fp, expected $ref"
  echo "saved on $1 stages after step $N, resumed on $2: $fp"
done

# the same across schedules: a checkpoint of interleaved chunks (a rank holds
# non-contiguous layers, one shard per virtual stage) resumes on contiguous
# stages and the other way round
layout() {
  case $1 in
    interleaved-*) echo "--set pipeline.schedule=interleaved --set pipeline.chunks=${1#interleaved-}" ;;
    *) echo "--set pipeline.schedule=$1" ;;
  esac
}
for spec in "2 interleaved-2 3 zbh1" "1 gpipe 2 interleaved-3" "1 interleaved-2 2 interleaved-2"; do
  set -- $spec
  dir="$TMP/sched-$1-$2-$3-$4"
  run $1 train "$CONFIG" "${base[@]}" $(layout $2) --set checkpoint.dir="$dir" --stop-after $N
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "P=$1 $2 --stop-after $N exited with $RC"; }
  run $3 train "$CONFIG" "${base[@]}" $(layout $4) --set checkpoint.dir="$dir" --resume "$dir"
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "resume of P=$1 $2 on P=$3 $4 exited with $RC"; }
  fp=$(fingerprint_of "$TMP/out")
  [ "$fp" = "$ref" ] || fail "saved on P=$1 $2, resumed on P=$3 $4: fingerprint $fp, expected $ref"
  echo "saved on P=$1 $2 after step $N, resumed on P=$3 $4: $fp"
done

# eval of the final checkpoint on another number of stages: the same parameters
run 3 eval "$CONFIG" "${base[@]}" --resume "$TMP/run-4-2"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "eval --resume exited with $RC"; }
[ "$(fingerprint_of "$TMP/out")" = "$ref" ] || fail "eval on 3 stages of the final checkpoint: another fingerprint"
echo "eval of the final checkpoint on 3 stages: $ref"

# crash consistency: rank 1 dies while writing its shard of the step-2N
# checkpoint; the step-N checkpoint stays whole and latest names it
dir="$TMP/crash"
run 3 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$dir" --set checkpoint.every=$N \
    --set fault.kind=checkpoint_crash --set fault.rank=1 --set fault.step=$((2 * N))
[ $RC -ne 0 ] || fail "the checkpoint crash did not end the job"
grep -q "dying while writing a shard" "$TMP/out" || { cat "$TMP/out"; fail "no crash message"; }
[ "$(cat "$dir/latest")" = "step-$(printf %06d $N)" ] || fail "after the crash latest is '$(cat "$dir/latest")'"
[ ! -e "$dir/step-$(printf %06d $((2 * N)))" ] || fail "a partial step-2N checkpoint was committed"
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$dir" --resume "$dir"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "resume after the crash exited with $RC"; }
[ "$(fingerprint_of "$TMP/out")" = "$ref" ] || fail "resume after the crash: fingerprint differs from $ref"
echo "crash while writing a shard: previous checkpoint intact, resume reaches $ref"

