/* test_kernels.c — every layer kernel against a reference.
 *
 * Gradients: for each kernel and several shapes (B = 1 and non-square
 * widths among them), the analytic backward is compared, for EVERY element
 * of the input and of every parameter, with the central finite difference of
 * the scalar objective L = Σ r·out (r fixed random weights, so dL/dout = r;
 * for softmax-xent L is the loss itself). The kernels run in float; L is
 * summed in double and the difference quotient divides by the perturbation
 * actually applied in float, (x+h) − (x−h). The bound each kernel must meet,
 *     |analytic − numeric| ≤ tol·max(1, |numeric|),
 * is stated next to each check; the measured maxima are printed on stderr.
 * All random inputs come from rng_fill_uniform / rng_fill_normal. */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_DATA_SEED 20240611u
#include "fd_check.h"
#include "kernels.h"
#include "rng.h"

/* ------------------------------------------------------------- helpers */

static void report(const char *kernel, const char *shape, const char *wrt, double err)
{
    fprintf(stderr, "fd %-13s %-16s d/d%-3s max |analytic-numeric| = %.3g\n", kernel, shape,
            wrt, err);
}

/* --------------------------------------------------------------- linear */

typedef struct {
    float *in, *w, *b, *out, *r;
    int B, IN, OUT;
} linear_ctx;

static double linear_obj(void *p)
{
    linear_ctx *c = p;
    linear_forward(c->out, c->in, c->w, c->b, c->B, c->IN, c->OUT);
    return dot_rd(c->r, c->out, (size_t)c->B * (size_t)c->OUT);
}

/* Linear is affine in each of in, w, b, so the central difference has no
 * truncation error: only float rounding of out, (|out| ~ 10)·2^-24 per
 * element, divided by 2h = 2e-2. Bound: 1e-3·max(1, |numeric|). */
static void linear_fd(int B, int IN, int OUT, uint32_t tag)
{
    const double tol = 1e-3;
    const float h = 1e-2f;
    size_t nin = (size_t)B * IN, nw = (size_t)OUT * IN, nout = (size_t)B * OUT;
    linear_ctx c = {fnormal(nin, tag, 1.0f), fnormal(nw, tag + 1, 0.5f),
                    fnormal((size_t)OUT, tag + 2, 1.0f), fnew(nout), fnormal(nout, tag + 3, 1.0f),
                    B, IN, OUT};
    float *din = fnew(nin), *dw = fnew(nw), *db = fnew((size_t)OUT);
    ffill(din, nin, NAN); /* din is overwritten */
    linear_forward(c.out, c.in, c.w, c.b, B, IN, OUT);
    linear_backward(din, dw, db, c.r, c.in, c.w, B, IN, OUT);

    char shape[64];
    snprintf(shape, sizeof shape, "B=%d IN=%d OUT=%d", B, IN, OUT);
    report("linear", shape, "in", fd_check("linear din", c.in, nin, din, h, tol, linear_obj, &c));
    report("linear", shape, "w", fd_check("linear dw", c.w, nw, dw, h, tol, linear_obj, &c));
    report("linear", shape, "b", fd_check("linear db", c.b, (size_t)OUT, db, h, tol, linear_obj, &c));
    free(c.in), free(c.w), free(c.b), free(c.out), free(c.r), free(din), free(dw), free(db);
}

Test(linear, gradients_match_finite_differences)
{
    linear_fd(1, 7, 5, 100);
    linear_fd(3, 16, 9, 110);
    linear_fd(6, 33, 20, 120);
    linear_fd(9, 8, 40, 130);
}

/* out = in·wᵀ + b against a double triple loop. Rigorous bound for a float
 * dot product of K terms in any order (with or without FMA):
 *   |out − exact| ≤ γ_{K+1}·(Σ_k |in_k·w_k| + |b|),  γ_n = n·2^-24 / (1 − n·2^-24). */
static void linear_naive(int B, int IN, int OUT, int with_bias, uint32_t tag)
{
    size_t nin = (size_t)B * IN, nw = (size_t)OUT * IN, nout = (size_t)B * OUT;
    float *in = fnormal(nin, tag, 1.0f), *w = fnormal(nw, tag + 1, 0.3f);
    float *b = with_bias ? fnormal((size_t)OUT, tag + 2, 1.0f) : NULL;
    float *out = fnew(nout), *out2 = fnew(nout);
    ffill(out, nout, NAN); /* out is overwritten, whatever it held */
    linear_forward(out, in, w, b, B, IN, OUT);
    double u = ldexp(1.0, -24), n = IN + 1, gamma = n * u / (1.0 - n * u);
    for (int r = 0; r < B; r++)
        for (int o = 0; o < OUT; o++) {
            double ref = b ? b[o] : 0.0, mag = b ? fabs(b[o]) : 0.0;
            for (int k = 0; k < IN; k++) {
                double t = (double)in[(size_t)r * IN + k] * (double)w[(size_t)o * IN + k];
                ref += t;
                mag += fabs(t);
            }
            double got = out[(size_t)r * OUT + o];
            cr_assert(fabs(got - ref) <= gamma * mag,
                      "linear out[%d,%d] (B=%d IN=%d OUT=%d bias=%d): %.9g vs naive %.9g, "
                      "|diff| %.3g > gamma_{IN+1}*sum|terms| = %.3g",
                      r, o, B, IN, OUT, with_bias, got, ref, fabs(got - ref), gamma * mag);
        }
    /* deterministic: same inputs, same bits */
    linear_forward(out2, in, w, b, B, IN, OUT);
    cr_assert(memcmp(out, out2, nout * sizeof(float)) == 0, "linear_forward is not bitwise repeatable");
    free(in), free(w), free(b), free(out), free(out2);
}

Test(linear, forward_matches_naive_triple_loop)
{
    linear_naive(1, 1, 1, 1, 200);
    linear_naive(1, 300, 7, 1, 210);
    linear_naive(5, 64, 130, 0, 220);
    linear_naive(257, 129, 65, 1, 230);
    linear_naive(300, 512, 256, 1, 240);
}

/* Backward twice from zero: the parameter gradients double (dw, db) while
 * din is overwritten (the same both times). Doubling a float is exact, so the
 * only slack allowed is for a gemm that splits the B-sum into blocks added to
 * dw one by one: |dw₂ − 2·dw₁| ≤ 1e-6·|2·dw₁| + 1e-7. */
static void linear_accum(int B, int IN, int OUT, uint32_t tag)
{
    size_t nin = (size_t)B * IN, nw = (size_t)OUT * IN, nout = (size_t)B * OUT;
    float *in = fnormal(nin, tag, 1.0f), *w = fnormal(nw, tag + 1, 0.3f);
    float *dout = fnormal(nout, tag + 2, 1.0f);
    float *din1 = fnew(nin), *din2 = fnew(nin), *dw = fnew(nw), *db = fnew((size_t)OUT);
    float *dw1 = fnew(nw), *db1 = fnew((size_t)OUT), *dw_only = fnew(nw);
    linear_backward(din1, dw, db, dout, in, w, B, IN, OUT);
    memcpy(dw1, dw, nw * sizeof(float));
    memcpy(db1, db, (size_t)OUT * sizeof(float));
    ffill(din2, nin, 123.0f);
    linear_backward(din2, dw, db, dout, in, w, B, IN, OUT);
    cr_assert(memcmp(din1, din2, nin * sizeof(float)) == 0,
              "linear din must be overwritten (B=%d IN=%d OUT=%d)", B, IN, OUT);
    for (size_t i = 0; i < nw; i++)
        cr_assert(fabsf(dw[i] - 2.0f * dw1[i]) <= 1e-6f * fabsf(2.0f * dw1[i]) + 1e-7f,
                  "linear dw[%zu] after two calls %.9g, expected 2*%.9g", i, dw[i], dw1[i]);
    for (int o = 0; o < OUT; o++)
        cr_assert(db[o] == 2.0f * db1[o], "linear db[%d] after two calls %.9g, expected 2*%.9g",
                  o, db[o], db1[o]);
    /* din and db may be NULL: dw alone is the same as before */
    linear_backward(NULL, dw_only, NULL, dout, in, w, B, IN, OUT);
    cr_assert(memcmp(dw_only, dw1, nw * sizeof(float)) == 0,
              "linear dw with din=db=NULL differs from dw with them");
    free(in), free(w), free(dout), free(din1), free(din2), free(dw), free(db), free(dw1),
        free(db1), free(dw_only);
}

Test(linear, backward_accumulates_parameter_gradients)
{
    linear_accum(1, 5, 3, 300);
    linear_accum(7, 20, 11, 310);
    linear_accum(600, 64, 32, 320);
}

/* ----------------------------------------------------------------- ReLU */

typedef struct {
    float *in, *out, *r;
    size_t N;
    int gelu;
} act_ctx;

static double act_obj(void *p)
{
    act_ctx *c = p;
    if (c->gelu)
        gelu_forward(c->out, c->in, c->N);
    else
        relu_forward(c->out, c->in, c->N);
    return dot_rd(c->r, c->out, c->N);
}

/* ReLU FD: inputs have |x| ∈ [0.1, 1] and h = 1e-2, so no difference straddles
 * the kink at 0 and the function is linear on each stencil: the bound is
 * 1e-4·max(1, |numeric|) (float rounding of out only). */
static void relu_fd(int B, int C, uint32_t tag)
{
    size_t N = (size_t)B * C;
    act_ctx c = {funiform(N, tag, 0.1f, 1.0f), fnew(N), fnormal(N, tag + 1, 1.0f), N, 0};
    float *sign = funiform(N, tag + 2, -1.0f, 1.0f);
    for (size_t i = 0; i < N; i++)
        if (sign[i] < 0.0f) c.in[i] = -c.in[i];
    float *din = fnew(N);
    ffill(din, N, NAN);
    relu_backward(din, c.r, c.in, N);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d C=%d", B, C);
    report("relu", shape, "in", fd_check("relu din", c.in, N, din, 1e-2f, 1e-4, act_obj, &c));
    free(c.in), free(c.out), free(c.r), free(sign), free(din);
}

Test(relu, gradients_match_finite_differences)
{
    relu_fd(1, 7, 400);
    relu_fd(3, 5, 410);
    relu_fd(4, 33, 420);
}

Test(relu, forward_and_backward_values)
{
    float in[6] = {-2.0f, -0.0f, 0.0f, 1e-30f, 3.5f, NAN};
    float dout[6] = {1, 2, 3, 4, 5, 6}, out[6], din[6];
    relu_forward(out, in, 6);
    const float want[5] = {0.0f, 0.0f, 0.0f, 1e-30f, 3.5f};
    for (int i = 0; i < 5; i++) cr_assert(out[i] == want[i], "relu(%g) = %g, want %g", in[i], out[i], want[i]);
    cr_assert(isnan(out[5]), "relu(NaN) must stay NaN so non-finite checks see it, got %g", out[5]);
    relu_backward(din, dout, in, 6);
    const float wantd[6] = {0, 0, 0, 4, 5, 0};
    for (int i = 0; i < 6; i++)
        cr_assert(din[i] == wantd[i], "relu' at %g: din %g, want %g", in[i], din[i], wantd[i]);
}

/* ----------------------------------------------------------------- GELU */

/* GELU FD with h = 1e-2 on x ~ N(0, 2²): truncation h²/6·|f'''| ≲ 2e-5 plus
 * float rounding ≲ 1e-5. Bound: 2e-4·max(1, |numeric|). */
static void gelu_fd(int B, int C, uint32_t tag)
{
    size_t N = (size_t)B * C;
    act_ctx c = {fnormal(N, tag, 2.0f), fnew(N), fnormal(N, tag + 1, 1.0f), N, 1};
    float *din = fnew(N);
    ffill(din, N, NAN);
    gelu_backward(din, c.r, c.in, N);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d C=%d", B, C);
    report("gelu", shape, "in", fd_check("gelu din", c.in, N, din, 1e-2f, 2e-4, act_obj, &c));
    free(c.in), free(c.out), free(c.r), free(din);
}

Test(gelu, gradients_match_finite_differences)
{
    gelu_fd(1, 7, 500);
    gelu_fd(3, 5, 510);
    gelu_fd(4, 33, 520);
}

/* Reference values of 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) computed in
 * double; float result within 4e-7·max(1, |ref|). */
Test(gelu, forward_matches_reference_values)
{
    const float x[6] = {0.0f, 1.0f, -1.0f, 2.0f, -3.0f, 0.5f};
    const double ref[6] = {0.0, 0.8411919906082768, -0.15880800939172324, 1.954597694087775,
                           -0.0036373920817729943, 0.34571400982514394};
    float out[6];
    gelu_forward(out, x, 6);
    for (int i = 0; i < 6; i++)
        cr_assert(fabs(out[i] - ref[i]) <= 4e-7 * fmax(1.0, fabs(ref[i])),
                  "gelu(%g) = %.9g, reference %.9g", x[i], out[i], ref[i]);
    /* large |x|: exactly x (tanh → 1) and 0 (tanh → −1), never NaN */
    float big[2] = {50.0f, -50.0f}, ob[2];
    gelu_forward(ob, big, 2);
    cr_assert(ob[0] == 50.0f && ob[1] == 0.0f, "gelu(±50) = %g, %g; want 50, 0", ob[0], ob[1]);
}

/* ------------------------------------------------------------ LayerNorm */

typedef struct {
    float *in, *w, *b, *out, *mean, *rstd, *r;
    int B, C;
} ln_ctx;

static double ln_obj(void *p)
{
    ln_ctx *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->in, c->w, c->b, c->B, c->C);
    return dot_rd(c->r, c->out, (size_t)c->B * (size_t)c->C);
}

/* LayerNorm FD, h = 1e-2 on inputs 3 + N(0,1) (rows have std ≈ 1): the
 * truncation term h²/6·|∂³L| is ~1e-5·C-scaled, rounding ~1e-5. w and b enter
 * linearly. Bound: 1e-3·max(1, |numeric|). */
static void ln_fd(int B, int C, uint32_t tag)
{
    size_t n = (size_t)B * C;
    ln_ctx c = {fnormal(n, tag, 1.0f), fnormal((size_t)C, tag + 1, 0.5f),
                fnormal((size_t)C, tag + 2, 1.0f), fnew(n), fnew((size_t)B), fnew((size_t)B),
                fnormal(n, tag + 3, 1.0f), B, C};
    for (size_t i = 0; i < n; i++) c.in[i] += 3.0f;
    for (int i = 0; i < C; i++) c.w[i] += 1.0f;
    float *din = fnew(n), *dw = fnew((size_t)C), *db = fnew((size_t)C);
    ffill(din, n, NAN);
    layernorm_forward(c.out, c.mean, c.rstd, c.in, c.w, c.b, B, C);
    layernorm_backward(din, dw, db, c.r, c.in, c.w, c.mean, c.rstd, B, C);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d C=%d", B, C);
    const double tol = 1e-3;
    const float h = 1e-2f;
    /* ln_obj recomputes mean/rstd for each perturbed input, as it must */
    report("layernorm", shape, "in", fd_check("layernorm din", c.in, n, din, h, tol, ln_obj, &c));
    report("layernorm", shape, "w", fd_check("layernorm dw", c.w, (size_t)C, dw, h, tol, ln_obj, &c));
    report("layernorm", shape, "b", fd_check("layernorm db", c.b, (size_t)C, db, h, tol, ln_obj, &c));
    free(c.in), free(c.w), free(c.b), free(c.out), free(c.mean), free(c.rstd), free(c.r),
        free(din), free(dw), free(db);
}

Test(layernorm, gradients_match_finite_differences)
{
    ln_fd(1, 8, 600);
    ln_fd(3, 17, 610);
    ln_fd(5, 64, 620);
    ln_fd(2, 300, 630);
}

/* Forward against a double reference: mean and rstd = 1/√(var + 1e-5)
 * (biased variance) within 1e-6 relative; out within 1e-5·max(1, |ref|). */
Test(layernorm, forward_matches_double_reference)
{
    const int B = 4, C = 300;
    size_t n = (size_t)B * C;
    float *in = fnormal(n, 650, 2.0f), *w = fnormal(C, 651, 1.0f), *b = fnormal(C, 652, 1.0f);
    float *out = fnew(n), *mean = fnew(B), *rstd = fnew(B), *out2 = fnew(n);
    for (size_t i = 0; i < n; i++) in[i] += 10.0f * (float)(i / C); /* row offsets 0,10,20,30 */
    layernorm_forward(out, mean, rstd, in, w, b, B, C);
    for (int r = 0; r < B; r++) {
        const float *x = in + (size_t)r * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        double rs = 1.0 / sqrt(v + 1e-5);
        cr_assert(fabs(mean[r] - m) <= 1e-6 * fmax(1.0, fabs(m)), "mean[%d] %.9g vs %.9g", r, mean[r], m);
        cr_assert(fabs(rstd[r] - rs) <= 1e-6 * rs, "rstd[%d] %.9g vs %.9g", r, rstd[r], rs);
        for (int c = 0; c < C; c++) {
            double ref = (x[c] - m) * rs * w[c] + b[c];
            double got = out[(size_t)r * C + c];
            cr_assert(fabs(got - ref) <= 1e-5 * fmax(1.0, fabs(ref)),
                      "layernorm out[%d,%d] %.9g vs reference %.9g", r, c, got, ref);
        }
    }
    layernorm_forward(out2, mean, rstd, in, w, b, B, C);
    cr_assert(memcmp(out, out2, n * sizeof(float)) == 0, "layernorm_forward is not bitwise repeatable");
    free(in), free(w), free(b), free(out), free(mean), free(rstd), free(out2);
}

/* Backward twice from zero: dw and db are sums added once in float, so the
 * second call gives exactly 2× (doubling is exact); din is overwritten. */
Test(layernorm, backward_accumulates_parameter_gradients)
{
    const int B = 6, C = 300; /* C > the 256-wide accumulator block */
    size_t n = (size_t)B * C;
    float *in = fnormal(n, 700, 1.0f), *w = fnormal(C, 701, 1.0f), *b = fnormal(C, 702, 1.0f);
    float *dout = fnormal(n, 703, 1.0f), *out = fnew(n), *mean = fnew(B), *rstd = fnew(B);
    float *din1 = fnew(n), *din2 = fnew(n), *dw = fnew(C), *db = fnew(C), *dw1 = fnew(C), *db1 = fnew(C);
    layernorm_forward(out, mean, rstd, in, w, b, B, C);
    layernorm_backward(din1, dw, db, dout, in, w, mean, rstd, B, C);
    memcpy(dw1, dw, C * sizeof(float));
    memcpy(db1, db, C * sizeof(float));
    ffill(din2, n, -7.0f);
    layernorm_backward(din2, dw, db, dout, in, w, mean, rstd, B, C);
    cr_assert(memcmp(din1, din2, n * sizeof(float)) == 0, "layernorm din must be overwritten");
    for (int c = 0; c < C; c++) {
        cr_assert(dw[c] == 2.0f * dw1[c], "layernorm dw[%d] %.9g, expected 2*%.9g", c, dw[c], dw1[c]);
        cr_assert(db[c] == 2.0f * db1[c], "layernorm db[%d] %.9g, expected 2*%.9g", c, db[c], db1[c]);
    }
    /* din may be NULL */
    float *dw3 = fnew(C), *db3 = fnew(C);
    layernorm_backward(NULL, dw3, db3, dout, in, w, mean, rstd, B, C);
    cr_assert(memcmp(dw3, dw1, C * sizeof(float)) == 0 && memcmp(db3, db1, C * sizeof(float)) == 0,
              "layernorm dw/db with din=NULL differ from dw/db with din");
    free(in), free(w), free(b), free(dout), free(out), free(mean), free(rstd), free(din1),
        free(din2), free(dw), free(db), free(dw1), free(db1), free(dw3), free(db3);
}

/* -------------------------------------------------------------- Dropout */

typedef struct {
    float *in, *out, *r;
    size_t N;
    float p;
    dropout_key key;
} drop_ctx;

static double drop_obj(void *q)
{
    drop_ctx *c = q;
    dropout_forward(c->out, c->in, c->N, c->p, c->key);
    return dot_rd(c->r, c->out, c->N);
}

/* Dropout is linear in its input: bound 1e-4·max(1, |numeric|), h = 1e-2. */
static void drop_fd(int B, int C, float p, uint32_t tag)
{
    size_t N = (size_t)B * C;
    dropout_key key = {.seed = 99, .step = 4, .micro_batch = 1, .layer = 3};
    drop_ctx c = {fnormal(N, tag, 1.0f), fnew(N), fnormal(N, tag + 1, 1.0f), N, p, key};
    float *din = fnew(N);
    ffill(din, N, NAN);
    dropout_backward(din, c.r, N, p, key);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d C=%d p=%.1f", B, C, (double)p);
    report("dropout", shape, "in", fd_check("dropout din", c.in, N, din, 1e-2f, 1e-4, drop_obj, &c));
    free(c.in), free(c.out), free(c.r), free(din);
}

Test(dropout, gradients_match_finite_differences)
{
    drop_fd(1, 7, 0.3f, 800);
    drop_fd(3, 5, 0.5f, 810);
    drop_fd(4, 33, 0.1f, 820);
}

/* Mask of key k on N elements, read off forward with in = 1 */
static void drop_mask(unsigned char *mask, float *ones, float *buf, size_t N, float p, dropout_key k)
{
    dropout_forward(buf, ones, N, p, k);
    for (size_t i = 0; i < N; i++) mask[i] = buf[i] != 0.0f;
}

static double mask_disagreement(const unsigned char *a, const unsigned char *b, size_t N)
{
    size_t d = 0;
    for (size_t i = 0; i < N; i++) d += a[i] != b[i];
    return (double)d / (double)N;
}

Test(dropout, mask_is_a_function_of_the_key)
{
    const size_t N = 100000;
    const float p = 0.3f, scale = 1.0f / (1.0f - p);
    dropout_key key = {.seed = 7, .step = 12, .micro_batch = 2, .layer = 5};
    float *in = fnormal(N, 900, 1.0f), *out = fnew(N), *din = fnew(N), *ones = fnew(N), *buf = fnew(N);
    ffill(ones, N, 1.0f);
    dropout_forward(out, in, N, p, key);
    dropout_backward(din, ones, N, p, key);
    rng_key rk = {.seed = 7, .stream = RNG_STREAM_DROPOUT, .a = 5, .b = 12, .c = 2};
    size_t kept = 0;
    for (size_t i = 0; i < N; i++) {
        /* the contract: element i kept iff rng_uniform(key, i) >= p */
        int keep = rng_uniform(rk, i) >= p;
        kept += (size_t)keep;
        cr_assert(out[i] == (keep ? in[i] * scale : 0.0f),
                  "dropout out[%zu] = %g, want %g (u=%g, p=%g)", i, out[i],
                  keep ? in[i] * scale : 0.0f, rng_uniform(rk, i), p);
        /* backward uses the same mask and scale */
        cr_assert(din[i] == (keep ? scale : 0.0f), "dropout din[%zu] = %g with dout = 1, want %g",
                  i, din[i], keep ? scale : 0.0f);
    }
    /* kept fraction: binomial std √(p(1−p)/N) = 0.00145; bound 5σ = 0.0073 */
    double frac = (double)kept / (double)N;
    cr_assert(fabs(frac - (1.0 - p)) <= 0.0073, "kept fraction %.5f, expected 0.7 ± 0.0073", frac);

    /* the same key gives the same bits; another step, micro-batch, layer or
     * seed gives another mask: two independent masks disagree on a fraction
     * 2p(1−p) = 0.42 of elements, asserted > 0.35 */
    unsigned char *m0 = malloc(N), *m1 = malloc(N);
    cr_assert_not_null(m0);
    cr_assert_not_null(m1);
    drop_mask(m0, ones, buf, N, p, key);
    drop_mask(m1, ones, buf, N, p, key);
    cr_assert(memcmp(m0, m1, N) == 0, "the same key gave two different masks");
    dropout_key other[4] = {key, key, key, key};
    other[0].step++;
    other[1].micro_batch++;
    other[2].layer++;
    other[3].seed++;
    const char *field[4] = {"step", "micro_batch", "layer", "seed"};
    for (int k = 0; k < 4; k++) {
        drop_mask(m1, ones, buf, N, p, other[k]);
        double d = mask_disagreement(m0, m1, N);
        cr_assert(d > 0.35, "changing %s changed only %.4f of the mask (expected ~0.42)", field[k], d);
    }
    free(in), free(out), free(din), free(ones), free(buf), free(m0), free(m1);
}

/* The quad-wise mask matches rng_uniform at every length and offset, including
 * N not a multiple of 4 and in-place use (out == in). */
Test(dropout, odd_lengths_and_in_place)
{
    const float p = 0.25f;
    dropout_key key = {.seed = 1, .step = 2, .micro_batch = 3, .layer = 4};
    rng_key rk = {.seed = 1, .stream = RNG_STREAM_DROPOUT, .a = 4, .b = 2, .c = 3};
    for (size_t N = 1; N <= 9; N++) {
        float *x = fnormal(N, 950 + (uint32_t)N, 1.0f), *ref = fnew(N);
        for (size_t i = 0; i < N; i++) ref[i] = rng_uniform(rk, i) >= p ? x[i] * (1.0f / 0.75f) : 0.0f;
        dropout_forward(x, x, N, p, key);
        cr_assert(memcmp(x, ref, N * sizeof(float)) == 0, "in-place dropout of N=%zu differs", N);
        free(x), free(ref);
    }
}

Test(dropout, p_zero_copies_and_p_one_drops_all)
{
    const size_t N = 1001;
    dropout_key key = {.seed = 3, .step = 1, .micro_batch = 0, .layer = 0};
    float *in = fnormal(N, 960, 1.0f), *out = fnew(N), *din = fnew(N);
    dropout_forward(out, in, N, 0.0f, key);
    cr_assert(memcmp(out, in, N * sizeof(float)) == 0, "dropout with p=0 is not an exact copy");
    dropout_backward(din, in, N, 0.0f, key);
    cr_assert(memcmp(din, in, N * sizeof(float)) == 0, "dropout backward with p=0 is not an exact copy");
    dropout_forward(out, in, N, 1.0f, key);
    for (size_t i = 0; i < N; i++) cr_assert(out[i] == 0.0f, "p=1 kept out[%zu] = %g", i, out[i]);
    free(in), free(out), free(din);
}

/* ------------------------------------------------- softmax cross-entropy */

typedef struct {
    float *logits, *probs;
    int32_t *labels;
    int B, V;
} xent_ctx;

static double xent_obj(void *p)
{
    xent_ctx *c = p;
    float loss = NAN;
    long bad = softmax_xent_forward(c->probs, &loss, c->logits, c->labels, c->B, c->V);
    cr_assert_eq(bad, -1, "labels are in range, forward returned %ld", bad);
    return loss;
}

/* The objective is the float loss (~2): its rounding, ~2.4e-7, over 2h = 2e-2
 * gives ~1e-5, and the truncation term h²/6·|∂³loss| ≲ 2e-5. Gradients are
 * (p − onehot)/B, of order 0.1. Bound: 2e-4·max(1, |numeric|). */
static void xent_fd(int B, int V, uint32_t tag)
{
    size_t n = (size_t)B * V;
    xent_ctx c = {fnormal(n, tag, 2.0f), fnew(n), NULL, B, V};
    c.labels = malloc((size_t)B * sizeof(int32_t));
    cr_assert_not_null(c.labels);
    float *u = funiform((size_t)B, tag + 1, 0.0f, 1.0f);
    for (int r = 0; r < B; r++) c.labels[r] = (int32_t)(u[r] * (float)V) % V;
    float *dlogits = fnew(n);
    xent_obj(&c);
    softmax_xent_backward(dlogits, c.probs, c.labels, B, V, 1.0f / (float)B);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d V=%d", B, V);
    report("softmax_xent", shape, "in",
           fd_check("softmax_xent dlogits", c.logits, n, dlogits, 1e-2f, 2e-4, xent_obj, &c));
    free(c.logits), free(c.probs), free(c.labels), free(u), free(dlogits);
}

Test(softmax_xent, gradients_match_finite_differences)
{
    xent_fd(1, 5, 1000);
    xent_fd(3, 7, 1010);
    xent_fd(4, 33, 1020);
    xent_fd(2, 100, 1030);
}

/* Hand-worked 2×3 example.
 *   row 0: logits (1, 2, 3), label 2
 *     loss₀ = log(e¹ + e² + e³) − 3 = log(1 + e⁻¹ + e⁻²)
 *           = log(1 + 0.36787944 + 0.13533528) = log(1.50321472) = 0.40760596
 *     probs₀ = (e⁻², e⁻¹, 1)/1.50321472 = (0.09003057, 0.24472847, 0.66524096)
 *   row 1: logits (2, 0, 0), label 1
 *     loss₁ = log(e² + e⁰ + e⁰) − 0 = log(7.38905610 + 2) = log(9.38905610) = 2.23954477
 *     probs₁ = (7.38905610, 1, 1)/9.38905610 = (0.78698604, 0.10650698, 0.10650698)
 *   loss = (0.40760596 + 2.23954477)/2 = 2.64715073/2 = 1.32357537
 * Float result within 2e-7 relative of these values; the gradient with
 * scale 1/2 is (probs − onehot)/2 exactly as computed from the float probs. */
Test(softmax_xent, hand_worked_example)
{
    const float logits[6] = {1, 2, 3, 2, 0, 0};
    const int32_t labels[2] = {2, 1};
    const double want_p[6] = {0.09003057, 0.24472847, 0.66524096, 0.78698604, 0.10650698, 0.10650698};
    float probs[6], d[6], loss = NAN;
    cr_assert_eq(softmax_xent_forward(probs, &loss, logits, labels, 2, 3), -1);
    cr_assert(fabs(loss - 1.32357537) <= 2e-7 * 1.32357537, "loss %.9g, hand value 1.32357537", loss);
    for (int i = 0; i < 6; i++)
        cr_assert(fabs(probs[i] - want_p[i]) <= 1e-7, "probs[%d] %.9g, hand value %.8f", i, probs[i], want_p[i]);
    softmax_xent_backward(d, probs, labels, 2, 3, 0.5f);
    for (int i = 0; i < 6; i++) {
        float onehot = (i == 2 || i == 4) ? 1.0f : 0.0f;
        cr_assert(d[i] == (probs[i] - onehot) * 0.5f, "dlogits[%d] %.9g, want (%.9g - %g)/2", i,
                  d[i], probs[i], onehot);
    }
}

/* Logits ~1e4 overflow a naive exp; the max-shifted form gives the same loss
 * as the shifted logits. Row 0 is the hand example + 1e4 (each logit exact
 * in float), row 1 is −1e4 + (2, 0, 0): loss must be 1.32357537 within
 * 2e-7 relative, probs finite and rows summing to 1 within 1e-6. A label
 * whose probability underflows to 0 still has a finite loss. */
Test(softmax_xent, stable_for_huge_logits)
{
    const float logits[6] = {10001.0f, 10002.0f, 10003.0f, -9998.0f, -10000.0f, -10000.0f};
    const int32_t labels[2] = {2, 1};
    float probs[6], loss = NAN;
    cr_assert_eq(softmax_xent_forward(probs, &loss, logits, labels, 2, 3), -1);
    cr_assert(isfinite(loss) && fabs(loss - 1.32357537) <= 2e-7 * 1.32357537,
              "loss with logits ~1e4 is %.9g, want 1.32357537", loss);
    for (int r = 0; r < 2; r++) {
        double s = 0;
        for (int j = 0; j < 3; j++) {
            cr_assert(isfinite(probs[r * 3 + j]), "probs[%d,%d] not finite", r, j);
            s += probs[r * 3 + j];
        }
        cr_assert(fabs(s - 1.0) <= 1e-6, "row %d of probs sums to %.9g", r, s);
    }
    /* probs[label] = e^-2e4 underflows: loss = 2e4 exactly representable */
    const float extreme[2] = {1e4f, -1e4f};
    const int32_t lab1[1] = {1};
    float p2[2];
    cr_assert_eq(softmax_xent_forward(p2, &loss, extreme, lab1, 1, 2), -1);
    cr_assert(loss == 2e4f, "loss with p[label] underflowing is %.9g, want 20000", loss);
}

Test(softmax_xent, out_of_range_label_returns_its_row)
{
    float logits[12], probs[12];
    for (int i = 0; i < 12; i++) logits[i] = (float)i * 0.1f;
    const float sentinel = 42.0f;
    struct {
        int32_t labels[4];
        long want;
    } cases[] = {
        {{0, -1, 2, 1}, 1},  /* −1 */
        {{0, 1, 2, 3}, 3},   /* V = 3 */
        {{3, -1, 0, 0}, 0},  /* the first bad row is reported */
        {{2, 2, 2, -5}, 3},
        {{0, 1, 2, 0}, -1},  /* all good */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        float loss = sentinel;
        long got = softmax_xent_forward(probs, &loss, logits, cases[k].labels, 4, 3);
        cr_assert_eq(got, cases[k].want, "case %zu: returned %ld, want %ld", k, got, cases[k].want);
        if (cases[k].want >= 0)
            cr_assert(loss == sentinel, "case %zu: loss was written (%g) despite a bad label", k, loss);
        else
            cr_assert(loss != sentinel && isfinite(loss), "case %zu: loss %g not written", k, loss);
    }
}

/* dlogits scales linearly: scale 1/(B·M) is exactly scale 1 times 1/(B·M)
 * when 1/(B·M) is a power of two (here 1/8). */
Test(softmax_xent, backward_scale)
{
    const int B = 2, V = 5;
    float *logits = fnormal(10, 1100, 1.0f), probs[10], d1[10], d8[10], loss;
    const int32_t labels[2] = {4, 0};
    cr_assert_eq(softmax_xent_forward(probs, &loss, logits, labels, B, V), -1);
    softmax_xent_backward(d1, probs, labels, B, V, 1.0f);
    softmax_xent_backward(d8, probs, labels, B, V, 1.0f / 8.0f);
    for (int i = 0; i < 10; i++)
        cr_assert(d8[i] == d1[i] / 8.0f, "dlogits[%d] with scale 1/8: %g, want %g", i, d8[i], d1[i] / 8.0f);
    double rowsum = 0;
    for (int j = 0; j < V; j++) rowsum += d1[j];
    cr_assert(fabs(rowsum) <= 1e-6, "a row of probs - onehot must sum to 0, got %g", rowsum);
    free(logits);
}
