/* checkpoint — save and load throughput of the HDF5 checkpoint library
 * (checkpoint/ckpt.h) beside plain write(2) and read(2) of the same bytes on
 * the same disk.
 *
 * The model is synthetic: L layers, each with a weight "layers.<l>.w"
 * [1024, 2048] and a bias "layers.<l>.b" [1024], held as three flat buffers
 * (parameters, moment1, moment2) as a stage holds them. L is the smallest
 * count whose parameters plus both moments reach --mb MB (MB = 10^6 bytes;
 * the default 200 gives 8 layers, 201.4 MB), and at least --stages. The
 * layers are split into S contiguous stages (--stages, default 2) whose
 * shards are written one after another, as S ranks would write them.
 *
 * Operations (each timed as a whole, wall clock):
 *   raw write   open + write(2) in 8 MiB blocks + fsync + close of one file
 *               holding all three buffers, in the same directory;
 *   raw read    open + read(2) of that file in 8 MiB blocks + close;
 *   save        ckpt_begin → ckpt_write_shard for every stage (each fsyncs
 *               its file and the directory) → ckpt_write_manifest →
 *               ckpt_commit, as engine/persist.c calls them;
 *   load        ckpt_resolve → ckpt_read_manifest → ckpt_reader_open →
 *               ckpt_read_tensor of every array of every tensor (which checks
 *               each crc32) → ckpt_reader_close;
 *   save and load again with compression = 1 (deflate level 1);
 *   crc32       ckpt_crc32 over every array in memory, for reference: the
 *               library computes it once per array on save and on load.
 * Every figure is tensor bytes (parameters + 2 moments) / seconds. After each
 * read the data are compared with what was written.
 *
 * Page cache (--cache): reads come right after their write. With "cold" (the
 * default) every file written (the raw file; the shards, manifest and
 * `latest` of a checkpoint) is dropped from the page cache after its fsync
 * with posix_fadvise(POSIX_FADV_DONTNEED), outside the timed region; with
 * "warm" nothing is dropped. Either way both kinds of file get the same
 * treatment, and the share of their pages still resident just before each
 * read (mincore) is printed.
 *
 * One uncounted round of raw write + read and save + load comes first (the
 * first writes of a process pay for fresh pages: on the test VM they took 4-5
 * times as long as the later ones, raw and checkpoint alike). Then each repeat
 * (--repeat, default 3) runs raw write + read and save + load in
 * alternating order (raw first in odd repeats, checkpoint first in even
 * ones), then the compressed save + load. Before every timed write the
 * previous files are removed and the file system is synced, outside the
 * timed region. The table gives the best and median of the repeats; the
 * closing `save:` and `load:` lines give the medians, as a percentage of the
 * median raw write (with its fsync) and raw read. The CPU time that other
 * processes used meanwhile (from /proc/stat, as in bench/sgemm_peak) is
 * printed per repeat and for the run: the figures mean little on a busy
 * machine.
 *
 * Usage: checkpoint [--dir DIR] [--mb N] [--stages S] [--repeat R]
 *                   [--cache cold|warm] [--no-deflate] [--help]
 * DIR is where a fresh working directory (pt-ckpt-bench-XXXXXX) is made and
 * removed at the end; the default is /tmp. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"
#include "ckpt.h"
#include "pt_status.h"

#define ROWS 1024
#define COLS 2048
#define BLOCK ((size_t)8 << 20) /* raw I/O block */
#define MAX_REPEAT 100
#define MAX_STAGES 64
#define STEP 1L
#define SEED 1234ULL

enum { OP_RAW_W, OP_RAW_R, OP_SAVE0, OP_LOAD0, OP_SAVE1, OP_LOAD1, OP_CRC, N_OPS };
static const char *const op_name[N_OPS] = {
    "raw write + fsync", "raw read", "save, compression=0", "load, compression=0",
    "save, compression=1", "load, compression=1", "crc32 alone (in memory)"};
/* the raw operation each one is compared with (-1: none) */
static const int op_ref[N_OPS] = {-1, -1, OP_RAW_W, OP_RAW_R, OP_RAW_W, OP_RAW_R, -1};

typedef struct {
    int n_layers, n_stages, n_tensors;
    int cuts[MAX_STAGES + 1];
    char (*names)[CKPT_NAME_MAX];
    ckpt_tensor *tensors;   /* global order: layer by layer, w then b */
    size_t *offset;         /* of each tensor in the flat buffers */
    ckpt_entry *entries;    /* manifest index (shard and crc filled per save) */
    uint32_t *crc;          /* n_tensors · CKPT_ARRAYS */
    size_t numel;           /* floats per buffer */
    double bytes;           /* tensor bytes: 3 · numel · 4 */
    float *src[CKPT_ARRAYS];
    float *dst[CKPT_ARRAYS];
    char work[CKPT_PATH_MAX - 256]; /* leaves room for the names below it */
    char raw[CKPT_PATH_MAX];
    char run[2][CKPT_PATH_MAX]; /* by compression: 0 and 1 */
} bench;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) { g_stop = sig; }


static void loadavg(char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3) snprintf(out, len, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

/* ---- files ------------------------------------------------------------- */

/* rm -rf without following symbolic links; ENOENT is fine. */
static int remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(sb.st_mode)) return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    DIR *d = opendir(path);
    if (!d) return -1;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char child[CKPT_PATH_MAX];
        if (snprintf(child, sizeof child, "%s/%s", path, de->d_name) >= (int)sizeof child) rc = -1;
        else rc = remove_tree(child);
    }
    closedir(d);
    if (rc == 0 && rmdir(path) != 0 && errno != ENOENT) rc = -1;
    return rc;
}

/* Calls fn(path, ctx) on every regular file under path (recursively). */
static int each_file(const char *path, int (*fn)(const char *, void *), void *ctx)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) return -1;
    if (S_ISREG(sb.st_mode)) return fn(path, ctx);
    if (!S_ISDIR(sb.st_mode)) return 0;
    DIR *d = opendir(path);
    if (!d) return -1;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char child[CKPT_PATH_MAX];
        if (snprintf(child, sizeof child, "%s/%s", path, de->d_name) >= (int)sizeof child) rc = -1;
        else rc = each_file(child, fn, ctx);
    }
    closedir(d);
    return rc;
}

/* fdatasync (a no-op for data already synced) and drop from the page cache. */
static int drop_file(const char *path, void *ctx)
{
    (void)ctx;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fdatasync(fd);
    if (rc == 0) rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0 ? 0 : -1;
    close(fd);
    return rc;
}

typedef struct {
    double resident, total; /* bytes */
} residency;

static int count_resident(const char *path, void *ctx)
{
    residency *r = ctx;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    struct stat sb;
    int rc = fstat(fd, &sb);
    if (rc == 0 && sb.st_size > 0) {
        long page = sysconf(_SC_PAGESIZE);
        size_t pages = ((size_t)sb.st_size + (size_t)page - 1) / (size_t)page;
        void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
        unsigned char *vec = malloc(pages);
        if (map != MAP_FAILED && vec && mincore(map, (size_t)sb.st_size, vec) == 0) {
            size_t in = 0;
            for (size_t i = 0; i < pages; i++) in += vec[i] & 1;
            r->resident += (double)in * (double)page;
            r->total += (double)pages * (double)page;
        } else {
            rc = -1;
        }
        free(vec);
        if (map != MAP_FAILED) munmap(map, (size_t)sb.st_size);
    }
    close(fd);
    return rc;
}

static int add_size(const char *path, void *ctx)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    *(double *)ctx += (double)sb.st_size;
    return 0;
}

/* Share of the pages of the files under path held in the page cache (0..1),
 * -1 when it cannot be told. */
static double resident_share(const char *path)
{
    residency r = {0.0, 0.0};
    if (each_file(path, count_resident, &r) != 0 || r.total <= 0.0) return -1.0;
    return r.resident / r.total;
}

/* ---- the model ------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* Values shaped like an AdamW state: parameters ~ U(-0.05, 0.05), moment1
 * ~ U(-1e-3, 1e-3), moment2 ~ U(0, 1e-6); random mantissas, so deflate
 * finds about as little to squeeze as in trained weights. */
static void fill(bench *b)
{
    static const float scale[CKPT_ARRAYS] = {0.1f, 2e-3f, 1e-6f};
    static const float shift[CKPT_ARRAYS] = {-0.5f, -0.5f, 0.0f};
    for (int a = 0; a < CKPT_ARRAYS; a++) {
        uint64_t s = 0x9E3779B97F4A7C15ULL * (uint64_t)(a + 1);
        for (size_t i = 0; i < b->numel; i++)
            b->src[a][i] = scale[a] * ((float)rng_next(&s) / 2147483648.0f + shift[a]);
    }
}

static int build_model(bench *b, int mb, int stages)
{
    double per_layer = 3.0 * 4.0 * ((double)ROWS * COLS + ROWS);
    int L = (int)((double)mb * 1e6 / per_layer);
    if ((double)L * per_layer < (double)mb * 1e6) L++;
    if (L < stages) L = stages;
    b->n_layers = L;
    b->n_stages = stages;
    b->n_tensors = 2 * L;
    for (int s = 0; s <= stages; s++) b->cuts[s] = (int)((long)s * L / stages);
    int n = b->n_tensors;
    b->names = calloc((size_t)n, sizeof *b->names);
    b->tensors = calloc((size_t)n, sizeof *b->tensors);
    b->offset = calloc((size_t)n, sizeof *b->offset);
    b->entries = calloc((size_t)n, sizeof *b->entries);
    b->crc = calloc((size_t)n * CKPT_ARRAYS, sizeof *b->crc);
    if (!b->names || !b->tensors || !b->offset || !b->entries || !b->crc) return -1;
    b->numel = (size_t)L * ((size_t)ROWS * COLS + ROWS);
    b->bytes = 3.0 * 4.0 * (double)b->numel;
    for (int a = 0; a < CKPT_ARRAYS; a++) {
        b->src[a] = malloc(b->numel * sizeof(float));
        b->dst[a] = malloc(b->numel * sizeof(float));
        if (!b->src[a] || !b->dst[a]) return -1;
        memset(b->dst[a], 0, b->numel * sizeof(float)); /* fault the pages in before any timing */
    }
    fill(b);
    size_t off = 0;
    for (int l = 0, k = 0; l < L; l++) {
        for (int j = 0; j < 2; j++, k++) {
            int ndim = j == 0 ? 2 : 1;
            size_t numel = j == 0 ? (size_t)ROWS * COLS : ROWS;
            snprintf(b->names[k], CKPT_NAME_MAX, "layers.%d.%s", l, j == 0 ? "w" : "b");
            b->offset[k] = off;
            b->tensors[k] = (ckpt_tensor){b->names[k], l, ndim, {ROWS, j == 0 ? COLS : 0}, numel,
                                          {b->src[0] + off, b->src[1] + off, b->src[2] + off}};
            ckpt_entry *e = &b->entries[k];
            memcpy(e->name, b->names[k], CKPT_NAME_MAX);
            e->layer = l;
            e->ndim = ndim;
            e->shape[0] = ROWS;
            e->shape[1] = j == 0 ? COLS : 0;
            e->numel = (int64_t)numel;
            for (int s = 0; s < stages; s++)
                if (l >= b->cuts[s] && l < b->cuts[s + 1]) e->shard = s;
            off += numel;
        }
    }
    return 0;
}

static void free_model(bench *b)
{
    for (int a = 0; a < CKPT_ARRAYS; a++) {
        free(b->src[a]);
        free(b->dst[a]);
    }
    free(b->names);
    free(b->tensors);
    free(b->offset);
    free(b->entries);
    free(b->crc);
}

/* First tensor of stage s (tensors are in layer order, two per layer). */
static int stage_first_tensor(const bench *b, int s) { return 2 * b->cuts[s]; }

static int same_data(const bench *b, const char *what)
{
    for (int a = 0; a < CKPT_ARRAYS; a++)
        if (memcmp(b->src[a], b->dst[a], b->numel * sizeof(float)) != 0) {
            fprintf(stderr, "checkpoint: %s: the data read back differ from the data written (array %d)\n", what, a);
            return -1;
        }
    return 0;
}

/* ---- the timed operations --------------------------------------------- */

static int raw_write(const bench *b)
{
    int fd = open(b->raw, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "checkpoint: cannot create %s: %s\n", b->raw, strerror(errno));
        return -1;
    }
    for (int a = 0; a < CKPT_ARRAYS; a++) {
        const char *p = (const char *)b->src[a];
        size_t left = b->numel * sizeof(float);
        while (left > 0) {
            ssize_t w = write(fd, p, left < BLOCK ? left : BLOCK);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                fprintf(stderr, "checkpoint: write to %s failed: %s\n", b->raw, w < 0 ? strerror(errno) : "no progress");
                close(fd);
                return -1;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    if (fsync(fd) != 0) {
        fprintf(stderr, "checkpoint: fsync of %s failed: %s\n", b->raw, strerror(errno));
        close(fd);
        return -1;
    }
    if (close(fd) != 0) {
        fprintf(stderr, "checkpoint: close of %s failed: %s\n", b->raw, strerror(errno));
        return -1;
    }
    return 0;
}

static int raw_read(const bench *b)
{
    int fd = open(b->raw, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "checkpoint: cannot open %s: %s\n", b->raw, strerror(errno));
        return -1;
    }
    for (int a = 0; a < CKPT_ARRAYS; a++) {
        char *p = (char *)b->dst[a];
        size_t left = b->numel * sizeof(float);
        while (left > 0) {
            ssize_t r = read(fd, p, left < BLOCK ? left : BLOCK);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                fprintf(stderr, "checkpoint: read of %s failed: %s\n", b->raw, r < 0 ? strerror(errno) : "file too short");
                close(fd);
                return -1;
            }
            p += r;
            left -= (size_t)r;
        }
    }
    close(fd);
    return 0;
}

static int ckpt_error(const char *what, pt_status st)
{
    fprintf(stderr, "checkpoint: %s: %s: %s\n", what, pt_status_str(st), pt_last_error());
    return -1;
}

static int ckpt_save(bench *b, int level)
{
    const char *run = b->run[level];
    char tmp[CKPT_PATH_MAX];
    pt_status st = ckpt_begin(run, STEP, tmp, sizeof tmp);
    if (st) return ckpt_error("ckpt_begin", st);
    for (int s = 0; s < b->n_stages; s++) {
        int k0 = stage_first_tensor(b, s), k1 = stage_first_tensor(b, s + 1);
        ckpt_shard sh = {s, b->n_stages, b->cuts[s], b->cuts[s + 1], STEP, SEED, level, k1 - k0,
                         b->tensors + k0, NULL, NULL};
        if ((st = ckpt_write_shard(tmp, &sh, b->crc + (size_t)k0 * CKPT_ARRAYS))) return ckpt_error("ckpt_write_shard", st);
    }
    for (int k = 0; k < b->n_tensors; k++)
        for (int a = 0; a < CKPT_ARRAYS; a++) b->entries[k].crc[a] = b->crc[(size_t)k * CKPT_ARRAYS + a];
    char config[] = "# bench/checkpoint: synthetic model\n";
    ckpt_manifest m = {CKPT_FORMAT_VERSION, STEP, SEED, b->n_stages, 1, b->n_layers, b->cuts, config,
                       b->n_tensors, b->entries, NULL, ""};
    if ((st = ckpt_write_manifest(tmp, &m))) return ckpt_error("ckpt_write_manifest", st);
    if ((st = ckpt_commit(run, STEP))) return ckpt_error("ckpt_commit", st);
    return 0;
}

static int ckpt_load(bench *b, int level)
{
    char dir[CKPT_PATH_MAX];
    ckpt_manifest man;
    ckpt_reader rd;
    memset(&man, 0, sizeof man);
    memset(&rd, 0, sizeof rd);
    int rc = 0;
    pt_status st = ckpt_resolve(b->run[level], dir, sizeof dir);
    if (st) return ckpt_error("ckpt_resolve", st);
    if ((st = ckpt_read_manifest(dir, &man))) return ckpt_error("ckpt_read_manifest", st);
    if ((st = ckpt_reader_open(&rd, dir, &man))) {
        rc = ckpt_error("ckpt_reader_open", st);
        goto done;
    }
    for (int i = 0; i < man.n_entries && rc == 0; i++) {
        const ckpt_entry *e = &man.entries[i];
        int k = -1;
        for (int j = 0; j < b->n_tensors && k < 0; j++)
            if (!strncmp(b->names[j], e->name, CKPT_NAME_MAX)) k = j;
        if (k < 0 || (size_t)e->numel != b->tensors[k].numel) {
            fprintf(stderr, "checkpoint: the checkpoint holds tensor %.*s, which the model lacks or shapes differently\n",
                    CKPT_NAME_MAX, e->name);
            rc = -1;
            break;
        }
        for (int a = 0; a < CKPT_ARRAYS && rc == 0; a++)
            if ((st = ckpt_read_tensor(&rd, e, a, b->dst[a] + b->offset[k]))) rc = ckpt_error("ckpt_read_tensor", st);
    }
    if (rc == 0 && man.n_entries != b->n_tensors) {
        fprintf(stderr, "checkpoint: the manifest lists %d tensors, expected %d\n", man.n_entries, b->n_tensors);
        rc = -1;
    }
done:
    ckpt_reader_close(&rd);
    ckpt_manifest_free(&man);
    return rc;
}

static uint32_t crc_all(const bench *b)
{
    uint32_t x = 0;
    for (int k = 0; k < b->n_tensors; k++)
        for (int a = 0; a < CKPT_ARRAYS; a++) x ^= ckpt_crc32(b->tensors[k].data[a], b->tensors[k].numel);
    return x;
}

/* ---- the run ------------------------------------------------------------ */

typedef struct {
    double secs[N_OPS][MAX_REPEAT];
    double resident[N_OPS][MAX_REPEAT]; /* before reads: share of pages cached */
    double disk[2];                     /* bytes on disk of the checkpoint, by compression */
    int cold;
} results;

/* Removes what a write is about to replace and syncs, outside the timing. */
static int prepare_write(const char *path)
{
    if (remove_tree(path) != 0) {
        fprintf(stderr, "checkpoint: cannot remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    sync();
    return 0;
}

/* After a write: drop the files from the page cache when cold. */
static int after_write(const char *path, int cold)
{
    if (!cold) return 0;
    if (each_file(path, drop_file, NULL) != 0) {
        fprintf(stderr, "checkpoint: cannot drop %s from the page cache: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int do_raw(bench *b, results *res, int r)
{
    double t0;
    if (prepare_write(b->raw)) return -1;
    t0 = now_s();
    if (raw_write(b)) return -1;
    res->secs[OP_RAW_W][r] = now_s() - t0;
    if (after_write(b->raw, res->cold)) return -1;
    res->resident[OP_RAW_R][r] = resident_share(b->raw);
    t0 = now_s();
    if (raw_read(b)) return -1;
    res->secs[OP_RAW_R][r] = now_s() - t0;
    return same_data(b, "raw read");
}

static int do_ckpt(bench *b, results *res, int r, int level)
{
    int ow = level ? OP_SAVE1 : OP_SAVE0, orr = level ? OP_LOAD1 : OP_LOAD0;
    const char *run = b->run[level];
    double t0;
    if (prepare_write(run)) return -1;
    t0 = now_s();
    if (ckpt_save(b, level)) return -1;
    res->secs[ow][r] = now_s() - t0;
    double size = 0.0;
    if (each_file(run, add_size, &size) == 0) res->disk[level] = size;
    if (after_write(run, res->cold)) return -1;
    res->resident[orr][r] = resident_share(run);
    t0 = now_s();
    if (ckpt_load(b, level)) return -1;
    res->secs[orr][r] = now_s() - t0;
    return same_data(b, level ? "load (compression=1)" : "load (compression=0)");
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, c = *(const double *)y;
    return a < c ? -1 : a > c ? 1 : 0;
}

/* best (smallest) and median of n seconds */
static void stats(const double *v, int n, double *best, double *median)
{
    double s[MAX_REPEAT];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    *best = s[0];
    *median = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static void report(const bench *b, const results *res, int repeat, int deflate)
{
    double mb = b->bytes / 1e6, best[N_OPS], med[N_OPS];
    for (int o = 0; o < N_OPS; o++) stats(res->secs[o], repeat, &best[o], &med[o]);
    printf("\n| operation | MB | s best | s median | MB/s best | MB/s median | MB/s each repeat | %% of raw (best) | "
           "%% of raw (median) |\n");
    printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for (int o = 0; o < N_OPS; o++) {
        if (!deflate && (o == OP_SAVE1 || o == OP_LOAD1)) continue;
        char each[512] = "";
        size_t len = 0;
        for (int r = 0; r < repeat && len + 16 < sizeof each; r++)
            len += (size_t)snprintf(each + len, sizeof each - len, "%s%.0f", r ? ", " : "", mb / res->secs[o][r]);
        printf("| %s | %.1f | %.3f | %.3f | %.0f | %.0f | %s |", op_name[o], mb, best[o], med[o], mb / best[o],
               mb / med[o], each);
        if (op_ref[o] >= 0)
            printf(" %.0f%% | %.0f%% |\n", 100.0 * best[op_ref[o]] / best[o], 100.0 * med[op_ref[o]] / med[o]);
        else
            printf(" — | — |\n");
    }
    printf("\nfiles on disk: raw %.1f MB; checkpoint, compression=0: %.1f MB", mb, res->disk[0] / 1e6);
    if (deflate) printf("; compression=1: %.1f MB (%.1f%% of the tensor bytes)", res->disk[1] / 1e6,
                        100.0 * res->disk[1] / b->bytes);
    printf("\n");
    for (int o = OP_RAW_R; o <= OP_LOAD1; o++) {
        if (o != OP_RAW_R && o != OP_LOAD0 && !(deflate && o == OP_LOAD1)) continue;
        printf("%s: page-cache share of the file pages before the read:", op_name[o]);
        for (int r = 0; r < repeat; r++) {
            if (res->resident[o][r] < 0) printf(" ?");
            else printf(" %.1f%%", 100.0 * res->resident[o][r]);
        }
        printf("\n");
    }
    printf("\nsave: %.0f MB/s (%.0f%% of raw write+fsync)\n", mb / med[OP_SAVE0], 100.0 * med[OP_RAW_W] / med[OP_SAVE0]);
    printf("load: %.0f MB/s (%.0f%% of raw read)\n", mb / med[OP_LOAD0], 100.0 * med[OP_RAW_R] / med[OP_LOAD0]);
}

static int run_bench(bench *b, int repeat, int cold, int deflate)
{
    results *res = calloc(1, sizeof *res);
    if (!res) {
        fprintf(stderr, "checkpoint: out of memory\n");
        return -1;
    }
    res->cold = cold;
    cpu_sample c0 = cpu_now(), cr = c0;
    /* an uncounted round first: the first writes of a process on this VM pay
     * for fresh pages (they took 4-5 times as long), whichever comes first */
    int rc = do_raw(b, res, 0);
    if (rc == 0) rc = do_ckpt(b, res, 0, 0);
    if (rc == 0) fprintf(stderr, "warm-up round (not counted): raw write %.2f s, save %.2f s\n",
                         res->secs[OP_RAW_W][0], res->secs[OP_SAVE0][0]);
    for (int r = 0; r < repeat && rc == 0; r++) {
        cr = cpu_now();
        for (int half = 0; half < 2 && rc == 0; half++) {
            int raw_now = (r % 2 == 0) == (half == 0); /* raw first in repeats 1, 3, ... */
            rc = raw_now ? do_raw(b, res, r) : do_ckpt(b, res, r, 0);
            if (g_stop) rc = -1;
        }
        if (rc == 0 && deflate) rc = do_ckpt(b, res, r, 1);
        if (rc == 0) {
            double t0 = now_s();
            volatile uint32_t x = crc_all(b);
            (void)x;
            res->secs[OP_CRC][r] = now_s() - t0;
        }
        if (g_stop) {
            fprintf(stderr, "checkpoint: interrupted by signal %d\n", (int)g_stop);
            rc = -1;
        }
        if (rc == 0) {
            fprintf(stderr,
                    "repeat %d/%d: raw write %.2f s, raw read %.2f s, save %.2f s, load %.2f s (other processes: "
                    "%.2f CPUs)\n",
                    r + 1, repeat, res->secs[OP_RAW_W][r], res->secs[OP_RAW_R][r], res->secs[OP_SAVE0][r],
                    res->secs[OP_LOAD0][r], others_cpus(cr, cpu_now()));
        }
    }
    if (rc == 0) {
        report(b, res, repeat, deflate);
        double o = others_cpus(c0, cpu_now());
        if (o >= 0.0) printf("other processes used %.2f CPUs on average during the run (/proc/stat)\n", o);
    }
    free(res);
    return rc;
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: checkpoint [--dir DIR] [--mb N] [--stages S] [--repeat R] [--cache cold|warm]\n"
            "                  [--no-deflate] [--help]\n"
            "\n"
            "Save and load throughput of the HDF5 checkpoint library beside write(2)+fsync and\n"
            "read(2) of the same bytes in the same directory, in MB/s (MB = 10^6 bytes).\n"
            "\n"
            "  --dir DIR       make the working directory DIR/pt-ckpt-bench-XXXXXX (removed at\n"
            "                  the end); default /tmp\n"
            "  --mb N          parameters + moment1 + moment2 of at least N MB, in whole layers\n"
            "                  of w [1024, 2048] + b [1024] (25.2 MB each); default 200 (8 layers)\n"
            "  --stages S      split the layers into S shards, written one after another\n"
            "                  (1..%d; the model gets at least S layers); default 2\n"
            "  --repeat R      counted repeats after one warm-up round, alternating raw and\n"
            "                  checkpoint first (1..%d); default 3\n"
            "  --cache MODE    cold: drop every written file from the page cache after its fsync\n"
            "                  (posix_fadvise DONTNEED) before it is read; warm: read it right\n"
            "                  after writing it, still cached; default cold\n"
            "  --no-deflate    skip the compression=1 save and load\n"
            "  --help          this text\n",
            MAX_STAGES, MAX_REPEAT);
}

/* strictly an integer in [lo, hi] */
static int parse_int(const char *flag, const char *s, int lo, int hi, int *out)
{
    if (!s) {
        fprintf(stderr, "checkpoint: %s needs a value (an integer in %d..%d)\n", flag, lo, hi);
        return -1;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi) {
        fprintf(stderr, "checkpoint: %s '%s': expected an integer in %d..%d\n", flag, s, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *parent = "/tmp";
    int mb = 200, stages = 2, repeat = 3, cold = 1, deflate = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--dir")) {
            if (!v || !*v) {
                fprintf(stderr, "checkpoint: --dir needs a directory\n");
                return 2;
            }
            parent = v;
            i++;
        } else if (!strcmp(a, "--mb")) {
            if (parse_int(a, v, 1, 4000, &mb)) return 2;
            i++;
        } else if (!strcmp(a, "--stages")) {
            if (parse_int(a, v, 1, MAX_STAGES, &stages)) return 2;
            i++;
        } else if (!strcmp(a, "--repeat")) {
            if (parse_int(a, v, 1, MAX_REPEAT, &repeat)) return 2;
            i++;
        } else if (!strcmp(a, "--cache")) {
            if (v && !strcmp(v, "cold")) cold = 1;
            else if (v && !strcmp(v, "warm")) cold = 0;
            else {
                fprintf(stderr, "checkpoint: --cache '%s': expected cold or warm\n", v ? v : "");
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--no-deflate")) {
            deflate = 0;
        } else {
            fprintf(stderr, "checkpoint: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }

    static bench b;
    struct stat sb;
    if (stat(parent, &sb) != 0) {
        fprintf(stderr, "checkpoint: --dir %s: %s\n", parent, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "checkpoint: --dir %s is not a directory\n", parent);
        return 1;
    }
    if (snprintf(b.work, sizeof b.work, "%s/pt-ckpt-bench-XXXXXX", parent) >= (int)sizeof b.work) {
        fprintf(stderr, "checkpoint: --dir %s: path too long\n", parent);
        return 1;
    }
    if (!mkdtemp(b.work)) {
        fprintf(stderr, "checkpoint: cannot create a working directory in %s: %s\n", parent, strerror(errno));
        return 1;
    }
    snprintf(b.raw, sizeof b.raw, "%s/raw.bin", b.work);
    snprintf(b.run[0], sizeof b.run[0], "%s/run-c0", b.work);
    snprintf(b.run[1], sizeof b.run[1], "%s/run-c1", b.work);

    /* a write probe, so that an unwritable directory fails before any timing */
    int rc = 0;
    {
        char probe[CKPT_PATH_MAX];
        snprintf(probe, sizeof probe, "%s/probe", b.work);
        int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, "x", 1) != 1 || fsync(fd) != 0) {
            fprintf(stderr, "checkpoint: cannot write in %s: %s\n", b.work, strerror(errno));
            rc = 1;
        }
        if (fd >= 0) close(fd);
        unlink(probe);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (rc == 0 && build_model(&b, mb, stages) != 0) {
        fprintf(stderr, "checkpoint: cannot allocate twice %d MB of tensors (try a smaller --mb)\n", mb);
        rc = 1;
    }
    if (rc == 0) {
        char la[64];
        loadavg(la, sizeof la);
        printf("checkpoint benchmark: %d layers × (w [%d, %d] + b [%d]) = %d tensors, %d stage shard%s (layers",
               b.n_layers, ROWS, COLS, ROWS, b.n_tensors, b.n_stages, b.n_stages > 1 ? "s" : "");
        for (int s = 0; s < b.n_stages; s++) printf(" [%d, %d)", b.cuts[s], b.cuts[s + 1]);
        printf(")\n");
        printf("tensor bytes: parameters %.1f MB + moment1 %.1f MB + moment2 %.1f MB = %.1f MB (%.1f MiB)\n",
               4.0 * (double)b.numel / 1e6, 4.0 * (double)b.numel / 1e6, 4.0 * (double)b.numel / 1e6, b.bytes / 1e6,
               b.bytes / 1048576.0);
        printf("directory: %s\n", b.work);
        printf("page cache: %s\n", cold ? "cold (each file dropped with posix_fadvise(DONTNEED) after its fsync, "
                                          "before it is read)"
                                        : "warm (each file read right after it was written and fsynced)");
        printf("repeats: %d after an uncounted warm-up round (raw first in odd repeats, checkpoint first in even "
               "ones)%s\n", repeat,
               deflate ? "; then compression=1" : "");
        printf("load average at start: %s\n", la);
        fflush(stdout);
        if (run_bench(&b, repeat, cold, deflate) != 0) rc = 1;
        loadavg(la, sizeof la);
        printf("load average at end: %s\n", la);
    }
    free_model(&b);
    if (remove_tree(b.work) != 0) {
        fprintf(stderr, "checkpoint: cannot remove the working directory %s: %s\n", b.work, strerror(errno));
        rc = 1;
    }
    return rc;
}
