/* report.c — what a run tells: plan, progress, breakdown, closing lines,
 * summary, fingerprint. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "report.h"
#include "kernels.h"

#include <sched.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <xxhash.h>

#include "partition.h"
#include "safefile.h"
#include "schedule.h"

void report_duration(char *buf, size_t len, double s, int exact)
{
    if (s < 0 || !isfinite(s)) s = 0;
    if (s == 0) {
        snprintf(buf, len, "0 s");
        return;
    }
    if (s < 0.01) {
        snprintf(buf, len, "%.2g ms", s * 1e3);
        return;
    }
    if (s < 59.95) {
        snprintf(buf, len, s < 9.995 ? "%.2f s" : "%.1f s", s);
        return;
    }
    long t = (long)(s + 0.5);
    int n = t >= 3600 ? snprintf(buf, len, "%ldh%02ldm", t / 3600, (t / 60) % 60)
                      : snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    if (exact && n > 0 && (size_t)n < len) snprintf(buf + n, len - (size_t)n, " (%.1f s)", s);
}

const char *report_rate_unit(const dataset *d, double *per_sample)
{
    int lm = d->kind == DATASET_TEXT;
    *per_sample = lm ? (double)d->targets : 1.0;
    return lm ? "tokens" : "samples";
}

/* Can the file that `key` names be written at the end of the run? It must
 * be a regular file or not exist yet, in a directory where it can be
 * created. Leaves an existing file as it is and removes one it created. */
static pt_status check_output(const char *key, const char *path)
{
    struct stat sb;
    int existed = stat(path, &sb) == 0;
    if (existed && !S_ISREG(sb.st_mode))
        return pt_fail(PT_ERR_INVALID, "%s %s is %s, not a regular file: give the path of a file to write",
                       key, path, safefile_kind(sb.st_mode));
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK, 0644);
    if (fd < 0) return pt_fail(PT_ERR_IO, "%s: cannot create %s: %s", key, path, strerror(errno));
    close(fd);
    if (!existed) unlink(path);
    return PT_OK;
}

pt_status report_open_outputs(FILE **metrics, const config *c, const comm_grid *g, const dataset *d,
                              const char *tensor_hashes, int *reporter)
{
    pt_status st = PT_OK;
    *metrics = NULL;
    if (g->rank == 0) {
        if (c->log_metrics[0]) st = check_output("log.metrics", c->log_metrics);
        if (!st && c->log_summary[0]) st = check_output("log.summary", c->log_summary);
        if (!st && c->log_trace[0]) st = check_output("log.trace", c->log_trace);
        if (!st && tensor_hashes) st = check_output("--tensor-hashes", tensor_hashes);
        if (!st && c->log_metrics[0]) {
            *metrics = fopen(c->log_metrics, "w");
            if (!*metrics)
                st = pt_fail(PT_ERR_IO, "log.metrics: cannot create %s: %s", c->log_metrics, strerror(errno));
            double per_sample;
            if (!st)
                fprintf(*metrics, "step,loss,lr,grad_norm,%s_per_s,elapsed_s\n", report_rate_unit(d, &per_sample));
        }
    }
    return comm_agree(g, st, reporter);
}

pt_status report_grid(const config *c, const comm_grid *g)
{
    /* each rank: its host and the CPUs its affinity mask allows */
    struct {
        char host[64];
        int cpus;
    } mine = {{0}, 0}, *all = NULL;
    snprintf(mine.host, sizeof mine.host, "%.63s", g->host);
    cpu_set_t set;
    mine.cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (g->rank == 0 && !(all = calloc((size_t)g->size, sizeof *all))) return pt_fail(PT_ERR_NOMEM, "out of memory");
    pt_status st = comm_gather_bytes(&mine, (int)sizeof mine, all, 0, g->world, "MPI_Gather of the hosts");
    if (st || g->rank != 0) {
        free(all);
        return st;
    }
    if (g->D > 1) {
        printf("grid: %d stage%s × %d replicas: world rank r is stage r mod %d of replica r / %d\n", g->P,
               g->P == 1 ? "" : "s", g->D, g->P, g->P);
        for (int i = 0; i < g->size && i < 64; i++)
            printf("  rank %d: stage %d of replica %d on %s\n", i, i % g->P, i / g->P, all[i].host);
        if (g->size > 64) printf("  ... (%d ranks)\n", g->size);
    }
    int short_of = 0, fewest = 1 << 30;
    for (int i = 0; i < g->size; i++)
        if (all[i].cpus > 0 && all[i].cpus < c->blas_threads) {
            short_of++;
            if (all[i].cpus < fewest) fewest = all[i].cpus;
        }
    if (short_of)
        printf("warning: train.blas_threads = %d but the affinity mask of %d rank%s allows only %d CPU%s: the "
               "BLAS threads of a rank share %s; start mpirun with --bind-to none, or give each rank %d cores "
               "with --map-by slot:PE=%d\n", c->blas_threads, short_of, short_of == 1 ? "" : "s", fewest,
               fewest == 1 ? "" : "s", fewest == 1 ? "one core" : "them", c->blas_threads, c->blas_threads);
    fflush(stdout);
    free(all);
    return PT_OK;
}

void report_plan(const config *c, const comm_grid *g, const model *m, const int *cuts, const schedule *train,
                 const dataset *d)
{
    if (g->rank != 0) return;
    int V = g->P * c->chunks;
    char chunks[96] = "";
    if (c->chunks > 1)
        snprintf(chunks, sizeof chunks, " of %d model chunks each (%d virtual stages)", c->chunks, V);
    char replicas[160] = "";
    if (g->D > 1)
        snprintf(replicas, sizeof replicas, " × %d data-parallel replicas (each trains %d of the micro-batches; "
                 "%s reduction, buckets of %g MiB)", g->D, c->micro_batches / g->D,
                 c->reduction == REDUCTION_FAST ? "fast" : "invariant", c->bucket_mb);
    printf("plan: %d stage%s%s%s, %s schedule, %d micro-batches of %d samples (global batch %d), %s partition, "
           "%s kernels\n",
           g->P, g->P > 1 ? "s" : "", chunks, replicas, sched_kind_name(c->schedule), c->micro_batches,
           config_micro_rows(c), c->batch_size, partition_kind_name(c->partition),
           kernels_isa_name(kernels_isa_current()));
    for (int s = 0; s < V; s++) {
        size_t params = 0;
        double flops = 0;
        for (int l = cuts[s]; l < cuts[s + 1]; l++) {
            params += layer_param_floats(&m->layers[l]);
            flops += layer_get(m->layers[l].kind)->flops(&m->layers[l]);
        }
        int r = s % g->P, k = s / g->P;
        if (c->chunks > 1)
            printf("  virtual stage %d (rank %d, chunk %d): ", s, r, k);
        else
            printf("  stage %d: ", s);
        printf("layers %d-%d, %zu parameters, %.2f MFLOP/sample forward, stash bound %d\n", cuts[s], cuts[s + 1] - 1,
               params, flops / 1e6, train->slots[r * c->chunks + k]);
    }
    if (d->kind == DATASET_TEXT)
        printf("  data: %s, %ld training bytes, %ld validation contexts of %d bytes, unigram entropy %.4f "
               "nats/byte\n", d->source, d->text_split, d->n_test, d->features, d->unigram_entropy);
    else
        printf("  data: %s, %ld training and %ld test samples\n", d->source, d->n_train, d->n_test);
    fflush(stdout);
}

void report_clock_start(report_clock *k, long first, long stop)
{
    k->first = first;
    k->stop = stop;
    k->t_start = k->last_t = comm_wtime();
    k->last_step = first;
}

void report_step(report_clock *k, FILE *metrics, const config *c, const comm_grid *g, const dataset *d,
                 long step, double loss, double norm)
{
    long first = k->first, stop = k->stop;
    lr_schedule ls = config_lr(c);
    double now = comm_wtime(), elapsed = now - k->t_start, per_sample;
    const char *unit = report_rate_unit(d, &per_sample);
    if (metrics)
        fprintf(metrics, "%ld,%.6f,%.6g,%.6f,%.1f,%.3f\n", step + 1, loss, lr_at(&ls, step + 1), norm,
                (double)(step + 1 - first) * c->batch_size * per_sample / elapsed, elapsed);
    if (g->rank == 0 && c->log_every > 0 &&
        ((step + 1) % c->log_every == 0 || step + 1 == stop || step == first)) {
        char eta[32], el[32];
        report_duration(el, sizeof el, elapsed, 0);
        report_duration(eta, sizeof eta, elapsed / (step + 1 - first) * (stop - step - 1), 0);
        printf("step %6ld/%ld  loss %.4f  lr %.2e  grad-norm %.3f  %8.0f %s/s  elapsed %s  eta %s\n",
               step + 1, c->steps, loss, lr_at(&ls, step + 1), norm,
               (double)(step + 1 - k->last_step) * c->batch_size * per_sample / (now - k->last_t), unit, el, eta);
        fflush(stdout);
        k->last_t = now;
        k->last_step = step + 1;
    }
}

void report_eval(const comm_grid *g, const dataset *d, long done, double loss, double acc)
{
    if (g->rank != 0) return;
    if (d->kind == DATASET_TEXT)
        printf("step %6ld: validation loss %.4f\n", done, loss);
    else
        printf("step %6ld: test loss %.4f, test accuracy %.4f\n", done, loss, acc);
    fflush(stdout);
}

/* Hashes one stage's tensors into h at their global ordinals (a tied copy
 * into h[total], as its source). */
static void hash_stage(const model *m, const stage *st, int total, unsigned long long *h)
{
    int before = model_tensor_count(m, 0, st->first);
    for (int k = 0; k < st->n_tensors; k++) {
        const stage_tensor *t = &st->tensors[k];
        char source[STAGE_TENSOR_NAME_MAX];
        if (t->tied_to >= 0) model_param_name(source, sizeof source, m->tied_embed, "w");
        const char *name = t->tied_to >= 0 ? source : t->name;
        XXH64_hash_t seed = XXH3_64bits(name, strlen(name));
        /* a tied copy is hashed once, as its source, and checked against it */
        h[t->tied_to >= 0 ? total : before + k] =
            XXH3_64bits_withSeed(st->params + t->offset, t->numel * sizeof(float), seed);
    }
}

/* Each slot of the array has one owner, so XOR combines them; the
 * "name hash" lines let two runs be compared tensor by tensor. */
pt_status report_fingerprint(const model *m, const stage *stages, int chunks, const comm_grid *g,
                             const char *hashes_path, char hex[33])
{
    int total = model_tensor_count(m, 0, m->n_layers);
    /* slot `total` holds the hash of a tied copy, checked against its source */
    unsigned long long *h = calloc((size_t)total + 1, sizeof *h);
    model_tensor *names = hashes_path && g->rank == 0 ? calloc((size_t)total + 1, sizeof *names) : NULL;
    if (!h || (hashes_path && g->rank == 0 && !names)) {
        free(h);
        free(names);
        return pt_fail(PT_ERR_NOMEM, "out of memory");
    }
    for (int c = 0; c < chunks; c++) hash_stage(m, &stages[c], total, h);
    pt_status rc = comm_allreduce_xor(h, total + 1, g->pipe, "MPI_Allreduce of the parameter fingerprint");
    if (!rc && m->tied_head >= 0 && h[total] != h[model_tied_source(m, m->tied_head, 0)])
        rc = pt_fail(PT_ERR_MISMATCH, "the tied copy layers.%d.w differs from layers.%d.w", m->tied_head,
                     m->tied_embed);
    if (!rc) {
        XXH128_hash_t f = XXH3_128bits(h, (size_t)total * sizeof *h);
        snprintf(hex, 33, "%016llx%016llx", (unsigned long long)f.high64, (unsigned long long)f.low64);
    }
    if (!rc && names) {
        model_tensors(m, names);
        FILE *f = fopen(hashes_path, "w");
        if (!f) rc = pt_fail(PT_ERR_IO, "--tensor-hashes: cannot create '%s'", hashes_path);
        for (int k = 0; f && k < total; k++) fprintf(f, "%s %016llx\n", names[k].name, h[k]);
        if (f && fclose(f) != 0) rc = pt_fail(PT_ERR_IO, "--tensor-hashes: cannot write '%s'", hashes_path);
    }
    free(names);
    free(h);
    return rc;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Training FLOPs of one step on this stage, for the samples its replica
 * trains (batch / D): forward, and backward counted as twice the forward,
 * except the model's first layer, whose input gradient is never computed. */
static double stage_step_flops(const model *m, const stage *st, const config *c, int D)
{
    double f = 0;
    for (int l = st->first; l < st->last; l++) {
        double fwd = layer_get(m->layers[l].kind)->flops(&m->layers[l]);
        f += fwd * (l == 0 && m->layers[l].kind == LAYER_LINEAR ? 2.0 : 3.0);
    }
    return f * c->batch_size / D;
}

/* One rank's figures, in this order, in report_gather_figures's array. */
enum { RANK_COMPUTE, RANK_WAIT, RANK_COMM, RANK_DATA, RANK_OPTIM, RANK_TOTAL, RANK_RSS_KIB,
       RANK_STASH, RANK_PARAMS, RANK_FLOPS, RANK_REDUCE, RANK_REDUCE_SPAN, RANK_REDUCE_BYTES, RANK_FIELDS };

pt_status report_gather_figures(const executor *ex, const stage *st, int chunks, const grad_reduce *red,
                                const model *m, const config *c, const comm_grid *g, long steps, double **out)
{
    double mine[RANK_FIELDS] = {
        [RANK_COMPUTE] = ex->t.compute, [RANK_WAIT] = ex->t.wait, [RANK_COMM] = ex->t.comm,
        [RANK_DATA] = ex->t.data, [RANK_OPTIM] = ex->t.optim, [RANK_TOTAL] = ex->t.total + ex->t.optim,
        [RANK_RSS_KIB] = (double)peak_rss_kib(), [RANK_REDUCE] = ex->t.reduce, [RANK_REDUCE_SPAN] = red->span,
        [RANK_REDUCE_BYTES] = (double)reduce_bytes(red)};
    for (int k = 0; k < chunks; k++) {
        mine[RANK_STASH] += (double)stage_stash_bytes(&st[k]);
        mine[RANK_PARAMS] += (double)st[k].n_params;
        mine[RANK_FLOPS] += stage_step_flops(m, &st[k], c, g->D) * (double)steps;
    }
    *out = NULL;
    double *all = g->rank == 0 ? calloc((size_t)g->size * RANK_FIELDS, sizeof *all) : NULL;
    if (g->rank == 0 && !all) return pt_fail(PT_ERR_NOMEM, "out of memory");
    pt_status rc =
        comm_gather_doubles(mine, RANK_FIELDS, all, 0, g->world, "MPI_Gather of the per-rank figures");
    if (rc) {
        free(all);
        return rc;
    }
    *out = all;
    return PT_OK;
}

/* The layers rank stage s holds: "a-b" per chunk, joined by commas. */
static void rank_layers(char *buf, size_t len, const int *cuts, int P, int chunks, int s)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (int k = 0; k < chunks && pos < len; k++) {
        int vs = k * P + s, n = snprintf(buf + pos, len - pos, "%s%d-%d", k ? "," : "", cuts[vs], cuts[vs + 1] - 1);
        if (n < 0) break;
        pos += (size_t)n;
    }
}

void report_breakdown(const config *c, const comm_grid *g, const int *cuts, const double *all,
                      double theoretical_bubble)
{
    int dp = g->D > 1;
    printf("\nper-rank breakdown (seconds over the training steps; bubble = waiting on receives%s):\n",
           dp ? "; reduce = waiting on the gradient reduction over the replicas" : "");
    printf("  rank %sstage layers     params   compute  bubble   comm   data  optim %s bubble%%  GFLOP/s  stash MiB  "
           "peak RSS MiB\n", dp ? "replica " : "", dp ? "reduce " : "");
    for (int i = 0; i < g->size; i++) {
        const double *v = all + (size_t)i * RANK_FIELDS;
        int s = i % g->P;
        char layers[128], replica[16] = "", reduce[16] = "";
        rank_layers(layers, sizeof layers, cuts, g->P, c->chunks, s);
        if (dp) {
            snprintf(replica, sizeof replica, "%7d ", i / g->P);
            snprintf(reduce, sizeof reduce, "%6.2f ", v[RANK_REDUCE]);
        }
        printf("  %4d %s%5d %-7s %9.0f %9.2f %7.2f %6.2f %6.2f %6.2f %s%7.1f%% %8.1f %10.1f %13.1f\n", i, replica, s,
               layers, v[RANK_PARAMS], v[RANK_COMPUTE], v[RANK_WAIT], v[RANK_COMM], v[RANK_DATA], v[RANK_OPTIM],
               reduce, v[RANK_TOTAL] > 0 ? 100.0 * v[RANK_WAIT] / v[RANK_TOTAL] : 0.0,
               v[RANK_COMPUTE] > 0 ? v[RANK_FLOPS] / v[RANK_COMPUTE] / 1e9 : 0.0,
               (v[RANK_STASH] + v[RANK_REDUCE_BYTES]) / 1048576.0, v[RANK_RSS_KIB] / 1024.0);
    }
    printf("  theoretical bubble of the %s schedule (F = BI = BW, transfers free) = %.1f%%\n",
           sched_kind_name(c->schedule), 100.0 * theoretical_bubble);
}

pt_status report_write_text(const char *path, const char *what, const char *text)
{
    pt_status st = PT_OK;
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0)
        st = pt_fail(PT_ERR_IO, "%s: cannot write '%s': %s", what, path, strerror(errno));
    if (f && fclose(f) != 0 && !st) st = pt_fail(PT_ERR_IO, "%s: cannot write '%s': %s", what, path, strerror(errno));
    return st;
}

/* log.summary: the run's figures as JSON, for scripts and benchmarks. */
static pt_status write_summary(const config *c, const comm_grid *g, const dataset *d, const int *cuts,
                               const double *all, const report_result *res)
{
    cJSON *j = cJSON_CreateObject(), *ranks = cJSON_CreateArray();
    cJSON_AddNumberToObject(j, "stages", g->P);
    cJSON_AddNumberToObject(j, "data_parallel", g->D);
    cJSON_AddStringToObject(j, "reduction", c->reduction == REDUCTION_FAST ? "fast" : "invariant");
    cJSON_AddNumberToObject(j, "micro_batches", c->micro_batches);
    cJSON_AddStringToObject(j, "schedule", sched_kind_name(c->schedule));
    cJSON_AddNumberToObject(j, "chunks", c->chunks);
    cJSON_AddStringToObject(j, "partition", partition_kind_name(c->partition));
    cJSON_AddNumberToObject(j, "batch_size", c->batch_size);
    cJSON_AddNumberToObject(j, "micro_batch_rows", config_micro_rows(c));
    cJSON_AddNumberToObject(j, "blas_threads", c->blas_threads);
    cJSON_AddStringToObject(j, "kernels", kernels_isa_name(kernels_isa_current())); /* rank 0's */
    cJSON_AddNumberToObject(j, "steps", (double)c->steps);
    cJSON_AddNumberToObject(j, "train_seconds", res->train_seconds);
    cJSON_AddNumberToObject(j, "throughput_samples_per_s", res->throughput);
    double per_sample;
    if (!strcmp(report_rate_unit(d, &per_sample), "tokens"))
        cJSON_AddNumberToObject(j, "throughput_tokens_per_s", res->throughput * per_sample);
    cJSON_AddNumberToObject(j, "test_loss", res->test_loss);
    cJSON_AddNumberToObject(j, "test_accuracy", res->test_acc);
    cJSON_AddNumberToObject(j, "theoretical_bubble", res->theoretical_bubble);
    cJSON_AddNumberToObject(j, "measured_step_s", res->measured_step);
    cJSON_AddNumberToObject(j, "predicted_step_s", res->predicted_step);
    cJSON_AddStringToObject(j, "parameter_fingerprint", res->fingerprint);
    for (int i = 0; all && i < g->size; i++) {
        const double *v = all + (size_t)i * RANK_FIELDS;
        int s = i % g->P;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rank", i);
        cJSON_AddNumberToObject(o, "stage", s);
        cJSON_AddNumberToObject(o, "replica", i / g->P);
        cJSON *vss = cJSON_CreateArray(), *ls = cJSON_CreateArray();
        for (int k = 0; k < c->chunks; k++) { /* chunk k: virtual stage k·P + s */
            int vs = k * g->P + s, range[2] = {cuts[vs], cuts[vs + 1] - 1};
            cJSON_AddItemToArray(vss, cJSON_CreateNumber(vs));
            cJSON_AddItemToArray(ls, cJSON_CreateIntArray(range, 2));
        }
        cJSON_AddItemToObject(o, "virtual_stages", vss);
        cJSON_AddItemToObject(o, "layers", ls);
        cJSON_AddNumberToObject(o, "params", v[RANK_PARAMS]);
        cJSON_AddNumberToObject(o, "flops", v[RANK_FLOPS]);
        cJSON_AddNumberToObject(o, "compute_s", v[RANK_COMPUTE]);
        cJSON_AddNumberToObject(o, "bubble_s", v[RANK_WAIT]);
        cJSON_AddNumberToObject(o, "comm_s", v[RANK_COMM]);
        cJSON_AddNumberToObject(o, "data_s", v[RANK_DATA]);
        cJSON_AddNumberToObject(o, "optim_s", v[RANK_OPTIM]);
        cJSON_AddNumberToObject(o, "total_s", v[RANK_TOTAL]);
        cJSON_AddNumberToObject(o, "bubble_fraction", v[RANK_TOTAL] > 0 ? v[RANK_WAIT] / v[RANK_TOTAL] : 0);
        cJSON_AddNumberToObject(o, "compute_gflops", v[RANK_COMPUTE] > 0 ? v[RANK_FLOPS] / v[RANK_COMPUTE] / 1e9 : 0);
        cJSON_AddNumberToObject(o, "stash_bytes", v[RANK_STASH]);
        cJSON_AddNumberToObject(o, "reduce_s", v[RANK_REDUCE]);
        cJSON_AddNumberToObject(o, "reduce_span_s", v[RANK_REDUCE_SPAN]);
        cJSON_AddNumberToObject(o, "reduce_bytes", v[RANK_REDUCE_BYTES]);
        cJSON_AddNumberToObject(o, "peak_rss_kib", v[RANK_RSS_KIB]);
        cJSON_AddItemToArray(ranks, o);
    }
    cJSON_AddItemToObject(j, "ranks", ranks);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    pt_status st = text ? report_write_text(c->log_summary, "log.summary", text)
                        : pt_fail(PT_ERR_NOMEM, "log.summary: out of memory");
    free(text);
    return st;
}

pt_status report_closing(const config *c, const comm_grid *g, const dataset *d, const int *cuts,
                         const double *all, const report_result *res)
{
    char took[48];
    report_duration(took, sizeof took, res->seconds, 1);
    int text = d->kind == DATASET_TEXT;
    printf("\n");
    if (!text) printf("test loss: %.4f\n", res->test_loss);
    printf("time: %s\n", took);
    double per_sample;
    const char *unit = report_rate_unit(d, &per_sample);
    if (res->trained && res->predicted_step > 0 && res->measured_step > 0)
        printf("step time: %.4f s measured (after the first step), %.4f s simulated from this run's op times "
               "(error %+.1f%%)\n",
               res->measured_step, res->predicted_step, 100.0 * (res->predicted_step / res->measured_step - 1));
    if (res->trained) printf("throughput: %.0f %s/s\n", res->throughput * per_sample, unit);
    if (text)
        printf("validation loss: %.4f (unigram entropy of the corpus: %.4f nats/byte)\n", res->test_loss,
               d->unigram_entropy);
    else
        printf("test accuracy: %.4f\n", res->test_acc);
    printf("parameter fingerprint: %s\n", res->fingerprint);
    fflush(stdout);
    if (!c->log_summary[0]) return PT_OK;
    return write_summary(c, g, d, cuts, all, res);
}
