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
check 2 "--resume auto resumes from checkpoint.dir, which is not set" train "$CONFIG" --resume auto
check 2 "--resume auto is for train" eval "$CONFIG" --resume auto --set checkpoint.dir="$TMP/auto"
mkdir -p "$TMP/auto" && echo junk >"$TMP/auto/latest"
check 2 "--resume auto: $TMP/auto/latest holds 'junk'" train "$CONFIG" --resume auto --set checkpoint.dir="$TMP/auto"
# interleaved layouts that cannot work name the numbers and what to use instead
IL=(--set pipeline.schedule=interleaved --set pipeline.chunks=2)
check 3 "M = 4 micro-batches is not a multiple of the 3 ranks.*use M = 3 or 6" train "$CONFIG" "${IL[@]}"
check 4 "pipeline.chunks = 2 on 4 ranks makes 8 virtual stages but the model has 7 layers.*use pipeline.chunks = 1 (no interleaving) or fewer ranks" train "$CONFIG" "${IL[@]}"
check 2 "pipeline.chunks = 4 on 2 ranks makes 8 virtual stages but the model has 7 layers.*use pipeline.chunks = 3 or less" train "$CONFIG" "${IL[@]}" --set pipeline.chunks=4
check 2 "pipeline.chunks = 2: only the interleaved schedule" train "$CONFIG" --set pipeline.chunks=2
check 2 "the last layer has 10 outputs\|3 classes" train "$CONFIG" --set data.dataset=synthetic --set data.synthetic_classes=3
GPT="$(dirname "$0")/../configs/tiny_gpt.ini"
check 2 "vocabulary must hold the 256 token values" train "$GPT" \
    --set "model.layers=embed 128 32, posembed, block 2 causal, layernorm, lmhead 256" --set model.tie_embeddings=false
check 2 "heads\|divide" train "$GPT" --set "model.layers=embed 256 30, posembed, block 4 causal, layernorm, lmhead 256"
check 2 "a language model ends with 'lmhead V'" train "$GPT" --set "model.layers=embed 256 32, posembed, block 2 causal, layernorm, lmhead 256, linear 256"
check 2 "model.tie_embeddings" train "$GPT" --set "model.layers=embed 256 32, posembed, block 2 causal, layernorm, meanpool, linear 256"
echo "only a few bytes" > "$TMP/small.txt"
check 2 "too few for contexts of data.context = 16" train "$GPT" --set data.path="$TMP/small.txt"
# Paths that are not regular files are refused at start-up, before any read:
# a FIFO would block the open forever, a device would be read without end.
# (run's timeout turns a hang into a failure.)
mkfifo "$TMP/fifo"
mkdir "$TMP/fm" "$TMP/corpus"
mkfifo "$TMP/fm/train-images-idx3-ubyte.gz"
head -c 4096 "$(dirname "$0")/../configs/tiny_gpt.ini" > "$TMP/corpus/a.txt"
cat "$(dirname "$0")"/*.sh >> "$TMP/corpus/a.txt"
mkfifo "$TMP/corpus/pipe"
check 2 "data.path $TMP/fifo is a FIFO, not a directory" train "$CONFIG" --set data.dataset=fashion-mnist --set data.path="$TMP/fifo"
check 2 "IDX images file $TMP/fm/train-images-idx3-ubyte.gz is a FIFO, not a regular file" train "$CONFIG" --set data.dataset=fashion-mnist --set data.path="$TMP/fm"
check 2 "data.path $TMP/fifo is a FIFO, not a regular file" train "$GPT" --set data.path="$TMP/fifo"
check 2 "data.path /dev/zero is a character device, not a regular file" train "$GPT" --set data.path=/dev/zero
check 2 "data.path $TMP/corpus: $TMP/corpus/pipe is a FIFO, not a regular file" train "$GPT" --set data.path="$TMP/corpus"
check 2 "config file $TMP/fifo is a FIFO, not a regular file" train "$TMP/fifo"
check 2 "config file $TMP/corpus is a directory, not a regular file" train "$TMP/corpus"
rm "$TMP/corpus/pipe"
run 2 train "$GPT" --set data.path="$TMP/corpus" --set train.steps=3
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "a directory of regular text files was refused"; }
echo "ok: paths that are not regular files"
