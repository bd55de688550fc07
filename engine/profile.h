/* profile.h — what each layer costs on this machine, and the profile file.
 *
 * `pipetrain profile CONFIG` measures every layer of the model for the
 * config's micro-batch (forward, backward and its input- and weight-gradient
 * halves, the optimizer update; median of repetitions), the message sizes,
 * and the MPI transport between the job's ranks (ping-pong over a range of
 * sizes, all-reduce over the data-parallel communicator), and writes them as
 * a JSON profile. `pipetrain simulate --profile FILE` times a layout from it,
 * `pipeline.partition = measured` balances stages by its times, and
 * `pipetrain plan` measures the same per-layer costs for every micro-batch
 * size and thread count it tries. */
#ifndef PT_PROFILE_H
#define PT_PROFILE_H

#include "comm.h"
#include "config.h"
#include "layout.h"
#include "pt_status.h"
#include "simulate.h"

/* Seconds on a monotonic clock (simulate and plan run without MPI): the
 * difference of two calls is elapsed time. Not collective. */
double profile_clock(void);

/* The median of t[0..n) (n ≥ 1), sorting t in place. */
double profile_median(double *t, int n);

/* Runs `expr` `reps` times and sets dst to the median of its seconds
 * (t: scratch room for reps doubles). */
#define PROFILE_MEDIAN(expr, dst, t, reps)                                                                         \
    do {                                                                                                           \
        for (int i_ = 0; i_ < (reps); i_++) {                                                                      \
            double t0_ = profile_clock();                                                                          \
            expr;                                                                                                  \
            (t)[i_] = profile_clock() - t0_;                                                                       \
        }                                                                                                          \
        dst = profile_median((t), (reps));                                                                         \
    } while (0)

/* Per-layer costs for micro-batches of `rows` rows with `threads` BLAS
 * threads; every array has n_layers entries (one allocation, layer_costs_free). */
typedef struct {
    int n_layers, rows, threads;
    double *fwd, *bwd, *bi, *bw; /* seconds per micro-batch: forward, backward, its input and weight halves */
    double *optim;               /* seconds of the optimizer update of the layer's parameters, per step */
    double *out_bytes;           /* bytes of the layer's output per micro-batch (an activation message) */
    double *stash;               /* bytes the layer keeps per micro-batch in flight */
    double *params;              /* parameter floats (gradient message: 4 bytes each) */
    double data;                 /* seconds to read one micro-batch's inputs */
} layer_costs;

/* Measures every layer of L's model alone (a stage of one layer, the input
 * of each being the output of the one before, as in a forward pass) for
 * micro-batches of `rows` rows with `threads` BLAS threads, each time the
 * median of `reps` (1..15). Sets the BLAS thread count. Not collective.
 * Errors: PT_ERR_NOMEM, a stage's errors. */
pt_status profile_layers(layout *L, const config *c, int rows, int threads, int reps, layer_costs *p);
void layer_costs_free(layer_costs *p);

/* The costs of L's P·chunks virtual stages (vs[V]) from per-layer costs p:
 * sums over each virtual stage's layers; the schedule of c says whether the
 * backward is split. Not collective; no errors. */
void profile_stage_costs(const layout *L, const config *c, const layer_costs *p, sim_stage_cost *vs);

/* A profile file as read back: per-layer costs and, when the profile was
 * measured on two or more ranks, the network model fitted to it. */
typedef struct {
    layer_costs layers;
    int has_network;
    sim_network net;
} profile_file;

/* Reads the JSON profile at `path` for model m (cJSON): every layer must be
 * there with the model's kind, in order, with finite costs ≥ 0; when rows >
 * 0 it must have been measured for micro-batches of that many rows. Not
 * collective. Errors: PT_ERR_IO (cannot read), PT_ERR_FORMAT (not a
 * profile, a damaged field: named), PT_ERR_MISMATCH (another model or
 * micro-batch size: says how to profile again), PT_ERR_NOMEM. */
pt_status profile_read(const char *path, const model *m, int rows, profile_file *out);
void profile_file_free(profile_file *p);

/* Runs `mpirun -np N pipetrain profile CONFIG [options]` (argv as main's,
 * argv[1] = "profile") on the started grid g: collective over g->world.
 * Rank 0 measures the layers while the others wait idle; then ping-pong
 * between world ranks 0 and 1 and all-reduce over pipeline.data_parallel
 * ranks (the world when that is 1) when N ≥ 2; rank 0 writes the JSON file
 * and prints a summary. Returns the exit code: 0, 2 for bad arguments or
 * config, 1 for other errors (one message, from rank 0 or the failing rank). */
int profile_main(int argc, char **argv, comm_grid *g);

#endif
