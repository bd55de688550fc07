#!/usr/bin/env bash
# Bounded fuzz test of the checkpoint reader (ctest mpi_ckpt_fuzz; docs/fuzzing.md).
#
# Makes a small real checkpoint (2 stages) and a single-file export of it
# (deflated, so chunk B-trees too), takes a checkpoint of format version 1
# (tests/fuzz/v1-checkpoint/, whose config is a variable-length string), then
# for a deterministic set of mutants (fuzz_mutate: bit flips, byte runs of
# 0x00/0xff/random, interesting integers, truncation, chunks copied from
# elsewhere; 55% in the manifest, 15% in the version 1 manifest, 15% in a
# shard, 15% in the single file; positions biased to the metadata)
# runs every pipetrain-ckpt command (ls RUN, ls CKPT, verify, show, stats,
# diff against the original, export) under `timeout` and a memory limit, and
# `pipetrain train --resume` on a few. Per mutant it records:
#   crash   an exit status >= 128 (not a timeout), a sanitizer report or
#           "Segmentation fault"
#   hang    the time limit was reached (timeout's 124, or 137 after -k)
#   silent  damaged tensor data accepted: verify exits 0 but diff --moments
#           against the original does not, export or train --resume succeeds
#           from a mutant whose data differ, or a failed export leaves a file
#   meta    a change of meaning accepted: verify exits 0 but the reader
#           returns other metadata than for the original (fuzz_mutate
#           --dump), or show, stats or ls succeed printing something else;
#           in the version 1 checkpoint, whose metadata has no checksums,
#           this is reported as meta1 and does not fail the test
#   alloc   an allocation failed under the memory limit (a size read from
#           the file was trusted)
#   unclear an error that is not one `pipetrain-ckpt: ...` line naming the
#           damaged checkpoint, or an unexpected exit status
# Prints "fuzz: N mutants, C crashes, H hangs, S silent acceptances; ..." and
# exits 0 only when every count is zero; the first offending mutants of each
# kind are kept for reproduction under FUZZ_KEEP (path printed).
#
# Usage: ckpt_fuzz.sh CONFIG     (CONFIG: tests/configs/tiny_mlp.ini)
# Environment: PIPETRAIN, MPIEXEC, PIPETRAIN_CKPT, FUZZ_MUTATE (the binaries;
# ctest sets them); FUZZ_SEED (1), FUZZ_MUTANTS (150), FUZZ_JOBS (2),
# FUZZ_TIMEOUT (seconds per command, 8), FUZZ_RESUME (mutants also resumed
# with train, 4), FUZZ_VMEM_KB (memory limit, 4 GiB), FUZZ_KEEP (directory of
# the kept mutants, /tmp/pipetrain-ckpt-fuzz-reproducers), FUZZ_KEEP_MAX (kept
# per kind, 3), PIPETRAIN_HDF5_TIMEOUT (the reader's sandbox limit, 2).
set -u
usage() { sed -n '2,/^set -u/p' "$0" | sed -e '/^set -u/d' -e 's/^# \{0,1\}//'; }
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
[ $# -eq 1 ] || { usage >&2; exit 2; }

. "$(dirname "$0")/../mpi/lib.sh" # PIPETRAIN, MPIEXEC, $TMP (removed at exit), run, fail
set -e
: "${PIPETRAIN_CKPT:?}" "${FUZZ_MUTATE:?}"
CONFIG=$(realpath "$1")
SEED=${FUZZ_SEED:-1}
N=${FUZZ_MUTANTS:-150}
JOBS=${FUZZ_JOBS:-2}
T=${FUZZ_TIMEOUT:-8}
R=${FUZZ_RESUME:-4}
VMEM_KB=${FUZZ_VMEM_KB:-4194304}
KEEP=${FUZZ_KEEP:-/tmp/pipetrain-ckpt-fuzz-reproducers}
KEEP_MAX=${FUZZ_KEEP_MAX:-3}
export PIPETRAIN_HDF5_TIMEOUT=${PIPETRAIN_HDF5_TIMEOUT:-2}
export OPENBLAS_NUM_THREADS=1
for v in N JOBS T R VMEM_KB KEEP_MAX SEED; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "ckpt_fuzz: $v = '${!v}': expected a number" >&2; exit 2; }
done
START=$SECONDS

# A sanitized build cannot run under ulimit -v (its shadow memory): there the
# allocator refuses anything above the same limit instead.
ASAN=0
if grep -aqm1 __asan_init "$PIPETRAIN_CKPT"; then
  ASAN=1
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1:max_allocation_size_mb=$((VMEM_KB / 1024))"
fi

# ---- the originals ------------------------------------------------------------
cd "$TMP"
run 2 train "$CONFIG" --set train.steps=2 --set train.warmup_steps=0 --set checkpoint.dir=run
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "making the checkpoint exited with $RC"; }
STEP=$(cat run/latest)
ORIG=$TMP/run/$STEP
"$PIPETRAIN_CKPT" export run single.h5 --compression 1 >/dev/null 2>"$TMP/e" || { cat "$TMP/e"; fail "export of the original"; }
# a checkpoint of format version 1 (a small model), which readers still
# accept: its config is a variable-length string, read from HDF5's global heap
V1=$TMP/run1/step-000002
mkdir -p "$V1" && cp "$(dirname "$0")"/v1-checkpoint/*.h5 "$V1/" && echo step-000002 >"$TMP/run1/latest"
mkdir -p "$TMP/res" "$TMP/bad" "$TMP/m" "$TMP/ref"
refname() { case $1 in "$ORIG") echo "$TMP/ref/dir" ;; "$V1") echo "$TMP/ref/v1" ;; *) echo "$TMP/ref/single" ;; esac; }
for c in "$ORIG" "$V1" "$TMP/single.h5"; do
  r=$(refname "$c")
  "$PIPETRAIN_CKPT" verify "$c" >"$TMP/o" 2>&1 || { cat "$TMP/o"; fail "verify of the original $c"; }
  "$FUZZ_MUTATE" --dump "$c" >"$r.dump" 2>"$TMP/e" || { cat "$TMP/e"; fail "fuzz_mutate --dump of the original $c"; }
done
TENSOR=$(sed -n 's/^entry \([^ ]*\) .*/\1/p' "$TMP/ref/dir.dump" | tail -1)
[ -n "$TENSOR" ] || fail "no tensor in the original's index"

# jq removes what depends on the file's bytes rather than its meaning
if command -v jq >/dev/null; then HAVE_JQ=1; else HAVE_JQ=0; fi
norm_ls() { jq -S 'del(.checkpoint, .file_bytes) | del(.. | .storage_bytes?)' "$1" 2>/dev/null; }
# reference outputs of the commands whose stdout must not change without an error
for c in "$ORIG" "$V1" "$TMP/single.h5"; do
  r=$(refname "$c")
  "$PIPETRAIN_CKPT" show "$c" "$TENSOR" --values 4 | sed "s|$c|CKPT|g" >"$r.show"
  "$PIPETRAIN_CKPT" stats "$c" --array all | sed "s|$c|CKPT|g" >"$r.stats"
  if [ $HAVE_JQ = 1 ]; then "$PIPETRAIN_CKPT" ls "$c" --json >"$TMP/o" && norm_ls "$TMP/o" >"$r.ls"; fi
done

export TMP SEED T R N VMEM_KB ASAN CONFIG STEP ORIG V1 TENSOR HAVE_JQ PIPETRAIN PIPETRAIN_CKPT FUZZ_MUTATE MPIEXEC
export -f norm_ls

# fuzz_one K: one mutant; writes "K VERDICT..." to $TMP/res/K and, when it
# offends, its directory (mutant, outputs, report) to $TMP/bad/K
fuzz_one() {
  local k=$1 W=$TMP/m/$1 target ck orig=$ORIG ref=$TMP/ref/dir what rc
  local -A RCS=()
  local verdicts="" report="" skipped=0 lserr=""
  mkdir -p "$W"
  case $((k % 20)) in
    [0-9] | 10) target=manifest.h5 ;;
    1[1-3]) target=manifest.h5 orig=$V1 ref=$TMP/ref/v1 ;;
    1[45]) target=stage-01.h5 ;;
    16) target=stage-00.h5 ;;
    *) target=single.h5 ;;
  esac
  if [ $target = single.h5 ]; then
    ck=$W/single.h5 orig=$TMP/single.h5 ref=$TMP/ref/single
    what=$("$FUZZ_MUTATE" --seed "$SEED" --index "$k" "$orig" "$ck") || what="fuzz_mutate failed"
  else
    mkdir -p "$W/run" && cp -r "$orig" "$W/run/" && basename "$orig" >"$W/run/latest"
    ck=$W/run/$(basename "$orig")
    what=$("$FUZZ_MUTATE" --seed "$SEED" --index "$k" "$orig/$target" "$ck/$target") || what="fuzz_mutate failed"
  fi
  local label=""
  [ "$orig" != "$V1" ] || label=" (format version 1)"
  echo "mutant $k: $target$label: $what" >"$W/report"
  offend() { # offend KIND DETAIL
    # version 1 has no checksummed metadata: a change of meaning there is
    # reported (meta1), not failed
    if [ "$1" = meta ] && [ "$orig" = "$V1" ]; then set -- meta1 "$2"; fi
    case " $verdicts " in *" $1 "*) ;; *) verdicts="$verdicts $1" ;; esac
    echo "$1: $2" >>"$W/report"
  }
  # c NAME ARGS...: pipetrain-ckpt ARGS under the limits; exit status in RCS[NAME]
  c() {
    local name=$1; shift
    if [ "$ASAN" = 1 ]; then
      timeout -k 2 "$T" "$PIPETRAIN_CKPT" "$@" >"$W/$name.out" 2>"$W/$name.err"
    else
      (ulimit -v "$VMEM_KB" 2>/dev/null; exec timeout -k 2 "$T" "$PIPETRAIN_CKPT" "$@") >"$W/$name.out" 2>"$W/$name.err"
    fi
    rc=$?
    RCS[$name]=$rc
    local cmd="pipetrain-ckpt $*" err="" out="" nl=$'\n'
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
      offend hang "$cmd: no answer within $T s (exit $rc)"
      return 1
    fi
    # bash's own matching: a few thousand greps would cost more than the commands
    IFS= read -r -d '' err <"$W/$name.err" || true
    if [ $rc -ge 128 ] || [[ $err =~ [^$nl]*(AddressSanitizer|LeakSanitizer|runtime\ error:|Segmentation\ fault|core\ dumped)[^$nl]* ]]; then
      offend crash "$cmd: exit $rc: ${BASH_REMATCH[0]:0:200}"
    fi
    if [[ ${err,,} =~ [^$nl]*(memory\ allocation\ failed|out\ of\ memory|cannot\ allocate|bad_alloc)[^$nl]* ]]; then
      offend alloc "$cmd: ${BASH_REMATCH[0]:0:200}"
    fi
    if [ $rc -ne 0 ] && [ $rc -lt 128 ]; then
      local named="(^|$nl)pipetrain-ckpt: [^$nl]*"
      if [ $rc -ne 1 ]; then
        offend unclear "$cmd: exit $rc (expected 0 or 1): ${err:0:200}"
      elif [[ $err == *HDF5-DIAG* ]]; then
        offend unclear "$cmd: HDF5's error stack printed instead of one message"
      elif [ "$name" = ls_run ]; then # the table names the damaged checkpoint's fault
        IFS= read -r -d '' out <"$W/$name.out" || true
        [[ $out =~ (damaged|incomplete):\ [^$nl]*"$W" || $err =~ $named"$W" ]] ||
          offend unclear "$cmd: exit 1 without a status naming $W: ${out:0:300}"
      elif [ "$name" != diff ] || [ -n "$err" ]; then
        [[ $err =~ $named"$W" ]] || offend unclear "$cmd: exit 1 without an error naming $W: ${err:0:200}"
      fi
    fi
    return 0
  }
  {
    if [ $target != single.h5 ]; then c ls_run ls "$W/run"; fi &&
      c ls ls "$ck" --json && c verify verify "$ck" &&
      if [ $target = manifest.h5 ] && [ "${RCS[ls]}" = 1 ] && [ "${RCS[verify]}" = 1 ] &&
         { IFS= read -r -d '' lserr <"$W/ls.err" || true; [[ $lserr == *"$ck/manifest.h5"* ]]; }; then
        # the manifest is refused: show, stats, diff and export would refuse it
        # in the same function (ckpt_read_manifest) on the same bytes
        skipped=1
      else
        c show show "$ck" "$TENSOR" --values 4 && c stats stats "$ck" --array all &&
          c diff diff "$orig" "$ck" --moments && c export export "$ck" "$W/out.h5"
      fi
  }
  local finished=$?
  if [ $finished -eq 0 ] && [ $skipped = 1 ]; then
    echo "show, stats, diff, export: skipped (the manifest is refused)" >>"$W/report"
    RCS[diff]=skipped
  fi
  if [ $finished -eq 0 ] && [ $skipped = 0 ]; then
    # silent acceptance of damaged data
    if [ "${RCS[verify]}" = 0 ] && [ "${RCS[diff]}" != 0 ]; then
      offend silent "verify exits 0 but diff --moments against the original exits ${RCS[diff]}: $(tail -1 "$W/diff.out")"
    fi
    if [ "${RCS[export]}" = 0 ]; then
      c diff_export diff "$orig" "$W/out.h5" --moments || true
      [ "${RCS[diff_export]:-}" = 0 ] || offend silent "export exits 0 but its file differs from the original (diff exits ${RCS[diff_export]:-?})"
    elif [ -e "$W/out.h5" ] || [ -e "$W/out.h5.tmp" ]; then
      offend silent "export failed (exit ${RCS[export]}) and left $(ls "$W" | grep '^out\.h5' | tr '\n' ' ')"
    fi
    # a change of meaning accepted
    for cmd in show stats; do
      if [ "${RCS[$cmd]}" = 0 ] && ! sed "s|$ck|CKPT|g" "$W/$cmd.out" | cmp -s - "$ref.$cmd"; then
        offend meta "$cmd exits 0 printing other output than for the original: $(sed "s|$ck|CKPT|g" "$W/$cmd.out" | diff "$ref.$cmd" - | grep -a "^[<>]" | head -2 | tr '\n' ' ')"
      fi
    done
    if [ "$HAVE_JQ" = 1 ] && [ "${RCS[ls]}" = 0 ] && ! norm_ls "$W/ls.out" | cmp -s - "$ref.ls"; then
      offend meta "ls --json exits 0 describing another checkpoint: $(norm_ls "$W/ls.out" | diff "$ref.ls" - | grep -a "^[<>]" | head -2 | tr '\n' ' ')"
    fi
    if [ "${RCS[verify]}" = 0 ]; then
      (ulimit -v "$VMEM_KB" 2>/dev/null; exec timeout -k 2 "$T" "$FUZZ_MUTATE" --dump "$ck") >"$W/dump.out" 2>"$W/dump.err"
      rc=$?
      if [ $rc -ne 0 ]; then
        offend meta "verify exits 0 but the reader refuses the checkpoint (fuzz_mutate --dump exits $rc: $(head -c 200 "$W/dump.err"))"
      elif ! cmp -s "$W/dump.out" "$ref.dump"; then
        offend meta "verify exits 0 but the reader returns other metadata: $(diff "$ref.dump" "$W/dump.out" | grep -a "^[<>]" | head -2 | tr '\n' ' ')"
      fi
    fi
  fi
  if [ $finished -eq 0 ]; then
    # train --resume on every (N/R)th mutant
    if [ "$R" -gt 0 ] && [ $((k % ((N + R - 1) / R))) -eq 0 ]; then
      timeout -k 5 $((4 * T + 30)) "$MPIEXEC" --oversubscribe -np 2 "$PIPETRAIN" train "$CONFIG" \
        --set train.steps=3 --set train.warmup_steps=0 --set "checkpoint.dir=$W/resumed" --resume "$ck" >"$W/resume.out" 2>&1
      rc=$?
      echo "train --resume: exit $rc" >>"$W/report"
      if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        offend hang "pipetrain train --resume $ck: no answer within $((4 * T + 30)) s"
      elif [ $rc -ge 128 ] || grep -qE "AddressSanitizer|runtime error:|Segmentation fault|exited on signal" "$W/resume.out"; then
        offend crash "pipetrain train --resume $ck: exit $rc: $(grep -a -m1 -E "Sanitizer|runtime error|Segmentation|signal" "$W/resume.out" | cut -c1-200)"
      elif [ $rc -eq 0 ] && [ "${RCS[diff]}" = skipped ]; then
        offend silent "pipetrain train --resume exits 0 from a mutant whose manifest pipetrain-ckpt refuses"
      elif [ $rc -eq 0 ] && [ "${RCS[diff]}" != 0 ]; then
        offend silent "pipetrain train --resume exits 0 from a mutant whose data differ from the original"
      fi
    fi
  fi
  echo "$k${verdicts:- ok}" >"$TMP/res/$k"
  if [ -n "$verdicts" ]; then mv "$W" "$TMP/bad/$k"; else rm -rf "$W"; fi
}
export -f fuzz_one

echo "fuzz: $N mutants of $ORIG and its export, seed $SEED, $JOBS jobs, ${T} s a command (PIPETRAIN_HDF5_TIMEOUT=$PIPETRAIN_HDF5_TIMEOUT)"
seq 0 $((N - 1)) | xargs -P "$JOBS" -I{} bash -c 'fuzz_one {}' || true

# ---- summary ------------------------------------------------------------------
count() { cat "$TMP"/res/* 2>/dev/null | grep -c " $1\b" || true; }
done_n=$(ls "$TMP/res" | wc -l)
C=$(count crash) H=$(count hang) S=$(count silent) M=$(count meta) A=$(count alloc) U=$(count unclear) M1=$(count meta1)
[ "$done_n" -eq "$N" ] || fail "only $done_n of $N mutants finished"
mkdir -p "$KEEP" && rm -rf "$KEEP"/mutant-* "$KEEP"/original-* # only what an earlier run kept
if [ $((C + H + S + M + A + U + M1)) -gt 0 ]; then
  cp -r "$TMP/run" "$KEEP/original-run" && cp -r "$TMP/run1" "$KEEP/original-run1" &&
    cp "$TMP/single.h5" "$KEEP/original-single.h5"
  for kind in crash hang silent meta alloc unclear meta1; do
    kept=0
    for k in $(grep -l " $kind\b" "$TMP"/res/* 2>/dev/null | xargs -r -n1 basename | sort -n); do
      [ $kept -lt "$KEEP_MAX" ] || break
      [ -d "$KEEP/mutant-$k" ] || cp -r "$TMP/bad/$k" "$KEEP/mutant-$k"
      kept=$((kept + 1))
      sed "s|$TMP/m/$k|$KEEP/mutant-$k|g; s|$TMP/run|$KEEP/original-run|g; s|$TMP/single.h5|$KEEP/original-single.h5|g" \
        "$TMP/bad/$k/report" >"$KEEP/mutant-$k/report"
      echo "--- $kind: $(head -1 "$KEEP/mutant-$k/report")"
      grep -a "^$kind: " "$KEEP/mutant-$k/report" | head -2 | cut -c1-400
    done
  done
  echo "kept for reproduction: $KEEP (mutant-K/report says the damage and what failed; the run's config: $CONFIG)"
fi
echo "fuzz: $N mutants, $C crashes, $H hangs, $S silent acceptances; $M changes of meaning accepted, $A huge allocations, $U unclear errors ($((SECONDS - START)) s)"
[ "$M1" -eq 0 ] || echo "fuzz: and $M1 changes of meaning accepted in the format version 1 checkpoint, whose metadata has no checksums (meta1: reported, not failed)"
[ $((C + H + S + M + A + U)) -eq 0 ] || exit 1
echo "ckpt_fuzz: all checks passed"
