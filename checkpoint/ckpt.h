/* ckpt.h — HDF5 checkpoints, one shard per stage (see docs/checkpoint-format.md).
 *
 * A checkpoint is a directory:
 *   <run>/latest                 name of the newest complete checkpoint ("step-000200\n")
 *   <run>/step-000200/manifest.h5  format version, step, seed, config text, partition,
 *                                  grid shape, the index of every tensor with its shard
 *                                  and crc32s; an HDF5 external link /layers/<i> to the
 *                                  group of every layer in its shard
 *   <run>/step-000200/stage-00.h5  /layers/<i>/<param>, /layers/<i>/moment1/<param>,
 *                                  /layers/<i>/moment2/<param> (float32, the tensor's shape,
 *                                  attribute crc32 = zlib crc32 of the little-endian bytes)
 * A single-file checkpoint (written by ckpt_write_single, `pipetrain-ckpt
 * export`) is one HDF5 file holding both: the shard attributes and layer
 * groups of stage 0 of 1, plus the manifest attributes and /index; every
 * function below that takes a checkpoint path accepts its file path.
 * Knows layer names and shapes, never ranks or schedules: the engine does the
 * MPI agreement of the commit protocol and calls these functions in order:
 *   ckpt_begin (one rank) → barrier → ckpt_write_shard (every stage) → agree →
 *   ckpt_write_manifest + ckpt_commit (one rank) → ckpt_prune (one rank).
 * A crash at any moment leaves the previous checkpoint and `latest` whole.
 * Every HDF5 id starts invalid and is closed once; errors name the file and
 * the tensor.
 *
 * Files read are untrusted: before a file's metadata is walked for real
 * (ckpt_resolve of a single file, ckpt_read_manifest, the reader's first use
 * of a shard, ckpt_scan_shard) the same walk runs in a forked child process
 * without MPI, with bounded memory and a time limit (PIPETRAIN_HDF5_TIMEOUT
 * seconds, default 20; 0 turns the check off). When HDF5 crashes or hangs on
 * damaged metadata the caller gets PT_ERR_FORMAT naming the file, never a
 * crash or a hang. Sizes read from a file are checked against sane bounds
 * and the file's size before anything is allocated from them.
 *
 * A file system without working file locks (NFS) makes HDF5 fail to open
 * or create files: every function below then returns PT_ERR_LOCK with a
 * message naming the file and the fix (export HDF5_USE_FILE_LOCKING=FALSE,
 * or mpirun -x HDF5_USE_FILE_LOCKING=FALSE), never a damaged-file error. */
#ifndef PT_CKPT_H
#define PT_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "pt_status.h"

/* The format version written. Readers accept CKPT_FORMAT_VERSION_OLDEST to
 * CKPT_FORMAT_VERSION (1: metadata without checksums, the config a
 * variable-length string; 2: HDF5 1.10 file format with checksummed metadata,
 * fixed-length strings only; see docs/checkpoint-format.md). */
#define CKPT_FORMAT_VERSION 2
#define CKPT_FORMAT_VERSION_OLDEST 1
#define CKPT_NAME_MAX 80
#define CKPT_PATH_MAX 4096

/* which array of a tensor */
enum { CKPT_PARAM = 0, CKPT_MOMENT1 = 1, CKPT_MOMENT2 = 2, CKPT_ARRAYS = 3 };

/* One tensor as a stage holds it. */
typedef struct {
    const char *name; /* global name "layers.3.w": group layers/3, dataset w */
    int layer;
    int ndim;
    int shape[2];
    size_t numel;
    const float *data[CKPT_ARRAYS]; /* parameter, moment1, moment2 */
} ckpt_tensor;

typedef struct {
    int stage, n_stages;
    int first_layer, last_layer; /* [first, last) */
    long step;
    uint64_t seed;
    int compression; /* 0 = none, 1..9 = deflate level */
    int n_tensors;
    const ckpt_tensor *tensors;
    /* Test hook: called after each tensor is written (k = 0..n−1); the fault
     * switch of the crash-consistency test dies in it. NULL = none. */
    void (*after_tensor)(void *ctx, int k);
    void *hook_ctx;
} ckpt_shard;

/* An entry of the manifest's index: one tensor of the model, in global order. */
typedef struct {
    char name[CKPT_NAME_MAX];
    int layer;
    int ndim;
    int shape[2];
    int64_t numel;
    int shard;                  /* stage whose file holds it */
    uint32_t crc[CKPT_ARRAYS];  /* crc32 of parameter, moment1, moment2 */
} ckpt_entry;

typedef struct {
    int format_version;
    long step;
    uint64_t seed;
    int n_stages, data_parallel;
    int n_layers;
    int *cuts;         /* n_stages + 1 entries: stage s holds layers [cuts[s], cuts[s+1]) */
    char *config_text; /* the full canonical config of the run */
    int n_entries;
    ckpt_entry *entries;
    char *history;     /* what changed when the run resumed, one "step N: key = a -> b" line
                        * each ("" or NULL: none); written when not NULL */
    char data_fingerprint[33]; /* hash of the data the run read (32 hex digits, "" = unknown) */
} ckpt_manifest;

/* The path of the checkpoint of step `step` in run_dir: "<run_dir>/step-000200"
 * (six digits at least), written to out and cut at len − 1 bytes. Not
 * collective, touches no file; no errors. */
void ckpt_step_dir(char *out, size_t len, const char *run_dir, long step);

/* "<run>/.tmp-step-000200": creates it (and <run>) if needed, removing a
 * stale one left by a crash. Writes the path to out. */
pt_status ckpt_begin(const char *run_dir, long step, char *out, size_t len);

/* Writes <dir>/stage-XX.h5 (XX = stage, two digits) with every tensor, its
 * moments and their crc32 attributes, the shard attributes (format_version,
 * step, seed, stage, n_stages, first_layer, last_layer), then fsyncs it.
 * crc[k·3 + a] receives the crc32 of array a of tensor k. */
pt_status ckpt_write_shard(const char *dir, const ckpt_shard *shard, uint32_t *crc);

/* Writes <dir>/manifest.h5 (attributes and the /index compound dataset of
 * entries, plus /layers/<i> external links into the shards) and fsyncs it. */
pt_status ckpt_write_manifest(const char *dir, const ckpt_manifest *m);

/* Checks, before a run starts, that checkpoints can be written to run_dir:
 * creates run_dir if needed (mkdir -p, mode 0755), creates the HDF5 file
 * <run_dir>/<probe_name> with exactly the file access properties of the shard
 * writer (so HDF5's file locking is exercised), writes one small attribute,
 * closes and fsyncs it and removes it again. probe_name is a plain file name
 * (no '/'); give each caller its own (e.g. one per rank) when several check
 * the same directory at once. Nothing is left behind on success or failure.
 * Errors: PT_ERR_LOCK when the file system cannot lock the file (the message
 * names the file and the fix: export HDF5_USE_FILE_LOCKING=FALSE before
 * mpirun, or mpirun -x HDF5_USE_FILE_LOCKING=FALSE); PT_ERR_IO naming the
 * directory and the reason ("checkpoint.dir X: cannot create directory: Y is
 * not a directory", permission denied, read-only or full file system);
 * PT_ERR_INVALID for a missing argument or a probe_name with '/'.
 * Not collective, uses no MPI. */
pt_status ckpt_check_dir_writable(const char *run_dir, const char *probe_name);

/* Is `version` a format version this pipetrain reads (OLDEST..CURRENT)? */
int ckpt_format_supported(int version);

/* Renames <run>/.tmp-step-N to <run>/step-N (fsyncing the directories), then
 * replaces <run>/latest atomically (write latest.tmp, fsync, rename). */
pt_status ckpt_commit(const char *run_dir, long step);

/* A step-N directory of a run directory. */
typedef struct {
    long step;     /* N */
    char name[64]; /* "step-000200" as found */
} ckpt_step_entry;

/* The step-N directories of run_dir (complete or not), ascending by step:
 * a malloc'ed array in *out (NULL when none), its length in *n; a missing
 * run_dir has none. Not collective. Errors: PT_ERR_IO, PT_ERR_NOMEM. */
pt_status ckpt_list_steps(const char *run_dir, ckpt_step_entry **out, int *n);

/* Removes all but the newest `keep` complete checkpoints of run_dir (never the
 * one `latest` names) and any stale .tmp-* directory. keep ≤ 0 keeps all. */
pt_status ckpt_prune(const char *run_dir, int keep);

/* The checkpoint name `<run>/latest` holds ("step-000200"), into name (len
 * bytes). Not collective. Errors: PT_ERR_IO (missing or unreadable),
 * PT_ERR_INVALID (not a regular file: never blocks on a FIFO; too long),
 * PT_ERR_FORMAT (not a checkpoint name). */
pt_status ckpt_read_latest(const char *run_dir, char *name, size_t len);

/* Resolves a --resume or --init argument: a run directory (one with a
 * `latest` file) gives the checkpoint `latest` names; a checkpoint directory
 * (one with a manifest.h5) gives itself; a regular file that is HDF5 with an
 * /index dataset (a single-file checkpoint) gives itself. Errors say what was
 * expected (and that a shard file alone is not a checkpoint). */
pt_status ckpt_resolve(const char *path, char *ckpt_dir, size_t len);

/* Is ckpt (as ckpt_resolve gives it) a single-file checkpoint (a regular file)? */
int ckpt_is_single(const char *ckpt);

/* The manifest file of a checkpoint: <dir>/manifest.h5, or the single file. */
pt_status ckpt_manifest_path(const char *ckpt, char *out, size_t len);

/* The file of shard `stage`: <dir>/stage-XX.h5, or the single file (stage 0). */
pt_status ckpt_shard_path(const char *ckpt, int stage, char *out, size_t len);

/* Reads and checks the manifest of a checkpoint (<ckpt_dir>/manifest.h5, or
 * the single file ckpt_dir): format version known (else the error names the
 * file's version and the ones this pipetrain reads), attributes present with
 * sizes within bounds and the file's size, index consistent (cuts cover the
 * layers, every shard index in range, no tensor larger than its shard file
 * can hold; a single file has exactly one shard). The metadata is first read
 * in a sandboxed child (see above). Errors: PT_ERR_IO (missing file),
 * PT_ERR_FORMAT (damaged or inconsistent, naming the file; also when HDF5
 * crashed or did not finish reading it), PT_ERR_LOCK, PT_ERR_NOMEM.
 * Not collective. */
pt_status ckpt_read_manifest(const char *ckpt_dir, ckpt_manifest *m);
void ckpt_manifest_free(ckpt_manifest *m);

/* Index of a tensor in the manifest by global name, -1 when absent. */
int ckpt_find(const ckpt_manifest *m, const char *name);

/* Reads tensors from a checkpoint's shards, keeping each shard open once. */
typedef struct {
    char dir[CKPT_PATH_MAX]; /* the checkpoint directory, or the single file */
    int single;              /* 1: a single-file checkpoint, shard 0 is dir itself */
    int n_files;
    int64_t *files; /* hid_t per shard, -1 = not open */
} ckpt_reader;

pt_status ckpt_reader_open(ckpt_reader *r, const char *ckpt_dir, const ckpt_manifest *m);
void ckpt_reader_close(ckpt_reader *r);

/* Reads array `which` of manifest entry e into out (e->numel floats),
 * checking that the dataset exists with e's shape and that its crc32 matches
 * the manifest's; errors name the shard file and the tensor (a missing shard,
 * a truncated or non-HDF5 file, a missing dataset, a shape, a checksum). On
 * first use of a shard its metadata (attributes, every layer dataset's
 * shape, type and storage) is walked in a sandboxed child first (see above):
 * PT_ERR_FORMAT when HDF5 crashes or hangs on it, PT_ERR_LOCK when it cannot
 * be locked. Not collective. */
pt_status ckpt_read_tensor(ckpt_reader *r, const ckpt_entry *e, int which, float *out);

/* The zlib crc32 of n floats' bytes. */
uint32_t ckpt_crc32(const float *data, size_t n);

/* Writes a single-file checkpoint at `path`: the shard of stage 0 of 1 (every
 * tensor of m with its moments and crc32 attributes, the shard attributes)
 * and, in the same file, the manifest attributes and /index, with n_stages 1,
 * cuts {0, n_layers} and every entry's shard 0. tensors[k] holds the data of
 * m->entries[k] (same name and shape, else PT_ERR_INVALID); the crcs stored
 * are those of the data written (m's crc fields and shards are not used).
 * Written to <path>.tmp, fsynced and renamed over path, so path is never
 * half-written. ckpt_resolve, ckpt_read_manifest and the reader accept it. */
pt_status ckpt_write_single(const char *path, const ckpt_manifest *m, const ckpt_tensor *tensors,
                            int compression);

/* ---- inspection ---------------------------------------------------------- */

/* One tensor dataset found in a shard file (layers/<i>/<param> or
 * layers/<i>/moment{1,2}/<param>), as stored. */
typedef struct {
    char name[CKPT_NAME_MAX]; /* global name "layers.3.w" */
    int layer;
    int array;      /* CKPT_PARAM, CKPT_MOMENT1 or CKPT_MOMENT2 */
    int ndim;       /* as stored; dims holds the first two */
    int64_t dims[2];
    char dtype[16]; /* "float32", "float64", "int32", "string", ... */
    int has_crc;    /* it carries an integer crc32 attribute, value in crc */
    uint32_t crc;
    int64_t storage; /* bytes of data in the file (after compression) */
} ckpt_dataset;

#define CKPT_SCAN_OTHER_MAX 8

/* What a shard file holds, for inspection tools and verification: its root
 * attributes (-1 when absent) and every tensor dataset under /layers. */
typedef struct {
    int format_version, stage, n_stages, first_layer, last_layer;
    int has_step, has_seed;
    long step;
    uint64_t seed;
    int has_layers; /* the file has a /layers group */
    int n_datasets, cap;
    ckpt_dataset *datasets; /* in the file's name order */
    int n_other;            /* objects under /layers that are no tensor dataset */
    char other[CKPT_SCAN_OTHER_MAX][CKPT_NAME_MAX + 48]; /* the first of them, described */
} ckpt_shard_info;

/* Scans a shard file (or single-file checkpoint) without reading tensor data:
 * fails only when the file is missing (PT_ERR_IO), HDF5 cannot open or list
 * it, or crashes or hangs on it in the sandboxed child (PT_ERR_FORMAT), or
 * it cannot be locked (PT_ERR_LOCK); the message names the file. Missing
 * attributes and odd objects are recorded in info for the caller to judge.
 * Not collective. */
pt_status ckpt_scan_shard(const char *path, ckpt_shard_info *info);
void ckpt_shard_info_free(ckpt_shard_info *info);

#endif
