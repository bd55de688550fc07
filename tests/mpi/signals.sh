#!/usr/bin/env bash
# Stopping on a signal and requeueing: SIGUSR1 sent to mpiexec, or SIGTERM
# sent to every rank, mid-run: the ranks agree on one step, write a
# checkpoint there, rank 0 says where it stopped, exit 0; `--resume auto`
# then continues it to the same parameters as a run never stopped, and in an
# empty directory starts a new run. Without checkpoint.dir a stop saves
# nothing and says so; a second signal ends the job at once.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
# train.steps is far away, so a signal always lands mid-run; the runs compared
# end with --stop-after (which keeps the schedule of train.steps)
base=(--set train.steps=100000 --set train.log_every=10 --set checkpoint.keep=0)

# start OUT ARGS...: pipetrain train on 2 ranks in the background, output in OUT;
# BG is the pid of its `timeout`, MPIRUN that of mpiexec, RANKS those of the ranks
start() {
  local out=$1; shift
  timeout 120 "$MPIEXEC" --oversubscribe -np 2 "$PIPETRAIN" train "$CONFIG" "${base[@]}" "$@" >"$out" 2>&1 &
  BG=$!
  MPIRUN= RANKS=
  for _ in $(seq 300); do
    MPIRUN=$(pgrep -P $BG || true)
    [ -n "$MPIRUN" ] && RANKS=$(pgrep -P "$MPIRUN" -x pipetrain | tr '\n' ' ' || true)
    [ "$(echo $RANKS | wc -w)" -eq 2 ] && break
    sleep 0.1
  done
  [ "$(echo $RANKS | wc -w)" -eq 2 ] || { kill $BG 2>/dev/null; cat "$out"; fail "the ranks did not start"; }
}
# trained OUT: waits until the run in the background has printed step 10
trained() {
  for _ in $(seq 600); do
    grep -q '^step  *10/' "$1" && return 0
    kill -0 $BG 2>/dev/null || break
    sleep 0.1
  done
  kill $BG 2>/dev/null || true
  cat "$1"; fail "the run did not reach step 10"
}
finish() { # finish: waits for the run in the background, its exit code in RC
  set +e
  wait $BG
  RC=$?
  set -e
}
# stopped OUT DIR SIGNAME: a clean stop with a checkpoint in DIR; STOPPED is its step
stopped() {
  [ $RC -eq 0 ] || { cat "$1"; fail "$3: exit $RC, expected 0"; }
  [ "$(grep -c '^stopped at step' "$1")" -eq 1 ] || { cat "$1"; fail "$3: not one 'stopped at step' line"; }
  STOPPED=$(sed -n "s/^stopped at step \([0-9]*\) on $3: checkpoint .*/\1/p" "$1")
  [ -n "$STOPPED" ] || { cat "$1"; fail "$3: the stop line does not name the step and $3"; }
  local ck; ck=$2/step-$(printf %06d "$STOPPED")
  grep -q "^stopped at step $STOPPED on $3: checkpoint $ck; continue with the same command and --resume auto$" "$1" ||
    { cat "$1"; fail "$3: the stop line does not name $ck and --resume auto"; }
  [ "$(cat "$2/latest")" = "step-$(printf %06d "$STOPPED")" ] || fail "$3: latest is '$(cat "$2/latest")'"
  [ ! -e "$2/lock" ] || fail "$3: the stopped run left its lock behind"
  ! grep -q '^test accuracy' "$1" || { cat "$1"; fail "$3: a stopped run evaluated the model"; }
  [ -n "$(fingerprint_of "$1")" ] || { cat "$1"; fail "$3: no parameter fingerprint"; }
  echo "$3: $(grep '^stopped at step' "$1")"
}

# SIGUSR1 to mpiexec, which passes it on to the ranks
D1=$TMP/usr1
start "$TMP/usr1.out" --set checkpoint.dir="$D1"
trained "$TMP/usr1.out"
kill -USR1 "$MPIRUN"
finish
stopped "$TMP/usr1.out" "$D1" SIGUSR1
S1=$STOPPED

# SIGTERM to every rank (as Slurm sends it to the tasks of srun)
D2=$TMP/term
start "$TMP/term.out" --set checkpoint.dir="$D2"
trained "$TMP/term.out"
# shellcheck disable=SC2086
kill -TERM $RANKS
finish
stopped "$TMP/term.out" "$D2" SIGTERM
S2=$STOPPED

# a few steps past both stops: a run never stopped, starting with --resume auto in an empty directory
X=$(( (S1 > S2 ? S1 : S2) + 5 ))
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$TMP/fresh" --resume auto --stop-after $X
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "--resume auto in an empty directory exited with $RC"; }
grep -q "^--resume auto: no checkpoint in $TMP/fresh yet: starting a new run at step 0$" "$TMP/out" ||
  { cat "$TMP/out"; fail "--resume auto in an empty directory does not say it starts a new run"; }
! grep -q "^resumed from" "$TMP/out" || { cat "$TMP/out"; fail "--resume auto in an empty directory resumed"; }
ref=$(fingerprint_of "$TMP/out")
echo "--resume auto in an empty directory: a new run, $X steps: $ref"

# --resume auto continues each stopped run to the same parameters
for d in "$D1 $S1" "$D2 $S2"; do
  set -- $d
  run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$1" --resume auto --stop-after $X
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "--resume auto in $1 exited with $RC"; }
  grep -q "^resumed from $1/step-$(printf %06d "$2"): step $2$" "$TMP/out" ||
    { cat "$TMP/out"; fail "--resume auto in $1 did not resume step $2"; }
  [ "$(fingerprint_of "$TMP/out")" = "$ref" ] ||
    fail "stopped at step $2, resumed with --resume auto: fingerprint $(fingerprint_of "$TMP/out"), expected $ref"
  echo "stopped at step $2 in $1, --resume auto to step $X: $ref"
done

# without checkpoint.dir: it stops all the same and says that nothing was saved
start "$TMP/none.out"
trained "$TMP/none.out"
kill -USR1 "$MPIRUN"
finish
[ $RC -eq 0 ] || { cat "$TMP/none.out"; fail "a stop without checkpoint.dir: exit $RC"; }
grep -q "^stopped at step [0-9]* on SIGUSR1: nothing saved (checkpoint.dir is not set)$" "$TMP/none.out" ||
  { cat "$TMP/none.out"; fail "a stop without checkpoint.dir does not say that nothing was saved"; }
echo "no checkpoint.dir: $(grep '^stopped at step' "$TMP/none.out")"

# a second signal ends the job at once, with one line saying so
start "$TMP/twice.out" --set checkpoint.dir="$TMP/twice"
trained "$TMP/twice.out"
rank0=
for p in $RANKS; do tr '\0' '\n' <"/proc/$p/environ" | grep -qx OMPI_COMM_WORLD_RANK=0 && rank0=$p; done
[ -n "$rank0" ] || fail "a second signal: rank 0 not found among $RANKS"
kill -USR1 "$rank0"
kill -TERM "$rank0"
finish
[ $RC -ne 0 ] || { cat "$TMP/twice.out"; fail "a second signal: the job went on to exit 0"; }
# (the two may reach two threads of rank 0 at once: either is the second)
grep -q "^pipetrain: SIG[A-Z0-9]* while stopping (a second stop signal): ending at once" "$TMP/twice.out" ||
  { cat "$TMP/twice.out"; fail "a second signal: no line saying so"; }
! grep -q '^stopped at step' "$TMP/twice.out" || { cat "$TMP/twice.out"; fail "a second signal: it stopped cleanly"; }
echo "a second signal: $(grep -m1 '^pipetrain: SIG' "$TMP/twice.out")"
echo "signals: ok"
