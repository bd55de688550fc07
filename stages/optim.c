#include "optim.h"

#include <math.h>

optim_config optim_defaults(optim_kind kind)
{
    /* Every field holds a valid value whatever the kind, so a config stays
     * valid (optim_check) when only its kind is switched. */
    optim_config c = {
        .kind = kind,
        .momentum = 0.9f,
        .nesterov = 0,
        .beta1 = 0.9f,
        .beta2 = 0.999f,
        .eps = 1e-8f,
        .weight_decay = 0.0f,
        .l2 = 0.0f,
        .l1 = 0.0f,
    };
    return c;
}

static inline float sign_f(float x) { return (float)((x > 0.0f) - (x < 0.0f)); }

/* g' = g + l2·p + l1·sign(p); a zero coefficient adds nothing (not even 0·p,
 * which would turn an infinite p into NaN). */
static inline float reg_grad(float g, float p, float l2, float l1)
{
    if (l2 != 0.0f) g += l2 * p;
    if (l1 != 0.0f) g += l1 * sign_f(p);
    return g;
}

/* p[n] -= lr·(d + wd·p), d per the SGD rule of optim.h; m[n] is the momentum
 * buffer (unused and may be NULL when mu = 0). */
static void sgd_update(float *p, const float *g, float *m, size_t n, float lr, float mu,
                       int nesterov, float wd, float l2, float l1)
{
    for (size_t i = 0; i < n; i++) {
        float gi = reg_grad(g[i], p[i], l2, l1);
        float d = gi;
        if (mu != 0.0f) {
            float mi = mu * m[i] + gi;
            m[i] = mi;
            d = nesterov ? gi + mu * mi : mi;
        }
        if (wd != 0.0f) d += wd * p[i];
        p[i] = p[i] - lr * d;
    }
}

/* p[n] -= lr·(m̂/(√v̂ + eps) + wd·p) with m̂ = m/bc1, v̂ = v/bc2; m[n], v[n]
 * are the first and second moments, updated in place. */
static void adamw_update(float *restrict p, const float *restrict g, float *restrict m,
                         float *restrict v, size_t n, float lr, float b1, float b2, float eps,
                         float bc1, float bc2, float wd, float l2, float l1)
{
    const float a1 = 1.0f - b1, a2 = 1.0f - b2;
    if (l2 == 0.0f && l1 == 0.0f) {
        /* the common case, branch-free so that it vectorises */
        for (size_t i = 0; i < n; i++) {
            float gi = g[i];
            float mi = b1 * m[i] + a1 * gi;
            float vi = b2 * v[i] + a2 * (gi * gi);
            m[i] = mi;
            v[i] = vi;
            float d = (mi / bc1) / (sqrtf(vi / bc2) + eps);
            p[i] = p[i] - lr * (wd != 0.0f ? d + wd * p[i] : d);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float gi = reg_grad(g[i], p[i], l2, l1);
        float mi = b1 * m[i] + a1 * gi;
        float vi = b2 * v[i] + a2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1;
        float vhat = vi / bc2;
        float d = mhat / (sqrtf(vhat) + eps);
        if (wd != 0.0f) d += wd * p[i];
        p[i] = p[i] - lr * d;
    }
}

void optim_update(const optim_config *cfg, float lr, long t, float *p, const float *g,
                  float *m, float *v, size_t n, int decay)
{
    const float wd = decay ? cfg->weight_decay : 0.0f;
    const float l2 = decay ? cfg->l2 : 0.0f;
    const float l1 = decay ? cfg->l1 : 0.0f;
    if (cfg->kind == OPTIM_ADAMW) {
        /* Steps are 1-based; t < 1 would make a bias correction 0. */
        double tt = (double)(t < 1 ? 1 : t);
        float bc1 = (float)(1.0 - pow((double)cfg->beta1, tt));
        float bc2 = (float)(1.0 - pow((double)cfg->beta2, tt));
        adamw_update(p, g, m, v, n, lr, cfg->beta1, cfg->beta2, cfg->eps, bc1, bc2, wd, l2, l1);
    } else {
        sgd_update(p, g, m, n, lr, cfg->momentum, cfg->nesterov, wd, l2, l1);
    }
}

/* x in [0, 1)? (false for NaN) */
static int in_unit_open(float x) { return x >= 0.0f && x < 1.0f; }
/* x finite and >= 0? */
static int nonneg_finite(float x) { return x >= 0.0f && isfinite(x); }

pt_status optim_check(const optim_config *cfg)
{
    if (cfg->kind != OPTIM_SGD && cfg->kind != OPTIM_ADAMW)
        return pt_fail(PT_ERR_INVALID, "train.optimizer = %d: expected sgd (%d) or adamw (%d)",
                       (int)cfg->kind, OPTIM_SGD, OPTIM_ADAMW);
    if (!in_unit_open(cfg->momentum))
        return pt_fail(PT_ERR_INVALID, "train.momentum = %g: expected a value in [0, 1)",
                       (double)cfg->momentum);
    if (cfg->nesterov != 0 && cfg->nesterov != 1)
        return pt_fail(PT_ERR_INVALID, "train.nesterov = %d: expected 0 or 1", cfg->nesterov);
    if (cfg->nesterov && cfg->momentum == 0.0f)
        return pt_fail(PT_ERR_INVALID,
                       "train.nesterov = 1 with train.momentum = 0: Nesterov needs a momentum "
                       "in (0, 1)");
    if (!in_unit_open(cfg->beta1))
        return pt_fail(PT_ERR_INVALID, "train.beta1 = %g: expected a value in [0, 1)",
                       (double)cfg->beta1);
    if (!in_unit_open(cfg->beta2))
        return pt_fail(PT_ERR_INVALID, "train.beta2 = %g: expected a value in [0, 1)",
                       (double)cfg->beta2);
    if (!(cfg->eps > 0.0f && isfinite(cfg->eps)))
        return pt_fail(PT_ERR_INVALID, "train.eps = %g: expected a finite value > 0",
                       (double)cfg->eps);
    if (!nonneg_finite(cfg->weight_decay))
        return pt_fail(PT_ERR_INVALID, "train.weight_decay = %g: expected a finite value >= 0",
                       (double)cfg->weight_decay);
    if (!nonneg_finite(cfg->l2))
        return pt_fail(PT_ERR_INVALID, "train.l2 = %g: expected a finite value >= 0",
                       (double)cfg->l2);
    if (!nonneg_finite(cfg->l1))
        return pt_fail(PT_ERR_INVALID, "train.l1 = %g: expected a finite value >= 0",
                       (double)cfg->l1);
    return PT_OK;
}

float lr_at(const lr_schedule *s, long t)
{
    const double base = (double)s->base;
    if (t < 0) t = 0;
    if (s->warmup > 0 && t <= s->warmup) return (float)(base * (double)t / (double)s->warmup);
    if (s->kind != LR_COSINE) return s->base;
    const double min = base * (double)s->min_ratio;
    /* t > warmup here, so t < total implies total − warmup >= 2 */
    if (t >= s->total) return (float)min;
    const double pi = 3.14159265358979323846;
    double frac = (double)(t - s->warmup) / (double)(s->total - s->warmup);
    return (float)(min + (base - min) * 0.5 * (1.0 + cos(pi * frac)));
}

pt_status lr_check(const lr_schedule *s)
{
    if (s->kind != LR_CONSTANT && s->kind != LR_COSINE)
        return pt_fail(PT_ERR_INVALID,
                       "train.lr_schedule = %d: expected constant (%d) or cosine (%d)",
                       (int)s->kind, LR_CONSTANT, LR_COSINE);
    if (!(s->base > 0.0f && isfinite(s->base)))
        return pt_fail(PT_ERR_INVALID, "train.lr = %g: expected a finite value > 0",
                       (double)s->base);
    if (s->warmup < 0)
        return pt_fail(PT_ERR_INVALID, "train.warmup_steps = %ld: expected a value >= 0",
                       s->warmup);
    if (s->total < 1)
        return pt_fail(PT_ERR_INVALID, "train.steps = %ld: expected a value >= 1", s->total);
    if (s->kind == LR_COSINE && s->warmup >= s->total)
        return pt_fail(PT_ERR_INVALID,
                       "train.warmup_steps = %ld: expected fewer than train.steps = %ld for the "
                       "cosine schedule",
                       s->warmup, s->total);
    if (!(s->min_ratio >= 0.0f && s->min_ratio <= 1.0f))
        return pt_fail(PT_ERR_INVALID, "train.min_lr_ratio = %g: expected a value in [0, 1]",
                       (double)s->min_ratio);
    return PT_OK;
}
