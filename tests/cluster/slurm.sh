#!/usr/bin/env bash
# examples/slurm/train.sbatch on a private single-node Slurm. The first job
# gets SIGUSR1 mid-run on its ranks (as from --signal=USR1@T before the time
# limit), the second on its batch script (scancel --batch, forwarded to srun):
# each must stop with a checkpoint, print "stopped at step N" and resubmit
# itself; the next job resumes at step N + 1, and the third ends with the
# fingerprint of an uninterrupted mpiexec run. Starts its own munged,
# slurmctld and slurmd (root only) in a temporary directory, on free ports,
# and stops exactly those daemons again.
# Usage: tests/cluster/slurm.sh CONFIG   (PIPETRAIN, MPIEXEC and PIPETRAIN_CKPT
# from ctest). Exit 77 (skipped) when Slurm or munge is missing or cannot
# start. SLURM_TEST_SAVE=DIR keeps a copy of the temporary directory (daemon
# logs, job outputs, run directory) for a look after a failure.
set -u
: "${PIPETRAIN:?}" "${MPIEXEC:?}"
CONFIG=$(realpath "${1:?usage: slurm.sh CONFIG}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SBATCH_SCRIPT=$ROOT/examples/slurm/train.sbatch
STEPS=${SLURM_TEST_STEPS:-4000}   # long enough for the signal to land mid-run
LOG_EVERY=50
ARGS="--set train.steps=$STEPS --set train.log_every=$LOG_EVERY --set checkpoint.every=0 --set checkpoint.keep=0"

skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

for cmd in munged slurmctld slurmd sbatch scancel scontrol sinfo squeue srun setpriv ss; do
  command -v "$cmd" >/dev/null ||
    skip "$cmd not found: install slurm-wlm and munge (apt-get install slurm-wlm munge, as scripts/setup.sh does)"
done
[ "$(id -u)" -eq 0 ] || skip "starting munged and slurmd needs root; run this test as root"
[ -r /etc/munge/munge.key ] || skip "/etc/munge/munge.key missing: reinstall munge or create it with mungekey"
id munge >/dev/null 2>&1 || skip "no user munge: reinstall munge"

TMP=$(mktemp -d /tmp/pipetrain-slurm.XXXXXX)
chmod 755 "$TMP"   # munged runs as munge and must reach its socket
DAEMONS=()         # PIDs of the daemons started here
JOBS=()            # ids of the jobs submitted here (and their resubmissions)

cleanup() {
  local p i
  # jobs first, while the daemons that run them are still up
  if [ ${#JOBS[@]} -gt 0 ] && [ -n "${SLURM_CONF:-}" ]; then
    scancel "${JOBS[@]}" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
      [ -z "$(squeue -h -j "$(IFS=,; echo "${JOBS[*]}")" 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    p=${DAEMONS[i]}
    kill -TERM "$p" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  # a job's slurmstepd outlives slurmd for a moment; ours carry our SLURM_CONF
  if [ -n "${SLURM_CONF:-}" ]; then
    for p in $(pgrep -x slurmstepd); do
      { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF" || continue
      for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$p" 2>/dev/null
    done
  fi
  [ -z "${SLURM_TEST_SAVE:-}" ] || cp -r "$TMP" "$SLURM_TEST_SAVE"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# show the daemons' logs when something went wrong
logs() {
  local f
  for f in "$TMP"/munged.log "$TMP"/slurmctld.log "$TMP"/slurmd.log; do
    [ -s "$f" ] && { echo "--- $f (last lines)"; tail -n 15 "$f"; }
  done
}

# two consecutive free TCP ports (nothing listening, nothing connected)
free_ports() {
  local base used
  used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
  for _ in $(seq 50); do
    base=$((20000 + RANDOM % 40000))
    grep -qx -e "$base" -e "$((base + 1))" <<<"$used" || { echo "$base"; return 0; }
  done
  return 1
}

# --- munged, with its own socket --------------------------------------------
mkdir -p "$TMP/munge"
chown munge:munge "$TMP/munge"
chmod 755 "$TMP/munge"
SOCKET=$TMP/munge/munge.socket
setsid setpriv --reuid=munge --regid=munge --init-groups \
  munged -F --socket="$SOCKET" --pid-file="$TMP/munge/munged.pid" --log-file="$TMP/munge/munged.log" \
  --seed-file="$TMP/munge/munged.seed" --key-file=/etc/munge/munge.key </dev/null >"$TMP/munged.out" 2>&1 &
DAEMONS+=($!)
for _ in $(seq 50); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || { cat "$TMP/munged.out" "$TMP/munge/munged.log" 2>/dev/null; skip "munged did not start (no socket $SOCKET)"; }

# --- slurm.conf ---------------------------------------------------------------
PORT=$(free_ports) || skip "no two free TCP ports found for slurmctld and slurmd"
mkdir -p "$TMP/state" "$TMP/spool" "$TMP/tmpfs" "$TMP/work"
export SLURM_CONF=$TMP/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=pipetrain-test
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
TmpFS=$TMP/tmpfs
FirstJobId=$((1000 + RANDOM))
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=sched_min_interval=100000
MinJobAge=600
KillWait=10
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

# --- slurmctld and slurmd -----------------------------------------------------
setsid slurmctld -D -i </dev/null >"$TMP/slurmctld.out" 2>&1 &
DAEMONS+=($!)
setsid slurmd -D -N localhost </dev/null >"$TMP/slurmd.out" 2>&1 &
DAEMONS+=($!)
state=""
for _ in $(seq 150); do
  state=$(sinfo -h -n localhost -o %t 2>/dev/null)
  [ "$state" = idle ] && break
  for p in "${DAEMONS[@]}"; do kill -0 "$p" 2>/dev/null || break 2; done
  sleep 0.2
done
[ "$state" = idle ] || { cat "$TMP"/slurm*.out; logs; skip "the private Slurm did not come up (node state '${state:-none}' after 30 s)"; }
echo "private Slurm up: ports $PORT/$((PORT + 1)), munge socket $SOCKET"

# --- the reference: the same training uninterrupted, plain mpiexec -------------
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# shellcheck disable=SC2086  # ARGS is a list of options
timeout 120 "$MPIEXEC" --oversubscribe -np 2 "$PIPETRAIN" train "$CONFIG" $ARGS >"$TMP/ref.out" 2>&1 ||
  { cat "$TMP/ref.out"; fail "the uninterrupted reference run failed"; }
ref=$(sed -n 's/^parameter fingerprint: //p' "$TMP/ref.out")
[ -n "$ref" ] || { cat "$TMP/ref.out"; fail "the reference run printed no parameter fingerprint"; }
echo "reference ($STEPS steps, mpiexec -np 2): $ref"

# --- the job -------------------------------------------------------------------
job_state() { scontrol show job -o "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
job_exit() { scontrol show job -o "$1" 2>/dev/null | sed -n 's/.* ExitCode=\([0-9:]*\).*/\1/p'; }
# wait_job ID SECONDS: until the job has ended
wait_job() {
  local s
  for _ in $(seq $(($2 * 5))); do
    s=$(job_state "$1")
    case $s in PENDING | RUNNING | CONFIGURING | COMPLETING | REQUEUED | SUSPENDED | "") sleep 0.2 ;; *) return 0 ;; esac
  done
  return 1
}
show() { local f; for f in "$TMP"/work/*.out; do echo "--- $f"; cat "$f"; done; logs; }

RUN_DIR=$TMP/run
cd "$TMP/work" || fail "cannot enter $TMP/work"
export PIPETRAIN PIPETRAIN_CONFIG=$CONFIG PIPETRAIN_RUN_DIR=$RUN_DIR PIPETRAIN_ARGS=$ARGS PIPETRAIN_MAX_RESUBMITS=2
out_of() { echo "$TMP/work/pipetrain-$1.out"; }
first_step() { sed -n 's/^step  *\([0-9]*\)\/.*/\1/p' "$(out_of "$1")" | head -n 1; }
# training is under way once the job printed its second progress line
under_way() {
  local n
  n=$(grep -c "^step  *[0-9]*/$STEPS " "$(out_of "$1")" 2>/dev/null)
  [ "${n:-0}" -ge 2 ]
}

# stop JOB HOW: signals the job (HOW: "steps", the ranks, as --signal=USR1@T
# does; "batch", the batch script, which passes it on) once training is under
# way, checks that it stopped with a checkpoint and resubmitted itself;
# sets STOPPED (the step) and NEXT (the resubmitted job)
stop() {
  local job=$1 how=$2 out s ckpt
  out=$(out_of "$job")
  for _ in $(seq 300); do
    under_way "$job" && break
    case $(job_state "$job") in PENDING | CONFIGURING | RUNNING) sleep 0.1 ;; *) break ;; esac
  done
  if ! under_way "$job"; then
    show
    s=$(job_state "$job")
    case $s in PENDING | CONFIGURING | RUNNING) fail "job $job printed no second progress line within 30 s" ;; esac
    fail "job $job ended ($s, exit code $(job_exit "$job")) before training got under way; its output is above"
  fi
  if [ "$how" = batch ]; then
    scancel --batch --signal=USR1 "$job" || { show; fail "scancel --batch --signal=USR1 $job failed"; }
  else
    scancel --signal=USR1 "$job" || { show; fail "scancel --signal=USR1 $job failed"; }
  fi
  echo "job $job: SIGUSR1 to the $how after $(grep '^step' "$out" | tail -n 1 | awk '{print $1, $2}')"
  wait_job "$job" 60 || { show; fail "job $job still $(job_state "$job") 60 s after SIGUSR1"; }
  [ "$(job_state "$job") $(job_exit "$job")" = "COMPLETED 0:0" ] ||
    { show; fail "job $job ended $(job_state "$job") with exit code $(job_exit "$job") after SIGUSR1; expected COMPLETED 0:0"; }

  # "stopped at step N" with the job's first step <= N < STEPS, and the step-N checkpoint
  STOPPED=$(sed -n 's/^stopped at step \([0-9]*\).*/\1/p' "$out" | head -n 1)
  if [ -z "$STOPPED" ]; then
    show
    grep -q "^step  *$STEPS/$STEPS " "$out" &&
      fail "job $job trained all $STEPS steps before SIGUSR1 took effect: raise SLURM_TEST_STEPS"
    fail "job $job printed no 'stopped at step N' line after SIGUSR1"
  fi
  if [ "$STOPPED" -lt "$(first_step "$job")" ] || [ "$STOPPED" -ge "$STEPS" ]; then
    show; fail "job $job stopped at step $STOPPED, outside $(first_step "$job")..$((STEPS - 1))"
  fi
  ckpt=$(printf 'step-%06d' "$STOPPED")
  [ -f "$RUN_DIR/$ckpt/manifest.h5" ] || { ls -l "$RUN_DIR"; show; fail "no checkpoint $RUN_DIR/$ckpt after job $job stopped at step $STOPPED"; }
  [ "$(cat "$RUN_DIR/latest")" = "$ckpt" ] || { show; fail "job $job stopped at step $STOPPED but latest names '$(cat "$RUN_DIR/latest")'"; }
  if [ -n "${PIPETRAIN_CKPT:-}" ]; then
    "$PIPETRAIN_CKPT" verify "$RUN_DIR/$ckpt" >"$TMP/verify.out" 2>&1 ||
      { cat "$TMP/verify.out"; fail "the checkpoint $ckpt written when job $job stopped does not verify"; }
  fi
  NEXT=$(sed -n 's/^train.sbatch: resubmitted as job \([0-9]*\).*/\1/p' "$out" | head -n 1)
  [ -n "$NEXT" ] || { show; fail "job $job stopped at step $STOPPED but did not resubmit itself"; }
  JOBS+=("$NEXT")
  echo "job $job stopped at step $STOPPED with checkpoint $ckpt and resubmitted itself as job $NEXT"
}

job1=$(sbatch --parsable --ntasks=2 --cpus-per-task=1 "$SBATCH_SCRIPT") || { logs; fail "sbatch refused $SBATCH_SCRIPT"; }
job1=${job1%%;*}
JOBS+=("$job1")
echo "submitted job $job1"
stop "$job1" steps
stop1=$STOPPED job2=$NEXT
stop "$job2" batch
stop2=$STOPPED job3=$NEXT
[ "$(first_step "$job2")" = $((stop1 + 1)) ] || { show; fail "job $job2 began at step $(first_step "$job2"), expected $((stop1 + 1)) (a resume from step $stop1)"; }

# the last job resumes, finishes and does not resubmit
wait_job "$job3" 60 || { show; fail "job $job3 still $(job_state "$job3") after 60 s"; }
[ "$(job_state "$job3") $(job_exit "$job3")" = "COMPLETED 0:0" ] ||
  { show; fail "job $job3 ended $(job_state "$job3") with exit code $(job_exit "$job3"); expected COMPLETED 0:0"; }
out3=$(out_of "$job3")
[ "$(first_step "$job3")" = $((stop2 + 1)) ] || { show; fail "job $job3 began at step $(first_step "$job3"), expected $((stop2 + 1)) (a resume from step $stop2)"; }
! grep -q '^stopped at step' "$out3" || { show; fail "job $job3 stopped without a signal"; }
! grep -q '^train.sbatch: resubmitted' "$out3" || { show; fail "job $job3 finished the run but resubmitted itself"; }
grep -q '^train.sbatch: training finished' "$out3" || { show; fail "job $job3 did not report the run finished"; }
fp=$(sed -n 's/^parameter fingerprint: //p' "$out3")
[ "$fp" = "$ref" ] || { show; fail "stopped at steps $stop1 and $stop2, resumed twice: fingerprint '$fp', uninterrupted run $ref"; }
[ "$(cat "$RUN_DIR/latest")" = "$(printf 'step-%06d' "$STEPS")" ] || fail "latest is '$(cat "$RUN_DIR/latest")' after the run"
echo "job $job3 resumed at step $((stop2 + 1)) and finished: $fp, as the uninterrupted run"
echo "PASS"
