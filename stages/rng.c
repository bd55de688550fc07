#include "rng.h"

#include <math.h>
#include <string.h>
#include <zlib.h>

#include <Random123/philox.h>

/* Counter words: [stream:8 | a:24], b, [c:16 | index_hi:16], index_lo.
 * One Philox call yields four 32-bit words: elements 4k .. 4k+3. */
void rng_philox_words(rng_key key, uint32_t ctr[3], uint32_t k[2])
{
    ctr[0] = (key.stream << 24) | (key.a & 0xffffffu);
    ctr[1] = key.b;
    ctr[2] = key.c << 16;
    k[0] = (uint32_t)key.seed;
    k[1] = (uint32_t)(key.seed >> 32);
}

static philox4x32_ctr_t block(rng_key key, uint64_t quad)
{
    uint32_t w[3], kw[2];
    rng_philox_words(key, w, kw);
    philox4x32_ctr_t ctr = {{w[0], w[1], w[2] | (uint32_t)((quad >> 32) & 0xffffu), (uint32_t)quad}};
    philox4x32_key_t k = {{kw[0], kw[1]}};
    return philox4x32(ctr, k);
}

uint32_t rng_u32(rng_key key, uint64_t index)
{
    return block(key, index >> 2).v[index & 3];
}

void rng_u32x4(rng_key key, uint64_t quad, uint32_t out[4])
{
    philox4x32_ctr_t r = block(key, quad);
    for (int j = 0; j < 4; j++) out[j] = r.v[j];
}

float rng_uniform(rng_key key, uint64_t index) { return rng_to_unit(rng_u32(key, index)); }

void rng_fill_uniform(float *out, size_t n, rng_key key, float lo, float hi)
{
    for (size_t q = 0; q * 4 < n; q++) {
        philox4x32_ctr_t r = block(key, q);
        for (size_t j = 0; j < 4 && q * 4 + j < n; j++)
            out[q * 4 + j] = lo + (hi - lo) * rng_to_unit(r.v[j]);
    }
}

void rng_fill_normal(float *out, size_t n, rng_key key, float std)
{
    const double two_pi = 6.283185307179586;
    for (size_t q = 0; q * 4 < n; q++) {
        philox4x32_ctr_t r = block(key, q);
        for (size_t j = 0; j < 4; j += 2) {
            /* u1 in (0, 1] so the log is finite */
            double u1 = ((double)(r.v[j] >> 8) + 1.0) / 16777216.0;
            double u2 = (double)(r.v[j + 1] >> 8) / 16777216.0;
            double rad = sqrt(-2.0 * log(u1));
            size_t i = q * 4 + j;
            if (i < n) out[i] = (float)(std * rad * cos(two_pi * u2));
            if (i + 1 < n) out[i + 1] = (float)(std * rad * sin(two_pi * u2));
        }
    }
}

uint32_t rng_name_hash(const char *name)
{
    return (uint32_t)crc32(0L, (const Bytef *)name, (uInt)strlen(name));
}
