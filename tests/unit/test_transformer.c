/* test_transformer.c — the sequence layers: embed, posembed, patch, block
 * (multi-head self-attention + MLP), lmhead, meanpool, the model grammar
 * that chains (T, C), tied embeddings, and stages of a Transformer.
 *
 * Gradients: each layer runs through the registry (layer_get(kind)->forward
 * and ->backward, with the saved and scratch sizes the registry declares),
 * for several shapes including B = 1, and the analytic backward is compared,
 * for EVERY element of the input (where the input has a gradient) and of
 * every parameter, with the central finite difference of L = Σ r·out (r fixed
 * random weights, so dL/dout = r). Kernels run in float; L is summed in
 * double and the quotient divides by the perturbation actually applied,
 * (x+h) − (x−h). The bound each check must meet,
 *     |analytic − numeric| ≤ tol·max(1, |numeric|),
 * is stated next to it; the measured maxima are printed on stderr.
 * Forwards are also checked against double-precision references, because a
 * finite-difference check cannot see a wrong forward. */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_DATA_SEED 20240612u
#include "fd_check.h"
#include "kernels.h"
#include "layers.h"
#include "rng.h"
#include "stage.h"

/* ------------------------------------------------------------- helpers */

/* token ids 0..V-1 stored as floats */
static void fill_ids(float *ids, size_t n, int V, uint32_t tag)
{
    rng_key k = data_key(tag);
    for (size_t i = 0; i < n; i++) ids[i] = (float)(rng_u32(k, i) % (uint32_t)V);
}

static void report(const char *kernel, const char *shape, const char *wrt, double err)
{
    fprintf(stderr, "fd %-9s %-22s d/d%-12s max |analytic-numeric| = %.3g\n", kernel, shape,
            wrt, err);
}

static layer_desc parse_one(const char *spec, int input, int index)
{
    model m;
    cr_assert_eq(model_parse(&m, spec, input), PT_OK, "'%s': %s", spec, pt_last_error());
    layer_desc d = m.layers[index];
    model_free(&m);
    return d;
}

/* ------------------------------------------- one layer through the registry */

typedef struct {
    const layer_desc *d;
    const layer_ops *ops;
    float *params, *grads, *in, *out, *saved, *scratch, *r, *din;
    size_t nparams, nin, nout;
    int B;
    layer_ctx ctx;
} layer_run;

static double layer_obj(void *p)
{
    layer_run *c = p;
    c->ops->forward(c->d, c->params, c->out, c->in, c->saved, c->B, &c->ctx);
    return dot_rd(c->r, c->out, c->nout);
}

/* Allocates a layer with random parameters (normal std pstd; tensors that
 * start at one get 1 + that) and input (normal std 1, or token ids for an
 * embedding), then runs forward and backward with dout = r. Saved and
 * scratch are exactly the sizes the registry declares (the sanitizer sees an
 * overrun); din and the saved floats start as NaN, so anything not written
 * shows. */
static void layer_setup(layer_run *c, const layer_desc *d, int B, float pstd, uint32_t tag)
{
    memset(c, 0, sizeof *c);
    c->d = d;
    c->ops = layer_get(d->kind);
    c->B = B;
    c->nparams = layer_param_floats(d);
    c->nin = (size_t)B * d->in;
    c->nout = (size_t)B * d->out;
    c->params = fnormal(c->nparams, tag, pstd);
    layer_param ps[LAYER_MAX_PARAMS];
    int np = c->ops->params(d, ps);
    float *p = c->params;
    for (int j = 0; j < np; j++) {
        size_t n = (size_t)ps[j].shape[0] * (ps[j].ndim == 2 ? (size_t)ps[j].shape[1] : 1);
        if (ps[j].init == INIT_ONE)
            for (size_t i = 0; i < n; i++) p[i] += 1.0f;
        p += n;
    }
    c->grads = fnew(c->nparams);
    if (d->kind == LAYER_EMBED) {
        c->in = fnew(c->nin);
        fill_ids(c->in, c->nin, d->vocab, tag + 1);
    } else {
        c->in = fnormal(c->nin, tag + 1, 1.0f);
    }
    c->out = fnew(c->nout);
    c->saved = fnew((size_t)B * c->ops->saved(d));
    ffill(c->saved, (size_t)B * c->ops->saved(d), NAN);
    c->scratch = fnew((size_t)B * c->ops->scratch(d));
    c->r = fnormal(c->nout, tag + 2, 1.0f);
    c->din = fnew(c->nin);
    ffill(c->din, c->nin, NAN);
    layer_ctx ctx = {.seed = 3, .step = 0, .micro_batch = 0, .layer = 0, .training = 1,
                     .scratch = c->scratch};
    c->ctx = ctx;
    c->ops->forward(d, c->params, c->out, c->in, c->saved, B, &c->ctx);
    c->ops->backward(d, c->params, c->grads, c->din, c->r, c->in, c->saved, B, &c->ctx);
}

static void layer_teardown(layer_run *c)
{
    free(c->params), free(c->grads), free(c->in), free(c->out), free(c->saved), free(c->scratch),
        free(c->r), free(c->din);
}

/* FD of every parameter tensor (reported by name) and, when check_din, of
 * the input. */
static void layer_fd(const char *kind, const layer_desc *d, int B, float pstd, float h, double tol,
                     int check_din, uint32_t tag)
{
    layer_run c;
    layer_setup(&c, d, B, pstd, tag);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d T=%d C=%d%s", B, d->seq, d->chan,
             d->kind == LAYER_BLOCK ? (d->causal ? " causal" : " full") : "");
    layer_param ps[LAYER_MAX_PARAMS];
    int np = c.ops->params(d, ps);
    size_t off = 0;
    for (int j = 0; j < np; j++) {
        size_t n = (size_t)ps[j].shape[0] * (ps[j].ndim == 2 ? (size_t)ps[j].shape[1] : 1);
        char what[96];
        snprintf(what, sizeof what, "%s d%.*s", kind, LAYER_NAME_MAX - 1, ps[j].name);
        report(kind, shape, ps[j].name,
               fd_check(what, c.params + off, n, c.grads + off, h, tol, layer_obj, &c));
        off += n;
    }
    cr_assert_eq(off, c.nparams);
    if (check_din) {
        char what[64];
        snprintf(what, sizeof what, "%s din", kind);
        report(kind, shape, "in", fd_check(what, c.in, c.nin, c.din, h, tol, layer_obj, &c));
    }
    layer_teardown(&c);
}

/* ------------------------------------------------------------- embedding */

/* The output is a row copy of w, linear in w with coefficient 0 or 1, so the
 * difference has no truncation error; only the float rounding of L (~1e-6)
 * over 2h = 2e-2. Bound: 1e-4·max(1, |numeric|). Ids repeat (V < B·T), so
 * the scatter-add of several positions into one row is checked too. */
Test(embed, gradients_match_finite_differences)
{
    layer_desc d = parse_one("embed 5 3", 4, 0);
    layer_fd("embed", &d, 1, 0.5f, 1e-2f, 1e-4, 0, 100);
    layer_fd("embed", &d, 3, 0.5f, 1e-2f, 1e-4, 0, 110);
    d = parse_one("embed 17 8", 6, 0);
    layer_fd("embed", &d, 2, 0.5f, 1e-2f, 1e-4, 0, 120);
}

/* out rows are w rows bit for bit; din is zero-filled; ids outside [0, V) or
 * not integers give zero rows and no gradient, and embedding_check_ids
 * points at the first of them. */
Test(embed, bad_ids_write_zeros_and_are_reported)
{
    layer_desc d = parse_one("embed 6 4", 5, 0);
    const layer_ops *ops = layer_get(LAYER_EMBED);
    float ids[10] = {0, 5, 2, -1, 6, 2.5f, NAN, 1e9f, 3, 5};
    float *w = fnormal(24, 150, 1.0f), out[40], dw[24] = {0}, din[10], dout[40];
    for (int i = 0; i < 40; i++) dout[i] = (float)(i + 1);
    ffill(din, 10, NAN);
    layer_ctx ctx = {0};
    ops->forward(&d, w, out, ids, NULL, 2, &ctx);
    for (int i = 0; i < 10; i++) {
        int good = i < 3 || i > 7;
        for (int c = 0; c < 4; c++) {
            float want = good ? w[(int)ids[i] * 4 + c] : 0.0f;
            cr_assert(out[i * 4 + c] == want, "embed out[%d,%d] = %g, want %g (id %g)", i, c,
                      out[i * 4 + c], want, ids[i]);
        }
    }
    ops->backward(&d, w, dw, din, dout, ids, NULL, 2, &ctx);
    for (int i = 0; i < 10; i++) cr_assert(din[i] == 0.0f, "embed din[%d] = %g, want 0", i, din[i]);
    /* row 5 gets positions 1 and 9, row 2 position 2, row 0 position 0, row 3
     * position 8; rows 1 and 4 nothing */
    for (int c = 0; c < 4; c++) {
        cr_assert(dw[5 * 4 + c] == dout[1 * 4 + c] + dout[9 * 4 + c], "embed dw[5,%d]", c);
        cr_assert(dw[2 * 4 + c] == dout[2 * 4 + c], "embed dw[2,%d]", c);
        cr_assert(dw[0 * 4 + c] == dout[0 * 4 + c], "embed dw[0,%d]", c);
        cr_assert(dw[3 * 4 + c] == dout[8 * 4 + c], "embed dw[3,%d]", c);
        cr_assert(dw[1 * 4 + c] == 0.0f && dw[4 * 4 + c] == 0.0f, "embed dw of unused rows");
    }
    cr_assert_eq(embedding_check_ids(ids, 10, 6), 3, "first bad id is at 3 (-1)");
    cr_assert_eq(embedding_check_ids(ids, 3, 6), -1, "ids 0, 5, 2 are all valid for V=6");
    float frac[2] = {1, 2.5f}, big[1] = {6}, nan1[1] = {NAN};
    cr_assert_eq(embedding_check_ids(frac, 2, 6), 1, "2.5 is not a token id");
    cr_assert_eq(embedding_check_ids(big, 1, 6), 0, "6 is out of range for V=6");
    cr_assert_eq(embedding_check_ids(nan1, 1, 6), 0, "NaN is not a token id");
    free(w);
}

/* -------------------------------------------------------------- posembed */

/* out = in + w: affine in both, bound 1e-4·max(1, |numeric|) (rounding only). */
Test(posembed, gradients_match_finite_differences)
{
    layer_desc d = parse_one("embed 9 4, posembed", 3, 1);
    cr_assert_eq(d.seq, 3);
    cr_assert_eq(d.chan, 4);
    layer_fd("posembed", &d, 1, 0.5f, 1e-2f, 1e-4, 1, 200);
    layer_fd("posembed", &d, 3, 0.5f, 1e-2f, 1e-4, 1, 210);
    d = parse_one("patch 2 5, posembed", 16, 1);
    layer_fd("posembed", &d, 2, 0.5f, 1e-2f, 1e-4, 1, 220);
}

/* ----------------------------------------------------------------- patch */

/* Linear in img, w and b (im2col is a permutation): bound
 * 1e-4·max(1, |numeric|), rounding of L only. */
Test(patch, gradients_match_finite_differences)
{
    layer_desc d = parse_one("patch 2 3", 16, 0);
    cr_assert_eq(d.seq, 4);
    layer_fd("patch", &d, 1, 0.5f, 1e-2f, 1e-4, 1, 300);
    layer_fd("patch", &d, 3, 0.5f, 1e-2f, 1e-4, 1, 310);
    d = parse_one("patch 3 5", 36, 0);
    layer_fd("patch", &d, 2, 0.5f, 1e-2f, 1e-4, 1, 320);
    d = parse_one("patch 6 2", 36, 0); /* one patch, T = 1 */
    layer_fd("patch", &d, 2, 0.5f, 1e-2f, 1e-4, 1, 330);
    d = parse_one("patch 1 2", 9, 0); /* one pixel per token */
    layer_fd("patch", &d, 1, 0.5f, 1e-2f, 1e-4, 1, 340);
}

/* Token t = (py, px) holds pixels (py·P + ky, px·P + kx) in row-major (ky,
 * kx) order; out = cols·wᵀ + b against a double loop over the image itself
 * (γ_{P²+1}·Σ|terms| bound, as for linear); col2im inverts im2col exactly. */
Test(patch, forward_matches_pixel_loop)
{
    const int B = 2, S = 6, P = 3, C = 4, G = S / P, T = G * G, K = P * P;
    layer_desc d = parse_one("patch 3 4", S * S, 0);
    float *img = fnormal((size_t)B * S * S, 350, 1.0f), *p = fnormal((size_t)C * K + C, 351, 1.0f);
    float *out = fnew((size_t)B * T * C), *work = fnew(2 * (size_t)B * S * S);
    float *back = fnew((size_t)B * S * S);
    layer_ctx ctx = {.scratch = work};
    layer_get(LAYER_PATCH)->forward(&d, p, out, img, NULL, B, &ctx);
    double u = ldexp(1.0, -24), gamma = (K + 1) * u / (1.0 - (K + 1) * u);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double ref = p[C * K + c], mag = fabs(ref);
                for (int ky = 0; ky < P; ky++)
                    for (int kx = 0; kx < P; kx++) {
                        int y = (t / G) * P + ky, x = (t % G) * P + kx;
                        double term = (double)img[(size_t)b * S * S + y * S + x] * p[c * K + ky * P + kx];
                        ref += term;
                        mag += fabs(term);
                    }
                double got = out[((size_t)b * T + t) * C + c];
                cr_assert(fabs(got - ref) <= gamma * mag, "patch out[%d,%d,%d] %.9g vs %.9g", b, t, c, got, ref);
            }
    patch_im2col(work, img, B, S, P);
    patch_col2im(back, work, B, S, P);
    cr_assert(memcmp(back, img, sizeof(float) * B * S * S) == 0, "col2im(im2col(img)) != img");
    free(img), free(p), free(out), free(work), free(back);
}

/* ---------------------------------------------------------------- lmhead */

/* Linear: bound 1e-3·max(1, |numeric|) as for linear (|out| ~ 5 here). */
Test(lmhead, gradients_match_finite_differences)
{
    layer_desc d = parse_one("embed 7 4, lmhead 7", 3, 1);
    cr_assert_eq(d.out, 21);
    layer_fd("lmhead", &d, 1, 0.5f, 1e-2f, 1e-3, 1, 400);
    layer_fd("lmhead", &d, 3, 0.5f, 1e-2f, 1e-3, 1, 410);
    d = parse_one("patch 2 6, lmhead 5", 16, 1);
    layer_fd("lmhead", &d, 2, 0.5f, 1e-2f, 1e-3, 1, 420);
}

/* -------------------------------------------------------------- meanpool */

/* Linear: bound 1e-4·max(1, |numeric|). Forward: the mean in double within
 * 1 ulp-ish, 1e-6·max(1, |ref|). */
Test(meanpool, gradients_match_finite_differences_and_forward_is_the_mean)
{
    layer_desc d = parse_one("embed 7 4, meanpool", 3, 1);
    cr_assert_eq(d.out, 4);
    layer_fd("meanpool", &d, 1, 0.5f, 1e-2f, 1e-4, 1, 500);
    layer_fd("meanpool", &d, 3, 0.5f, 1e-2f, 1e-4, 1, 510);
    d = parse_one("patch 2 5, meanpool", 36, 1); /* T = 9 */
    layer_fd("meanpool", &d, 2, 0.5f, 1e-2f, 1e-4, 1, 520);
    layer_run c;
    layer_setup(&c, &d, 2, 0.5f, 530);
    for (int b = 0; b < 2; b++)
        for (int ch = 0; ch < 5; ch++) {
            double ref = 0;
            for (int t = 0; t < 9; t++) ref += c.in[(size_t)b * 45 + t * 5 + ch];
            ref /= 9;
            cr_assert(fabs(c.out[b * 5 + ch] - ref) <= 1e-6 * fmax(1, fabs(ref)), "meanpool out[%d,%d]", b, ch);
        }
    layer_teardown(&c);
}

/* ------------------------------------------------------------- attention */

/* A double reference of the attention core for one sample: att[H,T,T] and
 * out[T,C] from qkv[T,3C]. */
static void ref_attention(double *out, double *att, const float *qkv, int T, int C, int H, int causal)
{
    int hs = C / H;
    double scale = 1.0 / sqrt((double)hs);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++) {
            double *a = att + ((size_t)h * T + i) * T, mx = -INFINITY, sum = 0;
            int n = causal ? i + 1 : T;
            for (int j = 0; j < T; j++) {
                double s = 0;
                for (int k = 0; k < hs; k++)
                    s += (double)qkv[(size_t)i * 3 * C + h * hs + k] * qkv[(size_t)j * 3 * C + C + h * hs + k];
                a[j] = s * scale;
                if (j < n && a[j] > mx) mx = a[j];
            }
            for (int j = 0; j < T; j++) {
                a[j] = j < n ? exp(a[j] - mx) : 0.0;
                sum += a[j];
            }
            for (int j = 0; j < T; j++) a[j] /= sum;
            for (int k = 0; k < hs; k++) {
                double o = 0;
                for (int j = 0; j < T; j++) o += a[j] * qkv[(size_t)j * 3 * C + 2 * C + h * hs + k];
                out[(size_t)i * C + h * hs + k] = o;
            }
        }
}

typedef struct {
    float *qkv, *out, *att, *r;
    int B, T, C, H, causal;
} attn_ctx;

static double attn_obj(void *p)
{
    attn_ctx *c = p;
    attention_forward(c->out, c->att, c->qkv, c->B, c->T, c->C, c->H, c->causal);
    return dot_rd(c->r, c->out, (size_t)c->B * c->T * c->C);
}

/* Against the double reference: probabilities within 1e-6 absolute (float
 * softmax of scores ~ N(0, 4)), rows sum to 1 within T·2^-23, masked
 * entries exactly 0; out within 1e-5·max(1, |ref|). Then FD of dqkv: the
 * softmax is smooth; h = 1e-2 with scores of std ~2 gives truncation
 * h²/6·|∂³L| ≲ 1e-4 and rounding ~1e-5. Bound: 1e-3·max(1, |numeric|). */
static void attention_check(int B, int T, int C, int H, int causal, uint32_t tag)
{
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, na = (size_t)B * H * T * T;
    attn_ctx c = {fnormal(nq, tag, 1.0f), fnew(no), fnew(na), fnormal(no, tag + 1, 1.0f), B, T, C, H, causal};
    attention_forward(c.out, c.att, c.qkv, B, T, C, H, causal);
    double *rout = malloc(sizeof(double) * T * C), *ratt = malloc(sizeof(double) * H * T * T);
    cr_assert(rout && ratt);
    for (int b = 0; b < B; b++) {
        ref_attention(rout, ratt, c.qkv + (size_t)b * T * 3 * C, T, C, H, causal);
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                const float *a = c.att + (((size_t)b * H + h) * T + i) * T;
                double sum = 0;
                for (int j = 0; j < T; j++) {
                    double ref = ratt[((size_t)h * T + i) * T + j];
                    cr_assert(fabs(a[j] - ref) <= 1e-6, "att[%d,%d,%d,%d] %.9g vs %.9g", b, h, i, j, a[j], ref);
                    if (causal && j > i) cr_assert(a[j] == 0.0f, "masked att[%d,%d,%d,%d] = %g", b, h, i, j, a[j]);
                    sum += a[j];
                }
                cr_assert(fabs(sum - 1.0) <= T * ldexp(1.0, -23), "att row (%d,%d,%d) sums to %.9g", b, h, i, sum);
            }
        for (int i = 0; i < T * C; i++) {
            double got = c.out[(size_t)b * T * C + i], ref = rout[i];
            cr_assert(fabs(got - ref) <= 1e-5 * fmax(1, fabs(ref)), "attention out[%d,%d] %.9g vs %.9g", b, i, got, ref);
        }
    }
    float *dqkv = fnew(nq), *work = fnew((size_t)T * T);
    ffill(dqkv, nq, NAN);
    attention_backward(dqkv, work, c.r, c.qkv, c.att, B, T, C, H, causal);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d T=%d C=%d H=%d%s", B, T, C, H, causal ? " causal" : "");
    report("attention", shape, "qkv", fd_check("attention dqkv", c.qkv, nq, dqkv, 1e-2f, 1e-3, attn_obj, &c));
    free(c.qkv), free(c.out), free(c.att), free(c.r), free(rout), free(ratt), free(dqkv), free(work);
}

Test(attention, matches_reference_and_finite_differences)
{
    attention_check(1, 5, 8, 2, 0, 600);
    attention_check(1, 5, 8, 2, 1, 610);
    attention_check(3, 4, 6, 3, 1, 620);
    attention_check(2, 7, 4, 1, 0, 630);
    attention_check(1, 1, 4, 2, 1, 640); /* one position: att = 1 */
    attention_check(1, 70, 4, 2, 1, 650); /* causal by blocks of 32 query rows: 32 + 32 + 6 */
    attention_check(2, 64, 4, 1, 1, 660); /* T a multiple of the block */
}

/* ----------------------------------------------------------------- block */

static void ref_layernorm(double *o, const double *x, const float *w, const float *b, int C)
{
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    v /= C;
    double rs = 1.0 / sqrt(v + 1e-5);
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * rs * w[c] + b[c];
}

/* o[OUT] = x[IN]·wᵀ + b */
static void ref_linear(double *o, const double *x, const float *w, const float *b, int IN, int OUT)
{
    for (int j = 0; j < OUT; j++) {
        double s = b[j];
        for (int k = 0; k < IN; k++) s += x[k] * w[(size_t)j * IN + k];
        o[j] = s;
    }
}

/* The block of one sample in double, from the formula of layers.c, with
 * parameters in the order of block_params. */
static void ref_block(double *y, const float *x, const float *p, int T, int C, int H, int causal)
{
    const float *ln1w = p, *ln1b = ln1w + C, *wqkv = ln1b + C, *bqkv = wqkv + 3 * C * C,
                *wproj = bqkv + 3 * C, *bproj = wproj + C * C, *ln2w = bproj + C, *ln2b = ln2w + C,
                *wfc = ln2b + C, *bfc = wfc + 4 * C * C, *wfc2 = bfc + 4 * C, *bfc2 = wfc2 + 4 * C * C;
    double *xd = malloc(sizeof(double) * T * C), *h = malloc(sizeof(double) * T * 4 * C),
           *qkv = malloc(sizeof(double) * T * 3 * C), *att = malloc(sizeof(double) * H * T * T),
           *ay = malloc(sizeof(double) * T * C), *t = malloc(sizeof(double) * 4 * C);
    float *qkvf = malloc(sizeof(float) * T * 3 * C);
    cr_assert(xd && h && qkv && att && ay && t && qkvf);
    for (int i = 0; i < T * C; i++) xd[i] = x[i];
    for (int i = 0; i < T; i++) {
        ref_layernorm(t, xd + (size_t)i * C, ln1w, ln1b, C);
        ref_linear(qkv + (size_t)i * 3 * C, t, wqkv, bqkv, C, 3 * C);
    }
    /* the attention reference reads floats; rounding qkv to float costs
     * 2^-24 relative, far inside the bound */
    for (int i = 0; i < T * 3 * C; i++) qkvf[i] = (float)qkv[i];
    ref_attention(ay, att, qkvf, T, C, H, causal);
    for (int i = 0; i < T; i++) {
        double *a = xd + (size_t)i * C, o[64];
        ref_linear(o, ay + (size_t)i * C, wproj, bproj, C, C);
        for (int c = 0; c < C; c++) a[c] += o[c];
        ref_layernorm(t, a, ln2w, ln2b, C);
        ref_linear(h, t, wfc, bfc, C, 4 * C);
        for (int k = 0; k < 4 * C; k++) {
            double v = h[k];
            h[k] = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        }
        ref_linear(o, h, wfc2, bfc2, 4 * C, C);
        for (int c = 0; c < C; c++) y[(size_t)i * C + c] = a[c] + o[c];
    }
    free(xd), free(h), free(qkv), free(att), free(ay), free(t), free(qkvf);
}

/* Forward within 1e-4·max(1, |ref|) of the double reference (float through
 * two layernorms, four linears and the softmax, |out| ~ 5). Then FD of din
 * and of all twelve tensors, with parameters of std 0.3 (the forward check
 * uses 0.4), not the init's 0.02, so attention is far from uniform and every
 * path carries gradient. h = 5e-3: rounding of L (~120 outputs of ~5, a few
 * ulp each) over 2h is ~3e-4, and the truncation term h²/6·|∂³L| through
 * layernorm, softmax and gelu stays below that (with h = 1e-2 it reaches
 * 3e-3 for attn.w_qkv). Bound: 3e-3·max(1, |numeric|). */
static void block_check(int B, int T, int C, int H, int causal, uint32_t tag)
{
    char spec[96];
    snprintf(spec, sizeof spec, "embed 5 %d, block %d%s", C, H, causal ? " causal" : "");
    layer_desc d = parse_one(spec, T, 1);
    cr_assert_eq(d.seq, T);
    cr_assert_eq(d.heads, H);
    cr_assert_eq(d.causal, causal);
    layer_run c;
    layer_setup(&c, &d, B, 0.4f, tag);
    double *ref = malloc(sizeof(double) * T * C);
    cr_assert_not_null(ref);
    for (int b = 0; b < B; b++) {
        ref_block(ref, c.in + (size_t)b * T * C, c.params, T, C, H, causal);
        for (int i = 0; i < T * C; i++) {
            double got = c.out[(size_t)b * T * C + i];
            cr_assert(fabs(got - ref[i]) <= 1e-4 * fmax(1, fabs(ref[i])), "block out[%d,%d] %.9g vs reference %.9g",
                      b, i, got, ref[i]);
        }
    }
    free(ref);
    layer_teardown(&c);
    layer_fd("block", &d, B, 0.3f, 5e-3f, 3e-3, 1, tag);
}

Test(block, matches_reference_and_finite_differences)
{
    block_check(1, 5, 8, 2, 0, 700);
    block_check(1, 5, 8, 2, 1, 710);
    block_check(3, 5, 8, 2, 0, 720);
    block_check(3, 5, 8, 2, 1, 730);
    block_check(2, 3, 6, 3, 1, 740);
}

/* Changing the input at position k leaves the outputs of positions < k of a
 * causal block identical bit for bit (and those of other samples), and
 * changes position k; without the mask, position 0 changes too. */
Test(block, causal_mask_hides_the_future_bitwise)
{
    const int B = 2, T = 6, C = 8;
    for (int causal = 0; causal <= 1; causal++) {
        layer_desc d = parse_one(causal ? "embed 5 8, block 2 causal" : "embed 5 8, block 2", T, 1);
        layer_run c;
        layer_setup(&c, &d, B, 0.4f, 750);
        float *before = fnew(c.nout);
        memcpy(before, c.out, c.nout * sizeof(float));
        for (int k = 1; k < T; k++) {
            /* sample 0, position k; not a constant shift, which layernorm would remove */
            for (int ch = 0; ch < C; ch++) c.in[(size_t)k * C + ch] += 0.1f * (float)(ch + 1);
            layer_obj(&c);
            if (causal) {
                cr_assert(memcmp(c.out, before, sizeof(float) * k * C) == 0,
                          "causal block: positions < %d changed when position %d did", k, k);
            } else {
                cr_assert(memcmp(c.out, before, sizeof(float) * C) != 0,
                          "full block: position 0 did not see position %d", k);
            }
            cr_assert(memcmp(c.out + (size_t)k * C, before + (size_t)k * C, sizeof(float) * C) != 0,
                          "position %d did not change with its own input", k);
            cr_assert(memcmp(c.out + (size_t)T * C, before + (size_t)T * C, sizeof(float) * T * C) == 0,
                      "sample 1 changed with sample 0's input");
            memcpy(before, c.out, c.nout * sizeof(float));
        }
        free(before);
        layer_teardown(&c);
    }
}

/* Sizes for T=128 C=256 H=4 and the FLOP convention (full T×T also causal). */
Test(block, saved_scratch_and_flops)
{
    layer_desc d = parse_one("embed 10 256, block 4 causal", 128, 1);
    const layer_ops *ops = layer_get(LAYER_BLOCK);
    const double T = 128, C = 256, H = 4;
    /* 15·T·C (ln1, qkv ×3, atty, res, ln2, fch ×4, gelu ×4) + 4·T + H·T² */
    cr_assert_eq(ops->saved(&d), (size_t)(15 * T * C + 4 * T + H * T * T));
    cr_assert_eq(ops->saved(&d), (size_t)557568);
    cr_assert_eq(ops->scratch(&d), (size_t)(6 * T * C + T * T));
    cr_assert_eq(ops->scratch(&d), (size_t)212992);
    fprintf(stderr, "block T=128 C=256 H=4: saved %zu floats/sample, scratch %zu floats/sample, "
            "forward %.6g FLOP/sample\n", ops->saved(&d), ops->scratch(&d), ops->flops(&d));
    /* matrix products: qkv 6TC², proj 2TC², fc 8TC², fc2 8TC², QKᵀ and AV 2T²C each */
    double mm = 6 * T * C * C + 2 * T * C * C + 8 * T * C * C + 8 * T * C * C + 4 * T * T * C;
    cr_assert(ops->flops(&d) >= mm && ops->flops(&d) <= mm * 1.01, "block flops %.6g vs matmul %.6g",
              ops->flops(&d), mm);
    layer_desc full = parse_one("embed 10 256, block 4", 128, 1);
    cr_assert(ops->flops(&full) == ops->flops(&d), "causal blocks count the full T×T");
    layer_desc head = parse_one("embed 10 256, lmhead 50", 128, 1);
    cr_assert(layer_get(LAYER_LMHEAD)->flops(&head) == 2 * T * C * 50);
}

/* ------------------------------------------------------------ model grammar */

#define LM_SPEC "embed 256 64, posembed, block 4 causal, block 4 causal, layernorm, lmhead 256"
#define VIT_SPEC "patch 7 64, posembed, block 4, block 4, layernorm, meanpool, linear 10"

Test(model, parses_a_language_model)
{
    model m;
    cr_assert_eq(model_parse(&m, LM_SPEC, 16), PT_OK, "%s", pt_last_error());
    cr_assert_eq(m.n_layers, 6);
    const int T = 16, C = 64;
    const layer_kind kinds[6] = {LAYER_EMBED, LAYER_POSEMBED, LAYER_BLOCK, LAYER_BLOCK, LAYER_LAYERNORM, LAYER_LMHEAD};
    const int ins[6] = {T, T * C, T * C, T * C, T * C, T * C}, outs[6] = {T * C, T * C, T * C, T * C, T * C, T * 256};
    for (int l = 0; l < 6; l++) {
        cr_assert_eq(m.layers[l].kind, kinds[l], "layer %d kind", l);
        cr_assert_eq(m.layers[l].in, ins[l], "layer %d in", l);
        cr_assert_eq(m.layers[l].out, outs[l], "layer %d out", l);
        cr_assert_eq(m.layers[l].seq, T, "layer %d T", l);
        cr_assert_eq(m.layers[l].chan, C, "layer %d C", l);
    }
    cr_assert_eq(m.layers[0].vocab, 256);
    cr_assert_eq(m.layers[2].heads, 4);
    cr_assert_eq(m.layers[2].causal, 1);
    cr_assert_eq(m.layers[3].n_blocks, 2);
    cr_assert_eq(m.layers[4].width, C, "layernorm after blocks normalises each position over C");
    cr_assert_eq(m.layers[5].vocab, 256);
    cr_assert_eq(m.loss, LOSS_LM);
    cr_assert_eq(m.targets, T);
    cr_assert_eq(m.classes, 256);
    cr_assert_eq(m.tied_head, -1);
    /* parameters: embed V·C, posembed T·C, blocks 12C² + 13C, layernorm 2C, head V·C */
    size_t total = 0;
    for (int l = 0; l < m.n_layers; l++) total += layer_param_floats(&m.layers[l]);
    cr_assert_eq(total, (size_t)(256 * 64 + 16 * 64 + 2 * (12 * 64 * 64 + 13 * 64) + 128 + 256 * 64));
    /* names and init of the block's tensors */
    model_tensor *t = calloc((size_t)model_tensor_count(&m, 0, m.n_layers), sizeof *t);
    cr_assert_not_null(t);
    model_tensors(&m, t);
    const char *names[12] = {"ln1.w", "ln1.b", "attn.w_qkv", "attn.b_qkv", "attn.w_proj", "attn.b_proj",
                             "ln2.w", "ln2.b", "mlp.w_fc", "mlp.b_fc", "mlp.w_proj", "mlp.b_proj"};
    for (int j = 0; j < 12; j++) {
        char want[80];
        snprintf(want, sizeof want, "layers.2.%s", names[j]);
        cr_assert_str_eq(t[2 + j].name, want);
        cr_assert_eq(t[2 + j].param.decay, t[2 + j].param.ndim == 2, "%s: decay on matrices only", want);
        cr_assert_eq(t[2 + j].tied_to, -1);
    }
    cr_assert_float_eq(t[2 + 4].param.scale, 0.02f / 2.0f, 1e-9, "attn.w_proj std 0.02/√(2·2)");
    cr_assert_float_eq(t[2 + 10].param.scale, 0.02f / 2.0f, 1e-9, "mlp.w_proj std 0.02/√(2·2)");
    cr_assert_float_eq(t[2 + 2].param.scale, 0.02f, 1e-9);
    cr_assert_eq(t[2 + 2].param.shape[0], 3 * C);
    cr_assert_eq(t[2 + 10].param.shape[1], 4 * C);
    free(t);
    model_free(&m);
}

Test(model, parses_the_patch_classifier)
{
    model m;
    cr_assert_eq(model_parse(&m, VIT_SPEC, 784), PT_OK, "%s", pt_last_error());
    cr_assert_eq(m.n_layers, 7);
    cr_assert_eq(m.layers[0].seq, 16, "28×28 in 7×7 patches is 16 tokens");
    cr_assert_eq(m.layers[0].side, 28);
    cr_assert_eq(m.layers[0].out, 16 * 64);
    cr_assert_eq(layer_param_floats(&m.layers[0]), (size_t)(64 * 49 + 64));
    cr_assert_eq(m.layers[1].seq, 16);
    cr_assert_eq(m.layers[2].causal, 0);
    cr_assert_eq(m.layers[4].width, 64);
    cr_assert_eq(m.layers[5].kind, LAYER_MEANPOOL);
    cr_assert_eq(m.layers[5].out, 64);
    cr_assert_eq(m.layers[6].in, 64);
    cr_assert_eq(m.layers[6].out, 10);
    cr_assert_eq(m.loss, LOSS_SOFTMAX_XENT);
    cr_assert_eq(m.targets, 1);
    cr_assert_eq(m.classes, 10);
    model_free(&m);
    /* an MLP keeps the old layernorm default: the whole input */
    cr_assert_eq(model_parse(&m, "linear 12, layernorm, relu, linear 3", 5), PT_OK);
    cr_assert_eq(m.layers[1].width, 12);
    cr_assert_eq(m.targets, 1);
    cr_assert_eq(m.layers[0].seq, 0);
    model_free(&m);
}

Test(model, rejects_bad_sequence_items)
{
    model bad;
    struct {
        const char *spec;
        int input;
        const char *says;
    } cases[] = {
        {"embed 256 64, block 3", 16, "must divide the width C = 64"},
        {"embed 256 64, block 0", 16, "head count"},
        {"embed 256 64, block 4 casual", 16, "expected 'causal'"},
        {"embed 256 64, block 4 causal 2", 16, "unexpected '2'"},
        {"patch 5 64", 784, "must divide the image side S = 28"},
        {"patch 4 8", 90, "not a square"},
        {"patch 7", 784, "patch side"},
        {"linear 16, embed 10 4", 8, "must be the first item"},
        {"embed 10", 8, "vocabulary size"},
        {"embed 0 4", 8, "vocabulary size"},
        {"block 2", 16, "item 0 (block): expected a sequence"},
        {"linear 16, posembed", 8, "item 1 (posembed): expected a sequence"},
        {"linear 16, lmhead 5", 8, "item 1 (lmhead): expected a sequence"},
        {"embed 9 4, meanpool, meanpool", 8, "item 2 (meanpool): expected a sequence"},
        {"embed 9 4, lmhead", 8, "vocabulary size"},
        {"embed 9 4, posembed 3", 8, "takes no argument"},
        {"embed 9 4, attention 2", 8, "unknown layer kind"},
        {"embed 9 4, linear 8, block 2", 8, "item 2 (block): expected a sequence"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(model_parse(&bad, cases[i].spec, cases[i].input), PT_ERR_INVALID, "'%s' accepted",
                     cases[i].spec);
        cr_assert(strstr(pt_last_error(), cases[i].says), "'%s': message '%s' lacks '%s'", cases[i].spec,
                  pt_last_error(), cases[i].says);
        cr_assert_null(bad.layers);
    }
}

/* ------------------------------------------------------------ tied embeddings */

Test(tie, errors_name_both_layers)
{
    model m;
    cr_assert_eq(model_parse(&m, "embed 9 4, block 2, meanpool, linear 3", 5), PT_OK);
    cr_assert_eq(model_tie_embeddings(&m), PT_ERR_INVALID);
    cr_assert(strstr(pt_last_error(), "embed: layer 0") && strstr(pt_last_error(), "lmhead: none"),
              "message: %s", pt_last_error());
    cr_assert_eq(m.tied_head, -1);
    model_free(&m);
    cr_assert_eq(model_parse(&m, "patch 2 4, lmhead 9", 16), PT_OK);
    cr_assert_eq(model_tie_embeddings(&m), PT_ERR_INVALID);
    cr_assert(strstr(pt_last_error(), "embed: none") && strstr(pt_last_error(), "lmhead: layer 1"),
              "message: %s", pt_last_error());
    model_free(&m);
    cr_assert_eq(model_parse(&m, "embed 9 4, block 2, lmhead 8", 5), PT_OK);
    cr_assert_eq(model_tie_embeddings(&m), PT_ERR_INVALID);
    cr_assert(strstr(pt_last_error(), "layers.2.w (lmhead) is [8, 4]") &&
                  strstr(pt_last_error(), "layers.0.w (embed) is [9, 4]"),
              "message: %s", pt_last_error());
    cr_assert_eq(m.tied_head, -1);
    cr_assert_eq(m.tied_embed, -1);
    model_free(&m);
}

#define TINY_LM "embed 11 8, posembed, block 2 causal, block 2 causal, layernorm, lmhead 11"
#define TINY_T 5
#define ROWS 3

/* The head's w equals the embed's w bit for bit, on one stage and when the
 * two live on different stages; both tensor tables flag the copy with the
 * global ordinal of layers.0.w (0). Without the tie they differ. */
Test(tie, head_starts_as_a_copy_of_the_embedding)
{
    model m;
    cr_assert_eq(model_parse(&m, TINY_LM, TINY_T), PT_OK);
    stage plain;
    cr_assert_eq(stage_init(&plain, &m, 0, m.n_layers, ROWS, 1, 42), PT_OK);
    int pe = stage_find_tensor(&plain, "layers.0.w"), ph = stage_find_tensor(&plain, "layers.5.w");
    cr_assert(pe >= 0 && ph >= 0);
    cr_assert_neq(memcmp(plain.params + plain.tensors[pe].offset, plain.params + plain.tensors[ph].offset,
                         88 * sizeof(float)), 0, "untied head must have its own values");
    cr_assert_eq(plain.tensors[ph].tied_to, -1);
    stage_free(&plain);

    cr_assert_eq(model_tie_embeddings(&m), PT_OK, "%s", pt_last_error());
    cr_assert_eq(m.tied_head, 5);
    cr_assert_eq(m.tied_embed, 0);
    stage whole, first, last;
    cr_assert_eq(stage_init(&whole, &m, 0, m.n_layers, ROWS, 1, 42), PT_OK);
    cr_assert_eq(stage_init(&first, &m, 0, 2, ROWS, 1, 42), PT_OK);
    cr_assert_eq(stage_init(&last, &m, 4, 6, ROWS, 1, 42), PT_OK);
    int e = stage_find_tensor(&whole, "layers.0.w"), h = stage_find_tensor(&whole, "layers.5.w");
    const stage_tensor *te = &whole.tensors[e], *th = &whole.tensors[h];
    cr_assert_eq(te->numel, th->numel);
    cr_assert_eq(memcmp(whole.params + te->offset, whole.params + th->offset, te->numel * sizeof(float)), 0,
                 "tied head w differs from the embed w");
    cr_assert_eq(th->tied_to, 0);
    cr_assert_eq(te->tied_to, -1);
    for (int k = 0; k < whole.n_tensors; k++)
        if (k != h) cr_assert_eq(whole.tensors[k].tied_to, -1, "%s", whole.tensors[k].name);
    int fe = stage_find_tensor(&first, "layers.0.w"), lh = stage_find_tensor(&last, "layers.5.w");
    cr_assert_eq(memcmp(first.params + first.tensors[fe].offset, last.params + last.tensors[lh].offset,
                        te->numel * sizeof(float)), 0, "head on another stage differs from the embed");
    cr_assert_eq(last.tensors[lh].tied_to, 0);
    /* the same flag in the model's enumeration */
    int n = model_tensor_count(&m, 0, m.n_layers);
    model_tensor *t = calloc((size_t)n, sizeof *t);
    cr_assert_not_null(t);
    model_tensors(&m, t);
    cr_assert_str_eq(t[n - 1].name, "layers.5.w");
    cr_assert_eq(t[n - 1].tied_to, 0);
    cr_assert_str_eq(t[0].name, "layers.0.w");
    for (int k = 0; k < n - 1; k++) cr_assert_eq(t[k].tied_to, -1, "%s", t[k].name);
    free(t);
    stage_free(&whole), stage_free(&first), stage_free(&last);
    model_free(&m);
}

/* ------------------------------------------------------------------ stages */

static void lm_input(float *ids, uint32_t salt) { fill_ids(ids, ROWS * TINY_T, 11, salt); }

/* Whole model vs three stages cut between the blocks ({embed, posembed,
 * block}, {block}, {layernorm, lmhead}): logits and every gradient bit for
 * bit, with the LM loss over the rows·T positions. */
Test(stages, split_forward_backward_bitwise_equal_to_whole)
{
    model m;
    cr_assert_eq(model_parse(&m, TINY_LM, TINY_T), PT_OK);
    cr_assert_eq(model_tie_embeddings(&m), PT_OK);
    const int N = ROWS * TINY_T, V = 11;
    int32_t y[ROWS * TINY_T];
    for (int i = 0; i < N; i++) y[i] = (i * 7 + 3) % V;
    float logits[ROWS * TINY_T * 11], probs[ROWS * TINY_T * 11], dlogits[ROWS * TINY_T * 11],
        plogits[ROWS * TINY_T * 11];
    stage whole;
    cr_assert_eq(stage_init(&whole, &m, 0, m.n_layers, ROWS, 2, 42), PT_OK);
    lm_input(stage_input(&whole, 1), 1);
    stage_forward(&whole, 1, logits, 5, 3, 1, 1);
    float loss;
    cr_assert_eq(softmax_xent_forward(probs, &loss, logits, y, N, V), -1);
    cr_assert(loss > 2.0f && loss < 3.0f, "initial loss %g should be near ln 11 = 2.4", loss);
    softmax_xent_backward(dlogits, probs, y, N, V, 1.0f / N);
    stage_backward(&whole, 1, dlogits, NULL, 5, 3, 1);

    int cuts[] = {0, 3, 4, 6};
    stage parts[3];
    const size_t act = (size_t)ROWS * TINY_T * 8;
    float *a[2] = {fnew(act), fnew(act)}, *g[2] = {fnew(act), fnew(act)};
    for (int p = 0; p < 3; p++)
        cr_assert_eq(stage_init(&parts[p], &m, cuts[p], cuts[p + 1], ROWS, 1, 42), PT_OK);
    lm_input(stage_input(&parts[0], 0), 1);
    stage_forward(&parts[0], 0, a[0], 5, 3, 1, 1);
    memcpy(stage_input(&parts[1], 0), a[0], sizeof(float) * act);
    stage_forward(&parts[1], 0, a[1], 5, 3, 1, 1);
    memcpy(stage_input(&parts[2], 0), a[1], sizeof(float) * act);
    stage_forward(&parts[2], 0, plogits, 5, 3, 1, 1);
    cr_assert_eq(memcmp(plogits, logits, sizeof logits), 0, "logits differ between partitions");
    stage_backward(&parts[2], 0, dlogits, g[1], 5, 3, 1);
    stage_backward(&parts[1], 0, g[1], g[0], 5, 3, 1);
    stage_backward(&parts[0], 0, g[0], NULL, 5, 3, 1);
    int checked = 0;
    for (int p = 0; p < 3; p++) {
        for (int k = 0; k < parts[p].n_tensors; k++) {
            const stage_tensor *t = &parts[p].tensors[k];
            int w = stage_find_tensor(&whole, t->name);
            cr_assert_geq(w, 0);
            cr_assert_eq(memcmp(whole.grads + whole.tensors[w].offset, parts[p].grads + t->offset,
                                t->numel * sizeof(float)), 0, "gradient of %s differs", t->name);
            double s = 0;
            for (size_t j = 0; j < t->numel; j++) s += fabs(parts[p].grads[t->offset + j]);
            cr_assert(s > 0, "gradient of %s is all zero", t->name);
            checked++;
        }
        stage_free(&parts[p]);
    }
    cr_assert_eq(checked, whole.n_tensors);
    free(a[0]), free(a[1]), free(g[0]), free(g[1]);
    stage_free(&whole);
    model_free(&m);
}

/* Changing the last token of sample 0 leaves the logits of its earlier
 * positions (and of the other samples) identical bit for bit. */
Test(stages, causal_language_model_ignores_future_tokens)
{
    model m;
    cr_assert_eq(model_parse(&m, TINY_LM, TINY_T), PT_OK);
    stage s;
    cr_assert_eq(stage_init(&s, &m, 0, m.n_layers, ROWS, 1, 7), PT_OK);
    const size_t nl = (size_t)ROWS * TINY_T * 11;
    float *l0 = fnew(nl), *l1 = fnew(nl), ids[ROWS * TINY_T];
    lm_input(ids, 2);
    memcpy(stage_input(&s, 0), ids, sizeof ids);
    stage_forward(&s, 0, l0, 1, 0, 0, 1);
    ids[TINY_T - 1] = (float)(((int)ids[TINY_T - 1] + 1) % 11);
    memcpy(stage_input(&s, 0), ids, sizeof ids);
    stage_forward(&s, 0, l1, 1, 0, 0, 1);
    cr_assert_eq(memcmp(l0, l1, sizeof(float) * (TINY_T - 1) * 11), 0, "earlier positions saw the last token");
    cr_assert_neq(memcmp(l0 + (TINY_T - 1) * 11, l1 + (TINY_T - 1) * 11, sizeof(float) * 11), 0);
    cr_assert_eq(memcmp(l0 + TINY_T * 11, l1 + TINY_T * 11, sizeof(float) * (ROWS - 1) * TINY_T * 11), 0);
    free(l0), free(l1);
    stage_free(&s);
    model_free(&m);
}

/* The patch classifier through one stage (patch's scratch comes from the
 * stage): the loss gradient of a sample of every tensor's entries against
 * central differences of the loss, h = 1e-2, with parameters scaled up
 * (normal std 0.3) so every path matters. Bound: |a − n| ≤ 2e-2·max(|n|, 1e-2). */
Test(stages, patch_classifier_gradient_matches_finite_differences)
{
    model m;
    cr_assert_eq(model_parse(&m, "patch 2 8, posembed, block 2, layernorm, meanpool, linear 3", 16), PT_OK);
    stage s;
    cr_assert_eq(stage_init(&s, &m, 0, m.n_layers, ROWS, 1, 9), PT_OK);
    rng_fill_normal(s.params, s.n_params, data_key(900), 0.3f);
    float input[ROWS * 16], logits[ROWS * 3], probs[ROWS * 3], dlogits[ROWS * 3];
    rng_fill_normal(input, ROWS * 16, data_key(901), 1.0f);
    int32_t y[ROWS] = {2, 0, 1};
    float loss;
    memcpy(stage_input(&s, 0), input, sizeof input);
    stage_forward(&s, 0, logits, 1, 0, 0, 1);
    cr_assert_eq(softmax_xent_forward(probs, &loss, logits, y, ROWS, 3), -1);
    softmax_xent_backward(dlogits, probs, y, ROWS, 3, 1.0f / ROWS);
    stage_backward(&s, 0, dlogits, NULL, 1, 0, 0);
    const float h = 1e-2f;
    int checked = 0;
    double worst = 0;
    for (int k = 0; k < s.n_tensors; k++) {
        const stage_tensor *t = &s.tensors[k];
        for (size_t j = 0; j < t->numel; j += 1 + t->numel / 5) {
            float *p = s.params + t->offset + j, keep = *p;
            double l[2];
            for (int side = 0; side < 2; side++) {
                *p = side ? keep - h : keep + h;
                memcpy(stage_input(&s, 0), input, sizeof input);
                stage_forward(&s, 0, logits, 1, 0, 0, 1);
                cr_assert_eq(softmax_xent_forward(probs, &loss, logits, y, ROWS, 3), -1);
                l[side] = loss;
            }
            *p = keep;
            double num = (l[0] - l[1]) / ((double)(keep + h) - (double)(keep - h)), ana = s.grads[t->offset + j];
            worst = fmax(worst, fabs(ana - num));
            cr_assert_leq(fabs(ana - num), 2e-2 * fmax(fabs(num), 1e-2), "%s[%zu]: analytic %g, numeric %g",
                          t->name, j, ana, num);
            checked++;
        }
    }
    fprintf(stderr, "fd patch classifier (stage) %d entries, max |analytic-numeric| = %.3g\n", checked, worst);
    cr_assert_gt(checked, 60);
    stage_free(&s);
    model_free(&m);
}
