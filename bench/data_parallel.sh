#!/usr/bin/env bash
# bench/data_parallel.sh — data-parallel training throughput of pipetrain.
#
# The model is bench/configs/dp_mlp.ini: the MLP 784-1024-1024-1024-10 with
# ReLU and no dropout, SGD with momentum 0.9, global batch 256 on synthetic
# data, M = 8 micro-batches (32 rows each). It trains on N = P·D ranks as
# P pipeline stages × D data-parallel replicas (pipeline.data_parallel = D):
# (P, D) = (1, 1), (2, 1) and (1, 2) with one BLAS thread per rank bound to
# a core, and (1, 1) with 2 BLAS threads (--bind-to none) as the second
# baseline, each with both gradient reductions (pipeline.reduction =
# invariant: a fixed binary tree over the micro-batch indices, the same bits
# for every (P, D); fast: in-place accumulation and an MPI all-reduce). Every
# run has the same global batch and M, so a micro-batch has the same rows in
# every layout. From each run's JSON summary (log.summary) it reports
# throughput, speedups over (1, 1), GFLOP/s per rank against the 1- and
# 2-thread cblas_sgemm rates on the model's own matrix shapes (bench/sgemm_peak
# --shape), the exposed and the whole gradient-reduction time and the share
# of it hidden behind other work, the reduction's extra memory and peak RSS,
# the targets of the data-parallel issue, and the invariant reduction's cost
# beside the fast one.
#
# The machinery (arguments, sgemm reference, runs) is shared with
# bench/pipeline.sh and bench/gpt.sh through bench/lib.sh; the derived figures
# (bench_derive there is for pipeline layouts) are computed here.
#
# Usage: bench/data_parallel.sh [--quick] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=/tmp/pipetrain-bench-dp
CONFIG=bench/configs/dp_mlp.ini

usage() {
  cat <<EOF
usage: bench/data_parallel.sh [--quick] [--out DIR] [--build DIR] [--retries N] [--keep] [--help]

Data-parallel benchmark of pipetrain on $CONFIG (MLP 784-1024-1024-1024-10,
ReLU, no dropout, SGD with momentum 0.9, synthetic data, global batch 256,
M = 8 micro-batches): P stages × D replicas on N = P·D ranks, (P, D) = (1, 1),
(2, 1), (1, 2) with one BLAS thread per rank (--bind-to core) and (1, 1) with
2 BLAS threads (--bind-to none), each with pipeline.reduction = invariant and
fast; 120 steps per run.
Prints markdown tables and writes into the results directory:
  runs/*.json        the JSON summary of every run (log.summary), unchanged
  runs/*.meta.json   how it was run: mpirun options, wall time, CPU used by others
  logs/*.log         each run's output
  sgemm.txt, sgemm-t2.txt  bench/sgemm_peak --shape on the model's matrix shapes,
                     1 and 2 threads (sgemm*-retry*.txt: disturbed points again)
  sgemm.csv, sgemm-t2.csv  per shape: the best GFLOP/s over all measurements
  results.json       all runs with the derived figures
  report.md          the tables printed to stdout

  --quick      smoke run: the same runs with 2 steps each (under a minute)
$(bench_options_help sgemm)

environment: BENCH_M (micro-batches, default 8; a list runs each),
BENCH_LAYOUTS (the one-thread layouts as P:D, default "1:1 2:1 1:2"),
BENCH_REDUCTIONS (default "invariant fast"), BENCH_T2=0 (leave out the
(1, 1) 2-thread baseline), BENCH_BUCKET_MB (pipeline.bucket_mb; default:
pipetrain's, 25 MiB), e.g. BENCH_LAYOUTS="1:1 1:2" BENCH_BUCKET_MB=2 for a
focused look at overlapping the all-reduce. Layouts a reduction cannot run
(M not divisible by D; invariant with D > 1 needs M / D a power of two) are
skipped with a message.
EOF
}

BENCH=data_parallel.sh
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
bench_parse_args "$@"
# shellcheck disable=SC2119  # no tools beyond bench_setup's own
bench_setup

# ---- the plan ----------------------------------------------------------------
BATCH=256
FEATURES=784
MS=(8)
LAYOUTS=("1:1" "2:1" "1:2")
REDUCTIONS=(invariant fast)
T2=${BENCH_T2:-1}
if [ "$QUICK" = 1 ]; then
  STEPS=2
else
  # (1, 1) with one thread, the slowest run, takes about 0.1 s a step
  STEPS=120
fi
[ -n "${BENCH_M:-}" ] && read -ra MS <<<"$BENCH_M"
[ -n "${BENCH_LAYOUTS:-}" ] && read -ra LAYOUTS <<<"$BENCH_LAYOUTS"
[ -n "${BENCH_REDUCTIONS:-}" ] && read -ra REDUCTIONS <<<"$BENCH_REDUCTIONS"
BUCKET_MB=${BENCH_BUCKET_MB:-}
for M in "${MS[@]}"; do
  if ! [[ $M =~ ^[1-9][0-9]*$ ]] || [ $((BATCH % M)) -ne 0 ]; then
    echo "$BENCH: BENCH_M: M = $M does not divide the global batch $BATCH" >&2; exit 2
  fi
done
for pd in "${LAYOUTS[@]}"; do
  [[ $pd =~ ^[1-9][0-9]*:[1-9][0-9]*$ ]] || { echo "$BENCH: BENCH_LAYOUTS: '$pd' is not P:D" >&2; exit 2; }
done
for red in "${REDUCTIONS[@]}"; do
  case "$red" in invariant|fast) ;; *) echo "$BENCH: BENCH_REDUCTIONS: '$red' is not invariant or fast" >&2; exit 2 ;; esac
done
if [ -n "$BUCKET_MB" ]; then
  [[ $BUCKET_MB =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "$BENCH: BENCH_BUCKET_MB: '$BUCKET_MB' is not a number" >&2; exit 2; }
fi

# ---- the model's layers, as JSON (bench_layers_json) -----------------------------
LAYERS=$(bench_layers_json "$CONFIG" "$FEATURES")
# the --keep check compares this: a run with another bucket size is not kept
SPEC="$FEATURES: $(jq -c . <<<"$LAYERS")${BUCKET_MB:+; bucket_mb=$BUCKET_MB}"
jq -n --arg config "$CONFIG" --argjson f "$FEATURES" --argjson steps "$STEPS" --argjson layers "$LAYERS" \
  '{mlp: {config: $config, features: $f, steps: $steps, layers: $layers}}' >"$OUT/models.json"

# ---- sgemm rate on exactly the model's shapes (bench_sgemm_reference) ------------
# Rows per micro-batch b = BATCH / M, the same in every layout (see gemms in
# bench/lib.sh): forward NT, input gradient NN (not for layer 0), weight
# gradient TN. 1 thread and 2 threads.
bench_sgemm_references_1_2 "$BATCH" "${MS[@]}"

# ---- the runs ----------------------------------------------------------------------
# Can reduction $1 run D = $2 replicas with M = $3 micro-batches? Prints why not.
dp_fits() {
  local red=$1 D=$2 M=$3 share
  if [ $((M % D)) -ne 0 ]; then echo "M = $M is not divisible by D = $D"; return 1; fi
  share=$((M / D))
  if [ "$red" = invariant ] && [ "$D" -gt 1 ] && [ $((share & (share - 1))) -ne 0 ]; then
    echo "invariant reduction needs M / D = $share to be a power of two"; return 1
  fi
  return 0
}

run_one() { # P D M reduction threads
  local P=$1 D=$2 M=$3 red=$4 threads=$5 why
  why=$(dp_fits "$red" "$D" "$M") || { echo "$BENCH: skipping P=$P D=$D M=$M $red: $why" >&2; return 0; }
  local sets=(data.dataset=synthetic "data.synthetic_features=$FEATURES" data.synthetic_classes=10
              "data.synthetic_samples=$BATCH" "train.batch_size=$BATCH" "train.steps=$STEPS"
              train.warmup_steps=0 train.lr_schedule=constant train.log_every=0 checkpoint.dir=
              train.optimizer=sgd train.momentum=0.9 "train.blas_threads=$threads"
              "pipeline.micro_batches=$M" pipeline.partition=cost pipeline.schedule=1f1b
              "pipeline.data_parallel=$D" "pipeline.reduction=$red")
  [ -n "$BUCKET_MB" ] && sets+=("pipeline.bucket_mb=$BUCKET_MB")
  bench_run "mlp_P${P}_D${D}_M${M}_${red}_t${threads}" $((P * D)) "$threads" "$CONFIG" "$SPEC" "$STEPS" "$BATCH" \
    "{\"model\":\"mlp\",\"stages\":$P,\"replicas\":$D,\"reduction\":\"$red\",\"M\":$M,\"bucket_mb\":${BUCKET_MB:-null}}" \
    "${sets[@]}"
}

bench_begin
for M in "${MS[@]}"; do
  # the two reductions of a layout one after the other, so that a change in
  # the machine's load between layouts touches both alike
  for pd in "${LAYOUTS[@]}"; do
    for red in "${REDUCTIONS[@]}"; do run_one "${pd%:*}" "${pd#*:}" "$M" "$red" 1; done
  done
  # the second baseline: one rank, both cores through 2 BLAS threads
  if [ "$T2" != 0 ]; then
    for red in "${REDUCTIONS[@]}"; do run_one 1 1 "$M" "$red" 2; done
  fi
done
bench_end

# ---- derived figures -----------------------------------------------------------------
# results.json: every run of RUN_LIST as {meta, summary (without ranks),
# derived, ranks}. bench_derive in bench/lib.sh compares pipeline layouts
# with meta.P (= the number of ranks here) == 1; this variant compares with
# (P, D) = (1, 1) at the same M:
#   speedup_vs_11_t1  over (1, 1) with one BLAS thread and the same reduction
#   speedup_vs_11_t2  over (1, 1) with 2 BLAS threads and the same reduction
# FLOPs: pipetrain's per-rank "flops" are the training FLOPs of the samples
# the rank trains (its replica's batch / D).
# Each rank gains flops_used, compute_gflops_used (flops_used / compute_s),
# sgemm_ref_1t and sgemm_ref_2t (the FLOP-weighted harmonic mean of the
# sgemm rates of its own products: total FLOPs / Σ FLOPs_i / rate_i),
# peak_fraction (over the reference with the run's thread count) and
# reduce_hidden (1 − reduce_s / reduce_span_s, D > 1). The run gains
# machine_gflops (Σ over ranks of compute_gflops_used: the rate of the whole
# machine while every rank computes), model_sgemm_1t/2t (the reference on the
# whole model's products), machine_vs_sgemm_2t (machine_gflops / 2-thread
# reference), machine_vs_2x_sgemm_1t (machine_gflops / twice the 1-thread
# reference), reduce_exposed_s (max over ranks of reduce_s), reduce_span_s
# (max over ranks), reduce_hidden (D > 1: the smallest over ranks of
# 1 − reduce_s / reduce_span_s), reduce_mib and peak_rss_mib (max over ranks).
dp_derive() {
  bench_collect_runs >"$OUT/.raw.json"
  jq --slurpfile models "$OUT/models.json" --slurpfile sg1 "$OUT/sgemm.json" --slurpfile sg2 "$OUT/sgemm-t2.json" "$BENCH_JQ"'
    $models[0].mlp.layers as $L | $sg1[0] as $p1 | $sg2[0] as $p2
    | def ref($g; $peak): if ($g | length) > 0 and ($g | all(.k as $k | $peak[$k] != null))
                           then ($g | map(.f) | add) / ($g | map(.f / $peak[.k]) | add) else null end;
    . as $all
    | def base($r; $t): [ $all[] | select(.meta.stages == 1 and .meta.replicas == 1 and .meta.M == $r.meta.M
                          and .meta.blas_threads == $t and .meta.reduction == $r.meta.reduction)
                          | .summary.throughput_samples_per_s ] | first // null;
    [ .[] | . as $r | $r.summary.micro_batch_rows as $b | $r.summary.data_parallel as $D
      | gemms($L; 0; ($L | length) - 1; $b) as $gm
      | (if $r.meta.blas_threads == 2 then $p2 else $p1 end) as $own
      | [ $r.summary.ranks[] | . as $k
          | [ $k.layers[] as $rg | gemms($L; $rg[0]; $rg[1]; $b)[] ] as $g
          | $k.flops as $fu
          | (if $k.compute_s > 0 then $fu / $k.compute_s / 1e9 else null end) as $gf
          | ref($g; $own) as $ref
          | $k + {flops_used: $fu, compute_gflops_used: $gf,
                  sgemm_ref_1t: ref($g; $p1), sgemm_ref_2t: ref($g; $p2),
                  peak_fraction: (if $gf != null and $ref != null then $gf / $ref else null end),
                  reduce_hidden: (if $D > 1 and $k.reduce_span_s > 0 then 1 - $k.reduce_s / $k.reduce_span_s else null end)} ] as $ranks
      | ($ranks | map(.compute_gflops_used // 0) | add) as $mg
      | ref($gm; $p1) as $m1 | ref($gm; $p2) as $m2
      | {meta, summary: ($r.summary | del(.ranks)),
         derived: {
           speedup_vs_11_t1: (base($r; 1) as $d | if $d != null then $r.summary.throughput_samples_per_s / $d else null end),
           speedup_vs_11_t2: (base($r; 2) as $d | if $d != null then $r.summary.throughput_samples_per_s / $d else null end),
           machine_gflops: $mg, model_sgemm_1t: $m1, model_sgemm_2t: $m2,
           machine_vs_sgemm_2t: (if $m2 != null then $mg / $m2 else null end),
           machine_vs_2x_sgemm_1t: (if $m1 != null then $mg / (2 * $m1) else null end),
           reduce_exposed_s: ($ranks | map(.reduce_s) | max),
           reduce_span_s: ($ranks | map(.reduce_span_s) | max),
           reduce_hidden: (if $D > 1 then ($ranks | map(.reduce_hidden) | if all(. != null) then min else null end) else null end),
           reduce_mib: ($ranks | map(.reduce_bytes) | max / 1048576),
           peak_rss_mib: ($ranks | map(.peak_rss_kib) | max / 1024)},
         ranks: $ranks} ]
  ' "$OUT/.raw.json" >"$OUT/results.json"
  rm -f "$OUT/.raw.json" "$TIMES_FILE" "$RUN_LIST"
}
dp_derive

# ---- the report ----------------------------------------------------------------------
{
  echo "## Data-parallel benchmark ($([ "$QUICK" = 1 ] && echo "quick smoke run" || echo "full run"))"
  echo
  bench_header "$OUT/sgemm.txt"
  echo "- model: \`$CONFIG\` — $FEATURES → 1024 → 1024 → 1024 → 10, ReLU, no dropout; SGD, momentum 0.9, constant learning rate; synthetic data ($BATCH training samples, $((BATCH / 4)) test samples evaluated after training and not part of the throughput)"
  echo "- global batch $BATCH samples, M = ${MS[*]} micro-batches of $(jq -r 'map(tostring) | join("/")' <<<"$ROWS_JSON") rows in every layout (each of D replicas trains M / D of them), 1F1B, partition = cost, $STEPS steps per run; checkpoints off"
  jq -r --argjson b "${BUCKET_MB:-25}" "$BENCH_JQ"'[ .[] | select(.summary.data_parallel > 1) | .ranks[].params ] | select(length > 0)
    | (max * 4 / 1048576) as $g
    | "- gradient reduction over the replicas in buckets of about \($b | tostring) MiB of whole layers, from the last layer (pipeline.bucket_mb\(if env.BENCH_BUCKET_MB then "" else ", its default" end)); a replica rank holds up to \($g | fmt(1)) MiB of gradients\(if $g <= $b then ", a single bucket: its reduction starts after the last backward pass of the step, with no compute left to hide it behind (BENCH_BUCKET_MB sets smaller buckets)" else "" end)"' "$OUT/results.json"
  echo "- (P, D): P pipeline stages × D replicas on P·D ranks (\`mpirun -np P·D … --set pipeline.data_parallel=D\`); one BLAS thread per rank with \`--bind-to core\`; (1, 1) with 2 BLAS threads: \`--bind-to none\`"
  echo "- sgemm references: \`sgemm_peak --shape\` best GFLOP/s on each of the model's matrix products, 1 and 2 threads ($SG1_UNSETTLED and $SG2_UNSETTLED of $SG_SHAPES shapes were disturbed by other processes in every measurement), combined as the FLOP-weighted harmonic mean (total FLOPs / Σ FLOPs_i / rate_i); a rank's own reference is over its own layers' products with its thread count"
  echo "- \`*\`: other processes used more than $BUSY_LIMIT CPU during the run; †: more ranks than cores (oversubscribed)"
  echo
  jq -r "$BENCH_JQ"'
    def mark: if .meta.others_cpus > '"$BUSY_LIMIT"' then " *" else "" end;
    def pd: "(\(.meta.stages), \(.meta.replicas))\(if .meta.P > '"$CORES"' then "†" else "" end)";
    "### Throughput",
    "",
    "× (1,1): over (P, D) = (1, 1) at the same M and with the same reduction, with 1 and with 2 BLAS threads. GFLOP/s: compute GFLOP/s per rank (training FLOPs of the samples it trains / compute seconds); Σ: their sum, the rate of the machine while every rank computes, against the 2-thread sgemm reference and against twice the 1-thread one, both on the products of the whole model. Reduction (seconds over all steps): exposed = the most any rank spent starting and waiting on the gradient all-reduce; span = the most the buckets of any rank took from the start of their reduction to the end of their wait; hidden = 1 − exposed / span (D > 1; the smallest over ranks). reduce MiB: the extra memory of the reduction; peak RSS: of the largest rank.",
    "",
    "| (P, D) | reduction | BLAS threads | M | samples/s | × (1,1) 1 thread | × (1,1) 2 threads | GFLOP/s per rank | Σ GFLOP/s | % of 2-thread sgemm | % of 2 × 1-thread sgemm | reduce exposed s | reduce span s | hidden | reduce MiB | peak RSS MiB | train s | others CPU |",
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    (.[] | .derived as $d
      | "| \(pd) | \(.meta.reduction) | \(.meta.blas_threads) | \(.meta.M) | \(.summary.throughput_samples_per_s | fmt(0))\(mark) | \($d.speedup_vs_11_t1 | x2) | \($d.speedup_vs_11_t2 | x2) | \(.ranks | map(.compute_gflops_used | fmt(1)) | join(", ")) | \($d.machine_gflops | fmt(1)) | \($d.machine_vs_sgemm_2t | pct) | \($d.machine_vs_2x_sgemm_1t | pct) | \($d.reduce_exposed_s | fmt(3)) | \($d.reduce_span_s | fmt(3)) | \($d.reduce_hidden | pct) | \($d.reduce_mib | fmt(1)) | \($d.peak_rss_mib | fmt(1)) | \(.summary.train_seconds | fmt(2)) | \(.meta.others_cpus | fmt(2)) |"),
    "",
    "### Per rank",
    "",
    "Seconds over all training steps (total = the op lists plus the optimizer). GFLOP/s as above; sgemm ref: on the products of the rank at its thread count; reduce s = exposed, span s = the whole reduction, hidden = 1 − reduce / span.",
    "",
    "| (P, D) | reduction | thr | M | rank | stage | replica | layers | GFLOP/s | sgemm ref | % sgemm | compute s | bubble s | comm s | optim s | reduce s | span s | hidden | total s | stash MiB | reduce MiB | peak RSS MiB |",
    "|---|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    (.[] | . as $r | .ranks[]
      | "| \($r | pd) | \($r.meta.reduction) | \($r.meta.blas_threads) | \($r.meta.M) | \(.rank) | \(.stage) | \(.replica) | \(.layers | map("\(.[0])-\(.[1])") | join(",")) | \(.compute_gflops_used | fmt(1)) | \(if $r.meta.blas_threads == 2 then .sgemm_ref_2t else .sgemm_ref_1t end | fmt(1)) | \(.peak_fraction | pct) | \(.compute_s | fmt(2)) | \(.bubble_s | fmt(2)) | \(.comm_s | fmt(2)) | \(.optim_s | fmt(2)) | \(.reduce_s | fmt(3)) | \(.reduce_span_s | fmt(3)) | \(.reduce_hidden | pct) | \(.total_s | fmt(2)) | \(.stash_bytes / 1048576 | fmt(1)) | \(.reduce_bytes / 1048576 | fmt(1)) | \(.peak_rss_kib / 1024 | fmt(1)) |")
  ' "$OUT/results.json"
  echo
  echo "### sgemm on the model's shapes"
  echo
  echo "Best GFLOP/s of \`sgemm_peak --shape\`. FLOP share: of all matrix FLOPs of a training step at that row count."
  echo
  jq -r --slurpfile m "$OUT/models.json" --argjson rows "$ROWS_JSON" --slurpfile s1 "$OUT/sgemm.json" --slurpfile s2 "$OUT/sgemm-t2.json" -n "$BENCH_JQ"'
    $m[0].mlp.layers as $L
    | "| products | shape M×N×K | op | rows | FLOP share | 1 thread | 2 threads |",
      "|---|---|:-:|--:|--:|--:|--:|",
      ( $rows[] as $b | gemms($L; 0; ($L | length) - 1; $b) as $g | ($g | map(.f) | add) as $tot
        | $g | group_by(.k)[] | (map(.f) | add) as $f | .[0].k as $k
        | ($k | capture("^(?<s>[0-9x]+)_(?<op>..)$")) as $c
        | "| \(map(.w) | unique | join("; ")) | \($c.s | gsub("x"; "×")) | \($c.op) | \($b) | \($f / $tot | pct) | \($s1[0][$k] | fmt(1)) | \($s2[0][$k] | fmt(1)) |" ),
      ( $rows[] as $b | gemms($L; 0; ($L | length) - 1; $b) as $g
        | "| whole model (harmonic mean) | | | \($b) | 100.0% | \(($g | map(.f) | add) / ($g | map(.f / $s1[0][.k]) | add) | fmt(1)) | \(($g | map(.f) | add) / ($g | map(.f / $s2[0][.k]) | add) | fmt(1)) |" )'
  echo
  echo "### Targets"
  echo
  jq -r "$BENCH_JQ"'
    def met(c): if c then "met" else "not met" end;
    . as $all
    | "| target | measured | |",
      "|---|---|---|",
      ( [ $all[] | select(.meta.stages == 1 and .meta.replicas == 2 and .meta.blas_threads == 1) ] | group_by(.meta.M)[]
        | (if ([ $all[].meta.M ] | unique | length) > 1 then " (M = \(.[0].meta.M))" else "" end) as $mm
        | ( .[] | .derived.speedup_vs_11_t1 as $s | select($s != null)
            | "| (1, 2) ≥ 1.8× (1, 1), one BLAS thread per rank, \(.meta.reduction) reduction\($mm) | \($s | x2) (\(.summary.throughput_samples_per_s | fmt(0)) samples/s) | \(met($s >= 1.8)) |" ),
          ( .[] | .derived.speedup_vs_11_t2 as $s | select($s != null)
            | "| (1, 2) (one thread per rank) faster than (1, 1) with 2 BLAS threads, \(.meta.reduction) reduction\($mm) | \($s | x2) | \(met($s > 1)) |" ) )
  ' "$OUT/results.json"
  echo
  echo "### Invariant reduction against fast"
  echo
  echo "At each layout, the invariant reduction's cost: its training time over fast's (same steps, so the inverse of the throughput ratio), exposed reduction seconds, extra reduction memory and peak RSS, invariant / fast."
  echo
  jq -r "$BENCH_JQ"'
    (map(.meta.M) | unique | length > 1) as $several_m
    | to_entries | group_by([.value.meta.stages, .value.meta.replicas, .value.meta.blas_threads, .value.meta.M])
    | sort_by(map(.key) | min) | map(map(.value))
    | map( (map(select(.meta.reduction == "invariant"))[0]) as $i | (map(select(.meta.reduction == "fast"))[0]) as $f
           | select($i != null and $f != null) | {i: $i, f: $f} ) as $pairs
    | def signed($d): (if . >= 0 then "+" else "" end) + fmt($d);
      def extra_time: if .f.summary.train_seconds > 0 then (.i.summary.train_seconds / .f.summary.train_seconds - 1) * 100 | signed(1) + " %" else "—" end;
      if ($pairs | length) == 0 then "(no layout ran with both reductions)" else
      ( "| (P, D) | BLAS threads | M | train s invariant / fast | invariant extra time | reduce exposed s invariant / fast | reduce MiB invariant / fast | peak RSS MiB invariant / fast |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
        ( $pairs[] | .i as $i | .f as $f
          | "| (\($i.meta.stages), \($i.meta.replicas)) | \($i.meta.blas_threads) | \($i.meta.M) | \($i.summary.train_seconds | fmt(2)) / \($f.summary.train_seconds | fmt(2)) | \(extra_time) | \($i.derived.reduce_exposed_s | fmt(3)) / \($f.derived.reduce_exposed_s | fmt(3)) | \($i.derived.reduce_mib | fmt(1)) / \($f.derived.reduce_mib | fmt(1)) (\($i.derived.reduce_mib - $f.derived.reduce_mib | signed(1))) | \($i.derived.peak_rss_mib | fmt(1)) / \($f.derived.peak_rss_mib | fmt(1)) (\($i.derived.peak_rss_mib - $f.derived.peak_rss_mib | signed(1))) |" ),
        "",
        "Invariant against fast: " + ([ $pairs[] | .i as $i
          | "(\($i.meta.stages), \($i.meta.replicas))\(if $i.meta.blas_threads > 1 then " with \($i.meta.blas_threads) threads" else "" end)\(if $several_m then ", M = \($i.meta.M)" else "" end): \(extra_time) time, \($i.derived.reduce_mib - .f.derived.reduce_mib | signed(1)) MiB reduction memory, \($i.derived.peak_rss_mib - .f.derived.peak_rss_mib | signed(1)) MiB peak RSS" ]
          | join("; ")) + ".")
      end
  ' "$OUT/results.json"
} | tee "$OUT/report.md"
echo >&2
echo "$BENCH: results in $OUT (report.md, results.json, runs/, logs/, sgemm.csv, sgemm-t2.csv)" >&2
