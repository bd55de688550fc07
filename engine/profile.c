/* profile.c — per-layer costs, the profile file and `pipetrain profile`. */
#define _POSIX_C_SOURCE 200809L
#include "profile.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "reduce.h"
#include "report.h"
#include "safefile.h"
#include "stage.h"

#define PROFILE_FORMAT "pipetrain-profile"
#define PROFILE_VERSION 1
#define PROFILE_FILE_MAX (64u << 20)

double profile_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double profile_median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

static pt_status costs_alloc(layer_costs *p, int n)
{
    double *all = calloc((size_t)n * 8, sizeof *all);
    if (!all) return pt_fail(PT_ERR_NOMEM, "profile: out of memory for %d layers", n);
    p->n_layers = n;
    p->fwd = all, p->bwd = all + n, p->bi = all + 2 * n, p->bw = all + 3 * n, p->optim = all + 4 * n;
    p->out_bytes = all + 5 * n, p->stash = all + 6 * n, p->params = all + 7 * n;
    return PT_OK;
}

void layer_costs_free(layer_costs *p)
{
    free(p->fwd);
    memset(p, 0, sizeof *p);
}

pt_status profile_layers(layout *L, const config *c, int rows, int threads, int reps, layer_costs *p)
{
    int n = L->m.n_layers;
    if (reps < 1) reps = 1;
    if (reps > 15) reps = 15;
    pt_status st = costs_alloc(p, n);
    if (st) return st;
    p->rows = rows;
    p->threads = threads;
    openblas_set_num_threads(threads);
    optim_config oc = config_optim(c);
    float *x = NULL, *g = NULL, *dout = NULL;
    size_t cap = 0;
    stage s;
    double t[15];
#define MEDIAN(expr, dst) PROFILE_MEDIAN(expr, dst, t, reps)
    for (int l = 0; !st && l < n; l++) {
        if ((st = stage_init(&s, &L->m, l, l + 1, rows, 1, c->seed))) break;
        if ((st = stage_split_backward_init(&s))) {
            stage_free(&s);
            break;
        }
        size_t need = (size_t)rows * (s.in_dim > s.out_dim ? s.in_dim : s.out_dim);
        if (need > cap) {
            float *nx = realloc(x, need * sizeof *x), *ng = nx ? realloc(g, need * sizeof *g) : NULL,
                  *nd = ng ? realloc(dout, need * sizeof *dout) : NULL;
            if (nx) x = nx;
            if (ng) g = ng;
            if (nd) dout = nd;
            if (!nx || !ng || !nd) {
                stage_free(&s);
                st = pt_fail(PT_ERR_NOMEM, "profile: out of memory");
                break;
            }
            cap = need;
        }
        if (l == 0) /* any rows: the test reader takes a count */
            MEDIAN(dataset_test_batch(&L->data, 0, rows, stage_input(&s, 0), NULL), p->data);
        else
            memcpy(stage_input(&s, 0), x, (size_t)rows * s.in_dim * sizeof *x);
        float *din = l > 0 ? g : NULL; /* the model's first layer never computes its input gradient */
        MEDIAN(stage_forward(&s, 0, x, c->seed, 0, 0, 1), p->fwd[l]);
        for (size_t i = 0; i < (size_t)rows * s.out_dim; i++) dout[i] = 1e-3f; /* small and finite */
        MEDIAN(stage_backward(&s, 0, dout, din, c->seed, 0, 0), p->bwd[l]);
        MEDIAN((void)stage_backward_input(&s, 0, dout, din, c->seed, 0, 0), p->bi[l]);
        MEDIAN((void)stage_backward_weight(&s, 0, dout, c->seed, 0, 0), p->bw[l]);
        MEDIAN(stage_optim_step(&s, &oc, 0.0f, 1), p->optim[l]);
        p->out_bytes[l] = (double)rows * s.out_dim * sizeof(float);
        p->stash[l] = (double)stage_stash_bytes(&s);
        p->params[l] = (double)s.n_params;
        stage_free(&s);
    }
#undef MEDIAN
    free(x);
    free(g);
    free(dout);
    if (st) layer_costs_free(p);
    return st;
}

void profile_stage_costs(const layout *L, const config *c, const layer_costs *p, sim_stage_cost *vs)
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

/* ---- the JSON file ---------------------------------------------------------- */

static const char *kind_name(const model *m, int l)
{
    const layer_ops *ops = layer_get(m->layers[l].kind);
    return ops ? ops->kind_name : "?";
}

static double number_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : NAN;
}

pt_status profile_read(const char *path, const model *m, int rows, profile_file *out)
{
    memset(out, 0, sizeof *out);
    int fd;
    uint64_t size;
    pt_status st = safefile_open(path, "profile", "give a JSON file written by pipetrain profile", PROFILE_FILE_MAX,
                                 &fd, &size);
    if (st) return st;
    char *text = malloc((size_t)size + 1);
    size_t got = 0;
    if (!text) st = pt_fail(PT_ERR_NOMEM, "profile %s: out of memory", path);
    else if (!(st = safefile_read(fd, path, text, (size_t)size, &got))) text[got] = '\0';
    close(fd);
    cJSON *root = st ? NULL : cJSON_Parse(text);
    free(text);
    if (st) return st;
    const char *again = "write it again with mpirun -np 2 pipetrain profile CONFIG --output FILE";
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
    if (!root || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, PROFILE_FORMAT) ||
        number_of(root, "version") != PROFILE_VERSION || !cJSON_IsArray(layers)) {
        cJSON_Delete(root);
        return pt_fail(PT_ERR_FORMAT, "profile %s is not a pipetrain profile (version %d JSON with \"format\": \"%s\" "
                       "and \"layers\"): %s", path, PROFILE_VERSION, PROFILE_FORMAT, again);
    }
    int n = cJSON_GetArraySize(layers), r = (int)number_of(root, "micro_batch_rows");
    if (n != m->n_layers)
        st = pt_fail(PT_ERR_MISMATCH, "profile %s has %d layers but the config's model has %d: it was measured for "
                     "another model; %s", path, n, m->n_layers, again);
    else if (rows > 0 && r != rows)
        st = pt_fail(PT_ERR_MISMATCH, "profile %s was measured for micro-batches of %d rows, this config's have %d "
                     "(train.batch_size / pipeline.micro_batches): %s", path, r, rows, again);
    if (!st) st = costs_alloc(&out->layers, n);
    layer_costs *p = &out->layers;
    if (!st) {
        p->rows = r;
        p->threads = (int)number_of(root, "blas_threads");
        p->data = number_of(root, "data_s");
        if (!(p->data >= 0) || !(p->threads >= 1))
            st = pt_fail(PT_ERR_FORMAT, "profile %s: \"data_s\" and \"blas_threads\" must be numbers (≥ 0, ≥ 1): %s",
                         path, again);
    }
    static const char *const keys[] = {"forward_s", "backward_s", "backward_input_s", "backward_weight_s",
                                       "optimizer_s", "output_bytes", "stash_bytes", "parameters"};
    for (int l = 0; !st && l < n; l++) {
        const cJSON *e = cJSON_GetArrayItem(layers, l), *kind = cJSON_GetObjectItemCaseSensitive(e, "kind");
        if (!cJSON_IsString(kind) || strcmp(kind->valuestring, kind_name(m, l))) {
            st = pt_fail(PT_ERR_MISMATCH, "profile %s: layer %d is %s%s%s but the config's layer %d is %s: it was "
                         "measured for another model; %s", path, l, cJSON_IsString(kind) ? "'" : "not named",
                         cJSON_IsString(kind) ? kind->valuestring : "", cJSON_IsString(kind) ? "'" : "", l,
                         kind_name(m, l), again);
            break;
        }
        double *dst[] = {&p->fwd[l], &p->bwd[l], &p->bi[l], &p->bw[l], &p->optim[l], &p->out_bytes[l],
                         &p->stash[l], &p->params[l]};
        for (size_t k = 0; !st && k < sizeof keys / sizeof keys[0]; k++) {
            *dst[k] = number_of(e, keys[k]);
            if (!(*dst[k] >= 0))
                st = pt_fail(PT_ERR_FORMAT, "profile %s: layer %d: \"%s\" must be a finite number ≥ 0: %s", path, l,
                             keys[k], again);
        }
    }
    const cJSON *net = cJSON_GetObjectItemCaseSensitive(root, "network");
    if (!st && cJSON_IsObject(net)) {
        sim_network x = {number_of(net, "latency_s"), number_of(net, "bandwidth_bytes_per_s"),
                         number_of(net, "allreduce_bandwidth_bytes_per_s")};
        if (!(x.latency >= 0) || !(x.bandwidth > 0) || !(x.allreduce_bandwidth > 0))
            st = pt_fail(PT_ERR_FORMAT, "profile %s: \"network\" needs latency_s ≥ 0 and positive bandwidth_bytes_per_s "
                         "and allreduce_bandwidth_bytes_per_s: %s", path, again);
        out->net = x;
        out->has_network = 1;
    }
    cJSON_Delete(root);
    if (st) profile_file_free(out);
    return st;
}

void profile_file_free(profile_file *p) { layer_costs_free(&p->layers); }

/* ---- the network ------------------------------------------------------------ */

enum { PINGPONG_SIZES = 8, ALLREDUCE_SIZES = 4 };
static const int pingpong_bytes[PINGPONG_SIZES] = {8, 64, 512, 4096, 32768, 262144, 1 << 21, 1 << 24};
static const int allreduce_floats[ALLREDUCE_SIZES] = {1024, 16384, 262144, 1 << 22};

typedef struct {
    double pingpong[PINGPONG_SIZES]; /* one-way seconds */
    double allreduce[ALLREDUCE_SIZES];
    int allreduce_ranks;
    char peer_host[MPI_MAX_PROCESSOR_NAME];
    sim_network net;
} net_profile;

/* Least squares of t = latency + bytes / bandwidth over the sizes from 256 KiB
 * (where bandwidth dominates); latency from the smallest message. */
static void fit_network(net_profile *n)
{
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    int k = 0;
    for (int i = 0; i < PINGPONG_SIZES; i++) {
        if (pingpong_bytes[i] < 262144) continue;
        double x = pingpong_bytes[i], y = n->pingpong[i];
        sx += x, sy += y, sxx += x * x, sxy += x * y, k++;
    }
    double slope = (k * sxy - sx * sy) / (k * sxx - sx * sx);
    double big = pingpong_bytes[PINGPONG_SIZES - 1], tbig = n->pingpong[PINGPONG_SIZES - 1];
    n->net.latency = n->pingpong[0];
    n->net.bandwidth = slope > 0 ? 1 / slope : big / (tbig > n->net.latency ? tbig - n->net.latency : tbig);
    /* the simulator's ring: t = 2(D−1)·(latency + bytes / D / bandwidth) */
    int D = n->allreduce_ranks;
    double bytes = 4.0 * allreduce_floats[ALLREDUCE_SIZES - 1], t = n->allreduce[ALLREDUCE_SIZES - 1];
    double per_step = t / (2.0 * (D - 1)) - n->net.latency;
    n->net.allreduce_bandwidth = per_step > 0 ? bytes / D / per_step : bytes / D / (t / (2.0 * (D - 1)));
}

/* Collective over g->world (size ≥ 2): measures and fits the transport. */
static pt_status measure_network(comm_grid *g, const config *c, int reps, net_profile *n, int *reporter)
{
    memset(n, 0, sizeof *n);
    char *buf = calloc((size_t)1 << 24, 1);
    pt_status st = buf ? PT_OK : pt_fail(PT_ERR_NOMEM, "profile: out of memory for a 16 MiB message");
    st = comm_agree(g, st, reporter);
    for (int i = 0; !st && i < PINGPONG_SIZES; i++) {
        int r = pingpong_bytes[i] >= (1 << 21) ? reps : 4 * reps;
        st = comm_pingpong(g->world, 0, 1, buf, pingpong_bytes[i], r, &n->pingpong[i]);
        st = comm_agree(g, st, reporter);
    }
    /* the data-parallel communicator when the config has replicas, else the whole job */
    int D = c->data_parallel > 1 && g->size % c->data_parallel == 0 ? c->data_parallel : g->size;
    if (!st && D < g->size) st = comm_grid_split(g, g->size / D, D);
    MPI_Comm comm = D < g->size ? g->dp : g->world;
    n->allreduce_ranks = D;
    for (int i = 0; !st && i < ALLREDUCE_SIZES; i++)
        st = comm_agree(g, comm_allreduce_seconds((float *)buf, allreduce_floats[i], comm, reps, &n->allreduce[i]),
                        reporter);
    /* rank 0 learns its ping-pong peer's host */
    snprintf(n->peer_host, sizeof n->peer_host, "%s", g->host);
    if (!st) st = comm_bcast(n->peer_host, sizeof n->peer_host, 1, g->world, "MPI_Bcast of rank 1's host");
    free(buf);
    if (!st) fit_network(n);
    return st;
}

/* ---- writing ---------------------------------------------------------------- */

static char *profile_json(const char *config_path, const model *m, const layer_costs *p,
                          const comm_grid *g, const net_profile *n, double seconds)
{
    cJSON *root = cJSON_CreateObject(), *layers = cJSON_CreateArray();
    cJSON_AddStringToObject(root, "format", PROFILE_FORMAT);
    cJSON_AddNumberToObject(root, "version", PROFILE_VERSION);
    cJSON_AddStringToObject(root, "config", config_path);
    cJSON_AddStringToObject(root, "host", g->host);
    cJSON_AddNumberToObject(root, "micro_batch_rows", p->rows);
    cJSON_AddNumberToObject(root, "blas_threads", p->threads);
    cJSON_AddNumberToObject(root, "seconds", seconds);
    cJSON_AddNumberToObject(root, "data_s", p->data);
    for (int l = 0; l < p->n_layers; l++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "index", l);
        cJSON_AddStringToObject(e, "kind", kind_name(m, l));
        cJSON_AddNumberToObject(e, "forward_s", p->fwd[l]);
        cJSON_AddNumberToObject(e, "backward_s", p->bwd[l]);
        cJSON_AddNumberToObject(e, "backward_input_s", p->bi[l]);
        cJSON_AddNumberToObject(e, "backward_weight_s", p->bw[l]);
        cJSON_AddNumberToObject(e, "optimizer_s", p->optim[l]);
        cJSON_AddNumberToObject(e, "output_bytes", p->out_bytes[l]);   /* the activation message after it */
        cJSON_AddNumberToObject(e, "gradient_bytes", 4 * p->params[l]); /* its share of the all-reduce */
        cJSON_AddNumberToObject(e, "stash_bytes", p->stash[l]);
        cJSON_AddNumberToObject(e, "parameters", p->params[l]);
        cJSON_AddItemToArray(layers, e);
    }
    cJSON_AddItemToObject(root, "layers", layers);
    if (n) {
        cJSON *net = cJSON_AddObjectToObject(root, "network");
        cJSON_AddNumberToObject(net, "ranks", g->size);
        char hosts[2 * MPI_MAX_PROCESSOR_NAME + 8];
        snprintf(hosts, sizeof hosts, "%s - %s", g->host, n->peer_host);
        cJSON_AddStringToObject(net, "pingpong_hosts", hosts);
        cJSON_AddNumberToObject(net, "latency_s", n->net.latency);
        cJSON_AddNumberToObject(net, "bandwidth_bytes_per_s", n->net.bandwidth);
        cJSON_AddNumberToObject(net, "allreduce_bandwidth_bytes_per_s", n->net.allreduce_bandwidth);
        cJSON_AddNumberToObject(net, "allreduce_ranks", n->allreduce_ranks);
        cJSON *pp = cJSON_AddArrayToObject(net, "pingpong"), *ar = cJSON_AddArrayToObject(net, "allreduce");
        for (int i = 0; i < PINGPONG_SIZES; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "bytes", pingpong_bytes[i]);
            cJSON_AddNumberToObject(e, "one_way_s", n->pingpong[i]);
            cJSON_AddItemToArray(pp, e);
        }
        for (int i = 0; i < ALLREDUCE_SIZES; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "bytes", 4.0 * allreduce_floats[i]);
            cJSON_AddNumberToObject(e, "seconds", n->allreduce[i]);
            cJSON_AddItemToArray(ar, e);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -np N pipetrain profile CONFIG [--output FILE] [--reps R] [--set section.key=value ...]\n"
            "\n"
            "Measures on this machine what CONFIG's training costs, for its micro-batch shape and\n"
            "train.blas_threads: every layer's forward, backward, input- and weight-gradient times\n"
            "(median of R, default 5) and optimizer update, the activation and gradient message sizes,\n"
            "and, on N >= 2 ranks, the MPI transport: ping-pong between world ranks 0 and 1 from 8 B to\n"
            "16 MiB and all-reduce over pipeline.data_parallel ranks (all N when that is 1), fitted to a\n"
            "latency and bandwidth. Writes a JSON profile (default profile.json) for\n"
            "  pipetrain simulate CONFIG --ranks N --profile FILE\n"
            "  pipeline.partition = measured with pipeline.profile = FILE (stages balanced by time)\n"
            "Run it with the hosts and binding of the job to predict (mpirun --hostfile ...).\n"
            "\n"
            "  --output FILE      where to write the profile (default profile.json)\n"
            "  --reps R           repetitions per measurement, the median kept (1..15, default 5)\n"
            "  --set KEY=VALUE    override one config key, as for train (repeatable)\n");
}

int profile_main(int argc, char **argv, comm_grid *g)
{
    if (cli_wants_help(argc, argv)) {
        if (g->rank == 0) usage(stdout);
        return 0;
    }
    const char *path, *output = "profile.json", *o_reps = NULL;
    int reps = 5;
    const cli_option opts[] = {{"--output", "-o", &output, NULL}, {"--reps", NULL, &o_reps, NULL},
                               {NULL, NULL, NULL, NULL}};
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0;
    pt_status st = sets ? cli_parse(argc, argv, opts, &path, sets, &n_sets) : pt_fail(PT_ERR_NOMEM, "out of memory");
    char *end = NULL;
    if (!st && o_reps && ((reps = (int)strtol(o_reps, &end, 10)) < 1 || *end || reps > 15))
        st = pt_fail(PT_ERR_INVALID, "profile: --reps '%s': expected 1..15", o_reps);
    config c;
    if (!st) st = config_load(&c, path, sets, n_sets);
    free(sets);
    int reporter = -1;
    if ((st = comm_agree(g, st, &reporter))) {
        if (g->rank == reporter) fprintf(stderr, "pipetrain: %s\n", pt_last_error());
        return 2;
    }
    /* rank 0 measures the layers alone: the others wait without spinning */
    layout L;
    memset(&L, 0, sizeof L);
    layer_costs p;
    memset(&p, 0, sizeof p);
    double t0 = profile_clock();
    if (g->rank == 0) {
        st = layout_open(&L, &c);
        if (!st) st = profile_layers(&L, &c, config_micro_rows(&c), c.blas_threads, reps, &p);
    }
    pt_status idle = comm_barrier_idle(g->world);
    reporter = -1;
    st = comm_agree(g, st ? st : idle, &reporter);
    net_profile n;
    if (!st && g->size >= 2) st = measure_network(g, &c, reps, &n, &reporter);
    int code = st ? 1 : 0;
    if (!st && g->rank == 0) {
        char *text = profile_json(path, &L.m, &p, g, g->size >= 2 ? &n : NULL, profile_clock() - t0);
        st = text ? report_write_text(output, "profile", text) : pt_fail(PT_ERR_NOMEM, "profile: out of memory");
        free(text);
        if (!st) {
            double fwd = 0, bwd = 0;
            for (int l = 0; l < p.n_layers; l++) fwd += p.fwd[l], bwd += p.bwd[l];
            printf("profile: %d layers measured for micro-batches of %d rows with %d BLAS thread%s (median of %d): "
                   "forward %.3f ms, backward %.3f ms per micro-batch\n", p.n_layers, p.rows, p.threads,
                   p.threads == 1 ? "" : "s", reps, fwd * 1e3, bwd * 1e3);
            if (g->size >= 2)
                printf("network: ranks 0 (%s) and 1 (%s): latency %.1f µs, bandwidth %.2f GB/s; all-reduce over %d "
                       "ranks: %.2f GB/s\n", g->host, n.peer_host, n.net.latency * 1e6, n.net.bandwidth / 1e9,
                       n.allreduce_ranks, n.net.allreduce_bandwidth / 1e9);
            else
                printf("network: not measured on one rank (run mpirun -np 2 or more to measure the transport)\n");
            printf("wrote %s in %.1f s; use it with: pipetrain simulate %s --ranks N --profile %s\n", output,
                   profile_clock() - t0, path, output);
        }
        code = st ? 1 : 0;
    }
    if (st && (reporter == g->rank || (reporter < 0 && g->rank == 0))) fprintf(stderr, "pipetrain: %s\n", pt_last_error());
    layer_costs_free(&p);
    layout_free(&L);
    return code;
}
