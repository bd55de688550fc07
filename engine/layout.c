/* layout.c — a config on a grid of P stages × D replicas: the model, the
 * data set, the partition into virtual stages and the lowered schedules. */
#include "layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"
#include "profile.h"
#include "reduce.h"

pt_status layout_build(layout *r, const config *c, int P, int D, int max_micro_batches)
{
    pt_status st = layout_open(r, c);
    return st ? st : layout_grid(r, c, P, D, max_micro_batches);
}

pt_status layout_open(layout *r, const config *c)
{
    memset(r, 0, sizeof *r);
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
    if (c->partition == PARTITION_MEASURED) { /* forward + backward of each layer, as measured */
        profile_file pf;
        if ((st = profile_read(c->profile, &r->m, 0, &pf))) return pt_wrap(st, "pipeline.partition = measured: ");
        r->layer_seconds = malloc((size_t)r->m.n_layers * sizeof *r->layer_seconds);
        for (int l = 0; r->layer_seconds && l < r->m.n_layers; l++)
            r->layer_seconds[l] = pf.layers.fwd[l] + pf.layers.bwd[l];
        profile_file_free(&pf);
        if (!r->layer_seconds) return pt_fail(PT_ERR_NOMEM, "out of memory");
    }
    return PT_OK;
}

pt_status layout_grid(layout *r, const config *c, int P, int D, int max_micro_batches)
{
    pt_status st;
    schedule_free(&r->eval_sc);
    schedule_free(&r->train_sc);
    free(r->cuts);
    r->cuts = NULL;
    r->P = P;
    r->D = D;
    /* v chunks per rank: V = v·P virtual stages, partitioned like stages */
    r->chunks = c->chunks;
    int V = P * r->chunks;
    r->cuts = calloc((size_t)V + 1, sizeof *r->cuts);
    if (!r->cuts) return pt_fail(PT_ERR_NOMEM, "out of memory");
    if (r->chunks > 1 && V > r->m.n_layers) {
        int most = r->m.n_layers / P;
        char advice[96];
        if (most >= 2)
            snprintf(advice, sizeof advice, "use pipeline.chunks = %d or less", most);
        else
            snprintf(advice, sizeof advice, "use pipeline.chunks = 1 (no interleaving) or fewer ranks");
        return pt_fail(PT_ERR_INVALID, "pipeline.chunks = %d on %d rank%s makes %d virtual stages but the model has %d "
                       "layers: every virtual stage needs at least one; %s", r->chunks, P, P == 1 ? "" : "s",
                       V, r->m.n_layers, advice);
    }
    if (c->partition == PARTITION_MEASURED && r->layer_seconds)
        st = partition_layers_weighted(&r->m, V, r->layer_seconds, r->cuts);
    else
        st = partition_layers(&r->m, V, c->partition, c->partition_spec, r->cuts);
    if (st) {
        if (r->chunks == 1) return st;
        return pt_wrap(st, "pipeline.chunks = %d on %d rank%s makes %d virtual stages (rank r holds r, r+%d, ...): ",
                       r->chunks, P, P == 1 ? "" : "s", V, P);
    }
    if (c->micro_batches > max_micro_batches)
        return pt_fail(PT_ERR_INVALID, "pipeline.micro_batches = %d: this MPI library's tags allow at most %d",
                       c->micro_batches, max_micro_batches);
    /* each replica runs M / D micro-batches; with replicas, every chunk's gradient buckets are reduced */
    r->M_local = c->micro_batches / D;
    int *buckets = NULL;
    if (D > 1) {
        if (!(buckets = calloc((size_t)V, sizeof *buckets))) return pt_fail(PT_ERR_NOMEM, "out of memory");
        for (int vs = 0; vs < V; vs++) { /* rank vs mod P, chunk vs / P */
            int n = reduce_count_buckets(&r->m, r->cuts[vs], r->cuts[vs + 1], c->bucket_mb);
            if (n < 0) {
                free(buckets);
                return pt_fail(PT_ERR_NOMEM, "out of memory");
            }
            buckets[vs % P * r->chunks + vs / P] = n;
        }
    }
    st = schedule_build_grid(&r->train_sc, c->schedule, P, r->chunks, r->M_local, buckets);
    free(buckets);
    if (st) {
        if (c->schedule != SCHED_INTERLEAVED || r->chunks == 1) return st;
        if (D > 1)
            return pt_wrap(st, "pipeline.schedule = interleaved with pipeline.chunks = %d: each of the %d replicas "
                           "runs pipeline.micro_batches / data_parallel = %d / %d micro-batches on %d ranks: ",
                           r->chunks, D, c->micro_batches, D, P);
        return pt_wrap(st, "pipeline.schedule = interleaved with pipeline.chunks = %d and pipeline.micro_batches "
                       "= %d on %d ranks: ", r->chunks, c->micro_batches, P);
    }
    if ((st = schedule_validate(&r->train_sc)))
        return pt_wrap(st, "the %s schedule failed validation: ", sched_kind_name(c->schedule));
    if ((st = schedule_build_chunks(&r->eval_sc, SCHED_FORWARD_ONLY, P, r->chunks, r->M_local))) return st;
    return schedule_validate(&r->eval_sc);
}

void layout_free(layout *r)
{
    dataset_close(&r->data);
    schedule_free(&r->eval_sc);
    schedule_free(&r->train_sc);
    free(r->cuts);
    free(r->layer_seconds);
    model_free(&r->m);
    memset(r, 0, sizeof *r);
}
