/* step.c — one optimizer step after a rank's op list. */
#include "step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition.h"

pt_status step_init(step_state *s, const model *m, const int *cuts, const stage *st, const comm_grid *g)
{
    pt_status rc;
    s->tied_src = s->tied_copy = -1;
    if (m->tied_head >= 0) {
        int a = partition_stage_of(cuts, g->P, m->tied_embed), b = partition_stage_of(cuts, g->P, m->tied_head);
        char name[STAGE_TENSOR_NAME_MAX];
        model_param_name(name, sizeof name, m->tied_embed, "w");
        s->tied_src = stage_find_tensor(st, name);
        for (int k = 0; k < st->n_tensors; k++)
            if (st->tensors[k].tied_to >= 0) s->tied_copy = k;
        if (a != b && (rc = comm_tied_group(g, a, b, &s->tied))) return rc;
    }
    s->reduce = calloc((size_t)m->n_layers + 2, sizeof *s->reduce);
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
    const stage_tensor *src = s->tied_src >= 0 ? &st->tensors[s->tied_src] : NULL;
    const stage_tensor *copy = s->tied_copy >= 0 ? &st->tensors[s->tied_copy] : NULL;
    if (src && copy) {
        float *a = st->grads + src->offset, *b = st->grads + copy->offset;
        for (size_t i = 0; i < src->numel; i++) b[i] = a[i] = a[i] + b[i];
        return PT_OK;
    }
    const stage_tensor *t = src ? src : copy;
    return t ? comm_tied_sum(st->grads + t->offset, t->numel, &s->tied) : PT_OK;
}

pt_status step_finish(step_state *s, const config *c, const comm_grid *g, const model *m, const int *cuts,
                      stage *st, executor *ex, long step, double *loss, double *norm, int *skipped)
{
    int L = m->n_layers;
    double *reduce = s->reduce;
    double t0 = comm_wtime();
    memset(reduce, 0, (size_t)(L + 2) * sizeof *reduce);
    stage_grad_sumsq(st, reduce);
    if (g->stage == g->P - 1) reduce[L] = ex->loss_sum / c->micro_batches;
    reduce[L + 1] = !isfinite(reduce[L]);
    for (int l = st->first; l < st->last; l++) reduce[L + 1] += !isfinite(reduce[l]);
    double t1 = comm_wtime();
    pt_status rc = comm_allreduce_sum(reduce, L + 2, g->pipe, "the fused end-of-step reduction");
    double t2 = comm_wtime();
    ex->t.comm += t2 - t1;
    t0 += t2 - t1; /* the reduction is communication, not optimizer time */
    if (rc) return rc;
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
        if (bad >= 0)
            snprintf(where, sizeof where, "gradient of layer %d (%s) on stage %d", bad,
                     layer_get(m->layers[bad].kind)->kind_name, partition_stage_of(cuts, g->P, bad));
        else
            snprintf(where, sizeof where, "loss (computed on stage %d)", g->P - 1);
        if (c->nonfinite == NONFINITE_STOP)
            return pt_fail(PT_ERR_NONFINITE,
                           "step %ld: non-finite %s; training stopped (lower train.lr, set "
                           "train.grad_clip, or set train.nonfinite = skip to skip such steps)",
                           step + 1, where);
        if (g->rank == 0) printf("step %ld: non-finite %s: step skipped\n", step + 1, where);
        *skipped = 1;
        ex->t.optim += comm_wtime() - t0;
        return PT_OK;
    }
    if (c->grad_clip > 0 && *norm > c->grad_clip) stage_scale_grads(st, (float)(c->grad_clip / (*norm + 1e-6)));
    lr_schedule ls = config_lr(c);
    optim_config oc = config_optim(c);
    stage_optim_step(st, &oc, lr_at(&ls, step + 1), step + 1);
    ex->t.optim += comm_wtime() - t0;
    return PT_OK;
}
