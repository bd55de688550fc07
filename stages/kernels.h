/* kernels.h — layer kernels over flat float arrays (row-major).
 *
 * Every forward writes its output; every backward writes the input gradient
 * `din` (overwrites; NULL means "not needed") and ACCUMULATES (+=) into the
 * parameter gradients, so gradients of several micro-batches sum in place.
 * Kernels never allocate, call MPI or do I/O. B is the number of rows
 * (samples, or samples × positions), other capitals are feature widths. */
#ifndef PT_KERNELS_H
#define PT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Linear: out[B,OUT] = in[B,IN] · w[OUT,IN]ᵀ + b[OUT]   (b may be NULL) */
void linear_forward(float *out, const float *in, const float *w, const float *b,
                    int B, int IN, int OUT);
/* din[B,IN] = dout[B,OUT] · w[OUT,IN];  dw[OUT,IN] += doutᵀ · in;
 * db[OUT] += Σ_rows dout   (din and db may be NULL) */
void linear_backward(float *din, float *dw, float *db, const float *dout,
                     const float *in, const float *w, int B, int IN, int OUT);

/* ReLU: out[N] = max(in, 0);  din[N] = dout · [in > 0] */
void relu_forward(float *out, const float *in, size_t N);
void relu_backward(float *din, const float *dout, const float *in, size_t N);

/* GELU, tanh form: out = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) */
void gelu_forward(float *out, const float *in, size_t N);
void gelu_backward(float *din, const float *dout, const float *in, size_t N);

/* LayerNorm over the last axis, eps = 1e-5:
 * out[B,C] = (in − mean)·rstd·w[C] + b[C];  mean[B], rstd[B] are saved for
 * backward. dw[C] and db[C] accumulate. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                       const float *w, const float *b, int B, int C);
void layernorm_backward(float *din, float *dw, float *db, const float *dout,
                        const float *in, const float *w, const float *mean,
                        const float *rstd, int B, int C);

/* Dropout (inverted): element i is kept when rng_uniform(key, i) >= p and
 * then scaled by 1/(1−p). The mask is a pure function of (key, i) and is
 * recomputed in backward, so nothing is stored. p = 0 copies. */
typedef struct {
    uint64_t seed;
    uint32_t step;
    uint32_t micro_batch;
    uint32_t layer; /* global layer index */
} dropout_key;
void dropout_forward(float *out, const float *in, size_t N, float p, dropout_key key);
void dropout_backward(float *din, const float *dout, size_t N, float p, dropout_key key);

/* Softmax + cross-entropy over V classes, numerically stable (max-shifted).
 * probs[B,V] = softmax(logits);  *loss = mean over the B rows of
 * −log probs[label]. Returns -1 when every label is in [0, V); otherwise the
 * row index of the first out-of-range label (and *loss is untouched). */
long softmax_xent_forward(float *probs, float *loss, const float *logits,
                          const int32_t *labels, int B, int V);
/* dlogits[B,V] = (probs − onehot(labels)) · scale   (scale = 1/B for the
 * gradient of the mean; 1/(B·M) when M micro-batches make one batch).
 * Labels must have been checked by forward. */
void softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels,
                           int B, int V, float scale);

#endif
