/* idx.c — the IDX reader (Fashion-MNIST). */
#include "idx.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "safefile.h"

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAX_SIDE 1024u
#define IDX_MAX_N 100000000u         /* n must be below this */
#define IDX_GZ_BUFFER (128u * 1024u) /* zlib's own buffer; its default 8 KiB is slow */
#define IDX_FIRST_ALLOC (16u << 20)  /* payloads grow from here as the data arrives */
#define IDX_MAX_READ (1u << 30)      /* largest single gzread */
#define IDX_MAX_EXTRA (1u << 20)     /* trailing bytes counted exactly; past this "more than" */

#define FASHION_HINT "install the Debian package dataset-fashion-mnist or set data.path"
#define FASHION_NOT_FILE "set data.path to a directory holding the Fashion-MNIST files as regular files"

/* ---- one IDX file ------------------------------------------------------ */

typedef struct {
    uint32_t magic;
    int ndims;        /* 3 for images, 1 for labels */
    const char *kind; /* "images" / "labels" */
    const char *what; /* name of the payload in messages */
} idx_kind;

static const idx_kind IDX_IMAGES = {IDX_MAGIC_IMAGES, 3, "images", "pixel data"};
static const idx_kind IDX_LABELS = {IDX_MAGIC_LABELS, 1, "labels", "label data"};

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Records zlib's error for f (a read error of the file or a damaged stream). */
static pt_status gz_fail(gzFile f, const char *path)
{
    int errnum = Z_OK;
    const char *msg = gzerror(f, &errnum);
    /* zlib prefixes its message with the path: keep one copy */
    size_t plen = strlen(path);
    if (!strncmp(msg, path, plen) && !strncmp(msg + plen, ": ", 2)) msg += plen + 2;
    if (errnum == Z_ERRNO) return pt_fail(PT_ERR_IO, "file %s: read error: %s", path, msg);
    if (errnum == Z_MEM_ERROR) return pt_fail(PT_ERR_NOMEM, "file %s: zlib: %s", path, msg);
    return pt_fail(PT_ERR_FORMAT, "file %s: damaged gzip stream: %s", path, msg);
}

/* Reads up to len bytes into buf; *got says how many. Stops early only at
 * the end of the data; a read error or damaged stream is returned, and so is
 * a file that grew past `limit` bytes (its size at open) while being read. */
static pt_status gz_read_full(gzFile f, const char *path, uint64_t limit, void *buf, size_t len, size_t *got)
{
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > IDX_MAX_READ) want = IDX_MAX_READ;
        int r = gzread(f, (uint8_t *)buf + *got, (unsigned)want);
        if (r < 0) return gz_fail(f, path);
        long long at = (long long)gzoffset(f);
        if (at > 0 && (uint64_t)at > limit)
            return pt_fail(PT_ERR_IO, "file %s grew while being read (it had %llu bytes when opened): "
                           "give a file that is complete", path, (unsigned long long)limit);
        if (r == 0) break;
        *got += (size_t)r;
    }
    int errnum = Z_OK;
    gzerror(f, &errnum);
    if (errnum != Z_OK) return gz_fail(f, path);
    return PT_OK;
}

/* Reads the whole IDX file `path` of the given kind: checks the magic and
 * dimensions, then that exactly dims[0]·…·dims[ndims-1] bytes follow the
 * header. On success *data (malloc'ed) holds the payload and dims[] the
 * sizes; on failure nothing is left allocated. hint, when not NULL, is
 * appended to the message of a file that cannot be opened, and says that
 * the file belongs to data.path's Fashion-MNIST directory. */
static pt_status idx_read_file(const char *path, const idx_kind *k, const char *hint,
                               uint32_t dims[3], uint8_t **data)
{
    pt_status st = PT_OK;
    gzFile f = NULL;
    uint8_t *buf = NULL;
    uint8_t hdr[16];
    size_t hdr_len = 4 + 4 * (size_t)k->ndims, got = 0;

    *data = NULL;
    char what[32];
    snprintf(what, sizeof what, "IDX %s file", k->kind);
    int fd = -1;
    uint64_t size = 0;
    st = safefile_open(path, what, hint ? FASHION_NOT_FILE : "give a gzip (or plain) IDX file",
                       IDX_MAX_FILE, &fd, &size);
    if (st == PT_ERR_IO && hint) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pt_last_error());
        st = pt_fail(st, "%s; %s", msg, hint);
    }
    if (st) goto done;
    f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        st = pt_fail(PT_ERR_NOMEM, "cannot open %s %s: out of memory", what, path);
        goto done;
    }
    if (gzbuffer(f, IDX_GZ_BUFFER) != 0) {
        st = pt_fail(PT_ERR_INVALID, "file %s: gzbuffer(%u) refused", path, IDX_GZ_BUFFER);
        goto done;
    }

    /* header: magic, then ndims big-endian 32-bit sizes */
    if ((st = gz_read_full(f, path, size, hdr, hdr_len, &got)) != PT_OK) goto done;
    if (got < 4) {
        st = pt_fail(PT_ERR_FORMAT, "file %s: truncated: expected %zu bytes of IDX %s header, found %zu",
                     path, hdr_len, k->kind, got);
        goto done;
    }
    uint32_t magic = be32(hdr);
    if (magic != k->magic) {
        const char *looks = magic == IDX_MAGIC_IMAGES   ? " (an IDX images file)"
                            : magic == IDX_MAGIC_LABELS ? " (an IDX labels file)"
                                                        : "";
        st = pt_fail(PT_ERR_FORMAT, "file %s: bad magic number: expected 0x%08x (IDX %s), found 0x%08x%s",
                     path, (unsigned)k->magic, k->kind, (unsigned)magic, looks);
        goto done;
    }
    if (got < hdr_len) {
        st = pt_fail(PT_ERR_FORMAT, "file %s: truncated: expected %zu bytes of IDX %s header, found %zu",
                     path, hdr_len, k->kind, got);
        goto done;
    }
    dims[0] = be32(hdr + 4);
    dims[1] = k->ndims == 3 ? be32(hdr + 8) : 1;
    dims[2] = k->ndims == 3 ? be32(hdr + 12) : 1;
    if (dims[0] < 1 || dims[0] >= IDX_MAX_N) {
        st = pt_fail(PT_ERR_FORMAT, "file %s: implausible dimensions: sample count %u (expected 1..%u)",
                     path, (unsigned)dims[0], IDX_MAX_N - 1);
        goto done;
    }
    if (k->ndims == 3 && (dims[1] < 1 || dims[1] > IDX_MAX_SIDE || dims[2] < 1 || dims[2] > IDX_MAX_SIDE)) {
        st = pt_fail(PT_ERR_FORMAT, "file %s: implausible dimensions: image size %u×%u (expected rows and cols in 1..%u)",
                     path, (unsigned)dims[1], (unsigned)dims[2], IDX_MAX_SIDE);
        goto done;
    }

    /* payload: grows as the data arrives, so a header that promises far
     * more than the file holds fails as "truncated", not as a huge malloc */
    size_t expected = (size_t)dims[0] * dims[1] * dims[2];
    size_t cap = expected < IDX_FIRST_ALLOC ? expected : IDX_FIRST_ALLOC, have = 0;
    buf = malloc(cap);
    if (!buf) {
        st = pt_fail(PT_ERR_NOMEM, "file %s: cannot allocate %zu bytes of %s", path, cap, k->what);
        goto done;
    }
    for (;;) {
        if ((st = gz_read_full(f, path, size, buf + have, cap - have, &got)) != PT_OK) goto done;
        have += got;
        if (have < cap) {
            st = pt_fail(PT_ERR_FORMAT, "file %s: truncated: expected %zu bytes of %s, found %zu", path,
                         expected, k->what, have);
            goto done;
        }
        if (have == expected) break;
        size_t ncap = cap > expected / 2 ? expected : 2 * cap;
        uint8_t *nbuf = realloc(buf, ncap);
        if (!nbuf) {
            st = pt_fail(PT_ERR_NOMEM, "file %s: cannot allocate %zu bytes of %s", path, ncap, k->what);
            goto done;
        }
        buf = nbuf;
        cap = ncap;
    }

    /* nothing may follow (counted so the message can say how much did) */
    uint8_t scratch[4096];
    size_t extra = 0;
    do {
        if ((st = gz_read_full(f, path, size, scratch, sizeof scratch, &got)) != PT_OK) goto done;
        extra += got;
    } while (got == sizeof scratch && extra <= IDX_MAX_EXTRA);
    if (extra > IDX_MAX_EXTRA) {
        st = pt_fail(PT_ERR_FORMAT, "file %s: trailing data: expected %zu bytes of %s, found more than %zu "
                     "(over %u extra)", path, expected, k->what, expected + IDX_MAX_EXTRA, IDX_MAX_EXTRA);
        goto done;
    }
    if (extra > 0) {
        st = pt_fail(PT_ERR_FORMAT, "file %s: trailing data: expected %zu bytes of %s, found %zu (%zu extra)",
                     path, expected, k->what, expected + extra, extra);
        goto done;
    }

    *data = buf;
    buf = NULL;
done:
    free(buf);
    if (f) gzclose(f);
    return st;
}

/* ---- a pair of files --------------------------------------------------- */

static pt_status idx_load_pair(idx_dataset *ds, const char *images_path, const char *labels_path,
                               const char *hint)
{
    pt_status st = PT_OK;
    uint8_t *pixels = NULL, *raw_labels = NULL;
    int32_t *labels = NULL;
    uint32_t idims[3] = {0}, ldims[3] = {0};

    if (!ds) return pt_fail(PT_ERR_INVALID, "idx_load: dataset is NULL");
    memset(ds, 0, sizeof *ds);
    if (!images_path || !labels_path)
        return pt_fail(PT_ERR_INVALID, "idx_load: %s path is NULL", images_path ? "labels" : "images");

    if ((st = idx_read_file(images_path, &IDX_IMAGES, hint, idims, &pixels)) != PT_OK) goto done;
    if ((st = idx_read_file(labels_path, &IDX_LABELS, hint, ldims, &raw_labels)) != PT_OK) goto done;
    if (ldims[0] != idims[0]) {
        st = pt_fail(PT_ERR_MISMATCH, "file %s holds %u labels but file %s holds %u images", labels_path,
                     (unsigned)ldims[0], images_path, (unsigned)idims[0]);
        goto done;
    }
    long n = (long)idims[0];
    labels = malloc((size_t)n * sizeof *labels);
    if (!labels) {
        st = pt_fail(PT_ERR_NOMEM, "file %s: cannot allocate %ld labels", labels_path, n);
        goto done;
    }
    for (long i = 0; i < n; i++) {
        if (raw_labels[i] >= 10) {
            st = pt_fail(PT_ERR_FORMAT, "file %s: label %u at index %ld is out of range 0..9", labels_path,
                         (unsigned)raw_labels[i], i);
            goto done;
        }
        labels[i] = raw_labels[i];
    }

    ds->n = n;
    ds->rows = (int)idims[1];
    ds->cols = (int)idims[2];
    ds->images = pixels;
    ds->labels = labels;
    pixels = NULL;
    labels = NULL;
done:
    free(labels);
    free(raw_labels);
    free(pixels);
    return st;
}

pt_status idx_load(idx_dataset *ds, const char *images_path, const char *labels_path)
{
    return idx_load_pair(ds, images_path, labels_path, NULL);
}

pt_status idx_load_fashion(idx_dataset *ds, const char *dir, int train)
{
    char ipath[4096], lpath[4096];
    const char *split = train ? "train" : "t10k";
    if (!dir || !dir[0]) dir = IDX_FASHION_DIR;
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        if (ds) memset(ds, 0, sizeof *ds);
        return pt_fail(PT_ERR_INVALID,
                       "data.path %s is %s, not a directory: give the directory that holds "
                       "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
                       "and t10k-labels-idx1-ubyte.gz (default " IDX_FASHION_DIR ")",
                       dir, safefile_kind((unsigned)sb.st_mode));
    }
    int a = snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, split);
    int b = snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    if (a < 0 || b < 0 || (size_t)a >= sizeof ipath || (size_t)b >= sizeof lpath) {
        if (ds) memset(ds, 0, sizeof *ds);
        return pt_fail(PT_ERR_INVALID, "Fashion-MNIST directory name is too long (%zu bytes): %.64s...",
                       strlen(dir), dir);
    }
    return idx_load_pair(ds, ipath, lpath, FASHION_HINT);
}

void idx_free(idx_dataset *ds)
{
    if (!ds) return;
    free(ds->images);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

/* out[rows·cols] = (pixel/255 − mean)/std for sample i (0 ≤ i < n). */
void idx_sample_features(const idx_dataset *ds, long i, float *out)
{
    const float mean = 0.2860f, std = 0.3530f;
    size_t f = (size_t)ds->rows * (size_t)ds->cols;
    const uint8_t *px = ds->images + (size_t)i * f;
    for (size_t k = 0; k < f; k++) out[k] = ((float)px[k] / 255.0f - mean) / std;
}
