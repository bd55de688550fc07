#!/usr/bin/env bash
# A rank that fails mid-step ends the whole job within seconds with a message
# naming the rank and what it was doing; a non-finite gradient stops training
# naming the step, stage and layer, or is skipped when the config says so.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
expect() { grep -q -- "$1" "$TMP/out" || { cat "$TMP/out"; fail "$2: output lacks '$1'"; }; }

# an error on rank 1 in the middle of step 3
start=$(date +%s)
run 3 train "$CONFIG" --set fault.kind=error --set fault.rank=1 --set fault.step=2
took=$(( $(date +%s) - start ))
[ $RC -ne 0 ] || fail "error fault: exit code 0"
expect "rank 1 (stage 1)" "error fault"
expect "injected fault" "error fault"
expect "micro-batch" "error fault"
[ $took -lt 60 ] || fail "error fault: the job took ${took}s to end"
echo "error fault: ended in ${took}s with: $(grep -m1 'injected' "$TMP/out")"

# rank 2 dies on a signal in the middle of step 2
start=$(date +%s)
run 3 train "$CONFIG" --set fault.kind=crash --set fault.rank=2 --set fault.step=1
took=$(( $(date +%s) - start ))
[ $RC -ne 0 ] || fail "crash fault: exit code 0"
expect "rank 2 (stage 2): died on signal" "crash fault"
expect "at step 2" "crash fault"
[ $took -lt 60 ] || fail "crash fault: the job took ${took}s to end"
echo "crash fault: ended in ${took}s with: $(grep -m1 'died on signal' "$TMP/out")"

# a NaN in layer 3's gradient at step 4: stop, naming step, layer and stage
run 2 train "$CONFIG" --set fault.kind=nan --set fault.rank=0 --set fault.step=3 --set fault.layer=3
[ $RC -eq 3 ] || { cat "$TMP/out"; fail "nan/stop: expected exit code 3, got $RC"; }
expect "step 4: non-finite gradient of layer 3 (linear) on stage" "nan/stop"
echo "nan stop: $(grep -m1 'non-finite' "$TMP/out")"

# the same with train.nonfinite = skip: the step is skipped, the run finishes
run 2 train "$CONFIG" --set fault.kind=nan --set fault.rank=0 --set fault.step=3 --set fault.layer=3 --set train.nonfinite=skip
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "nan/skip: exit code $RC"; }
expect "step 4: non-finite gradient of layer 3 (linear) on stage .*: step skipped" "nan/skip"
expect "parameter fingerprint: " "nan/skip"
echo "nan skip: finished"
