#!/usr/bin/env bash
# bench/transport.sh — the pipeline bubble and throughput per MPI transport.
#
# Transfers advance only while a rank is inside MPI. With Open MPI's
# single-copy path (CMA) on one host the receiver pulls a whole activation in
# its wait; without it (`--mca btl_vader_single_copy_mechanism none`) and
# over TCP between hosts, both ranks must call into MPI while a message
# moves. pipetrain lets one call queue a whole message (comm_init sets Open
# MPI's pml_ob1_send_pipeline_depth to 64 unless the environment sets it:
# OMPI_MCA_pml_ob1_send_pipeline_depth=3 measures the library's default) and
# can run a progress thread (pipeline.progress_us). This script trains the
# balanced model (bench/configs/balanced.ini, as bench/pipeline.sh runs it)
# and the byte-level GPT (examples/gpt_bytes.ini, as bench/gpt.sh runs it)
# with P = 2, M = 16, 1F1B, one BLAS thread per rank, on each transport:
#   shm        shared memory with single copy (Open MPI's default on one host)
#   shm-copy   shared memory without it (btl_vader_single_copy_mechanism none)
#   tcp        two network-namespace hosts over TCP, unshaped
#   tcp-RATE   the same, shaped to RATE (BENCH_TCP_RATES, e.g. "1gbit")
# The TCP rows need tests/cluster/hosts.sh (hosts_up, hosts_mpirun,
# hosts_shape, hosts_unshape, hosts_down, hosts_available); without it, or
# when hosts_available says no, they are skipped with the reason.
# Each runs without the progress thread (pipeline.progress_us = 0, the
# default) and with it every 200 µs (BENCH_PROGRESS). Every (model, transport,
# progress) runs BENCH_REPS times (default 3), interleaved (repetition after
# repetition over all of them), so that the load of other processes falls on
# all alike; the table shows medians, and the ratio of a row's stage-0 bubble
# to that of shm with the same model and progress setting.
#
# Usage: bench/transport.sh [--quick] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=/tmp/pipetrain-bench-transport

usage() {
  cat <<EOF
usage: bench/transport.sh [--quick] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]

Stage-0 bubble and throughput of P = 2, M = 16, 1F1B on the balanced model and
the byte-level GPT over shared memory with single copy (shm), without it
(shm-copy) and, when tests/cluster/hosts.sh can start two hosts, over TCP (tcp,
and tcp-RATE for each rate of BENCH_TCP_RATES), each with and without the
progress thread (pipeline.progress_us = 0 and 200). Prints a markdown table
(transport, progress, model, throughput, stage-0 bubble, theory, ratio to
shm's bubble) and writes into the results directory:
  runs/*.json        the JSON summary of every run (log.summary), unchanged
  runs/*.meta.json   how it was run: launcher and options, wall time, CPU used by others
  logs/*.log         each run's output
  results.json       all runs
  report.md          the table printed to stdout

  --quick      smoke run: 2 steps per run, one repetition
$(bench_options_help)

environment: BENCH_REPS (repetitions, default 3), BENCH_MODELS ("balanced gpt"),
BENCH_PROGRESS (pipeline.progress_us values, default "0 200"),
BENCH_TRANSPORTS ("shm shm-copy tcp"), BENCH_TCP_RATES (shaped TCP rows, e.g.
"1gbit"; default none), BENCH_STEPS (steps per run; default balanced 8, gpt 8).
EOF
}

BENCH=transport.sh
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
bench_parse_args "$@"
bench_setup

# ---- the plan ----------------------------------------------------------------
REPS=${BENCH_REPS:-3}
declare -A STEPS=([balanced]=8 [gpt]=8)
if [ "$QUICK" = 1 ]; then REPS=1; STEPS=([balanced]=2 [gpt]=2); fi
if [ -n "${BENCH_STEPS:-}" ]; then STEPS=([balanced]=$BENCH_STEPS [gpt]=$BENCH_STEPS); fi
read -ra MODELS <<<"${BENCH_MODELS:-balanced gpt}"
read -ra TRANSPORTS <<<"${BENCH_TRANSPORTS:-shm shm-copy tcp}"
read -ra RATES <<<"${BENCH_TCP_RATES:-}"
read -ra PROGRESS <<<"${BENCH_PROGRESS:-0 200}"
P=2
M=16
declare -A CONFIG=([balanced]=bench/configs/balanced.ini [gpt]=examples/gpt_bytes.ini)
# the sets of bench/pipeline.sh (balanced, batch 2048) and bench/gpt.sh (batch 64)
declare -A SETS=(
  [balanced]="data.dataset=synthetic data.synthetic_features=16 data.synthetic_classes=10 data.synthetic_samples=2048 train.batch_size=2048 train.log_every=0 checkpoint.dir= pipeline.partition=cost"
  [gpt]="train.batch_size=64 train.log_every=0 train.eval_every=0 train.warmup_steps=0 data.val_contexts=8 checkpoint.dir= pipeline.partition=cost")
CONTEXT=$(sed -n 's/^[[:space:]]*context[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$REPO/${CONFIG[gpt]}" | sed -n 1p)
declare -A SCALE=([balanced]=1 [gpt]=${CONTEXT:-128}) UNIT=([balanced]=samples/s [gpt]=tokens/s)

# ---- TCP between two hosts (tests/cluster/hosts.sh) ----------------------------------
TCP_SKIPPED=
want_tcp=0
for t in "${TRANSPORTS[@]}"; do [ "$t" = tcp ] && want_tcp=1; done
if [ "$want_tcp" = 1 ]; then
  if [ ! -f "$REPO/tests/cluster/hosts.sh" ]; then
    TCP_SKIPPED="tests/cluster/hosts.sh is not in this tree"
  else
    # shellcheck source=/dev/null
    . "$REPO/tests/cluster/hosts.sh"
    if ! why=$(hosts_available 2>&1); then
      TCP_SKIPPED="hosts_available: ${why:-no}"
    else
      trap 'hosts_down >/dev/null 2>&1 || true' EXIT
      trap 'exit 130' INT TERM
      # not in a subshell: hosts_up records its hosts in this shell (HOSTS_STATE)
      hosts_up 2 >"$OUT/hosts_up.log" 2>&1 || TCP_SKIPPED="hosts_up 2 failed: $(tail -n 1 "$OUT/hosts_up.log")"
    fi
  fi
fi
ROWS=()
for t in "${TRANSPORTS[@]}"; do
  if [ "$t" = tcp ]; then
    [ -n "$TCP_SKIPPED" ] && { echo "$BENCH: TCP rows skipped: $TCP_SKIPPED" >&2; continue; }
    ROWS+=(tcp)
    for r in "${RATES[@]}"; do ROWS+=("tcp-$r"); done
  else
    ROWS+=("$t")
  fi
done

# ---- one run -----------------------------------------------------------------------
# run_one MODEL TRANSPORT PROGRESS_US REP: trains MODEL with P = 2, M = 16 over
# TRANSPORT with pipeline.progress_us = PROGRESS_US; summary in runs/NAME.json,
# output in logs/NAME.log, how in runs/NAME.meta.json.
run_one() {
  local model=$1 tr=$2 pu=$3 rep=$4
  local name="${model}_${tr}_p${pu}_r${rep}" args=() s launch=() attempt=0 others wall
  for s in ${SETS[$model]} "train.steps=${STEPS[$model]}" train.blas_threads=1 "pipeline.micro_batches=$M" \
    pipeline.schedule=1f1b "pipeline.progress_us=$pu" "log.summary=$OUT/runs/$name.json"; do args+=(--set "$s"); done
  case "$tr" in
    shm) launch=(mpirun -np "$P" --bind-to core) ;;
    shm-copy) launch=(mpirun -np "$P" --bind-to core --mca btl_vader_single_copy_mechanism none) ;;
    tcp | tcp-*) launch=(hosts_mpirun -np "$P") ;;
  esac
  if [ "$KEEP" = 1 ] && [ -s "$OUT/runs/$name.json" ] && [ -s "$OUT/runs/$name.meta.json" ] &&
     jq -e --argjson l "$BUSY_LIMIT" '.others_cpus <= $l' "$OUT/runs/$name.meta.json" >/dev/null &&
     jq -e --argjson steps "${STEPS[$model]}" '.steps == $steps' "$OUT/runs/$name.json" >/dev/null; then
    echo "$name" >>"$RUN_LIST"
    echo "$BENCH: $name: kept" >&2
    return
  fi
  case "$tr" in
    tcp) hosts_unshape >/dev/null 2>&1 || true ;;
    tcp-*) hosts_shape "${tr#tcp-}" ;;
  esac
  bench_run_retried "$name" "${launch[@]}" "$PIPETRAIN" train "$REPO/${CONFIG[$model]}" "${args[@]}"
  others=$OTHERS wall=$WALL attempt=$ATTEMPT
  jq -n --arg model "$model" --arg tr "$tr" --argjson pu "$pu" --argjson rep "$rep" --arg launch "${launch[*]}" \
    --argjson others "$others" --argjson wall "$wall" --argjson retries "$attempt" \
    --arg date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" --argjson scale "${SCALE[$model]}" --arg unit "${UNIT[$model]}" \
    '{model: $model, transport: $tr, progress_us: $pu, rep: $rep, M: '"$M"', schedule: "1f1b", P: '"$P"', blas_threads: 1,
      mpirun: $launch, wall_s: $wall, others_cpus: $others, retries: $retries, date: $date,
      rate_scale: $scale, rate_unit: $unit}' >"$OUT/runs/$name.meta.json"
  echo "$name" >>"$RUN_LIST"
  printf '%s: %-26s %8.0f %s, stage-0 bubble %5.1f %%  (%s s, others %s CPU)\n' "$BENCH" "$name" \
    "$(jq --argjson k "${SCALE[$model]}" '.throughput_samples_per_s * $k' "$OUT/runs/$name.json")" "${UNIT[$model]}" \
    "$(jq '.ranks[0].bubble_fraction * 100' "$OUT/runs/$name.json")" "$wall" "$others" >&2
}

bench_begin
for rep in $(seq 1 "$REPS"); do
  for model in "${MODELS[@]}"; do
    for tr in "${ROWS[@]}"; do
      for pu in "${PROGRESS[@]}"; do run_one "$model" "$tr" "$pu" "$rep"; done
    done
  done
done
bench_end
[ -n "$TCP_SKIPPED" ] || [ "$want_tcp" = 0 ] || hosts_unshape >/dev/null 2>&1 || true
bench_collect_runs >"$OUT/results.json"
rm -f "$TIMES_FILE" "$RUN_LIST"

# ---- the report ----------------------------------------------------------------------
{
  echo "## Transports: stage-0 bubble and throughput ($([ "$QUICK" = 1 ] && echo "quick smoke run" || echo "full run"))"
  echo
  jq -r --arg start "$START_DATE" --arg dur "$(bench_seconds)" \
    '"- this invocation: \($start), \($dur) s, \(length) runs"' "$OUT/results.json"
  echo "- machine: $(bench_cpu_model), $CORES cores; load average before: $START_LOAD; after: $END_LOAD"
  echo "- P = $P, M = $M, 1F1B, 1 BLAS thread per rank; balanced: ${STEPS[balanced]} steps of 2048 samples (bench/pipeline.sh's runs); gpt: ${STEPS[gpt]} steps of 64 × ${CONTEXT:-128} tokens (bench/gpt.sh's runs); $REPS repetitions, interleaved; medians (min–max)"
  echo "- shm: \`mpirun -np 2 --bind-to core\`; shm-copy: the same with \`--mca btl_vader_single_copy_mechanism none\`; tcp: \`hosts_mpirun\` (tests/cluster/hosts.sh: two network-namespace hosts, TCP only, \`--bind-to none\`)"
  [ -z "$TCP_SKIPPED" ] || echo "- TCP rows skipped: $TCP_SKIPPED"
  echo "- progress: pipeline.progress_us (µs between the progress thread's calls into MPI; 0: no thread)"
  echo "- bubble = stage 0's time blocked on receives / its total; theory = (P−1)/(M+P−1); ratio = the row's median bubble / shm's, same model and progress; \`*\`: other processes used more than $BUSY_LIMIT CPU during some run of the row"
  echo
  jq -r --argjson limit "$BUSY_LIMIT" '
    def fmt($d): if . == null then "–" else (. * pow(10; $d) | round / pow(10; $d) | tostring) end;
    def pct: if . == null then "–" else "\(. * 1000 | round / 10) %" end;
    def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    (group_by([.meta.model, .meta.progress_us]) | map({key: "\(.[0].meta.model) \(.[0].meta.progress_us)", value: (map(select(.meta.transport == "shm") | .summary.ranks[0].bubble_fraction) | median)}) | from_entries) as $shm
    | "| transport | progress µs | model | throughput | stage-0 bubble | theory | ratio to shm | runs |",
      "|---|--:|---|--:|--:|--:|--:|--:|",
      (group_by([.meta.model, .meta.transport, .meta.progress_us])
       | sort_by(.[0].meta.model, (.[0].meta.transport | if . == "shm" then 0 elif . == "shm-copy" then 1 elif . == "tcp" then 2 else 3 end), .[0].meta.progress_us)[]
       | . as $g | .[0].meta as $m
       | (map(.summary.throughput_samples_per_s * .meta.rate_scale)) as $t
       | (map(.summary.ranks[0].bubble_fraction)) as $b
       | (if any(.[]; .meta.others_cpus > $limit) then " *" else "" end) as $mark
       | $shm["\($m.model) \($m.progress_us)"] as $ref
       | "| \($m.transport) | \($m.progress_us) | \($m.model) | \($t | median | fmt(0)) \($m.rate_unit) (\($t | min | fmt(0))–\($t | max | fmt(0)))\($mark) | \($b | median | pct) (\($b | min | pct)–\($b | max | pct)) | \(.[0].summary.theoretical_bubble | pct) | \(if $ref then ($b | median) / $ref | fmt(2) | "\(.)×" else "–" end) | \(length) |")
  ' "$OUT/results.json"
} | tee "$OUT/report.md"
echo >&2
echo "transport.sh: results in $OUT (report.md, results.json, runs/, logs/)" >&2
