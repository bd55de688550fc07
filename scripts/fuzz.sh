#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, clang) of the checkpoint manifest reader
# and of the config parser, for as long as you like (docs/fuzzing.md).
#
# Usage: scripts/fuzz.sh [manifest|config] [SECONDS] [options]
#   manifest   tests/fuzz/fuzz_manifest.c: each input is read as a checkpoint's
#              manifest.h5 (next to real shards) and as a single-file
#              checkpoint: ckpt_read_manifest, the reader, ckpt_scan_shard
#   config     tests/fuzz/fuzz_config.c: each input is INI text (then, after a
#              NUL, --set overrides): config_load_text, config_set,
#              config_validate, and the canonical text must read back the same
#   SECONDS    how long to run (default 600); 0 runs until interrupted
# Options:
#   --jobs N       N fuzzing processes (libFuzzer -fork=N); they go on after a
#                  finding, so every finding of a long run is kept
#   --keep-going   go on after a finding with one process too
#   --sandbox S    manifest: keep the reader's sandbox on (limit S seconds), as in
#                  production; by default it is off, so that the fuzzer sees the
#                  crashes and hangs of HDF5 itself that the sandbox must catch
#   --no-install   do not install missing packages
#   -h, --help     this text
#   Anything after `--` is passed to libFuzzer (e.g. -- -max_len=4096).
#
# Installs what is missing (scripts/setup.sh's packages, clang and
# libclang-rt-14-dev), builds the release tree build/ (to make the seed
# checkpoints) and the instrumented targets in build-fuzz/ (ASan + UBSan +
# libFuzzer), makes the seed corpus (checkpoints of tests/configs/*.ini and
# their single-file exports; examples/*.ini and tests/configs/*.ini for the
# config) and runs the target. The growing corpus is kept in
# build-fuzz/corpus/TARGET/ (so the next run starts where this one stopped);
# findings (crash-*, timeout-*, oom-*, leak-*: the input that triggers them)
# go to FUZZ_ARTIFACTS (default /tmp/pipetrain-fuzz/TARGET/). Reproduce one
# with: build-fuzz/tests/fuzz/fuzz_TARGET FILE   (PT_FUZZ_SHARDS=DIR for
# manifest inputs: the script prints the directory it used).
# Environment: FUZZ_ARTIFACTS (findings), FUZZ_BUILD (the instrumented tree,
# default build-fuzz), FUZZ_RELEASE_BUILD (the tree that makes the seed
# checkpoints, default build; with --no-install it must be built already).
# Exit status: 0 no finding, 1 a finding (or a failed step), 2 a usage error.
set -euo pipefail
SELF=$(realpath "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/.."
ROOT=$PWD
FB=$(realpath -m "${FUZZ_BUILD:-build-fuzz}")
RB=$(realpath -m "${FUZZ_RELEASE_BUILD:-build}")

usage() { sed -n '2,/^set -euo/p' "$SELF" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }
target=manifest seconds=600 jobs=1 keep_going=0 install=1
extra=()
positional=0
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --jobs) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --jobs needs a number >= 1" >&2; exit 2; }
            jobs=$2; shift ;;
    --keep-going) keep_going=1 ;;
    --sandbox) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --sandbox needs seconds >= 1" >&2; exit 2; }
               export PT_FUZZ_SANDBOX=$2; shift ;;
    --no-install) install=0 ;;
    --) shift; extra=("$@"); break ;;
    manifest | config) [ $positional -eq 0 ] || { usage >&2; exit 2; }; target=$1; positional=1 ;;
    *) if [[ $1 =~ ^[0-9]+$ ]] && [ $positional -le 1 ]; then seconds=$1; positional=2
       else echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2; fi ;;
  esac
  shift
done

# ---- packages and builds --------------------------------------------------------
if [ $install = 1 ]; then
  bash scripts/install-packages.sh clang libclang-rt-14-dev llvm
  bash scripts/setup.sh # the other packages, and build/ for the seed checkpoints
fi
command -v clang >/dev/null || { echo "fuzz: clang is missing (run without --no-install)" >&2; exit 1; }
[ -x "$RB/pipetrain" ] && [ -x "$RB/tools/pipetrain-ckpt" ] || { echo "fuzz: $RB is not built (run scripts/setup.sh)" >&2; exit 1; }

echo "fuzz: building fuzz_$target in $FB (clang, ASan + UBSan + libFuzzer)"
CC=clang cmake -S . -B "$FB" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" \
  -DPT_SANITIZE=ON -DPT_FUZZ=ON >"$FB.log" 2>&1 || { cat "$FB.log"; exit 1; }
cmake --build "$FB" -j"$(nproc 2>/dev/null || echo 2)" --target "fuzz_$target" >>"$FB.log" 2>&1 ||
  { tail -30 "$FB.log"; echo "fuzz: the build failed ($FB.log)" >&2; exit 1; }
rm -f "$FB.log"
BIN=$FB/tests/fuzz/fuzz_$target

# ---- seed corpus ------------------------------------------------------------------
SEEDS=$FB/seeds/$target
CORPUS=$FB/corpus/$target
ART=${FUZZ_ARTIFACTS:-/tmp/pipetrain-fuzz/$target}
mkdir -p "$SEEDS" "$CORPUS" "$ART"
DICT=$FB/seeds/$target.dict
if [ $target = manifest ]; then
  CKPTS=$FB/seed-checkpoints
  if [ ! -f "$CKPTS/mlp.h5" ]; then
    echo "fuzz: making the seed checkpoints in $CKPTS"
    rm -rf "$CKPTS" && mkdir -p "$CKPTS"
    if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
    export OPENBLAS_NUM_THREADS=1
    # small models (a few KB a shard), so that a single-file checkpoint fits in -max_len
    mlp=(--set data.dataset=synthetic --set data.synthetic_features=8 --set data.synthetic_classes=3
         --set data.synthetic_samples=64 --set train.batch_size=8 --set pipeline.micro_batches=2
         --set "model.layers=linear 6, relu, dropout 0.1, linear 5, layernorm, gelu, linear 3")
    gpt=(--set data.context=4 --set train.batch_size=4 --set pipeline.micro_batches=2
         --set "model.layers=embed 256 4, posembed, block 2 causal, layernorm, lmhead 256")
    for m in "mlp 2 tiny_mlp" "gpt 3 tiny_gpt"; do
      set -- $m
      declare -n over=$1
      (cd "$CKPTS" && mpiexec --oversubscribe -np "$2" "$RB/pipetrain" train "$ROOT/tests/configs/$3.ini" \
         --set train.steps=2 --set train.warmup_steps=0 --set "checkpoint.dir=$1" "${over[@]}" >"$1.log" 2>&1) ||
        { cat "$CKPTS/$1.log"; echo "fuzz: making the seed checkpoint $1 failed" >&2; exit 1; }
      unset -n over
      "$RB/tools/pipetrain-ckpt" export "$CKPTS/$1" "$CKPTS/$1-deflate.h5" --compression 1 >/dev/null
      "$RB/tools/pipetrain-ckpt" export "$CKPTS/$1" "$CKPTS/$1.h5" >/dev/null
    done
  fi
  cp tests/fuzz/v1-checkpoint/manifest.h5 "$SEEDS/v1-manifest.h5" # format version 1: a variable-length config
  for m in mlp gpt; do
    cp "$CKPTS/$m/$(cat "$CKPTS/$m/latest")/manifest.h5" "$SEEDS/$m-manifest.h5"
    cp "$CKPTS/$m.h5" "$CKPTS/$m-deflate.h5" "$SEEDS/"
  done
  export PT_FUZZ_SHARDS=$CKPTS/mlp/$(cat "$CKPTS/mlp/latest")
  echo "fuzz: shards next to each manifest: PT_FUZZ_SHARDS=$PT_FUZZ_SHARDS"
  # the signatures of HDF5's metadata structures
  printf '%s\n' '"\x89HDF\x0d\x0a\x1a\x0a"' '"OHDR"' '"OCHK"' '"TREE"' '"HEAP"' '"GCOL"' '"SNOD"' \
    '"FRHP"' '"FHDB"' '"FHIB"' '"FSHD"' '"FSSE"' '"BTHD"' '"BTIN"' '"BTLF"' '"FAHD"' '"FADB"' \
    '"EAHD"' '"EAIB"' '"EADB"' '"SMTB"' '"SMLI"' '"\xff\xff\xff\xff\xff\xff\xff\xff"' >"$DICT"
else
  cp examples/*.ini tests/configs/*.ini "$SEEDS/"
  # section and key names, and values that reach the edges
  "$RB/pipetrain" --help-config 2>/dev/null |
    awk '/^\[/ {print "\"" $1 "\""; s = substr($1, 2, length($1) - 2)} /^  [a-z_]+ / {print "\"" $1 " = \""; print "\"" s "." $1 "=\""}' >"$DICT"
  printf '%s\n' '"linear "' '"relu"' '"gelu"' '"dropout "' '"layernorm"' '"embed "' '"attn "' '"lmhead"' \
    '"true"' '"false"' '"1e308"' '"nan"' '"inf"' '"-0"' '"0x"' '"9223372036854775807"' '"; "' '"# "' >>"$DICT"
fi

# ---- run ------------------------------------------------------------------------------
# HDF5 1.10 itself leaks internal objects on some damaged files (H5Aexists,
# H5Tset_size): not ours to fix, so leaks of memory that libhdf5 allocated are
# suppressed (memory it hands to pipetrain included: with frame pointers only,
# the stack cannot tell them apart); every other leak is a finding.
printf '%s\n' 'leak:libhdf5' >"$FB/lsan.supp"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$FB/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"
flags=(-artifact_prefix="$ART/" -dict="$DICT" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048
       -max_len=65536 -print_final_stats=1)
[ "$seconds" -gt 0 ] && flags+=(-max_total_time="$seconds")
if [ "$jobs" -gt 1 ] || [ $keep_going = 1 ]; then
  flags+=(-fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi
findings() { find "$ART" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l; }
before=$(findings)
echo "fuzz: running fuzz_$target for ${seconds}s (0 = until interrupted); corpus $CORPUS; findings in $ART"
set +e
"$BIN" "${flags[@]}" "${extra[@]}" "$CORPUS" "$SEEDS" 2>&1 | tee "$ART/last-run.log"
rc=${PIPESTATUS[0]}
set -e
new=$(($(findings) - before))
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$ART/last-run.log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$ART/last-run.log" | tail -1)
if [ -z "$execs" ]; then # -fork mode prints "#N: cov: ... time: Ss ..." lines instead
  read -r execs rate < <(sed -n 's/^#\([0-9]*\): .* time: \([0-9]*\)s .*/\1 \2/p' "$ART/last-run.log" | tail -1 |
                         awk '{print $1, ($2 > 0 ? int($1 / $2) : "?")}') || true
fi
echo "fuzz: fuzz_$target finished (exit $rc): ${execs:-?} inputs, ${rate:-?} a second; $new new findings in $ART (log: $ART/last-run.log)"
if [ $rc -ne 0 ] || [ $new -gt 0 ]; then
  echo "fuzz: reproduce a finding with: ${PT_FUZZ_SHARDS:+PT_FUZZ_SHARDS=$PT_FUZZ_SHARDS }$BIN $ART/FILE" >&2
  exit 1
fi
