#!/usr/bin/env bash
# pipetrain-ckpt, the checkpoint inspection tool:
#  1. golden outputs of ls (run and checkpoint), show, stats, verify and diff
#     on small checkpoints made here (UPDATE_GOLDEN=1 rewrites tests/golden/);
#  2. usage errors (exit 2), --help on every command, --json that parses;
#  3. export then `train --init OUT.h5`, and reshard then `--resume`, both
#     bitwise (the same parameter fingerprint as from the original), for the
#     MLP and for the tiny GPT with tied embeddings;
#  4. damaged checkpoints (flipped bit, missing shard, truncated shard,
#     unknown format version of the manifest and of a shard, a layer stored
#     twice, a shard of another model, two faults at once): verify lists
#     every fault; every command reports the damage naming the file, exits
#     1, never crashes (exit < 128, no sanitizer report) and changes nothing.
# PIPETRAIN, MPIEXEC, PIPETRAIN_CKPT and SET_ATTR come from ctest.
. "$(dirname "$0")/lib.sh"
set -e
: "${PIPETRAIN_CKPT:?}" "${SET_ATTR:?}"
CONFIG=$1
GOLDEN=$(cd "$(dirname "$0")/../golden" && pwd)
cd "$TMP" # checkpoint.dir is relative: the stored config holds no temporary path

# ck ARGS... : runs the tool; stdout in $TMP/o, stderr in $TMP/e, exit code in $RC
ck() {
  set +e
  "$PIPETRAIN_CKPT" "$@" >"$TMP/o" 2>"$TMP/e"
  RC=$?
  set -e
  if [ $RC -ge 128 ] || grep -q -e "AddressSanitizer" -e "runtime error" -e "LeakSanitizer" "$TMP/e"; then
    cat "$TMP/e"; fail "pipetrain-ckpt $* crashed (exit $RC)"
  fi
}
expect() { # expect CODE WHAT: the last ck exited with CODE
  [ $RC -eq "$1" ] || { cat "$TMP/o" "$TMP/e"; fail "$2: exit $RC, expected $1"; }
}
# mask: temporary directory, local times and on-disk sizes (which depend on
# the HDF5 version), each replaced by text of the same length
mask() {
  sed -e "s|$TMP|TMP|g" |
    perl -pe 's/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[+-]\d\d:\d\d)?/"YYYY-MM-DDThh:mm:ss" . ("+hh:mm" x (length($&) > 19))/ge;
              s/(YYYY\S*\s+)(\d+)(\s+)(\d[\d.]* [KMGT]?i?B)/$1 . ("N" x length($2)) . $3 . ("N" x length($4))/e;
              s/^(files +\d+, ).*/$1SIZE/; s/(one file of ).*/$1SIZE/'
}
golden() { # golden NAME: the masked stdout of the last ck against tests/golden/ckpt_NAME.txt
  local want="$GOLDEN/ckpt_$1.txt"
  mask <"$TMP/o" >"$TMP/masked"
  if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
    cp "$TMP/masked" "$want"
    echo "golden $1: rewritten"
    return
  fi
  [ -f "$want" ] || fail "golden $1: $want is missing (run with UPDATE_GOLDEN=1 to create it)"
  diff -u "$want" "$TMP/masked" || fail "golden $1: output differs from $want (UPDATE_GOLDEN=1 rewrites it)"
  echo "golden $1: ok"
}
json_ok() { # the last ck's stdout is one JSON document
  if command -v jq >/dev/null; then jq -e . "$TMP/o" >/dev/null || fail "$1: --json output is not JSON"
  else python3 -m json.tool "$TMP/o" >/dev/null || fail "$1: --json output is not JSON"; fi
}

# ---- 1. golden outputs ------------------------------------------------------
# One step of a one-step cosine schedule runs at lr 0 (it ends at min_lr_ratio
# 0), and SGD without momentum keeps no moments: the checkpoint holds exactly
# the initial parameters, a pure function of the seed (counter-based RNG), so
# the same bits on every machine, whatever BLAS does with the gradients.
init_only=(--set train.steps=1 --set train.warmup_steps=0 --set train.optimizer=sgd --set train.momentum=0
           --set checkpoint.keep=0)
run 2 train "$CONFIG" "${init_only[@]}" --set checkpoint.dir=g1
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "making the golden checkpoint exited with $RC"; }
run 2 train "$CONFIG" "${init_only[@]}" --set checkpoint.dir=g2 --set train.seed=2
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "making the second golden checkpoint exited with $RC"; }
G=g1/step-000001

ck ls g1;                                   expect 0 "ls RUN_DIR"; golden ls_run
ck ls $G;                                   expect 0 "ls CKPT";    golden ls_ckpt
ck show g1 layers.6.w --values 6;           expect 0 "show";       golden show
ck show $G layers.4.w --array moment1;      expect 0 "show moment1"; golden show_moment1
ck stats g1;                                expect 0 "stats";      golden stats
ck verify g1;                               expect 0 "verify";     golden verify
ck diff g1 $G;                              expect 0 "diff, identical"; golden diff_same
ck diff g1 g2;                              expect 1 "diff, other seed"; golden diff_seed
ck diff g1 g2 --tolerance 0.3;              expect 0 "diff within tolerance"; golden diff_tolerance
ck show g1 layers.4.w --json;               expect 0 "show --json"; golden show_json
grep -q '"zero_fraction":' "$TMP/o" || fail "show --json lacks zero_fraction"

# ---- 2. usage, help, JSON ---------------------------------------------------
ck;                                  expect 2 "no command"
ck frobnicate;                       expect 2 "unknown command"
grep -q "^pipetrain-ckpt: unknown command 'frobnicate'" "$TMP/e" || fail "unknown command message: $(cat "$TMP/e")"
ck ls;                               expect 2 "ls without a path"
ck ls g1 g2;                         expect 2 "ls with two paths"
ck show g1;                          expect 2 "show without a tensor"
ck show g1 layers.0.w --values x;    expect 2 "show --values x"
ck diff g1 g2 --tolerance -1;        expect 2 "diff --tolerance -1"
ck stats g1 --bogus;                 expect 2 "unknown option"
grep -q "^pipetrain-ckpt: stats: unknown option '--bogus'" "$TMP/e" || fail "unknown option message: $(cat "$TMP/e")"
ck reshard g1 out;                   expect 2 "reshard without --stages"
ck show g1 layers.9.w;               expect 1 "show of a missing tensor"
grep -q "has no tensor 'layers.9.w'" "$TMP/e" || fail "missing tensor message: $(cat "$TMP/e")"
ck ls nowhere;                       expect 1 "ls of a missing path"
ck --help;                           expect 0 "--help"
for c in ls show stats verify diff export reshard; do
  ck $c --help; expect 0 "$c --help"
  grep -q "^usage: pipetrain-ckpt $c" "$TMP/o" || fail "$c --help: no usage line"
done
for args in "ls g1" "ls $G" "show g1 layers.0.b --values 3" "stats g1 --array all" "verify g1" "diff g1 g2"; do
  ck $args --json; json_ok "$args"
done
echo "usage errors exit 2, --help and --json: ok"

# ---- 3. export then --init, reshard then --resume: bitwise -------------------
N=4
train=(--set train.steps=$((2 * N)) --set checkpoint.keep=0)
run 2 train "$CONFIG" "${train[@]}" --set checkpoint.dir=tr --stop-after $N
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "training the round-trip checkpoint exited with $RC"; }
ck verify tr; expect 0 "verify of a trained checkpoint"

ck export tr tr.h5; expect 0 "export"
[ -f tr.h5 ] && [ ! -e tr.h5.tmp ] || fail "export: tr.h5 missing or tr.h5.tmp left"
ck export tr tr.h5; expect 1 "export over an existing file"
grep -q "exists (use --force" "$TMP/e" || fail "export over an existing file: $(cat "$TMP/e")"
ck verify tr.h5;               expect 0 "verify of the exported file"
ck diff tr tr.h5 --moments;    expect 0 "diff of the checkpoint and its export, moments included"
ck ls tr.h5;                   expect 0 "ls of the exported file"
grep -q "stages      1" "$TMP/o" || fail "ls tr.h5: not one stage"
if /usr/bin/python3 -c "import h5py" 2>/dev/null || python3 -c "import h5py" 2>/dev/null; then
  py=python3; /usr/bin/python3 -c "import h5py" 2>/dev/null && py=/usr/bin/python3
  $py - tr.h5 <<'EOF' || fail "h5py cannot read the exported file as documented"
import sys, zlib
import h5py
with h5py.File(sys.argv[1], "r") as f:
    assert f.attrs["n_stages"] == 1 and f.attrs["format_version"] == 2
    n = 0
    for row in f["index"][:]:
        name = row["name"].decode()
        layer, param = name.split(".", 2)[1:]
        assert row["shard"] == 0
        for a, path in enumerate([f"layers/{layer}/{param}", f"layers/{layer}/moment1/{param}",
                                  f"layers/{layer}/moment2/{param}"]):
            d = f[path][...]
            assert d.dtype == "<f4" and list(d.shape) == list(row["shape"][: row["ndim"]])
            assert zlib.crc32(d.astype("<f4").tobytes()) == row["crc"][a] == f[path].attrs["crc32"], path
            n += 1
    print("h5py read", n, "arrays, every crc32 matching")
EOF
else
  echo "h5py is not installed: the h5py reading check is skipped"
fi

run 3 train "$CONFIG" "${train[@]}" --init tr
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "--init tr exited with $RC"; }
want=$(fingerprint_of "$TMP/out")
run 3 train "$CONFIG" "${train[@]}" --init tr.h5
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "--init tr.h5 exited with $RC"; }
grep -q "initialised from tr.h5: step 0" "$TMP/out" || fail "--init tr.h5 did not start at step 0"
got=$(fingerprint_of "$TMP/out")
[ -n "$want" ] && [ "$got" = "$want" ] || fail "--init from the exported file: fingerprint $got, from the checkpoint $want"
echo "export then --init: $got, as --init from the checkpoint"

run 3 train "$CONFIG" "${train[@]}" --set checkpoint.dir=resumed --resume tr
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "--resume tr exited with $RC"; }
want=$(fingerprint_of "$TMP/out")
for pq in "3 uniform" "1 uniform" "4 params"; do
  set -- $pq
  ck reshard tr --stages $1 --partition $2 re$1; expect 0 "reshard to $1 stages"
  grep -q "$2 partition" "$TMP/o" || fail "reshard to $1: $(cat "$TMP/o")"
  [ "$(cat re$1/latest)" = "step-$(printf %06d $N)" ] || fail "reshard to $1: latest is '$(cat re$1/latest)'"
  ck verify re$1;                 expect 0 "verify of the $1-stage reshard"
  ck diff tr re$1 --moments;      expect 0 "diff of the checkpoint and its $1-stage reshard"
  run $1 train "$CONFIG" "${train[@]}" --set checkpoint.dir=re$1 --resume re$1
  [ $RC -eq 0 ] || { cat "$TMP/out"; fail "--resume re$1 on $1 stages exited with $RC"; }
  got=$(fingerprint_of "$TMP/out")
  [ "$got" = "$want" ] || fail "resharded to $1 stages and resumed: fingerprint $got, expected $want"
  echo "reshard to $1 stages ($2) then --resume on $1: $got"
done
# the tiny GPT, whose lmhead is tied to its embedding (the copy is stored once, as its source)
GPT_CONFIG="$(dirname "$CONFIG")/tiny_gpt.ini"
run 3 train "$GPT_CONFIG" --set checkpoint.dir=gpt --stop-after 3
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "training the tiny GPT exited with $RC"; }
ck verify gpt; expect 0 "verify of the GPT checkpoint"
grep -q "tied copies  ok *the model ties 1 tensor, stored once" "$TMP/o" || { cat "$TMP/o"; fail "verify gpt: tied row"; }
ck ls gpt/step-000003; expect 0 "ls of the GPT checkpoint"
grep -q "^tied *layers.5.w is a copy of layers.0.w (stored once, as the source)" "$TMP/o" || { cat "$TMP/o"; fail "ls gpt: tied line"; }
run 3 train "$GPT_CONFIG" --set checkpoint.dir=gpt-resumed --resume gpt
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "--resume gpt exited with $RC"; }
want=$(fingerprint_of "$TMP/out")
ck reshard gpt --stages 2 gpt2; expect 0 "reshard of the GPT to 2 stages"
run 2 train "$GPT_CONFIG" --set checkpoint.dir=gpt2 --resume gpt2
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "--resume gpt2 exited with $RC"; }
got=$(fingerprint_of "$TMP/out")
[ "$got" = "$want" ] || fail "GPT resharded from 3 to 2 stages and resumed: fingerprint $got, expected $want"
echo "tied GPT: verify, ls, reshard 3 -> 2 then --resume: $got"

ck reshard tr --stages 3 re3;               expect 1 "reshard onto an existing step"
grep -q "already exists" "$TMP/e" || fail "reshard onto an existing step: $(cat "$TMP/e")"
ck reshard tr --stages 8 re8;               expect 1 "reshard to more stages than layers"
grep -q "more than the 7 layers" "$TMP/e" || fail "reshard --stages 8: $(cat "$TMP/e")"
ck reshard tr --stages 3 --partition 0-3,4-6 rex; expect 0 "reshard with explicit ranges of another stage count"
grep -q "does not fit 3 stages" "$TMP/e" || fail "no note of the uniform fallback: $(cat "$TMP/e")"

# ---- 4. damaged checkpoints -------------------------------------------------
good="tr/step-$(printf %06d $N)"
damage() { rm -rf "bad-$1"; cp -r "$good" "bad-$1"; echo "bad-$1"; }
offset_of() { h5dump -p -d "$2" "$1" | sed -n 's/.*OFFSET \([0-9]*\).*/\1/p' | head -1; }
flip() { # flip FILE DATASET: one bit in the middle of the dataset's data
  local off; off=$(offset_of "$1" "$2")
  [ -n "$off" ] || fail "no offset of $2 in $1"
  local pos=$((off + 1000)) byte
  byte=$(od -An -tu1 -j $pos -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((byte ^ 16)))" | dd of="$1" bs=1 seek=$pos conv=notrunc status=none
}

d=$(damage bitflip);   flip "$d/stage-00.h5" /layers/0/w
d=$(damage missing);   rm "$d/stage-01.h5"
d=$(damage truncated); truncate -s $(( $(stat -c %s "$d/stage-01.h5") / 2 )) "$d/stage-01.h5"
d=$(damage version);   "$SET_ATTR" "$d/manifest.h5" / format_version 7
d=$(damage shardversion); "$SET_ATTR" "$d/stage-01.h5" / format_version 7
d=$(damage twice);     h5copy -i "$d/stage-00.h5" -o "$d/stage-01.h5" -s /layers/3 -d /layers/3
d=$(damage foreign)    # stage 1 replaced by stage 1 of another model (linear 40 instead of 48)
run 2 train "$CONFIG" "${train[@]}" --set checkpoint.dir=other --stop-after $N \
    --set "model.layers=linear 64, relu, dropout 0.1, linear 40, layernorm, gelu, linear 10"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "training the other model exited with $RC"; }
cp "other/step-$(printf %06d $N)/stage-01.h5" "$d/stage-01.h5"
d=$(damage two);       flip "$d/stage-00.h5" /layers/0/w; rm "$d/stage-01.h5"

# verify: exit 1 and the faults it must name (egrep patterns, each must match)
verify_finds() {
  local name=$1; shift
  ck verify "bad-$name"; expect 1 "verify of $name"
  for want in "$@"; do
    grep -q -E -- "$want" "$TMP/o" || { cat "$TMP/o"; fail "verify of $name: no fault matching '$want'"; }
  done
  grep -q "^pipetrain-ckpt: verify: [0-9]* faults\? in " "$TMP/e" || fail "verify of $name: no error line"
  echo "verify catches $name: $(sed -n '/^faults:/{n;p}' "$TMP/o" | sed 's/^ *//' | mask | cut -c1-150)"
}
verify_finds bitflip   "bad-bitflip/stage-00.h5: tensor layers.0.w: checksum mismatch"
verify_finds missing   "bad-missing/stage-01.h5 is missing.*layers 4 to 6"
verify_finds truncated "bad-truncated/stage-01.h5 is not a readable HDF5 file"
verify_finds version   "bad-version/manifest.h5: format version 7, this pipetrain reads version 1"
verify_finds shardversion "bad-shardversion/stage-01.h5: format version 7"
verify_finds twice     "bad-twice/stage-01.h5: tensor layers.3.w of layer 3 is stored here too.*exactly once"
verify_finds foreign   "bad-foreign/stage-01.h5: tensor layers.4.w: shape \[40\] in the file, the manifest says \[48\]" \
                       "bad-foreign/stage-01.h5: tensor layers.6.w: shape \[10, 40\] in the file, the manifest says \[10, 48\]"
verify_finds two       "stage-00.h5: tensor layers.0.w: checksum mismatch" "bad-two/stage-01.h5 is missing"
grep -q "faults\? in " "$TMP/e" && [ "$(sed -n '/^faults:/,$p' "$TMP/o" | grep -c '^  ')" -ge 2 ] ||
  fail "verify of two faults did not list both"

# every command on every damaged checkpoint: reported, named, no crash
for name in bitflip missing truncated version shardversion twice foreign two; do
  d="bad-$name"
  case $name in # the file the errors must name; ls reads no data, so names the other fault of "two"
    bitflip) file=stage-00.h5 lsfile=- tensor=layers.0.w ;;
    two) file=stage-00.h5 lsfile=stage-01.h5 tensor=layers.0.w ;;
    version) file=manifest.h5 lsfile=$file tensor=layers.6.w ;;
    *) file=stage-01.h5 lsfile=$file tensor=layers.6.w ;;
  esac
  before=$(md5sum "$d"/*)
  if [ $name = twice ]; then # intact data in the wrong place: readers still work, writers refuse
    ck stats "$d"; expect 0 "stats of $name"
    ck export "$d" "$name.h5"; expect 1 "export of $name"
    grep -q "$d/stage-01.h5: tensor layers.3.w of layer 3 is stored here too" "$TMP/e" || fail "export of $name: $(cat "$TMP/e")"
    ck reshard "$d" --stages 3 "re-$name"; expect 1 "reshard of $name"
    [ ! -e "$name.h5" ] && [ ! -e "re-$name/latest" ] || fail "a damaged checkpoint was rewritten"
    ck ls "$d"; expect 1 "ls of $name"
    [ "$before" = "$(md5sum "$d"/*)" ] || fail "$name: the damaged checkpoint was modified"
    echo "damaged ($name): stats works, export, reshard and ls exit 1 naming the layer stored twice"
    continue
  fi
  ck stats "$d";             expect 1 "stats of $name"
  grep -q "$d.*$file" "$TMP/e" || { cat "$TMP/e"; fail "stats of $name: the error does not name $d and $file"; }
  ck show "$d" $tensor;      expect 1 "show $tensor of $name"
  grep -q "$d.*$file" "$TMP/e" || { cat "$TMP/e"; fail "show of $name: the error does not name $d and $file"; }
  ck diff "$good" "$d";      expect 1 "diff with $name"
  grep -q "$d.*$file" "$TMP/e" || { cat "$TMP/e"; fail "diff with $name: the error does not name $d and $file"; }
  ck export "$d" "$name.h5"; expect 1 "export of $name"
  [ ! -e "$name.h5" ] && [ ! -e "$name.h5.tmp" ] || fail "export of $name left a file"
  ck reshard "$d" --stages 3 "re-$name"; expect 1 "reshard of $name"
  [ ! -e "re-$name/latest" ] || fail "reshard of $name committed a checkpoint"
  ck ls "$d"
  if [ $name = bitflip ]; then
    expect 0 "ls of bitflip (ls reads no tensor data: only verify, show, stats, diff see a flipped bit)"
  else
    expect 1 "ls of $name"
    grep -q "$d.*$lsfile" "$TMP/e" || { cat "$TMP/e"; fail "ls of $name: the error does not name $d and $lsfile"; }
  fi
  [ "$before" = "$(md5sum "$d"/*)" ] || fail "$name: the damaged checkpoint was modified"
  echo "damaged ($name): stats, show, diff, export, reshard exit 1 naming $file; ls exit $RC; unchanged"
done

# ls of a run directory whose latest checkpoint is damaged, with a crash leftover
mkdir -p badrun && cp -r bad-missing badrun/step-000004 && cp -r g1/step-000001 badrun/step-000001 &&
  mkdir badrun/.tmp-step-000006 && echo step-000004 > badrun/latest
ck ls badrun; expect 1 "ls of a run with a damaged latest checkpoint"
grep -q "step-000001 .*complete$" "$TMP/o" && grep -q "^\* *step-000004 .*damaged: .*stage-01.h5 is missing" "$TMP/o" &&
  grep -q "\.tmp-step-000006 .*incomplete: not committed" "$TMP/o" || { cat "$TMP/o"; fail "ls badrun"; }
echo "ls of a run: complete, damaged (latest) and an uncommitted leftover told apart"
echo "pipetrain-ckpt: all checks passed"
