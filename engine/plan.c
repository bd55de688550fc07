/* plan.c — `pipetrain plan`. */
#define _POSIX_C_SOURCE 200809L
#include "plan.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "layout.h"
#include "profile.h"
#include "reduce.h"
#include "report.h"
#include "simulate.h"
#include "stage.h"

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

/* What plan_layouts tries: rank counts × BLAS threads within the cores (every
 * t with N·t ≤ cores, or with all_threads = 0 only t = cores / N), P × D
 * grids, micro-batch counts, schedules; leaving out layouts above `memory`
 * bytes per rank (0: no limit). */
typedef struct {
    const int *ranks;
    int n_ranks, cores;
    const int *ms;
    int n_ms, all_threads;
    double memory;
    sim_network net;
} plan_space;

typedef struct {
    candidate *cand; /* unsorted */
    int n_cand, cap, tried;
    layer_costs *prof; /* one per (micro-batch rows, threads), made when first needed */
    int n_prof, cap_prof;
} plan_result;

static void plan_result_free(plan_result *r)
{
    for (int k = 0; k < r->n_prof; k++) layer_costs_free(&r->prof[k]);
    free(r->prof);
    free(r->cand);
    memset(r, 0, sizeof *r);
}

/* The per-layer costs for (rows, threads), measured when first asked for. */
static pt_status costs_for(layout *L, const config *c, int rows, int threads, plan_result *r, layer_costs **out)
{
    for (int k = 0; k < r->n_prof; k++)
        if (r->prof[k].rows == rows && r->prof[k].threads == threads) {
            *out = &r->prof[k];
            return PT_OK;
        }
    if (r->n_prof == r->cap_prof) {
        int n = r->cap_prof ? 2 * r->cap_prof : 16;
        layer_costs *q = realloc(r->prof, (size_t)n * sizeof *q);
        if (!q) return pt_fail(PT_ERR_NOMEM, "plan: out of memory");
        r->prof = q;
        r->cap_prof = n;
    }
    *out = &r->prof[r->n_prof];
    pt_status st = profile_layers(L, c, rows, threads, 3, *out);
    if (!st) r->n_prof++;
    return st;
}

/* Simulates every layout of sp that fits L's model (its grid is rebuilt for
 * each) and appends it to r. Not collective. Errors: PT_ERR_NOMEM, a
 * measurement's errors. */
static pt_status plan_layouts(layout *L, const config *c, const plan_space *sp, plan_result *r)
{
    static const sched_kind kinds[] = {SCHED_1F1B, SCHED_GPIPE, SCHED_ZBH1, SCHED_INTERLEAVED};
    int n_layers = L->m.n_layers;
    double per_sample;
    (void)report_rate_unit(&L->data, &per_sample);
    pt_status st = PT_OK;
    for (int ri = 0; !st && ri < sp->n_ranks; ri++) {
        int N = sp->ranks[ri];
        for (int t = sp->all_threads ? 1 : sp->cores / N; !st && t >= 1 && N * t <= sp->cores; t++)
            for (int D = 1; !st && D <= N; D++) {
                if (N % D) continue;
                int P = N / D;
                if (P > n_layers) continue;
                for (int mi = 0; !st && mi < sp->n_ms; mi++) {
                    int M = sp->ms[mi];
                    if (c->batch_size % M || M % D || M > c->batch_size) continue;
                    for (size_t ki = 0; !st && ki < sizeof kinds / sizeof kinds[0]; ki++) {
                        sched_kind kind = kinds[ki];
                        int chunks = kind == SCHED_INTERLEAVED ? 2 : 1;
                        if (P == 1 && kind != SCHED_1F1B) continue; /* one stage: every schedule is the same */
                        if (kind == SCHED_INTERLEAVED && ((M / D) % P || chunks * P > n_layers)) continue;
                        config c2 = *c;
                        c2.schedule = kind;
                        c2.chunks = chunks;
                        c2.micro_batches = M;
                        c2.data_parallel = D;
                        c2.blas_threads = t;
                        if (c2.reduction == REDUCTION_INVARIANT && D > 1 && ((M / D) & (M / D - 1))) continue;
                        r->tried++;
                        if (layout_grid(L, &c2, P, D, 1 << 20)) {
                            pt_clear_error();
                            continue;
                        }
                        layer_costs *p = NULL;
                        if ((st = costs_for(L, &c2, c->batch_size / M, t, r, &p))) break;
                        int V = P * chunks;
                        sim_stage_cost *vs = calloc((size_t)V, sizeof *vs);
                        double *busy = calloc((size_t)P, sizeof *busy), step = 0, makespan = 0;
                        if (!vs || !busy) {
                            free(vs);
                            free(busy);
                            st = pt_fail(PT_ERR_NOMEM, "plan: out of memory");
                            break;
                        }
                        profile_stage_costs(L, &c2, p, vs);
                        if (simulate_step(L, vs, sp->net, &step, &makespan, busy, NULL)) {
                            pt_clear_error();
                            free(vs);
                            free(busy);
                            continue;
                        }
                        double worst = 0, mem = 0;
                        for (int k = 0; k < P; k++) {
                            if (makespan > 0 && 1 - busy[k] / makespan > worst) worst = 1 - busy[k] / makespan;
                            double m = 0;
                            for (int j = 0; j < chunks; j++) {
                                const sim_stage_cost *o = &vs[j * P + k];
                                m += o->stash_bytes * L->train_sc.slots[k * chunks + j] + 4.0 * o->grad_bytes;
                            }
                            mem = m > mem ? m : mem;
                        }
                        free(vs);
                        free(busy);
                        if (sp->memory > 0 && mem > sp->memory) continue;
                        if (r->n_cand == r->cap) {
                            int nc = r->cap ? 2 * r->cap : 64;
                            candidate *q = realloc(r->cand, (size_t)nc * sizeof *q);
                            if (!q) {
                                st = pt_fail(PT_ERR_NOMEM, "plan: out of memory");
                                break;
                            }
                            r->cand = q;
                            r->cap = nc;
                        }
                        r->cand[r->n_cand++] = (candidate){N, t, P, D, M, chunks, kind, step,
                                                           step > 0 ? c->batch_size * per_sample / step : 0, worst, mem};
                    }
                }
            }
    }
    return st;
}

/* The command line that runs candidate b on CONFIG `path`. */
static void format_command(const candidate *b, const char *path, char *out, size_t len)
{
    snprintf(out, len, "mpirun -np %d%s build/pipetrain train %s --set pipeline.data_parallel=%d "
             "--set pipeline.micro_batches=%d --set pipeline.schedule=%s%s --set train.blas_threads=%d",
             b->ranks, b->threads > 1 ? " --bind-to none" : " --bind-to core", path, b->D, b->M,
             sched_kind_name(b->kind), b->chunks > 1 ? " --set pipeline.chunks=2" : "", b->threads);
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
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *path, *o_ranks = NULL, *o_ms = NULL, *o_cores = NULL, *o_memory = NULL, *o_network = NULL;
    int ranks[64], n_ranks = 0, ms[64], n_ms = 0, cores = 0, all = 0;
    double memory = 0;
    sim_network net = SIMULATE_NETWORK;
    const cli_option opts[] = {{"--ranks", NULL, &o_ranks, NULL}, {"--micro-batches", NULL, &o_ms, NULL},
                               {"--cores", NULL, &o_cores, NULL}, {"--memory-per-rank", NULL, &o_memory, NULL},
                               {"--network", NULL, &o_network, NULL}, {"--all", NULL, NULL, &all}, {NULL, NULL, NULL, NULL}};
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0;
    pt_status st = sets ? cli_parse(argc, argv, opts, &path, sets, &n_sets) : pt_fail(PT_ERR_NOMEM, "out of memory");
    char *end = NULL;
    if (!st && o_ranks && (n_ranks = parse_list(o_ranks, ranks, 64)) < 1)
        st = pt_fail(PT_ERR_INVALID, "plan: --ranks '%s': expected rank counts such as 2 or 1,2,4", o_ranks);
    if (!st && o_ms && (n_ms = parse_list(o_ms, ms, 64)) < 1)
        st = pt_fail(PT_ERR_INVALID, "plan: --micro-batches '%s': expected counts such as 4,8,16", o_ms);
    if (!st && o_cores && ((cores = (int)strtol(o_cores, &end, 10)) < 1 || *end))
        st = pt_fail(PT_ERR_INVALID, "plan: --cores '%s': expected a whole number >= 1", o_cores);
    if (!st && o_memory) {
        memory = strtod(o_memory, &end);
        double unit = *end == 'K' || *end == 'k' ? 1024.0 : *end == 'M' ? 1048576.0 : *end == 'G' ? 1073741824.0 : 1;
        if (unit > 1) end++;
        memory *= unit;
        if (*end || !(memory > 0))
            st = pt_fail(PT_ERR_INVALID, "plan: --memory-per-rank '%s': expected bytes, e.g. 512M or 4G", o_memory);
    }
    if (!st && o_network) st = simulate_parse_network(o_network, "plan", &net);
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
    double t_begin = profile_clock(), per_sample;
    const char *unit = report_rate_unit(&L.data, &per_sample);
    plan_space sp = {ranks, n_ranks, cores, ms, n_ms, 1, memory, net};
    plan_result pr;
    memset(&pr, 0, sizeof pr);
    st = plan_layouts(&L, &c, &sp, &pr);
    int code = 1;
    if (!st && pr.n_cand == 0)
        st = pt_fail(PT_ERR_INVALID, "plan: none of the %d layouts tried fits (ranks, layers, micro-batches%s); try "
                     "other --ranks or --micro-batches%s", pr.tried, memory > 0 ? ", memory" : "",
                     memory > 0 ? ", or more --memory-per-rank" : "");
    if (!st) {
        qsort(pr.cand, (size_t)pr.n_cand, sizeof *pr.cand, by_throughput);
        char list[256] = "";
        for (int i = 0, pos = 0; i < n_ranks && pos < (int)sizeof list - 12; i++)
            pos += snprintf(list + pos, sizeof list - (size_t)pos, "%s%d", i ? "," : "", ranks[i]);
        printf("plan: %d layouts that fit, of %d tried, for %s on %s rank%s and %d core%s (%d profile%s of every "
               "layer measured; %.1f s)\n", pr.n_cand, pr.tried, path, list, n_ranks == 1 && ranks[0] == 1 ? "" : "s",
               cores, cores == 1 ? "" : "s", pr.n_prof, pr.n_prof == 1 ? "" : "s", profile_clock() - t_begin);
        printf("  %4s %5s %5s %4s %5s %-11s %7s %14s %10s %7s %11s\n", "rank", "ranks", "stages", "repl", "M",
               "schedule", "threads", unit, "step ms", "bubble", "memory MiB");
        int shown = all ? pr.n_cand : (pr.n_cand < 15 ? pr.n_cand : 15);
        for (int i = 0; i < shown; i++) {
            const candidate *x = &pr.cand[i];
            char sched[32];
            snprintf(sched, sizeof sched, "%s%s", sched_kind_name(x->kind), x->chunks > 1 ? "×2" : "");
            printf("  %4d %5d %6d %4d %5d %-11s %7d %12.0f/s %10.2f %6.1f%% %11.1f\n", i + 1, x->ranks, x->P, x->D,
                   x->M, sched, x->threads, x->throughput, x->step * 1e3, 100 * x->bubble, x->memory / 1048576.0);
        }
        char cmd[CONFIG_STR_MAX + 256];
        format_command(&pr.cand[0], path, cmd, sizeof cmd);
        printf("best: %s\n", cmd);
        code = 0;
    } else {
        fprintf(stderr, "pipetrain: %s\n", pt_last_error());
    }
    plan_result_free(&pr);
    layout_free(&L);
    return code;
}

pt_status plan_compare(const layout *L, const config *c, int ranks, const char *path, char *out, size_t len)
{
    *out = '\0';
    int cores = ranks * c->blas_threads, counts[32], n = 0;
    for (int N = ranks; N >= 1 && n < 32; N /= 2) counts[n++] = N; /* N, N/2, ... 1 */
    plan_space sp = {counts, n, cores, &c->micro_batches, 1, 0, 0, SIMULATE_NETWORK};
    /* the run's model and data, on a grid of its own */
    layout t;
    memset(&t, 0, sizeof t);
    t.m = L->m;
    t.data = L->data;
    t.layer_seconds = L->layer_seconds;
    plan_result pr;
    memset(&pr, 0, sizeof pr);
    pt_status st = plan_layouts(&t, c, &sp, &pr);
    schedule_free(&t.train_sc);
    schedule_free(&t.eval_sc);
    free(t.cuts);
    openblas_set_num_threads(c->blas_threads);
    if (st || pr.n_cand == 0) {
        plan_result_free(&pr);
        return st;
    }
    qsort(pr.cand, (size_t)pr.n_cand, sizeof *pr.cand, by_throughput);
    const candidate *best = &pr.cand[0], *mine = NULL;
    for (int i = 0; i < pr.n_cand && !mine; i++) {
        const candidate *x = &pr.cand[i];
        if (x->ranks == ranks && x->threads == c->blas_threads && x->D == c->data_parallel &&
            x->kind == c->schedule && x->chunks == c->chunks)
            mine = x;
    }
    double per_sample;
    const char *unit = report_rate_unit(&L->data, &per_sample);
    char cmd[CONFIG_STR_MAX + 256];
    format_command(best, path, cmd, sizeof cmd);
    if (mine && mine->throughput >= 0.97 * best->throughput)
        snprintf(out, len, "plan: this layout is %sthe planner's best of %d for %d core%s at M = %d (predicted %.0f "
                 "%s/s)", mine == best ? "" : "within 3% of ", pr.n_cand, cores, cores == 1 ? "" : "s",
                 c->micro_batches, mine->throughput, unit);
    else
        snprintf(out, len, "plan: the planner predicts %s%.0f %s/s for this layout but %.0f %s/s (%.2f×) for %d rank%s "
                 "× %d BLAS thread%s, %d stage%s × %d replica%s, %s, on the same %d core%s: %s (pipetrain plan %s "
                 "--ranks %d ranks every layout)", mine ? "" : "(not ranked) ", mine ? mine->throughput : 0.0, unit,
                 best->throughput, unit, mine ? best->throughput / mine->throughput : 0.0, best->ranks,
                 best->ranks == 1 ? "" : "s", best->threads, best->threads == 1 ? "" : "s", best->P,
                 best->P == 1 ? "" : "s", best->D, best->D == 1 ? "" : "s", sched_kind_name(best->kind), cores,
                 cores == 1 ? "" : "s", cmd, path, ranks);
    plan_result_free(&pr);
    return PT_OK;
}
