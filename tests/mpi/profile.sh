#!/usr/bin/env bash
# The profile: `pipetrain profile` writes every layer's times and the MPI
# transport as JSON; `simulate --profile` times a layout from it;
# pipeline.partition = measured balances stages by its times without changing
# a bit of the result; damaged or foreign profiles are refused by name; a
# training run says how its layout compares with the planner's best.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
command -v jq >/dev/null || fail "jq is needed (scripts/setup.sh installs it)"
P0="$TMP/p.json"

run 2 profile "$CONFIG" --output "$P0" --reps 3
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "profile on 2 ranks exited with $RC"; }
grep -q "^wrote $P0 in " "$TMP/out" || { cat "$TMP/out"; fail "no 'wrote' line"; }
grep -q "^network: ranks 0 (.*) and 1 (.*): latency " "$TMP/out" || { cat "$TMP/out"; fail "no network line"; }
n_layers=$(sed -n 's/^profile: \([0-9]*\) layers measured for micro-batches of \([0-9]*\) rows.*/\1/p' "$TMP/out")
[ "$n_layers" = 7 ] || { cat "$TMP/out"; fail "expected the 7 layers of the config, got '$n_layers'"; }
jq -e --argjson n 7 '.format == "pipetrain-profile" and .version == 1 and (.layers | length) == $n
    and .micro_batch_rows == 16 and .blas_threads == 1
    and all(.layers[]; .forward_s > 0 and .backward_s > 0 and .output_bytes > 0 and (.kind | type) == "string")
    and ([.layers[] | select(.kind == "linear") | .parameters] | length) == 3
    and .network.latency_s > 0 and .network.bandwidth_bytes_per_s > 0
    and .network.allreduce_bandwidth_bytes_per_s > 0 and .network.allreduce_ranks == 2
    and (.network.pingpong | length) == 8
    and .network.pingpong[-1].one_way_s > .network.pingpong[0].one_way_s' "$P0" >/dev/null ||
  { jq -c '.' "$P0" | head -c 2000; fail "the profile's fields are wrong"; }

# one rank: the layers only, and it says so
run 1 profile "$CONFIG" --output "$TMP/p1.json" --reps 1
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "profile on 1 rank exited with $RC"; }
grep -q "^network: not measured on one rank" "$TMP/out" || { cat "$TMP/out"; fail "no 'not measured' line"; }
jq -e 'has("network") | not' "$TMP/p1.json" >/dev/null || fail "a network section from one rank"

# simulate from the profile: its costs and network, the same closing lines
"$PIPETRAIN" simulate "$CONFIG" --ranks 2 --profile "$P0" >"$TMP/sim" 2>&1 || { cat "$TMP/sim"; fail "simulate --profile"; }
grep -q "costs read from $P0" "$TMP/sim" || { cat "$TMP/sim"; fail "simulate did not say it read the profile"; }
grep -q "(the profile's)" "$TMP/sim" || { cat "$TMP/sim"; fail "simulate did not take the profile's network"; }
grep -q "^predicted step time: [0-9.]* s$" "$TMP/sim" || { cat "$TMP/sim"; fail "no predicted step time"; }
"$PIPETRAIN" simulate "$CONFIG" --ranks 2 --profile "$P0" --network 1e-3,1e8 >"$TMP/sim2" 2>&1 ||
  { cat "$TMP/sim2"; fail "simulate --profile --network"; }
grep -q "(--network)" "$TMP/sim2" || fail "--network did not win over the profile's network"

# refused by name: damaged, another model, another micro-batch size, other threads
refused() { # refused WHAT PATTERN ARGS...
  local what=$1 pattern=$2; shift 2
  set +e
  "$PIPETRAIN" simulate "$CONFIG" --ranks 2 "$@" >"$TMP/bad" 2>&1
  local rc=$?
  set -e
  [ $rc -eq 2 ] || { cat "$TMP/bad"; fail "$what: exit $rc, expected 2"; }
  [ "$(wc -l <"$TMP/bad")" -eq 1 ] || { cat "$TMP/bad"; fail "$what: expected one line"; }
  grep -q "$pattern" "$TMP/bad" || { cat "$TMP/bad"; fail "$what: expected '$pattern'"; }
}
head -c 300 "$P0" >"$TMP/cut.json"
refused "a truncated profile" "is not a pipetrain profile" --profile "$TMP/cut.json"
jq '.layers |= .[:6]' "$P0" >"$TMP/short.json"
refused "a profile of another model" "has 6 layers but the config's model has 7" --profile "$TMP/short.json"
jq '.layers[2].kind = "relu"' "$P0" >"$TMP/kind.json"
refused "a profile with another layer" "layer 2 is 'relu' but the config's layer 2 is dropout" --profile "$TMP/kind.json"
refused "another micro-batch size" "measured for micro-batches of 16 rows, this config's have 8" --profile "$P0" \
  --set pipeline.micro_batches=8
refused "other BLAS threads" "measured with 1 BLAS thread" --profile "$P0" --set train.blas_threads=2
jq '.layers[1].forward_s = -1' "$P0" >"$TMP/neg.json"
refused "a negative time" 'layer 1: "forward_s" must be a finite number' --profile "$TMP/neg.json"
refused "a missing profile" "cannot open profile" --profile "$TMP/none.json"
refused "measured without a profile" "pipeline.profile is empty" --set pipeline.partition=measured

# pipeline.partition = measured: the stages follow the times, the bits do not move
run 1 train "$CONFIG" --set log.plan_compare=false
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "P = 1 exited with $RC"; }
want=$(fingerprint_of "$TMP/out")
jq '.layers[0].forward_s = 1' "$P0" >"$TMP/heavy.json" # the first layer outweighs the rest
run 2 train "$CONFIG" --set pipeline.partition=measured --set pipeline.profile="$TMP/heavy.json" \
  --set log.plan_compare=false
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "the measured partition exited with $RC"; }
grep -q "measured partition" "$TMP/out" || { cat "$TMP/out"; fail "the plan does not name the measured partition"; }
grep -q "^  stage 0: layers 0-0," "$TMP/out" || { cat "$TMP/out"; fail "stage 0 should hold layer 0 alone"; }
[ "$(fingerprint_of "$TMP/out")" = "$want" ] || fail "the measured partition changed the fingerprint"
jq '.layers[6].forward_s = 1' "$P0" >"$TMP/last.json"
run 3 train "$CONFIG" --set pipeline.partition=measured --set pipeline.profile="$TMP/last.json" \
  --set log.plan_compare=false
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "the measured partition on 3 stages exited with $RC"; }
grep -q "^  stage 2: layers 6-6," "$TMP/out" || { cat "$TMP/out"; fail "stage 2 should hold layer 6 alone"; }
[ "$(fingerprint_of "$TMP/out")" = "$want" ] || fail "the measured partition on 3 stages changed the fingerprint"

# the start-up comparison with the planner's best for the same cores
run 2 train "$CONFIG" --set train.steps=2 --set train.warmup_steps=0
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "training with log.plan_compare exited with $RC"; }
grep -Eq "^plan: (this layout is .*the planner's best of [0-9]+ for 2 cores at M = 4 \(predicted [0-9]+ samples/s\)|the planner predicts [0-9]+ samples/s for this layout but [0-9]+ samples/s \([0-9.]+×\) for .* on the same 2 cores: mpirun -np [12] )" \
  "$TMP/out" || { cat "$TMP/out"; fail "no comparison with the planner's best"; }
echo "profile: ok"
