#include "executor.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "kernels.h"

static float **slot_buffers(int slots, size_t floats)
{
    float **b = calloc((size_t)slots, sizeof *b);
    if (!b) return NULL;
    for (int i = 0; i < slots; i++) {
        b[i] = calloc(floats ? floats : 1, sizeof(float));
        if (!b[i]) {
            for (int j = 0; j < i; j++) free(b[j]);
            free(b);
            return NULL;
        }
    }
    return b;
}

static void free_slots(float **b, int slots)
{
    if (!b) return;
    for (int i = 0; i < slots; i++) free(b[i]);
    free(b);
}

static void chunk_free(exec_chunk *c)
{
    free_slots(c->send_act, c->slots);
    free_slots(c->recv_grad, c->slots);
    free_slots(c->send_grad, c->slots);
    free_slots(c->logits, c->slots);
    free_slots(c->dlogits, c->slots);
    if (c->labels)
        for (int i = 0; i < c->slots; i++) free(c->labels[i]);
    free(c->labels);
    free(c->x_recv_act);
    free(c->x_send_act);
    free(c->x_recv_grad);
    free(c->x_send_grad);
    memset(c, 0, sizeof *c);
}

/* The buffers of one chunk: only those its boundaries use are sized. */
static int chunk_alloc(exec_chunk *c, int slots, int rows, int lrows)
{
    size_t out = (size_t)rows * c->st->out_dim, in = (size_t)rows * c->st->in_dim;
    c->slots = slots;
    c->send_act = slot_buffers(slots, c->is_last ? 0 : out);
    c->recv_grad = slot_buffers(slots, c->is_last ? 0 : out);
    c->send_grad = slot_buffers(slots, c->is_first ? 0 : in);
    c->logits = slot_buffers(slots, c->is_last ? out : 0);
    c->dlogits = slot_buffers(slots, c->is_last ? out : 0);
    c->labels = calloc((size_t)slots, sizeof *c->labels);
    c->x_recv_act = calloc((size_t)slots, sizeof(comm_xfer));
    c->x_send_act = calloc((size_t)slots, sizeof(comm_xfer));
    c->x_recv_grad = calloc((size_t)slots, sizeof(comm_xfer));
    c->x_send_grad = calloc((size_t)slots, sizeof(comm_xfer));
    int ok = c->send_act && c->recv_grad && c->send_grad && c->logits && c->dlogits && c->labels &&
             c->x_recv_act && c->x_send_act && c->x_recv_grad && c->x_send_grad;
    for (int i = 0; ok && i < slots; i++) {
        c->labels[i] = calloc(c->is_last ? (size_t)lrows : 1, sizeof(int32_t));
        ok = c->labels[i] != NULL;
        comm_xfer_clear(&c->x_recv_act[i]);
        comm_xfer_clear(&c->x_send_act[i]);
        comm_xfer_clear(&c->x_recv_grad[i]);
        comm_xfer_clear(&c->x_send_grad[i]);
    }
    return ok;
}

pt_status executor_init(executor *e, const comm_grid *g, stage *st, int chunks, const int *slots, dataset *data,
                        int M, int rows, int targets, int classes, uint64_t seed)
{
    memset(e, 0, sizeof *e);
    if (chunks < 1 || chunks > EXEC_MAX_CHUNKS)
        return pt_fail(PT_ERR_INVALID, "%d model chunks per rank, expected 1..%d", chunks, EXEC_MAX_CHUNKS);
    e->grid = g;
    e->data = data;
    e->P = g->P;
    e->s = g->stage;
    e->M = e->M_step = M;
    e->rows = rows;
    e->classes = classes;
    e->lrows = rows * targets;
    e->chunks = chunks;
    e->seed = seed;
    e->doing = "start-up";
    int P = g->P, V = chunks * P, ok = 1, last_held = 0;
    for (int k = 0; k < chunks && ok; k++) {
        exec_chunk *c = &e->ch[k];
        c->st = &st[k];
        c->vs = k * P + g->stage;
        c->is_first = c->vs == 0;
        c->is_last = c->vs == V - 1;
        c->prev_rank = (g->stage + P - 1) % P;
        c->next_rank = (g->stage + 1) % P;
        c->tag_in = (c->vs - 1 + V) % V / P; /* the chunk of virtual stage vs − 1 */
        c->tag_out = k;
        last_held |= c->is_last;
        if (!(ok = chunk_alloc(c, slots[k], rows, e->lrows))) {
            size_t out = (size_t)rows * c->st->out_dim, in = (size_t)rows * c->st->in_dim;
            executor_free(e);
            return pt_fail(PT_ERR_NOMEM, "virtual stage %d (layers %d-%d): out of memory for %d transfer buffers "
                           "of %zu floats", k * P + g->stage, st[k].first, st[k].last - 1, slots[k],
                           out > in ? out : in);
        }
    }
    e->probs = calloc(last_held ? (size_t)e->lrows * classes : 1, sizeof *e->probs);
    if (!e->probs) {
        executor_free(e);
        return pt_fail(PT_ERR_NOMEM, "stage %d: out of memory for the loss of %d rows", g->stage, e->lrows);
    }
    return PT_OK;
}

void executor_set_share(executor *e, int M_step, int mb_first)
{
    e->M_step = M_step;
    e->mb_first = mb_first;
}

void executor_free(executor *e)
{
    for (int k = 0; k < EXEC_MAX_CHUNKS; k++) chunk_free(&e->ch[k]);
    free(e->probs);
    memset(e, 0, sizeof *e);
}

/* ---- the ops ------------------------------------------------------------ */

/* One executed op (or the data read inside a forward, EXEC_EVENT_DATA): the
 * per-rank breakdown adds it up, and the recorder, when set, sees it. */
static void account(executor *e, int kind, int mb, int chunk, double t0, double t1)
{
    double d = t1 - t0;
    switch (kind) {
    case OP_FORWARD:
    case OP_BACKWARD:
    case OP_BACKWARD_INPUT:
    case OP_BACKWARD_WEIGHT: e->t.compute += d; break;
    case OP_WAIT_RECV_ACT:
    case OP_WAIT_RECV_GRAD: e->t.wait += d; break;
    case OP_REDUCE_GRAD_START:
    case OP_REDUCE_GRAD_WAIT: e->t.reduce += d; break;
    case EXEC_EVENT_DATA:
        e->t.data += d;
        e->t.compute -= d; /* the forward that read it counted it as compute */
        break;
    default: e->t.comm += d; break;
    }
    if (e->rec) {
        exec_event ev = {e->grid->rank, kind, mb, chunk, e->doing_training ? e->doing_step : -1, t0, t1};
        e->rec->record(e->rec->ctx, &ev);
    }
}

const char *exec_event_name(int kind)
{
    static const char *const names[] = {"data", "tied_sum", "step_reduce", "optimizer", "checkpoint"};
    if (kind >= 0 && kind < OP_KIND_COUNT) return sched_op_name((sched_op_kind)kind);
    if (kind >= EXEC_EVENT_DATA && kind < EXEC_EVENT_KIND_COUNT) return names[kind - EXEC_EVENT_DATA];
    return "unknown";
}

void executor_note(const executor *e, int kind, long step, double t0, double t1)
{
    if (!e->rec) return;
    exec_event ev = {e->grid->rank, kind, -1, 0, step, t0, t1};
    e->rec->record(e->rec->ctx, &ev);
}

/* The test-only fault switch fires in the middle of the op list. */
static pt_status maybe_fault(executor *e, long step, int index, int n_ops)
{
    if (e->fault.step != step || index != n_ops / 2) return PT_OK;
    if (e->fault.kind == FAULT_ERROR)
        return pt_fail(PT_ERR_INVALID, "injected fault (fault.kind = error)");
    if (e->fault.kind == FAULT_CRASH) abort();
    return PT_OK;
}

static pt_status forward_op(executor *e, exec_chunk *c, int mb, int slot, long step, int training, long eval_first)
{
    int last = c->is_last;
    double t0 = comm_wtime();
    if (e->gen && !training) {
        /* generation: the caller supplies inputs and takes the logits */
        if (c->is_first) e->gen->inputs(e->gen->ctx, mb, stage_input(c->st, slot));
    } else if (c->is_first) {
        if (training)
            dataset_train_batch(e->data, step, mb, stage_input(c->st, slot), NULL);
        else
            dataset_test_batch(e->data, eval_first + (long)mb * e->rows, e->rows, stage_input(c->st, slot), NULL);
    }
    if (last && !(e->gen && !training)) {
        if (training)
            dataset_train_batch(e->data, step, mb, NULL, c->labels[slot]);
        else
            dataset_test_batch(e->data, eval_first + (long)mb * e->rows, e->rows, NULL, c->labels[slot]);
    }
    account(e, EXEC_EVENT_DATA, mb, (int)(c - e->ch), t0, comm_wtime());
    float *out = last ? c->logits[slot] : c->send_act[slot];
    stage_forward(c->st, slot, out, e->seed, (uint32_t)step, (uint32_t)mb, training);
    if (last && e->gen && !training) {
        e->gen->outputs(e->gen->ctx, mb, out);
    } else if (last) {
        int valid = e->lrows; /* loss rows: samples × targets per sample */
        if (!training)
            while (valid > 0 && c->labels[slot][valid - 1] < 0) valid--;
        float loss = 0.0f;
        if (valid > 0) {
            long bad = softmax_xent_forward(e->probs, &loss, out, c->labels[slot], valid, e->classes);
            if (bad >= 0)
                return pt_fail(PT_ERR_INVALID, "micro-batch %d of step %ld: row %ld has label %d, expected 0..%d (the model has %d outputs)",
                               mb, step + 1, bad, c->labels[slot][bad], e->classes - 1, e->classes);
        }
        if (training) {
            e->loss_sum += loss;
            softmax_xent_backward(c->dlogits[slot], e->probs, c->labels[slot], e->lrows, e->classes,
                                  1.0f / ((float)e->lrows * (float)e->M_step));
        } else {
            e->loss_sum += (double)loss * valid;
            for (int r = 0; r < valid; r++) {
                const float *p = e->probs + (size_t)r * e->classes;
                int best = 0;
                for (int k = 1; k < e->classes; k++)
                    if (p[k] > p[best]) best = k;
                e->correct += best == c->labels[slot][r];
            }
            e->counted += valid;
        }
    }
    return PT_OK;
}

/* REDUCE_GRAD_START / WAIT of a gradient bucket (its index in op->mb). */
static pt_status reduce_op(executor *e, const sched_op *op, int i)
{
    if (!e->red || op->chunk >= e->chunks)
        return pt_fail(PT_ERR_INVALID, "op %d (%s bucket=%d chunk=%d): this executor reduces no gradients over "
                       "replicas", i, sched_op_name((sched_op_kind)op->kind), (int)op->mb, (int)op->chunk);
    e->doing = sched_op_name((sched_op_kind)op->kind);
    e->doing_mb = -1;
    e->doing_chunk = op->chunk;
    double t0 = comm_wtime();
    pt_status st = op->kind == OP_REDUCE_GRAD_START ? e->red->start(e->red->ctx, op->chunk, op->mb)
                                                    : e->red->wait(e->red->ctx, op->chunk, op->mb);
    account(e, op->kind, op->mb, op->chunk, t0, comm_wtime());
    return st;
}

/* Runs a lowered op list: every op says what to do, on which micro-batch,
 * in which stash slot; the executor decides nothing else (design contract 3). */
static pt_status run_ops(executor *e, const sched_list *ops, long step, int training, long eval_first)
{
    pt_status st = PT_OK;
    double t_start = comm_wtime();
    e->doing_step = step;
    e->doing_training = training;
    for (int i = 0; i < ops->n_ops && !st; i++) {
        const sched_op *op = &ops->ops[i];
        int mb = op->mb, slot = op->slot;
        if (sched_op_is_reduce(op->kind)) {
            if (!(st = maybe_fault(e, step, i, ops->n_ops))) st = reduce_op(e, op, i);
            continue;
        }
        /* tags and slots count this replica's micro-batches; data, dropout keys and messages the step's */
        int gmb = training ? e->mb_first + mb : mb;
        if (op->chunk >= e->chunks || slot < 0 || slot >= e->ch[op->chunk].slots) {
            st = pt_fail(PT_ERR_INVALID, "op %d (%s mb=%d) names stash slot %d of chunk %d; this rank holds "
                         "%d chunk%s of %d slots", i, sched_op_name((sched_op_kind)op->kind), mb, slot,
                         (int)op->chunk, e->chunks, e->chunks == 1 ? "" : "s",
                         op->chunk < e->chunks ? e->ch[op->chunk].slots : 0);
            break;
        }
        exec_chunk *c = &e->ch[op->chunk];
        const stage *s = c->st;
        int out = e->rows * s->out_dim, in = e->rows * s->in_dim;
        const float *dout = c->is_last ? c->dlogits[slot] : c->recv_grad[slot];
        e->doing = sched_op_name((sched_op_kind)op->kind);
        e->doing_mb = gmb;
        e->doing_chunk = op->chunk;
        if ((st = maybe_fault(e, step, i, ops->n_ops))) break;
        double t0 = comm_wtime();
        switch ((sched_op_kind)op->kind) {
        case OP_POST_RECV_ACT:
            st = comm_irecv(e->grid, stage_input(c->st, slot), in, c->prev_rank, mb, COMM_ACT, c->tag_in,
                            &c->x_recv_act[slot]);
            break;
        case OP_WAIT_RECV_ACT: st = comm_wait(&c->x_recv_act[slot]); break;
        case OP_FORWARD: st = forward_op(e, c, gmb, slot, step, training, eval_first); break;
        case OP_SEND_ACT:
            st = comm_isend(e->grid, c->send_act[slot], out, c->next_rank, mb, COMM_ACT, c->tag_out,
                            &c->x_send_act[slot]);
            break;
        case OP_WAIT_SEND_ACT: st = comm_wait(&c->x_send_act[slot]); break;
        case OP_POST_RECV_GRAD:
            st = comm_irecv(e->grid, c->recv_grad[slot], out, c->next_rank, mb, COMM_GRAD, c->tag_out,
                            &c->x_recv_grad[slot]);
            break;
        case OP_WAIT_RECV_GRAD: st = comm_wait(&c->x_recv_grad[slot]); break;
        case OP_BACKWARD:
            stage_backward(c->st, slot, dout, c->is_first ? NULL : c->send_grad[slot], e->seed, (uint32_t)step,
                           (uint32_t)gmb);
            if (e->red && e->red->after_weights) st = e->red->after_weights(e->red->ctx, op->chunk, mb);
            break;
        case OP_BACKWARD_INPUT:
            st = stage_backward_input(c->st, slot, dout, c->is_first ? NULL : c->send_grad[slot], e->seed,
                                      (uint32_t)step, (uint32_t)gmb);
            break;
        case OP_BACKWARD_WEIGHT: /* the output gradient stays in its slot until here (schedule_lower) */
            st = stage_backward_weight(c->st, slot, dout, e->seed, (uint32_t)step, (uint32_t)gmb);
            if (!st && e->red && e->red->after_weights) st = e->red->after_weights(e->red->ctx, op->chunk, mb);
            break;
        case OP_SEND_GRAD:
            st = comm_isend(e->grid, c->send_grad[slot], in, c->prev_rank, mb, COMM_GRAD, c->tag_in,
                            &c->x_send_grad[slot]);
            break;
        case OP_WAIT_SEND_GRAD: st = comm_wait(&c->x_send_grad[slot]); break;
        default:
            st = pt_fail(PT_ERR_INVALID, "op %d has kind %s, which this executor does not run", i,
                         sched_op_name((sched_op_kind)op->kind));
        }
        account(e, op->kind, gmb, op->chunk, t0, comm_wtime());
        if (!st && e->red) st = e->red->progress(e->red->ctx);
    }
    if (st) {
        if (e->doing_mb < 0) /* a gradient reduction: doing_chunk names the chunk, the op its bucket */
            return pt_wrap(st, "step %ld, %s of chunk %d's gradients: ", step + 1, e->doing, e->doing_chunk);
        if (e->chunks > 1)
            return pt_wrap(st, "step %ld, %s of micro-batch %d (chunk %d): ", step + 1, e->doing, e->doing_mb,
                           e->doing_chunk);
        return pt_wrap(st, "step %ld, %s of micro-batch %d: ", step + 1, e->doing, e->doing_mb);
    }
    e->doing = "end-of-step reduction";
    e->t.total += comm_wtime() - t_start;
    return PT_OK;
}

pt_status executor_train_step(executor *e, const sched_list *ops, long step)
{
    e->loss_sum = 0.0;
    pt_status st = run_ops(e, ops, step, 1, 0);
    for (int k = 0; !st && e->fault.kind == FAULT_NAN && e->fault.step == step && k < e->chunks; k++) {
        stage *s = e->ch[k].st;
        if (e->fault.layer < s->first || e->fault.layer >= s->last) continue;
        /* poison one gradient of the chosen layer (the first layer with
         * parameters at or after it on this stage) */
        for (int t = 0; t < s->n_tensors; t++)
            if (s->tensors[t].layer >= e->fault.layer) {
                s->grads[s->tensors[t].offset] = NAN;
                break;
            }
    }
    return st;
}

pt_status executor_eval_step(executor *e, const sched_list *ops, long first)
{
    return run_ops(e, ops, 0, 0, first);
}

/* ---- crash report --------------------------------------------------------- */

static const executor *crash_exec;

static void on_fatal_signal(int sig)
{
    char msg[256];
    const executor *e = crash_exec;
    int n = snprintf(msg, sizeof msg,
                     "pipetrain: rank %d (stage %d): died on signal %d (%s) during %s of micro-batch %d at step %ld\n",
                     e->grid->rank, e->s, sig, strsignal(sig), e->doing, e->doing_mb, e->doing_step + 1);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
        (void)w;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void executor_install_crash_report(const executor *e)
{
    crash_exec = e;
    int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], on_fatal_signal);
}
