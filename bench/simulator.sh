#!/usr/bin/env bash
# bench/simulator.sh — how well `pipetrain simulate` predicts a training step.
#
# For every layout of the plan it first asks `pipetrain simulate CONFIG
# --ranks N` (no MPI: the trainer's own lowered op lists for N = P·D ranks,
# timed with per-stage costs measured in one process on this machine) for
# the step time, then trains the same layout under mpirun (bench_run in
# bench/lib.sh, the same --set options) and compares the prediction with the
# measured step time of the run (the summary's measured_step_s: training
# seconds / steps). It also reports the run's end-of-run self-check, the
# summary's predicted_step_s: the same simulation fed with op times each rank
# measured at the end of that run.
#
# Layouts: the models mlp (examples/fashion_mlp.ini on synthetic 784-wide
# data), balanced (bench/configs/balanced.ini) and gpt (examples/gpt_bytes.ini);
# P = 1, 2, 4 stages × D = 1, 2 replicas with P·D ≤ 4 ranks; M = 4, 8, 16, 32
# micro-batches (gpt: 4, 8, 16); the GPipe, 1F1B, ZB-H1 and interleaved (2
# chunks) schedules where they fit; one BLAS thread per rank. Layouts with
# more ranks than cores are oversubscribed: reported, but kept out of the
# error figures. At the end it times `pipetrain simulate` itself on two large
# layouts (P = 16 stages, 64 and 512 replicas).
#
# The machinery (arguments, runs, CPU used by others) is shared with
# bench/pipeline.sh, bench/gpt.sh and bench/data_parallel.sh through
# bench/lib.sh.
#
# Usage: bench/simulator.sh [--quick] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=/tmp/pipetrain-bench-sim
MAX_RANKS=4     # P·D ≤ MAX_RANKS
TARGET_MEDIAN=0.05
TARGET_MAX=0.10

usage() {
  cat <<EOF
usage: bench/simulator.sh [--quick] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]

Accuracy of \`pipetrain simulate\`: for each layout, the step time it predicts
before the run against the measured step time of the real run (mpirun, the
summary's measured_step_s), beside the run's end-of-run self-check (the
summary's predicted_step_s). Layouts: models mlp (examples/fashion_mlp.ini on
synthetic 784-wide data, batch 1024, 12 steps), balanced
(bench/configs/balanced.ini, batch 1024, 6 steps) and gpt
(examples/gpt_bytes.ini, batch 32 contexts, 4 steps); P = 1, 2, 4 stages ×
D = 1, 2 replicas with P·D ≤ $MAX_RANKS; M = 4, 8, 16, 32 micro-batches (gpt: 4, 8,
16); GPipe, 1F1B, ZB-H1 and interleaved (2 chunks) where they fit; one BLAS
thread per rank. About 20 minutes on an idle 2-core machine. Layouts with
more ranks than cores are oversubscribed and kept out of the error figures.
Targets: median |error| ≤ $(awk -v t=$TARGET_MEDIAN 'BEGIN {print t * 100}') % and every layout ≤ $(awk -v t=$TARGET_MAX 'BEGIN {print t * 100}') % (non-oversubscribed).
Also times \`pipetrain simulate\` on bench/configs/balanced.ini with 1024 and
8192 ranks (16 stages × 64 and × 512 replicas).
Prints markdown tables and writes into the results directory:
  runs/*.json        the JSON summary of every run (log.summary), unchanged
  runs/*.meta.json   how it was run: mpirun options, wall time, CPU used by others
  runs/*.metrics.csv each run's per-step log (log.metrics): its first step apart
                     from the later ones
  runs/*.sim.json    the prediction: pipetrain simulate's step time and throughput,
                     its wall time and the CPU others used meanwhile
  logs/*.log         each run's output; logs/*.sim.log each simulate's
  results.json       every layout with both predictions and their errors, the
                     error statistics and the large-layout timings
  report.md          the tables printed to stdout

  --quick      smoke run: mlp, P = 1, 2, D = 1, M = 8, 1F1B and ZB-H1, 2 steps
  --out DIR    results directory (default $OUT)
  --build DIR  Release build tree holding pipetrain (default $BUILD;
               cmake -S . -B build -DCMAKE_BUILD_TYPE=Release)
  --retries N  re-run a run (and its prediction) up to N times when other
               processes used more than $BUSY_LIMIT CPU during it (default 0: such
               layouts are marked and the statistics are also given without them)
  --keep       reuse the runs and predictions already in the results directory
               during which other processes used at most $BUSY_LIMIT CPU; re-run
               the rest (same options as before)
  --help       print this help and exit

environment: BENCH_MODELS (mlp balanced gpt; also dp_mlp: bench/configs/dp_mlp.ini
with its invariant reduction, not in the default plan), BENCH_P, BENCH_D, BENCH_M
and BENCH_SCHEDULES narrow the plan to the listed values, e.g.
BENCH_MODELS=balanced BENCH_P="2 4" BENCH_D=1 BENCH_SCHEDULES="1f1b zbh1".
Layouts with more than $MAX_RANKS ranks are left out; layouts that cannot run (M
not divisible by D or not dividing the batch; interleaved: M / D not a
multiple of P, fewer layers than virtual stages) are skipped with a message.
The interleaved schedule runs BENCH_CHUNKS model chunks per rank (default 2).
EOF
}

BENCH=simulator.sh
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
RETRIES=0 # the plan is long and a retry waits 20 s; disturbed runs are marked and counted apart instead
bench_parse_args "$@"
# shellcheck disable=SC2119  # no tools beyond bench_setup's own
bench_setup
[ "$KEEP" = 1 ] || rm -f "$OUT"/runs/*.metrics.csv
# pipetrain simulate runs bound to one core, as a rank of the runs is
# (mpirun --bind-to core): the first this script may use
SIM_BIND=()
if command -v taskset >/dev/null; then
  SIM_BIND=(taskset -c "$(awk '/^Cpus_allowed_list/ {split($2, a, /[-,]/); print a[1]}' /proc/self/status)")
fi

# ---- the plan ----------------------------------------------------------------
MODELS=(mlp balanced gpt)
PS=(1 2 4)
DS=(1 2)
SCHEDS=(gpipe 1f1b zbh1 interleaved)
declare -A MS_OF=([mlp]="4 8 16 32" [balanced]="4 8 16 32" [gpt]="4 8 16" [dp_mlp]="4 8 16 32")
# about 2-4 s of training at P = 1 for each, 1-2 s at P·D = 2
declare -A STEPS=([mlp]=12 [balanced]=6 [gpt]=4 [dp_mlp]=12)
declare -A BATCH=([mlp]=1024 [balanced]=1024 [gpt]=32 [dp_mlp]=256)
if [ "$QUICK" = 1 ]; then
  MODELS=(mlp); PS=(1 2); DS=(1); SCHEDS=(1f1b zbh1)
  for m in "${!MS_OF[@]}"; do MS_OF[$m]=8; STEPS[$m]=2; done
fi
[ -n "${BENCH_MODELS:-}" ] && read -ra MODELS <<<"$BENCH_MODELS"
[ -n "${BENCH_P:-}" ] && read -ra PS <<<"$BENCH_P"
[ -n "${BENCH_D:-}" ] && read -ra DS <<<"$BENCH_D"
[ -n "${BENCH_SCHEDULES:-}" ] && read -ra SCHEDS <<<"$BENCH_SCHEDULES"
if [ -n "${BENCH_M:-}" ]; then for m in "${!MS_OF[@]}"; do MS_OF[$m]=$BENCH_M; done; fi

declare -A CONFIG=([mlp]=examples/fashion_mlp.ini [balanced]=bench/configs/balanced.ini
                   [gpt]=examples/gpt_bytes.ini [dp_mlp]=bench/configs/dp_mlp.ini)
for m in "${MODELS[@]}"; do
  [ -n "${CONFIG[$m]:-}" ] || { echo "$BENCH: BENCH_MODELS: unknown model '$m' (mlp, balanced, gpt, dp_mlp)" >&2; exit 2; }
done
for v in "${PS[@]}" "${DS[@]}" ${MS_OF[mlp]} ${MS_OF[gpt]}; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || { echo "$BENCH: BENCH_P, BENCH_D, BENCH_M: '$v' is not a positive whole number" >&2; exit 2; }
done
for s in "${SCHEDS[@]}"; do
  case "$s" in gpipe|1f1b|zbh1|interleaved) ;; *) echo "$BENCH: BENCH_SCHEDULES: unknown schedule '$s'" >&2; exit 2 ;; esac
done
# the --set options of each model (beside steps, batch, layout and schedule)
declare -A MODEL_SETS=(
  [mlp]="data.dataset=synthetic data.synthetic_features=784 data.synthetic_classes=10 train.warmup_steps=0 train.lr_schedule=constant"
  [balanced]="data.dataset=synthetic data.synthetic_features=16 data.synthetic_classes=10"
  [gpt]="train.eval_every=0 data.val_contexts=8 train.warmup_steps=0"
  [dp_mlp]="data.dataset=synthetic")
declare -A SYNTHETIC=([mlp]=1 [balanced]=1 [gpt]=0 [dp_mlp]=1)
# bench_run's progress line: tokens/s for the language model (samples/s × context)
GPT_CONTEXT=$(sed -n 's/^[[:space:]]*context[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$REPO/${CONFIG[gpt]}" | sed -n 1p)
declare -A LAYERS=()
for m in "${MODELS[@]}"; do LAYERS[$m]=$(bench_layers_json "${CONFIG[$m]}" 1 | jq length); done
{
  echo "{"
  sep=""
  for m in "${MODELS[@]}"; do
    printf '%s"%s":{"config":"%s","batch":%s,"steps":%s,"layers":%s,"sets":"%s"}\n' "$sep" "$m" "${CONFIG[$m]}" \
      "${BATCH[$m]}" "${STEPS[$m]}" "${LAYERS[$m]}" "${MODEL_SETS[$m]}"
    sep=","
  done
  echo "}"
} >"$OUT/models.json"

# ---- the prediction: pipetrain simulate ------------------------------------------
# sim_one NAME N CONFIG SET...: runs `pipetrain simulate CONFIG --ranks N --set
# SET ...` in $OUT (output in logs/NAME.sim.log) and writes runs/NAME.sim.json:
# predicted step time and throughput, calibration and simulation seconds as it
# prints them, wall seconds, CPU used by others meanwhile, retries, the
# command. Sets SIM_OK=1, or SIM_OK=0 when pipetrain refuses the layout (exit
# code 2; SIM_WHY then says why). A prediction during which others used more
# than BUSY_LIMIT CPU is made again, up to RETRIES times. With --keep, a
# prediction in runs/ with the same command that others did not disturb is kept.
sim_one() {
  local name=$1 N=$2 config=$3
  shift 3
  local args=(simulate "$REPO/$config" --ranks "$N") s
  for s in "$@"; do args+=(--set "$s"); done
  local key="${args[*]}" log=$OUT/logs/$name.sim.log json=$OUT/runs/$name.sim.json
  SIM_OK=1
  SIM_WHY=
  if [ "$KEEP" = 1 ] && [ -s "$json" ] &&
     jq -e --argjson l "$BUSY_LIMIT" --arg key "$key" '.others_cpus <= $l and .command_args == $key' "$json" >/dev/null; then
    echo "$BENCH: $name: prediction kept" >&2
    return
  fi
  local attempt=0 rc others wall
  while :; do
    bench_mark_start
    rc=0
    (cd "$OUT" && "${SIM_BIND[@]}" "$PIPETRAIN" "${args[@]}" >"$log" 2>&1) || rc=$?
    bench_mark_end
    if [ "$rc" = 2 ]; then
      SIM_OK=0
      SIM_WHY=$(sed -n 's/^pipetrain: //p' "$log" | head -n 1)
      return
    elif [ "$rc" != 0 ]; then
      echo "$BENCH: pipetrain simulate failed for $name (exit code $rc); its output is in $log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    others=$OTHERS wall=$WALL
    if awk -v o="$others" -v l="$BUSY_LIMIT" 'BEGIN {exit !(o > l)}' && [ "$attempt" -lt "$RETRIES" ]; then
      attempt=$((attempt + 1))
      echo "$BENCH: $name: other processes used $others CPU during the prediction; again in 5 s (retry $attempt of $RETRIES)" >&2
      sleep 5
      continue
    fi
    break
  done
  local step rate unit cal simt
  step=$(awk '/^predicted step time:/ {print $4; exit}' "$log")
  read -r rate unit < <(awk '/^predicted throughput:/ {print $3, $4; exit}' "$log") || true
  read -r cal simt < <(sed -n 's/.*calibrated on this machine in \([0-9.]*\) s, simulated in \([0-9.]*\) s.*/\1 \2/p' "$log" | head -n 1) || true
  [[ ${step:-} =~ ^[0-9.]+$ ]] || { echo "$BENCH: no 'predicted step time' line in $log" >&2; exit 1; }
  jq -n --arg key "$key" --argjson step "$step" --argjson rate "${rate:-null}" --arg unit "${unit:-}" \
    --argjson cal "${cal:-null}" --argjson simt "${simt:-null}" --argjson wall "$wall" --argjson others "$others" \
    --argjson retries "$attempt" --arg date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
    --arg bind "${SIM_BIND[*]}" \
    '{command_args: $key, bind: $bind, predicted_step_s: $step, predicted_rate: $rate, rate_unit: $unit,
      calibrate_s: $cal, simulate_s: $simt, wall_s: $wall, others_cpus: $others, retries: $retries, date: $date}' >"$json"
}

# ---- one layout: the prediction, then the run --------------------------------------
LAYOUT_LIST=$OUT/.layouts
: >"$LAYOUT_LIST"
run_one() { # model P D M schedule
  local model=$1 P=$2 D=$3 M=$4 sched=$5 why
  local N=$((P * D)) B=${BATCH[$model]} what="$model P=$P D=$D M=$M $sched"
  if [ $((M % D)) -ne 0 ]; then echo "$BENCH: skipping $what: M = $M is not divisible by D = $D" >&2; return 0; fi
  if [ $((B % M)) -ne 0 ]; then echo "$BENCH: skipping $what: M = $M does not divide the batch $B" >&2; return 0; fi
  why=$(bench_schedule_fits "$sched" "$P" $((M / D)) "${LAYERS[$model]}") ||
    { echo "$BENCH: skipping $what: $why$([ "$D" -gt 1 ] && echo " (M / D micro-batches per replica)")" >&2; return 0; }
  local sets=("train.batch_size=$B" "train.steps=${STEPS[$model]}" train.log_every=0 checkpoint.dir=
              train.blas_threads=1 "pipeline.micro_batches=$M" pipeline.partition=cost "pipeline.data_parallel=$D")
  [ "${SYNTHETIC[$model]}" = 1 ] && sets+=("data.synthetic_samples=$B")
  local s
  for s in ${MODEL_SETS[$model]}; do sets+=("$s"); done
  mapfile -t -O ${#sets[@]} sets < <(bench_schedule_sets "$sched")
  local name="${model}_P${P}_D${D}_M${M}_${sched}" BENCH_RATE_SCALE=1 BENCH_RATE_UNIT=samples/s
  if [ "$model" = gpt ] && [ -n "$GPT_CONTEXT" ]; then BENCH_RATE_SCALE=$GPT_CONTEXT; BENCH_RATE_UNIT=tokens/s; fi
  sim_one "$name" "$N" "${CONFIG[$model]}" "${sets[@]}"
  if [ "$SIM_OK" = 0 ]; then echo "$BENCH: skipping $what: pipetrain simulate refuses it: $SIM_WHY" >&2; return 0; fi
  # the run also writes per-step elapsed times (log.metrics, rank 0): the steps after the first
  bench_run "$name" "$N" 1 "${CONFIG[$model]}" "${CONFIG[$model]} ${sets[*]}" "${STEPS[$model]}" "$B" \
    "{\"model\":\"$model\",\"stages\":$P,\"replicas\":$D,\"M\":$M,\"schedule\":\"$sched\"}" "${sets[@]}" \
    "log.metrics=$OUT/runs/$name.metrics.csv"
  echo "$name" >>"$LAYOUT_LIST"
}

bench_begin
for model in "${MODELS[@]}"; do
  for P in "${PS[@]}"; do
    for D in "${DS[@]}"; do
      [ $((P * D)) -le "$MAX_RANKS" ] || continue
      for M in ${MS_OF[$model]}; do
        for sched in "${SCHEDS[@]}"; do run_one "$model" "$P" "$D" "$M" "$sched"; done
      done
    done
  done
done

# ---- how long pipetrain simulate takes on a large layout ------------------------
# bench/configs/balanced.ini has 19 layers: 16 stages (uniform partition), with
# 64 and 512 replicas; M = 16 micro-batches of 16 samples per replica.
LARGE_LIST=$OUT/.large
: >"$LARGE_LIST"
large_one() { # ranks D
  local N=$1 D=$2 name="large_N$1_D$2"
  local M=$((D * 16))
  local B=$((M * 16)) log=$OUT/logs/$name.sim.log
  local args=(simulate "$REPO/bench/configs/balanced.ini" --ranks "$N" --set "pipeline.data_parallel=$D"
              --set "pipeline.micro_batches=$M" --set "train.batch_size=$B" --set pipeline.partition=uniform)
  local rc=0
  bench_mark_start
  (cd "$OUT" && "${SIM_BIND[@]}" "$PIPETRAIN" "${args[@]}" >"$log" 2>&1) || rc=$?
  bench_mark_end
  if [ "$rc" != 0 ]; then
    echo "$BENCH: pipetrain simulate failed on $N ranks (exit code $rc); its output is in $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  local others wall step cal simt
  others=$OTHERS wall=$WALL
  step=$(awk '/^predicted step time:/ {print $4; exit}' "$log")
  read -r cal simt < <(sed -n 's/.*calibrated on this machine in \([0-9.]*\) s, simulated in \([0-9.]*\) s.*/\1 \2/p' "$log" | head -n 1) || true
  jq -n --arg cmd "pipetrain ${args[*]#"$REPO/"}" --argjson N "$N" --argjson D "$D" --argjson M "$M" --argjson B "$B" \
    --argjson step "${step:-null}" --argjson cal "${cal:-null}" --argjson simt "${simt:-null}" \
    --argjson wall "$wall" --argjson others "$others" \
    '{command: $cmd, ranks: $N, stages: ($N / $D), replicas: $D, micro_batches: $M, batch_size: $B,
      predicted_step_s: $step, calibrate_s: $cal, simulate_s: $simt, wall_s: $wall, others_cpus: $others}' >>"$LARGE_LIST"
  echo "$BENCH: simulate on $N ranks ($((N / D)) stages × $D replicas): $wall s (others $others CPU)" >&2
}
large_one 1024 64
large_one 8192 512
bench_end

# ---- results.json -------------------------------------------------------------------
# {layouts: [{meta, summary (without ranks), simulate, derived}], statistics,
#  large_layouts}. derived: oversubscribed (N > cores), disturbed (others
# used more than BUSY_LIMIT CPU during the run or its prediction), error_sim
# (simulate / measured − 1) and error_self (predicted_step_s / measured − 1;
# null when the run reports none), and both against the mean of the steps
# after the first instead (steps.later_step_s, from log.metrics:
# error_sim_later, error_self_later). statistics over the non-oversubscribed
# layouts ("all") and those of them no one disturbed ("undisturbed"): n, the
# median and largest |error|, the median signed error, and the layouts above
# TARGET_MAX, for both predictions.
{
  echo "["
  sep=""
  while read -r name; do
    # from log.metrics: the first step's seconds and the mean of the others (elapsed_s, column 6)
    steps_json=$(awk -F, 'NR == 2 {e1 = $6} NR > 1 {last = $6; n = $1}
      END {if (n >= 1) printf "{\"first_step_s\":%s,\"later_step_s\":%s}", e1, (n >= 2 ? (last - e1) / (n - 1) : "null");
           else printf "{\"first_step_s\":null,\"later_step_s\":null}"}' "$OUT/runs/$name.metrics.csv" 2>/dev/null ||
      echo '{"first_step_s":null,"later_step_s":null}')
    printf '%s{"meta":%s,"summary":%s,"simulate":%s,"steps":%s}\n' "$sep" "$(cat "$OUT/runs/$name.meta.json")" \
      "$(cat "$OUT/runs/$name.json")" "$(cat "$OUT/runs/$name.sim.json")" "$steps_json"
    sep=","
  done <"$LAYOUT_LIST"
  echo "]"
} >"$OUT/.raw.json"
# shellcheck disable=SC2016  # jq, not shell: $set and $e are jq variables
STATS_JQ='
def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
                                           else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def absv: if . == null then null elif . < 0 then -. else . end;
def errstats(f): [ .[] | f | select(. != null) ] as $e
  | {n: ($e | length), median_abs: ($e | map(absv) | median), max_abs: ($e | map(absv) | max),
     median_signed: ($e | median)};
def lname: "\(.meta.model) P=\(.meta.stages) D=\(.meta.replicas) M=\(.meta.M) \(.meta.schedule)";
def stats($set): {
  simulate: ($set | errstats(.derived.error_sim)),
  self_check: ($set | errstats(.derived.error_self)),
  simulate_later: ($set | errstats(.derived.error_sim_later)),
  self_check_later: ($set | errstats(.derived.error_self_later)),
  simulate_above: [ $set[] | select((.derived.error_sim | absv) > $target_max) | lname ],
  self_check_above: [ $set[] | select(.derived.error_self != null and (.derived.error_self | absv) > $target_max) | lname ]};
'
jq --argjson cores "$CORES" --argjson limit "$BUSY_LIMIT" --argjson target_max "$TARGET_MAX" --argjson target_median "$TARGET_MEDIAN" --slurpfile large <(jq -s . "$LARGE_LIST") "$STATS_JQ"'
  def rel($p; $m): if $p != null and $m != null and $m > 0 then $p / $m - 1 else null end;
  [ .[] | .summary.measured_step_s as $m | .steps.later_step_s as $l
    | (.summary.predicted_step_s | if . == null or . <= 0 then null else . end) as $self
    | {meta, summary: (.summary | del(.ranks)), simulate, steps,
       derived: {oversubscribed: (.meta.P > $cores),
                 disturbed: (.meta.others_cpus > $limit or .simulate.others_cpus > $limit),
                 error_sim: rel(.simulate.predicted_step_s; $m), error_self: rel($self; $m),
                 error_sim_later: rel(.simulate.predicted_step_s; $l), error_self_later: rel($self; $l)},
       ranks: .summary.ranks} ] as $layouts
  | [ $layouts[] | select(.derived.oversubscribed | not) ] as $fit
  | {layouts: $layouts,
     statistics: {cores: $cores, busy_limit: $limit, target_median_abs: $target_median, target_max_abs: $target_max,
                  all: stats($fit), undisturbed: stats([ $fit[] | select(.derived.disturbed | not) ]),
                  oversubscribed: stats([ $layouts[] | select(.derived.oversubscribed) ])},
     large_layouts: $large[0]}
' "$OUT/.raw.json" >"$OUT/results.json"
rm -f "$OUT/.raw.json" "$TIMES_FILE" "$RUN_LIST" "$LAYOUT_LIST" "$LARGE_LIST"

# ---- the report ----------------------------------------------------------------------
{
  echo "## Simulator accuracy ($([ "$QUICK" = 1 ] && echo "quick smoke run" || echo "full run"))"
  echo
  jq -r --arg start "$START_DATE" --arg dur "$(bench_seconds)" \
    '.layouts as $l | "- this invocation: \($start), \($dur) s; \($l | length) layouts, each predicted by `pipetrain simulate` (\($l | map(.simulate.wall_s) | add // 0 | round) s in all) and then trained (\($l | map(.meta.wall_s) | add // 0 | round) s of runs, start-up and evaluation included)"' "$OUT/results.json"
  echo "- machine: $(bench_cpu_model), $CORES cores"
  echo "- load average (1, 5, 15 min) before: $START_LOAD; after: $END_LOAD"
  jq -r '"- models: " + (to_entries | map("\(.key) (`\(.value.config)`, \(.value.layers) layers, batch \(.value.batch)\(if .key == "gpt" then " contexts" else "" end), \(.value.steps) steps)") | join("; "))' "$OUT/models.json"
  echo "- every layout: \`pipetrain simulate CONFIG --ranks N --set …\` first (one process, no MPI$([ ${#SIM_BIND[@]} -gt 0 ] && echo ", under \`${SIM_BIND[*]}\`")), then \`mpirun -np N pipetrain train CONFIG --set …\` with the same options (N = P·D ranks, pipeline.data_parallel = D, one BLAS thread per rank, partition = cost, checkpoints off); N ≤ $CORES: \`--bind-to core\`, N > $CORES: \`--oversubscribe --bind-to none\`"
  echo "- measured: the run's measured_step_s (training seconds / steps, the first step included; first step and later steps: from the run's log.metrics, the first step's seconds and the mean of the others); simulate: the step time \`pipetrain simulate\` predicted before the run; self-check: the run's predicted_step_s (the same simulation from op times every rank measured at the end of that run); error = predicted / measured − 1"
  echo "- †: more ranks than cores (oversubscribed; not in the error figures); \`*\`: other processes used more than $BUSY_LIMIT CPU during the run or its prediction (others CPU: run / prediction)"
  echo
  jq -r "$BENCH_JQ"'
    def spct: if . == null then "—" else (if . >= 0 then "+" else "" end) + (. * 100 | fmt(1)) + "%" end;
    "### Per layout",
    "",
    "| model | P | D | M | schedule | measured step s | simulate s | error | self-check s | error | first step s | later steps s | simulate error vs later | self-check error vs later | oversubscribed | others CPU |",
    "|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|--:|",
    (.layouts[] | .derived as $d
      | "| \(.meta.model) | \(.meta.stages) | \(.meta.replicas) | \(.meta.M) | \(.meta.schedule) | \(.summary.measured_step_s | fmt(4)) | \(.simulate.predicted_step_s | fmt(4)) | \($d.error_sim | spct) | \(.summary.predicted_step_s | if . == null or . <= 0 then null else . end | fmt(4)) | \($d.error_self | spct) | \(.steps.first_step_s | fmt(4)) | \(.steps.later_step_s | fmt(4)) | \($d.error_sim_later | spct) | \($d.error_self_later | spct) | \(if $d.oversubscribed then "† (\(.meta.P) ranks)" else "" end) | \(.meta.others_cpus | fmt(2)) / \(.simulate.others_cpus | fmt(2))\(if $d.disturbed then " *" else "" end) |")
  ' "$OUT/results.json"
  echo
  echo "### Error statistics"
  echo
  jq -r "$BENCH_JQ"'
    def spct: if . == null then "—" else (if . >= 0 then "+" else "" end) + (. * 100 | fmt(1)) + "%" end;
    def met(c): if c then "met" else "not met" end;
    .statistics as $s
    | def row($what; $set; $k): $set[$k] as $e
        | "| \($what) | \($e.n) | \($e.median_abs | pct) | \($e.max_abs | pct) | \($e.median_signed | spct) |";
    "Over the layouts with at most \($s.cores) ranks (not oversubscribed); signed median: below zero the prediction is too fast.",
    "",
    "| prediction | layouts | median abs(error) | max abs(error) | median error |",
    "|---|--:|--:|--:|--:|",
    row("simulate, all"; $s.all; "simulate"),
    row("self-check, all"; $s.all; "self_check"),
    row("simulate, undisturbed only"; $s.undisturbed; "simulate"),
    row("self-check, undisturbed only"; $s.undisturbed; "self_check"),
    row("simulate against the later steps (supplementary)"; $s.all; "simulate_later"),
    row("self-check against the later steps (supplementary)"; $s.all; "self_check_later"),
    (if $s.oversubscribed.simulate.n > 0 then
       row("simulate, oversubscribed (for the record)"; $s.oversubscribed; "simulate"),
       row("self-check, oversubscribed (for the record)"; $s.oversubscribed; "self_check")
     else empty end),
    "",
    "### Targets",
    "",
    "| target | simulate | | self-check | |",
    "|---|---|---|---|---|",
    ( [$s.all.simulate, $s.all.self_check] as [$a, $b]
      | "| median abs(error) ≤ \($s.target_median_abs | pct) (non-oversubscribed layouts) | \($a.median_abs | pct) | \(if $a.n == 0 then "—" else met($a.median_abs <= $s.target_median_abs) end) | \($b.median_abs | pct) | \(if $b.n == 0 then "—" else met($b.median_abs <= $s.target_median_abs) end) |",
        "| every layout ≤ \($s.target_max_abs | pct) (non-oversubscribed) | max \($a.max_abs | pct) | \(if $a.n == 0 then "—" else met($a.max_abs <= $s.target_max_abs) end) | max \($b.max_abs | pct) | \(if $b.n == 0 then "—" else met($b.max_abs <= $s.target_max_abs) end) |" ),
    "",
    "Layouts above \($s.target_max_abs | pct), simulate: \(if ($s.all.simulate_above | length) == 0 then "none" else $s.all.simulate_above | join("; ") end).",
    "",
    "Layouts above \($s.target_max_abs | pct), self-check: \(if ($s.all.self_check_above | length) == 0 then "none" else $s.all.self_check_above | join("; ") end)."
  ' "$OUT/results.json"
  echo
  echo "### Time taken by \`pipetrain simulate\` on a large layout"
  echo
  jq -r "$BENCH_JQ"'
    "| command | ranks | stages × replicas | M | wall s | calibration s | simulation s | predicted step s | others CPU |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    (.large_layouts[] | "| `\(.command)` | \(.ranks) | \(.stages) × \(.replicas) | \(.micro_batches) | \(.wall_s | fmt(2)) | \(.calibrate_s | fmt(2)) | \(.simulate_s | fmt(3)) | \(.predicted_step_s | fmt(4)) | \(.others_cpus | fmt(2)) |")
  ' "$OUT/results.json"
} | tee "$OUT/report.md"
echo >&2
echo "$BENCH: results in $OUT (report.md, results.json, runs/, logs/)" >&2
