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

static pt_status wait_timed(comm_xfer *x, double *acc)
{
    double t0 = MPI_Wtime();
    pt_status st = comm_wait(x);
    *acc += MPI_Wtime() - t0;
    return st;
}

static pt_status post_recv_act(executor *e, int mb)
{
    int slot = mb % e->slots;
    return comm_irecv(e->grid, stage_input(e->st, slot), e->rows * e->st->in_dim, e->s - 1, mb,
                      COMM_ACT, 0, &e->x_recv_act[slot]);
}

static pt_status finish_sends(executor *e)
{
    pt_status st = PT_OK;
    for (int i = 0; i < e->slots && !st; i++) {
        st = wait_timed(&e->x_send_act[i], &e->t.comm);
        if (!st) st = wait_timed(&e->x_send_grad[i], &e->t.comm);
    }
    return st;
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

static pt_status forward_op(executor *e, int mb, long step, int training, long eval_first)
{
    int slot = mb % e->slots, last = e->s == e->P - 1;
    pt_status st = PT_OK;
    double t0 = MPI_Wtime();
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
    double t1 = MPI_Wtime();
    e->t.data += t1 - t0;
    if (!last && (st = wait_timed(&e->x_send_act[slot], &e->t.comm))) return st;
    t1 = MPI_Wtime();
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
    e->t.compute += MPI_Wtime() - t1;
    return PT_OK;
}

static pt_status run_ops(executor *e, const sched_list *ops, long step, int training, long eval_first)
{
    int last = e->s == e->P - 1, first = e->s == 0;
    size_t out = (size_t)e->rows * e->st->out_dim, in = (size_t)e->rows * e->st->in_dim;
    pt_status st = PT_OK;
    double t_start = MPI_Wtime(), t0;
    e->doing_step = step;
    if (!first)
        for (int mb = 0; mb < e->M && mb < e->slots && !st; mb++) st = post_recv_act(e, mb);
    for (int i = 0; i < ops->n_ops && !st; i++) {
        const sched_op *op = &ops->ops[i];
        int mb = op->mb, slot = mb % e->slots;
        e->doing = sched_op_name((sched_op_kind)op->kind);
        e->doing_mb = mb;
        if ((st = maybe_fault(e, step, i, ops->n_ops))) break;
        switch ((sched_op_kind)op->kind) {
        case OP_RECV_ACT: st = wait_timed(&e->x_recv_act[slot], &e->t.wait); break;
        case OP_FORWARD:
            st = forward_op(e, mb, step, training, eval_first);
            /* forward-only: the input slot is free again at once */
            if (!st && !training && !first && mb + e->slots < e->M) st = post_recv_act(e, mb + e->slots);
            break;
        case OP_SEND_ACT:
            t0 = MPI_Wtime();
            st = comm_isend(e->grid, e->send_act[slot], (int)out, e->s + 1, mb, COMM_ACT, 0, &e->x_send_act[slot]);
            if (!st && training)
                st = comm_irecv(e->grid, e->recv_grad[slot], (int)out, e->s + 1, mb, COMM_GRAD, 0,
                                &e->x_recv_grad[slot]);
            e->t.comm += MPI_Wtime() - t0;
            break;
        case OP_RECV_GRAD: st = wait_timed(&e->x_recv_grad[slot], &e->t.wait); break;
        case OP_BACKWARD:
            if (!first && (st = wait_timed(&e->x_send_grad[slot], &e->t.comm))) break;
            t0 = MPI_Wtime();
            stage_backward(e->st, slot, last ? e->dlogits[slot] : e->recv_grad[slot],
                           first ? NULL : e->send_grad[slot], e->seed, (uint32_t)step, (uint32_t)mb);
            e->t.compute += MPI_Wtime() - t0;
            if (!first && mb + e->slots < e->M) st = post_recv_act(e, mb + e->slots);
            break;
        case OP_SEND_GRAD:
            t0 = MPI_Wtime();
            st = comm_isend(e->grid, e->send_grad[slot], (int)in, e->s - 1, mb, COMM_GRAD, 0, &e->x_send_grad[slot]);
            e->t.comm += MPI_Wtime() - t0;
            break;
        default:
            st = pt_fail(PT_ERR_INVALID, "op %d has unknown kind %d", i, op->kind);
        }
    }
    if (st) return pt_wrap(st, "step %ld, %s of micro-batch %d: ", step + 1, e->doing, e->doing_mb);
    e->doing = "waiting for the last sends";
    if ((st = finish_sends(e))) return pt_wrap(st, "step %ld, %s: ", step + 1, e->doing);
    e->doing = "end-of-step reduction";
    e->t.total += MPI_Wtime() - t_start;
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
