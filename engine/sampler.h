/* sampler.h — which samples form a batch: a pure function of (seed, epoch,
 * index), so every rank can tell which samples form any micro-batch
 * without talking. No MPI. */
#ifndef PT_SAMPLER_H
#define PT_SAMPLER_H

#include <stdint.h>

#include "pt_status.h"

/* Sampler: the sample at position `pos` (0 ≤ pos < n) of epoch `epoch` is
 * sampler_index(seed, n, epoch, pos): a Fisher–Yates permutation of 0..n-1
 * driven by the counter-based RNG keyed on (seed, epoch). The permutation of
 * the last epoch asked for is cached in s; the result never depends on the
 * order of calls. */
typedef struct {
    uint64_t seed;
    long n;
    long epoch;     /* epoch of the cached permutation, -1 = none */
    int64_t *perm;  /* n entries */
} sampler;

pt_status sampler_init(sampler *s, uint64_t seed, long n);
/* Global sample position g = step·batch + k maps to epoch g / n, pos g % n. */
long sampler_index(sampler *s, long epoch, long pos);
void sampler_free(sampler *s);

#endif
