#!/usr/bin/env bash
# A rank that stops answering (SIGSTOP: a frozen host, a suspended process)
# ends the whole job within train.timeout and a few seconds: the rank that
# waited names itself, the operation and the rank it waited for. Stops rank 1,
# then rank 0, of a P = 2 run; only the processes this test started are
# signalled, by PID.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
LIMIT=5
MP=
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  [ -z "$MP" ] || kill -KILL "$MP" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# stop RANK: starts a long P = 2 run, stops world rank RANK once steps run,
# waits for mpirun to end; sets TOOK (seconds after the stop) and RC
stop_rank() {
  local rank=$1 p i
  "$MPIEXEC" --oversubscribe -np 2 "$PIPETRAIN" train "$CONFIG" --set train.steps=100000000 \
    --set train.log_every=50 --set "train.timeout=$LIMIT" >"$TMP/out" 2>&1 &
  MP=$!
  for i in $(seq 1 300); do grep -q '^step ' "$TMP/out" && break; sleep 0.1; done
  grep -q '^step ' "$TMP/out" || { cat "$TMP/out"; fail "stop rank $rank: no progress line after 30 s"; }
  pids=($(pgrep -P "$MP" || true))
  local victim=
  for p in "${pids[@]}"; do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$rank" && victim=$p
  done
  [ -n "$victim" ] || fail "stop rank $rank: no child of mpirun $MP is world rank $rank (children: ${pids[*]})"
  kill -STOP "$victim"
  local t0 t1
  t0=$(date +%s.%N)
  for i in $(seq 1 $(( (LIMIT + 20) * 10 ))); do kill -0 "$MP" 2>/dev/null || break; sleep 0.1; done
  t1=$(date +%s.%N)
  TOOK=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
  if kill -0 "$MP" 2>/dev/null; then
    cat "$TMP/out"
    fail "stop rank $rank: the job still runs $TOOK s after the stop (train.timeout = $LIMIT)"
  fi
  set +e
  wait "$MP"
  RC=$?
  set -e
  MP=
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  pids=()
}
expect() { grep -Eq -- "$1" "$TMP/out" || { cat "$TMP/out"; fail "$2: output lacks '$1'"; }; }

stop_rank 1
[ "$RC" -ne 0 ] || fail "stop rank 1: exit code 0"
expect "world rank 0 \(stage 0, replica 0, host .*\) waited $LIMIT s \(train.timeout\) for " "stop rank 1"
expect "world rank 1(, | \()host " "stop rank 1"
expect "raise train.timeout" "stop rank 1"
echo "stop rank 1: ended in $TOOK s, exit code $RC: $(grep -m1 'waited' "$TMP/out")"

stop_rank 0
[ "$RC" -ne 0 ] || fail "stop rank 0: exit code 0"
expect "world rank 1 \(stage 1, replica 0, host .*\) waited $LIMIT s \(train.timeout\) for " "stop rank 0"
expect "world rank 0(, | \()host " "stop rank 0"
echo "stop rank 0: ended in $TOOK s, exit code $RC: $(grep -m1 'waited' "$TMP/out")"

# 0 waits forever: accepted, and an ordinary run is unchanged (the other tests run with the default)
run 2 train "$CONFIG" --set train.steps=4 --set train.timeout=0
[ "$RC" -eq 0 ] || { cat "$TMP/out"; fail "train.timeout = 0: exit code $RC"; }
echo "train.timeout = 0: finished"
