/* schedule.h — pipeline schedules as one IR (design contract 3).
 *
 * A schedule is, for every rank r of P, the ordered list of ops r executes in
 * one optimizer step of M micro-batches. Lists are made in two passes:
 *
 *  1. A generator (GPipe, 1F1B, forward-only) emits compute-only lists: F
 *     (forward), B (the whole backward) or BI and BW (its input-gradient and
 *     weight-gradient parts: the B/W split of Qi et al., "Zero Bubble
 *     Pipeline Parallelism", ICLR 2024), each with (micro-batch, chunk). A
 *     rank holds `chunks` model chunks; chunk c of rank r is virtual stage
 *     c·P + r (Megatron-LM's interleaved layout, Narayanan et al., SC'21).
 *  2. schedule_lower adds every communication op and gives every op its
 *     stash slot, computed from the list itself (no per-kind formula):
 *       POST_RECV_ACT  mb  post the receive of mb's input activation into its
 *                          stash slot, as soon as that slot is free
 *       WAIT_RECV_ACT  mb  wait for it (right before F)
 *       SEND_ACT       mb  send mb's output activation (right after F)
 *       WAIT_SEND_ACT  mb  complete that send (before F overwrites its buffer)
 *       POST_RECV_GRAD mb  post the receive of the gradient of mb's output
 *                          (right after SEND_ACT)
 *       WAIT_RECV_GRAD mb  wait for it (right before B or BI)
 *       SEND_GRAD      mb  send the gradient of mb's input (right after B/BI)
 *       WAIT_SEND_GRAD mb  complete that send (before B/BI overwrites its buffer)
 *     and, with data-parallel replicas (sc->buckets set), per gradient bucket
 *     b of each chunk:
 *       REDUCE_GRAD_START b  start its reduction over the replicas, right after
 *                          the chunk's last weight-gradient op (B or BW of
 *                          micro-batch M − 1), so it overlaps what follows
 *       REDUCE_GRAD_WAIT  b  complete it, at the end of the list
 *
 * The executor runs the lowered list and decides nothing else; the validator,
 * the deadlock check, the trace and the simulator read the same lowered list. */
#ifndef PT_SCHEDULE_H
#define PT_SCHEDULE_H

#include <stdint.h>

#include "pt_status.h"

typedef enum {
    /* compute (generators) */
    OP_FORWARD = 0,
    OP_BACKWARD,        /* B: input and weight gradients together */
    OP_BACKWARD_INPUT,  /* BI: input gradient only */
    OP_BACKWARD_WEIGHT, /* BW: weight gradients only */
    /* communication (schedule_lower) */
    OP_POST_RECV_ACT,
    OP_WAIT_RECV_ACT,
    OP_SEND_ACT,
    OP_WAIT_SEND_ACT,
    OP_POST_RECV_GRAD,
    OP_WAIT_RECV_GRAD,
    OP_SEND_GRAD,
    OP_WAIT_SEND_GRAD,
    /* data parallelism (schedule_lower, when the schedule has buckets) */
    OP_REDUCE_GRAD_START, /* start the reduction over the replicas of a gradient bucket */
    OP_REDUCE_GRAD_WAIT,  /* complete it */
    OP_KIND_COUNT
} sched_op_kind;

typedef struct {
    uint8_t kind;  /* sched_op_kind */
    uint8_t chunk; /* model chunk on this rank: virtual stage chunk·P + rank */
    int16_t slot;  /* stash slot of (mb, chunk) on this rank; -1 before lowering */
    int32_t mb;    /* micro-batch 0..M−1; the bucket for REDUCE_GRAD_START/WAIT */
} sched_op;

typedef struct {
    int n_ops;
    sched_op *ops;
} sched_list;

typedef enum { SCHED_GPIPE = 0, SCHED_1F1B, SCHED_FORWARD_ONLY, SCHED_ZBH1, SCHED_INTERLEAVED, SCHED_KIND_COUNT } sched_kind;

typedef struct {
    sched_kind kind;
    int P;      /* ranks of the pipeline */
    int chunks; /* model chunks per rank (virtual stages = chunks·P) */
    int M;      /* micro-batches per step */
    int lowered;
    sched_list *ranks; /* P lists */
    int *slots;        /* after lowering: slots[r·chunks + c], stash slots of chunk c on rank r */
    int *buckets;      /* NULL, or buckets[r·chunks + c]: gradient buckets of chunk c on rank r that
                        * REDUCE_GRAD ops reduce over the replicas (owned by the schedule) */
} schedule;

/* "forward", "backward", "backward_input", "post_recv_act", ...; and the
 * schedule kinds "gpipe", "1f1b", "forward", "zbh1", "interleaved", and back
 * (-1 when unknown). */
const char *sched_op_name(sched_op_kind k);
const char *sched_kind_name(sched_kind k);
int sched_kind_from_name(const char *name);
/* Is k a compute op (F, B, BI, BW)? A gradient reduction (REDUCE_GRAD_START,
 * REDUCE_GRAD_WAIT: its mb field is the bucket)? */
int sched_op_is_compute(sched_op_kind k);
int sched_op_is_reduce(int k);
/* Does a schedule of this kind split backwards into BI and BW? */
int sched_kind_splits_backward(sched_kind k);

/* Builds and lowers the lists of every rank for P ≥ 1 ranks of one chunk
 * each and M ≥ 1 micro-batches:
 *  GPIPE (fill–drain, Huang et al. 2019): all M forwards, then all M
 *   backwards in the order 0..M−1.
 *  1F1B (PipeDream-Flush, Narayanan et al. 2021): min(P−r−1, M) warm-up
 *   forwards, then one forward and one backward alternately, then the
 *   cool-down backwards.
 *  FORWARD_ONLY: M forwards (evaluation, generation).
 *  ZBH1 (ZB-H1 of Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024):
 *   1F1B's order of forwards and input gradients (BI), each backward split
 *   into BI, which sends the input gradient to the previous rank at once, and
 *   BW, which rank r runs r backwards later, where it fills the waits of the
 *   warm-up and cool-down. Every rank then holds up to min(P, M)
 *   micro-batches: 1F1B's peak (its rank 0), not more. With F = BI = BW the
 *   bubble is about a third of 1F1B's (schedule_theoretical_bubble).
 * Backwards run in micro-batch order 0..M−1 in every schedule, so gradients
 * accumulate in the same order whatever the schedule (contract 2).
 * Errors: PT_ERR_INVALID (P, M or kind out of range), PT_ERR_NOMEM. */
pt_status schedule_build(schedule *sc, sched_kind kind, int P, int M);

/* schedule_build with `chunks` model chunks per rank (virtual stages
 * chunks·P). INTERLEAVED (interleaved 1F1B of Megatron-LM, Narayanan et al.,
 * SC'21): forwards and backwards go round the chunks in groups of P
 * micro-batches (forward k: chunk (k/P) mod v, micro-batch (k/(P·v))·P +
 * k mod P; backwards the same with the chunks reversed) after
 * 2·(P−r−1) + (v−1)·P warm-up forwards, so the unit-cost bubble falls to
 * (P−1)/(v·M+P−1); with more than one chunk it needs M divisible by P (one
 * chunk is 1F1B). FORWARD_ONLY goes round the chunks in groups of P
 * micro-batches too (the last group may be smaller, so any M works). The
 * other kinds take one chunk.
 * Errors: PT_ERR_INVALID naming the numbers (chunks out of 1..8, M not
 * divisible by P for INTERLEAVED), PT_ERR_NOMEM. */
pt_status schedule_build_chunks(schedule *sc, sched_kind kind, int P, int chunks, int M);

/* schedule_build_chunks for one replica of a data-parallel grid: with
 * buckets (P·chunks counts, buckets[r·chunks + c] ≥ 0 gradient buckets of
 * chunk c on rank r; copied) the lowering adds REDUCE_GRAD_START and
 * REDUCE_GRAD_WAIT for each bucket of each training chunk; with NULL it is
 * schedule_build_chunks. Errors: as schedule_build_chunks; PT_ERR_INVALID
 * for a negative count or more than 32767. */
pt_status schedule_build_grid(schedule *sc, sched_kind kind, int P, int chunks, int M, const int *buckets);

/* Lowers compute-only lists (sc->ranks as a generator or a test wrote them,
 * with sc->kind, P, chunks and M set; sc->slots NULL) in place: adds the
 * communication ops above and sets every op's slot and sc->slots. Per chunk,
 * forwards must run in micro-batch order and so must the ops that release a
 * micro-batch's stash slot (B, or BW when split; F in a forward-only list);
 * micro-batch mb then lives in slot mb mod S, S the most micro-batches the
 * list holds at once (at least min_slots, at most M), and its activation
 * receive is posted right after the slot's previous occupant is released.
 * Errors: PT_ERR_INVALID naming the rank, op and micro-batch when the lists
 * break that order or are lowered already; PT_ERR_NOMEM. */
pt_status schedule_lower(schedule *sc, int min_slots);

void schedule_free(schedule *sc);

/* The theoretical stash of rank r (chunk 0) for P ranks and M micro-batches:
 * M for GPipe, min(P−r, M) for 1F1B, min(P, M) for ZB-H1, 1 for
 * forward-only; the unit tests check that the lowered lists' slots equal it. */
int schedule_stash_theory(sched_kind kind, int P, int M, int r);

/* Checks lowered lists (built here or broken on purpose) for what the
 * executor does:
 *  - op kinds, micro-batches, chunks and slots in range; every (mb, chunk)
 *    forwarded once and backwarded once (B, or BI then BW), backwards and
 *    weight gradients in micro-batch order per chunk (contract 2);
 *  - per micro-batch: POST_RECV before its WAIT, WAIT_RECV_ACT before F,
 *    F before SEND_ACT, WAIT_RECV_GRAD before B/BI, B/BI before SEND_GRAD,
 *    each send completed by its WAIT_SEND before the end; no op on a
 *    boundary that does not exist (the first virtual stage receives no
 *    activation, the last sends none);
 *  - buffers: no receive is posted into a stash slot whose micro-batch is
 *    still held, no forward writes an output buffer whose send is pending,
 *    no B/BI writes an input-gradient buffer whose send is pending, slot as
 *    the lowering assigns it;
 *  - every send has exactly one matching receive on the peer rank, and the
 *    other way round;
 *  - gradient buckets (with sc->buckets): each bucket of each training
 *    chunk is reduced once, after the chunk's last weight gradient, and its
 *    reduction completed once, after it starts;
 *  - all lists together cannot deadlock: a simulation in which a receive
 *    completes once the peer has issued the send, and a send completes once
 *    the peer has posted the receive, runs every list to its end.
 * Errors: PT_ERR_INVALID naming the rank, the op index, the op and the
 * micro-batch, and what was expected; PT_ERR_NOMEM. */
pt_status schedule_validate(const schedule *sc);

/* Times lowered, valid lists as a discrete-event simulation: op kind k takes
 * cost[k] seconds (any unit) on its rank; a WAIT_RECV ends no earlier than
 * the peer's matching send was issued, a WAIT_SEND no earlier than the peer
 * posted the matching receive; transfers themselves take no time. Writes the
 * step's makespan to *makespan and each rank's busy time (the sum of its
 * ops' costs) to busy[P]. With cost 1 for F, BI and BW, 2 for B and 0 for
 * communication, 1 − busy[r] / makespan is the schedule's theoretical bubble
 * of rank r ((P−1)/(M+P−1) for GPipe and 1F1B). Errors: PT_ERR_INVALID when
 * the lists cannot run to their end (validate first), PT_ERR_NOMEM. */
pt_status schedule_time(const schedule *sc, const double cost[OP_KIND_COUNT], double *makespan, double *busy);

/* A cost model for schedule_simulate: op(ctx, r, o) is how long op o keeps
 * rank r busy (seconds, any unit); latency(ctx, r, o), for a WAIT_RECV o,
 * how long after its peer issued the matching send the data has arrived
 * (latency plus size over bandwidth), and for a REDUCE_GRAD_WAIT o, how long
 * after its REDUCE_GRAD_START the reduction over the replicas is done. */
typedef struct {
    double (*op)(void *ctx, int rank, const sched_op *o);
    double (*latency)(void *ctx, int rank, const sched_op *o);
    void *ctx;
} sched_cost_model;

/* schedule_time with a cost model (a discrete-event simulation of lowered,
 * valid lists): a WAIT_RECV ends no earlier than the matching send's issue
 * plus its latency, a WAIT_SEND no earlier than the peer posted the receive,
 * a REDUCE_GRAD_WAIT no earlier than its start plus its latency. Writes the
 * makespan, each rank's busy time (Σ of op costs) to busy[P] and, when start
 * is not NULL, the start time of op i of rank r to start[r][i] (start[r]
 * holds ranks[r].n_ops doubles). Not collective. Errors: as schedule_time. */
pt_status schedule_simulate(const schedule *sc, const sched_cost_model *cost, double *makespan, double *busy,
                            double **start);

/* The theoretical bubble of the largest rank's idle share, with the unit
 * costs above; 0 when the lists cannot be timed. */
double schedule_theoretical_bubble(const schedule *sc);

/* Emits one line per op, "r<rank> <index> <op> mb=<mb> chunk=<c> slot=<s>",
 * for traces and tests. */
void schedule_print(const schedule *sc, void (*emit)(void *ctx, const char *line), void *ctx);

#endif
