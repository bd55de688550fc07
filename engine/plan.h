/* plan.h — `pipetrain plan`: chooses a layout before the job is queued.
 * It measures every layer of the model on this machine (forward, backward
 * and its input and weight halves, optimizer update; per micro-batch size and
 * BLAS thread count, median of 3), then for each layout that fits — ranks
 * × BLAS threads within the cores, P stages × D replicas, micro-batches M,
 * schedule (GPipe, 1F1B, ZB-H1, interleaved 1F1B with 2 chunks), memory per
 * rank — builds its lowered lists (engine/layout.h) and simulates them
 * (simulate_step) with the costs summed over each virtual stage's layers. */
#ifndef PT_PLAN_H
#define PT_PLAN_H

#include <stddef.h>

#include "config.h"
#include "layout.h"
#include "pt_status.h"

/* Runs `pipetrain plan CONFIG --ranks LIST [options]` (argv as main's,
 * argv[1] = "plan"): prints the layouts ranked by predicted throughput and
 * the command line of the best. Returns the exit code: 0, 2 for bad
 * arguments or config, 1 for other errors, each with one message. */
int plan_main(int argc, char **argv);

/* Rank 0 of a training run, at start-up: ranks the layouts of the same
 * cores (ranks × train.blas_threads: N, N/2, ... 1 ranks using all of
 * them) at the run's pipeline.micro_batches, with per-layer costs measured
 * now on L's model and data (L is left as it is), and writes into out (len
 * bytes) one line saying how the run's own layout compares with the best,
 * with the best's command line for CONFIG `path`. Leaves the BLAS threads at
 * train.blas_threads. Not collective (the other ranks should wait without
 * spinning: comm_barrier_idle). Errors: PT_ERR_NOMEM, a measurement's. */
pt_status plan_compare(const layout *L, const config *c, int ranks, const char *path, char *out, size_t len);

#endif
