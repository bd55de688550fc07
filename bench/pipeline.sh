#!/usr/bin/env bash
# bench/pipeline.sh — pipeline-parallel training throughput of pipetrain.
#
# For two models, the balanced model (bench/configs/balanced.ini) and the
# example MLP (examples/fashion_mlp.ini), it trains with P = 1, 2 and 4
# pipeline stages (P = 4 oversubscribes a 2-core machine and is kept only for
# the record), M = 4, 8, 16, 32 micro-batches, the GPipe and 1F1B schedules,
# one BLAS thread per rank, and P = 1 with 2 BLAS threads as a second
# baseline. Every run has the same global batch, so a given M means the same
# micro-batch rows at every P. From each run's JSON summary (log.summary) it
# reports throughput, each stage's share of the work, the measured bubble
# beside the theoretical (P-1)/(M+P-1), GFLOP/s per rank as a fraction of the
# 1-thread cblas_sgemm rate on the same matrix shapes (bench/sgemm_peak
# --shape), stash and peak RSS, speedups and the 1F1B/GPipe stash ratio.
#
# On a shared machine, --keep re-runs only what other processes disturbed.
#
# Usage: bench/pipeline.sh [--quick] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=/tmp/pipetrain-bench
BUILD=$REPO/build
QUICK=0
KEEP=0
RETRIES=
BUSY_LIMIT=0.05 # CPUs' worth of other processes above which a run is marked (and retried)

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
  --out DIR    results directory (default $OUT)
  --build DIR  Release build tree holding pipetrain and bench/sgemm_peak
               (default $BUILD; cmake -S . -B build -DCMAKE_BUILD_TYPE=Release)
  --retries N  re-run a run up to N times when other processes used more than
               $BUSY_LIMIT CPU during it, and re-measure sgemm points they
               disturbed (default 1; 0 with --quick)
  --keep       reuse the runs already in the results directory during which
               other processes used at most $BUSY_LIMIT CPU, and the sgemm figures;
               re-run the rest (same options as before)
  --help       print this help and exit
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --out) [ $# -ge 2 ] || { echo "pipeline.sh: --out needs a directory" >&2; exit 2; }; OUT=$2; shift ;;
    --build) [ $# -ge 2 ] || { echo "pipeline.sh: --build needs a directory" >&2; exit 2; }; BUILD=$2; shift ;;
    --retries)
      [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || { echo "pipeline.sh: --retries needs an integer >= 0" >&2; exit 2; }
      RETRIES=$2; shift ;;
    *) echo "pipeline.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

PIPETRAIN=$BUILD/pipetrain
SGEMM=$BUILD/bench/sgemm_peak
for exe in "$PIPETRAIN" "$SGEMM"; do
  [ -x "$exe" ] || { echo "pipeline.sh: $exe not found; build first: cmake -S $REPO -B $BUILD -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD -j2" >&2; exit 1; }
done
for tool in jq mpirun awk; do
  command -v "$tool" >/dev/null || { echo "pipeline.sh: '$tool' not found (scripts/setup.sh installs jq and Open MPI)" >&2; exit 1; }
done
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
CORES=$(nproc)
[ -n "$RETRIES" ] || RETRIES=$((1 - QUICK))

# ---- the plan ----------------------------------------------------------------
if [ "$QUICK" = 1 ]; then
  BATCH=256; PS=(1 2); MS=(4 8); SCHEDS=(gpipe 1f1b)
  declare -A STEPS=([balanced]=2 [mlp]=2)
else
  BATCH=2048; PS=(1 2 4); MS=(4 8 16 32); SCHEDS=(gpipe 1f1b)
  # about 5 s or more for the fastest run (P = 2, M = 32) of each model
  declare -A STEPS=([balanced]=8 [mlp]=24)
fi
MODELS=(balanced mlp)
declare -A CONFIG=([balanced]=bench/configs/balanced.ini [mlp]=examples/fashion_mlp.ini)
declare -A FEATURES=([balanced]=16 [mlp]=784)
# the MLP's schedule has a 100-step warm-up; runs here are shorter
declare -A EXTRA=([balanced]="" [mlp]="train.warmup_steps=0 train.lr_schedule=constant")

mkdir -p "$OUT/runs" "$OUT/logs"
[ "$KEEP" = 1 ] || rm -f "$OUT"/runs/*.json "$OUT"/logs/*.log "$OUT"/sgemm.* "$OUT"/sgemm-retry*.txt

# ---- the models' layers, as JSON: [{kind, in, out}] --------------------------
# (in/out only for linear layers; the widths follow from the input width)
layers_json() {
  local ini=$1 width=$2 spec item kind n sep="" json="["
  spec=$(sed -n 's/^[[:space:]]*layers[[:space:]]*=[[:space:]]*//p' "$REPO/$ini" | head -1)
  [ -n "$spec" ] || { echo "pipeline.sh: no 'layers =' line in $ini" >&2; exit 1; }
  IFS=',' read -ra items <<<"$spec"
  for item in "${items[@]}"; do
    read -r kind n _ <<<"$item"
    if [ "$kind" = linear ]; then
      json+="$sep{\"kind\":\"linear\",\"in\":$width,\"out\":$n}"
      width=$n
    else
      json+="$sep{\"kind\":\"$kind\"}"
    fi
    sep=","
  done
  echo "$json]"
}

{
  echo "{"
  sep=""
  for m in "${MODELS[@]}"; do
    printf '%s"%s":{"config":"%s","features":%s,"steps":%s,"layers":%s}\n' "$sep" "$m" \
      "${CONFIG[$m]}" "${FEATURES[$m]}" "${STEPS[$m]}" "$(layers_json "${CONFIG[$m]}" "${FEATURES[$m]}")"
    sep=","
  done
  echo "}"
} >"$OUT/models.json"

# The matrix products of a stage's linear layers for micro-batch rows b, as
# sgemm_peak names them (MxNxK_TATB; see linear_forward/linear_backward):
# forward NT, input gradient NN (not for global layer 0), weight gradient TN.
JQ_DEFS='
def gemms($layers; $first; $last; $b):
  [ range($first; $last + 1) as $l | $layers[$l] | select(.kind == "linear")
    | (2 * $b * .in * .out) as $f
    | {k: "\($b)x\(.out)x\(.in)_NT", f: $f},
      (if $l > 0 then {k: "\($b)x\(.in)x\(.out)_NN", f: $f} else empty end),
      {k: "\(.out)x\(.in)x\($b)_TN", f: $f} ];
def fmt($d):
  if . == null then "—"
  else ((. * pow(10; $d)) | round) as $n
    | if $d == 0 then ($n | tostring)
      else ($n | fabs | tostring) as $s
        | ((if ($d + 1 - ($s | length)) > 0 then "0" * ($d + 1 - ($s | length)) else "" end) + $s)
        | .[0:length - $d] + "." + .[length - $d:]
        | (if $n < 0 then "-" + . else . end)
      end
  end;
def pct: if . == null then "—" else (. * 100 | fmt(1)) + "%" end;
def x2: if . == null then "—" else (fmt(2)) + "×" end;
'

# ---- sgemm peak on exactly the models' shapes ----------------------------------
ROWS=()
for M in "${MS[@]}"; do ROWS+=($((BATCH / M))); done
shape_args=()
while read -r s; do shape_args+=(--shape "$s"); done < <(
  jq -r --argjson rows "[$(IFS=,; echo "${ROWS[*]}")]" "$JQ_DEFS"'
    [ .[] | .layers as $L | $rows[] as $b | gemms($L; 0; ($L | length) - 1; $b)[] | .k ]
    | unique[] | capture("^(?<m>[0-9]+)x(?<n>[0-9]+)x(?<k>[0-9]+)_(?<a>.)(?<b>.)$")
    | "\(.m),\(.n),\(.k),\(.a),\(.b)"' "$OUT/models.json")
# Each point is timed as in sgemm_peak (best of 3 repeats). Points during
# which other processes used more than 0.1 CPU (marked '*') are measured
# again, up to --retries times; a shape's rate is the best over all its
# measurements (others can only slow a measurement down).
sg_opts=(--threads 1)
[ "$QUICK" = 1 ] && sg_opts+=(--quick)
sg_key="${sg_opts[*]} ${shape_args[*]}"
sgemm_points() { # txt file, pass -> "name best median busy pass" lines
  awk -v pass="$2" '$1 ~ /^[0-9]+x[0-9]+x[0-9]+_[NT][NT]$/ {print $1, $8, $9, ($NF == "*"), pass}' "$1"
}
sgemm_unsettled() { # shapes with no measurement free of others, as sgemm_peak --shape arguments
  awk '{clean[$1] += !$4; seen[$1] = 1} END {for (n in seen) if (!clean[n]) print n}' "$OUT/sgemm.points" |
    sed -E 's/^([0-9]+)x([0-9]+)x([0-9]+)_(.)(.)$/--shape \1,\2,\3,\4,\5/'
}
if [ "$KEEP" = 1 ] && [ -s "$OUT/sgemm.points" ] && [ "$(cat "$OUT/sgemm.key" 2>/dev/null)" = "$sg_key" ]; then
  echo "pipeline.sh: keeping the sgemm figures in $OUT/sgemm.points" >&2
  pass=$(awk '$5 > p {p = $5} END {print p + 0}' "$OUT/sgemm.points")
else
  echo "pipeline.sh: sgemm_peak on $((${#shape_args[@]} / 2)) matrix shapes (1 thread)" >&2
  "$SGEMM" "${sg_opts[@]}" "${shape_args[@]}" >"$OUT/sgemm.txt"
  sgemm_points "$OUT/sgemm.txt" 0 >"$OUT/sgemm.points"
  echo "$sg_key" >"$OUT/sgemm.key"
  pass=0
fi
while :; do
  mapfile -t again < <(sgemm_unsettled)
  [ "${#again[@]}" -gt 0 ] && [ "$pass" -lt "$RETRIES" ] || break
  pass=$((pass + 1))
  echo "pipeline.sh: ${#again[@]} sgemm points were disturbed by other processes; measuring them again in 20 s" >&2
  sleep 20
  # shellcheck disable=SC2086 # each line is "--shape M,N,K,TA,TB"
  "$SGEMM" "${sg_opts[@]}" ${again[*]} >"$OUT/sgemm-retry$pass.txt"
  sgemm_points "$OUT/sgemm-retry$pass.txt" "$pass" >>"$OUT/sgemm.points"
done
# name,m,n,k,transa,transb,threads,gflops_best,gflops_median,measurements,clean_measurements
awk '{if (!($1 in best) || $2 > best[$1]) {best[$1] = $2; med[$1] = $3}; n[$1]++; clean[$1] += !$4}
     END {for (k in best) {split(k, d, /[x_]/)
            printf "%s,%s,%s,%s,%s,%s,1,%s,%s,%d,%d\n", k, d[1], d[2], d[3], substr(d[4], 1, 1), substr(d[4], 2, 1), best[k], med[k], n[k], clean[k]}}' \
  "$OUT/sgemm.points" | sort | sed '1i name,m,n,k,transa,transb,threads,gflops_best,gflops_median,measurements,clean_measurements' >"$OUT/sgemm.csv"
SG_UNSETTLED=$(awk -F, 'NR > 1 && $11 == 0' "$OUT/sgemm.csv" | wc -l)
tail -n +2 "$OUT/sgemm.csv" | awk -F, 'BEGIN {printf "{"} {printf "%s\"%s\":%s", (NR > 1 ? "," : ""), $1, $8} END {print "}"}' >"$OUT/sgemm.json"

# ---- CPU used by other processes during a run ----------------------------------
# Busy CPU seconds of the whole machine (/proc/stat, steal included) minus the
# CPU seconds of this shell and its children (bash's `times`, which counts the
# ranks once mpirun has waited for them).
CLK_TCK=$(getconf CLK_TCK)
TIMES_FILE=$OUT/.times
machine_busy() { awk -v t="$CLK_TCK" '/^cpu / {print ($2 + $3 + $4 + $7 + $8 + $9) / t; exit}' /proc/stat; }
own_cpu() { # sets OWN_CPU; must not run in a subshell ($(...)), whose `times` starts at zero
  times >"$TIMES_FILE"
  OWN_CPU=$(awk '{for (i = 1; i <= NF; i++) {split($i, a, "m"); s += a[1] * 60 + substr(a[2], 1, length(a[2]) - 1)}} END {printf "%.3f\n", s}' "$TIMES_FILE")
}
now_s() { date +%s.%N; }

# ---- one run -----------------------------------------------------------------------
RUN_LIST=$OUT/.runs
: >"$RUN_LIST"
run_one() { # model P M schedule threads
  local model=$1 P=$2 M=$3 sched=$4 threads=$5
  local name="${model}_P${P}_M${M}_${sched}_t${threads}"
  local bind=(--bind-to core)
  if [ "$P" -gt "$CORES" ]; then
    bind=(--oversubscribe --bind-to none)
  elif [ $((P * threads)) -gt "$P" ]; then
    bind=(--bind-to none) # a rank's BLAS threads need more than its one core
  fi
  local sets=(data.dataset=synthetic "data.synthetic_features=${FEATURES[$model]}" data.synthetic_classes=10
              "data.synthetic_samples=$BATCH" "train.batch_size=$BATCH" "train.steps=${STEPS[$model]}"
              train.log_every=0 checkpoint.dir= "train.blas_threads=$threads" "pipeline.micro_batches=$M"
              "pipeline.schedule=$sched" pipeline.partition=cost "log.summary=$OUT/runs/$name.json")
  local s
  for s in ${EXTRA[$model]}; do sets+=("$s"); done
  local args=()
  for s in "${sets[@]}"; do args+=(--set "$s"); done
  local attempt=0 others wall
  local spec
  spec="${FEATURES[$model]}: $(jq -c --arg m "$model" '.[$m].layers' "$OUT/models.json")"
  if [ "$KEEP" = 1 ] && [ -s "$OUT/runs/$name.json" ] && [ -s "$OUT/runs/$name.meta.json" ] &&
     jq -e --argjson l "$BUSY_LIMIT" --arg spec "$spec" '.others_cpus <= $l and .model_spec == $spec' \
       "$OUT/runs/$name.meta.json" >/dev/null &&
     jq -e --argjson steps "${STEPS[$model]}" --argjson batch "$BATCH" \
       '.steps == $steps and .batch_size == $batch' "$OUT/runs/$name.json" >/dev/null; then
    echo "$name" >>"$RUN_LIST"
    echo "pipeline.sh: $name: kept (others $(jq .others_cpus "$OUT/runs/$name.meta.json") CPU)" >&2
    return
  fi
  while :; do
    local b0 c0 t0 b1 c1 t1
    b0=$(machine_busy); own_cpu; c0=$OWN_CPU; t0=$(now_s)
    if ! (cd "$OUT" && mpirun -np "$P" "${bind[@]}" "$PIPETRAIN" train "$REPO/${CONFIG[$model]}" "${args[@]}" \
         >"$OUT/logs/$name.log" 2>&1); then
      echo "pipeline.sh: run $name failed; its output is in $OUT/logs/$name.log:" >&2
      tail -n 20 "$OUT/logs/$name.log" >&2
      exit 1
    fi
    t1=$(now_s); b1=$(machine_busy); own_cpu; c1=$OWN_CPU
    read -r others wall < <(awk -v b0="$b0" -v b1="$b1" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" \
      'BEGIN {o = ((b1 - b0) - (c1 - c0)) / (t1 - t0); if (o < 0) o = 0; printf "%.3f %.3f\n", o, t1 - t0}')
    if awk -v o="$others" -v l="$BUSY_LIMIT" 'BEGIN {exit !(o > l)}' && [ "$attempt" -lt "$RETRIES" ]; then
      attempt=$((attempt + 1))
      echo "pipeline.sh: $name: other processes used $others CPU; again in 20 s (retry $attempt of $RETRIES)" >&2
      sleep 20
      continue
    fi
    break
  done
  jq -n --arg model "$model" --argjson P "$P" --argjson M "$M" --arg schedule "$sched" \
    --argjson threads "$threads" --arg bind "${bind[*]}" --argjson others "$others" --argjson wall "$wall" \
    --argjson retries "$attempt" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
    --arg spec "$spec" \
    '{model: $model, model_spec: $spec, date: $date, P: $P, M: $M, schedule: $schedule, blas_threads: $threads,
      mpirun: ("mpirun -np \($P) " + $bind), wall_s: $wall, others_cpus: $others,
      retries: $retries, loadavg_after: $load}' >"$OUT/runs/$name.meta.json"
  echo "$name" >>"$RUN_LIST"
  printf 'pipeline.sh: %-28s %7.0f samples/s  (%s s, others %s CPU)\n' "$name" \
    "$(jq .throughput_samples_per_s "$OUT/runs/$name.json")" "$wall" "$others" >&2
}

START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
T_START=$(now_s)
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
T_END=$(now_s)
END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- derived figures ---------------------------------------------------------------
{
  echo "["
  sep=""
  while read -r name; do
    printf '%s{"meta":%s,"summary":%s}\n' "$sep" "$(cat "$OUT/runs/$name.meta.json")" "$(cat "$OUT/runs/$name.json")"
    sep=","
  done <"$RUN_LIST"
  echo "]"
} >"$OUT/.raw.json"

jq --slurpfile models "$OUT/models.json" --slurpfile sg "$OUT/sgemm.json" "$JQ_DEFS"'
  $models[0] as $mod | $sg[0] as $peak
  | . as $all
  | def base($r; $t): [ $all[] | select(.meta.model == $r.meta.model and .meta.P == 1 and .meta.M == $r.meta.M
                        and .meta.blas_threads == $t and ($t == 2 or .meta.schedule == $r.meta.schedule))
                        | .summary.throughput_samples_per_s ] | first // null;
  [ .[] | . as $r | $mod[$r.meta.model].layers as $L | $r.summary.micro_batch_rows as $b
    | ($r.summary.ranks | map(.flops) | add) as $ftot
    | {meta, summary: ($r.summary | del(.ranks)),
       speedup_vs_p1: (base($r; 1) as $d | if $r.meta.P > 1 and $r.meta.blas_threads == 1 and $d != null then $r.summary.throughput_samples_per_s / $d else null end),
       speedup_vs_p1_2threads: (base($r; 2) as $d | if $r.meta.P > 1 and $r.meta.blas_threads == 1 and $d != null then $r.summary.throughput_samples_per_s / $d else null end),
       ranks: [ $r.summary.ranks[] | . as $k
         | gemms($L; $k.first_layer; $k.last_layer; $b) as $g
         | (if ($g | length) > 0 then ($g | map(.f) | add) / ($g | map(.f / $peak[.k]) | add) else null end) as $ep
         | $k + {work_share: ($k.flops / $ftot),
                 gemm_peak_gflops: $ep,
                 peak_fraction: (if $ep != null and $r.meta.blas_threads == 1 then $k.compute_gflops / $ep else null end),
                 theoretical_bubble: $r.summary.theoretical_bubble,
                 bubble_ratio: (if $r.summary.theoretical_bubble > 0 then $k.bubble_fraction / $r.summary.theoretical_bubble else null end)} ] } ]
' "$OUT/.raw.json" >"$OUT/results.json"
rm -f "$OUT/.raw.json" "$TIMES_FILE" "$RUN_LIST"

# ---- the report ----------------------------------------------------------------------
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)
{
  echo "## Pipeline benchmark ($([ "$QUICK" = 1 ] && echo "quick smoke run" || echo "full run"))"
  echo
  jq -r --arg start "$START_DATE" --arg dur "$(awk -v a="$T_START" -v b="$T_END" 'BEGIN {printf "%.0f", b - a}')" \
    '"- this invocation: \($start), \($dur) s; the \(length) runs finished between \(map(.meta.date // empty) | min) and \(map(.meta.date // empty) | max) (their own wall time, start-up and evaluation included: \(map(.meta.wall_s) | add | round) s)"' "$OUT/results.json"
  echo "- machine: $CPU_MODEL, $CORES cores; $(grep -m1 '^openblas' "$OUT/sgemm.txt" | sed 's/^openblas *//')"
  echo "- load average (1, 5, 15 min) before: $START_LOAD; after: $END_LOAD"
  echo "- global batch $BATCH samples (micro-batch rows = $BATCH / M), steps: balanced ${STEPS[balanced]}, mlp ${STEPS[mlp]};" \
       "synthetic data (test split $((BATCH / 4)) samples, evaluated after training and not part of the throughput)"
  echo "- balanced: ${FEATURES[balanced]} → linear 1024, relu → [linear 1024, relu] × 8 → linear 10; mlp: ${FEATURES[mlp]} → 1024 → 1024 → 1024 → 10, ReLU + dropout 0.2 (examples/fashion_mlp.ini on synthetic data)"
  echo "- partition = cost; P ≤ $CORES: \`--bind-to core\`, 1 BLAS thread per rank; P = 1 with 2 BLAS threads and P > $CORES: \`--bind-to none\` (P > $CORES also \`--oversubscribe\`)"
  echo "- sgemm reference: 1-thread \`sgemm_peak --shape\` best GFLOP/s on each stage's own products (best over all measurements; $SG_UNSETTLED of $((${#shape_args[@]} / 2)) shapes were disturbed by other processes in every measurement); a stage's reference is their FLOP-weighted harmonic mean (total FLOPs / Σ FLOPs_i / rate_i: the rate of that mix if every product ran as in sgemm_peak)"
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
      "| \($r.meta.model) | \($r | pp) | \($r.meta.M) | \($r.meta.schedule) | \($r.meta.blas_threads) | \(.stage) | \(.first_layer)-\(.last_layer) | \(.work_share | pct) | \(.compute_gflops | fmt(1)) | \(.gemm_peak_gflops | fmt(1)) | \(.peak_fraction | pct) | \(.compute_s | fmt(2)) | \(.bubble_s | fmt(2)) | \(.comm_s | fmt(2)) | \(.optim_s | fmt(2)) | \(.data_s | fmt(2)) | \(.total_s | fmt(2)) | \(.bubble_fraction | pct) | \(.theoretical_bubble | pct) | \(.bubble_ratio | x2) | \(.stash_bytes / 1048576 | fmt(1)) | \(.peak_rss_kib / 1024 | fmt(1)) |"),
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
