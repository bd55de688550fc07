/* config.c — the run configuration.
 *
 * Every key lives once in `keys[]` below: section, name, type, the field it
 * fills, its default (as text, parsed like any other value), its allowed range
 * or words, and a one-line description. Parsing a file, --set overrides,
 * defaults, range validation, the canonical text and --help-config all walk
 * that table; nothing else in this file knows a key by name except the
 * combination checks of config_validate.
 *
 * Files go through libinih with a line reader of our own (ini_reader_mem), so
 * that error messages carry the physical line, values of any length up to the
 * field size work whatever line limit libinih was built with (a long line is
 * handed over in pieces and glued back), and an indented line continues the
 * previous value (joined with one space), as in Python's configparser. */
#include "config.h"
#include "safefile.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

/* ---- the key table ------------------------------------------------------ */

typedef enum { T_INT, T_LONG, T_U64, T_FLOAT, T_BOOL, T_STRING, T_ENUM, T_PARTITION } cfg_type;

typedef struct {
    const char *word;
    int value;
} cfg_word;

/* range flags */
enum { R_LO = 1, R_LO_OPEN = 2, R_HI = 4, R_HI_OPEN = 8 };

typedef struct {
    const char *section, *key;
    cfg_type type;
    size_t offset, size;      /* the field */
    const char *def;          /* default, as text */
    unsigned range;           /* R_* flags over lo, hi (numbers) */
    double lo, hi;
    const cfg_word *words;    /* enum: its words; string: the allowed texts (NULL: any) */
    size_t aux_offset, aux_size; /* partition: the field holding an explicit list */
    const char *help;
    const char *note;         /* said after a range error */
    config_resume_rule resume; /* a change of the key on --resume: see config.h */
} cfg_key;

/* The enums are stored through an int. */
_Static_assert(sizeof(optim_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(lr_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(sched_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(partition_kind) == sizeof(int), "enum size");
_Static_assert(sizeof(nonfinite_policy) == sizeof(int), "enum size");
_Static_assert(sizeof(fault_kind) == sizeof(int), "enum size");

static const cfg_word dataset_words[] = {{"fashion-mnist", 0}, {"synthetic", 1}, {"text", 2}, {NULL, 0}};
static const cfg_word optimizer_words[] = {{"adamw", OPTIM_ADAMW}, {"sgd", OPTIM_SGD}, {NULL, 0}};
static const cfg_word lr_words[] = {{"cosine", LR_COSINE}, {"constant", LR_CONSTANT}, {NULL, 0}};
static const cfg_word nonfinite_words[] = {
    {"stop", NONFINITE_STOP}, {"skip", NONFINITE_SKIP}, {NULL, 0}};
/* The schedules a run can train with (forward-only is for evaluation). */
static const cfg_word reduction_words[] = {{"fast", REDUCTION_FAST}, {"invariant", REDUCTION_INVARIANT}, {NULL, 0}};
static const cfg_word schedule_words[] = {
    {"gpipe", SCHED_GPIPE}, {"1f1b", SCHED_1F1B}, {"zbh1", SCHED_ZBH1}, {"interleaved", SCHED_INTERLEAVED},
    {NULL, 0}};
static const cfg_word partition_words[] = {{"uniform", PARTITION_UNIFORM},
                                           {"params", PARTITION_PARAMS},
                                           {"cost", PARTITION_COST},
                                           {"measured", PARTITION_MEASURED},
                                           {NULL, 0}};
static const cfg_word fault_words[] = {{"none", FAULT_NONE},
                                       {"error", FAULT_ERROR},
                                       {"crash", FAULT_CRASH},
                                       {"nan", FAULT_NAN},
                                       {"checkpoint_crash", FAULT_CHECKPOINT_CRASH},
                                       {"diverge", FAULT_DIVERGE},
                                       {NULL, 0}};

#define FIELD(f) offsetof(config, f), sizeof(((config *)0)->f)
#define NO_AUX 0, 0
#define ANY 0u, 0.0, 0.0
#define GE(x) (unsigned)R_LO, (double)(x), 0.0
#define GT(x) (unsigned)(R_LO | R_LO_OPEN), (double)(x), 0.0
#define IN(a, b) (unsigned)(R_LO | R_HI), (double)(a), (double)(b)
#define IN_HO(a, b) (unsigned)(R_LO | R_HI | R_HI_OPEN), (double)(a), (double)(b)

static const cfg_key keys[] = {
    {"model", "layers", T_STRING, FIELD(model_layers), "", ANY, NULL, NO_AUX,
     "comma-separated layers, e.g. 'linear 1024, relu, dropout 0.2, linear 10'", NULL, RESUME_REFUSE},

    {"model", "tie_embeddings", T_BOOL, FIELD(model_tie_embeddings), "false", ANY, NULL, NO_AUX,
     "share one matrix between the first embed layer and the last lmhead layer", NULL, RESUME_REFUSE},

    {"data", "dataset", T_STRING, FIELD(data_dataset), "fashion-mnist", ANY, dataset_words, NO_AUX,
     "training data: the Fashion-MNIST IDX files or a generated synthetic set", NULL, RESUME_REFUSE},
    {"data", "path", T_STRING, FIELD(data_path), "", ANY, NULL, NO_AUX,
     "fashion-mnist: directory of the IDX files (empty = /usr/share/datasets/fashion-mnist); "
     "text: a text file or a directory of them (empty = /usr/share/games/fortunes)", NULL, RESUME_FREE},
    {"data", "context", T_INT, FIELD(data_context), "128", IN(2, 65536), NULL, NO_AUX,
     "text: tokens (bytes) per training context", NULL, RESUME_REFUSE},
    {"data", "val_contexts", T_LONG, FIELD(data_val_contexts), "256", GE(1), NULL, NO_AUX,
     "text: validation contexts evaluated (evenly spaced over the held-out part)", NULL, RESUME_FREE},
    {"data", "val_fraction", T_FLOAT, FIELD(data_val_fraction), "0.1", IN_HO(0.001, 1), NULL, NO_AUX,
     "text: fraction of the corpus held out for validation (its end)", NULL, RESUME_REFUSE},
    {"data", "synthetic_samples", T_LONG, FIELD(data_synthetic_samples), "8192", GE(1), NULL,
     NO_AUX, "synthetic: samples in the training set", NULL, RESUME_REFUSE},
    {"data", "synthetic_features", T_INT, FIELD(data_synthetic_features), "1024", GE(1), NULL,
     NO_AUX, "synthetic: features per sample (the input width)", NULL, RESUME_REFUSE},
    {"data", "synthetic_classes", T_INT, FIELD(data_synthetic_classes), "10", GE(2), NULL, NO_AUX,
     "synthetic: number of classes", NULL, RESUME_REFUSE},

    {"train", "steps", T_LONG, FIELD(steps), "1000", GE(1), NULL, NO_AUX,
     "optimizer steps of the run", NULL, RESUME_NOTE},
    {"train", "seed", T_U64, FIELD(seed), "1", ANY, NULL, NO_AUX,
     "seed of parameter initialisation, data order and dropout", NULL, RESUME_REFUSE},
    {"train", "batch_size", T_INT, FIELD(batch_size), "256", GE(1), NULL, NO_AUX,
     "global batch: samples per optimizer step (a multiple of pipeline.micro_batches)", NULL, RESUME_REFUSE},
    {"train", "optimizer", T_ENUM, FIELD(optimizer), "adamw", ANY, optimizer_words, NO_AUX,
     "optimizer", NULL, RESUME_REFUSE},
    {"train", "lr", T_FLOAT, FIELD(lr), "1e-3", GT(0), NULL, NO_AUX, "peak learning rate", NULL, RESUME_NOTE},
    {"train", "min_lr_ratio", T_FLOAT, FIELD(min_lr_ratio), "0", IN(0, 1), NULL, NO_AUX,
     "cosine: final learning rate as a fraction of train.lr", NULL, RESUME_NOTE},
    {"train", "warmup_steps", T_LONG, FIELD(warmup_steps), "0", GE(0), NULL, NO_AUX,
     "steps of linear learning-rate warm-up (0 = none)", NULL, RESUME_NOTE},
    {"train", "lr_schedule", T_ENUM, FIELD(lr_schedule), "cosine", ANY, lr_words, NO_AUX,
     "learning-rate schedule after the warm-up", NULL, RESUME_NOTE},
    {"train", "momentum", T_FLOAT, FIELD(momentum), "0.9", IN_HO(0, 1), NULL, NO_AUX,
     "sgd: momentum (0 = none)", NULL, RESUME_NOTE},
    {"train", "nesterov", T_BOOL, FIELD(nesterov), "false", ANY, NULL, NO_AUX,
     "sgd: Nesterov momentum", NULL, RESUME_NOTE},
    {"train", "beta1", T_FLOAT, FIELD(beta1), "0.9", IN_HO(0, 1), NULL, NO_AUX,
     "adamw: decay of the first moment", NULL, RESUME_NOTE},
    {"train", "beta2", T_FLOAT, FIELD(beta2), "0.999", IN_HO(0, 1), NULL, NO_AUX,
     "adamw: decay of the second moment", NULL, RESUME_NOTE},
    {"train", "eps", T_FLOAT, FIELD(eps), "1e-8", GT(0), NULL, NO_AUX,
     "adamw: added to the root of the second moment", NULL, RESUME_NOTE},
    {"train", "weight_decay", T_FLOAT, FIELD(weight_decay), "0", GE(0), NULL, NO_AUX,
     "decoupled weight decay of matrices", NULL, RESUME_NOTE},
    {"train", "l1", T_FLOAT, FIELD(l1), "0", GE(0), NULL, NO_AUX,
     "L1 regularisation of matrices", NULL, RESUME_NOTE},
    {"train", "l2", T_FLOAT, FIELD(l2), "0", GE(0), NULL, NO_AUX,
     "L2 regularisation of matrices", NULL, RESUME_NOTE},
    {"train", "grad_clip", T_FLOAT, FIELD(grad_clip), "0", GE(0), NULL, NO_AUX,
     "clip the global gradient norm to this value (0 = off)", NULL, RESUME_NOTE},
    {"train", "nonfinite", T_ENUM, FIELD(nonfinite), "stop", ANY, nonfinite_words, NO_AUX,
     "on a NaN or Inf loss or gradient: stop the run, or skip the step", NULL, RESUME_NOTE},
    {"train", "blas_threads", T_INT, FIELD(blas_threads), "1", IN(1, 1024), NULL, NO_AUX,
     "BLAS threads per rank", NULL, RESUME_FREE},
    {"train", "eval_every", T_LONG, FIELD(eval_every), "0", GE(0), NULL, NO_AUX,
     "steps between evaluations on the held-out data (0 = only at the end)", NULL, RESUME_FREE},
    {"train", "log_every", T_LONG, FIELD(log_every), "50", GE(0), NULL, NO_AUX,
     "steps between progress lines (0 = none)", NULL, RESUME_FREE},
    {"train", "timeout", T_FLOAT, FIELD(timeout), "300", GE(0), NULL, NO_AUX,
     "seconds a rank waits on any one transfer or collective before it ends the job naming itself, the "
     "operation and the rank it waited for (0 = wait forever)", NULL, RESUME_FREE},

    {"pipeline", "progress_us", T_FLOAT, FIELD(progress_us), "0", GE(0), NULL, NO_AUX,
     "microseconds between the calls into MPI of each rank's progress thread, which moves transfers while "
     "the rank computes (without it, over TCP or shared memory without single copy, they advance only "
     "while a rank waits); 0 = no progress thread (it shares the rank's core: 200 halves the bubble without "
     "single copy but costs throughput when every core computes)", NULL, RESUME_FREE},
    {"pipeline", "schedule", T_ENUM, FIELD(schedule), "1f1b", ANY, schedule_words, NO_AUX,
     "pipeline schedule: gpipe (fill-drain), 1f1b (PipeDream-Flush), zbh1 (ZB-H1: 1F1B with the "
     "backward split into input and weight gradients, the weight part filling the bubble) or interleaved "
     "(interleaved 1F1B over pipeline.chunks model chunks per rank)", NULL, RESUME_FREE},
    {"pipeline", "chunks", T_INT, FIELD(chunks), "1", IN(1, 8), NULL, NO_AUX,
     "model chunks per rank for the interleaved schedule: rank r holds virtual stages r, r+P, r+2P, ... "
     "(above 1: needs micro_batches divisible by the number of ranks and at least one layer per virtual stage)", NULL, RESUME_FREE},
    {"pipeline", "micro_batches", T_INT, FIELD(micro_batches), "8", GE(1), NULL, NO_AUX,
     "micro-batches per step (must divide train.batch_size)", NULL, RESUME_NOTE},
    {"pipeline", "partition", T_PARTITION, FIELD(partition), "uniform", ANY, partition_words,
     offsetof(config, partition_spec), sizeof(((config *)0)->partition_spec),
     "layers per stage: uniform counts, balanced params or cost (FLOPs), measured (the times in "
     "pipeline.profile), or ranges such as 0-3,4-9", NULL, RESUME_FREE},
    {"pipeline", "profile", T_STRING, FIELD(profile), "", ANY, NULL, NO_AUX,
     "a JSON profile written by pipetrain profile, whose per-layer forward + backward times "
     "pipeline.partition = measured balances (empty = none)", NULL, RESUME_FREE},
    {"pipeline", "data_parallel", T_INT, FIELD(data_parallel), "1", IN(1, 1024), NULL, NO_AUX,
     "data-parallel replicas D: mpirun -np N runs N / D pipeline stages per replica, and replica d trains "
     "micro-batches d·M/D .. (d+1)·M/D − 1 of every step", NULL, RESUME_FREE},
    {"pipeline", "reduction", T_ENUM, FIELD(reduction), "fast", ANY, reduction_words, NO_AUX,
     "how gradients are summed over micro-batches and replicas: fast (accumulate in place, the MPI "
     "library's all-reduce: the same bits for every number of stages and schedule, not of replicas) or "
     "invariant (a fixed binary tree over micro-batch indices: the same bits for every number of stages, "
     "replicas and schedule; 3-19 % slower and log2(M) + 1 more gradient buffers)",
     NULL, RESUME_FREE},
    {"pipeline", "bucket_mb", T_FLOAT, FIELD(bucket_mb), "25", GT(0), NULL, NO_AUX,
     "size of a gradient all-reduce bucket in MiB (layers are grouped from the last until a bucket holds "
     "this much)", NULL, RESUME_FREE},

    {"log", "metrics", T_STRING, FIELD(log_metrics), "", ANY, NULL, NO_AUX,
     "path of a CSV file of per-step metrics (empty = none)", NULL, RESUME_FREE},
    {"log", "trace", T_STRING, FIELD(log_trace), "", ANY, NULL, NO_AUX,
     "path of a Chrome trace event file (Perfetto, chrome://tracing) of every op of every rank during "
     "log.trace_steps (empty = none)", NULL, RESUME_FREE},
    {"log", "trace_steps", T_STRING, FIELD(log_trace_steps), "2-3", ANY, NULL, NO_AUX,
     "the steps log.trace records: a-b or a single step (1-based)", NULL, RESUME_FREE},
    {"log", "plan_compare", T_BOOL, FIELD(log_plan_compare), "true", ANY, NULL, NO_AUX,
     "at start-up, measure the layers and say how this layout compares with the best one pipetrain plan "
     "finds for the same cores and micro-batches (about a second for small models)", NULL, RESUME_FREE},
    {"log", "summary", T_STRING, FIELD(log_summary), "", ANY, NULL, NO_AUX,
     "path of a JSON summary of the run: throughput, accuracy, per-rank times (empty = none)", NULL, RESUME_FREE},

    {"checkpoint", "dir", T_STRING, FIELD(checkpoint_dir), "", ANY, NULL, NO_AUX,
     "run directory for checkpoints (empty = no checkpoints)", NULL, RESUME_FREE},
    {"checkpoint", "every", T_LONG, FIELD(checkpoint_every), "0", GE(0), NULL, NO_AUX,
     "steps between checkpoints (0 = only at the end of training)", NULL, RESUME_FREE},
    {"checkpoint", "keep", T_INT, FIELD(checkpoint_keep), "3", GE(0), NULL, NO_AUX,
     "newest checkpoints to keep (0 = all)", NULL, RESUME_FREE},
    {"checkpoint", "compression", T_INT, FIELD(checkpoint_compression), "0", IN(0, 9), NULL, NO_AUX,
     "deflate level of checkpoint datasets (0 = none)", NULL, RESUME_FREE},

    {"fault", "kind", T_ENUM, FIELD(fault_kind), "none", ANY, fault_words, NO_AUX,
     "test only: inject an error, a crash, a NaN gradient, a crash while checkpointing, or a one-ulp change of one parameter on one replica (diverge)", NULL, RESUME_FREE},
    {"fault", "rank", T_INT, FIELD(fault_rank), "-1", GE(-1), NULL, NO_AUX,
     "test only: rank that fails (-1 = none)", NULL, RESUME_FREE},
    {"fault", "step", T_LONG, FIELD(fault_step), "-1", GE(-1), NULL, NO_AUX,
     "test only: 0-based step at which it fails (-1 = none)", NULL, RESUME_FREE},
    {"fault", "layer", T_INT, FIELD(fault_layer), "-1", GE(-1), NULL, NO_AUX,
     "test only, nan: global layer whose gradient is poisoned (-1 = none)", NULL, RESUME_FREE},
};

#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

static const char *const sections[] = {"model", "data", "train", "pipeline", "log", "checkpoint", "fault"};
#define N_SECTIONS ((int)(sizeof sections / sizeof sections[0]))

/* ---- small helpers ------------------------------------------------------ */

static void *field(config *c, const cfg_key *k) { return (char *)c + k->offset; }
static const void *cfield(const config *c, const cfg_key *k) { return (const char *)c + k->offset; }

/* Appends printf output at *pos of buf[len], counting what would be written
 * even when it does not fit (snprintf-like totals). */
static void appendf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void appendf(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = (buf && *pos < len) ? buf + *pos : NULL;
    size_t room = (buf && *pos < len) ? len - *pos : 0;
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0) *pos += (size_t)n;
}

static int find_section(const char *name, size_t n)
{
    for (int i = 0; i < N_SECTIONS; i++)
        if (strlen(sections[i]) == n && strncmp(sections[i], name, n) == 0) return i;
    return -1;
}

static int find_key(const char *section, const char *key)
{
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0) return i;
    return -1;
}

/* Edit distance of two short names (for "did you mean"); capped at 9. */
static int edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 47 || nb > 47) return 9;
    int row[48];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb] > 9 ? 9 : row[nb];
}

/* Records "<where>unknown key 'k' in [s]: the keys of [s] are a, b, ...". */
static pt_status fail_unknown_key(const char *where, const char *section, const char *key)
{
    char list[1024];
    size_t pos = 0;
    const char *close = NULL;
    int best = 3;
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) != 0) continue;
        appendf(list, sizeof list, &pos, "%s%s", pos ? ", " : "", keys[i].key);
        int d = edit_distance(key, keys[i].key);
        if (d < best) {
            best = d;
            close = keys[i].key;
        }
    }
    char hint[96] = "";
    if (close) snprintf(hint, sizeof hint, " (did you mean '%s'?)", close);
    return pt_fail(PT_ERR_INVALID, "%sunknown key '%.64s' in [%s]%s; the keys of [%s] are: %s",
                   where, key, section, hint, section, list);
}

static pt_status fail_unknown_section(const char *where, const char *section, size_t n)
{
    char list[256];
    size_t pos = 0;
    for (int i = 0; i < N_SECTIONS; i++)
        appendf(list, sizeof list, &pos, "%s[%s]", i ? ", " : "", sections[i]);
    return pt_fail(PT_ERR_INVALID, "%sunknown section [%.*s]; the sections are: %s", where,
                   (int)(n > 64 ? 64 : n), section, list);
}

static const char *word_of(const cfg_word *w, int value)
{
    for (; w && w->word; w++)
        if (w->value == value) return w->word;
    return NULL;
}

static const cfg_word *word_match(const cfg_word *w, const char *text)
{
    for (; w && w->word; w++)
        if (strcasecmp(w->word, text) == 0) return w;
    return NULL;
}

/* "adamw or sgd", "uniform, params or cost" */
static void words_text(const cfg_word *w, char *buf, size_t len)
{
    size_t pos = 0, n = 0;
    buf[0] = '\0';
    while (w[n].word) n++;
    for (size_t i = 0; i < n; i++)
        appendf(buf, len, &pos, "%s%s", i == 0 ? "" : (i + 1 == n ? " or " : ", "), w[i].word);
}

/* What a key accepts, for messages and help: "a number > 0". */
static void expect_text(const cfg_key *k, char *buf, size_t len)
{
    size_t pos = 0;
    char words[256];
    switch (k->type) {
    case T_INT:
    case T_LONG:
        appendf(buf, len, &pos, "an integer");
        break;
    case T_U64:
        appendf(buf, len, &pos, "an integer in [0, %" PRIu64 "]", UINT64_MAX);
        return;
    case T_FLOAT:
        appendf(buf, len, &pos, "a number");
        break;
    case T_BOOL:
        appendf(buf, len, &pos, "true, false, yes, no, 1 or 0");
        return;
    case T_ENUM:
        words_text(k->words, words, sizeof words);
        appendf(buf, len, &pos, "%s", words);
        return;
    case T_PARTITION:
        words_text(k->words, words, sizeof words);
        appendf(buf, len, &pos, "%s, or inclusive layer ranges such as 0-3,4-9", words);
        return;
    case T_STRING:
        if (k->words) {
            words_text(k->words, words, sizeof words);
            appendf(buf, len, &pos, "%s", words);
        } else {
            appendf(buf, len, &pos, "text of at most %zu characters", k->size - 1);
        }
        return;
    }
    unsigned r = k->range;
    if ((r & R_LO) && (r & R_HI) && k->lo == k->hi)
        appendf(buf, len, &pos, " = %g", k->lo);
    else if ((r & R_LO) && (r & R_HI))
        appendf(buf, len, &pos, " in %c%g, %g%c", (r & R_LO_OPEN) ? '(' : '[', k->lo, k->hi,
                (r & R_HI_OPEN) ? ')' : ']');
    else if (r & R_LO)
        appendf(buf, len, &pos, " %s %g", (r & R_LO_OPEN) ? ">" : ">=", k->lo);
    else if (r & R_HI)
        appendf(buf, len, &pos, " %s %g", (r & R_HI_OPEN) ? "<" : "<=", k->hi);
}

static int in_range(const cfg_key *k, double v)
{
    unsigned r = k->range;
    if (isnan(v)) return 0;
    if (r & R_LO) {
        if ((r & R_LO_OPEN) ? !(v > k->lo) : !(v >= k->lo)) return 0;
    }
    if (r & R_HI) {
        if ((r & R_HI_OPEN) ? !(v < k->hi) : !(v <= k->hi)) return 0;
    }
    return 1;
}

/* "train.lr = 'abc': expected a number > 0" */
static pt_status fail_value(const cfg_key *k, const char *text, int quote)
{
    char expect[512];
    expect_text(k, expect, sizeof expect);
    const char *q = quote ? "'" : "";
    return pt_fail(PT_ERR_INVALID, "%s.%s = %s%.200s%s: expected %s%s%s%s", k->section, k->key, q,
                   text, q, expect, k->note ? " (" : "", k->note ? k->note : "",
                   k->note ? ")" : "");
}

/* "log.metrics = 'a ;b': ..." for a text that an INI file cannot hold. */
static pt_status fail_text(const cfg_key *k, const char *text)
{
    return pt_fail(PT_ERR_INVALID,
                   "%s.%s = '%.200s': expected text that an INI file can hold: no ';' at the "
                   "start or after a blank (it starts a comment), no line break, no blank at "
                   "either end",
                   k->section, k->key, text);
}

/* A string can be written back as an INI value and read as itself. */
static int ini_safe(const char *s)
{
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '\n' || s[i] == '\r') return 0;
        if (s[i] == ';' && (i == 0 || isspace((unsigned char)s[i - 1]))) return 0;
    }
    return !(s[0] && (isspace((unsigned char)s[0]) || isspace((unsigned char)s[strlen(s) - 1])));
}

static void store_string(void *dst, size_t size, const char *s)
{
    memset(dst, 0, size);
    size_t n = strlen(s);
    if (n >= size) n = size - 1;
    memcpy(dst, s, n);
}

/* Explicit layer ranges: digits, '-', ',' and blanks, with at least one digit.
 * Their structure is checked against the model by partition_layers. */
static int looks_like_ranges(const char *s)
{
    int digit = 0;
    for (; *s; s++) {
        if (isdigit((unsigned char)*s))
            digit = 1;
        else if (*s != '-' && *s != ',' && *s != ' ' && *s != '\t')
            return 0;
    }
    return digit;
}

/* Parses `text` (already trimmed) as the value of k and stores it in c;
 * c is unchanged on error. */
static pt_status parse_value(const cfg_key *k, const char *text, config *c)
{
    char *end = NULL;
    switch (k->type) {
    case T_INT:
    case T_LONG: {
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (end == text || *end || errno) return fail_value(k, text, 1);
        if (k->type == T_INT && (v < INT_MIN || v > INT_MAX)) return fail_value(k, text, 1);
        if (k->type == T_LONG && (v < LONG_MIN || v > LONG_MAX)) return fail_value(k, text, 1);
        if (!in_range(k, (double)v)) return fail_value(k, text, 1);
        if (k->type == T_INT)
            *(int *)field(c, k) = (int)v;
        else
            *(long *)field(c, k) = (long)v;
        return PT_OK;
    }
    case T_U64: {
        if (!isdigit((unsigned char)text[0])) return fail_value(k, text, 1);
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (*end || errno) return fail_value(k, text, 1);
        *(uint64_t *)field(c, k) = (uint64_t)v;
        return PT_OK;
    }
    case T_FLOAT: {
        errno = 0;
        double v = strtod(text, &end);
        if (end == text || *end || errno || !isfinite(v) || fabs(v) > FLT_MAX)
            return fail_value(k, text, 1);
        float f = (float)v;
        if (!in_range(k, (double)f)) return fail_value(k, text, 1);
        *(float *)field(c, k) = f;
        return PT_OK;
    }
    case T_BOOL: {
        static const char *const yes[] = {"true", "yes", "1"}, *const no[] = {"false", "no", "0"};
        for (int i = 0; i < 3; i++) {
            if (strcasecmp(text, yes[i]) == 0) {
                *(int *)field(c, k) = 1;
                return PT_OK;
            }
            if (strcasecmp(text, no[i]) == 0) {
                *(int *)field(c, k) = 0;
                return PT_OK;
            }
        }
        return fail_value(k, text, 1);
    }
    case T_ENUM: {
        const cfg_word *w = word_match(k->words, text);
        if (!w) return fail_value(k, text, 1);
        *(int *)field(c, k) = w->value;
        return PT_OK;
    }
    case T_STRING: {
        if (k->words) {
            const cfg_word *w = word_match(k->words, text);
            if (!w) return fail_value(k, text, 1);
            text = w->word;
        }
        if (strlen(text) >= k->size) return fail_value(k, text, 1);
        if (!ini_safe(text)) return fail_text(k, text);
        store_string(field(c, k), k->size, text);
        return PT_OK;
    }
    case T_PARTITION: {
        const cfg_word *w = word_match(k->words, text);
        char *spec = (char *)c + k->aux_offset;
        if (w) {
            *(int *)field(c, k) = w->value;
            store_string(spec, k->aux_size, "");
            return PT_OK;
        }
        if (!looks_like_ranges(text) || strlen(text) >= k->aux_size)
            return fail_value(k, text, 1);
        *(int *)field(c, k) = PARTITION_EXPLICIT;
        store_string(spec, k->aux_size, text);
        return PT_OK;
    }
    }
    return pt_fail(PT_ERR_INVALID, "%s.%s: unknown key type %d", k->section, k->key, (int)k->type);
}

/* The canonical text of a stored value. */
static void value_text(const cfg_key *k, const config *c, char *buf, size_t len)
{
    const void *f = cfield(c, k);
    const char *w;
    switch (k->type) {
    case T_INT:
        snprintf(buf, len, "%d", *(const int *)f);
        return;
    case T_LONG:
        snprintf(buf, len, "%ld", *(const long *)f);
        return;
    case T_U64:
        snprintf(buf, len, "%" PRIu64, *(const uint64_t *)f);
        return;
    case T_FLOAT: { /* the shortest text that reads back as the same float */
        float v = *(const float *)f;
        for (int digits = 1; digits <= 9; digits++) {
            snprintf(buf, len, "%.*g", digits, (double)v);
            if (strtof(buf, NULL) == v) break;
        }
        return;
    }
    case T_BOOL:
        snprintf(buf, len, "%s", *(const int *)f ? "true" : "false");
        return;
    case T_ENUM:
        w = word_of(k->words, *(const int *)f);
        if (w)
            snprintf(buf, len, "%s", w);
        else
            snprintf(buf, len, "%d", *(const int *)f);
        return;
    case T_STRING:
        snprintf(buf, len, "%.*s", (int)strnlen((const char *)f, k->size), (const char *)f);
        return;
    case T_PARTITION: {
        int kind = *(const int *)f;
        const char *spec = (const char *)c + k->aux_offset;
        w = word_of(k->words, kind);
        if (kind == PARTITION_EXPLICIT)
            snprintf(buf, len, "%.*s", (int)strnlen(spec, k->aux_size), spec);
        else if (w)
            snprintf(buf, len, "%s", w);
        else
            snprintf(buf, len, "%d", kind);
        return;
    }
    }
    snprintf(buf, len, "?");
}

/* Checks a stored value against the key's type and range. */
static pt_status check_value(const cfg_key *k, const config *c)
{
    char text[CONFIG_STR_MAX + 32];
    value_text(k, c, text, sizeof text);
    const void *f = cfield(c, k);
    switch (k->type) {
    case T_INT:
        return in_range(k, (double)*(const int *)f) ? PT_OK : fail_value(k, text, 0);
    case T_LONG:
        return in_range(k, (double)*(const long *)f) ? PT_OK : fail_value(k, text, 0);
    case T_U64:
        return PT_OK;
    case T_FLOAT: {
        float v = *(const float *)f;
        return isfinite(v) && in_range(k, (double)v) ? PT_OK : fail_value(k, text, 0);
    }
    case T_BOOL: {
        int v = *(const int *)f;
        return v == 0 || v == 1 ? PT_OK : fail_value(k, text, 0);
    }
    case T_ENUM:
        return word_of(k->words, *(const int *)f) ? PT_OK : fail_value(k, text, 0);
    case T_STRING: {
        const char *s = f;
        if (strnlen(s, k->size) >= k->size) return fail_value(k, "(unterminated text)", 0);
        if (k->words && !word_match(k->words, s)) return fail_value(k, text, 1);
        return ini_safe(s) ? PT_OK : fail_text(k, text);
    }
    case T_PARTITION: {
        int kind = *(const int *)f;
        const char *spec = (const char *)c + k->aux_offset;
        if (kind == PARTITION_EXPLICIT) {
            if (strnlen(spec, k->aux_size) >= k->aux_size || !looks_like_ranges(spec))
                return fail_value(k, text, 1);
            return PT_OK;
        }
        return word_of(k->words, kind) ? PT_OK : fail_value(k, text, 0);
    }
    }
    return pt_fail(PT_ERR_INVALID, "%s.%s: unknown key type %d", k->section, k->key, (int)k->type);
}

/* ---- public: defaults, set, validate, text, help ------------------------ */

void config_defaults(config *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_KEYS; i++) {
        pt_status st = parse_value(&keys[i], keys[i].def, c);
        (void)st; /* the defaults are constants; test_config checks each parses */
    }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

pt_status config_set(config *c, const char *assignment)
{
    char buf[CONFIG_STR_MAX + 128];
    char where[CONFIG_STR_MAX / 4];
    snprintf(where, sizeof where, "override '%.200s': ", assignment);
    if (strlen(assignment) >= sizeof buf)
        return pt_fail(PT_ERR_INVALID, "%stoo long (at most %zu characters)", where,
                       sizeof buf - 1);
    memcpy(buf, assignment, strlen(assignment) + 1);
    char *eq = strchr(buf, '=');
    char *dot = eq ? memchr(buf, '.', (size_t)(eq - buf)) : NULL;
    if (!eq || !dot)
        return pt_fail(PT_ERR_INVALID,
                       "%sexpected the form section.key=value, e.g. train.lr=0.01 or "
                       "pipeline.schedule=gpipe",
                       where);
    *eq = '\0';
    *dot = '\0';
    char *section = trim(buf), *key = trim(dot + 1), *value = trim(eq + 1);
    if (!*section || !*key)
        return pt_fail(PT_ERR_INVALID,
                       "%sexpected the form section.key=value, e.g. train.lr=0.01", where);
    if (find_section(section, strlen(section)) < 0)
        return fail_unknown_section(where, section, strlen(section));
    int k = find_key(section, key);
    if (k < 0) return fail_unknown_key(where, section, key);
    pt_status st = parse_value(&keys[k], value, c);
    if (st) return pt_wrap(st, "%s", where);
    return PT_OK;
}

pt_status config_validate(const config *c)
{
    pt_status st;
    for (int i = 0; i < N_KEYS; i++)
        if ((st = check_value(&keys[i], c))) return st;

    const char *l = c->model_layers;
    while (isspace((unsigned char)*l)) l++;
    if (!*l)
        return pt_fail(PT_ERR_INVALID,
                       "model.layers is empty: list the model's layers, e.g. [model] layers = "
                       "linear 256, relu, linear 10");
    int B = c->batch_size, M = c->micro_batches;
    if (B % M) {
        /* the multiples of M either side of B, in wider arithmetic: valid
         * when in [M, INT_MAX] (B + M can pass INT_MAX) */
        long long lower = (long long)B / M * M, upper = lower + M;
        int lower_ok = lower >= M, upper_ok = upper <= INT_MAX;
        char near[128];
        if (lower_ok && upper_ok) {
            long long nearest = B - lower <= upper - B ? lower : upper;
            snprintf(near, sizeof near, "the nearest valid train.batch_size is %lld (or %lld)", nearest,
                     nearest == lower ? upper : lower);
        } else if (lower_ok || upper_ok) {
            snprintf(near, sizeof near, "the nearest valid train.batch_size is %lld", lower_ok ? lower : upper);
        } else {
            snprintf(near, sizeof near, "no valid train.batch_size is near %d", B);
        }
        return pt_fail(PT_ERR_INVALID,
                       "train.batch_size = %d is not divisible by pipeline.micro_batches = %d: "
                       "%s, or choose micro_batches dividing %d",
                       B, M, near, B);
    }

    if (c->partition == PARTITION_MEASURED && !c->profile[0])
        return pt_fail(PT_ERR_INVALID, "pipeline.partition = measured balances stages by measured layer times but "
                       "pipeline.profile is empty: write a profile with mpirun -np 2 pipetrain profile CONFIG "
                       "--output FILE and set pipeline.profile = FILE");

    optim_config oc = config_optim(c);
    if ((st = optim_check(&oc))) return st;
    lr_schedule ls = config_lr(c);
    if ((st = lr_check(&ls))) return st;

    if (M % c->data_parallel)
    {
        int D = c->data_parallel, below = M / D * D, above = below + D;
        char use[64];
        if (below > 0)
            snprintf(use, sizeof use, "use micro_batches = %d or %d", below, above);
        else
            snprintf(use, sizeof use, "use micro_batches = %d or a multiple of it", D);
        return pt_fail(PT_ERR_INVALID, "pipeline.micro_batches = %d is not divisible by pipeline.data_parallel = %d: "
                       "each replica trains M / D micro-batches of every step; %s", M, D, use);
    }
    int share = M / c->data_parallel;
    if (c->reduction == REDUCTION_INVARIANT && c->data_parallel > 1 && (share & (share - 1)))
        return pt_fail(PT_ERR_INVALID, "pipeline.reduction = invariant with pipeline.data_parallel = %d needs each "
                       "replica's share of the micro-batches (micro_batches / data_parallel = %d / %d = %d) to be a "
                       "power of two, so that it is a subtree of the fixed summation tree; use micro_batches = %d, "
                       "or pipeline.reduction = fast", c->data_parallel, M, c->data_parallel, share,
                       c->data_parallel * (1 << (int)floor(log2((double)share))));
    long ta, tb;
    if (!config_trace_steps(c, &ta, &tb))
        return pt_fail(PT_ERR_INVALID, "log.trace_steps = '%s': expected a step range a-b with 1 <= a <= b, or one "
                       "step, e.g. 2-3", c->log_trace_steps);
    if (c->chunks > 1 && c->schedule != SCHED_INTERLEAVED)
        return pt_fail(PT_ERR_INVALID, "pipeline.chunks = %d: only the interleaved schedule runs more than one "
                       "model chunk per rank, and pipeline.schedule = %s: set pipeline.schedule = interleaved, "
                       "or pipeline.chunks = 1", c->chunks, word_of(schedule_words, (int)c->schedule));

    if (c->fault_kind != FAULT_NONE) {
        const char *kind = word_of(fault_words, (int)c->fault_kind);
        if (c->fault_rank < 0)
            return pt_fail(PT_ERR_INVALID, "fault.rank = %d: fault.kind = %s needs the rank >= 0 "
                           "that fails", c->fault_rank, kind);
        if (c->fault_step < 0)
            return pt_fail(PT_ERR_INVALID, "fault.step = %ld: fault.kind = %s needs the step >= 0 "
                           "at which it fails", c->fault_step, kind);
        if (c->fault_kind == FAULT_NAN && c->fault_layer < 0)
            return pt_fail(PT_ERR_INVALID, "fault.layer = %d: fault.kind = nan needs the global "
                           "layer >= 0 whose gradient is poisoned", c->fault_layer);
    }
    return PT_OK;
}

size_t config_to_text(const config *c, char *buf, size_t len)
{
    size_t pos = 0;
    char value[CONFIG_STR_MAX + 32];
    if (buf && len) buf[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        const cfg_key *k = &keys[i];
        if (i == 0 || strcmp(keys[i - 1].section, k->section) != 0)
            appendf(buf, len, &pos, "%s[%s]\n", i ? "\n" : "", k->section);
        value_text(k, c, value, sizeof value);
        appendf(buf, len, &pos, "%s =%s%s\n", k->key, value[0] ? " " : "", value);
    }
    return pos;
}

size_t config_to_lines(const config *c, config_resume_rule min_rule, char *buf, size_t len)
{
    size_t pos = 0;
    char value[CONFIG_STR_MAX + 32];
    if (buf && len) buf[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        if (keys[i].resume < min_rule) continue;
        value_text(&keys[i], c, value, sizeof value);
        appendf(buf, len, &pos, "%s.%s = %s\n", keys[i].section, keys[i].key, value);
    }
    return pos;
}

int config_changes(const config *before, const config *after, config_change *out, int max)
{
    int n = 0;
    char a[CONFIG_STR_MAX + 32], b[CONFIG_STR_MAX + 32];
    for (int i = 0; i < N_KEYS; i++) {
        value_text(&keys[i], before, a, sizeof a);
        value_text(&keys[i], after, b, sizeof b);
        if (!strcmp(a, b)) continue;
        if (n < max) {
            config_change *x = &out[n];
            snprintf(x->key, sizeof x->key, "%s.%s", keys[i].section, keys[i].key);
            memcpy(x->before, a, sizeof a);
            memcpy(x->after, b, sizeof b);
            x->rule = keys[i].resume;
        }
        n++;
    }
    return n;
}

void config_print_help(FILE *out)
{
    char expect[512];
    fprintf(out, "Configuration keys (INI file sections; override any with --set "
                 "section.key=value).\nOn --resume, keys that define the stored state cannot change; "
                 "keys that change only the\nfuture are noted and recorded in the checkpoints' history; "
                 "the others change freely.\n");
    for (int i = 0; i < N_KEYS; i++) {
        const cfg_key *k = &keys[i];
        if (i == 0 || strcmp(keys[i - 1].section, k->section) != 0)
            fprintf(out, "\n[%s]\n", k->section);
        expect_text(k, expect, sizeof expect);
        static const char *const on_resume[] = {"", "; a change on --resume is noted and recorded",
                                                "; cannot change on --resume"};
        fprintf(out, "  %-20s default %s%s\n", k->key, k->def[0] ? k->def : "(empty)", on_resume[k->resume]);
        fprintf(out, "      %s; %s%s%s%s\n", k->help, expect, k->note ? " (" : "",
                k->note ? k->note : "", k->note ? ")" : "");
    }
}

optim_config config_optim(const config *c)
{
    optim_config oc = optim_defaults(c->optimizer);
    oc.momentum = c->momentum;
    oc.nesterov = c->nesterov;
    oc.beta1 = c->beta1;
    oc.beta2 = c->beta2;
    oc.eps = c->eps;
    oc.weight_decay = c->weight_decay;
    oc.l1 = c->l1;
    oc.l2 = c->l2;
    return oc;
}

lr_schedule config_lr(const config *c)
{
    lr_schedule ls = {.kind = c->lr_schedule,
                      .base = c->lr,
                      .warmup = c->warmup_steps,
                      .total = c->steps,
                      .min_ratio = c->min_lr_ratio};
    return ls;
}

int config_trace_steps(const config *c, long *first, long *last)
{
    char *end;
    const char *t = c->log_trace_steps;
    while (isspace((unsigned char)*t)) t++;
    if (!isdigit((unsigned char)*t)) return 0;
    *first = strtol(t, &end, 10);
    *last = *first;
    while (isspace((unsigned char)*end)) end++;
    if (*end == '-') {
        t = end + 1;
        while (isspace((unsigned char)*t)) t++;
        if (!isdigit((unsigned char)*t)) return 0;
        *last = strtol(t, &end, 10);
        while (isspace((unsigned char)*end)) end++;
    }
    return *end == '\0' && *first >= 1 && *last >= *first;
}

int config_micro_rows(const config *c)
{
    return c->micro_batches > 0 ? c->batch_size / c->micro_batches : 0;
}

/* ---- reading INI files -------------------------------------------------- */

#define CONFIG_FILE_MAX (4u << 20)
#define PENDING_MAX (2 * CONFIG_STR_MAX)

typedef struct {
    const char *path;
    config *c;
    /* the file in memory and the reader's position */
    char *text;
    size_t len, pos;
    int line;             /* physical line (1-based) of the piece last handed to inih */
    int indented;         /* that piece starts with a blank */
    int glue;             /* it is the second or later piece of a split line */
    const char *rest;     /* pieces of a long line still to hand over */
    size_t rest_len;
    int *call_line;       /* physical line of each piece: inih counts pieces */
    int n_calls, cap_calls;
    int prev_key;         /* key of the last key line in this section, -1 after [section] */
    /* the value being collected (a key line and its continuations) */
    int pend_key, pend_line;
    char pend[PENDING_MAX + 1];
    size_t pend_len;
    int key_line[sizeof keys / sizeof keys[0]];
    /* the first error */
    pt_status st;
    int err_line;
} ini_ctx;

static int ctx_fail(ini_ctx *x, pt_status st, int line)
{
    x->st = st;
    x->err_line = line;
    return 1;
}

/* The physical line `line` (1-based) of the file, for messages. */
static void file_line(const ini_ctx *x, int line, char *buf, size_t len)
{
    const char *p = x->text, *end = x->text + x->len;
    for (int l = 1; l < line && p < end; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    while (n && isspace((unsigned char)p[n - 1])) n--;
    if (n > 80) n = 80;
    snprintf(buf, len, "%.*s%s", (int)n, p, n == 80 ? "..." : "");
}

/* Where a long key line (text[0..n)) may be cut so that both sides keep
 * their characters: between two non-blanks, the second not a comment sign.
 * Returns the cut in (1, max], or 0. */
static size_t split_point(const char *s, size_t n, size_t max)
{
    if (n <= max) return n;
    for (size_t k = max; k > 1; k--)
        if (!isspace((unsigned char)s[k - 1]) && !isspace((unsigned char)s[k]) && s[k] != ';' &&
            s[k] != '#')
            return k;
    return 0;
}

/* Hands the next piece to inih: a physical line when it fits in num − 3
 * characters, else a long value line cut into pieces, the later ones indented
 * by one blank (so inih passes them as continuations) and glued back without
 * a separator by on_pair. */
static char *ini_reader_mem(char *str, int num, void *stream)
{
    ini_ctx *x = stream;
    if (x->st || num < 8) return NULL;
    size_t max = (size_t)num - 4;
    if (x->rest) {
        size_t k = split_point(x->rest, x->rest_len, max);
        if (!k) {
            ctx_fail(x, pt_fail(PT_ERR_INVALID, "%s:%d: line too long to read (no place to "
                                "split it between two non-blank characters)", x->path, x->line),
                     x->line);
            return NULL;
        }
        str[0] = ' ';
        memcpy(str + 1, x->rest, k);
        str[k + 1] = '\n';
        str[k + 2] = '\0';
        x->rest = k < x->rest_len ? x->rest + k : NULL;
        x->rest_len -= k;
        x->glue = 1;
        x->indented = 1;
    } else {
        if (x->pos >= x->len) return NULL;
        const char *s = x->text + x->pos;
        const char *nl = memchr(s, '\n', x->len - x->pos);
        size_t n = nl ? (size_t)(nl - s) : x->len - x->pos;
        x->pos += n + (nl ? 1 : 0);
        x->line++;
        x->glue = 0;
        x->indented = n > 0 && (s[0] == ' ' || s[0] == '\t');
        const char *p = s;
        if (x->line == 1 && n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;
        while (p < s + n && isspace((unsigned char)*p)) p++;
        int cont = x->indented && x->prev_key >= 0;
        if (!cont && p < s + n && *p == '[') {
            /* a section line: refuse unknown sections here, so that an empty
             * one is caught too (inih only reports keys) */
            const char *q = p + 1;
            while (q < s + n && *q != ']' && !(*q == ';' && isspace((unsigned char)q[-1]))) q++;
            if (q < s + n && *q == ']') {
                if (find_section(p + 1, (size_t)(q - p - 1)) < 0) {
                    char where[CONFIG_STR_MAX / 2];
                    snprintf(where, sizeof where, "%.300s:%d: ", x->path, x->line);
                    ctx_fail(x, fail_unknown_section(where, p + 1, (size_t)(q - p - 1)), x->line);
                    return NULL;
                }
                x->prev_key = -1;
            }
        }
        if (n > max) {
            if (p < s + n && (*p == ';' || *p == '#')) {
                memcpy(str, "#\n", 3); /* a long comment */
            } else {
                /* an inline comment ends the value; so does trailing blank */
                size_t m = 0;
                while (m < n && !(s[m] == ';' && m > 0 && isspace((unsigned char)s[m - 1]))) m++;
                while (m > 0 && isspace((unsigned char)s[m - 1])) m--;
                size_t eq = 0;
                while (eq < m && s[eq] != '=' && s[eq] != ':') eq++;
                size_t k = split_point(s, m, max);
                if (!cont && eq >= m) {
                    /* not a value line: hand over what fits, inih reports it */
                    k = max;
                    x->rest = NULL;
                } else if (!k || (!cont && eq >= k)) {
                    ctx_fail(x, pt_fail(PT_ERR_INVALID, "%.300s:%d: line too long to read (no "
                                        "place to split it between two non-blank characters)",
                                        x->path, x->line), x->line);
                    return NULL;
                } else {
                    x->rest = k < m ? s + k : NULL;
                    x->rest_len = m - k;
                }
                memcpy(str, s, k);
                str[k] = '\n';
                str[k + 1] = '\0';
            }
        } else {
            memcpy(str, s, n);
            str[n] = '\n';
            str[n + 1] = '\0';
        }
    }
    if (x->n_calls == x->cap_calls) {
        int cap = x->cap_calls ? 2 * x->cap_calls : 256;
        int *p = realloc(x->call_line, (size_t)cap * sizeof *p);
        if (!p) {
            ctx_fail(x, pt_fail(PT_ERR_NOMEM, "%s: out of memory", x->path), x->line);
            return NULL;
        }
        x->call_line = p;
        x->cap_calls = cap;
    }
    x->call_line[x->n_calls++] = x->line;
    return str;
}

/* Parses the collected value of the pending key. */
static void flush_pending(ini_ctx *x)
{
    if (x->st || x->pend_key < 0) return;
    const cfg_key *k = &keys[x->pend_key];
    x->pend[x->pend_len] = '\0';
    pt_status st = parse_value(k, trim(x->pend), x->c);
    if (st) ctx_fail(x, pt_wrap(st, "%.300s:%d: ", x->path, x->pend_line), x->pend_line);
    x->pend_key = -1;
}

static int pend_append(ini_ctx *x, const char *sep, const char *value)
{
    size_t a = strlen(sep), b = strlen(value);
    if (x->pend_len + a + b > PENDING_MAX) {
        const cfg_key *k = &keys[x->pend_key];
        return ctx_fail(x, pt_fail(PT_ERR_INVALID, "%.300s:%d: %s.%s: value longer than %d "
                                   "characters", x->path, x->pend_line, k->section, k->key,
                                   PENDING_MAX), x->pend_line);
    }
    memcpy(x->pend + x->pend_len, sep, a);
    memcpy(x->pend + x->pend_len + a, value, b);
    x->pend_len += a + b;
    return 1;
}

/* inih's handler. It always returns 1: errors are kept in x (the first one
 * only), and the reader then stops; inih's own return is syntax errors. */
static int on_pair(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx *x = user;
    if (x->st) return 1;
    int cont = (x->glue || x->indented) && x->prev_key >= 0 &&
               strcmp(keys[x->prev_key].section, section) == 0 &&
               strcmp(keys[x->prev_key].key, name) == 0;
    if (cont) {
        if (x->pend_key < 0) return 1; /* cannot happen: prev_key is pending */
        return pend_append(x, x->glue ? "" : " ", value);
    }
    flush_pending(x);
    if (x->st) return 1;
    char where[CONFIG_STR_MAX / 2];
    snprintf(where, sizeof where, "%.300s:%d: ", x->path, x->line);
    if (!section[0])
        return ctx_fail(x, pt_fail(PT_ERR_INVALID, "%skey '%.64s' before any [section]: put it "
                                   "under its section, e.g. [train] for steps", where, name),
                        x->line);
    if (find_section(section, strlen(section)) < 0)
        return ctx_fail(x, fail_unknown_section(where, section, strlen(section)), x->line);
    int k = find_key(section, name);
    if (k < 0) return ctx_fail(x, fail_unknown_key(where, section, name), x->line);
    if (x->key_line[k])
        return ctx_fail(x, pt_fail(PT_ERR_INVALID, "%s%s.%s is set twice (lines %d and %d)",
                                   where, section, name, x->key_line[k], x->line),
                        x->line);
    x->key_line[k] = x->line;
    x->prev_key = k;
    x->pend_key = k;
    x->pend_line = x->line;
    x->pend_len = 0;
    return pend_append(x, "", value);
}

static pt_status read_file(const char *path, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    /* a regular file only (a FIFO would block, a directory is not text), and
     * no more than it held when opened */
    int fd;
    uint64_t size;
    pt_status st = safefile_open(path, "config file", "give the path of an INI file", CONFIG_FILE_MAX, &fd,
                                 &size);
    if (st) return st;
    size_t n = 0;
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        st = pt_fail(PT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((st = safefile_read(fd, path, buf, (size_t)size, &n))) {
        st = pt_wrap(st, "config file: ");
        goto done;
    }
    const char *nul = memchr(buf, '\0', n);
    if (nul) {
        int line = 1;
        for (const char *p = buf; p < nul; p++) line += *p == '\n';
        st = pt_fail(PT_ERR_FORMAT, "%s:%d: a NUL byte: not a text file", path, line);
        goto done;
    }
done:
    close(fd);
    if (st) {
        free(buf);
        return st;
    }
    *text = buf;
    *len = n;
    return PT_OK;
}

/* Parses the INI text (malloc'd; freed here) into c; `path` names it in messages. */
static pt_status parse_text(config *c, const char *path, char *ini, size_t len)
{
    ini_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        free(ini);
        return pt_fail(PT_ERR_NOMEM, "%s: out of memory", path);
    }
    x->text = ini;
    x->len = len;
    pt_status st;
    x->path = path;
    x->c = c;
    x->prev_key = -1;
    x->pend_key = -1;
    int r = ini_parse_stream(ini_reader_mem, x, on_pair, x);
    if (r == -2 && !x->st) ctx_fail(x, pt_fail(PT_ERR_NOMEM, "%s: out of memory", path), 0);
    flush_pending(x);
    if (r > 0 && r <= x->n_calls) {
        int line = x->call_line[r - 1];
        if (!x->st || line < x->err_line) {
            char text[100];
            file_line(x, line, text, sizeof text);
            ctx_fail(x, pt_fail(PT_ERR_INVALID, "%.300s:%d: expected 'key = value', "
                                "'[section]' or a comment, found '%s'", path, line, text),
                     line);
        }
    }
    st = x->st;
    free(x->call_line);
    free(x->text);
    free(x);
    return st;
}

static pt_status load_file(config *c, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    pt_status st = read_file(path, &text, &len);
    if (st) return st;
    return parse_text(c, path, text, len);
}

pt_status config_load_text(config *c, const char *text, const char *name)
{
    config_defaults(c);
    if (!text) return pt_fail(PT_ERR_INVALID, "%s: no config text", name ? name : "config");
    size_t len = strlen(text);
    char *copy = malloc(len + 1);
    if (!copy) return pt_fail(PT_ERR_NOMEM, "%s: out of memory", name ? name : "config");
    memcpy(copy, text, len + 1);
    pt_status st = parse_text(c, name ? name : "config", copy, len);
    if (st) return st;
    return config_validate(c);
}

pt_status config_load(config *c, const char *path, const char *const *overrides, int n_overrides)
{
    config_defaults(c);
    pt_status st;
    if (path && (st = load_file(c, path))) return st;
    for (int i = 0; i < n_overrides; i++)
        if ((st = config_set(c, overrides[i]))) return st;
    return config_validate(c);
}
