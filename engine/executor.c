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

pt_status executor_init(executor *e, const comm_grid *g, stage *st, dataset *data, int M,
                        int rows, int targets, int classes, int slots, uint64_t seed)
{
    memset(e, 0, sizeof *e);
    e->grid = g;
    e->st = st;
    e->data = data;
    e->P = g->P;
    e->s = g->stage;
    e->M = M;
    e->rows = rows;
    e->classes = classes;
    e->lrows = rows * targets;
    e->slots = slots;
    e->seed = seed;
    e->doing = "start-up";
    size_t out = (size_t)rows * st->out_dim, in = (size_t)rows * st->in_dim;
    int last = e->s == e->P - 1;
    e->send_act = slot_buffers(slots, last ? 0 : out);
    e->recv_grad = slot_buffers(slots, last ? 0 : out);
    e->send_grad = slot_buffers(slots, e->s == 0 ? 0 : in);
    e->logits = slot_buffers(slots, last ? out : 0);
    e->dlogits = slot_buffers(slots, last ? out : 0);
    e->labels = calloc((size_t)slots, sizeof *e->labels);
    e->probs = calloc((size_t)e->lrows * classes, sizeof *e->probs);
    e->x_recv_act = calloc((size_t)slots, sizeof(comm_xfer));
    e->x_send_act = calloc((size_t)slots, sizeof(comm_xfer));
    e->x_recv_grad = calloc((size_t)slots, sizeof(comm_xfer));
    e->x_send_grad = calloc((size_t)slots, sizeof(comm_xfer));
    int ok = e->send_act && e->recv_grad && e->send_grad && e->logits && e->dlogits && e->labels &&
             e->probs && e->x_recv_act && e->x_send_act && e->x_recv_grad && e->x_send_grad;
    for (int i = 0; ok && i < slots; i++) {
        e->labels[i] = calloc((size_t)e->lrows, sizeof(int32_t));
        ok = e->labels[i] != NULL;
        comm_xfer_clear(&e->x_recv_act[i]);
        comm_xfer_clear(&e->x_send_act[i]);
        comm_xfer_clear(&e->x_recv_grad[i]);
        comm_xfer_clear(&e->x_send_grad[i]);
    }
    if (!ok) {
        executor_free(e);
        return pt_fail(PT_ERR_NOMEM, "stage %d: out of memory for %d transfer buffers of %zu floats",
                       g->stage, slots, out > in ? out : in);
    }
    return PT_OK;
}

void executor_free(executor *e)
{
    free_slots(e->send_act, e->slots);
    free_slots(e->recv_grad, e->slots);
    free_slots(e->send_grad, e->slots);
    free_slots(e->logits, e->slots);
    free_slots(e->dlogits, e->slots);
    if (e->labels)
        for (int i = 0; i < e->slots; i++) free(e->labels[i]);
    free(e->labels);
    free(e->probs);
    free(e->x_recv_act);
    free(e->x_send_act);
    free(e->x_recv_grad);
    free(e->x_send_grad);
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
    case EXEC_EVENT_DATA:
        e->t.data += d;
        e->t.compute -= d; /* the forward that read it counted it as compute */
        break;
    default: e->t.comm += d; break;
    }
    if (e->rec) {
        exec_event ev = {e->grid->rank, kind, mb, chunk, e->doing_step, t0, t1};
        e->rec->record(e->rec->ctx, &ev);
    }
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

static pt_status forward_op(executor *e, int mb, int slot, long step, int training, long eval_first)
{
    int last = e->s == e->P - 1;
    double t0 = comm_wtime();
    if (e->gen && !training) {
        /* generation: the caller supplies inputs and takes the logits */
        if (e->s == 0) e->gen->inputs(e->gen->ctx, mb, stage_input(e->st, slot));
    } else if (e->s == 0) {
        if (training)
            dataset_train_batch(e->data, step, mb, stage_input(e->st, slot), NULL);
        else
            dataset_test_batch(e->data, eval_first + (long)mb * e->rows, e->rows, stage_input(e->st, slot), NULL);
    }
    if (last && !(e->gen && !training)) {
        if (training)
            dataset_train_batch(e->data, step, mb, NULL, e->labels[slot]);
        else
            dataset_test_batch(e->data, eval_first + (long)mb * e->rows, e->rows, NULL, e->labels[slot]);
    }
    account(e, EXEC_EVENT_DATA, mb, 0, t0, comm_wtime());
    float *out = last ? e->logits[slot] : e->send_act[slot];
    stage_forward(e->st, slot, out, e->seed, (uint32_t)step, (uint32_t)mb, training);
    if (last && e->gen && !training) {
        e->gen->outputs(e->gen->ctx, mb, out);
    } else if (last) {
        int valid = e->lrows; /* loss rows: samples × targets per sample */
        if (!training)
            while (valid > 0 && e->labels[slot][valid - 1] < 0) valid--;
        float loss = 0.0f;
        if (valid > 0) {
            long bad = softmax_xent_forward(e->probs, &loss, out, e->labels[slot], valid, e->classes);
            if (bad >= 0)
                return pt_fail(PT_ERR_INVALID, "micro-batch %d of step %ld: row %ld has label %d, expected 0..%d (the model has %d outputs)",
                               mb, step + 1, bad, e->labels[slot][bad], e->classes - 1, e->classes);
        }
        if (training) {
            e->loss_sum += loss;
            softmax_xent_backward(e->dlogits[slot], e->probs, e->labels[slot], e->lrows, e->classes,
                                  1.0f / ((float)e->lrows * (float)e->M));
        } else {
            e->loss_sum += (double)loss * valid;
            for (int r = 0; r < valid; r++) {
                const float *p = e->probs + (size_t)r * e->classes;
                int best = 0;
                for (int k = 1; k < e->classes; k++)
                    if (p[k] > p[best]) best = k;
                e->correct += best == e->labels[slot][r];
            }
            e->counted += valid;
        }
    }
    return PT_OK;
}

/* Runs a lowered op list: every op says what to do, on which micro-batch,
 * in which stash slot; the executor decides nothing else (design contract 3). */
static pt_status run_ops(executor *e, const sched_list *ops, long step, int training, long eval_first)
{
    int last = e->s == e->P - 1, first = e->s == 0;
    int out = e->rows * e->st->out_dim, in = e->rows * e->st->in_dim;
    pt_status st = PT_OK;
    double t_start = comm_wtime();
    e->doing_step = step;
    for (int i = 0; i < ops->n_ops && !st; i++) {
        const sched_op *op = &ops->ops[i];
        int mb = op->mb, slot = op->slot;
        if (slot < 0 || slot >= e->slots || op->chunk != 0) {
            st = pt_fail(PT_ERR_INVALID, "op %d (%s mb=%d) names stash slot %d of chunk %d; this rank holds "
                         "one chunk of %d slots", i, sched_op_name((sched_op_kind)op->kind), mb, slot,
                         (int)op->chunk, e->slots);
            break;
        }
        e->doing = sched_op_name((sched_op_kind)op->kind);
        e->doing_mb = mb;
        if ((st = maybe_fault(e, step, i, ops->n_ops))) break;
        double t0 = comm_wtime();
        switch ((sched_op_kind)op->kind) {
        case OP_POST_RECV_ACT:
            st = comm_irecv(e->grid, stage_input(e->st, slot), in, e->s - 1, mb, COMM_ACT, 0, &e->x_recv_act[slot]);
            break;
        case OP_WAIT_RECV_ACT: st = comm_wait(&e->x_recv_act[slot]); break;
        case OP_FORWARD: st = forward_op(e, mb, slot, step, training, eval_first); break;
        case OP_SEND_ACT:
            st = comm_isend(e->grid, e->send_act[slot], out, e->s + 1, mb, COMM_ACT, 0, &e->x_send_act[slot]);
            break;
        case OP_WAIT_SEND_ACT: st = comm_wait(&e->x_send_act[slot]); break;
        case OP_POST_RECV_GRAD:
            st = comm_irecv(e->grid, e->recv_grad[slot], out, e->s + 1, mb, COMM_GRAD, 0, &e->x_recv_grad[slot]);
            break;
        case OP_WAIT_RECV_GRAD: st = comm_wait(&e->x_recv_grad[slot]); break;
        case OP_BACKWARD:
            stage_backward(e->st, slot, last ? e->dlogits[slot] : e->recv_grad[slot],
                           first ? NULL : e->send_grad[slot], e->seed, (uint32_t)step, (uint32_t)mb);
            break;
        case OP_BACKWARD_INPUT:
            st = stage_backward_input(e->st, slot, last ? e->dlogits[slot] : e->recv_grad[slot],
                                      first ? NULL : e->send_grad[slot], e->seed, (uint32_t)step, (uint32_t)mb);
            break;
        case OP_BACKWARD_WEIGHT: /* the output gradient stays in its slot until here (schedule_lower) */
            st = stage_backward_weight(e->st, slot, last ? e->dlogits[slot] : e->recv_grad[slot], e->seed,
                                       (uint32_t)step, (uint32_t)mb);
            break;
        case OP_SEND_GRAD:
            st = comm_isend(e->grid, e->send_grad[slot], in, e->s - 1, mb, COMM_GRAD, 0, &e->x_send_grad[slot]);
            break;
        case OP_WAIT_SEND_GRAD: st = comm_wait(&e->x_send_grad[slot]); break;
        default:
            st = pt_fail(PT_ERR_INVALID, "op %d has kind %s, which this executor does not run", i,
                         sched_op_name((sched_op_kind)op->kind));
        }
        account(e, op->kind, mb, op->chunk, t0, comm_wtime());
    }
    if (st) return pt_wrap(st, "step %ld, %s of micro-batch %d: ", step + 1, e->doing, e->doing_mb);
    e->doing = "end-of-step reduction";
    e->t.total += comm_wtime() - t_start;
    return PT_OK;
}

pt_status executor_train_step(executor *e, const sched_list *ops, long step)
{
    e->loss_sum = 0.0;
    pt_status st = run_ops(e, ops, step, 1, 0);
    if (!st && e->fault.kind == FAULT_NAN && e->fault.step == step && e->fault.layer >= e->st->first &&
        e->fault.layer < e->st->last) {
        /* poison one gradient of the chosen layer (the first layer with
         * parameters at or after it on this stage) */
        for (int k = 0; k < e->st->n_tensors; k++)
            if (e->st->tensors[k].layer >= e->fault.layer) {
                e->st->grads[e->st->tensors[k].offset] = NAN;
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
