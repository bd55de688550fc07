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

#include "config.h"
#include "layout.h"
#include "pt_status.h"

/* What one virtual stage costs per micro-batch (seconds) and sends (bytes). */
typedef struct {
    double fwd, bwd, bi, bw; /* forward, backward, and its input and weight halves (BI + BW when split) */
    double optim;            /* the optimizer update of its parameters, per step */
    double data;             /* reading one micro-batch's inputs (virtual stage 0) */
    double act_bytes;        /* its output, sent to the next virtual stage */
    double grad_bytes;       /* its parameters' gradients, all-reduced over the replicas */
    int buckets;             /* their gradient buckets */
    double reduce;           /* seconds of one bucket's all-reduce when measured (0: the ring model) */
    double stash_bytes;      /* activation memory per micro-batch held */
} sim_stage_cost;

/* The transfer model: a point-to-point transfer takes latency + bytes /
 * bandwidth; a gradient all-reduce over D replicas 2·(D−1)·latency +
 * 2·(D−1)/D · bytes / allreduce_bandwidth (a ring, whose steps also add). */
typedef struct {
    double latency;             /* seconds */
    double bandwidth;           /* bytes per second */
    double allreduce_bandwidth; /* bytes of gradient per second through the all-reduce */
} sim_network;

/* When nothing better is known: shared memory on one machine, as measured
 * here with Open MPI 4.1 (an 11 MiB all-reduce of 2 ranks: 6.5 ms). */
#define SIMULATE_NETWORK ((sim_network){5e-6, 5e9, 1.7e9})

/* Parses --network's "LATENCY,BANDWIDTH[,ALLREDUCE_BANDWIDTH]" (seconds,
 * bytes per second) into *net (fields not given keep their value). Errors:
 * PT_ERR_INVALID naming `who` and the text. */
pt_status simulate_parse_network(const char *text, const char *who, sim_network *net);

/* The predicted step of layout L (P·chunks virtual stages, vs[V] their
 * costs; transfers and all-reduces as net says): the lists' makespan, then the
 * end-of-step reduction and the slowest rank's optimizer update, in *step
 * (seconds); busy[P] each rank's compute seconds within the lists, and
 * start[r][i] each op's start when start is not NULL. Not collective.
 * Errors: as schedule_simulate. */
pt_status simulate_step(const layout *L, const sim_stage_cost *vs, sim_network net, double *step, double *makespan,
                        double *busy, double **start);

/* Runs `pipetrain simulate CONFIG --ranks N [options]` (argv as main's,
 * argv[1] = "simulate"): prints the plan, per-rank busy time, bubble and
 * peak activation memory, and the lines "predicted step time: T s" and
 * "predicted throughput: X samples/s" (tokens/s for a language model).
 * Returns the process exit code: 0, 2 for bad arguments or config, 1 for
 * other errors (each with one message on stderr). */
int simulate_main(int argc, char **argv);

#endif
