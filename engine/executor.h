/* executor.h — runs one rank's lowered op list for one step against its stage.
 *
 * The list (schedule.h) says everything: when a receive is posted into which
 * stash slot, when it is waited on, when sends start and complete. Transfers
 * are tagged by (micro-batch, direction, chunk), so matching never depends on
 * arrival order. Every executed op is timed; the per-rank breakdown (compute,
 * bubble = waiting on receives, communication, data) is the sum of those
 * events, and an optional recorder sees each of them. */
#ifndef PT_EXECUTOR_H
#define PT_EXECUTOR_H

#include <stdint.h>

#include "comm.h"
#include "dataset.h"
#include "schedule.h"
#include "stage.h"

typedef struct {
    double compute; /* forward, backward, loss */
    double wait;    /* blocked on a receive: the bubble */
    double comm;    /* posting and completing sends and receives, the end-of-step reduction */
    double reduce;  /* starting and completing gradient reductions over replicas (the exposed part) */
    double data;    /* reading inputs and labels */
    double optim;   /* gradient norm, clipping, optimizer step */
    double total;   /* wall time of the steps */
} exec_times;

/* What a test-only fault switch asks of this rank. */
typedef struct {
    int kind;   /* fault_kind */
    long step;  /* 0-based step at which to fail */
    int layer;  /* nan: global layer whose gradient is poisoned */
} exec_fault;

/* One executed op, as the event hook reports it: kind is a sched_op_kind, or
 * one of the work around the op list: EXEC_EVENT_DATA (the reading of inputs
 * and labels inside a forward), EXEC_EVENT_TIED (the tied-weight sum),
 * EXEC_EVENT_STEP_REDUCE (the fused end-of-step reduction), EXEC_EVENT_OPTIM
 * (clipping and the optimizer update), EXEC_EVENT_CHECKPOINT (saving one).
 * Times are comm_wtime seconds of this rank. */
enum {
    EXEC_EVENT_DATA = OP_KIND_COUNT,
    EXEC_EVENT_TIED,
    EXEC_EVENT_STEP_REDUCE,
    EXEC_EVENT_OPTIM,
    EXEC_EVENT_CHECKPOINT,
    EXEC_EVENT_KIND_COUNT
};

/* "forward", ... as sched_op_name for op kinds; "data", "tied_sum",
 * "step_reduce", "optimizer", "checkpoint" for the others. */
const char *exec_event_name(int kind);

/* Model chunks a rank can hold (pipeline.chunks): the tag space's. */
#define EXEC_MAX_CHUNKS COMM_CHUNKS

typedef struct {
    int rank;      /* world rank */
    int kind;      /* sched_op_kind or EXEC_EVENT_DATA */
    int mb, chunk; /* micro-batch, model chunk */
    long step;     /* 0-based step; −1 in evaluation and generation */
    double start, end;
} exec_event;

/* An optional recorder of executed ops (traces, the simulator's check). */
typedef struct {
    void (*record)(void *ctx, const exec_event *ev);
    void *ctx;
} exec_recorder;

/* The gradient reduction over micro-batches and data-parallel replicas, as
 * engine/reduce.h implements it: the executor calls after_weights after each
 * op that adds micro-batch mb's weight gradients to chunk c's stage (B or
 * BW; mb counts this replica's micro-batches), start and wait for the
 * REDUCE_GRAD ops of the list, and progress after every other op (so that
 * reductions in flight advance while the list computes). Each returns a
 * status. */
typedef struct {
    pt_status (*after_weights)(void *ctx, int chunk, int mb);
    pt_status (*start)(void *ctx, int chunk, int bucket);
    pt_status (*wait)(void *ctx, int chunk, int bucket);
    pt_status (*progress)(void *ctx);
    void *ctx;
} exec_reducer;

/* Generation: a forward-only step whose inputs and outputs are the caller's. */
typedef struct {
    void (*inputs)(void *ctx, int mb, float *x);          /* stage 0: rows × in_dim */
    void (*outputs)(void *ctx, int mb, const float *out); /* last stage: rows × out_dim */
    void *ctx;
} exec_generate;

/* One model chunk of this rank: virtual stage vs = chunk·P + rank, with its
 * stage and, per stash slot, its transfer buffers. */
typedef struct {
    stage *st;
    int vs;                   /* virtual stage */
    int is_first, is_last;    /* vs = 0 (reads inputs), vs = V − 1 (computes the loss) */
    int prev_rank, next_rank; /* ranks (in pipe) of virtual stages vs − 1 and vs + 1 */
    int tag_in, tag_out;      /* tag chunks of the boundaries below and above (the lower side's chunk) */
    int slots;
    float **send_act, **recv_grad, **send_grad, **logits, **dlogits;
    int32_t **labels;
    comm_xfer *x_recv_act, *x_send_act, *x_recv_grad, *x_send_grad;
} exec_chunk;

typedef struct {
    const comm_grid *grid;
    dataset *data;
    int P, s, M, rows, classes;
    int M_step;   /* micro-batches of the whole step over all replicas (M is this replica's share) */
    int mb_first; /* the step's micro-batch index of this replica's micro-batch 0 */
    int lrows; /* rows of the loss: rows × targets per sample */
    int chunks;
    exec_chunk ch[EXEC_MAX_CHUNKS];
    uint64_t seed;
    float *probs;
    /* results of the last step on the last stage */
    double loss_sum; /* Σ over micro-batches of their mean loss */
    long correct, counted;
    exec_times t;
    exec_fault fault;
    const exec_generate *gen; /* set: executor_eval_step generates instead of evaluating */
    const exec_recorder *rec; /* set: every executed op is reported to it */
    const exec_reducer *red;  /* set: gradients are reduced over replicas (data parallelism) */
    /* what the rank is doing, for fault reports */
    const char *doing;
    int doing_mb, doing_chunk;
    long doing_step;
    int doing_training; /* 0: evaluation or generation (events carry step −1) */
} executor;

/* Prepares rank g->stage to run lists over `chunks` model chunks (1..
 * EXEC_MAX_CHUNKS): st[c] is the stage of virtual stage c·P + g->stage, of
 * the V = chunks·P virtual stages, and slots[c] its stash slots (the most the
 * lowered lists this executor will run need). Each chunk gets slots transfer
 * buffers of rows × its stage's boundary widths (floats). Not collective.
 * Errors: PT_ERR_INVALID (chunks out of range), PT_ERR_NOMEM naming the
 * stage and the buffer size. */
pt_status executor_init(executor *e, const comm_grid *g, stage *st, int chunks, const int *slots, dataset *data,
                        int M, int rows, int targets, int classes, uint64_t seed);

/* Data parallelism: this replica's lists hold micro-batches 0..M−1 of the
 * step's M_step, which are the step's micro-batches mb_first.. mb_first+M−1
 * (what is read, the dropout keys and the loss scale 1 / (rows·M_step) follow
 * the step's numbering). Without a call, M_step = M and mb_first = 0. */
void executor_set_share(executor *e, int M_step, int mb_first);
void executor_free(executor *e);

/* Runs this rank's lowered, validated op list of a training step (point to
 * point with the neighbour ranks: a rank that fails leaves its peers waiting
 * until the job is aborted): gradients accumulate into e->st->grads (the
 * caller zeroes them), the rank of the last virtual stage records loss_sum. Errors:
 * PT_ERR_INVALID (an op the list should not hold: a slot out of range, a
 * chunk this executor does not hold, a fault switch), PT_ERR_MPI, and the
 * stage's errors; the message names the step, the op and the micro-batch. */
pt_status executor_train_step(executor *e, const sched_list *ops, long step);

/* Runs a lowered forward-only op list over test samples [first, first + M·rows)
 * (point to point, errors as executor_train_step):
 * the rank of the last virtual stage adds to loss_sum (Σ of the losses of every target), correct
 * (targets whose most likely class is right) and counted (targets). */
pt_status executor_eval_step(executor *e, const sched_list *ops, long first);

/* Reports work of step `step` done outside the op list (kind one of the
 * EXEC_EVENT_ kinds above, from t0 to t1 comm_wtime seconds) to the recorder,
 * when there is one. Not collective; no errors. */
void executor_note(const executor *e, int kind, long step, double t0, double t1);

/* Installs handlers that report, on a fatal signal, what the executor was
 * doing (op, micro-batch, step) before the process dies. */
void executor_install_crash_report(const executor *e);

#endif
