#include "layers.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "rng.h"

/* for kinds that save nothing or need no workspace */
static size_t no_saved(const layer_desc *d)
{
    (void)d;
    return 0;
}

static int no_params(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS])
{
    (void)d;
    (void)out;
    return 0;
}

static double no_flops(const layer_desc *d)
{
    (void)d;
    return 0.0;
}

/* backward_weight of a kind without parameters: nothing to accumulate */
static void no_bwd_weight(const layer_desc *d, const float *p, float *g, const float *dout,
                          const float *in, const float *saved, const float *wsave, int B,
                          const layer_ctx *ctx)
{
    (void)d, (void)p, (void)g, (void)dout, (void)in, (void)saved, (void)wsave, (void)B, (void)ctx;
}

static void set_param(layer_param *p, const char *name, int rows, int cols, layer_init init,
                      float scale, int decay)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = cols > 0 ? 2 : 1;
    p->shape[0] = rows;
    p->shape[1] = cols > 0 ? cols : 0;
    p->init = init;
    p->scale = scale;
    p->decay = decay;
}

/* ---- linear: w[out,in], b[out] ---------------------------------------- */

static int linear_params(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS])
{
    /* U(±1/√in), the usual default for fully connected layers */
    float bound = 1.0f / sqrtf((float)d->in);
    set_param(&out[0], "w", d->out, d->in, INIT_UNIFORM, bound, 1);
    if (!d->bias) return 1;
    set_param(&out[1], "b", d->out, 0, INIT_ZERO, 0.0f, 0);
    return 2;
}

static void linear_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                       float *saved, int B, const layer_ctx *ctx)
{
    (void)saved;
    (void)ctx;
    linear_forward(out, in, p, d->bias ? p + (size_t)d->out * d->in : NULL, B, d->in, d->out);
}

static void linear_bwd(const layer_desc *d, const float *p, float *g, float *din,
                       const float *dout, const float *in, const float *saved, int B,
                       const layer_ctx *ctx)
{
    (void)saved;
    (void)ctx;
    size_t nw = (size_t)d->out * d->in;
    linear_backward(din, g, d->bias ? g + nw : NULL, dout, in, p, B, d->in, d->out);
}

static double linear_flops(const layer_desc *d)
{
    return 2.0 * d->in * d->out + (d->bias ? d->out : 0);
}

/* B/W split (Qi et al. 2024): B is din = dout·w, W is dw += doutᵀ·in and
 * db += Σ dout. They share nothing: W reads dout and the stashed input, B
 * keeps nothing for it (wsaved 0). */
static void linear_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                          const float *in, const float *saved, float *wsave, int B,
                          const layer_ctx *ctx)
{
    (void)saved, (void)wsave, (void)ctx;
    linear_backward(din, NULL, NULL, dout, in, p, B, d->in, d->out);
}

static void linear_bwd_w(const layer_desc *d, const float *p, float *g, const float *dout,
                         const float *in, const float *saved, const float *wsave, int B,
                         const layer_ctx *ctx)
{
    (void)saved, (void)wsave, (void)ctx;
    size_t nw = (size_t)d->out * d->in;
    linear_backward(NULL, g, d->bias ? g + nw : NULL, dout, in, p, B, d->in, d->out);
}

/* B: one product; W: one product and the bias column sums */
static double linear_flops_in(const layer_desc *d) { return 2.0 * d->in * d->out; }
static double linear_flops_w(const layer_desc *d) { return linear_flops(d); }

/* ---- element-wise activations ----------------------------------------- */

static void relu_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                     float *saved, int B, const layer_ctx *ctx)
{
    (void)p;
    (void)saved;
    (void)ctx;
    relu_forward(out, in, (size_t)B * d->in);
}

static void relu_bwd(const layer_desc *d, const float *p, float *g, float *din,
                     const float *dout, const float *in, const float *saved, int B,
                     const layer_ctx *ctx)
{
    (void)p;
    (void)g;
    (void)saved;
    (void)ctx;
    if (din) relu_backward(din, dout, in, (size_t)B * d->in);
}

static void gelu_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                     float *saved, int B, const layer_ctx *ctx)
{
    (void)p;
    (void)saved;
    (void)ctx;
    gelu_forward(out, in, (size_t)B * d->in);
}

static void gelu_bwd(const layer_desc *d, const float *p, float *g, float *din,
                     const float *dout, const float *in, const float *saved, int B,
                     const layer_ctx *ctx)
{
    (void)p;
    (void)g;
    (void)saved;
    (void)ctx;
    if (din) gelu_backward(din, dout, in, (size_t)B * d->in);
}

static double elementwise_flops(const layer_desc *d) { return (double)d->in; }

/* relu, gelu: no parameters, so B is the whole backward and W nothing.
 * GELU's derivative is computed in B only (W has nothing to use it for). */
static void relu_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                        const float *in, const float *saved, float *wsave, int B,
                        const layer_ctx *ctx)
{
    (void)wsave;
    relu_bwd(d, p, NULL, din, dout, in, saved, B, ctx);
}

static void gelu_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                        const float *in, const float *saved, float *wsave, int B,
                        const layer_ctx *ctx)
{
    (void)wsave;
    gelu_bwd(d, p, NULL, din, dout, in, saved, B, ctx);
}

/* ---- dropout ---------------------------------------------------------- */

static dropout_key dkey(const layer_ctx *ctx)
{
    dropout_key k = {ctx->seed, ctx->step, ctx->micro_batch, ctx->layer};
    return k;
}

/* saved: the keep bits of a sample's d->in elements, 32 to a float (the
 * micro-batch's bits run on across its samples: B·d->in bits need no more
 * than B·⌈d->in/32⌉ words). Kept rather than regenerated in backward: the
 * bits cost 1/32 of the activation, the generator 10 Philox rounds per 4
 * elements (bench/kernels: backward 22× faster, forward 8 % slower). */
static size_t dropout_saved(const layer_desc *d) { return ((size_t)d->in + 31) / 32; }

static void dropout_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                        float *saved, int B, const layer_ctx *ctx)
{
    (void)p;
    size_t n = (size_t)B * d->in;
    if (!ctx->training || d->p == 0.0f)
        memcpy(out, in, n * sizeof *out);
    else
        dropout_forward_keep(out, (uint32_t *)saved, in, n, d->p, dkey(ctx));
}

static void dropout_bwd(const layer_desc *d, const float *p, float *g, float *din,
                        const float *dout, const float *in, const float *saved, int B,
                        const layer_ctx *ctx)
{
    (void)p;
    (void)g;
    (void)in;
    if (!din) return;
    size_t n = (size_t)B * d->in;
    if (!ctx->training || d->p == 0.0f)
        memcpy(din, dout, n * sizeof *din);
    else
        dropout_backward_kept(din, dout, (const uint32_t *)saved, n, d->p);
}

/* no parameters: B is the whole backward (from the kept bits), W nothing */
static void dropout_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                           const float *in, const float *saved, float *wsave, int B,
                           const layer_ctx *ctx)
{
    (void)wsave;
    dropout_bwd(d, p, NULL, din, dout, in, saved, B, ctx);
}

/* ---- layernorm: w[C], b[C]; saves mean and rstd per row ---------------- */

static int layernorm_params(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS])
{
    set_param(&out[0], "w", d->width, 0, INIT_ONE, 0.0f, 0);
    set_param(&out[1], "b", d->width, 0, INIT_ZERO, 0.0f, 0);
    return 2;
}

static size_t layernorm_saved(const layer_desc *d) { return 2 * (size_t)(d->in / d->width); }

static void layernorm_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                          float *saved, int B, const layer_ctx *ctx)
{
    (void)ctx;
    int rows = B * (d->in / d->width);
    layernorm_forward(out, saved, saved + rows, in, p, p + d->width, rows, d->width);
}

static void layernorm_bwd(const layer_desc *d, const float *p, float *g, float *din,
                          const float *dout, const float *in, const float *saved, int B,
                          const layer_ctx *ctx)
{
    (void)ctx;
    int rows = B * (d->in / d->width);
    layernorm_backward(din, g, g + d->width, dout, in, p, saved, saved + rows, rows, d->width);
}

static double layernorm_flops(const layer_desc *d) { return 8.0 * d->in; }

/* B/W split (Qi et al. 2024): B is din, W is dw and db. Both need the
 * normalised input n = (in − mean)·rstd; W recomputes it from the stashed
 * input and the saved mean and rstd (two operations per element, the same
 * code as in backward), so B keeps nothing for W (wsaved 0). */
static void layernorm_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                             const float *in, const float *saved, float *wsave, int B,
                             const layer_ctx *ctx)
{
    (void)wsave, (void)ctx;
    int rows = B * (d->in / d->width);
    layernorm_backward(din, NULL, NULL, dout, in, p, saved, saved + rows, rows, d->width);
}

static void layernorm_bwd_w(const layer_desc *d, const float *p, float *g, const float *dout,
                            const float *in, const float *saved, const float *wsave, int B,
                            const layer_ctx *ctx)
{
    (void)wsave, (void)ctx;
    int rows = B * (d->in / d->width);
    layernorm_backward(NULL, g, g + d->width, dout, in, p, saved, saved + rows, rows, d->width);
}

/* per element, B: n and g = dout·w twice (6), the two row sums (3), din (4);
 * W: n (2), dw's multiply-add (2), db's add (1) */
static double layernorm_flops_in(const layer_desc *d) { return 13.0 * d->in; }
static double layernorm_flops_w(const layer_desc *d) { return 5.0 * d->in; }

/* ---- embed V C: w[V,C]; input: T token ids per sample ----------------- */

static int embed_params(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS])
{
    set_param(&out[0], "w", d->vocab, d->chan, INIT_NORMAL, 0.02f, 1);
    return 1;
}

static void embed_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                      float *saved, int B, const layer_ctx *ctx)
{
    (void)saved;
    (void)ctx;
    embedding_forward(out, in, p, B, d->seq, d->vocab, d->chan);
}

/* the input is ids: no gradient flows to it (din, when asked for, is zeros) */
static void embed_bwd(const layer_desc *d, const float *p, float *g, float *din,
                      const float *dout, const float *in, const float *saved, int B,
                      const layer_ctx *ctx)
{
    (void)p;
    (void)saved;
    (void)ctx;
    if (din) memset(din, 0, (size_t)B * (size_t)d->in * sizeof *din);
    embedding_backward(g, dout, in, B, d->seq, d->vocab, d->chan);
}

/* a row copy per position: no arithmetic */
static double embed_flops(const layer_desc *d)
{
    (void)d;
    return 0.0;
}

/* B/W split: B only zero-fills din (ids have no gradient); W is the
 * scatter-add of dout into dw. Nothing kept (wsaved 0). */
static void embed_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                         const float *in, const float *saved, float *wsave, int B,
                         const layer_ctx *ctx)
{
    (void)p, (void)dout, (void)in, (void)saved, (void)wsave, (void)ctx;
    if (din) memset(din, 0, (size_t)B * (size_t)d->in * sizeof *din);
}

static void embed_bwd_w(const layer_desc *d, const float *p, float *g, const float *dout,
                        const float *in, const float *saved, const float *wsave, int B,
                        const layer_ctx *ctx)
{
    (void)p, (void)saved, (void)wsave, (void)ctx;
    embedding_backward(g, dout, in, B, d->seq, d->vocab, d->chan);
}

/* W: one addition per output element */
static double embed_flops_w(const layer_desc *d) { return (double)d->seq * d->chan; }

/* ---- posembed: w[T,C] added to every sample --------------------------- */

static int posembed_params(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS])
{
    set_param(&out[0], "w", d->seq, d->chan, INIT_NORMAL, 0.02f, 1);
    return 1;
}

static void posembed_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                         float *saved, int B, const layer_ctx *ctx)
{
    (void)saved;
    (void)ctx;
    posembed_forward(out, in, p, B, d->seq, d->chan);
}

static void posembed_bwd(const layer_desc *d, const float *p, float *g, float *din,
                         const float *dout, const float *in, const float *saved, int B,
                         const layer_ctx *ctx)
{
    (void)p;
    (void)in;
    (void)saved;
    (void)ctx;
    posembed_backward(din, g, dout, B, d->seq, d->chan);
}

/* B/W split: B copies dout to din, W sums dout over the samples into dw.
 * Nothing kept (wsaved 0). */
static void posembed_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                            const float *in, const float *saved, float *wsave, int B,
                            const layer_ctx *ctx)
{
    (void)p, (void)in, (void)saved, (void)wsave, (void)ctx;
    posembed_backward(din, NULL, dout, B, d->seq, d->chan);
}

static void posembed_bwd_w(const layer_desc *d, const float *p, float *g, const float *dout,
                           const float *in, const float *saved, const float *wsave, int B,
                           const layer_ctx *ctx)
{
    (void)p, (void)in, (void)saved, (void)wsave, (void)ctx;
    posembed_backward(NULL, g, dout, B, d->seq, d->chan);
}

/* ---- patch P C: w[C,P·P], b[C]; image S×S -> (S/P)² tokens ------------ */

static int patch_params(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS])
{
    int k = d->patch * d->patch;
    set_param(&out[0], "w", d->chan, k, INIT_UNIFORM, 1.0f / sqrtf((float)k), 1);
    set_param(&out[1], "b", d->chan, 0, INIT_ZERO, 0.0f, 0);
    return 2;
}

/* the patch columns (forward), then their gradient (backward) */
static size_t patch_scratch(const layer_desc *d) { return 2 * (size_t)d->in; }

static void patch_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                      float *saved, int B, const layer_ctx *ctx)
{
    (void)saved;
    size_t nw = (size_t)d->chan * d->patch * d->patch;
    patch_forward(out, ctx->scratch, in, p, p + nw, B, d->side, d->patch, d->chan);
}

static void patch_bwd(const layer_desc *d, const float *p, float *g, float *din,
                      const float *dout, const float *in, const float *saved, int B,
                      const layer_ctx *ctx)
{
    (void)saved;
    size_t nw = (size_t)d->chan * d->patch * d->patch;
    patch_backward(din, g, g + nw, ctx->scratch, dout, in, p, B, d->side, d->patch, d->chan);
}

static double patch_flops(const layer_desc *d)
{
    return 2.0 * d->seq * d->patch * d->patch * d->chan + (double)d->seq * d->chan;
}

/* B/W split (Qi et al. 2024): B is din = col2im(dout·w), W is dw and db
 * from the patch columns, which W recomputes from the stashed image (a
 * copy, exact) rather than B keeping them: wsaved 0. Both use the scratch
 * patch_scratch declares. */
static void patch_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                         const float *in, const float *saved, float *wsave, int B,
                         const layer_ctx *ctx)
{
    (void)in, (void)saved, (void)wsave;
    patch_backward_input(din, ctx->scratch, dout, p, B, d->side, d->patch, d->chan);
}

static void patch_bwd_w(const layer_desc *d, const float *p, float *g, const float *dout,
                        const float *in, const float *saved, const float *wsave, int B,
                        const layer_ctx *ctx)
{
    (void)p, (void)saved, (void)wsave;
    size_t nw = (size_t)d->chan * d->patch * d->patch;
    patch_backward_weight(g, g + nw, ctx->scratch, dout, in, B, d->side, d->patch, d->chan);
}

static double patch_flops_in(const layer_desc *d)
{
    return 2.0 * d->seq * d->patch * d->patch * d->chan;
}
static double patch_flops_w(const layer_desc *d) { return patch_flops(d); }

/* ---- block H [causal]: pre-LayerNorm Transformer block on [T, C] -------
 *
 *   a = x + attn(ln1(x)) · w_projᵀ + b_proj       (attn on qkv = ln1(x)·w_qkvᵀ + b_qkv)
 *   y = a + gelu(ln2(a) · w_fcᵀ + b_fc) · mlp.w_projᵀ + mlp.b_proj
 *
 * Rows of the linears and layernorms are the B·T positions. */

enum {
    BP_LN1W, BP_LN1B, BP_WQKV, BP_BQKV, BP_WPROJ, BP_BPROJ,
    BP_LN2W, BP_LN2B, BP_WFC, BP_BFC, BP_WFC2, BP_BFC2, BP_COUNT
};

static int block_params(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS])
{
    int C = d->chan;
    /* GPT-2: residual output projections scaled down by √(2·blocks) */
    float proj = 0.02f / sqrtf(2.0f * (float)(d->n_blocks > 0 ? d->n_blocks : 1));
    set_param(&out[BP_LN1W], "ln1.w", C, 0, INIT_ONE, 0.0f, 0);
    set_param(&out[BP_LN1B], "ln1.b", C, 0, INIT_ZERO, 0.0f, 0);
    set_param(&out[BP_WQKV], "attn.w_qkv", 3 * C, C, INIT_NORMAL, 0.02f, 1);
    set_param(&out[BP_BQKV], "attn.b_qkv", 3 * C, 0, INIT_ZERO, 0.0f, 0);
    set_param(&out[BP_WPROJ], "attn.w_proj", C, C, INIT_NORMAL, proj, 1);
    set_param(&out[BP_BPROJ], "attn.b_proj", C, 0, INIT_ZERO, 0.0f, 0);
    set_param(&out[BP_LN2W], "ln2.w", C, 0, INIT_ONE, 0.0f, 0);
    set_param(&out[BP_LN2B], "ln2.b", C, 0, INIT_ZERO, 0.0f, 0);
    set_param(&out[BP_WFC], "mlp.w_fc", 4 * C, C, INIT_NORMAL, 0.02f, 1);
    set_param(&out[BP_BFC], "mlp.b_fc", 4 * C, 0, INIT_ZERO, 0.0f, 0);
    set_param(&out[BP_WFC2], "mlp.w_proj", C, 4 * C, INIT_NORMAL, proj, 1);
    set_param(&out[BP_BFC2], "mlp.b_proj", C, 0, INIT_ZERO, 0.0f, 0);
    return BP_COUNT;
}

/* Pointers to the twelve tensors (parameters or their gradients) laid out
 * as block_params lists them. */
static void block_tensors(const layer_desc *d, float *base, float *t[BP_COUNT])
{
    size_t C = (size_t)d->chan;
    const size_t n[BP_COUNT] = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C, 4 * C * C, C};
    for (int i = 0; i < BP_COUNT; i++) {
        t[i] = base;
        base += n[i];
    }
}

/* What forward saves, each an array over the B samples (rows = B·T):
 * ln1 [rows,C], ln1 mean and rstd [rows], qkv [rows,3C], att [B,H,T,T],
 * atty (attention output before the projection) [rows,C], res (x after the
 * attention residual) [rows,C], ln2 [rows,C], ln2 mean and rstd [rows],
 * fch (fc pre-activation) [rows,4C], gt [rows,4C]: the tanh of its GELU, from
 * which backward rebuilds the GELU's output (0.5·x·(1 + t), the same bits)
 * and its derivative without computing a tanh again. */
typedef struct {
    float *ln1, *mean1, *rstd1, *qkv, *att, *atty, *res, *ln2, *mean2, *rstd2, *fch, *gt;
} block_saved;

static size_t block_saved_floats(const layer_desc *d)
{
    size_t T = (size_t)d->seq, C = (size_t)d->chan, H = (size_t)d->heads;
    return 15 * T * C + 4 * T + H * T * T;
}

static block_saved block_saved_at(const layer_desc *d, float *s, int B)
{
    size_t rows = (size_t)B * d->seq, C = (size_t)d->chan, T = (size_t)d->seq;
    block_saved v;
    v.ln1 = s, s += rows * C;
    v.mean1 = s, s += rows;
    v.rstd1 = s, s += rows;
    v.qkv = s, s += rows * 3 * C;
    v.att = s, s += (size_t)B * d->heads * T * T;
    v.atty = s, s += rows * C;
    v.res = s, s += rows * C;
    v.ln2 = s, s += rows * C;
    v.mean2 = s, s += rows;
    v.rstd2 = s, s += rows;
    v.fch = s, s += rows * 4 * C;
    v.gt = s;
    return v;
}

/* Workspace per sample. Forward: the GELU's output [T,4C]. Backward: dfc
 * [T,4C] (first the GELU's output rebuilt, later reused for the gradients of
 * atty [T,C] and qkv [T,3C]), dln [T,C] (of ln2, later ln1), dres [T,C], and
 * T·T for the attention scores of one (sample, head). */
static size_t block_scratch(const layer_desc *d)
{
    size_t T = (size_t)d->seq, C = (size_t)d->chan;
    return 6 * T * C + T * T;
}

static void block_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                      float *saved, int B, const layer_ctx *ctx)
{
    const int T = d->seq, C = d->chan, rows = B * T;
    float *w[BP_COUNT], *fcg = ctx->scratch; /* the GELU's output [rows,4C], input of the last product */
    block_tensors(d, (float *)p, w);
    block_saved s = block_saved_at(d, saved, B);
    layernorm_forward(s.ln1, s.mean1, s.rstd1, in, w[BP_LN1W], w[BP_LN1B], rows, C);
    linear_forward(s.qkv, s.ln1, w[BP_WQKV], w[BP_BQKV], rows, C, 3 * C);
    attention_forward(s.atty, s.att, s.qkv, B, T, C, d->heads, d->causal);
    linear_forward_residual(s.res, s.atty, w[BP_WPROJ], w[BP_BPROJ], in, rows, C, C);
    layernorm_forward(s.ln2, s.mean2, s.rstd2, s.res, w[BP_LN2W], w[BP_LN2B], rows, C);
    linear_forward_gelu_keep(fcg, s.gt, s.fch, s.ln2, w[BP_WFC], w[BP_BFC], rows, C, 4 * C);
    linear_forward_residual(out, fcg, w[BP_WFC2], w[BP_BFC2], s.res, rows, 4 * C, C);
}

static void block_bwd(const layer_desc *d, const float *p, float *g, float *din,
                      const float *dout, const float *in, const float *saved, int B,
                      const layer_ctx *ctx)
{
    const int T = d->seq, C = d->chan, rows = B * T;
    const size_t n = (size_t)rows * C;
    float *w[BP_COUNT], *dw[BP_COUNT];
    block_tensors(d, (float *)p, w);
    block_tensors(d, g, dw);
    block_saved s = block_saved_at(d, (float *)saved, B);
    float *dfc = ctx->scratch, *dln = dfc + 4 * n, *dres = dln + n, *datt = dres + n;

    /* MLP: dfc = gelu'(fch) ⊙ (dout · mlp.w_proj), dln = dfc · w_fc; the GELU's output is rebuilt in
     * dfc for mlp.w_proj's gradient first (the products are independent: the same bits as one call) */
    gelu_from_kept(dfc, s.fch, s.gt, 4 * n);
    linear_backward(NULL, dw[BP_WFC2], dw[BP_BFC2], dout, dfc, w[BP_WFC2], rows, 4 * C, C);
    linear_backward(dfc, NULL, NULL, dout, NULL, w[BP_WFC2], rows, 4 * C, C);
    gelu_backward_kept(dfc, dfc, s.fch, s.gt, 4 * n);
    linear_backward(dln, dw[BP_WFC], dw[BP_BFC], dfc, s.ln2, w[BP_WFC], rows, C, 4 * C);
    layernorm_backward_add(dres, dw[BP_LN2W], dw[BP_LN2B], dln, s.res, w[BP_LN2W], s.mean2,
                           s.rstd2, dout, rows, C);

    /* attention: dfc now holds datty [rows,C] then dqkv [rows,3C] */
    float *datty = dfc, *dqkv = dfc + n;
    linear_backward(datty, dw[BP_WPROJ], dw[BP_BPROJ], dres, s.atty, w[BP_WPROJ], rows, C, C);
    attention_backward(dqkv, datt, datty, s.qkv, s.att, B, T, C, d->heads, d->causal);
    linear_backward(dln, dw[BP_WQKV], dw[BP_BQKV], dqkv, s.ln1, w[BP_WQKV], rows, C, 3 * C);
    layernorm_backward_add(din, dw[BP_LN1W], dw[BP_LN1B], dln, in, w[BP_LN1W], s.mean1, s.rstd1,
                           dres, rows, C);
}

/* B/W split of the block (Qi et al., "Zero Bubble Pipeline Parallelism",
 * ICLR 2024). The weight gradients need the gradients of the block's
 * intermediate activations, which only the input-gradient pass computes:
 *   dfc  [rows,4C]  of the fc pre-activation  -> mlp.w_fc, mlp.b_fc
 *   dln2 [rows,C]   of ln2's output           -> ln2.w, ln2.b
 *   dres [rows,C]   of the attention residual -> attn.w_proj, attn.b_proj
 *   dqkv [rows,3C]  of qkv                    -> attn.w_qkv, attn.b_qkv
 *   dln1 [rows,C]   of ln1's output           -> ln1.w, ln1.b
 * (mlp.w_proj and mlp.b_proj need only dout). Recomputing them in W would
 * repeat B's matrix products and attention backward (W would cost B + W),
 * so B keeps them: dfc, dln2, dqkv and dln1 go to the micro-batch's wsave,
 * 9·T·C floats per sample. dres is not kept: W recomputes it from dln2 and
 * dout (ln2's input-gradient formula plus the residual, about 14 operations
 * per element against 24·C for the products), by the same kernel call with
 * the same values as B, so the bits agree. Scratch: B uses dres, datty
 * [rows,C] and T·T for the attention scores of one (sample, head); W uses
 * dres and the GELU's output rebuilt [rows,4C]. Both fit in block_scratch. */
typedef struct {
    float *dfc, *dln2, *dqkv, *dln1;
} block_wsave;

static size_t block_wsaved_floats(const layer_desc *d) { return 9 * (size_t)d->seq * d->chan; }

static block_wsave block_wsave_at(const layer_desc *d, float *s, int B)
{
    size_t n = (size_t)B * d->seq * d->chan;
    block_wsave v;
    v.dfc = s, s += 4 * n;
    v.dln2 = s, s += n;
    v.dqkv = s, s += 3 * n;
    v.dln1 = s;
    return v;
}

static void block_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                         const float *in, const float *saved, float *wsave, int B,
                         const layer_ctx *ctx)
{
    const int T = d->seq, C = d->chan, rows = B * T;
    const size_t n = (size_t)rows * C;
    float *w[BP_COUNT];
    block_tensors(d, (float *)p, w);
    block_saved s = block_saved_at(d, (float *)saved, B);
    block_wsave v = block_wsave_at(d, wsave, B);
    float *dres = ctx->scratch, *datty = dres + n, *datt = datty + n;

    /* MLP: dfc = gelu'(fch) ⊙ (dout · mlp.w_proj), dln2 = dfc · w_fc */
    linear_backward(v.dfc, NULL, NULL, dout, NULL, w[BP_WFC2], rows, 4 * C, C);
    gelu_backward_kept(v.dfc, v.dfc, s.fch, s.gt, 4 * n);
    linear_backward(v.dln2, NULL, NULL, v.dfc, s.ln2, w[BP_WFC], rows, C, 4 * C);
    layernorm_backward_add(dres, NULL, NULL, v.dln2, s.res, w[BP_LN2W], s.mean2, s.rstd2, dout,
                           rows, C);

    /* attention */
    linear_backward(datty, NULL, NULL, dres, s.atty, w[BP_WPROJ], rows, C, C);
    attention_backward(v.dqkv, datt, datty, s.qkv, s.att, B, T, C, d->heads, d->causal);
    linear_backward(v.dln1, NULL, NULL, v.dqkv, s.ln1, w[BP_WQKV], rows, C, 3 * C);
    if (din)
        layernorm_backward_add(din, NULL, NULL, v.dln1, in, w[BP_LN1W], s.mean1, s.rstd1, dres,
                               rows, C);
}

static void block_bwd_w(const layer_desc *d, const float *p, float *g, const float *dout,
                        const float *in, const float *saved, const float *wsave, int B,
                        const layer_ctx *ctx)
{
    const int T = d->seq, C = d->chan, rows = B * T;
    const size_t n = (size_t)rows * C;
    float *w[BP_COUNT], *dw[BP_COUNT];
    block_tensors(d, (float *)p, w);
    block_tensors(d, g, dw);
    block_saved s = block_saved_at(d, (float *)saved, B);
    block_wsave v = block_wsave_at(d, (float *)wsave, B);
    float *dres = ctx->scratch, *fcg = dres + n; /* the GELU's output rebuilt [rows,4C] */

    gelu_from_kept(fcg, s.fch, s.gt, 4 * n);
    linear_backward(NULL, dw[BP_WFC2], dw[BP_BFC2], dout, fcg, w[BP_WFC2], rows, 4 * C, C);
    linear_backward(NULL, dw[BP_WFC], dw[BP_BFC], v.dfc, s.ln2, w[BP_WFC], rows, C, 4 * C);
    /* ln2's parameter gradients, and dres recomputed as B computed it */
    layernorm_backward_add(dres, dw[BP_LN2W], dw[BP_LN2B], v.dln2, s.res, w[BP_LN2W], s.mean2,
                           s.rstd2, dout, rows, C);
    linear_backward(NULL, dw[BP_WPROJ], dw[BP_BPROJ], dres, s.atty, w[BP_WPROJ], rows, C, C);
    linear_backward(NULL, dw[BP_WQKV], dw[BP_BQKV], v.dqkv, s.ln1, w[BP_WQKV], rows, C, 3 * C);
    layernorm_backward(NULL, dw[BP_LN1W], dw[BP_LN1B], v.dln1, in, w[BP_LN1W], s.mean1, s.rstd1,
                       rows, C);
}

/* FLOPs per sample of the two halves (conventions of block_flops).
 * B: the four input-gradient products 2·T·C·(4C + 4C + C + 3C) = 24·T·C²;
 *    attention backward dV, dP, dQ, dK, 2·T·T·C each = 8·T²·C; element-wise
 *    the gelu derivative (one per element, as forward counts gelu: 4·T·C),
 *    two layernorm input gradients (13·T·C each), two residual adds and
 *    4 per attention score (row dot product and dS: 4·H·T²).
 * W: the four weight-gradient products, 24·T·C²; the bias column sums
 *    (9·T·C), the layernorm parameter gradients (5·T·C each) and dres
 *    recomputed (13·T·C + T·C for the residual). */
static double block_flops_in(const layer_desc *d)
{
    double T = d->seq, C = d->chan, H = d->heads;
    return 24.0 * T * C * C + 8.0 * T * T * C + 4.0 * T * C + 26.0 * T * C + 2.0 * T * C +
           4.0 * H * T * T;
}

static double block_flops_w(const layer_desc *d)
{
    double T = d->seq, C = d->chan;
    return 24.0 * T * C * C + 9.0 * T * C + 10.0 * T * C + 14.0 * T * C;
}

/* Forward FLOPs per sample. Matrix products count 2·m·n·k: the four linears
 * 2·T·C·(3C + C + 4C + 4C) = 24·T·C², Q·Kᵀ and att·V 2·T·T·C each — the full
 * T×T also when causal, a convention (the kernels skip the masked blocks of
 * 32 query rows: 10 of the 16 blocks run at T = 128).
 * Element-wise: 8·T·C per layernorm (as the layernorm kind), one per bias
 * element (9·T·C), two residual adds, one per gelu element (4·T·C) and 5 per
 * attention score (max, subtract, exp, sum, scale: 5·H·T²). */
static double block_flops(const layer_desc *d)
{
    double T = d->seq, C = d->chan, H = d->heads;
    double matmul = 24.0 * T * C * C + 4.0 * T * T * C;
    double elementwise = 16.0 * T * C + 9.0 * T * C + 2.0 * T * C + 4.0 * T * C + 5.0 * H * T * T;
    return matmul + elementwise;
}

/* ---- lmhead V: w[V,C], no bias; rows B·T ------------------------------- */

static int lmhead_params(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS])
{
    set_param(&out[0], "w", d->vocab, d->chan, INIT_NORMAL, 0.02f, 1);
    return 1;
}

static void lmhead_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                       float *saved, int B, const layer_ctx *ctx)
{
    (void)saved;
    (void)ctx;
    linear_forward(out, in, p, NULL, B * d->seq, d->chan, d->vocab);
}

static void lmhead_bwd(const layer_desc *d, const float *p, float *g, float *din,
                       const float *dout, const float *in, const float *saved, int B,
                       const layer_ctx *ctx)
{
    (void)saved;
    (void)ctx;
    linear_backward(din, g, NULL, dout, in, p, B * d->seq, d->chan, d->vocab);
}

static double lmhead_flops(const layer_desc *d) { return 2.0 * d->seq * d->chan * d->vocab; }

/* B/W split as for linear: B is din = dout·w, W is dw += doutᵀ·in; nothing
 * kept (wsaved 0). Each is one product of the forward's size. */
static void lmhead_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                          const float *in, const float *saved, float *wsave, int B,
                          const layer_ctx *ctx)
{
    (void)saved, (void)wsave, (void)ctx;
    linear_backward(din, NULL, NULL, dout, in, p, B * d->seq, d->chan, d->vocab);
}

static void lmhead_bwd_w(const layer_desc *d, const float *p, float *g, const float *dout,
                         const float *in, const float *saved, const float *wsave, int B,
                         const layer_ctx *ctx)
{
    (void)saved, (void)wsave, (void)ctx;
    linear_backward(NULL, g, NULL, dout, in, p, B * d->seq, d->chan, d->vocab);
}

/* ---- meanpool: [T,C] -> [C] -------------------------------------------- */

static void meanpool_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                         float *saved, int B, const layer_ctx *ctx)
{
    (void)p;
    (void)saved;
    (void)ctx;
    meanpool_forward(out, in, B, d->seq, d->chan);
}

static void meanpool_bwd(const layer_desc *d, const float *p, float *g, float *din,
                         const float *dout, const float *in, const float *saved, int B,
                         const layer_ctx *ctx)
{
    (void)p;
    (void)g;
    (void)in;
    (void)saved;
    (void)ctx;
    meanpool_backward(din, dout, B, d->seq, d->chan);
}

/* no parameters: B is the whole backward, W nothing */
static void meanpool_bwd_in(const layer_desc *d, const float *p, float *din, const float *dout,
                            const float *in, const float *saved, float *wsave, int B,
                            const layer_ctx *ctx)
{
    (void)wsave;
    meanpool_bwd(d, p, NULL, din, dout, in, saved, B, ctx);
}

/* ---- the registry ------------------------------------------------------ */

/* B/W split entries: kinds without parameters have backward_input = the
 * whole backward and backward_weight = nothing; no kind but block keeps
 * anything from B for W (wsaved). */
#define KIND(kname, par, sav, scr, fwd, bwd, fl, wsav, bin, bw, flin, flw)                        \
    {.kind_name = kname, .params = par, .saved = sav, .scratch = scr, .forward = fwd,             \
     .backward = bwd, .flops = fl, .wsaved = wsav, .backward_input = bin,                         \
     .backward_weight = bw, .flops_backward_input = flin, .flops_backward_weight = flw}

static const layer_ops registry[LAYER_KIND_COUNT] = {
    [LAYER_LINEAR] = KIND("linear", linear_params, no_saved, no_saved, linear_fwd, linear_bwd,
                          linear_flops, no_saved, linear_bwd_in, linear_bwd_w, linear_flops_in,
                          linear_flops_w),
    [LAYER_RELU] = KIND("relu", no_params, no_saved, no_saved, relu_fwd, relu_bwd,
                        elementwise_flops, no_saved, relu_bwd_in, no_bwd_weight,
                        elementwise_flops, no_flops),
    [LAYER_GELU] = KIND("gelu", no_params, no_saved, no_saved, gelu_fwd, gelu_bwd,
                        elementwise_flops, no_saved, gelu_bwd_in, no_bwd_weight,
                        elementwise_flops, no_flops),
    [LAYER_LAYERNORM] = KIND("layernorm", layernorm_params, layernorm_saved, no_saved,
                             layernorm_fwd, layernorm_bwd, layernorm_flops, no_saved,
                             layernorm_bwd_in, layernorm_bwd_w, layernorm_flops_in,
                             layernorm_flops_w),
    [LAYER_DROPOUT] = KIND("dropout", no_params, dropout_saved, no_saved, dropout_fwd, dropout_bwd,
                           elementwise_flops, no_saved, dropout_bwd_in, no_bwd_weight,
                           elementwise_flops, no_flops),
    [LAYER_EMBED] = KIND("embed", embed_params, no_saved, no_saved, embed_fwd, embed_bwd,
                         embed_flops, no_saved, embed_bwd_in, embed_bwd_w, no_flops,
                         embed_flops_w),
    [LAYER_POSEMBED] = KIND("posembed", posembed_params, no_saved, no_saved, posembed_fwd,
                            posembed_bwd, elementwise_flops, no_saved, posembed_bwd_in,
                            posembed_bwd_w, no_flops, elementwise_flops),
    [LAYER_PATCH] = KIND("patch", patch_params, no_saved, patch_scratch, patch_fwd, patch_bwd,
                         patch_flops, no_saved, patch_bwd_in, patch_bwd_w, patch_flops_in,
                         patch_flops_w),
    [LAYER_BLOCK] = KIND("block", block_params, block_saved_floats, block_scratch, block_fwd,
                         block_bwd, block_flops, block_wsaved_floats, block_bwd_in, block_bwd_w,
                         block_flops_in, block_flops_w),
    [LAYER_LMHEAD] = KIND("lmhead", lmhead_params, no_saved, no_saved, lmhead_fwd, lmhead_bwd,
                          lmhead_flops, no_saved, lmhead_bwd_in, lmhead_bwd_w, lmhead_flops,
                          lmhead_flops),
    [LAYER_MEANPOOL] = KIND("meanpool", no_params, no_saved, no_saved, meanpool_fwd,
                            meanpool_bwd, elementwise_flops, no_saved, meanpool_bwd_in,
                            no_bwd_weight, elementwise_flops, no_flops),
};

#undef KIND

const layer_ops *layer_get(layer_kind kind)
{
    if ((unsigned)kind >= LAYER_KIND_COUNT) return NULL;
    return &registry[kind];
}

int layer_kind_from_name(const char *name)
{
    for (int k = 0; k < LAYER_KIND_COUNT; k++)
        if (strcmp(registry[k].kind_name, name) == 0) return k;
    return -1;
}

size_t layer_param_floats(const layer_desc *d)
{
    layer_param ps[LAYER_MAX_PARAMS];
    int n = layer_get(d->kind)->params(d, ps);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)ps[i].shape[0] * (ps[i].ndim == 2 ? (size_t)ps[i].shape[1] : 1);
    return total;
}

/* ---- model ------------------------------------------------------------- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* The running shape while parsing: seq > 0 when the activation is a
 * sequence of seq positions of chan channels, 0 when it is a flat vector. */
typedef struct {
    int seq, chan;
} run_shape;

/* Parses s as an integer in [lo, hi] into *v; 0 when it is not one. */
static int parse_int(const char *s, long lo, long hi, int *v)
{
    char *end = NULL;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (!*s || *end || errno || x < lo || x > hi) return 0;
    *v = (int)x;
    return 1;
}

/* most arguments a kind takes */
static int max_args(layer_kind k)
{
    switch (k) {
    case LAYER_LINEAR:
    case LAYER_DROPOUT:
    case LAYER_LAYERNORM:
    case LAYER_LMHEAD: return 1;
    case LAYER_EMBED:
    case LAYER_PATCH:
    case LAYER_BLOCK: return 2;
    default: return 0;
    }
}

static pt_status need_sequence(int index, const char *name, const char *usage, int in)
{
    return pt_fail(PT_ERR_INVALID,
                   "model.layers item %d (%s): expected a sequence (T positions × C channels) "
                   "from an earlier 'embed V C' or 'patch P C' item, as in '%s', found a flat "
                   "input of width %d",
                   index, name, usage, in);
}

/* widths are ints: T·C (and T·V) must fit */
static pt_status check_width(int index, const char *name, long long w)
{
    if (w > (1LL << 30))
        return pt_fail(PT_ERR_INVALID,
                       "model.layers item %d (%s): output width %lld per sample exceeds 2^30",
                       index, name, w);
    return PT_OK;
}

static pt_status parse_item(layer_desc *d, char *item, int index, int in, run_shape *sh)
{
    char *name = strtok(item, " \t");
    char *args[3] = {NULL, NULL, NULL};
    int nargs = 0;
    if (name)
        for (char *a = strtok(NULL, " \t"); a && nargs < 3; a = strtok(NULL, " \t")) args[nargs++] = a;
    int kind = name ? layer_kind_from_name(name) : -1;
    if (kind < 0)
        return pt_fail(PT_ERR_INVALID,
                       "model.layers item %d '%s': unknown layer kind (expected linear, "
                       "linear_nobias, relu, gelu, layernorm, dropout, embed, posembed, patch, "
                       "block, lmhead or meanpool)",
                       index, name ? name : "");
    memset(d, 0, sizeof *d);
    d->kind = (layer_kind)kind;
    d->in = d->out = in;
    d->seq = sh->seq;
    d->chan = sh->chan;
    int most = max_args(d->kind);
    if (nargs > most) {
        if (most == 0)
            return pt_fail(PT_ERR_INVALID, "model.layers item %d (%s) takes no argument, found '%s'",
                           index, name, args[0]);
        return pt_fail(PT_ERR_INVALID, "model.layers item %d (%s): unexpected '%s'", index, name,
                       args[most]);
    }
    char *arg = args[0];
    char *end = NULL;
    errno = 0;
    switch (d->kind) {
    case LAYER_LINEAR: {
        long w = arg ? strtol(arg, &end, 10) : 0;
        if (!arg || *end || errno || w < 1 || w > (1 << 20))
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (linear): expected an output width "
                           "1..1048576 as in 'linear 1024', found '%s'",
                           index, arg ? arg : "");
        d->out = (int)w;
        d->bias = 1;
        sh->seq = sh->chan = 0; /* a flat vector from here */
        break;
    }
    case LAYER_DROPOUT: {
        double p = arg ? strtod(arg, &end) : -1;
        if (!arg || *end || errno || !(p >= 0.0 && p < 1.0))
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (dropout): expected a probability in "
                           "[0, 1) as in 'dropout 0.2', found '%s'",
                           index, arg ? arg : "");
        d->p = (float)p;
        break;
    }
    case LAYER_LAYERNORM:
        /* each position over its channels in a sequence, else the whole input */
        d->width = sh->seq > 0 ? sh->chan : in;
        if (arg) {
            long w = strtol(arg, &end, 10);
            if (*end || errno || w < 1 || in % w)
                return pt_fail(PT_ERR_INVALID,
                               "model.layers item %d (layernorm): width '%s' must divide "
                               "the input width %d",
                               index, arg, in);
            d->width = (int)w;
        }
        break;
    case LAYER_EMBED: {
        int V = 0, C = 0;
        if (index != 0)
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (embed): an embedding must be the first item "
                           "(its input is the T token ids of a sample), found it after %d "
                           "other item(s)",
                           index, index);
        if (nargs != 2 || !parse_int(args[0], 1, 1 << 24, &V) || !parse_int(args[1], 1, 1 << 20, &C))
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (embed): expected a vocabulary size 1..16777216 "
                           "and a width 1..1048576 as in 'embed 256 64', found '%s %s'",
                           index, args[0] ? args[0] : "", args[1] ? args[1] : "");
        pt_status st = check_width(index, name, (long long)in * C);
        if (st) return st;
        d->vocab = V;
        d->seq = in;
        d->chan = C;
        d->out = in * C;
        sh->seq = in;
        sh->chan = C;
        break;
    }
    case LAYER_PATCH: {
        int P = 0, C = 0;
        if (nargs != 2 || !parse_int(args[0], 1, 1 << 15, &P) || !parse_int(args[1], 1, 1 << 20, &C))
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (patch): expected a patch side 1..32768 and a "
                           "width 1..1048576 as in 'patch 7 64', found '%s %s'",
                           index, args[0] ? args[0] : "", args[1] ? args[1] : "");
        int S = (int)lround(sqrt((double)in));
        if ((long long)S * S != in)
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (patch %d %d): expected a square single-channel "
                           "image of S·S pixels, found an input width %d that is not a square",
                           index, P, C, in);
        if (S % P)
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (patch %d %d): the patch side %d must divide "
                           "the image side S = %d (input %d = %d×%d)",
                           index, P, C, P, S, in, S, S);
        int T = (S / P) * (S / P);
        pt_status st = check_width(index, name, (long long)T * C);
        if (st) return st;
        d->patch = P;
        d->side = S;
        d->seq = T;
        d->chan = C;
        d->out = T * C;
        sh->seq = T;
        sh->chan = C;
        break;
    }
    case LAYER_POSEMBED:
        if (sh->seq <= 0) return need_sequence(index, name, "embed 256 64, posembed", in);
        break;
    case LAYER_BLOCK: {
        int H = 0;
        if (sh->seq <= 0) return need_sequence(index, name, "embed 256 64, block 4 causal", in);
        if (nargs < 1 || !parse_int(args[0], 1, 1 << 20, &H))
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (block): expected a head count >= 1 and an "
                           "optional 'causal' as in 'block 4 causal', found '%s'",
                           index, arg ? arg : "");
        if (sh->chan % H)
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (block %d): the %d heads must divide the width "
                           "C = %d",
                           index, H, H, sh->chan);
        if (nargs == 2 && strcmp(args[1], "causal") != 0)
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (block %d): expected 'causal' or nothing after "
                           "the head count, found '%s'",
                           index, H, args[1]);
        d->heads = H;
        d->causal = nargs == 2;
        break;
    }
    case LAYER_LMHEAD: {
        int V = 0;
        if (sh->seq <= 0) return need_sequence(index, name, "block 4 causal, lmhead 256", in);
        if (!arg || !parse_int(arg, 1, 1 << 24, &V))
            return pt_fail(PT_ERR_INVALID,
                           "model.layers item %d (lmhead): expected a vocabulary size "
                           "1..16777216 as in 'lmhead 256', found '%s'",
                           index, arg ? arg : "");
        pt_status st = check_width(index, name, (long long)sh->seq * V);
        if (st) return st;
        d->vocab = V;
        d->out = sh->seq * V;
        sh->chan = V;
        break;
    }
    case LAYER_MEANPOOL:
        if (sh->seq <= 0) return need_sequence(index, name, "block 4, meanpool, linear 10", in);
        d->out = sh->chan;
        sh->seq = sh->chan = 0;
        break;
    default: /* relu, gelu: element-wise, the shape stays */
        break;
    }
    return PT_OK;
}

pt_status model_parse(model *m, const char *spec, int input)
{
    memset(m, 0, sizeof *m);
    m->tied_head = m->tied_embed = -1;
    if (input < 1) return pt_fail(PT_ERR_INVALID, "model.input = %d: expected a width >= 1", input);
    size_t len = strlen(spec);
    char *copy = malloc(len + 1);
    if (!copy) return pt_fail(PT_ERR_NOMEM, "model.layers: out of memory");
    memcpy(copy, spec, len + 1);
    int cap = 1;
    for (const char *c = spec; *c; c++) cap += *c == ',';
    m->layers = calloc((size_t)cap, sizeof *m->layers);
    if (!m->layers) {
        free(copy);
        return pt_fail(PT_ERR_NOMEM, "model.layers: out of memory");
    }
    pt_status st = PT_OK;
    int width = input;
    run_shape sh = {0, 0};
    char *rest = copy;
    for (char *tok = strsep(&rest, ","); tok; tok = strsep(&rest, ",")) {
        char *item = trim(tok);
        if (!*item) {
            st = pt_fail(PT_ERR_INVALID, "model.layers item %d is empty (stray comma?)", m->n_layers);
            break;
        }
        int nobias = strncmp(item, "linear_nobias", 13) == 0;
        if (nobias) memmove(item + 6, item + 13, strlen(item + 13) + 1);
        st = parse_item(&m->layers[m->n_layers], item, m->n_layers, width, &sh);
        if (st) break;
        if (nobias) m->layers[m->n_layers].bias = 0;
        width = m->layers[m->n_layers].out;
        m->n_layers++;
    }
    free(copy);
    if (!st && m->n_layers == 0) st = pt_fail(PT_ERR_INVALID, "model.layers is empty");
    if (st) {
        model_free(m);
        return st;
    }
    int blocks = 0;
    for (int l = 0; l < m->n_layers; l++) blocks += m->layers[l].kind == LAYER_BLOCK;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].kind == LAYER_BLOCK) m->layers[l].n_blocks = blocks;
    const layer_desc *last = &m->layers[m->n_layers - 1];
    m->input = input;
    if (last->kind == LAYER_LMHEAD) {
        m->loss = LOSS_LM;
        m->classes = last->vocab;
        m->targets = last->seq;
    } else {
        m->loss = LOSS_SOFTMAX_XENT;
        m->classes = width;
        m->targets = 1;
    }
    return PT_OK;
}

/* the tie recorded in m, when it is one (a model built by hand, zeroed, has none) */
static int tie_valid(const model *m)
{
    int h = m->tied_head, e = m->tied_embed;
    return h >= 0 && h < m->n_layers && e >= 0 && e < m->n_layers &&
           m->layers[h].kind == LAYER_LMHEAD && m->layers[e].kind == LAYER_EMBED;
}

pt_status model_tie_embeddings(model *m)
{
    int e = -1, h = -1;
    for (int l = 0; l < m->n_layers; l++) {
        if (m->layers[l].kind == LAYER_EMBED && e < 0) e = l;
        if (m->layers[l].kind == LAYER_LMHEAD) h = l;
    }
    if (e < 0 || h < 0) {
        char he[64] = "none", hh[64] = "none";
        if (e >= 0) snprintf(he, sizeof he, "layer %d", e);
        if (h >= 0) snprintf(hh, sizeof hh, "layer %d", h);
        return pt_fail(PT_ERR_INVALID,
                       "model.tie_embeddings: tying needs an 'embed V C' layer and an 'lmhead V' "
                       "layer; found embed: %s, lmhead: %s",
                       he, hh);
    }
    const layer_desc *de = &m->layers[e], *dh = &m->layers[h];
    if (de->vocab != dh->vocab || de->chan != dh->chan)
        return pt_fail(PT_ERR_INVALID,
                       "model.tie_embeddings: layers.%d.w (lmhead) is [%d, %d] but layers.%d.w "
                       "(embed) is [%d, %d]: tied weights need the same [V, C]",
                       h, dh->vocab, dh->chan, e, de->vocab, de->chan);
    m->tied_head = h;
    m->tied_embed = e;
    return PT_OK;
}

int model_tied_source(const model *m, int layer, int param)
{
    /* the head's only tensor is "w"; so is the embed's */
    if (!tie_valid(m) || layer != m->tied_head || param != 0) return -1;
    return model_tensor_count(m, 0, m->tied_embed);
}

void model_free(model *m)
{
    free(m->layers);
    memset(m, 0, sizeof *m);
}

int model_tensor_count(const model *m, int first, int last)
{
    layer_param ps[LAYER_MAX_PARAMS];
    int n = 0;
    for (int l = first; l < last; l++) n += layer_get(m->layers[l].kind)->params(&m->layers[l], ps);
    return n;
}

void model_tensors(const model *m, model_tensor *out)
{
    layer_param ps[LAYER_MAX_PARAMS];
    for (int l = 0, k = 0; l < m->n_layers; l++) {
        int n = layer_get(m->layers[l].kind)->params(&m->layers[l], ps);
        for (int j = 0; j < n; j++, k++) {
            model_param_name(out[k].name, sizeof out[k].name, l, ps[j].name);
            out[k].layer = l;
            out[k].param = ps[j];
            out[k].numel = (size_t)ps[j].shape[0] * (ps[j].ndim == 2 ? (size_t)ps[j].shape[1] : 1);
            out[k].tied_to = model_tied_source(m, l, j);
        }
    }
}

void model_param_name(char *buf, size_t len, int layer, const char *local)
{
    snprintf(buf, len, "layers.%d.%.*s", layer, LAYER_NAME_MAX - 1, local);
}

void model_init_layer(const model *m, int layer, uint64_t seed, float *params)
{
    const layer_desc *d = &m->layers[layer];
    layer_param ps[LAYER_MAX_PARAMS];
    int n = layer_get(d->kind)->params(d, ps);
    for (int i = 0; i < n; i++) {
        size_t numel = (size_t)ps[i].shape[0] * (ps[i].ndim == 2 ? (size_t)ps[i].shape[1] : 1);
        rng_key key = {seed, RNG_STREAM_INIT, (uint32_t)layer, rng_name_hash(ps[i].name), 0};
        layer_param src = ps[i];
        if (model_tied_source(m, layer, i) >= 0) {
            /* a tied copy: the values of the embed's "w", drawn from its key */
            layer_param es[LAYER_MAX_PARAMS];
            layer_get(LAYER_EMBED)->params(&m->layers[m->tied_embed], es);
            src = es[0];
            key.a = (uint32_t)m->tied_embed;
            key.b = rng_name_hash(src.name);
        }
        switch (src.init) {
        case INIT_ZERO: memset(params, 0, numel * sizeof *params); break;
        case INIT_ONE:
            for (size_t j = 0; j < numel; j++) params[j] = 1.0f;
            break;
        case INIT_UNIFORM: rng_fill_uniform(params, numel, key, -src.scale, src.scale); break;
        case INIT_NORMAL: rng_fill_normal(params, numel, key, src.scale); break;
        }
        params += numel;
    }
}
