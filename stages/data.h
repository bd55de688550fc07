/* data.h — data sets and the sampler.
 *
 * The IDX reader loads the gzip IDX files of Fashion-MNIST (Debian package
 * dataset-fashion-mnist, /usr/share/datasets/fashion-mnist) through zlib and
 * checks magic numbers, dimensions and lengths; errors name the file and the
 * problem. The sampler is a pure function of (seed, epoch, index) so every
 * rank can tell which samples form any micro-batch without talking. */
#ifndef PT_DATA_H
#define PT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "pt_status.h"

#define DATA_FASHION_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
    long n;          /* samples */
    int rows, cols;  /* image size; features = rows·cols */
    uint8_t *images; /* n × rows × cols, row-major */
    int32_t *labels; /* n, 0..9 */
} idx_dataset;

/* Loads a pair of gzip (or plain) IDX files: images (magic 0x00000803,
 * dims n×rows×cols) and labels (magic 0x00000801, dim n). Checks magics,
 * that the two n agree, that the files hold exactly the bytes the header
 * promises, and that labels are < 10. */
pt_status idx_load(idx_dataset *ds, const char *images_path, const char *labels_path);

/* Loads Fashion-MNIST's train (train = 1) or test (train = 0) split from dir
 * (DATA_FASHION_DIR when dir is NULL or empty). The error says to install
 * dataset-fashion-mnist or set data.path when the files are missing. */
pt_status idx_load_fashion(idx_dataset *ds, const char *dir, int train);

void idx_free(idx_dataset *ds);

/* Writes sample i's pixels scaled to [0,1] (pixel/255) as floats, then
 * normalised as (x − mean)/std with Fashion-MNIST's mean 0.2860, std 0.3530. */
void idx_sample_features(const idx_dataset *ds, long i, float *out);

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
