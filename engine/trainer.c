#include "trainer.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <xxhash.h>

#include "dataset.h"
#include "executor.h"
#include "layers.h"
#include "partition.h"
#include "persist.h"
#include "rng.h"
#include "schedule.h"
#include "stage.h"

/* Everything one rank holds for a run; freed by run_free in reverse order. */
typedef struct {
    model m;
    int *cuts;
    schedule train_sc, eval_sc;
    dataset data;
    stage st;
    executor ex;
    double *reduce; /* per layer Σg², then loss, then non-finite flag */
    MPI_Comm tied;  /* the stages holding the tied embedding and its copy */
    double *gen_probs; /* generate: sampling weights over the vocabulary */
    int tied_src, tied_copy; /* this stage's tensor indices of the two, -1: absent */
    FILE *metrics;
    char data_hash[33]; /* dataset_fingerprint of the data read */
    persist_run pr;     /* train: the run directory's lock, the history checkpoints record */
} run;

static void run_free(run *r)
{
    persist_finish(&r->pr);
    if (r->metrics) fclose(r->metrics);
    free(r->gen_probs);
    if (r->tied != MPI_COMM_NULL) MPI_Comm_free(&r->tied);
    free(r->reduce);
    executor_free(&r->ex);
    stage_free(&r->st);
    dataset_close(&r->data);
    schedule_free(&r->eval_sc);
    schedule_free(&r->train_sc);
    free(r->cuts);
    model_free(&r->m);
}

/* Every duration printed: "0 s", "4.3 ms", "0.04 s", "12.3 s", "2m03s",
 * "1h05m"; with `exact`, a duration of a minute or more also gets its
 * seconds: "2m03s (123.4 s)". */
static void fmt_duration(char *buf, size_t len, double s, int exact)
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

/* The throughput unit of a run, the same in the progress lines, the metrics
 * CSV, the summary and the closing line: tokens for a language model (text:
 * data.targets tokens per sample), samples otherwise. *per_sample is the
 * number of units in one sample. */
static const char *rate_unit(const run *r, double *per_sample)
{
    int lm = r->data.kind == DATASET_TEXT;
    *per_sample = lm ? (double)r->data.targets : 1.0;
    return lm ? "tokens" : "samples";
}

/* Model, partition and schedules: the same on every rank, so an error here
 * is reached by all ranks alike. */
static pt_status plan(run *r, const config *c, const comm_grid *g)
{
    pt_status st = dataset_open(&r->data, c);
    if (st) return st;
    if ((st = model_parse(&r->m, c->model_layers, r->data.features))) return st;
    if (c->model_tie_embeddings && (st = model_tie_embeddings(&r->m))) return pt_wrap(st, "model.tie_embeddings: ");
    if (r->m.targets != r->data.targets)
        return pt_fail(PT_ERR_INVALID,
                       "model.layers: the model predicts %d target%s per sample but the data set (%s) has %d: "
                       "%s",
                       r->m.targets, r->m.targets == 1 ? "" : "s", c->data_dataset, r->data.targets,
                       r->data.targets > 1 ? "a language model ends with 'lmhead V'"
                                           : "a classifier ends with a layer of one output per class");
    if (r->m.layers[0].kind == LAYER_EMBED && r->m.layers[0].vocab < r->data.classes)
        return pt_fail(PT_ERR_INVALID,
                       "model.layers item 0 (embed %d ...): the vocabulary must hold the %d token values of "
                       "the data set (%s)", r->m.layers[0].vocab, r->data.classes, c->data_dataset);
    if (r->m.classes != r->data.classes)
        return pt_fail(PT_ERR_INVALID,
                       "model.layers: the last layer has %d outputs per target but the data set (%s) has %d classes",
                       r->m.classes, c->data_dataset, r->data.classes);
    r->cuts = calloc((size_t)g->P + 1, sizeof *r->cuts);
    if (!r->cuts) return pt_fail(PT_ERR_NOMEM, "out of memory");
    if ((st = partition_layers(&r->m, g->P, c->partition, c->partition_spec, r->cuts))) return st;
    if (c->micro_batches > comm_max_micro_batches(g))
        return pt_fail(PT_ERR_INVALID, "pipeline.micro_batches = %d: this MPI library's tags allow at most %d",
                       c->micro_batches, comm_max_micro_batches(g));
    if ((st = schedule_build(&r->train_sc, c->schedule, g->P, c->micro_batches))) return st;
    if ((st = schedule_validate(&r->train_sc, NULL)))
        return pt_wrap(st, "the %s schedule failed validation: ", sched_kind_name(c->schedule));
    if ((st = schedule_build(&r->eval_sc, SCHED_FORWARD_ONLY, g->P, c->micro_batches))) return st;
    return schedule_validate(&r->eval_sc, NULL);
}

/* The parameter fingerprint: XXH3-64 of each tensor's bytes seeded with the
 * hash of its name, placed at the tensor's global ordinal, combined across
 * ranks with XOR (each slot has one owner), then XXH3-128 over the ordered
 * array. With hashes_path, rank 0 also writes one "name hash" line per
 * tensor, so two runs can be compared tensor by tensor. */
static pt_status fingerprint(const run *r, const comm_grid *g, const char *hashes_path, char hex[33])
{
    int total = model_tensor_count(&r->m, 0, r->m.n_layers), before = model_tensor_count(&r->m, 0, r->st.first);
    /* slot `total` holds the hash of a tied copy, checked against its source */
    unsigned long long *h = calloc((size_t)total + 1, sizeof *h);
    model_tensor *names = hashes_path && g->rank == 0 ? calloc((size_t)total + 1, sizeof *names) : NULL;
    if (!h || (hashes_path && g->rank == 0 && !names)) {
        free(h);
        return pt_fail(PT_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < r->st.n_tensors; k++) {
        const stage_tensor *t = &r->st.tensors[k];
        char source[STAGE_TENSOR_NAME_MAX];
        if (t->tied_to >= 0) model_param_name(source, sizeof source, r->m.tied_embed, "w");
        const char *name = t->tied_to >= 0 ? source : t->name;
        XXH64_hash_t seed = XXH3_64bits(name, strlen(name));
        /* a tied copy is hashed once, as its source, and checked against it */
        h[t->tied_to >= 0 ? total : before + k] =
            XXH3_64bits_withSeed(r->st.params + t->offset, t->numel * sizeof(float), seed);
    }
    pt_status st = comm_allreduce_xor(h, total + 1, g->pipe, "MPI_Allreduce of the parameter fingerprint");
    if (!st && r->m.tied_head >= 0 && h[total] != h[model_tied_source(&r->m, r->m.tied_head, 0)])
        st = pt_fail(PT_ERR_MISMATCH, "the tied copy layers.%d.w differs from layers.%d.w", r->m.tied_head,
                     r->m.tied_embed);
    if (!st) {
        XXH128_hash_t f = XXH3_128bits(h, (size_t)total * sizeof *h);
        snprintf(hex, 33, "%016llx%016llx", (unsigned long long)f.high64, (unsigned long long)f.low64);
    }
    if (!st && names) {
        model_tensors(&r->m, names);
        FILE *f = fopen(hashes_path, "w");
        if (!f) st = pt_fail(PT_ERR_IO, "--tensor-hashes: cannot create '%s'", hashes_path);
        for (int k = 0; f && k < total; k++) fprintf(f, "%s %016llx\n", names[k].name, h[k]);
        if (f && fclose(f) != 0) st = pt_fail(PT_ERR_IO, "--tensor-hashes: cannot write '%s'", hashes_path);
    }
    free(names);
    free(h);
    return st;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Training FLOPs of one step on this stage: forward, and backward counted as
 * twice the forward, except the model's first layer, whose input gradient is
 * never computed. */
static double stage_step_flops(const run *r, const config *c)
{
    double f = 0;
    for (int l = r->st.first; l < r->st.last; l++) {
        double fwd = layer_get(r->m.layers[l].kind)->flops(&r->m.layers[l]);
        f += fwd * (l == 0 && r->m.layers[l].kind == LAYER_LINEAR ? 2.0 : 3.0);
    }
    return f * c->batch_size;
}

enum { RANK_COMPUTE, RANK_WAIT, RANK_COMM, RANK_DATA, RANK_OPTIM, RANK_TOTAL, RANK_RSS_KIB,
       RANK_STASH, RANK_PARAMS, RANK_FLOPS, RANK_FIELDS };

/* Gathers every rank's figures on rank 0 (collective); NULL elsewhere. */
static pt_status gather_figures(const run *r, const config *c, const comm_grid *g, long steps, double **out)
{
    double mine[RANK_FIELDS] = {
        [RANK_COMPUTE] = r->ex.t.compute, [RANK_WAIT] = r->ex.t.wait, [RANK_COMM] = r->ex.t.comm,
        [RANK_DATA] = r->ex.t.data, [RANK_OPTIM] = r->ex.t.optim, [RANK_TOTAL] = r->ex.t.total + r->ex.t.optim,
        [RANK_RSS_KIB] = (double)peak_rss_kib(), [RANK_STASH] = (double)stage_stash_bytes(&r->st),
        [RANK_PARAMS] = (double)r->st.n_params, [RANK_FLOPS] = stage_step_flops(r, c) * (double)steps};
    *out = NULL;
    double *all = g->rank == 0 ? calloc((size_t)g->size * RANK_FIELDS, sizeof *all) : NULL;
    if (g->rank == 0 && !all) return pt_fail(PT_ERR_NOMEM, "out of memory");
    int rc = MPI_Gather(mine, RANK_FIELDS, MPI_DOUBLE, all, RANK_FIELDS, MPI_DOUBLE, 0, g->world);
    if (rc != MPI_SUCCESS) {
        free(all);
        return pt_fail(PT_ERR_MPI, "MPI_Gather of the per-rank figures failed");
    }
    *out = all;
    return PT_OK;
}

static double theoretical_bubble(const comm_grid *g, const config *c)
{
    return (g->P - 1) / (double)(c->micro_batches + g->P - 1);
}

/* Rank 0 prints one line per rank: where its time went. */
static void print_breakdown(const run *r, const config *c, const comm_grid *g, const double *all)
{
    printf("\nper-rank breakdown (seconds over the training steps; bubble = waiting on receives):\n");
    printf("  rank stage layers     params   compute  bubble   comm   data  optim  bubble%%  GFLOP/s  stash MiB  peak RSS MiB\n");
    for (int i = 0; i < g->size; i++) {
        const double *v = all + (size_t)i * RANK_FIELDS;
        int s = i % g->P;
        char layers[32];
        snprintf(layers, sizeof layers, "%d-%d", r->cuts[s], r->cuts[s + 1] - 1);
        printf("  %4d %5d %-7s %9.0f %9.2f %7.2f %6.2f %6.2f %6.2f %7.1f%% %8.1f %10.1f %13.1f\n", i, s, layers,
               v[RANK_PARAMS], v[RANK_COMPUTE], v[RANK_WAIT], v[RANK_COMM], v[RANK_DATA], v[RANK_OPTIM],
               v[RANK_TOTAL] > 0 ? 100.0 * v[RANK_WAIT] / v[RANK_TOTAL] : 0.0,
               v[RANK_COMPUTE] > 0 ? v[RANK_FLOPS] / v[RANK_COMPUTE] / 1e9 : 0.0, v[RANK_STASH] / 1048576.0,
               v[RANK_RSS_KIB] / 1024.0);
    }
    printf("  theoretical bubble (P-1)/(M+P-1) = %.1f%%\n", 100.0 * theoretical_bubble(g, c));
}

/* log.summary: the run's figures as JSON, for scripts and benchmarks. */
static pt_status write_summary(const run *r, const config *c, const comm_grid *g, const double *all,
                               double throughput, double train_time, double test_loss, double test_acc,
                               const char *fp)
{
    cJSON *j = cJSON_CreateObject(), *ranks = cJSON_CreateArray();
    cJSON_AddNumberToObject(j, "stages", g->P);
    cJSON_AddNumberToObject(j, "micro_batches", c->micro_batches);
    cJSON_AddStringToObject(j, "schedule", sched_kind_name(c->schedule));
    cJSON_AddStringToObject(j, "partition", partition_kind_name(c->partition));
    cJSON_AddNumberToObject(j, "batch_size", c->batch_size);
    cJSON_AddNumberToObject(j, "micro_batch_rows", config_micro_rows(c));
    cJSON_AddNumberToObject(j, "blas_threads", c->blas_threads);
    cJSON_AddNumberToObject(j, "steps", (double)c->steps);
    cJSON_AddNumberToObject(j, "train_seconds", train_time);
    cJSON_AddNumberToObject(j, "throughput_samples_per_s", throughput);
    double per_sample;
    if (!strcmp(rate_unit(r, &per_sample), "tokens"))
        cJSON_AddNumberToObject(j, "throughput_tokens_per_s", throughput * per_sample);
    cJSON_AddNumberToObject(j, "test_loss", test_loss);
    cJSON_AddNumberToObject(j, "test_accuracy", test_acc);
    cJSON_AddNumberToObject(j, "theoretical_bubble", theoretical_bubble(g, c));
    cJSON_AddStringToObject(j, "parameter_fingerprint", fp);
    for (int i = 0; all && i < g->size; i++) {
        const double *v = all + (size_t)i * RANK_FIELDS;
        int s = i % g->P;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rank", i);
        cJSON_AddNumberToObject(o, "stage", s);
        cJSON_AddNumberToObject(o, "first_layer", r->cuts[s]);
        cJSON_AddNumberToObject(o, "last_layer", r->cuts[s + 1] - 1);
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
        cJSON_AddNumberToObject(o, "peak_rss_kib", v[RANK_RSS_KIB]);
        cJSON_AddItemToArray(ranks, o);
    }
    cJSON_AddItemToObject(j, "ranks", ranks);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    pt_status st = PT_OK;
    FILE *f = text ? fopen(c->log_summary, "w") : NULL;
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0) st = pt_fail(PT_ERR_IO, "log.summary: cannot write '%s'", c->log_summary);
    if (f && fclose(f) != 0 && !st) st = pt_fail(PT_ERR_IO, "log.summary: cannot write '%s'", c->log_summary);
    free(text);
    return st;
}

static pt_status evaluate(run *r, const comm_grid *g, double *loss, double *acc)
{
    r->ex.loss_sum = 0;
    r->ex.correct = r->ex.counted = 0;
    long per = (long)r->ex.M * r->ex.rows;
    exec_times keep = r->ex.t;
    for (long first = 0; first < r->data.n_test; first += per) {
        pt_status st = executor_eval_step(&r->ex, &r->eval_sc.ranks[g->stage], first);
        if (st) return st;
    }
    r->ex.t = keep;
    double v[3] = {r->ex.loss_sum, (double)r->ex.correct, (double)r->ex.counted};
    pt_status st = comm_allreduce_sum(v, 3, g->pipe, "MPI_Allreduce of the evaluation results");
    if (st) return st;
    *loss = v[2] > 0 ? v[0] / v[2] : NAN;
    *acc = v[2] > 0 ? v[1] / v[2] : NAN;
    return PT_OK;
}

/* One optimizer step after the op list: the fused reduction of per-layer Σg²,
 * loss and non-finite flag, then clipping and the update. Returns
 * PT_ERR_NONFINITE (on every rank alike) when the step must stop. */
static pt_status finish_step(run *r, const config *c, const comm_grid *g, long step, double *loss,
                             double *norm, int *skipped)
{
    int L = r->m.n_layers;
    double t0 = MPI_Wtime();
    memset(r->reduce, 0, (size_t)(L + 2) * sizeof *r->reduce);
    stage_grad_sumsq(&r->st, r->reduce);
    if (g->stage == g->P - 1) r->reduce[L] = r->ex.loss_sum / c->micro_batches;
    r->reduce[L + 1] = !isfinite(r->reduce[L]);
    for (int l = r->st.first; l < r->st.last; l++) r->reduce[L + 1] += !isfinite(r->reduce[l]);
    double t1 = MPI_Wtime();
    pt_status st = comm_allreduce_sum(r->reduce, L + 2, g->pipe, "the fused end-of-step reduction");
    double t2 = MPI_Wtime();
    r->ex.t.comm += t2 - t1;
    t0 += t2 - t1; /* the reduction is communication, not optimizer time */
    if (st) return st;
    double sum = 0.0;
    for (int l = 0; l < L; l++) sum += r->reduce[l]; /* global layer order */
    *norm = sqrt(sum);
    *loss = r->reduce[L];
    *skipped = 0;
    if (r->reduce[L + 1] != 0.0 || !isfinite(*loss)) {
        int bad = -1;
        for (int l = 0; l < L && bad < 0; l++)
            if (!isfinite(r->reduce[l])) bad = l;
        int holder = 0;
        while (bad >= 0 && holder + 1 < g->P && r->cuts[holder + 1] <= bad) holder++;
        char where[160];
        if (bad >= 0)
            snprintf(where, sizeof where, "gradient of layer %d (%s) on stage %d", bad,
                     layer_get(r->m.layers[bad].kind)->kind_name, holder);
        else
            snprintf(where, sizeof where, "loss (computed on stage %d)", g->P - 1);
        if (c->nonfinite == NONFINITE_STOP)
            return pt_fail(PT_ERR_NONFINITE,
                           "step %ld: non-finite %s; training stopped (lower train.lr, set "
                           "train.grad_clip, or set train.nonfinite = skip to skip such steps)",
                           step + 1, where);
        if (g->rank == 0) printf("step %ld: non-finite %s: step skipped\n", step + 1, where);
        *skipped = 1;
        r->ex.t.optim += MPI_Wtime() - t0;
        return PT_OK;
    }
    if (c->grad_clip > 0 && *norm > c->grad_clip) stage_scale_grads(&r->st, (float)(c->grad_clip / (*norm + 1e-6)));
    lr_schedule ls = config_lr(c);
    optim_config oc = config_optim(c);
    stage_optim_step(&r->st, &oc, lr_at(&ls, step + 1), step + 1);
    r->ex.t.optim += MPI_Wtime() - t0;
    return PT_OK;
}

/* Tied embeddings: both holders get g_embed + g_head, so the two copies take
 * the same update. On one stage the sum is local; across two stages it is an
 * all-reduce of two ranks — the same single addition either way. */
static pt_status sync_tied(run *r)
{
    if (r->m.tied_head < 0) return PT_OK;
    const stage_tensor *src = r->tied_src >= 0 ? &r->st.tensors[r->tied_src] : NULL;
    const stage_tensor *copy = r->tied_copy >= 0 ? &r->st.tensors[r->tied_copy] : NULL;
    if (src && copy) {
        float *a = r->st.grads + src->offset, *b = r->st.grads + copy->offset;
        for (size_t i = 0; i < src->numel; i++) b[i] = a[i] = a[i] + b[i];
        return PT_OK;
    }
    const stage_tensor *t = src ? src : copy;
    return t ? comm_tied_sum(r->st.grads + t->offset, t->numel, r->tied) : PT_OK;
}

static pt_status setup(run *r, const config *c, const comm_grid *g, int *reporter)
{
    /* hosts may see different files: the ranks agree on one verdict, then
     * check that they all read the same data */
    pt_status st = comm_agree(g, plan(r, c, g), reporter);
    if (st) return st;
    char data_line[64];
    dataset_fingerprint(&r->data, r->data_hash);
    snprintf(data_line, sizeof data_line, "data = %s\n", r->data_hash);
    if ((st = comm_same_text(g, "the data set (a hash of the bytes read from data.path)", data_line,
                             "every host must read the same data: copy the same files to every host, or put "
                             "data.path on a shared file system", reporter))) return st;
    *reporter = -1;
    int s = g->stage;
    int slots = schedule_stash_bound(c->schedule, g->P, c->micro_batches, s);
    if ((st = stage_init(&r->st, &r->m, r->cuts[s], r->cuts[s + 1], config_micro_rows(c), slots, c->seed)))
        return st;
    if ((st = executor_init(&r->ex, g, &r->st, &r->data, c->micro_batches, config_micro_rows(c),
                            r->data.targets, r->m.classes, slots, c->seed)))
        return st;
    if ((c->fault_kind == FAULT_ERROR || c->fault_kind == FAULT_CRASH) && c->fault_rank == g->rank)
        r->ex.fault = (exec_fault){c->fault_kind, c->fault_step, c->fault_layer};
    if (c->fault_kind == FAULT_NAN) /* every stage checks whether it holds the layer */
        r->ex.fault = (exec_fault){c->fault_kind, c->fault_step, c->fault_layer};
    executor_install_crash_report(&r->ex);
    r->tied_src = r->tied_copy = -1;
    if (r->m.tied_head >= 0) {
        int a = 0, b = 0;
        while (a + 1 < g->P && r->cuts[a + 1] <= r->m.tied_embed) a++;
        while (b + 1 < g->P && r->cuts[b + 1] <= r->m.tied_head) b++;
        char name[STAGE_TENSOR_NAME_MAX];
        model_param_name(name, sizeof name, r->m.tied_embed, "w");
        r->tied_src = stage_find_tensor(&r->st, name);
        for (int k = 0; k < r->st.n_tensors; k++)
            if (r->st.tensors[k].tied_to >= 0) r->tied_copy = k;
        if (a != b && (st = comm_tied_group(g, a, b, &r->tied))) return st;
    }
    r->reduce = calloc((size_t)r->m.n_layers + 2, sizeof *r->reduce);
    if (!r->reduce) return pt_fail(PT_ERR_NOMEM, "out of memory");
    return PT_OK;
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
                       key, path, data_file_kind(sb.st_mode));
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK, 0644);
    if (fd < 0) return pt_fail(PT_ERR_IO, "%s: cannot create %s: %s", key, path, strerror(errno));
    close(fd);
    if (!existed) unlink(path);
    return PT_OK;
}

/* Rank 0 checks every file the run writes (log.metrics, log.summary,
 * --tensor-hashes) before step 1 and opens the metrics CSV; the ranks agree. */
static pt_status open_outputs(run *r, const config *c, const comm_grid *g, const trainer_options *opt,
                              int *reporter)
{
    pt_status st = PT_OK;
    if (g->rank == 0) {
        if (c->log_metrics[0]) st = check_output("log.metrics", c->log_metrics);
        if (!st && c->log_summary[0]) st = check_output("log.summary", c->log_summary);
        if (!st && opt->tensor_hashes) st = check_output("--tensor-hashes", opt->tensor_hashes);
        if (!st && c->log_metrics[0]) {
            r->metrics = fopen(c->log_metrics, "w");
            if (!r->metrics)
                st = pt_fail(PT_ERR_IO, "log.metrics: cannot create %s: %s", c->log_metrics, strerror(errno));
            double per_sample;
            if (!st) fprintf(r->metrics, "step,loss,lr,grad_norm,%s_per_s,elapsed_s\n", rate_unit(r, &per_sample));
        }
    }
    return comm_agree(g, st, reporter);
}

static void print_plan(const run *r, const config *c, const comm_grid *g)
{
    if (g->rank != 0) return;
    printf("plan: %d stage%s, %s schedule, %d micro-batches of %d samples (global batch %d), %s partition\n",
           g->P, g->P > 1 ? "s" : "", sched_kind_name(c->schedule), c->micro_batches, config_micro_rows(c),
           c->batch_size, partition_kind_name(c->partition));
    for (int s = 0; s < g->P; s++) {
        size_t params = 0;
        double flops = 0;
        for (int l = r->cuts[s]; l < r->cuts[s + 1]; l++) {
            params += layer_param_floats(&r->m.layers[l]);
            flops += layer_get(r->m.layers[l].kind)->flops(&r->m.layers[l]);
        }
        printf("  stage %d: layers %d-%d, %zu parameters, %.2f MFLOP/sample forward, stash bound %d\n", s,
               r->cuts[s], r->cuts[s + 1] - 1, params, flops / 1e6,
               schedule_stash_bound(c->schedule, g->P, c->micro_batches, s));
    }
    if (r->data.kind == DATASET_TEXT)
        printf("  data: %s, %ld training bytes, %ld validation contexts of %d bytes, unigram entropy %.4f "
               "nats/byte\n", r->data.source, r->data.text_split, r->data.n_test, r->data.features,
               r->data.unigram_entropy);
    else
        printf("  data: %s, %ld training and %ld test samples\n", r->data.source, r->data.n_train, r->data.n_test);
    fflush(stdout);
}

/* Is a checkpoint due after `done` steps of a run that stops after `stop`? */
static int checkpoint_due(const config *c, long done, long stop)
{
    if (!c->checkpoint_dir[0]) return 0;
    return done == stop || (c->checkpoint_every > 0 && done % c->checkpoint_every == 0);
}

/* Trains steps [first, stop). */
static pt_status train_loop(run *r, const config *c, const comm_grid *g, long first, long stop, long *trained,
                            int *reporter)
{
    double t_start = MPI_Wtime(), last_t = t_start;
    long last_step = first;
    lr_schedule ls = config_lr(c);
    for (long step = first; step < stop; step++) {
        *reporter = -1;
        stage_zero_grad(&r->st);
        pt_status st = executor_train_step(&r->ex, &r->train_sc.ranks[g->stage], step);
        if (!st) st = sync_tied(r);
        if (st) return st;
        double loss, norm;
        int skipped;
        if ((st = finish_step(r, c, g, step, &loss, &norm, &skipped))) {
            if (st == PT_ERR_NONFINITE) *reporter = 0;
            return st;
        }
        (*trained)++;
        double now = MPI_Wtime(), elapsed = now - t_start, per_sample;
        const char *unit = rate_unit(r, &per_sample);
        if (r->metrics)
            fprintf(r->metrics, "%ld,%.6f,%.6g,%.6f,%.1f,%.3f\n", step + 1, loss, lr_at(&ls, step + 1), norm,
                    (double)(step + 1 - first) * c->batch_size * per_sample / elapsed, elapsed);
        if (g->rank == 0 && c->log_every > 0 &&
            ((step + 1) % c->log_every == 0 || step + 1 == stop || step == first)) {
            char eta[32], el[32];
            fmt_duration(el, sizeof el, elapsed, 0);
            fmt_duration(eta, sizeof eta, elapsed / (step + 1 - first) * (stop - step - 1), 0);
            printf("step %6ld/%ld  loss %.4f  lr %.2e  grad-norm %.3f  %8.0f %s/s  elapsed %s  eta %s\n",
                   step + 1, c->steps, loss, lr_at(&ls, step + 1), norm,
                   (double)(step + 1 - last_step) * c->batch_size * per_sample / (now - last_t), unit, el, eta);
            fflush(stdout);
            last_t = now;
            last_step = step + 1;
        }
        if (c->eval_every > 0 && (step + 1) % c->eval_every == 0 && step + 1 < stop) {
            double t0 = MPI_Wtime(), vloss, vacc;
            *reporter = -1;
            if ((st = evaluate(r, g, &vloss, &vacc))) return st;
            if (g->rank == 0) {
                if (r->data.kind == DATASET_TEXT)
                    printf("step %6ld: validation loss %.4f\n", step + 1, vloss);
                else
                    printf("step %6ld: test loss %.4f, test accuracy %.4f\n", step + 1, vloss, vacc);
                fflush(stdout);
            }
            t_start += MPI_Wtime() - t0; /* evaluation time is not training time */
        }
        if (checkpoint_due(c, step + 1, stop)) {
            double t0 = MPI_Wtime();
            int crash = c->fault_kind == FAULT_CHECKPOINT_CRASH && c->fault_rank == g->rank &&
                        c->fault_step == step + 1 ? 1 : -1;
            if ((st = persist_save(c, g, &r->pr, &r->m, r->cuts, &r->st, step + 1, crash, reporter))) return st;
            t_start += MPI_Wtime() - t0; /* checkpoint time is not training time */
        }
    }
    return PT_OK;
}

/* ---- generation ------------------------------------------------------------ */

typedef struct {
    run *r;
    const trainer_options *opt;
    uint8_t **seq; /* per prompt: prompt + generated bytes */
    int *len, *next;
    int T, V, token; /* context, vocabulary, index of the token being generated */
} gen_state;

/* Stage 0: the last T bytes of sequence mb, right-padded (causal attention
 * keeps the padding from reaching the position read). */
static void gen_inputs(void *ctx, int mb, float *x)
{
    gen_state *s = ctx;
    int n = s->len[mb] < s->T ? s->len[mb] : s->T;
    const uint8_t *w = s->seq[mb] + s->len[mb] - n;
    for (int t = 0; t < s->T; t++) x[t] = t < n ? (float)w[t] : 0.0f;
}

/* Last stage: samples the next byte of sequence mb from the logits at its
 * last position, with temperature and top-k, from the counter-based RNG keyed
 * on (seed, token, prompt): the same text whatever the number of stages. */
static void gen_outputs(void *ctx, int mb, const float *out)
{
    gen_state *s = ctx;
    int pos = (s->len[mb] < s->T ? s->len[mb] : s->T) - 1;
    const float *logit = out + (size_t)pos * s->V;
    int best = 0;
    for (int v = 1; v < s->V; v++)
        if (logit[v] > logit[best]) best = v;
    if (s->opt->temperature <= 0.0f) {
        s->next[mb] = best;
        return;
    }
    double *p = s->r->gen_probs;
    /* top-k: the k-th largest logit is the threshold */
    float cut = -INFINITY;
    if (s->opt->top_k > 0 && s->opt->top_k < s->V) {
        for (int v = 0; v < s->V; v++) p[v] = logit[v];
        for (int k = 0; k < s->opt->top_k; k++) {
            int m = 0;
            for (int v = 1; v < s->V; v++)
                if (p[v] > p[m]) m = v;
            cut = (float)p[m];
            p[m] = -INFINITY;
        }
    }
    double sum = 0;
    for (int v = 0; v < s->V; v++) {
        p[v] = logit[v] >= cut ? exp(((double)logit[v] - logit[best]) / s->opt->temperature) : 0.0;
        sum += p[v];
    }
    rng_key key = {s->opt->gen_seed, RNG_STREAM_GENERATE, (uint32_t)s->token, (uint32_t)mb, 0};
    double u = rng_uniform(key, 0) * sum, acc = 0;
    int pick = best;
    for (int v = 0; v < s->V; v++) {
        acc += p[v];
        if (p[v] > 0 && u < acc) {
            pick = v;
            break;
        }
    }
    s->next[mb] = pick;
}

static pt_status generate(run *r, const comm_grid *g, const trainer_options *opt)
{
    if (r->data.kind != DATASET_TEXT || r->m.loss != LOSS_LM)
        return pt_fail(PT_ERR_INVALID, "generate needs a language model (a checkpoint of a text model ending in lmhead)");
    int n = opt->n_prompts;
    gen_state s = {r, opt, calloc((size_t)n, sizeof(uint8_t *)), calloc((size_t)n, sizeof(int)),
                   calloc((size_t)n, sizeof(int)), r->data.features, r->m.classes, 0};
    r->gen_probs = calloc((size_t)s.V, sizeof *r->gen_probs);
    pt_status st = s.seq && s.len && s.next && r->gen_probs ? PT_OK : pt_fail(PT_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < n; i++) {
        size_t plen = strlen(opt->prompts[i]);
        s.seq[i] = malloc(plen + (size_t)opt->gen_tokens + 2);
        if (!s.seq[i]) {
            st = pt_fail(PT_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(s.seq[i], opt->prompts[i], plen);
        if (plen == 0) s.seq[i][plen++] = '\n'; /* an empty prompt starts a new line */
        s.len[i] = (int)plen;
    }
    exec_generate hooks = {gen_inputs, gen_outputs, &s};
    r->ex.gen = &hooks;
    double t0 = MPI_Wtime();
    for (s.token = 0; !st && s.token < opt->gen_tokens; s.token++) {
        st = executor_eval_step(&r->ex, &r->eval_sc.ranks[g->stage], 0);
        int rc = st ? MPI_SUCCESS : MPI_Bcast(s.next, n, MPI_INT, g->P - 1, g->pipe);
        if (rc != MPI_SUCCESS) st = pt_fail(PT_ERR_MPI, "MPI_Bcast of generated tokens failed");
        for (int i = 0; !st && i < n; i++) s.seq[i][s.len[i]++] = (uint8_t)s.next[i];
    }
    r->ex.gen = NULL;
    if (!st && g->rank == 0) {
        double dt = MPI_Wtime() - t0;
        for (int i = 0; i < n; i++) {
            printf("--- prompt %d ---\n", i + 1);
            fwrite(s.seq[i], 1, (size_t)s.len[i], stdout);
            printf("\n");
        }
        char took[48];
        fmt_duration(took, sizeof took, dt, 1);
        printf("---\ngenerated %d bytes for %d prompt%s in %s (%.0f tokens/s)\n", opt->gen_tokens, n,
               n == 1 ? "" : "s", took, dt > 0 ? (double)opt->gen_tokens * n / dt : 0.0);
        fflush(stdout);
    }
    for (int i = 0; s.seq && i < n; i++) free(s.seq[i]);
    free(s.seq);
    free(s.len);
    free(s.next);
    return st;
}

pt_status trainer_run(const config *c, const comm_grid *g, const trainer_options *opt, int *reporter)
{
    run r;
    memset(&r, 0, sizeof r);
    openblas_set_num_threads(c->blas_threads);
    r.tied = MPI_COMM_NULL;
    pt_status st = setup(&r, c, g, reporter);
    if (!st) st = open_outputs(&r, c, g, opt, reporter);
    if (st) goto done;
    print_plan(&r, c, g);
    if (opt->mode == TRAINER_TRAIN) {
        char command[CONFIG_STR_MAX + 64];
        snprintf(command, sizeof command, "pipetrain train %s", opt->config_path ? opt->config_path : "");
        if ((st = persist_start(&r.pr, c, g, opt->resume, opt->init, r.data_hash, command, reporter))) goto done;
    }

    long first = 0;
    const char *from = opt->resume ? opt->resume : opt->init;
    if (from) {
        if ((st = persist_load(from, g, &r.m, &r.st, opt->resume != NULL, &first, reporter))) goto done;
        long saved = first; /* the checkpoint's own step */
        if (!opt->resume) first = 0; /* --init: weights only, a new run from step 0 */
        if (g->rank == 0) {
            if (opt->mode == TRAINER_GENERATE)
                printf("generating with %s (step %ld)\n", from, saved);
            else if (opt->resume)
                printf("resumed from %s: step %ld\n", from, first);
            else
                printf("initialised from %s: step 0, with the weights of step %ld\n", from, saved);
        }
    }
    long stop = c->steps;
    if (opt->stop_after > 0 && opt->stop_after < stop) stop = opt->stop_after;
    *reporter = 0;
    if (opt->mode == TRAINER_TRAIN && first > c->steps) {
        st = pt_fail(PT_ERR_INVALID, "the checkpoint is at step %ld, past train.steps = %ld", first, c->steps);
        goto done;
    }

    if (opt->mode == TRAINER_GENERATE) {
        *reporter = -1;
        st = generate(&r, g, opt);
        goto done;
    }

    double t_start = MPI_Wtime(), train_time = 0;
    long trained = 0;
    if (opt->mode == TRAINER_TRAIN) {
        if ((st = train_loop(&r, c, g, first, stop, &trained, reporter))) goto done;
        train_time = MPI_Wtime() - t_start;
    }
    *reporter = -1;
    double *figures = NULL;
    if ((st = gather_figures(&r, c, g, trained, &figures))) goto done;
    if (g->rank == 0 && trained > 0) print_breakdown(&r, c, g, figures);
    double test_loss, test_acc;
    char fp[33];
    if (!(st = evaluate(&r, g, &test_loss, &test_acc))) st = fingerprint(&r, g, opt->tensor_hashes, fp);
    double throughput = train_time > 0 ? trained * (double)c->batch_size / train_time : 0.0;
    if (!st && g->rank == 0) {
        char took[48];
        fmt_duration(took, sizeof took, MPI_Wtime() - t_start, 1);
        int text = r.data.kind == DATASET_TEXT;
        printf("\n");
        if (!text) printf("test loss: %.4f\n", test_loss);
        printf("time: %s\n", took);
        double per_sample;
        const char *unit = rate_unit(&r, &per_sample);
        if (opt->mode == TRAINER_TRAIN) printf("throughput: %.0f %s/s\n", throughput * per_sample, unit);
        if (text)
            printf("validation loss: %.4f (unigram entropy of the corpus: %.4f nats/byte)\n", test_loss,
                   r.data.unigram_entropy);
        else
            printf("test accuracy: %.4f\n", test_acc);
        printf("parameter fingerprint: %s\n", fp);
        fflush(stdout);
        if (c->log_summary[0])
            st = write_summary(&r, c, g, figures, throughput, train_time, test_loss, test_acc, fp);
    }
    free(figures);
done:
    run_free(&r);
    return st;
}
