/* simulate.c — `pipetrain simulate`. */
#define _POSIX_C_SOURCE 200809L
#include "simulate.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cli.h"
#include "executor.h"
#include "layout.h"
#include "profile.h"
#include "reduce.h"
#include "report.h"
#include "stage.h"
#include "trace.h"

typedef struct {
    const layout *L;
    const sim_stage_cost *vs; /* [V] */
    sim_network net;
    double comm_op;            /* seconds of posting or completing a transfer */
} sim_model;

static const sim_stage_cost *cost_of(const sim_model *s, int rank, const sched_op *o)
{
    return &s->vs[o->chunk * s->L->P + rank];
}

static double op_cost(void *ctx, int rank, const sched_op *o)
{
    const sim_model *s = ctx;
    const sim_stage_cost *v = cost_of(s, rank, o);
    switch ((sched_op_kind)o->kind) {
    case OP_FORWARD: return v->fwd + v->data;
    case OP_BACKWARD: return v->bwd;
    case OP_BACKWARD_INPUT: return v->bi;
    case OP_BACKWARD_WEIGHT: return v->bw;
    case OP_WAIT_RECV_ACT:
    case OP_WAIT_RECV_GRAD:
    case OP_REDUCE_GRAD_WAIT: return 0;
    default: return s->comm_op;
    }
}

/* A ring all-reduce of n bytes over D replicas: 2·(D−1) steps of n / D. */
static double allreduce_time(const sim_model *s, double bytes)
{
    int D = s->L->D;
    return D < 2 ? 0 : 2.0 * (D - 1) * (s->net.latency + bytes / D / s->net.allreduce_bandwidth);
}

static double latency_cost(void *ctx, int rank, const sched_op *o)
{
    const sim_model *s = ctx;
    int P = s->L->P, vs = o->chunk * P + rank;
    if (o->kind == OP_REDUCE_GRAD_WAIT) {
        const sim_stage_cost *v = &s->vs[vs];
        return v->reduce > 0 ? v->reduce : allreduce_time(s, v->grad_bytes / (v->buckets > 0 ? v->buckets : 1));
    }
    /* an activation comes from virtual stage vs − 1, a gradient from vs + 1; both have the size of the
     * boundary's activation */
    double bytes = o->kind == OP_WAIT_RECV_ACT ? s->vs[vs - 1].act_bytes : s->vs[vs].act_bytes;
    return s->net.latency + bytes / s->net.bandwidth;
}

pt_status simulate_parse_network(const char *text, const char *who, sim_network *net)
{
    char *end;
    sim_network n = *net;
    n.latency = strtod(text, &end);
    if (*end == ',') n.bandwidth = strtod(end + 1, &end);
    if (*end == ',') n.allreduce_bandwidth = strtod(end + 1, &end);
    if (*end || !(n.latency >= 0) || !(n.bandwidth > 0) || !(n.allreduce_bandwidth > 0))
        return pt_fail(PT_ERR_INVALID, "%s: --network '%s': expected LATENCY,BANDWIDTH[,ALLREDUCE_BANDWIDTH] in "
                       "seconds and bytes/s, e.g. 5e-6,5e9,1.7e9", who, text);
    *net = n;
    return PT_OK;
}

pt_status simulate_step(const layout *L, const sim_stage_cost *vs, sim_network net, double *step, double *makespan,
                        double *busy, double **start)
{
    sim_model m = {L, vs, net, 1e-6};
    sched_cost_model cm = {op_cost, latency_cost, &m};
    pt_status st = schedule_simulate(&L->train_sc, &cm, makespan, busy, start);
    if (st) return st;
    double optim = 0;
    for (int r = 0; r < L->P; r++) {
        double o = 0;
        for (int k = 0; k < L->chunks; k++) o += vs[k * L->P + r].optim;
        if (o > optim) optim = o;
    }
    int ranks = L->P * L->D;
    *step = *makespan + 2 * net.latency * ceil(log2(ranks > 1 ? (double)ranks : 2.0)) + optim;
    return PT_OK;
}

/* Measures every virtual stage of L on this machine: `reps` forward and
 * backward passes of one micro-batch through the chain of stages (median),
 * the B/W split when the schedule uses it, one optimizer update, the data
 * read. */
static pt_status calibrate(layout *L, const config *c, int reps, sim_stage_cost *out)
{
    int V = L->chunks * L->P, rows = config_micro_rows(c);
    stage *st = calloc((size_t)V, sizeof *st);
    double *t = calloc((size_t)reps, sizeof *t);
    float *x = NULL, *dout = NULL;
    pt_status rc = st && t ? PT_OK : pt_fail(PT_ERR_NOMEM, "simulate: out of memory");
    int split = sched_kind_splits_backward(c->schedule);
    size_t widest = 1;
    for (int v = 0; !rc && v < V; v++) {
        rc = stage_init(&st[v], &L->m, L->cuts[v], L->cuts[v + 1], rows, 1, c->seed);
        if (!rc && split) rc = stage_split_backward_init(&st[v]);
        if (!rc) {
            size_t w = (size_t)rows * (st[v].in_dim > st[v].out_dim ? st[v].in_dim : st[v].out_dim);
            if (w > widest) widest = w;
        }
    }
    if (!rc && (!(x = calloc(widest, sizeof *x)) || !(dout = calloc(widest, sizeof *dout))))
        rc = pt_fail(PT_ERR_NOMEM, "simulate: out of memory");
    optim_config oc = config_optim(c);
#define MEDIAN(expr, dst) PROFILE_MEDIAN(expr, dst, t, reps)
    if (!rc) MEDIAN(dataset_train_batch(&L->data, 0, 0, stage_input(&st[0], 0), NULL), out[0].data);
    for (int v = 0; !rc && v < V; v++) {
        sim_stage_cost *o = &out[v];
        stage *s = &st[v];
        if (v > 0) memcpy(stage_input(s, 0), x, (size_t)rows * s->in_dim * sizeof *x);
        MEDIAN(stage_forward(s, 0, x, c->seed, 0, 0, 1), o->fwd);
        o->act_bytes = (double)rows * s->out_dim * sizeof(float);
        o->grad_bytes = (double)s->n_params * sizeof(float);
        o->buckets = L->D > 1 ? reduce_count_buckets(&L->m, s->first, s->last, c->bucket_mb) : 0;
    }
    /* backward, from the last virtual stage down (a small, finite output gradient) */
    for (size_t i = 0; !rc && i < widest; i++) dout[i] = 1e-3f;
    for (int v = V - 1; !rc && v >= 0; v--) {
        sim_stage_cost *o = &out[v];
        stage *s = &st[v];
        float *din = v > 0 ? x : NULL;
        if (split) {
            MEDIAN(rc = stage_backward_input(s, 0, dout, din, c->seed, 0, 0), o->bi);
            MEDIAN(rc = stage_backward_weight(s, 0, dout, c->seed, 0, 0), o->bw);
            o->bwd = o->bi + o->bw;
        } else {
            MEDIAN(stage_backward(s, 0, dout, din, c->seed, 0, 0), o->bwd);
        }
        if (c->reduction == REDUCTION_INVARIANT) { /* the tree's work after each weight gradient */
            size_t n = s->n_params ? s->n_params : 1;
            float *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
            double fold = 0;
            if (a && b) MEDIAN((memset(a, 0, n * sizeof *a), cblas_saxpy((int)n, 1.0f, a, 1, b, 1)), fold);
            free(a);
            free(b);
            o->bwd += fold;
            o->bw += fold;
        }
        stage_zero_grad(s);
        MEDIAN(stage_optim_step(s, &oc, 0.0f, 1), o->optim);
        o->stash_bytes = (double)stage_stash_bytes(s);
    }
#undef MEDIAN
    for (int v = 0; st && v < V; v++) stage_free(&st[v]);
    free(st);
    free(t);
    free(x);
    free(dout);
    return rc;
}

/* The simulated step as events of replica 0's ranks, for a trace. */
static exec_event *sim_events(const layout *L, const sim_model *m, double **start, long *n_out)
{
    long n = 0;
    for (int r = 0; r < L->P; r++) n += L->train_sc.ranks[r].n_ops;
    exec_event *ev = calloc((size_t)n + 1, sizeof *ev);
    if (!ev) return NULL;
    long k = 0;
    for (int r = 0; r < L->P; r++)
        for (int i = 0; i < L->train_sc.ranks[r].n_ops; i++) {
            const sched_op *o = &L->train_sc.ranks[r].ops[i];
            double s0 = start[r][i], s1 = s0 + op_cost((void *)m, r, o);
            if (o->kind == OP_WAIT_RECV_ACT || o->kind == OP_WAIT_RECV_GRAD || o->kind == OP_REDUCE_GRAD_WAIT) {
                /* a wait runs from the end of the op before it until its data is there (its start in the
                 * simulation) */
                const sched_op *p = i > 0 ? &L->train_sc.ranks[r].ops[i - 1] : NULL;
                s1 = s0;
                s0 = p ? start[r][i - 1] + op_cost((void *)m, r, p) : 0;
            }
            ev[k++] = (exec_event){r, o->kind, o->mb, o->chunk, 0, s0, s1};
        }
    *n_out = k;
    return ev;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pipetrain simulate CONFIG --ranks N [--set section.key=value ...] [--network LAT,BW[,ARBW]]\n"
            "                          [--profile FILE] [--trace OUT.json] [--lists]\n"
            "\n"
            "Predicts the step time and throughput of training CONFIG on N ranks (N / D pipeline\n"
            "stages for D = pipeline.data_parallel replicas) before it runs: builds the same lowered\n"
            "op lists as `mpirun -np N pipetrain train CONFIG` would, measures each virtual stage's\n"
            "forward, backward and optimizer time for one micro-batch on this machine (median of 5),\n"
            "and times the lists as a discrete-event simulation. No MPI is needed.\n"
            "\n"
            "  --ranks N          ranks of the job (required)\n"
            "  --set KEY=VALUE    override one config key, as for train (repeatable)\n"
            "  --network LAT,BW[,ARBW]  point-to-point latency (s) and bandwidth (bytes/s), and the\n"
            "                     gradient all-reduce's bandwidth (default 5e-6,5e9,1.7e9: shared memory\n"
            "                     on one machine with Open MPI)\n"
            "  --profile FILE     take every layer's costs (and the network, unless --network is given)\n"
            "                     from a profile written by pipetrain profile instead of measuring\n"
            "  --trace OUT.json   write the simulated step as a trace (tools/pipetrain-timeline draws\n"
            "                     it, --below a measured one)\n"
            "  --lists            print every rank's lowered op list, one op per line\n"
            "\n"
            "The last lines are 'predicted step time: T s' and 'predicted throughput: X samples/s'\n"
            "(tokens/s for a language model). Limits: BLAS threads and cache effects of running\n"
            "ranks side by side are not modelled; all ranks are assumed to compute as fast as this one.\n");
}

static void print_line(void *ctx, const char *line)
{
    (void)ctx;
    puts(line);
}

int simulate_main(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    const char *path, *trace = NULL, *profile = NULL, *o_ranks = NULL, *o_network = NULL;
    long ranks = 0;
    int lists = 0, code = 2;
    sim_network net = SIMULATE_NETWORK;
    const cli_option opts[] = {{"--ranks", NULL, &o_ranks, NULL}, {"--network", NULL, &o_network, NULL},
                               {"--profile", NULL, &profile, NULL}, {"--trace", NULL, &trace, NULL},
                               {"--lists", NULL, NULL, &lists}, {NULL, NULL, NULL, NULL}};
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0;
    pt_status st = sets ? cli_parse(argc, argv, opts, &path, sets, &n_sets) : pt_fail(PT_ERR_NOMEM, "out of memory");
    char *end = NULL;
    if (!st && o_ranks && ((ranks = strtol(o_ranks, &end, 10)) < 1 || *end || ranks > 1 << 20))
        st = pt_fail(PT_ERR_INVALID, "simulate: --ranks '%s': expected a whole number in 1..%d", o_ranks, 1 << 20);
    if (!st && o_network) st = simulate_parse_network(o_network, "simulate", &net);
    if (!st && ranks == 0) st = pt_fail(PT_ERR_INVALID, "simulate: --ranks N is required (the ranks of the job)");
    config c;
    if (!st) st = config_load(&c, path, sets, n_sets);
    free(sets);
    int D = st ? 1 : c.data_parallel, P = (int)(ranks / D);
    if (!st && ranks % D)
        st = pt_fail(PT_ERR_INVALID, "simulate: --ranks %ld is not a multiple of pipeline.data_parallel = %d", ranks, D);
    layout L;
    memset(&L, 0, sizeof L);
    if (!st) st = layout_build(&L, &c, P, D, 1 << 20);
    profile_file pf;
    memset(&pf, 0, sizeof pf);
    if (!st && profile) st = profile_read(profile, &L.m, config_micro_rows(&c), &pf);
    if (!st && profile && pf.layers.threads != c.blas_threads)
        st = pt_fail(PT_ERR_MISMATCH, "profile %s was measured with %d BLAS thread%s, the config has train.blas_threads "
                     "= %d: profile again with the same train.blas_threads, or simulate with --set "
                     "train.blas_threads=%d", profile, pf.layers.threads, pf.layers.threads == 1 ? "" : "s",
                     c.blas_threads, pf.layers.threads);
    if (!st && pf.has_network && !o_network) net = pf.net;
    if (st) {
        profile_file_free(&pf);
        fprintf(stderr, "pipetrain: %s\n", pt_last_error());
        layout_free(&L);
        return 2;
    }
    code = 1;
    openblas_set_num_threads(c.blas_threads);
    int V = L.chunks * P;
    sim_stage_cost *vs = calloc((size_t)V, sizeof *vs);
    double *busy = calloc((size_t)P, sizeof *busy), **start = calloc((size_t)P, sizeof *start);
    st = vs && busy && start ? PT_OK : pt_fail(PT_ERR_NOMEM, "simulate: out of memory");
    for (int r = 0; !st && r < P; r++)
        if (!(start[r] = calloc((size_t)L.train_sc.ranks[r].n_ops + 1, sizeof **start)))
            st = pt_fail(PT_ERR_NOMEM, "simulate: out of memory");
    double t_cal = profile_clock();
    if (!st && profile) profile_stage_costs(&L, &c, &pf.layers, vs);
    else if (!st) st = calibrate(&L, &c, 5, vs);
    t_cal = profile_clock() - t_cal;
    sim_model m = {&L, vs, net, 1e-6};
    double makespan = 0, step = 0;
    double t_sim = profile_clock();
    if (!st) st = simulate_step(&L, vs, net, &step, &makespan, busy, start);
    t_sim = profile_clock() - t_sim;
    if (!st) {
        if (lists) schedule_print(&L.train_sc, print_line, NULL);
        double per_sample;
        const char *unit = report_rate_unit(&L.data, &per_sample);
        printf("simulated: %d stage%s × %d replica%s, %s schedule%s, %d micro-batches of %d samples (global batch "
               "%d); %s%s in %.2f s, simulated in %.3f s\n",
               P, P == 1 ? "" : "s", D, D == 1 ? "" : "s", sched_kind_name(c.schedule), L.chunks > 1 ? " (chunks)" : "",
               c.micro_batches, config_micro_rows(&c), c.batch_size, profile ? "costs read from " : "calibrated on this machine",
               profile ? profile : "", t_cal, t_sim);
        printf("network: latency %.2g s, bandwidth %.3g bytes/s, all-reduce %.3g bytes/s (%s)\n", net.latency,
               net.bandwidth, net.allreduce_bandwidth, o_network ? "--network" : pf.has_network ? "the profile's" :
               "the default for one machine");
        for (int r = 0; r < P; r++) {
            double mem = 0;
            for (int k = 0; k < L.chunks; k++)
                mem += vs[k * P + r].stash_bytes * L.train_sc.slots[r * L.chunks + k];
            printf("  rank %d: busy %.2f ms of %.2f ms, bubble %.1f%%, peak activation memory %.1f MiB\n", r,
                   busy[r] * 1e3, makespan * 1e3, makespan > 0 ? 100.0 * (1 - busy[r] / makespan) : 0.0,
                   mem / 1048576.0);
        }
        printf("predicted step time: %.6f s\n", step);
        printf("predicted throughput: %.0f %s/s\n", step > 0 ? c.batch_size * per_sample / step : 0.0, unit);
        fflush(stdout);
        if (trace) {
            long n = 0;
            exec_event *ev = sim_events(&L, &m, start, &n);
            char *hosts = calloc((size_t)P, 64);
            for (int r = 0; hosts && r < P; r++) snprintf(hosts + (size_t)r * 64, 64, "simulated");
            st = ev && hosts ? trace_write_file(trace, ev, n, &c, P, 1, P, hosts, 64)
                             : pt_fail(PT_ERR_NOMEM, "simulate: out of memory for the trace");
            if (!st) printf("trace: %s (the simulated step of replica 0)\n", trace);
            free(ev);
            free(hosts);
        }
    }
    if (!st) code = 0;
    else fprintf(stderr, "pipetrain: %s\n", pt_last_error());
    for (int r = 0; start && r < P; r++) free(start[r]);
    free(start);
    free(busy);
    free(vs);
    profile_file_free(&pf);
    layout_free(&L);
    return code;
}
