/* rng.h — counter-based random numbers (Philox4x32-10 from Random123).
 *
 * A value is a pure function of (seed, stream, a, b, index): no state, so any
 * rank computes the same number for the same global coordinates (design
 * contract 2). Streams keep the uses apart. */
#ifndef PT_RNG_H
#define PT_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    RNG_STREAM_INIT = 1,    /* a = global layer, b = hash of parameter name */
    RNG_STREAM_DROPOUT = 2, /* a = global layer, b = step, c = micro-batch */
    RNG_STREAM_SAMPLER = 3, /* a = epoch */
    RNG_STREAM_DATA = 4,    /* a, b: free for synthetic data */
    RNG_STREAM_GENERATE = 5 /* a = step, b = sequence */
} rng_stream;

typedef struct {
    uint64_t seed;
    uint32_t stream; /* rng_stream, 8 bits */
    uint32_t a;      /* 24 bits */
    uint32_t b;
    uint32_t c;
} rng_key;

/* The Philox4x32-10 counter and key of a sequence: quad q is Philox of the
 * counter {ctr[0], ctr[1], ctr[2] | (q >> 32 & 0xffff), q & 0xffffffff}
 * under the key {k[0], k[1]}, for vectorised generators that must give
 * rng_u32x4's words (kernels.c's dropout). */
void rng_philox_words(rng_key key, uint32_t ctr[3], uint32_t k[2]);

/* 32 random bits for element `index` of the sequence named by key. */
uint32_t rng_u32(rng_key key, uint64_t index);
/* The words of elements 4·quad .. 4·quad+3 from one Philox call. */
void rng_u32x4(rng_key key, uint64_t quad, uint32_t out[4]);
/* Converts 32 random bits to a uniform in [0, 1) as rng_uniform does. */
static inline float rng_to_unit(uint32_t bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }
/* Uniform in [0, 1): 24 random bits / 2^24. */
float rng_uniform(rng_key key, uint64_t index);
/* Fills out[0..n) with uniform values in [lo, hi). */
void rng_fill_uniform(float *out, size_t n, rng_key key, float lo, float hi);
/* Fills out[0..n) with normal values N(0, std²) (Box–Muller on pairs). */
void rng_fill_normal(float *out, size_t n, rng_key key, float std);
/* A stable 32-bit hash of a name (zlib crc32), for keys. */
uint32_t rng_name_hash(const char *name);

#endif
