# shellcheck shell=bash disable=SC2034  # sourced; the variables it sets are read by the including script
# bench/lib.sh — the parts the pipetrain benchmark scripts share (sourced by
# bench/pipeline.sh and bench/gpt.sh; not run on its own).
#
# What is here:
#   bench_parse_args    --quick, --keep, --out DIR, --build DIR, --retries N, --help
#                       (a script's own flags through its bench_option function)
#   bench_setup         executables, tools, the results directory
#   bench_layers_json   a config's `layers =` line as JSON, with widths
#   BENCH_JQ            jq definitions: a stage's matrix products (gemms), number formats
#   bench_sgemm_reference  bench/sgemm_peak --shape on given shapes, disturbed points
#                       measured again, best GFLOP/s per shape
#   bench_run           one training run under mpirun with its JSON summary, the CPU
#                       other processes used during it, re-runs when they disturbed it
#   bench_derive        results.json: every run with speedups and per-rank figures
#   bench_begin, bench_end, bench_header, bench_cpu_model, bench_seconds
#                       the report's first lines
#
# The including script sets BENCH (its name, for messages), REPO and OUT (its
# results directory) and defines `usage` before sourcing this file, which sets
# the defaults BUILD, QUICK, KEEP, RETRIES (empty: 1, or 0 with --quick) and
# BUSY_LIMIT; a script that wants another default sets it after sourcing,
# before bench_parse_args.
#
# Shell options: the scripts run under `set -euo pipefail`.

BUILD=$REPO/build
QUICK=0
KEEP=0
RETRIES=
BUSY_LIMIT=0.05 # CPUs' worth of other processes above which a run is marked (and retried)

# ---- arguments -----------------------------------------------------------------
# bench_options_help [sgemm]: the --help lines of the options bench_parse_args
# takes (with sgemm: the script also measures the sgemm reference), for `usage`.
bench_options_help() {
  local build="Release build tree holding pipetrain (default $BUILD)" retries="" keep=""
  if [ "${1:-}" = sgemm ]; then
    build="Release build tree holding pipetrain and bench/sgemm_peak
               (default $BUILD; cmake -S . -B build -DCMAKE_BUILD_TYPE=Release)"
    retries=", and re-measure sgemm points they
               disturbed"
    keep=", and the sgemm figures;
               re-run the rest (same options as before)"
  fi
  cat <<EOF
  --out DIR    results directory (default $OUT)
  --build DIR  $build
  --retries N  re-run a run up to N times when other processes used more than
               $BUSY_LIMIT CPU during it$retries (default 1; 0 with --quick)
  --keep       reuse the runs already in the results directory during which
               other processes used at most $BUSY_LIMIT CPU$keep
  --help       print this help and exit
EOF
}

# A script may define bench_option FLAG, returning 0 when it took the flag.
bench_parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --help|-h) usage; exit 0 ;;
      --quick) QUICK=1 ;;
      --keep) KEEP=1 ;;
      --out) [ $# -ge 2 ] || { echo "$BENCH: --out needs a directory" >&2; exit 2; }; OUT=$2; shift ;;
      --build) [ $# -ge 2 ] || { echo "$BENCH: --build needs a directory" >&2; exit 2; }; BUILD=$2; shift ;;
      --retries)
        [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || { echo "$BENCH: --retries needs an integer >= 0" >&2; exit 2; }
        RETRIES=$2; shift ;;
      *)
        if declare -F bench_option >/dev/null && bench_option "$1"; then :; else
          echo "$BENCH: unknown argument '$1' (see --help)" >&2; exit 2
        fi ;;
    esac
    shift
  done
}

# ---- executables, tools, results directory -----------------------------------
# bench_setup [tool...]: extra tools to require beside jq, mpirun and awk.
# Sets PIPETRAIN, SGEMM, CORES, RETRIES (when empty), CLK_TCK, TIMES_FILE,
# RUN_LIST; creates $OUT/runs and $OUT/logs and, without --keep, empties them
# and removes the sgemm figures.
bench_setup() {
  PIPETRAIN=$BUILD/pipetrain
  SGEMM=$BUILD/bench/sgemm_peak
  local exe tool
  for exe in "$PIPETRAIN" "$SGEMM"; do
    [ -x "$exe" ] || { echo "$BENCH: $exe not found; build first: cmake -S $REPO -B $BUILD -DCMAKE_BUILD_TYPE=Release && cmake --build $BUILD -j2" >&2; exit 1; }
  done
  for tool in jq mpirun awk "$@"; do
    command -v "$tool" >/dev/null || { echo "$BENCH: '$tool' not found (scripts/setup.sh installs jq and Open MPI)" >&2; exit 1; }
  done
  if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
  CORES=$(nproc)
  [ -n "$RETRIES" ] || RETRIES=$((1 - QUICK))
  CLK_TCK=$(getconf CLK_TCK)
  TIMES_FILE=$OUT/.times
  RUN_LIST=$OUT/.runs
  mkdir -p "$OUT/runs" "$OUT/logs"
  [ "$KEEP" = 1 ] || rm -f "$OUT"/runs/*.json "$OUT"/logs/*.log "$OUT"/sgemm*.* "$OUT"/sgemm*-retry*.txt
  : >"$RUN_LIST"
}

# ---- a model's layers, as JSON -------------------------------------------------
# bench_layers_json INI WIDTH [CONTEXT] -> [{kind, ...}] on stdout. WIDTH is the
# input width (per position after an embedding); CONTEXT the sequence length
# T of text models. Linear layers get {in, out}; embed {vocab, chan, seq};
# block {heads, chan, seq, causal}; lmhead {in, out, seq} (a linear layer over
# the B·T positions, no bias); other kinds only their kind.
bench_layers_json() {
  local ini=$1 width=$2 seq=${3:-0} spec item kind a b sep="" json="[" items
  spec=$(sed -n 's/^[[:space:]]*layers[[:space:]]*=[[:space:]]*//p' "$REPO/$ini" | sed -n 1p)
  [ -n "$spec" ] || { echo "$BENCH: no 'layers =' line in $ini" >&2; exit 1; }
  IFS=',' read -ra items <<<"$spec"
  for item in "${items[@]}"; do
    read -r kind a b _ <<<"$item"
    case "$kind" in
      linear) json+="$sep{\"kind\":\"linear\",\"in\":$width,\"out\":$a}"; width=$a ;;
      embed) json+="$sep{\"kind\":\"embed\",\"vocab\":$a,\"chan\":$b,\"seq\":$seq}"; width=$b ;;
      block) json+="$sep{\"kind\":\"block\",\"heads\":$a,\"chan\":$width,\"seq\":$seq,\"causal\":$([ "${b:-}" = causal ] && echo true || echo false)}" ;;
      lmhead) json+="$sep{\"kind\":\"lmhead\",\"in\":$width,\"out\":$a,\"seq\":$seq}"; width=$a ;;
      *) json+="$sep{\"kind\":\"$kind\"}" ;;
    esac
    sep=","
  done
  echo "$json]"
}

# ---- jq definitions ----------------------------------------------------------------
# gemms($layers; $first; $last; $b): the matrix products of layers first..last
# for micro-batch rows b (samples), as [{k, f, w, arg}]: k the sgemm_peak name
# MxNxK_TATB, f its FLOPs, w what it computes, arg its --shape argument (with
# BETA where the kernel's beta differs from sgemm_peak's default).
#   linear (kernels.c linear_forward/linear_backward), rows b: forward NT,
#     input gradient NN (not for global layer 0), weight gradient TN (beta 1);
#   lmhead: the same over b·T rows;
#   block (layers.c block_fwd/block_bwd), rows r = b·T: the linears C→3C, C→C,
#     C→4C, 4C→C with all three products, and per (sample, head), hs = C/H
#     (attention_forward/attention_backward): S = Q·Kᵀ (T×T×hs, NT), Y = A·V
#     (T×hs×T, NN); backward dV = Aᵀ·dY (TN, beta 0), dA = dY·Vᵀ (NT),
#     dQ = dS·K (NN), dK = dSᵀ·Q (TN, beta 0). The full T×T also when causal
#     (the registry's FLOP convention), although the kernels run causal
#     attention by blocks of 32 query rows and skip the masked ones: the
#     reference is that of the unblocked shapes, which run faster than the
#     blocks would.
# fmt($d): a number with d decimals ("—" for null); pct: a fraction as a
# percentage; x2: a ratio as "1.23×".
BENCH_JQ='
def gemm($m; $n; $k; $ta; $tb; $beta; $count; $w):
  {k: "\($m)x\($n)x\($k)_\($ta)\($tb)", f: (2 * $m * $n * $k * $count), w: $w,
   arg: "\($m),\($n),\($k),\($ta),\($tb)\(if $beta == null then "" else ",\($beta)" end)"};
def linear_gemms($rows; $in; $out; $din; $w):
  gemm($rows; $out; $in; "N"; "T"; null; 1; "\($w) forward"),
  (if $din then gemm($rows; $in; $out; "N"; "N"; null; 1; "\($w) input gradient") else empty end),
  gemm($out; $in; $rows; "T"; "N"; null; 1; "\($w) weight gradient");
def gemms($layers; $first; $last; $b):
  [ range($first; $last + 1) as $l | $layers[$l]
    | if .kind == "linear" then linear_gemms($b; .in; .out; $l > 0; "linear \(.in)→\(.out)")
      elif .kind == "lmhead" then linear_gemms($b * .seq; .in; .out; $l > 0; "lmhead")
      elif .kind == "block" then
        ($b * .seq) as $r | .chan as $C | .seq as $T | ($C / .heads) as $hs | ($b * .heads) as $n
        | linear_gemms($r; $C; 3 * $C; true; "attn.w_qkv"), linear_gemms($r; $C; $C; true; "attn.w_proj"),
          linear_gemms($r; $C; 4 * $C; true; "mlp.w_fc"), linear_gemms($r; 4 * $C; $C; true; "mlp.w_proj"),
          gemm($T; $T; $hs; "N"; "T"; null; $n; "attention S = Q·Kᵀ"),
          gemm($T; $hs; $T; "N"; "N"; null; $n; "attention Y = A·V"),
          gemm($T; $hs; $T; "T"; "N"; 0; $n; "attention dV = Aᵀ·dY"),
          gemm($T; $T; $hs; "N"; "T"; null; $n; "attention dA = dY·Vᵀ"),
          gemm($T; $hs; $T; "N"; "N"; null; $n; "attention dQ = dS·K"),
          gemm($T; $hs; $T; "T"; "N"; 0; $n; "attention dK = dSᵀ·Q")
      else empty end ];
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

# ---- sgemm rate on exactly the models' shapes -------------------------------------
# bench_sgemm_reference THREADS PREFIX SHAPE... : SHAPE = M,N,K,TA,TB[,BETA].
# Writes $OUT/PREFIX.txt (sgemm_peak's output), PREFIX-retryN.txt,
# PREFIX.points ("name best median busy pass" per measurement), PREFIX.key,
# PREFIX.csv (per shape: the best GFLOP/s over all measurements) and
# PREFIX.json ({name: best GFLOP/s}); sets SG_SHAPES (how many shapes) and
# SG_UNSETTLED (how many were disturbed by other processes in every
# measurement).
# Each point is timed as in sgemm_peak (best of 3 repeats). Points during
# which other processes used more than 0.1 CPU (marked '*') are measured
# again, up to --retries times; a shape's rate is the best over all its
# measurements (others can only slow a measurement down).
bench_sgemm_reference() {
  local threads=$1 prefix=$2 s name pass m n k ta tb
  shift 2
  local -a shape_args=() sg_opts=(--threads "$threads") again=()
  local -A arg_of=()
  for s in "$@"; do
    shape_args+=(--shape "$s")
    IFS=',' read -r m n k ta tb _ <<<"$s"
    arg_of["${m}x${n}x${k}_${ta}${tb}"]=$s
  done
  SG_SHAPES=$#
  [ "$QUICK" = 1 ] && sg_opts+=(--quick)
  local sg_key="${sg_opts[*]} ${shape_args[*]}" points=$OUT/$prefix.points
  if [ "$KEEP" = 1 ] && [ -s "$points" ] && [ "$(cat "$OUT/$prefix.key" 2>/dev/null)" = "$sg_key" ]; then
    echo "$BENCH: keeping the sgemm figures in $points" >&2
    pass=$(awk '$5 > p {p = $5} END {print p + 0}' "$points")
  else
    echo "$BENCH: sgemm_peak on $SG_SHAPES matrix shapes ($threads thread$([ "$threads" = 1 ] || echo s))" >&2
    "$SGEMM" "${sg_opts[@]}" "${shape_args[@]}" >"$OUT/$prefix.txt"
    bench_sgemm_points "$OUT/$prefix.txt" 0 >"$points"
    echo "$sg_key" >"$OUT/$prefix.key"
    pass=0
  fi
  while :; do
    # shapes with no measurement free of others
    mapfile -t again < <(awk '{clean[$1] += !$4; seen[$1] = 1} END {for (n in seen) if (!clean[n]) print n}' "$points")
    [ "${#again[@]}" -gt 0 ] && [ "$pass" -lt "$RETRIES" ] || break
    pass=$((pass + 1))
    echo "$BENCH: ${#again[@]} sgemm points were disturbed by other processes; measuring them again in 20 s" >&2
    sleep 20
    local -a retry_args=()
    for name in "${again[@]}"; do retry_args+=(--shape "${arg_of[$name]}"); done
    "$SGEMM" "${sg_opts[@]}" "${retry_args[@]}" >"$OUT/$prefix-retry$pass.txt"
    bench_sgemm_points "$OUT/$prefix-retry$pass.txt" "$pass" >>"$points"
  done
  # name,m,n,k,transa,transb,threads,gflops_best,gflops_median,measurements,clean_measurements
  awk -v t="$threads" '{if (!($1 in best) || $2 > best[$1]) {best[$1] = $2; med[$1] = $3}; n[$1]++; clean[$1] += !$4}
       END {for (k in best) {split(k, d, /[x_]/)
              printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%d,%d\n", k, d[1], d[2], d[3], substr(d[4], 1, 1), substr(d[4], 2, 1), t, best[k], med[k], n[k], clean[k]}}' \
    "$points" | sort | sed '1i name,m,n,k,transa,transb,threads,gflops_best,gflops_median,measurements,clean_measurements' >"$OUT/$prefix.csv"
  SG_UNSETTLED=$(awk -F, 'NR > 1 && $11 == 0' "$OUT/$prefix.csv" | wc -l)
  tail -n +2 "$OUT/$prefix.csv" | awk -F, 'BEGIN {printf "{"} {printf "%s\"%s\":%s", (NR > 1 ? "," : ""), $1, $8} END {print "}"}' >"$OUT/$prefix.json"
}
# bench_sgemm_references_1_2 BATCH M...: the 1- and 2-thread sgemm references
# (sgemm.*, sgemm-t2.*) on the products of the models in $OUT/models.json at
# micro-batch rows BATCH / M for each M; sets ROWS_JSON, SG1_UNSETTLED and
# SG2_UNSETTLED.
bench_sgemm_references_1_2() {
  local batch=$1 m rows=()
  shift
  for m in "$@"; do rows+=($((batch / m))); done
  ROWS_JSON="[$(IFS=,; echo "${rows[*]}")]"
  local -a shapes
  mapfile -t shapes < <(bench_gemm_shape_args "$OUT/models.json" "$ROWS_JSON")
  bench_sgemm_reference 1 sgemm "${shapes[@]}"
  SG1_UNSETTLED=$SG_UNSETTLED
  bench_sgemm_reference 2 sgemm-t2 "${shapes[@]}"
  SG2_UNSETTLED=$SG_UNSETTLED
}
bench_sgemm_points() { # txt file, pass -> "name best median busy pass" lines
  awk -v pass="$2" '$1 ~ /^[0-9]+x[0-9]+x[0-9]+_[NT][NT]$/ {print $1, $8, $9, ($NF == "*"), pass}' "$1"
}
# bench_gemm_shape_args MODELS_JSON ROWS_JSON: the --shape arguments of every
# product of every model in MODELS_JSON ({name: {layers}}) for each of the
# micro-batch rows in ROWS_JSON ([b, ...]), each once.
bench_gemm_shape_args() {
  jq -r --argjson rows "$2" "$BENCH_JQ"'
    [ .[] | .layers as $L | $rows[] as $b | gemms($L; 0; ($L | length) - 1; $b)[] | {k, arg} ]
    | unique_by(.k)[] | .arg' "$1"
}

# ---- CPU used by other processes during a run ----------------------------------
# Busy CPU seconds of the whole machine (/proc/stat, steal included) minus the
# CPU seconds of this shell and its children (bash's `times`, which counts the
# ranks once mpirun has waited for them).
# The machine's busy seconds to 0.01 s (awk's default %.6g would round them to
# 0.1 s once the machine has been up a day, too coarse for a short run).
machine_busy() { awk -v t="$CLK_TCK" '/^cpu / {printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / t; exit}' /proc/stat; }
# bench_mark_start, then bench_mark_end after the work: sets OTHERS (CPUs' worth
# used by other processes meanwhile) and WALL (seconds). Not in a subshell:
# own_cpu must see this shell's times.
bench_mark_start() { MARK_B0=$(machine_busy); own_cpu; MARK_C0=$OWN_CPU; MARK_T0=$(now_s); }
bench_mark_end() {
  local t1 b1
  t1=$(now_s); b1=$(machine_busy); own_cpu
  read -r OTHERS WALL < <(awk -v b0="$MARK_B0" -v b1="$b1" -v c0="$MARK_C0" -v c1="$OWN_CPU" -v t0="$MARK_T0" -v t1="$t1" \
    'BEGIN {o = ((b1 - b0) - (c1 - c0)) / (t1 - t0); if (o < 0) o = 0; printf "%.3f %.3f\n", o, t1 - t0}')
}
own_cpu() { # sets OWN_CPU; must not run in a subshell ($(...)), whose `times` starts at zero
  times >"$TIMES_FILE"
  OWN_CPU=$(awk '{for (i = 1; i <= NF; i++) {split($i, a, "m"); s += a[1] * 60 + substr(a[2], 1, length(a[2]) - 1)}} END {printf "%.3f\n", s}' "$TIMES_FILE")
}
now_s() { date +%s.%N; }

# bench_run_retried NAME COMMAND...: runs COMMAND in $OUT with its output in
# $OUT/logs/NAME.log (a failure ends the benchmark with the log's tail), again
# up to $RETRIES times while other processes used more than $BUSY_LIMIT CPU
# during it; sets OTHERS and WALL (bench_mark_end) and ATTEMPT (retries used).
bench_run_retried() {
  local name=$1
  shift
  ATTEMPT=0
  while :; do
    bench_mark_start
    if ! (cd "$OUT" && "$@" >"$OUT/logs/$name.log" 2>&1); then
      echo "$BENCH: run $name failed; its output is in $OUT/logs/$name.log:" >&2
      tail -n 20 "$OUT/logs/$name.log" >&2
      exit 1
    fi
    bench_mark_end
    if awk -v o="$OTHERS" -v l="$BUSY_LIMIT" 'BEGIN {exit !(o > l)}' && [ "$ATTEMPT" -lt "$RETRIES" ]; then
      ATTEMPT=$((ATTEMPT + 1))
      echo "$BENCH: $name: other processes used $OTHERS CPU; again in 20 s (retry $ATTEMPT of $RETRIES)" >&2
      sleep 20
      continue
    fi
    break
  done
}

# ---- one run -----------------------------------------------------------------------
# bench_run NAME P THREADS CONFIG SPEC STEPS BATCH ID_JSON SET... : trains
# CONFIG (relative to the repository) on P ranks with THREADS BLAS threads
# each and the given --set options (log.summary is added), in $OUT, output in
# logs/NAME.log, summary in runs/NAME.json, and writes runs/NAME.meta.json:
# ID_JSON (e.g. {model, M, schedule}) plus model_spec (SPEC), date, P,
# blas_threads, mpirun options, wall time, CPU used by others, retries and
# load average. Binding: --bind-to core when P·THREADS fits the cores one per
# rank, else --bind-to none (and --oversubscribe when P > cores). A run during
# which others used more than BUSY_LIMIT CPU is repeated, up to RETRIES times.
# With --keep, a run already in runs/ with the same SPEC, steps and batch that
# others did not disturb is kept. Appends NAME to RUN_LIST; prints a line with
# the throughput (BENCH_RATE_UNIT, default samples/s, = samples/s ×
# BENCH_RATE_SCALE).
bench_run() {
  local name=$1 P=$2 threads=$3 config=$4 spec=$5 steps=$6 batch=$7 id=$8
  shift 8
  local bind=(--bind-to core)
  if [ "$P" -gt "$CORES" ]; then
    bind=(--oversubscribe --bind-to none)
  elif [ $((P * threads)) -gt "$P" ]; then
    bind=(--bind-to none) # a rank's BLAS threads need more than its one core
  fi
  local args=() s
  for s in "$@" "log.summary=$OUT/runs/$name.json"; do args+=(--set "$s"); done
  local attempt=0 others wall
  if [ "$KEEP" = 1 ] && [ -s "$OUT/runs/$name.json" ] && [ -s "$OUT/runs/$name.meta.json" ] &&
     jq -e --argjson l "$BUSY_LIMIT" --arg spec "$spec" '.others_cpus <= $l and .model_spec == $spec' \
       "$OUT/runs/$name.meta.json" >/dev/null &&
     jq -e --argjson steps "$steps" --argjson batch "$batch" \
       '.steps == $steps and .batch_size == $batch' "$OUT/runs/$name.json" >/dev/null; then
    echo "$name" >>"$RUN_LIST"
    echo "$BENCH: $name: kept (others $(jq .others_cpus "$OUT/runs/$name.meta.json") CPU)" >&2
    return
  fi
  bench_run_retried "$name" mpirun -np "$P" "${bind[@]}" "$PIPETRAIN" train "$REPO/$config" "${args[@]}"
  others=$OTHERS wall=$WALL attempt=$ATTEMPT
  jq -n --argjson id "$id" --argjson P "$P" \
    --argjson threads "$threads" --arg bind "${bind[*]}" --argjson others "$others" --argjson wall "$wall" \
    --argjson retries "$attempt" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
    --arg spec "$spec" \
    '$id + {model_spec: $spec, date: $date, P: $P, blas_threads: $threads,
      mpirun: ("mpirun -np \($P) " + $bind), wall_s: $wall, others_cpus: $others,
      retries: $retries, loadavg_after: $load}' >"$OUT/runs/$name.meta.json"
  echo "$name" >>"$RUN_LIST"
  printf '%s: %-28s %7.0f %s  (%s s, others %s CPU)\n' "$BENCH" "$name" \
    "$(jq --argjson k "${BENCH_RATE_SCALE:-1}" '.throughput_samples_per_s * $k' "$OUT/runs/$name.json")" \
    "${BENCH_RATE_UNIT:-samples/s}" "$wall" "$others" >&2
}

# ---- derived figures ---------------------------------------------------------------
# bench_derive MODELS_JSON SGEMM1_JSON [SGEMM2_JSON]: writes $OUT/results.json,
# every run of RUN_LIST as {meta, summary (without ranks), speedup_vs_p1,
# speedup_vs_p1_2threads, ranks}. Speedups (P > 1, one BLAS thread) are over
# P = 1 with the same model and M, with one thread and the same schedule or
# with 2 threads. Each rank gains work_share (its FLOPs / all ranks'),
# gemm_peak_gflops (the FLOP-weighted harmonic mean of the sgemm rates of its
# products: total FLOPs / Σ FLOPs_i / rate_i), peak_fraction (compute_gflops
# over it; for 2-thread runs only when SGEMM2_JSON, the 2-thread rates, is
# given), theoretical_bubble and bubble_ratio (measured / theoretical).
bench_derive() {
  local models=$1 sg1=$2 sg2=${3:-}
  bench_collect_runs >"$OUT/.raw.json"
  [ -n "$sg2" ] || { sg2=$OUT/.none.json; echo '{}' >"$sg2"; }
  jq --slurpfile models "$models" --slurpfile sg "$sg1" --slurpfile sg2 "$sg2" "$BENCH_JQ"'
    $models[0] as $mod | $sg[0] as $peak1 | $sg2[0] as $peak2
    | . as $all
    | def base($r; $t): [ $all[] | select(.meta.model == $r.meta.model and .meta.P == 1 and .meta.M == $r.meta.M
                          and .meta.blas_threads == $t and ($t == 2 or .meta.schedule == $r.meta.schedule))
                          | .summary.throughput_samples_per_s ] | first // null;
    [ .[] | . as $r | $mod[$r.meta.model].layers as $L | $r.summary.micro_batch_rows as $b
      | ($r.summary.ranks | map(.flops) | add) as $ftot
      | (if $r.meta.blas_threads == 2 and ($peak2 | length) > 0 then $peak2 else $peak1 end) as $peak
      | {meta, summary: ($r.summary | del(.ranks)),
         speedup_vs_p1: (base($r; 1) as $d | if $r.meta.P > 1 and $r.meta.blas_threads == 1 and $d != null then $r.summary.throughput_samples_per_s / $d else null end),
         speedup_vs_p1_2threads: (base($r; 2) as $d | if $r.meta.P > 1 and $r.meta.blas_threads == 1 and $d != null then $r.summary.throughput_samples_per_s / $d else null end),
         ranks: [ $r.summary.ranks[] | . as $k
           | [ $k.layers[] as $rg | gemms($L; $rg[0]; $rg[1]; $b)[] ] as $g
           | (if ($g | length) > 0 then ($g | map(.f) | add) / ($g | map(.f / $peak[.k]) | add) else null end) as $ep
           | $k + {work_share: ($k.flops / $ftot),
                   gemm_peak_gflops: $ep,
                   peak_fraction: (if $ep != null and ($r.meta.blas_threads == 1 or ($peak2 | length) > 0) then $k.compute_gflops / $ep else null end),
                   theoretical_bubble: $r.summary.theoretical_bubble,
                   bubble_ratio: (if $r.summary.theoretical_bubble > 0 then $k.bubble_fraction / $r.summary.theoretical_bubble else null end)} ] } ]
  ' "$OUT/.raw.json" >"$OUT/results.json"
  rm -f "$OUT/.raw.json" "$OUT/.none.json" "$TIMES_FILE" "$RUN_LIST"
}

# The --set values that select schedule $1 ("interleaved" runs BENCH_CHUNKS
# model chunks per rank, 2 by default), one per line.
bench_schedule_sets() {
  echo "pipeline.schedule=$1"
  [ "$1" = interleaved ] && echo "pipeline.chunks=${BENCH_CHUNKS:-2}"
  return 0
}

# Can schedule $1 run P = $2 ranks with M = $3 micro-batches on $4 layers?
# Interleaved needs M divisible by P and a layer per virtual stage; prints why not.
bench_schedule_fits() {
  local v=${BENCH_CHUNKS:-2}
  [ "$1" = interleaved ] || return 0
  if [ "$2" -gt 1 ] && [ $(($3 % $2)) -ne 0 ]; then echo "M = $3 is not a multiple of P = $2"; return 1; fi
  if [ $(($2 * v)) -gt "$4" ]; then echo "$(($2 * v)) virtual stages for $4 layers"; return 1; fi
  return 0
}

# The runs of this invocation ($RUN_LIST), as a JSON array of
# {meta, summary} (meta: how bench_run ran it; summary: the run's log.summary).
bench_collect_runs() {
  echo "["
  local sep="" name
  while read -r name; do
    printf '%s{"meta":%s,"summary":%s}\n' "$sep" "$(cat "$OUT/runs/$name.meta.json")" "$(cat "$OUT/runs/$name.json")"
    sep=","
  done <"$RUN_LIST"
  echo "]"
}

# ---- the report's first lines ---------------------------------------------------------
bench_begin() { START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg); START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC'); T_START=$(now_s); }
bench_end() { T_END=$(now_s); END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg); }
# bench_cpu_model: the CPU's model name; bench_seconds: the invocation's
# seconds (bench_begin to bench_end), for the reports' first lines
bench_cpu_model() { sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | sed -n 1p; }
bench_seconds() { awk -v a="$T_START" -v b="$T_END" 'BEGIN {printf "%.0f", b - a}'; }

# bench_header SGEMM_TXT: the invocation, machine and load average lines.
bench_header() {
  jq -r --arg start "$START_DATE" --arg dur "$(bench_seconds)" \
    '"- this invocation: \($start), \($dur) s; the \(length) runs finished between \(map(.meta.date // empty) | min) and \(map(.meta.date // empty) | max) (their own wall time, start-up and evaluation included: \(map(.meta.wall_s) | add | round) s)"' "$OUT/results.json"
  echo "- machine: $(bench_cpu_model), $CORES cores; $(grep -m1 '^openblas' "$1" | sed 's/^openblas *//')"
  echo "- load average (1, 5, 15 min) before: $START_LOAD; after: $END_LOAD"
}
