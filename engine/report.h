/* report.h — what a run tells: the plan lines, the progress lines and the
 * metrics CSV, the per-rank breakdown, the closing lines, the JSON summary
 * and the parameter fingerprint. Lines are printed on rank 0 only; the
 * functions that gather or combine across ranks say so. */
#ifndef PT_REPORT_H
#define PT_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "comm.h"
#include "config.h"
#include "dataset.h"
#include "executor.h"
#include "layers.h"
#include "pt_status.h"
#include "schedule.h"
#include "reduce.h"
#include "stage.h"

/* Writes the duration of s seconds to buf (len bytes): "0 s", "4.3 ms",
 * "0.04 s", "12.3 s", "2m03s", "1h05m"; with `exact`, a duration of a minute
 * or more also gets its seconds: "2m03s (123.4 s)". Negative or non-finite s
 * is written as "0 s". Not collective; no errors. */
void report_duration(char *buf, size_t len, double s, int exact);

/* The throughput unit of a run, the same in the progress lines, the metrics
 * CSV, the summary and the closing line: "tokens" for a language model
 * (text: data.targets tokens per sample), "samples" otherwise. Sets
 * *per_sample to the number of units in one sample. Not collective. */
const char *report_rate_unit(const dataset *d, double *per_sample);

/* Collective over g->world (ends in comm_agree). Rank 0 checks every file
 * the run writes at its end (log.metrics, log.summary, tensor_hashes when
 * not NULL) before step 1 — each must be a regular file or not exist yet, in
 * a directory where it can be created — and opens the metrics CSV
 * (*metrics, with its header line; NULL without log.metrics and on other
 * ranks). Errors, on every rank alike with *reporter = 0: PT_ERR_INVALID
 * (not a regular file), PT_ERR_IO (cannot create). */
pt_status report_open_outputs(FILE **metrics, const config *c, const comm_grid *g, const dataset *d,
                              const char *tensor_hashes, int *reporter);

/* Collective over g->world. Rank 0 prints the grid when there are
 * replicas (which world rank is which stage of which replica, on which
 * host) and warns when a rank's affinity mask allows fewer CPUs than
 * train.blas_threads (mpirun binds each rank to one core by default), naming
 * the fix. Errors: PT_ERR_NOMEM (rank 0), PT_ERR_MPI. */
pt_status report_grid(const config *c, const comm_grid *g);

/* Rank 0 prints the plan: stages, schedule, micro-batches, partition, one
 * line per virtual stage s of the c->chunks·P (rank s mod P, chunk s / P;
 * layers cuts[s]..cuts[s+1]−1, parameters, forward
 * MFLOP/sample, the stash slots of the lowered training schedule `train`)
 * and one for the data. Not collective. */
void report_plan(const config *c, const comm_grid *g, const model *m, const int *cuts, const schedule *train,
                 const dataset *d);

/* The training loop's clock, in seconds of comm_wtime(). */
typedef struct {
    long first, stop;  /* the steps trained: [first, stop) */
    double t_start;    /* start of training; the loop moves it forward by the seconds spent on evaluation
                        * and checkpoints, which are not training time */
    double last_t;     /* time of the last progress line */
    long last_step;    /* steps done at the last progress line */
} report_clock;

/* Starts the clock of a loop over steps [first, stop) now. Not collective. */
void report_clock_start(report_clock *k, long first, long stop);

/* After training step `step` (0-based) with mean loss `loss` and gradient
 * norm `norm`: writes one metrics row when metrics is not NULL (step, loss,
 * lr, grad_norm, throughput in report_rate_unit units per second since the
 * start, elapsed seconds) and, on rank 0 every train.log_every steps and at
 * the first and last step, one progress line (throughput since the last
 * line, elapsed, eta). Not collective. */
void report_step(report_clock *k, FILE *metrics, const config *c, const comm_grid *g, const dataset *d,
                 long step, double loss, double norm);

/* Rank 0 prints the result of the evaluation after `done` steps: validation
 * loss (text), or test loss and accuracy. Not collective. */
void report_eval(const comm_grid *g, const dataset *d, long done, double loss, double acc);

/* Collective over g->world. Gathers every rank's figures on rank 0: *out
 * (malloc'ed, a fixed number of doubles per rank, in world rank order, for
 * report_breakdown and report_closing: seconds of compute, waiting,
 * communication, data, optimizer and in total from ex->t, peak RSS in KiB,
 * stash bytes, parameters, and the FLOPs of `steps` training steps, summed
 * over the rank's stages st[0..chunks−1]; the seconds spent starting and
 * waiting on gradient reductions (ex->t.reduce), from each reduction's start
 * to its end (red->span), and the bytes red holds); NULL on other ranks. Errors:
 * PT_ERR_NOMEM (rank 0 only), PT_ERR_MPI. */
pt_status report_gather_figures(const executor *ex, const stage *st, int chunks, const grad_reduce *red,
                                const model *m, const config *c, const comm_grid *g, long steps, double **out);

/* Rank 0 prints one line per rank of `all` (report_gather_figures): where
 * its time went, and theoretical_bubble (a fraction of the step, 0..1, as
 * schedule_theoretical_bubble gives it). Not collective. */
void report_breakdown(const config *c, const comm_grid *g, const int *cuts, const double *all,
                      double theoretical_bubble);

/* Collective over g->pipe. The parameter fingerprint of the model m whose
 * stages st[0..chunks−1] this rank holds, as 32 hex digits in hex[33]: XXH3-64 of each
 * tensor's bytes seeded with the hash of its name, placed at the tensor's
 * global ordinal, combined across the stages with XOR, then XXH3-128 over
 * the ordered array (a tied copy is checked against its source and counted
 * once). With hashes_path, rank 0 also writes one "name hash" line per
 * tensor there. Errors: PT_ERR_MISMATCH (a tied copy differs from its
 * source), PT_ERR_IO (hashes_path), PT_ERR_NOMEM, PT_ERR_MPI. */
pt_status report_fingerprint(const model *m, const stage *st, int chunks, const comm_grid *g,
                             const char *hashes_path, char hex[33]);

/* Writes text and a newline to the file at path (created or truncated). Not
 * collective. Errors: PT_ERR_IO naming `what` (a config key, a file's role)
 * and path. */
pt_status report_write_text(const char *path, const char *what, const char *text);

/* What the closing lines and the summary say. */
typedef struct {
    int trained;           /* a training run: print the throughput line */
    double seconds;        /* the whole run since the start of the loop */
    double train_seconds;  /* training time (0 without training) */
    double throughput;     /* samples per second of training */
    double test_loss, test_acc;
    const char *fingerprint; /* report_fingerprint's hex */
    double theoretical_bubble; /* schedule_theoretical_bubble of the training schedule */
    double predicted_step;     /* the simulator's step time for the run's layout (s; 0 = none) */
    double measured_step;      /* training seconds per step, the first (warm-up) step left out */
} report_result;

/* Rank 0 only (not collective): prints the closing lines (test loss, time,
 * throughput in report_rate_unit units, accuracy or validation loss, the
 * fingerprint) and, with log.summary, writes the JSON summary there with
 * the per-rank figures `all` (report_gather_figures). Errors: PT_ERR_IO
 * naming log.summary. */
pt_status report_closing(const config *c, const comm_grid *g, const dataset *d, const int *cuts,
                         const double *all, const report_result *res);

#endif
