/* plan.c — `pipetrain plan`. */
#define _POSIX_C_SOURCE 200809L
#include "plan.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "layout.h"
#include "reduce.h"
#include "report.h"
#include "simulate.h"
#include "stage.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Per-layer costs for one micro-batch size and BLAS thread count. */
typedef struct {
    int rows, threads;
    double *fwd, *bwd, *bi, *bw, *optim; /* [n_layers] seconds */
    double *out_bytes, *stash, *params;  /* [n_layers]: output per micro-batch, stash per micro-batch, floats */
    double data;                         /* reading one micro-batch */
} layer_costs;

static double median3(double a, double b, double c)
{
    return a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
}

/* Measures every layer of L's model alone (a stage of one layer), the input
 * of each being the output of the one before, as in a forward pass. */
static pt_status profile(layout *L, const config *c, int rows, int threads, layer_costs *p)
{
    int n = L->m.n_layers;
    p->rows = rows;
    p->threads = threads;
    double *all = calloc((size_t)n * 8, sizeof *all);
    if (!all) return pt_fail(PT_ERR_NOMEM, "plan: out of memory");
    p->fwd = all, p->bwd = all + n, p->bi = all + 2 * n, p->bw = all + 3 * n, p->optim = all + 4 * n;
    p->out_bytes = all + 5 * n, p->stash = all + 6 * n, p->params = all + 7 * n;
    openblas_set_num_threads(threads);
    optim_config oc = config_optim(c);
    float *x = NULL, *g = NULL;
    size_t cap = 0;
    pt_status st = PT_OK;
    stage s;
    double t[3];
    for (int l = 0; !st && l < n; l++) {
        if ((st = stage_init(&s, &L->m, l, l + 1, rows, 1, c->seed))) break;
        if ((st = stage_split_backward_init(&s))) {
            stage_free(&s);
            break;
        }
        size_t need = (size_t)rows * (s.in_dim > s.out_dim ? s.in_dim : s.out_dim);
        if (need > cap) {
            float *nx = realloc(x, need * sizeof *x), *ng = nx ? realloc(g, need * sizeof *g) : NULL;
            if (nx) x = nx;
            if (ng) g = ng;
            if (!nx || !ng) {
                stage_free(&s);
                st = pt_fail(PT_ERR_NOMEM, "plan: out of memory");
                break;
            }
            cap = need;
        }
        if (l == 0) {
            for (int i = 0; i < 3; i++) {
                double t0 = now_s();
                dataset_test_batch(&L->data, 0, rows, stage_input(&s, 0), NULL); /* any rows: the test reader takes a count */
                t[i] = now_s() - t0;
            }
            p->data = median3(t[0], t[1], t[2]);
        } else {
            memcpy(stage_input(&s, 0), x, (size_t)rows * s.in_dim * sizeof *x);
        }
        float *din = l > 0 ? g : NULL; /* the model's first layer never computes its input gradient */
#define TIME3(expr, dst)                                                                                           \
    do {                                                                                                           \
        for (int i_ = 0; i_ < 3; i_++) {                                                                           \
            double t0_ = now_s();                                                                                  \
            expr;                                                                                                  \
            t[i_] = now_s() - t0_;                                                                                 \
        }                                                                                                          \
        dst = median3(t[0], t[1], t[2]);                                                                           \
    } while (0)
        TIME3(stage_forward(&s, 0, x, c->seed, 0, 0, 1), p->fwd[l]);
        for (size_t i = 0; i < (size_t)rows * s.out_dim; i++) g[i] = 1e-3f;
        float *dout = malloc((size_t)rows * s.out_dim * sizeof *dout);
        if (!dout) {
            stage_free(&s);
            st = pt_fail(PT_ERR_NOMEM, "plan: out of memory");
            break;
        }
        memcpy(dout, g, (size_t)rows * s.out_dim * sizeof *dout);
        TIME3(stage_backward(&s, 0, dout, din, c->seed, 0, 0), p->bwd[l]);
        TIME3((void)stage_backward_input(&s, 0, dout, din, c->seed, 0, 0), p->bi[l]);
        TIME3((void)stage_backward_weight(&s, 0, dout, c->seed, 0, 0), p->bw[l]);
        TIME3(stage_optim_step(&s, &oc, 0.0f, 1), p->optim[l]);
#undef TIME3
        free(dout);
        p->out_bytes[l] = (double)rows * s.out_dim * sizeof(float);
        p->stash[l] = (double)stage_stash_bytes(&s);
        p->params[l] = (double)s.n_params;
        stage_free(&s);
    }
    free(x);
    free(g);
    return st;
}

typedef struct {
    int ranks, threads, P, D, M, chunks;
    sched_kind kind;
    double step, throughput, bubble, memory; /* s, samples or tokens/s, worst rank's share, bytes per rank */
} candidate;

static int by_throughput(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    return (x->throughput < y->throughput) - (x->throughput > y->throughput);
}

/* The virtual stages' costs of L from per-layer costs p. */
static void stage_costs(const layout *L, const config *c, const layer_costs *p, sim_stage_cost *vs)
{
    int V = L->P * L->chunks, split = sched_kind_splits_backward(c->schedule);
    for (int v = 0; v < V; v++) {
        sim_stage_cost *o = &vs[v];
        memset(o, 0, sizeof *o);
        for (int l = L->cuts[v]; l < L->cuts[v + 1]; l++) {
            o->fwd += p->fwd[l];
            o->bi += p->bi[l];
            o->bw += p->bw[l];
            o->bwd += split ? p->bi[l] + p->bw[l] : p->bwd[l];
            o->optim += p->optim[l];
            o->stash_bytes += p->stash[l];
            o->grad_bytes += p->params[l] * sizeof(float);
        }
        o->act_bytes = p->out_bytes[L->cuts[v + 1] - 1];
        o->data = v == 0 ? p->data : 0;
        o->buckets = L->D > 1 ? reduce_count_buckets(&L->m, L->cuts[v], L->cuts[v + 1], c->bucket_mb) : 0;
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pipetrain plan CONFIG --ranks LIST [--cores C] [--memory-per-rank SIZE] [--network LAT,BW[,ARBW]]\n"
            "                      [--micro-batches LIST] [--set section.key=value ...] [--all]\n"
            "\n"
            "Chooses a layout for CONFIG before it runs: measures every layer on this machine (forward,\n"
            "backward, its input- and weight-gradient halves, the optimizer update; per micro-batch size\n"
            "and BLAS thread count), then simulates every layout that fits and prints them ranked by\n"
            "predicted throughput, with the command line of the best. A layout is ranks N (from --ranks)\n"
            "× BLAS threads t with N·t ≤ C cores, P stages × D replicas (P·D = N), M micro-batches\n"
            "(dividing train.batch_size, a multiple of D) and a schedule (gpipe, 1f1b, zbh1, interleaved\n"
            "with 2 chunks). No MPI is needed.\n"
            "\n"
            "  --ranks LIST          rank counts to consider, e.g. 2 or 1,2 or 1024 (required)\n"
            "  --cores C             cores available (default: the largest rank count)\n"
            "  --memory-per-rank S   leave out layouts whose parameters, optimizer state and peak\n"
            "                        activations exceed S bytes per rank (suffix K, M, G)\n"
            "  --network LAT,BW[,ARBW]  transfer latency (s) and bandwidth (bytes/s), and the gradient\n"
            "                        all-reduce's bandwidth; default 5e-6,5e9,1.7e9 (one machine)\n"
            "  --micro-batches LIST  the values of M to try (default 1, 2, 4, ... 64 that fit)\n"
            "  --set KEY=VALUE       override a config key (repeatable)\n"
            "  --all                 print every layout, not the best 15\n");
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 1 << 20) return -1;
        out[n++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

int plan_main(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    const char *path = argc > 2 ? argv[2] : NULL;
    int ranks[64], n_ranks = 0, ms[64], n_ms = 0, cores = 0, all = 0;
    double memory = 0;
    sim_network net = SIMULATE_NETWORK;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0;
    pt_status st = sets ? PT_OK : pt_fail(PT_ERR_NOMEM, "out of memory");
    if (!st && (!path || path[0] == '-')) st = pt_fail(PT_ERR_INVALID, "plan: expected CONFIG after 'plan'");
    for (int i = 3; !st && i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--all")) {
            all = 1;
            continue;
        }
        if (!strncmp(a, "--set=", 6)) {
            sets[n_sets++] = a + 6;
            continue;
        }
        if (!v) {
            st = pt_fail(PT_ERR_INVALID, "plan: %s needs a value (see pipetrain plan --help)", a);
            break;
        }
        if (!strcmp(a, "--set"))
            sets[n_sets++] = v;
        else if (!strcmp(a, "--ranks")) {
            if ((n_ranks = parse_list(v, ranks, 64)) < 1)
                st = pt_fail(PT_ERR_INVALID, "plan: --ranks '%s': expected rank counts such as 2 or 1,2,4", v);
        } else if (!strcmp(a, "--micro-batches")) {
            if ((n_ms = parse_list(v, ms, 64)) < 1)
                st = pt_fail(PT_ERR_INVALID, "plan: --micro-batches '%s': expected counts such as 4,8,16", v);
        } else if (!strcmp(a, "--cores")) {
            cores = (int)strtol(v, &end, 10);
            if (*end || cores < 1) st = pt_fail(PT_ERR_INVALID, "plan: --cores '%s': expected a whole number >= 1", v);
        } else if (!strcmp(a, "--memory-per-rank")) {
            memory = strtod(v, &end);
            double unit = *end == 'K' || *end == 'k' ? 1024.0 : *end == 'M' ? 1048576.0 : *end == 'G' ? 1073741824.0 : 1;
            if (unit > 1) end++;
            memory *= unit;
            if (*end || !(memory > 0))
                st = pt_fail(PT_ERR_INVALID, "plan: --memory-per-rank '%s': expected bytes, e.g. 512M or 4G", v);
        } else if (!strcmp(a, "--network")) {
            st = simulate_parse_network(v, "plan", &net);
        } else {
            st = pt_fail(PT_ERR_INVALID, "plan: unknown option '%s' (see pipetrain plan --help)", a);
        }
        i++;
    }
    if (!st && n_ranks == 0) st = pt_fail(PT_ERR_INVALID, "plan: --ranks LIST is required (e.g. --ranks 2)");
    config c;
    if (!st) st = config_load(&c, path, sets, n_sets);
    free(sets);
    layout L;
    memset(&L, 0, sizeof L);
    if (!st) st = layout_open(&L, &c);
    if (st) {
        fprintf(stderr, "pipetrain: %s\n", pt_last_error());
        layout_free(&L);
        return 2;
    }
    if (!cores)
        for (int i = 0; i < n_ranks; i++) cores = ranks[i] > cores ? ranks[i] : cores;
    if (n_ms == 0)
        for (int m = 1; m <= 64; m *= 2) ms[n_ms++] = m;
    double t_begin = now_s();
    /* the per-layer profiles, one per (micro-batch rows, threads), made when first needed */
    layer_costs prof[64 * 8];
    int n_prof = 0;
    candidate *cand = NULL;
    int n_cand = 0, cap_cand = 0, tried = 0;
    static const sched_kind kinds[] = {SCHED_1F1B, SCHED_GPIPE, SCHED_ZBH1, SCHED_INTERLEAVED};
    int n_layers = L.m.n_layers;
    double per_sample;
    const char *unit = report_rate_unit(&L.data, &per_sample);
    for (int ri = 0; !st && ri < n_ranks; ri++) {
        int N = ranks[ri];
        for (int t = 1; !st && N * t <= cores; t++)
            for (int D = 1; !st && D <= N; D++) {
                if (N % D) continue;
                int P = N / D;
                if (P > n_layers) continue;
                for (int mi = 0; !st && mi < n_ms; mi++) {
                    int M = ms[mi];
                    if (c.batch_size % M || M % D || M > c.batch_size) continue;
                    int rows = c.batch_size / M;
                    for (size_t ki = 0; !st && ki < sizeof kinds / sizeof kinds[0]; ki++) {
                        sched_kind kind = kinds[ki];
                        int chunks = kind == SCHED_INTERLEAVED ? 2 : 1;
                        if (P == 1 && kind != SCHED_1F1B) continue; /* one stage: every schedule is the same */
                        if (kind == SCHED_INTERLEAVED && ((M / D) % P || chunks * P > n_layers)) continue;
                        config c2 = c;
                        c2.schedule = kind;
                        c2.chunks = chunks;
                        c2.micro_batches = M;
                        c2.data_parallel = D;
                        c2.blas_threads = t;
                        if (c2.reduction == REDUCTION_INVARIANT && D > 1 && ((M / D) & (M / D - 1))) continue;
                        tried++;
                        if (layout_grid(&L, &c2, P, D, 1 << 20)) {
                            pt_clear_error();
                            continue;
                        }
                        layer_costs *p = NULL;
                        for (int k = 0; k < n_prof && !p; k++)
                            if (prof[k].rows == rows && prof[k].threads == t) p = &prof[k];
                        if (!p && n_prof < (int)(sizeof prof / sizeof prof[0])) {
                            p = &prof[n_prof];
                            if ((st = profile(&L, &c2, rows, t, p))) {
                                free(p->fwd);
                                break;
                            }
                            n_prof++;
                        }
                        if (!p) continue;
                        int V = P * chunks;
                        sim_stage_cost *vs = calloc((size_t)V, sizeof *vs);
                        double *busy = calloc((size_t)P, sizeof *busy), step = 0, makespan = 0;
                        if (!vs || !busy) {
                            free(vs);
                            free(busy);
                            st = pt_fail(PT_ERR_NOMEM, "plan: out of memory");
                            break;
                        }
                        stage_costs(&L, &c2, p, vs);
                        if (simulate_step(&L, vs, net, &step, &makespan, busy, NULL)) {
                            pt_clear_error();
                            free(vs);
                            free(busy);
                            continue;
                        }
                        double worst = 0, mem = 0;
                        for (int r = 0; r < P; r++) {
                            if (makespan > 0 && 1 - busy[r] / makespan > worst) worst = 1 - busy[r] / makespan;
                            double m = 0;
                            for (int k = 0; k < chunks; k++) {
                                const sim_stage_cost *o = &vs[k * P + r];
                                m += o->stash_bytes * L.train_sc.slots[r * chunks + k] + 4.0 * o->grad_bytes;
                            }
                            mem = m > mem ? m : mem;
                        }
                        free(vs);
                        free(busy);
                        if (memory > 0 && mem > memory) continue;
                        if (n_cand == cap_cand) {
                            int nc = cap_cand ? 2 * cap_cand : 64;
                            candidate *q = realloc(cand, (size_t)nc * sizeof *q);
                            if (!q) {
                                st = pt_fail(PT_ERR_NOMEM, "plan: out of memory");
                                break;
                            }
                            cand = q;
                            cap_cand = nc;
                        }
                        cand[n_cand++] = (candidate){N, t, P, D, M, chunks, kind, step,
                                                     step > 0 ? c.batch_size * per_sample / step : 0, worst, mem};
                    }
                }
            }
    }
    int code = 1;
    if (!st && n_cand == 0)
        st = pt_fail(PT_ERR_INVALID, "plan: none of the %d layouts tried fits (ranks, layers, micro-batches%s); try "
                     "other --ranks or --micro-batches%s", tried, memory > 0 ? ", memory" : "",
                     memory > 0 ? ", or more --memory-per-rank" : "");
    if (!st) {
        qsort(cand, (size_t)n_cand, sizeof *cand, by_throughput);
        char list[256] = "";
        for (int i = 0, pos = 0; i < n_ranks && pos < (int)sizeof list - 12; i++)
            pos += snprintf(list + pos, sizeof list - (size_t)pos, "%s%d", i ? "," : "", ranks[i]);
        printf("plan: %d layouts that fit, of %d tried, for %s on %s rank%s and %d core%s (%d profile%s of every "
               "layer measured; %.1f s)\n", n_cand, tried, path, list, n_ranks == 1 && ranks[0] == 1 ? "" : "s",
               cores, cores == 1 ? "" : "s", n_prof, n_prof == 1 ? "" : "s", now_s() - t_begin);
        printf("  %4s %5s %5s %4s %5s %-11s %7s %14s %10s %7s %11s\n", "rank", "ranks", "stages", "repl", "M",
               "schedule", "threads", unit, "step ms", "bubble", "memory MiB");
        int shown = all ? n_cand : (n_cand < 15 ? n_cand : 15);
        for (int i = 0; i < shown; i++) {
            const candidate *x = &cand[i];
            char sched[32];
            snprintf(sched, sizeof sched, "%s%s", sched_kind_name(x->kind), x->chunks > 1 ? "×2" : "");
            printf("  %4d %5d %6d %4d %5d %-11s %7d %12.0f/s %10.2f %6.1f%% %11.1f\n", i + 1, x->ranks, x->P, x->D,
                   x->M, sched, x->threads, x->throughput, x->step * 1e3, 100 * x->bubble, x->memory / 1048576.0);
        }
        const candidate *b = &cand[0];
        printf("best: mpirun -np %d%s build/pipetrain train %s --set pipeline.data_parallel=%d "
               "--set pipeline.micro_batches=%d --set pipeline.schedule=%s%s --set train.blas_threads=%d\n",
               b->ranks, b->threads > 1 ? " --bind-to none" : " --bind-to core", path, b->D, b->M,
               sched_kind_name(b->kind), b->chunks > 1 ? " --set pipeline.chunks=2" : "", b->threads);
        code = 0;
    } else {
        fprintf(stderr, "pipetrain: %s\n", pt_last_error());
    }
    for (int k = 0; k < n_prof; k++) free(prof[k].fwd);
    free(cand);
    layout_free(&L);
    return code;
}
