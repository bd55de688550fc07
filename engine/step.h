/* step.h — one optimizer step after a rank's op list: the tied-weight sum,
 * the fused end-of-step reduction (per-layer Σg², loss, non-finite flag),
 * clipping, non-finite handling and the optimizer update. */
#ifndef PT_STEP_H
#define PT_STEP_H

#include "comm.h"
#include "config.h"
#include "executor.h"
#include "layers.h"
#include "pt_status.h"
#include "stage.h"

/* What one rank keeps between steps. A zeroed step_state holds nothing
 * (step_free accepts it). */
typedef struct {
    double *reduce;          /* n_layers + 2 + STOP_KINDS doubles: per global layer Σg², then the
                              * loss, the count of non-finite values, and per stop signal the
                              * ranks that received it (stop.h) */
    comm_tied tied;          /* the two ranks holding the tied embedding and its copy, when they are
                              * different stages; zeroed otherwise */
    int chunks;              /* model chunks of this rank (st[0..chunks−1]) */
    int src_chunk, tied_src; /* chunk and tensor index of the tied source on this rank, tied_src −1: absent */
    int copy_chunk, tied_copy; /* the same for its copy */
    int stop_signal;         /* after step_finish: a stop signal some rank received (the same on every
                              * rank), 0: none */
} step_state;

/* Collective over g->pipe when the model ties its embedding (every rank
 * takes part in making the group of the two ranks holding the embedding and
 * its copy, found from cuts, the V + 1 cut points of partition_layers over
 * the V = chunks·P virtual stages); otherwise not collective. st[0..chunks−1]
 * are this rank's stages (chunk c: virtual stage c·P + g->stage). Finds the
 * tied tensors in them and allocates the reduction buffer. Errors:
 * PT_ERR_MPI, PT_ERR_NOMEM (this rank only). */
pt_status step_init(step_state *s, const model *m, const int *cuts, const stage *st, int chunks,
                    const comm_grid *g);

/* Collective over the tied group when this rank is in one; frees and zeroes
 * s. Safe on a zeroed step_state. */
void step_free(step_state *s);

/* Tied embeddings, after the backward passes: both holders' gradients of
 * the tied matrix become g_source + g_copy, so the two copies take the same
 * update. On one rank (one stage, or two chunks of it) the sum is local;
 * across two ranks it is an all-reduce of the two — the same single
 * addition either way (collective over the tied group). st: this rank's
 * chunks, as given to step_init. No-op for an untied model. Errors:
 * PT_ERR_MPI. */
pt_status step_sync_tied(step_state *s, const model *m, stage *st);

/* Collective over g->world. Ends training step `step` (0-based) on this
 * rank's chunks st (as given to step_init), whose gradients are summed over
 * the replicas already: one fused all-reduce of per-layer Σg² (replica 0's),
 * the loss (Σ over the replicas' last stages of ex->loss_sum, over the
 * step's micro-batches), a non-finite count and, per stop signal, the
 * ranks that received one (stop.h; the agreed signal lands in
 * s->stop_signal, the same on every rank); then *norm = the global gradient
 * norm (summed in global layer order), *loss = the step's mean loss,
 * clipping to train.grad_clip and the optimizer update at the learning rate
 * of step + 1. A non-finite loss or gradient (named by layer and the stage
 * holding it, found from cuts over the virtual stages) either stops the run — PT_ERR_NONFINITE on
 * every rank alike — or, with train.nonfinite = skip, skips the update
 * (*skipped = 1; rank 0 prints one line). Adds the reduction's seconds to
 * ex->t.comm and the rest to ex->t.optim. Errors: PT_ERR_NONFINITE,
 * PT_ERR_MPI. */
pt_status step_finish(step_state *s, const config *c, const comm_grid *g, const model *m, const int *cuts,
                      stage *st, executor *ex, long step, double *loss, double *norm, int *skipped);

/* Collective over g->world (ends in comm_agree). The replicas compare
 * their parameters after step `step` (0-based): each rank hashes every
 * tensor of its chunks st[0..chunks−1] (XXH3-64 of its bytes), replica 0's
 * hashes are broadcast over g->dp, and a replica whose hash differs fails
 * with PT_ERR_MISMATCH naming the step, the stage, the replica and the first
 * differing tensor (*reporter: the lowest such rank). No-op with one
 * replica. Errors: PT_ERR_MISMATCH, PT_ERR_NOMEM, PT_ERR_MPI. */
pt_status step_check_replicas(const comm_grid *g, const stage *st, int chunks, long step, int *reporter);

#endif
