/* step.c — one optimizer step after a rank's op list. */
#include "step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "partition.h"
#include "stop.h"

pt_status step_init(step_state *s, const model *m, const int *cuts, const stage *st, int chunks,
                    const comm_grid *g)
{
    pt_status rc;
    s->chunks = chunks;
    s->tied_src = s->tied_copy = -1;
    if (m->tied_head >= 0) {
        int V = chunks * g->P;
        int a = partition_stage_of(cuts, V, m->tied_embed) % g->P, b = partition_stage_of(cuts, V, m->tied_head) % g->P;
        char name[STAGE_TENSOR_NAME_MAX];
        model_param_name(name, sizeof name, m->tied_embed, "w");
        for (int c = 0; c < chunks; c++) {
            int k = stage_find_tensor(&st[c], name);
            if (k >= 0) {
                s->src_chunk = c;
                s->tied_src = k;
            }
            for (k = 0; k < st[c].n_tensors; k++)
                if (st[c].tensors[k].tied_to >= 0) {
                    s->copy_chunk = c;
                    s->tied_copy = k;
                }
        }
        if (a != b && (rc = comm_tied_group(g, a, b, &s->tied))) return rc;
    }
    s->reduce = calloc((size_t)m->n_layers + 2 + STOP_KINDS, sizeof *s->reduce);
    if (!s->reduce) return pt_fail(PT_ERR_NOMEM, "out of memory");
    return PT_OK;
}

void step_free(step_state *s)
{
    comm_tied_free(&s->tied);
    free(s->reduce);
    s->reduce = NULL;
}

pt_status step_sync_tied(step_state *s, const model *m, stage *st)
{
    if (m->tied_head < 0) return PT_OK;
    stage *ss = &st[s->src_chunk], *cs = &st[s->copy_chunk];
    const stage_tensor *src = s->tied_src >= 0 ? &ss->tensors[s->tied_src] : NULL;
    const stage_tensor *copy = s->tied_copy >= 0 ? &cs->tensors[s->tied_copy] : NULL;
    if (src && copy) {
        float *a = ss->grads + src->offset, *b = cs->grads + copy->offset;
        for (size_t i = 0; i < src->numel; i++) b[i] = a[i] = a[i] + b[i];
        return PT_OK;
    }
    if (src) return comm_tied_sum(ss->grads + src->offset, src->numel, &s->tied);
    return copy ? comm_tied_sum(cs->grads + copy->offset, copy->numel, &s->tied) : PT_OK;
}

pt_status step_finish(step_state *s, const config *c, const comm_grid *g, const model *m, const int *cuts,
                      stage *st, executor *ex, long step, double *loss, double *norm, int *skipped)
{
    int L = m->n_layers;
    double *reduce = s->reduce;
    double t0 = comm_wtime();
    memset(reduce, 0, (size_t)(L + 2 + STOP_KINDS) * sizeof *reduce);
    /* the replicas hold the same gradients (reduced over them already): replica 0 counts them */
    for (int k = 0; k < s->chunks && g->replica == 0; k++) stage_grad_sumsq(&st[k], reduce);
    if (g->stage == g->P - 1) reduce[L] = ex->loss_sum / c->micro_batches; /* it holds the last virtual stage */
    reduce[L + 1] = !isfinite(reduce[L]);
    for (int k = 0; k < s->chunks; k++)
        for (int l = st[k].first; l < st[k].last; l++) reduce[L + 1] += !isfinite(reduce[l]);
    int sig = stop_signal(); /* read once: a signal may arrive meanwhile */
    for (int k = 0; k < STOP_KINDS; k++) reduce[L + 2 + k] = sig != 0 && sig == stop_signal_of(k);
    double t1 = comm_wtime();
    pt_status rc = comm_allreduce_sum(reduce, L + 2 + STOP_KINDS, g->world, "the fused end-of-step reduction");
    double t2 = comm_wtime();
    executor_note(ex, EXEC_EVENT_STEP_REDUCE, step, t1, t2);
    ex->t.comm += t2 - t1;
    t0 += t2 - t1; /* the reduction is communication, not optimizer time */
    if (rc) return rc;
    s->stop_signal = 0; /* the same on every rank: the first kind any rank received */
    for (int k = STOP_KINDS - 1; k >= 0; k--)
        if (reduce[L + 2 + k] > 0) s->stop_signal = stop_signal_of(k);
    double sum = 0.0;
    for (int l = 0; l < L; l++) sum += reduce[l]; /* global layer order */
    *norm = sqrt(sum);
    *loss = reduce[L];
    *skipped = 0;
    if (reduce[L + 1] != 0.0 || !isfinite(*loss)) {
        int bad = -1;
        for (int l = 0; l < L && bad < 0; l++)
            if (!isfinite(reduce[l])) bad = l;
        char where[160];
        int vs = bad >= 0 ? partition_stage_of(cuts, s->chunks * g->P, bad) : s->chunks * g->P - 1;
        char on[64];
        if (s->chunks > 1)
            snprintf(on, sizeof on, "virtual stage %d (stage %d's chunk %d)", vs, vs % g->P, vs / g->P);
        else
            snprintf(on, sizeof on, "stage %d", vs);
        if (bad >= 0)
            snprintf(where, sizeof where, "gradient of layer %d (%s) on %s", bad,
                     layer_get(m->layers[bad].kind)->kind_name, on);
        else
            snprintf(where, sizeof where, "loss (computed on %s)", on);
        if (c->nonfinite == NONFINITE_STOP)
            return pt_fail(PT_ERR_NONFINITE,
                           "step %ld: non-finite %s; training stopped (lower train.lr, set "
                           "train.grad_clip, or set train.nonfinite = skip to skip such steps)",
                           step + 1, where);
        if (g->rank == 0) printf("step %ld: non-finite %s: step skipped\n", step + 1, where);
        *skipped = 1;
        ex->t.optim += comm_wtime() - t0;
        executor_note(ex, EXEC_EVENT_OPTIM, step, t2, comm_wtime());
        return PT_OK;
    }
    lr_schedule ls = config_lr(c);
    optim_config oc = config_optim(c);
    for (int k = 0; k < s->chunks; k++) {
        if (c->grad_clip > 0 && *norm > c->grad_clip) stage_scale_grads(&st[k], (float)(c->grad_clip / (*norm + 1e-6)));
        stage_optim_step(&st[k], &oc, lr_at(&ls, step + 1), step + 1);
    }
    ex->t.optim += comm_wtime() - t0;
    executor_note(ex, EXEC_EVENT_OPTIM, step, t2, comm_wtime());
    return PT_OK;
}

pt_status step_check_replicas(const comm_grid *g, const stage *st, int chunks, long step, int *reporter)
{
    if (g->D < 2) return PT_OK;
    int n = 0;
    for (int k = 0; k < chunks; k++) n += st[k].n_tensors;
    unsigned long long *mine = calloc((size_t)n + 1, sizeof *mine), *ref = calloc((size_t)n + 1, sizeof *ref);
    pt_status local = mine && ref ? PT_OK : pt_fail(PT_ERR_NOMEM, "out of memory");
    pt_status agreed = comm_agree(g, local, reporter); /* every rank then takes part in the broadcast, or none */
    if (agreed) {
        free(mine);
        free(ref);
        return agreed;
    }
    for (int k = 0, i = 0; !local && k < chunks; k++)
        for (int t = 0; t < st[k].n_tensors; t++, i++)
            mine[i] = XXH3_64bits(st[k].params + st[k].tensors[t].offset, st[k].tensors[t].numel * sizeof(float));
    if (!local) memcpy(ref, mine, (size_t)n * sizeof *ref);
    pt_status rc = local ? local : comm_bcast(ref, n * (int)sizeof *ref, 0, g->dp, "MPI_Bcast of parameter hashes");
    for (int k = 0, i = 0; !rc && k < chunks; k++)
        for (int t = 0; !rc && t < st[k].n_tensors; t++, i++)
            if (mine[i] != ref[i])
                rc = pt_fail(PT_ERR_MISMATCH, "after step %ld the replicas differ: stage %d of replica %d holds "
                             "another %s than replica 0 (the first differing tensor of the stage); the replicas "
                             "must stay identical: report this with the config and the MPI library", step + 1,
                             g->stage, g->replica, st[k].tensors[t].name);
    free(mine);
    free(ref);
    return comm_agree(g, rc, reporter);
}
