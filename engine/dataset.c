#include "dataset.h"

#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* Synthetic classification data: each sample is N(0,1) noise keyed on (seed,
 * split, index) plus a class-dependent offset of +2 on one feature per class,
 * so the task is learnable; labels are uniform. */
static pt_status synth(float **x, int32_t **y, long n, int f, int classes, uint64_t seed, int split)
{
    *x = malloc((size_t)n * f * sizeof **x);
    *y = malloc((size_t)n * sizeof **y);
    if (!*x || !*y) return pt_fail(PT_ERR_NOMEM, "synthetic data set: out of memory for %ld × %d floats", n, f);
    for (long i = 0; i < n; i++) {
        rng_key k = {seed, RNG_STREAM_DATA, (uint32_t)split, (uint32_t)i, (uint32_t)(i >> 32)};
        float *row = *x + (size_t)i * f;
        rng_fill_normal(row, (size_t)f, k, 1.0f);
        int32_t label = (int32_t)(rng_u32(k, (uint64_t)f + 7) % (uint32_t)classes);
        row[(label * 7919) % f] += 2.0f;
        (*y)[i] = label;
    }
    return PT_OK;
}

pt_status dataset_open(dataset *d, const config *c)
{
    memset(d, 0, sizeof *d);
    pt_status st;
    d->batch = c->batch_size;
    d->rows = config_micro_rows(c);
    if (strcmp(c->data_dataset, "synthetic") == 0) {
        d->features = c->data_synthetic_features;
        d->classes = c->data_synthetic_classes;
        d->n_train = c->data_synthetic_samples;
        d->n_test = c->data_synthetic_samples / 4 > 0 ? c->data_synthetic_samples / 4 : 1;
        st = synth(&d->syn_train, &d->syn_train_labels, d->n_train, d->features, d->classes, c->seed, 0);
        if (!st) st = synth(&d->syn_test, &d->syn_test_labels, d->n_test, d->features, d->classes, c->seed, 1);
    } else {
        st = idx_load_fashion(&d->train, c->data_path, 1);
        if (!st) st = idx_load_fashion(&d->test, c->data_path, 0);
        d->features = d->train.rows * d->train.cols;
        d->classes = 10;
        d->n_train = d->train.n;
        d->n_test = d->test.n;
    }
    if (!st) st = sampler_init(&d->order, c->seed, d->n_train);
    if (st) dataset_close(d);
    return st;
}

void dataset_close(dataset *d)
{
    idx_free(&d->train);
    idx_free(&d->test);
    free(d->syn_train);
    free(d->syn_test);
    free(d->syn_train_labels);
    free(d->syn_test_labels);
    sampler_free(&d->order);
    memset(d, 0, sizeof *d);
}

static void sample(const dataset *d, int test, long i, float *x, int32_t *y)
{
    if (d->syn_train) {
        const float *src = (test ? d->syn_test : d->syn_train) + (size_t)i * d->features;
        if (x) memcpy(x, src, (size_t)d->features * sizeof *x);
        if (y) *y = (test ? d->syn_test_labels : d->syn_train_labels)[i];
    } else {
        const idx_dataset *s = test ? &d->test : &d->train;
        if (x) idx_sample_features(s, i, x);
        if (y) *y = s->labels[i];
    }
}

void dataset_train_batch(dataset *d, long step, int mb, float *x, int32_t *y)
{
    for (int k = 0; k < d->rows; k++) {
        long g = step * (long)d->batch + (long)mb * d->rows + k;
        long i = sampler_index(&d->order, g / d->n_train, g % d->n_train);
        sample(d, 0, i, x ? x + (size_t)k * d->features : NULL, y ? y + k : NULL);
    }
}

void dataset_test_batch(const dataset *d, long first, int rows, float *x, int32_t *y)
{
    for (int k = 0; k < rows; k++) {
        long i = first + k;
        int valid = i < d->n_test;
        sample(d, 1, valid ? i : d->n_test - 1, x ? x + (size_t)k * d->features : NULL, y ? y + k : NULL);
        if (y && !valid) y[k] = -1;
    }
}
