/* kernels.c — layer kernels over flat float arrays (see kernels.h).
 *
 * Numerics are deterministic: no OpenMP, every reduction runs in a fixed
 * order on one thread (OpenBLAS partitions gemm over output blocks, so each
 * output element is summed in the same order on every call with the same
 * shapes). Row statistics, bias-gradient column sums and the loss are
 * accumulated in double. Nothing here allocates: column reductions use a
 * fixed-size stack block of double accumulators. */
#include "kernels.h"
#include "rng.h"

#include <cblas.h>
#include <math.h>
#include <string.h>


/* width of the stack block of double accumulators used by column sums */
#define KERNELS_COL_BLOCK 256

/* ------------------------------------------- element-wise kernels by ISA */

#define GELU_SCALE 0.7978845608028654f /* √(2/π) */
#define GELU_CUBE 0.044715f
#define PHILOX_LANES 16 /* quads of dropout words made side by side */
#define ROW_LANES 16    /* partial sums of a row sum (kernels_ew.inc) */
#define LAYERNORM_EPS 1e-5

typedef struct {
    void (*gelu_forward)(float *, const float *, size_t);
    void (*gelu_backward)(float *, const float *, const float *, size_t);
    void (*gelu_forward_keep)(float *, float *, const float *, size_t);
    void (*gelu_from_kept)(float *, const float *, const float *, size_t);
    void (*gelu_backward_kept)(float *, const float *, const float *, const float *, size_t);
    void (*relu_forward)(float *, const float *, size_t);
    void (*relu_backward)(float *, const float *, const float *, size_t);
    void (*bias_add)(float *, const float *, int, int);
    void (*dropout_apply)(float *, const float *, size_t, float, uint32_t, uint32_t, uint32_t, uint32_t,
                          uint32_t);
    void (*philox_quads)(uint32_t *, uint32_t, uint32_t, uint32_t, uint64_t, uint32_t, uint32_t);
    void (*bias_residual_add)(float *, const float *, const float *, int, int);
    void (*bias_gelu_forward_keep)(float *, float *, float *, const float *, int, int);
    void (*colsum_accumulate)(float *, const float *, int, int);
    void (*layernorm_forward)(float *, float *, float *, const float *, const float *, const float *, int, int);
    void (*layernorm_backward_input)(float *, const float *, const float *, const float *, const float *,
                                     const float *, const float *, int, int);
    void (*layernorm_backward_weight)(float *, const float *, const float *, const float *, const float *, int,
                                      int);
    void (*attention_softmax)(float *, int, int, int, int);
    void (*attention_softmax_backward)(float *, const float *, int, int);
    double (*softmax_xent_rows)(float *, const float *, const int32_t *, int, int);
    void (*softmax_xent_backward)(float *, const float *, const int32_t *, int, int, float);
    void (*dropout_apply_keep)(float *, uint32_t *, const float *, size_t, float, uint32_t, uint32_t, uint32_t,
                               uint32_t, uint32_t);
    void (*dropout_apply_bits)(float *, const float *, const uint32_t *, size_t, float);
} kernels_ew;

#define ISA_COPIES_SOURCE "kernels_ew.inc"
#include "isa_copies.h"

static const kernels_ew *ew = &table_portable;
static kernels_isa ew_isa = KERNELS_PORTABLE;

const char *kernels_isa_name(kernels_isa isa)
{
    static const char *const names[] = {"portable", "AVX2", "AVX-512"};
    return isa >= KERNELS_PORTABLE && isa <= KERNELS_AVX512 ? names[isa] : "unknown";
}

int kernels_isa_supported(kernels_isa isa)
{
    if (isa == KERNELS_PORTABLE) return 1;
#ifdef ISA_COPIES_X86
    __builtin_cpu_init();
    if (isa == KERNELS_AVX2) return __builtin_cpu_supports("avx2");
    if (isa == KERNELS_AVX512) return __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

int kernels_isa_select(kernels_isa isa)
{
    if (!kernels_isa_supported(isa)) return 0;
#ifdef ISA_COPIES_X86
    ew = isa == KERNELS_AVX512 ? &table_avx512 : isa == KERNELS_AVX2 ? &table_avx2 : &table_portable;
#endif
    ew_isa = isa;
    return 1;
}

kernels_isa kernels_isa_current(void) { return ew_isa; }

/* Once, when the program starts: the widest the CPU has. */
__attribute__((constructor)) static void kernels_isa_start(void)
{
    if (!kernels_isa_select(KERNELS_AVX512)) (void)kernels_isa_select(KERNELS_AVX2);
}

void kernels_philox_quads(uint32_t *words, const uint32_t ctr[3], uint64_t q0, const uint32_t key[2])
{
    ew->philox_quads(words, ctr[0], ctr[1], ctr[2], q0, key[0], key[1]);
}

/* ------------------------------------------------------------------ linear */

/* out[B,OUT] = in[B,IN] · w[OUT,IN]ᵀ + b[OUT] */
void linear_forward(float *out, const float *in, const float *w, const float *b,
                    int B, int IN, int OUT)
{
    if (B <= 0 || OUT <= 0) return;
    if (IN > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OUT, IN, 1.0f, in, IN, w, IN,
                    0.0f, out, OUT);
    } else {
        memset(out, 0, (size_t)B * (size_t)OUT * sizeof(float));
    }
    if (b) ew->bias_add(out, b, B, OUT);
}

/* out[B,OUT] = (in · wᵀ + b) + res: the bias and the residual in one pass */
void linear_forward_residual(float *out, const float *in, const float *w, const float *b,
                             const float *res, int B, int IN, int OUT)
{
    if (B <= 0 || OUT <= 0) return;
    linear_forward(out, in, w, NULL, B, IN, OUT);
    if (b)
        ew->bias_residual_add(out, b, res, B, OUT);
    else
        for (size_t i = 0, n = (size_t)B * (size_t)OUT; i < n; i++) out[i] += res[i];
}

/* pre[B,OUT] = in · wᵀ + b;  out = gelu(pre), t = its tanh: bias and GELU in one pass */
void linear_forward_gelu_keep(float *out, float *t, float *pre, const float *in, const float *w,
                              const float *b, int B, int IN, int OUT)
{
    if (B <= 0 || OUT <= 0) return;
    linear_forward(pre, in, w, NULL, B, IN, OUT);
    if (b)
        ew->bias_gelu_forward_keep(out, t, pre, b, B, OUT);
    else
        ew->gelu_forward_keep(out, t, pre, (size_t)B * (size_t)OUT);
}

/* din[B,IN] = dout[B,OUT] · w[OUT,IN];  dw[OUT,IN] += doutᵀ · in;
 * db[OUT] += Σ_rows dout */
void linear_backward(float *din, float *dw, float *db, const float *dout,
                     const float *in, const float *w, int B, int IN, int OUT)
{
    if (B <= 0) return; /* nothing to write, nothing to accumulate */
    if (din && IN > 0) {
        if (OUT > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, IN, OUT, 1.0f, dout, OUT,
                        w, IN, 0.0f, din, IN);
        } else {
            memset(din, 0, (size_t)B * (size_t)IN * sizeof(float));
        }
    }
    if (OUT <= 0) return;
    if (dw && IN > 0) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, B, 1.0f, dout, OUT, in,
                    IN, 1.0f, dw, IN);
    }
    if (db) ew->colsum_accumulate(db, dout, B, OUT);
}

/* -------------------------------------------------------------------- ReLU */

/* out[N] = max(in, 0); a NaN input stays NaN so the non-finite check sees it */
void relu_forward(float *out, const float *in, size_t N) { ew->relu_forward(out, in, N); }

/* din[N] = dout · [in > 0] */
void relu_backward(float *din, const float *dout, const float *in, size_t N)
{
    if (din) ew->relu_backward(din, dout, in, N);
}

/* -------------------------------------------------------------------- GELU */

/* out[N] = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), tanh and e^x as
 * branch-free polynomials (libm's tanhf does not vectorise and dominated the
 * Transformer's time): kernels_ew.inc */
void gelu_forward(float *out, const float *in, size_t N) { ew->gelu_forward(out, in, N); }

/* din[N] = dout · d/dx gelu(x)
 *        = dout · (½(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²)) */
void gelu_backward(float *din, const float *dout, const float *in, size_t N)
{
    if (din) ew->gelu_backward(din, dout, in, N);
}

void gelu_forward_keep(float *out, float *t, const float *in, size_t N) { ew->gelu_forward_keep(out, t, in, N); }

void gelu_from_kept(float *out, const float *in, const float *t, size_t N) { ew->gelu_from_kept(out, in, t, N); }

void gelu_backward_kept(float *din, const float *dout, const float *in, const float *t, size_t N)
{
    if (din) ew->gelu_backward_kept(din, dout, in, t, N);
}

/* --------------------------------------------------------------- LayerNorm */

/* out[B,C] = (in − mean)·rstd·w[C] + b[C];  mean[B], rstd[B] saved.
 * mean and variance (two-pass, biased) are summed in double; the saved float
 * mean and rstd are the ones used for the output, so backward matches. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                       const float *w, const float *b, int B, int C)
{
    if (B <= 0 || C <= 0) return;
    ew->layernorm_forward(out, mean, rstd, in, w, b, B, C);
}

/* With n = (in − mean)·rstd and g = dout·w (per row):
 *   din[B,C] = (g − mean_c(g) − n·mean_c(g·n))·rstd  (+ add[B,C])
 *   dw[C] += Σ_rows dout·n;   db[C] += Σ_rows dout */
void layernorm_backward_add(float *din, float *dw, float *db, const float *dout, const float *in,
                            const float *w, const float *mean, const float *rstd, const float *add,
                            int B, int C)
{
    if (B <= 0 || C <= 0) return;
    /* the parameter gradients first: din may overwrite dout */
    if (db) ew->colsum_accumulate(db, dout, B, C);
    if (dw) ew->layernorm_backward_weight(dw, dout, in, mean, rstd, B, C);
    if (din) ew->layernorm_backward_input(din, dout, in, w, mean, rstd, add, B, C);
}

void layernorm_backward(float *din, float *dw, float *db, const float *dout,
                        const float *in, const float *w, const float *mean,
                        const float *rstd, int B, int C)
{
    layernorm_backward_add(din, dw, db, dout, in, w, mean, rstd, NULL, B, C);
}

/* ----------------------------------------------------------------- Dropout */

/* the Philox counter words and key of the dropout mask of key (rng_u32x4's) */
static void dropout_words(dropout_key dk, uint32_t w[3], uint32_t k[2])
{
    rng_key key = {.seed = dk.seed, .stream = RNG_STREAM_DROPOUT, .a = dk.layer,
                   .b = dk.step, .c = dk.micro_batch};
    rng_philox_words(key, w, k);
}

/* p <= 0 copies (out may equal in); p >= 1 drops everything; otherwise
 * dst[i] = src[i]·scale where rng_uniform(key, i) >= p, else 0: the words
 * of rng_u32x4, made PHILOX_LANES quads at a time */
static void dropout_run(float *dst, const float *src, size_t N, float p, dropout_key key)
{
    if (!(p > 0.0f)) {
        if (dst != src) memmove(dst, src, N * sizeof(float));
    } else if (p >= 1.0f) {
        memset(dst, 0, N * sizeof(float));
    } else {
        uint32_t w[3], k[2];
        dropout_words(key, w, k);
        ew->dropout_apply(dst, src, N, p, w[0], w[1], w[2], k[0], k[1]);
    }
}

/* out[N] = in · mask(key) / (1 − p) */
void dropout_forward(float *out, const float *in, size_t N, float p, dropout_key key)
{
    dropout_run(out, in, N, p, key);
}

/* din[N] = dout · mask(key) / (1 − p)  (the same mask as forward) */
void dropout_backward(float *din, const float *dout, size_t N, float p, dropout_key key)
{
    if (!din) return;
    dropout_run(din, dout, N, p, key);
}

/* dropout_forward, and the keep bits into mask[(N + 31) / 32] */
void dropout_forward_keep(float *out, uint32_t *mask, const float *in, size_t N, float p, dropout_key key)
{
    if (!(p > 0.0f) || p >= 1.0f) {
        dropout_run(out, in, N, p, key);
        memset(mask, p >= 1.0f ? 0x00 : 0xff, (N + 31) / 32 * sizeof *mask);
        if (N % 32 && !(p >= 1.0f)) mask[N / 32] = (1u << (N % 32)) - 1u;
        return;
    }
    uint32_t w[3], k[2];
    dropout_words(key, w, k);
    ew->dropout_apply_keep(out, mask, in, N, p, w[0], w[1], w[2], k[0], k[1]);
}

/* din[N] = dout where the mask keeps, × 1/(1 − p) */
void dropout_backward_kept(float *din, const float *dout, const uint32_t *mask, size_t N, float p)
{
    if (!din) return;
    if (!(p > 0.0f)) {
        if (din != dout) memmove(din, dout, N * sizeof *din);
    } else if (p >= 1.0f) {
        memset(din, 0, N * sizeof *din);
    } else {
        ew->dropout_apply_bits(din, dout, mask, N, p);
    }
}

/* ------------------------------------------------ softmax + cross-entropy */

/* probs[B,V] = softmax(logits[B,V]);  *loss = (1/B)·Σ_rows −log probs[label].
 * Each row's loss is log Σ exp(x − max) − (x[label] − max), in double, so it
 * stays finite even where probs[label] underflows to 0. */
long softmax_xent_forward(float *probs, float *loss, const float *logits,
                          const int32_t *labels, int B, int V)
{
    for (int r = 0; r < B; r++)
        if (labels[r] < 0 || labels[r] >= V) return r;
    if (B <= 0) {
        *loss = 0.0f;
        return -1;
    }
    *loss = (float)(ew->softmax_xent_rows(probs, logits, labels, B, V) / B);
    return -1;
}

/* dlogits[B,V] = (probs − onehot(labels))·scale */
void softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels,
                           int B, int V, float scale)
{
    ew->softmax_xent_backward(dlogits, probs, labels, B, V, scale);
}

/* ---------------------------------------------------------- token embedding */

/* The row of token x, or -1 when x is not an integer in [0, V) (NaN included) */
static inline int token_row(float x, int V)
{
    if (!(x >= 0.0f && x < (float)V)) return -1;
    int t = (int)x;
    return (float)t == x && t < V ? t : -1;
}

long embedding_check_ids(const float *ids, size_t n, int V)
{
    for (size_t i = 0; i < n; i++)
        if (token_row(ids[i], V) < 0) return (long)i;
    return -1;
}

/* out[B,T,C] = w[ids[b,t], :]; a bad id gives a row of zeros */
void embedding_forward(float *out, const float *ids, const float *w, int B, int T, int V, int C)
{
    if (B <= 0 || T <= 0 || C <= 0) return;
    size_t n = (size_t)B * (size_t)T;
    for (size_t i = 0; i < n; i++) {
        int t = token_row(ids[i], V);
        float *o = out + i * (size_t)C;
        if (t < 0)
            memset(o, 0, (size_t)C * sizeof *o);
        else
            memcpy(o, w + (size_t)t * (size_t)C, (size_t)C * sizeof *o);
    }
}

/* dw[ids[b,t], :] += dout[b,t,:], in increasing (b,t) */
void embedding_backward(float *dw, const float *dout, const float *ids, int B, int T, int V,
                        int C)
{
    if (B <= 0 || T <= 0 || C <= 0) return;
    size_t n = (size_t)B * (size_t)T;
    for (size_t i = 0; i < n; i++) {
        int t = token_row(ids[i], V);
        if (t < 0) continue;
        float *g = dw + (size_t)t * (size_t)C;
        const float *d = dout + i * (size_t)C;
        for (int c = 0; c < C; c++) g[c] += d[c];
    }
}

/* ----------------------------------------------------- positional embedding */

/* out[B,T,C] = in[B,T,C] + w[T,C] */
void posembed_forward(float *out, const float *in, const float *w, int B, int T, int C)
{
    size_t n = (size_t)T * (size_t)C;
    for (int b = 0; b < B; b++) {
        const float *x = in + (size_t)b * n;
        float *o = out + (size_t)b * n;
        for (size_t j = 0; j < n; j++) o[j] = x[j] + w[j];
    }
}

/* din = dout;  dw[T,C] += Σ_b dout[b,T,C] (in double, b increasing) */
void posembed_backward(float *din, float *dw, const float *dout, int B, int T, int C)
{
    if (B <= 0 || T <= 0 || C <= 0) return;
    size_t n = (size_t)T * (size_t)C;
    if (din) memcpy(din, dout, (size_t)B * n * sizeof *din);
    if (dw) ew->colsum_accumulate(dw, dout, B, (int)n);
}

/* ------------------------------------------------------------ image patches */

/* cols[B·T, P·P] from img[B,S,S], T = (S/P)² */
void patch_im2col(float *cols, const float *img, int B, int S, int P)
{
    int G = S / P;
    size_t PP = (size_t)P * (size_t)P, T = (size_t)G * (size_t)G;
    for (int b = 0; b < B; b++)
        for (int py = 0; py < G; py++)
            for (int px = 0; px < G; px++) {
                float *c = cols + ((size_t)b * T + (size_t)py * G + (size_t)px) * PP;
                const float *src = img + (size_t)b * S * S + (size_t)py * P * S + (size_t)px * P;
                for (int ky = 0; ky < P; ky++)
                    memcpy(c + (size_t)ky * P, src + (size_t)ky * S, (size_t)P * sizeof *c);
            }
}

/* img[B,S,S] from cols[B·T, P·P]: the inverse of patch_im2col */
void patch_col2im(float *img, const float *cols, int B, int S, int P)
{
    int G = S / P;
    size_t PP = (size_t)P * (size_t)P, T = (size_t)G * (size_t)G;
    for (int b = 0; b < B; b++)
        for (int py = 0; py < G; py++)
            for (int px = 0; px < G; px++) {
                const float *c = cols + ((size_t)b * T + (size_t)py * G + (size_t)px) * PP;
                float *dst = img + (size_t)b * S * S + (size_t)py * P * S + (size_t)px * P;
                for (int ky = 0; ky < P; ky++)
                    memcpy(dst + (size_t)ky * S, c + (size_t)ky * P, (size_t)P * sizeof *c);
            }
}

/* out[B·T, C] = im2col(img) · w[C,P·P]ᵀ + b[C];  work: B·S·S floats */
void patch_forward(float *out, float *work, const float *img, const float *w, const float *b,
                   int B, int S, int P, int C)
{
    if (B <= 0 || S <= 0 || P <= 0) return;
    int G = S / P;
    patch_im2col(work, img, B, S, P);
    linear_forward(out, work, w, b, B * G * G, P * P, C);
}

/* din = col2im(dout · w);  dw += doutᵀ · im2col(img);  db += Σ dout.
 * work: 2·B·S·S floats (the columns, then their gradient). */
void patch_backward(float *din, float *dw, float *db, float *work, const float *dout,
                    const float *img, const float *w, int B, int S, int P, int C)
{
    if (B <= 0 || S <= 0 || P <= 0) return;
    int G = S / P;
    float *cols = work, *dcols = work + (size_t)B * S * S;
    patch_im2col(cols, img, B, S, P);
    linear_backward(din ? dcols : NULL, dw, db, dout, cols, w, B * G * G, P * P, C);
    if (din) patch_col2im(din, dcols, B, S, P);
}

/* din = col2im(dout · w): the input half of patch_backward; work: B·S·S */
void patch_backward_input(float *din, float *work, const float *dout, const float *w, int B,
                          int S, int P, int C)
{
    if (!din || B <= 0 || S <= 0 || P <= 0) return;
    int G = S / P;
    linear_backward(work, NULL, NULL, dout, NULL, w, B * G * G, P * P, C);
    patch_col2im(din, work, B, S, P);
}

/* dw += doutᵀ · im2col(img);  db += Σ dout: the weight half; work: B·S·S */
void patch_backward_weight(float *dw, float *db, float *work, const float *dout,
                           const float *img, int B, int S, int P, int C)
{
    if (B <= 0 || S <= 0 || P <= 0) return;
    int G = S / P;
    patch_im2col(work, img, B, S, P);
    linear_backward(NULL, dw, db, dout, work, NULL, B * G * G, P * P, C);
}

/* -------------------------------------------------------------- attention */

/* Causal attention runs by blocks of ATTENTION_BLOCK query rows: block
 * [i0, i1) needs keys 0 .. i1−1 only, so Q·Kᵀ, A·V, dP and dQ skip the
 * masked blocks right of the diagonal, and dV, dK (sums over queries i ≥ j)
 * the ones above it: about half the products' work at T ≫ the block. */
#define ATTENTION_BLOCK 32

/* out[B,T,C], att[B,H,T,T] from qkv[B,T,3C]; see kernels.h */
void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int H,
                       int causal)
{
    if (B <= 0 || T <= 0 || C <= 0 || H <= 0) return;
    const int hs = C / H, C3 = 3 * C, blk = causal ? ATTENTION_BLOCK : T;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        const float *base = qkv + (size_t)b * (size_t)T * (size_t)C3;
        for (int h = 0; h < H; h++) {
            const float *q = base + (size_t)h * hs, *k = q + C, *v = q + 2 * C;
            float *a = att + ((size_t)b * H + (size_t)h) * (size_t)T * (size_t)T;
            float *o = out + (size_t)b * T * C + (size_t)h * hs;
            for (int i0 = 0; i0 < T; i0 += blk) {
                const int m = T - i0 < blk ? T - i0 : blk, nk = causal ? i0 + m : T;
                /* a[i0.., 0..nk) = scale · Q[i0.., :] · K[0..nk, :]ᵀ */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nk, hs, scale,
                            q + (size_t)i0 * C3, C3, k, C3, 0.0f, a + (size_t)i0 * T, T);
                ew->attention_softmax(a, T, i0, i0 + m, causal);
                /* out[i0.., h·hs..] = a[i0.., 0..nk) · V[0..nk, :] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hs, nk, 1.0f,
                            a + (size_t)i0 * T, T, v, C3, 0.0f, o + (size_t)i0 * C, C);
            }
        }
    }
}

/* dqkv[B,T,3C] from dout[B,T,C]; datt: T·T floats of workspace */
void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int H, int causal)
{
    if (B <= 0 || T <= 0 || C <= 0 || H <= 0) return;
    const int hs = C / H, C3 = 3 * C, blk = causal ? ATTENTION_BLOCK : T;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        const float *base = qkv + (size_t)b * (size_t)T * (size_t)C3;
        float *dbase = dqkv + (size_t)b * (size_t)T * (size_t)C3;
        for (int h = 0; h < H; h++) {
            const float *q = base + (size_t)h * hs, *k = q + C, *v = q + 2 * C;
            float *dq = dbase + (size_t)h * hs, *dk = dq + C, *dv = dq + 2 * C;
            const float *a = att + ((size_t)b * H + (size_t)h) * (size_t)T * (size_t)T;
            const float *dO = dout + (size_t)b * T * C + (size_t)h * hs;
            for (int i0 = 0; i0 < T; i0 += blk) {
                const int m = T - i0 < blk ? T - i0 : blk, nk = causal ? i0 + m : T;
                const int j0 = causal ? i0 : 0; /* queries that see keys i0..: j0 .. T */
                /* keys [i0, i0+m): dV = aᵀ · dO over queries j0..T */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, hs, T - j0, 1.0f,
                            a + (size_t)j0 * T + i0, T, dO + (size_t)j0 * C, C, 0.0f,
                            dv + (size_t)i0 * C3, C3);
                /* queries [i0, i0+m): dP = dO · Vᵀ over keys 0..nk */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nk, hs, 1.0f,
                            dO + (size_t)i0 * C, C, v, C3, 0.0f, datt + (size_t)i0 * T, T);
            }
            /* dS = a ⊙ (dP − Σ_j a·dP), in place; masked entries are 0 */
            ew->attention_softmax_backward(datt, a, T, causal);
            for (int i0 = 0; i0 < T; i0 += blk) {
                const int m = T - i0 < blk ? T - i0 : blk, nk = causal ? i0 + m : T;
                const int j0 = causal ? i0 : 0;
                /* queries [i0, i0+m): dQ = scale · dS · K over keys 0..nk */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hs, nk, scale,
                            datt + (size_t)i0 * T, T, k, C3, 0.0f, dq + (size_t)i0 * C3, C3);
                /* keys [i0, i0+m): dK = scale · dSᵀ · Q over queries j0..T */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, hs, T - j0, scale,
                            datt + (size_t)j0 * T + i0, T, q + (size_t)j0 * C3, C3, 0.0f,
                            dk + (size_t)i0 * C3, C3);
            }
        }
    }
}

/* ---------------------------------------------------------- mean over T */

/* out[B,C] = (1/T)·Σ_t in[B,T,C] */
void meanpool_forward(float *out, const float *in, int B, int T, int C)
{
    if (B <= 0 || T <= 0 || C <= 0) return;
    double block[KERNELS_COL_BLOCK];
    for (int b = 0; b < B; b++) {
        const float *x = in + (size_t)b * T * C;
        float *o = out + (size_t)b * C;
        for (int c0 = 0; c0 < C; c0 += KERNELS_COL_BLOCK) {
            int n = C - c0 < KERNELS_COL_BLOCK ? C - c0 : KERNELS_COL_BLOCK;
            for (int j = 0; j < n; j++) block[j] = 0.0;
            for (int t = 0; t < T; t++) {
                const float *row = x + (size_t)t * C + c0;
                for (int j = 0; j < n; j++) block[j] += (double)row[j];
            }
            for (int j = 0; j < n; j++) o[c0 + j] = (float)(block[j] / T);
        }
    }
}

/* din[B,T,C] = dout[B,C] / T */
void meanpool_backward(float *din, const float *dout, int B, int T, int C)
{
    if (!din || B <= 0 || T <= 0 || C <= 0) return;
    const float tf = (float)T;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *d = din + ((size_t)b * T + t) * C;
            const float *g = dout + (size_t)b * C;
            for (int c = 0; c < C; c++) d[c] = g[c] / tf;
        }
}
