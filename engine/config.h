/* config.h — the run configuration: an INI file (parsed with libinih) whose
 * every key can be overridden on the command line as --set section.key=value.
 *
 * Every key is declared once in a table (config.c) with its type, default,
 * allowed range and a one-line description; the table drives parsing,
 * validation, `pipetrain --help-config` and the canonical text stored in
 * checkpoints. Unknown keys, bad values and impossible combinations are
 * refused with a message naming the key, before any rank does work. */
#ifndef PT_CONFIG_H
#define PT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "optim.h"
#include "pt_status.h"
#include "schedule.h"

#define CONFIG_STR_MAX 1024

typedef enum { PARTITION_UNIFORM = 0, PARTITION_PARAMS, PARTITION_COST, PARTITION_EXPLICIT, PARTITION_MEASURED } partition_kind;
typedef enum { NONFINITE_STOP = 0, NONFINITE_SKIP } nonfinite_policy;
/* pipeline.reduction: how a step's gradients are summed (design contract 2) */
typedef enum { REDUCTION_FAST = 0, REDUCTION_INVARIANT } reduction_kind;
typedef enum { FAULT_NONE = 0, FAULT_ERROR, FAULT_CRASH, FAULT_NAN, FAULT_CHECKPOINT_CRASH, FAULT_DIVERGE } fault_kind;

/* What a change of a key's value means when a run resumes a checkpoint
 * (docs/checkpoint-format.md, "Resuming with another config"):
 *   FREE   the key does not change the numbers (layout, logging, paths):
 *          allowed silently;
 *   NOTE   the key changes the future but not the past (learning rate,
 *          steps, regularisation): allowed, printed, and recorded in the
 *          history of every checkpoint the resumed run writes;
 *   REFUSE the key defines what the stored state means (model, data, seed,
 *          batch, optimizer): refused, naming both values. */
typedef enum { RESUME_FREE = 0, RESUME_NOTE, RESUME_REFUSE } config_resume_rule;

typedef struct {
    /* [model] */
    char model_layers[CONFIG_STR_MAX]; /* "linear 1024, relu, dropout 0.2, ..." */
    int model_tie_embeddings;          /* lmhead shares the embed matrix */

    /* [data] */
    char data_dataset[64];           /* "fashion-mnist", "synthetic" or "text" */
    char data_path[CONFIG_STR_MAX];  /* IDX directory, or text file/directory; "" = default */
    int data_context;                /* text: tokens per context */
    float data_val_fraction;         /* text: held-out fraction */
    long data_val_contexts;          /* text: validation contexts evaluated */
    long data_synthetic_samples;     /* synthetic: samples in the training set */
    int data_synthetic_features;     /* synthetic: input width */
    int data_synthetic_classes;      /* synthetic: classes */

    /* [train] */
    long steps;
    uint64_t seed;
    int batch_size;                  /* global batch (samples per optimizer step) */
    optim_kind optimizer;
    float lr, min_lr_ratio;
    long warmup_steps;
    lr_kind lr_schedule;
    float momentum, beta1, beta2, eps, weight_decay, l1, l2;
    int nesterov;
    float grad_clip;                 /* global-norm clip; 0 = off */
    nonfinite_policy nonfinite;
    int blas_threads;
    long log_every;                  /* steps between progress lines */
    float timeout;                   /* seconds a rank waits on a peer before ending the job; 0 = forever */
    float progress_us;               /* microseconds between the progress thread's calls into MPI; 0 = none */
    long eval_every;                 /* steps between evaluations (0 = at the end) */

    /* [pipeline] */
    sched_kind schedule;
    int chunks; /* pipeline.chunks: model chunks per rank (interleaved) */
    int micro_batches;
    partition_kind partition;
    char partition_spec[CONFIG_STR_MAX]; /* explicit: "0-3,4-9" */
    char profile[CONFIG_STR_MAX];        /* pipeline.profile: a JSON profile (partition = measured) */
    int data_parallel;               /* replicas D */
    reduction_kind reduction;        /* pipeline.reduction */
    float bucket_mb;                 /* pipeline.bucket_mb: MiB per gradient bucket */

    /* [log] */
    char log_metrics[CONFIG_STR_MAX]; /* CSV of per-step metrics, "" = none */
    char log_summary[CONFIG_STR_MAX]; /* JSON summary of the run, "" = none */
    int log_plan_compare;             /* log.plan_compare: the planner's best beside this layout at start-up */
    char log_trace[CONFIG_STR_MAX];   /* Chrome trace event file, "" = none */
    char log_trace_steps[64];         /* "a-b": the 1-based steps traced */

    /* [checkpoint] */
    char checkpoint_dir[CONFIG_STR_MAX]; /* run directory; "" = no checkpoints */
    long checkpoint_every;               /* steps between checkpoints; 0 = only at the end */
    int checkpoint_keep;                 /* newest checkpoints kept; 0 = all */
    int checkpoint_compression;          /* deflate level 0..9 */

    /* [fault] (test-only switches) */
    fault_kind fault_kind;
    int fault_rank;
    long fault_step;
    int fault_layer;                  /* nan: global layer whose gradient is poisoned */
} config;

/* Fills every field with its default. */
void config_defaults(config *c);

/* Reads an INI file into c (over the defaults), then applies the overrides
 * "section.key=value" in order, then validates. Errors name the file and
 * line, or the override, the key and what was expected. */
pt_status config_load(config *c, const char *path, const char *const *overrides, int n_overrides);

/* Like config_load without overrides, from INI text in memory (the config
 * stored in a checkpoint's manifest); `name` stands for the file in messages. */
pt_status config_load_text(config *c, const char *text, const char *name);

/* Applies one "section.key=value" to c (no validation of combinations). */
pt_status config_set(config *c, const char *assignment);

/* Checks ranges and combinations (batch divisible by micro-batches, ...). */
pt_status config_validate(const config *c);

/* Writes the canonical INI text of every key (sorted by section, as in the
 * table) to buf; returns the length it needs (snprintf-like). */
size_t config_to_text(const config *c, char *buf, size_t len);

/* Writes every key as one "section.key = value" line (canonical values, in
 * table order) to buf, or only the keys whose resume rule is at least
 * `min_rule` (RESUME_NOTE: the keys that define the run's numbers, its
 * identity). Returns the length it needs (snprintf-like). */
size_t config_to_lines(const config *c, config_resume_rule min_rule, char *buf, size_t len);

/* One key whose value differs between two configs. */
typedef struct {
    char key[64];                    /* "train.lr" */
    char before[CONFIG_STR_MAX + 32]; /* canonical value in `before` */
    char after[CONFIG_STR_MAX + 32];  /* canonical value in `after` */
    config_resume_rule rule;
} config_change;

/* The keys whose canonical values differ between `before` (a checkpoint's
 * config) and `after` (the resuming run's), in table order: writes at most
 * `max` to out and returns how many differ (may exceed max). */
int config_changes(const config *before, const config *after, config_change *out, int max);

/* Prints every key with its default and description (for --help-config). */
void config_print_help(FILE *out);

/* The optimizer and learning-rate schedule the [train] keys describe. */
optim_config config_optim(const config *c);
lr_schedule config_lr(const config *c);

/* log.trace_steps as 1-based steps first..last; 0 when it does not parse
 * as "a-b" or "a" with 1 <= a <= b. */
int config_trace_steps(const config *c, long *first, long *last);

/* Per-micro-batch rows: batch_size / micro_batches. */
int config_micro_rows(const config *c);

#endif
