/* optim.c — optimizers over flat buffers and learning-rate schedules (see
 * optim.h). The updates themselves are in optim_ew.inc, one copy per
 * instruction set; each call runs the one of kernels_isa_current(). */
#include "optim.h"
#include "kernels.h"

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

/* ------------------------------------------------- the updates by ISA */

typedef struct {
    void (*sgd_update)(float *, const float *, float *, size_t, float, float, int, float, float, float);
    void (*adamw_update)(float *, const float *, float *, float *, size_t, float, float, float, float,
                         float, float, float, float, float);
} optim_ew;

#define ISA_COPIES_SOURCE "optim_ew.inc"
#include "isa_copies.h"

/* the copy for the instruction set the element-wise kernels run with */
static const optim_ew *optim_ew_current(void)
{
#ifdef ISA_COPIES_X86
    switch (kernels_isa_current()) {
    case KERNELS_AVX512: return &optim_table_avx512;
    case KERNELS_AVX2: return &optim_table_avx2;
    default: break;
    }
#endif
    return &optim_table_portable;
}

void optim_update(const optim_config *cfg, float lr, long t, float *p, const float *g,
                  float *m, float *v, size_t n, int decay)
{
    const float wd = decay ? cfg->weight_decay : 0.0f;
    const float l2 = decay ? cfg->l2 : 0.0f;
    const float l1 = decay ? cfg->l1 : 0.0f;
    const optim_ew *ew = optim_ew_current();
    if (cfg->kind == OPTIM_ADAMW) {
        /* Steps are 1-based; t < 1 would make a bias correction 0. */
        double tt = (double)(t < 1 ? 1 : t);
        float bc1 = (float)(1.0 - pow((double)cfg->beta1, tt));
        float bc2 = (float)(1.0 - pow((double)cfg->beta2, tt));
        ew->adamw_update(p, g, m, v, n, lr, cfg->beta1, cfg->beta2, cfg->eps, bc1, bc2, wd, l2, l1);
    } else {
        ew->sgd_update(p, g, m, n, lr, cfg->momentum, cfg->nesterov, wd, l2, l1);
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
