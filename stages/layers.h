/* layers.h — the layer registry and the model description.
 *
 * A layer kind knows its parameter tensors (names, shapes, initialisation,
 * whether weight decay applies), how many floats per sample its forward saves
 * for backward besides its input, its forward and backward, and its FLOPs.
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
    LAYER_KIND_COUNT
} layer_kind;

typedef struct {
    layer_kind kind;
    int in;    /* features per sample entering the layer */
    int out;   /* features per sample leaving it */
    int bias;  /* linear: 1 = with bias */
    float p;   /* dropout probability */
    int width; /* layernorm: normalised width (in = out = k·width) */
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
} layer_ctx;

typedef struct {
    const char *kind_name; /* as written in configs: "linear", "relu", ... */
    /* Fills out[] and returns the number of parameter tensors. */
    int (*params)(const layer_desc *d, layer_param out[LAYER_MAX_PARAMS]);
    /* Floats per sample that forward saves (besides its input) for backward. */
    size_t (*saved)(const layer_desc *d);
    /* out[B,d->out] from in[B,d->in]; params point at the layer's first
     * tensor, tensors laid out in the order params() lists them. */
    void (*forward)(const layer_desc *d, const float *params, float *out, const float *in,
                    float *saved, int B, const layer_ctx *ctx);
    /* din[B,d->in] (overwritten, may be NULL) and grads (accumulated) from
     * dout[B,d->out], the forward's input `in` and `saved`. */
    void (*backward)(const layer_desc *d, const float *params, float *grads, float *din,
                     const float *dout, const float *in, const float *saved, int B,
                     const layer_ctx *ctx);
    /* Forward FLOPs per sample (backward is counted as twice forward). */
    double (*flops)(const layer_desc *d);
} layer_ops;

const layer_ops *layer_get(layer_kind kind);
/* Looks a kind up by its config name; -1 when unknown. */
int layer_kind_from_name(const char *name);

/* Parameter floats of one layer. */
size_t layer_param_floats(const layer_desc *d);

typedef enum { LOSS_SOFTMAX_XENT = 0 } loss_kind;

typedef struct {
    int n_layers;
    layer_desc *layers;
    int input;    /* features per input sample */
    int classes;  /* outputs of the last layer, classes of the loss */
    loss_kind loss;
} model;

/* Builds a model from a comma-separated spec such as
 * "linear 1024, relu, dropout 0.2, linear 10" and an input width. Widths
 * chain; the last layer's width is the class count. Errors name the item. */
pt_status model_parse(model *m, const char *spec, int input);
void model_free(model *m);

/* Initialises layer `layer`'s parameters (laid out as params() lists them)
 * from the counter-based RNG keyed on (seed, layer, parameter name). */
void model_init_layer(const model *m, int layer, uint64_t seed, float *params);

/* One parameter tensor of the model, in global order. */
typedef struct {
    char name[LAYER_NAME_MAX + 24]; /* "layers.7.w" */
    int layer;
    layer_param param;
    size_t numel;
} model_tensor;

/* Fills out[] (model_tensor_count(m, 0, n_layers) entries) with every
 * parameter tensor in global order. */
void model_tensors(const model *m, model_tensor *out);

/* Number of parameter tensors of layers [first, last): the global ordinal of
 * layer `last`'s first tensor when first = 0. */
int model_tensor_count(const model *m, int first, int last);

/* Formats the global name of parameter `local` of `layer`: "layers.7.w". */
void model_param_name(char *buf, size_t len, int layer, const char *local);

#endif
