#!/usr/bin/env bash
# Bad input gets one clear error naming the thing, before any work, and the
# job ends (never a hang).
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
check() { # check NP "expected text" ARGS...
  local np=$1 want=$2; shift 2
  run $np "$@"
  [ $RC -ne 0 ] || { cat "$TMP/out"; fail "'$*' was accepted"; }
  grep -q -- "$want" "$TMP/out" || { cat "$TMP/out"; fail "'$*': output lacks '$want'"; }
  [ "$(grep -c -- "$want" "$TMP/out")" -eq 1 ] || { cat "$TMP/out"; fail "'$*': the error is printed more than once"; }
  echo "ok: $want"
}
check 2 "train.stepz" train "$CONFIG" --set train.stepz=3
check 2 "train.lr" train "$CONFIG" --set train.lr=abc
check 2 "pipeline.schedule" train "$CONFIG" --set pipeline.schedule=zigzag
check 2 "divisible\|divide" train "$CONFIG" --set train.batch_size=66
check 2 "no-such-file.ini" train "$TMP/no-such-file.ini"
check 2 "dataset-fashion-mnist" train "$CONFIG" --set data.path=$TMP/nowhere
check 8 "8 stages but the model has 7 layers" train "$CONFIG"
check 3 "pipeline.partition" train "$CONFIG" --set pipeline.partition=0-2,4-6
check 2 "the last layer has 10 outputs\|3 classes" train "$CONFIG" --set data.dataset=synthetic --set data.synthetic_classes=3
