#!/usr/bin/env bash
# A rank that dies on another host ends the whole job within a bounded time,
# with a nonzero exit code and a message naming it: the injected crash (the
# rank's own message, and mpirun's naming the host) and a kill -9 from outside
# (mpirun's).
# shellcheck source=tests/cluster/lib.sh
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
expect() { grep -q -- "$1" "$TMP/out" || { cat "$TMP/out"; fail "$2: output lacks '$1'"; }; }
hosts_up 2
h2=$(hosts_name 2)

# rank 1, on host 2, dies on a signal in the middle of step 2
start=$(date +%s)
hrun 2 2 -- train "$CONFIG" --set fault.kind=crash --set fault.rank=1 --set fault.step=1
took=$(( $(date +%s) - start ))
[ "$RC" -ne 0 ] || { cat "$TMP/out"; fail "crash on host 2: exit code 0"; }
[ "$RC" -ne 124 ] || { cat "$TMP/out"; fail "crash on host 2: the job hung until the timeout"; }
expect "rank 1 (stage 1): died on signal" "crash on host 2"
expect "at step 2" "crash on host 2"
expect "rank 1 with PID [0-9]* on node $h2 exited on signal" "crash on host 2"
[ $took -lt 60 ] || fail "crash on host 2: the job took ${took}s to end"
echo "crash on host 2: ended in ${took}s with: $(grep -m1 'died on signal' "$TMP/out")"

# kill -9 of the rank on host 2 while it trains
hosts_mpirun --host "$(hosts_names 2)" -np 2 -x OPENBLAS_NUM_THREADS=1 "$PIPETRAIN" train "$CONFIG" \
  --set train.steps=1000000 --set train.log_every=1000 >"$TMP/out" 2>&1 &
job=$!
pid=""
for _ in $(seq 300); do
  for p in $(ip netns pids "$h2"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = pipetrain ] && pid=$p
  done
  [ -n "$pid" ] && grep -q "^step" "$TMP/out" && break
  pid=""
  sleep 0.2
done
[ -n "$pid" ] || { kill "$job"; cat "$TMP/out"; fail "no pipetrain process training on $h2 after 60 s"; }
start=$(date +%s)
kill -9 "$pid"
set +e
wait "$job"
RC=$?
set -e
took=$(( $(date +%s) - start ))
[ "$RC" -ne 0 ] || { cat "$TMP/out"; fail "kill -9 on host 2: exit code 0"; }
[ "$RC" -ne 124 ] || { cat "$TMP/out"; fail "kill -9 on host 2: the job hung until the timeout"; }
expect "rank 1 with PID [0-9]* on node $h2 exited on signal 9" "kill -9 on host 2"
[ $took -lt 60 ] || fail "kill -9 on host 2: the job took ${took}s to end"
echo "kill -9 of rank 1 on $h2: ended in ${took}s with exit code $RC"
