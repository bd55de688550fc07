#!/usr/bin/env bash
# The kernels' instruction set does not change a bit: the same P = 2 run with
# PIPETRAIN_KERNELS = portable, avx2 and avx512 (those this CPU runs) ends
# with the default run's fingerprint, and the plan line names the set it ran.
# A name that is not a set, or one the CPU cannot run, is refused in one line
# before any work.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
ARGS=(train "$CONFIG" --set train.steps=4)

run 2 "${ARGS[@]}"
[ "$RC" = 0 ] || { cat "$TMP/out"; fail "the default run failed"; }
want=$(fingerprint_of "$TMP/out")
[ -n "$want" ] || { cat "$TMP/out"; fail "no fingerprint"; }
default_set=$(sed -n 's/^plan: [0-9].*, \([^,]*\) kernels$/\1/p' "$TMP/out")
[ -n "$default_set" ] || { cat "$TMP/out"; fail "the plan line names no kernels"; }
echo "default: $default_set kernels, fingerprint $want"

flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
ran=0
for k in portable avx2 avx512; do
  case $k in
    avx2) grep -qw avx2 <<<"$flags" || { echo "skipped: no avx2 on this CPU"; continue; } ;;
    avx512) grep -qw avx512f <<<"$flags" || { echo "skipped: no avx512f on this CPU"; continue; } ;;
  esac
  PIPETRAIN_KERNELS=$k run 2 "${ARGS[@]}"
  [ "$RC" = 0 ] || { cat "$TMP/out"; fail "PIPETRAIN_KERNELS=$k: the run failed"; }
  got=$(fingerprint_of "$TMP/out")
  name=$(sed -n 's/^plan: [0-9].*, \([^,]*\) kernels$/\1/p' "$TMP/out")
  echo "$k: $name kernels, fingerprint $got"
  [ "$got" = "$want" ] || fail "PIPETRAIN_KERNELS=$k gave fingerprint $got, the default ($default_set) $want"
  [ "$(tr -d -- '-' <<<"$name" | tr '[:upper:]' '[:lower:]')" = "$k" ] || fail "PIPETRAIN_KERNELS=$k ran $name kernels"
  ran=$((ran + 1))
done
[ "$ran" -ge 2 ] || echo "note: only $ran instruction set(s) compared on this CPU"

# refused: one line, exit 2, no step
refused() {
  local value=$1 expect=$2
  PIPETRAIN_KERNELS=$value run 2 "${ARGS[@]}"
  [ "$RC" = 2 ] || { cat "$TMP/out"; fail "PIPETRAIN_KERNELS=$value: exit $RC, expected 2"; }
  ! grep -q '^step ' "$TMP/out" || fail "PIPETRAIN_KERNELS=$value: steps ran"
  [ "$(grep -c "^pipetrain: PIPETRAIN_KERNELS=$value: $expect" "$TMP/out")" = 1 ] ||
    { cat "$TMP/out"; fail "PIPETRAIN_KERNELS=$value: not one line saying '$expect'"; }
}
refused sse9 "expected portable, avx2 or avx512"
grep -qw avx512f <<<"$flags" || refused avx512 "this CPU or build cannot run AVX-512 kernels"
echo "PASS"
