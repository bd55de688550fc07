#!/usr/bin/env bash
# Checkpoints: exact resume on the same and on a different number of stages,
# crash consistency while a shard is being written, and damaged or wrong
# checkpoints refused with one clear error, nothing overwritten.
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

# damaged or wrong checkpoints: one clear error, nothing overwritten
good="$TMP/run-4-2/step-$(printf %06d $N)"
damage() { # damage NAME: copies the good checkpoint to $TMP/bad-NAME
  rm -rf "$TMP/bad-$1"; cp -r "$good" "$TMP/bad-$1"; echo "$TMP/bad-$1"
}
refused() { # refused WHAT DIR TEXT [ARGS...]: resuming DIR fails naming TEXT; DIR unchanged
  local what=$1 d=$2 want=$3; shift 3
  local before; before=$(cd "$d" && ls -l --time-style=+%s.%N && md5sum ./*)
  run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$d" --resume "$d" "$@"
  [ $RC -ne 0 ] || fail "$what: accepted"
  grep -q -- "$want" "$TMP/out" || { cat "$TMP/out"; fail "$what: the error lacks '$want'"; }
  [ "$(grep -c '^pipetrain: ' "$TMP/out")" -eq 1 ] || { cat "$TMP/out"; fail "$what: not exactly one error line"; }
  [ "$before" = "$(cd "$d" && ls -l --time-style=+%s.%N && md5sum ./*)" ] || fail "$what: the checkpoint was modified"
  echo "$what: $(grep -m1 '^pipetrain: ' "$TMP/out")"
}

d=$(damage bitflip)
# flip one bit in the middle of layer 0's weights (contiguous dataset: h5dump gives its offset)
off=$(h5dump -p -d /layers/0/w "$d/stage-00.h5" | sed -n 's/.*OFFSET \([0-9]*\).*/\1/p' | head -1)
[ -n "$off" ] || fail "could not find the offset of /layers/0/w"
pos=$((off + 1000))
byte=$(od -An -tu1 -j $pos -N1 "$d/stage-00.h5" | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 16)))" | dd of="$d/stage-00.h5" bs=1 seek=$pos conv=notrunc status=none
refused "flipped bit" "$d" "stage-00.h5.*layers.0.w.*checksum"

d=$(damage missing); rm "$d/stage-01.h5"
refused "missing shard" "$d" "stage-01.h5.*missing"

d=$(damage truncated); truncate -s $(( $(stat -c %s "$d/stage-01.h5") / 2 )) "$d/stage-01.h5"
refused "truncated shard" "$d" "stage-01.h5"

d=$(damage model)
refused "different model" "$d" "layers.0.w.*\[64, 784\].*\[32, 784\]" \
    --set "model.layers=linear 32, relu, dropout 0.1, linear 48, layernorm, gelu, linear 10"
