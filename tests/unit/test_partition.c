/* test_partition.c — splitting a model's layers into P contiguous stages.
 *
 * PARAMS and COST are checked against a brute force over every split. All
 * layer weights here are integers below 2^24 and stage sums of squares stay
 * below 2^53, so the double arithmetic of both sides is exact and the
 * comparison is exact too (no tolerance). */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "partition.h"
#include "pt_status.h"

#define MAXP 32
#define GUARD (-12345)

static model parse_model(const char *spec, int input)
{
    model m;
    pt_status st = model_parse(&m, spec, input);
    cr_assert_eq(st, PT_OK, "model_parse('%s'): %s", spec, pt_last_error());
    return m;
}

/* first[0..P] is a valid split of n layers into P non-empty stages, and the
 * guard entry after it is untouched. */
static void expect_valid(const int *first, int n, int P)
{
    cr_assert_eq(first[0], 0);
    cr_assert_eq(first[P], n);
    for (int s = 0; s < P; s++)
        cr_assert_lt(first[s], first[s + 1], "stage %d of %d is empty", s, P);
    cr_assert_eq(first[P + 1], GUARD, "wrote past first[P]");
}

static void expect_cuts(const int *first, const int *want, int P, const char *what)
{
    for (int s = 0; s <= P; s++)
        cr_expect_eq(first[s], want[s], "%s: first[%d] = %d, expected %d", what, s, first[s],
                     want[s]);
}

static void fill_guard(int *first) { for (int i = 0; i < MAXP + 2; i++) first[i] = GUARD; }

/* ---- uniform ------------------------------------------------------------ */

Test(partition, uniform_counts_differ_by_at_most_one)
{
    model m = parse_model("relu", 4);
    for (int n = 1; n <= 20; n++) {
        /* a model of n relus */
        char spec[256] = "relu";
        for (int i = 1; i < n; i++) strcat(spec, ", relu");
        model_free(&m);
        m = parse_model(spec, 4);
        cr_assert_eq(m.n_layers, n);
        for (int P = 1; P <= n; P++) {
            int first[MAXP + 2];
            fill_guard(first);
            cr_assert_eq(partition_layers(&m, P, PARTITION_UNIFORM, NULL, first), PT_OK, "%s",
                         pt_last_error());
            expect_valid(first, n, P);
            for (int s = 0; s < P; s++) {
                int want = n / P + (s < n % P); /* earlier stages take the extra layers */
                cr_expect_eq(first[s + 1] - first[s], want, "n=%d P=%d stage %d", n, P, s);
            }
        }
    }
    model_free(&m);

    m = parse_model("relu, relu, relu, relu, relu, relu, relu, relu, relu, relu", 4);
    int first[MAXP + 2];
    fill_guard(first);
    cr_assert_eq(partition_layers(&m, 3, PARTITION_UNIFORM, NULL, first), PT_OK);
    expect_cuts(first, (int[]){0, 4, 7, 10}, 3, "10 layers, 3 stages");
    model_free(&m);
}

Test(partition, more_stages_than_layers_is_refused)
{
    model m = parse_model("linear 8, relu, linear 4, relu", 16);
    int first[MAXP + 2];
    partition_kind kinds[] = {PARTITION_UNIFORM, PARTITION_PARAMS, PARTITION_COST,
                              PARTITION_EXPLICIT};
    for (int k = 0; k < 4; k++) {
        fill_guard(first);
        pt_status st = partition_layers(&m, 5, kinds[k], "0,1,2,3,3", first);
        cr_expect_eq(st, PT_ERR_INVALID);
        cr_expect(strstr(pt_last_error(), "pipeline: 5 stages but the model has 4 layers") != NULL,
                  "%s", pt_last_error());
        cr_expect(strstr(pt_last_error(), partition_kind_name(kinds[k])) != NULL, "%s",
                  pt_last_error());
    }
    cr_expect_eq(partition_layers(&m, 0, PARTITION_UNIFORM, NULL, first), PT_ERR_INVALID);
    cr_expect_eq(partition_layers(&m, 2, (partition_kind)9, NULL, first), PT_ERR_INVALID);
    cr_expect(strstr(pt_last_error(), "pipeline.partition") != NULL, "%s", pt_last_error());
    model_free(&m);
}

Test(partition, kind_names)
{
    cr_expect_str_eq(partition_kind_name(PARTITION_UNIFORM), "uniform");
    cr_expect_str_eq(partition_kind_name(PARTITION_PARAMS), "params");
    cr_expect_str_eq(partition_kind_name(PARTITION_COST), "cost");
    cr_expect_str_eq(partition_kind_name(PARTITION_EXPLICIT), "explicit");
}

/* ---- balanced: brute force ---------------------------------------------- */

typedef struct {
    int n, P;
    const double *w;
    int cur[MAXP + 1], best[MAXP + 1];
    double best_max, best_sq;
    long splits;
} brute;

/* Is a lexicographically larger than b (over first[1..P-1])? */
static int lex_larger(const int *a, const int *b, int P)
{
    for (int s = 1; s < P; s++)
        if (a[s] != b[s]) return a[s] > b[s];
    return 0;
}

/* Enumerates every split; keeps the smallest maximum, then the smallest sum
 * of squares, then the lexicographically largest cuts: partition.h's rule. */
static void brute_rec(brute *b, int s)
{
    if (s == b->P) {
        double mx = 0.0, sq = 0.0;
        for (int t = 0; t < b->P; t++) {
            double sum = 0.0;
            for (int i = b->cur[t]; i < b->cur[t + 1]; i++) sum += b->w[i];
            if (sum > mx) mx = sum;
            sq += sum * sum;
        }
        b->splits++;
        int better = mx < b->best_max ||
                     (mx == b->best_max &&
                      (sq < b->best_sq || (sq == b->best_sq && lex_larger(b->cur, b->best, b->P))));
        if (better) {
            b->best_max = mx;
            b->best_sq = sq;
            memcpy(b->best, b->cur, sizeof b->cur);
        }
        return;
    }
    /* stage s-1 ends at cur[s]; leave at least one layer per later stage */
    for (int e = b->cur[s - 1] + 1; e <= b->n - (b->P - s); e++) {
        b->cur[s] = e;
        brute_rec(b, s + 1);
    }
}

static void brute_force(const double *w, int n, int P, int *best, double *best_max)
{
    brute b = {.n = n, .P = P, .w = w, .best_max = 1e300, .best_sq = 1e300};
    b.cur[0] = 0;
    b.cur[P] = n;
    brute_rec(&b, 1);
    cr_assert_gt(b.splits, 0);
    memcpy(best, b.best, (size_t)(P + 1) * sizeof *best);
    *best_max = b.best_max;
}

static void layer_weights(const model *m, partition_kind kind, double *w)
{
    for (int i = 0; i < m->n_layers; i++) {
        const layer_desc *d = &m->layers[i];
        w[i] = kind == PARTITION_PARAMS ? (double)layer_param_floats(d)
                                        : 3.0 * layer_get(d->kind)->flops(d);
    }
}

static double stage_max(const double *w, const int *first, int P)
{
    double mx = 0.0;
    for (int s = 0; s < P; s++) {
        double sum = 0.0;
        for (int i = first[s]; i < first[s + 1]; i++) sum += w[i];
        if (sum > mx) mx = sum;
    }
    return mx;
}

static void check_against_brute_force(const model *m, partition_kind kind, const char *spec)
{
    int n = m->n_layers;
    double w[64];
    cr_assert_leq(n, 64);
    layer_weights(m, kind, w);
    for (int P = 1; P <= n && P <= MAXP; P++) {
        int first[MAXP + 2], again[MAXP + 2], want[MAXP + 1];
        fill_guard(first);
        fill_guard(again);
        cr_assert_eq(partition_layers(m, P, kind, NULL, first), PT_OK, "%s", pt_last_error());
        expect_valid(first, n, P);
        double want_max;
        brute_force(w, n, P, want, &want_max);
        double got_max = stage_max(w, first, P);
        cr_expect_eq(got_max, want_max, "%s '%s' P=%d: largest stage %.17g, optimum %.17g",
                     partition_kind_name(kind), spec, P, got_max, want_max);
        char what[512];
        snprintf(what, sizeof what, "%s '%s' P=%d", partition_kind_name(kind), spec, P);
        expect_cuts(first, want, P, what);
        /* deterministic */
        cr_assert_eq(partition_layers(m, P, kind, NULL, again), PT_OK);
        cr_expect(memcmp(first, again, sizeof first) == 0, "%s: second call differs", what);
    }
}

Test(partition, hand_worked_example)
{
    /* params: 30300, 0, 15050, 0, 35700, 0, 7010
     * cost (3 × forward FLOPs): 180900, 900, 90150, 150, 212100, 2100, 42030 */
    model m = parse_model("linear 300, relu, linear 50, relu, linear 700, relu, linear 10", 100);
    int first[MAXP + 2];
    double w[7];
    layer_weights(&m, PARTITION_PARAMS, w);
    const double wp[7] = {30300, 0, 15050, 0, 35700, 0, 7010};
    for (int i = 0; i < 7; i++) cr_assert_eq(w[i], wp[i], "params of layer %d", i);
    layer_weights(&m, PARTITION_COST, w);
    const double wc[7] = {180900, 900, 90150, 150, 212100, 2100, 42030};
    for (int i = 0; i < 7; i++) cr_assert_eq(w[i], wc[i], "cost of layer %d", i);

    /* params, 2 stages: 45350 | 42710; the relu stays with its linear */
    fill_guard(first);
    cr_assert_eq(partition_layers(&m, 2, PARTITION_PARAMS, NULL, first), PT_OK);
    expect_cuts(first, (int[]){0, 4, 7}, 2, "params P=2");
    /* params, 3 stages: 30300 | 15050 | 42710 */
    cr_assert_eq(partition_layers(&m, 3, PARTITION_PARAMS, NULL, first), PT_OK);
    expect_cuts(first, (int[]){0, 2, 4, 7}, 3, "params P=3");
    /* cost, 2 stages: 271950 | 256380 (the split differs from params) */
    cr_assert_eq(partition_layers(&m, 2, PARTITION_COST, NULL, first), PT_OK);
    expect_cuts(first, (int[]){0, 3, 7}, 2, "cost P=2");
    /* cost, 3 stages: the largest is 256230 (layers 4-6) either way; 180900 |
     * 91200 is more even than 181800 | 90300 */
    cr_assert_eq(partition_layers(&m, 3, PARTITION_COST, NULL, first), PT_OK);
    expect_cuts(first, (int[]){0, 1, 4, 7}, 3, "cost P=3");
    /* one stage per layer */
    cr_assert_eq(partition_layers(&m, 7, PARTITION_PARAMS, NULL, first), PT_OK);
    expect_cuts(first, (int[]){0, 1, 2, 3, 4, 5, 6, 7}, 7, "params P=7");
    model_free(&m);
}

static unsigned rng_next(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

Test(partition, balanced_splits_match_brute_force_on_random_models)
{
    unsigned seed = 12345;
    for (int trial = 0; trial < 60; trial++) {
        int n = 1 + (int)(rng_next(&seed) % 10);
        int input = 1 + (int)(rng_next(&seed) % 300);
        char spec[512] = "";
        for (int i = 0; i < n; i++) {
            char item[32];
            switch (rng_next(&seed) % 6) {
            case 0:
            case 1: snprintf(item, sizeof item, "linear %u", 1 + rng_next(&seed) % 400); break;
            case 2: snprintf(item, sizeof item, "relu"); break;
            case 3: snprintf(item, sizeof item, "gelu"); break;
            case 4: snprintf(item, sizeof item, "layernorm"); break;
            default: snprintf(item, sizeof item, "dropout 0.1"); break;
            }
            if (i) strcat(spec, ", ");
            strcat(spec, item);
        }
        model m = parse_model(spec, input);
        check_against_brute_force(&m, PARTITION_PARAMS, spec);
        check_against_brute_force(&m, PARTITION_COST, spec);
        model_free(&m);
    }
}

Test(partition, balanced_split_of_a_deeper_model)
{
    /* 20 layers into up to 6 stages: C(19,5) = 11628 splits for brute force */
    const char *spec = "linear 64, relu, linear 256, gelu, layernorm, linear 32, relu, "
                       "linear 128, relu, dropout 0.5, linear 128, relu, linear 8, relu, "
                       "linear 300, relu, linear 16, layernorm, linear 200, linear 10";
    model m = parse_model(spec, 50);
    cr_assert_eq(m.n_layers, 20);
    double w[20];
    for (int kind = PARTITION_PARAMS; kind <= PARTITION_COST; kind++) {
        layer_weights(&m, (partition_kind)kind, w);
        for (int P = 2; P <= 6; P++) {
            int first[MAXP + 2], want[MAXP + 1];
            double want_max;
            fill_guard(first);
            cr_assert_eq(partition_layers(&m, P, (partition_kind)kind, NULL, first), PT_OK);
            expect_valid(first, 20, P);
            brute_force(w, 20, P, want, &want_max);
            cr_expect_eq(stage_max(w, first, P), want_max, "kind %d P=%d", kind, P);
            expect_cuts(first, want, P, "deeper model");
        }
    }
    model_free(&m);
}

Test(partition, weightless_layers_split_into_non_empty_stages)
{
    /* every PARAMS weight is 0: any split is optimal, and none may be empty */
    model m = parse_model("relu, gelu, relu, dropout 0.1, relu", 6);
    int first[MAXP + 2];
    for (int P = 1; P <= 5; P++) {
        fill_guard(first);
        cr_assert_eq(partition_layers(&m, P, PARTITION_PARAMS, NULL, first), PT_OK);
        expect_valid(first, 5, P);
    }
    model_free(&m);
}

/* ---- explicit ----------------------------------------------------------- */

Test(partition, explicit_ranges)
{
    model m = parse_model("linear 300, relu, linear 50, relu, linear 700, relu, linear 10", 100);
    struct {
        const char *spec;
        int P;
        int want[8];
    } ok[] = {
        {"0-3,4-6", 2, {0, 4, 7}},
        {" 0 - 1 , 2-3 ,4-6 ", 3, {0, 2, 4, 7}},
        {"0-4,5,6", 3, {0, 5, 6, 7}},
        {"0-6", 1, {0, 7}},
        {"0,1,2,3,4,5,6", 7, {0, 1, 2, 3, 4, 5, 6, 7}},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int first[MAXP + 2];
        fill_guard(first);
        cr_assert_eq(partition_layers(&m, ok[i].P, PARTITION_EXPLICIT, ok[i].spec, first), PT_OK,
                     "'%s': %s", ok[i].spec, pt_last_error());
        expect_valid(first, 7, ok[i].P);
        expect_cuts(first, ok[i].want, ok[i].P, ok[i].spec);
    }
    model_free(&m);
}

Test(partition, explicit_errors_name_the_problem)
{
    model m = parse_model("linear 300, relu, linear 50, relu, linear 700, relu, linear 10", 100);
    struct {
        const char *spec;
        int P;
        const char *needle1, *needle2;
    } bad[] = {
        {"0-2,4-6", 2, "gap", "layers 3..3"},
        {"1-6", 1, "gap", "layers 0..0"},
        {"0-5", 1, "gap", "layers 6..6"},
        {"0-3,3-6", 2, "overlap", "ends at layer 3"},
        {"0-3,2-6", 2, "overlap", "range 2 '2-6'"},
        {"0-3,4-9", 2, "reaches layer 9", "0..6"},
        {"0-3,4-6", 3, "2 ranges", "P = 3"},
        {"0-1,2-3,4-6", 2, "3 ranges", "P = 2"},
        {"0-3,x", 2, "'x'", "not a layer range"},
        {"0-3;4-6", 2, "'0-3;4-6'", "not a layer range"},
        {"0-3 4-6", 2, "not a layer range", "range 1"},
        {"0-3,4-6,", 2, "range 3", "not a layer range"},
        {"0-3,,4-6", 2, "range 2", "not a layer range"},
        {"0--3,4-6", 2, "not a layer range", "range 1"},
        {"-1-3,4-6", 2, "not a layer range", "range 1"},
        {"3-0,4-6", 2, "ends before it starts", "3-0"},
        {"", 2, "empty", "0..6"},
        {NULL, 2, "empty", "2 ranges"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int first[MAXP + 2];
        fill_guard(first);
        const char *s = bad[i].spec ? bad[i].spec : "(null)";
        pt_status st = partition_layers(&m, bad[i].P, PARTITION_EXPLICIT, bad[i].spec, first);
        cr_expect_eq(st, PT_ERR_INVALID, "'%s' accepted", s);
        const char *msg = pt_last_error();
        cr_expect(strstr(msg, "pipeline.partition") != NULL, "'%s': %s", s, msg);
        cr_expect(strstr(msg, bad[i].needle1) != NULL, "'%s': '%s' lacks '%s'", s, msg,
                  bad[i].needle1);
        cr_expect(strstr(msg, bad[i].needle2) != NULL, "'%s': '%s' lacks '%s'", s, msg,
                  bad[i].needle2);
        cr_expect_eq(first[bad[i].P + 1], GUARD, "'%s': wrote past first[P]", s);
    }
    model_free(&m);
}
