#!/usr/bin/env bash
# Traces, the timeline picture, the simulator and the planner: a trace of a 2-stage run
# holds, for every rank and traced step, exactly the ops of the lowered lists
# (as `pipetrain simulate --lists` prints them for the same layout), in
# order, with one flow arrow per transfer; the timeline tool draws it beside a
# simulated one; the simulator predicts and refuses what cannot run.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
command -v jq >/dev/null || fail "jq is needed (scripts/setup.sh installs it)"
TIMELINE="$(dirname "$0")/../../tools/pipetrain-timeline"

# check_trace NP TRACE ARGS...: the trace's ops of steps 2 and 3 against the lists
check_trace() {
  local np=$1 trace=$2; shift 2
  "$PIPETRAIN" simulate "$CONFIG" --ranks "$np" "$@" --lists >"$TMP/sim.out" 2>&1 ||
    { cat "$TMP/sim.out"; fail "simulate --lists exited with $?"; }
  local P
  P=$(jq '.otherData.stages' "$trace")
  for r in $(seq 0 $((P - 1))); do
    sed -n "s/^r$r [0-9]* \([a-z_]*\) \(mb\|bucket\)=\([0-9]*\) chunk=\([0-9]*\) slot=.*/\1 \3 \4/p" "$TMP/sim.out" \
      >"$TMP/want-$r"
    [ -s "$TMP/want-$r" ] || { cat "$TMP/sim.out"; fail "simulate --lists printed no ops for rank $r"; }
    for step in 2 3; do
      jq -r --argjson r "$r" --argjson s "$step" '[ .traceEvents[] | select(.ph == "X" and .pid == $r and .args.step == $s
          and .cat != "data" and .cat != "step" and .cat != "checkpoint") ] | sort_by(.ts)[]
          | "\(.name) \(.args.micro_batch // .args.bucket) \(.args.chunk)"' "$trace" >"$TMP/got-$r-$step"
      diff "$TMP/want-$r" "$TMP/got-$r-$step" >"$TMP/diff" ||
        { head -20 "$TMP/diff"; fail "rank $r, step $step: the trace's ops differ from the lowered list ($*)"; }
    done
  done
}

run 2 train "$CONFIG" --set log.trace="$TMP/trace.json" --set log.trace_steps=2-3
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "training with log.trace exited with $RC"; }
grep -q "^trace: $TMP/trace.json (" "$TMP/out" || { cat "$TMP/out"; fail "no trace line"; }
jq -e . "$TMP/trace.json" >/dev/null || fail "the trace is not JSON"
[ "$(jq '[.traceEvents[] | select(.ph == "M" and .name == "process_name")] | length' "$TMP/trace.json")" = 2 ] ||
  fail "expected one named process per rank"
jq -e '[.traceEvents[] | select(.ph == "M" and .name == "process_name") | .args.name]
       | .[0] | startswith("stage 0 / replica 0 (")' "$TMP/trace.json" >/dev/null || fail "process names"
check_trace 2 "$TMP/trace.json"
M=$(sed -n 's/^micro_batches *= *//p' "$CONFIG")
flows=$(jq '[.traceEvents[] | select(.ph == "s")] | length' "$TMP/trace.json")
[ "$flows" -eq $((2 * 2 * M)) ] || fail "expected $((4 * M)) flow arrows (M = $M, 2 directions, 2 steps), got $flows"
jq -e '([.traceEvents[] | select(.ph == "s") | .id] | sort) == ([.traceEvents[] | select(.ph == "f") | .id] | sort)' \
  "$TMP/trace.json" >/dev/null || fail "a flow arrow has no end"
jq -e '[.traceEvents[] | select(.ph == "X" and .name == "optimizer")] | length == 4' "$TMP/trace.json" >/dev/null ||
  fail "expected an optimizer slice per rank and traced step"
echo "trace: every rank's ops of steps 2-3 are its lowered list, $flows flow arrows"

# ZB-H1 on 2 stages, interleaved chunks, and data parallelism (with the gradient all-reduce ops)
run 2 train "$CONFIG" --set log.trace="$TMP/zb.json" --set pipeline.schedule=zbh1
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "zbh1 with log.trace exited with $RC"; }
check_trace 2 "$TMP/zb.json" --set pipeline.schedule=zbh1
run 2 train "$CONFIG" --set log.trace="$TMP/il.json" --set pipeline.schedule=interleaved --set pipeline.chunks=2
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "interleaved with log.trace exited with $RC"; }
check_trace 2 "$TMP/il.json" --set pipeline.schedule=interleaved --set pipeline.chunks=2
run 2 train "$CONFIG" --set log.trace="$TMP/dp.json" --set pipeline.data_parallel=2
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "data parallel with log.trace exited with $RC"; }
check_trace 2 "$TMP/dp.json" --set pipeline.data_parallel=2
jq -e '[.traceEvents[] | select(.name == "reduce_grad_wait" and .pid == 1)] | length == 2' "$TMP/dp.json" >/dev/null ||
  fail "the data-parallel trace lacks the gradient all-reduce of replica 1"
echo "trace: zbh1, interleaved and 2 replicas match their lists"

# the simulator: predictions, a simulated trace, refusals
"$PIPETRAIN" simulate "$CONFIG" --ranks 2 --trace "$TMP/sim.json" >"$TMP/sim.out" 2>&1 ||
  { cat "$TMP/sim.out"; fail "simulate exited with $?"; }
grep -Eq '^predicted step time: [0-9.]+ s$' "$TMP/sim.out" || { cat "$TMP/sim.out"; fail "no predicted step time"; }
grep -Eq '^predicted throughput: [0-9]+ (samples|tokens)/s$' "$TMP/sim.out" || { cat "$TMP/sim.out"; fail "no predicted throughput"; }
set +e
"$PIPETRAIN" simulate "$CONFIG" --ranks 3 --set pipeline.data_parallel=2 >"$TMP/bad.out" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "not a multiple of pipeline.data_parallel = 2" "$TMP/bad.out" ||
  { cat "$TMP/bad.out"; fail "simulate on 3 ranks with 2 replicas: rc $rc"; }
"$PIPETRAIN" simulate --help | grep -q "^usage: pipetrain simulate CONFIG --ranks N" || fail "simulate --help"
echo "simulate: $(grep '^predicted' "$TMP/sim.out" | tr '\n' ' ')"

# the planner: a ranked table and the command of the best; what cannot fit is refused
"$PIPETRAIN" plan "$CONFIG" --ranks 1,2 --cores 2 --micro-batches 2,4 >"$TMP/plan.out" 2>&1 ||
  { cat "$TMP/plan.out"; fail "plan exited with $?"; }
grep -Eq '^plan: [0-9]+ layouts that fit' "$TMP/plan.out" || { cat "$TMP/plan.out"; fail "plan: no summary line"; }
grep -Eq '^ +1 +[12] +[12] +[12] +[24] ' "$TMP/plan.out" || { cat "$TMP/plan.out"; fail "plan: no ranked layout"; }
best=$(sed -n 's/^best: //p' "$TMP/plan.out")
[[ $best == "mpirun -np "[12]*" build/pipetrain train $CONFIG --set pipeline.data_parallel="* ]] ||
  { cat "$TMP/plan.out"; fail "plan: no best command line"; }
set +e
"$PIPETRAIN" plan "$CONFIG" --ranks 2 --memory-per-rank 1K >"$TMP/bad.out" 2>&1; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "plan: none of the .* layouts tried fits" "$TMP/bad.out" ||
  { cat "$TMP/bad.out"; fail "plan with 1 KiB per rank: rc $rc"; }
set +e
"$PIPETRAIN" plan "$CONFIG" --ranks two >"$TMP/bad.out" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "\-\-ranks 'two'" "$TMP/bad.out" || { cat "$TMP/bad.out"; fail "plan --ranks two: rc $rc"; }
echo "plan: $(sed -n 2,3p "$TMP/plan.out" | tail -1 | tr -s ' ')"

# the timeline: measured, and simulated below it
"$TIMELINE" "$TMP/trace.json" "$TMP/t.png" >/dev/null || fail "pipetrain-timeline exited with $?"
"$TIMELINE" "$TMP/trace.json" "$TMP/both.png" --below "$TMP/sim.json" --steps 2 >/dev/null ||
  fail "pipetrain-timeline --below exited with $?"
for f in t both; do
  [ "$(head -c 8 "$TMP/$f.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f.png is not a PNG"
done
set +e
"$TIMELINE" "$CONFIG" "$TMP/x.png" >"$TMP/bad.out" 2>&1; rc=$?
set -e
[ $rc -ne 0 ] && grep -q "is not a Chrome trace" "$TMP/bad.out" || { cat "$TMP/bad.out"; fail "timeline accepted a non-trace"; }
echo "timeline: drawn, alone and above a simulated step"
