/* test_optim.c — optimizers and learning-rate schedules against values
 * worked out by hand.
 *
 * Tolerance: |found − expected| ≤ 1e-6·max(1, |expected|). Every update is a
 * handful of float operations on O(1) values, each rounding by ≤ 6e-8
 * relative, so float32 stays an order of magnitude inside that bound; the
 * hand values below are exact decimals (or computed in double). The copies
 * of the update per instruction set are compared bit for bit (optim_isa). */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "optim.h"
#include "pt_status.h"

#define TOL 1e-6

static int close_to(double found, double expected)
{
    double scale = fabs(expected) > 1.0 ? fabs(expected) : 1.0;
    return fabs(found - expected) <= TOL * scale;
}

static void expect_vec(const float *p, const double *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_expect(close_to(p[i], want[i]), "%s: p[%zu] = %.9g, expected %.9g (tol %g)", what, i,
                  (double)p[i], want[i], TOL);
}

static optim_config sgd(float momentum, int nesterov)
{
    optim_config c = optim_defaults(OPTIM_SGD);
    c.momentum = momentum;
    c.nesterov = nesterov;
    return c;
}

/* ---- SGD ---------------------------------------------------------------- */

Test(optim_sgd, plain_without_momentum_ignores_m)
{
    /* μ = 0, lr 0.1, p0 = [0.5, −1], g = [1, −2] each step:
     * step 1: p = [0.5 − 0.1·1, −1 − 0.1·(−2)] = [0.4, −0.8]
     * step 2: p = [0.3, −0.6]; m is never read, so NULL is fine. */
    optim_config c = sgd(0.0f, 0);
    float p[2] = {0.5f, -1.0f};
    const float g[2] = {1.0f, -2.0f};
    optim_update(&c, 0.1f, 1, p, g, NULL, NULL, 2, 1);
    expect_vec(p, (const double[]){0.4, -0.8}, 2, "sgd step 1");
    optim_update(&c, 0.1f, 2, p, g, NULL, NULL, 2, 1);
    expect_vec(p, (const double[]){0.3, -0.6}, 2, "sgd step 2");
}

Test(optim_sgd, momentum_three_steps)
{
    /* μ = 0.9, lr 0.1, p0 = [0.5, −1], g = [1, −2] each step, m0 = 0:
     * step 1: m = [1, −2];                  p = [0.5 − 0.1,  −1 + 0.2]   = [0.4, −0.8]
     * step 2: m = 0.9·[1,−2] + [1,−2]
     *           = [1.9, −3.8];              p = [0.4 − 0.19, −0.8 + 0.38] = [0.21, −0.42]
     * step 3: m = 0.9·[1.9,−3.8] + [1,−2]
     *           = [2.71, −5.42];            p = [0.21 − 0.271, −0.42 + 0.542] = [−0.061, 0.122] */
    optim_config c = sgd(0.9f, 0);
    float p[2] = {0.5f, -1.0f}, m[2] = {0, 0};
    const float g[2] = {1.0f, -2.0f};
    optim_update(&c, 0.1f, 1, p, g, m, NULL, 2, 1);
    expect_vec(p, (const double[]){0.4, -0.8}, 2, "momentum step 1");
    expect_vec(m, (const double[]){1.0, -2.0}, 2, "momentum m step 1");
    optim_update(&c, 0.1f, 2, p, g, m, NULL, 2, 1);
    expect_vec(p, (const double[]){0.21, -0.42}, 2, "momentum step 2");
    expect_vec(m, (const double[]){1.9, -3.8}, 2, "momentum m step 2");
    optim_update(&c, 0.1f, 3, p, g, m, NULL, 2, 1);
    expect_vec(p, (const double[]){-0.061, 0.122}, 2, "momentum step 3");
    expect_vec(m, (const double[]){2.71, -5.42}, 2, "momentum m step 3");
}

Test(optim_sgd, nesterov_two_steps)
{
    /* μ = 0.9 Nesterov, lr 0.1, p0 = [0.5, −1], g = [1, −2]:
     * step 1: m = [1, −2];      d = g + 0.9·m = [1.9, −3.8]
     *         p = [0.5 − 0.19, −1 + 0.38] = [0.31, −0.62]
     * step 2: m = [1.9, −3.8];  d = [1 + 1.71, −2 − 3.42] = [2.71, −5.42]
     *         p = [0.31 − 0.271, −0.62 + 0.542] = [0.039, −0.078] */
    optim_config c = sgd(0.9f, 1);
    float p[2] = {0.5f, -1.0f}, m[2] = {0, 0};
    const float g[2] = {1.0f, -2.0f};
    optim_update(&c, 0.1f, 1, p, g, m, NULL, 2, 1);
    expect_vec(p, (const double[]){0.31, -0.62}, 2, "nesterov step 1");
    optim_update(&c, 0.1f, 2, p, g, m, NULL, 2, 1);
    expect_vec(p, (const double[]){0.039, -0.078}, 2, "nesterov step 2");
    expect_vec(m, (const double[]){1.9, -3.8}, 2, "nesterov m step 2");
}

Test(optim_sgd, decoupled_weight_decay)
{
    /* μ = 0.9, wd 0.01, lr 0.1, p0 = [0.5, −1], g = [1, −2]:
     * step 1: m = [1, −2];  d + wd·p = [1 + 0.005, −2 − 0.01] = [1.005, −2.01]
     *         p = [0.5 − 0.1005, −1 + 0.201] = [0.3995, −0.799]
     * step 2: m = [1.9, −3.8];  d + wd·p = [1.9 + 0.003995, −3.8 − 0.00799]
     *                                    = [1.903995, −3.80799]
     *         p = [0.3995 − 0.1903995, −0.799 + 0.380799] = [0.2091005, −0.418201]
     * Weight decay never enters m: m stays [1.9, −3.8]. */
    optim_config c = sgd(0.9f, 0);
    c.weight_decay = 0.01f;
    float p[2] = {0.5f, -1.0f}, m[2] = {0, 0};
    const float g[2] = {1.0f, -2.0f};
    optim_update(&c, 0.1f, 1, p, g, m, NULL, 2, 1);
    expect_vec(p, (const double[]){0.3995, -0.799}, 2, "sgd wd step 1");
    optim_update(&c, 0.1f, 2, p, g, m, NULL, 2, 1);
    expect_vec(p, (const double[]){0.2091005, -0.418201}, 2, "sgd wd step 2");
    expect_vec(m, (const double[]){1.9, -3.8}, 2, "sgd wd m step 2");
}

Test(optim_sgd, l2_adds_to_gradient)
{
    /* μ = 0, l2 0.5, lr 0.1, p0 = [0.5, −1], g = [1, −2]:
     * step 1: g' = [1 + 0.25, −2 − 0.5] = [1.25, −2.5];   p = [0.375, −0.75]
     * step 2: g' = [1 + 0.1875, −2 − 0.375] = [1.1875, −2.375]
     *         p = [0.375 − 0.11875, −0.75 + 0.2375] = [0.25625, −0.5125] */
    optim_config c = sgd(0.0f, 0);
    c.l2 = 0.5f;
    float p[2] = {0.5f, -1.0f};
    const float g[2] = {1.0f, -2.0f};
    optim_update(&c, 0.1f, 1, p, g, NULL, NULL, 2, 1);
    expect_vec(p, (const double[]){0.375, -0.75}, 2, "l2 step 1");
    optim_update(&c, 0.1f, 2, p, g, NULL, NULL, 2, 1);
    expect_vec(p, (const double[]){0.25625, -0.5125}, 2, "l2 step 2");
}

Test(optim_sgd, l1_adds_sign_and_zero_has_no_sign)
{
    /* μ = 0, l1 0.5, lr 0.1, p0 = [0.5, −1, 0], g = [1, −2, 0.25]:
     * step 1: sign(p) = [1, −1, 0]:  g' = [1.5, −2.5, 0.25]
     *         p = [0.5 − 0.15, −1 + 0.25, 0 − 0.025] = [0.35, −0.75, −0.025]
     * step 2: sign(p) = [1, −1, −1]: g' = [1.5, −2.5, 0.25 − 0.5 = −0.25]
     *         p = [0.35 − 0.15, −0.75 + 0.25, −0.025 + 0.025] = [0.2, −0.5, 0] */
    optim_config c = sgd(0.0f, 0);
    c.l1 = 0.5f;
    float p[3] = {0.5f, -1.0f, 0.0f};
    const float g[3] = {1.0f, -2.0f, 0.25f};
    optim_update(&c, 0.1f, 1, p, g, NULL, NULL, 3, 1);
    expect_vec(p, (const double[]){0.35, -0.75, -0.025}, 3, "l1 step 1");
    optim_update(&c, 0.1f, 2, p, g, NULL, NULL, 3, 1);
    expect_vec(p, (const double[]){0.2, -0.5, 0.0}, 3, "l1 step 2");
}

Test(optim_sgd, decay_zero_skips_wd_l1_l2)
{
    /* wd, l1 and l2 all set, but decay = 0 (a bias): the update must be the
     * plain momentum one of momentum_three_steps, bit for bit:
     * p = [0.4, −0.8] then [0.21, −0.42]. With decay = 1 the same config
     * moves further (step 1: g' = [1 + 0.25 + 0.5, −2 − 0.5 − 0.5] = [1.75, −3],
     * d + wd·p = [1.75 + 0.05, −3 − 0.1] → p = [0.5 − 0.18, −1 + 0.31] = [0.32, −0.69]). */
    optim_config c = sgd(0.9f, 0);
    c.weight_decay = 0.1f;
    c.l2 = 0.5f;
    c.l1 = 0.5f;
    optim_config plain = sgd(0.9f, 0);
    float p[2] = {0.5f, -1.0f}, m[2] = {0, 0};
    float q[2] = {0.5f, -1.0f}, mq[2] = {0, 0};
    const float g[2] = {1.0f, -2.0f};
    for (long t = 1; t <= 2; t++) {
        optim_update(&c, 0.1f, t, p, g, m, NULL, 2, 0);
        optim_update(&plain, 0.1f, t, q, g, mq, NULL, 2, 1);
    }
    expect_vec(p, (const double[]){0.21, -0.42}, 2, "decay=0 step 2");
    cr_expect(memcmp(p, q, sizeof p) == 0 && memcmp(m, mq, sizeof m) == 0,
              "decay=0 must equal the undecayed update bit for bit");

    float r[2] = {0.5f, -1.0f}, mr[2] = {0, 0};
    optim_update(&c, 0.1f, 1, r, g, mr, NULL, 2, 1);
    expect_vec(r, (const double[]){0.32, -0.69}, 2, "decay=1 step 1");
}

/* ---- AdamW -------------------------------------------------------------- */

Test(optim_adamw, two_steps_with_weight_decay)
{
    /* β1 0.9, β2 0.999, eps 1e-8, wd 0.1, lr 0.01, p0 = [0.5, −1].
     * step 1, g = [1, −2]:
     *   m = 0.1·g = [0.1, −0.2];  v = 0.001·g² = [0.001, 0.004]
     *   m̂ = m/0.1 = [1, −2];  v̂ = v/0.001 = [1, 4];  √v̂ = [1, 2]
     *   m̂/(√v̂ + eps) = [1, −1] (to 1e-8: step 1 moves by lr·sign(g))
     *   + wd·p = [0.05, −0.1]  →  [1.05, −1.1]
     *   p = [0.5 − 0.0105, −1 + 0.011] = [0.4895, −0.989]
     * step 2, g = [0.5, 1]:
     *   m = 0.9·[0.1, −0.2] + 0.1·[0.5, 1] = [0.14, −0.08]
     *   v = 0.999·[0.001, 0.004] + 0.001·[0.25, 1] = [0.001249, 0.004996]
     *   bc1 = 1 − 0.9² = 0.19;  bc2 = 1 − 0.999² = 0.001999
     *   m̂ = [0.736842105, −0.421052632];  v̂ = [0.624812406, 2.499249625]
     *   √v̂ = [0.790450761, 1.580901523]
     *   m̂/(√v̂ + eps) = [0.932179627, −0.266337038]
     *   + wd·p = [0.04895, −0.0989]  →  [0.981129627, −0.365237038]
     *   p = [0.4895 − 0.00981129627, −0.989 + 0.00365237038]
     *     = [0.479688704, −0.985347630] */
    optim_config c = optim_defaults(OPTIM_ADAMW);
    c.weight_decay = 0.1f;
    float p[2] = {0.5f, -1.0f}, m[2] = {0, 0}, v[2] = {0, 0};
    optim_update(&c, 0.01f, 1, p, (const float[]){1.0f, -2.0f}, m, v, 2, 1);
    expect_vec(p, (const double[]){0.4895, -0.989}, 2, "adamw step 1");
    expect_vec(m, (const double[]){0.1, -0.2}, 2, "adamw m step 1");
    expect_vec(v, (const double[]){0.001, 0.004}, 2, "adamw v step 1");
    optim_update(&c, 0.01f, 2, p, (const float[]){0.5f, 1.0f}, m, v, 2, 1);
    expect_vec(p, (const double[]){0.4796887038, -0.9853476297}, 2, "adamw step 2");
    expect_vec(m, (const double[]){0.14, -0.08}, 2, "adamw m step 2");
    expect_vec(v, (const double[]){0.001249, 0.004996}, 2, "adamw v step 2");
}

Test(optim_adamw, step_one_is_lr_times_sign_whatever_the_scale)
{
    /* Without decay, step 1 moves every parameter by lr·sign(g) to within
     * lr·eps/|g| (bias correction makes m̂/√v̂ = g/|g|), for g of any scale;
     * g = 0 leaves p alone (0/(0 + eps) = 0). */
    optim_config c = optim_defaults(OPTIM_ADAMW);
    float p[5] = {1, 1, 1, 1, 1}, m[5] = {0}, v[5] = {0};
    const float g[5] = {1e-3f, -1e3f, 7.0f, -0.25f, 0.0f};
    optim_update(&c, 0.05f, 1, p, g, m, v, 5, 1);
    expect_vec(p, (const double[]){0.95, 1.05, 0.95, 1.05, 1.0}, 5, "adamw sign step");
}

Test(optim_adamw, l2_goes_through_the_moments)
{
    /* L2 is added to g before the moments, so unlike decoupled wd it is
     * normalised: l2 1, lr 0.01, p0 = [0.5, −1], g = [−0.25, 0.5]:
     *   g' = [−0.25 + 0.5, 0.5 − 1] = [0.25, −0.5]  (sign flipped by L2)
     *   step 1 moves by lr·sign(g'): p = [0.49, −0.99]
     * With decay = 0 the same config follows g: p = [0.51, −1.01]. */
    optim_config c = optim_defaults(OPTIM_ADAMW);
    c.l2 = 1.0f;
    const float g[2] = {-0.25f, 0.5f};
    float p[2] = {0.5f, -1.0f}, m[2] = {0}, v[2] = {0};
    optim_update(&c, 0.01f, 1, p, g, m, v, 2, 1);
    expect_vec(p, (const double[]){0.49, -0.99}, 2, "adamw l2");
    float q[2] = {0.5f, -1.0f}, mq[2] = {0}, vq[2] = {0};
    optim_update(&c, 0.01f, 1, q, g, mq, vq, 2, 0);
    expect_vec(q, (const double[]){0.51, -1.01}, 2, "adamw l2 skipped by decay=0");
    expect_vec(vq, (const double[]){0.0000625, 0.00025}, 2, "adamw v from raw g");
}

Test(optim_adamw, decay_zero_skips_weight_decay)
{
    /* The config of two_steps_with_weight_decay with decay = 0: step 1 is
     * exactly lr·sign(g): p = [0.5 − 0.01, −1 + 0.01] = [0.49, −0.99]. */
    optim_config c = optim_defaults(OPTIM_ADAMW);
    c.weight_decay = 0.1f;
    c.l1 = 0.3f;
    float p[2] = {0.5f, -1.0f}, m[2] = {0}, v[2] = {0};
    optim_update(&c, 0.01f, 1, p, (const float[]){1.0f, -2.0f}, m, v, 2, 0);
    expect_vec(p, (const double[]){0.49, -0.99}, 2, "adamw decay=0");
}

/* ---- range behaviour ---------------------------------------------------- */

Test(optim_update, touches_only_n_and_splits_like_one_range)
{
    /* A stage updates its flat buffer tensor by tensor: two calls over
     * [0, 3) and [3, 7) must give bitwise the same as one call over [0, 7),
     * and element 7 (outside every range) must stay untouched. */
    const optim_kind kinds[2] = {OPTIM_SGD, OPTIM_ADAMW};
    for (int k = 0; k < 2; k++) {
        optim_config c = optim_defaults(kinds[k]);
        c.weight_decay = 0.02f;
        c.l2 = 0.01f;
        float g[8], a[8], b[8], ma[8] = {0}, mb[8] = {0}, va[8] = {0}, vb[8] = {0};
        for (int i = 0; i < 8; i++) {
            a[i] = b[i] = 0.3f * (float)(i - 4);
            g[i] = 0.7f - 0.2f * (float)i;
        }
        for (long t = 1; t <= 3; t++) {
            optim_update(&c, 0.05f, t, a, g, ma, va, 7, 1);
            optim_update(&c, 0.05f, t, b, g, mb, vb, 3, 1);
            optim_update(&c, 0.05f, t, b + 3, g + 3, mb + 3, vb + 3, 4, 1);
        }
        cr_expect(memcmp(a, b, sizeof a) == 0, "kind %d: split update differs from one range",
                  k);
        cr_expect(a[7] == 0.3f * 3.0f && ma[7] == 0.0f && va[7] == 0.0f,
                  "kind %d: element past n was written", k);
    }
}

/* ---- instruction sets ---------------------------------------------------- */

/* The update on every instruction set kernels_isa_supported reports, against
 * the portable copy bit for bit, and the portable copy against the rule of
 * optim.h written out here in scalar float arithmetic (the same operations in
 * the same order), so that the portable copy itself is pinned. */

static const size_t isa_lengths[] = {1, 3, 17, 1023};
enum { ISA_MAXN = 1023 + 16 }; /* past n: must stay untouched */

static uint32_t isa_rand(uint32_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 17, *s ^= *s << 5;
    return *s;
}

/* x[ISA_MAXN]: mostly O(1) values of both signs, one in four of any
 * exponent (subnormal to near overflow), and the edges near the front */
static void isa_fill(float *x, uint32_t salt, int nonneg)
{
    uint32_t s = 0x9e3779b9u ^ (salt * 0x85ebca6bu);
    for (size_t i = 0; i < ISA_MAXN; i++) {
        uint32_t r = isa_rand(&s);
        float u = (float)(r >> 8) * (1.0f / 16777216.0f); /* [0, 1) */
        float val = (r & 3u) ? 8.0f * (u - 0.5f) : ldexpf(u + 0.5f, (int)(isa_rand(&s) % 277u) - 149);
        x[i] = nonneg ? fabsf(val) : ((isa_rand(&s) & 1u) ? -val : val);
    }
    static const float edge[] = {0.0f, -0.0f, 3.0e38f, -3.0e38f, FLT_MAX, 1e-40f, -1e-40f,
                                 FLT_MIN, -1e-45f, 1e-30f, 1e30f};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        float e = nonneg ? fabsf(edge[i]) : edge[i];
        x[(i * 3 + salt) % 17] = e; /* spread differently in each buffer */
    }
}

typedef struct {
    float p[ISA_MAXN], m[ISA_MAXN], v[ISA_MAXN];
} isa_state;

/* one call of optim_update from the same start (salt) on the current ISA */
static void isa_run(isa_state *st, const optim_config *c, float lr, long t, size_t n, int decay,
                    uint32_t salt)
{
    static float g[ISA_MAXN];
    isa_fill(st->p, salt, 0);
    isa_fill(g, salt + 1, 0);
    isa_fill(st->m, salt + 2, 0);
    isa_fill(st->v, salt + 3, 1);
    int use_m = c->kind == OPTIM_ADAMW || c->momentum != 0.0f;
    optim_update(c, lr, t, st->p, g, use_m ? st->m : NULL, c->kind == OPTIM_ADAMW ? st->v : NULL,
                 n, decay);
}

/* the configurations compared: SGD with and without momentum and Nesterov,
 * AdamW, each with and without weight decay, L2 and L1; *t is the step */
static int isa_config(int k, optim_config *c, long *t)
{
    static const float l2s[4] = {0.0f, 0.5f, 0.0f, 0.5f}, l1s[4] = {0.0f, 0.0f, 0.3f, 0.3f};
    if (k < 32) { /* SGD: momentum × nesterov × wd × (l2, l1) */
        *c = optim_defaults(OPTIM_SGD);
        c->momentum = (k & 1) ? 0.9f : 0.0f;
        c->nesterov = (k >> 1) & 1;
        c->weight_decay = ((k >> 2) & 1) ? 0.01f : 0.0f;
        c->l2 = l2s[k >> 3], c->l1 = l1s[k >> 3];
        *t = 1;
        return 1;
    }
    k -= 32;
    if (k < 16) { /* AdamW: wd × (l2, l1) × t */
        *c = optim_defaults(OPTIM_ADAMW);
        c->weight_decay = (k & 1) ? 0.1f : 0.0f;
        c->l2 = l2s[(k >> 1) & 3], c->l1 = l1s[(k >> 1) & 3];
        *t = (k >> 3) ? 1000 : 1;
        return 1;
    }
    return 0;
}

static void isa_describe(char *buf, size_t size, const optim_config *c, long t, size_t n, int decay)
{
    snprintf(buf, size, "%s mu %g nesterov %d wd %g l2 %g l1 %g t %ld n %zu decay %d",
             c->kind == OPTIM_ADAMW ? "adamw" : "sgd", (double)c->momentum, c->nesterov,
             (double)c->weight_decay, (double)c->l2, (double)c->l1, t, n, decay);
}

static void isa_expect_same(const float *got, const float *want, const char *buf, const char *isa,
                            const char *what)
{
    for (size_t i = 0; i < ISA_MAXN; i++)
        cr_assert(!memcmp(&got[i], &want[i], sizeof(float)),
                  "%s, %s: %s[%zu] = %a, expected %a", isa, buf, what, i, (double)got[i],
                  (double)want[i]);
}

Test(optim_isa, every_isa_matches_portable_bit_for_bit)
{
    kernels_isa keep = kernels_isa_current();
    static isa_state want, got;
    int compared = 0;
    for (int isa = KERNELS_AVX2; isa <= KERNELS_AVX512; isa++) {
        if (!kernels_isa_supported((kernels_isa)isa)) {
            fprintf(stderr, "skipped: this CPU has no %s\n", kernels_isa_name((kernels_isa)isa));
            continue;
        }
        compared++;
        optim_config c;
        long t;
        for (int k = 0; isa_config(k, &c, &t); k++)
            for (size_t li = 0; li < sizeof isa_lengths / sizeof isa_lengths[0]; li++)
                for (int decay = 0; decay <= 1; decay++) {
                    size_t n = isa_lengths[li];
                    float lr = c.kind == OPTIM_ADAMW ? 0.01f : 0.1f;
                    uint32_t salt = (uint32_t)(k * 8 + (int)li);
                    char buf[160];
                    isa_describe(buf, sizeof buf, &c, t, n, decay);
                    cr_assert(kernels_isa_select(KERNELS_PORTABLE));
                    isa_run(&want, &c, lr, t, n, decay, salt);
                    cr_assert(kernels_isa_select((kernels_isa)isa));
                    isa_run(&got, &c, lr, t, n, decay, salt);
                    kernels_isa_select(keep);
                    const char *name = kernels_isa_name((kernels_isa)isa);
                    isa_expect_same(got.p, want.p, buf, name, "p");
                    isa_expect_same(got.m, want.m, buf, name, "m");
                    isa_expect_same(got.v, want.v, buf, name, "v");
                }
    }
    kernels_isa_select(keep);
    cr_assert_eq(kernels_isa_current(), keep, "the instruction set was not restored");
    if (!compared) fprintf(stderr, "skipped: only the portable copy runs on this CPU\n");
}

static float ref_sign(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }

/* g' = g + l2·p + l1·sign(p), a zero coefficient adding nothing */
static float ref_grad(float g, float p, float l2, float l1)
{
    if (l2 != 0.0f) g = g + l2 * p;
    if (l1 != 0.0f) g = g + l1 * ref_sign(p);
    return g;
}

/* optim.h's rule, element by element, in float */
static void ref_update(const optim_config *c, float lr, long t, float *p, const float *g, float *m,
                       float *v, size_t n, int decay)
{
    float wd = decay ? c->weight_decay : 0.0f, l2 = decay ? c->l2 : 0.0f, l1 = decay ? c->l1 : 0.0f;
    float bc1 = (float)(1.0 - pow((double)c->beta1, (double)t));
    float bc2 = (float)(1.0 - pow((double)c->beta2, (double)t));
    for (size_t i = 0; i < n; i++) {
        float gi = ref_grad(g[i], p[i], l2, l1), d;
        if (c->kind == OPTIM_ADAMW) {
            m[i] = c->beta1 * m[i] + (1.0f - c->beta1) * gi;
            v[i] = c->beta2 * v[i] + (1.0f - c->beta2) * (gi * gi);
            d = (m[i] / bc1) / (sqrtf(v[i] / bc2) + c->eps);
        } else if (c->momentum != 0.0f) {
            m[i] = c->momentum * m[i] + gi;
            d = c->nesterov ? gi + c->momentum * m[i] : m[i];
        } else {
            d = gi;
        }
        if (wd != 0.0f) d = d + wd * p[i];
        p[i] = p[i] - lr * d;
    }
}

Test(optim_isa, portable_matches_the_scalar_rule_bit_for_bit)
{
    kernels_isa keep = kernels_isa_current();
    cr_assert(kernels_isa_select(KERNELS_PORTABLE));
    static isa_state got, want;
    static float g[ISA_MAXN];
    const size_t n = 17;
    optim_config c;
    long t;
    for (int k = 0; isa_config(k, &c, &t); k++)
        for (int decay = 0; decay <= 1; decay++) {
            float lr = c.kind == OPTIM_ADAMW ? 0.01f : 0.1f;
            uint32_t salt = (uint32_t)(1000 + k);
            isa_run(&got, &c, lr, t, n, decay, salt);
            isa_fill(want.p, salt, 0);
            isa_fill(g, salt + 1, 0);
            isa_fill(want.m, salt + 2, 0);
            isa_fill(want.v, salt + 3, 1);
            ref_update(&c, lr, t, want.p, g, want.m, want.v, n, decay);
            char buf[160];
            isa_describe(buf, sizeof buf, &c, t, n, decay);
            isa_expect_same(got.p, want.p, buf, "portable", "p");
            isa_expect_same(got.m, want.m, buf, "portable", "m");
            isa_expect_same(got.v, want.v, buf, "portable", "v");
        }
    kernels_isa_select(keep);
}

/* ---- convergence -------------------------------------------------------- */

/* f(p) = ½·Σ a_i·(p_i − c_i)²,  ∂f/∂p_i = a_i·(p_i − c_i), minimum at c. */
static const float qa[4] = {1.0f, 2.0f, 0.5f, 4.0f};
static const float qc[4] = {1.0f, -2.0f, 0.5f, 3.0f};

static float run_quadratic(const optim_config *c, const lr_schedule *s, long steps)
{
    float p[4] = {0}, g[4], m[4] = {0}, v[4] = {0};
    for (long t = 1; t <= steps; t++) {
        for (int i = 0; i < 4; i++) g[i] = qa[i] * (p[i] - qc[i]);
        optim_update(c, lr_at(s, t), t, p, g, m, v, 4, 1);
    }
    float worst = 0.0f;
    for (int i = 0; i < 4; i++) worst = fmaxf(worst, fabsf(p[i] - qc[i]));
    return worst;
}

Test(optim_converge, sgd_momentum_quadratic)
{
    /* Heavy ball, μ 0.9, lr 0.1: lr·a_max = 0.4 < 2(1 + μ), contraction
     * ≈ √μ ≈ 0.95 per step, so 300 steps shrink an error of 3 below 1e-5. */
    optim_config c = sgd(0.9f, 0);
    lr_schedule s = {.kind = LR_CONSTANT, .base = 0.1f, .warmup = 0, .total = 300};
    float err = run_quadratic(&c, &s, 300);
    cr_expect(err < 1e-3f, "sgd momentum: max |p − c| = %g after 300 steps, expected < 1e-3",
              (double)err);
    c.nesterov = 1;
    err = run_quadratic(&c, &s, 300);
    cr_expect(err < 1e-3f, "nesterov: max |p − c| = %g after 300 steps, expected < 1e-3",
              (double)err);
}

Test(optim_converge, adamw_quadratic)
{
    /* AdamW (no decay, which would move the minimum), cosine schedule from
     * 0.1 with 10 warm-up steps to 0.001 at step 500; constant 0.1 too. */
    optim_config c = optim_defaults(OPTIM_ADAMW);
    lr_schedule s = {
        .kind = LR_COSINE, .base = 0.1f, .warmup = 10, .total = 500, .min_ratio = 0.01f};
    float err = run_quadratic(&c, &s, 500);
    cr_expect(err < 1e-3f, "adamw cosine: max |p − c| = %g after 500 steps, expected < 1e-3",
              (double)err);
    lr_schedule k = {.kind = LR_CONSTANT, .base = 0.1f, .warmup = 0, .total = 500};
    err = run_quadratic(&c, &k, 500);
    cr_expect(err < 1e-3f, "adamw const: max |p − c| = %g after 500 steps, expected < 1e-3",
              (double)err);
}

/* ---- learning-rate schedules --------------------------------------------- */

static void expect_lr(const lr_schedule *s, long t, double want)
{
    float got = lr_at(s, t);
    cr_expect(fabs(got - want) <= TOL * fabs(want) + 1e-12, "lr_at(%ld) = %.9g, expected %.9g",
              t, (double)got, want);
}

Test(lr, cosine_with_warmup)
{
    /* base 0.5, warm-up 10, total 110, min ratio 0.1 → min 0.05, span 100.
     *   t = 1:   0.5·1/10 = 0.05;   t = 5: 0.25;   t = 10: 0.5
     *   t = 35 (quarter): 0.05 + 0.45·½·(1 + cos(π/4)) = 0.05 + 0.225·1.707106781
     *                   = 0.434099026
     *   t = 60 (midpoint): 0.05 + 0.45·½·(1 + cos(π/2)) = 0.275
     *   t = 110 (end) and later: base·min_ratio = 0.05
     * Relative tolerance 1e-6 (computed in double, rounded once to float). */
    lr_schedule s = {.kind = LR_COSINE, .base = 0.5f, .warmup = 10, .total = 110,
                     .min_ratio = 0.1f};
    cr_assert_eq(lr_check(&s), PT_OK, "%s", pt_last_error());
    expect_lr(&s, 1, 0.05);
    expect_lr(&s, 5, 0.25);
    expect_lr(&s, 10, 0.5);
    expect_lr(&s, 35, 0.434099026);
    expect_lr(&s, 60, 0.275);
    expect_lr(&s, 110, 0.5 * (double)0.1f);
    expect_lr(&s, 1000, 0.5 * (double)0.1f);
    /* strictly decreasing from the peak to the end */
    for (long t = 10; t < 110; t++)
        cr_expect(lr_at(&s, t + 1) < lr_at(&s, t), "lr_at(%ld) = %g not below lr_at(%ld) = %g",
                  t + 1, (double)lr_at(&s, t + 1), t, (double)lr_at(&s, t));
}

Test(lr, cosine_without_warmup)
{
    /* base 1, no warm-up, total 100, min 0: t = 50 → ½(1 + cos(π/2)) = 0.5;
     * t = 1 → ½(1 + cos(π/100)) = 0.999753280; t = 100 → 0. */
    lr_schedule s = {.kind = LR_COSINE, .base = 1.0f, .warmup = 0, .total = 100,
                     .min_ratio = 0.0f};
    cr_assert_eq(lr_check(&s), PT_OK, "%s", pt_last_error());
    expect_lr(&s, 1, 0.999753280);
    expect_lr(&s, 50, 0.5);
    expect_lr(&s, 100, 0.0);
}

Test(lr, constant_with_and_without_warmup)
{
    /* base 0.3: warm-up 4 gives 0.075, 0.15, 0.225, 0.3, then 0.3 forever;
     * without warm-up 0.3 from step 1, also past `total`. */
    lr_schedule s = {.kind = LR_CONSTANT, .base = 0.3f, .warmup = 4, .total = 10};
    cr_assert_eq(lr_check(&s), PT_OK, "%s", pt_last_error());
    expect_lr(&s, 1, 0.3 * 0.25);
    expect_lr(&s, 3, 0.3 * 0.75);
    expect_lr(&s, 4, (double)0.3f);
    expect_lr(&s, 5, (double)0.3f);
    expect_lr(&s, 50, (double)0.3f);
    s.warmup = 0;
    expect_lr(&s, 1, (double)0.3f);
    expect_lr(&s, 10, (double)0.3f);
}

/* ---- checks -------------------------------------------------------------- */

static void expect_lr_rejected(lr_schedule s, const char *key)
{
    pt_clear_error();
    pt_status st = lr_check(&s);
    cr_expect_eq(st, PT_ERR_INVALID, "lr_check accepted a bad %s", key);
    cr_expect(strstr(pt_last_error(), key) != NULL, "message '%s' does not name %s",
              pt_last_error(), key);
}

Test(check, lr_check_names_the_key)
{
    const lr_schedule ok = {.kind = LR_COSINE, .base = 0.1f, .warmup = 10, .total = 100,
                            .min_ratio = 0.1f};
    cr_expect_eq(lr_check(&ok), PT_OK, "%s", pt_last_error());
    lr_schedule s = ok;
    s.base = 0.0f;
    expect_lr_rejected(s, "train.lr");
    s.base = -0.1f;
    expect_lr_rejected(s, "train.lr");
    s.base = INFINITY;
    expect_lr_rejected(s, "train.lr");
    s.base = NAN;
    expect_lr_rejected(s, "train.lr");
    s = ok;
    s.warmup = -1;
    expect_lr_rejected(s, "train.warmup_steps");
    s = ok;
    s.total = 0;
    expect_lr_rejected(s, "train.steps");
    s = ok;
    s.warmup = 100; /* cosine needs warmup < total */
    expect_lr_rejected(s, "train.warmup_steps");
    s = ok;
    s.min_ratio = 1.5f;
    expect_lr_rejected(s, "train.min_lr_ratio");
    s.min_ratio = -0.1f;
    expect_lr_rejected(s, "train.min_lr_ratio");
    /* constant: a warm-up as long as the run is allowed */
    s = ok;
    s.kind = LR_CONSTANT;
    s.warmup = 100;
    cr_expect_eq(lr_check(&s), PT_OK, "%s", pt_last_error());
}

static void expect_optim_rejected(optim_config c, const char *key)
{
    pt_clear_error();
    pt_status st = optim_check(&c);
    cr_expect_eq(st, PT_ERR_INVALID, "optim_check accepted a bad %s", key);
    cr_expect(strstr(pt_last_error(), key) != NULL, "message '%s' does not name %s",
              pt_last_error(), key);
}

Test(check, optim_defaults_are_valid)
{
    optim_config a = optim_defaults(OPTIM_ADAMW), s = optim_defaults(OPTIM_SGD);
    cr_expect_eq(optim_check(&a), PT_OK, "%s", pt_last_error());
    cr_expect_eq(optim_check(&s), PT_OK, "%s", pt_last_error());
    cr_expect(a.kind == OPTIM_ADAMW && a.beta1 == 0.9f && a.beta2 == 0.999f && a.eps == 1e-8f &&
                  a.weight_decay == 0.0f && a.l1 == 0.0f && a.l2 == 0.0f,
              "adamw defaults");
    cr_expect(s.kind == OPTIM_SGD && s.momentum == 0.9f && s.nesterov == 0, "sgd defaults");
}

Test(check, optim_check_names_the_field)
{
    const optim_config ok = optim_defaults(OPTIM_ADAMW);
    optim_config c = ok;
    c.beta2 = 1.5f;
    expect_optim_rejected(c, "train.beta2 = 1.5: expected a value in [0, 1)");
    c.beta2 = 1.0f;
    expect_optim_rejected(c, "train.beta2");
    c = ok;
    c.beta1 = -0.1f;
    expect_optim_rejected(c, "train.beta1");
    c.beta1 = NAN;
    expect_optim_rejected(c, "train.beta1");
    c = ok;
    c.eps = 0.0f;
    expect_optim_rejected(c, "train.eps");
    c.eps = -1e-8f;
    expect_optim_rejected(c, "train.eps");
    c = ok;
    c.weight_decay = -0.01f;
    expect_optim_rejected(c, "train.weight_decay");
    c = ok;
    c.l2 = -1.0f;
    expect_optim_rejected(c, "train.l2");
    c = ok;
    c.l1 = -1.0f;
    expect_optim_rejected(c, "train.l1");
    c = ok;
    c.kind = (optim_kind)5;
    expect_optim_rejected(c, "train.optimizer");

    const optim_config sg = optim_defaults(OPTIM_SGD);
    c = sg;
    c.momentum = 1.0f;
    expect_optim_rejected(c, "train.momentum");
    c.momentum = -0.5f;
    expect_optim_rejected(c, "train.momentum");
    c = sg;
    c.momentum = 0.0f;
    c.nesterov = 1;
    expect_optim_rejected(c, "train.nesterov");
    c.momentum = 0.9f; /* Nesterov with momentum is fine */
    cr_expect_eq(optim_check(&c), PT_OK, "%s", pt_last_error());
    c.momentum = 0.0f;
    c.nesterov = 0; /* plain SGD is fine */
    cr_expect_eq(optim_check(&c), PT_OK, "%s", pt_last_error());
}
