/* test_split_backward.c — the B/W split of every layer kind and of a stage
 * (Zero Bubble, Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024):
 * backward_input (B, the input gradient) and backward_weight (W, the
 * parameter gradients) instead of one backward.
 *
 * For every kind of the registry, and at least three shapes each with B = 1
 * among them:
 *  - B then W gives din and every parameter gradient bit for bit equal to
 *    backward (memcmp), with the scratch, the W stash (wsave) and din
 *    poisoned with NaN before each call, so a part that reads what it did
 *    not write, or what the other part left in the scratch, shows;
 *  - the din of backward_input and the gradients of backward_weight are
 *    compared, EVERY element of the input and of every parameter, with the
 *    central finite difference of L = Σ r·out (r fixed random weights, so
 *    dL/dout = r), with the bound |analytic − numeric| ≤ tol·max(1,
 *    |numeric|) of the kind's backward test (test_kernels.c and
 *    test_transformer.c state why each bound holds); the measured maxima
 *    are printed on stderr;
 *  - with W delayed after B of later micro-batches (B0 B1 W0 W1, and
 *    delays 1 and 2 over three micro-batches), each micro-batch with its own
 *    input, dout, forward stash and W stash and a shared scratch, the
 *    gradients equal those of backward(m0), backward(m1), ... bit for bit.
 * For stages, the MLP with dropout and layernorm of test_stage.c and the
 * tiny GPT with tied embeddings of test_transformer.c run five micro-batches
 * through one stage and through three, with stage_backward_input and
 * stage_backward_weight and W of each micro-batch delayed by 1 and by 2
 * micro-batches; every gradient and the first stage's din equal those of
 * stage_backward on one whole stage, bit for bit. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_DATA_SEED 20240613u
#include "fd_check.h"
#include "kernels.h"
#include "layers.h"
#include "rng.h"
#include "stage.h"

/* ------------------------------------------------------------- helpers */

static layer_desc parse_one(const char *spec, int input, int index)
{
    model m;
    cr_assert_eq(model_parse(&m, spec, input), PT_OK, "'%s': %s", spec, pt_last_error());
    cr_assert_lt(index, m.n_layers);
    layer_desc d = m.layers[index];
    model_free(&m);
    return d;
}

static void fill_ids(float *ids, size_t n, int V, uint32_t tag)
{
    rng_key k = data_key(tag);
    for (size_t i = 0; i < n; i++) ids[i] = (float)(rng_u32(k, i) % (uint32_t)V);
}

/* One case: a layer of `spec` (item `index`, model input `input`) with B
 * samples, FD step h and bound tol, parameters of normal std pstd (tensors
 * that start at one get 1 + that), inputs of normal std xstd. */
typedef struct {
    const char *spec;
    int input, index, B;
    float h;
    double tol;
    float pstd, xstd;
} split_case;

static size_t numel_of(const layer_param *p)
{
    return (size_t)p->shape[0] * (p->ndim == 2 ? (size_t)p->shape[1] : 1);
}

/* Random parameters for d, laid out as params() lists them. */
static float *random_params(const layer_desc *d, float pstd, uint32_t tag)
{
    const layer_ops *ops = layer_get(d->kind);
    float *p = fnormal(layer_param_floats(d), tag, pstd), *q = p;
    layer_param ps[LAYER_MAX_PARAMS];
    int np = ops->params(d, ps);
    for (int j = 0; j < np; j++) {
        size_t n = numel_of(&ps[j]);
        if (ps[j].init == INIT_ONE)
            for (size_t i = 0; i < n; i++) q[i] += 1.0f;
        q += n;
    }
    return p;
}

/* A random input of B samples for d: token ids for an embedding; for ReLU
 * |x| ∈ [0.1, 1] with random sign, so no difference of step 1e-2 straddles
 * the kink; otherwise normal of std xstd. */
static float *random_input(const layer_desc *d, int B, float xstd, uint32_t tag)
{
    size_t n = (size_t)B * d->in;
    if (d->kind == LAYER_EMBED) {
        float *x = fnew(n);
        fill_ids(x, n, d->vocab, tag);
        return x;
    }
    if (d->kind == LAYER_RELU) {
        float *x = funiform(n, tag, 0.1f, 1.0f), *s = funiform(n, tag + 50, -1.0f, 1.0f);
        for (size_t i = 0; i < n; i++)
            if (s[i] < 0.0f) x[i] = -x[i];
        free(s);
        return x;
    }
    return fnormal(n, tag, xstd);
}

/* ---------------------------------------- one layer, one micro-batch, split */

typedef struct {
    const layer_desc *d;
    const layer_ops *ops;
    int B;
    size_t nparams, nin, nout, nsaved, nscratch, nwsave;
    float *params, *in, *out, *saved, *scratch, *r, *wsave;
    float *grads, *din;   /* of backward */
    float *sgrads, *sdin; /* of backward_input + backward_weight */
    layer_ctx ctx;
} split_run;

static double split_obj(void *p)
{
    split_run *c = p;
    c->ops->forward(c->d, c->params, c->out, c->in, c->saved, c->B, &c->ctx);
    return dot_rd(c->r, c->out, c->nout);
}

/* Forward, then backward into (grads, din) and B then W into (sgrads, sdin),
 * with buffers of exactly the sizes the registry declares (the sanitizer
 * sees an overrun) and NaN wherever a part must write before it reads. */
static void split_setup(split_run *c, const layer_desc *d, const split_case *k, uint32_t tag)
{
    memset(c, 0, sizeof *c);
    c->d = d;
    c->ops = layer_get(d->kind);
    c->B = k->B;
    c->nparams = layer_param_floats(d);
    c->nin = (size_t)k->B * d->in;
    c->nout = (size_t)k->B * d->out;
    c->nsaved = (size_t)k->B * c->ops->saved(d);
    c->nscratch = (size_t)k->B * c->ops->scratch(d);
    c->nwsave = (size_t)k->B * c->ops->wsaved(d);
    c->params = random_params(d, k->pstd, tag);
    c->in = random_input(d, k->B, k->xstd, tag + 1);
    c->out = fnew(c->nout);
    c->saved = fnew(c->nsaved);
    ffill(c->saved, c->nsaved, NAN);
    c->scratch = fnew(c->nscratch);
    c->r = fnormal(c->nout, tag + 2, 1.0f);
    c->wsave = fnew(c->nwsave);
    c->grads = fnew(c->nparams);
    c->sgrads = fnew(c->nparams);
    c->din = fnew(c->nin);
    c->sdin = fnew(c->nin);
    layer_ctx ctx = {.seed = 3, .step = 1, .micro_batch = 2, .layer = 4, .training = 1,
                     .scratch = c->scratch};
    c->ctx = ctx;
    c->ops->forward(d, c->params, c->out, c->in, c->saved, c->B, &c->ctx);

    ffill(c->din, c->nin, NAN);
    ffill(c->scratch, c->nscratch, NAN);
    c->ops->backward(d, c->params, c->grads, c->din, c->r, c->in, c->saved, c->B, &c->ctx);

    ffill(c->sdin, c->nin, NAN);
    ffill(c->wsave, c->nwsave, NAN);
    ffill(c->scratch, c->nscratch, NAN);
    c->ops->backward_input(d, c->params, c->sdin, c->r, c->in, c->saved, c->wsave, c->B, &c->ctx);
    ffill(c->scratch, c->nscratch, NAN);
    c->ops->backward_weight(d, c->params, c->sgrads, c->r, c->in, c->saved, c->wsave, c->B,
                            &c->ctx);
}

static void split_teardown(split_run *c)
{
    free(c->params), free(c->in), free(c->out), free(c->saved), free(c->scratch), free(c->r),
        free(c->wsave), free(c->grads), free(c->sgrads), free(c->din), free(c->sdin);
}

static const char *shape_of(char *buf, size_t len, const layer_desc *d, int B)
{
    snprintf(buf, len, "B=%d in=%d out=%d T=%d C=%d", B, d->in, d->out, d->seq, d->chan);
    return buf;
}

/* B + W == backward bitwise, then FD of B's din and W's gradients. */
static void split_check_case(const split_case *k, uint32_t tag)
{
    layer_desc d = parse_one(k->spec, k->input, k->index);
    const char *kind = layer_get(d.kind)->kind_name;
    split_run c;
    split_setup(&c, &d, k, tag);
    char shape[96];
    shape_of(shape, sizeof shape, &d, k->B);
    cr_assert(memcmp(c.sdin, c.din, c.nin * sizeof(float)) == 0,
              "%s (%s, %s): din of backward_input differs from backward's", kind, k->spec, shape);
    cr_assert(memcmp(c.sgrads, c.grads, c.nparams * sizeof(float)) == 0,
              "%s (%s, %s): gradients of backward_weight differ from backward's", kind, k->spec,
              shape);

    layer_param ps[LAYER_MAX_PARAMS];
    int np = c.ops->params(&d, ps);
    size_t off = 0;
    for (int j = 0; j < np; j++) {
        size_t n = numel_of(&ps[j]);
        char what[256];
        snprintf(what, sizeof what, "%s backward_weight d%.*s (%s)", kind, LAYER_NAME_MAX - 1,
                 ps[j].name, shape);
        double err = fd_check(what, c.params + off, n, c.sgrads + off, k->h, k->tol, split_obj, &c);
        fprintf(stderr, "fd split %-9s %-34s W d/d%-12s max |analytic-numeric| = %.3g\n", kind,
                shape, ps[j].name, err);
        off += n;
    }
    cr_assert_eq(off, c.nparams);
    if (d.kind == LAYER_EMBED) {
        /* token ids have no gradient: B writes zeros */
        for (size_t i = 0; i < c.nin; i++)
            cr_assert(c.sdin[i] == 0.0f, "embed backward_input din[%zu] = %g, want 0", i, c.sdin[i]);
    } else {
        char what[256];
        snprintf(what, sizeof what, "%s backward_input din (%s)", kind, shape);
        double err = fd_check(what, c.in, c.nin, c.sdin, k->h, k->tol, split_obj, &c);
        fprintf(stderr, "fd split %-9s %-34s B d/d%-12s max |analytic-numeric| = %.3g\n", kind,
                shape, "in", err);
    }
    split_teardown(&c);
}

/* ---------------------------------------------------- the cases, per kind */

/* Bounds and steps as the kind's backward tests use them: linear and lmhead
 * 1e-3 (affine, rounding of |out| ~ 5 over 2h); relu, dropout, embed,
 * posembed, patch, meanpool 1e-4 (linear on the stencil); gelu 2e-4 on
 * inputs of std 2; layernorm 1e-3; block 3e-3 with h = 5e-3 and parameters
 * of std 0.3. */
static const split_case cases[] = {
    {"linear 5", 7, 0, 1, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"linear 9", 16, 0, 3, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"linear_nobias 20", 33, 0, 6, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"linear 40", 8, 0, 2, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"relu", 7, 0, 1, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"relu", 5, 0, 3, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"relu", 33, 0, 4, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"gelu", 7, 0, 1, 1e-2f, 2e-4, 0.5f, 2.0f},
    {"gelu", 5, 0, 3, 1e-2f, 2e-4, 0.5f, 2.0f},
    {"gelu", 33, 0, 4, 1e-2f, 2e-4, 0.5f, 2.0f},
    {"layernorm", 8, 0, 1, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"layernorm 8", 24, 0, 3, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"layernorm", 64, 0, 5, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"embed 5 8, layernorm", 3, 1, 2, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"dropout 0.3", 7, 0, 1, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"dropout 0.5", 5, 0, 3, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"dropout 0.1", 33, 0, 4, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"embed 5 3", 4, 0, 1, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"embed 5 3", 4, 0, 3, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"embed 17 8", 6, 0, 2, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"embed 9 4, posembed", 3, 1, 1, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"embed 9 4, posembed", 3, 1, 3, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"patch 2 5, posembed", 16, 1, 2, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"patch 2 3", 16, 0, 1, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"patch 2 3", 16, 0, 3, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"patch 3 5", 36, 0, 2, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"patch 6 2", 36, 0, 2, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"embed 5 8, block 2", 5, 1, 1, 5e-3f, 3e-3, 0.3f, 1.0f},
    {"embed 5 8, block 2 causal", 5, 1, 1, 5e-3f, 3e-3, 0.3f, 1.0f},
    {"embed 5 8, block 2 causal", 5, 1, 3, 5e-3f, 3e-3, 0.3f, 1.0f},
    {"embed 5 6, block 3 causal", 3, 1, 2, 5e-3f, 3e-3, 0.3f, 1.0f},
    {"embed 7 4, lmhead 7", 3, 1, 1, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"embed 7 4, lmhead 7", 3, 1, 3, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"patch 2 6, lmhead 5", 16, 1, 2, 1e-2f, 1e-3, 0.5f, 1.0f},
    {"embed 7 4, meanpool", 3, 1, 1, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"embed 7 4, meanpool", 3, 1, 3, 1e-2f, 1e-4, 0.5f, 1.0f},
    {"patch 2 5, meanpool", 36, 1, 2, 1e-2f, 1e-4, 0.5f, 1.0f},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* Runs every case of kind k; asserts there are at least three, one with B = 1. */
static void check_kind(layer_kind kind)
{
    int n = 0, batch1 = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        layer_desc d = parse_one(cases[i].spec, cases[i].input, cases[i].index);
        if (d.kind != kind) continue;
        split_check_case(&cases[i], 1000 + 10 * (uint32_t)i);
        n++;
        batch1 += cases[i].B == 1;
    }
    cr_assert_geq(n, 3, "%s: %d shapes checked, expected at least 3", layer_get(kind)->kind_name, n);
    cr_assert_geq(batch1, 1, "%s: no shape with B = 1", layer_get(kind)->kind_name);
}

Test(split_layer, linear) { check_kind(LAYER_LINEAR); }
Test(split_layer, relu) { check_kind(LAYER_RELU); }
Test(split_layer, gelu) { check_kind(LAYER_GELU); }
Test(split_layer, layernorm) { check_kind(LAYER_LAYERNORM); }
Test(split_layer, dropout) { check_kind(LAYER_DROPOUT); }
Test(split_layer, embed) { check_kind(LAYER_EMBED); }
Test(split_layer, posembed) { check_kind(LAYER_POSEMBED); }
Test(split_layer, patch) { check_kind(LAYER_PATCH); }
Test(split_layer, block) { check_kind(LAYER_BLOCK); }
Test(split_layer, lmhead) { check_kind(LAYER_LMHEAD); }
Test(split_layer, meanpool) { check_kind(LAYER_MEANPOOL); }

/* Every kind of the registry has a case above (a new kind needs one). */
Test(split_layer, every_kind_has_cases)
{
    int seen[LAYER_KIND_COUNT] = {0};
    for (size_t i = 0; i < N_CASES; i++) {
        layer_desc d = parse_one(cases[i].spec, cases[i].input, cases[i].index);
        seen[d.kind]++;
    }
    for (int k = 0; k < LAYER_KIND_COUNT; k++) {
        const layer_ops *ops = layer_get((layer_kind)k);
        cr_assert(ops->backward_input && ops->backward_weight && ops->wsaved &&
                      ops->flops_backward_input && ops->flops_backward_weight,
                  "%s: a B/W split entry of the registry is missing", ops->kind_name);
        cr_assert_geq(seen[k], 3, "%s has %d split cases, expected at least 3", ops->kind_name, seen[k]);
    }
}

/* ----------------------------- W after B of other micro-batches, per kind */

/* M micro-batches of case k, each with its own input, dout, dropout key
 * (micro_batch m), forward stash and W stash, and one shared scratch. The
 * reference runs forward(m) and backward(m) for m = 0..M-1 into one
 * gradient buffer; the split runs every forward, then B(m) for each m with
 * W(m − delay) after it, and the W still due at the end, in micro-batch
 * order. din of every micro-batch and the accumulated gradients agree bit
 * for bit. */
static void interleave_case(const split_case *k, int M, int delay, uint32_t tag)
{
    layer_desc d = parse_one(k->spec, k->input, k->index);
    const layer_ops *ops = layer_get(d.kind);
    const int B = k->B;
    size_t np = layer_param_floats(&d), nin = (size_t)B * d.in, nout = (size_t)B * d.out;
    size_t nsaved = (size_t)B * ops->saved(&d), nscr = (size_t)B * ops->scratch(&d);
    size_t nw = (size_t)B * ops->wsaved(&d);
    float *params = random_params(&d, k->pstd, tag), *scratch = fnew(nscr);
    float *grads = fnew(np), *sgrads = fnew(np), *out = fnew(nout);
    float *in[3], *dout[3], *saved[3], *wsave[3], *din[3], *sdin[3];
    layer_ctx ctx[3];
    cr_assert_leq(M, 3);
    for (int m = 0; m < M; m++) {
        in[m] = random_input(&d, B, k->xstd, tag + 10 + (uint32_t)m);
        dout[m] = fnormal(nout, tag + 20 + (uint32_t)m, 1.0f);
        saved[m] = fnew(nsaved);
        wsave[m] = fnew(nw);
        din[m] = fnew(nin);
        sdin[m] = fnew(nin);
        layer_ctx c = {.seed = 3, .step = 1, .micro_batch = (uint32_t)m, .layer = 4,
                       .training = 1, .scratch = scratch};
        ctx[m] = c;
        ops->forward(&d, params, out, in[m], saved[m], B, &ctx[m]);
        ffill(wsave[m], nw, NAN);
        ffill(sdin[m], nin, NAN);
    }
    for (int m = 0; m < M; m++) {
        ffill(scratch, nscr, NAN);
        ops->backward(&d, params, grads, din[m], dout[m], in[m], saved[m], B, &ctx[m]);
    }
    int next_w = 0;
    for (int m = 0; m < M; m++) {
        ffill(scratch, nscr, NAN);
        ops->backward_input(&d, params, sdin[m], dout[m], in[m], saved[m], wsave[m], B, &ctx[m]);
        if (m - delay >= 0) {
            int w = next_w++;
            ffill(scratch, nscr, NAN);
            ops->backward_weight(&d, params, sgrads, dout[w], in[w], saved[w], wsave[w], B, &ctx[w]);
        }
    }
    for (; next_w < M; next_w++) {
        ffill(scratch, nscr, NAN);
        ops->backward_weight(&d, params, sgrads, dout[next_w], in[next_w], saved[next_w],
                             wsave[next_w], B, &ctx[next_w]);
    }
    for (int m = 0; m < M; m++)
        cr_assert(memcmp(din[m], sdin[m], nin * sizeof(float)) == 0,
                  "%s (%s, B=%d): din of micro-batch %d differs with W delayed by %d of %d",
                  ops->kind_name, k->spec, B, m, delay, M);
    cr_assert(memcmp(grads, sgrads, np * sizeof(float)) == 0,
              "%s (%s, B=%d): gradients after %d micro-batches with W delayed by %d differ from "
              "backward's",
              ops->kind_name, k->spec, B, M, delay);
    for (int m = 0; m < M; m++)
        free(in[m]), free(dout[m]), free(saved[m]), free(wsave[m]), free(din[m]), free(sdin[m]);
    free(params), free(scratch), free(grads), free(sgrads), free(out);
}

/* B0 B1 W0 W1; B0 B1 W0 B2 W1 W2; B0 B1 B2 W0 W1 W2 — for every case. */
Test(split_layer, delayed_weight_gradients_bitwise_equal_to_backward)
{
    for (size_t i = 0; i < N_CASES; i++) {
        uint32_t tag = 5000 + 100 * (uint32_t)i;
        interleave_case(&cases[i], 2, 2, tag);
        interleave_case(&cases[i], 3, 1, tag + 40);
        interleave_case(&cases[i], 3, 2, tag + 70);
    }
}

/* The same at sizes where OpenBLAS blocks (and may thread) its products and
 * the layernorm runs past its 256-wide accumulator block: bitwise only. */
Test(split_layer, delayed_weight_gradients_bitwise_at_larger_sizes)
{
    static const split_case big[] = {
        {"linear 256", 512, 0, 64, 0, 0, 0.05f, 1.0f},
        {"layernorm", 300, 0, 16, 0, 0, 0.5f, 1.0f},
        {"patch 7 64", 784, 0, 8, 0, 0, 0.1f, 1.0f},
        {"embed 256 64, posembed", 32, 1, 8, 0, 0, 0.1f, 1.0f},
        {"embed 256 64, block 4 causal", 32, 1, 4, 0, 0, 0.05f, 1.0f},
        {"embed 256 64, lmhead 256", 32, 1, 4, 0, 0, 0.05f, 1.0f},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        interleave_case(&big[i], 2, 2, 9000 + 100 * (uint32_t)i);
        interleave_case(&big[i], 3, 1, 9040 + 100 * (uint32_t)i);
    }
}

/* ------------------------------------------------- FLOPs and W stash sizes */

/* Linear and lmhead: B = one product, W = one product (+ the bias sums), so
 * B ≈ W ≈ forward. Kinds without parameters: W = 0. The block: B and W
 * each about one forward (both hold 24·T·C² of products; B also the
 * attention backward, 8·T²·C), and it alone keeps 9·T·C floats per sample
 * from B for W. Also prints the W stash of the GPT configs. */
Test(split_layer, flops_and_wsaved)
{
    layer_desc lin = parse_one("linear 300", 200, 0);
    const layer_ops *l = layer_get(LAYER_LINEAR);
    cr_assert(l->flops_backward_input(&lin) == 2.0 * 200 * 300);
    cr_assert(l->flops_backward_weight(&lin) == l->flops(&lin));
    layer_desc head = parse_one("embed 10 256, lmhead 50", 128, 1);
    const layer_ops *h = layer_get(LAYER_LMHEAD);
    cr_assert(h->flops_backward_input(&head) == h->flops(&head) &&
              h->flops_backward_weight(&head) == h->flops(&head));
    const char *noparam[] = {"relu", "gelu", "dropout 0.1"};
    for (int i = 0; i < 3; i++) {
        layer_desc d = parse_one(noparam[i], 64, 0);
        const layer_ops *o = layer_get(d.kind);
        cr_assert(o->flops_backward_weight(&d) == 0.0, "%s: W FLOPs must be 0", noparam[i]);
        cr_assert(o->flops_backward_input(&d) > 0.0, "%s: B FLOPs must be > 0", noparam[i]);
    }
    for (int k = 0; k < LAYER_KIND_COUNT; k++)
        if (k != LAYER_BLOCK) {
            for (size_t i = 0; i < N_CASES; i++) {
                layer_desc d = parse_one(cases[i].spec, cases[i].input, cases[i].index);
                if ((int)d.kind == k)
                    cr_assert_eq(layer_get(d.kind)->wsaved(&d), 0, "%s keeps nothing for W",
                                 layer_get(d.kind)->kind_name);
            }
        }
    const layer_ops *b = layer_get(LAYER_BLOCK);
    struct {
        const char *name, *spec;
        int T, rows;
    } gpt[] = {{"tests/configs/tiny_gpt.ini", "embed 256 32, block 2 causal", 16, 16 / 4},
               {"examples/gpt_bytes.ini", "embed 256 256, block 4 causal", 128, 16 / 4}};
    for (int g = 0; g < 2; g++) {
        layer_desc d = parse_one(gpt[g].spec, gpt[g].T, 1);
        double T = d.seq, C = d.chan;
        cr_assert_eq(b->wsaved(&d), (size_t)(9 * T * C));
        double fwd = b->flops(&d), fb = b->flops_backward_input(&d), fw = b->flops_backward_weight(&d);
        cr_assert(fb >= 24 * T * C * C + 8 * T * T * C && fw >= 24 * T * C * C);
        cr_assert(fb > 0.95 * fwd && fb < 1.3 * fwd && fw > 0.9 * fwd && fw < 1.1 * fwd,
                  "block B %.4g and W %.4g FLOPs should each be about forward %.4g", fb, fw, fwd);
        fprintf(stderr,
                "%s block T=%d C=%d: forward stash %zu floats/sample (input %d + saved %zu), "
                "W stash %zu floats/sample (+ its output gradient %d when not the stage's last "
                "layer) = %zu floats per micro-batch of %d samples; FLOP/sample forward %.4g, "
                "B %.4g, W %.4g\n",
                gpt[g].name, d.seq, d.chan, (size_t)d.in + b->saved(&d), d.in, b->saved(&d),
                b->wsaved(&d), d.out, (size_t)gpt[g].rows * b->wsaved(&d), gpt[g].rows, fwd, fb, fw);
    }
}

/* --------------------------------------------------------------- stages */

#define MLP_SPEC "linear 24, relu, dropout 0.25, linear 16, layernorm, gelu, linear_nobias 12, " \
                 "relu, linear 5"
#define TINY_LM "embed 11 8, posembed, block 2 causal, block 2 causal, layernorm, lmhead 11"
#define ROWS 3
#define M_MB 5

typedef struct {
    const model *m;
    int P;
    const int *cuts;
    int delay; /* -1: stage_backward; else W(m) after B(m + delay) */
} pipe_setup;

/* Input of micro-batch mb: token ids for the LM, features otherwise. */
static void mb_input(const model *m, float *x, int mb)
{
    size_t n = (size_t)ROWS * m->input;
    if (m->layers[0].kind == LAYER_EMBED)
        fill_ids(x, n, m->layers[0].vocab, 700 + (uint32_t)mb);
    else
        rng_fill_normal(x, n, data_key(700 + (uint32_t)mb), 1.0f);
}

/* Runs M_MB micro-batches of step 3 (seed 5) through P stages [cuts[p],
 * cuts[p+1]) in order, one micro-batch at a time: forward through every
 * stage, the loss (softmax cross-entropy of every target of the rows,
 * scaled by 1/(rows·targets·M)), then backward through every stage, either
 * stage_backward or stage_backward_input with stage_backward_weight of
 * micro-batch mb − delay after it (the rest at the end, in order). Slots:
 * delay + 1, so a slot's forward follows the W of the micro-batch it held.
 * Returns the stages with their gradients and fills din0 (M_MB × rows ×
 * the first stage's in_dim) with the first stage's din. */
static void run_pipeline(const pipe_setup *ps, stage *parts, float *din0)
{
    const model *m = ps->m;
    const int P = ps->P, slots = ps->delay < 0 ? 1 : ps->delay + 1;
    const int N = ROWS * m->targets, V = m->classes;
    float *act[4][3], *grad[4][3], *dlogits[3];
    float *logits = fnew((size_t)N * V), *probs = fnew((size_t)N * V);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)N);
    cr_assert_not_null(y);
    cr_assert_leq(P, 4);
    cr_assert_leq(slots, 3);
    for (int p = 0; p < P; p++) {
        cr_assert_eq(stage_init(&parts[p], m, ps->cuts[p], ps->cuts[p + 1], ROWS, slots, 42), PT_OK,
                     "%s", pt_last_error());
        if (ps->delay >= 0) cr_assert_eq(stage_split_backward_init(&parts[p]), PT_OK, "%s", pt_last_error());
        for (int s = 0; s < slots; s++) {
            act[p][s] = fnew((size_t)ROWS * parts[p].out_dim);
            grad[p][s] = fnew((size_t)ROWS * parts[p].out_dim);
        }
    }
    for (int s = 0; s < slots; s++) dlogits[s] = fnew((size_t)N * V);
    int next_w = 0;
    for (int mb = 0; mb < M_MB; mb++) {
        int slot = mb % slots;
        mb_input(m, stage_input(&parts[0], slot), mb);
        for (int p = 0; p < P; p++) {
            stage_forward(&parts[p], slot, act[p][slot], 5, 3, (uint32_t)mb, 1);
            if (p + 1 < P)
                memcpy(stage_input(&parts[p + 1], slot), act[p][slot],
                       sizeof(float) * ROWS * parts[p].out_dim);
        }
        memcpy(logits, act[P - 1][slot], sizeof(float) * (size_t)N * V);
        for (int i = 0; i < N; i++) y[i] = (int32_t)((i * 7 + 3 * mb + 1) % V);
        float loss;
        cr_assert_eq(softmax_xent_forward(probs, &loss, logits, y, N, V), -1);
        softmax_xent_backward(dlogits[slot], probs, y, N, V, 1.0f / ((float)N * M_MB));
        for (int p = P - 1; p >= 0; p--) {
            const float *dout = p == P - 1 ? dlogits[slot] : grad[p][slot];
            float *din = p > 0 ? grad[p - 1][slot] : din0 + (size_t)mb * ROWS * parts[0].in_dim;
            if (ps->delay < 0)
                stage_backward(&parts[p], slot, dout, din, 5, 3, (uint32_t)mb);
            else
                cr_assert_eq(stage_backward_input(&parts[p], slot, dout, din, 5, 3, (uint32_t)mb),
                             PT_OK, "%s", pt_last_error());
        }
        while (ps->delay >= 0 && next_w <= mb - ps->delay) {
            int w = next_w++, ws = w % slots;
            for (int p = P - 1; p >= 0; p--)
                cr_assert_eq(stage_backward_weight(&parts[p], ws, p == P - 1 ? dlogits[ws] : grad[p][ws],
                                                   5, 3, (uint32_t)w),
                             PT_OK, "%s", pt_last_error());
        }
    }
    while (ps->delay >= 0 && next_w < M_MB) {
        int w = next_w++, ws = w % slots;
        for (int p = P - 1; p >= 0; p--)
            cr_assert_eq(stage_backward_weight(&parts[p], ws, p == P - 1 ? dlogits[ws] : grad[p][ws],
                                               5, 3, (uint32_t)w),
                         PT_OK, "%s", pt_last_error());
    }
    for (int p = 0; p < P; p++)
        for (int s = 0; s < slots; s++) free(act[p][s]), free(grad[p][s]);
    for (int s = 0; s < slots; s++) free(dlogits[s]);
    free(logits), free(probs), free(y);
}

/* The reference (one whole stage, stage_backward) against one whole stage
 * and the 3-stage cut, each with W delayed by 1 and by 2. */
static void stage_split_check(model *m, const int *cuts3)
{
    const int whole_cuts[2] = {0, m->n_layers};
    size_t nd = (size_t)M_MB * ROWS * m->layers[0].in;
    float *ref_din = fnew(nd), *din = fnew(nd);
    stage ref;
    pipe_setup rs = {m, 1, whole_cuts, -1};
    run_pipeline(&rs, &ref, ref_din);
    double gsum = 0;
    for (size_t j = 0; j < ref.n_params; j++) gsum += fabs(ref.grads[j]);
    cr_assert(gsum > 0, "reference gradients are all zero");
    for (int split = 0; split < 2; split++)
        for (int delay = 1; delay <= 2; delay++) {
            pipe_setup ps = {m, split ? 3 : 1, split ? cuts3 : whole_cuts, delay};
            stage parts[3];
            ffill(din, nd, NAN);
            run_pipeline(&ps, parts, din);
            cr_assert(memcmp(din, ref_din, nd * sizeof(float)) == 0,
                      "first stage's din differs (%d stage(s), W delayed by %d)", ps.P, delay);
            int checked = 0;
            for (int p = 0; p < ps.P; p++) {
                for (int k = 0; k < parts[p].n_tensors; k++) {
                    const stage_tensor *t = &parts[p].tensors[k];
                    int w = stage_find_tensor(&ref, t->name);
                    cr_assert_geq(w, 0);
                    cr_assert(memcmp(ref.grads + ref.tensors[w].offset, parts[p].grads + t->offset,
                                     t->numel * sizeof(float)) == 0,
                              "gradient of %s differs (%d stage(s), W delayed by %d)", t->name, ps.P,
                              delay);
                    checked++;
                }
                cr_assert_gt(stage_stash_bytes(&parts[p]),
                             parts[p].slot_floats * (size_t)parts[p].slots * sizeof(float),
                             "the W stash counts in the stash bytes");
                stage_free(&parts[p]);
            }
            cr_assert_eq(checked, ref.n_tensors);
        }
    stage_free(&ref);
    free(ref_din), free(din);
}

Test(split_stage, mlp_with_dropout_and_layernorm_bitwise_equal_to_backward)
{
    model m;
    cr_assert_eq(model_parse(&m, MLP_SPEC, 10), PT_OK, "%s", pt_last_error());
    const int cuts[4] = {0, 3, 5, 9}; /* cut inside the dropout/layernorm run */
    stage_split_check(&m, cuts);
    model_free(&m);
}

Test(split_stage, tiny_gpt_with_tied_embeddings_bitwise_equal_to_backward)
{
    model m;
    cr_assert_eq(model_parse(&m, TINY_LM, 5), PT_OK, "%s", pt_last_error());
    cr_assert_eq(model_tie_embeddings(&m), PT_OK, "%s", pt_last_error());
    const int cuts[4] = {0, 3, 4, 6}; /* {embed, posembed, block}, {block}, {layernorm, lmhead} */
    stage_split_check(&m, cuts);
    model_free(&m);
}

/* Misuse is an error naming the stage, not a crash: B or W before
 * stage_split_backward_init, or of a slot out of range. The W stash holds
 * per slot the block's 9·T·C floats per sample and the output gradients of
 * the layers with parameters but the last. */
Test(split_stage, errors_and_stash_layout)
{
    model m;
    cr_assert_eq(model_parse(&m, TINY_LM, 5), PT_OK);
    stage s;
    cr_assert_eq(stage_init(&s, &m, 0, m.n_layers, ROWS, 2, 1), PT_OK);
    float *g = fnew((size_t)ROWS * s.out_dim);
    size_t before = stage_stash_bytes(&s);
    cr_assert_eq(stage_backward_input(&s, 0, g, NULL, 1, 0, 0), PT_ERR_INVALID);
    cr_assert(strstr(pt_last_error(), "stage_split_backward_init") && strstr(pt_last_error(), "[0, 6)"),
              "message: %s", pt_last_error());
    cr_assert_eq(stage_backward_weight(&s, 0, g, 1, 0, 0), PT_ERR_INVALID);
    cr_assert_eq(stage_split_backward_init(&s), PT_OK);
    cr_assert_eq(stage_split_backward_init(&s), PT_OK, "a second call does nothing");
    cr_assert_eq(stage_backward_input(&s, 2, g, NULL, 1, 0, 0), PT_ERR_INVALID);
    cr_assert(strstr(pt_last_error(), "slot 2, expected 0..1"), "message: %s", pt_last_error());
    cr_assert_eq(stage_backward_weight(&s, -1, g, 1, 0, 0), PT_ERR_INVALID);
    /* embed, posembed, block, block, layernorm keep their output gradient
     * (T·C each per sample); the blocks 9·T·C each; lmhead is last */
    const size_t TC = 5 * 8;
    cr_assert_eq(s.wslot_floats, (size_t)ROWS * (5 * TC + 2 * 9 * TC), "W slot of %zu floats", s.wslot_floats);
    cr_assert_eq(stage_stash_bytes(&s), before + 2 * s.wslot_floats * sizeof(float));
    free(g);
    stage_free(&s);
    model_free(&m);
}
