/* trainer.h — the training and evaluation loops of `pipetrain`. */
#ifndef PT_TRAINER_H
#define PT_TRAINER_H

#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "pt_status.h"

typedef enum { TRAINER_TRAIN = 0, TRAINER_EVAL, TRAINER_GENERATE } trainer_mode;

typedef struct {
    trainer_mode mode;
    const char *config_path;
    const char *tensor_hashes; /* file for one "name hash" line per tensor, or NULL */
    const char *resume;        /* checkpoint or run directory to resume from, or NULL */
    const char *init;          /* checkpoint whose weights start a new run, or NULL */
    long stop_after;           /* end (with a checkpoint) after this step; 0 = train.steps */
    /* generate: one micro-batch of one row per prompt (the config's batch size
     * and micro-batch count must both equal n_prompts) */
    const char *const *prompts;
    int n_prompts;
    int gen_tokens;            /* bytes to generate per prompt */
    float temperature;         /* 0: greedy */
    int top_k;                 /* 0: all */
    uint64_t gen_seed;
} trainer_options;

/* Collective over the grid's world. Builds the model, partition, schedule
 * (validated before it runs), stage and data; trains (or evaluates); prints
 * progress and the closing lines on rank 0. On failure returns the status
 * and sets *reporter: when every rank reached the same error (config,
 * partition, checkpoint, non-finite values) it is the rank whose message
 * names it and a clean exit is possible; -1 when only this rank failed and
 * the caller must end the whole job. */
pt_status trainer_run(const config *c, const comm_grid *g, const trainer_options *opt, int *reporter);

#endif
