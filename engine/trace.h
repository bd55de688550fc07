/* trace.h — a measured trace of a run: every op every rank executes during
 * the steps of log.trace_steps, written as a Chrome trace event file (the
 * JSON Array/Object format of the Trace Event Format document, which
 * Perfetto and chrome://tracing open): one process per rank named
 * "stage s / replica r (host)", one complete event ("ph":"X") per op with its
 * micro-batch, chunk and step as arguments, flow events ("ph":"s"/"f") from
 * each send to the wait that completes its receive, clocks aligned to rank
 * 0's with comm_clock_offset. The executor's event hook feeds it. */
#ifndef PT_TRACE_H
#define PT_TRACE_H

#include "comm.h"
#include "config.h"
#include "executor.h"

typedef struct {
    exec_event *ev;
    long n, cap;
    long first, last;    /* 0-based steps recorded: [first, last] */
    double clock_offset; /* seconds to add to this rank's clock to get rank 0's */
    int failed;          /* out of memory while recording: the trace is incomplete */
    exec_recorder rec;   /* what the executor calls (ctx = this) */
} trace_buf;

/* Collective over g->world when c->log_trace is set (the clock offsets are
 * measured here, at start-up); otherwise does nothing and leaves t unused.
 * Errors: PT_ERR_MPI. */
pt_status trace_start(trace_buf *t, const config *c, const comm_grid *g);

/* Collective over g->world when c->log_trace is set: gathers every rank's
 * events to rank 0, which writes c->log_trace. P and the chunks per rank
 * say which rank and chunk a transfer goes to (for the flow arrows).
 * Errors: PT_ERR_IO naming log.trace, PT_ERR_NOMEM, PT_ERR_MPI. */
pt_status trace_write(trace_buf *t, const config *c, const comm_grid *g);

/* Writes n events (grouped by rank, ranks 0..size−1 of a P × D grid, times
 * in seconds on one clock) as a trace file at path; hosts holds host_len
 * bytes (a name) per rank. Not collective. Errors: PT_ERR_IO naming path,
 * PT_ERR_NOMEM. */
pt_status trace_write_file(const char *path, const exec_event *ev, long n, const config *c, int P, int D, int size,
                           const char *hosts, size_t host_len);

void trace_free(trace_buf *t);

#endif
