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

/* The instruction set the element-wise and row kernels (GELU, ReLU, bias
 * add and gradient, dropout, LayerNorm, the softmaxes of attention and of
 * the loss) run with: the widest the CPU supports, chosen once when the
 * program starts. Every choice gives the same bits: the same unfused
 * arithmetic in the same order, vectorised over independent elements; a row
 * sum is taken in 16 partial sums (element j into sum j mod 16) combined by
 * halving, on every instruction set. */
typedef enum { KERNELS_PORTABLE = 0, KERNELS_AVX2, KERNELS_AVX512 } kernels_isa;
/* "portable", "AVX2" or "AVX-512". */
const char *kernels_isa_name(kernels_isa isa);
/* 1 when this build and CPU can run isa. */
int kernels_isa_supported(kernels_isa isa);
/* Switches to isa (tests and benchmarks compare them); 0, and no change,
 * when unsupported. Not thread-safe: call before kernels run. */
int kernels_isa_select(kernels_isa isa);
kernels_isa kernels_isa_current(void);
/* Philox4x32-10 words of the 16 quads q0 .. q0+15 of the sequence with
 * counter words ctr and key (rng_philox_words) into words[64], quad q0+k's
 * at words[4k..4k+3]: the same as rng_u32x4 (the dropout mask's words). */
void kernels_philox_quads(uint32_t *words, const uint32_t ctr[3], uint64_t q0, const uint32_t key[2]);

/* Linear: out[B,OUT] = in[B,IN] · w[OUT,IN]ᵀ + b[OUT]   (b may be NULL) */
void linear_forward(float *out, const float *in, const float *w, const float *b,
                    int B, int IN, int OUT);
/* The product with what follows it in the same pass over out, the same bits
 * as the two calls in turn (b may be NULL):
 *   linear_forward_residual:  out[B,OUT] = (in · wᵀ + b) + res[B,OUT]
 *                             (linear_forward, then out += res; res may not
 *                             alias out), the Transformer's residual add;
 *   linear_forward_gelu_keep: pre[B,OUT] = in · wᵀ + b, then out[B,OUT] and
 *                             t[B,OUT] from pre as gelu_forward_keep. */
void linear_forward_residual(float *out, const float *in, const float *w, const float *b,
                             const float *res, int B, int IN, int OUT);
void linear_forward_gelu_keep(float *out, float *t, float *pre, const float *in, const float *w,
                              const float *b, int B, int IN, int OUT);
/* din[B,IN] = dout[B,OUT] · w[OUT,IN];  dw[OUT,IN] += doutᵀ · in;
 * db[OUT] += Σ_rows dout   (din, dw and db may be NULL; `in` is read only
 * for dw, `w` only for din). The three results are computed independently,
 * so the B/W split of Zero Bubble (Qi et al., "Zero Bubble Pipeline
 * Parallelism", ICLR 2024) is two calls: (din, NULL, NULL) for the input
 * gradient, then (NULL, dw, db) for the weight gradient; together they give
 * the same bits as one call with all three. */
void linear_backward(float *din, float *dw, float *db, const float *dout,
                     const float *in, const float *w, int B, int IN, int OUT);

/* ReLU: out[N] = max(in, 0);  din[N] = dout · [in > 0] */
void relu_forward(float *out, const float *in, size_t N);
void relu_backward(float *din, const float *dout, const float *in, size_t N);

/* GELU, tanh form: out = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) */
void gelu_forward(float *out, const float *in, size_t N);
void gelu_backward(float *din, const float *dout, const float *in, size_t N);
/* The same with the backward's tanh kept from the forward: gelu_forward_keep
 * writes out[N] and t[N] = tanh(√(2/π)·(x + 0.044715·x³)); gelu_from_kept
 * rebuilds out[N] from in and t (the same bits as the forward's);
 * gelu_backward_kept gives gelu_backward's din[N] from in and t without a
 * tanh (din may equal dout). */
void gelu_forward_keep(float *out, float *t, const float *in, size_t N);
void gelu_from_kept(float *out, const float *in, const float *t, size_t N);
void gelu_backward_kept(float *din, const float *dout, const float *in, const float *t, size_t N);

/* LayerNorm over the last axis, eps = 1e-5:
 * out[B,C] = (in − mean)·rstd·w[C] + b[C];  mean[B], rstd[B] are saved for
 * backward. dw[C] and db[C] accumulate. din, dw and db may each be NULL;
 * each is computed on its own (the normalised input is recomputed from in,
 * mean and rstd where needed), so (din, NULL, NULL) then (NULL, dw, db) is
 * the B/W split (Qi et al. 2024) with the same bits as one call. The row
 * sums (mean, variance, and backward's two) are in double in the 16-lane
 * order of kernels_isa. Outputs may not alias inputs (din may equal dout). */
void layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                       const float *w, const float *b, int B, int C);
void layernorm_backward(float *din, float *dw, float *db, const float *dout,
                        const float *in, const float *w, const float *mean,
                        const float *rstd, int B, int C);
/* layernorm_backward with add[B,C] (may be NULL) added to din in the same
 * pass: din = LayerNorm's input gradient + add, the same bits as adding it
 * after (the residual's gradient). add may not alias din. */
void layernorm_backward_add(float *din, float *dw, float *db, const float *dout, const float *in,
                            const float *w, const float *mean, const float *rstd, const float *add,
                            int B, int C);

/* Dropout (inverted): element i is kept when rng_uniform(key, i) >= p and
 * then scaled by 1/(1−p). The mask is a pure function of (key, i):
 * dropout_backward recomputes it, dropout_backward_kept reads the bits
 * dropout_forward_keep stored. p = 0 copies. */
typedef struct {
    uint64_t seed;
    uint32_t step;
    uint32_t micro_batch;
    uint32_t layer; /* global layer index */
} dropout_key;
void dropout_forward(float *out, const float *in, size_t N, float p, dropout_key key);
void dropout_backward(float *din, const float *dout, size_t N, float p, dropout_key key);
/* The same with the mask kept rather than regenerated: dropout_forward_keep
 * writes out[N] (dropout_forward's bits) and the keep bits into
 * mask[(N + 31) / 32] (bit j of word w for element 32·w + j; 1 = kept);
 * dropout_backward_kept gives dropout_backward's din[N] from them (din may
 * equal dout) without the generator: 1/32 of the activation's size against
 * 10 Philox rounds per 4 elements (bench/kernels). */
void dropout_forward_keep(float *out, uint32_t *mask, const float *in, size_t N, float p, dropout_key key);
void dropout_backward_kept(float *din, const float *dout, const uint32_t *mask, size_t N, float p);

/* Softmax + cross-entropy over V classes, numerically stable (max-shifted;
 * e^x by a polynomial of about 1 ulp on [−87, 88], clamped there, so a
 * shifted logit below −87 gives e^−87 ≈ 1.6e−38 rather than 0; the row sum
 * in double in the 16-lane order of kernels_isa).
 * probs[B,V] = softmax(logits);  *loss = mean over the B rows of
 * −log probs[label]. Returns -1 when every label is in [0, V); otherwise the
 * row index of the first out-of-range label (and *loss is untouched).
 * probs may not alias logits, nor dlogits probs. */
long softmax_xent_forward(float *probs, float *loss, const float *logits,
                          const int32_t *labels, int B, int V);
/* dlogits[B,V] = (probs − onehot(labels)) · scale   (scale = 1/B for the
 * gradient of the mean; 1/(B·M) when M micro-batches make one batch).
 * Labels must have been checked by forward. */
void softmax_xent_backward(float *dlogits, const float *probs, const int32_t *labels,
                           int B, int V, float scale);

/* ---- sequence layers: a sample is T positions of C channels, [T, C] ---- */

/* Token embedding: out[B,T,C] = w[ids[b,t], :] for ids[B,T] holding token
 * ids as exact small integers stored in floats. A kernel cannot report an
 * error, so an id that is not an integer in [0, V) (negative, too large,
 * fractional, NaN) gets a row of zeros here and no gradient in backward; the
 * caller checks the ids first with embedding_check_ids and refuses bad data. */
void embedding_forward(float *out, const float *ids, const float *w, int B, int T, int V, int C);
/* dw[V,C] += dout[b,t,:] at row ids[b,t], rows visited in increasing (b,t)
 * order (deterministic); ids outside [0, V) are skipped. */
void embedding_backward(float *dw, const float *dout, const float *ids, int B, int T, int V,
                        int C);
/* -1 when every one of ids[0..n) is an integer in [0, V); otherwise the index
 * of the first id that is not. */
long embedding_check_ids(const float *ids, size_t n, int V);

/* Learned positional embedding: out[B,T,C] = in[B,T,C] + w[T,C] (broadcast
 * over B). din = dout (may be NULL; may not alias dout); dw += Σ_b dout[b]. */
void posembed_forward(float *out, const float *in, const float *w, int B, int T, int C);
void posembed_backward(float *din, float *dw, const float *dout, int B, int T, int C);

/* Image patches: img[B,S,S] (single channel, row-major) cut into T = (S/P)²
 * non-overlapping P×P patches, patch t = (t / (S/P), t % (S/P)) in the patch
 * grid, each flattened row-major to P·P values:
 *   cols[B·T, P·P] = im2col(img);  out[B·T, C] = cols · w[C,P·P]ᵀ + b[C].
 * S must be a multiple of P. `work` is caller workspace: forward uses
 * B·S·S floats, backward 2·B·S·S. col2im is the exact inverse of im2col
 * (the patches tile the image), so din needs no accumulation. */
void patch_im2col(float *cols, const float *img, int B, int S, int P);
void patch_col2im(float *img, const float *cols, int B, int S, int P);
void patch_forward(float *out, float *work, const float *img, const float *w, const float *b,
                   int B, int S, int P, int C);
/* din[B,S,S] (may be NULL) = col2im(dout · w);  dw[C,P·P] += doutᵀ · cols;
 * db[C] += Σ_rows dout */
void patch_backward(float *din, float *dw, float *db, float *work, const float *dout,
                    const float *img, const float *w, int B, int S, int P, int C);
/* The B/W split of patch_backward (Qi et al., "Zero Bubble Pipeline
 * Parallelism", ICLR 2024), each part the same bits as patch_backward's:
 *   patch_backward_input:  din[B,S,S] = col2im(dout[B·T,C] · w[C,P·P])
 *                          (overwritten); work: B·S·S floats.
 *   patch_backward_weight: dw[C,P·P] += doutᵀ · im2col(img),
 *                          db[C] += Σ_rows dout (db may be NULL); the columns
 *                          are recomputed from img (a copy, exact) into work,
 *                          B·S·S floats. */
void patch_backward_input(float *din, float *work, const float *dout, const float *w, int B,
                          int S, int P, int C);
void patch_backward_weight(float *dw, float *db, float *work, const float *dout,
                           const float *img, int B, int S, int P, int C);

/* Multi-head self-attention core, H heads of hs = C/H channels, scale
 * 1/√hs. qkv[B,T,3C] holds, per position, q (channels 0..C), k (C..2C) and
 * v (2C..3C); head h uses channels h·hs .. (h+1)·hs of each. Per (b, h):
 *   att[b,h] = softmax_rows(scale · Q·Kᵀ)        [T,T], the probabilities
 *   out[b,:,h·hs..] = att[b,h] · V               [T,hs] into out[B,T,C]
 * With causal ≠ 0 key j > query i is masked: att[i,j] = 0 exactly, so an
 * output at position i does not depend on positions after i (bit for bit).
 * Q·Kᵀ and att·V are cblas_sgemm calls with leading dimension 3C straight on
 * the qkv buffer (no copies); causal attention runs them by blocks of 32
 * query rows and skips the masked blocks, forward and backward (10 of the 16
 * blocks run at T = 128; about half at T ≫ 32). The softmax is
 * softmax_xent_forward's: e^x by the clamped polynomial, row sums in double
 * in the 16-lane order. */
void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int H,
                       int causal);
/* dqkv[B,T,3C] (overwritten) from dout[B,T,C], qkv and att of forward.
 * datt is caller workspace of T·T floats. With dP = dO·Vᵀ and
 * dS = att ⊙ (dP − rowsum(att ⊙ dP)):  dQ = scale·dS·K, dK = scale·dSᵀ·Q,
 * dV = attᵀ·dO. */
void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int H, int causal);

/* Mean over positions: out[B,C] = (1/T)·Σ_t in[B,T,C] (summed in double in
 * increasing t);  din[B,T,C] = dout[B,C] / T. */
void meanpool_forward(float *out, const float *in, int B, int T, int C);
void meanpool_backward(float *din, const float *dout, int B, int T, int C);

#endif
