/* Checkpoints: shards, manifest, the commit protocol and every damage case.
 *
 * A fake 3-stage model of 5 layers (layers 1 and 3 hold no tensors) is
 * written by hand, committed and read back bit for bit (exact: memcmp, NaN
 * payloads, −0 and denormals included). Damage is done to the files on disk
 * and each read must fail with a message naming the shard file and tensor.
 * The single-file form (ckpt_write_single) is written from a checkpoint,
 * read back bit for bit through the same API and damaged the same ways.
 * Untrusted metadata: HDF5 crashing or hanging on a file (the field cases of
 * damaged manifests, a FIFO that never opens) is an error naming the file;
 * sizes declared by a file are refused before anything is allocated;
 * format version 1 files still read. A file system without working locks is
 * simulated by this program's own flock() (HDF5 resolves it here first). */
#define _GNU_SOURCE /* nftw, syscall */

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "ckpt.h"

/* ---- the fake model ------------------------------------------------------ */

#define NT 7
#define MAXN 64
#define N_STAGES 3
#define N_LAYERS 5
#define SEED 0xfedcba9876543210ULL /* above 2^63: checks the unsigned round trip */

typedef struct {
    const char *name;
    int layer, ndim, shape[2];
} spec;

static const spec SPECS[NT] = {
    {"layers.0.w", 0, 2, {6, 4}},          {"layers.0.b", 0, 1, {6, 0}},
    {"layers.2.w", 2, 2, {3, 6}},          {"layers.2.attn.w_qkv", 2, 2, {9, 3}},
    {"layers.2.b", 2, 1, {3, 0}},          {"layers.4.w", 4, 2, {5, 9}},
    {"layers.4.b", 4, 1, {5, 0}},
};
static const int CUTS[N_STAGES + 1] = {0, 2, 4, 5}; /* stage 0: 0,1; stage 1: 2,3; stage 2: 4 */

static size_t numel_of(int k) { return (size_t)SPECS[k].shape[0] * (SPECS[k].ndim == 2 ? SPECS[k].shape[1] : 1); }

static int stage_of(int layer)
{
    for (int s = 0; s < N_STAGES; s++)
        if (layer >= CUTS[s] && layer < CUTS[s + 1]) return s;
    return -1;
}

typedef struct {
    float data[NT][CKPT_ARRAYS][MAXN];
} fake_model;

static float from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* Values depend on (variant, tensor, array, index); tensor 0's parameter
 * starts with −0, a denormal, a NaN with a payload and +inf. */
static void fill(fake_model *fm, int variant)
{
    memset(fm, 0, sizeof *fm);
    for (int k = 0; k < NT; k++)
        for (int a = 0; a < CKPT_ARRAYS; a++)
            for (size_t i = 0; i < numel_of(k); i++)
                fm->data[k][a][i] =
                    (float)((int)((i * 37 + (size_t)k * 11 + (size_t)a * 5 + (size_t)variant * 13) % 97) - 48) / 7.0f;
    fm->data[0][0][0] = from_bits(0x80000000u);
    fm->data[0][0][1] = from_bits(0x00000123u);
    fm->data[0][0][2] = from_bits(0x7fc12345u);
    fm->data[0][0][3] = from_bits(0x7f800000u);
}

static char *config_text(void)
{
    static char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof buf, "[model]\nlayers = linear 6, relu, attn 3, relu, linear 5\n");
    for (int i = 0; n < 6000; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "key_%03d = value number %d of the test config\n", i, i);
    return buf;
}

/* ---- scratch directory ---------------------------------------------------- */

static char root[256];

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/pt-test-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

static void teardown(void) { nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

TestSuite(ckpt, .init = setup, .fini = teardown);

static void path_in(char *out, size_t len, const char *a, const char *b)
{
    int n = snprintf(out, len, "%s/%s", a, b);
    cr_assert(n >= 0 && (size_t)n < len, "path %s/%s is too long for the test", a, b);
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void read_text(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* ---- writing a checkpoint ------------------------------------------------- */

typedef struct {
    void (*hook)(void *, int);
    void *ctx;
    int hook_stage;
} fault;

/* Writes stage s's shard into dir; crc_all[k·3+a] receives global tensor k's crcs. */
static pt_status write_stage(const char *dir, int s, long step, const fake_model *fm, int compression,
                             const fault *f, uint32_t *crc_all)
{
    ckpt_tensor t[NT];
    int idx[NT], n = 0;
    for (int k = 0; k < NT; k++) {
        if (stage_of(SPECS[k].layer) != s) continue;
        t[n] = (ckpt_tensor){.name = SPECS[k].name, .layer = SPECS[k].layer, .ndim = SPECS[k].ndim,
                             .shape = {SPECS[k].shape[0], SPECS[k].shape[1]}, .numel = numel_of(k),
                             .data = {fm->data[k][0], fm->data[k][1], fm->data[k][2]}};
        idx[n++] = k;
    }
    ckpt_shard sh = {.stage = s, .n_stages = N_STAGES, .first_layer = CUTS[s], .last_layer = CUTS[s + 1],
                     .step = step, .seed = SEED, .compression = compression, .n_tensors = n, .tensors = t};
    if (f && f->hook_stage == s) {
        sh.after_tensor = f->hook;
        sh.hook_ctx = f->ctx;
    }
    uint32_t crc[NT * CKPT_ARRAYS];
    pt_status st = ckpt_write_shard(dir, &sh, crc);
    if (st == PT_OK)
        for (int j = 0; j < n; j++) memcpy(&crc_all[idx[j] * CKPT_ARRAYS], &crc[j * CKPT_ARRAYS], sizeof(uint32_t) * CKPT_ARRAYS);
    return st;
}

static void make_manifest(ckpt_manifest *m, ckpt_entry *e, int *cuts, long step, const uint32_t *crc_all)
{
    memcpy(cuts, CUTS, sizeof CUTS);
    for (int k = 0; k < NT; k++) {
        memset(&e[k], 0, sizeof e[k]);
        snprintf(e[k].name, sizeof e[k].name, "%s", SPECS[k].name);
        e[k].layer = SPECS[k].layer;
        e[k].ndim = SPECS[k].ndim;
        e[k].shape[0] = SPECS[k].shape[0];
        e[k].shape[1] = SPECS[k].shape[1];
        e[k].numel = (int64_t)numel_of(k);
        e[k].shard = stage_of(SPECS[k].layer);
        memcpy(e[k].crc, &crc_all[k * CKPT_ARRAYS], sizeof e[k].crc);
    }
    *m = (ckpt_manifest){.format_version = CKPT_FORMAT_VERSION, .step = step, .seed = SEED,
                         .n_stages = N_STAGES, .data_parallel = 2, .n_layers = N_LAYERS, .cuts = cuts,
                         .config_text = config_text(), .n_entries = NT, .entries = e};
}

/* The whole protocol for one checkpoint (without commit when commit = 0). */
static void write_ckpt(const char *run, long step, int variant, int compression, int commit)
{
    fake_model fm;
    fill(&fm, variant);
    char dir[CKPT_PATH_MAX];
    cr_assert_eq(ckpt_begin(run, step, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    uint32_t crc_all[NT * CKPT_ARRAYS];
    for (int s = 0; s < N_STAGES; s++)
        cr_assert_eq(write_stage(dir, s, step, &fm, compression, NULL, crc_all), PT_OK, "%s", pt_last_error());
    ckpt_manifest m;
    ckpt_entry e[NT];
    int cuts[N_STAGES + 1];
    make_manifest(&m, e, cuts, step, crc_all);
    cr_assert_eq(ckpt_write_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    if (commit) cr_assert_eq(ckpt_commit(run, step), PT_OK, "%s", pt_last_error());
}

/* Reads every array of every tensor of the checkpoint `path` resolves to and
 * compares bit for bit with variant's data. */
static void check_ckpt(const char *path, long step, int variant)
{
    fake_model fm;
    fill(&fm, variant);
    char dir[CKPT_PATH_MAX];
    cr_assert_eq(ckpt_resolve(path, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    ckpt_manifest m;
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    cr_assert_eq(m.format_version, CKPT_FORMAT_VERSION);
    cr_assert_eq(m.step, step);
    cr_assert_eq(m.seed, SEED);
    cr_assert_eq(m.n_stages, N_STAGES);
    cr_assert_eq(m.data_parallel, 2);
    cr_assert_eq(m.n_layers, N_LAYERS);
    for (int s = 0; s <= N_STAGES; s++) cr_assert_eq(m.cuts[s], CUTS[s]);
    cr_assert_str_eq(m.config_text, config_text());
    cr_assert_eq(m.n_entries, NT);
    ckpt_reader r;
    cr_assert_eq(ckpt_reader_open(&r, dir, &m), PT_OK, "%s", pt_last_error());
    for (int k = 0; k < NT; k++) {
        int j = ckpt_find(&m, SPECS[k].name);
        cr_assert_eq(j, k, "%s found at %d", SPECS[k].name, j);
        const ckpt_entry *e = &m.entries[j];
        cr_assert_eq(e->layer, SPECS[k].layer);
        cr_assert_eq(e->ndim, SPECS[k].ndim);
        cr_assert_eq(e->shape[0], SPECS[k].shape[0]);
        if (e->ndim == 2) cr_assert_eq(e->shape[1], SPECS[k].shape[1]);
        cr_assert_eq(e->numel, (int64_t)numel_of(k));
        cr_assert_eq(e->shard, stage_of(SPECS[k].layer));
        for (int a = 0; a < CKPT_ARRAYS; a++) {
            float out[MAXN];
            memset(out, 0xA5, sizeof out);
            cr_assert_eq(ckpt_read_tensor(&r, e, a, out), PT_OK, "%s", pt_last_error());
            cr_assert_eq(memcmp(out, fm.data[k][a], numel_of(k) * sizeof(float)), 0, "%s array %d differs",
                         SPECS[k].name, a);
        }
    }
    ckpt_reader_close(&r);
    ckpt_manifest_free(&m);
}

/* ---- round trip ----------------------------------------------------------- */

Test(ckpt, round_trip_three_stages_bit_for_bit)
{
    char run[CKPT_PATH_MAX], dir[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32], text[64];
    path_in(run, sizeof run, root, "run"); /* created by ckpt_begin */
    fake_model fm;
    fill(&fm, 1);
    cr_assert_eq(ckpt_begin(run, 100, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    path_in(p, sizeof p, run, ".tmp-step-000100");
    cr_assert_str_eq(dir, p);
    uint32_t crc_all[NT * CKPT_ARRAYS];
    for (int s = 0; s < N_STAGES; s++)
        cr_assert_eq(write_stage(dir, s, 100, &fm, 0, NULL, crc_all), PT_OK, "%s", pt_last_error());
    /* the crcs are zlib's crc32 of the float bytes */
    for (int k = 0; k < NT; k++)
        for (int a = 0; a < CKPT_ARRAYS; a++) {
            uint32_t z = (uint32_t)crc32(0L, (const Bytef *)fm.data[k][a], (uInt)(numel_of(k) * sizeof(float)));
            cr_assert_eq(crc_all[k * CKPT_ARRAYS + a], z, "%s array %d", SPECS[k].name, a);
            cr_assert_eq(ckpt_crc32(fm.data[k][a], numel_of(k)), z);
        }
    ckpt_manifest m;
    ckpt_entry e[NT];
    int cuts[N_STAGES + 1];
    make_manifest(&m, e, cuts, 100, crc_all);
    cr_assert_eq(ckpt_write_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    path_in(p, sizeof p, run, "latest");
    cr_assert(!exists(p), "latest exists before the commit");
    cr_assert_eq(ckpt_commit(run, 100), PT_OK, "%s", pt_last_error());
    read_text(p, text, sizeof text);
    cr_assert_str_eq(text, "step-000100\n");
    path_in(p, sizeof p, run, ".tmp-step-000100");
    cr_assert(!exists(p), "the temporary directory is still there");
    check_ckpt(run, 100, 1);
    cr_assert_eq(ckpt_find(&m, "layers.2.attn.w_qkv"), 3);
    cr_assert_eq(ckpt_find(&m, "layers.9.w"), -1);

    /* the shard's own layout, read with HDF5 directly */
    path_in(p, sizeof p, run, "step-000100/stage-01.h5");
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    const char *names[] = {"format_version", "stage", "n_stages", "first_layer", "last_layer"};
    const int want[] = {CKPT_FORMAT_VERSION, 1, 3, 2, 4};
    for (int i = 0; i < 5; i++) {
        int v = -1;
        hid_t at = H5Aopen(f, names[i], H5P_DEFAULT);
        cr_assert_geq(at, 0, "%s", names[i]);
        cr_assert_geq(H5Aread(at, H5T_NATIVE_INT, &v), 0);
        H5Aclose(at);
        cr_assert_eq(v, want[i], "attribute %s = %d", names[i], v);
    }
    long long step = 0;
    unsigned long long seed = 0;
    hid_t at = H5Aopen(f, "step", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_LLONG, &step);
    H5Aclose(at);
    at = H5Aopen(f, "seed", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_ULLONG, &seed);
    H5Aclose(at);
    cr_assert_eq(step, 100);
    cr_assert_eq(seed, SEED);
    const char *dsets[] = {"/layers/2/attn.w_qkv", "/layers/2/moment1/attn.w_qkv", "/layers/2/moment2/attn.w_qkv"};
    for (int a = 0; a < CKPT_ARRAYS; a++) {
        hid_t d = H5Dopen2(f, dsets[a], H5P_DEFAULT);
        cr_assert_geq(d, 0, "%s", dsets[a]);
        hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
        hsize_t dims[2] = {0, 0};
        cr_assert(H5Tequal(t, H5T_IEEE_F32LE) > 0);
        cr_assert_eq(H5Sget_simple_extent_dims(sp, dims, NULL), 2);
        cr_assert(dims[0] == 9 && dims[1] == 3);
        uint32_t c = 0;
        hid_t ca = H5Aopen(d, "crc32", H5P_DEFAULT);
        cr_assert_geq(H5Aread(ca, H5T_NATIVE_UINT32, &c), 0);
        cr_assert_eq(c, crc_all[3 * CKPT_ARRAYS + a]);
        H5Aclose(ca);
        H5Sclose(sp);
        H5Tclose(t);
        H5Dclose(d);
    }
    H5Fclose(f);
}

/* deflate on and off store the same bits; only the storage layout differs. */
Test(ckpt, compression_on_and_off_give_identical_data)
{
    char plain[CKPT_PATH_MAX], packed[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(plain, sizeof plain, root, "plain");
    path_in(packed, sizeof packed, root, "packed");
    write_ckpt(plain, 100, 4, 0, 1);
    write_ckpt(packed, 100, 4, 6, 1);
    check_ckpt(plain, 100, 4);
    check_ckpt(packed, 100, 4);
    for (int c = 0; c < 2; c++) {
        path_in(p, sizeof p, c ? packed : plain, "step-000100/stage-02.h5");
        hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "/layers/4/moment2/w", H5P_DEFAULT);
        cr_assert_geq(d, 0);
        hid_t dcpl = H5Dget_create_plist(d);
        cr_assert_eq(H5Pget_nfilters(dcpl), c ? 1 : 0);
        cr_assert_eq(H5Pget_layout(dcpl), c ? H5D_CHUNKED : H5D_CONTIGUOUS);
        if (c) {
            unsigned flags, cd[4];
            size_t ncd = 4;
            cr_assert_eq(H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, 0, NULL, NULL), H5Z_FILTER_DEFLATE);
            cr_assert_eq(cd[0], 6u);
        }
        H5Pclose(dcpl);
        H5Dclose(d);
        H5Fclose(f);
    }
}

/* A tensor above the chunk cap is split into whole-row chunks of ≤ 4 MiB. */
Test(ckpt, large_tensor_chunks_stay_under_4_mib)
{
    enum { ROWS = 1100, COLS = 1000 };
    size_t n = (size_t)ROWS * COLS;
    float *d[CKPT_ARRAYS], *out = malloc(n * sizeof(float));
    for (int a = 0; a < CKPT_ARRAYS; a++) {
        d[a] = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) d[a][i] = (float)((i * 7 + (size_t)a) % 1000) * 0.25f;
    }
    char run[CKPT_PATH_MAX], dir[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "big");
    cr_assert_eq(ckpt_begin(run, 1, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    ckpt_tensor t = {.name = "layers.0.emb", .layer = 0, .ndim = 2, .shape = {ROWS, COLS}, .numel = n,
                     .data = {d[0], d[1], d[2]}};
    ckpt_shard sh = {.stage = 0, .n_stages = 1, .first_layer = 0, .last_layer = 1, .step = 1, .seed = 5,
                     .compression = 1, .n_tensors = 1, .tensors = &t};
    uint32_t crc[3];
    cr_assert_eq(ckpt_write_shard(dir, &sh, crc), PT_OK, "%s", pt_last_error());
    ckpt_entry e = {.name = "layers.0.emb", .layer = 0, .ndim = 2, .shape = {ROWS, COLS}, .numel = (int64_t)n,
                    .shard = 0, .crc = {crc[0], crc[1], crc[2]}};
    int cuts[2] = {0, 1};
    ckpt_manifest m = {.step = 1, .seed = 5, .n_stages = 1, .data_parallel = 1, .n_layers = 1, .cuts = cuts,
                       .config_text = "x = 1\n", .n_entries = 1, .entries = &e};
    cr_assert_eq(ckpt_write_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_commit(run, 1), PT_OK, "%s", pt_last_error());

    path_in(p, sizeof p, run, "step-000001/stage-00.h5");
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "/layers/0/emb", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(ds);
    hsize_t chunk[2] = {0, 0};
    cr_assert_eq(H5Pget_chunk(dcpl, 2, chunk), 2);
    /* 4 MiB / (1000 floats · 4 bytes) = 1048 rows */
    cr_assert(chunk[0] == 1048 && chunk[1] == COLS, "chunk %llu x %llu", (unsigned long long)chunk[0],
              (unsigned long long)chunk[1]);
    cr_assert_leq(chunk[0] * chunk[1] * 4, 4u << 20);
    H5Pclose(dcpl);
    H5Dclose(ds);
    H5Fclose(f);

    ckpt_manifest rm;
    cr_assert_eq(ckpt_read_manifest(run, &rm), PT_ERR_IO); /* a run dir is not a checkpoint */
    char cdir[CKPT_PATH_MAX];
    cr_assert_eq(ckpt_resolve(run, cdir, sizeof cdir), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_read_manifest(cdir, &rm), PT_OK, "%s", pt_last_error());
    cr_assert_str_eq(rm.config_text, "x = 1\n");
    ckpt_reader r;
    cr_assert_eq(ckpt_reader_open(&r, cdir, &rm), PT_OK, "%s", pt_last_error());
    for (int a = 0; a < CKPT_ARRAYS; a++) {
        cr_assert_eq(ckpt_read_tensor(&r, &rm.entries[0], a, out), PT_OK, "%s", pt_last_error());
        cr_assert_eq(memcmp(out, d[a], n * sizeof(float)), 0, "array %d differs", a);
    }
    ckpt_reader_close(&r);
    ckpt_manifest_free(&rm);
    for (int a = 0; a < CKPT_ARRAYS; a++) free(d[a]);
    free(out);
}

/* ---- resolve, commit, prune ---------------------------------------------- */

Test(ckpt, resolve_run_dir_and_checkpoint_dir)
{
    char run[CKPT_PATH_MAX], dir[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32], want[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 7, 1, 0, 1);
    path_in(want, sizeof want, run, "step-000007");
    cr_assert_eq(ckpt_resolve(run, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    cr_assert_str_eq(dir, want);
    snprintf(p, sizeof p, "%s/", run); /* a trailing slash */
    cr_assert_eq(ckpt_resolve(p, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    cr_assert_str_eq(dir, want);
    cr_assert_eq(ckpt_resolve(want, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    cr_assert_str_eq(dir, want);

    /* a directory that is neither says what was expected */
    path_in(p, sizeof p, root, "empty");
    cr_assert_eq(mkdir(p, 0755), 0);
    cr_assert_eq(ckpt_resolve(p, dir, sizeof dir), PT_ERR_INVALID);
    cr_assert(strstr(pt_last_error(), "latest") && strstr(pt_last_error(), "manifest.h5"), "%s", pt_last_error());
    path_in(p, sizeof p, root, "no-such-dir");
    cr_assert_eq(ckpt_resolve(p, dir, sizeof dir), PT_ERR_IO);
    cr_assert(strstr(pt_last_error(), "no-such-dir"), "%s", pt_last_error());

    /* latest naming a checkpoint that is gone */
    path_in(p, sizeof p, run, "latest");
    FILE *f = fopen(p, "w");
    fputs("step-000099\n", f);
    fclose(f);
    cr_assert_eq(ckpt_resolve(run, dir, sizeof dir), PT_ERR_IO);
    cr_assert(strstr(pt_last_error(), "step-000099"), "%s", pt_last_error());
}

Test(ckpt, second_commit_moves_latest_and_a_rewrite_replaces_the_step)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32], text[64];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    write_ckpt(run, 200, 2, 0, 1);
    path_in(p, sizeof p, run, "latest");
    read_text(p, text, sizeof text);
    cr_assert_str_eq(text, "step-000200\n");
    check_ckpt(run, 200, 2);
    path_in(p, sizeof p, run, "step-000100");
    check_ckpt(p, 100, 1);

    /* step 200 written again (a run resumed from step 100): the new data replace the old */
    write_ckpt(run, 200, 3, 0, 1);
    check_ckpt(run, 200, 3);
    path_in(p, sizeof p, run, ".tmp-step-000200");
    cr_assert(!exists(p));
    path_in(p, sizeof p, run, ".old-step-000200");
    cr_assert(!exists(p));

    /* committing a step whose manifest was never written is refused */
    char dir[CKPT_PATH_MAX];
    cr_assert_eq(ckpt_begin(run, 300, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_commit(run, 300), PT_ERR_INVALID);
    cr_assert(strstr(pt_last_error(), "manifest.h5"), "%s", pt_last_error());
    path_in(p, sizeof p, run, "latest");
    read_text(p, text, sizeof text);
    cr_assert_str_eq(text, "step-000200\n");
}

Test(ckpt, prune_keeps_newest_and_the_one_latest_names)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32], dir[CKPT_PATH_MAX];
    path_in(run, sizeof run, root, "run");
    const long steps[] = {100, 200, 300, 400, 150}; /* 150 last: resumed from an older one */
    for (int i = 0; i < 5; i++) write_ckpt(run, steps[i], 1, 0, 1);
    cr_assert_eq(ckpt_begin(run, 999, dir, sizeof dir), PT_OK, "%s", pt_last_error()); /* a stale one */
    path_in(p, sizeof p, run, "notes.txt");
    FILE *f = fopen(p, "w");
    fputs("not a checkpoint\n", f);
    fclose(f);

    cr_assert_eq(ckpt_prune(run, 0), PT_OK, "%s", pt_last_error()); /* keep all */
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/step-%06ld", run, steps[i]);
        cr_assert(exists(p), "keep 0 removed %s", p);
    }
    cr_assert_eq(ckpt_prune(run, 2), PT_OK, "%s", pt_last_error());
    const long kept[] = {150, 300, 400}, gone[] = {100, 200};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/step-%06ld", run, kept[i]);
        cr_assert(exists(p), "%s was removed", p);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/step-%06ld", run, gone[i]);
        cr_assert(!exists(p), "%s was kept", p);
    }
    path_in(p, sizeof p, run, ".tmp-step-000999");
    cr_assert(!exists(p), "stale temporary directory kept");
    path_in(p, sizeof p, run, "notes.txt");
    cr_assert(exists(p), "a file that is no checkpoint was removed");
    check_ckpt(run, 150, 1);

    cr_assert_eq(ckpt_prune(run, 1), PT_OK, "%s", pt_last_error());
    snprintf(p, sizeof p, "%s/step-%06d", run, 300);
    cr_assert(!exists(p));
    snprintf(p, sizeof p, "%s/step-%06d", run, 400);
    cr_assert(exists(p));
    check_ckpt(run, 150, 1);
}

/* ---- damage ---------------------------------------------------------------- */

/* Opens a reader on run's latest checkpoint; reads entry `name`'s array. */
static pt_status read_one(const char *run, const char *name, int which)
{
    char dir[CKPT_PATH_MAX];
    cr_assert_eq(ckpt_resolve(run, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    ckpt_manifest m;
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    ckpt_reader r;
    cr_assert_eq(ckpt_reader_open(&r, dir, &m), PT_OK, "%s", pt_last_error());
    int k = ckpt_find(&m, name);
    cr_assert_geq(k, 0, "%s", name);
    float out[MAXN];
    pt_status st = ckpt_read_tensor(&r, &m.entries[k], which, out);
    ckpt_reader_close(&r);
    ckpt_manifest_free(&m);
    return st;
}

static void assert_msg(const char *a, const char *b, const char *c)
{
    const char *msg = pt_last_error();
    cr_assert(strstr(msg, a) && strstr(msg, b) && (!c || strstr(msg, c)), "message '%s' lacks '%s', '%s' or '%s'",
              msg, a, b, c ? c : "");
}

Test(ckpt, flipped_bit_is_a_checksum_mismatch)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    path_in(p, sizeof p, run, "step-000100/stage-01.h5");
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/layers/2/moment1/attn.w_qkv", H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    cr_assert_neq(off, HADDR_UNDEF);
    int fd = open(p, O_RDWR);
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, (off_t)off + 17), 1);
    b ^= 0x08;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)off + 17), 1);
    close(fd);

    cr_assert_eq(read_one(run, "layers.2.attn.w_qkv", CKPT_MOMENT1), PT_ERR_CHECKSUM);
    assert_msg("stage-01.h5", "tensor layers.2.attn.w_qkv (moment1)", "checksum mismatch (stored crc32 0x");
    /* the other arrays of the same file are intact */
    cr_assert_eq(read_one(run, "layers.2.attn.w_qkv", CKPT_PARAM), PT_OK, "%s", pt_last_error());
    cr_assert_eq(read_one(run, "layers.2.w", CKPT_MOMENT1), PT_OK, "%s", pt_last_error());
}

Test(ckpt, missing_shard)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    path_in(p, sizeof p, run, "step-000100/stage-02.h5");
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(read_one(run, "layers.4.w", CKPT_PARAM), PT_ERR_IO);
    assert_msg("shard stage-02.h5 is missing", "the manifest lists 3 shards", "layers.4.w");
    cr_assert_eq(read_one(run, "layers.0.w", CKPT_PARAM), PT_OK, "%s", pt_last_error());
}

Test(ckpt, truncated_or_foreign_shard_is_not_readable)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    path_in(p, sizeof p, run, "step-000100/stage-01.h5");
    struct stat sb;
    cr_assert_eq(stat(p, &sb), 0);
    cr_assert_eq(truncate(p, sb.st_size / 2), 0);
    cr_assert_eq(read_one(run, "layers.2.w", CKPT_PARAM), PT_ERR_FORMAT);
    assert_msg("stage-01.h5 is not a readable HDF5 file (truncated or damaged?)", "layers.2.w", NULL);

    path_in(p, sizeof p, run, "step-000100/stage-00.h5");
    FILE *f = fopen(p, "w");
    fputs("this is not HDF5\n", f);
    fclose(f);
    cr_assert_eq(read_one(run, "layers.0.b", CKPT_MOMENT2), PT_ERR_FORMAT);
    assert_msg("stage-00.h5 is not a readable HDF5 file", "layers.0.b", NULL);
}

Test(ckpt, unknown_format_version_names_both)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32], dir[CKPT_PATH_MAX];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    path_in(p, sizeof p, run, "step-000100/manifest.h5");
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int seven = 7;
    cr_assert_geq(H5Awrite(a, H5T_NATIVE_INT, &seven), 0);
    H5Aclose(a);
    H5Fclose(f);
    cr_assert_eq(ckpt_resolve(run, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    ckpt_manifest m;
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_ERR_FORMAT);
    assert_msg("manifest.h5", "format version 7", "reads version 1 or 2");
    cr_assert_null(m.entries);
}

Test(ckpt, shape_mismatch_and_missing_dataset)
{
    char run[CKPT_PATH_MAX], dir[CKPT_PATH_MAX];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    cr_assert_eq(ckpt_resolve(run, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    ckpt_manifest m;
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    ckpt_reader r;
    cr_assert_eq(ckpt_reader_open(&r, dir, &m), PT_OK, "%s", pt_last_error());
    float out[MAXN];
    ckpt_entry e = m.entries[0]; /* layers.0.w [6,4] */
    e.shape[0] = 4;
    e.shape[1] = 6;
    cr_assert_eq(ckpt_read_tensor(&r, &e, CKPT_PARAM, out), PT_ERR_MISMATCH);
    assert_msg("stage-00.h5: tensor layers.0.w", "[6,4] in the file", "manifest says [4,6]");
    e = m.entries[0];
    snprintf(e.name, sizeof e.name, "layers.0.nope");
    cr_assert_eq(ckpt_read_tensor(&r, &e, CKPT_MOMENT2, out), PT_ERR_FORMAT);
    assert_msg("stage-00.h5: tensor layers.0.nope (moment2)", "/layers/0/moment2/nope is missing", NULL);
    e = m.entries[5]; /* layers.4.w in shard 2, claimed to sit in layer 3 of shard 1 */
    snprintf(e.name, sizeof e.name, "layers.3.w");
    e.layer = 3;
    e.shard = 1;
    cr_assert_eq(ckpt_read_tensor(&r, &e, CKPT_PARAM, out), PT_ERR_FORMAT);
    assert_msg("stage-01.h5", "layers.3.w", "/layers/3/w is missing");
    ckpt_reader_close(&r);
    ckpt_manifest_free(&m);
}

/* ---- crash consistency ----------------------------------------------------- */

static void die_after_second_tensor(void *ctx, int k)
{
    (void)ctx;
    if (k == 1) _exit(3); /* a crash in the middle of the shard: no close, no flush */
}

static jmp_buf crash_jmp;
static void jump_after_first_tensor(void *ctx, int k)
{
    (void)ctx;
    if (k == 0) longjmp(crash_jmp, 1);
}

Test(ckpt, crash_while_writing_leaves_the_previous_checkpoint_whole)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32], text[64];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);

    /* a child dies inside the writer of shard 1, after its second tensor */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        fake_model fm;
        fill(&fm, 2);
        char dir[CKPT_PATH_MAX];
        uint32_t crc_all[NT * CKPT_ARRAYS];
        fault fl = {.hook = die_after_second_tensor, .hook_stage = 1};
        if (ckpt_begin(run, 200, dir, sizeof dir) != PT_OK) _exit(10);
        for (int s = 0; s < N_STAGES; s++)
            if (write_stage(dir, s, 200, &fm, 0, &fl, crc_all) != PT_OK) _exit(11);
        _exit(12); /* not reached: the hook ends the process */
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 3, "child status %d", status);
    path_in(p, sizeof p, run, ".tmp-step-000200/stage-01.h5");
    cr_assert(exists(p), "the partial shard should be left behind");
    path_in(p, sizeof p, run, "step-000200");
    cr_assert(!exists(p));
    path_in(p, sizeof p, run, "latest");
    read_text(p, text, sizeof text);
    cr_assert_str_eq(text, "step-000100\n");
    check_ckpt(run, 100, 1);

    /* in-process: the hook jumps out of the writer after tensor 0 of stage 2 */
    {
        fake_model fm;
        fill(&fm, 2);
        char dir[CKPT_PATH_MAX];
        uint32_t crc_all[NT * CKPT_ARRAYS];
        fault fl = {.hook = jump_after_first_tensor, .hook_stage = 2};
        cr_assert_eq(ckpt_begin(run, 200, dir, sizeof dir), PT_OK, "%s", pt_last_error());
        volatile int jumped = 0;
        if (setjmp(crash_jmp) == 0) {
            for (int s = 0; s < N_STAGES; s++) write_stage(dir, s, 200, &fm, 0, &fl, crc_all);
        } else {
            jumped = 1;
        }
        cr_assert(jumped);
        /* the HDF5 ids left open by the jump belong to that dead write; close them */
        H5close();
    }
    /* all shards and the manifest written, but the commit never ran */
    write_ckpt(run, 300, 3, 0, 0);
    path_in(p, sizeof p, run, "latest");
    read_text(p, text, sizeof text);
    cr_assert_str_eq(text, "step-000100\n");
    check_ckpt(run, 100, 1);

    /* the same step begun and committed again succeeds */
    write_ckpt(run, 200, 2, 0, 1);
    check_ckpt(run, 200, 2);
    path_in(p, sizeof p, run, ".tmp-step-000200");
    cr_assert(!exists(p), "ckpt_begin should have cleared the stale directory");
    cr_assert_eq(ckpt_prune(run, 5), PT_OK, "%s", pt_last_error());
    path_in(p, sizeof p, run, ".tmp-step-000300");
    cr_assert(!exists(p), "prune should remove the uncommitted step 300");
}

/* ---- argument checks ------------------------------------------------------- */

Test(ckpt, writer_rejects_bad_tensors_before_creating_the_file)
{
    char dir[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(dir, sizeof dir, root, "bad");
    cr_assert_eq(mkdir(dir, 0755), 0);
    float x[6] = {1, 2, 3, 4, 5, 6};
    struct {
        ckpt_tensor t;
        const char *needle;
    } cases[] = {
        {{"layers.1.w", 0, 2, {2, 3}, 6, {x, x, x}}, "name says layer 1"},
        {{"layers.3.w", 3, 2, {2, 3}, 6, {x, x, x}}, "outside this stage's layers [0, 2)"},
        {{"layers.0.moment1", 0, 1, {6, 0}, 6, {x, x, x}}, "reserved"},
        {{"layers.0.w", 0, 2, {2, 3}, 5, {x, x, x}}, "numel 5"},
        {{"layers.0.w", 0, 2, {2, 3}, 6, {x, x, NULL}}, "no moment2 array"},
        {{"w", 0, 1, {6, 0}, 6, {x, x, x}}, "layers.<layer>.<param>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ckpt_shard sh = {.stage = 0, .n_stages = 2, .first_layer = 0, .last_layer = 2, .step = 1,
                         .n_tensors = 1, .tensors = &cases[i].t};
        uint32_t crc[3];
        cr_assert_eq(ckpt_write_shard(dir, &sh, crc), PT_ERR_INVALID, "case %zu accepted", i);
        cr_assert(strstr(pt_last_error(), cases[i].needle), "case %zu: '%s' lacks '%s'", i, pt_last_error(),
                  cases[i].needle);
        cr_assert(strstr(pt_last_error(), cases[i].t.name), "case %zu: '%s' lacks the tensor", i, pt_last_error());
    }
    path_in(p, sizeof p, dir, "stage-00.h5");
    cr_assert(!exists(p));

    /* a manifest whose entry sits in the wrong shard */
    ckpt_entry e = {.name = "layers.1.w", .layer = 1, .ndim = 1, .shape = {6, 0}, .numel = 6, .shard = 0};
    int cuts[3] = {0, 1, 2};
    ckpt_manifest m = {.step = 1, .n_stages = 2, .data_parallel = 1, .n_layers = 2, .cuts = cuts,
                       .n_entries = 1, .entries = &e};
    cr_assert_eq(ckpt_write_manifest(dir, &m), PT_ERR_INVALID);
    assert_msg("layers.1.w", "shard 0, which holds layers [0, 1)", NULL);
    cuts[2] = 3;
    e.shard = 1;
    cr_assert_eq(ckpt_write_manifest(dir, &m), PT_ERR_INVALID);
    assert_msg("cuts run from 0 to 3", "n_layers = 2", NULL);
}

/* ---- standard tools -------------------------------------------------------- */

Test(ckpt, h5ls_shows_the_model_through_the_manifest)
{
    if (system("command -v h5ls > /dev/null 2>&1") != 0) cr_skip_test("h5ls is not installed");
    char run[CKPT_PATH_MAX], cmd[3 * CKPT_PATH_MAX], out[CKPT_PATH_MAX + 32];
    static char text[32768];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    path_in(out, sizeof out, root, "h5ls.txt");

    /* plain -r lists the links... */
    snprintf(cmd, sizeof cmd, "h5ls -r %s/step-000100/manifest.h5 > %s 2>&1", run, out);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    read_text(out, text, sizeof text);
    cr_assert(strstr(text, "/index") && strstr(text, "Dataset {7}"), "%s", text);
    cr_assert(strstr(text, "/layers/2") && strstr(text, "External Link {stage-01.h5//layers/2}"), "%s", text);

    /* ...and following them shows every tensor; the run directory moved elsewhere still works */
    char moved[CKPT_PATH_MAX + 32];
    path_in(moved, sizeof moved, root, "moved");
    cr_assert_eq(rename(run, moved), 0);
    snprintf(cmd, sizeof cmd, "cd / && h5ls -r --follow-symlinks %s/step-000100/manifest.h5 > %s 2>&1", moved, out);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    read_text(out, text, sizeof text);
    const char *lines[] = {"/layers/2/attn.w_qkv", "Dataset {9, 3}", "/layers/2/moment2/attn.w_qkv",
                           "/layers/0/b", "/layers/4/moment1/w", "Dataset {5, 9}"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        cr_assert(strstr(text, lines[i]), "h5ls output lacks '%s':\n%s", lines[i], text);
}

/* ---- single-file checkpoint (pipetrain-ckpt export) ----------------------- */

/* Reads every array of the checkpoint `path` resolves to into fm (by the
 * fake model's tensor order) and the manifest into m. */
static void read_all(const char *path, fake_model *fm, ckpt_manifest *m)
{
    char dir[CKPT_PATH_MAX];
    cr_assert_eq(ckpt_resolve(path, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_read_manifest(dir, m), PT_OK, "%s", pt_last_error());
    ckpt_reader r;
    cr_assert_eq(ckpt_reader_open(&r, dir, m), PT_OK, "%s", pt_last_error());
    memset(fm, 0, sizeof *fm);
    for (int k = 0; k < NT; k++) {
        int j = ckpt_find(m, SPECS[k].name);
        cr_assert_geq(j, 0, "%s", SPECS[k].name);
        for (int a = 0; a < CKPT_ARRAYS; a++)
            cr_assert_eq(ckpt_read_tensor(&r, &m->entries[j], a, fm->data[k][a]), PT_OK, "%s", pt_last_error());
    }
    ckpt_reader_close(&r);
}

/* Writes run's latest checkpoint (variant's data) as the single file `out`. */
static void export_single(const char *run, const char *out, int compression)
{
    fake_model fm;
    ckpt_manifest m;
    read_all(run, &fm, &m);
    ckpt_tensor t[NT];
    for (int k = 0; k < NT; k++) {
        const ckpt_entry *e = &m.entries[k];
        int s = -1;
        for (int i = 0; i < NT; i++)
            if (!strcmp(SPECS[i].name, e->name)) s = i;
        t[k] = (ckpt_tensor){.name = e->name, .layer = e->layer, .ndim = e->ndim, .shape = {e->shape[0], e->shape[1]},
                             .numel = (size_t)e->numel, .data = {fm.data[s][0], fm.data[s][1], fm.data[s][2]}};
    }
    cr_assert_eq(ckpt_write_single(out, &m, t, compression), PT_OK, "%s", pt_last_error());
    ckpt_manifest_free(&m);
}

Test(ckpt, single_file_round_trip_bit_for_bit)
{
    char run[CKPT_PATH_MAX], one[CKPT_PATH_MAX], dir[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    path_in(one, sizeof one, root, "one.h5");
    write_ckpt(run, 100, 1, 0, 1);
    export_single(run, one, 0);
    snprintf(p, sizeof p, "%s.tmp", one);
    cr_assert(!exists(p), "the temporary file is left behind");

    /* ckpt_resolve accepts the file and gives it back unchanged */
    cr_assert_eq(ckpt_resolve(one, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    cr_assert_str_eq(dir, one);
    cr_assert(ckpt_is_single(dir));
    cr_assert(!ckpt_is_single(run));
    cr_assert_eq(ckpt_shard_path(one, 0, p, sizeof p), PT_OK, "%s", pt_last_error());
    cr_assert_str_eq(p, one);
    cr_assert_eq(ckpt_shard_path(one, 1, p, sizeof p), PT_ERR_INVALID);

    /* the manifest: one stage holding every layer, everything else as written */
    ckpt_manifest m, orig;
    fake_model fm, want;
    read_all(one, &fm, &m);
    cr_assert_eq(ckpt_resolve(run, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_read_manifest(dir, &orig), PT_OK, "%s", pt_last_error());
    cr_assert_eq(m.n_stages, 1);
    cr_assert(m.cuts[0] == 0 && m.cuts[1] == N_LAYERS, "cuts %d %d", m.cuts[0], m.cuts[1]);
    cr_assert_eq(m.step, 100);
    cr_assert_eq(m.seed, SEED);
    cr_assert_eq(m.data_parallel, 2);
    cr_assert_eq(m.n_layers, N_LAYERS);
    cr_assert_str_eq(m.config_text, config_text());
    cr_assert_eq(m.n_entries, NT);
    for (int k = 0; k < NT; k++) {
        cr_assert_str_eq(m.entries[k].name, orig.entries[k].name);
        cr_assert_eq(m.entries[k].shard, 0);
        cr_assert_eq(memcmp(m.entries[k].crc, orig.entries[k].crc, sizeof m.entries[k].crc), 0, "%s: crcs differ",
                     m.entries[k].name);
    }
    /* the data, bit for bit (NaN payload, −0, denormal, inf included) */
    fill(&want, 1);
    for (int k = 0; k < NT; k++)
        for (int a = 0; a < CKPT_ARRAYS; a++)
            cr_assert_eq(memcmp(fm.data[k][a], want.data[k][a], numel_of(k) * sizeof(float)), 0, "%s array %d differs",
                         SPECS[k].name, a);
    ckpt_manifest_free(&m);
    ckpt_manifest_free(&orig);

    /* the file's own layout: shard attributes of stage 0 of 1, real groups (no links) */
    hid_t f = H5Fopen(one, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    const char *names[] = {"format_version", "stage", "n_stages", "first_layer", "last_layer", "n_layers"};
    const int vals[] = {CKPT_FORMAT_VERSION, 0, 1, 0, N_LAYERS, N_LAYERS};
    for (int i = 0; i < 6; i++) {
        int v = -1;
        hid_t at = H5Aopen(f, names[i], H5P_DEFAULT);
        cr_assert_geq(at, 0, "%s", names[i]);
        cr_assert_geq(H5Aread(at, H5T_NATIVE_INT, &v), 0);
        H5Aclose(at);
        cr_assert_eq(v, vals[i], "attribute %s = %d", names[i], v);
    }
    H5L_info_t li;
    cr_assert_geq(H5Lget_info(f, "/layers/2", &li, H5P_DEFAULT), 0);
    cr_assert_eq(li.type, H5L_TYPE_HARD, "/layers/2 should be a group of the file, not a link");
    hid_t d = H5Dopen2(f, "/layers/2/moment2/attn.w_qkv", H5P_DEFAULT);
    cr_assert_geq(d, 0);
    uint32_t c = 0;
    hid_t ca = H5Aopen(d, "crc32", H5P_DEFAULT);
    cr_assert_geq(H5Aread(ca, H5T_NATIVE_UINT32, &c), 0);
    cr_assert_eq(c, ckpt_crc32(want.data[3][2], numel_of(3)));
    H5Aclose(ca);
    H5Dclose(d);
    H5Fclose(f);

    /* compressed: the same bits */
    path_in(p, sizeof p, root, "packed.h5");
    export_single(run, p, 6);
    read_all(p, &fm, &m);
    for (int k = 0; k < NT; k++)
        for (int a = 0; a < CKPT_ARRAYS; a++)
            cr_assert_eq(memcmp(fm.data[k][a], want.data[k][a], numel_of(k) * sizeof(float)), 0);
    ckpt_manifest_free(&m);
    /* and exporting the single file again gives a single file */
    char again[CKPT_PATH_MAX];
    path_in(again, sizeof again, root, "again.h5");
    export_single(one, again, 0);
    read_all(again, &fm, &m);
    cr_assert_eq(m.n_stages, 1);
    cr_assert_eq(memcmp(fm.data[0][0], want.data[0][0], numel_of(0) * sizeof(float)), 0);
    ckpt_manifest_free(&m);
}

Test(ckpt, single_file_damage_and_wrong_files_are_named)
{
    char run[CKPT_PATH_MAX], one[CKPT_PATH_MAX], dir[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    path_in(one, sizeof one, root, "one.h5");
    write_ckpt(run, 100, 1, 0, 1);

    /* a tensor that is not its index entry: refused before anything is written */
    fake_model fm;
    ckpt_manifest m;
    read_all(run, &fm, &m);
    ckpt_tensor t[NT];
    for (int k = 0; k < NT; k++)
        t[k] = (ckpt_tensor){.name = SPECS[k].name, .layer = SPECS[k].layer, .ndim = SPECS[k].ndim,
                             .shape = {SPECS[k].shape[0], SPECS[k].shape[1]}, .numel = numel_of(k),
                             .data = {fm.data[k][0], fm.data[k][1], fm.data[k][2]}};
    t[5].shape[0] = 9, t[5].shape[1] = 5; /* layers.4.w is [5, 9] */
    cr_assert_eq(ckpt_write_single(one, &m, t, 0), PT_ERR_INVALID);
    assert_msg("one.h5", "layers.4.w", "does not match");
    cr_assert(!exists(one));
    t[5].shape[0] = 5, t[5].shape[1] = 9;
    cr_assert_eq(ckpt_write_single(one, &m, t, 0), PT_OK, "%s", pt_last_error());
    ckpt_manifest_free(&m);

    /* a shard alone, a text file: ckpt_resolve says what they are */
    path_in(p, sizeof p, run, "step-000100/stage-01.h5");
    cr_assert_eq(ckpt_resolve(p, dir, sizeof dir), PT_ERR_INVALID);
    assert_msg("stage-01.h5", "one shard of a checkpoint", "checkpoint directory");
    path_in(p, sizeof p, root, "notes.txt");
    FILE *f = fopen(p, "w");
    fputs("not a checkpoint\n", f);
    fclose(f);
    cr_assert_eq(ckpt_resolve(p, dir, sizeof dir), PT_ERR_INVALID);
    assert_msg("notes.txt", "not HDF5", "single-file checkpoint");

    /* a flipped bit: the checksum error names the file and the tensor */
    char bad[CKPT_PATH_MAX + 32];
    path_in(bad, sizeof bad, root, "bad.h5");
    char cmd[3 * CKPT_PATH_MAX];
    snprintf(cmd, sizeof cmd, "cp %s %s", one, bad);
    cr_assert_eq(system(cmd), 0);
    hid_t h = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(h, "/layers/4/w", H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(h);
    cr_assert_neq(off, HADDR_UNDEF);
    int fd = open(bad, O_RDWR);
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, (off_t)off + 9), 1);
    b ^= 0x40;
    cr_assert_eq(pwrite(fd, &b, 1, (off_t)off + 9), 1);
    close(fd);
    cr_assert_eq(ckpt_resolve(bad, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    ckpt_reader r;
    cr_assert_eq(ckpt_reader_open(&r, dir, &m), PT_OK, "%s", pt_last_error());
    float out[MAXN];
    cr_assert_eq(ckpt_read_tensor(&r, &m.entries[ckpt_find(&m, "layers.4.w")], CKPT_PARAM, out), PT_ERR_CHECKSUM);
    assert_msg("bad.h5: tensor layers.4.w", "checksum mismatch", NULL);
    cr_assert_eq(ckpt_read_tensor(&r, &m.entries[ckpt_find(&m, "layers.2.b")], CKPT_MOMENT1, out), PT_OK, "%s",
                 pt_last_error());
    ckpt_reader_close(&r);
    ckpt_manifest_free(&m);

    /* truncated: not readable, named */
    snprintf(cmd, sizeof cmd, "cp %s %s", one, bad);
    cr_assert_eq(system(cmd), 0);
    struct stat sb;
    cr_assert_eq(stat(bad, &sb), 0);
    cr_assert_eq(truncate(bad, sb.st_size / 2), 0);
    pt_status st = ckpt_resolve(bad, dir, sizeof dir);
    if (st == PT_OK) st = ckpt_read_manifest(dir, &m);
    cr_assert_eq(st, PT_ERR_FORMAT, "%s", pt_last_error());
    assert_msg("bad.h5", "is not a readable HDF5 file", NULL);

    /* n_stages rewritten: a single file holds exactly one shard */
    snprintf(cmd, sizeof cmd, "cp %s %s", one, bad);
    cr_assert_eq(system(cmd), 0);
    h = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(h, "n_stages", H5P_DEFAULT);
    int two = 2;
    cr_assert_geq(H5Awrite(a, H5T_NATIVE_INT, &two), 0);
    H5Aclose(a);
    H5Fclose(h);
    cr_assert_eq(ckpt_read_manifest(bad, &m), PT_ERR_FORMAT);
    assert_msg("bad.h5", "single-file checkpoint has n_stages 1", "says 2");
}

Test(ckpt, scan_shard_lists_every_dataset_and_odd_objects)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    path_in(p, sizeof p, run, "step-000100/stage-01.h5");
    ckpt_shard_info in;
    cr_assert_eq(ckpt_scan_shard(p, &in), PT_OK, "%s", pt_last_error());
    cr_assert(in.format_version == CKPT_FORMAT_VERSION && in.stage == 1 && in.n_stages == 3 && in.first_layer == 2 &&
              in.last_layer == 4, "attributes %d %d %d %d %d", in.format_version, in.stage, in.n_stages,
              in.first_layer, in.last_layer);
    cr_assert(in.has_step && in.step == 100 && in.has_seed && in.seed == SEED);
    cr_assert(in.has_layers);
    cr_assert_eq(in.n_datasets, 9, "stage 1 holds 3 tensors × 3 arrays, found %d", in.n_datasets);
    cr_assert_eq(in.n_other, 0);
    fake_model fm;
    fill(&fm, 1);
    int seen = 0;
    for (int i = 0; i < in.n_datasets; i++) {
        const ckpt_dataset *d = &in.datasets[i];
        cr_assert_str_eq(d->dtype, "float32");
        cr_assert(d->has_crc);
        if (!strcmp(d->name, "layers.2.attn.w_qkv")) {
            cr_assert_eq(d->layer, 2);
            cr_assert(d->ndim == 2 && d->dims[0] == 9 && d->dims[1] == 3);
            cr_assert_eq(d->crc, ckpt_crc32(fm.data[3][d->array], numel_of(3)), "array %d", d->array);
            cr_assert_eq(d->storage, 27 * 4);
            seen |= 1 << d->array;
        }
    }
    cr_assert_eq(seen, 7, "all three arrays of layers.2.attn.w_qkv, found mask %d", seen);
    ckpt_shard_info_free(&in);

    /* objects that are no tensors are reported, not fatal */
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/layers/2/junk", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    g = H5Gcreate2(f, "/layers/x", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    H5Adelete(f, "stage");
    H5Fclose(f);
    cr_assert_eq(ckpt_scan_shard(p, &in), PT_OK, "%s", pt_last_error());
    cr_assert_eq(in.n_other, 2);
    cr_assert(strstr(in.other[0], "junk") || strstr(in.other[1], "junk"), "%s | %s", in.other[0], in.other[1]);
    cr_assert(strstr(in.other[0], "/layers/x") || strstr(in.other[1], "/layers/x"), "%s | %s", in.other[0],
              in.other[1]);
    cr_assert_eq(in.stage, -1);
    cr_assert_eq(in.n_datasets, 9);
    ckpt_shard_info_free(&in);

    path_in(p, sizeof p, run, "step-000100/stage-09.h5");
    cr_assert_eq(ckpt_scan_shard(p, &in), PT_ERR_IO);
    assert_msg("stage-09.h5", "missing", NULL);
}

/* ---- untrusted metadata ------------------------------------------------------ */

/* This program's flock(): HDF5 (a shared library) resolves flock here before
 * libc. With no_locks set it fails as on NFS without lockd. */
static int no_locks;
int flock(int fd, int operation)
{
    if (no_locks) {
        errno = ENOLCK;
        return -1;
    }
    return (int)syscall(SYS_flock, fd, operation);
}

/* The field cases: <repo>/../shared/field-cases/damaged-manifest, found from
 * this file's path (PT_FIELD_CASES overrides). 0 when absent. */
static int field_case(const char *name, char *out, size_t len)
{
    const char *env = getenv("PT_FIELD_CASES");
    char base[CKPT_PATH_MAX - 64];
    if (env && *env) snprintf(base, sizeof base, "%s", env);
    else {
        snprintf(base, sizeof base, "%s", __FILE__);
        char *slash = strstr(base, "/tests/unit/");
        if (!slash) return 0;
        snprintf(slash, sizeof base - (size_t)(slash - base), "/../shared/field-cases");
    }
    snprintf(out, len, "%s/damaged-manifest/%s", base, name);
    return exists(out);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "copy %s to %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    cr_assert_eq(fclose(out), 0);
}

/* A checkpoint directory made of a field case's shards and one of its manifests. */
static int field_ckpt(const char *manifest, char *dir, size_t len)
{
    char src[CKPT_PATH_MAX], dst[2 * CKPT_PATH_MAX];
    if (!field_case(manifest, src, sizeof src)) return 0;
    path_in(dir, len, root, "field");
    mkdir(dir, 0755);
    path_in(dst, sizeof dst, dir, "manifest.h5");
    copy_file(src, dst);
    const char *shards[] = {"stage-00.h5", "stage-01.h5"};
    for (int i = 0; i < 2; i++) {
        cr_assert(field_case(shards[i], src, sizeof src));
        path_in(dst, sizeof dst, dir, shards[i]);
        copy_file(src, dst);
    }
    return 1;
}

static double seconds_since(const struct timeval *t0)
{
    struct timeval t1;
    gettimeofday(&t1, NULL);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-6 * (double)(t1.tv_usec - t0->tv_usec);
}

Test(ckpt, sandbox_turns_an_hdf5_crash_into_an_error_naming_the_file)
{
    char dir[CKPT_PATH_MAX];
    if (!field_ckpt("manifest-crash.h5", dir, sizeof dir))
        cr_skip_test("the field cases (shared/field-cases/damaged-manifest) are not here");
    unsetenv("PIPETRAIN_HDF5_TIMEOUT");
    ckpt_manifest m;
    char out[CKPT_PATH_MAX];
    cr_assert_eq(ckpt_resolve(dir, out, sizeof out), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_ERR_FORMAT);
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer finds HDF5's bad access first and ends the child with its own status */
    assert_msg("manifest.h5: damaged HDF5 metadata", "the HDF5 library crashed (", "restore it from a copy");
#else
    assert_msg("manifest.h5: damaged HDF5 metadata", "the HDF5 library crashed (SIGSEGV)", "restore it from a copy");
#endif
    cr_assert_null(m.entries);
    /* the shards of the same case are intact version 1 files: scanned, and
     * the sandbox changes nothing for them */
    char p[CKPT_PATH_MAX + 32];
    path_in(p, sizeof p, dir, "stage-01.h5");
    ckpt_shard_info in;
    cr_assert_eq(ckpt_scan_shard(p, &in), PT_OK, "%s", pt_last_error());
    cr_assert(in.format_version == 1 && in.stage == 1 && in.n_stages == 2, "%d %d %d", in.format_version,
              in.stage, in.n_stages);
    cr_assert_gt(in.n_datasets, 0);
    ckpt_shard_info_free(&in);
}

Test(ckpt, sandbox_turns_an_hdf5_hang_into_an_error_within_the_time_limit)
{
    char dir[CKPT_PATH_MAX];
    ckpt_manifest m;
    setenv("PIPETRAIN_HDF5_TIMEOUT", "2", 1);
    if (field_ckpt("manifest-hang.h5", dir, sizeof dir)) {
        struct timeval t0;
        gettimeofday(&t0, NULL);
        cr_assert_eq(ckpt_read_manifest(dir, &m), PT_ERR_FORMAT);
        double dt = seconds_since(&t0);
        assert_msg("manifest.h5: damaged HDF5 metadata", "did not finish reading it in 2 s", NULL);
        cr_assert(dt < 10, "took %.1f s", dt);
    }
    /* without the field cases too: a FIFO in place of the manifest blocks
     * HDF5's open() forever */
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    path_in(p, sizeof p, run, "step-000100/manifest.h5");
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(mkfifo(p, 0644), 0, "mkfifo: %s", strerror(errno));
    path_in(p, sizeof p, run, "step-000100");
    struct timeval t0;
    gettimeofday(&t0, NULL);
    cr_assert_eq(ckpt_read_manifest(p, &m), PT_ERR_FORMAT);
    double dt = seconds_since(&t0);
    assert_msg("step-000100/manifest.h5: damaged HDF5 metadata", "did not finish reading it in 2 s",
               "PIPETRAIN_HDF5_TIMEOUT");
    cr_assert(dt >= 1.9 && dt < 10, "took %.1f s", dt);
    /* a bad setting is named */
    setenv("PIPETRAIN_HDF5_TIMEOUT", "soon", 1);
    cr_assert_eq(ckpt_read_manifest(p, &m), PT_ERR_INVALID);
    assert_msg("PIPETRAIN_HDF5_TIMEOUT='soon'", "seconds", NULL);
    unsetenv("PIPETRAIN_HDF5_TIMEOUT");
}

/* Replaces /index of a manifest by one of the same row type declaring n rows
 * (never written: the file stays small). */
static void redeclare_index(const char *manifest, hsize_t n)
{
    hid_t f = H5Fopen(manifest, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, "index", H5P_DEFAULT), t = H5Dget_type(d);
    H5Dclose(d);
    cr_assert_geq(H5Ldelete(f, "index", H5P_DEFAULT), 0);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    d = H5Dcreate2(f, "index", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(d, 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Tclose(t);
    H5Fclose(f);
}

Test(ckpt, huge_declared_sizes_are_refused_before_allocating)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32], dir[CKPT_PATH_MAX];
    ckpt_manifest m;
    path_in(run, sizeof run, root, "run");
    path_in(dir, sizeof dir, run, "step-000100");
    path_in(p, sizeof p, dir, "manifest.h5");

    /* an index of 8 M rows (960 MB) in a file of a few KiB */
    write_ckpt(run, 100, 1, 0, 1);
    redeclare_index(p, (hsize_t)1 << 23);
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_ERR_FORMAT);
    assert_msg("manifest.h5: /index declares 8388608 entries", "more than the file's", "damaged");

    /* a tensor of 2^44 elements (64 TiB): consistent shape and numel, but no
     * shard file can hold it, so no caller allocates it */
    write_ckpt(run, 100, 1, 0, 1);
    fake_model fm;
    fill(&fm, 1);
    uint32_t crc_all[NT * CKPT_ARRAYS] = {0};
    ckpt_entry e[NT];
    int cuts[N_STAGES + 1];
    make_manifest(&m, e, cuts, 100, crc_all);
    e[5].shape[0] = 1 << 22;
    e[5].shape[1] = 1 << 22;
    e[5].numel = (int64_t)1 << 44;
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(ckpt_write_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_ERR_FORMAT);
    assert_msg("manifest.h5: tensor layers.4.w declares 17592186044416 elements", "stage-02.h5 has only",
               "damaged");

    /* a config string of 17 MiB: over the bound for a string attribute */
    write_ckpt(run, 100, 1, 0, 1);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(H5Adelete(f, "config"), 0);
    size_t big = (size_t)17 << 20;
    char *text = malloc(big);
    cr_assert_not_null(text);
    memset(text, 'a', big - 1);
    text[big - 1] = '\0';
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, big);
    hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(f, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(a, 0);
    cr_assert_geq(H5Awrite(a, t, text), 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Fclose(f);
    free(text);
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_ERR_FORMAT);
    assert_msg("manifest.h5: attribute 'config' declares a string of 17825792 bytes", "more than allowed",
               NULL);
}

/* Rewrites a manifest as format version 1 wrote it: format_version 1 and the
 * config as a variable-length string. */
static void make_version_1(const char *manifest, int version)
{
    hid_t f = H5Fopen(manifest, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    cr_assert_geq(H5Awrite(a, H5T_NATIVE_INT, &version), 0);
    H5Aclose(a);
    cr_assert_geq(H5Adelete(f, "config"), 0);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    a = H5Acreate2(f, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char *text = config_text();
    cr_assert_geq(H5Awrite(a, t, &text), 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Fclose(f);
}

Test(ckpt, version_2_checksums_metadata_and_stores_no_variable_length_strings)
{
    char run[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 3, 1);
    const char *files[] = {"step-000100/manifest.h5", "step-000100/stage-01.h5"};
    for (int i = 0; i < 2; i++) {
        path_in(p, sizeof p, run, files[i]);
        hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
        cr_assert_geq(f, 0);
        H5F_info2_t info;
        cr_assert_geq(H5Fget_info2(f, &info), 0);
        /* superblock 2+ and object header 2: checksummed metadata */
        cr_assert_geq(info.super.version, 2, "%s: superblock version %u", files[i], info.super.version);
        int v = 0;
        hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
        H5Aread(a, H5T_NATIVE_INT, &v);
        H5Aclose(a);
        cr_assert_eq(v, 2);
        if (i == 0) {
            a = H5Aopen(f, "config", H5P_DEFAULT);
            hid_t t = H5Aget_type(a);
            cr_assert_eq(H5Tis_variable_str(t), 0, "config is a variable-length string");
            H5Tclose(t);
            H5Aclose(a);
        }
        H5Fclose(f);
    }
    check_ckpt(run, 100, 1);

    /* a version 1 manifest (variable-length config) and version 1 shards still read */
    path_in(p, sizeof p, run, "step-000100/manifest.h5");
    make_version_1(p, 1);
    for (int s = 0; s < N_STAGES; s++) {
        char shard[CKPT_PATH_MAX + 32], name[32];
        snprintf(name, sizeof name, "step-000100/stage-%02d.h5", s);
        path_in(shard, sizeof shard, run, name);
        hid_t f = H5Fopen(shard, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
        int one = 1;
        cr_assert_geq(H5Awrite(a, H5T_NATIVE_INT, &one), 0);
        H5Aclose(a);
        H5Fclose(f);
    }
    char dir[CKPT_PATH_MAX];
    ckpt_manifest m;
    cr_assert_eq(ckpt_resolve(run, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    cr_assert_eq(m.format_version, 1);
    cr_assert_str_eq(m.config_text, config_text());
    ckpt_reader r;
    cr_assert_eq(ckpt_reader_open(&r, dir, &m), PT_OK, "%s", pt_last_error());
    float out[MAXN];
    for (int k = 0; k < NT; k++)
        cr_assert_eq(ckpt_read_tensor(&r, &m.entries[k], CKPT_MOMENT2, out), PT_OK, "%s", pt_last_error());
    ckpt_reader_close(&r);
    ckpt_manifest_free(&m);

    /* version 2 never stores a variable-length string: one there is damage */
    make_version_1(p, 2);
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_ERR_FORMAT);
    assert_msg("manifest.h5: attribute 'config' is a variable-length string", "fixed-length", NULL);
}

Test(ckpt, lock_failure_is_named_as_one_with_the_fix)
{
    char run[CKPT_PATH_MAX], dir[CKPT_PATH_MAX], p[CKPT_PATH_MAX + 32];
    path_in(run, sizeof run, root, "run");
    write_ckpt(run, 100, 1, 0, 1);
    cr_assert_eq(ckpt_resolve(run, dir, sizeof dir), PT_OK, "%s", pt_last_error());
    ckpt_manifest m;
    unsetenv("HDF5_USE_FILE_LOCKING");
    no_locks = 1;
    pt_status st = ckpt_read_manifest(dir, &m);
    no_locks = 0;
    cr_assert_eq(st, PT_ERR_LOCK, "status %d: %s", st, pt_last_error());
    assert_msg("manifest.h5: cannot lock the file", "HDF5_USE_FILE_LOCKING=FALSE", "-x HDF5_USE_FILE_LOCKING");
    cr_assert_null(strstr(pt_last_error(), "damaged"), "%s", pt_last_error());
    cr_assert_null(strstr(pt_last_error(), "not a readable"), "%s", pt_last_error());

    /* the shard reader and the scanner say the same */
    cr_assert_eq(ckpt_read_manifest(dir, &m), PT_OK, "%s", pt_last_error());
    ckpt_reader r;
    cr_assert_eq(ckpt_reader_open(&r, dir, &m), PT_OK, "%s", pt_last_error());
    float out[MAXN];
    no_locks = 1;
    st = ckpt_read_tensor(&r, &m.entries[0], CKPT_PARAM, out);
    no_locks = 0;
    cr_assert_eq(st, PT_ERR_LOCK, "%s", pt_last_error());
    assert_msg("stage-00.h5: cannot lock the file", "HDF5_USE_FILE_LOCKING=FALSE", NULL);
    ckpt_reader_close(&r);
    ckpt_manifest_free(&m);
    path_in(p, sizeof p, dir, "stage-01.h5");
    ckpt_shard_info in;
    no_locks = 1;
    st = ckpt_scan_shard(p, &in);
    no_locks = 0;
    cr_assert_eq(st, PT_ERR_LOCK, "%s", pt_last_error());

    /* writing: the start-up check and a shard */
    char rundir[CKPT_PATH_MAX];
    path_in(rundir, sizeof rundir, root, "fresh/run");
    no_locks = 1;
    st = ckpt_check_dir_writable(rundir, ".probe-0.h5");
    no_locks = 0;
    cr_assert_eq(st, PT_ERR_LOCK, "%s", pt_last_error());
    assert_msg(".probe-0.h5: cannot lock the file", "export HDF5_USE_FILE_LOCKING=FALSE", NULL);
    path_in(p, sizeof p, rundir, ".probe-0.h5");
    cr_assert(!exists(p), "the probe file was left behind");

    /* HDF5 takes HDF5_USE_FILE_LOCKING=FALSE only at start-up: the
     * command-line test (field_faults_ckpt.sh) shows that it is the fix */
}

Test(ckpt, check_dir_writable_creates_the_dir_and_leaves_nothing)
{
    char rundir[CKPT_PATH_MAX];
    path_in(rundir, sizeof rundir, root, "a/b/run");
    cr_assert_eq(ckpt_check_dir_writable(rundir, ".probe-3.h5"), PT_OK, "%s", pt_last_error());
    DIR *d = opendir(rundir);
    cr_assert_not_null(d, "%s was not created", rundir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    cr_assert_eq(n, 0, "the probe left %d files", n);
    /* again, on the existing directory */
    cr_assert_eq(ckpt_check_dir_writable(rundir, ".probe-3.h5"), PT_OK, "%s", pt_last_error());
    cr_assert_eq(ckpt_check_dir_writable(rundir, "a/b"), PT_ERR_INVALID);
}

Test(ckpt, check_dir_writable_below_a_regular_file)
{
    char file[CKPT_PATH_MAX], rundir[CKPT_PATH_MAX + 32];
    path_in(file, sizeof file, root, "plain");
    FILE *f = fopen(file, "w");
    fputs("not a directory\n", f);
    fclose(f);
    path_in(rundir, sizeof rundir, file, "sub/run");
    cr_assert_eq(ckpt_check_dir_writable(rundir, ".probe-0.h5"), PT_ERR_IO);
    char want[CKPT_PATH_MAX * 3];
    snprintf(want, sizeof want, "checkpoint.dir %s: cannot create directory: %s is not a directory", rundir, file);
    cr_assert_str_eq(pt_last_error(), want);
    /* the run directory itself a regular file */
    cr_assert_eq(ckpt_check_dir_writable(file, ".probe-0.h5"), PT_ERR_IO);
    assert_msg("checkpoint.dir", "plain is not a directory", NULL);
}

Test(ckpt, check_dir_writable_on_a_read_only_dir)
{
    if (geteuid() == 0) cr_skip_test("running as root, which ignores permissions");
    char rundir[CKPT_PATH_MAX];
    path_in(rundir, sizeof rundir, root, "ro");
    cr_assert_eq(mkdir(rundir, 0555), 0);
    pt_status st = ckpt_check_dir_writable(rundir, ".probe-0.h5");
    chmod(rundir, 0755);
    cr_assert_eq(st, PT_ERR_IO, "%s", pt_last_error());
    assert_msg("checkpoint.dir", "/ro: cannot create a file in it", "Permission denied");
}

