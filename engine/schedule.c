/* schedule.c — the schedule IR: generators (GPipe, 1F1B, ZB-H1, forward-only), the
 * lowering pass that adds communication and stash slots, the validator of
 * lowered lists and the printer (see schedule.h, design contract 3).
 *
 * Every rank's op list is its own malloc'd block (`ranks[r].ops`), so a list
 * may be edited or replaced (realloc) before it is lowered or validated;
 * schedule_free frees each block, the rank table and the slot table. */
#include "schedule.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------- */

static const char *const op_names[OP_KIND_COUNT] = {
    [OP_FORWARD] = "forward",
    [OP_BACKWARD] = "backward",
    [OP_BACKWARD_INPUT] = "backward_input",
    [OP_BACKWARD_WEIGHT] = "backward_weight",
    [OP_POST_RECV_ACT] = "post_recv_act",
    [OP_WAIT_RECV_ACT] = "wait_recv_act",
    [OP_SEND_ACT] = "send_act",
    [OP_WAIT_SEND_ACT] = "wait_send_act",
    [OP_POST_RECV_GRAD] = "post_recv_grad",
    [OP_WAIT_RECV_GRAD] = "wait_recv_grad",
    [OP_SEND_GRAD] = "send_grad",
    [OP_WAIT_SEND_GRAD] = "wait_send_grad",
    [OP_REDUCE_GRAD_START] = "reduce_grad_start",
    [OP_REDUCE_GRAD_WAIT] = "reduce_grad_wait",
};

static const char *const kind_names[SCHED_KIND_COUNT] = {
    [SCHED_GPIPE] = "gpipe",
    [SCHED_1F1B] = "1f1b",
    [SCHED_FORWARD_ONLY] = "forward",
    [SCHED_ZBH1] = "zbh1",
    [SCHED_INTERLEAVED] = "interleaved",
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

int sched_op_is_compute(sched_op_kind k) { return k <= OP_BACKWARD_WEIGHT; }

int sched_op_is_reduce(int k) { return k == OP_REDUCE_GRAD_START || k == OP_REDUCE_GRAD_WAIT; }

int sched_kind_splits_backward(sched_kind k) { return k == SCHED_ZBH1; }

/* Largest M, P and chunk count accepted: keeps every op count, index and
 * slot in its field. */
#define SCHED_MAX_MB (1 << 20)
#define SCHED_MAX_RANKS (1 << 16)
#define SCHED_MAX_CHUNKS 8

/* ---- the virtual-stage layout ------------------------------------------ */

/* Chunk c of rank r is virtual stage c·P + r; its neighbours: */
typedef struct {
    int has_prev, has_next;
    int prev_rank, prev_chunk, next_rank, next_chunk;
} vneighbours;

static vneighbours neighbours(int P, int chunks, int r, int c)
{
    int vs = c * P + r, V = chunks * P;
    vneighbours n = {vs > 0, vs < V - 1, (r + P - 1) % P, c - (r == 0), (r + 1) % P, c + (r == P - 1)};
    return n;
}

/* ---- generators -------------------------------------------------------- */

typedef struct {
    sched_op *ops;
    int n, cap;
} oplist;

static int push(oplist *l, sched_op_kind k, int mb, int chunk, int slot)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        sched_op *p = realloc(l->ops, (size_t)cap * sizeof *p);
        if (!p) return -1;
        l->ops = p;
        l->cap = cap;
    }
    l->ops[l->n++] = (sched_op){(uint8_t)k, (uint8_t)chunk, (int16_t)slot, mb};
    return 0;
}

static int build_rank(oplist *l, sched_kind kind, int P, int v, int M, int r)
{
    int e = 0;
    switch (kind) {
    case SCHED_INTERLEAVED: {
        /* Megatron's order: k-th forward of this rank is micro-batch
         * (k/(P·v))·P + k mod P of chunk (k/P) mod v; backwards reverse the chunks */
        int N = M * v, warm = v == 1 ? P - r - 1 : (P - r - 1) * 2 + (v - 1) * P;
        if (warm > N) warm = N;
        int f = 0;
        for (; f < warm; f++) e |= push(l, OP_FORWARD, f / (P * v) * P + f % P, f / P % v, -1);
        for (int b = 0; b < N; b++) {
            if (f < N) {
                e |= push(l, OP_FORWARD, f / (P * v) * P + f % P, f / P % v, -1);
                f++;
            }
            e |= push(l, OP_BACKWARD, b / (P * v) * P + b % P, v - 1 - b / P % v, -1);
        }
        break;
    }
    case SCHED_GPIPE:
        for (int mb = 0; mb < M; mb++) e |= push(l, OP_FORWARD, mb, 0, -1);
        for (int mb = 0; mb < M; mb++) e |= push(l, OP_BACKWARD, mb, 0, -1);
        break;
    case SCHED_1F1B:
    case SCHED_ZBH1: {
        /* ZB-H1: rank r runs BW r backwards late, so every rank holds up to P
         * micro-batches, 1F1B's peak (rank 0's); its W fill the waits */
        int warm = P - r - 1 < M ? P - r - 1 : M, split = kind == SCHED_ZBH1;
        int f = 0, b = 0, w = 0;
        for (; f < warm; f++) e |= push(l, OP_FORWARD, f, 0, -1);
        for (; b < M; b++) {
            if (f < M) e |= push(l, OP_FORWARD, f++, 0, -1);
            e |= push(l, split ? OP_BACKWARD_INPUT : OP_BACKWARD, b, 0, -1);
            for (; split && w < b + 1 - r; w++) e |= push(l, OP_BACKWARD_WEIGHT, w, 0, -1);
        }
        for (; split && w < M; w++) e |= push(l, OP_BACKWARD_WEIGHT, w, 0, -1);
        break;
    }
    case SCHED_FORWARD_ONLY:
    default: /* groups of P micro-batches go round the chunks (the last group may be smaller) */
        for (int g0 = 0; g0 < M; g0 += P)
            for (int c = 0; c < v; c++)
                for (int mb = g0; mb < g0 + P && mb < M; mb++) e |= push(l, OP_FORWARD, mb, c, -1);
        break;
    }
    return e;
}

pt_status schedule_build(schedule *sc, sched_kind kind, int P, int M)
{
    return schedule_build_grid(sc, kind, P, 1, M, NULL);
}

pt_status schedule_build_chunks(schedule *sc, sched_kind kind, int P, int chunks, int M)
{
    return schedule_build_grid(sc, kind, P, chunks, M, NULL);
}

pt_status schedule_build_grid(schedule *sc, sched_kind kind, int P, int chunks, int M, const int *buckets)
{
    memset(sc, 0, sizeof *sc);
    if ((unsigned)kind >= SCHED_KIND_COUNT)
        return pt_fail(PT_ERR_INVALID, "schedule_build: unknown schedule kind %d (expected 0..%d)", (int)kind,
                       SCHED_KIND_COUNT - 1);
    if (P < 1 || P > SCHED_MAX_RANKS)
        return pt_fail(PT_ERR_INVALID, "schedule %s: P = %d ranks, expected 1..%d", kind_names[kind], P,
                       SCHED_MAX_RANKS);
    if (M < 1 || M > SCHED_MAX_MB)
        return pt_fail(PT_ERR_INVALID, "schedule %s P=%d: M = %d micro-batches, expected 1..%d", kind_names[kind],
                       P, M, SCHED_MAX_MB);
    int many = kind == SCHED_INTERLEAVED || kind == SCHED_FORWARD_ONLY;
    if (chunks < 1 || chunks > SCHED_MAX_CHUNKS || (!many && chunks != 1))
        return pt_fail(PT_ERR_INVALID, "schedule %s P=%d M=%d: %d model chunks per rank, expected %s", kind_names[kind],
                       P, M, chunks, many ? "1..8" : "1 (only the interleaved schedule has more)");
    if (kind == SCHED_INTERLEAVED && chunks > 1 && M % P != 0)
        return pt_fail(PT_ERR_INVALID, "schedule interleaved P=%d: M = %d micro-batches is not a multiple of the %d "
                       "ranks (it goes round the chunks in groups of P micro-batches): use M = %d or %d", P, M, P,
                       M / P * P > 0 ? M / P * P : P, (M / P + 1) * P);
    sc->ranks = calloc((size_t)P, sizeof *sc->ranks);
    if (!sc->ranks)
        return pt_fail(PT_ERR_NOMEM, "schedule %s P=%d M=%d: cannot allocate %d op lists", kind_names[kind], P, M,
                       P);
    sc->kind = kind;
    sc->P = P;
    sc->chunks = chunks;
    sc->M = M;
    if (buckets) {
        for (int i = 0; i < P * chunks; i++)
            if (buckets[i] < 0 || buckets[i] > INT16_MAX) {
                schedule_free(sc);
                return pt_fail(PT_ERR_INVALID, "schedule %s P=%d M=%d: %d gradient buckets on rank %d chunk %d, "
                               "expected 0..%d", kind_names[kind], P, M, buckets[i], i / chunks, i % chunks, INT16_MAX);
            }
        sc->buckets = malloc((size_t)P * chunks * sizeof *sc->buckets);
        if (!sc->buckets) {
            schedule_free(sc);
            return pt_fail(PT_ERR_NOMEM, "schedule %s: out of memory", kind_names[kind]);
        }
        memcpy(sc->buckets, buckets, (size_t)P * chunks * sizeof *sc->buckets);
    }
    for (int r = 0; r < P; r++) {
        oplist l = {0};
        int e = build_rank(&l, kind, P, chunks, M, r);
        sc->ranks[r].ops = l.ops;
        sc->ranks[r].n_ops = l.n;
        if (e) {
            schedule_free(sc);
            return pt_fail(PT_ERR_NOMEM, "schedule %s P=%d M=%d: cannot allocate the ops of rank %d",
                           kind_names[kind], P, M, r);
        }
    }
    pt_status st = schedule_lower(sc, kind == SCHED_FORWARD_ONLY ? 2 : 1);
    if (st) schedule_free(sc);
    return st;
}

void schedule_free(schedule *sc)
{
    if (!sc) return;
    if (sc->ranks)
        for (int r = 0; r < sc->P; r++) free(sc->ranks[r].ops);
    free(sc->ranks);
    free(sc->slots);
    free(sc->buckets);
    memset(sc, 0, sizeof *sc);
}

int schedule_stash_theory(sched_kind kind, int P, int M, int r)
{
    if (P < 1 || M < 1 || r < 0 || r >= P) return 0;
    switch (kind) {
    case SCHED_GPIPE: return M;
    case SCHED_1F1B:
    case SCHED_INTERLEAVED: return P - r < M ? P - r : M; /* (one chunk) */
    case SCHED_ZBH1: return P < M ? P : M;
    case SCHED_FORWARD_ONLY: return 1;
    default: return 0;
    }
}

/* ---- lowering ------------------------------------------------------------ */

/* Per (rank, chunk) facts the lowering and the validator need. */
typedef struct {
    int training; /* the list backwards this chunk (else it is forward-only) */
    int split;    /* ...with BI and BW */
} chunk_facts;

/* Does op o release its micro-batch's stash slot? */
static int releases(const sched_op *o, const chunk_facts *f)
{
    if (!f->training) return o->kind == OP_FORWARD;
    return o->kind == OP_BACKWARD || o->kind == OP_BACKWARD_WEIGHT;
}

static pt_status lower_fail(const schedule *sc, int r, int i, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static pt_status lower_fail(const schedule *sc, int r, int i, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const sched_op *o = &sc->ranks[r].ops[i];
    return pt_fail(PT_ERR_INVALID, "schedule %s P=%d M=%d: lowering rank %d op %d (%s mb=%d chunk=%d): %s",
                   sched_kind_name(sc->kind), sc->P, sc->M, r, i, sched_op_name((sched_op_kind)o->kind), (int)o->mb,
                   (int)o->chunk, msg);
}

/* Lowers rank r's compute list into out; slots[c] receives each chunk's slot count. */
static pt_status lower_rank(const schedule *sc, int r, int min_slots, oplist *out, int *slots)
{
    const sched_list *l = &sc->ranks[r];
    int P = sc->P, C = sc->chunks, M = sc->M;
    chunk_facts facts[SCHED_MAX_CHUNKS] = {{0}};
    int next_f[SCHED_MAX_CHUNKS] = {0}, next_rel[SCHED_MAX_CHUNKS] = {0}, live[SCHED_MAX_CHUNKS] = {0};
    int peak[SCHED_MAX_CHUNKS] = {0};
    for (int i = 0; i < l->n_ops; i++) {
        const sched_op *o = &l->ops[i];
        if (o->kind > OP_BACKWARD_WEIGHT)
            return lower_fail(sc, r, i, "only compute ops (forward, backward, backward_input, backward_weight) "
                                        "can be lowered; is the list lowered already?");
        if (o->chunk >= C) return lower_fail(sc, r, i, "chunk out of range, expected 0..%d", C - 1);
        if (o->mb < 0 || o->mb >= M) return lower_fail(sc, r, i, "micro-batch out of range, expected 0..%d", M - 1);
        if (o->kind != OP_FORWARD) facts[o->chunk].training = 1;
        if (o->kind == OP_BACKWARD_INPUT || o->kind == OP_BACKWARD_WEIGHT) facts[o->chunk].split = 1;
    }
    /* forwards and releases in micro-batch order; the peak of micro-batches held */
    for (int i = 0; i < l->n_ops; i++) {
        const sched_op *o = &l->ops[i];
        int c = o->chunk;
        if (o->kind == OP_FORWARD) {
            if (o->mb != next_f[c])
                return lower_fail(sc, r, i, "forwards of chunk %d must run in micro-batch order, expected "
                                            "forward mb=%d here", c, next_f[c]);
            next_f[c]++;
            if (++live[c] > peak[c]) peak[c] = live[c];
        }
        if (releases(o, &facts[c])) {
            if (o->mb != next_rel[c])
                return lower_fail(sc, r, i, "the ops that release a micro-batch's stash (%s) must run in "
                                            "micro-batch order, expected mb=%d here",
                                  facts[c].training ? (facts[c].split ? "backward_weight" : "backward") : "forward",
                                  next_rel[c]);
            if (o->mb >= next_f[c])
                return lower_fail(sc, r, i, "forward mb=%d has not run yet, expected it first", o->mb);
            next_rel[c]++;
            live[c]--;
        }
    }
    for (int c = 0; c < C; c++) {
        int s = peak[c] > min_slots ? peak[c] : min_slots;
        slots[c] = s < M ? s : M;
        if (slots[c] < 1) slots[c] = 1;
    }
    /* pending sends per chunk and slot: the micro-batch whose send is not yet completed, −1 none */
    int cap = 0;
    for (int c = 0; c < C; c++) cap += slots[c];
    int *pend = malloc((size_t)cap * 2 * sizeof *pend), *base = calloc((size_t)C, sizeof *base);
    if (!pend || !base) {
        free(pend);
        free(base);
        return pt_fail(PT_ERR_NOMEM, "schedule lowering: out of memory");
    }
    for (int c = 1; c < C; c++) base[c] = base[c - 1] + slots[c - 1];
    for (int k = 0; k < 2 * cap; k++) pend[k] = -1;
#define PEND_ACT(c, s) pend[2 * (base[c] + (s))]
#define PEND_GRAD(c, s) pend[2 * (base[c] + (s)) + 1]
    int e = 0;
    /* the first receives: as many as there are slots */
    for (int c = 0; c < C; c++) {
        vneighbours nb = neighbours(P, C, r, c);
        for (int mb = 0; nb.has_prev && mb < slots[c]; mb++) e |= push(out, OP_POST_RECV_ACT, mb, c, mb % slots[c]);
    }
    for (int i = 0; i < l->n_ops && !e; i++) {
        const sched_op *o = &l->ops[i];
        int c = o->chunk, mb = o->mb, S = slots[c], slot = mb % S;
        vneighbours nb = neighbours(P, C, r, c);
        switch ((sched_op_kind)o->kind) {
        case OP_FORWARD:
            if (nb.has_next && PEND_ACT(c, slot) >= 0) {
                e |= push(out, OP_WAIT_SEND_ACT, PEND_ACT(c, slot), c, slot);
                PEND_ACT(c, slot) = -1;
            }
            if (nb.has_prev) e |= push(out, OP_WAIT_RECV_ACT, mb, c, slot);
            e |= push(out, OP_FORWARD, mb, c, slot);
            if (nb.has_next) {
                e |= push(out, OP_SEND_ACT, mb, c, slot);
                PEND_ACT(c, slot) = mb;
                if (facts[c].training) e |= push(out, OP_POST_RECV_GRAD, mb, c, slot);
            }
            break;
        case OP_BACKWARD:
        case OP_BACKWARD_INPUT:
            if (nb.has_prev && PEND_GRAD(c, slot) >= 0) {
                e |= push(out, OP_WAIT_SEND_GRAD, PEND_GRAD(c, slot), c, slot);
                PEND_GRAD(c, slot) = -1;
            }
            if (nb.has_next) e |= push(out, OP_WAIT_RECV_GRAD, mb, c, slot);
            e |= push(out, (sched_op_kind)o->kind, mb, c, slot);
            if (nb.has_prev) {
                e |= push(out, OP_SEND_GRAD, mb, c, slot);
                PEND_GRAD(c, slot) = mb;
            }
            break;
        case OP_BACKWARD_WEIGHT:
            e |= push(out, OP_BACKWARD_WEIGHT, mb, c, slot);
            break;
        default:
            break;
        }
        /* the slot is free: post the receive of the micro-batch that will use it next */
        if (releases(o, &facts[c]) && nb.has_prev && mb + S < M) e |= push(out, OP_POST_RECV_ACT, mb + S, c, slot);
        /* the chunk's weight gradients are complete: start reducing them over the replicas */
        if (releases(o, &facts[c]) && facts[c].training && mb == M - 1 && sc->buckets)
            for (int b = 0; b < sc->buckets[r * C + c]; b++) e |= push(out, OP_REDUCE_GRAD_START, b, c, 0);
    }
    /* complete the sends still pending, in micro-batch order */
    for (int c = 0; c < C && !e; c++)
        for (int pass = 0; pass < 2; pass++)
            for (int mb = 0; mb < M; mb++) {
                int s = mb % slots[c], *p = pass ? &PEND_GRAD(c, s) : &PEND_ACT(c, s);
                if (*p == mb) {
                    e |= push(out, pass ? OP_WAIT_SEND_GRAD : OP_WAIT_SEND_ACT, mb, c, s);
                    *p = -1;
                }
            }
    /* and complete the reductions */
    for (int c = 0; c < C && !e && sc->buckets; c++)
        for (int b = 0; facts[c].training && b < sc->buckets[r * C + c]; b++)
            e |= push(out, OP_REDUCE_GRAD_WAIT, b, c, 0);
#undef PEND_ACT
#undef PEND_GRAD
    free(pend);
    free(base);
    return e ? pt_fail(PT_ERR_NOMEM, "schedule lowering: out of memory for the ops of rank %d", r) : PT_OK;
}

pt_status schedule_lower(schedule *sc, int min_slots)
{
    if (!sc || !sc->ranks || sc->P < 1 || sc->M < 1 || sc->chunks < 1 || sc->chunks > SCHED_MAX_CHUNKS)
        return pt_fail(PT_ERR_INVALID, "schedule_lower: expected P ≥ 1 lists, M ≥ 1 and 1..%d chunks",
                       SCHED_MAX_CHUNKS);
    if (sc->lowered || sc->slots) return pt_fail(PT_ERR_INVALID, "schedule_lower: the lists are lowered already");
    if (sc->M > SCHED_MAX_MB || sc->P > SCHED_MAX_RANKS)
        return pt_fail(PT_ERR_INVALID, "schedule_lower: P = %d, M = %d, expected at most %d and %d", sc->P, sc->M,
                       SCHED_MAX_RANKS, SCHED_MAX_MB);
    int *slots = calloc((size_t)sc->P * (size_t)sc->chunks, sizeof *slots);
    oplist *out = calloc((size_t)sc->P, sizeof *out);
    pt_status st = slots && out ? PT_OK : pt_fail(PT_ERR_NOMEM, "schedule lowering: out of memory");
    for (int r = 0; r < sc->P && !st; r++) st = lower_rank(sc, r, min_slots, &out[r], slots + (size_t)r * sc->chunks);
    if (st) {
        for (int r = 0; out && r < sc->P; r++) free(out[r].ops);
        free(out);
        free(slots);
        return st;
    }
    for (int r = 0; r < sc->P; r++) {
        free(sc->ranks[r].ops);
        sc->ranks[r].ops = out[r].ops;
        sc->ranks[r].n_ops = out[r].n;
    }
    free(out);
    sc->slots = slots;
    sc->lowered = 1;
    return PT_OK;
}

/* ---- validator --------------------------------------------------------- */

/* The error message is built in pieces (the deadlock report lists several
 * ranks), then recorded with one pt_fail. */
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
    int P, C, M;
    const char *kname;
    int *pos; /* pos[((r·C + c)·OP_KIND_COUNT + kind)·M + mb]: op index on rank r, −1 when absent */
    chunk_facts *facts; /* [r·C + c] */
} vstate;

static int *pos_at(const vstate *v, int r, int c, int kind, int mb)
{
    return &v->pos[(((size_t)r * v->C + (size_t)c) * OP_KIND_COUNT + (size_t)kind) * (size_t)v->M + (size_t)mb];
}

static void describe_op(msgbuf *m, const vstate *v, int r, int i)
{
    const sched_list *l = &v->sc->ranks[r];
    if (i < l->n_ops) {
        const sched_op *o = &l->ops[i];
        msg_add(m, "(%s %s=%d", sched_op_name((sched_op_kind)o->kind), sched_op_is_reduce(o->kind) ? "bucket" : "mb",
                (int)o->mb);
        if (v->C > 1) msg_add(m, " chunk=%d", (int)o->chunk);
        msg_add(m, "): ");
    } else {
        msg_add(m, "(end of list): ");
    }
}

/* "schedule 1f1b P=4 M=8: rank 2 op 7 (backward mb=3): " + the rest. */
static pt_status fail_at(const vstate *v, int r, int i, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static pt_status fail_at(const vstate *v, int r, int i, const char *fmt, ...)
{
    msgbuf m = {.len = 0};
    msg_add(&m, "schedule %s P=%d M=%d: rank %d op %d ", v->kname, v->P, v->M, r, i);
    describe_op(&m, v, r, i);
    va_list ap;
    va_start(ap, fmt);
    if (m.len < sizeof m.buf - 1) {
        int k = vsnprintf(m.buf + m.len, sizeof m.buf - m.len, fmt, ap);
        if (k > 0) m.len += (size_t)k;
    }
    va_end(ap);
    return pt_fail(PT_ERR_INVALID, "%s", m.buf);
}

/* A communication op's boundary: the peer rank, its chunk, and the op there
 * that matches it (send ↔ its receive's post; receive's wait ↔ the send). */
typedef struct {
    int exists, rank, chunk, kind;
} peer_op;

static peer_op peer_of(const vstate *v, int r, int c, int kind)
{
    vneighbours nb = neighbours(v->P, v->C, r, c);
    switch (kind) {
    case OP_SEND_ACT:       return (peer_op){nb.has_next, nb.next_rank, nb.next_chunk, OP_POST_RECV_ACT};
    case OP_WAIT_SEND_ACT:  return (peer_op){nb.has_next, nb.next_rank, nb.next_chunk, OP_POST_RECV_ACT};
    case OP_POST_RECV_ACT:  return (peer_op){nb.has_prev, nb.prev_rank, nb.prev_chunk, OP_SEND_ACT};
    case OP_WAIT_RECV_ACT:  return (peer_op){nb.has_prev, nb.prev_rank, nb.prev_chunk, OP_SEND_ACT};
    case OP_SEND_GRAD:      return (peer_op){nb.has_prev, nb.prev_rank, nb.prev_chunk, OP_POST_RECV_GRAD};
    case OP_WAIT_SEND_GRAD: return (peer_op){nb.has_prev, nb.prev_rank, nb.prev_chunk, OP_POST_RECV_GRAD};
    case OP_POST_RECV_GRAD: return (peer_op){nb.has_next, nb.next_rank, nb.next_chunk, OP_SEND_GRAD};
    case OP_WAIT_RECV_GRAD: return (peer_op){nb.has_next, nb.next_rank, nb.next_chunk, OP_SEND_GRAD};
    default:                return (peer_op){0, -1, -1, -1};
    }
}

/* Buffer states of one (rank, chunk), per slot. */
typedef struct {
    int *held;      /* stash: micro-batch holding the slot (receive posted or forwarded), −1 free */
    int *act_send;  /* output buffer: micro-batch whose send is pending, −1 none */
    int *grad_recv; /* output-gradient buffer: micro-batch whose receive is posted and not consumed */
    int *grad_send; /* input-gradient buffer: micro-batch whose send is pending */
} slot_state;

/* Pass 1, one rank: kinds, ranges, order of each micro-batch's ops, the
 * buffer rules, and the order of weight-gradient accumulation. Fills pos. */
/* A REDUCE_GRAD op at index i of rank r: a start after the chunk's last
 * weight gradient (acc = weight-gradient ops seen so far), once; a wait after
 * its start, once. seen[2b], seen[2b+1]: index of the bucket's start, wait. */
static pt_status check_reduce(vstate *v, int r, int i, int *seen, int acc)
{
    const sched_op *o = &v->sc->ranks[r].ops[i];
    int b = o->mb, c = o->chunk;
    if (!v->facts[r * v->C + c].training)
        return fail_at(v, r, i, "chunk %d has no backward: it has no gradients to reduce", c);
    if (o->kind == OP_REDUCE_GRAD_START) {
        if (seen[2 * b] >= 0) return fail_at(v, r, i, "bucket %d of chunk %d is already reduced at op %d", b, c, seen[2 * b]);
        if (acc < v->M)
            return fail_at(v, r, i, "reduces bucket %d of chunk %d before its weight gradients are complete: "
                           "%d of %d micro-batches accumulated, expected the reduction after the last", b, c, acc,
                           v->M);
        seen[2 * b] = i;
    } else {
        if (seen[2 * b] < 0)
            return fail_at(v, r, i, "waits on the reduction of bucket %d of chunk %d, which was never started: "
                           "expected reduce_grad_start before it", b, c);
        if (seen[2 * b + 1] >= 0)
            return fail_at(v, r, i, "bucket %d of chunk %d is already completed at op %d", b, c, seen[2 * b + 1]);
        seen[2 * b + 1] = i;
    }
    return PT_OK;
}

static pt_status check_rank(vstate *v, int r)
{
    const sched_list *l = &v->sc->ranks[r];
    int C = v->C, M = v->M;
    int *bufs = NULL, total = 0;
    for (int c = 0; c < C; c++) total += v->sc->slots[r * C + c];
    bufs = malloc((size_t)total * 4 * sizeof *bufs);
    slot_state ss[SCHED_MAX_CHUNKS];
    int next_acc[SCHED_MAX_CHUNKS] = {0};
    if (!bufs) return pt_fail(PT_ERR_NOMEM, "schedule validation: out of memory");
    for (int k = 0; k < total * 4; k++) bufs[k] = -1;
    for (int c = 0, off = 0; c < C; c++) {
        int S = v->sc->slots[r * C + c];
        ss[c] = (slot_state){bufs + off, bufs + off + S, bufs + off + 2 * S, bufs + off + 3 * S};
        off += 4 * S;
    }
    /* per chunk and bucket: the op index of its REDUCE_GRAD_START and WAIT, −1 none */
    int reduce_base[SCHED_MAX_CHUNKS] = {0}, n_reduce = 0;
    for (int c = 0; c < C; c++) {
        reduce_base[c] = 2 * n_reduce;
        n_reduce += v->sc->buckets ? v->sc->buckets[r * C + c] : 0;
    }
    int *reduce = malloc((size_t)(2 * n_reduce + 1) * sizeof *reduce);
    if (!reduce) {
        free(bufs);
        return pt_fail(PT_ERR_NOMEM, "schedule validation: out of memory");
    }
    for (int k = 0; k < 2 * n_reduce; k++) reduce[k] = -1;
    pt_status st = PT_OK;
    /* facts: which chunks the list trains, and whether with the B/W split */
    for (int i = 0; i < l->n_ops; i++) {
        const sched_op *o = &l->ops[i];
        if (o->kind >= OP_KIND_COUNT) {
            st = fail_at(v, r, i, "unknown op kind %d, expected 0..%d", o->kind, OP_KIND_COUNT - 1);
            goto done;
        }
        if (o->chunk >= C) {
            st = fail_at(v, r, i, "chunk out of range, expected 0..%d", C - 1);
            goto done;
        }
        if (sched_op_is_reduce(o->kind)) {
            int nb = v->sc->buckets ? v->sc->buckets[r * C + o->chunk] : 0;
            if (o->mb < 0 || o->mb >= nb) {
                st = fail_at(v, r, i, "bucket %d out of range: chunk %d has %d gradient buckets", (int)o->mb,
                             (int)o->chunk, nb);
                goto done;
            }
            continue;
        }
        if (o->mb < 0 || o->mb >= M) {
            st = fail_at(v, r, i, "micro-batch out of range, expected 0..%d", M - 1);
            goto done;
        }
        chunk_facts *f = &v->facts[r * C + o->chunk];
        if (o->kind == OP_BACKWARD || o->kind == OP_BACKWARD_INPUT || o->kind == OP_BACKWARD_WEIGHT ||
            o->kind == OP_POST_RECV_GRAD || o->kind == OP_WAIT_RECV_GRAD || o->kind == OP_SEND_GRAD ||
            o->kind == OP_WAIT_SEND_GRAD)
            f->training = 1;
        if (o->kind == OP_BACKWARD_INPUT || o->kind == OP_BACKWARD_WEIGHT) f->split = 1;
    }
    for (int i = 0; i < l->n_ops; i++) {
        const sched_op *o = &l->ops[i];
        int k = o->kind, c = o->chunk, mb = o->mb, S = v->sc->slots[r * C + c];
        const chunk_facts *f = &v->facts[r * C + c];
        if (sched_op_is_reduce(k)) {
            if ((st = check_reduce(v, r, i, reduce + reduce_base[c], next_acc[c]))) goto done;
            continue;
        }
        if (o->slot < 0 || o->slot >= S) {
            st = fail_at(v, r, i, "slot %d out of range: chunk %d has %d stash slots", (int)o->slot, c, S);
            goto done;
        }
        int slot = o->slot;
        peer_op p = peer_of(v, r, c, k);
        if (!sched_op_is_compute((sched_op_kind)k) && !p.exists) {
            int toward_next = k == OP_SEND_ACT || k == OP_WAIT_SEND_ACT || k == OP_POST_RECV_GRAD ||
                              k == OP_WAIT_RECV_GRAD;
            st = fail_at(v, r, i, "virtual stage %d is the %s: it has no %s stage to talk to, expected no %s on it",
                         c * v->P + r, toward_next ? "last" : "first", toward_next ? "next" : "previous",
                         sched_op_name((sched_op_kind)k));
            goto done;
        }
        if (!f->training && (k == OP_BACKWARD || k == OP_BACKWARD_INPUT || k == OP_BACKWARD_WEIGHT)) {
            st = fail_at(v, r, i, "a forward-only list has no backward ops");
            goto done;
        }
        int *pp = pos_at(v, r, c, k, mb);
        if (*pp >= 0) {
            st = fail_at(v, r, i, "duplicate: %s mb=%d already at op %d, expected exactly one per micro-batch",
                         sched_op_name((sched_op_kind)k), mb, *pp);
            goto done;
        }
        vneighbours nb = neighbours(v->P, C, r, c);
        switch (k) {
        case OP_POST_RECV_ACT:
            if (ss[c].held[slot] >= 0) {
                st = fail_at(v, r, i, "posts the receive of mb=%d into stash slot %d, still held by mb=%d until "
                             "its %s: a receive may only be posted into a free slot", mb, slot, ss[c].held[slot],
                             f->training ? (f->split ? "backward_weight" : "backward") : "forward");
                goto done;
            }
            ss[c].held[slot] = mb;
            break;
        case OP_WAIT_RECV_ACT:
            if (*pos_at(v, r, c, OP_POST_RECV_ACT, mb) < 0) {
                st = fail_at(v, r, i, "waits on a receive that was never posted: expected post_recv_act mb=%d "
                             "before it", mb);
                goto done;
            }
            break;
        case OP_FORWARD:
            if (nb.has_prev && *pos_at(v, r, c, OP_WAIT_RECV_ACT, mb) < 0) {
                st = fail_at(v, r, i, "reads its input before wait_recv_act mb=%d completed the receive", mb);
                goto done;
            }
            if (nb.has_prev && ss[c].held[slot] != mb) {
                st = fail_at(v, r, i, "stash slot %d holds mb=%d, expected mb=%d's received input", slot,
                             ss[c].held[slot], mb);
                goto done;
            }
            if (!nb.has_prev) {
                if (ss[c].held[slot] >= 0) {
                    st = fail_at(v, r, i, "stash slot %d is still held by mb=%d", slot, ss[c].held[slot]);
                    goto done;
                }
                ss[c].held[slot] = mb;
            }
            if (nb.has_next && ss[c].act_send[slot] >= 0) {
                st = fail_at(v, r, i, "writes the output buffer of slot %d while the send of mb=%d from it is "
                             "pending: expected wait_send_act mb=%d first", slot, ss[c].act_send[slot],
                             ss[c].act_send[slot]);
                goto done;
            }
            if (!f->training) ss[c].held[slot] = -1;
            break;
        case OP_SEND_ACT:
            if (*pos_at(v, r, c, OP_FORWARD, mb) < 0) {
                st = fail_at(v, r, i, "forward mb=%d has not run yet, expected it before its send_act", mb);
                goto done;
            }
            ss[c].act_send[slot] = mb;
            break;
        case OP_WAIT_SEND_ACT:
            if (ss[c].act_send[slot] != mb) {
                st = fail_at(v, r, i, "no send_act mb=%d is pending in slot %d", mb, slot);
                goto done;
            }
            ss[c].act_send[slot] = -1;
            break;
        case OP_POST_RECV_GRAD:
            if (ss[c].grad_recv[slot] >= 0) {
                st = fail_at(v, r, i, "posts the receive of mb=%d's gradient into slot %d, whose gradient of "
                             "mb=%d is not consumed yet", mb, slot, ss[c].grad_recv[slot]);
                goto done;
            }
            ss[c].grad_recv[slot] = mb;
            break;
        case OP_WAIT_RECV_GRAD:
            if (*pos_at(v, r, c, OP_POST_RECV_GRAD, mb) < 0) {
                st = fail_at(v, r, i, "waits on a receive that was never posted: expected post_recv_grad mb=%d "
                             "before it", mb);
                goto done;
            }
            break;
        case OP_BACKWARD:
        case OP_BACKWARD_INPUT:
            if (*pos_at(v, r, c, OP_FORWARD, mb) < 0) {
                st = fail_at(v, r, i, "forward mb=%d has not run yet, expected forward before backward", mb);
                goto done;
            }
            if (k == OP_BACKWARD && f->split) {
                st = fail_at(v, r, i, "chunk %d mixes backward with backward_input/backward_weight", c);
                goto done;
            }
            if (nb.has_next && *pos_at(v, r, c, OP_WAIT_RECV_GRAD, mb) < 0) {
                st = fail_at(v, r, i, "no wait_recv_grad mb=%d before it, expected the gradient from rank %d "
                             "first", mb, nb.next_rank);
                goto done;
            }
            if (nb.has_prev && ss[c].grad_send[slot] >= 0) {
                st = fail_at(v, r, i, "writes the input-gradient buffer of slot %d while the send of mb=%d from it "
                             "is pending: expected wait_send_grad mb=%d first", slot, ss[c].grad_send[slot],
                             ss[c].grad_send[slot]);
                goto done;
            }
            if (k == OP_BACKWARD) goto accumulate;
            break;
        case OP_BACKWARD_WEIGHT:
            if (*pos_at(v, r, c, OP_BACKWARD_INPUT, mb) < 0) {
                st = fail_at(v, r, i, "backward_input mb=%d has not run yet, expected it before backward_weight",
                             mb);
                goto done;
            }
        accumulate:
            if (mb != next_acc[c]) {
                st = fail_at(v, r, i, "weight gradients accumulate in micro-batch order 0..%d, expected mb=%d "
                             "here", M - 1, next_acc[c]);
                goto done;
            }
            next_acc[c]++;
            ss[c].grad_recv[slot] = -1; /* B or BW read the output gradient for the last time */
            if (ss[c].held[slot] != mb) {
                st = fail_at(v, r, i, "stash slot %d holds mb=%d, expected mb=%d", slot, ss[c].held[slot], mb);
                goto done;
            }
            ss[c].held[slot] = -1;
            break;
        case OP_SEND_GRAD:
            if (*pos_at(v, r, c, OP_BACKWARD, mb) < 0 && *pos_at(v, r, c, OP_BACKWARD_INPUT, mb) < 0) {
                st = fail_at(v, r, i, "backward mb=%d has not run yet, expected it before its send_grad", mb);
                goto done;
            }
            ss[c].grad_send[slot] = mb;
            break;
        case OP_WAIT_SEND_GRAD:
            if (ss[c].grad_send[slot] != mb) {
                st = fail_at(v, r, i, "no send_grad mb=%d is pending in slot %d", mb, slot);
                goto done;
            }
            ss[c].grad_send[slot] = -1;
            break;
        default:
            break;
        }
        *pp = i;
    }
    /* nothing may be left in flight at the end of the step */
    for (int c = 0; c < C && !st; c++)
        for (int s = 0; s < v->sc->slots[r * C + c] && !st; s++) {
            if (ss[c].act_send[s] >= 0)
                st = fail_at(v, r, l->n_ops, "the send_act of mb=%d is never completed, expected wait_send_act "
                             "mb=%d", ss[c].act_send[s], ss[c].act_send[s]);
            else if (ss[c].grad_send[s] >= 0)
                st = fail_at(v, r, l->n_ops, "the send_grad of mb=%d is never completed, expected "
                             "wait_send_grad mb=%d", ss[c].grad_send[s], ss[c].grad_send[s]);
            else if (ss[c].held[s] >= 0 && v->facts[r * C + c].training)
                st = fail_at(v, r, l->n_ops, "stash slot %d still holds mb=%d at the end of the step", s,
                             ss[c].held[s]);
        }
    /* every gradient bucket of a training chunk reduced, and completed */
    for (int c = 0; c < C && !st; c++)
        for (int b = 0; v->sc->buckets && v->facts[r * C + c].training && b < v->sc->buckets[r * C + c] && !st; b++)
            if (reduce[reduce_base[c] + 2 * b] < 0 || reduce[reduce_base[c] + 2 * b + 1] < 0)
                st = fail_at(v, r, l->n_ops, "gradient bucket %d of chunk %d is never %s over the replicas, "
                             "expected reduce_grad_start and reduce_grad_wait", b, c,
                             reduce[reduce_base[c] + 2 * b] < 0 ? "reduced" : "completed");
done:
    free(reduce);
    free(bufs);
    return st;
}

/* Pass 2, one rank: every op the schedule needs is there (a present op
 * appears once, pass 1), so each send has its receive and the other way
 * round. Called after pass 1 has run over all ranks. */
static pt_status check_complete(vstate *v, int r)
{
    int C = v->C, M = v->M, n = v->sc->ranks[r].n_ops;
    for (int c = 0; c < C; c++) {
        const chunk_facts *f = &v->facts[r * C + c];
        for (int mb = 0; mb < M; mb++) {
            int fw = *pos_at(v, r, c, OP_FORWARD, mb);
            if (fw < 0)
                return fail_at(v, r, n, "forward mb=%d of chunk %d never runs, expected exactly one per "
                               "micro-batch", mb, c);
            if (f->training) {
                int kinds[2] = {f->split ? OP_BACKWARD_INPUT : OP_BACKWARD, f->split ? OP_BACKWARD_WEIGHT : -1};
                for (int j = 0; j < 2; j++)
                    if (kinds[j] >= 0 && *pos_at(v, r, c, kinds[j], mb) < 0)
                        return fail_at(v, r, fw, "%s mb=%d never runs, expected exactly one after this forward",
                                       sched_op_name((sched_op_kind)kinds[j]), mb);
            }
            /* the communication each boundary needs, and its match on the peer */
            static const int comm_kinds[] = {OP_POST_RECV_ACT, OP_WAIT_RECV_ACT, OP_SEND_ACT, OP_WAIT_SEND_ACT,
                                             OP_POST_RECV_GRAD, OP_WAIT_RECV_GRAD, OP_SEND_GRAD, OP_WAIT_SEND_GRAD};
            for (size_t j = 0; j < sizeof comm_kinds / sizeof comm_kinds[0]; j++) {
                int k = comm_kinds[j];
                int grad = k >= OP_POST_RECV_GRAD;
                peer_op p = peer_of(v, r, c, k);
                if (!p.exists || (grad && !f->training)) continue;
                if (*pos_at(v, r, c, k, mb) >= 0) {
                    if (*pos_at(v, p.rank, p.chunk, p.kind, mb) < 0)
                        return fail_at(v, r, *pos_at(v, r, c, k, mb), "rank %d has no %s mb=%d to match it",
                                       p.rank, sched_op_name((sched_op_kind)p.kind), mb);
                    continue;
                }
                return fail_at(v, r, n, "no %s mb=%d on this rank, expected one (virtual stage %d talks to rank %d)",
                               sched_op_name((sched_op_kind)k), mb, c * v->P + r, p.rank);
            }
        }
    }
    return PT_OK;
}

/* Runs all lists together. POST, SEND and compute ops always complete; a
 * WAIT_RECV completes once the peer has issued the matching send, a
 * WAIT_SEND once the peer has posted the matching receive (so a rendezvous
 * protocol cannot deadlock either). Each rank runs until it blocks; a send or
 * a post wakes the peer it targets. O(total ops). pc[r] ends at the op rank r
 * is blocked on (n_ops when it finished). With cost (seconds per op kind),
 * clock[r] and busy[r] time the run: a wait ends no earlier than its peer op
 * was issued (issued[r][i], one entry per op of rank r). */
static pt_status run_lists(vstate *v, const sched_cost_model *cost, int *pc, double *clock, double *busy, double **issued)
{
    int P = v->P;
    const schedule *sc = v->sc;
    int *queue = malloc((size_t)P * sizeof *queue);
    char *queued = calloc((size_t)P, 1);
    double *reduce_done = calloc((size_t)P, sizeof *reduce_done); /* when each rank's last reduction ends */
    if (!queue || !queued || !reduce_done) {
        free(queue);
        free(queued);
        free(reduce_done);
        return pt_fail(PT_ERR_NOMEM, "schedule %s P=%d M=%d: cannot allocate the simulation", v->kname, P, v->M);
    }
    int head = 0, count = P;
    for (int r = 0; r < P; r++) {
        queue[r] = r;
        queued[r] = 1;
        pc[r] = 0;
    }
    while (count > 0) {
        int r = queue[head];
        head = (head + 1) % P;
        count--;
        queued[r] = 0;
        const sched_list *l = &sc->ranks[r];
        while (pc[r] < l->n_ops) {
            const sched_op *o = &l->ops[pc[r]];
            int k = o->kind;
            peer_op p = peer_of(v, r, o->chunk, k);
            if (k == OP_WAIT_RECV_ACT || k == OP_WAIT_RECV_GRAD || k == OP_WAIT_SEND_ACT || k == OP_WAIT_SEND_GRAD) {
                int si = p.exists ? *pos_at(v, p.rank, p.chunk, p.kind, o->mb) : -1;
                if (si < 0 || si >= pc[p.rank]) break; /* not issued yet */
                double ready = cost ? issued[p.rank][si] : 0;
                if (cost && (k == OP_WAIT_RECV_ACT || k == OP_WAIT_RECV_GRAD)) ready += cost->latency(cost->ctx, r, o);
                if (cost && ready > clock[r]) clock[r] = ready;
            }
            if (cost && k == OP_REDUCE_GRAD_WAIT) /* done no earlier than its start, after the rank's reductions
                                                   * before it (one at a time), plus its own time */
                for (int j = pc[r] - 1; j >= 0; j--) {
                    const sched_op *q = &l->ops[j];
                    if (q->kind == OP_REDUCE_GRAD_START && q->chunk == o->chunk && q->mb == o->mb) {
                        double from = issued[r][j] > reduce_done[r] ? issued[r][j] : reduce_done[r];
                        reduce_done[r] = from + cost->latency(cost->ctx, r, o);
                        if (reduce_done[r] > clock[r]) clock[r] = reduce_done[r];
                        break;
                    }
                }
            if (cost) {
                double d = cost->op(cost->ctx, r, o);
                issued[r][pc[r]] = clock[r];
                clock[r] += d;
                busy[r] += d;
            }
            pc[r]++;
            if ((k == OP_SEND_ACT || k == OP_SEND_GRAD || k == OP_POST_RECV_ACT || k == OP_POST_RECV_GRAD) &&
                p.exists && p.rank != r && !queued[p.rank]) {
                queue[(head + count) % P] = p.rank;
                count++;
                queued[p.rank] = 1;
            }
        }
    }
    free(queue);
    free(queued);
    free(reduce_done);
    return PT_OK;
}

/* Pass 3: all lists run to their end (run_lists), or the message names every
 * blocked rank and what it waits for. */
static pt_status check_deadlock(vstate *v)
{
    int P = v->P;
    const schedule *sc = v->sc;
    int *pc = calloc((size_t)P, sizeof *pc);
    if (!pc) return pt_fail(PT_ERR_NOMEM, "schedule %s P=%d M=%d: cannot allocate the deadlock check", v->kname, P,
                            v->M);
    pt_status st = run_lists(v, NULL, pc, NULL, NULL, NULL);
    int blocked = 0;
    for (int r = 0; !st && r < P; r++) blocked += pc[r] < sc->ranks[r].n_ops;
    if (!st && blocked) {
        msgbuf m = {.len = 0};
        msg_add(&m, "schedule %s P=%d M=%d: deadlock, %d of %d ranks blocked:", v->kname, P, v->M, blocked, P);
        for (int r = 0; r < P; r++) {
            if (pc[r] >= sc->ranks[r].n_ops) continue;
            const sched_op *o = &sc->ranks[r].ops[pc[r]];
            peer_op p = peer_of(v, r, o->chunk, o->kind);
            int si = *pos_at(v, p.rank, p.chunk, p.kind, o->mb);
            msg_add(&m, " rank %d op %d ", r, pc[r]);
            describe_op(&m, v, r, pc[r]);
            msg_add(&m, "waits for rank %d's %s mb=%d at its op %d, but rank %d ", p.rank,
                    sched_op_name((sched_op_kind)p.kind), (int)o->mb, si, p.rank);
            if (pc[p.rank] < sc->ranks[p.rank].n_ops)
                msg_add(&m, "is stuck at its op %d;", pc[p.rank]);
            else
                msg_add(&m, "has finished;");
        }
        msg_add(&m, " expected every list to run to its end");
        st = pt_fail(PT_ERR_INVALID, "%s", m.buf);
    }
    free(pc);
    return st;
}

pt_status schedule_validate(const schedule *sc)
{
    if (!sc) return pt_fail(PT_ERR_INVALID, "schedule_validate: schedule is NULL");
    if ((unsigned)sc->kind >= SCHED_KIND_COUNT)
        return pt_fail(PT_ERR_INVALID, "schedule_validate: unknown schedule kind %d (expected 0..%d)", (int)sc->kind,
                       SCHED_KIND_COUNT - 1);
    const char *kname = kind_names[sc->kind];
    if (sc->P < 1 || sc->P > SCHED_MAX_RANKS || sc->M < 1 || sc->M > SCHED_MAX_MB || sc->chunks < 1 ||
        sc->chunks > SCHED_MAX_CHUNKS || !sc->ranks)
        return pt_fail(PT_ERR_INVALID,
                       "schedule %s P=%d M=%d: expected P in 1..%d, M in 1..%d, 1..%d chunks and %d op lists%s",
                       kname, sc->P, sc->M, SCHED_MAX_RANKS, SCHED_MAX_MB, SCHED_MAX_CHUNKS, sc->P,
                       sc->ranks ? "" : " (ranks is NULL)");
    if (!sc->lowered || !sc->slots)
        return pt_fail(PT_ERR_INVALID, "schedule %s P=%d M=%d: the lists are not lowered (schedule_lower adds the "
                       "communication and the stash slots the validator checks)", kname, sc->P, sc->M);
    for (int r = 0; r < sc->P; r++) {
        const sched_list *l = &sc->ranks[r];
        if (l->n_ops < 0 || (l->n_ops > 0 && !l->ops))
            return pt_fail(PT_ERR_INVALID, "schedule %s P=%d M=%d: rank %d has n_ops = %d and ops = %s", kname,
                           sc->P, sc->M, r, l->n_ops, l->ops ? "set" : "NULL");
        for (int c = 0; c < sc->chunks; c++)
            if (sc->slots[r * sc->chunks + c] < 1 || sc->slots[r * sc->chunks + c] > sc->M)
                return pt_fail(PT_ERR_INVALID, "schedule %s P=%d M=%d: rank %d chunk %d has %d stash slots, "
                               "expected 1..%d", kname, sc->P, sc->M, r, c, sc->slots[r * sc->chunks + c], sc->M);
    }
    vstate v = {.sc = sc, .P = sc->P, .C = sc->chunks, .M = sc->M, .kname = kname};
    size_t npos = (size_t)sc->P * (size_t)sc->chunks * OP_KIND_COUNT * (size_t)sc->M;
    v.pos = malloc(npos * sizeof *v.pos);
    v.facts = calloc((size_t)sc->P * (size_t)sc->chunks, sizeof *v.facts);
    if (!v.pos || !v.facts) {
        free(v.pos);
        free(v.facts);
        return pt_fail(PT_ERR_NOMEM, "schedule %s P=%d M=%d: cannot allocate the validator's index (%zu entries)",
                       kname, sc->P, sc->M, npos);
    }
    for (size_t i = 0; i < npos; i++) v.pos[i] = -1;
    pt_status st = PT_OK;
    for (int r = 0; r < sc->P && st == PT_OK; r++) st = check_rank(&v, r);
    for (int r = 0; r < sc->P && st == PT_OK; r++) st = check_complete(&v, r);
    if (st == PT_OK) st = check_deadlock(&v);
    free(v.pos);
    free(v.facts);
    return st;
}

/* ---- timing ------------------------------------------------------------ */

pt_status schedule_simulate(const schedule *sc, const sched_cost_model *cost, double *makespan, double *busy,
                            double **start)
{
    int P = sc->P, C = sc->chunks, M = sc->M;
    size_t npos = (size_t)P * (size_t)C * OP_KIND_COUNT * (size_t)M;
    vstate v = {.sc = sc, .P = P, .C = C, .M = M, .kname = kind_names[sc->kind]};
    v.pos = malloc(npos * sizeof *v.pos);
    double *clock = calloc((size_t)P, sizeof *clock), **issued = calloc((size_t)P, sizeof *issued);
    int *pc = calloc((size_t)P, sizeof *pc);
    pt_status st = v.pos && clock && issued && pc ? PT_OK : pt_fail(PT_ERR_NOMEM, "schedule_simulate: out of memory");
    for (int r = 0; !st && r < P; r++)
        if (!(issued[r] = malloc(((size_t)sc->ranks[r].n_ops + 1) * sizeof **issued)))
            st = pt_fail(PT_ERR_NOMEM, "schedule_simulate: out of memory");
    if (!st) {
        for (size_t i = 0; i < npos; i++) v.pos[i] = -1;
        for (int r = 0; r < P; r++) {
            busy[r] = 0;
            for (int i = 0; i < sc->ranks[r].n_ops; i++) {
                const sched_op *o = &sc->ranks[r].ops[i];
                if (o->kind < OP_KIND_COUNT && o->chunk < C && o->mb >= 0 && o->mb < M)
                    *pos_at(&v, r, o->chunk, o->kind, o->mb) = i;
            }
        }
        st = run_lists(&v, cost, pc, clock, busy, issued);
    }
    if (!st) {
        *makespan = 0;
        for (int r = 0; r < P; r++) {
            if (pc[r] < sc->ranks[r].n_ops && !st)
                st = pt_fail(PT_ERR_INVALID, "schedule_simulate: rank %d cannot run past its op %d (validate first)",
                             r, pc[r]);
            if (clock[r] > *makespan) *makespan = clock[r];
            if (start && start[r]) memcpy(start[r], issued[r], (size_t)sc->ranks[r].n_ops * sizeof **issued);
        }
    }
    for (int r = 0; issued && r < P; r++) free(issued[r]);
    free(issued);
    free(clock);
    free(pc);
    free(v.pos);
    return st;
}

/* schedule_time's cost model: a fixed cost per op kind, transfers free. */
static double kind_cost(void *ctx, int rank, const sched_op *o)
{
    (void)rank;
    return ((const double *)ctx)[o->kind];
}

static double no_latency(void *ctx, int rank, const sched_op *o)
{
    (void)ctx;
    (void)rank;
    (void)o;
    return 0;
}

pt_status schedule_time(const schedule *sc, const double cost[OP_KIND_COUNT], double *makespan, double *busy)
{
    sched_cost_model m = {kind_cost, no_latency, (void *)cost};
    return schedule_simulate(sc, &m, makespan, busy, NULL);
}

double schedule_theoretical_bubble(const schedule *sc)
{
    double cost[OP_KIND_COUNT] = {[OP_FORWARD] = 1, [OP_BACKWARD] = 2, [OP_BACKWARD_INPUT] = 1,
                                  [OP_BACKWARD_WEIGHT] = 1};
    double T = 0, worst = 0, *busy = calloc((size_t)sc->P, sizeof *busy);
    if (!busy || schedule_time(sc, cost, &T, busy) != PT_OK || T <= 0) {
        free(busy);
        pt_clear_error();
        return 0;
    }
    for (int r = 0; r < sc->P; r++)
        if (1.0 - busy[r] / T > worst) worst = 1.0 - busy[r] / T;
    free(busy);
    return worst;
}

/* ---- printing ---------------------------------------------------------- */

void schedule_print(const schedule *sc, void (*emit)(void *ctx, const char *line), void *ctx)
{
    if (!sc || !sc->ranks || !emit) return;
    char line[128];
    for (int r = 0; r < sc->P; r++) {
        const sched_list *l = &sc->ranks[r];
        for (int i = 0; i < l->n_ops; i++) {
            snprintf(line, sizeof line, "r%d %d %s %s=%d chunk=%d slot=%d", r, i,
                     sched_op_name((sched_op_kind)l->ops[i].kind), sched_op_is_reduce(l->ops[i].kind) ? "bucket" : "mb",
                     (int)l->ops[i].mb, (int)l->ops[i].chunk, (int)l->ops[i].slot);
            emit(ctx, line);
        }
    }
}
