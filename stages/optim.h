/* optim.h — optimizers over flat buffers, and learning-rate schedules.
 *
 * A stage keeps parameters, gradients and the two optimizer moments in one
 * allocation each, laid out alike (design contract 5); optim_update runs over
 * one contiguous range of them (one tensor), so weight decay can be applied to
 * some tensors (matrices) and not others (biases, norms). */
#ifndef PT_OPTIM_H
#define PT_OPTIM_H

#include <stddef.h>

#include "pt_status.h"

typedef enum { OPTIM_SGD = 0, OPTIM_ADAMW = 1 } optim_kind;

typedef struct {
    optim_kind kind;
    float momentum;     /* SGD: 0 disables momentum */
    int nesterov;       /* SGD with momentum: Nesterov form */
    float beta1, beta2; /* AdamW */
    float eps;          /* AdamW */
    float weight_decay; /* decoupled: p -= lr·wd·p (AdamW and SGD alike) */
    float l2;           /* L2 regularisation: g += l2·p before the update */
    float l1;           /* L1 regularisation: g += l1·sign(p) before the update */
} optim_config;

/* Defaults: AdamW, beta1 0.9, beta2 0.999, eps 1e-8, no decay/L1/L2;
 * for SGD, momentum 0.9 without Nesterov. */
optim_config optim_defaults(optim_kind kind);

/* One update of n parameters at 1-based step t with learning rate lr.
 * SGD:   g' = g + l2·p + l1·sign(p);  m = μ·m + g';  d = nesterov ? g' + μ·m : m
 *        (μ = 0: d = g');  p -= lr·(d + wd·p)        [m unused when μ = 0]
 * AdamW: g' as above; m = β1·m + (1−β1)·g';  v = β2·v + (1−β2)·g'²;
 *        p -= lr·( (m/(1−β1^t)) / (√(v/(1−β2^t)) + eps) + wd·p )
 * `decay` = 0 skips weight decay, L1 and L2 for this range (biases, norms).
 * m and v may be NULL when the method does not use them. p, g, m and v do
 * not overlap. The update runs on the instruction set of
 * kernels_isa_current() (kernels.h) and gives the same bits on each. */
void optim_update(const optim_config *cfg, float lr, long t, float *p, const float *g,
                  float *m, float *v, size_t n, int decay);

/* Checks a config: names the field and the allowed range on error. */
pt_status optim_check(const optim_config *cfg);

typedef enum { LR_CONSTANT = 0, LR_COSINE = 1 } lr_kind;

typedef struct {
    lr_kind kind;
    float base;       /* peak learning rate */
    long warmup;      /* linear warm-up steps (0 = none) */
    long total;       /* total steps of the run (cosine ends here) */
    float min_ratio;  /* cosine decays to base·min_ratio */
} lr_schedule;

/* Learning rate for 1-based step t:
 * warm-up (t ≤ warmup): base·t/warmup; then constant: base, or cosine:
 * min + (base−min)·½·(1 + cos(π·(t−warmup)/(total−warmup))), clamped at
 * t ≥ total to min. */
float lr_at(const lr_schedule *s, long t);

pt_status lr_check(const lr_schedule *s);

#endif
