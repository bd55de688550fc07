#!/usr/bin/env bash
# Checkpoint files as they fail in the field:
#  1. damaged HDF5 metadata (the field cases: manifests on which HDF5 itself
#     crashed with SIGSEGV or looped forever): every pipetrain-ckpt command
#     and `pipetrain train --resume` ends within `timeout 60`, never from a
#     signal, with exit 1 or 2 and one error line naming manifest.h5, and
#     changes no file;
#  2. a file system without working locks (noflock.so makes flock() fail
#     with ENOLCK, as NFS without lockd does): an intact checkpoint is
#     reported as a locking problem with the fix HDF5_USE_FILE_LOCKING=FALSE,
#     exit 2, never as damage; with the fix applied it verifies;
#  3. new checkpoints are format version 2 (checksummed HDF5 1.10 metadata,
#     no variable-length strings); a version 1 checkpoint (the field case's
#     shards with an intact version 1 manifest made with h5py) still reads.
# PIPETRAIN, MPIEXEC, PIPETRAIN_CKPT, NOFLOCK and FIELD_CASES come from ctest;
# the field cases are skipped (with a line saying so) when FIELD_CASES is absent.
. "$(dirname "$0")/lib.sh"
set -e
: "${PIPETRAIN_CKPT:?}" "${NOFLOCK:?}"
CONFIG=$1
FIELD=${FIELD_CASES:-}/damaged-manifest
cd "$TMP"
# with sanitizers, Open MPI's own allocations show up as leaks at the ranks' exit
MPI_ASAN=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0

# guard WHAT CMD...: runs CMD under `timeout 60`, stdout+stderr in $TMP/g, exit code in $RC;
# fails on a timeout, a death from a signal or a sanitizer's report (under mpiexec
# leak reports are not checked: Open MPI's own, as in the other multi-rank tests)
guard() {
  local what=$1; shift
  local pats=(-e "AddressSanitizer" -e "runtime error" -e "LeakSanitizer")
  [ "$1" != "$MPIEXEC" ] || pats=(-e "ERROR: AddressSanitizer: [^d]" -e "runtime error")
  set +e
  timeout 60 "$@" >"$TMP/g" 2>&1
  RC=$?
  set -e
  [ $RC -ne 124 ] || { cat "$TMP/g"; fail "$what: still running after 60 s"; }
  [ $RC -lt 128 ] || { cat "$TMP/g"; fail "$what: killed by a signal (exit $RC)"; }
  if grep -q "${pats[@]}" "$TMP/g"; then
    cat "$TMP/g"; fail "$what: sanitizer report"
  fi
}
state() { (cd "$1" && ls -la --time-style=+%s.%N . && md5sum ./*); }

# ---- 1. the field cases -------------------------------------------------------
if [ ! -d "$FIELD" ]; then
  echo "SKIP: the field cases ($FIELD) are not here: damaged-manifest cases not run"
else
  # the model of the field cases: a 784-128-128-10 MLP on 2 stages, step 300
  cat >field.ini <<'EOF'
[model]
layers = linear 128, relu, linear 128, relu, linear 10

[train]
steps = 310
batch_size = 32
lr = 1e-3
warmup_steps = 3
log_every = 100

[pipeline]
micro_batches = 2
EOF
  asan=$(ldd "$PIPETRAIN_CKPT" 2>/dev/null | grep -o libasan || true)
  for kind in crash hang; do
    run="field-$kind"
    ck="$run/step-000300"
    mkdir -p "$ck"
    cp "$FIELD/stage-00.h5" "$FIELD/stage-01.h5" "$ck/"
    cp "$FIELD/manifest-$kind.h5" "$ck/manifest.h5"
    chmod u+w "$ck"/*
    echo "step-000300" >"$run/latest"
    before=$(state "$ck")
    # the hang waits out the time limit (20 s by default): 2 s here
    export PIPETRAIN_HDF5_TIMEOUT=2
    cmds=("ls $run" "ls $ck" "verify $ck" "show $ck layers.0.w" "stats $ck" "diff $ck $ck" "export $ck $TMP/out-$kind.h5"
          "reshard $ck --stages 1 $TMP/re-$kind")
    for c in "${cmds[@]}"; do
      # shellcheck disable=SC2086
      guard "$kind: pipetrain-ckpt $c" "$PIPETRAIN_CKPT" $c
      [ $RC -eq 1 ] || [ $RC -eq 2 ] || { cat "$TMP/g"; fail "$kind: pipetrain-ckpt $c: exit $RC, expected 1 or 2"; }
      n=$(grep -c "manifest.h5: damaged HDF5 metadata: the HDF5 library" "$TMP/g" || true)
      [ "$n" -eq 1 ] || { cat "$TMP/g"; fail "$kind: pipetrain-ckpt $c: $n error lines naming manifest.h5, expected 1"; }
      # (a sanitizer in the child ends it with its own exit status instead of the signal)
      if [ $kind = hang ]; then want="did not finish reading it in"
      elif [ -n "$asan" ]; then want="the HDF5 library crashed ("
      else want="the HDF5 library crashed (SIGSEGV)"; fi
      grep -q "$want" "$TMP/g" || { cat "$TMP/g"; fail "$kind: pipetrain-ckpt $c: the error lacks '$want'"; }
      [ "$before" = "$(state "$ck")" ] || fail "$kind: pipetrain-ckpt $c changed the checkpoint"
      [ ! -e "$TMP/out-$kind.h5" ] && [ ! -e "$TMP/re-$kind" ] || fail "$kind: pipetrain-ckpt $c wrote output"
      echo "$kind: pipetrain-ckpt $c: exit $RC: $(grep -m1 'manifest.h5: damaged' "$TMP/g" | cut -c1-150)"
    done
    ASAN_OPTIONS=$MPI_ASAN guard "$kind: train --resume" "$MPIEXEC" --oversubscribe -np 2 -x PIPETRAIN_HDF5_TIMEOUT "$PIPETRAIN" train field.ini \
      --resume "$ck" --set checkpoint.dir="$TMP/field-out-$kind"
    [ $RC -eq 1 ] || [ $RC -eq 2 ] || { cat "$TMP/g"; fail "$kind: train --resume: exit $RC, expected 1 or 2"; }
    [ "$(grep -c '^pipetrain: ' "$TMP/g")" -eq 1 ] || { cat "$TMP/g"; fail "$kind: train --resume: not exactly one error line"; }
    grep '^pipetrain: ' "$TMP/g" | grep -q "manifest.h5: damaged HDF5 metadata" ||
      { cat "$TMP/g"; fail "$kind: train --resume: the error does not name manifest.h5 as damaged"; }
    [ "$before" = "$(state "$ck")" ] || fail "$kind: train --resume changed the checkpoint"
    echo "$kind: train --resume: exit $RC: $(grep -m1 '^pipetrain: ' "$TMP/g" | cut -c1-150)"
    unset PIPETRAIN_HDF5_TIMEOUT
  done
fi

# ---- 2. a file system without working locks --------------------------------------
ASAN_OPTIONS=$MPI_ASAN run 2 train "$CONFIG" --set train.steps=4 --set train.warmup_steps=1 --set checkpoint.dir="$TMP/lk"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "making the checkpoint exited with $RC"; }
ck=$TMP/lk/step-000004
before=$(state "$ck")
# an AddressSanitizer runtime insists on being the first library loaded
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
for c in "verify $TMP/lk" "ls $TMP/lk" "ls $ck" "show $TMP/lk layers.0.w" "stats $TMP/lk" "diff $TMP/lk $ck"; do
  # shellcheck disable=SC2086
  guard "no locks: pipetrain-ckpt $c" env LD_PRELOAD="$NOFLOCK" "$PIPETRAIN_CKPT" $c
  [ $RC -eq 2 ] || { cat "$TMP/g"; fail "no locks: pipetrain-ckpt $c: exit $RC, expected 2"; }
  grep -q "cannot lock the file" "$TMP/g" && grep -q "HDF5_USE_FILE_LOCKING=FALSE" "$TMP/g" ||
    { cat "$TMP/g"; fail "no locks: pipetrain-ckpt $c: no locking problem and fix in the message"; }
  if grep -q -i -e "damaged" -e "not a readable HDF5 file" -e "FAILED" "$TMP/g"; then
    cat "$TMP/g"; fail "no locks: pipetrain-ckpt $c: reports an intact checkpoint as damaged"
  fi
done
echo "no locks: every command says $(grep -m1 -o 'cannot lock the file.*errno = [0-9]*' "$TMP/g"), exit 2"
guard "no locks, locking off: verify" env LD_PRELOAD="$NOFLOCK" HDF5_USE_FILE_LOCKING=FALSE "$PIPETRAIN_CKPT" verify "$TMP/lk"
[ $RC -eq 0 ] || { cat "$TMP/g"; fail "no locks, HDF5_USE_FILE_LOCKING=FALSE: verify exit $RC, expected 0"; }
[ "$before" = "$(state "$ck")" ] || fail "no locks: the checkpoint was modified"
echo "no locks, HDF5_USE_FILE_LOCKING=FALSE: verify passes"

# ---- 3. format version 2; version 1 still reads --------------------------------
man=$ck/manifest.h5
h5dump -a /format_version "$man" | grep -q "(0): 2" || { h5dump -a /format_version "$man"; fail "the new manifest is not format version 2"; }
sb=$(h5dump -B "$man" | sed -n 's/.*SUPERBLOCK_VERSION \([0-9]*\).*/\1/p' | head -1)
[ -n "$sb" ] && [ "$sb" -ge 2 ] || fail "the new manifest has superblock version '$sb': its metadata has no checksums"
for f in "$man" "$ck/stage-00.h5"; do
  if h5dump -H "$f" | grep -q H5T_VARIABLE; then h5dump -H "$f" | grep -B3 H5T_VARIABLE; fail "$f holds a variable-length type"; fi
done
echo "new checkpoints: format version 2, superblock $sb, no variable-length strings"

py=
for p in /usr/bin/python3 python3; do "$p" -c "import h5py" 2>/dev/null && { py=$p; break; }; done
if [ ! -d "$FIELD" ] || [ -z "$py" ]; then
  echo "SKIP: a version 1 checkpoint needs the field cases and h5py: not run"
else
  # an intact version 1 manifest for the field case's shards, as pipetrain 1 wrote it:
  # the earliest file format (no checksums), the config a variable-length string
  v1=$TMP/v1/step-000300
  mkdir -p "$v1"
  cp "$FIELD/stage-00.h5" "$FIELD/stage-01.h5" "$v1/"
  chmod u+w "$v1"/*
  "$py" - "$v1" "$TMP/field.ini" <<'EOF' || fail "cannot write a version 1 manifest with h5py"
import os, sys, zlib
import h5py, numpy as np
d, ini = sys.argv[1], sys.argv[2]
row = np.dtype([("name", "S80"), ("layer", "<i4"), ("ndim", "<i4"), ("shape", "<i4", (2,)),
                ("numel", "<i8"), ("shard", "<i4"), ("crc", "<u4", (3,))])
rows, cuts = [], [0]
for s in range(2):
    with h5py.File(os.path.join(d, "stage-%02d.h5" % s), "r") as f:
        assert f.attrs["format_version"] == 1
        step, seed = int(f.attrs["step"]), int(f.attrs["seed"])
        cuts.append(int(f.attrs["last_layer"]))
        for layer in sorted(f["layers"], key=int):
            g = f["layers"][layer]
            for p in sorted(k for k in g if k not in ("moment1", "moment2")):
                arrays = [g[p][...], g["moment1"][p][...], g["moment2"][p][...]]
                shape = list(arrays[0].shape) + [0]
                rows.append((("layers.%s.%s" % (layer, p)).encode(), int(layer), arrays[0].ndim, shape[:2],
                             arrays[0].size, s, [zlib.crc32(a.astype("<f4").tobytes()) for a in arrays]))
with h5py.File(os.path.join(d, "manifest.h5"), "w", libver="earliest") as m:
    m.attrs.create("format_version", 1, dtype="<i4")
    m.attrs.create("step", step, dtype="<i8")
    m.attrs.create("seed", seed, dtype="<u8")
    m.attrs.create("n_stages", 2, dtype="<i4")
    m.attrs.create("data_parallel", 1, dtype="<i4")
    m.attrs.create("n_layers", cuts[-1], dtype="<i4")
    m.attrs.create("cuts", np.array(cuts, dtype="<i4"))
    m.attrs.create("config", open(ini).read(), dtype=h5py.string_dtype("utf-8"))
    m.create_dataset("index", data=np.array(rows, dtype=row))
    lg = m.create_group("layers")
    for r in rows:
        name = str(r[1])
        if name not in lg:
            lg[name] = h5py.ExternalLink("stage-%02d.h5" % r[5], "/layers/" + name)
EOF
  h5dump -H "$v1/manifest.h5" | grep -q H5T_VARIABLE || fail "the version 1 manifest made here has no variable-length config"
  guard "version 1: verify" "$PIPETRAIN_CKPT" verify "$v1"
  [ $RC -eq 0 ] || { cat "$TMP/g"; fail "version 1: verify exit $RC, expected 0"; }
  grep -q "format version 1" "$TMP/g" || { cat "$TMP/g"; fail "version 1: verify does not say format version 1"; }
  guard "version 1: show" "$PIPETRAIN_CKPT" show "$v1" layers.4.w --values 3
  [ $RC -eq 0 ] || { cat "$TMP/g"; fail "version 1: show exit $RC"; }
  echo "version 1 checkpoint (field case shards): verify and show pass"
fi
echo "field faults: ok"
