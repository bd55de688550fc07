#include "layers.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "rng.h"

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

/* ---- dropout ---------------------------------------------------------- */

static dropout_key dkey(const layer_ctx *ctx)
{
    dropout_key k = {ctx->seed, ctx->step, ctx->micro_batch, ctx->layer};
    return k;
}

static void dropout_fwd(const layer_desc *d, const float *p, float *out, const float *in,
                        float *saved, int B, const layer_ctx *ctx)
{
    (void)p;
    (void)saved;
    size_t n = (size_t)B * d->in;
    if (!ctx->training || d->p == 0.0f)
        memcpy(out, in, n * sizeof *out);
    else
        dropout_forward(out, in, n, d->p, dkey(ctx));
}

static void dropout_bwd(const layer_desc *d, const float *p, float *g, float *din,
                        const float *dout, const float *in, const float *saved, int B,
                        const layer_ctx *ctx)
{
    (void)p;
    (void)g;
    (void)in;
    (void)saved;
    if (!din) return;
    size_t n = (size_t)B * d->in;
    if (!ctx->training || d->p == 0.0f)
        memcpy(din, dout, n * sizeof *din);
    else
        dropout_backward(din, dout, n, d->p, dkey(ctx));
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

/* ---- the registry ------------------------------------------------------ */

static const layer_ops registry[LAYER_KIND_COUNT] = {
    [LAYER_LINEAR] = {"linear", linear_params, no_saved, linear_fwd, linear_bwd, linear_flops},
    [LAYER_RELU] = {"relu", no_params, no_saved, relu_fwd, relu_bwd, elementwise_flops},
    [LAYER_GELU] = {"gelu", no_params, no_saved, gelu_fwd, gelu_bwd, elementwise_flops},
    [LAYER_LAYERNORM] = {"layernorm", layernorm_params, layernorm_saved, layernorm_fwd,
                         layernorm_bwd, layernorm_flops},
    [LAYER_DROPOUT] = {"dropout", no_params, no_saved, dropout_fwd, dropout_bwd,
                       elementwise_flops},
};

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

static pt_status parse_item(layer_desc *d, char *item, int index, int in)
{
    char *name = strtok(item, " \t");
    char *arg = strtok(NULL, " \t");
    char *extra = arg ? strtok(NULL, " \t") : NULL;
    int kind = name ? layer_kind_from_name(name) : -1;
    if (kind < 0)
        return pt_fail(PT_ERR_INVALID,
                       "model.layers item %d '%s': unknown layer kind (expected linear, "
                       "linear_nobias, relu, gelu, layernorm or dropout)",
                       index, name ? name : "");
    memset(d, 0, sizeof *d);
    d->kind = (layer_kind)kind;
    d->in = d->out = in;
    if (extra)
        return pt_fail(PT_ERR_INVALID, "model.layers item %d (%s): unexpected '%s'", index,
                       name, extra);
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
        d->width = in;
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
    default:
        if (arg)
            return pt_fail(PT_ERR_INVALID, "model.layers item %d (%s) takes no argument, found '%s'",
                           index, name, arg);
    }
    return PT_OK;
}

pt_status model_parse(model *m, const char *spec, int input)
{
    memset(m, 0, sizeof *m);
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
    char *rest = copy;
    for (char *tok = strsep(&rest, ","); tok; tok = strsep(&rest, ",")) {
        char *item = trim(tok);
        if (!*item) {
            st = pt_fail(PT_ERR_INVALID, "model.layers item %d is empty (stray comma?)", m->n_layers);
            break;
        }
        int nobias = strncmp(item, "linear_nobias", 13) == 0;
        if (nobias) memmove(item + 6, item + 13, strlen(item + 13) + 1);
        st = parse_item(&m->layers[m->n_layers], item, m->n_layers, width);
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
    m->input = input;
    m->classes = width;
    m->loss = LOSS_SOFTMAX_XENT;
    return PT_OK;
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
        switch (ps[i].init) {
        case INIT_ZERO: memset(params, 0, numel * sizeof *params); break;
        case INIT_ONE:
            for (size_t j = 0; j < numel; j++) params[j] = 1.0f;
            break;
        case INIT_UNIFORM: rng_fill_uniform(params, numel, key, -ps[i].scale, ps[i].scale); break;
        case INIT_NORMAL: rng_fill_normal(params, numel, key, ps[i].scale); break;
        }
        params += numel;
    }
}
