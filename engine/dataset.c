#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "rng.h"
#include "safefile.h"

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

/* ---- text ------------------------------------------------------------- */

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

#define TEXT_INSTEAD "give a text file or a directory of text files"

/* Appends the bytes of one file to d->text: no more than the file held when
 * it was opened, and no more than DATASET_TEXT_MAX bytes in all. `corpus`
 * is data.path (the file itself or its directory). */
static pt_status append_file(dataset *d, const char *corpus, const char *path, long *cap)
{
    int fd;
    uint64_t size;
    pt_status st = safefile_open(path, "data.path", TEXT_INSTEAD, DATASET_TEXT_MAX, &fd, &size);
    if (st) return st;
    if (size > DATASET_TEXT_MAX - (uint64_t)d->text_len) {
        close(fd);
        return pt_fail(PT_ERR_INVALID,
                       "data.path %s: the text adds up to more than %llu bytes (%.0f MiB) with %s (%llu bytes): "
                       "give a smaller file or a directory holding fewer files",
                       corpus, (unsigned long long)DATASET_TEXT_MAX, DATASET_TEXT_MAX / 1048576.0, path,
                       (unsigned long long)size);
    }
    if ((uint64_t)d->text_len + size > (uint64_t)*cap) {
        uint64_t need = (uint64_t)d->text_len + size, ncap = *cap ? 2 * (uint64_t)*cap : 1 << 20;
        if (ncap < need) ncap = need;
        if (ncap > DATASET_TEXT_MAX) ncap = DATASET_TEXT_MAX;
        uint8_t *t = realloc(d->text, (size_t)ncap);
        if (!t) {
            close(fd);
            return pt_fail(PT_ERR_NOMEM, "data.path: out of memory reading %s (%llu bytes)", path,
                           (unsigned long long)size);
        }
        d->text = t;
        *cap = (long)ncap;
    }
    size_t got = 0;
    st = safefile_read(fd, path, d->text + d->text_len, (size_t)size, &got);
    close(fd);
    if (st) return pt_wrap(st, "data.path: ");
    d->text_len += (long)got; /* a file that shrank meanwhile gives what it still held */
    return PT_OK;
}

/* A file, or every regular file of a directory in name order (skipping
 * hidden files, symbolic links, sub-directories and the fortune index files
 * *.dat; a FIFO, device or socket in the directory is refused, naming it). */
static pt_status load_text(dataset *d, const config *c)
{
    const char *path = c->data_path[0] ? c->data_path : DATA_TEXT_DIR;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return pt_fail(PT_ERR_IO,
                       "data.path: cannot read %s: %s (install the Debian package fortunes for the "
                       "default corpus, or set data.path to a text file)",
                       path, strerror(errno));
    long cap = 0;
    pt_status st = PT_OK;
    int files = 0;
    if (S_ISDIR(sb.st_mode)) {
        DIR *dir = opendir(path);
        if (!dir) return pt_fail(PT_ERR_IO, "data.path: cannot list %s: %s", path, strerror(errno));
        char **names = NULL;
        size_t n = 0, ncap = 0;
        struct dirent *e;
        while ((e = readdir(dir))) {
            size_t len = strlen(e->d_name);
            if (e->d_name[0] == '.' || (len > 4 && !strcmp(e->d_name + len - 4, ".dat"))) continue;
            char full[4096];
            struct stat fs;
            snprintf(full, sizeof full, "%s/%s", path, e->d_name);
            if (lstat(full, &fs) != 0 || S_ISLNK(fs.st_mode) || S_ISDIR(fs.st_mode)) continue;
            if (!S_ISREG(fs.st_mode)) {
                st = pt_fail(PT_ERR_INVALID,
                             "data.path %s: %s is %s, not a regular file: remove it from the directory, or "
                             "set data.path to a text file or a directory of text files",
                             path, full, safefile_kind((unsigned)fs.st_mode));
                break;
            }
            if (n == ncap) {
                ncap = ncap ? 2 * ncap : 64;
                char **nn = realloc(names, ncap * sizeof *nn);
                if (!nn) {
                    st = pt_fail(PT_ERR_NOMEM, "data.path %s: out of memory listing the directory", path);
                    break;
                }
                names = nn;
            }
            if (!(names[n] = strdup(full))) {
                st = pt_fail(PT_ERR_NOMEM, "data.path %s: out of memory listing the directory", path);
                break;
            }
            n++;
        }
        closedir(dir);
        if (n) qsort(names, n, sizeof *names, by_name);
        for (size_t i = 0; i < n; i++) {
            if (!st) st = append_file(d, path, names[i], &cap);
            free(names[i]);
        }
        free(names);
        files = (int)n;
    } else {
        st = append_file(d, path, path, &cap);
        files = 1;
    }
    if (st) return st;
    long T = c->data_context;
    d->text_split = (long)((double)d->text_len * (1.0 - c->data_val_fraction));
    if (d->text_split < 2 * (T + 1) || d->text_len - d->text_split < T + 1)
        return pt_fail(PT_ERR_FORMAT,
                       "data.path %s: %ld bytes of text are too few for contexts of data.context = %ld "
                       "bytes with data.val_fraction = %g (need at least %ld training and %ld validation bytes)",
                       path, d->text_len, T, c->data_val_fraction, 2 * (T + 1), T + 1);
    double count[256] = {0};
    for (long i = 0; i < d->text_split; i++) count[d->text[i]] += 1.0;
    for (int b = 0; b < 256; b++)
        if (count[b] > 0) d->unigram_entropy -= count[b] / d->text_split * log(count[b] / d->text_split);
    d->features = d->targets = (int)T;
    d->classes = 256;
    d->n_train = d->text_split - T; /* possible context starts */
    /* validation contexts: evenly spaced over the held-out part */
    long windows = (d->text_len - d->text_split - 1) / T;
    d->n_test = windows < c->data_val_contexts ? windows : c->data_val_contexts;
    d->val_stride = windows / d->n_test * T;
    snprintf(d->source, sizeof d->source, "%s (%d file%s, %ld bytes)", path, files, files == 1 ? "" : "s",
             d->text_len);
    return PT_OK;
}

pt_status dataset_open(dataset *d, const config *c)
{
    memset(d, 0, sizeof *d);
    pt_status st;
    d->batch = c->batch_size;
    d->rows = config_micro_rows(c);
    d->seed = c->seed;
    d->targets = 1;
    if (strcmp(c->data_dataset, "synthetic") == 0) {
        d->kind = DATASET_SYNTHETIC;
        d->features = c->data_synthetic_features;
        d->classes = c->data_synthetic_classes;
        d->n_train = c->data_synthetic_samples;
        d->n_test = c->data_synthetic_samples / 4 > 0 ? c->data_synthetic_samples / 4 : 1;
        st = synth(&d->syn_train, &d->syn_train_labels, d->n_train, d->features, d->classes, c->seed, 0);
        if (!st) st = synth(&d->syn_test, &d->syn_test_labels, d->n_test, d->features, d->classes, c->seed, 1);
        snprintf(d->source, sizeof d->source, "synthetic");
    } else if (strcmp(c->data_dataset, "text") == 0) {
        d->kind = DATASET_TEXT;
        st = load_text(d, c);
    } else {
        d->kind = DATASET_FASHION;
        st = idx_load_fashion(&d->train, c->data_path, 1);
        if (!st) st = idx_load_fashion(&d->test, c->data_path, 0);
        d->features = d->train.rows * d->train.cols;
        d->classes = 10;
        d->n_train = d->train.n;
        d->n_test = d->test.n;
        snprintf(d->source, sizeof d->source, "fashion-mnist");
    }
    if (!st && d->kind != DATASET_TEXT) st = sampler_init(&d->order, c->seed, d->n_train);
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
    free(d->text);
    sampler_free(&d->order);
    memset(d, 0, sizeof *d);
}

/* Context starting at byte `off`: x = text[off, off+T), y = text[off+1, off+T]. */
static void context(const dataset *d, long off, float *x, int32_t *y)
{
    for (int t = 0; t < d->features; t++) {
        if (x) x[t] = (float)d->text[off + t];
        if (y) y[t] = d->text[off + t + 1];
    }
}

static void sample(const dataset *d, int test, long i, float *x, int32_t *y)
{
    switch (d->kind) {
    case DATASET_SYNTHETIC: {
        const float *src = (test ? d->syn_test : d->syn_train) + (size_t)i * d->features;
        if (x) memcpy(x, src, (size_t)d->features * sizeof *x);
        if (y) *y = (test ? d->syn_test_labels : d->syn_train_labels)[i];
        break;
    }
    case DATASET_FASHION: {
        const idx_dataset *s = test ? &d->test : &d->train;
        if (x) idx_sample_features(s, i, x);
        if (y) *y = s->labels[i];
        break;
    }
    case DATASET_TEXT: context(d, test ? d->text_split + i * d->val_stride : i, x, y); break;
    }
}

void dataset_train_batch(dataset *d, long step, int mb, float *x, int32_t *y)
{
    for (int k = 0; k < d->rows; k++) {
        long i;
        if (d->kind == DATASET_TEXT) {
            long j = (long)mb * d->rows + k;
            rng_key key = {d->seed, RNG_STREAM_DATA, 0xffffffu, (uint32_t)step, (uint32_t)j};
            uint64_t r = ((uint64_t)rng_u32(key, 0) << 32) | rng_u32(key, 1);
            i = (long)(r % (uint64_t)d->n_train);
        } else {
            long g = step * (long)d->batch + (long)mb * d->rows + k;
            i = sampler_index(&d->order, g / d->n_train, g % d->n_train);
        }
        sample(d, 0, i, x ? x + (size_t)k * d->features : NULL, y ? y + (size_t)k * d->targets : NULL);
    }
}

void dataset_test_batch(const dataset *d, long first, int rows, float *x, int32_t *y)
{
    for (int k = 0; k < rows; k++) {
        long i = first + k;
        int valid = i < d->n_test;
        int32_t *yk = y ? y + (size_t)k * d->targets : NULL;
        sample(d, 1, valid ? i : d->n_test - 1, x ? x + (size_t)k * d->features : NULL, yk);
        if (yk && !valid)
            for (int t = 0; t < d->targets; t++) yk[t] = -1;
    }
}

pt_status dataset_fingerprint(const dataset *d, char hex[33])
{
    XXH3_state_t *h = XXH3_createState();
    if (!h || XXH3_128bits_reset(h) != XXH_OK) {
        XXH3_freeState(h);
        return pt_fail(PT_ERR_NOMEM, "out of memory hashing the data set");
    }
    XXH3_128bits_update(h, &d->kind, sizeof d->kind);
    if (d->kind == DATASET_TEXT) {
        XXH3_128bits_update(h, d->text, (size_t)d->text_len);
    } else if (d->kind == DATASET_FASHION) {
        const idx_dataset *s[2] = {&d->train, &d->test};
        for (int i = 0; i < 2; i++) {
            XXH3_128bits_update(h, s[i]->images, (size_t)s[i]->n * (size_t)s[i]->rows * (size_t)s[i]->cols);
            XXH3_128bits_update(h, s[i]->labels, (size_t)s[i]->n * sizeof *s[i]->labels);
        }
    } else {
        XXH3_128bits_update(h, d->syn_train, (size_t)d->n_train * (size_t)d->features * sizeof(float));
        XXH3_128bits_update(h, d->syn_test, (size_t)d->n_test * (size_t)d->features * sizeof(float));
        XXH3_128bits_update(h, d->syn_train_labels, (size_t)d->n_train * sizeof(int32_t));
        XXH3_128bits_update(h, d->syn_test_labels, (size_t)d->n_test * sizeof(int32_t));
    }
    XXH128_hash_t v = XXH3_128bits_digest(h);
    XXH3_freeState(h);
    snprintf(hex, 33, "%016llx%016llx", (unsigned long long)v.high64, (unsigned long long)v.low64);
    return PT_OK;
}
