/* comm.h — the rank grid, tagged point-to-point transfers and collectives.
 *
 * Knows nothing of layers. Every MPI call is checked on communicators that
 * return errors (MPI_ERRORS_RETURN); a failure message names the operation,
 * the peer, the tag and the size. */
#ifndef PT_COMM_H
#define PT_COMM_H

#include <stddef.h>

#include <mpi.h>

#include "pt_status.h"

/* World rank r is stage r % P of replica r / P, so the stages of a replica
 * are neighbouring ranks (and neighbouring cores under --map-by core). */
typedef struct {
    MPI_Comm world; /* duplicate of the world communicator */
    MPI_Comm pipe;  /* the P stages of this replica, ranked by stage */
    MPI_Comm dp;    /* the D replicas of this stage */
    int rank, size; /* in world */
    int P, D;
    int stage, replica;
    int tag_ub; /* largest tag the MPI library allows */
    char host[MPI_MAX_PROCESSOR_NAME]; /* this rank's host, for messages */
    char (*hosts)[MPI_MAX_PROCESSOR_NAME]; /* every world rank's host (size entries), for messages */
} comm_grid;

/* Starts MPI (MPI_Init_thread with the program's arguments, which it may
 * edit, asking for MPI_THREAD_MULTIPLE for the progress thread; with Open
 * MPI's ob1 a send queues up to 64 fragments per call into MPI unless the
 * user set pml_ob1_send_pipeline_depth); once per process, before any other
 * comm_ function. Collective over the world of the job. Errors: PT_ERR_MPI
 * naming MPI_Init_thread. */
pt_status comm_init(int *argc, char ***argv);

/* Ends MPI (MPI_Finalize) after every grid is freed; once per process.
 * Collective over the world of the job. Errors: PT_ERR_MPI naming
 * MPI_Finalize. */
pt_status comm_finalize(void);

/* Collective over the world of the job (MPI_COMM_WORLD). Starts the grid:
 * duplicates the world (errors returned, not fatal), fills rank, size, host,
 * every rank's host (hosts) and tag_ub; pipe and dp stay MPI_COMM_NULL until
 * comm_grid_split. This grid is the one the time limit's messages name
 * (comm_set_timeout); g must outlive every wait.
 * comm_agree and comm_same_text work from here on, so start-up errors can be
 * agreed before the grid exists. Errors: PT_ERR_MPI. */
pt_status comm_start(comm_grid *g);

/* Collective over g->world. Splits a started grid into P stages × D
 * replicas (pipe and dp). Fails (on every rank alike) when the world size is
 * not P·D, naming both (PT_ERR_INVALID), or PT_ERR_MPI. */
pt_status comm_grid_split(comm_grid *g, int P, int D);
void comm_grid_free(comm_grid *g);

/* Collective over g->world. Checks that every rank holds the same `text`
 * (a config's canonical text, a build identity: lines of "key = value"):
 * PT_OK when all equal rank 0's. Otherwise every rank returns
 * PT_ERR_MISMATCH, *reporter is the lowest rank that differs, and its
 * message names `what`, the first differing line on both sides, the hosts,
 * how many ranks differ from rank 0, then says `advice`. Errors:
 * PT_ERR_MISMATCH, PT_ERR_MPI (a failed MPI call: only this rank reports). */
pt_status comm_same_text(const comm_grid *g, const char *what, const char *text, const char *advice,
                         int *reporter);

/* Collective over comm: copies `bytes` bytes of root's buf to every rank's.
 * `what` names the transfer in the error ("MPI_Bcast of ..."). Errors:
 * PT_ERR_MPI. */
pt_status comm_bcast(void *buf, int bytes, int root, MPI_Comm comm, const char *what);

/* Collective over comm: gathers n doubles from every rank into root's all,
 * rank i's at all[i·n .. i·n + n) (all holds size(comm)·n doubles on root;
 * it is not read elsewhere and may be NULL there). `what` names the
 * transfer in the error ("MPI_Gather of ..."). Errors: PT_ERR_MPI. */
pt_status comm_gather_doubles(const double *mine, int n, double *all, int root, MPI_Comm comm,
                              const char *what);

/* Collective over comm: gathers `bytes` bytes of every rank's mine into
 * root's all (size(comm)·bytes; may be NULL elsewhere), rank i's at
 * all + i·bytes. Errors: PT_ERR_MPI naming `what`. */
pt_status comm_gather_bytes(const void *mine, int bytes, void *all, int root, MPI_Comm comm, const char *what);

/* Collective over comm: gathers a different number of bytes from every
 * rank: rank i's `bytes` bytes of mine land on root at all + offset_i, the
 * offsets being the running sum of the ranks' byte counts in rank order
 * (root learns the counts first; *total receives their sum on root). all is
 * malloc'ed on root (*all, to free; NULL elsewhere). Errors: PT_ERR_NOMEM
 * (root), PT_ERR_MPI naming `what`. */
pt_status comm_gatherv_bytes(const void *mine, long bytes, void **all, long *total, int root, MPI_Comm comm,
                             const char *what);

/* Collective over g->world: estimates how far each rank's comm_wtime is
 * from rank 0's (MPI_Wtime is not global across hosts): rank 0 and each
 * other rank in turn exchange `rounds` ping-pongs, and the offset of the
 * round with the shortest round trip is kept (Cristian's algorithm).
 * *offset: seconds to add to this rank's comm_wtime to get rank 0's
 * (0 on rank 0). Errors: PT_ERR_MPI. */
pt_status comm_clock_offset(const comm_grid *g, int rounds, double *offset);

/* Sets how long, in seconds, this rank waits on any one transfer or
 * collective (comm_wait, comm_coll_wait and every blocking collective here)
 * before giving up with PT_ERR_TIMEOUT; 0 waits forever. Default 300 (the
 * config key train.timeout). A rank that times out names itself (world rank,
 * stage, replica, host), what it waited on and for whom; the caller ends the
 * job (comm_abort): the peer may never answer. Waits test the request without
 * pause for their first millisecond, as MPI_Wait would, then sleep between
 * tests (1 µs doubling to 100 µs). Not collective. */
void comm_set_timeout(double seconds);

/* Starts this rank's progress thread (interval_us > 0), or stops it (0):
 * every interval_us microseconds it calls into MPI (MPI_Iprobe on a
 * communicator of its own), so that transfers in flight advance while the
 * rank computes; where MPI has no single-copy path (TCP between hosts, shared
 * memory without CMA) they would otherwise move only while the rank waits.
 * It changes no data and blocks every signal (they reach the rank's other
 * threads); a job of one rank runs without it. Not collective;
 * after comm_start; comm_grid_free and comm_finalize stop it. Errors:
 * PT_ERR_MPI when the library gives less than MPI_THREAD_MULTIPLE,
 * PT_ERR_NOMEM when the thread cannot start; the message says to set
 * pipeline.progress_us = 0. */
pt_status comm_set_progress(double interval_us);

/* Wall-clock time in seconds since some moment in the past (MPI_Wtime):
 * differences of two calls are elapsed seconds. Not collective; works
 * between comm_init and comm_finalize. */
double comm_wtime(void);

/* The MPI library's version text, first line (not collective). */
void comm_library_version(char *buf, size_t len);

typedef enum { COMM_ACT = 0, COMM_GRAD = 1 } comm_dir;

/* One outstanding transfer and what it is, for error messages. */
typedef struct {
    MPI_Request req;
    int peer; /* stage in pipe */
    int tag;
    int count;
    int is_send;
    int mb;
    comm_dir dir;
} comm_xfer;

/* Tags are (micro-batch, direction, chunk) so matching never depends on
 * arrival order (design contract 4); chunk is 0..COMM_CHUNKS − 1. The
 * largest micro-batch the tag space of this MPI library allows: */
#define COMM_CHUNKS 8
int comm_max_micro_batches(const comm_grid *g);

/* Non-blocking send/receive of count floats to/from pipeline stage peer. */
pt_status comm_isend(const comm_grid *g, const float *buf, int count, int peer, int mb,
                     comm_dir dir, int chunk, comm_xfer *x);
pt_status comm_irecv(const comm_grid *g, float *buf, int count, int peer, int mb, comm_dir dir,
                     int chunk, comm_xfer *x);
/* Completes a transfer (no-op when none is outstanding), waiting at most
 * the time limit of comm_set_timeout. Errors: PT_ERR_MPI, PT_ERR_MISMATCH
 * (a receive of another size), PT_ERR_TIMEOUT naming the transfer, its peer
 * stage, world rank and host. */
pt_status comm_wait(comm_xfer *x);
/* Marks a transfer as none outstanding. */
void comm_xfer_clear(comm_xfer *x);
int comm_xfer_active(const comm_xfer *x);

/* A tied-weight group: the two pipeline stages that hold a copy of one
 * shared tensor (for tied embeddings, the first and the last stage). A
 * zeroed comm_tied is no group: ranks outside a group hold that, and
 * comm_tied_free accepts it. */
typedef struct {
    MPI_Comm comm; /* valid only when member */
    int member;    /* 1: this rank is one of the two */
} comm_tied;

/* Collective over g->pipe (every stage calls it with the same two stages).
 * Makes *out the group of stage_a and stage_b; ranks outside it get a zeroed
 * comm_tied. Errors: PT_ERR_MPI naming the split. */
pt_status comm_tied_group(const comm_grid *g, int stage_a, int stage_b, comm_tied *out);

/* Collective over the group (both of its ranks). In-place sum of n floats:
 * each gets a + b, bit for bit the same on both (one addition is
 * commutative). Errors: PT_ERR_INVALID when the group is not of two ranks,
 * PT_ERR_MPI. */
pt_status comm_tied_sum(float *buf, size_t n, const comm_tied *group);

/* Collective over the group: frees it and zeroes *t; no-op (not collective)
 * on a zeroed comm_tied. */
void comm_tied_free(comm_tied *t);

/* A non-blocking collective in flight (gradient reductions over replicas). */
typedef struct {
    MPI_Request req;
    char what[96];  /* names it in errors (a copy of the caller's text) */
    size_t count;   /* floats per rank */
    MPI_Comm comm;  /* its communicator, to name the ranks a timeout waited for */
} comm_coll;

/* Collective over comm (every rank starts the same call in the same order):
 * starts the in-place sum of n floats of buf (MPI_Iallreduce, MPI_SUM; the
 * association is the library's, so results are the same on every rank but
 * not bitwise the same as a sum in another order). buf must stay untouched
 * until comm_coll_wait. Errors: PT_ERR_MPI naming `what`. */
pt_status comm_iallreduce_floats(float *buf, size_t n, MPI_Comm comm, const char *what, comm_coll *c);

/* Collective over comm: starts gathering n floats of every rank's mine into
 * every rank's all (size(comm)·n floats, rank i's at all[i·n ..]) with
 * MPI_Iallgather. Errors: PT_ERR_MPI naming `what`. */
pt_status comm_iallgather_floats(const float *mine, size_t n, float *all, MPI_Comm comm, const char *what,
                                 comm_coll *c);

/* Completes a collective started above (no-op when none is in flight),
 * waiting at most the time limit of comm_set_timeout; comm_coll_test lets it
 * progress (MPI_Test) without blocking and sets *done. Errors: PT_ERR_MPI,
 * PT_ERR_TIMEOUT naming `what` and the ranks of its communicator. */
pt_status comm_coll_wait(comm_coll *c);
pt_status comm_coll_test(comm_coll *c, int *done);

/* In-place sum over `comm` of n doubles (collective over comm). Like every
 * collective of this module it waits at most the time limit of
 * comm_set_timeout (PT_ERR_TIMEOUT naming `what` and the ranks of comm). */
pt_status comm_allreduce_sum(double *buf, int n, MPI_Comm comm, const char *what);
/* In-place bitwise XOR of n 64-bit words (collective over comm). */
pt_status comm_allreduce_xor(unsigned long long *buf, int n, MPI_Comm comm, const char *what);

/* Collective over the world: combines every rank's status so that all ranks
 * take the same branch. Returns PT_OK when every rank passed PT_OK; otherwise
 * every rank returns the failing status and *reporter is the lowest world
 * rank that failed: its message is the one to print. */
pt_status comm_agree(const comm_grid *g, pt_status local, int *reporter);

/* Prints "pipetrain: rank R (stage S): msg" on stderr and ends the whole job
 * with MPI_Abort. For main() and the trainer's fatal path only. */
void comm_abort(const comm_grid *g, const char *msg);

/* Collective over comm (every rank calls it; only ranks a and b work):
 * `reps` round trips of `bytes` bytes of buf (at least that large) between
 * ranks a and b of comm, after one to warm the connection up. *one_way: the
 * fastest round trip's half, in seconds, on a and b (0 elsewhere). Errors:
 * PT_ERR_MPI naming the peer and size. */
pt_status comm_pingpong(MPI_Comm comm, int a, int b, void *buf, int bytes, int reps, double *one_way);

/* Collective over comm: `reps` in-place MPI_Allreduce (MPI_SUM) of n floats
 * of buf, each after a barrier, after one to warm up. *seconds: the fastest
 * repetition of the slowest rank, the same on every rank. buf's values are
 * overwritten. Errors: PT_ERR_MPI. */
pt_status comm_allreduce_seconds(float *buf, int n, MPI_Comm comm, int reps, double *seconds);

/* Collective over comm: a barrier that waits without spinning (MPI_Ibarrier
 * tested every millisecond), so that a rank measuring something is not
 * slowed by ranks waiting for it on the same cores. Errors: PT_ERR_MPI,
 * PT_ERR_TIMEOUT after the time limit of comm_set_timeout. */
pt_status comm_barrier_idle(MPI_Comm comm);

#endif
