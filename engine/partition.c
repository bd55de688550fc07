/* partition.c — assigning a model's layers to P contiguous stages.
 *
 * PARAMS and COST minimise the largest stage weight over all contiguous
 * splits into P non-empty stages (dynamic programming, O(P·n²)). Ties are
 * broken deterministically: among the splits with that smallest maximum, the
 * one with the smallest sum of squared stage weights (the most even), and
 * among those the lexicographically largest cut vector (earlier stages take
 * more layers, so a weightless layer such as relu stays with the layer before
 * it, as UNIFORM gives earlier stages the extra layers). */
#include "partition.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *partition_kind_name(partition_kind k)
{
    switch (k) {
    case PARTITION_UNIFORM: return "uniform";
    case PARTITION_PARAMS: return "params";
    case PARTITION_COST: return "cost";
    case PARTITION_MEASURED: return "measured";
    case PARTITION_EXPLICIT: return "explicit";
    }
    return "unknown";
}

int partition_stage_of(const int *cuts, int P, int layer)
{
    int s = 0;
    while (s + 1 < P && cuts[s + 1] <= layer) s++;
    return s;
}

static void partition_uniform(int n, int P, int *first)
{
    int base = n / P, extra = n % P;
    first[0] = 0;
    for (int s = 0; s < P; s++) first[s + 1] = first[s] + base + (s < extra);
}

/* Weight of layers [i, e) from prefix sums (exact for integer weights < 2^53). */
static double seg(const double *pre, int i, int e) { return pre[e] - pre[i]; }

/* Optimal split of weights w[0..n) into P non-empty contiguous stages. */
static pt_status partition_balanced(const double *w, int n, int P, int *first)
{
    const size_t rows = (size_t)P + 1, cols = (size_t)n + 1;
    double *pre = malloc(cols * sizeof *pre);
    double *bot = malloc(rows * cols * sizeof *bot); /* bot[k][i]: best max, suffix i, k stages */
    double *sq = malloc(rows * cols * sizeof *sq);   /* sq[k][i]: least Σ weight² under the max */
    int *cut = malloc(rows * cols * sizeof *cut);    /* cut[k][i]: where that stage ends */
    pt_status st = PT_OK;
    if (!pre || !bot || !sq || !cut) {
        st = pt_fail(PT_ERR_NOMEM, "pipeline.partition: out of memory for %d layers, %d stages",
                     n, P);
        goto done;
    }
    pre[0] = 0.0;
    for (int i = 0; i < n; i++) pre[i + 1] = pre[i] + w[i];
#define AT(a, k, i) a[(size_t)(k) * cols + (size_t)(i)]
    /* pass 1: the smallest achievable maximum stage weight */
    for (int i = 0; i < n; i++) AT(bot, 1, i) = seg(pre, i, n);
    for (int k = 2; k <= P; k++) {
        for (int i = 0; i <= n - k; i++) {
            double best = INFINITY;
            for (int e = i + 1; e <= n - k + 1; e++) {
                double a = seg(pre, i, e), b = AT(bot, k - 1, e);
                double m = a > b ? a : b;
                if (m < best) best = m;
            }
            AT(bot, k, i) = best;
        }
    }
    const double limit = AT(bot, P, 0);
    /* pass 2: under that maximum, the smallest sum of squares; ties go to
     * the latest cut (e ascending, `<=` keeps the last) */
    for (int i = 0; i < n; i++) {
        double a = seg(pre, i, n);
        AT(sq, 1, i) = a <= limit ? a * a : INFINITY;
        AT(cut, 1, i) = n;
    }
    for (int k = 2; k <= P; k++) {
        for (int i = 0; i <= n - k; i++) {
            double best = INFINITY;
            int arg = -1;
            for (int e = i + 1; e <= n - k + 1; e++) {
                double a = seg(pre, i, e);
                if (a > limit) break; /* weights are >= 0: longer stages only grow */
                double v = a * a + AT(sq, k - 1, e);
                if (v <= best && isfinite(v)) {
                    best = v;
                    arg = e;
                }
            }
            AT(sq, k, i) = best;
            AT(cut, k, i) = arg;
        }
    }
    first[0] = 0;
    for (int s = 0, i = 0; s < P; s++) {
        int e = AT(cut, P - s, i);
        if (e <= i) { /* cannot happen for finite, non-negative weights */
            st = pt_fail(PT_ERR_INVALID, "pipeline.partition: no split of %d layers into %d "
                         "stages found (non-finite layer weights?)", n, P);
            goto done;
        }
        first[s + 1] = e;
        i = e;
    }
#undef AT
done:
    free(cut);
    free(sq);
    free(bot);
    free(pre);
    return st;
}

/* Parses one non-negative decimal at *p (after blanks); -1 when none. */
static long parse_index(const char **p)
{
    while (**p == ' ' || **p == '\t') (*p)++;
    if (!isdigit((unsigned char)**p)) return -1;
    char *end;
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (errno || v > 1000000000L) return -1;
    *p = end;
    while (**p == ' ' || **p == '\t') (*p)++;
    return v;
}

/* "a-b,c-d,e": inclusive global layer ranges in order covering 0..n−1. */
static pt_status partition_explicit(const char *spec, int n, int P, int *first)
{
    if (!spec || !*spec)
        return pt_fail(PT_ERR_INVALID,
                       "pipeline.partition: empty list of layer ranges; expected %d ranges such "
                       "as 0-3,4-9 covering layers 0..%d",
                       P, n - 1);
    int count = 0;
    long prev_end = -1;
    const char *p = spec;
    for (;;) {
        const char *item = p;
        long a = parse_index(&p), b = a;
        if (a >= 0 && *p == '-') {
            p++;
            b = parse_index(&p);
        }
        if (a < 0 || b < 0 || (*p && *p != ',')) {
            size_t len = strcspn(item, ",");
            return pt_fail(PT_ERR_INVALID,
                           "pipeline.partition = '%.200s': range %d '%.*s' is not a layer "
                           "range (expected 'a-b' or a single layer 'a', e.g. 0-3,4-9)",
                           spec, count + 1, (int)(len > 64 ? 64 : len), item);
        }
        if (b < a)
            return pt_fail(PT_ERR_INVALID,
                           "pipeline.partition = '%.200s': range %d '%ld-%ld' ends before it "
                           "starts",
                           spec, count + 1, a, b);
        if (b >= n)
            return pt_fail(PT_ERR_INVALID,
                           "pipeline.partition = '%.200s': range %d '%ld-%ld' reaches layer %ld "
                           "but the model has layers 0..%d",
                           spec, count + 1, a, b, b, n - 1);
        if (a <= prev_end)
            return pt_fail(PT_ERR_INVALID,
                           "pipeline.partition = '%.200s': range %d '%ld-%ld' overlaps the range "
                           "before it, which ends at layer %ld (ranges must be in order, "
                           "without overlap)",
                           spec, count + 1, a, b, prev_end);
        if (a > prev_end + 1 && count == 0)
            return pt_fail(PT_ERR_INVALID,
                           "pipeline.partition = '%.200s': gap: layers 0..%ld are in no range "
                           "(the first range must start at layer 0)",
                           spec, a - 1);
        if (a > prev_end + 1)
            return pt_fail(PT_ERR_INVALID,
                           "pipeline.partition = '%.200s': gap: layers %ld..%ld are in no range "
                           "(range %d ends at %ld, range %d starts at %ld)",
                           spec, prev_end + 1, a - 1, count, prev_end, count + 1, a);
        if (count < P) first[count] = (int)a;
        count++;
        prev_end = b;
        if (!*p) break;
        p++; /* ',' */
    }
    if (prev_end != n - 1)
        return pt_fail(PT_ERR_INVALID,
                       "pipeline.partition = '%.200s': gap: layers %ld..%d are in no range (the "
                       "ranges must cover all %d layers)",
                       spec, prev_end + 1, n - 1, n);
    if (count != P)
        return pt_fail(PT_ERR_INVALID,
                       "pipeline.partition = '%.200s': %d ranges for P = %d pipeline stages; "
                       "expected one range per stage",
                       spec, count, P);
    first[P] = n;
    return PT_OK;
}

pt_status partition_layers(const model *m, int P, partition_kind kind, const char *spec, int *first)
{
    const int n = m->n_layers;
    if (P < 1) return pt_fail(PT_ERR_INVALID, "pipeline: %d stages: expected at least 1", P);
    if (n < 1) return pt_fail(PT_ERR_INVALID, "pipeline: the model has no layers");
    if (P > n)
        return pt_fail(PT_ERR_INVALID,
                       "pipeline: %d stages but the model has %d layers: every stage needs at "
                       "least one layer (pipeline.partition = %s); run on at most %d ranks or add "
                       "layers",
                       P, n, partition_kind_name(kind), n);
    switch (kind) {
    case PARTITION_UNIFORM:
        partition_uniform(n, P, first);
        return PT_OK;
    case PARTITION_PARAMS:
    case PARTITION_COST: {
        double *w = malloc((size_t)n * sizeof *w);
        if (!w) return pt_fail(PT_ERR_NOMEM, "pipeline.partition: out of memory");
        for (int i = 0; i < n; i++) {
            const layer_desc *d = &m->layers[i];
            const layer_ops *ops = layer_get(d->kind);
            if (!ops) {
                free(w);
                return pt_fail(PT_ERR_INVALID, "pipeline.partition: layer %d has unknown kind %d",
                               i, (int)d->kind);
            }
            /* cost: forward + backward, the backward counted as twice the forward */
            w[i] = kind == PARTITION_PARAMS ? (double)layer_param_floats(d) : 3.0 * ops->flops(d);
            if (!(w[i] >= 0.0 && isfinite(w[i]))) {
                double bad = w[i];
                free(w);
                return pt_fail(PT_ERR_INVALID,
                               "pipeline.partition = %s: layer %d (%s) has weight %g, expected a "
                               "finite value >= 0",
                               partition_kind_name(kind), i, ops->kind_name, bad);
            }
        }
        pt_status st = partition_balanced(w, n, P, first);
        free(w);
        return st;
    }
    case PARTITION_EXPLICIT:
        return partition_explicit(spec, n, P, first);
    case PARTITION_MEASURED:
        return pt_fail(PT_ERR_INVALID, "pipeline.partition = measured needs the layers' measured times "
                       "(pipeline.profile)");
    }
    return pt_fail(PT_ERR_INVALID, "pipeline.partition: unknown kind %d", (int)kind);
}

pt_status partition_layers_weighted(const model *m, int P, const double *weights, int *first)
{
    const int n = m->n_layers;
    if (P < 1 || P > n)
        return pt_fail(PT_ERR_INVALID, "pipeline: %d stages but the model has %d layers: every stage needs at least "
                       "one layer (pipeline.partition = measured); run on at most %d ranks", P, n, n);
    for (int i = 0; i < n; i++)
        if (!(weights[i] >= 0.0 && isfinite(weights[i])))
            return pt_fail(PT_ERR_INVALID, "pipeline.partition = measured: layer %d has weight %g, expected a finite "
                           "value >= 0", i, weights[i]);
    return partition_balanced(weights, n, P, first);
}
