/* test_data.c — the IDX reader (real Fashion-MNIST and defective files made
 * here), the sampler and reading files without surprises (safefile). */
#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "dataset.h"
#include "idx.h"
#include "safefile.h"
#include "sampler.h"

/* ---- helpers ----------------------------------------------------------- */

static char tmpdir[64];

static void tmp_setup(void)
{
    strcpy(tmpdir, "/tmp/pt_test_data_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp failed");
}

static void tmp_teardown(void)
{
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

static const char *tpath(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void write_gz(const char *path, const uint8_t *bytes, size_t len)
{
    gzFile f = gzopen(path, "wb");
    cr_assert_not_null(f, "gzopen(%s) for writing failed", path);
    if (len) cr_assert_eq(gzwrite(f, bytes, (unsigned)len), (int)len);
    cr_assert_eq(gzclose(f), Z_OK);
}

static void write_plain(const char *path, const uint8_t *bytes, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* An IDX images file image: header (magic, n, rows, cols) + npix pixel bytes
 * (pixel k = (37k + 11) mod 256), npix may differ from n·rows·cols. */
static uint8_t *make_images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, size_t npix, size_t *len)
{
    uint8_t *b = malloc(16 + npix);
    cr_assert_not_null(b);
    put_be32(b, magic);
    put_be32(b + 4, n);
    put_be32(b + 8, rows);
    put_be32(b + 12, cols);
    for (size_t k = 0; k < npix; k++) b[16 + k] = (uint8_t)((37 * k + 11) & 0xff);
    *len = 16 + npix;
    return b;
}

/* An IDX labels file image with nlab labels, label i = (3i) mod 10. */
static uint8_t *make_labels(uint32_t n, size_t nlab, size_t *len)
{
    uint8_t *b = malloc(8 + nlab);
    cr_assert_not_null(b);
    put_be32(b, 0x00000801u);
    put_be32(b + 4, n);
    for (size_t i = 0; i < nlab; i++) b[8 + i] = (uint8_t)((3 * i) % 10);
    *len = 8 + nlab;
    return b;
}

/* The small good pair: 5 images of 3×4 in good-images.gz / good-labels.gz. */
enum { GN = 5, GR = 3, GC = 4 };

static void write_good_pair(void)
{
    size_t li, ll;
    uint8_t *im = make_images(0x00000803u, GN, GR, GC, GN * GR * GC, &li);
    uint8_t *lb = make_labels(GN, GN, &ll);
    write_gz(tpath("good-images.gz"), im, li);
    write_gz(tpath("good-labels.gz"), lb, ll);
    free(im);
    free(lb);
}

/* Loads (images, labels) expecting failure `want`; checks that the dataset
 * is left empty and the message names `file` and contains `word`. */
static void expect_fail(const char *images, const char *labels, pt_status want, const char *file, const char *word)
{
    idx_dataset ds;
    pt_clear_error();
    pt_status st = idx_load(&ds, images, labels);
    const char *msg = pt_last_error();
    cr_log_info("%s: %s", pt_status_str(st), msg);
    cr_assert_eq(st, want, "status %s (%s), expected %s", pt_status_str(st), msg, pt_status_str(want));
    cr_assert_null(ds.images, "images left allocated after failure");
    cr_assert_null(ds.labels, "labels left allocated after failure");
    cr_assert_eq(ds.n, 0);
    cr_assert_not_null(strstr(msg, file), "message does not name %s: %s", file, msg);
    cr_assert_not_null(strstr(msg, word), "message lacks \"%s\": %s", word, msg);
}

/* ---- real Fashion-MNIST ------------------------------------------------ */

static int have_fashion(void)
{
    struct stat sb;
    return stat(IDX_FASHION_DIR "/train-images-idx3-ubyte.gz", &sb) == 0;
}

Test(data_fashion, train_split)
{
    if (!have_fashion()) cr_skip_test("%s is absent (package dataset-fashion-mnist)", IDX_FASHION_DIR);
    idx_dataset ds;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pt_status st = idx_load_fashion(&ds, NULL, 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_eq(st, PT_OK, "%s", pt_last_error());
    cr_log_info("loaded 60000 train images in %.3f s",
                (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    cr_assert_eq(ds.n, 60000);
    cr_assert_eq(ds.rows, 28);
    cr_assert_eq(ds.cols, 28);

    /* every label in 0..9; Fashion-MNIST's train split is balanced: 6000 per class */
    long count[10] = {0};
    for (long i = 0; i < ds.n; i++) {
        cr_assert(ds.labels[i] >= 0 && ds.labels[i] <= 9, "label %d at %ld", ds.labels[i], i);
        count[ds.labels[i]]++;
    }
    for (int c = 0; c < 10; c++) cr_assert_eq(count[c], 6000, "class %d has %ld samples", c, count[c]);
    /* the published first labels: ankle boot, T-shirt, T-shirt, dress */
    cr_assert_eq(ds.labels[0], 9);
    cr_assert_eq(ds.labels[1], 0);
    cr_assert_eq(ds.labels[3], 3);

    /* the normalisation constants are the data's own: mean 0.2860, std 0.3530
     * of pixel/255 over all 47 040 000 pixels (true values 0.28604, 0.35302) */
    double s = 0, s2 = 0;
    size_t np = (size_t)ds.n * 784;
    for (size_t k = 0; k < np; k++) {
        double x = ds.images[k] / 255.0;
        s += x;
        s2 += x * x;
    }
    double mean = s / (double)np, sd = sqrt(s2 / (double)np - mean * mean);
    cr_assert(fabs(mean - 0.2860) < 1e-4, "pixel mean %.6f", mean);
    cr_assert(fabs(sd - 0.3530) < 1e-4, "pixel std %.6f", sd);

    /* normalised features of sample 0 match the formula to float rounding
     * (|err| ≤ 1e-6 for values of magnitude ≤ 2.03) */
    float feat[784];
    idx_sample_features(&ds, 0, feat);
    for (int k = 0; k < 784; k++) {
        double want = (ds.images[k] / 255.0 - 0.2860) / 0.3530;
        cr_assert(fabs(feat[k] - want) < 1e-6, "feature %d: %.8f vs %.8f", k, feat[k], want);
    }
    idx_free(&ds);
    cr_assert_null(ds.images);
}

Test(data_fashion, test_split)
{
    if (!have_fashion()) cr_skip_test("%s is absent (package dataset-fashion-mnist)", IDX_FASHION_DIR);
    idx_dataset ds;
    cr_assert_eq(idx_load_fashion(&ds, "", 0), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ds.n, 10000);
    cr_assert_eq(ds.rows, 28);
    cr_assert_eq(ds.cols, 28);
    long count[10] = {0};
    for (long i = 0; i < ds.n; i++) {
        cr_assert(ds.labels[i] >= 0 && ds.labels[i] <= 9);
        count[ds.labels[i]]++;
    }
    for (int c = 0; c < 10; c++) cr_assert_eq(count[c], 1000, "class %d has %ld samples", c, count[c]);
    cr_assert_eq(ds.labels[0], 9);
    cr_assert_eq(ds.labels[1], 2);
    idx_free(&ds);
}

TestSuite(data_idx, .init = tmp_setup, .fini = tmp_teardown);

Test(data_idx, missing_fashion_dir_says_how_to_get_it)
{
    idx_dataset ds;
    const char *dir = tpath("no-such-dir");
    cr_assert_eq(idx_load_fashion(&ds, dir, 1), PT_ERR_IO);
    const char *msg = pt_last_error();
    cr_assert_not_null(strstr(msg, "no-such-dir/train-images-idx3-ubyte.gz"), "%s", msg);
    cr_assert_not_null(strstr(msg, "No such file"), "%s", msg);
    cr_assert_not_null(strstr(msg, "dataset-fashion-mnist"), "%s", msg);
    cr_assert_not_null(strstr(msg, "data.path"), "%s", msg);
    cr_assert_null(ds.images);
}

/* ---- files made here --------------------------------------------------- */

Test(data_idx, good_pair_reads_back_exactly)
{
    write_good_pair();
    idx_dataset ds;
    cr_assert_eq(idx_load(&ds, tpath("good-images.gz"), tpath("good-labels.gz")), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ds.n, GN);
    cr_assert_eq(ds.rows, GR);
    cr_assert_eq(ds.cols, GC);
    for (size_t k = 0; k < GN * GR * GC; k++)
        cr_assert_eq(ds.images[k], (uint8_t)((37 * k + 11) & 0xff), "pixel %zu", k);
    for (long i = 0; i < GN; i++) cr_assert_eq(ds.labels[i], (int32_t)((3 * i) % 10), "label %ld", i);

    /* features of sample 2: (p/255 − 0.2860)/0.3530 within 1e-6 */
    float feat[GR * GC];
    idx_sample_features(&ds, 2, feat);
    for (int k = 0; k < GR * GC; k++) {
        double p = (double)((37 * (2 * GR * GC + k) + 11) & 0xff);
        cr_assert(fabs(feat[k] - (p / 255.0 - 0.2860) / 0.3530) < 1e-6, "feature %d = %f", k, feat[k]);
    }
    idx_free(&ds);
    cr_assert_null(ds.images);
    cr_assert_null(ds.labels);
    cr_assert_eq(ds.n, 0);
}

Test(data_idx, uncompressed_files_read_too)
{
    size_t li, ll;
    uint8_t *im = make_images(0x00000803u, GN, GR, GC, GN * GR * GC, &li);
    uint8_t *lb = make_labels(GN, GN, &ll);
    write_plain(tpath("plain-images"), im, li);
    write_plain(tpath("plain-labels"), lb, ll);
    idx_dataset ds;
    cr_assert_eq(idx_load(&ds, tpath("plain-images"), tpath("plain-labels")), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ds.n, GN);
    cr_assert_eq(memcmp(ds.images, im + 16, GN * GR * GC), 0);
    cr_assert_eq(ds.labels[GN - 1], (int32_t)((3 * (GN - 1)) % 10));
    idx_free(&ds);
    free(im);
    free(lb);
}

Test(data_idx, bad_magic)
{
    write_good_pair();
    size_t len;
    uint8_t *im = make_images(0x00000804u, GN, GR, GC, GN * GR * GC, &len);
    write_gz(tpath("magic-images.gz"), im, len);
    free(im);
    expect_fail(tpath("magic-images.gz"), tpath("good-labels.gz"), PT_ERR_FORMAT, "magic-images.gz", "magic");
    cr_assert_not_null(strstr(pt_last_error(), "0x00000803"), "%s", pt_last_error());
    cr_assert_not_null(strstr(pt_last_error(), "0x00000804"), "%s", pt_last_error());
    /* images and labels swapped: each has the other's magic */
    expect_fail(tpath("good-labels.gz"), tpath("good-images.gz"), PT_ERR_FORMAT, "good-labels.gz", "magic");
}

Test(data_idx, implausible_dimensions)
{
    write_good_pair();
    size_t len;
    uint8_t *im = make_images(0x00000803u, GN, 2000, GC, 0, &len);
    write_gz(tpath("wide-images.gz"), im, len);
    free(im);
    expect_fail(tpath("wide-images.gz"), tpath("good-labels.gz"), PT_ERR_FORMAT, "wide-images.gz", "dimensions");
    im = make_images(0x00000803u, 0, GR, GC, 0, &len);
    write_gz(tpath("empty-images.gz"), im, len);
    free(im);
    expect_fail(tpath("empty-images.gz"), tpath("good-labels.gz"), PT_ERR_FORMAT, "empty-images.gz", "dimensions");
}

Test(data_idx, truncated_pixel_data)
{
    write_good_pair();
    size_t len;
    uint8_t *im = make_images(0x00000803u, GN, GR, GC, GN * GR * GC - 10, &len);
    write_gz(tpath("short-images.gz"), im, len);
    free(im);
    expect_fail(tpath("short-images.gz"), tpath("good-labels.gz"), PT_ERR_FORMAT, "short-images.gz", "truncated");
    cr_assert_not_null(strstr(pt_last_error(), "expected 60 bytes of pixel data, found 50"), "%s", pt_last_error());
}

Test(data_idx, header_promising_huge_payload_is_truncated_not_allocated)
{
    /* 99 999 999 × 1024 × 1024 bytes promised, 60 present */
    write_good_pair();
    size_t len;
    uint8_t *im = make_images(0x00000803u, 99999999u, 1024, 1024, GN * GR * GC, &len);
    write_gz(tpath("huge-images.gz"), im, len);
    free(im);
    expect_fail(tpath("huge-images.gz"), tpath("good-labels.gz"), PT_ERR_FORMAT, "huge-images.gz", "truncated");
}

Test(data_idx, truncated_header)
{
    write_good_pair();
    size_t len;
    uint8_t *im = make_images(0x00000803u, GN, GR, GC, 0, &len);
    write_gz(tpath("hdr-images.gz"), im, 10);
    free(im);
    expect_fail(tpath("hdr-images.gz"), tpath("good-labels.gz"), PT_ERR_FORMAT, "hdr-images.gz", "truncated");
    cr_assert_not_null(strstr(pt_last_error(), "header"), "%s", pt_last_error());
    /* an empty file */
    write_gz(tpath("empty.gz"), NULL, 0);
    expect_fail(tpath("good-images.gz"), tpath("empty.gz"), PT_ERR_FORMAT, "empty.gz", "truncated");
}

Test(data_idx, trailing_garbage)
{
    write_good_pair();
    size_t len;
    uint8_t *im = make_images(0x00000803u, GN, GR, GC, GN * GR * GC + 7, &len);
    write_gz(tpath("long-images.gz"), im, len);
    write_plain(tpath("long-images.raw"), im, len);
    free(im);
    expect_fail(tpath("long-images.gz"), tpath("good-labels.gz"), PT_ERR_FORMAT, "long-images.gz", "trailing");
    cr_assert_not_null(strstr(pt_last_error(), "7 extra"), "%s", pt_last_error());
    expect_fail(tpath("long-images.raw"), tpath("good-labels.gz"), PT_ERR_FORMAT, "long-images.raw", "trailing");
}

Test(data_idx, label_count_differs_from_image_count)
{
    write_good_pair();
    size_t len;
    uint8_t *lb = make_labels(GN - 1, GN - 1, &len);
    write_gz(tpath("four-labels.gz"), lb, len);
    free(lb);
    expect_fail(tpath("good-images.gz"), tpath("four-labels.gz"), PT_ERR_MISMATCH, "four-labels.gz", "4 labels");
    cr_assert_not_null(strstr(pt_last_error(), "good-images.gz"), "%s", pt_last_error());
    cr_assert_not_null(strstr(pt_last_error(), "5 images"), "%s", pt_last_error());
}

Test(data_idx, label_out_of_range)
{
    write_good_pair();
    size_t len;
    uint8_t *lb = make_labels(GN, GN, &len);
    lb[8 + 3] = 12;
    write_gz(tpath("bad-labels.gz"), lb, len);
    free(lb);
    expect_fail(tpath("good-images.gz"), tpath("bad-labels.gz"), PT_ERR_FORMAT, "bad-labels.gz", "label 12");
    cr_assert_not_null(strstr(pt_last_error(), "index 3"), "%s", pt_last_error());
}

Test(data_idx, corrupted_gzip_stream)
{
    /* 64 images of 28×28 with pseudo-random pixels: a compressed stream of
     * ~50 KB; 16 bytes in its middle are inverted */
    write_good_pair();
    enum { N = 64, F = 28 * 28 };
    size_t len;
    uint8_t *im = make_images(0x00000803u, N, 28, 28, N * F, &len);
    uint32_t x = 12345;
    for (size_t k = 16; k < len; k++) {
        x = x * 1664525u + 1013904223u;
        im[k] = (uint8_t)(x >> 24);
    }
    uint8_t *lb = make_labels(N, N, &(size_t){0});
    write_gz(tpath("noise-images.gz"), im, len);
    write_gz(tpath("noise-labels.gz"), lb, 8 + N);

    /* the intact files load */
    idx_dataset ds;
    cr_assert_eq(idx_load(&ds, tpath("noise-images.gz"), tpath("noise-labels.gz")), PT_OK, "%s", pt_last_error());
    cr_assert_eq(memcmp(ds.images, im + 16, N * F), 0);
    idx_free(&ds);
    free(im);

    FILE *f = fopen(tpath("noise-images.gz"), "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    cr_assert_gt(size, 10000);
    uint8_t mid[16];
    cr_assert_eq(fseek(f, size / 2, SEEK_SET), 0);
    cr_assert_eq(fread(mid, 1, sizeof mid, f), sizeof mid);
    for (size_t k = 0; k < sizeof mid; k++) mid[k] ^= 0xff;
    cr_assert_eq(fseek(f, size / 2, SEEK_SET), 0);
    cr_assert_eq(fwrite(mid, 1, sizeof mid, f), sizeof mid);
    cr_assert_eq(fclose(f), 0);

    expect_fail(tpath("noise-images.gz"), tpath("noise-labels.gz"), PT_ERR_FORMAT, "noise-images.gz", "gzip");

    /* the compressed stream cut in half (the gzip trailer is gone) */
    cr_assert_eq(truncate(tpath("noise-images.gz"), size / 2), 0);
    expect_fail(tpath("noise-images.gz"), tpath("noise-labels.gz"), PT_ERR_FORMAT, "noise-images.gz", "unexpected end");
    free(lb);
}

Test(data_idx, missing_file)
{
    write_good_pair();
    expect_fail(tpath("good-images.gz"), tpath("absent-labels.gz"), PT_ERR_IO, "absent-labels.gz", "No such file");
    expect_fail(tpath("absent-images.gz"), tpath("good-labels.gz"), PT_ERR_IO, "absent-images.gz", "cannot open");
}

/* ---- paths that are not regular files ---------------------------------- */

/* Each of these would block forever (a FIFO) or read without end (a device)
 * if opened and read: a timeout fails the test instead of hanging it. */

Test(data_idx, file_kinds_are_named)
{
    cr_expect_str_eq(safefile_kind(S_IFREG | 0644), "a regular file");
    cr_expect_str_eq(safefile_kind(S_IFDIR | 0755), "a directory");
    cr_expect_str_eq(safefile_kind(S_IFIFO | 0600), "a FIFO");
    cr_expect_str_eq(safefile_kind(S_IFCHR | 0666), "a character device");
    cr_expect_str_eq(safefile_kind(S_IFBLK | 0660), "a block device");
    cr_expect_str_eq(safefile_kind(S_IFSOCK | 0777), "a socket");
    cr_expect_str_eq(safefile_kind(S_IFLNK | 0777), "a symbolic link");
}

Test(data_idx, open_regular_refuses_other_kinds_and_large_files, .timeout = 20)
{
    int fd = 7;
    uint64_t size = 7;
    cr_assert_eq(mkfifo(tpath("pipe"), 0600), 0);
    cr_assert_eq(safefile_open(tpath("pipe"), "data.path", "give a file", 100, &fd, &size), PT_ERR_INVALID);
    cr_expect_eq(fd, -1);
    const char *msg = pt_last_error();
    cr_expect_not_null(strstr(msg, "data.path"), "%s", msg);
    cr_expect_not_null(strstr(msg, tpath("pipe")), "%s", msg);
    cr_expect_not_null(strstr(msg, "is a FIFO, not a regular file: give a file"), "%s", msg);
    cr_assert_eq(safefile_open(tmpdir, "data.path", "give a file", 100, &fd, &size), PT_ERR_INVALID);
    cr_expect_not_null(strstr(pt_last_error(), "is a directory"), "%s", pt_last_error());
    cr_assert_eq(safefile_open("/dev/zero", "data.path", "give a file", 100, &fd, &size), PT_ERR_INVALID);
    cr_expect_not_null(strstr(pt_last_error(), "/dev/zero is a character device"), "%s", pt_last_error());
    cr_assert_eq(safefile_open(tpath("absent"), "data.path", "give a file", 100, &fd, &size), PT_ERR_IO);
    cr_expect_not_null(strstr(pt_last_error(), "cannot open data.path"), "%s", pt_last_error());

    /* the size bound, and reads stop at the size the file had when opened */
    write_plain(tpath("ten"), (const uint8_t *)"0123456789", 10);
    cr_assert_eq(safefile_open(tpath("ten"), "data.path", "give a file", 9, &fd, &size), PT_ERR_INVALID);
    cr_expect_not_null(strstr(pt_last_error(), "is 10 bytes, more than the 9 bytes"), "%s", pt_last_error());
    cr_assert_eq(safefile_open(tpath("ten"), "data.path", "give a file", 10, &fd, &size), PT_OK, "%s",
                 pt_last_error());
    cr_assert_eq(size, 10);
    FILE *more = fopen(tpath("ten"), "ab");
    cr_assert_not_null(more);
    cr_assert_eq(fwrite("abcdef", 1, 6, more), 6);
    cr_assert_eq(fclose(more), 0);
    char buf[64];
    size_t got = 0;
    cr_assert_eq(safefile_read(fd, tpath("ten"), buf, (size_t)size, &got), PT_OK, "%s", pt_last_error());
    cr_expect_eq(got, 10);
    cr_expect_eq(memcmp(buf, "0123456789", 10), 0);
    close(fd);
}

Test(data_idx, idx_file_that_is_not_a_regular_file, .timeout = 20)
{
    write_good_pair();
    cr_assert_eq(mkfifo(tpath("fifo-images.gz"), 0600), 0);
    expect_fail(tpath("fifo-images.gz"), tpath("good-labels.gz"), PT_ERR_INVALID, "fifo-images.gz",
                "IDX images file");
    cr_expect_not_null(strstr(pt_last_error(), "is a FIFO, not a regular file"), "%s", pt_last_error());
    expect_fail(tpath("good-images.gz"), tpath("fifo-images.gz"), PT_ERR_INVALID, "fifo-images.gz",
                "IDX labels file");
    expect_fail(tmpdir, tpath("good-labels.gz"), PT_ERR_INVALID, tmpdir, "is a directory");
    expect_fail("/dev/zero", tpath("good-labels.gz"), PT_ERR_INVALID, "/dev/zero", "is a character device");
}

Test(data_idx, fashion_dir_that_is_not_a_directory, .timeout = 20)
{
    idx_dataset ds;
    cr_assert_eq(mkfifo(tpath("fifo"), 0600), 0);
    cr_assert_eq(idx_load_fashion(&ds, tpath("fifo"), 1), PT_ERR_INVALID);
    const char *msg = pt_last_error();
    cr_expect_not_null(strstr(msg, "data.path"), "%s", msg);
    cr_expect_not_null(strstr(msg, tpath("fifo")), "%s", msg);
    cr_expect_not_null(strstr(msg, "is a FIFO, not a directory"), "%s", msg);
    cr_expect_not_null(strstr(msg, "train-images-idx3-ubyte.gz"), "%s", msg);
    cr_assert_null(ds.images);
    write_plain(tpath("plain"), (const uint8_t *)"x", 1);
    cr_assert_eq(idx_load_fashion(&ds, tpath("plain"), 0), PT_ERR_INVALID);
    cr_expect_not_null(strstr(pt_last_error(), "is a regular file, not a directory"), "%s", pt_last_error());

    /* a directory whose images file is a FIFO: refused, naming the file */
    cr_assert_eq(mkdir(tpath("fm"), 0700), 0);
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/train-images-idx3-ubyte.gz", tpath("fm"));
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    pt_status st = idx_load_fashion(&ds, tpath("fm"), 1);
    msg = pt_last_error();
    cr_expect_eq(st, PT_ERR_INVALID, "%s", msg);
    cr_expect_not_null(strstr(msg, "fm/train-images-idx3-ubyte.gz is a FIFO"), "%s", msg);
    cr_expect_not_null(strstr(msg, "data.path"), "%s", msg);
    unlink(fifo);
    rmdir(tpath("fm"));
}

Test(data_idx, trailing_data_is_counted_up_to_a_bound)
{
    write_good_pair();
    size_t len;
    size_t extra = 3u << 20;
    uint8_t *im = make_images(0x00000803u, GN, GR, GC, GN * GR * GC + extra, &len);
    write_gz(tpath("bomb-images.gz"), im, len);
    free(im);
    expect_fail(tpath("bomb-images.gz"), tpath("good-labels.gz"), PT_ERR_FORMAT, "bomb-images.gz", "trailing");
    cr_expect_not_null(strstr(pt_last_error(), "more than"), "%s", pt_last_error());
}

/* ---- text: data.path as a file or a directory of files ------------------ */

TestSuite(data_text, .init = tmp_setup, .fini = tmp_teardown);

static pt_status open_text(dataset *d, const char *path)
{
    config c;
    config_defaults(&c);
    strcpy(c.data_dataset, "text");
    snprintf(c.data_path, sizeof c.data_path, "%s", path);
    c.data_context = 8;
    c.batch_size = 8;
    c.micro_batches = 2;
    return dataset_open(d, &c);
}

static void write_text(const char *path, size_t n)
{
    uint8_t *b = malloc(n);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)('a' + (i * 7) % 26);
    write_plain(path, b, n);
    free(b);
}

Test(data_text, path_that_is_not_a_file_or_directory, .timeout = 20)
{
    dataset d;
    cr_assert_eq(mkfifo(tpath("pipe"), 0600), 0);
    cr_assert_eq(open_text(&d, tpath("pipe")), PT_ERR_INVALID);
    const char *msg = pt_last_error();
    cr_expect_not_null(strstr(msg, "data.path"), "%s", msg);
    cr_expect_not_null(strstr(msg, tpath("pipe")), "%s", msg);
    cr_expect_not_null(strstr(msg, "is a FIFO, not a regular file"), "%s", msg);
    cr_expect_not_null(strstr(msg, "text file or a directory of text files"), "%s", msg);
    cr_expect_null(d.text);
    /* a device would be read without end */
    cr_assert_eq(open_text(&d, "/dev/zero"), PT_ERR_INVALID);
    cr_expect_not_null(strstr(pt_last_error(), "/dev/zero is a character device"), "%s", pt_last_error());
}

Test(data_text, directory_with_a_fifo_sub_directory_and_link, .timeout = 20)
{
    char dir[512], file[600], sub[600], subfile[700], link[600], fifo[600];
    snprintf(dir, sizeof dir, "%s", tpath("corpus"));
    snprintf(file, sizeof file, "%s/a.txt", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(subfile, sizeof subfile, "%s/b.txt", sub);
    snprintf(link, sizeof link, "%s/c.txt", dir);
    snprintf(fifo, sizeof fifo, "%s/pipe", dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(mkdir(sub, 0700), 0);
    write_text(file, 4096);
    write_text(subfile, 1000);
    cr_assert_eq(symlink(file, link), 0);
    cr_assert_eq(mkfifo(fifo, 0600), 0);

    dataset d;
    cr_assert_eq(open_text(&d, dir), PT_ERR_INVALID);
    const char *msg = pt_last_error();
    cr_expect_not_null(strstr(msg, "data.path"), "%s", msg);
    cr_expect_not_null(strstr(msg, "corpus/pipe is a FIFO"), "%s", msg);
    cr_expect_not_null(strstr(msg, "remove it from the directory"), "%s", msg);

    /* without the FIFO: the one regular file; the sub-directory and the link are skipped */
    unlink(fifo);
    cr_assert_eq(open_text(&d, dir), PT_OK, "%s", pt_last_error());
    cr_expect_eq(d.text_len, 4096);
    cr_expect_not_null(strstr(d.source, "(1 file, 4096 bytes)"), "%s", d.source);
    dataset_close(&d);
    unlink(link);
    unlink(subfile);
    rmdir(sub);
    unlink(file);
    rmdir(dir);
}

/* ---- sampler ----------------------------------------------------------- */

static void epoch_sequence(uint64_t seed, long n, long epoch, long *out)
{
    sampler s;
    cr_assert_eq(sampler_init(&s, seed, n), PT_OK, "%s", pt_last_error());
    for (long p = 0; p < n; p++) out[p] = sampler_index(&s, epoch, p);
    sampler_free(&s);
}

Test(sampler, is_a_permutation)
{
    enum { N = 1000 };
    sampler s;
    cr_assert_eq(sampler_init(&s, 42, N), PT_OK);
    for (long e = 0; e < 5; e++) {
        char seen[N] = {0};
        long fixed = 0;
        for (long p = 0; p < N; p++) {
            long i = sampler_index(&s, e, p);
            cr_assert(i >= 0 && i < N, "epoch %ld pos %ld -> %ld", e, p, i);
            cr_assert_eq(seen[i], 0, "epoch %ld: index %ld appears twice", e, i);
            seen[i] = 1;
            fixed += i == p;
        }
        /* a shuffle, not the identity: fixed points of a random permutation
         * number ~Poisson(1); 20 or more has probability < 1e-18 */
        cr_assert_lt(fixed, 20, "epoch %ld has %ld fixed points", e, fixed);
    }
    sampler_free(&s);

    cr_assert_eq(sampler_init(&s, 7, 1), PT_OK);
    cr_assert_eq(sampler_index(&s, 0, 0), 0);
    cr_assert_eq(sampler_index(&s, 9, 0), 0);
    sampler_free(&s);
}

Test(sampler, independent_of_call_order)
{
    enum { N = 777 };
    static long e3[N], e7[N];
    epoch_sequence(99, N, 3, e3);
    epoch_sequence(99, N, 7, e7);
    sampler s;
    cr_assert_eq(sampler_init(&s, 99, N), PT_OK);
    /* interleaved: every call switches epoch, backwards through positions */
    for (long p = N - 1; p >= 0; p--) {
        cr_assert_eq(sampler_index(&s, 7, p), e7[p], "epoch 7 pos %ld", p);
        cr_assert_eq(sampler_index(&s, 3, p), e3[p], "epoch 3 pos %ld", p);
    }
    /* a second sampler object answers the same */
    sampler t;
    cr_assert_eq(sampler_init(&t, 99, N), PT_OK);
    for (long p = 0; p < N; p += 3) {
        cr_assert_eq(sampler_index(&t, 3, p), sampler_index(&s, 3, p));
        cr_assert_eq(sampler_index(&t, 7, p), sampler_index(&s, 7, p));
    }
    sampler_free(&t);
    sampler_free(&s);
}

Test(sampler, epochs_and_seeds_differ)
{
    enum { N = 500 };
    static long a[N], b[N], c[N], d[N];
    epoch_sequence(1, N, 0, a);
    epoch_sequence(1, N, 1, b);
    epoch_sequence(2, N, 0, c);
    epoch_sequence(1, N, 1L << 24, d); /* epoch bits above the key's 24-bit field */
    long same_ab = 0, same_ac = 0, same_ad = 0;
    for (long p = 0; p < N; p++) {
        same_ab += a[p] == b[p];
        same_ac += a[p] == c[p];
        same_ad += a[p] == d[p];
    }
    /* two independent permutations agree at ~Poisson(1) positions */
    cr_assert_lt(same_ab, 20, "epochs 0 and 1 agree at %ld of %d positions", same_ab, N);
    cr_assert_lt(same_ac, 20, "seeds 1 and 2 agree at %ld of %d positions", same_ac, N);
    cr_assert_lt(same_ad, 20, "epochs 0 and 2^24 agree at %ld of %d positions", same_ad, N);
}

Test(sampler, uniform_first_position)
{
    /* n = 10 over 20 000 epochs: each index lands at position 0 about 2000
     * times (σ ≈ 42); ±250 is a 6σ bound. A biased Fisher–Yates (j drawn
     * from 0..i-1, or from 0..n-1) fails this. */
    enum { N = 10, E = 20000 };
    sampler s;
    cr_assert_eq(sampler_init(&s, 2024, N), PT_OK);
    long count[N] = {0}, stay[N] = {0};
    for (long e = 0; e < E; e++) {
        count[sampler_index(&s, e, 0)]++;
        for (long p = 0; p < N; p++) stay[p] += sampler_index(&s, e, p) == p;
    }
    for (int i = 0; i < N; i++) {
        cr_assert(labs(count[i] - E / N) < 250, "index %d at position 0 %ld times", i, count[i]);
        cr_assert(labs(stay[i] - E / N) < 250, "position %d fixed %ld times", i, stay[i]);
    }
    sampler_free(&s);
}

Test(sampler, bad_arguments)
{
    sampler s;
    cr_assert_eq(sampler_init(&s, 1, 0), PT_ERR_INVALID);
    cr_assert_not_null(strstr(pt_last_error(), "0"), "%s", pt_last_error());
    cr_assert_eq(sampler_index(&s, 0, 0), -1);
    sampler_free(&s);
    cr_assert_eq(sampler_init(&s, 1, 10), PT_OK);
    cr_assert_eq(sampler_index(&s, 0, 10), -1);
    cr_assert_eq(sampler_index(&s, 0, -1), -1);
    cr_assert_eq(sampler_index(&s, -1, 0), -1);
    sampler_free(&s);
}
