/* test_kernels_isa.c — the vectorised element-wise and row kernels (AVX2,
 * AVX-512) against the portable ones, bit for bit: odd lengths (1, 3, 17,
 * 1023 elements or columns) so every tail path runs, values near overflow and
 * the non-finite ones, the dropout mask against rng_uniform element by
 * element, and the fused kernels against the calls they replace.
 * Instruction sets this CPU lacks are skipped with a message. */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "rng.h"

static const size_t lengths[] = {1, 3, 17, 1023};
enum { MAXN = 12 * 1023 + 64 };

/* inputs: normal values, then near the clamps and overflow, ±0, inf, NaN */
static void fill_inputs(float *x, size_t n, uint32_t salt)
{
    rng_key k = {.seed = 77, .stream = RNG_STREAM_DATA, .a = salt};
    rng_fill_normal(x, n, k, 3.0f);
    static const float edge[] = {0.0f, -0.0f, 9.0f, -9.0f, 9.5f, -87.5f, 88.5f, 1e19f, -1e19f, 3.0e38f,
                                 -3.0e38f, FLT_MAX, -FLT_MAX, FLT_MIN, 1e-40f};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0] && 2 * i + 1 < n; i++) x[2 * i + 1] = edge[i];
}

/* runs fn under the portable kernels and under isa; both outputs of n floats must be equal bit for bit */
typedef void (*kernel_run)(float *out, size_t n, const float *a, const float *b);

static int compare(kernels_isa isa, kernel_run fn, const char *what)
{
    if (!kernels_isa_supported(isa)) {
        fprintf(stderr, "skipped: this CPU has no %s\n", kernels_isa_name(isa));
        return 0;
    }
    kernels_isa keep = kernels_isa_current();
    static float a[MAXN], b[MAXN], want[MAXN], got[MAXN];
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        size_t n = lengths[li];
        fill_inputs(a, n, 1);
        fill_inputs(b, n, 2);
        memset(want, 0x7f, sizeof want);
        memset(got, 0x7f, sizeof got);
        cr_assert(kernels_isa_select(KERNELS_PORTABLE));
        fn(want, n, a, b);
        cr_assert(kernels_isa_select(isa));
        fn(got, n, a, b);
        for (size_t i = 0; i < MAXN; i++) /* the whole buffer: also nothing written elsewhere */
            cr_assert(!memcmp(&want[i], &got[i], sizeof(float)), "%s on %s, n = %zu: element %zu is %a, portable %a",
                      what, kernels_isa_name(isa), n, i, (double)got[i], (double)want[i]);
    }
    kernels_isa_select(keep);
    return 1;
}

static void run_gelu(float *out, size_t n, const float *a, const float *b) { (void)b, gelu_forward(out, a, n); }
static void run_gelu_bwd(float *out, size_t n, const float *a, const float *b) { gelu_backward(out, b, a, n); }
static void run_gelu_bwd_inplace(float *out, size_t n, const float *a, const float *b)
{
    memcpy(out, b, n * sizeof *out); /* the Transformer block's in-place call */
    gelu_backward(out, out, a, n);
}
/* the kept tanh: forward's out, rebuilt out and backward, all into one buffer (n ≤ MAXN / 4) */
static void run_gelu_kept(float *out, size_t n, const float *a, const float *b)
{
    static float t[MAXN];
    gelu_forward_keep(out, t, a, n);
    gelu_from_kept(out + n, a, t, n);
    gelu_backward_kept(out + 2 * n, b, a, t, n);
}
static void run_relu(float *out, size_t n, const float *a, const float *b) { (void)b, relu_forward(out, a, n); }
static void run_relu_bwd(float *out, size_t n, const float *a, const float *b) { relu_backward(out, b, a, n); }
/* the bias add after the product: a zero-width input leaves out = b on every row */
static void run_bias(float *out, size_t n, const float *a, const float *b)
{
    (void)b;
    linear_forward(out, NULL, NULL, a, 1, 0, (int)n);
    if (n > 2) linear_forward(out, NULL, NULL, a, 2, 0, (int)(n / 2)); /* two rows */
}
static void run_dropout(float *out, size_t n, const float *a, const float *b)
{
    (void)b;
    dropout_forward(out, a, n, 0.2f, (dropout_key){5, 7, 3, 11});
}
static void run_dropout_bwd_inplace(float *out, size_t n, const float *a, const float *b)
{
    (void)a;
    memcpy(out, b, n * sizeof *out);
    dropout_backward(out, out, n, 0.35f, (dropout_key){1ull << 40, 2, 9, 4});
}

/* dropout with its bits kept: out[n], the bits (n/32 words, in floats' room), the backward in place */
static void run_dropout_keep(float *out, size_t n, const float *a, const float *b)
{
    static uint32_t mask[(MAXN + 31) / 32];
    dropout_forward_keep(out, mask, a, n, 0.3f, (dropout_key){5, 7, 3, 11});
    memcpy(out + n, mask, (n + 31) / 32 * sizeof *mask);
    float *din = out + n + (n + 31) / 32;
    memcpy(din, b, n * sizeof *din);
    dropout_backward_kept(din, din, mask, n, 0.3f);
}
/* rows of n columns: row 0 from a, row 1 from b, row 2 from a scaled (so
 * that rows differ in mean and spread) into x[3n] */
static void three_rows(float *x, size_t n, const float *a, const float *b)
{
    for (size_t i = 0; i < n; i++) x[i] = a[i], x[n + i] = b[i], x[2 * n + i] = 0.25f * a[i] - 1.0f;
}
/* LayerNorm forward on 3 rows: out[3n], then mean[3] and rstd[3] */
static void run_layernorm(float *out, size_t n, const float *a, const float *b)
{
    static float x[3 * MAXN], w[MAXN], bias[MAXN];
    three_rows(x, n, a, b);
    for (size_t i = 0; i < n; i++) w[i] = 1.0f + 0.01f * (float)i, bias[i] = 0.5f - 0.02f * (float)i;
    layernorm_forward(out, out + 3 * n, out + 3 * n + 3, x, w, bias, 3, (int)n);
}
/* LayerNorm backward on 3 rows with the residual added: din[3n], dw[n], db[n]
 * (the statistics need not be the forward's: the arithmetic is the same) */
static void run_layernorm_bwd(float *out, size_t n, const float *a, const float *b)
{
    static float x[3 * MAXN], d[3 * MAXN], res[3 * MAXN], w[MAXN];
    const float mean[3] = {0.1f, -2.0f, 3.0f}, rstd[3] = {0.9f, 1.7f, 0.05f};
    three_rows(x, n, a, b);
    three_rows(d, n, b, a);
    for (size_t i = 0; i < 3 * n; i++) res[i] = 0.5f * d[i] + 1.0f;
    for (size_t i = 0; i < n; i++) w[i] = 1.0f - 0.003f * (float)i;
    memset(out + 3 * n, 0, 2 * n * sizeof *out);
    layernorm_backward_add(out, out + 3 * n, out + 4 * n, d, x, w, mean, rstd, res, 3, (int)n);
}
/* the bias gradient alone (a product with no input columns): db[n] over 3 rows */
static void run_bias_grad(float *out, size_t n, const float *a, const float *b)
{
    static float d[3 * MAXN];
    three_rows(d, n, a, b);
    for (size_t i = 0; i < n; i++) out[i] = b[i];
    linear_backward(NULL, NULL, out, d, NULL, NULL, 3, 0, (int)n);
}
/* a product of 5 inputs, then the fused bias + residual and bias + GELU: out[3n] each, t[3n] */
static void run_linear_fused(float *out, size_t n, const float *a, const float *b)
{
    static float in[15], w[5 * MAXN], res[3 * MAXN];
    for (int i = 0; i < 15; i++) in[i] = 0.25f * (float)(i % 7) - 0.6f;
    for (size_t i = 0; i < 5 * n; i++) w[i] = a[i % n] * 0.001f - 0.01f * (float)(i % 5);
    three_rows(res, n, b, a);
    linear_forward_residual(out, in, w, b, res, 3, 5, (int)n);
    linear_forward_gelu_keep(out + 3 * n, out + 6 * n, out + 9 * n, in, w, b, 3, 5, (int)n);
}
/* attention forward and backward, causal and not, T positions (T = n up to
 * 17, else 31) of C = 4 channels in 2 heads: att[T,T], y[T,C], dqkv[T,3C] */
static void run_attention(float *out, size_t n, const float *a, const float *b)
{
    (void)a, (void)b;
    enum { C = 4, H = 2 };
    static float qkv[31 * 3 * C], dy[31 * C], datt[31 * 31];
    int T = n <= 17 ? (int)n : 31;
    rng_fill_normal(qkv, (size_t)T * 3 * C, (rng_key){.seed = 9, .stream = RNG_STREAM_DATA, .a = (uint32_t)T}, 2.0f);
    rng_fill_normal(dy, (size_t)T * C, (rng_key){.seed = 10, .stream = RNG_STREAM_DATA, .a = (uint32_t)T}, 1.0f);
    for (int causal = 0; causal <= 1; causal++) {
        float *att = out, *y = att + T * T, *dqkv = y + T * C;
        attention_forward(y, att, qkv, 1, T, C, H, causal);
        attention_backward(dqkv, datt, dy, qkv, att, 1, T, C, H, causal);
        out = dqkv + 3 * T * C;
    }
}
static void run_softmax_xent(float *out, size_t n, const float *a, const float *b)
{
    static float x[3 * MAXN];
    three_rows(x, n, a, b);
    int32_t labels[3] = {0, (int32_t)n - 1, (int32_t)(n / 2)};
    cr_assert_eq(softmax_xent_forward(out, out + 3 * n, x, labels, 3, (int)n), -1);
    softmax_xent_backward(out + 3 * n + 1, out, labels, 3, (int)n, 0.125f);
}
static const struct {
    kernel_run fn;
    const char *what;
} kernels[] = {{run_gelu, "gelu_forward"},        {run_gelu_bwd, "gelu_backward"},
               {run_gelu_bwd_inplace, "gelu_backward in place"}, {run_relu, "relu_forward"},
               {run_gelu_kept, "gelu with the kept tanh"},
               {run_relu_bwd, "relu_backward"},   {run_bias, "bias add"},
               {run_dropout, "dropout_forward"},  {run_dropout_bwd_inplace, "dropout_backward in place"},
               {run_dropout_keep, "dropout with the bits kept"},
               {run_layernorm, "layernorm_forward"}, {run_layernorm_bwd, "layernorm_backward_add"},
               {run_bias_grad, "bias gradient"},   {run_linear_fused, "linear_forward_residual, _gelu_keep"},
               {run_softmax_xent, "softmax_xent forward and backward"}, {run_attention, "attention softmax"}};

Test(kernels_isa, avx2_matches_portable_bit_for_bit)
{
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) compare(KERNELS_AVX2, kernels[k].fn, kernels[k].what);
}

Test(kernels_isa, avx512_matches_portable_bit_for_bit)
{
    for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++)
        compare(KERNELS_AVX512, kernels[k].fn, kernels[k].what);
}

/* the block generator gives Random123's words, also where the quad index
 * crosses 2^32 (the counter's high word changes) */
Test(kernels_isa, philox_quads_match_random123)
{
    rng_key keys[] = {{.seed = 1, .stream = RNG_STREAM_DROPOUT, .a = 3, .b = 4, .c = 5},
                      {.seed = 0xfedcba9876543210ull, .stream = RNG_STREAM_DROPOUT, .a = 0xffffff, .b = ~0u,
                       .c = 0xffff}};
    const uint64_t starts[] = {0, 5, (1ull << 32) - 7, (1ull << 48) - 16};
    for (int isa = KERNELS_PORTABLE; isa <= KERNELS_AVX512; isa++) {
        if (!kernels_isa_select((kernels_isa)isa)) continue;
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
                uint32_t ctr[3], key[2], words[64], want[4];
                rng_philox_words(keys[k], ctr, key);
                kernels_philox_quads(words, ctr, starts[s], key);
                for (int q = 0; q < 16; q++) {
                    rng_u32x4(keys[k], starts[s] + (uint64_t)q, want);
                    cr_assert(!memcmp(want, words + 4 * q, sizeof want), "%s: key %zu, quad %llu differs",
                              kernels_isa_name((kernels_isa)isa), k, (unsigned long long)(starts[s] + (uint64_t)q));
                }
            }
    }
    kernels_isa_select(KERNELS_PORTABLE);
}

/* element i is kept exactly when rng_uniform(key, i) >= p, whatever the instruction set */
Test(kernels_isa, dropout_mask_is_rng_uniform)
{
    static float x[1023], y[1023];
    for (size_t i = 0; i < 1023; i++) x[i] = 1.0f + (float)i;
    dropout_key dk = {42, 3, 1, 6};
    rng_key k = {.seed = 42, .stream = RNG_STREAM_DROPOUT, .a = 6, .b = 3, .c = 1};
    for (int isa = KERNELS_PORTABLE; isa <= KERNELS_AVX512; isa++) {
        if (!kernels_isa_select((kernels_isa)isa)) continue;
        dropout_forward(y, x, 1023, 0.3f, dk);
        for (size_t i = 0; i < 1023; i++) {
            float want = rng_uniform(k, i) >= 0.3f ? x[i] * (1.0f / (1.0f - 0.3f)) : 0.0f;
            cr_assert(!memcmp(&want, &y[i], sizeof want), "%s: element %zu", kernels_isa_name((kernels_isa)isa), i);
        }
    }
    kernels_isa_select(KERNELS_PORTABLE);
}

Test(kernels_isa, the_widest_supported_is_chosen_at_start)
{
    kernels_isa best = kernels_isa_supported(KERNELS_AVX512) ? KERNELS_AVX512
                       : kernels_isa_supported(KERNELS_AVX2)  ? KERNELS_AVX2
                                                              : KERNELS_PORTABLE;
    cr_assert_eq(kernels_isa_current(), best, "running %s, the CPU has %s", kernels_isa_name(kernels_isa_current()),
                 kernels_isa_name(best));
}

/* keeping the forward's tanh changes no bit: the output, the output rebuilt
 * and the backward equal gelu_forward's and gelu_backward's */
Test(kernels_isa, gelu_kept_tanh_gives_the_same_bits)
{
    static float x[1023], d[1023], t[1023], y0[1023], y1[1023], y2[1023], g0[1023], g1[1023];
    fill_inputs(x, 1023, 3);
    fill_inputs(d, 1023, 4);
    for (int isa = KERNELS_PORTABLE; isa <= KERNELS_AVX512; isa++) {
        if (!kernels_isa_select((kernels_isa)isa)) continue;
        gelu_forward(y0, x, 1023);
        gelu_forward_keep(y1, t, x, 1023);
        gelu_from_kept(y2, x, t, 1023);
        gelu_backward(g0, d, x, 1023);
        gelu_backward_kept(g1, d, x, t, 1023);
        cr_assert(!memcmp(y0, y1, sizeof y0), "%s: gelu_forward_keep", kernels_isa_name((kernels_isa)isa));
        cr_assert(!memcmp(y0, y2, sizeof y0), "%s: gelu_from_kept", kernels_isa_name((kernels_isa)isa));
        cr_assert(!memcmp(g0, g1, sizeof g0), "%s: gelu_backward_kept", kernels_isa_name((kernels_isa)isa));
    }
    kernels_isa_select(KERNELS_PORTABLE);
}

/* the fused kernels give the bits of the calls they replace */
Test(kernels_isa, fused_kernels_give_the_same_bits)
{
    enum { B = 3, IN = 6, OUT = 37 };
    static float in[B * IN], w[OUT * IN], b[OUT], res[B * OUT], y0[B * OUT], y1[B * OUT], t0[B * OUT],
        t1[B * OUT], p1[B * OUT], d[B * OUT], mean[B], rstd[B], g0[B * OUT], g1[B * OUT];
    fill_inputs(in, B * IN, 5);
    fill_inputs(w, OUT * IN, 6);
    fill_inputs(b, OUT, 7);
    fill_inputs(res, B * OUT, 8);
    rng_fill_normal(d, B * OUT, (rng_key){.seed = 3, .stream = RNG_STREAM_DATA}, 1.0f);
    for (int isa = KERNELS_PORTABLE; isa <= KERNELS_AVX512; isa++) {
        if (!kernels_isa_select((kernels_isa)isa)) continue;
        const char *name = kernels_isa_name((kernels_isa)isa);
        linear_forward(y0, in, w, b, B, IN, OUT);
        for (int i = 0; i < B * OUT; i++) y0[i] += res[i];
        linear_forward_residual(y1, in, w, b, res, B, IN, OUT);
        cr_assert(!memcmp(y0, y1, sizeof y0), "%s: linear_forward_residual", name);
        linear_forward(p1, in, w, b, B, IN, OUT);
        gelu_forward_keep(y0, t0, p1, B * OUT);
        linear_forward_gelu_keep(y1, t1, p1, in, w, b, B, IN, OUT);
        cr_assert(!memcmp(y0, y1, sizeof y0) && !memcmp(t0, t1, sizeof t0), "%s: linear_forward_gelu_keep", name);
        linear_forward(p1, in, w, b, B, IN, OUT); /* finite values for LayerNorm */
        for (int i = 0; i < B * OUT; i++) p1[i] = tanhf(p1[i] * 1e-30f) * 3.0f + (float)(i % 5);
        layernorm_forward(y0, mean, rstd, p1, b, b, B, OUT);
        layernorm_backward(g0, NULL, NULL, d, p1, b, mean, rstd, B, OUT);
        for (int i = 0; i < B * OUT; i++) g0[i] += res[i];
        layernorm_backward_add(g1, NULL, NULL, d, p1, b, mean, rstd, res, B, OUT);
        cr_assert(!memcmp(g0, g1, sizeof g0), "%s: layernorm_backward_add", name);
    }
    kernels_isa_select(KERNELS_PORTABLE);
}

/* keeping the bits changes nothing: the forward's output is dropout_forward's,
 * bit i is rng_uniform(key, i) >= p (unused bits 0), and the backward from
 * the bits is dropout_backward's, for every p (0 and 1 included) and length */
Test(kernels_isa, dropout_kept_bits_give_the_same_bits)
{
    enum { N = 1023 };
    static float x[N], d[N], y0[N], y1[N], g0[N], g1[N];
    static uint32_t mask[(N + 31) / 32];
    fill_inputs(x, N, 9);
    fill_inputs(d, N, 10);
    const float ps[] = {0.0f, 0.1f, 0.5f, 0.97f, 1.0f};
    const size_t ns[] = {1, 31, 32, 33, 64, 65, 1023};
    dropout_key dk = {99, 4, 2, 7};
    rng_key k = {.seed = 99, .stream = RNG_STREAM_DROPOUT, .a = 7, .b = 4, .c = 2};
    for (int isa = KERNELS_PORTABLE; isa <= KERNELS_AVX512; isa++) {
        if (!kernels_isa_select((kernels_isa)isa)) continue;
        const char *name = kernels_isa_name((kernels_isa)isa);
        for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                size_t n = ns[ni];
                float p = ps[pi];
                memset(mask, 0xa5, sizeof mask);
                dropout_forward(y0, x, n, p, dk);
                dropout_forward_keep(y1, mask, x, n, p, dk);
                cr_assert(!memcmp(y0, y1, n * sizeof *y0), "%s, p = %g, n = %zu: the output", name, (double)p, n);
                for (size_t i = 0; i < (n + 31) / 32 * 32; i++) {
                    int want = i < n && (p >= 1.0f ? 0 : !(p > 0.0f) || rng_uniform(k, i) >= p);
                    cr_assert_eq((int)(mask[i / 32] >> (i % 32) & 1u), want, "%s, p = %g, n = %zu: bit %zu", name,
                                 (double)p, n, i);
                }
                dropout_backward(g0, d, n, p, dk);
                memcpy(g1, d, n * sizeof *g1);
                dropout_backward_kept(g1, g1, mask, n, p);
                cr_assert(!memcmp(g0, g1, n * sizeof *g0), "%s, p = %g, n = %zu: the backward", name, (double)p, n);
            }
    }
    kernels_isa_select(KERNELS_PORTABLE);
}
