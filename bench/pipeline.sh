#!/usr/bin/env bash
# bench/pipeline.sh — pipeline-parallel training throughput of pipetrain.
#
# For two models, the balanced model (bench/configs/balanced.ini) and the
# example MLP (examples/fashion_mlp.ini), it trains with P = 1, 2 and 4
# pipeline stages (P = 4 oversubscribes a 2-core machine and is kept only for
# the record), M = 4, 8, 16, 32 micro-batches, the GPipe, 1F1B, ZB-H1 and interleaved 1F1B (2 chunks) schedules,
# one BLAS thread per rank, and P = 1 with 2 BLAS threads as a second
# baseline. Every run has the same global batch, so a given M means the same
# micro-batch rows at every P. From each run's JSON summary (log.summary) it
# reports throughput, each stage's share of the work, the measured bubble
# beside the schedule's theoretical one (unit-cost timing of its lists:
# (P-1)/(M+P-1) for GPipe and 1F1B), GFLOP/s per rank as a fraction of the
# 1-thread cblas_sgemm rate on the same matrix shapes (bench/sgemm_peak
# --shape), stash and peak RSS, speedups and the 1F1B/GPipe stash ratio.
#
# On a shared machine, --keep re-runs only what other processes disturbed.
# The machinery (arguments, sgemm reference, runs, derived figures) is shared
# with bench/gpt.sh through bench/lib.sh.
#
# Usage: bench/pipeline.sh [--quick] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=/tmp/pipetrain-bench

usage() {
  cat <<EOF
usage: bench/pipeline.sh [--quick] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]

Pipeline benchmark of pipetrain: P = 1, 2 (and 4, oversubscribed) stages,
M = 4, 8, 16, 32 micro-batches, GPipe and 1F1B, one BLAS thread per rank,
plus P = 1 with 2 BLAS threads, on bench/configs/balanced.ini and on the
example MLP (examples/fashion_mlp.ini, run on synthetic 784-wide data).
Prints markdown tables and writes into the results directory:
  runs/*.json        the JSON summary of every run (log.summary), unchanged
  runs/*.meta.json   how it was run: mpirun options, wall time, CPU used by others
  logs/*.log         each run's output
  sgemm.txt          bench/sgemm_peak --shape on the models' matrix shapes
  sgemm-retry*.txt   the points that other processes disturbed, measured again
  sgemm.csv          per shape: the best GFLOP/s over all measurements
  results.json       all runs with the derived figures
  report.md          the tables printed to stdout

  --quick      smoke run: batch 256, P = 1, 2, M = 4, 8, 2 steps (under a minute)
$(bench_options_help sgemm)

environment: BENCH_P, BENCH_M, BENCH_SCHEDULES (and BENCH_MODELS for
bench/pipeline.sh) narrow the plan to the listed values, e.g.
BENCH_P="1 2" BENCH_M=8 BENCH_SCHEDULES="1f1b zbh1" for a focused comparison.
The interleaved schedule runs BENCH_CHUNKS model chunks per rank (default 2);
layouts it cannot run (M not divisible by P, fewer layers than virtual stages)
are skipped with a message.
EOF
}

BENCH=pipeline.sh
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
bench_parse_args "$@"
bench_setup

# ---- the plan ----------------------------------------------------------------
if [ "$QUICK" = 1 ]; then
  BATCH=256; PS=(1 2); MS=(4 8); SCHEDS=(gpipe 1f1b zbh1 interleaved)
  declare -A STEPS=([balanced]=2 [mlp]=2)
else
  BATCH=2048; PS=(1 2 4); MS=(4 8 16 32); SCHEDS=(gpipe 1f1b zbh1 interleaved)
  # about 5 s or more for the fastest run (P = 2, M = 32) of each model
  declare -A STEPS=([balanced]=8 [mlp]=24)
fi
MODELS=(balanced mlp)
# a subset, for a focused comparison: BENCH_P="1 2" BENCH_M="8" BENCH_SCHEDULES="1f1b zbh1"
[ -n "${BENCH_P:-}" ] && read -ra PS <<<"$BENCH_P"
[ -n "${BENCH_M:-}" ] && read -ra MS <<<"$BENCH_M"
[ -n "${BENCH_SCHEDULES:-}" ] && read -ra SCHEDS <<<"$BENCH_SCHEDULES"
[ -n "${BENCH_MODELS:-}" ] && read -ra MODELS <<<"$BENCH_MODELS"
declare -A CONFIG=([balanced]=bench/configs/balanced.ini [mlp]=examples/fashion_mlp.ini)
declare -A FEATURES=([balanced]=16 [mlp]=784)
# the MLP's schedule has a 100-step warm-up; runs here are shorter
declare -A EXTRA=([balanced]="" [mlp]="train.warmup_steps=0 train.lr_schedule=constant")

# ---- the models' layers, as JSON: [{kind, in, out}] (bench_layers_json) --------
{
  echo "{"
  sep=""
  for m in "${MODELS[@]}"; do
    printf '%s"%s":{"config":"%s","features":%s,"steps":%s,"layers":%s}\n' "$sep" "$m" \
      "${CONFIG[$m]}" "${FEATURES[$m]}" "${STEPS[$m]}" "$(bench_layers_json "${CONFIG[$m]}" "${FEATURES[$m]}")"
    sep=","
  done
  echo "}"
} >"$OUT/models.json"

# ---- sgemm rate on exactly the models' shapes (bench_sgemm_reference) -----------
# The matrix products of a stage's linear layers for micro-batch rows b (see
# gemms in bench/lib.sh): forward NT, input gradient NN (not for global layer
# 0), weight gradient TN.
JQ_DEFS=$BENCH_JQ
ROWS=()
for M in "${MS[@]}"; do ROWS+=($((BATCH / M))); done
mapfile -t shapes < <(bench_gemm_shape_args "$OUT/models.json" "[$(IFS=,; echo "${ROWS[*]}")]")
bench_sgemm_reference 1 sgemm "${shapes[@]}"

# ---- one run -----------------------------------------------------------------------
run_one() { # model P M schedule threads
  local model=$1 P=$2 M=$3 sched=$4 threads=$5
  local why
  why=$(bench_schedule_fits "$sched" "$P" "$M" "$(jq --arg m "$model" '.[$m].layers | length' "$OUT/models.json")") ||
    { echo "$BENCH: skipping $model P=$P M=$M $sched: $why" >&2; return 0; }
  local sets=(data.dataset=synthetic "data.synthetic_features=${FEATURES[$model]}" data.synthetic_classes=10
              "data.synthetic_samples=$BATCH" "train.batch_size=$BATCH" "train.steps=${STEPS[$model]}"
              train.log_every=0 checkpoint.dir= "train.blas_threads=$threads" "pipeline.micro_batches=$M"
              pipeline.partition=cost)
  mapfile -t -O ${#sets[@]} sets < <(bench_schedule_sets "$sched")
  local s
  for s in ${EXTRA[$model]}; do sets+=("$s"); done
  local spec
  spec="${FEATURES[$model]}: $(jq -c --arg m "$model" '.[$m].layers' "$OUT/models.json")"
  bench_run "${model}_P${P}_M${M}_${sched}_t${threads}" "$P" "$threads" "${CONFIG[$model]}" "$spec" \
    "${STEPS[$model]}" "$BATCH" "{\"model\":\"$model\",\"M\":$M,\"schedule\":\"$sched\"}" "${sets[@]}"
}

bench_begin
for model in "${MODELS[@]}"; do
  for P in "${PS[@]}"; do
    for M in "${MS[@]}"; do
      for sched in "${SCHEDS[@]}"; do run_one "$model" "$P" "$M" "$sched" 1; done
      # the second baseline: one rank, both cores through 2 BLAS threads
      if [ "$P" = 1 ]; then
        if [ "$QUICK" = 0 ] || [ "$M" = "${MS[0]}" ]; then run_one "$model" 1 "$M" 1f1b 2; fi
      fi
    done
  done
done
bench_end

# ---- derived figures (bench_derive) -------------------------------------------------
bench_derive "$OUT/models.json" "$OUT/sgemm.json"

# ---- the report ----------------------------------------------------------------------
{
  echo "## Pipeline benchmark ($([ "$QUICK" = 1 ] && echo "quick smoke run" || echo "full run"))"
  echo
  bench_header "$OUT/sgemm.txt"
  echo "- global batch $BATCH samples (micro-batch rows = $BATCH / M), steps: balanced ${STEPS[balanced]}, mlp ${STEPS[mlp]};" \
       "synthetic data (test split $((BATCH / 4)) samples, evaluated after training and not part of the throughput)"
  echo "- balanced: ${FEATURES[balanced]} → linear 1024, relu → [linear 1024, relu] × 8 → linear 10; mlp: ${FEATURES[mlp]} → 1024 → 1024 → 1024 → 10, ReLU + dropout 0.2 (examples/fashion_mlp.ini on synthetic data)"
  echo "- partition = cost; P ≤ $CORES: \`--bind-to core\`, 1 BLAS thread per rank; P = 1 with 2 BLAS threads and P > $CORES: \`--bind-to none\` (P > $CORES also \`--oversubscribe\`)"
  echo "- sgemm reference: 1-thread \`sgemm_peak --shape\` best GFLOP/s on each stage's own products (best over all measurements; $SG_UNSETTLED of $SG_SHAPES shapes were disturbed by other processes in every measurement); a stage's reference is their FLOP-weighted harmonic mean (total FLOPs / Σ FLOPs_i / rate_i: the rate of that mix if every product ran as in sgemm_peak)"
  echo "- \`*\`: other processes used more than $BUSY_LIMIT CPU during the run; †: more ranks than cores (oversubscribed, for the record: compute and bubble times then include time spent descheduled)"
  echo "- checkpoints off (checkpoint.dir empty); runs start in the results directory"
  echo
  jq -r "$JQ_DEFS"'
    def mark: if .meta.others_cpus > '"$BUSY_LIMIT"' then " *" else "" end;
    def pp: "\(.meta.P)\(if .meta.P > '"$CORES"' then "†" else "" end)";
    "### Throughput",
    "",
    "| model | P | M | rows | schedule | BLAS threads | samples/s | × P=1 (1 thread) | × P=1 (2 threads) | train s | others CPU |",
    "|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|",
    (.[] | "| \(.meta.model) | \(pp) | \(.meta.M) | \(.summary.micro_batch_rows) | \(.meta.schedule) | \(.meta.blas_threads) | \(.summary.throughput_samples_per_s | fmt(0))\(mark) | \(.speedup_vs_p1 | x2) | \(.speedup_vs_p1_2threads | x2) | \(.summary.train_seconds | fmt(1)) | \(.meta.others_cpus | fmt(2)) |"),
    "",
    "### Per rank",
    "",
    "Seconds over all training steps. bubble = time blocked on receives; bubble % = bubble / total (total = the op lists plus the optimizer); theory = (P−1)/(M+P−1). GFLOP/s = training FLOPs / compute seconds; % sgemm = that over the stage’s 1-thread sgemm reference (1-thread runs only).",
    "",
    "| model | P | M | sched | thr | stage | layers | work | GFLOP/s | sgemm ref | % sgemm | compute s | bubble s | comm s | optim s | data s | total s | bubble % | theory | ratio | stash MiB | peak RSS MiB |",
    "|---|--:|--:|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    (.[] | . as $r | .ranks[] |
      "| \($r.meta.model) | \($r | pp) | \($r.meta.M) | \($r.meta.schedule) | \($r.meta.blas_threads) | \(.stage) | \(.layers | map("\(.[0])-\(.[1])") | join(",")) | \(.work_share | pct) | \(.compute_gflops | fmt(1)) | \(.gemm_peak_gflops | fmt(1)) | \(.peak_fraction | pct) | \(.compute_s | fmt(2)) | \(.bubble_s | fmt(2)) | \(.comm_s | fmt(2)) | \(.optim_s | fmt(2)) | \(.data_s | fmt(2)) | \(.total_s | fmt(2)) | \(.bubble_fraction | pct) | \(.theoretical_bubble | pct) | \(.bubble_ratio | x2) | \(.stash_bytes / 1048576 | fmt(1)) | \(.peak_rss_kib / 1024 | fmt(1)) |"),
    "",
    "### Activation stash of stage 0: 1F1B / GPipe",
    "",
    "| model | P | M | GPipe MiB | 1F1B MiB | 1F1B / GPipe | min(P, M) / M |",
    "|---|--:|--:|--:|--:|--:|--:|",
    ( [ .[] | select(.meta.blas_threads == 1) ] | group_by([.meta.model, .meta.P, .meta.M])[]
      | (map(select(.meta.schedule == "gpipe"))[0].ranks[0].stash_bytes) as $g
      | (map(select(.meta.schedule == "1f1b"))[0].ranks[0].stash_bytes) as $o
      | .[0].meta as $m
      | select($g != null and $o != null)
      | "| \($m.model) | \($m.P) | \($m.M) | \($g / 1048576 | fmt(1)) | \($o / 1048576 | fmt(1)) | \($o / $g | fmt(3)) | \((if $m.P < $m.M then $m.P else $m.M end) / $m.M | fmt(3)) |")
  ' "$OUT/results.json"
  echo
  echo "### Targets"
  echo
  jq -r "$JQ_DEFS"'
    def pick($m; $P; $M): [ .[] | select(.meta.model == $m and .meta.P == $P and .meta.M == $M and .meta.blas_threads == 1) ];
    def met(c): if c then "met" else "not met" end;
    . as $all
    | "| target | measured | |",
      "|---|---|---|",
      ( [ $all[] | select(.meta.model == "balanced" and .meta.P <= '"$CORES"' and .meta.blas_threads == 1) | .ranks[].peak_fraction ] as $f
        | "| per-rank compute ≥ 85 % of the 1-thread sgemm rate on the same shapes (balanced, P ≤ \('"$CORES"'), all M) | \($f | min | pct) – \($f | max | pct) | \(met(($f | min) >= 0.85)) |" ),
      ( [ $all[] | select(.meta.model == "mlp" and .meta.P <= '"$CORES"' and .meta.blas_threads == 1) | .ranks[].peak_fraction ] as $f
        | "| the same, mlp (ReLU + dropout, for comparison) | \($f | min | pct) – \($f | max | pct) | \(met(($f | min) >= 0.85)) |" ),
      ( pick("balanced"; 2; 16) as $r | select(($r | length) > 0)
        | ($r | map(.speedup_vs_p1) | min) as $s
        | "| balanced P=2 M=16 ≥ 1.8× P=1 (1 thread, same batch and micro-batch) | \($r | map("\(.meta.schedule) \(.speedup_vs_p1 | x2)") | join(", ")) | \(met($s >= 1.8)) |" ),
      ( [ $all[] | select(.meta.model == "balanced" and .meta.P == 2 and .meta.blas_threads == 1) ] as $r | select(($r | length) > 0)
        | ([ $r[].ranks[].bubble_ratio ] | max) as $w
        | "| measured bubble ≤ 1.15× theoretical (balanced, P=2, worst stage) | \($r | map("M=\(.meta.M) \(.meta.schedule) \([.ranks[].bubble_ratio] | max | x2)") | join(", ")) | \(met($w <= 1.15)) |" ),
      ( [ $all[] | select(.meta.P > 1 and .meta.blas_threads == 1) ] | group_by([.meta.model, .meta.P, .meta.M])
        | map( (map(select(.meta.schedule == "gpipe"))[0].ranks[0].stash_bytes) as $g
             | (map(select(.meta.schedule == "1f1b"))[0].ranks[0].stash_bytes) as $o
             | .[0].meta as $m | select($g != null and $o != null)
             | (($o / $g) / ((if $m.P < $m.M then $m.P else $m.M end) / $m.M))) as $q
        | select(($q | length) > 0)
        | "| 1F1B stage-0 stash ≈ P/M of GPipe’s (all models, P > 1) | (1F1B/GPipe) / (P/M) = \($q | min | fmt(3)) – \($q | max | fmt(3)) | \(met(($q | min) >= 0.95 and ($q | max) <= 1.05)) |" )
  ' "$OUT/results.json"
} | tee "$OUT/report.md"
echo >&2
echo "pipeline.sh: results in $OUT (report.md, results.json, runs/, logs/, sgemm.csv)" >&2
