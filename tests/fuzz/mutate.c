/* mutate.c — byte mutations of checkpoint files for the bounded fuzz test
 * (tests/fuzz/ckpt_fuzz.sh), and a dump of what the reader accepts.
 *
 *   fuzz_mutate [--seed S] [--index K] IN OUT
 *       writes a damaged copy of the HDF5 file IN to OUT and prints one line
 *       describing the damage. The damage is a pure function of (S, K, IN):
 *       Philox4x32-10 keyed by S, counter (K, draw). Kinds: bit flips, byte
 *       runs set to 0x00, 0xff or random bytes, an "interesting" integer
 *       (0, -1, 2^31, 2^32, 2^46, ...) written over 2, 4 or 8 bytes,
 *       truncation, and a chunk copied from elsewhere in the file; one in six
 *       mutants stacks two or three of them. Positions are biased to the
 *       metadata, since the float data is covered by crc32 already: 4 in 10
 *       fall in the KB after an object header (found with HDF5: attributes,
 *       datatype, dataspace and layout messages),
 *       3 in 10 in the 64 bytes after the signature of a B-tree, heap or
 *       global heap, or in the superblock, 1 in 10 in the first KB, and of the
 *       rest 7 in 8 outside the raw data of the float datasets (contiguous
 *       offsets and chunk addresses, found with HDF5).
 *   fuzz_mutate --dump CKPT
 *       prints every field of the manifest the reader returns and of every
 *       shard scan (file sizes left out), so two checkpoints whose dumps
 *       differ differ in meaning; exits 1 when the reader refuses CKPT.
 * Exit status: 0 done, 1 an error (message on stderr), 2 a usage error. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <Random123/philox.h>
#include <hdf5.h>

#include "ckpt.h"

/* ---- deterministic random numbers --------------------------------------- */

typedef struct {
    uint64_t seed;
    uint32_t index;
    uint32_t draw;
} prng;

static uint32_t next_u32(prng *p)
{
    philox4x32_ctr_t ctr = {{p->index, p->draw++, 0x6d757461u /* "muta" */, 0}};
    philox4x32_key_t key = {{(uint32_t)p->seed, (uint32_t)(p->seed >> 32)}};
    return philox4x32(ctr, key).v[0];
}

/* uniform in [0, n), n > 0 */
static uint64_t below(prng *p, uint64_t n)
{
    uint64_t r = ((uint64_t)next_u32(p) << 32) | next_u32(p);
    return r % n;
}

/* ---- where the float data is ------------------------------------------- */

typedef struct {
    uint64_t off, len;
} extent;

typedef struct {
    extent *v;
    size_t n, cap;
} extents;

static int push(extents *e, uint64_t off, uint64_t len)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 64;
        extent *v = realloc(e->v, cap * sizeof *v);
        if (!v) return -1;
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = (extent){off, len};
    return 0;
}

#if H5_VERSION_GE(1, 12, 0)
typedef H5O_info2_t obj_info;
#define VISIT(f, op, ctx) H5Ovisit3(f, H5_INDEX_NAME, H5_ITER_NATIVE, op, ctx, H5O_INFO_BASIC)
#else
typedef H5O_info_t obj_info;
#define VISIT(f, op, ctx) H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, op, ctx, H5O_INFO_BASIC)
#endif

typedef struct {
    extents data;    /* raw float data */
    extents headers; /* object headers (address, 0) */
} layout;

static herr_t visit(hid_t root, const char *name, const obj_info *info, void *ctx)
{
    layout *l = ctx;
    extents *e = &l->data;
    haddr_t header = HADDR_UNDEF;
#if H5_VERSION_GE(1, 12, 0)
    H5VLnative_token_to_addr(root, info->token, &header);
#else
    header = info->addr;
#endif
    if (header != HADDR_UNDEF) push(&l->headers, header, 0);
    if (info->type != H5O_TYPE_DATASET) return 0;
    hid_t d = H5Dopen2(root, name, H5P_DEFAULT);
    if (d < 0) return 0;
    hid_t t = H5Dget_type(d);
    if (t >= 0 && H5Tget_class(t) == H5T_FLOAT) {
        haddr_t off = H5Dget_offset(d);
        if (off != HADDR_UNDEF) {
            push(e, off, H5Dget_storage_size(d));
        } else { /* chunked: every chunk's address and size */
            hid_t s = H5Dget_space(d);
            hsize_t n = 0;
            if (s >= 0 && H5Dget_num_chunks(d, s, &n) >= 0)
                for (hsize_t k = 0; k < n; k++) {
                    haddr_t a;
                    hsize_t size;
                    if (H5Dget_chunk_info(d, s, k, NULL, NULL, &a, &size) >= 0 && a != HADDR_UNDEF)
                        push(e, a, size);
                }
            if (s >= 0) H5Sclose(s);
        }
    }
    if (t >= 0) H5Tclose(t);
    H5Dclose(d);
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const extent *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* The float data extents and the object header addresses of the HDF5 file
 * `path` (none when HDF5 cannot read it). */
static layout file_layout(const char *path)
{
    layout l = {{0}, {0}};
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) {
        VISIT(f, visit, &l);
        H5Fclose(f);
    }
    if (l.data.n) qsort(l.data.v, l.data.n, sizeof *l.data.v, by_offset);
    return l;
}

/* The offsets of the signatures of HDF5's metadata structures in buf, plus
 * the superblock at 0 (appended to e). */
static void signatures(const unsigned char *buf, uint64_t size, extents *e)
{
    static const char *const sig[] = {"TREE", "HEAP", "SNOD", "GCOL", "OHDR", "OCHK", "BTHD", "BTIN",
                                      "BTLF", "FRHP", "FHDB", "FHIB", "FSHD", "FSSE", "SMTB", "SMLI",
                                      "EAHD", "EAIB", "EADB", "FAHD", "FADB"};
    push(e, 0, 0);
    for (uint64_t i = 0; i + 4 <= size; i++)
        if (buf[i] >= 'B' && buf[i] <= 'T')
            for (size_t k = 0; k < sizeof sig / sizeof *sig; k++)
                if (!memcmp(buf + i, sig[k], 4)) {
                    push(e, i, 0);
                    break;
                }
}

static uint64_t position_meta(prng *p, const extents *e, uint64_t size);

/* A position in [0, size): 4 in 10 within 1 KB after an object header
 * (attributes, datatype, dataspace, layout), 3 in 10 within 64 bytes after a
 * signature (B-trees, heaps, the global heap of variable-length data, the
 * superblock), 1 in 10 in the first KB, else as position_meta. */
static uint64_t position(prng *p, const layout *l, const extents *sigs, uint64_t size)
{
    unsigned r = (unsigned)below(p, 10);
    uint64_t pos = UINT64_MAX;
    if (r < 4 && l->headers.n)
        pos = l->headers.v[below(p, l->headers.n)].off + below(p, 1024);
    else if (r < 7 && sigs->n)
        pos = sigs->v[below(p, sigs->n)].off + below(p, 64);
    else if (r < 8)
        pos = below(p, size < 1024 ? size : 1024);
    return pos < size ? pos : position_meta(p, &l->data, size);
}

/* A position in [0, size): 7 times in 8 one outside the float data (when
 * there is any metadata), else anywhere. */
static uint64_t position_meta(prng *p, const extents *e, uint64_t size)
{
    uint64_t covered = 0, last = 0;
    for (size_t i = 0; i < e->n; i++) { /* extents may overlap: count the union */
        uint64_t a = e->v[i].off > last ? e->v[i].off : last;
        uint64_t b = e->v[i].off + e->v[i].len;
        if (b > size) b = size;
        if (b > a) covered += b - a;
        if (b > last) last = b;
    }
    uint64_t meta = size - covered;
    if (meta == 0 || below(p, 8) == 0) return below(p, size);
    uint64_t k = below(p, meta), pos = 0;
    last = 0;
    for (size_t i = 0; i <= e->n; i++) {
        uint64_t start = i < e->n ? e->v[i].off : size;
        if (start > size) start = size;
        if (start > last) {
            if (k < start - last) return last + k;
            k -= start - last;
        }
        if (i < e->n) {
            uint64_t end = e->v[i].off + e->v[i].len;
            if (end > last) last = end;
        }
        pos = last;
    }
    return pos < size ? pos : size - 1;
}

/* ---- mutations ----------------------------------------------------------- */

static uint64_t run_length(prng *p)
{
    static const uint64_t len[] = {1, 1, 2, 3, 4, 4, 8, 8, 16, 32, 64, 200};
    return len[below(p, sizeof len / sizeof *len)];
}

static int mutate_once(prng *p, const layout *l, const extents *sigs, unsigned char *buf, uint64_t *size,
                       char *what, size_t wlen)
{
    static const uint64_t interesting[] = {0,          1,          0x7f,       0x80,
                                           0xff,       0x7fff,     0x8000,     0xffff,
                                           0x10000,    0x7fffffff, 0x80000000, 0xffffffff,
                                           1ull << 32, 1ull << 40, 1ull << 46, 0x7fffffffffffffffull,
                                           UINT64_MAX};
    uint64_t n = *size;
    if (n < 2) return -1;
    uint64_t pos = position(p, l, sigs, n);
    unsigned kind = (unsigned)below(p, 100);
    if (kind < 30) {
        unsigned bit = (unsigned)below(p, 8);
        buf[pos] ^= (unsigned char)(1u << bit);
        snprintf(what, wlen, "bit %u flipped at %" PRIu64, bit, pos);
    } else if (kind < 66) {
        uint64_t len = run_length(p);
        if (len > n - pos) len = n - pos;
        unsigned fill = (unsigned)below(p, 3);
        for (uint64_t i = 0; i < len; i++)
            buf[pos + i] = fill == 0 ? 0x00 : fill == 1 ? 0xff : (unsigned char)next_u32(p);
        snprintf(what, wlen, "%" PRIu64 " bytes at %" PRIu64 " set to %s", len, pos,
                 fill == 0 ? "0x00" : fill == 1 ? "0xff" : "random values");
    } else if (kind < 80) {
        static const unsigned widths[] = {2, 4, 4, 8, 8};
        unsigned w = widths[below(p, 5)];
        uint64_t v = interesting[below(p, sizeof interesting / sizeof *interesting)];
        if (w > n - pos) w = (unsigned)(n - pos);
        if (w < 8) v &= (1ull << (8 * w)) - 1;
        for (unsigned i = 0; i < w; i++) buf[pos + i] = (unsigned char)(v >> (8 * i));
        snprintf(what, wlen, "%u-byte little-endian 0x%" PRIx64 " written at %" PRIu64, w, v, pos);
    } else if (kind < 88) {
        *size = pos ? pos : 1;
        snprintf(what, wlen, "truncated to %" PRIu64 " of %" PRIu64 " bytes", *size, n);
    } else {
        uint64_t len = 8 + below(p, 249);
        if (len > n) len = n;
        uint64_t src = below(p, n - len + 1);
        if (len > n - pos) len = n - pos;
        memmove(buf + pos, buf + src, len);
        snprintf(what, wlen, "%" PRIu64 " bytes copied from %" PRIu64 " to %" PRIu64, len, src, pos);
    }
    return 0;
}

static int read_file(const char *path, unsigned char **buf, uint64_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    int rc = -1;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (*buf = malloc(n ? (size_t)n : 1))) {
            if (fread(*buf, 1, (size_t)n, f) == (size_t)n) {
                *size = (uint64_t)n;
                rc = 0;
            } else {
                free(*buf);
                *buf = NULL;
            }
        }
    }
    fclose(f);
    return rc;
}

static int mutate_file(uint64_t seed, uint32_t index, const char *in, const char *out)
{
    unsigned char *buf = NULL;
    uint64_t size = 0;
    if (read_file(in, &buf, &size)) {
        fprintf(stderr, "fuzz_mutate: cannot read %s: %s\n", in, strerror(errno));
        return 1;
    }
    layout l = file_layout(in);
    extents sigs = {0};
    signatures(buf, size, &sigs);
    prng p = {seed, index, 0};
    int count = below(&p, 6) == 0 ? 2 + (int)below(&p, 2) : 1;
    char line[1024] = "", what[256];
    for (int i = 0; i < count; i++) {
        if (mutate_once(&p, &l, &sigs, buf, &size, what, sizeof what)) break;
        size_t used = strlen(line);
        snprintf(line + used, sizeof line - used, "%s%s", i ? "; " : "", what);
    }
    free(l.data.v);
    free(l.headers.v);
    free(sigs.v);
    FILE *f = fopen(out, "wb");
    int rc = f && fwrite(buf, 1, size, f) == size ? 0 : 1;
    if (f && fclose(f)) rc = 1;
    free(buf);
    if (rc) {
        fprintf(stderr, "fuzz_mutate: cannot write %s: %s\n", out, strerror(errno));
        return 1;
    }
    printf("%s\n", line[0] ? line : "unchanged (file too small)");
    return 0;
}

/* ---- what the reader accepts -------------------------------------------- */

static int dump(const char *ckpt)
{
    ckpt_manifest m;
    memset(&m, 0, sizeof m);
    if (ckpt_read_manifest(ckpt, &m)) {
        fprintf(stderr, "fuzz_mutate: %s\n", pt_last_error());
        return 1;
    }
    printf("format_version %d\nstep %ld\nseed %" PRIu64 "\nn_stages %d\ndata_parallel %d\nn_layers %d\ncuts",
           m.format_version, m.step, m.seed, m.n_stages, m.data_parallel, m.n_layers);
    for (int s = 0; s <= m.n_stages; s++) printf(" %d", m.cuts[s]);
    printf("\nconfig <<\n%s\n>>\n", m.config_text ? m.config_text : "(none)");
    for (int k = 0; k < m.n_entries; k++) {
        const ckpt_entry *x = &m.entries[k];
        printf("entry %.*s layer %d ndim %d shape %d %d numel %" PRId64 " shard %d crc %08x %08x %08x\n",
               CKPT_NAME_MAX, x->name, x->layer, x->ndim, x->shape[0], x->shape[1], x->numel, x->shard,
               x->crc[0], x->crc[1], x->crc[2]);
    }
    int rc = 0;
    for (int s = 0; s < m.n_stages; s++) {
        char path[CKPT_PATH_MAX];
        ckpt_shard_info info;
        memset(&info, 0, sizeof info);
        if (ckpt_shard_path(ckpt, s, path, sizeof path) || ckpt_scan_shard(path, &info)) {
            printf("shard %d unreadable\n", s);
            rc = 1;
            continue;
        }
        printf("shard %d format_version %d stage %d n_stages %d layers %d %d step %d:%ld seed %d:%" PRIu64
               " has_layers %d other %d\n",
               s, info.format_version, info.stage, info.n_stages, info.first_layer, info.last_layer,
               info.has_step, info.step, info.has_seed, info.seed, info.has_layers, info.n_other);
        for (int k = 0; k < info.n_datasets; k++) {
            const ckpt_dataset *d = &info.datasets[k];
            printf("  %.*s layer %d array %d ndim %d dims %" PRId64 " %" PRId64 " %.16s crc %d:%08x\n",
                   CKPT_NAME_MAX, d->name, d->layer, d->array, d->ndim, d->dims[0], d->dims[1], d->dtype,
                   d->has_crc, d->crc);
        }
        ckpt_shard_info_free(&info);
    }
    ckpt_manifest_free(&m);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: fuzz_mutate [--seed S] [--index K] IN OUT   a damaged copy of IN, described on stdout\n"
                 "       fuzz_mutate --dump CKPT                    what the reader returns for CKPT\n"
                 "The damage is a pure function of S (default 1), K (default 0) and IN; positions are\n"
                 "biased to object headers, B-trees, heaps and the superblock, away from the raw float\n"
                 "data. Exit 0 done, 1 error, 2 usage error.\n");
}

int main(int argc, char **argv)
{
    uint64_t seed = 1;
    uint32_t index = 0;
    const char *pos[2];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--dump") && i + 1 < argc && argc == 3) {
            return dump(argv[i + 1]);
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            errno = 0;
            seed = strtoull(argv[++i], &end, 0);
            if (errno || *end) goto bad;
        } else if (!strcmp(argv[i], "--index") && i + 1 < argc) {
            errno = 0;
            unsigned long k = strtoul(argv[++i], &end, 0);
            if (errno || *end || k > UINT32_MAX) goto bad;
            index = (uint32_t)k;
        } else if (argv[i][0] == '-' || npos == 2) {
            goto bad;
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (npos != 2) goto bad;
    return mutate_file(seed, index, pos[0], pos[1]);
bad:
    usage(stderr);
    return 2;
}
