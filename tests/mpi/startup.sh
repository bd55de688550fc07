#!/usr/bin/env bash
# Start-up checks, each refused before step 1 with one error line: ranks that
# disagree on the run or read different data; a checkpoint.dir that cannot be
# created, is held by another run, or holds another run's checkpoints; a
# resume that changes a key defining the stored state. And what is allowed:
# a noted change into a fresh directory (recorded in the checkpoints'
# history), the same run again, a stale lock taken over.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
one_error() { # one_error WHAT TEXT: the run failed before step 1 with exactly one error line holding TEXT
  [ $RC -ne 0 ] || { cat "$TMP/out"; fail "$1: accepted"; }
  grep -q -- "$2" "$TMP/out" || { cat "$TMP/out"; fail "$1: the error lacks '$2'"; }
  [ "$(grep -c '^pipetrain: ' "$TMP/out")" -eq 1 ] || { cat "$TMP/out"; fail "$1: not exactly one error line"; }
  ! grep -q '^step ' "$TMP/out" || { cat "$TMP/out"; fail "$1: it trained before refusing"; }
  echo "$1: $(grep -m1 '^pipetrain: ' "$TMP/out")"
}
mpmd() { # mpmd ARGS-A -- ARGS-B: rank 0 runs pipetrain ARGS-A, rank 1 pipetrain ARGS-B
  local a=() b=()
  while [ "$1" != -- ]; do a+=("$1"); shift; done; shift; b=("$@")
  set +e
  timeout 120 "$MPIEXEC" --oversubscribe -np 1 "$PIPETRAIN" "${a[@]}" : -np 1 "${b[@]}" >"$TMP/out" 2>&1
  RC=$?
  set -e
}

# --- ranks that disagree -----------------------------------------------------
# config files that differ in one key (as on hosts that see different files)
cp "$CONFIG" "$TMP/a.ini"
sed 's/^\[train\]/[train]\nseed = 2/' "$CONFIG" >"$TMP/b.ini"
mpmd train "$TMP/a.ini" -- "$PIPETRAIN" train "$TMP/b.ini"
one_error "config differs between ranks" "rank 1 .* disagrees with rank 0 .*'train.seed = 2' where rank 0 has 'train.seed = 1'"
# a config file only one rank can read
mpmd train "$TMP/a.ini" -- "$PIPETRAIN" train "$TMP/missing.ini"
one_error "config missing on one rank" "rank 1 (host .*): cannot open config file .*missing.ini"
# command-line options that differ
mpmd train "$CONFIG" --set train.steps=4 -- "$PIPETRAIN" train "$CONFIG" --set train.steps=5
one_error "options differ between ranks" "'train.steps = 5' where rank 0 has 'train.steps = 4'"
# the same data.path showing other bytes on one "host" (a private mount namespace)
if unshare -m true 2>/dev/null; then
  mkdir -p "$TMP/tx" "$TMP/ty"
  for i in $(seq 400); do echo "line $i of one corpus"; done >"$TMP/tx/a.txt"
  for i in $(seq 400); do echo "line $i of another corpus"; done >"$TMP/ty/a.txt"
  text=(--set data.dataset=text --set data.path="$TMP/tx" --set data.context=16
        --set "model.layers=embed 256 16, posembed, block 2 causal, layernorm, lmhead 256")
  mpmd train "$CONFIG" "${text[@]}" -- unshare -m sh -c \
    "mount --bind '$TMP/ty' '$TMP/tx' && exec \"\$0\" \"\$@\"" "$PIPETRAIN" train "$CONFIG" "${text[@]}"
  one_error "data differs between ranks" "disagrees with rank 0 .* on the data set"
else
  echo "data differs between ranks: skipped (no mount namespaces here)"
fi

# --- files written at the end are checked at the start ----------------------------
mkfifo "$TMP/fifo"
for out in "--set log.summary=$TMP/fifo" "--set log.metrics=$TMP/fifo" "--tensor-hashes $TMP/fifo"; do
  # shellcheck disable=SC2086
  run 2 train "$CONFIG" $out
  one_error "output ${out%%=*} is a FIFO" "is a FIFO, not a regular file"
done
run 2 train "$CONFIG" --set log.summary="$TMP/no/such/dir/run.json"
one_error "log.summary in a missing directory" "log.summary: cannot create $TMP/no/such/dir/run.json"

# --- the run directory ---------------------------------------------------------
base=(--set train.steps=12 --set checkpoint.every=6 --set checkpoint.keep=0)
touch "$TMP/afile"
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$TMP/afile/sub"
one_error "checkpoint.dir below a regular file" "checkpoint.dir $TMP/afile/sub: .*not a directory"
# hosts that do not share checkpoint.dir (private mount namespaces): rank 1 sees it read-only,
# rank 2 sees an empty file system in its place; one error names both
if unshare -m true 2>/dev/null; then
  S="$TMP/shared"
  mkdir -p "$S"
  args=(train "$CONFIG" "${base[@]}" --set checkpoint.dir="$S")
  set +e
  timeout 120 "$MPIEXEC" --oversubscribe -np 1 "$PIPETRAIN" "${args[@]}" \
    : -np 1 unshare -m sh -c 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"' \
      sh "$S" "$PIPETRAIN" "${args[@]}" \
    : -np 1 unshare -m sh -c 'mount -t tmpfs none "$1" && shift && exec "$@"' sh "$S" "$PIPETRAIN" "${args[@]}" \
    >"$TMP/out" 2>&1
  RC=$?
  set -e
  one_error "checkpoint.dir not shared" "checkpoint.dir $S cannot serve every rank: rank 1 (host [^)]*): cannot create a file in it (.probe-rank-1.h5): Read-only file system; rank 2 (host [^)]*) does not see the run directory that rank 0 made (its lock file is missing there). checkpoint.dir must be a directory every rank can write, at the same path on a file system that every host shares"
  [ -z "$(ls -A "$S")" ] || fail "checkpoint.dir not shared: probes or the lock were left behind: $(ls -A "$S")"
else
  echo "checkpoint.dir not shared: skipped (no mount namespaces here)"
fi

# a file system without working file locks (an LD_PRELOAD shim whose flock fails
# with ENOLCK): named as a locking problem with the fix, before step 1
set +e
timeout 120 "$MPIEXEC" --oversubscribe -np 2 -x LD_PRELOAD="$NOFLOCK" "$PIPETRAIN" train "$CONFIG" "${base[@]}" \
    --set checkpoint.dir="$TMP/nolocks" >"$TMP/out" 2>&1
RC=$?
set -e
one_error "no file locks" "HDF5_USE_FILE_LOCKING=FALSE"
! grep -qi "damaged" "$TMP/out" || fail "no file locks: reported as damage"
set +e
timeout 120 "$MPIEXEC" --oversubscribe -np 2 -x LD_PRELOAD="$NOFLOCK" -x HDF5_USE_FILE_LOCKING=FALSE "$PIPETRAIN" \
    train "$CONFIG" "${base[@]}" --set checkpoint.dir="$TMP/nolocks" >"$TMP/out" 2>&1
RC=$?
set -e
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "no file locks with HDF5_USE_FILE_LOCKING=FALSE exited with $RC"; }

D="$TMP/run"
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$D"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "the first run exited with $RC"; }
fp=$(fingerprint_of "$TMP/out")
[ ! -e "$D/lock" ] || fail "the run left its lock behind"
snapshot() { (cd "$D" && find . -type f | sort | xargs md5sum); }
before=$(snapshot)

# the same run again is allowed: it writes the same checkpoints, byte for byte
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$D"
[ $RC -eq 0 ] && [ "$(fingerprint_of "$TMP/out")" = "$fp" ] || { cat "$TMP/out"; fail "rerunning the same run"; }
[ "$before" = "$(snapshot)" ] || fail "rerunning the same run wrote other checkpoint bytes"
# another run into the same directory is refused
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$D" --set train.seed=7
one_error "another run's directory" "holds $D/step-000006, a checkpoint of another run ('train.seed = 1' there, 'train.seed = 7'"
[ "$before" = "$(snapshot)" ] || fail "the refused run changed $D"

# --- resume rules ----------------------------------------------------------------
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$D" --resume "$D/step-000006" --set train.seed=2
one_error "resume with another seed" "cannot resume checkpoint $D/step-000006 with train.seed = 2 (the checkpoint's run has 1)"
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$D" --resume "$D/step-000006" \
    --set "model.layers=linear 64, relu, linear 10"
one_error "resume with another model" "model.layers"
# a noted change that would replace the later checkpoint of the original history
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$D" --resume "$D/step-000006" --set train.lr=1e-4
one_error "noted change over later checkpoints" "holds $D/step-000012, a checkpoint of this run's history before this resume's changes ('train.lr = 0.002' there, 'train.lr = 0.0001'"
grep -q "^note: resuming step 6 with train.lr = 0.0001 (the checkpoint's run had 0.002)" "$TMP/out" || fail "no note for the change"
[ "$before" = "$(snapshot)" ] || fail "a refused resume changed $D"
# the same change into a fresh directory: allowed, noted, recorded in the history
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$TMP/branch" --resume "$D/step-000006" --set train.lr=1e-4
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "a noted change into a fresh directory exited with $RC"; }
grep -q "^note: resuming step 6 with train.lr = 0.0001" "$TMP/out" || fail "no note for the change"
"$PIPETRAIN_CKPT" ls "$TMP/branch/step-000012" >"$TMP/ls" 2>&1 || { cat "$TMP/ls"; fail "ls of the branch"; }
grep -q "^history     step 6: train.lr = 0.002 -> 0.0001" "$TMP/ls" || { cat "$TMP/ls"; fail "ls does not show the history"; }
grep -q "^data        [0-9a-f]\{32\}$" "$TMP/ls" || { cat "$TMP/ls"; fail "ls does not show the data fingerprint"; }
grep -q "^history     none" <("$PIPETRAIN_CKPT" ls "$D/step-000012") || fail "ls of an unchanged run shows a history"
# pipetrain-ckpt config prints the config to rerun with, the history as comments
"$PIPETRAIN_CKPT" config "$TMP/branch" >"$TMP/branch.ini" || fail "pipetrain-ckpt config failed"
grep -q "^lr = 0.0001$" "$TMP/branch.ini" && grep -q "^; step 6: train.lr = 0.002 -> 0.0001$" "$TMP/branch.ini" ||
  { cat "$TMP/branch.ini"; fail "pipetrain-ckpt config lacks the lr or the history"; }
# resuming the branch with its own config (as pipetrain-ckpt config printed it) is the same history: allowed
run 2 train "$TMP/branch.ini" --resume "$TMP/branch/step-000012"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "resuming the branch exited with $RC"; }
! grep -q "^note:" "$TMP/out" || { cat "$TMP/out"; fail "resuming the branch unchanged printed a note"; }
# keys that do not change the numbers change silently
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$D" --resume "$D/step-000006" \
    --set pipeline.schedule=gpipe --set train.log_every=1
[ $RC -eq 0 ] && [ "$(fingerprint_of "$TMP/out")" = "$fp" ] || { cat "$TMP/out"; fail "resume with another schedule"; }
! grep -q "^note:" "$TMP/out" || { cat "$TMP/out"; fail "a free key printed a note"; }

# --- one run per directory: the lock ---------------------------------------------
L="$TMP/locked"
set +e
timeout 120 "$MPIEXEC" --oversubscribe -np 2 "$PIPETRAIN" train "$CONFIG" --set train.steps=1000000 \
    --set checkpoint.dir="$L" >"$TMP/long.out" 2>&1 &
long=$!
set -e
for _ in $(seq 100); do [ -s "$L/lock" ] && grep -q '^step ' "$TMP/long.out" && break; sleep 0.2; done
[ -s "$L/lock" ] || { kill $long; cat "$TMP/long.out"; fail "the running run holds no lock"; }
holder=$(sed -n 's/^pid //p' "$L/lock")
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$L"
one_error "a directory in use" "checkpoint.dir $L is in use by another run, still running (pid $holder on host"
# the holder dies without a word: its lock is stale and the next run takes it over
kill -KILL "$holder"
wait $long || true
[ -s "$L/lock" ] || fail "the killed run's lock is gone (the test needs it stale)"
run 2 train "$CONFIG" "${base[@]}" --set checkpoint.dir="$L"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "taking over a stale lock exited with $RC"; }
grep -q "^note: took over the stale lock of $L .*pid $holder" "$TMP/out" || { cat "$TMP/out"; fail "no note on the stale lock"; }
[ ! -e "$L/lock" ] || fail "the run left its lock behind"
echo "start-up checks: all refused before step 1"
