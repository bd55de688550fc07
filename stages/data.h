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
#define DATA_IDX_MAX_FILE (4ull << 30) /* bytes: the largest IDX file (as stored) read */

/* ---- reading files without surprises ------------------------------------
 * Every file pipetrain reads goes through data_open_regular: anything that
 * is not a regular file (a FIFO, a device, a socket, a directory) is refused
 * without blocking on it, a file over a bound is refused, and the reader
 * reads no more than the size the file had at open. */

/* What the stat mode `mode` says a file is, for messages: "a regular file",
 * "a directory", "a FIFO", "a character device", "a block device",
 * "a socket", "a symbolic link" or "a special file". */
const char *data_file_kind(unsigned mode);

/* Opens `path` for reading (not collective). `what` names it in messages
 * ("data.path", "config file", "IDX images file") and `instead` says what to
 * give instead of something that is not a regular file. Errors (nothing is
 * left open):
 *   PT_ERR_IO       "cannot open <what> <path>: <reason>"
 *   PT_ERR_INVALID  "<what> <path> is a FIFO, not a regular file: <instead>"
 *                   (without opening it, so a FIFO never blocks)
 *   PT_ERR_INVALID  "<what> <path> is N bytes, more than the M bytes ..." when
 *                   the file is larger than max_bytes.
 * On success *fd is a descriptor with blocking reads that the caller closes
 * and *size the file's size in bytes at open: read no more than that. */
pt_status data_open_regular(const char *path, const char *what, const char *instead, uint64_t max_bytes,
                            int *fd, uint64_t *size);

/* Reads up to len bytes of fd into buf (short reads and EINTR retried);
 * *got says how many, fewer than len only at the end of the file. A read
 * error is PT_ERR_IO "cannot read <path>: <reason>". Not collective. */
pt_status data_read_fd(int fd, const char *path, void *buf, size_t len, size_t *got);

typedef struct {
    long n;          /* samples */
    int rows, cols;  /* image size; features = rows·cols */
    uint8_t *images; /* n × rows × cols, row-major */
    int32_t *labels; /* n, 0..9 */
} idx_dataset;

/* Loads a pair of gzip (or plain) IDX files: images (magic 0x00000803,
 * dims n×rows×cols) and labels (magic 0x00000801, dim n). Checks magics,
 * that the two n agree, that the files hold exactly the bytes the header
 * promises, and that labels are < 10. Each file must be a regular file of
 * at most DATA_IDX_MAX_FILE bytes (see data_open_regular); no more than the
 * size it had at open is read. Not collective. */
pt_status idx_load(idx_dataset *ds, const char *images_path, const char *labels_path);

/* Loads Fashion-MNIST's train (train = 1) or test (train = 0) split from dir
 * (DATA_FASHION_DIR when dir is NULL or empty). The error says to install
 * dataset-fashion-mnist or set data.path when the files are missing, and
 * names data.path when dir exists but is not a directory. */
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
