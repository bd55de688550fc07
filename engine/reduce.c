/* reduce.c — the gradient reduction over micro-batches and replicas. */
#include "reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest power of two strictly below n (n ≥ 2): where the tree splits. */
static int split_point(int n)
{
    int p = 1;
    while (2 * p < n) p *= 2;
    return p;
}

/* Sums leaves[lo..hi) of len floats with the fixed tree, in place: the sum
 * ends in leaves[lo]. */
static void tree_sum(float *const *leaves, int lo, int hi, size_t len)
{
    if (hi - lo < 2) return;
    int p = lo + split_point(hi - lo);
    tree_sum(leaves, lo, p, len);
    tree_sum(leaves, p, hi, len);
    float *a = leaves[lo];
    const float *b = leaves[p];
    for (size_t i = 0; i < len; i++) a[i] += b[i];
}

static void add_into(float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] += b[i];
}

/* INVARIANT, after micro-batch mb's weight gradients are in st->grads (and
 * nothing else is): push them as a leaf, merge equal subtrees (a binary
 * counter), and give the stage a zeroed buffer for the next micro-batch.
 * After the last micro-batch the partial sums are merged from the right,
 * which completes the same tree, into the stage's own buffer. */
static pt_status fold(void *ctx, int chunk, int mb)
{
    grad_reduce *r = ctx;
    if (r->mode != REDUCTION_INVARIANT) return PT_OK;
    reduce_chunk *c = &r->ch[chunk];
    stage *st = &r->st[chunk];
    size_t n = st->n_params;
    c->stack[c->depth] = st->grads;
    c->count[c->depth++] = 1;
    while (c->depth >= 2 && c->count[c->depth - 1] == c->count[c->depth - 2]) {
        add_into(c->stack[c->depth - 2], c->stack[c->depth - 1], n);
        c->pool[c->n_pool++] = c->stack[c->depth - 1];
        c->count[c->depth - 2] *= 2;
        c->depth--;
    }
    if (mb < r->M - 1) {
        st->grads = c->pool[--c->n_pool];
        memset(st->grads, 0, n * sizeof(float));
        return PT_OK;
    }
    for (; c->depth >= 2; c->depth--) {
        add_into(c->stack[c->depth - 2], c->stack[c->depth - 1], n);
        c->pool[c->n_pool++] = c->stack[c->depth - 1];
    }
    c->depth = 0; /* stack[0] is own: micro-batch 0's leaf, and merges keep the left buffer */
    st->grads = c->own;
    return PT_OK;
}

static pt_status start(void *ctx, int chunk, int b)
{
    grad_reduce *r = ctx;
    reduce_chunk *c = &r->ch[chunk];
    float *g = r->st[chunk].grads + c->off[b];
    char what[64];
    c->t_start[b] = comm_wtime();
    snprintf(what, sizeof what, "%s of gradient bucket %d", r->mode == REDUCTION_FAST ? "MPI_Iallreduce"
             : "MPI_Iallgather", b);
    if (r->mode == REDUCTION_FAST)
        return comm_iallreduce_floats(g, c->len[b], r->g->dp, what, &c->coll[b]);
    return comm_iallgather_floats(g, c->len[b], c->gather + (size_t)r->g->D * c->off[b], r->g->dp, what,
                                  &c->coll[b]);
}

static pt_status wait(void *ctx, int chunk, int b)
{
    grad_reduce *r = ctx;
    reduce_chunk *c = &r->ch[chunk];
    pt_status st = comm_coll_wait(&c->coll[b]);
    if (st) return st;
    if (r->mode == REDUCTION_INVARIANT) {
        /* the D subtree sums, in replica order, joined by the same tree */
        int D = r->g->D;
        float *leaves[64];
        float **lv = D <= 64 ? leaves : malloc((size_t)D * sizeof *lv);
        if (!lv) return pt_fail(PT_ERR_NOMEM, "out of memory");
        float *base = c->gather + (size_t)D * c->off[b];
        for (int d = 0; d < D; d++) lv[d] = base + (size_t)d * c->len[b];
        tree_sum(lv, 0, D, c->len[b]);
        memcpy(r->st[chunk].grads + c->off[b], lv[0], c->len[b] * sizeof(float));
        if (lv != leaves) free(lv);
    }
    r->span += comm_wtime() - c->t_start[b];
    return PT_OK;
}

/* Lets the reductions in flight advance (MPI progresses a non-blocking
 * collective only inside MPI calls). */
static pt_status progress(void *ctx)
{
    grad_reduce *r = ctx;
    for (int k = 0; k < r->chunks; k++)
        for (int b = 0; b < r->ch[k].n_buckets; b++) {
            int done;
            pt_status st = comm_coll_test(&r->ch[k].coll[b], &done);
            if (st) return st;
        }
    return PT_OK;
}

/* Buckets of whole layers from the last: a bucket closes once it holds cap
 * floats, or at the first layer; layers without parameters join the bucket
 * being filled. size[l]: floats of local layer l (n layers). Writes each
 * bucket's offset and length when off is not NULL; returns the count. */
static int plan_buckets(const size_t *size, int n, size_t cap, size_t *off, size_t *len)
{
    size_t end = 0, begin;
    for (int l = 0; l < n; l++) end += size[l];
    begin = end;
    int count = 0;
    for (int l = n - 1; l >= 0; l--) {
        begin -= size[l];
        if ((end - begin >= cap || l == 0) && end > begin) {
            if (off) {
                off[count] = begin;
                len[count] = end - begin;
            }
            count++;
            end = begin;
        }
    }
    return count;
}

static size_t bucket_cap(double bucket_mb)
{
    size_t cap = (size_t)(bucket_mb * 1048576.0 / sizeof(float));
    return cap < 1 ? 1 : cap;
}

int reduce_count_buckets(const model *m, int first, int last, double bucket_mb)
{
    size_t size[1024];
    int n = last - first, count = 0;
    size_t *sz = n <= 1024 ? size : malloc((size_t)n * sizeof *sz);
    if (!sz) return -1;
    for (int l = 0; l < n; l++) sz[l] = layer_param_floats(&m->layers[first + l]);
    count = plan_buckets(sz, n, bucket_cap(bucket_mb), NULL, NULL);
    if (sz != size) free(sz);
    return count;
}

static int make_buckets(reduce_chunk *c, const stage *st, size_t cap, int D)
{
    int n = st->last - st->first;
    size_t *size = calloc((size_t)n + 1, sizeof *size);
    c->off = calloc((size_t)n + 1, sizeof *c->off);
    c->len = calloc((size_t)n + 1, sizeof *c->len);
    if (!size || !c->off || !c->len) {
        free(size);
        return 0;
    }
    for (int l = 0; l < n; l++) size[l] = st->layer_off[l + 1] - st->layer_off[l];
    if (D > 1) c->n_buckets = plan_buckets(size, n, cap, c->off, c->len);
    free(size);
    return 1;
}

pt_status reduce_init(grad_reduce *r, const comm_grid *g, stage *st, int chunks, reduction_kind mode, int M,
                      double bucket_mb)
{
    memset(r, 0, sizeof *r);
    r->g = g;
    r->mode = mode;
    r->chunks = chunks;
    r->M = M;
    r->st = st;
    r->hooks = (exec_reducer){fold, start, wait, progress, r};
    size_t cap = bucket_cap(bucket_mb);
    for (int k = 0; k < chunks; k++) {
        reduce_chunk *c = &r->ch[k];
        size_t n = st[k].n_params;
        int ok = make_buckets(c, &st[k], cap, g->D);
        c->coll = calloc((size_t)c->n_buckets + 1, sizeof *c->coll);
        c->t_start = calloc((size_t)c->n_buckets + 1, sizeof *c->t_start);
        ok = ok && c->coll && c->t_start;
        for (int b = 0; c->coll && b < c->n_buckets; b++) c->coll[b].req = MPI_REQUEST_NULL;
        if (ok && mode == REDUCTION_INVARIANT) {
            int levels = 1;
            while ((1 << (levels - 1)) < M) levels++; /* ⌊log2 M⌋ + 1 partial sums at most, and the stage's */
            c->own = st[k].grads;
            c->stack = calloc((size_t)levels + 1, sizeof *c->stack);
            c->count = calloc((size_t)levels + 1, sizeof *c->count);
            c->pool = calloc((size_t)levels + 1, sizeof *c->pool);
            ok = c->stack && c->count && c->pool;
            c->owned = calloc((size_t)levels + 1, sizeof *c->owned);
            ok = ok && c->owned;
            for (int i = 0; ok && i < levels; i++) {
                c->owned[i] = c->pool[i] = calloc(n ? n : 1, sizeof(float));
                ok = c->pool[i] != NULL;
                if (ok) c->n_owned = ++c->n_pool;
            }
            if (ok && g->D > 1 && c->n_buckets > 0) {
                c->gather = calloc((size_t)g->D * n, sizeof(float));
                ok = c->gather != NULL;
            }
        }
        if (!ok) {
            reduce_free(r);
            return pt_fail(PT_ERR_NOMEM, "layers %d-%d: out of memory for the gradient reduction (%zu floats per "
                           "partial sum)", st[k].first, st[k].last - 1, n);
        }
    }
    return PT_OK;
}

double reduce_fold_seconds(grad_reduce *r, int chunk)
{
    reduce_chunk *c = &r->ch[chunk];
    if (r->mode != REDUCTION_INVARIANT || c->n_pool < 2) return 0;
    size_t n = r->st[chunk].n_params;
    double best = 0;
    for (int i = 0; i < 3; i++) {
        double t0 = comm_wtime();
        memset(c->pool[0], 0, n * sizeof(float));
        add_into(c->pool[1], c->pool[0], n);
        double t = comm_wtime() - t0;
        if (i == 0 || t < best) best = t;
    }
    return best;
}

size_t reduce_bytes(const grad_reduce *r)
{
    size_t b = 0;
    for (int k = 0; k < r->chunks; k++) {
        size_t n = r->st[k].n_params;
        b += (size_t)r->ch[k].n_pool * n * sizeof(float);
        if (r->ch[k].gather) b += (size_t)r->g->D * n * sizeof(float);
    }
    return b;
}

void reduce_free(grad_reduce *r)
{
    for (int k = 0; k < EXEC_MAX_CHUNKS; k++) {
        reduce_chunk *c = &r->ch[k];
        /* no wait on a reduction still in flight: after a completed step there is none, and after a
         * failure the peers may never join it (the job is being aborted) */
        if (c->own && r->st) r->st[k].grads = c->own; /* a failed step may leave a partial sum there */
        for (int i = 0; i < c->n_owned; i++) free(c->owned[i]);
        free(c->owned);
        free(c->pool);
        free(c->stack);
        free(c->count);
        free(c->gather);
        free(c->off);
        free(c->len);
        free(c->coll);
        free(c->t_start);
    }
    memset(r, 0, sizeof *r);
}
