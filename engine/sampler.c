/* sampler.c — the epoch sampler. */
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

#include "rng.h"

pt_status sampler_init(sampler *s, uint64_t seed, long n)
{
    if (!s) return pt_fail(PT_ERR_INVALID, "sampler_init: sampler is NULL");
    memset(s, 0, sizeof *s);
    s->epoch = -1;
    if (n < 1 || (unsigned long)n > UINT32_MAX)
        return pt_fail(PT_ERR_INVALID, "sampler_init: sample count %ld out of range (expected 1..%lu)", n,
                       (unsigned long)UINT32_MAX);
    s->perm = malloc((size_t)n * sizeof *s->perm);
    if (!s->perm) return pt_fail(PT_ERR_NOMEM, "sampler_init: cannot allocate a permutation of %ld samples", n);
    s->seed = seed;
    s->n = n;
    return PT_OK;
}

/* Fisher–Yates over 0..n-1: for i = n-1 .. 1 swap perm[i] with perm[j],
 * j = ⌊r·(i+1) / 2^32⌋ for r = rng_u32(key, i); key = (seed, SAMPLER,
 * a = epoch bits 0..23, b = epoch bits 24..55). */
static void sampler_shuffle(sampler *s, long epoch)
{
    rng_key key = {.seed = s->seed,
                   .stream = RNG_STREAM_SAMPLER,
                   .a = (uint32_t)((uint64_t)epoch & 0xffffffu),
                   .b = (uint32_t)((uint64_t)epoch >> 24),
                   .c = 0};
    int64_t *p = s->perm;
    for (long i = 0; i < s->n; i++) p[i] = i;
    for (long i = s->n - 1; i > 0; i--) {
        uint32_t r = rng_u32(key, (uint64_t)i);
        long j = (long)(((uint64_t)r * (uint64_t)(i + 1)) >> 32);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    s->epoch = epoch;
}

/* Returns -1 when the sampler is not initialised, epoch < 0 or pos is not in 0..n-1. */
long sampler_index(sampler *s, long epoch, long pos)
{
    if (!s || !s->perm || epoch < 0 || pos < 0 || pos >= s->n) return -1;
    if (s->epoch != epoch) sampler_shuffle(s, epoch);
    return (long)s->perm[pos];
}

void sampler_free(sampler *s)
{
    if (!s) return;
    free(s->perm);
    memset(s, 0, sizeof *s);
    s->epoch = -1;
}
