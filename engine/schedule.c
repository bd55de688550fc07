/* schedule.c — the schedule generators (GPipe, 1F1B, forward-only), the
 * validator and the printer (design contract 3).
 *
 * Every rank's op list is its own malloc'd block (`ranks[s].ops`), so a list
 * may be edited or replaced (realloc) before it is validated; schedule_free
 * frees each block and the rank table. */
#include "schedule.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------- */

static const char *const op_names[OP_KIND_COUNT] = {
    [OP_FORWARD] = "forward",     [OP_BACKWARD] = "backward",   [OP_SEND_ACT] = "send_act",
    [OP_RECV_ACT] = "recv_act",   [OP_SEND_GRAD] = "send_grad", [OP_RECV_GRAD] = "recv_grad",
};

static const char *const kind_names[SCHED_KIND_COUNT] = {
    [SCHED_GPIPE] = "gpipe",
    [SCHED_1F1B] = "1f1b",
    [SCHED_FORWARD_ONLY] = "forward",
};

const char *sched_op_name(sched_op_kind k)
{
    if ((unsigned)k >= OP_KIND_COUNT) return "unknown_op";
    return op_names[k];
}

const char *sched_kind_name(sched_kind k)
{
    if ((unsigned)k >= SCHED_KIND_COUNT) return "unknown";
    return kind_names[k];
}

int sched_kind_from_name(const char *name)
{
    if (!name) return -1;
    for (int k = 0; k < SCHED_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

/* ---- generators -------------------------------------------------------- */

/* Largest M (and P) accepted: keeps every op count and index in an int. */
#define SCHED_MAX_MB (1 << 24)
#define SCHED_MAX_STAGES (1 << 16)

static int is_training(sched_kind k) { return k == SCHED_GPIPE || k == SCHED_1F1B; }

/* Ops of stage s: a forward triple (recv, forward, send) has 1 + (s > 0) +
 * (s < P−1) ops, and so has a backward triple. */
static int stage_op_count(sched_kind kind, int P, int M, int s)
{
    int per_mb = 1 + (s > 0) + (s < P - 1);
    return M * per_mb * (is_training(kind) ? 2 : 1);
}

typedef struct {
    sched_op *ops;
    int n;
    int s, P;
} emitter;

static void emit_op(emitter *e, sched_op_kind k, int mb)
{
    e->ops[e->n].kind = (uint8_t)k;
    e->ops[e->n].chunk = 0;
    e->ops[e->n].mb = mb;
    e->n++;
}

static void emit_forward(emitter *e, int mb)
{
    if (e->s > 0) emit_op(e, OP_RECV_ACT, mb);
    emit_op(e, OP_FORWARD, mb);
    if (e->s < e->P - 1) emit_op(e, OP_SEND_ACT, mb);
}

static void emit_backward(emitter *e, int mb)
{
    if (e->s < e->P - 1) emit_op(e, OP_RECV_GRAD, mb);
    emit_op(e, OP_BACKWARD, mb);
    if (e->s > 0) emit_op(e, OP_SEND_GRAD, mb);
}

static void build_stage(emitter *e, sched_kind kind, int M)
{
    int P = e->P, s = e->s;
    switch (kind) {
    case SCHED_GPIPE:
        for (int mb = 0; mb < M; mb++) emit_forward(e, mb);
        for (int mb = 0; mb < M; mb++) emit_backward(e, mb);
        break;
    case SCHED_1F1B: {
        int warm = P - s - 1 < M ? P - s - 1 : M;
        int f = 0, b = 0;
        for (; f < warm; f++) emit_forward(e, f);
        for (; f < M; f++, b++) {
            emit_forward(e, f);
            emit_backward(e, b);
        }
        for (; b < M; b++) emit_backward(e, b);
        break;
    }
    case SCHED_FORWARD_ONLY:
    default:
        for (int mb = 0; mb < M; mb++) emit_forward(e, mb);
        break;
    }
}

pt_status schedule_build(schedule *sc, sched_kind kind, int P, int M)
{
    memset(sc, 0, sizeof *sc);
    if ((unsigned)kind >= SCHED_KIND_COUNT)
        return pt_fail(PT_ERR_INVALID, "schedule_build: unknown schedule kind %d (expected 0..%d)", (int)kind,
                       SCHED_KIND_COUNT - 1);
    if (P < 1 || P > SCHED_MAX_STAGES)
        return pt_fail(PT_ERR_INVALID, "schedule %s: P = %d stages, expected 1..%d", kind_names[kind], P,
                       SCHED_MAX_STAGES);
    if (M < 1 || M > SCHED_MAX_MB)
        return pt_fail(PT_ERR_INVALID, "schedule %s P=%d: M = %d micro-batches, expected 1..%d", kind_names[kind],
                       P, M, SCHED_MAX_MB);
    sc->ranks = calloc((size_t)P, sizeof *sc->ranks);
    if (!sc->ranks)
        return pt_fail(PT_ERR_NOMEM, "schedule %s P=%d M=%d: cannot allocate %d op lists", kind_names[kind], P, M,
                       P);
    sc->kind = kind;
    sc->P = P;
    sc->M = M;
    for (int s = 0; s < P; s++) {
        int n = stage_op_count(kind, P, M, s);
        sched_op *ops = malloc((size_t)n * sizeof *ops);
        if (!ops) {
            schedule_free(sc);
            return pt_fail(PT_ERR_NOMEM, "schedule %s P=%d M=%d: cannot allocate %d ops for stage %d",
                           kind_names[kind], P, M, n, s);
        }
        emitter e = {.ops = ops, .n = 0, .s = s, .P = P};
        build_stage(&e, kind, M);
        sc->ranks[s].ops = ops;
        sc->ranks[s].n_ops = e.n; /* == n */
    }
    return PT_OK;
}

void schedule_free(schedule *sc)
{
    if (!sc) return;
    if (sc->ranks)
        for (int s = 0; s < sc->P; s++) free(sc->ranks[s].ops);
    free(sc->ranks);
    memset(sc, 0, sizeof *sc);
}

int schedule_stash_bound(sched_kind kind, int P, int M, int s)
{
    if (P < 1 || M < 1 || s < 0 || s >= P) return 0;
    switch (kind) {
    case SCHED_GPIPE: return M;
    case SCHED_1F1B: return P - s < M ? P - s : M;
    case SCHED_FORWARD_ONLY: return 1;
    default: return 0;
    }
}

/* ---- validator --------------------------------------------------------- */

/* The error message is built in pieces (the deadlock report lists several
 * stages), then recorded with one pt_fail. */
typedef struct {
    char buf[2000];
    size_t len;
} msgbuf;

static void msg_add(msgbuf *m, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void msg_add(msgbuf *m, const char *fmt, ...)
{
    if (m->len >= sizeof m->buf - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(m->buf + m->len, sizeof m->buf - m->len, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    m->len += (size_t)k;
    if (m->len > sizeof m->buf - 1) m->len = sizeof m->buf - 1;
}

typedef struct {
    const schedule *sc;
    int P, M;
    const char *kname;
    int *pos; /* pos[(s * OP_KIND_COUNT + kind) * M + mb]: op index on stage s, −1 when absent */
} vstate;

static int *pos_at(const vstate *v, int s, int kind, int mb)
{
    return &v->pos[((size_t)s * OP_KIND_COUNT + (size_t)kind) * (size_t)v->M + (size_t)mb];
}

/* "schedule 1f1b P=4 M=8: stage 2 op 7 (backward mb=3): " + the rest. */
static pt_status fail_at(const vstate *v, int s, int i, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static pt_status fail_at(const vstate *v, int s, int i, const char *fmt, ...)
{
    msgbuf m = {.len = 0};
    msg_add(&m, "schedule %s P=%d M=%d: stage %d op %d ", v->kname, v->P, v->M, s, i);
    const sched_list *l = &v->sc->ranks[s];
    if (i < l->n_ops) {
        const sched_op *o = &l->ops[i];
        msg_add(&m, "(%s mb=%d): ", sched_op_name((sched_op_kind)o->kind), (int)o->mb);
    } else {
        msg_add(&m, "(end of list): ");
    }
    va_list ap;
    va_start(ap, fmt);
    if (m.len < sizeof m.buf - 1) {
        int k = vsnprintf(m.buf + m.len, sizeof m.buf - m.len, fmt, ap);
        if (k > 0) m.len += (size_t)k;
    }
    va_end(ap);
    return pt_fail(PT_ERR_INVALID, "%s", m.buf);
}

/* The neighbour an op talks to, and the op kind it is matched with there. */
static int peer_stage(int s, int kind)
{
    return (kind == OP_SEND_ACT || kind == OP_RECV_GRAD) ? s + 1 : s - 1;
}

static int peer_kind(int kind)
{
    switch (kind) {
    case OP_SEND_ACT: return OP_RECV_ACT;
    case OP_RECV_ACT: return OP_SEND_ACT;
    case OP_SEND_GRAD: return OP_RECV_GRAD;
    case OP_RECV_GRAD: return OP_SEND_GRAD;
    default: return -1;
    }
}

/* Pass 1, one stage: op kinds, micro-batch range, neighbours, duplicates,
 * the order of each micro-batch's ops on the stage, backward order and the
 * stash bound. Fills pos[s][..][..]. */
static pt_status check_stage(vstate *v, int s, int bound)
{
    const sched_list *l = &v->sc->ranks[s];
    int P = v->P, M = v->M;
    int training = is_training(v->sc->kind);
    int last = s == P - 1;
    int next_bwd = 0, stash = 0;
    for (int i = 0; i < l->n_ops; i++) {
        const sched_op *o = &l->ops[i];
        int k = o->kind, mb = o->mb;
        if (k >= OP_KIND_COUNT)
            return fail_at(v, s, i, "unknown op kind %d, expected 0..%d", k, OP_KIND_COUNT - 1);
        if (mb < 0 || mb >= M)
            return fail_at(v, s, i, "micro-batch out of range, expected 0..%d", M - 1);
        if (o->chunk != 0)
            return fail_at(v, s, i, "chunk %d, expected 0 (these schedules have one model chunk per rank)",
                           (int)o->chunk);
        if ((k == OP_RECV_ACT || k == OP_SEND_GRAD) && s == 0)
            return fail_at(v, s, i, "stage 0 has no previous stage to talk to, expected no %s on it",
                           sched_op_name((sched_op_kind)k));
        if ((k == OP_SEND_ACT || k == OP_RECV_GRAD) && last)
            return fail_at(v, s, i, "stage %d is the last stage and has no next stage, expected no %s on it", s,
                           sched_op_name((sched_op_kind)k));
        if (!training && (k == OP_BACKWARD || k == OP_SEND_GRAD || k == OP_RECV_GRAD))
            return fail_at(v, s, i, "a forward-only schedule has no backward-side ops");
        int *p = pos_at(v, s, k, mb);
        if (*p >= 0)
            return fail_at(v, s, i, "duplicate: %s mb=%d already at op %d, expected exactly one per micro-batch",
                           sched_op_name((sched_op_kind)k), mb, *p);
        switch (k) {
        case OP_FORWARD:
            if (s > 0 && *pos_at(v, s, OP_RECV_ACT, mb) < 0)
                return fail_at(v, s, i, "no recv_act mb=%d before it, expected the activation from stage %d first",
                               mb, s - 1);
            stash++;
            if (stash > bound)
                return fail_at(v, s, i, "stash holds %d micro-batches, exceeds the bound %d", stash, bound);
            if (!training && last) stash--; /* nothing to send: released at once */
            break;
        case OP_SEND_ACT:
            if (*pos_at(v, s, OP_FORWARD, mb) < 0)
                return fail_at(v, s, i, "forward mb=%d has not run yet, expected it before its send_act", mb);
            if (!training) stash--;
            break;
        case OP_BACKWARD:
            if (*pos_at(v, s, OP_FORWARD, mb) < 0)
                return fail_at(v, s, i, "forward mb=%d has not run yet, expected forward before backward", mb);
            if (!last && *pos_at(v, s, OP_RECV_GRAD, mb) < 0)
                return fail_at(v, s, i, "no recv_grad mb=%d before it, expected the gradient from stage %d first",
                               mb, s + 1);
            if (mb != next_bwd)
                return fail_at(v, s, i, "backwards run in micro-batch order 0..%d, expected backward mb=%d here",
                               M - 1, next_bwd);
            next_bwd++;
            stash--;
            break;
        case OP_SEND_GRAD:
            if (*pos_at(v, s, OP_BACKWARD, mb) < 0)
                return fail_at(v, s, i, "backward mb=%d has not run yet, expected it before its send_grad", mb);
            break;
        default: /* receives wait on the neighbour only */
            break;
        }
        *p = i;
    }
    return PT_OK;
}

/* Pass 2, one stage: every op the schedule needs is there (a present op
 * appears once, pass 1), so each send has its receive and the other way
 * round. Called after pass 1 has run over all stages. */
static pt_status check_complete(vstate *v, int s)
{
    int P = v->P, M = v->M;
    int n = v->sc->ranks[s].n_ops;
    int training = is_training(v->sc->kind);
    static const int order[OP_KIND_COUNT] = {OP_FORWARD, OP_RECV_ACT,  OP_SEND_ACT,
                                             OP_BACKWARD, OP_RECV_GRAD, OP_SEND_GRAD};
    for (int mb = 0; mb < M; mb++) {
        for (int j = 0; j < OP_KIND_COUNT; j++) {
            int k = order[j];
            int needed;
            switch (k) {
            case OP_FORWARD: needed = 1; break;
            case OP_RECV_ACT: needed = s > 0; break;
            case OP_SEND_ACT: needed = s < P - 1; break;
            case OP_BACKWARD: needed = training; break;
            case OP_RECV_GRAD: needed = training && s < P - 1; break;
            default: needed = training && s > 0; break; /* OP_SEND_GRAD */
            }
            if (!needed || *pos_at(v, s, k, mb) >= 0) continue;
            const char *kn = sched_op_name((sched_op_kind)k);
            if (k == OP_FORWARD)
                return fail_at(v, s, n, "forward mb=%d never runs, expected exactly one forward per micro-batch", mb);
            if (k == OP_BACKWARD)
                return fail_at(v, s, *pos_at(v, s, OP_FORWARD, mb),
                               "backward mb=%d never runs, expected exactly one after this forward", mb);
            int ps = peer_stage(s, k);
            int pi = *pos_at(v, ps, peer_kind(k), mb);
            char peer[96];
            if (pi >= 0)
                snprintf(peer, sizeof peer, "stage %d's %s mb=%d at its op %d", ps,
                         sched_op_name((sched_op_kind)peer_kind(k)), mb, pi);
            else
                snprintf(peer, sizeof peer, "stage %d's %s mb=%d (missing too)", ps,
                         sched_op_name((sched_op_kind)peer_kind(k)), mb);
            if (k == OP_SEND_ACT || k == OP_SEND_GRAD) {
                int src = *pos_at(v, s, k == OP_SEND_ACT ? OP_FORWARD : OP_BACKWARD, mb);
                return fail_at(v, s, src, "no %s mb=%d follows it, expected one to match %s", kn, mb, peer);
            }
            /* a receive missing while its consumer is absent too (pass 1
             * rejects a consumer without its receive) */
            return fail_at(v, s, n, "no %s mb=%d on this stage, expected one to match %s", kn, mb, peer);
        }
    }
    return PT_OK;
}

/* Pass 3: runs all lists together. A send always completes; a receive
 * completes once the neighbour has issued the matching send (pos of that
 * send < the neighbour's program counter). Each stage runs until it blocks;
 * a send wakes the neighbour it targets. O(total ops). */
static pt_status check_deadlock(vstate *v)
{
    int P = v->P;
    const schedule *sc = v->sc;
    int *pc = calloc((size_t)P, sizeof *pc);
    int *queue = malloc((size_t)P * sizeof *queue);
    char *queued = calloc((size_t)P, 1);
    if (!pc || !queue || !queued) {
        free(pc);
        free(queue);
        free(queued);
        return pt_fail(PT_ERR_NOMEM, "schedule %s P=%d M=%d: cannot allocate the deadlock check", v->kname, P,
                       v->M);
    }
    /* the queue is a ring of at most P entries (a stage is queued at most once) */
    int head = 0, count = 0;
    for (int s = 0; s < P; s++) {
        queue[s] = s;
        queued[s] = 1;
    }
    count = P;
    while (count > 0) {
        int s = queue[head];
        head = (head + 1) % P;
        count--;
        queued[s] = 0;
        const sched_list *l = &sc->ranks[s];
        while (pc[s] < l->n_ops) {
            const sched_op *o = &l->ops[pc[s]];
            int k = o->kind;
            if (k == OP_RECV_ACT || k == OP_RECV_GRAD) {
                int ps = peer_stage(s, k);
                int si = *pos_at(v, ps, peer_kind(k), o->mb);
                if (si >= pc[ps]) break; /* the send is not issued yet */
            }
            pc[s]++;
            if (k == OP_SEND_ACT || k == OP_SEND_GRAD) {
                int ps = peer_stage(s, k);
                if (!queued[ps]) {
                    queue[(head + count) % P] = ps;
                    count++;
                    queued[ps] = 1;
                }
            }
        }
    }
    int blocked = 0;
    for (int s = 0; s < P; s++) blocked += pc[s] < sc->ranks[s].n_ops;
    pt_status st = PT_OK;
    if (blocked) {
        msgbuf m = {.len = 0};
        msg_add(&m, "schedule %s P=%d M=%d: deadlock, %d of %d stages blocked:", v->kname, P, v->M, blocked, P);
        for (int s = 0; s < P; s++) {
            if (pc[s] >= sc->ranks[s].n_ops) continue;
            const sched_op *o = &sc->ranks[s].ops[pc[s]];
            int k = o->kind, ps = peer_stage(s, k), pk = peer_kind(k);
            int si = *pos_at(v, ps, pk, o->mb);
            msg_add(&m, " stage %d op %d (%s mb=%d) waits for stage %d's %s mb=%d at its op %d, but stage %d ", s,
                    pc[s], sched_op_name((sched_op_kind)k), (int)o->mb, ps, sched_op_name((sched_op_kind)pk),
                    (int)o->mb, si, ps);
            if (pc[ps] < sc->ranks[ps].n_ops)
                msg_add(&m, "is stuck at its op %d;", pc[ps]);
            else
                msg_add(&m, "has finished;");
        }
        msg_add(&m, " expected every list to run to its end");
        st = pt_fail(PT_ERR_INVALID, "%s", m.buf);
    }
    free(pc);
    free(queue);
    free(queued);
    return st;
}

pt_status schedule_validate(const schedule *sc, const int *stash_bound)
{
    if (!sc) return pt_fail(PT_ERR_INVALID, "schedule_validate: schedule is NULL");
    if ((unsigned)sc->kind >= SCHED_KIND_COUNT)
        return pt_fail(PT_ERR_INVALID, "schedule_validate: unknown schedule kind %d (expected 0..%d)", (int)sc->kind,
                       SCHED_KIND_COUNT - 1);
    const char *kname = kind_names[sc->kind];
    if (sc->P < 1 || sc->P > SCHED_MAX_STAGES || sc->M < 1 || sc->M > SCHED_MAX_MB || !sc->ranks)
        return pt_fail(PT_ERR_INVALID, "schedule %s P=%d M=%d: expected P in 1..%d, M in 1..%d and %d op lists%s",
                       kname, sc->P, sc->M, SCHED_MAX_STAGES, SCHED_MAX_MB, sc->P, sc->ranks ? "" : " (ranks is NULL)");
    for (int s = 0; s < sc->P; s++) {
        const sched_list *l = &sc->ranks[s];
        if (l->n_ops < 0 || (l->n_ops > 0 && !l->ops))
            return pt_fail(PT_ERR_INVALID, "schedule %s P=%d M=%d: stage %d has n_ops = %d and ops = %s", kname,
                           sc->P, sc->M, s, l->n_ops, l->ops ? "set" : "NULL");
    }
    vstate v = {.sc = sc, .P = sc->P, .M = sc->M, .kname = kname};
    size_t npos = (size_t)sc->P * OP_KIND_COUNT * (size_t)sc->M;
    v.pos = malloc(npos * sizeof *v.pos);
    if (!v.pos)
        return pt_fail(PT_ERR_NOMEM, "schedule %s P=%d M=%d: cannot allocate the validator's index (%zu entries)",
                       kname, sc->P, sc->M, npos);
    for (size_t i = 0; i < npos; i++) v.pos[i] = -1;

    pt_status st = PT_OK;
    for (int s = 0; s < sc->P && st == PT_OK; s++) {
        int bound = stash_bound ? stash_bound[s] : schedule_stash_bound(sc->kind, sc->P, sc->M, s);
        st = check_stage(&v, s, bound);
    }
    for (int s = 0; s < sc->P && st == PT_OK; s++) st = check_complete(&v, s);
    if (st == PT_OK) st = check_deadlock(&v);
    free(v.pos);
    return st;
}

/* ---- printing ---------------------------------------------------------- */

void schedule_print(const schedule *sc, void (*emit)(void *ctx, const char *line), void *ctx)
{
    if (!sc || !sc->ranks || !emit) return;
    char line[96];
    for (int s = 0; s < sc->P; s++) {
        const sched_list *l = &sc->ranks[s];
        for (int i = 0; i < l->n_ops; i++) {
            snprintf(line, sizeof line, "s%d %d %s mb=%d", s, i, sched_op_name((sched_op_kind)l->ops[i].kind),
                     (int)l->ops[i].mb);
            emit(ctx, line);
        }
    }
}
