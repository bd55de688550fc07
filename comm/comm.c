#define _GNU_SOURCE /* pthread_setname_np: the progress thread shows as "pt-progress" */
#define _POSIX_C_SOURCE 200809L
#include "comm.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TIMED_OUT (-1) /* a wait ran out of time: not an MPI error code */
static pt_status coll_timed_out(const char *what);

/* An MPI call's failure: a transfer names its peer stage, tag and size; a
 * collective (peer < 0) its size only; a collective's wait that ran out of
 * time (TIMED_OUT) the ranks it waited with. */
static pt_status mpi_fail(int rc, const char *fmt_op, int peer, int tag, int count)
{
    if (rc == TIMED_OUT) return coll_timed_out(fmt_op);
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, text, &len);
    if (peer < 0) return pt_fail(PT_ERR_MPI, "%s (%d elements) failed: %s", fmt_op, count, text);
    return pt_fail(PT_ERR_MPI, "%s (peer stage %d, tag %d, %d floats) failed: %s", fmt_op, peer,
                   tag, count, text);
}

/* ---- waiting with a time limit -------------------------------------------- */

static double wait_limit = 300.0;  /* seconds; 0: forever (train.timeout) */
static const comm_grid *wait_grid; /* this rank, for the messages */
static MPI_Comm late_comm = MPI_COMM_NULL; /* the communicator of the last wait that ran out of time */

void comm_set_timeout(double seconds) { wait_limit = seconds > 0 ? seconds : 0; }

/* MPI_Wait within the time limit: MPI_Test without pause for the first
 * millisecond (MPI_Wait spins too), then with a sleep between tests growing
 * from 1 µs to 100 µs, so that a long wait leaves the core to others.
 * Returns the MPI error code or TIMED_OUT. */
static int timed_wait(MPI_Request *req, MPI_Status *status)
{
    if (wait_limit <= 0) return MPI_Wait(req, status);
    int done = 0, rc = MPI_Test(req, &done, status);
    if (rc != MPI_SUCCESS || done) return rc;
    double t0 = MPI_Wtime(), spin_until = t0 + 1e-3, deadline = t0 + wait_limit;
    long pause_ns = 1000;
    for (;;) {
        rc = MPI_Test(req, &done, status);
        if (rc != MPI_SUCCESS || done) return rc;
        double now = MPI_Wtime();
        if (now >= deadline) return TIMED_OUT;
        if (now < spin_until) continue;
        struct timespec ts = {0, pause_ns};
        nanosleep(&ts, NULL);
        if (pause_ns < 100000) pause_ns = pause_ns * 2 > 100000 ? 100000 : pause_ns * 2;
    }
}

/* The ranks of comm other than this one, as "world rank 1 (host h), ...",
 * at most a few of them. */
static void name_others(MPI_Comm comm, char *out, size_t len)
{
    const comm_grid *g = wait_grid;
    int size = 0, me = -1, n = 0;
    size_t pos = 0;
    out[0] = '\0';
    if (!g || comm == MPI_COMM_NULL || MPI_Comm_size(comm, &size) != MPI_SUCCESS) return;
    MPI_Comm_rank(comm, &me);
    MPI_Group grp, world;
    MPI_Comm_group(comm, &grp);
    MPI_Comm_group(g->world, &world);
    for (int i = 0; i < size && pos < len; i++) {
        if (i == me) continue;
        int w = MPI_UNDEFINED;
        MPI_Group_translate_ranks(grp, 1, &i, world, &w);
        if (n == 4) {
            snprintf(out + pos, len - pos, " and %d more", size - 1 - n);
            break;
        }
        int k = snprintf(out + pos, len - pos, "%sworld rank %d (host %s)", n ? ", " : "", w,
                         w >= 0 && w < g->size && g->hosts ? g->hosts[w] : "?");
        if (k > 0) pos += (size_t)k;
        n++;
    }
    MPI_Group_free(&grp);
    MPI_Group_free(&world);
}

/* The message of a wait that ran out of time: `what` it waited for (naming
 * the peer), and what to do. */
static pt_status timed_out(const char *what)
{
    const comm_grid *g = wait_grid;
    char me[MPI_MAX_PROCESSOR_NAME + 96] = "this rank";
    if (g)
        snprintf(me, sizeof me, "world rank %d (stage %d, replica %d, host %s)", g->rank, g->stage, g->replica,
                 g->host);
    return pt_fail(PT_ERR_TIMEOUT,
                   "%s waited %g s (train.timeout) for %s: check whether that rank's host is up and its "
                   "process running (not stopped), or raise train.timeout if steps legitimately take this long",
                   me, wait_limit, what);
}

/* The message of a collective on late_comm that ran out of time. */
static pt_status coll_timed_out(const char *what)
{
    char others[512], text[700];
    name_others(late_comm, others, sizeof others);
    snprintf(text, sizeof text, "%s with %s", what, others[0] ? others : "the other ranks");
    return timed_out(text);
}

/* Starts a collective's request (rc of its MPI_I... call) and waits for it
 * within the time limit: an MPI error code, or TIMED_OUT (late_comm = comm). */
static int coll_done(int rc, MPI_Request *req, MPI_Comm comm)
{
    if (rc != MPI_SUCCESS) return rc;
    rc = timed_wait(req, MPI_STATUS_IGNORE);
    if (rc == TIMED_OUT) late_comm = comm;
    return rc;
}

/* A collective's wait within the time limit: an MPI failure names `what`
 * and its size; a timeout the ranks of comm it waited with. */
static pt_status coll_wait(MPI_Request *req, MPI_Comm comm, const char *what, int count)
{
    int rc = coll_done(MPI_SUCCESS, req, comm);
    return rc == MPI_SUCCESS ? PT_OK : mpi_fail(rc, what, -1, -1, count);
}

/* The blocking collectives, as non-blocking ones waited for within the time limit. */
static int allreduce(void *buf, int n, MPI_Datatype type, MPI_Op op, MPI_Comm comm)
{
    MPI_Request req;
    return coll_done(MPI_Iallreduce(MPI_IN_PLACE, buf, n, type, op, comm, &req), &req, comm);
}

static int bcast(void *buf, int n, MPI_Datatype type, int root, MPI_Comm comm)
{
    MPI_Request req;
    return coll_done(MPI_Ibcast(buf, n, type, root, comm, &req), &req, comm);
}

static int gather(const void *mine, int n, MPI_Datatype type, void *all, int root, MPI_Comm comm)
{
    MPI_Request req;
    return coll_done(MPI_Igather(mine, n, type, all, n, type, root, comm, &req), &req, comm);
}

/* Point-to-point within the time limit (the clock ping-pong). */
static int send_recv(void *buf, int n, MPI_Datatype type, int peer, int tag, MPI_Comm comm, int is_send)
{
    MPI_Request req;
    int rc = is_send ? MPI_Isend(buf, n, type, peer, tag, comm, &req) : MPI_Irecv(buf, n, type, peer, tag, comm, &req);
    return coll_done(rc, &req, comm);
}

/* ---- the progress thread ----------------------------------------------------- */

static int thread_level = MPI_THREAD_SINGLE;    /* what MPI_Init_thread provided */
static MPI_Comm progress_comm = MPI_COMM_NULL;  /* the thread's own, where nothing is ever sent */
static atomic_long progress_ns;                 /* the pause between its calls; 0: stop */
static pthread_t progress_thread;
static int progress_running;

/* Calls into MPI every progress_ns nanoseconds: any MPI call lets the
 * library move the transfers in flight (fragments of a send, the copy-out of
 * a receive), which without single copy and over TCP advance only then. */
static void *progress_loop(void *arg)
{
    (void)arg;
    long ns;
    while ((ns = atomic_load(&progress_ns)) > 0) {
        int flag = 0;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, progress_comm, &flag, MPI_STATUS_IGNORE);
        struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void progress_stop(void)
{
    if (!progress_running) return;
    atomic_store(&progress_ns, 0);
    pthread_join(progress_thread, NULL);
    progress_running = 0;
}

pt_status comm_set_progress(double interval_us)
{
    progress_stop();
    if (interval_us <= 0 || (wait_grid && wait_grid->size == 1)) return PT_OK; /* one rank: nothing moves */
    if (thread_level != MPI_THREAD_MULTIPLE || progress_comm == MPI_COMM_NULL)
        return pt_fail(PT_ERR_MPI, "the MPI library runs without MPI_THREAD_MULTIPLE (thread level %d), which the "
                       "progress thread needs: set pipeline.progress_us = 0, or use an MPI library built with "
                       "thread support", thread_level);
    atomic_store(&progress_ns, (long)(interval_us * 1000.0 + 0.5) > 0 ? (long)(interval_us * 1000.0 + 0.5) : 1);
    /* the thread blocks every signal: a stop request (SIGINT, SIGTERM) reaches the main thread */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&progress_thread, NULL, progress_loop, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        atomic_store(&progress_ns, 0);
        return pt_fail(PT_ERR_NOMEM, "cannot start the progress thread: %s: set pipeline.progress_us = 0",
                       strerror(e));
    }
    pthread_setname_np(progress_thread, "pt-progress");
    progress_running = 1;
    return PT_OK;
}

pt_status comm_init(int *argc, char ***argv)
{
    /* Without a single-copy path (shared memory without CMA, TCP) Open MPI
     * sends a large message as fragments, at most pml_ob1_send_pipeline_depth
     * (3) of them per call into MPI, so an activation needed the sender back
     * inside MPI for every few fragments: the receiver waited while the
     * sender computed. With 64, one call queues a whole activation. A value
     * the user set (mpirun --mca, OMPI_MCA_* in the environment) wins; other
     * MPI libraries ignore the variable. */
    setenv("OMPI_MCA_pml_ob1_send_pipeline_depth", "64", 0);
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init_thread", -1, -1, 0);
    return PT_OK;
}

pt_status comm_finalize(void)
{
    progress_stop();
    int rc = MPI_Finalize();
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Finalize", -1, -1, 0);
    return PT_OK;
}

double comm_wtime(void) { return MPI_Wtime(); }

pt_status comm_start(comm_grid *g)
{
    memset(g, 0, sizeof *g);
    g->world = g->pipe = g->dp = MPI_COMM_NULL;
    g->P = g->D = 1;
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &g->world);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_dup", -1, -1, 0);
    MPI_Comm_set_errhandler(g->world, MPI_ERRORS_RETURN);
    MPI_Comm_rank(g->world, &g->rank);
    MPI_Comm_size(g->world, &g->size);
    g->stage = g->rank;
    int len = 0;
    if (MPI_Get_processor_name(g->host, &len) != MPI_SUCCESS) snprintf(g->host, sizeof g->host, "?");
    int *ub = NULL, flag = 0;
    MPI_Comm_get_attr(g->world, MPI_TAG_UB, &ub, &flag);
    g->tag_ub = flag && ub ? *ub : 32767;
    wait_grid = g;
    if (progress_comm == MPI_COMM_NULL && (rc = MPI_Comm_dup(MPI_COMM_WORLD, &progress_comm)) != MPI_SUCCESS)
        return mpi_fail(rc, "MPI_Comm_dup for the progress thread", -1, -1, 0);
    g->hosts = calloc((size_t)g->size, sizeof *g->hosts);
    int ok = g->hosts != NULL;
    MPI_Request req;
    rc = MPI_Iallreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, g->world, &req);
    pt_status st = rc == MPI_SUCCESS ? coll_wait(&req, g->world, "MPI_Iallreduce at start-up", 1)
                                     : mpi_fail(rc, "MPI_Iallreduce at start-up", -1, -1, 1);
    if (st) return st;
    if (!ok) {
        free(g->hosts); /* every rank goes without the names */
        g->hosts = NULL;
        return PT_OK;
    }
    rc = MPI_Iallgather(g->host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, g->hosts, MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                        g->world, &req);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Iallgather of the ranks' host names", -1, -1, 1);
    return coll_wait(&req, g->world, "MPI_Iallgather of the ranks' host names", MPI_MAX_PROCESSOR_NAME);
}

pt_status comm_grid_split(comm_grid *g, int P, int D)
{
    if (P < 1 || D < 1 || g->size != P * D)
        return pt_fail(PT_ERR_INVALID,
                       "the job has %d ranks but the partition needs %d pipeline stages × %d "
                       "data-parallel replicas = %d ranks: run mpirun -np %d, or change "
                       "the number of stages",
                       g->size, P, D, P * D, P * D);
    g->P = P;
    g->D = D;
    g->stage = g->rank % P;
    g->replica = g->rank / P;
    int rc = MPI_Comm_split(g->world, g->replica, g->stage, &g->pipe);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_split(g->world, g->stage, g->replica, &g->dp);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_split", -1, -1, 0);
    MPI_Comm_set_errhandler(g->pipe, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(g->dp, MPI_ERRORS_RETURN);
    return PT_OK;
}

void comm_grid_free(comm_grid *g)
{
    progress_stop();
    if (progress_comm != MPI_COMM_NULL) MPI_Comm_free(&progress_comm);
    if (g->pipe != MPI_COMM_NULL) MPI_Comm_free(&g->pipe);
    if (g->dp != MPI_COMM_NULL) MPI_Comm_free(&g->dp);
    if (g->world != MPI_COMM_NULL) MPI_Comm_free(&g->world);
    free(g->hosts);
    g->hosts = NULL;
    if (wait_grid == g) wait_grid = NULL;
}


static int make_tag(int mb, comm_dir dir, int chunk) { return (mb * COMM_CHUNKS + chunk) * 2 + (int)dir; }

int comm_max_micro_batches(const comm_grid *g) { return (g->tag_ub - 1) / (2 * COMM_CHUNKS); }

static void describe(comm_xfer *x, int peer, int mb, comm_dir dir, int chunk, int count, int send)
{
    x->peer = peer;
    x->mb = mb;
    x->dir = dir;
    x->tag = make_tag(mb, dir, chunk);
    x->count = count;
    x->is_send = send;
}

pt_status comm_isend(const comm_grid *g, const float *buf, int count, int peer, int mb,
                     comm_dir dir, int chunk, comm_xfer *x)
{
    describe(x, peer, mb, dir, chunk, count, 1);
    int rc = MPI_Isend(buf, count, MPI_FLOAT, peer, x->tag, g->pipe, &x->req);
    if (rc != MPI_SUCCESS) {
        x->req = MPI_REQUEST_NULL;
        return mpi_fail(rc, dir == COMM_ACT ? "MPI_Isend of an activation" : "MPI_Isend of a gradient",
                        peer, x->tag, count);
    }
    return PT_OK;
}

pt_status comm_irecv(const comm_grid *g, float *buf, int count, int peer, int mb, comm_dir dir,
                     int chunk, comm_xfer *x)
{
    describe(x, peer, mb, dir, chunk, count, 0);
    int rc = MPI_Irecv(buf, count, MPI_FLOAT, peer, x->tag, g->pipe, &x->req);
    if (rc != MPI_SUCCESS) {
        x->req = MPI_REQUEST_NULL;
        return mpi_fail(rc, dir == COMM_ACT ? "MPI_Irecv of an activation" : "MPI_Irecv of a gradient",
                        peer, x->tag, count);
    }
    return PT_OK;
}

/* A transfer that completed (status filled): a receive must bring the
 * floats it expected. */
static pt_status xfer_done(comm_xfer *x, const MPI_Status *status)
{
    if (!x->is_send) {
        int got = 0;
        MPI_Get_count(status, MPI_FLOAT, &got);
        if (got != x->count)
            return pt_fail(PT_ERR_MISMATCH,
                           "receive of micro-batch %d's %s from stage %d: expected %d floats, got %d",
                           x->mb, x->dir == COMM_ACT ? "activation" : "gradient", x->peer, x->count, got);
    }
    return PT_OK;
}

pt_status comm_wait(comm_xfer *x)
{
    if (x->req == MPI_REQUEST_NULL) return PT_OK;
    MPI_Status status;
    int rc = timed_wait(&x->req, &status);
    if (rc == TIMED_OUT) {
        const comm_grid *g = wait_grid;
        int w = g ? g->replica * g->P + x->peer : -1; /* the world rank of stage peer of this replica */
        char what[MPI_MAX_PROCESSOR_NAME + 160];
        int k = snprintf(what, sizeof what, "the %s of the %s of micro-batch %d %s stage %d",
                         x->is_send ? "send" : "receive", x->dir == COMM_ACT ? "activation" : "gradient", x->mb,
                         x->is_send ? "to" : "from", x->peer);
        if (g && g->hosts && w >= 0 && w < g->size && k > 0 && (size_t)k < sizeof what)
            snprintf(what + k, sizeof what - (size_t)k, " (world rank %d, host %s)", w, g->hosts[w]);
        return timed_out(what);
    }
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, x->is_send ? "waiting for a send" : "waiting for a receive", x->peer,
                        x->tag, x->count);
    return xfer_done(x, &status);
}

void comm_xfer_clear(comm_xfer *x)
{
    memset(x, 0, sizeof *x);
    x->req = MPI_REQUEST_NULL;
}

int comm_xfer_active(const comm_xfer *x) { return x->req != MPI_REQUEST_NULL; }

pt_status comm_tied_group(const comm_grid *g, int stage_a, int stage_b, comm_tied *out)
{
    memset(out, 0, sizeof *out);
    MPI_Comm c = MPI_COMM_NULL;
    int member = g->stage == stage_a || g->stage == stage_b;
    int rc = MPI_Comm_split(g->pipe, member ? 0 : MPI_UNDEFINED, g->stage, &c);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_split of a tied-weight group", -1, -1, 0);
    if (c != MPI_COMM_NULL) {
        MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
        out->comm = c;
        out->member = 1;
    }
    return PT_OK;
}

void comm_tied_free(comm_tied *t)
{
    if (t->member) MPI_Comm_free(&t->comm);
    memset(t, 0, sizeof *t);
}

pt_status comm_tied_sum(float *buf, size_t n, const comm_tied *t)
{
    if (!t->member) return pt_fail(PT_ERR_INVALID, "a tied-weight group has 0 ranks, expected 2");
    MPI_Comm group = t->comm;
    int size = 0;
    MPI_Comm_size(group, &size);
    if (size != 2) return pt_fail(PT_ERR_INVALID, "a tied-weight group has %d ranks, expected 2", size);
    for (size_t done = 0; done < n;) {
        int count = n - done > (size_t)1 << 30 ? 1 << 30 : (int)(n - done);
        int rc = allreduce(buf + done, count, MPI_FLOAT, MPI_SUM, group);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce of a tied gradient", -1, -1, count);
        done += (size_t)count;
    }
    return PT_OK;
}

pt_status comm_iallreduce_floats(float *buf, size_t n, MPI_Comm comm, const char *what, comm_coll *c)
{
    snprintf(c->what, sizeof c->what, "%s", what);
    c->count = n;
    c->comm = comm;
    if (n > INT_MAX) return pt_fail(PT_ERR_INVALID, "%s: %zu floats, at most %d per call", what, n, INT_MAX);
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, comm, &c->req);
    if (rc != MPI_SUCCESS) {
        c->req = MPI_REQUEST_NULL;
        return mpi_fail(rc, what, -1, -1, (int)n);
    }
    return PT_OK;
}

pt_status comm_iallgather_floats(const float *mine, size_t n, float *all, MPI_Comm comm, const char *what,
                                 comm_coll *c)
{
    snprintf(c->what, sizeof c->what, "%s", what);
    c->count = n;
    c->comm = comm;
    if (n > INT_MAX) return pt_fail(PT_ERR_INVALID, "%s: %zu floats, at most %d per call", what, n, INT_MAX);
    int rc = MPI_Iallgather(mine, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, comm, &c->req);
    if (rc != MPI_SUCCESS) {
        c->req = MPI_REQUEST_NULL;
        return mpi_fail(rc, what, -1, -1, (int)n);
    }
    return PT_OK;
}

pt_status comm_coll_wait(comm_coll *c)
{
    if (c->req == MPI_REQUEST_NULL) return PT_OK;
    return coll_wait(&c->req, c->comm, c->what, (int)c->count);
}

pt_status comm_coll_test(comm_coll *c, int *done)
{
    *done = 1;
    if (c->req == MPI_REQUEST_NULL) return PT_OK;
    int rc = MPI_Test(&c->req, done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, c->what, -1, -1, (int)c->count);
    return PT_OK;
}

pt_status comm_gather_bytes(const void *mine, int bytes, void *all, int root, MPI_Comm comm, const char *what)
{
    int rc = gather(mine, bytes, MPI_BYTE, all, root, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, -1, -1, bytes);
    return PT_OK;
}

pt_status comm_gatherv_bytes(const void *mine, long bytes, void **all, long *total, int root, MPI_Comm comm,
                             const char *what)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    *all = NULL;
    *total = 0;
    /* every rank learns the total first, and root's allocation verdict, so all skip or all gather */
    long sum = bytes;
    int rc = allreduce(&sum, 1, MPI_LONG, MPI_SUM, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, -1, -1, 0);
    if (sum > INT_MAX || bytes > INT_MAX)
        return pt_fail(PT_ERR_INVALID, "%s: %ld bytes in all, more than %d: trace fewer steps or ranks", what, sum,
                       INT_MAX);
    int *counts = NULL, *displs = NULL, ok = 1;
    char *buf = NULL;
    if (rank == root) {
        counts = calloc((size_t)size, sizeof *counts);
        displs = calloc((size_t)size, sizeof *displs);
        buf = malloc(sum ? (size_t)sum : 1);
        ok = counts && displs && buf;
    }
    rc = bcast(&ok, 1, MPI_INT, root, comm);
    int n = (int)bytes;
    if (rc == MPI_SUCCESS && ok) rc = gather(&n, 1, MPI_INT, counts, root, comm);
    for (int i = 0, off = 0; rc == MPI_SUCCESS && ok && rank == root && i < size; i++) {
        displs[i] = off;
        off += counts[i];
    }
    if (rc == MPI_SUCCESS && ok) {
        MPI_Request req;
        rc = coll_done(MPI_Igatherv(mine, n, MPI_BYTE, buf, counts, displs, MPI_BYTE, root, comm, &req), &req,
                       comm);
    }
    free(counts);
    free(displs);
    if (rc != MPI_SUCCESS || !ok) {
        free(buf);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, what, -1, -1, n);
        return pt_fail(PT_ERR_NOMEM, "%s: rank %d (the root) is out of memory for %ld bytes", what, root, sum);
    }
    *all = buf;
    *total = rank == root ? sum : 0;
    return PT_OK;
}

pt_status comm_clock_offset(const comm_grid *g, int rounds, double *offset)
{
    enum { TAG = 0x7ff0 };
    *offset = 0.0;
    int rc = MPI_SUCCESS;
    for (int peer = 1; peer < g->size && rc == MPI_SUCCESS; peer++) {
        if (g->rank != 0 && g->rank != peer) continue;
        double best_rtt = 1e300;
        for (int k = 0; k < rounds && rc == MPI_SUCCESS; k++) {
            if (g->rank == peer) {
                double t1 = MPI_Wtime(), t0;
                rc = send_recv(&t1, 1, MPI_DOUBLE, 0, TAG, g->world, 1);
                if (rc == MPI_SUCCESS) rc = send_recv(&t0, 1, MPI_DOUBLE, 0, TAG, g->world, 0);
                double t2 = MPI_Wtime();
                if (t2 - t1 < best_rtt) {
                    best_rtt = t2 - t1;
                    *offset = t0 - 0.5 * (t1 + t2);
                }
            } else {
                double t;
                rc = send_recv(&t, 1, MPI_DOUBLE, peer, TAG, g->world, 0);
                t = MPI_Wtime();
                if (rc == MPI_SUCCESS) rc = send_recv(&t, 1, MPI_DOUBLE, peer, TAG, g->world, 1);
            }
        }
    }
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "the clock offset ping-pong with rank 0", -1, TAG, 1);
    return PT_OK;
}

pt_status comm_allreduce_sum(double *buf, int n, MPI_Comm comm, const char *what)
{
    int rc = allreduce(buf, n, MPI_DOUBLE, MPI_SUM, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, -1, -1, n);
    return PT_OK;
}

pt_status comm_allreduce_xor(unsigned long long *buf, int n, MPI_Comm comm, const char *what)
{
    int rc = allreduce(buf, n, MPI_UNSIGNED_LONG_LONG, MPI_BXOR, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, -1, -1, n);
    return PT_OK;
}

pt_status comm_agree(const comm_grid *g, pt_status local, int *reporter)
{
    /* lowest failing rank first: key = rank · 256 + status */
    int key = local ? g->rank * 256 + (int)local : INT_MAX;
    int rc = allreduce(&key, 1, MPI_INT, MPI_MIN, g->world);
    if (rc != MPI_SUCCESS) {
        *reporter = g->rank;
        return mpi_fail(rc, "MPI_Allreduce agreeing on a status", -1, -1, 1);
    }
    if (key == INT_MAX) return PT_OK;
    *reporter = key / 256;
    if (*reporter != g->rank) pt_fail((pt_status)(key % 256), "(rank %d reported the error)", *reporter);
    return (pt_status)(key % 256);
}

void comm_abort(const comm_grid *g, const char *msg)
{
    if (g && g->world != MPI_COMM_NULL)
        fprintf(stderr, "pipetrain: rank %d (stage %d): %s\n", g->rank, g->stage, msg);
    else
        fprintf(stderr, "pipetrain: %s\n", msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    abort(); /* MPI_Abort does not return */
}

/* Line `i` of text (0-based) into out, "(no such line)" past the end. */
static void nth_line(const char *text, int i, char *out, size_t len)
{
    for (; i > 0 && text; i--) {
        text = strchr(text, '\n');
        if (text) text++;
    }
    if (!text || !*text) {
        snprintf(out, len, "(no such line)");
        return;
    }
    size_t n = strcspn(text, "\n");
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), text);
}

/* The index of the first line where a and b differ. */
static int first_diff_line(const char *a, const char *b)
{
    int line = 0;
    for (; *a && *a == *b; a++, b++)
        if (*a == '\n') line++;
    return line;
}

pt_status comm_same_text(const comm_grid *g, const char *what, const char *text, const char *advice,
                         int *reporter)
{
    *reporter = g->rank;
    long long len = g->rank == 0 ? (long long)strlen(text) + 1 : 0;
    int rc = bcast(&len, 1, MPI_LONG_LONG, 0, g->world);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast of rank 0's start-up text", 0, -1, 1);
    if (len <= 0 || len > INT_MAX - MPI_MAX_PROCESSOR_NAME)
        return pt_fail(PT_ERR_INVALID, "%s: rank 0's text has an impossible length %lld", what, len);
    int n = (int)len + MPI_MAX_PROCESSOR_NAME;
    char *ref = malloc((size_t)n);
    if (!ref) comm_abort(g, "out of memory comparing the ranks' start-up texts"); /* others wait in the Bcast */
    if (g->rank == 0) {
        memcpy(ref, g->host, MPI_MAX_PROCESSOR_NAME);
        memcpy(ref + MPI_MAX_PROCESSOR_NAME, text, (size_t)len);
    }
    rc = bcast(ref, n, MPI_CHAR, 0, g->world);
    if (rc != MPI_SUCCESS) {
        free(ref);
        return mpi_fail(rc, "MPI_Bcast of rank 0's start-up text", 0, -1, n);
    }
    ref[len + MPI_MAX_PROCESSOR_NAME - 1] = '\0';
    const char *ref_host = ref, *ref_text = ref + MPI_MAX_PROCESSOR_NAME;
    int differs = strcmp(text, ref_text) != 0;
    int v[2] = {differs, differs ? g->rank : INT_MAX};
    rc = allreduce(&v[0], 1, MPI_INT, MPI_SUM, g->world);
    if (rc == MPI_SUCCESS) rc = allreduce(&v[1], 1, MPI_INT, MPI_MIN, g->world);
    if (rc != MPI_SUCCESS) {
        free(ref);
        return mpi_fail(rc, "MPI_Allreduce comparing start-up texts", -1, -1, 2);
    }
    if (v[0] == 0) {
        free(ref);
        return PT_OK;
    }
    *reporter = v[1];
    pt_status st;
    if (g->rank == v[1]) {
        char mine[512], theirs[512], others[64] = "";
        int line = first_diff_line(text, ref_text);
        nth_line(text, line, mine, sizeof mine);
        nth_line(ref_text, line, theirs, sizeof theirs);
        if (v[0] > 1) snprintf(others, sizeof others, " and %d other rank%s", v[0] - 1, v[0] > 2 ? "s" : "");
        st = pt_fail(PT_ERR_MISMATCH,
                     "rank %d (host %s)%s %s with rank 0 (host %s) on %s: rank %d has '%s' where "
                     "rank 0 has '%s': %s",
                     g->rank, g->host, others, v[0] > 1 ? "disagree" : "disagrees", ref_host, what, g->rank,
                     mine, theirs, advice);
    } else {
        st = pt_fail(PT_ERR_MISMATCH, "(rank %d reported the error)", v[1]);
    }
    free(ref);
    return st;
}

pt_status comm_bcast(void *buf, int bytes, int root, MPI_Comm comm, const char *what)
{
    int rc = bcast(buf, bytes, MPI_BYTE, root, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, root, -1, bytes);
    return PT_OK;
}

pt_status comm_gather_doubles(const double *mine, int n, double *all, int root, MPI_Comm comm,
                              const char *what)
{
    int rc = gather(mine, n, MPI_DOUBLE, all, root, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, root, -1, n);
    return PT_OK;
}

void comm_library_version(char *buf, size_t len)
{
    char v[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int n = 0;
    MPI_Get_library_version(v, &n);
    v[strcspn(v, "\n,")] = '\0';
    snprintf(buf, len, "%s", v);
}

pt_status comm_pingpong(MPI_Comm comm, int a, int b, void *buf, int bytes, int reps, double *one_way)
{
    int me, rc = MPI_SUCCESS;
    MPI_Comm_rank(comm, &me);
    *one_way = 0;
    if (me != a && me != b) return PT_OK;
    int peer = me == a ? b : a;
    double best = 0;
    for (int i = 0; i <= reps && rc == MPI_SUCCESS; i++) { /* round 0 warms the connection up */
        double t0 = MPI_Wtime();
        if (me == a) {
            rc = MPI_Send(buf, bytes, MPI_BYTE, peer, 7, comm);
            if (rc == MPI_SUCCESS) rc = MPI_Recv(buf, bytes, MPI_BYTE, peer, 7, comm, MPI_STATUS_IGNORE);
        } else {
            rc = MPI_Recv(buf, bytes, MPI_BYTE, peer, 7, comm, MPI_STATUS_IGNORE);
            if (rc == MPI_SUCCESS) rc = MPI_Send(buf, bytes, MPI_BYTE, peer, 7, comm);
        }
        double t = (MPI_Wtime() - t0) / 2;
        if (i > 0 && (best == 0 || t < best)) best = t;
    }
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Send/MPI_Recv ping-pong", peer, 7, bytes);
    *one_way = best;
    return PT_OK;
}

pt_status comm_allreduce_seconds(float *buf, int n, MPI_Comm comm, int reps, double *seconds)
{
    double best = 0;
    for (int i = 0; i <= reps; i++) {
        int rc = MPI_Barrier(comm);
        double t0 = MPI_Wtime();
        if (rc == MPI_SUCCESS) rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, comm);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce timing", -1, -1, n);
        double t = MPI_Wtime() - t0;
        if (i > 0 && (best == 0 || t < best)) best = t;
    }
    /* every rank reports the slowest rank's time */
    int rc = MPI_Allreduce(MPI_IN_PLACE, &best, 1, MPI_DOUBLE, MPI_MAX, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce of the timings", -1, -1, 1);
    *seconds = best;
    return PT_OK;
}

pt_status comm_barrier_idle(MPI_Comm comm)
{
    MPI_Request req;
    int rc = MPI_Ibarrier(comm, &req), done = 0;
    double deadline = MPI_Wtime() + wait_limit;
    while (rc == MPI_SUCCESS && !(rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE)) && !done) {
        if (wait_limit > 0 && MPI_Wtime() > deadline) {
            late_comm = comm;
            rc = TIMED_OUT;
            break;
        }
        struct timespec ts = {0, 1000000}; /* 1 ms: leave the cores to the rank that works */
        nanosleep(&ts, NULL);
    }
    if (rc == TIMED_OUT) return coll_timed_out("the barrier while rank 0 measures the layers");
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Ibarrier", -1, -1, 0);
    return PT_OK;
}
