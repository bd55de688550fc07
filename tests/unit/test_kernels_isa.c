/* test_kernels_isa.c — the vectorised element-wise kernels (AVX2, AVX-512)
 * against the portable ones, bit for bit: odd lengths (1, 3, 17, 1023) so
 * every tail path runs, values near overflow and the non-finite ones, and the
 * dropout mask against rng_uniform element by element. Instruction sets this
 * CPU lacks are skipped with a message. */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "rng.h"

static const size_t lengths[] = {1, 3, 17, 1023};
enum { MAXN = 3 * 1023 + 64 };

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

static const struct {
    kernel_run fn;
    const char *what;
} kernels[] = {{run_gelu, "gelu_forward"},        {run_gelu_bwd, "gelu_backward"},
               {run_gelu_bwd_inplace, "gelu_backward in place"}, {run_relu, "relu_forward"},
               {run_gelu_kept, "gelu with the kept tanh"},
               {run_relu_bwd, "relu_backward"},   {run_bias, "bias add"},
               {run_dropout, "dropout_forward"},  {run_dropout_bwd_inplace, "dropout_backward in place"}};

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
