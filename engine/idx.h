/* idx.h — the IDX reader: the gzip IDX files of Fashion-MNIST (Debian
 * package dataset-fashion-mnist, /usr/share/datasets/fashion-mnist) read
 * through zlib, with magic numbers, dimensions and lengths checked; errors
 * name the file and the problem. No MPI. */
#ifndef PT_IDX_H
#define PT_IDX_H

#include <stdint.h>

#include "pt_status.h"

#define IDX_FASHION_DIR "/usr/share/datasets/fashion-mnist"
#define IDX_MAX_FILE (4ull << 30) /* bytes: the largest IDX file (as stored) read */

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
 * at most IDX_MAX_FILE bytes (see safefile_open); no more than the
 * size it had at open is read. Not collective. */
pt_status idx_load(idx_dataset *ds, const char *images_path, const char *labels_path);

/* Loads Fashion-MNIST's train (train = 1) or test (train = 0) split from dir
 * (IDX_FASHION_DIR when dir is NULL or empty). The error says to install
 * dataset-fashion-mnist or set data.path when the files are missing, and
 * names data.path when dir exists but is not a directory. */
pt_status idx_load_fashion(idx_dataset *ds, const char *dir, int train);

void idx_free(idx_dataset *ds);

/* Writes sample i's pixels scaled to [0,1] (pixel/255) as floats, then
 * normalised as (x − mean)/std with Fashion-MNIST's mean 0.2860, std 0.3530. */
void idx_sample_features(const idx_dataset *ds, long i, float *out);

#endif
