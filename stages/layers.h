/* layers.h — the layer registry and the model description.
 *
 * A layer kind knows its parameter tensors (names, shapes, initialisation,
 * whether weight decay applies), how many floats per sample its forward saves
 * for backward besides its input, its forward and backward, the two halves
 * of its backward for zero-bubble schedules (the B/W split: backward_input
 * and backward_weight, with what the first keeps for the second), and its
 * FLOPs for each of forward, backward_input and backward_weight.
 * A model is an ordered list of layers addressed by global index; parameter
 * names are global ("layers.7.w"), so nothing depends on the partition. */
#ifndef PT_LAYERS_H
#define PT_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "pt_status.h"

typedef enum {
    LAYER_LINEAR = 0,
    LAYER_RELU,
    LAYER_GELU,
    LAYER_LAYERNORM,
    LAYER_DROPOUT,
    LAYER_EMBED,    /* "embed V C": token ids [T] -> [T, C] */
    LAYER_POSEMBED, /* "posembed": [T, C] + learned w[T, C] */
    LAYER_PATCH,    /* "patch P C": image [S, S] -> [(S/P)², C] */
    LAYER_BLOCK,    /* "block H [causal]": pre-LayerNorm Transformer block on [T, C] */
    LAYER_LMHEAD,   /* "lmhead V": [T, C] -> [T, V], no bias */
    LAYER_MEANPOOL, /* "meanpool": [T, C] -> [C] */
    LAYER_KIND_COUNT
} layer_kind;

typedef struct {
    layer_kind kind;
    int in;    /* features per sample entering the layer */
    int out;   /* features per sample leaving it */
    int bias;  /* linear: 1 = with bias */
    float p;   /* dropout probability */
    int width; /* layernorm: normalised width (in = out = k·width) */
    /* sequence layers: a sample is seq positions of chan channels, the
     * [T, C] of the layer's input (embed, patch: of its output); both 0
     * where the input is a flat vector */
    int seq;      /* T */
    int chan;     /* C */
    int heads;    /* block: H, dividing chan */
    int vocab;    /* embed, lmhead: V */
    int causal;   /* block: 1 = key j > query i is masked */
    int patch;    /* patch: P */
    int side;     /* patch: S, the input image is S × S */
    int n_blocks; /* block: blocks in the model (scales the output projections' init) */
} layer_desc;

typedef enum { INIT_ZERO = 0, INIT_ONE, INIT_UNIFORM, INIT_NORMAL } layer_init;

#define LAYER_MAX_PARAMS 16
#define LAYER_NAME_MAX 48

typedef struct {
    char name[LAYER_NAME_MAX]; /* local name: "w", "b", "attn.w_qkv" */
    int ndim;
    int shape[2];
    layer_init init;
    float scale; /* uniform: ±scale; normal: std */
    int decay;   /* weight decay, L1 and L2 apply */
} layer_param;

/* What forward/backward need to know beyond tensors. */
typedef struct {
    uint64_t seed;
    uint32_t step;        /* 0-based optimizer step */
    uint32_t micro_batch; /* index within the step */
    uint32_t layer;       /* global layer index */
    int training;         /* 0: dropout is the identity */
    float *scratch;       /* B × scratch(d) floats of workspace, contents undefined */
} layer_ctx;

typedef struct {
    const char *kind_name; /* as written in configs: "linear", "relu", ... */
    /* Fills out[] and returns the number of parameter tensors. */
    int (*params)(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS]);
    /* Floats per sample that forward saves (besides its input) for backward. */
    size_t (*saved)(const layer_desc *d);
    /* Floats per sample of temporary workspace forward or backward needs. */
    size_t (*scratch)(const layer_desc *d);
    /* out[B,d->out] from in[B,d->in]; params point at the layer's first
     * tensor, tensors laid out in the order params() lists them. */
    void (*forward)(const layer_desc *d, const float *params, float *out, const float *in,
                    float *saved, int B, const layer_ctx *ctx);
    /* din[B,d->in] (overwritten, may be NULL) and grads (accumulated) from
     * dout[B,d->out], the forward's input `in` and `saved`. */
    void (*backward)(const layer_desc *d, const float *params, float *grads, float *din,
                     const float *dout, const float *in, const float *saved, int B,
                     const layer_ctx *ctx);
    /* Forward FLOPs per sample. */
    double (*flops)(const layer_desc *d);

    /* ---- the B/W split (Qi et al., "Zero Bubble Pipeline Parallelism",
     * ICLR 2024): backward as two calls per micro-batch, B (backward_input,
     * the input gradient the previous stage waits for) and W
     * (backward_weight, the parameter gradients, which a schedule may delay
     * to fill pipeline bubbles, after B of later micro-batches). B then W
     * gives din and grads bit for bit equal to backward's: each part runs
     * the same kernels on the same values in the same order. */

    /* Floats per sample that backward_input writes to `wsave` for the
     * backward_weight of the same micro-batch (0 for most kinds). It belongs
     * to the micro-batch, like `saved`: a stage running W late holds one per
     * micro-batch in flight. */
    size_t (*wsaved)(const layer_desc *d);
    /* B: din[B,d->in] (overwritten; may be NULL) from dout[B,d->out], `in`
     * and `saved` of forward; writes wsave[B·wsaved(d)] (even when din is
     * NULL) and touches no parameter gradient. */
    void (*backward_input)(const layer_desc *d, const float *params, float *din,
                           const float *dout, const float *in, const float *saved,
                           float *wsave, int B, const layer_ctx *ctx);
    /* W: grads (accumulated, +=) from the same dout, in and saved and the
     * wsave its backward_input wrote; writes no input gradient. Scratch
     * contents left by other calls are not relied on. */
    void (*backward_weight)(const layer_desc *d, const float *params, float *grads,
                            const float *dout, const float *in, const float *saved,
                            const float *wsave, int B, const layer_ctx *ctx);
    /* FLOPs per sample of backward_input and of backward_weight (same
     * conventions as flops: 2·m·n·k per matrix product, elements counted
     * as stated at each kind). Their sum is the cost of backward. */
    double (*flops_backward_input)(const layer_desc *d);
    double (*flops_backward_weight)(const layer_desc *d);
} layer_ops;

const layer_ops *layer_get(layer_kind kind);
/* Looks a kind up by its config name; -1 when unknown. */
int layer_kind_from_name(const char *name);

/* Parameter floats of one layer. */
size_t layer_param_floats(const layer_desc *d);

/* LOSS_SOFTMAX_XENT: one label per sample over the last layer's outputs.
 * LOSS_LM (the last layer is "lmhead V"): one label per position, softmax
 * cross-entropy over V for each of the rows·T rows of the logits [T, V]. */
typedef enum { LOSS_SOFTMAX_XENT = 0, LOSS_LM } loss_kind;

typedef struct {
    int n_layers;
    layer_desc *layers;
    int input;    /* features per input sample */
    int classes;  /* classes of the loss: last layer's outputs, or V for LOSS_LM */
    int targets;  /* labels per sample: 1, or T for LOSS_LM */
    loss_kind loss;
    int tied_head;  /* index of the "lmhead" whose w is a copy of the embed's, -1: none */
    int tied_embed; /* index of the "embed" holding the source w, -1: none */
} model;

/* Builds a model from a comma-separated spec such as
 * "linear 1024, relu, dropout 0.2, linear 10" and an input width. Widths
 * chain; the last layer's width is the class count. Errors name the item.
 *
 * Sequence items chain a running shape (T, C) as well:
 *   embed V C       first layer only; input = T token ids -> (T, C)
 *   patch P C       input S·S pixels, P | S -> (T = (S/P)², C)
 *   posembed, block H [causal], layernorm, relu, gelu, dropout   keep (T, C)
 *   layernorm       without a width normalises each position over C (over
 *                   the whole input when there is no (T, C))
 *   lmhead V        (T, C) -> (T, V); as the last layer it makes the loss
 *                   LOSS_LM with targets = T and classes = V
 *   meanpool        (T, C) -> C, a flat vector
 *   linear N        flat: in -> N, whatever the shape
 * No tie is made here (tied_head = tied_embed = -1). */
pt_status model_parse(model *m, const char *spec, int input);

/* Ties the last "lmhead" to the first "embed": the head's "w" [V, C] is a
 * copy of the embed's "w" [V, C]. It is initialised from the embed's key (the
 * same values bit for bit), model_tensors and stage_init flag it with
 * tied_to; whoever trains keeps the two equal by summing their gradients
 * before the update. Errors name both layers when either is missing or the
 * shapes differ. Call before stage_init. */
pt_status model_tie_embeddings(model *m);
void model_free(model *m);

/* Initialises layer `layer`'s parameters (laid out as params() lists them)
 * from the counter-based RNG keyed on (seed, layer, parameter name); a tied
 * head's "w" uses the key of the embed's "w" (seed, tied_embed, "w"). */
void model_init_layer(const model *m, int layer, uint64_t seed, float *params);

/* One parameter tensor of the model, in global order. */
typedef struct {
    char name[LAYER_NAME_MAX + 24]; /* "layers.7.w" */
    int layer;
    layer_param param;
    size_t numel;
    int tied_to; /* global ordinal of the tensor this one is a tied copy of, -1: none */
} model_tensor;

/* Fills out[] (model_tensor_count(m, 0, n_layers) entries) with every
 * parameter tensor in global order. */
void model_tensors(const model *m, model_tensor *out);

/* Number of parameter tensors of layers [first, last): the global ordinal of
 * layer `last`'s first tensor when first = 0. */
int model_tensor_count(const model *m, int first, int last);

/* Global ordinal of the tensor that parameter `param` (its index in
 * params()) of `layer` is a tied copy of, or -1 when it is no copy. */
int model_tied_source(const model *m, int layer, int param);

/* Formats the global name of parameter `local` of `layer`: "layers.7.w". */
void model_param_name(char *buf, size_t len, int layer, const char *local);

#endif
