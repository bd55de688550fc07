/* simulate.h — `pipetrain simulate`: predicts a layout's step time before
 * it runs. It builds exactly the lowered op lists the trainer would run for
 * the layout (engine/layout.h), measures on this machine how long each
 * virtual stage's forward, backward (or input and weight gradients) and
 * optimizer update take for the config's micro-batch, and times the lists as
 * a discrete-event simulation (schedule_simulate): compute ops from those
 * measurements, transfers as latency + bytes / bandwidth, gradient
 * all-reduces as a ring (2·(D−1) messages of bytes / D). No MPI. */
#ifndef PT_SIMULATE_H
#define PT_SIMULATE_H

/* Runs `pipetrain simulate CONFIG --ranks N [options]` (argv as main's,
 * argv[1] = "simulate"): prints the plan, per-rank busy time, bubble and
 * peak activation memory, and the lines "predicted step time: T s" and
 * "predicted throughput: X samples/s" (tokens/s for a language model).
 * Returns the process exit code: 0, 2 for bad arguments or config, 1 for
 * other errors (each with one message on stderr). */
int simulate_main(int argc, char **argv);

#endif
