#!/usr/bin/env bash
# Data parallelism: P stages × D replicas. With pipeline.reduction = invariant
# the same config ends with the same parameter fingerprint, bit for bit, for
# every (P, D) and schedule; checkpoints move between grids; a dead rank in
# replica 1 ends the job; replicas that drift apart are caught; layouts that
# cannot work are refused with one line.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1; shift
WHAT=${1:-all}   # "all", or "grid" for the fingerprint equality only (the GPT run)
expect() { grep -q -- "$1" "$TMP/out" || { cat "$TMP/out"; fail "$2: output lacks '$1'"; }; }

INV=(--set pipeline.reduction=invariant)
ref="" ; refname=""
# agree NAME P D ARGS... : trains P stages × D replicas and checks the fingerprint
agree() {
  local name=$1 P=$2 D=$3; shift 3
  run $((P * D)) train "$CONFIG" --set pipeline.data_parallel=$D "$@" --tensor-hashes "$TMP/h-$name"
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "$name exited with $RC"; }
  fp=$(fingerprint_of "$TMP/out")
  [ -n "$fp" ] || { cat "$TMP/out"; fail "$name printed no fingerprint"; }
  echo "$name: $fp"
  if [ -z "$ref" ]; then ref=$fp; refname="h-$name"; return; fi
  if [ "$fp" != "$ref" ]; then
    first=$(diff "$TMP/$refname" "$TMP/h-$name" | sed -n 's/^< \([^ ]*\) .*/\1/p' | head -1)
    fail "$name fingerprint $fp differs from ${refname#h-}'s $ref; first tensor that differs: ${first:-?}"
  fi
}

for sched in 1f1b zbh1; do
  for pd in 1:1 2:1 1:2 2:2 1:4 4:1; do
    agree "P=${pd%:*},D=${pd#*:}-$sched" ${pd%:*} ${pd#*:} --set pipeline.schedule=$sched "${INV[@]}"
  done
done
agree "P=1,D=2-interleaved-v=2" 1 2 --set pipeline.schedule=interleaved --set pipeline.chunks=2 "${INV[@]}"
grep -q "^grid: 1 stage × 2 replicas" "$TMP/out" || { cat "$TMP/out"; fail "the plan does not show the grid"; }
echo "invariant reduction: every (P, D) and schedule agree: $ref"
[ "$WHAT" = grid ] && exit 0

# fast reduction: the same bits over P (not over D), the same on every replica
ref="" ; refname=""
agree "fast-P=1,D=2" 1 2
agree "fast-P=2,D=2" 2 2
echo "fast reduction: P = 1 and 2 agree at D = 2: $ref"
# and the two modes differ where their association differs: on one replica,
# fast adds the 4 micro-batches in a row, invariant as (0 + 1) + (2 + 3)
run 1 train "$CONFIG"
fast1=$(fingerprint_of "$TMP/out")
run 1 train "$CONFIG" "${INV[@]}"
[ "$fast1" != "$(fingerprint_of "$TMP/out")" ] || fail "fast and invariant reductions gave the same bits on one rank"
echo "fast and invariant differ on one rank, as their association does"

# checkpoints: saved on (2, 2) after N steps, resumed on (1, 4) and (4, 1)
N=6
base=(--set train.steps=$((2 * N)) --set checkpoint.keep=0 "${INV[@]}")
run 1 train "$CONFIG" "${base[@]}"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "reference run exited with $RC"; }
whole=$(fingerprint_of "$TMP/out")
run 4 train "$CONFIG" "${base[@]}" --set pipeline.data_parallel=2 --set checkpoint.dir="$TMP/run" --stop-after $N
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "(2, 2) --stop-after exited with $RC"; }
for pd in 1:4 4:1; do
  rm -f "$TMP/run/lock"
  cp -r "$TMP/run" "$TMP/run-$pd"
  run 4 train "$CONFIG" "${base[@]}" --set pipeline.data_parallel=${pd#*:} --set checkpoint.dir="$TMP/run-$pd" \
      --resume "$TMP/run-$pd"
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "resume on (${pd/:/, }) exited with $RC"; }
  fp=$(fingerprint_of "$TMP/out")
  [ "$fp" = "$whole" ] || fail "saved on (2, 2), resumed on (${pd/:/, }): $fp, expected $whole (1 rank straight)"
  echo "saved on (2, 2) after step $N, resumed on (${pd/:/, }): $fp"
done

# a rank of replica 1 dies: the whole job ends with a message
start=$(date +%s)
run 4 train "$CONFIG" --set pipeline.data_parallel=2 --set fault.kind=crash --set fault.rank=3 --set fault.step=1
took=$(( $(date +%s) - start ))
[ $RC -ne 0 ] || fail "crash in replica 1: exit code 0"
expect "rank 3 (stage 1): died on signal" "crash in replica 1"
[ $took -lt 60 ] || fail "crash in replica 1: the job took ${took}s to end"
echo "crash in replica 1: ended in ${took}s"

# a replica drifts by one ulp after step 2: the next check names it
run 4 train "$CONFIG" --set pipeline.data_parallel=2 --set fault.kind=diverge --set fault.rank=2 --set fault.step=1 \
    --set train.log_every=2
[ $RC -ne 0 ] || { cat "$TMP/out"; fail "a diverged replica was not caught"; }
expect "after step 2 the replicas differ: stage 0 of replica 1 holds another layers.0.w" "diverge"
echo "divergence caught: $(grep -m1 'replicas differ' "$TMP/out" | cut -c1-120)"

# 2 BLAS threads on ranks bound to one core each: a warning naming the fix;
# unbound: none
for bind in core none; do
  set +e
  timeout 120 "$MPIEXEC" --bind-to $bind -np 2 "$PIPETRAIN" train "$CONFIG" --set train.blas_threads=2 \
      --set train.steps=4 >"$TMP/out" 2>&1
  RC=$?
  set -e
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "--bind-to $bind with 2 BLAS threads exited with $RC"; }
  n=$(grep -c "warning: train.blas_threads = 2 but the affinity mask of 2 ranks allows only 1 CPU.*--bind-to none" \
      "$TMP/out" || true)
  [ "$n" -eq $([ $bind = core ] && echo 1 || echo 0) ] || { cat "$TMP/out"; fail "--bind-to $bind: $n binding warnings"; }
done
echo "binding: warned under --bind-to core, not under --bind-to none"

# layouts that cannot work: one line each
check() { # check NP "expected text" ARGS...
  local np=$1 want=$2; shift 2
  run $np train "$CONFIG" "$@"
  [ $RC -ne 0 ] || { cat "$TMP/out"; fail "'$*' was accepted"; }
  [ "$(grep -c -- "$want" "$TMP/out")" -eq 1 ] || { cat "$TMP/out"; fail "'$*': expected one line with '$want'"; }
  echo "ok: $want"
}
check 3 "mpirun -np 3 is not a multiple of pipeline.data_parallel = 2.*run on 2 or 4 ranks" --set pipeline.data_parallel=2
check 3 "pipeline.micro_batches = 4 is not divisible by pipeline.data_parallel = 3" --set pipeline.data_parallel=3
check 2 "each replica's share of the micro-batches (micro_batches / data_parallel = 6 / 2 = 3) to be a power of two" \
    --set pipeline.data_parallel=2 --set pipeline.micro_batches=6 --set train.batch_size=48 "${INV[@]}"
check 4 "each of the 2 replicas runs pipeline.micro_batches / data_parallel = 2 / 2 micro-batches on 2 ranks" \
    --set pipeline.data_parallel=2 --set pipeline.schedule=interleaved --set pipeline.chunks=2 \
    --set pipeline.micro_batches=2
