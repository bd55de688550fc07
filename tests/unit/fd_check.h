/* fd_check.h — shared helpers of the gradient tests: deterministic random
 * inputs and the central finite-difference check. A test defines
 * FD_DATA_SEED before including it. */
#ifndef PT_TEST_FD_CHECK_H
#define PT_TEST_FD_CHECK_H

#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>

#include "rng.h"

static inline rng_key data_key(uint32_t tag)
{
    rng_key k = {.seed = FD_DATA_SEED, .stream = RNG_STREAM_DATA, .a = tag, .b = 0, .c = 0};
    return k;
}

static inline float *fnew(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    cr_assert_not_null(p, "allocation of %zu floats failed", n);
    return p;
}

static inline float *fnormal(size_t n, uint32_t tag, float std)
{
    float *p = fnew(n);
    rng_fill_normal(p, n, data_key(tag), std);
    return p;
}

static inline float *funiform(size_t n, uint32_t tag, float lo, float hi)
{
    float *p = fnew(n);
    rng_fill_uniform(p, n, data_key(tag), lo, hi);
    return p;
}

static inline void ffill(float *p, size_t n, float v)
{
    for (size_t i = 0; i < n; i++) p[i] = v;
}

/* Σ r·out in double: the scalar objective whose gradient w.r.t. out is r. */
static inline double dot_rd(const float *r, const float *out, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * (double)out[i];
    return s;
}

typedef double (*objective_fn)(void *ctx);

/* Compares analytic[i] with the central difference of f w.r.t. x[i], for
 * every i < n, asserting |a − num| ≤ tol·max(1, |num|). Returns the largest
 * |a − num| seen. */
static inline double fd_check(const char *what, float *x, size_t n, const float *analytic, float h,
                              double tol, objective_fn f, void *ctx)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        float xp = x0 + h, xm = x0 - h;
        x[i] = xp;
        double lp = f(ctx);
        x[i] = xm;
        double lm = f(ctx);
        x[i] = x0;
        double num = (lp - lm) / ((double)xp - (double)xm);
        double err = fabs((double)analytic[i] - num);
        if (err > worst) worst = err;
        cr_assert(err <= tol * fmax(1.0, fabs(num)),
                  "%s[%zu]: analytic %.8g vs numeric %.8g, |diff| %.3g exceeds bound "
                  "%.1e*max(1,|numeric|)",
                  what, i, (double)analytic[i], num, err, tol);
    }
    return worst;
}

#endif
