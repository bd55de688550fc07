/* ckpt_tool.h — the parts of pipetrain-ckpt shared by its commands: error
 * and option handling, aligned tables, number and size formatting, JSON
 * helpers, an opened checkpoint, the model its stored config describes,
 * tensor statistics and the structural check of a checkpoint's files. */
#ifndef PT_CKPT_TOOL_H
#define PT_CKPT_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "ckpt.h"
#include "config.h"
#include "layers.h"

#define TOOL_NAME "pipetrain-ckpt"

/* Exit codes: success; a failed check (verify, diff) or input that cannot be
 * read; a usage error (unknown option, wrong arguments) or an environment
 * that keeps the tool from reading intact files (HDF5 cannot lock them: a
 * file system without working locks), which no check of the checkpoint can
 * judge. */
enum { TOOL_OK = 0, TOOL_FAIL = 1, TOOL_USAGE = 2, TOOL_ENV = 2 };

/* ---- messages ------------------------------------------------------------ */

/* "pipetrain-ckpt: <message>" on stderr. */
void tool_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "pipetrain-ckpt: note: <message>" on stderr. */
void tool_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* When st is PT_ERR_LOCK (a file could not be locked: the file system lacks
 * working locks), prints the library's message (the file and the fix,
 * HDF5_USE_FILE_LOCKING=FALSE) and returns 1: the caller then exits
 * TOOL_ENV, never reporting the checkpoint as damaged. Else 0. */
int tool_lock_error(pt_status st);
/* "pipetrain-ckpt: CMD: <message> (see 'pipetrain-ckpt CMD --help')"; returns TOOL_USAGE. */
int tool_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- options ------------------------------------------------------------- */

typedef struct {
    const char *name;   /* "--values" */
    const char **value; /* option with an argument: where it goes; NULL for a flag */
    int *flag;          /* flag: set to 1 */
} tool_opt;

/* Parses a command's arguments (argv[0] is the command): options may come
 * anywhere ("--opt=value" or "--opt value"), "--" ends them. The positional
 * arguments go to pos (between min_pos and max_pos of them). Returns
 * TOOL_OK; TOOL_USAGE after printing the error; or -1 after printing `help`
 * to stdout for --help / -h. */
int tool_parse(int argc, char **argv, const char *help, const tool_opt *opts, int n_opts, const char **pos,
               int min_pos, int max_pos, int *n_pos);

/* Parses a non-negative integer option value; TOOL_USAGE after a message. */
int tool_parse_long(const char *cmd, const char *opt, const char *text, long min, long max, long *out);
int tool_parse_double(const char *cmd, const char *opt, const char *text, double *out);

/* ---- tables -------------------------------------------------------------- */

typedef struct tool_table tool_table;

/* align: one letter per column, 'l' or 'r'. */
tool_table *table_new(int ncols, const char *const *headers, const char *align);
/* Adds a row of ncols cells (copied). */
void table_add(tool_table *t, const char *const *cells);
/* Prints the header and the rows, columns two blanks apart, no trailing blanks. */
void table_print(const tool_table *t, FILE *out);
void table_free(tool_table *t);

/* ---- formatting ---------------------------------------------------------- */

void fmt_human(char *buf, size_t len, int64_t bytes);  /* "196.0 KiB", "512 B" */
void fmt_bytes(char *buf, size_t len, int64_t bytes);  /* "200704 (196.0 KiB)" */
void fmt_shape(char *buf, size_t len, int ndim, const int64_t *dims); /* "[64, 784]" */
void fmt_entry_shape(char *buf, size_t len, const ckpt_entry *e);
void fmt_num(char *buf, size_t len, double v);         /* %.6g; "nan", "inf", "-inf" */
void fmt_time_iso(char *buf, size_t len, time_t t);    /* "2025-11-22T03:11:30+01:00", local */
const char *array_label(int a);                        /* "parameter", "moment1", "moment2" */
/* "param"/"parameter", "moment1", "moment2" → CKPT_*; "all" → CKPT_ARRAYS; else -1. */
int array_from_name(const char *s);
/* "layers.0.w" or "layers.0.w (moment1)" */
void fmt_label(char *buf, size_t len, const char *name, int a);

/* ---- JSON ---------------------------------------------------------------- */

cJSON *json_shape(int ndim, const int64_t *dims);
cJSON *json_entry_shape(const ckpt_entry *e);
void json_num(cJSON *o, const char *key, double v); /* null when not finite */
void json_u64(cJSON *o, const char *key, uint64_t v); /* exact, as a JSON integer */
void json_i64(cJSON *o, const char *key, int64_t v);  /* exact, as a JSON integer */
/* Prints the document (indented) and a newline to stdout, then deletes it. */
int json_print(cJSON *doc);

/* ---- an opened checkpoint ------------------------------------------------ */

typedef struct {
    char path[CKPT_PATH_MAX]; /* as resolved: a checkpoint directory or a single file */
    ckpt_manifest m;
    ckpt_reader r;
    int have_m, have_r;
} tool_ckpt;

/* Resolves arg (run directory, checkpoint directory or single file), reads
 * its manifest and opens a reader. TOOL_OK, or TOOL_FAIL (TOOL_ENV when a
 * file cannot be locked) after printing the error. */
int tool_open(tool_ckpt *c, const char *arg);
void tool_close(tool_ckpt *c);
/* Reads array a of entry k into a new buffer; NULL with the error recorded
 * (pt_last_error) when it cannot. */
float *tool_read(tool_ckpt *c, int k, int a);

/* ---- the model of the stored config -------------------------------------- */

typedef struct {
    int have_config; /* cfg holds the stored config */
    int have_model;  /* mod holds its model (for some input width) */
    int matches;     /* ...and its tensors are exactly the index's, shapes included */
    config cfg;
    model mod;
    char **kinds; /* n_kinds items of model.layers as written ("linear 64") */
    int n_kinds;
    char why[768]; /* when !have_model: the reason */
} tool_model;

/* Parses the manifest's config text and builds its model, choosing the input
 * width that makes the model's tensors match the manifest's index (the width
 * of Fashion-MNIST is the data's, not the config's). Never fails: when no
 * width matches, mod is the model for the first candidate width (to say how
 * it differs) and why says so; when the config cannot be parsed, why says
 * why. */
void tool_model_load(const ckpt_manifest *m, tool_model *tm);
/* model_tensors of mod in a new array of *n entries; NULL when out of memory. */
model_tensor *tool_model_tensors(const model *mod, int *n);
void tool_model_free(tool_model *tm);
/* "0-3" (or "2" for one layer, "-" for none) */
void fmt_layer_range(char *buf, size_t len, int first, int last);
/* The items of layers [first, last) joined by ", ", or "" without a config. */
void fmt_layer_kinds(char *buf, size_t len, const tool_model *tm, int first, int last);

/* ---- statistics ---------------------------------------------------------- */

typedef struct {
    int64_t n, nan, inf, zeros, finite;
    double min, max, mean, std, l2; /* over the finite values; NaN when there are none */
} tensor_stats;

/* Deterministic: double accumulation in index order; std is the population
 * standard deviation (divided by the count) around the mean. */
void stats_compute(const float *x, size_t n, tensor_stats *s);
void stats_json(cJSON *o, const tensor_stats *s);

/* ---- faults -------------------------------------------------------------- */

typedef struct {
    char **msg;
    int n, cap;
} fault_list;

void faults_add(fault_list *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void faults_free(fault_list *f);

/* Per (entry, array): what the structural check found. */
enum { ARRAY_OK = 0, ARRAY_BAD = 1, ARRAY_SHARD_UNREADABLE = 2 };

typedef struct {
    int n_stages;
    ckpt_shard_info *shards; /* one per stage; scanned[s] = 0 when the file could not be scanned */
    int *scanned;
    unsigned char *array_state; /* n_entries × CKPT_ARRAYS */
    int64_t bytes;              /* total size of the checkpoint's files */
    int faults[3];              /* faults found in each phase: shards, layout, model */
} tool_structure;

/* Checks the files of checkpoint `ckpt` against its manifest without reading
 * tensor data: every shard readable with the attributes the manifest implies
 * (format version, stage, stage count, layers, step, seed); every tensor of
 * the index present with its three arrays as float32 of the manifest's shape
 * and crc32 attribute in the shard its layer belongs to; no layer or tensor
 * in a shard that does not own it; nothing unexpected under /layers; the
 * index holding exactly the tensors of the model its config describes (when
 * tm has a model); names listed twice only as tied copies in different
 * shards. Every fault found is appended to f. */
void check_structure(const char *ckpt, const ckpt_manifest *m, const tool_model *tm, tool_structure *s,
                     fault_list *f);
void structure_free(tool_structure *s);

/* Groups of index entries that must hold identical data (tied copies kept
 * more than once): the entries that share a name across shards, and a tied
 * copy of the model (tm: the lmhead's w tied to the embed's) listed in the
 * index besides its source. pipetrain stores a tied copy once, as its
 * source, so its checkpoints have no group; a writer that keeps copies is
 * checked by verify all the same. Group g lists entry indices
 * entries[start[g] .. start[g+1]). */
typedef struct {
    int n_groups;
    int *start;   /* n_groups + 1 */
    int *entries;
    int n_tied;   /* tied copies of the model (stored once or not) */
} tied_groups;

int tied_groups_find(const ckpt_manifest *m, const tool_model *tm, tied_groups *t);
void tied_groups_free(tied_groups *t);

/* ---- commands ------------------------------------------------------------ */

int cmd_ls(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_reshard(int argc, char **argv);

#endif
