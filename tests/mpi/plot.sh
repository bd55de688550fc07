#!/usr/bin/env bash
# log.metrics writes one CSV row per step, and pipetrain-plot draws it.
. "$(dirname "$0")/lib.sh"
set -e
CONFIG=$1
PLOT="$(dirname "$0")/../../tools/pipetrain-plot"
run 2 train "$CONFIG" --set log.metrics="$TMP/m.csv"
[ $RC -eq 0 ] || { cat "$TMP/out"; fail "training exited with $RC"; }
[ "$(head -1 "$TMP/m.csv")" = "step,loss,lr,grad_norm,samples_per_s,elapsed_s" ] || fail "metrics header: $(head -1 "$TMP/m.csv")"
steps=$(sed -n 's/^steps = //p' "$CONFIG")
[ "$(($(wc -l < "$TMP/m.csv") - 1))" -eq "$steps" ] || fail "expected $steps metric rows"
awk -F, 'NR > 1 && ($2 <= 0 || $4 < 0 || $5 <= 0) { exit 1 }' "$TMP/m.csv" || fail "implausible metric values"
"$PLOT" "$TMP/m.csv" "$TMP/m.png" >/dev/null
[ "$(head -c 4 "$TMP/m.png" | od -An -c | tr -d ' ')" = "211PNG" ] || fail "pipetrain-plot wrote no PNG"
# names from the user's data are literal text: fashion_mlp is no subscript
cp "$TMP/m.csv" "$TMP/fashion_mlp.csv"
PIPETRAIN_PLOT_SCRIPT="$TMP/gp" "$PLOT" "$TMP/fashion_mlp.csv" >/dev/null
[ -f "$TMP/fashion_mlp.png" ] || fail "pipetrain-plot did not write fashion_mlp.png"
grep -q "^set terminal .* noenhanced$" "$TMP/gp" || { cat "$TMP/gp"; fail "the plot's text is enhanced"; }
grep -q "title 'fashion_mlp' noenhanced" "$TMP/gp" || { cat "$TMP/gp"; fail "the title is not literal"; }
# a language model's CSV (tokens_per_s) is drawn as tokens/s
sed '1s/samples_per_s/tokens_per_s/' "$TMP/m.csv" > "$TMP/lm.csv"
PIPETRAIN_PLOT_SCRIPT="$TMP/gp" "$PLOT" "$TMP/lm.csv" >/dev/null || fail "pipetrain-plot refused a tokens_per_s CSV"
grep -q 'ylabel "tokens/s' "$TMP/gp" || { cat "$TMP/gp"; fail "tokens_per_s not drawn as tokens/s"; }
# a FIFO is refused, not read
mkfifo "$TMP/fifo.csv"
! timeout 20 "$PLOT" "$TMP/fifo.csv" 2>"$TMP/err" || fail "pipetrain-plot accepted a FIFO"
grep -q "not a regular file" "$TMP/err" || fail "unclear error for a FIFO: $(cat "$TMP/err")"
echo "garbage" > "$TMP/bad.csv"
! "$PLOT" "$TMP/bad.csv" 2>"$TMP/err" || fail "pipetrain-plot accepted a file that is not a metrics CSV"
grep -q "not a pipetrain metrics CSV" "$TMP/err" || fail "unclear error: $(cat "$TMP/err")"
echo "metrics CSV and plot ok"
