/* schedule.h — pipeline schedules as data (design contract 3).
 *
 * A generator returns, for every pipeline rank (stage) s of P, the ordered
 * list of ops it executes in one optimizer step of M micro-batches. The same
 * lists are executed by the executor, checked by schedule_validate, timed by
 * the simulator and recorded by the trace.
 *
 * Op semantics on stage s (sends are non-blocking; a receive op completes
 * when the matching send of the neighbour has been issued):
 *   RECV_ACT  mb   wait for micro-batch mb's activation from stage s−1
 *   FORWARD   mb   forward of mb through the stage (stage 0 reads the data)
 *   SEND_ACT  mb   send mb's output activation to stage s+1
 *   RECV_GRAD mb   wait for the gradient of mb's output from stage s+1
 *   BACKWARD  mb   backward of mb (the last stage starts from the loss)
 *   SEND_GRAD mb   send the gradient of mb's input to stage s−1
 * The first stage has no RECV_ACT/SEND_GRAD, the last no SEND_ACT/RECV_GRAD.
 * A forward-only schedule (evaluation) has no backward-side ops at all. */
#ifndef PT_SCHEDULE_H
#define PT_SCHEDULE_H

#include <stdint.h>

#include "pt_status.h"

typedef enum {
    OP_FORWARD = 0,
    OP_BACKWARD,
    OP_SEND_ACT,
    OP_RECV_ACT,
    OP_SEND_GRAD,
    OP_RECV_GRAD,
    OP_KIND_COUNT
} sched_op_kind;

typedef struct {
    uint8_t kind;  /* sched_op_kind */
    uint8_t chunk; /* model chunk on this rank (0 until interleaved schedules) */
    int32_t mb;    /* micro-batch 0..M−1 */
} sched_op;

typedef struct {
    int n_ops;
    sched_op *ops;
} sched_list;

typedef enum { SCHED_GPIPE = 0, SCHED_1F1B, SCHED_FORWARD_ONLY, SCHED_KIND_COUNT } sched_kind;

typedef struct {
    sched_kind kind;
    int P, M;
    sched_list *ranks; /* P lists */
} schedule;

/* "forward", "backward", "send_act", ... */
const char *sched_op_name(sched_op_kind k);
/* "gpipe", "1f1b", "forward"; and back (-1 when unknown). */
const char *sched_kind_name(sched_kind k);
int sched_kind_from_name(const char *name);

/* Builds the op lists of every stage for P ≥ 1 stages and M ≥ 1
 * micro-batches:
 *  GPIPE (fill–drain): all M forwards, then all M backwards in the order
 *   0..M−1 (so gradients accumulate in micro-batch order on every stage).
 *  1F1B (PipeDream-Flush): min(P−s−1, M) warm-up forwards, then alternating
 *   one forward and one backward, then the cool-down backwards.
 *  FORWARD_ONLY: M forwards with their receives and sends.
 * Backwards run in micro-batch order 0..M−1 in every schedule. */
pt_status schedule_build(schedule *sc, sched_kind kind, int P, int M);
void schedule_free(schedule *sc);

/* The largest number of micro-batches stage s holds between its forward and
 * its backward: M for GPipe, min(P−s, M) for 1F1B, 1 for forward-only. */
int schedule_stash_bound(sched_kind kind, int P, int M, int s);

/* Checks the op lists of any schedule (built here or broken on purpose):
 *  - every stage forwards and (unless forward-only) backwards each
 *    micro-batch exactly once, backwards in order 0..M−1;
 *  - on each stage a micro-batch's RECV_ACT precedes its FORWARD, which
 *    precedes its SEND_ACT and its BACKWARD; RECV_GRAD precedes BACKWARD,
 *    which precedes SEND_GRAD; no op names a missing neighbour;
 *  - every send has exactly one matching receive on the neighbour, and the
 *    other way round;
 *  - the stash (micro-batches forwarded and not yet backwarded) never
 *    exceeds `stash_bound[s]` (NULL: schedule_stash_bound of sc->kind);
 *  - executing all lists together cannot deadlock: a simulation in which a
 *    receive completes only after its send was issued runs to the end.
 * On failure the message names the stage, the op index, the op and the
 * micro-batch, and what was expected. */
pt_status schedule_validate(const schedule *sc, const int *stash_bound);

/* Writes one line per op, "s<stage> <index> <op> mb=<mb>", into a
 * caller-owned string builder; for traces and tests. */
void schedule_print(const schedule *sc, void (*emit)(void *ctx, const char *line), void *ctx);

#endif
