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

/* acc[c] += Σ_r m[r, c] for m[rows, cols], summed in double over rows in
 * increasing order, then added once to the float accumulator. */
static void colsum_accumulate(float *acc, const float *m, int rows, int cols)
{
    double block[KERNELS_COL_BLOCK];
    for (int c0 = 0; c0 < cols; c0 += KERNELS_COL_BLOCK) {
        int n = cols - c0 < KERNELS_COL_BLOCK ? cols - c0 : KERNELS_COL_BLOCK;
        for (int j = 0; j < n; j++) block[j] = 0.0;
        for (int r = 0; r < rows; r++) {
            const float *row = m + (size_t)r * (size_t)cols + (size_t)c0;
            for (int j = 0; j < n; j++) block[j] += (double)row[j];
        }
        for (int j = 0; j < n; j++) acc[c0 + j] += (float)block[j];
    }
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
    if (b) {
        for (int r = 0; r < B; r++) {
            float *o = out + (size_t)r * (size_t)OUT;
            for (int j = 0; j < OUT; j++) o[j] += b[j];
        }
    }
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
    if (db) colsum_accumulate(db, dout, B, OUT);
}

/* -------------------------------------------------------------------- ReLU */

/* out[N] = max(in, 0); a NaN input stays NaN so the non-finite check sees it */
void relu_forward(float *out, const float *in, size_t N)
{
    for (size_t i = 0; i < N; i++) {
        float x = in[i];
        out[i] = x <= 0.0f ? 0.0f : x;
    }
}

/* din[N] = dout · [in > 0] */
void relu_backward(float *din, const float *dout, const float *in, size_t N)
{
    if (!din) return;
    for (size_t i = 0; i < N; i++) din[i] = in[i] > 0.0f ? dout[i] : 0.0f;
}

/* -------------------------------------------------------------------- GELU */

#define GELU_SCALE 0.7978845608028654f /* √(2/π) */
#define GELU_CUBE 0.044715f

/* out[N] = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) */
void gelu_forward(float *out, const float *in, size_t N)
{
    for (size_t i = 0; i < N; i++) {
        float x = in[i];
        float t = tanhf(GELU_SCALE * (x + GELU_CUBE * x * x * x));
        out[i] = 0.5f * x * (1.0f + t);
    }
}

/* din[N] = dout · d/dx gelu(x)
 *        = dout · (½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715·x²)) */
void gelu_backward(float *din, const float *dout, const float *in, size_t N)
{
    if (!din) return;
    for (size_t i = 0; i < N; i++) {
        float x = in[i];
        float t = tanhf(GELU_SCALE * (x + GELU_CUBE * x * x * x));
        float sech2 = 1.0f - t * t;
        float local = 0.5f * (1.0f + t) +
                      0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
        din[i] = local * dout[i];
    }
}

/* --------------------------------------------------------------- LayerNorm */

#define LAYERNORM_EPS 1e-5

/* out[B,C] = (in − mean)·rstd·w[C] + b[C];  mean[B], rstd[B] saved.
 * mean and variance (two-pass, biased) are summed in double; the saved float
 * mean and rstd are the ones used for the output, so backward matches. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                       const float *w, const float *b, int B, int C)
{
    if (B <= 0 || C <= 0) return;
    for (int r = 0; r < B; r++) {
        const float *x = in + (size_t)r * (size_t)C;
        float *o = out + (size_t)r * (size_t)C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += (double)x[c];
        double m = s / C;
        double v = 0.0;
        for (int c = 0; c < C; c++) {
            double d = (double)x[c] - m;
            v += d * d;
        }
        v /= C;
        float mf = (float)m;
        float rs = (float)(1.0 / sqrt(v + LAYERNORM_EPS));
        for (int c = 0; c < C; c++) {
            float n = (x[c] - mf) * rs;
            o[c] = n * w[c] + b[c];
        }
        mean[r] = mf;
        rstd[r] = rs;
    }
}

/* With n = (in − mean)·rstd and g = dout·w (per row):
 *   din[B,C] = (g − mean_c(g) − n·mean_c(g·n))·rstd
 *   dw[C] += Σ_rows dout·n;   db[C] += Σ_rows dout */
void layernorm_backward(float *din, float *dw, float *db, const float *dout,
                        const float *in, const float *w, const float *mean,
                        const float *rstd, int B, int C)
{
    if (B <= 0 || C <= 0) return;
    if (din) {
        for (int r = 0; r < B; r++) {
            const float *x = in + (size_t)r * (size_t)C;
            const float *d = dout + (size_t)r * (size_t)C;
            float *di = din + (size_t)r * (size_t)C;
            float mf = mean[r], rs = rstd[r];
            double sg = 0.0, sgn = 0.0;
            for (int c = 0; c < C; c++) {
                float n = (x[c] - mf) * rs;
                float g = d[c] * w[c];
                sg += (double)g;
                sgn += (double)g * (double)n;
            }
            float mg = (float)(sg / C), mgn = (float)(sgn / C);
            for (int c = 0; c < C; c++) {
                float n = (x[c] - mf) * rs;
                float g = d[c] * w[c];
                di[c] = (g - mg - n * mgn) * rs;
            }
        }
    }
    if (db) colsum_accumulate(db, dout, B, C);
    if (dw) {
        double block[KERNELS_COL_BLOCK];
        for (int c0 = 0; c0 < C; c0 += KERNELS_COL_BLOCK) {
            int nc = C - c0 < KERNELS_COL_BLOCK ? C - c0 : KERNELS_COL_BLOCK;
            for (int j = 0; j < nc; j++) block[j] = 0.0;
            for (int r = 0; r < B; r++) {
                const float *x = in + (size_t)r * (size_t)C + (size_t)c0;
                const float *d = dout + (size_t)r * (size_t)C + (size_t)c0;
                float mf = mean[r], rs = rstd[r];
                for (int j = 0; j < nc; j++) {
                    float n = (x[j] - mf) * rs;
                    block[j] += (double)d[j] * (double)n;
                }
            }
            for (int j = 0; j < nc; j++) dw[c0 + j] += (float)block[j];
        }
    }
}

/* ----------------------------------------------------------------- Dropout */

/* dst[i] = src[i]·scale where rng_uniform(key, i) >= p, else 0 (0 < p < 1) */
static void dropout_apply(float *dst, const float *src, size_t N, float p, dropout_key dk)
{
    rng_key key = {.seed = dk.seed, .stream = RNG_STREAM_DROPOUT, .a = dk.layer,
                   .b = dk.step, .c = dk.micro_batch};
    float scale = 1.0f / (1.0f - p);
    uint32_t r[4];
    for (size_t i0 = 0; i0 < N; i0 += 4) {
        /* element i keeps when rng_uniform(key, i) >= p: one Philox call per 4 */
        rng_u32x4(key, (uint64_t)(i0 >> 2), r);
        size_t n = N - i0 < 4 ? N - i0 : 4;
        for (size_t j = 0; j < n; j++)
            dst[i0 + j] = rng_to_unit(r[j]) >= p ? src[i0 + j] * scale : 0.0f;
    }
}

/* p <= 0 copies (out may equal in); p >= 1 drops everything. */
static void dropout_run(float *dst, const float *src, size_t N, float p, dropout_key key)
{
    if (!(p > 0.0f)) {
        if (dst != src) memmove(dst, src, N * sizeof(float));
    } else if (p >= 1.0f) {
        memset(dst, 0, N * sizeof(float));
    } else {
        dropout_apply(dst, src, N, p, key);
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
    double total = 0.0;
    for (int r = 0; r < B; r++) {
        const float *x = logits + (size_t)r * (size_t)V;
        float *p = probs + (size_t)r * (size_t)V;
        float mx = x[0];
        for (int j = 1; j < V; j++)
            if (x[j] > mx) mx = x[j];
        double sum = 0.0;
        for (int j = 0; j < V; j++) {
            p[j] = expf(x[j] - mx);
            sum += (double)p[j];
        }
        double inv = 1.0 / sum;
        for (int j = 0; j < V; j++) p[j] = (float)((double)p[j] * inv);
        total += log(sum) - ((double)x[labels[r]] - (double)mx);
    }
    *loss = (float)(total / B);
    return -1;
}

/* dlogits[B,V] = (probs − onehot(labels))·scale */
void softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels,
                           int B, int V, float scale)
{
    for (int r = 0; r < B; r++) {
        const float *p = probs + (size_t)r * (size_t)V;
        float *d = dlogits + (size_t)r * (size_t)V;
        int32_t y = labels[r];
        for (int j = 0; j < V; j++) {
            float t = j == y ? 1.0f : 0.0f; /* a bad label (checked by forward) matches no j */
            d[j] = (p[j] - t) * scale;
        }
    }
}
