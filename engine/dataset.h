/* dataset.h — what the trainer reads, as pure functions of (seed, step,
 * micro-batch) so that stage 0 (inputs) and the last stage (targets) agree
 * without talking.
 *
 * Three kinds: Fashion-MNIST images (one label per sample), synthetic
 * classification data of any width, and byte-level text (a context of T
 * bytes per sample, one target per position: the next byte). */
#ifndef PT_DATASET_H
#define PT_DATASET_H

#include <stdint.h>

#include "config.h"
#include "idx.h"
#include "pt_status.h"
#include "sampler.h"

#define DATA_TEXT_DIR "/usr/share/games/fortunes"
#define DATASET_TEXT_MAX (2ull << 30) /* bytes: the largest text corpus read (every rank holds it) */

typedef enum { DATASET_FASHION = 0, DATASET_SYNTHETIC, DATASET_TEXT } dataset_kind;

typedef struct {
    dataset_kind kind;
    int features; /* input floats per sample (text: T token ids) */
    int targets;  /* labels per sample (text: T) */
    int classes;  /* label range (text: 256 byte values) */
    long n_train, n_test; /* samples; text: training positions, validation contexts */
    /* Fashion-MNIST: the IDX splits */
    idx_dataset train, test;
    /* synthetic: generated rows */
    float *syn_train, *syn_test;
    int32_t *syn_train_labels, *syn_test_labels;
    /* text: the corpus bytes, training part [0, text_split), validation after */
    uint8_t *text;
    long text_len, text_split;
    long val_stride; /* bytes between validation contexts */
    double unigram_entropy; /* text: nats per byte of the training part */
    char source[CONFIG_STR_MAX + 64]; /* what was read, for the plan line */
    sampler order;
    uint64_t seed;
    int batch, rows; /* global batch, rows per micro-batch */
} dataset;

/* Loads (or generates) the data set the config names; every rank that calls
 * it gets the same data. Not collective. Errors name the file and what to do.
 * data.path must name regular files: for fashion-mnist a directory of IDX
 * files, for text a file or a directory whose regular files are read in name
 * order (hidden files, *.dat, symbolic links and sub-directories skipped; a
 * FIFO, device or socket in it is refused). Anything else (a FIFO, a device,
 * a socket) is refused before any read, and a text corpus of more than
 * DATASET_TEXT_MAX bytes is refused. */
pt_status dataset_open(dataset *d, const config *c);
void dataset_close(dataset *d);

/* Inputs (rows × features) and targets (rows × targets) of micro-batch mb of
 * training step `step` (0-based). Classification: samples step·batch +
 * mb·rows + k of the shuffled order (reshuffled each epoch). Text: contexts
 * at offsets drawn from (seed, step, mb·rows + k). Either output may be NULL. */
void dataset_train_batch(dataset *d, long step, int mb, float *x, int32_t *y);

/* Held-out samples [first, first+rows) (text: data.val_contexts validation
 * contexts spread evenly over the held-out part). Rows past the end repeat the last sample with targets -1, which
 * are ignored. */
void dataset_test_batch(const dataset *d, long first, int rows, float *x, int32_t *y);

/* A hash of the data the run reads (the loaded bytes, not the paths), as 32
 * hex digits in hex[33]: equal on every rank and every host that reads the
 * same data, whatever its path. XXH3-128 over the training and test splits
 * (synthetic data: of the generated rows). Not collective. Errors:
 * PT_ERR_NOMEM. */
pt_status dataset_fingerprint(const dataset *d, char hex[33]);

#endif
