#include "stage.h"

#include <stdlib.h>
#include <string.h>

static float *falloc(size_t n)
{
    /* 64-byte aligned, zeroed */
    size_t bytes = ((n * sizeof(float)) + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

pt_status stage_init(stage *s, const model *m, int first, int last, int rows, int slots,
                     uint64_t seed)
{
    memset(s, 0, sizeof *s);
    if (first < 0 || last > m->n_layers || first >= last)
        return pt_fail(PT_ERR_INVALID, "stage layers [%d, %d): expected a non-empty range within the %d layers",
                       first, last, m->n_layers);
    if (rows < 1 || slots < 1)
        return pt_fail(PT_ERR_INVALID, "stage: rows = %d and slots = %d must be >= 1", rows, slots);
    s->model = m;
    s->first = first;
    s->last = last;
    s->rows = rows;
    s->slots = slots;
    s->in_dim = m->layers[first].in;
    s->out_dim = m->layers[last - 1].out;
    int n = last - first;
    size_t off = 0, slot = 0, widest = 0, work = 0;

    layer_param ps[LAYER_MAX_PARAMS];
    for (int l = first; l < last; l++) s->n_tensors += layer_get(m->layers[l].kind)->params(&m->layers[l], ps);
    s->tensors = calloc((size_t)s->n_tensors + 1, sizeof *s->tensors);
    s->layer_off = calloc((size_t)n + 1, sizeof *s->layer_off);
    s->in_off = calloc((size_t)n + 1, sizeof *s->in_off);
    s->saved_off = calloc((size_t)n + 1, sizeof *s->saved_off);
    if (!s->tensors || !s->layer_off || !s->in_off || !s->saved_off) goto nomem;

    int k = 0;
    for (int i = 0; i < n; i++) {
        const layer_desc *d = &m->layers[first + i];
        const layer_ops *ops = layer_get(d->kind);
        s->layer_off[i] = off;
        int np = ops->params(d, ps);
        for (int j = 0; j < np; j++, k++) {
            stage_tensor *t = &s->tensors[k];
            model_param_name(t->name, sizeof t->name, first + i, ps[j].name);
            t->layer = first + i;
            t->ndim = ps[j].ndim;
            t->shape[0] = ps[j].shape[0];
            t->shape[1] = ps[j].shape[1];
            t->numel = (size_t)ps[j].shape[0] * (ps[j].ndim == 2 ? (size_t)ps[j].shape[1] : 1);
            t->offset = off;
            t->decay = ps[j].decay;
            t->tied_to = model_tied_source(m, first + i, j);
            off += t->numel;
        }
        s->in_off[i] = slot;
        slot += (size_t)rows * d->in;
        s->saved_off[i] = slot;
        slot += (size_t)rows * ops->saved(d);
        if ((size_t)d->in > widest) widest = (size_t)d->in;
        if (ops->scratch(d) > work) work = ops->scratch(d);
    }
    s->layer_off[n] = off;
    s->n_params = off;
    s->slot_floats = slot;

    s->params = falloc(off);
    s->grads = falloc(off);
    s->m1 = falloc(off);
    s->m2 = falloc(off);
    s->stash = falloc(slot * (size_t)slots);
    s->gbuf[0] = falloc(widest * rows);
    s->gbuf[1] = falloc(widest * rows);
    s->scratch = falloc(work * rows);
    if (!s->params || !s->grads || !s->m1 || !s->m2 || !s->stash || !s->gbuf[0] || !s->gbuf[1] || !s->scratch)
        goto nomem;
    for (int i = 0; i < n; i++) model_init_layer(m, first + i, seed, s->params + s->layer_off[i]);
    return PT_OK;
nomem:;
    double mib = 1.0 / 1048576.0 * sizeof(float);
    pt_status st = pt_fail(PT_ERR_NOMEM,
                           "stage layers [%d, %d): out of memory for %.0f MiB of parameters, gradients and "
                           "moments and a %.0f MiB activation stash (%d micro-batches of %d samples): "
                           "lower train.batch_size or the model size, or use more stages",
                           first, last, 4.0 * (double)off * mib, (double)slot * slots * mib, slots, rows);
    stage_free(s);
    return st;
}

void stage_free(stage *s)
{
    free(s->tensors);
    free(s->layer_off);
    free(s->in_off);
    free(s->saved_off);
    free(s->params);
    free(s->grads);
    free(s->m1);
    free(s->m2);
    free(s->stash);
    free(s->gbuf[0]);
    free(s->gbuf[1]);
    free(s->scratch);
    free(s->wstash);
    free(s->wsave_off);
    free(s->gout_off);
    memset(s, 0, sizeof *s);
}

float *stage_input(stage *s, int slot) { return s->stash + (size_t)slot * s->slot_floats; }

void stage_forward(stage *s, int slot, float *out, uint64_t seed, uint32_t step,
                   uint32_t micro_batch, int training)
{
    float *base = stage_input(s, slot);
    int n = s->last - s->first;
    for (int i = 0; i < n; i++) {
        const layer_desc *d = &s->model->layers[s->first + i];
        layer_ctx ctx = {seed, step, micro_batch, (uint32_t)(s->first + i), training, s->scratch};
        float *dst = i + 1 < n ? base + s->in_off[i + 1] : out;
        layer_get(d->kind)->forward(d, s->params + s->layer_off[i], dst, base + s->in_off[i],
                                    base + s->saved_off[i], s->rows, &ctx);
    }
}

void stage_backward(stage *s, int slot, const float *dout, float *din, uint64_t seed,
                    uint32_t step, uint32_t micro_batch)
{
    float *base = stage_input(s, slot);
    int n = s->last - s->first;
    const float *g = dout;
    for (int i = n - 1; i >= 0; i--) {
        const layer_desc *d = &s->model->layers[s->first + i];
        layer_ctx ctx = {seed, step, micro_batch, (uint32_t)(s->first + i), 1, s->scratch};
        float *dst = i > 0 ? s->gbuf[i & 1] : din;
        layer_get(d->kind)->backward(d, s->params + s->layer_off[i], s->grads + s->layer_off[i],
                                     dst, g, base + s->in_off[i], base + s->saved_off[i],
                                     s->rows, &ctx);
        g = dst;
    }
}

pt_status stage_split_backward_init(stage *s)
{
    if (s->wstash) return PT_OK;
    int n = s->last - s->first;
    size_t off = 0;
    s->wsave_off = calloc((size_t)n + 1, sizeof *s->wsave_off);
    s->gout_off = calloc((size_t)n + 1, sizeof *s->gout_off);
    if (!s->wsave_off || !s->gout_off) goto nomem;
    for (int i = 0; i < n; i++) {
        const layer_desc *d = &s->model->layers[s->first + i];
        s->wsave_off[i] = off;
        off += (size_t)s->rows * layer_get(d->kind)->wsaved(d);
        s->gout_off[i] = STAGE_NO_GOUT;
        if (i + 1 < n && s->layer_off[i + 1] > s->layer_off[i]) {
            s->gout_off[i] = off;
            off += (size_t)s->rows * d->out;
        }
    }
    s->wslot_floats = off;
    s->wstash = falloc(off * (size_t)s->slots);
    if (!s->wstash) goto nomem;
    return PT_OK;
nomem:;
    pt_status st = pt_fail(PT_ERR_NOMEM,
                           "stage layers [%d, %d): out of memory for the %.0f MiB that the B/W "
                           "split keeps between backward_input and backward_weight (%d "
                           "micro-batches of %d samples)",
                           s->first, s->last, (double)off * s->slots * sizeof(float) / 1048576.0,
                           s->slots, s->rows);
    free(s->wstash);
    free(s->wsave_off);
    free(s->gout_off);
    s->wstash = NULL;
    s->wsave_off = s->gout_off = NULL;
    s->wslot_floats = 0;
    return st;
}

static pt_status split_check(const stage *s, int slot, const char *fn)
{
    if (!s->wstash)
        return pt_fail(PT_ERR_INVALID,
                       "stage layers [%d, %d): %s needs the W stash of "
                       "stage_split_backward_init, which was not called",
                       s->first, s->last, fn);
    if (slot < 0 || slot >= s->slots)
        return pt_fail(PT_ERR_INVALID, "stage layers [%d, %d): %s of slot %d, expected 0..%d",
                       s->first, s->last, fn, slot, s->slots - 1);
    return PT_OK;
}

pt_status stage_backward_input(stage *s, int slot, const float *dout, float *din, uint64_t seed,
                               uint32_t step, uint32_t micro_batch)
{
    pt_status st = split_check(s, slot, "stage_backward_input");
    if (st) return st;
    float *base = stage_input(s, slot), *wbase = s->wstash + (size_t)slot * s->wslot_floats;
    int n = s->last - s->first;
    const float *g = dout;
    for (int i = n - 1; i >= 0; i--) {
        const layer_desc *d = &s->model->layers[s->first + i];
        layer_ctx ctx = {seed, step, micro_batch, (uint32_t)(s->first + i), 1, s->scratch};
        /* the input gradient of layer i is the output gradient of layer i-1:
         * written where W of layer i-1 will find it when it keeps one */
        float *dst = din;
        if (i > 0)
            dst = s->gout_off[i - 1] != STAGE_NO_GOUT ? wbase + s->gout_off[i - 1] : s->gbuf[i & 1];
        layer_get(d->kind)->backward_input(d, s->params + s->layer_off[i], dst, g,
                                           base + s->in_off[i], base + s->saved_off[i],
                                           wbase + s->wsave_off[i], s->rows, &ctx);
        g = dst;
    }
    return PT_OK;
}

pt_status stage_backward_weight(stage *s, int slot, const float *dout, uint64_t seed,
                                uint32_t step, uint32_t micro_batch)
{
    pt_status st = split_check(s, slot, "stage_backward_weight");
    if (st) return st;
    float *base = stage_input(s, slot), *wbase = s->wstash + (size_t)slot * s->wslot_floats;
    int n = s->last - s->first;
    for (int i = n - 1; i >= 0; i--) {
        if (s->layer_off[i + 1] == s->layer_off[i]) continue; /* no parameters: no W */
        const layer_desc *d = &s->model->layers[s->first + i];
        layer_ctx ctx = {seed, step, micro_batch, (uint32_t)(s->first + i), 1, s->scratch};
        const float *g = i == n - 1 ? dout : wbase + s->gout_off[i];
        layer_get(d->kind)->backward_weight(d, s->params + s->layer_off[i],
                                            s->grads + s->layer_off[i], g, base + s->in_off[i],
                                            base + s->saved_off[i], wbase + s->wsave_off[i],
                                            s->rows, &ctx);
    }
    return PT_OK;
}

void stage_zero_grad(stage *s) { memset(s->grads, 0, s->n_params * sizeof *s->grads); }

void stage_grad_sumsq(const stage *s, double *per_layer)
{
    for (int k = 0; k < s->n_tensors; k++) {
        const stage_tensor *t = &s->tensors[k];
        if (t->tied_to >= 0) continue; /* a tied copy: its source counts once */
        const float *g = s->grads + t->offset;
        /* eight partial sums combined in a fixed order: deterministic, and
         * free of the latency chain of a single accumulator */
        double acc[8] = {0};
        size_t j = 0;
        for (; j + 8 <= t->numel; j += 8)
            for (int q = 0; q < 8; q++) acc[q] += (double)g[j + q] * g[j + q];
        for (; j < t->numel; j++) acc[j & 7] += (double)g[j] * g[j];
        per_layer[t->layer] += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
}

void stage_scale_grads(stage *s, float factor)
{
    for (size_t j = 0; j < s->n_params; j++) s->grads[j] *= factor;
}

void stage_optim_step(stage *s, const optim_config *cfg, float lr, long t)
{
    for (int k = 0; k < s->n_tensors; k++) {
        const stage_tensor *x = &s->tensors[k];
        optim_update(cfg, lr, t, s->params + x->offset, s->grads + x->offset, s->m1 + x->offset,
                     s->m2 + x->offset, x->numel, x->decay);
    }
}

int stage_find_tensor(const stage *s, const char *name)
{
    for (int k = 0; k < s->n_tensors; k++)
        if (strcmp(s->tensors[k].name, name) == 0) return k;
    return -1;
}

size_t stage_stash_bytes(const stage *s)
{
    return (s->slot_floats + s->wslot_floats) * (size_t)s->slots * sizeof(float);
}
