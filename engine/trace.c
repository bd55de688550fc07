/* trace.c — the Chrome trace event file of a run. */
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "report.h"

static void record(void *ctx, const exec_event *ev)
{
    trace_buf *t = ctx;
    if (ev->step < t->first || ev->step > t->last || t->failed) return;
    if (t->n == t->cap) {
        long cap = t->cap ? 2 * t->cap : 1024;
        exec_event *p = realloc(t->ev, (size_t)cap * sizeof *p);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->ev = p;
        t->cap = cap;
    }
    t->ev[t->n++] = *ev;
}

pt_status trace_start(trace_buf *t, const config *c, const comm_grid *g)
{
    memset(t, 0, sizeof *t);
    if (!c->log_trace[0]) return PT_OK;
    long a, b;
    config_trace_steps(c, &a, &b); /* validated with the config */
    t->first = a - 1;
    t->last = b - 1;
    t->rec = (exec_recorder){record, t};
    return comm_clock_offset(g, 16, &t->clock_offset);
}

void trace_free(trace_buf *t)
{
    free(t->ev);
    memset(t, 0, sizeof *t);
}

/* The category a slice is shown under. */
static const char *category(int kind)
{
    switch (kind) {
    case OP_FORWARD:
    case OP_BACKWARD:
    case OP_BACKWARD_INPUT:
    case OP_BACKWARD_WEIGHT: return "compute";
    case OP_WAIT_RECV_ACT:
    case OP_WAIT_RECV_GRAD: return "wait";
    case OP_REDUCE_GRAD_START:
    case OP_REDUCE_GRAD_WAIT: return "all_reduce";
    case EXEC_EVENT_DATA: return "data";
    case EXEC_EVENT_TIED:
    case EXEC_EVENT_STEP_REDUCE:
    case EXEC_EVENT_OPTIM: return "step";
    case EXEC_EVENT_CHECKPOINT: return "checkpoint";
    default: return "transfer";
    }
}

/* Appends an event of phase ph ("M", "X", "s", "f") on pid (thread 0) to
 * list: name, category (NULL: none), timestamp ts in µs (< 0: none). */
static cJSON *event(cJSON *list, const char *name, const char *cat, const char *ph, int pid, double ts)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    if (cat) cJSON_AddStringToObject(o, "cat", cat);
    cJSON_AddStringToObject(o, "ph", ph);
    cJSON_AddNumberToObject(o, "pid", pid);
    if (ts >= 0) {
        cJSON_AddNumberToObject(o, "tid", 0);
        cJSON_AddNumberToObject(o, "ts", ts);
    }
    cJSON_AddItemToArray(list, o);
    return o;
}

/* The wait that completes the receive of what event s sends, among the
 * events of rank `to` (first[to] .. first[to] + count[to]); −1 none. */
static long matching_wait(const exec_event *ev, const long *first, const long *count, const exec_event *s, int to,
                          int chunk)
{
    int want = s->kind == OP_SEND_ACT ? OP_WAIT_RECV_ACT : OP_WAIT_RECV_GRAD;
    for (long i = first[to]; i < first[to] + count[to]; i++)
        if (ev[i].kind == want && ev[i].mb == s->mb && ev[i].chunk == chunk && ev[i].step == s->step) return i;
    return -1;
}

/* The trace of n events (grouped by rank, ranks 0..size−1 of a P × D grid)
 * as JSON text; hosts: host_len bytes per rank. */
static char *trace_json(const exec_event *ev, long n, const config *c, int P, int D, int size, const char *hosts,
                        size_t host_len)
{
    int C = c->chunks;
    long *first = calloc((size_t)size, sizeof *first), *count = calloc((size_t)size, sizeof *count);
    cJSON *root = cJSON_CreateObject(), *list = cJSON_CreateArray();
    if (!first || !count || !root || !list) {
        free(first);
        free(count);
        cJSON_Delete(root);
        cJSON_Delete(list);
        return NULL;
    }
    for (long i = n - 1; i >= 0; i--) {
        first[ev[i].rank] = i;
        count[ev[i].rank]++;
    }
    double t0 = 0;
    for (long i = 0; i < n; i++)
        if (i == 0 || ev[i].start < t0) t0 = ev[i].start;
    for (int r = 0; r < size; r++) {
        char name[160];
        snprintf(name, sizeof name, "stage %d / replica %d (%.*s)", r % P, r / P, (int)host_len, hosts + (size_t)r * host_len);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(event(list, "process_name", NULL, "M", r, -1), "args"), "name",
                                name);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(event(list, "process_sort_index", NULL, "M", r, -1), "args"),
                                "sort_index", r);
    }
    long flow = 0;
    for (long i = 0; i < n; i++) {
        const exec_event *e = &ev[i];
        cJSON *o = event(list, exec_event_name(e->kind), category(e->kind), "X", e->rank, (e->start - t0) * 1e6);
        cJSON_AddNumberToObject(o, "dur", (e->end - e->start) * 1e6);
        cJSON *args = cJSON_AddObjectToObject(o, "args");
        cJSON_AddNumberToObject(args, "step", (double)e->step + 1);
        if (e->kind < OP_KIND_COUNT || e->kind == EXEC_EVENT_DATA) {
            cJSON_AddNumberToObject(args, sched_op_is_reduce(e->kind) ? "bucket" : "micro_batch", e->mb);
            cJSON_AddNumberToObject(args, "chunk", e->chunk);
        }
        if (e->kind != OP_SEND_ACT && e->kind != OP_SEND_GRAD) continue;
        /* a flow arrow from the send to the wait that completes its receive */
        int s = e->rank % P, base = e->rank - s, act = e->kind == OP_SEND_ACT;
        int to = base + (act ? (s + 1) % P : (s + P - 1) % P);
        int chunk = act ? e->chunk + (s == P - 1) : e->chunk - (s == 0);
        long w = chunk >= 0 && chunk < C ? matching_wait(ev, first, count, e, to, chunk) : -1;
        if (w < 0) continue;
        const char *what = act ? "activation" : "gradient";
        cJSON_AddNumberToObject(event(list, what, "transfer", "s", e->rank, (e->start - t0) * 1e6), "id", (double)flow);
        cJSON *ff = event(list, what, "transfer", "f", to, (ev[w].start - t0) * 1e6);
        cJSON_AddStringToObject(ff, "bp", "e"); /* bound to the enclosing slice: the wait */
        cJSON_AddNumberToObject(ff, "id", (double)flow);
        flow++;
    }
    cJSON_AddItemToObject(root, "traceEvents", list);
    cJSON_AddStringToObject(root, "displayTimeUnit", "ms");
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddNumberToObject(meta, "stages", P);
    cJSON_AddNumberToObject(meta, "data_parallel", D);
    cJSON_AddNumberToObject(meta, "chunks", C);
    cJSON_AddNumberToObject(meta, "micro_batches", c->micro_batches);
    cJSON_AddStringToObject(meta, "schedule", sched_kind_name(c->schedule));
    cJSON_AddStringToObject(meta, "steps", c->log_trace_steps);
    cJSON_AddItemToObject(root, "otherData", meta);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    free(first);
    free(count);
    return text;
}

pt_status trace_write_file(const char *path, const exec_event *ev, long n, const config *c, int P, int D, int size,
                           const char *hosts, size_t host_len)
{
    char *text = trace_json(ev, n, c, P, D, size, hosts, host_len);
    if (!text) return pt_fail(PT_ERR_NOMEM, "trace %s: out of memory", path);
    pt_status st = report_write_text(path, "trace", text);
    free(text);
    return st;
}

pt_status trace_write(trace_buf *t, const config *c, const comm_grid *g)
{
    if (!c->log_trace[0]) return PT_OK;
    for (long i = 0; i < t->n; i++) {
        t->ev[i].start += t->clock_offset;
        t->ev[i].end += t->clock_offset;
    }
    void *all = NULL, *hosts = NULL;
    long total = 0, host_total = 0;
    enum { HOST = 64 };
    char host[HOST] = {0};
    snprintf(host, sizeof host, "%.63s", g->host);
    pt_status st = comm_gatherv_bytes(t->ev, t->n * (long)sizeof *t->ev, &all, &total, 0, g->world,
                                      "MPI_Gatherv of the trace events");
    if (!st) st = comm_gatherv_bytes(host, HOST, &hosts, &host_total, 0, g->world, "MPI_Gatherv of the hosts");
    double failed = t->failed;
    if (!st) st = comm_allreduce_sum(&failed, 1, g->world, "MPI_Allreduce of the trace's completeness");
    if (st || g->rank != 0) {
        free(all);
        free(hosts);
        return st;
    }
    long n = total / (long)sizeof(exec_event);
    st = trace_write_file(c->log_trace, all, n, c, g->P, g->D, g->size, hosts, HOST);
    free(all);
    free(hosts);
    if (!st) {
        printf("trace: %s (%ld events of steps %s%s; open it in https://ui.perfetto.dev or chrome://tracing, or draw it "
               "with tools/pipetrain-timeline)\n", c->log_trace, n, c->log_trace_steps,
               failed > 0 ? "; incomplete: a rank ran out of memory while recording" : "");
        fflush(stdout);
    }
    return st;
}
