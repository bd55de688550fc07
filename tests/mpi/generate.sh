#!/usr/bin/env bash
# pipetrain generate: text continues prompts on any number of stages, the
# same bytes for the same seed whatever the partition it runs on.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
run 2 train "$CONFIG" --set train.steps=20 --set checkpoint.dir="$TMP/run" \
    --set log.metrics="$TMP/lm.csv" --set log.summary="$TMP/lm.json"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "training exited with $RC"; }
# a language model counts tokens everywhere: progress lines, the metrics CSV,
# the summary and the closing throughput line
grep -Eq '^step +20/20 .* [0-9]+ tokens/s ' "$TMP/out" || { cat "$TMP/out"; fail "progress lines do not report tokens/s"; }
! grep -q "samples/s" "$TMP/out" || { cat "$TMP/out"; fail "a language model reports samples/s"; }
grep -q "^throughput: [0-9]* tokens/s$" "$TMP/out" || { cat "$TMP/out"; fail "no closing tokens/s"; }
[ "$(head -1 "$TMP/lm.csv")" = "step,loss,lr,grad_norm,tokens_per_s,elapsed_s" ] || fail "metrics header: $(head -1 "$TMP/lm.csv")"
grep -q '"throughput_tokens_per_s"' "$TMP/lm.json" || fail "the summary lacks throughput_tokens_per_s"
# the closing time: one figure, never 0.0 for a short run, no duplicate
t=$(sed -n 's/^time: //p' "$TMP/out")
echo "$t" | grep -Eq '^([0-9.]+ (ms|s)|[0-9]+m[0-9]{2}s \([0-9.]+ s\)|[0-9]+h[0-9]{2}m \([0-9.]+ s\))$' || fail "time line: '$t'"
! echo "$t" | grep -Eq '^0(\.0+)? ' || fail "time line says zero: '$t'"
text() { sed -n '/^--- prompt 1/,/^---$/p' "$TMP/out"; }
gen() { # gen NP ARGS...
  local np=$1; shift
  run $np generate "$TMP/run" --prompt "The " --prompt "Q: " --tokens 48 "$@"
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "generate on $np stages exited with $RC"; }
}
gen 1; ref=$(text)
grep -q "^generating with $TMP/run (step 20)$" "$TMP/out" || { cat "$TMP/out"; fail "generate does not say the checkpoint's step 20"; }
[ -n "$ref" ] || { cat "$TMP/out"; fail "no generated text"; }
grep -q "^The " "$TMP/out" || fail "prompt 1 is not continued"
grep -q "^Q: " "$TMP/out" || fail "prompt 2 is not continued"
for np in 2 3 4; do
  gen $np
  [ "$(text)" = "$ref" ] || { echo "$ref"; text; fail "generation on $np stages differs from 1 stage"; }
done
echo "same text on 1, 2, 3 and 4 stages"
# a checkpoint of an interleaved run generates the same on contiguous stages
# (the default) and on interleaved chunks
run 2 train "$CONFIG" --set train.steps=20 --set checkpoint.dir="$TMP/run-il" \
    --set pipeline.schedule=interleaved --set pipeline.chunks=2
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "interleaved training exited with $RC"; }
run 2 generate "$TMP/run-il" --prompt "The " --prompt "Q: " --tokens 48
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "generate from an interleaved checkpoint exited with $RC"; }
[ "$(text)" = "$ref" ] || { echo "$ref"; text; fail "generation from the interleaved run's checkpoint differs"; }
gen 2 --set pipeline.schedule=interleaved --set pipeline.chunks=2
[ "$(text)" = "$ref" ] || { echo "$ref"; text; fail "generation on 2 ranks × 2 chunks differs"; }
echo "same text from an interleaved checkpoint and on interleaved chunks"
gen 2 --seed 7
[ "$(text)" != "$ref" ] || fail "another seed gave the same text"
gen 2 --temperature 0; greedy=$(text)
gen 3 --temperature 0
[ "$(text)" = "$greedy" ] || fail "greedy generation differs between 2 and 3 stages"
echo "seeds and greedy decoding behave"
# --init: a new run from step 0 that says whose weights it starts from
run 2 train "$CONFIG" --init "$TMP/run" --set train.steps=3
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "--init exited with $RC"; }
grep -q "^initialised from $TMP/run: step 0, with the weights of step 20$" "$TMP/out" || { cat "$TMP/out"; fail "--init does not say the checkpoint's step"; }
# a classifier checkpoint cannot generate: one clear error
run 1 train "$(dirname "$0")/../configs/tiny_mlp.ini" --set train.steps=4 --set checkpoint.dir="$TMP/mlp"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "training the classifier exited with $RC"; }
run 2 generate "$TMP/mlp" --prompt "x"
[ $RC -ne 0 ] || fail "generate accepted a classifier checkpoint"
grep -q "generate needs a language model" "$TMP/out" || { cat "$TMP/out"; fail "unclear error for a classifier"; }
run 2 generate "$TMP/run"
[ $RC -ne 0 ] && grep -q -- "--prompt" "$TMP/out" || { cat "$TMP/out"; fail "no error without --prompt"; }
echo "bad uses refused"
