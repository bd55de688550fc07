#!/usr/bin/env bash
# Damaged or wrong checkpoints are refused with one clear error naming the
# shard file and the tensor, and nothing is overwritten.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
N=6
base=(--set train.steps=$((2 * N)) --set checkpoint.keep=0)
run 4 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$TMP/run" --stop-after $N
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "making the checkpoint exited with $RC"; }
good="$TMP/run/step-$(printf %06d $N)"
# damaged or wrong checkpoints: one clear error, nothing overwritten
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
other=(--set "model.layers=linear 32, relu, dropout 0.1, linear 48, layernorm, gelu, linear 10")
# --resume refuses the changed key itself; --init (weights only) checks every tensor's shape
refused "different model" "$d" "cannot resume checkpoint $d with model.layers = linear 32" "${other[@]}"
before=$(cd "$d" && md5sum ./*)
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$TMP/fresh" --init "$d" "${other[@]}"
[ $RC -ne 0 ] || fail "--init of a different model: accepted"
grep -q "layers.0.w.*\[64, 784\].*\[32, 784\]" "$TMP/out" || { cat "$TMP/out"; fail "--init of a different model: no shapes"; }
[ "$(grep -c '^pipetrain: ' "$TMP/out")" -eq 1 ] || { cat "$TMP/out"; fail "--init of a different model: not one error line"; }
[ "$before" = "$(cd "$d" && md5sum ./*)" ] || fail "--init of a different model modified the checkpoint"
echo "different model (--init): $(grep -m1 '^pipetrain: ' "$TMP/out")"
