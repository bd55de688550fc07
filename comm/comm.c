#include "comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pt_status mpi_fail(int rc, const char *fmt_op, int peer, int tag, int count)
{
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return pt_fail(PT_ERR_MPI, "%s (peer stage %d, tag %d, %d floats) failed: %s", fmt_op, peer,
                   tag, count, text);
}

pt_status comm_grid_init(comm_grid *g, MPI_Comm world, int P, int D)
{
    memset(g, 0, sizeof *g);
    g->world = g->pipe = g->dp = MPI_COMM_NULL;
    g->P = P;
    g->D = D;
    int rc = MPI_Comm_dup(world, &g->world);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_dup", -1, -1, 0);
    MPI_Comm_set_errhandler(g->world, MPI_ERRORS_RETURN);
    MPI_Comm_rank(g->world, &g->rank);
    MPI_Comm_size(g->world, &g->size);
    if (P < 1 || D < 1 || g->size != P * D) {
        pt_status st = pt_fail(PT_ERR_INVALID,
                               "the job has %d ranks but the partition needs %d pipeline stages × %d "
                               "data-parallel replicas = %d ranks: run mpirun -np %d, or change "
                               "the number of stages",
                               g->size, P, D, P * D, P * D);
        comm_grid_free(g);
        return st;
    }
    g->stage = g->rank % P;
    g->replica = g->rank / P;
    rc = MPI_Comm_split(g->world, g->replica, g->stage, &g->pipe);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_split(g->world, g->stage, g->replica, &g->dp);
    if (rc != MPI_SUCCESS) {
        comm_grid_free(g);
        return mpi_fail(rc, "MPI_Comm_split", -1, -1, 0);
    }
    MPI_Comm_set_errhandler(g->pipe, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(g->dp, MPI_ERRORS_RETURN);
    int *ub = NULL, flag = 0;
    MPI_Comm_get_attr(g->world, MPI_TAG_UB, &ub, &flag);
    g->tag_ub = flag && ub ? *ub : 32767;
    return PT_OK;
}

void comm_grid_free(comm_grid *g)
{
    if (g->pipe != MPI_COMM_NULL) MPI_Comm_free(&g->pipe);
    if (g->dp != MPI_COMM_NULL) MPI_Comm_free(&g->dp);
    if (g->world != MPI_COMM_NULL) MPI_Comm_free(&g->world);
}

#define COMM_CHUNKS 8

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

pt_status comm_wait(comm_xfer *x)
{
    if (x->req == MPI_REQUEST_NULL) return PT_OK;
    MPI_Status status;
    int rc = MPI_Wait(&x->req, &status);
    if (rc != MPI_SUCCESS)
        return mpi_fail(rc, x->is_send ? "waiting for a send" : "waiting for a receive", x->peer,
                        x->tag, x->count);
    if (!x->is_send) {
        int got = 0;
        MPI_Get_count(&status, MPI_FLOAT, &got);
        if (got != x->count)
            return pt_fail(PT_ERR_MISMATCH,
                           "receive of micro-batch %d's %s from stage %d: expected %d floats, got %d",
                           x->mb, x->dir == COMM_ACT ? "activation" : "gradient", x->peer, x->count, got);
    }
    return PT_OK;
}

void comm_xfer_clear(comm_xfer *x)
{
    memset(x, 0, sizeof *x);
    x->req = MPI_REQUEST_NULL;
}

int comm_xfer_active(const comm_xfer *x) { return x->req != MPI_REQUEST_NULL; }

pt_status comm_tied_group(const comm_grid *g, int stage_a, int stage_b, MPI_Comm *out)
{
    *out = MPI_COMM_NULL;
    int member = g->stage == stage_a || g->stage == stage_b;
    int rc = MPI_Comm_split(g->pipe, member ? 0 : MPI_UNDEFINED, g->stage, out);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Comm_split of a tied-weight group", -1, -1, 0);
    if (*out != MPI_COMM_NULL) MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN);
    return PT_OK;
}

pt_status comm_tied_sum(float *buf, size_t n, MPI_Comm group)
{
    int size = 0;
    MPI_Comm_size(group, &size);
    if (size != 2) return pt_fail(PT_ERR_INVALID, "a tied-weight group has %d ranks, expected 2", size);
    for (size_t done = 0; done < n;) {
        int count = n - done > (size_t)1 << 30 ? 1 << 30 : (int)(n - done);
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + done, count, MPI_FLOAT, MPI_SUM, group);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce of a tied gradient", -1, -1, count);
        done += (size_t)count;
    }
    return PT_OK;
}

pt_status comm_allreduce_sum(double *buf, int n, MPI_Comm comm, const char *what)
{
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, -1, -1, n);
    return PT_OK;
}

pt_status comm_allreduce_xor(unsigned long long *buf, int n, MPI_Comm comm, const char *what)
{
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_UNSIGNED_LONG_LONG, MPI_BXOR, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, what, -1, -1, n);
    return PT_OK;
}

pt_status comm_agree(const comm_grid *g, pt_status local, int *reporter)
{
    /* lowest failing rank first: key = rank · 256 + status */
    int key = local ? g->rank * 256 + (int)local : INT_MAX;
    int rc = MPI_Allreduce(MPI_IN_PLACE, &key, 1, MPI_INT, MPI_MIN, g->world);
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
