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

/* Runs `pipetrain plan CONFIG --ranks LIST [options]` (argv as main's,
 * argv[1] = "plan"): prints the layouts ranked by predicted throughput and
 * the command line of the best. Returns the exit code: 0, 2 for bad
 * arguments or config, 1 for other errors, each with one message. */
int plan_main(int argc, char **argv);

#endif
