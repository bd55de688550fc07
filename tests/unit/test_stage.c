/* The layer registry, the model description and the stage: parameter
 * initialisation and the numbers of forward and backward do not depend on
 * how the layers are split into stages (design contract 2). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "layers.h"
#include "rng.h"
#include "stage.h"

#define SPEC "linear 24, relu, dropout 0.25, linear 16, layernorm, gelu, linear_nobias 12, " \
             "relu, linear 5"
#define ROWS 6

static model m;

static void setup(void) { cr_assert_eq(model_parse(&m, SPEC, 10), PT_OK, "%s", pt_last_error()); }
static void teardown(void) { model_free(&m); }

TestSuite(stage, .init = setup, .fini = teardown);

Test(stage, model_parse_chains_widths)
{
    cr_assert_eq(m.n_layers, 9);
    cr_assert_eq(m.input, 10);
    cr_assert_eq(m.classes, 5);
    cr_assert_eq(m.layers[0].kind, LAYER_LINEAR);
    cr_assert_eq(m.layers[0].out, 24);
    cr_assert_eq(m.layers[2].kind, LAYER_DROPOUT);
    cr_assert_float_eq(m.layers[2].p, 0.25f, 1e-7);
    cr_assert_eq(m.layers[4].width, 16);
    cr_assert_eq(m.layers[6].bias, 0);
    cr_assert_eq(m.layers[8].in, 12);
    /* 10·24+24 + 24·16+16 + 16+16 + 16·12 + 12·5+5 */
    size_t total = 0;
    for (int l = 0; l < m.n_layers; l++) total += layer_param_floats(&m.layers[l]);
    cr_assert_eq(total, (size_t)(264 + 400 + 32 + 192 + 65));
}

Test(stage, model_parse_rejects_bad_items)
{
    model bad;
    const char *cases[][2] = {
        {"linear 8, conv 3", "conv"},       {"linear", "output width"},
        {"linear 0", "output width"},       {"dropout 1.5", "probability"},
        {"relu 3", "takes no argument"},    {"linear 8,, relu", "empty"},
        {"layernorm 3", "divide"},          {"linear 8 9", "unexpected"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(model_parse(&bad, cases[i][0], 10), PT_ERR_INVALID, "'%s' accepted", cases[i][0]);
        cr_assert(strstr(pt_last_error(), cases[i][1]), "'%s': message '%s' lacks '%s'",
                  cases[i][0], pt_last_error(), cases[i][1]);
        cr_assert_null(bad.layers);
    }
}

/* Builds the stages for cut points cuts[0..n] and checks every tensor equals
 * the one of the single whole stage, bit for bit. */
Test(stage, init_independent_of_partition)
{
    stage whole;
    cr_assert_eq(stage_init(&whole, &m, 0, m.n_layers, ROWS, 1, 42), PT_OK);
    int cuts[] = {0, 1, 4, 7, 9};
    int checked = 0;
    for (int p = 0; p < 4; p++) {
        stage s;
        cr_assert_eq(stage_init(&s, &m, cuts[p], cuts[p + 1], ROWS, 1, 42), PT_OK);
        for (int k = 0; k < s.n_tensors; k++) {
            int w = stage_find_tensor(&whole, s.tensors[k].name);
            cr_assert_geq(w, 0, "%s missing from the whole model", s.tensors[k].name);
            cr_assert_eq(whole.tensors[w].numel, s.tensors[k].numel);
            cr_assert_eq(memcmp(whole.params + whole.tensors[w].offset, s.params + s.tensors[k].offset,
                                s.tensors[k].numel * sizeof(float)), 0,
                         "%s differs between partitions", s.tensors[k].name);
            checked++;
        }
        stage_free(&s);
    }
    cr_assert_eq(checked, whole.n_tensors);
    /* and another seed gives other values */
    stage other;
    cr_assert_eq(stage_init(&other, &m, 0, m.n_layers, ROWS, 1, 43), PT_OK);
    cr_assert_neq(memcmp(whole.params, other.params, 100 * sizeof(float)), 0);
    stage_free(&other);
    stage_free(&whole);
}

static void fill_input(float *x, int n, uint32_t salt)
{
    rng_key k = {7, RNG_STREAM_DATA, salt, 0, 0};
    rng_fill_normal(x, (size_t)n, k, 1.0f);
}

/* The loss of one micro-batch for labels y through one whole stage. */
static double whole_loss(stage *s, const int32_t *y, float *logits, float *probs)
{
    float loss;
    stage_forward(s, 0, logits, 5, 3, 1, 1);
    cr_assert_eq(softmax_xent_forward(probs, &loss, logits, y, ROWS, 5), -1);
    return loss;
}

Test(stage, split_forward_backward_bitwise_equal_to_whole)
{
    int32_t y[ROWS] = {0, 1, 2, 3, 4, 1};
    float logits[ROWS * 5], probs[ROWS * 5], dlogits[ROWS * 5];
    stage whole;
    cr_assert_eq(stage_init(&whole, &m, 0, m.n_layers, ROWS, 2, 42), PT_OK);
    fill_input(stage_input(&whole, 1), ROWS * 10, 1);
    stage_forward(&whole, 1, logits, 5, 3, 1, 1);
    float loss;
    cr_assert_eq(softmax_xent_forward(probs, &loss, logits, y, ROWS, 5), -1);
    softmax_xent_backward(dlogits, probs, y, ROWS, 5, 1.0f / ROWS);
    stage_backward(&whole, 1, dlogits, NULL, 5, 3, 1);

    /* the same through three stages, cut inside the dropout/layernorm run */
    int cuts[] = {0, 3, 5, 9};
    stage parts[3];
    float act[2][ROWS * 24], grad[2][ROWS * 24], plogits[ROWS * 5];
    for (int p = 0; p < 3; p++) cr_assert_eq(stage_init(&parts[p], &m, cuts[p], cuts[p + 1], ROWS, 1, 42), PT_OK);
    fill_input(stage_input(&parts[0], 0), ROWS * 10, 1);
    stage_forward(&parts[0], 0, act[0], 5, 3, 1, 1);
    memcpy(stage_input(&parts[1], 0), act[0], sizeof(float) * ROWS * parts[1].in_dim);
    stage_forward(&parts[1], 0, act[1], 5, 3, 1, 1);
    memcpy(stage_input(&parts[2], 0), act[1], sizeof(float) * ROWS * parts[2].in_dim);
    stage_forward(&parts[2], 0, plogits, 5, 3, 1, 1);
    cr_assert_eq(memcmp(plogits, logits, sizeof logits), 0, "logits differ between partitions");
    stage_backward(&parts[2], 0, dlogits, grad[1], 5, 3, 1);
    stage_backward(&parts[1], 0, grad[1], grad[0], 5, 3, 1);
    stage_backward(&parts[0], 0, grad[0], NULL, 5, 3, 1);
    for (int p = 0; p < 3; p++) {
        for (int k = 0; k < parts[p].n_tensors; k++) {
            const stage_tensor *t = &parts[p].tensors[k];
            int w = stage_find_tensor(&whole, t->name);
            cr_assert_eq(memcmp(whole.grads + whole.tensors[w].offset, parts[p].grads + t->offset,
                                t->numel * sizeof(float)), 0, "gradient of %s differs", t->name);
        }
        stage_free(&parts[p]);
    }
    stage_free(&whole);
}

/* Whole-model gradient against central differences of the loss (double
 * check that the registry wires the kernels together right). Dropout masks
 * are fixed by (seed, step, micro-batch, layer), so the loss is a smooth
 * function of the parameters away from ReLU kinks. Bound: |a − n| ≤
 * 5e-2·max(|n|, 2e-2) for h = 1e-3 in float. */
Test(stage, model_gradient_matches_finite_differences)
{
    int32_t y[ROWS] = {4, 3, 2, 1, 0, 2};
    float logits[ROWS * 5], probs[ROWS * 5], dlogits[ROWS * 5];
    stage s;
    cr_assert_eq(stage_init(&s, &m, 0, m.n_layers, ROWS, 1, 9), PT_OK);
    float input[ROWS * 10];
    fill_input(input, ROWS * 10, 2);
    memcpy(stage_input(&s, 0), input, sizeof input);
    whole_loss(&s, y, logits, probs);
    softmax_xent_backward(dlogits, probs, y, ROWS, 5, 1.0f / ROWS);
    stage_backward(&s, 0, dlogits, NULL, 5, 3, 1);
    const float h = 1e-3f;
    int checked = 0;
    for (int k = 0; k < s.n_tensors; k++) {
        const stage_tensor *t = &s.tensors[k];
        for (size_t j = 0; j < t->numel; j += 1 + t->numel / 7) {
            float *p = s.params + t->offset + j, keep = *p;
            *p = keep + h;
            memcpy(stage_input(&s, 0), input, sizeof input);
            double lp = whole_loss(&s, y, logits, probs);
            *p = keep - h;
            memcpy(stage_input(&s, 0), input, sizeof input);
            double lm = whole_loss(&s, y, logits, probs);
            *p = keep;
            double num = (lp - lm) / (2 * h), ana = s.grads[t->offset + j];
            cr_assert_leq(fabs(ana - num), 5e-2 * fmax(fabs(num), 2e-2), "%s[%zu]: analytic %g, numeric %g",
                          t->name, j, ana, num);
            checked++;
        }
    }
    cr_assert_gt(checked, 40);
    stage_free(&s);
}

Test(stage, optimizer_step_skips_decay_on_biases)
{
    stage s;
    cr_assert_eq(stage_init(&s, &m, 0, 2, ROWS, 1, 1), PT_OK);
    for (size_t j = 0; j < s.n_params; j++) s.params[j] = 1.0f;
    optim_config cfg = optim_defaults(OPTIM_SGD);
    cfg.momentum = 0.0f;
    cfg.weight_decay = 0.5f;
    stage_optim_step(&s, &cfg, 0.1f, 1); /* zero gradients: only decay moves */
    int w = stage_find_tensor(&s, "layers.0.w"), b = stage_find_tensor(&s, "layers.0.b");
    cr_assert_float_eq(s.params[s.tensors[w].offset], 0.95f, 1e-6, "w decays: 1 − 0.1·0.5");
    cr_assert_float_eq(s.params[s.tensors[b].offset], 1.0f, 0.0, "bias is not decayed");
    stage_free(&s);
}
