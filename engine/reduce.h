/* reduce.h — summing one step's gradients over its micro-batches and over
 * the data-parallel replicas (design contract 2), driven by the executor:
 * its after_weights hook after every op that adds a micro-batch's weight
 * gradients, and the REDUCE_GRAD_START / REDUCE_GRAD_WAIT ops that
 * schedule_lower places per gradient bucket.
 *
 * Two modes (pipeline.reduction):
 *  FAST: the stage accumulates every micro-batch's gradients in place (the
 *   kernels add into one buffer, in micro-batch order), and each bucket is
 *   summed over the replicas by the MPI library's all-reduce. The result is
 *   the same bits for any number of stages and any schedule, and the same
 *   on every replica, but its association depends on the number of replicas.
 *  INVARIANT: every micro-batch's gradient is computed into a zeroed buffer
 *   and the M of a step are summed as one fixed binary tree over micro-batch
 *   indices 0..M−1 — split at the largest power of two below the count, the
 *   left part a perfect tree, the right part the same tree again. Replica d
 *   sums its share (micro-batches d·M/D ..), a subtree when M/D is a power
 *   of two; the replicas then exchange their subtree sums (all-gather) and
 *   each sums the D of them with the same tree. So the sum, and every
 *   parameter after the update, is the same bits for any (stages, replicas,
 *   schedule) with the same micro-batches. It holds up to ⌊log2 M⌋ + 1
 *   partial sums per stage, and D partial sums while gathering. */
#ifndef PT_REDUCE_H
#define PT_REDUCE_H

#include "comm.h"
#include "config.h"
#include "executor.h"
#include "stage.h"

typedef struct {
    int n_buckets;
    size_t *off, *len; /* bucket b: floats [off[b], off[b] + len[b]) of the stage's gradients;
                        * bucket 0 holds the last layers */
    comm_coll *coll;   /* the reduction in flight, per bucket */
    double *t_start;   /* comm_wtime of each bucket's start */
    /* INVARIANT */
    float *own;        /* the stage's own gradient buffer (st->grads outside the fold) */
    float **pool;      /* free buffers of n_params floats */
    int n_pool;
    float **owned;     /* every buffer allocated here (the pool's, whichever are in use) */
    int n_owned;
    float **stack;     /* partial sums of perfect subtrees, left to right */
    int *count;        /* micro-batches in each */
    int depth;
    float *gather;     /* D × n_params floats: bucket b's D subtree sums at D·off[b] */
} reduce_chunk;

typedef struct {
    const comm_grid *g;
    reduction_kind mode;
    int chunks, M; /* M: this replica's micro-batches per step */
    stage *st;     /* st[0..chunks−1] */
    reduce_chunk ch[EXEC_MAX_CHUNKS];
    exec_reducer hooks; /* what the executor calls (ctx = this) */
    double span;        /* seconds from each bucket's start to the end of its wait, summed over the steps */
} grad_reduce;

/* Prepares the reduction of the stages st[0..chunks−1] of this rank (not
 * collective): buckets of about bucket_mb MiB of whole layers, grouped from
 * the last layer (none when g->D = 1), and in INVARIANT mode the buffers of
 * the tree (⌊log2 M⌋ + 1 more gradient buffers per stage, and D per stage
 * for the gather when D > 1). M: this replica's micro-batches per step.
 * Errors: PT_ERR_NOMEM naming the stage and the size. */
pt_status reduce_init(grad_reduce *r, const comm_grid *g, stage *st, int chunks, reduction_kind mode, int M,
                      double bucket_mb);

/* The number of gradient buckets of about bucket_mb MiB that reduce_init
 * makes for a stage of layers [first, last) of m when D > 1 (a pure
 * function: every rank can count any stage's); −1 when out of memory. */
int reduce_count_buckets(const model *m, int first, int last, double bucket_mb);

/* INVARIANT: seconds of the work the tree adds per micro-batch on chunk
 * `chunk` (zeroing a gradient buffer and one addition into a partial sum,
 * timed on the reduction's spare buffers, best of 3); 0 in FAST mode. Not
 * collective. */
double reduce_fold_seconds(grad_reduce *r, int chunk);

/* Bytes the reduction holds besides the stages (partial sums, gather). */
size_t reduce_bytes(const grad_reduce *r);

void reduce_free(grad_reduce *r);

#endif
