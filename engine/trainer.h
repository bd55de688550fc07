/* trainer.h — the training and evaluation loops of `pipetrain`. */
#ifndef PT_TRAINER_H
#define PT_TRAINER_H

#include "comm.h"
#include "config.h"
#include "pt_status.h"

typedef enum { TRAINER_TRAIN = 0, TRAINER_EVAL } trainer_mode;

typedef struct {
    trainer_mode mode;
    const char *config_path;
    const char *tensor_hashes; /* file for one "name hash" line per tensor, or NULL */
} trainer_options;

/* Collective over the grid's world. Builds the model, partition, schedule
 * (validated before it runs), stage and data; trains (or evaluates); prints
 * progress and the closing lines on rank 0. On failure returns the status;
 * *agreed is 1 when every rank reached the same error (config, partition,
 * non-finite values: a clean exit is possible), 0 when only this rank failed
 * (the caller must end the whole job). */
pt_status trainer_run(const config *c, const comm_grid *g, const trainer_options *opt, int *agreed);

#endif
