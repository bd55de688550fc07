#!/usr/bin/env bash
# bench/gpt.sh — training throughput of pipetrain's byte-level GPT.
#
# The model is examples/gpt_bytes.ini (embed 256 256, posembed, 4 × block 4
# causal, layernorm, lmhead 256, tied embeddings; context 128; the fortunes
# text). It trains with P = 1 and 2 pipeline stages, M = 4, 8, 16
# micro-batches, the 1F1B, GPipe, ZB-H1 and interleaved 1F1B (2 chunks) schedules (1F1B first), one BLAS thread
# per rank, and P = 1 with 2 BLAS threads as the second baseline. Every run
# has the same global batch, so a given M means the same micro-batch at every
# P. From each run's JSON summary (log.summary) it reports tokens/s, GFLOP/s
# per rank (the registry's FLOPs: attention's Q·Kᵀ and A·V count the full
# T×T) as a fraction of the cblas_sgemm rate on the model's own matrix shapes
# (bench/sgemm_peak --shape; 1 thread, and 2 threads for the 2-thread runs),
# speedups, and the measured bubble beside the schedule's theoretical one. With --profile it
# also runs P = 1 once under `perf record` and splits the compute time into
# sgemm, attention softmax, LayerNorm, GELU and the other element-wise work.
#
# The machinery (arguments, sgemm reference, runs, derived figures) is shared
# with bench/pipeline.sh through bench/lib.sh.
#
# Usage: bench/gpt.sh [--quick] [--profile] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=/tmp/pipetrain-bench-gpt
PROFILE=0
CONFIG=examples/gpt_bytes.ini

usage() {
  cat <<EOF
usage: bench/gpt.sh [--quick] [--profile] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]

GPT benchmark of pipetrain on $CONFIG (byte-level, context 128, the
fortunes text): P = 1 and 2 stages, M = 4, 8, 16 micro-batches, 1F1B and GPipe,
one BLAS thread per rank, plus P = 1 with 2 BLAS threads; global batch 64
samples (8192 tokens) per step, 8 steps per run.
Prints markdown tables and writes into the results directory:
  runs/*.json        the JSON summary of every run (log.summary), unchanged
  runs/*.meta.json   how it was run: mpirun options, wall time, CPU used by others
  logs/*.log         each run's output
  sgemm.txt, sgemm-t2.txt  bench/sgemm_peak --shape on the model's matrix shapes,
                     1 and 2 threads (sgemm*-retry*.txt: disturbed points again)
  sgemm.csv, sgemm-t2.csv  per shape: the best GFLOP/s over all measurements
  results.json       all runs with the derived figures
  profile/           with --profile: perf.data, perf-report.txt (flat), profile.tsv
  report.md          the tables printed to stdout

  --quick      smoke run: batch 16, M = 4, 8, 2 steps (about a minute)
  --profile    also run P = 1, 1 thread, M = 8 (--quick: 4), 1F1B once under
               \`perf record --call-graph dwarf\` (perf must be able to sample
               the cpu-clock event) and split its compute time by kernel
$(bench_options_help sgemm)

environment: BENCH_P, BENCH_M and BENCH_SCHEDULES narrow the plan to the listed values, e.g.
BENCH_P="1 2" BENCH_M=8 BENCH_SCHEDULES="1f1b zbh1" for a focused comparison.
The interleaved schedule runs BENCH_CHUNKS model chunks per rank (default 2);
layouts it cannot run (M not divisible by P, fewer layers than virtual stages)
are skipped with a message.
EOF
}
bench_option() { case "$1" in --profile) PROFILE=1 ;; *) return 1 ;; esac; }

BENCH=gpt.sh
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
bench_parse_args "$@"
if [ "$PROFILE" = 1 ]; then bench_setup perf; else bench_setup; fi

# ---- the plan ----------------------------------------------------------------
if [ "$QUICK" = 1 ]; then
  BATCH=16; PS=(1 2); MS=(4 8); SCHEDS=(1f1b gpipe zbh1 interleaved); STEPS=2; PROF_M=4; PROF_STEPS=2
else
  # P = 1 takes about 2.5 s a step; P = 2 (the fastest runs) still 10 s or more
  BATCH=64; PS=(1 2); MS=(4 8 16); SCHEDS=(1f1b gpipe zbh1 interleaved); STEPS=8; PROF_M=8; PROF_STEPS=4
fi
CONTEXT=$(sed -n 's/^[[:space:]]*context[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$REPO/$CONFIG" | sed -n 1p)
[ -n "$CONTEXT" ] || { echo "$BENCH: no 'context =' line in $CONFIG" >&2; exit 1; }
BENCH_RATE_SCALE=$CONTEXT
BENCH_RATE_UNIT=tokens/s
# a subset, for a focused comparison: BENCH_P="1 2" BENCH_M="8" BENCH_SCHEDULES="1f1b zbh1"
[ -n "${BENCH_P:-}" ] && read -ra PS <<<"$BENCH_P"
[ -n "${BENCH_M:-}" ] && read -ra MS <<<"$BENCH_M"
[ -n "${BENCH_SCHEDULES:-}" ] && read -ra SCHEDS <<<"$BENCH_SCHEDULES"
# evaluation after training is not part of the throughput; keep it short
COMMON_SETS=("train.batch_size=$BATCH" train.log_every=0 train.eval_every=0 train.warmup_steps=0
             data.val_contexts=8 checkpoint.dir= pipeline.partition=cost)

LAYERS=$(bench_layers_json "$CONFIG" "$CONTEXT" "$CONTEXT")
SPEC="context $CONTEXT: $(jq -c . <<<"$LAYERS")"
jq -n --arg config "$CONFIG" --argjson context "$CONTEXT" --argjson steps "$STEPS" --argjson layers "$LAYERS" \
  '{gpt: {config: $config, context: $context, steps: $steps, layers: $layers}}' >"$OUT/models.json"

# ---- sgemm rate on exactly the model's shapes (bench_sgemm_reference) ------------
# Micro-batch rows r = (BATCH / M)·CONTEXT tokens; see gemms in bench/lib.sh
# for the products of a block and of the lmhead. 1 thread for the 1-thread
# runs, 2 threads for the P = 1 runs with 2 BLAS threads.
bench_sgemm_references_1_2 "$BATCH" "${MS[@]}"

# ---- the runs ----------------------------------------------------------------------
run_one() { # P M schedule threads
  local P=$1 M=$2 sched=$3 threads=$4 why
  why=$(bench_schedule_fits "$sched" "$P" "$M" "$(jq length <<<"$LAYERS")") ||
    { echo "$BENCH: skipping P=$P M=$M $sched: $why" >&2; return 0; }
  local sets
  mapfile -t sets < <(bench_schedule_sets "$sched")
  bench_run "gpt_P${P}_M${M}_${sched}_t${threads}" "$P" "$threads" "$CONFIG" "$SPEC" "$STEPS" "$BATCH" \
    "{\"model\":\"gpt\",\"M\":$M,\"schedule\":\"$sched\"}" \
    "${COMMON_SETS[@]}" "train.steps=$STEPS" "train.blas_threads=$threads" \
    "pipeline.micro_batches=$M" "${sets[@]}"
}

bench_begin
for P in "${PS[@]}"; do
  for M in "${MS[@]}"; do
    for sched in "${SCHEDS[@]}"; do run_one "$P" "$M" "$sched" 1; done
    # the second baseline: one rank, both cores through 2 BLAS threads
    if [ "$P" = 1 ]; then
      if [ "$QUICK" = 0 ] || [ "$M" = "${MS[0]}" ]; then run_one 1 "$M" 1f1b 2; fi
    fi
  done
done

# ---- where a P = 1 rank's compute time goes (perf) ---------------------------------
# One P = 1 run under perf record (cpu-clock samples with DWARF call chains).
# Each sample of the training steps is attributed by its call chain: samples
# under stage_forward / stage_backward / the loss are compute; of those, a
# leaf in OpenBLAS is sgemm (split by the kernel that called it: linear
# layers and lmhead, or attention), the rest goes to the innermost pipetrain
# kernel on the chain (libm's tanhf and expm1f count for GELU, expf for its
# caller).
PROF_DIR=$OUT/profile
PROF_NAME=gpt_profile_P1_M${PROF_M}_1f1b_t1
profile_run() {
  local name=$PROF_NAME d=$PROF_DIR
  mkdir -p "$d"
  if [ "$KEEP" = 1 ] && [ -s "$d/profile.tsv" ] && [ -s "$d/$name.json" ] &&
     jq -e --argjson steps "$PROF_STEPS" --argjson batch "$BATCH" '.steps == $steps and .batch_size == $batch' "$d/$name.json" >/dev/null; then
    echo "$BENCH: $name: kept" >&2
    return
  fi
  local args=() s
  for s in "${COMMON_SETS[@]}" "train.steps=$PROF_STEPS" train.blas_threads=1 "pipeline.micro_batches=$PROF_M" \
           pipeline.schedule=1f1b "log.summary=$d/$name.json"; do args+=(--set "$s"); done
  echo "$BENCH: $name under perf record" >&2
  bench_mark_start
  if ! (cd "$OUT" && mpirun -np 1 --bind-to core perf record -q -e cpu-clock -F 499 --call-graph dwarf \
         -o "$d/perf.data" -- "$PIPETRAIN" train "$REPO/$CONFIG" "${args[@]}" >"$OUT/logs/$name.log" 2>&1); then
    echo "$BENCH: the profile run failed; its output is in $OUT/logs/$name.log:" >&2
    tail -n 20 "$OUT/logs/$name.log" >&2
    exit 1
  fi
  bench_mark_end
  echo "$OTHERS" >"$d/others_cpus"
  perf report -i "$d/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
    awk '!/^#/ && !/^$/ && ++n <= 40' >"$d/perf-report.txt"
  perf script -i "$d/perf.data" -F comm,ip,sym,dso 2>/dev/null | awk '
    BEGIN { RS = ""; FS = "\n"
            # the innermost of these on a sample'"'"'s chain names its kernel; the per-instruction-set copies
            # (name_avx512 etc.) count as their name, and softmax_row as its caller
            K = "^(linear_forward|linear_forward_residual|linear_forward_gelu_keep|linear_backward|colsum_accumulate|bias_add|bias_residual_add|bias_gelu_forward_keep|attention_forward|attention_backward|attention_softmax|attention_softmax_backward|layernorm_forward|layernorm_backward|layernorm_backward_add|layernorm_backward_input|layernorm_backward_weight|gelu_forward|gelu_backward|gelu_forward_keep|gelu_from_kept|gelu_backward_kept|softmax_xent_rows|block_fwd|block_bwd|lmhead_fwd|lmhead_bwd|softmax_xent_forward|softmax_xent_backward|embedding_forward|embedding_backward|embed_fwd|embed_bwd|posembed_forward|posembed_backward|posembed_fwd|posembed_bwd|stage_forward|stage_backward)$" }
    {
      train = 0; compute = 0; optim = 0; kern = ""; leaf = ""
      for (i = 2; i <= NF; i++) {
        line = $i
        sub(/^[ \t]*[0-9a-f]+ /, "", line)
        dso = line; sub(/^.* \(/, "", dso); sub(/\)$/, "", dso)
        sym = line; sub(/ \([^(]*\)$/, "", sym)
        if (i == 2) leaf = dso
        base = sym; sub(/_(portable|avx2|avx512)$/, "", base)
        if (kern == "" && base ~ K) kern = base
        if (sym == "executor_train_step") train = 1
        if (sym ~ /^(stage_forward|stage_backward|softmax_xent_forward|softmax_xent_backward)$/) compute = 1
        if (sym ~ /^optim_/) optim = 1
      }
      total++
      if (!train) { outside++; next }
      if (!compute) { step[optim ? "optimizer" : "other (communication, data, bookkeeping)"]++; next }
      if (leaf ~ /libopenblas/)
        c = kern ~ /^attention_/ ? "sgemm: attention" : kern ~ /^(linear_|lmhead_)/ ? "sgemm: linear layers and lmhead" : "sgemm: other"
      else if (kern ~ /^(gelu_|bias_gelu_)/) c = "GELU (with the bias add before it)"
      else if (kern ~ /^attention_/) c = "attention softmax and mask"
      else if (kern ~ /^layernorm_/) c = "LayerNorm (with the residual gradient added)"
      else if (kern ~ /^(linear_|colsum_accumulate|bias_)/) c = "bias add, bias gradient, residual adds"
      else if (kern ~ /^block_/) c = "block (other)"
      else if (kern ~ /^softmax_xent_/) c = "loss (softmax cross-entropy)"
      else if (kern ~ /^(embed|posembed)/) c = "embedding and position embedding"
      else if (kern ~ /^stage_/) c = "stage (copies, zeroing)"
      else c = "other"
      comp[c]++
    }
    END {
      for (c in comp) printf "compute\t%s\t%d\n", c, comp[c]
      for (c in step) printf "step\t%s\t%d\n", c, step[c]
      printf "outside\tset-up and evaluation\t%d\n", outside
    }' | sort -t$'\t' -k1,1 -k3,3nr >"$d/profile.tsv"
  [ -s "$d/profile.tsv" ] || { echo "$BENCH: perf script gave no samples; see $d/perf.data" >&2; exit 1; }
  echo "$BENCH: $name: $(jq '.throughput_samples_per_s * '"$CONTEXT" "$d/$name.json" | awk '{printf "%.0f", $1}') tokens/s under perf (others $(cat "$d/others_cpus") CPU)" >&2
}
if [ "$PROFILE" = 1 ]; then profile_run; fi
bench_end

# ---- derived figures (bench_derive) -------------------------------------------------
bench_derive "$OUT/models.json" "$OUT/sgemm.json" "$OUT/sgemm-t2.json"

# ---- the report ----------------------------------------------------------------------
{
  echo "## GPT benchmark ($([ "$QUICK" = 1 ] && echo "quick smoke run" || echo "full run"))"
  echo
  bench_header "$OUT/sgemm.txt"
  echo "- model: \`$CONFIG\` — embed 256 256, posembed, 4 × block 4 causal (C = 256, 4 heads of 64), layernorm, lmhead 256, tied embeddings; context $CONTEXT bytes of /usr/share/games/fortunes"
  echo "- global batch $BATCH samples = $((BATCH * CONTEXT)) tokens per step, $STEPS steps per run; micro-batch = $BATCH / M samples = $CONTEXT·$BATCH / M token rows; train.eval_every=0, data.val_contexts=8, checkpoint.dir empty, warm-up 0 (evaluation after training is not part of the throughput)"
  echo "- FLOPs: the layer registry's (the JSON summary's per-rank \`flops\`): forward $(jq -r '[.[] | select(.meta.P == 1)][0].summary as $s | [.[] | select(.meta.P == 1)][0].ranks[0].flops / $s.steps / $s.batch_size / 3 / 1e6 | round' "$OUT/results.json") MFLOP per sample, backward twice that; a block's Q·Kᵀ and A·V count 2·T²·C each, the full T×T though the mask is causal"
  echo "- partition = cost; P = 1 and 2 with 1 BLAS thread: \`--bind-to core\`; P = 1 with 2 BLAS threads: \`--bind-to none\`"
  echo "- sgemm reference of a rank: \`sgemm_peak --shape\` best GFLOP/s on each of its matrix products (linears r×768×256, r×256×256, r×1024×256, r×256×1024 and lmhead r×256×256 with their NN/TN backward products; attention per (sample, head) 128×128×64 NT and 128×64×128 NN/TN), combined as the FLOP-weighted harmonic mean (total FLOPs / Σ FLOPs_i / rate_i: the rate of that mix if every product ran as in sgemm_peak); 1 thread for the 1-thread runs, 2 threads for P = 1 with 2 threads ($SG1_UNSETTLED and $SG2_UNSETTLED of $SG_SHAPES shapes were disturbed by other processes in every measurement)"
  echo "- \`*\`: other processes used more than $BUSY_LIMIT CPU during the run"
  echo
  jq -r --argjson T "$CONTEXT" "$BENCH_JQ"'
    def mark: if .meta.others_cpus > '"$BUSY_LIMIT"' then " *" else "" end;
    . as $all
    | def p1($r; $t; $s): [ $all[] | select(.meta.P == 1 and .meta.M == $r.meta.M and .meta.blas_threads == $t and .meta.schedule == $s) | .summary.throughput_samples_per_s ] | first // null;
    "### Throughput",
    "",
    "GFLOP/s and % sgemm per rank (stage 0, stage 1); bubble = time blocked on receives / total, worst rank, beside the theoretical (P−1)/(M+P−1). Speedups at the same M (same micro-batches); × P=1 (1 thread) with the same schedule.",
    "",
    "| P | BLAS threads | M | tokens / micro-batch | schedule | tokens/s | GFLOP/s per rank | sgemm ref GFLOP/s | % of sgemm ref | × P=1 (1 thread) | × P=1 (2 threads) | bubble | theory | others CPU |",
    "|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    (.[] | . as $r
      | (if .meta.blas_threads == 2 then (p1($r; 1; .meta.schedule) as $d | if $d then .summary.throughput_samples_per_s / $d else null end) else .speedup_vs_p1 end) as $s1
      | "| \(.meta.P) | \(.meta.blas_threads) | \(.meta.M) | \(.summary.micro_batch_rows * $T) | \(.meta.schedule) | \(.summary.throughput_samples_per_s * $T | fmt(0))\(mark) | \(.ranks | map(.compute_gflops | fmt(1)) | join(", ")) | \(.ranks | map(.gemm_peak_gflops | fmt(1)) | join(", ")) | \(.ranks | map(.peak_fraction | pct) | join(", ")) | \($s1 | x2) | \(.speedup_vs_p1_2threads | x2) | \(.ranks | map(.bubble_fraction) | max | pct) | \(.summary.theoretical_bubble | pct) | \(.meta.others_cpus | fmt(2)) |"),
    "",
    "### Per rank",
    "",
    "Seconds over all training steps (total = the op lists plus the optimizer).",
    "",
    "| P | thr | M | sched | stage | layers | work | GFLOP/s | % sgemm | compute s | bubble s | comm s | optim s | data s | total s | bubble % | theory | ratio | stash MiB | peak RSS MiB |",
    "|--:|--:|--:|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    (.[] | . as $r | .ranks[] |
      "| \($r.meta.P) | \($r.meta.blas_threads) | \($r.meta.M) | \($r.meta.schedule) | \(.stage) | \(.layers | map("\(.[0])-\(.[1])") | join(",")) | \(.work_share | pct) | \(.compute_gflops | fmt(1)) | \(.peak_fraction | pct) | \(.compute_s | fmt(2)) | \(.bubble_s | fmt(2)) | \(.comm_s | fmt(2)) | \(.optim_s | fmt(2)) | \(.data_s | fmt(2)) | \(.total_s | fmt(2)) | \(.bubble_fraction | pct) | \(.theoretical_bubble | pct) | \(.bubble_ratio | x2) | \(.stash_bytes / 1048576 | fmt(1)) | \(.peak_rss_kib / 1024 | fmt(1)) |")
  ' "$OUT/results.json"
  echo
  echo "### sgemm on the model's shapes"
  echo
  echo "Best GFLOP/s of \`sgemm_peak --shape\` (packed operands; the attention products in the model read Q, K, V with a row stride of 3C = 768 floats). FLOP share: of all matrix FLOPs of a training step at that row count."
  echo
  jq -r --slurpfile m "$OUT/models.json" --argjson rows "$ROWS_JSON" --slurpfile s1 "$OUT/sgemm.json" --slurpfile s2 "$OUT/sgemm-t2.json" -n "$BENCH_JQ"'
    $m[0].gpt.layers as $L | $m[0].gpt.context as $T
    | "| products | shape M×N×K | op | rows | FLOP share | 1 thread | 2 threads |",
      "|---|---|:-:|--:|--:|--:|--:|",
      ( $rows[] as $b | gemms($L; 0; ($L | length) - 1; $b) as $g | ($g | map(.f) | add) as $tot
        | $g | group_by(.k)[] | (map(.f) | add) as $f | .[0].k as $k
        | ($k | capture("^(?<s>[0-9x]+)_(?<op>..)$")) as $c
        | "| \(map(.w) | unique | join("; ")) | \($c.s | gsub("x"; "×")) | \($c.op) | \($b * $T) | \($f / $tot | pct) | \($s1[0][$k] | fmt(1)) | \($s2[0][$k] | fmt(1)) |" )'
  if [ "$PROFILE" = 1 ]; then
    echo
    echo "### Where the compute time of a P = 1 rank goes (perf)"
    echo
    jq -r --slurpfile m "$OUT/models.json" --slurpfile s1 "$OUT/sgemm.json" --rawfile tsv "$PROF_DIR/profile.tsv" \
      --argjson T "$CONTEXT" --arg others "$(cat "$PROF_DIR/others_cpus")" --arg cmd "perf record -e cpu-clock -F 499 --call-graph dwarf" "$BENCH_JQ"'
      . as $r | $m[0].gpt.layers as $L | $r.micro_batches as $M
      | ($tsv | split("\n") | map(select(length > 0) | split("\t") | {where: .[0], what: .[1], n: (.[2] | tonumber)})) as $p
      | ($p | map(select(.where == "compute"))) as $c | ($c | map(.n) | add) as $cn
      | gemms($L; 0; ($L | length) - 1; $r.micro_batch_rows) as $g
      | (($g | map(.f) | add) / ($g | map(.f / $s1[0][.k]) | add)) as $ref
      | ($r.ranks[0] + {gemm_peak_gflops: $ref}) as $k
      | ($g | map(select(.w | startswith("attention")) | .f) | add * $M * $r.steps) as $fa
      | ($g | map(select(.w | startswith("attention") | not) | .f) | add * $M * $r.steps) as $fl
      | ($g | map(select(.w | startswith("attention")) | .f / $s1[0][.k]) | add * $M * $r.steps / 1e9) as $ta
      | ($g | map(select(.w | startswith("attention") | not) | .f / $s1[0][.k]) | add * $M * $r.steps / 1e9) as $tl
      | def share($re): ($c | map(select(.what | test($re)) | .n) | add // 0) / $cn;
      "Run: P = 1, 1 BLAS thread, M = \($M) (\($r.micro_batch_rows * $T) tokens per micro-batch), 1F1B, \($r.steps) steps, under `\($cmd)` (others used \($others) CPU); \($r.throughput_samples_per_s * $T | fmt(0)) tokens/s, compute \($k.compute_s | fmt(2)) s at \($k.compute_gflops | fmt(1)) GFLOP/s (\($k.compute_gflops / $k.gemm_peak_gflops | pct) of its sgemm reference \($k.gemm_peak_gflops | fmt(1))). \($cn) samples fell in the compute of the training steps; seconds = share × compute s. sgemm at reference: the time the products would take at the `sgemm_peak` rates.",
      "",
      "| where | share of compute | seconds | note |",
      "|---|--:|--:|---|",
      ( $c[] | (.n / $cn) as $s
        | "| \(.what) | \($s | pct) | \($s * $k.compute_s | fmt(2)) | \(
            if .what == "sgemm: linear layers and lmhead" then "\($fl / ($s * $k.compute_s) / 1e9 | fmt(1)) GFLOP/s; at reference \($tl | fmt(2)) s"
            elif .what == "sgemm: attention" then "\($fa / ($s * $k.compute_s) / 1e9 | fmt(1)) GFLOP/s; at reference \($ta | fmt(2)) s"
            else "" end) |" ),
      "",
      ( (share("^sgemm")) as $sg | (share("^GELU")) as $ge
        | "- all sgemm: \($sg | pct) of compute; the rank would run at \($k.flops / ($sg * $k.compute_s) / 1e9 | fmt(1)) GFLOP/s if nothing else took time (its products at the sgemm_peak rates would take \($tl + $ta | fmt(2)) s: \($k.flops / ($tl + $ta) / 1e9 | fmt(1)) GFLOP/s)",
          "- without the GELU time: \($k.flops / ((1 - $ge) * $k.compute_s) / 1e9 | fmt(1)) GFLOP/s (\($k.flops / ((1 - $ge) * $k.compute_s) / 1e9 / $k.gemm_peak_gflops | pct) of the reference)" ),
      ( $p | map(select(.where != "compute"))[] | "- outside compute: \(.what): \(.n) samples" )
    ' "$PROF_DIR/$PROF_NAME.json"
    echo
    echo "Flat profile (perf report --no-children --sort dso,sym, the whole run; top entries):"
    echo
    echo '```'
    head -15 "$PROF_DIR/perf-report.txt"
    echo '```'
  fi
  echo
  echo "### Targets"
  echo
  jq -r "$BENCH_JQ"'
    def met(c): if c then "met" else "not met" end;
    . as $all
    | "| target | measured | |",
      "|---|---|---|",
      ( [ $all[] | select(.meta.P == 1 and .meta.blas_threads == 1) ] as $r
        | [ $r[].ranks[].peak_fraction ] as $f | select(($f | length) > 0)
        | "| one rank’s compute ≥ 80 % of the 1-thread sgemm reference on the model’s shapes (P = 1, 1 thread, all M and schedules) | \($f | min | pct) – \($f | max | pct) (\([ $r[].ranks[].compute_gflops ] | min | fmt(1)) – \([ $r[].ranks[].compute_gflops ] | max | fmt(1)) GFLOP/s of \([ $r[].ranks[].gemm_peak_gflops ] | min | fmt(1)) – \([ $r[].ranks[].gemm_peak_gflops ] | max | fmt(1))) | \(met(($f | min) >= 0.8)) |" ),
      ( [ $all[] | select(.meta.P == 2 and .meta.blas_threads == 1) | .ranks[].peak_fraction ] as $f | select(($f | length) > 0)
        | "| the same for each rank at P = 2 (1 thread per rank) | \($f | min | pct) – \($f | max | pct) | \(met(($f | min) >= 0.8)) |" ),
      ( [ $all[] | select(.meta.P == 2 and .meta.blas_threads == 1 and .speedup_vs_p1 != null) ] as $r | select(($r | length) > 0)
        | ($r | map(select(.speedup_vs_p1 >= 1.8) | "M=\(.meta.M) \(.meta.schedule)")) as $ok
        | "| P = 2 (1 thread per rank) ≥ 1.8× P = 1 (1 thread), same M and schedule | \($r | map("M=\(.meta.M) \(.meta.schedule) \(.speedup_vs_p1 | x2)") | join(", ")) | \(if ($ok | length) == ($r | length) then "met" elif ($ok | length) > 0 then "met only for \($ok | join(", "))" else "not met" end) |" ),
      ( [ $all[] | select(.meta.P == 2 and .meta.blas_threads == 1 and .speedup_vs_p1_2threads != null) ] as $r | select(($r | length) > 0)
        | ($r | map(select(.speedup_vs_p1_2threads > 1) | "M=\(.meta.M) \(.meta.schedule)")) as $ok
        | "| P = 2 (1 thread per rank) faster than P = 1 with 2 BLAS threads, same M | \($r | map("M=\(.meta.M) \(.meta.schedule) \(.speedup_vs_p1_2threads | x2)") | join(", ")) | \(if ($ok | length) == ($r | length) then "met" elif ($ok | length) > 0 then "met only for \($ok | join(", "))" else "not met" end) |" )
  ' "$OUT/results.json"
} | tee "$OUT/report.md"
echo >&2
echo "$BENCH: results in $OUT (report.md, results.json, runs/, logs/, sgemm.csv, sgemm-t2.csv$([ "$PROFILE" = 1 ] && echo ", profile/"))" >&2
