/* dataset.h — what the trainer reads: a classification data set (features
 * and labels) and the batches of each step, as pure functions of (seed,
 * step, micro-batch) so that stage 0 (inputs) and the last stage (labels)
 * agree without talking. */
#ifndef PT_DATASET_H
#define PT_DATASET_H

#include <stdint.h>

#include "config.h"
#include "data.h"
#include "pt_status.h"

typedef struct {
    int features, classes;
    long n_train, n_test;
    /* Fashion-MNIST: the IDX splits; synthetic: generated feature rows. */
    idx_dataset train, test;
    float *syn_train, *syn_test;
    int32_t *syn_train_labels, *syn_test_labels;
    sampler order;
    int batch, rows; /* global batch, rows per micro-batch */
} dataset;

/* Loads (or generates) the data set the config names. Collective-free: every
 * rank that calls it gets the same data. */
pt_status dataset_open(dataset *d, const config *c);
void dataset_close(dataset *d);

/* Rows × features inputs and rows labels of micro-batch mb of training step
 * `step` (0-based): samples step·batch + mb·rows + k of the shuffled order
 * (reshuffled each epoch). Either output may be NULL. */
void dataset_train_batch(dataset *d, long step, int mb, float *x, int32_t *y);

/* Test samples [first, first+rows): rows past the end repeat the last sample
 * and get label -1 (to be ignored). */
void dataset_test_batch(const dataset *d, long first, int rows, float *x, int32_t *y);

#endif
