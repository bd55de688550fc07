#!/usr/bin/env bash
# pipetrain-scale: a real grid of layouts (ranks × replicas × micro-batches ×
# schedule), each run beside its prediction; a layout pipetrain refuses is
# reported and the sweep goes on (exit status 1 for that alone); results.csv,
# results.md and the two plots; an srun-style launcher gets -n N; its
# argument errors.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
NAME=$(basename "$CONFIG" .ini)
command -v jq >/dev/null || fail "jq is needed (scripts/setup.sh installs it)"
command -v gnuplot >/dev/null || fail "gnuplot is needed (apt-get install gnuplot-nox)"
SCALE=$(cd "$(dirname "$0")/../../tools" && pwd)/pipetrain-scale
COLS=ranks,stages,data_parallel,micro_batches,schedule,throughput,step_s,predicted_step_s_simulate,predicted_step_s_selfcheck,bubble_worst,theoretical_bubble,parallel_efficiency,status

# ranks 1, 2, 3 × replicas 3, 1: D = 3 only fits N = 3, where M = 2 and 4 are
# not multiples of 3: those 4 runs fail, in the middle of the sweep
set +e
PIPETRAIN_PLOT_SCRIPT="$TMP/gp" timeout 300 "$SCALE" "$CONFIG" --ranks 1,2,3 --data-parallel 3,1 \
  --micro-batches 2,4 --schedules 1f1b,zbh1 --out "$TMP/scale" --pipetrain "$PIPETRAIN" --launcher "$MPIEXEC" \
  >"$TMP/out" 2>&1
rc=$?
set -e
cat "$TMP/out"
[ $rc -eq 1 ] || fail "the sweep exited with $rc, expected 1 (the D = 3 layouts fail)"
grep -q "^pipetrain-scale: 16 runs of $CONFIG in $TMP/scale ($MPIEXEC -np N)$" "$TMP/out" || fail "no header line"
grep -q "^pipetrain-scale: skipped, the ranks not being a multiple of the replicas: N=1 D=3, N=2 D=3$" "$TMP/out" ||
  fail "the skipped pairs are not named"
[ "$(grep -Ec '^\[[0-9]+/16\] N=[123] D=[13] M=[24] (1f1b|zbh1): ' "$TMP/out")" -eq 16 ] || fail "expected 16 progress lines"
[ "$(grep -Ec '^\[[0-9]+/16\] N=[123] D=1 M=[24] (1f1b|zbh1): [0-9]+ (samples|tokens)/s \([0-9.]+ s\), eta [0-9]+(s|m[0-9]{2}s)$' "$TMP/out")" -eq 12 ] ||
  fail "expected 12 progress lines of runs that succeeded"
[ "$(grep -Ec '^\[[0-9]+/16\] N=3 D=3 M=[24] (1f1b|zbh1): FAILED: pipetrain: pipeline.micro_batches = [24] is not divisible by pipeline.data_parallel = 3.*\(exit [0-9]+\) .*log .*/runs/N3-D3-M[24]-(1f1b|zbh1)\.log\), eta ' "$TMP/out")" -eq 4 ] ||
  fail "expected the 4 D = 3 runs reported as failed, with pipetrain's error line"
first_fail=$(grep -n 'FAILED' "$TMP/out" | head -1 | cut -d: -f1)
last_ok=$(grep -En ' (samples|tokens)/s \(' "$TMP/out" | tail -1 | cut -d: -f1)
[ "$first_fail" -lt "$last_ok" ] || fail "the sweep did not go on after a failed run"
grep -Eq "^\[16/16\] N=3 D=1 M=4 zbh1: [0-9]+ (samples|tokens)/s" "$TMP/out" || fail "the last run is not N=3 D=1 M=4 zbh1"
grep -q "^pipetrain-scale: 16 runs, 12 ok, 4 failed; wrote $TMP/scale/results.csv, results.md, throughput.png, bubble.png$" \
  "$TMP/out" || fail "no closing line"

# results.csv: one row per run in run order; the D = 3 rows failed, every other one is whole
csv=$TMP/scale/results.csv
[ "$(head -1 "$csv")" = "$COLS" ] || fail "results.csv header: $(head -1 "$csv")"
[ "$(wc -l <"$csv")" -eq 17 ] || fail "results.csv: expected 16 rows"
want=""
for N in 1 2 3; do for D in 3 1; do [ $((N % D)) -eq 0 ] || continue
  for M in 2 4; do for S in 1f1b zbh1; do want+="$N,$((N / D)),$D,$M,$S"$'\n'; done; done; done; done
[ "$(tail -n +2 "$csv" | cut -d, -f1-5)"$'\n' = "$want" ] || fail "results.csv: the layouts are not the grid in run order"
awk -F, 'NR > 1 && NF != 13 { exit 1 }' "$csv" || fail "results.csv: a row without 13 fields"
awk -F, 'NR > 1 && $3 == 3 && !($13 == "failed" && $6 == "" && $7 == "" && $12 == "") { exit 1 }' "$csv" ||
  fail "results.csv: a D = 3 row is not a failed run"
awk -F, 'NR > 1 && $3 == 1 && !($13 == "ok" && $6 > 0 && $7 > 0 && $8 > 0 && $9 > 0 && $10 >= 0 && $10 <= 1 &&
         $11 >= 0 && $11 < 1 && $12 > 0) { print; bad = 1 } END { exit bad }' "$csv" ||
  fail "results.csv: a run that succeeded lacks a figure"
# the 1F1B theoretical bubble is (P - 1) / (M + P - 1); ZB-H1's is smaller; one stage has none
awk -F, 'NR > 1 && $13 == "ok" && $5 == "1f1b" && sprintf("%.4f", ($2 - 1) / ($4 + $2 - 1)) != $11 { print; bad = 1 } END { exit bad }' "$csv" ||
  fail "results.csv: a 1f1b theoretical bubble is not (P - 1) / (M + P - 1)"
awk -F, 'NR > 1 && $13 == "ok" { t[$1 " " $4 " " $5] = $11 }
         END { for (k in t) { split(k, a, " "); if (a[3] == "zbh1" && a[1] > 1 && !(t[k] < t[a[1] " " a[2] " 1f1b"])) bad = 1 }
               exit bad }' "$csv" || fail "results.csv: ZB-H1's theoretical bubble is not below 1F1B's"
# the efficiency base is the one-rank run of the same schedule and M
awk -F, 'NR > 1 && $1 == 1 && $12 != "1.0000" { exit 1 }' "$csv" || fail "results.csv: a one-rank run's efficiency is not 1"
awk -F, 'NR > 1 && $1 == 1 { t[$4 $5] = $6 } NR > 1 && $1 > 1 && $13 == "ok" {
           e = $6 / (t[$4 $5] * $1); if (e - $12 > 0.001 || $12 - e > 0.001) { print; bad = 1 } } END { exit bad }' "$csv" ||
  fail "results.csv: parallel_efficiency is not throughput / (one rank's × ranks)"
# the figures are the runs' own
row=$(awk -F, '$1 == 2 && $4 == 4 && $5 == "1f1b"' "$csv")
s=$TMP/scale/runs/N2-D1-M4-1f1b.json
jq -e . "$s" >/dev/null || fail "runs/N2-D1-M4-1f1b.json is not JSON"
[ "$(echo "$row" | cut -d, -f6)" = "$(jq -r '.throughput_tokens_per_s // .throughput_samples_per_s' "$s" |
      awk '{printf "%.1f", $1}')" ] || fail "throughput is not the summary's: $row"
[ "$(echo "$row" | cut -d, -f10)" = "$(jq -r '[.ranks[].bubble_fraction] | max' "$s" | awk '{printf "%.4f", $1}')" ] ||
  fail "bubble_worst is not the worst rank's of the summary: $row"
sim=$(sed -n 's/^predicted step time: \(.*\) s$/\1/p' "$TMP/scale/runs/N2-D1-M4-1f1b.simulate.txt")
[ "$(echo "$row" | cut -d, -f8)" = "$(awk -v x="$sim" 'BEGIN {printf "%.6g", x}')" ] ||
  fail "predicted_step_s_simulate is not what pipetrain simulate printed ($sim): $row"
[ "$(ls "$TMP"/scale/runs/*.log | wc -l)" -eq 16 ] && [ "$(ls "$TMP"/scale/runs/*.simulate.txt | wc -l)" -eq 16 ] &&
  [ "$(ls "$TMP"/scale/runs/*.json | wc -l)" -eq 12 ] || fail "runs/: expected 16 logs and simulations, 12 summaries"
head -1 "$TMP/scale/runs/N3-D1-M2-zbh1.log" | grep -q "^# $MPIEXEC -np 3 $PIPETRAIN train $CONFIG " ||
  fail "a run's log does not begin with its command: $(head -1 "$TMP/scale/runs/N3-D1-M2-zbh1.log")"
grep -q '^pipetrain: pipeline.micro_batches = 2 is not divisible' "$TMP/scale/runs/N3-D3-M2-1f1b.log" ||
  fail "the failed run's log lacks pipetrain's message"

# results.md: the same table, then the failed runs
md=$TMP/scale/results.md
grep -qx "| ${COLS//,/ | } |" "$md" || fail "results.md: no table header"
grep -Eqx '(\| -{3}:? )+\|' "$md" || fail "results.md: no alignment row"
[ "$(grep -Ec '^\| [0-9]+ \| [0-9]+ \| [13] \| [24] \| (1f1b|zbh1) \| .* \| (ok|failed) \|$' "$md")" -eq 16 ] ||
  fail "results.md: expected 16 table rows"
[ "$(grep -c '^| 3 | 1 | 3 | .* | failed |$' "$md")" -eq 4 ] || fail "results.md: expected 4 failed rows"
grep -q '^Failed runs:$' "$md" && [ "$(grep -c '^- N=3 D=3 M=[24] .*: `pipetrain: pipeline.micro_batches' "$md")" -eq 4 ] ||
  fail "results.md: the failed runs and their errors are not listed"

# the plots: PNGs, with the config's name as literal text
for f in throughput bubble; do
  [ "$(head -c 8 "$TMP/scale/$f.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f.png is not a PNG"
done
[ "$(grep -c '^set terminal pngcairo .* noenhanced$' "$TMP/gp")" -eq 2 ] || { cat "$TMP/gp"; fail "the plots' text is enhanced"; }
grep -q "title 'pipetrain-scale: $NAME.ini' noenhanced" "$TMP/gp" || { cat "$TMP/gp"; fail "the title is not literal"; }
grep -q "title '1f1b M=4' noenhanced" "$TMP/gp" || { cat "$TMP/gp"; fail "no 1f1b M=4 line in throughput.png"; }
grep -q "title 'N=3 D=1 theory' noenhanced" "$TMP/gp" || { cat "$TMP/gp"; fail "no theoretical bubble in bubble.png"; }
echo "scale: 16 runs (12 ok, the 4 of D = 3 failed and reported), results.csv, results.md, throughput.png, bubble.png"

# an srun-style launcher is given -n N; the default output directory is ./scale-NAME; no failure, exit 0
mkdir -p "$TMP/bin" "$TMP/cwd"
cat >"$TMP/bin/srun" <<EOF
#!/usr/bin/env bash
# a stand-in for Slurm's srun: checks what pipetrain-scale passes, runs mpiexec
[ "\$1" = --cpu-bind=cores ] && [ "\$2" = -n ] || { echo "fake srun: unexpected arguments: \$*" >&2; exit 99; }
n=\$3; shift 3
echo "srun -n \$n" >>"$TMP/srun.calls"
exec "$MPIEXEC" -np "\$n" "\$@"
EOF
chmod +x "$TMP/bin/srun"
(cd "$TMP/cwd" && timeout 120 "$SCALE" "$CONFIG" --ranks 2 --micro-batches 4 --schedules 1f1b --pipetrain "$PIPETRAIN" \
   --launcher "$TMP/bin/srun --cpu-bind=cores") >"$TMP/out" 2>&1 || { cat "$TMP/out"; fail "the srun sweep exited with $?"; }
[ "$(cat "$TMP/srun.calls")" = "srun -n 2" ] || fail "srun was not called once with -n 2: $(cat "$TMP/srun.calls")"
awk -F, 'NR == 2 && $1 == 2 && $13 == "ok"' "$TMP/cwd/scale-$NAME/results.csv" | grep -q . ||
  fail "no ok row in ./scale-$NAME/results.csv"
echo "scale: --launcher srun gets -n N; ./scale-$NAME by default"

# errors: one line naming the problem
err() { # WANT_RC PATTERN ARGS...
  local want=$1 pat=$2 rc; shift 2
  set +e; "$SCALE" "$@" >"$TMP/err" 2>&1; rc=$?; set -e
  [ $rc -eq "$want" ] && grep -q -- "$pat" "$TMP/err" || { cat "$TMP/err"; fail "pipetrain-scale $*: rc $rc, expected $want and '$pat'"; }
}
err 1 "nope.ini does not exist" "$TMP/nope.ini" --ranks 1
err 2 "\-\-ranks is required" "$CONFIG"
err 2 "\-\-ranks '1,x': expected a comma-separated list of positive integers" "$CONFIG" --ranks 1,x
err 2 "\-\-micro-batches '2,2': 2 appears twice" "$CONFIG" --ranks 1 --micro-batches 2,2
err 2 "unknown schedule 'pipedream'" "$CONFIG" --ranks 1 --schedules 1f1b,pipedream
err 2 "use \-\-micro-batches" "$CONFIG" --ranks 1 --set pipeline.micro_batches=2
err 2 "no layout to run" "$CONFIG" --ranks 1 --data-parallel 2
err 1 "the launcher 'no-such-mpirun' (--launcher) is not found" "$CONFIG" --ranks 1 --launcher no-such-mpirun
mkdir -p "$TMP/nognuplot"
for t in bash env awk jq nproc id; do ln -s "$(command -v $t)" "$TMP/nognuplot/$t"; done
set +e; PATH=$TMP/nognuplot "$SCALE" "$CONFIG" --ranks 1 --launcher "$MPIEXEC" >"$TMP/err" 2>&1; rc=$?; set -e
[ $rc -eq 1 ] && grep -q "gnuplot is not installed" "$TMP/err" || { cat "$TMP/err"; fail "without gnuplot: rc $rc"; }
"$SCALE" --help | grep -q "^usage: pipetrain-scale CONFIG --ranks LIST" || fail "--help"
echo "scale: argument errors and missing tools are named"
