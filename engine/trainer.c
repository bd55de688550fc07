/* trainer.c — one rank's run: setup, the training loop, evaluation and the
 * closing report; the step, the report and generation have their own files. */
#include "trainer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "dataset.h"
#include "executor.h"
#include "generate.h"
#include "layout.h"
#include "layers.h"
#include "persist.h"
#include "plan.h"
#include "reduce.h"
#include "report.h"
#include "schedule.h"
#include "simulate.h"
#include "stage.h"
#include "step.h"
#include "stop.h"
#include "trace.h"

/* Everything one rank holds for a run; freed by run_free in reverse order. */
typedef struct {
    layout L;                   /* model, data, partition, schedules */
    stage st[EXEC_MAX_CHUNKS];  /* chunk c: virtual stage c·P + rank */
    executor ex;
    grad_reduce red; /* the gradient sum over micro-batches and replicas */
    step_state step; /* the reduction buffer and the tied-weight group */
    trace_buf trace; /* log.trace: the events of the traced steps */
    double first_step_s; /* seconds of the first step trained (warm-up) */
    FILE *metrics;
    char data_hash[33]; /* dataset_fingerprint of the data read */
    persist_run pr;     /* train: the run directory's lock, the history checkpoints record */
} run;

static void run_free(run *r)
{
    persist_finish(&r->pr);
    trace_free(&r->trace);
    if (r->metrics) fclose(r->metrics);
    step_free(&r->step);
    reduce_free(&r->red);
    executor_free(&r->ex);
    for (int k = 0; k < EXEC_MAX_CHUNKS; k++) stage_free(&r->st[k]);
    layout_free(&r->L);
}

/* Every replica evaluates every D-th block of M / D micro-batches of the
 * held-out data; the sums are taken over the world. */
static pt_status evaluate(run *r, const comm_grid *g, double *loss, double *acc)
{
    r->ex.loss_sum = 0;
    r->ex.correct = r->ex.counted = 0;
    long per = (long)r->ex.M * r->ex.rows;
    exec_times keep = r->ex.t;
    for (long first = g->replica * per; first < r->L.data.n_test; first += g->D * per) {
        pt_status st = executor_eval_step(&r->ex, &r->L.eval_sc.ranks[g->stage], first);
        if (st) return st;
    }
    r->ex.t = keep;
    double v[3] = {r->ex.loss_sum, (double)r->ex.correct, (double)r->ex.counted};
    pt_status st = comm_allreduce_sum(v, 3, g->world, "MPI_Allreduce of the evaluation results");
    if (st) return st;
    *loss = v[2] > 0 ? v[0] / v[2] : NAN;
    *acc = v[2] > 0 ? v[1] / v[2] : NAN;
    return PT_OK;
}

static pt_status setup(run *r, const config *c, const comm_grid *g, int *reporter)
{
    /* hosts may see different files: the ranks agree on one verdict, then
     * check that they all read the same data */
    pt_status st = comm_agree(g, layout_build(&r->L, c, g->P, g->D, comm_max_micro_batches(g)), reporter);
    if (st) return st;
    char data_line[64];
    if ((st = comm_agree(g, dataset_fingerprint(&r->L.data, r->data_hash), reporter))) return st;
    snprintf(data_line, sizeof data_line, "data = %s\n", r->data_hash);
    if ((st = comm_same_text(g, "the data set (a hash of the bytes read from data.path)", data_line,
                             "every host must read the same data: copy the same files to every host, or put "
                             "data.path on a shared file system", reporter))) return st;
    if (c->partition == PARTITION_MEASURED) { /* each host reads its own copy of pipeline.profile */
        int V = r->L.P * r->L.chunks;
        size_t len = 64 + 12 * ((size_t)V + 1);
        char *cuts = malloc(len);
        int pos = cuts ? snprintf(cuts, len, "virtual stages start at layers =") : 0;
        for (int v = 0; cuts && v <= V; v++) pos += snprintf(cuts + pos, len - (size_t)pos, " %d", r->L.cuts[v]);
        st = comm_agree(g, cuts ? PT_OK : pt_fail(PT_ERR_NOMEM, "out of memory"), reporter);
        if (!st)
            st = comm_same_text(g, "the partition measured from pipeline.profile", cuts,
                                "every host must read the same pipeline.profile: copy the same file to every host, "
                                "or put it on a shared file system", reporter);
        free(cuts);
        if (st) return st;
    }
    *reporter = -1;
    int slots[EXEC_MAX_CHUNKS];
    for (int k = 0; k < r->L.chunks; k++) {
        /* stash slots as the lowered lists use them (the executor serves both schedules) */
        int i = g->stage * r->L.chunks + k, vs = k * g->P + g->stage;
        slots[k] = r->L.train_sc.slots[i] > r->L.eval_sc.slots[i] ? r->L.train_sc.slots[i] : r->L.eval_sc.slots[i];
        if ((st = stage_init(&r->st[k], &r->L.m, r->L.cuts[vs], r->L.cuts[vs + 1], config_micro_rows(c), slots[k],
                             c->seed)))
            return st;
        if (sched_kind_splits_backward(c->schedule) && (st = stage_split_backward_init(&r->st[k]))) return st;
    }
    if ((st = executor_init(&r->ex, g, r->st, r->L.chunks, slots, &r->L.data, r->L.M_local, config_micro_rows(c),
                            r->L.data.targets, r->L.m.classes, c->seed)))
        return st;
    executor_set_share(&r->ex, c->micro_batches, g->replica * r->L.M_local);
    if ((st = reduce_init(&r->red, g, r->st, r->L.chunks, c->reduction, r->L.M_local, c->bucket_mb))) return st;
    if (g->D > 1 || c->reduction == REDUCTION_INVARIANT) r->ex.red = &r->red.hooks;
    if ((c->fault_kind == FAULT_ERROR || c->fault_kind == FAULT_CRASH) && c->fault_rank == g->rank)
        r->ex.fault = (exec_fault){c->fault_kind, c->fault_step, c->fault_layer};
    if (c->fault_kind == FAULT_NAN) /* every stage checks whether it holds the layer */
        r->ex.fault = (exec_fault){c->fault_kind, c->fault_step, c->fault_layer};
    executor_install_crash_report(&r->ex);
    if ((st = trace_start(&r->trace, c, g))) return st;
    if (c->log_trace[0]) r->ex.rec = &r->trace.rec;
    return step_init(&r->step, &r->L.m, r->L.cuts, r->st, r->L.chunks, g);
}

/* Is a checkpoint due after `done` steps of a run that stops after `stop`? */
static int checkpoint_due(const config *c, long done, long stop)
{
    if (!c->checkpoint_dir[0]) return 0;
    return done == stop || (c->checkpoint_every > 0 && done % c->checkpoint_every == 0);
}

/* Trains steps [first, stop), or fewer when the ranks agree on a stop signal
 * (stop.h): then *stopped is that signal, the steps end with a checkpoint
 * (when checkpoint.dir is set) and no evaluation. */
static pt_status train_loop(run *r, const config *c, const comm_grid *g, long first, long stop, long *trained,
                            double *seconds, int *stopped, int *reporter)
{
    report_clock k;
    report_clock_start(&k, first, stop);
    for (long step = first; step < stop; step++) {
        *reporter = -1;
        for (int k = 0; k < r->L.chunks; k++) stage_zero_grad(&r->st[k]);
        pt_status st = executor_train_step(&r->ex, &r->L.train_sc.ranks[g->stage], step);
        double t0 = comm_wtime();
        if (!st) st = step_sync_tied(&r->step, &r->L.m, r->st);
        if (!st && r->L.m.tied_head >= 0) executor_note(&r->ex, EXEC_EVENT_TIED, step, t0, comm_wtime());
        if (st) return st;
        double loss, norm;
        int skipped;
        st = step_finish(&r->step, c, g, &r->L.m, r->L.cuts, r->st, &r->ex, step, &loss, &norm, &skipped);
        if (st) {
            if (st == PT_ERR_NONFINITE) *reporter = 0;
            return st;
        }
        if (c->fault_kind == FAULT_DIVERGE && c->fault_rank == g->rank && c->fault_step == step)
            r->st[0].params[0] = nextafterf(r->st[0].params[0], INFINITY); /* one ulp: a silent divergence */
        (*trained)++;
        if (step == first) r->first_step_s = comm_wtime() - k.t_start; /* warm-up: kept out of the step time */
        report_step(&k, r->metrics, c, g, &r->L.data, step, loss, norm);
        /* cheaply, every log_every steps and at the end: do the replicas still agree? */
        if (r->step.stop_signal && step + 1 < stop) { /* agreed by the step's reduction: end here */
            *stopped = r->step.stop_signal;
            stop = step + 1;
        }
        if (g->D > 1 && ((c->log_every > 0 && (step + 1) % c->log_every == 0) || step + 1 == stop) &&
            (st = step_check_replicas(g, r->st, r->L.chunks, step, reporter)))
            return st;
        if (c->eval_every > 0 && (step + 1) % c->eval_every == 0 && step + 1 < stop) {
            double t0 = comm_wtime(), vloss, vacc;
            *reporter = -1;
            if ((st = evaluate(r, g, &vloss, &vacc))) return st;
            report_eval(g, &r->L.data, step + 1, vloss, vacc);
            k.t_start += comm_wtime() - t0; /* evaluation time is not training time */
        }
        if (checkpoint_due(c, step + 1, stop)) {
            double t0 = comm_wtime();
            int crash = c->fault_kind == FAULT_CHECKPOINT_CRASH && c->fault_rank == g->rank &&
                        c->fault_step == step + 1 ? 1 : -1;
            if ((st = persist_save(c, g, &r->pr, &r->L.m, r->L.cuts, r->st, r->L.chunks, step + 1, crash, reporter))) return st;
            executor_note(&r->ex, EXEC_EVENT_CHECKPOINT, step, t0, comm_wtime());
            k.t_start += comm_wtime() - t0; /* checkpoint time is not training time */
        }
    }
    *seconds = comm_wtime() - k.t_start; /* training only: evaluation and checkpoints are left out */
    return PT_OK;
}

/* Times one micro-batch through each chunk of this rank on stash slot 0,
 * which holds the run's last data (median of `reps`): forward, backward or
 * its two halves, the data read on virtual stage 0. Overwrites gradients
 * and slot 0's buffers, never parameters. */
static void time_chunks(run *r, int reps, sim_stage_cost *out)
{
    double t[9];
    if (reps > 9) reps = 9;
    for (int k = 0; k < r->L.chunks; k++) {
        exec_chunk *ch = &r->ex.ch[k];
        stage *s = ch->st;
        float *y = ch->is_last ? ch->logits[0] : ch->send_act[0];
        float *dout = ch->is_last ? ch->dlogits[0] : ch->recv_grad[0];
        float *din = ch->is_first ? NULL : ch->send_grad[0];
        int split = s->wstash != NULL;
        double *dst[4] = {&out[k].fwd, &out[k].bwd, &out[k].bi, &out[k].bw};
        for (int what = 0; what < (split ? 4 : 2); what++) {
            if (split && what == 1) continue;
            for (int i = 0; i < reps; i++) {
                double t0 = comm_wtime();
                if (what == 0) stage_forward(s, 0, y, r->ex.seed, 0, 0, 1);
                else if (what == 1) stage_backward(s, 0, dout, din, r->ex.seed, 0, 0);
                else if (what == 2) (void)stage_backward_input(s, 0, dout, din, r->ex.seed, 0, 0);
                else (void)stage_backward_weight(s, 0, dout, r->ex.seed, 0, 0);
                t[i] = comm_wtime() - t0;
            }
            for (int i = 1; i < reps; i++) /* insertion sort: the median */
                for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
                    double x = t[j];
                    t[j] = t[j - 1];
                    t[j - 1] = x;
                }
            *dst[what] = t[reps / 2];
        }
        if (split) out[k].bwd = out[k].bi + out[k].bw;
        double fold = reduce_fold_seconds(&r->red, k); /* the invariant tree's work after each weight gradient */
        out[k].bwd += fold;
        out[k].bw += fold;
        out[k].act_bytes = (double)r->ex.rows * s->out_dim * sizeof(float);
        out[k].grad_bytes = (double)s->n_params * sizeof(float);
        out[k].buckets = r->red.ch[k].n_buckets;
        /* one all-reduce of the chunk's largest bucket, as the run does it (collective over dp: every
         * replica's rank of this stage times the same buckets in the same order) */
        reduce_chunk *rc = &r->red.ch[k];
        for (int b = 0, big = 0; b < rc->n_buckets; b++) {
            if (rc->len[b] > rc->len[big]) big = b;
            if (b + 1 < rc->n_buckets) continue;
            for (int i = 0; i < 3; i++) { /* the fastest of 3: the first also waits for the slower replica */
                comm_coll cl;
                double t0 = comm_wtime();
                if (!comm_iallreduce_floats(s->grads + rc->off[big], rc->len[big], r->ex.grid->dp,
                                            "MPI_Iallreduce timing", &cl) && !comm_coll_wait(&cl) &&
                    (out[k].reduce == 0 || comm_wtime() - t0 < out[k].reduce))
                    out[k].reduce = comm_wtime() - t0;
                pt_clear_error();
            }
        }
        out[k].stash_bytes = (double)stage_stash_bytes(s) / s->slots;
        stage_zero_grad(s);
    }
}

/* Collective over g->world. The simulator's step time for this run's own
 * layout (replica 0's ranks), from the chunks timed now and the optimizer
 * and data times measured during the `trained` steps; *predicted on rank 0
 * (0 elsewhere, and when it cannot be simulated). */
static pt_status predict_step(run *r, const comm_grid *g, long trained, double *predicted)
{
    enum { F = 11 }; /* fields per chunk */
    double mine[EXEC_MAX_CHUNKS * F] = {0};
    sim_stage_cost sc[EXEC_MAX_CHUNKS];
    memset(sc, 0, sizeof sc);
    *predicted = 0;
    time_chunks(r, 3, sc);
    for (int k = 0; k < r->L.chunks; k++) {
        double *m = mine + k * F;
        m[0] = sc[k].fwd, m[1] = sc[k].bwd, m[2] = sc[k].bi, m[3] = sc[k].bw, m[4] = sc[k].act_bytes;
        m[5] = sc[k].grad_bytes, m[6] = sc[k].buckets, m[7] = sc[k].stash_bytes;
        m[8] = k == 0 && trained > 0 ? r->ex.t.optim / trained : 0;                        /* per step */
        m[9] = k == 0 && trained > 0 ? r->ex.t.data / trained / r->L.M_local : 0;          /* per micro-batch */
        m[10] = sc[k].reduce; /* one bucket's: the largest, scaled below to the mean bucket */
        if (sc[k].reduce > 0 && r->red.ch[k].n_buckets > 0) {
            size_t big = 0;
            for (int b = 0; b < r->red.ch[k].n_buckets; b++) big = r->red.ch[k].len[b] > big ? r->red.ch[k].len[b] : big;
            m[10] *= sc[k].grad_bytes / sizeof(float) / r->red.ch[k].n_buckets / (double)big;
        }
    }
    double *all = g->rank == 0 ? calloc((size_t)g->size * EXEC_MAX_CHUNKS * F, sizeof *all) : NULL;
    if (g->rank == 0 && !all) return pt_fail(PT_ERR_NOMEM, "out of memory");
    pt_status st = comm_gather_doubles(mine, EXEC_MAX_CHUNKS * F, all, 0, g->world, "MPI_Gather of the step timings");
    if (st || g->rank != 0) {
        free(all);
        return st;
    }
    int P = r->L.P, V = P * r->L.chunks;
    sim_stage_cost *vs = calloc((size_t)V, sizeof *vs);
    double *busy = calloc((size_t)P, sizeof *busy), makespan;
    if (vs && busy) {
        for (int v = 0; v < V; v++) {
            const double *m = all + ((size_t)(v % P) * EXEC_MAX_CHUNKS + v / P) * F;
            vs[v] = (sim_stage_cost){m[0], m[1], m[2], m[3], m[8], m[9], m[4], m[5], (int)m[6], m[10], m[7]};
        }
        if (simulate_step(&r->L, vs, SIMULATE_NETWORK, predicted, &makespan, busy, NULL))
            *predicted = 0; /* the lists ran when trained; nothing to report otherwise */
    }
    pt_clear_error();
    free(vs);
    free(busy);
    free(all);
    return PT_OK;
}

pt_status trainer_run(const config *c, const comm_grid *g, const trainer_options *opt, int *reporter)
{
    run r;
    memset(&r, 0, sizeof r);
    if (opt->mode == TRAINER_TRAIN) stop_install(g->rank); /* a signal during start-up stops after step 1 */
    openblas_set_num_threads(c->blas_threads);
    pt_status st = setup(&r, c, g, reporter);
    if (!st) st = report_open_outputs(&r.metrics, c, g, &r.L.data, opt->tensor_hashes, reporter);
    if (st) goto done;
    if ((st = report_grid(c, g))) goto done;
    report_plan(c, g, &r.L.m, r.L.cuts, &r.L.train_sc, &r.L.data);
    if (opt->mode == TRAINER_TRAIN && c->log_plan_compare) {
        /* rank 0 measures alone; the others wait without taking its cores */
        char line[2 * CONFIG_STR_MAX + 512];
        pt_status local = g->rank == 0 ? plan_compare(&r.L, c, g->size, opt->config_path ? opt->config_path : "CONFIG",
                                                      line, sizeof line) : PT_OK;
        if (!local && g->rank == 0 && line[0]) puts(line);
        if (local) pt_clear_error(); /* advice only: never a reason to stop */
        if ((st = comm_barrier_idle(g->world))) goto done;
    }
    if (opt->mode == TRAINER_TRAIN) {
        char command[CONFIG_STR_MAX + 64];
        snprintf(command, sizeof command, "pipetrain train %s", opt->config_path ? opt->config_path : "");
        if ((st = persist_start(&r.pr, c, g, opt->resume, opt->init, r.data_hash, command, reporter))) goto done;
    }

    long first = 0;
    const char *from = opt->resume ? opt->resume : opt->init;
    if (from) {
        if ((st = persist_load(from, g, &r.L.m, r.st, r.L.chunks, opt->resume != NULL, &first, reporter))) goto done;
        long saved = first; /* the checkpoint's own step */
        if (!opt->resume) first = 0; /* --init: weights only, a new run from step 0 */
        if (g->rank == 0) {
            if (opt->mode == TRAINER_GENERATE)
                printf("generating with %s (step %ld)\n", from, saved);
            else if (opt->resume)
                printf("resumed from %s: step %ld\n", from, first);
            else
                printf("initialised from %s: step 0, with the weights of step %ld\n", from, saved);
        }
    }
    long stop = c->steps;
    if (opt->stop_after > 0 && opt->stop_after < stop) stop = opt->stop_after;
    *reporter = 0;
    if (opt->mode == TRAINER_TRAIN && first > c->steps) {
        st = pt_fail(PT_ERR_INVALID, "the checkpoint is at step %ld, past train.steps = %ld", first, c->steps);
        goto done;
    }

    if (opt->mode == TRAINER_GENERATE) {
        *reporter = -1;
        st = generate_text(&r.ex, &r.L.eval_sc.ranks[g->stage], &r.L.m, &r.L.data, g, opt);
        goto done;
    }

    double t_start = comm_wtime(), train_time = 0;
    long trained = 0;
    int stopped = 0;
    if (opt->mode == TRAINER_TRAIN) {
        if ((st = train_loop(&r, c, g, first, stop, &trained, &train_time, &stopped, reporter))) goto done;
        *reporter = -1;
        if ((st = trace_write(&r.trace, c, g))) goto done;
    }
    *reporter = -1;
    if (stopped) { /* asked to end soon: no evaluation or figures, the fingerprint of what was saved */
        char fp[33], where[CKPT_PATH_MAX + 96];
        long at = first + trained;
        if (c->checkpoint_dir[0]) {
            ckpt_step_dir(where, CKPT_PATH_MAX, c->checkpoint_dir, at);
            strcat(where, "; continue with the same command and --resume auto");
        } else {
            snprintf(where, sizeof where, "nothing saved (checkpoint.dir is not set)");
        }
        if (!(st = report_fingerprint(&r.L.m, r.st, r.L.chunks, g, opt->tensor_hashes, fp)) && g->rank == 0) {
            printf("stopped at step %ld on %s: %s%s\n", at, stop_signal_name(stopped),
                   c->checkpoint_dir[0] ? "checkpoint " : "", where);
            printf("parameter fingerprint: %s\n", fp);
            fflush(stdout);
        }
        goto done;
    }
    double *figures = NULL;
    if ((st = report_gather_figures(&r.ex, r.st, r.L.chunks, &r.red, &r.L.m, c, g, trained, &figures))) goto done;
    double theory = schedule_theoretical_bubble(&r.L.train_sc); /* unit costs: F = BI = BW, transfers free */
    if (g->rank == 0 && trained > 0) report_breakdown(c, g, r.L.cuts, figures, theory);
    double predicted = 0; /* the simulator's step time for this layout, checked against the measured one */
    if (trained > 0 && (st = predict_step(&r, g, trained, &predicted))) goto done;
    double test_loss, test_acc;
    char fp[33];
    if (!(st = evaluate(&r, g, &test_loss, &test_acc)))
        st = report_fingerprint(&r.L.m, r.st, r.L.chunks, g, opt->tensor_hashes, fp);
    double throughput = train_time > 0 ? trained * (double)c->batch_size / train_time : 0.0;
    if (!st && g->rank == 0) {
        report_result res = {opt->mode == TRAINER_TRAIN, comm_wtime() - t_start, train_time, throughput,
                             test_loss, test_acc, fp, theory, predicted,
                             trained > 1 ? (train_time - r.first_step_s) / (trained - 1)
                                         : trained > 0 ? train_time / trained : 0};
        st = report_closing(c, g, &r.L.data, r.L.cuts, figures, &res);
    }
    free(figures);
done:
    run_free(&r);
    stop_uninstall();
    return st;
}
