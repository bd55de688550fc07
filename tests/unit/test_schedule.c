/* test_schedule.c — the schedule IR: generators (GPipe, 1F1B, forward-only),
 * the lowering pass and the validator of lowered lists. Every P ≤ 8, M ≤ 32
 * lowers and validates with the stash its theory says; small cases match
 * lists written out by hand; lowering handles the B/W split and several
 * chunks per rank; lists broken on purpose (including a receive posted into
 * a slot that is still held) are rejected with a message naming the rank and
 * the op. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schedule.h"

/* ---- helpers ----------------------------------------------------------- */

enum {
    F = OP_FORWARD, B = OP_BACKWARD, BI = OP_BACKWARD_INPUT, BW = OP_BACKWARD_WEIGHT,
    PA = OP_POST_RECV_ACT, WA = OP_WAIT_RECV_ACT, SA = OP_SEND_ACT, WSA = OP_WAIT_SEND_ACT,
    PG = OP_POST_RECV_GRAD, WG = OP_WAIT_RECV_GRAD, SG = OP_SEND_GRAD, WSG = OP_WAIT_SEND_GRAD
};

typedef struct {
    int kind, mb;
} xop;

static void expect_list(const schedule *sc, int r, const xop *want, int n)
{
    const sched_list *l = &sc->ranks[r];
    for (int i = 0; i < n && i < l->n_ops; i++) {
        cr_assert_eq(l->ops[i].kind, want[i].kind, "%s P=%d M=%d rank %d op %d: %s mb=%d, expected %s mb=%d",
                     sched_kind_name(sc->kind), sc->P, sc->M, r, i, sched_op_name(l->ops[i].kind), l->ops[i].mb,
                     sched_op_name(want[i].kind), want[i].mb);
        cr_assert_eq(l->ops[i].mb, want[i].mb, "%s P=%d M=%d rank %d op %d (%s): mb=%d, expected %d",
                     sched_kind_name(sc->kind), sc->P, sc->M, r, i, sched_op_name(l->ops[i].kind), l->ops[i].mb,
                     want[i].mb);
    }
    cr_assert_eq(l->n_ops, n, "%s P=%d M=%d rank %d: %d ops, expected %d", sched_kind_name(sc->kind), sc->P,
                 sc->M, r, l->n_ops, n);
}

#define EXPECT_LIST(sc, r, ...)                                                    \
    do {                                                                           \
        static const xop want_[] = {__VA_ARGS__};                                  \
        expect_list((sc), (r), want_, (int)(sizeof want_ / sizeof want_[0]));      \
    } while (0)

/* Index of the op (kind, mb) on rank r (chunk 0); fails the test when absent. */
static int find_op(const schedule *sc, int r, int kind, int mb)
{
    const sched_list *l = &sc->ranks[r];
    for (int i = 0; i < l->n_ops; i++)
        if (l->ops[i].kind == kind && l->ops[i].mb == mb) return i;
    cr_assert_fail("rank %d has no %s mb=%d", r, sched_op_name(kind), mb);
    return -1;
}

static void remove_op(schedule *sc, int r, int i)
{
    sched_list *l = &sc->ranks[r];
    memmove(&l->ops[i], &l->ops[i + 1], (size_t)(l->n_ops - i - 1) * sizeof *l->ops);
    l->n_ops--;
}

/* Moves op `from` of rank r to index `to` (in the list without it). */
static void move_op(schedule *sc, int r, int from, int to)
{
    sched_op o = sc->ranks[r].ops[from];
    remove_op(sc, r, from);
    sched_list *l = &sc->ranks[r];
    memmove(&l->ops[to + 1], &l->ops[to], (size_t)(l->n_ops - to) * sizeof *l->ops);
    l->ops[to] = o;
    l->n_ops++;
}

/* Validation fails and the message holds every one of the texts. */
static void expect_rejected(const schedule *sc, const char *a, const char *b)
{
    pt_status st = schedule_validate(sc);
    cr_assert_eq(st, PT_ERR_INVALID, "accepted a broken schedule (expected '%s')", a);
    const char *msg = pt_last_error();
    cr_assert(strstr(msg, a) != NULL, "message lacks '%s': %s", a, msg);
    if (b) cr_assert(strstr(msg, b) != NULL, "message lacks '%s': %s", b, msg);
    cr_log_info("rejected: %s", msg);
}

/* A schedule of compute-only lists written by hand: lists[r] holds n[r]
 * ops of (kind, mb, chunk). */
typedef struct {
    int kind, mb, chunk;
} cop;

static void hand_schedule(schedule *sc, sched_kind kind, int P, int chunks, int M, const cop *const *lists,
                          const int *n)
{
    memset(sc, 0, sizeof *sc);
    sc->kind = kind;
    sc->P = P;
    sc->chunks = chunks;
    sc->M = M;
    sc->ranks = calloc((size_t)P, sizeof *sc->ranks);
    cr_assert_not_null(sc->ranks);
    for (int r = 0; r < P; r++) {
        sc->ranks[r].ops = calloc((size_t)n[r] + 1, sizeof(sched_op));
        cr_assert_not_null(sc->ranks[r].ops);
        for (int i = 0; i < n[r]; i++)
            sc->ranks[r].ops[i] = (sched_op){(uint8_t)lists[r][i].kind, (uint8_t)lists[r][i].chunk, -1,
                                             lists[r][i].mb};
        sc->ranks[r].n_ops = n[r];
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- names and arguments -------------------------------------------------- */

Test(schedule, kind_names_round_trip)
{
    cr_assert_str_eq(sched_kind_name(SCHED_ZBH1), "zbh1");
    cr_assert_str_eq(sched_kind_name(SCHED_INTERLEAVED), "interleaved");
    cr_assert_str_eq(sched_kind_name(SCHED_GPIPE), "gpipe");
    cr_assert_str_eq(sched_kind_name(SCHED_1F1B), "1f1b");
    cr_assert_str_eq(sched_kind_name(SCHED_FORWARD_ONLY), "forward");
    for (int k = 0; k < SCHED_KIND_COUNT; k++)
        cr_assert_eq(sched_kind_from_name(sched_kind_name((sched_kind)k)), k, "round trip of %s",
                     sched_kind_name((sched_kind)k));
    cr_assert_eq(sched_kind_from_name("pipedream"), -1);
    cr_assert_eq(sched_kind_from_name(""), -1);
    cr_assert_eq(sched_kind_from_name(NULL), -1);
}

Test(schedule, op_names)
{
    static const char *const want[OP_KIND_COUNT] = {
        "forward", "backward", "backward_input", "backward_weight", "post_recv_act", "wait_recv_act",
        "send_act", "wait_send_act", "post_recv_grad", "wait_recv_grad", "send_grad", "wait_send_grad",
        "reduce_grad_start", "reduce_grad_wait"};
    for (int k = 0; k < OP_KIND_COUNT; k++) {
        cr_assert_str_eq(sched_op_name((sched_op_kind)k), want[k]);
        cr_assert_eq(sched_op_is_compute((sched_op_kind)k), k <= OP_BACKWARD_WEIGHT);
    }
    cr_assert_str_eq(sched_op_name(OP_KIND_COUNT), "unknown_op");
}

Test(schedule, build_rejects_bad_arguments)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 0, 4), PT_ERR_INVALID);
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 4, 0), PT_ERR_INVALID);
    cr_assert_eq(schedule_build(&sc, (sched_kind)7, 4, 4), PT_ERR_INVALID);
    cr_assert_eq(schedule_validate(NULL), PT_ERR_INVALID);
}

/* ---- every small schedule ------------------------------------------------- */

Test(schedule, sweep_all_small_schedules_lower_and_validate)
{
    double t0 = now_s();
    int n_sched = 0;
    for (int kind = 0; kind < SCHED_KIND_COUNT; kind++)
        for (int P = 1; P <= 8; P++)
            for (int M = 1; M <= 32; M++) {
                schedule sc;
                cr_assert_eq(schedule_build(&sc, (sched_kind)kind, P, M), PT_OK, "%s", pt_last_error());
                cr_assert_eq(schedule_validate(&sc), PT_OK, "%s", pt_last_error());
                for (int r = 0; r < P; r++) {
                    const sched_list *l = &sc.ranks[r];
                    int next_f = 0, next_b = 0, n_comm = 0, last_bi = -1;
                    for (int i = 0; i < l->n_ops; i++) {
                        if (l->ops[i].kind == OP_FORWARD) cr_assert_eq(l->ops[i].mb, next_f++);
                        /* the weight gradients: B, or BW in a split schedule (right after its BI) */
                        if (l->ops[i].kind == OP_BACKWARD || l->ops[i].kind == OP_BACKWARD_WEIGHT)
                            cr_assert_eq(l->ops[i].mb, next_b++);
                        /* ZB-H1: rank r's BW of mb runs after BI of mb + r (or at the end) */
                        if (l->ops[i].kind == OP_BACKWARD_INPUT) last_bi = l->ops[i].mb;
                        if (l->ops[i].kind == OP_BACKWARD_WEIGHT)
                            cr_assert(last_bi == (l->ops[i].mb + r < M ? l->ops[i].mb + r : M - 1),
                                      "zbh1 P=%d M=%d rank %d: BW mb=%d after BI mb=%d", P, M, r, l->ops[i].mb,
                                      last_bi);
                        cr_assert(sched_kind_splits_backward((sched_kind)kind) ? l->ops[i].kind != OP_BACKWARD
                                                                                : l->ops[i].kind != OP_BACKWARD_INPUT);
                        n_comm += !sched_op_is_compute((sched_op_kind)l->ops[i].kind);
                    }
                    cr_assert_eq(next_f, M);
                    cr_assert_eq(next_b, kind == SCHED_FORWARD_ONLY ? 0 : M);
                    /* each boundary costs post, wait, send, wait-send per direction and micro-batch */
                    int dirs = kind == SCHED_FORWARD_ONLY ? 1 : 2;
                    cr_assert_eq(n_comm, 2 * M * dirs * ((r > 0) + (r < P - 1)), "%s P=%d M=%d rank %d: %d comm ops",
                                 sched_kind_name(kind), P, M, r, n_comm);
                    /* the stash the list needs is the one the theory says */
                    int want = kind == SCHED_FORWARD_ONLY ? (M < 2 ? M : 2)
                                                          : schedule_stash_theory((sched_kind)kind, P, M, r);
                    cr_assert_eq(sc.slots[r], want, "%s P=%d M=%d rank %d: %d stash slots, theory %d",
                                 sched_kind_name(kind), P, M, r, sc.slots[r], want);
                }
                schedule_free(&sc);
                n_sched++;
            }
    cr_assert_eq(n_sched, SCHED_KIND_COUNT * 8 * 32);
    cr_log_info("built, lowered and validated %d schedules in %.3f s", n_sched, now_s() - t0);
}

Test(schedule, large_schedules_validate_quickly)
{
    double t0 = now_s();
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 1024, 64), PT_OK, "%s", pt_last_error());
    cr_assert_eq(schedule_validate(&sc), PT_OK, "%s", pt_last_error());
    schedule_free(&sc);
    cr_log_info("1F1B on 1024 ranks, 64 micro-batches: built and validated in %.3f s", now_s() - t0);
}

/* ---- lists by hand -------------------------------------------------------- */

Test(schedule, onef1b_p2_m3_lowered_by_hand)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 2, 3), PT_OK, "%s", pt_last_error());
    cr_assert_eq(sc.slots[0], 2);
    cr_assert_eq(sc.slots[1], 1);
    /* rank 0: one warm-up forward, two 1F1B pairs, one cool-down backward; the
     * gradient receive is posted with the send, the output buffer of a slot is
     * reused only once its send completed */
    EXPECT_LIST(&sc, 0, {F, 0}, {SA, 0}, {PG, 0},                         /* warm-up */
                {F, 1}, {SA, 1}, {PG, 1}, {WG, 0}, {B, 0},                /* steady */
                {WSA, 0}, {F, 2}, {SA, 2}, {PG, 2}, {WG, 1}, {B, 1},      /* steady */
                {WG, 2}, {B, 2},                                          /* cool-down */
                {WSA, 1}, {WSA, 2});                                      /* the last sends */
    /* rank 1 holds one micro-batch: the next receive is posted once its backward freed the slot */
    EXPECT_LIST(&sc, 1, {PA, 0}, {WA, 0}, {F, 0}, {B, 0}, {SG, 0}, {PA, 1},
                {WA, 1}, {F, 1}, {WSG, 0}, {B, 1}, {SG, 1}, {PA, 2},
                {WA, 2}, {F, 2}, {WSG, 1}, {B, 2}, {SG, 2}, {WSG, 2});
    for (int i = 0; i < sc.ranks[0].n_ops; i++)
        cr_assert_eq(sc.ranks[0].ops[i].slot, sc.ranks[0].ops[i].mb % 2, "rank 0 op %d", i);
    schedule_free(&sc);
}

Test(schedule, zbh1_p2_m2_by_hand)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_ZBH1, 2, 2), PT_OK, "%s", pt_last_error());
    cr_assert_eq(sc.slots[0], 2);
    cr_assert_eq(sc.slots[1], 2, "rank 1 runs BW one backward late: it holds two micro-batches");
    /* the input gradient leaves right after BI; rank 1's BW of mb 0 waits until after BI of mb 1 */
    EXPECT_LIST(&sc, 0, {F, 0}, {SA, 0}, {PG, 0}, {F, 1}, {SA, 1}, {PG, 1}, {WG, 0}, {BI, 0}, {BW, 0},
                {WG, 1}, {BI, 1}, {BW, 1}, {WSA, 0}, {WSA, 1});
    EXPECT_LIST(&sc, 1, {PA, 0}, {PA, 1}, {WA, 0}, {F, 0}, {BI, 0}, {SG, 0}, {WA, 1}, {F, 1}, {BI, 1},
                {SG, 1}, {BW, 0}, {BW, 1}, {WSG, 0}, {WSG, 1});
    schedule_free(&sc);
}

Test(schedule, single_rank_and_forward_only_by_hand)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 1, 3), PT_OK, "%s", pt_last_error());
    EXPECT_LIST(&sc, 0, {F, 0}, {B, 0}, {F, 1}, {B, 1}, {F, 2}, {B, 2});
    cr_assert_eq(sc.slots[0], 1);
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 1, 3), PT_OK, "%s", pt_last_error());
    EXPECT_LIST(&sc, 0, {F, 0}, {F, 1}, {F, 2}, {B, 0}, {B, 1}, {B, 2});
    cr_assert_eq(sc.slots[0], 3);
    schedule_free(&sc);
    /* forward-only: double-buffered, a receive posted as soon as a forward frees its slot */
    cr_assert_eq(schedule_build(&sc, SCHED_FORWARD_ONLY, 3, 3), PT_OK, "%s", pt_last_error());
    EXPECT_LIST(&sc, 0, {F, 0}, {SA, 0}, {F, 1}, {SA, 1}, {WSA, 0}, {F, 2}, {SA, 2}, {WSA, 1}, {WSA, 2});
    EXPECT_LIST(&sc, 1, {PA, 0}, {PA, 1}, {WA, 0}, {F, 0}, {SA, 0}, {PA, 2}, {WA, 1}, {F, 1}, {SA, 1},
                {WSA, 0}, {WA, 2}, {F, 2}, {SA, 2}, {WSA, 1}, {WSA, 2});
    EXPECT_LIST(&sc, 2, {PA, 0}, {PA, 1}, {WA, 0}, {F, 0}, {PA, 2}, {WA, 1}, {F, 1}, {WA, 2}, {F, 2});
    schedule_free(&sc);
}

/* The B/W split lowers: the input gradient is sent after BI, the slot is
 * released by BW, and the weight gradients may be delayed. */
Test(schedule, split_backward_lowers_and_validates)
{
    static const cop r0[] = {{F, 0, 0}, {F, 1, 0}, {BI, 0, 0}, {BI, 1, 0}, {BW, 0, 0}, {BW, 1, 0}};
    static const cop r1[] = {{F, 0, 0}, {BI, 0, 0}, {F, 1, 0}, {BW, 0, 0}, {BI, 1, 0}, {BW, 1, 0}};
    const cop *lists[] = {r0, r1};
    int n[] = {6, 6};
    schedule sc;
    hand_schedule(&sc, SCHED_1F1B, 2, 1, 2, lists, n);
    cr_assert_eq(schedule_lower(&sc, 1), PT_OK, "%s", pt_last_error());
    cr_assert_eq(schedule_validate(&sc), PT_OK, "%s", pt_last_error());
    cr_assert_eq(sc.slots[0], 2);
    cr_assert_eq(sc.slots[1], 2, "rank 1 holds mb 0 until its BW, after F of mb 1");
    /* rank 1 sends the input gradient right after BI */
    cr_assert_eq(find_op(&sc, 1, SG, 0), find_op(&sc, 1, BI, 0) + 1);
    cr_assert_eq(schedule_lower(&sc, 1), PT_ERR_INVALID, "lowered twice");
    schedule_free(&sc);
}

/* Two chunks per rank (virtual stages c·P + r): the lowering finds each
 * chunk's neighbours, the validator matches every transfer and finds no
 * deadlock; the same on one rank, which then talks to itself. */
Test(schedule, two_chunks_per_rank_lower_and_validate)
{
    static const cop r0[] = {{F, 0, 0}, {F, 1, 0}, {F, 0, 1}, {F, 1, 1},
                             {B, 0, 1}, {B, 1, 1}, {B, 0, 0}, {B, 1, 0}};
    static const cop r1[] = {{F, 0, 0}, {F, 1, 0}, {F, 0, 1}, {F, 1, 1},
                             {B, 0, 1}, {B, 1, 1}, {B, 0, 0}, {B, 1, 0}};
    const cop *lists[] = {r0, r1};
    int n[] = {8, 8};
    for (int P = 1; P <= 2; P++) {
        schedule sc;
        hand_schedule(&sc, SCHED_GPIPE, P, 2, 2, lists, n);
        cr_assert_eq(schedule_lower(&sc, 1), PT_OK, "P=%d: %s", P, pt_last_error());
        cr_assert_eq(schedule_validate(&sc), PT_OK, "P=%d: %s", P, pt_last_error());
        for (int r = 0; r < P; r++)
            for (int c = 0; c < 2; c++) cr_assert_eq(sc.slots[r * 2 + c], 2);
        /* the first virtual stage (rank 0, chunk 0) receives nothing, the last sends nothing */
        const sched_list *l = &sc.ranks[0];
        for (int i = 0; i < l->n_ops; i++)
            cr_assert(!(l->ops[i].chunk == 0 && (l->ops[i].kind == PA || l->ops[i].kind == SG)),
                      "P=%d: virtual stage 0 has %s", P, sched_op_name(l->ops[i].kind));
        schedule_free(&sc);
    }
}

Test(schedule, forward_only_goes_round_the_chunks_in_groups_of_p)
{
    /* evaluation and generation of an interleaved layout: any M; groups of P micro-batches (the
     * last one smaller) go through chunk 0, then chunk 1, ... */
    for (int P = 1; P <= 4; P++)
        for (int v = 1; v <= 3; v++)
            for (int M = 1; M <= 7; M++) {
                schedule sc;
                cr_assert_eq(schedule_build_chunks(&sc, SCHED_FORWARD_ONLY, P, v, M), PT_OK, "%s", pt_last_error());
                cr_assert_eq(schedule_validate(&sc), PT_OK, "P=%d v=%d M=%d: %s", P, v, M, pt_last_error());
                for (int r = 0; r < P; r++) {
                    int k = 0;
                    for (int i = 0; i < sc.ranks[r].n_ops; i++) {
                        const sched_op *o = &sc.ranks[r].ops[i];
                        if (o->kind != OP_FORWARD) continue;
                        int g0 = k / (P * v) * P, size = M - g0 < P ? M - g0 : P, in = k - g0 * v;
                        cr_assert(o->chunk == in / size && o->mb == g0 + in % size, "P=%d v=%d M=%d rank %d: "
                                  "forward %d is mb=%d chunk=%d", P, v, M, r, k, o->mb, o->chunk);
                        k++;
                    }
                    cr_assert_eq(k, v * M);
                }
                schedule_free(&sc);
            }
    schedule sc;
    cr_assert_eq(schedule_build_chunks(&sc, SCHED_1F1B, 2, 2, 4), PT_ERR_INVALID, "1f1b accepted two chunks");
}

Test(schedule, lowering_rejects_forwards_out_of_order)
{
    static const cop r0[] = {{F, 1, 0}, {F, 0, 0}, {B, 0, 0}, {B, 1, 0}};
    const cop *lists[] = {r0};
    int n[] = {4};
    schedule sc;
    hand_schedule(&sc, SCHED_GPIPE, 1, 1, 2, lists, n);
    cr_assert_eq(schedule_lower(&sc, 1), PT_ERR_INVALID);
    cr_assert(strstr(pt_last_error(), "micro-batch order") != NULL, "%s", pt_last_error());
    schedule_free(&sc);
}

/* ---- printing ---------------------------------------------------------- */

typedef struct {
    int n;
    char lines[32][96];
} line_sink;

static void sink(void *ctx, const char *line)
{
    line_sink *k = ctx;
    cr_assert_lt(k->n, 32);
    snprintf(k->lines[k->n++], 96, "%s", line);
}

Test(schedule, print_one_line_per_op)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    line_sink k = {0};
    schedule_print(&sc, sink, &k);
    cr_assert_eq(k.n, sc.ranks[0].n_ops + sc.ranks[1].n_ops);
    cr_assert_str_eq(k.lines[0], "r0 0 forward mb=0 chunk=0 slot=0");
    cr_assert_str_eq(k.lines[1], "r0 1 send_act mb=0 chunk=0 slot=0");
    schedule_free(&sc);
}

/* ---- broken lists ------------------------------------------------------------ */

/* The order the executor once decided by itself: a receive posted before the
 * backward that frees its slot (mb − slots) makes the forward read a buffer
 * MPI may still be writing. */
Test(schedule, rejects_receive_posted_into_a_held_slot)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 2, 4), PT_OK, "%s", pt_last_error());
    cr_assert_eq(sc.slots[1], 1);
    int post = find_op(&sc, 1, PA, 1), bwd = find_op(&sc, 1, B, 0);
    cr_assert_gt(post, bwd);
    move_op(&sc, 1, post, bwd);
    expect_rejected(&sc, "rank 1 op", "still held by mb=0");
    schedule_free(&sc);
}

Test(schedule, rejects_wait_without_post_and_forward_before_wait)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    remove_op(&sc, 1, find_op(&sc, 1, PA, 0));
    expect_rejected(&sc, "never posted", "post_recv_act mb=0");
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    remove_op(&sc, 1, find_op(&sc, 1, WA, 1));
    expect_rejected(&sc, "reads its input before wait_recv_act mb=1", NULL);
    schedule_free(&sc);
}

Test(schedule, rejects_buffer_reuse_while_a_send_is_pending)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 2, 3), PT_OK, "%s", pt_last_error());
    /* rank 0 reuses slot 0 for mb 2: complete the send of mb 0 only after that forward */
    int w = find_op(&sc, 0, WSA, 0), f = find_op(&sc, 0, F, 2);
    move_op(&sc, 0, w, f);
    expect_rejected(&sc, "while the send of mb=0 from it is pending", NULL);
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 2, 3), PT_OK, "%s", pt_last_error());
    int wsg = find_op(&sc, 1, WSG, 0), b1 = find_op(&sc, 1, B, 1);
    move_op(&sc, 1, wsg, b1);
    expect_rejected(&sc, "input-gradient buffer of slot 0 while the send of mb=0", NULL);
    schedule_free(&sc);
}

Test(schedule, rejects_sends_never_completed_and_unmatched)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    remove_op(&sc, 0, find_op(&sc, 0, WSA, 1));
    expect_rejected(&sc, "never completed", "wait_send_act mb=1");
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 3, 2), PT_OK, "%s", pt_last_error());
    int sg = find_op(&sc, 2, SG, 1);
    remove_op(&sc, 2, sg);
    remove_op(&sc, 2, find_op(&sc, 2, WSG, 1));
    expect_rejected(&sc, "no send_grad mb=1", NULL);
    schedule_free(&sc);
}

Test(schedule, rejects_deadlock)
{
    /* rank 0 waits for mb 0's gradient before it sends mb 0's activation,
     * which rank 1 waits for: each waits on the other */
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 1), PT_OK, "%s", pt_last_error());
    EXPECT_LIST(&sc, 0, {F, 0}, {SA, 0}, {PG, 0}, {WG, 0}, {B, 0}, {WSA, 0});
    move_op(&sc, 0, find_op(&sc, 0, SA, 0), 3); /* F0 PG0 WG0 SA0 B0 WSA0 */
    expect_rejected(&sc, "deadlock, 2 of 2 ranks blocked", "rank 0 op 2 (wait_recv_grad mb=0)");
    schedule_free(&sc);
}

Test(schedule, rejects_backwards_out_of_order_and_duplicates)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 1, 3), PT_OK, "%s", pt_last_error());
    sched_op t = sc.ranks[0].ops[3];
    sc.ranks[0].ops[3] = sc.ranks[0].ops[4];
    sc.ranks[0].ops[4] = t;
    expect_rejected(&sc, "micro-batch order", "expected mb=0");
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 1, 2), PT_OK, "%s", pt_last_error());
    sc.ranks[0].ops[1].mb = 0;
    expect_rejected(&sc, "duplicate", NULL);
    schedule_free(&sc);
}

Test(schedule, rejects_out_of_range_and_missing_neighbours)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    sc.ranks[0].ops[0].mb = 7;
    expect_rejected(&sc, "micro-batch out of range", NULL);
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    sc.ranks[0].ops[0].slot = 9;
    expect_rejected(&sc, "slot 9 out of range", NULL);
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    sc.ranks[0].ops[1].kind = PA; /* rank 0 is the first virtual stage */
    expect_rejected(&sc, "virtual stage 0 is the first", NULL);
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    sc.ranks[1].ops[2].chunk = 3;
    expect_rejected(&sc, "chunk out of range", NULL);
    schedule_free(&sc);
}

Test(schedule, rejects_unlowered_lists)
{
    static const cop r0[] = {{F, 0, 0}, {B, 0, 0}};
    const cop *lists[] = {r0};
    int n[] = {2};
    schedule sc;
    hand_schedule(&sc, SCHED_GPIPE, 1, 1, 1, lists, n);
    expect_rejected(&sc, "not lowered", NULL);
    schedule_free(&sc);
}

/* ---- timing ---------------------------------------------------------------- */

/* With unit costs (F = BI = BW = 1, B = 2, transfers free), GPipe and 1F1B
 * leave every rank idle (P−1)/(M+P−1) of the step, the textbook bubble; ZB-H1
 * less, from the same lists the executor runs. */
Test(schedule, theoretical_bubbles_from_the_lists)
{
    for (int P = 1; P <= 8; P++)
        for (int M = 1; M <= 32; M++) {
            double want = (P - 1) / (double)(M + P - 1);
            schedule sc;
            for (int kind = 0; kind < SCHED_KIND_COUNT; kind++) {
                if (kind == SCHED_FORWARD_ONLY) continue;
                cr_assert_eq(schedule_build(&sc, (sched_kind)kind, P, M), PT_OK, "%s", pt_last_error());
                double b = schedule_theoretical_bubble(&sc);
                cr_assert(P == 1 || b > 0, "%s P=%d M=%d: no bubble (could the lists not be timed?)",
                          sched_kind_name(kind), P, M);
                if (kind == SCHED_ZBH1)
                    cr_assert(b <= want + 1e-12, "zbh1 P=%d M=%d: bubble %.4f above 1F1B's %.4f", P, M, b, want);
                else
                    cr_assert(b > want - 1e-12 && b < want + 1e-12, "%s P=%d M=%d: bubble %.6f, expected %.6f",
                              sched_kind_name(kind), P, M, b, want);
                schedule_free(&sc);
            }
        }
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_ZBH1, 2, 8), PT_OK, "%s", pt_last_error());
    double z = schedule_theoretical_bubble(&sc);
    schedule_free(&sc);
    cr_log_info("ZB-H1 P=2 M=8: theoretical bubble %.4f (1F1B %.4f)", z, 1.0 / 9);
    cr_assert(z < 0.4 / 9, "ZB-H1 P=2 M=8: bubble %.4f, expected under 0.4 of 1F1B's", z);
    for (int P = 2; P <= 8; P++)
        for (int M = P; M <= 32; M += P) {
            cr_assert_eq(schedule_build(&sc, SCHED_ZBH1, P, M), PT_OK, "%s", pt_last_error());
            double b = schedule_theoretical_bubble(&sc), o = (P - 1) / (double)(M + P - 1);
            cr_assert(b <= 0.5 * o, "zbh1 P=%d M=%d: bubble %.4f, more than half of 1F1B's %.4f", P, M, b, o);
            schedule_free(&sc);
        }
}

/* Interleaved 1F1B with v chunks per rank: the lists lower and validate on
 * every P ≤ 4, v ≤ 3, M a multiple of P, and their unit-cost bubble is
 * Megatron's (P−1)/(v·M+P−1), a v-th of 1F1B's for large M. */
Test(schedule, interleaved_lowers_validates_and_divides_the_bubble)
{
    for (int P = 1; P <= 4; P++)
        for (int v = 1; v <= 3; v++)
            for (int M = P; M <= 16; M += P) {
                schedule sc;
                cr_assert_eq(schedule_build_chunks(&sc, SCHED_INTERLEAVED, P, v, M), PT_OK, "P=%d v=%d M=%d: %s", P,
                             v, M, pt_last_error());
                cr_assert_eq(schedule_validate(&sc), PT_OK, "P=%d v=%d M=%d: %s", P, v, M, pt_last_error());
                double b = schedule_theoretical_bubble(&sc), want = (P - 1) / (double)(v * M + P - 1);
                cr_assert(b > want - 1e-9 && b < want + 1e-9, "P=%d v=%d M=%d: bubble %.6f, expected %.6f", P, v, M,
                          b, want);
                /* each chunk forwards and backwards every micro-batch in order */
                for (int r = 0; r < P; r++)
                    for (int c = 0; c < v; c++) {
                        int nf = 0, nb = 0;
                        const sched_list *l = &sc.ranks[r];
                        for (int i = 0; i < l->n_ops; i++) {
                            if (l->ops[i].chunk != c) continue;
                            if (l->ops[i].kind == OP_FORWARD) cr_assert_eq(l->ops[i].mb, nf++);
                            if (l->ops[i].kind == OP_BACKWARD) cr_assert_eq(l->ops[i].mb, nb++);
                        }
                        cr_assert(nf == M && nb == M, "P=%d v=%d M=%d rank %d chunk %d: %d forwards, %d backwards", P,
                                  v, M, r, c, nf, nb);
                    }
                schedule_free(&sc);
            }
    schedule sc;
    cr_assert_eq(schedule_build_chunks(&sc, SCHED_INTERLEAVED, 4, 2, 6), PT_ERR_INVALID);
    cr_assert(strstr(pt_last_error(), "M = 6 micro-batches is not a multiple of the 4 ranks") != NULL, "%s",
              pt_last_error());
    cr_assert(strstr(pt_last_error(), "use M = 4 or 8") != NULL, "%s", pt_last_error());
    cr_assert_eq(schedule_build_chunks(&sc, SCHED_1F1B, 4, 2, 8), PT_ERR_INVALID);
    cr_assert_eq(schedule_build_chunks(&sc, SCHED_INTERLEAVED, 2, 9, 8), PT_ERR_INVALID);
}

/* ---- gradient reductions over replicas ------------------------------------ */

/* Index of the first op of rank r of kind k, chunk c, bucket or mb x (each when ≥ 0), −1 none. */
static int find_chunk_op(const schedule *sc, int r, int k, int c, int x)
{
    for (int i = 0; i < sc->ranks[r].n_ops; i++) {
        const sched_op *o = &sc->ranks[r].ops[i];
        if (o->kind == k && (c < 0 || o->chunk == c) && (x < 0 || o->mb == x)) return i;
    }
    return -1;
}

Test(schedule, buckets_are_reduced_after_the_last_weight_gradient)
{
    sched_kind kinds[] = {SCHED_GPIPE, SCHED_1F1B, SCHED_ZBH1, SCHED_INTERLEAVED};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (int P = 1; P <= 3; P++) {
            int v = kinds[k] == SCHED_INTERLEAVED ? 2 : 1, M = 2 * P, buckets[6];
            for (int i = 0; i < P * v; i++) buckets[i] = 1 + i % 3;
            schedule sc;
            cr_assert_eq(schedule_build_grid(&sc, kinds[k], P, v, M, buckets), PT_OK, "%s", pt_last_error());
            cr_assert_eq(schedule_validate(&sc), PT_OK, "%s P=%d: %s", sched_kind_name(kinds[k]), P, pt_last_error());
            int last_w = sched_kind_splits_backward(kinds[k]) ? OP_BACKWARD_WEIGHT : OP_BACKWARD;
            for (int r = 0; r < P; r++)
                for (int c = 0; c < v; c++)
                    for (int b = 0; b < buckets[r * v + c]; b++) {
                        int s = find_chunk_op(&sc, r, OP_REDUCE_GRAD_START, c, b), w = find_chunk_op(&sc, r, OP_REDUCE_GRAD_WAIT, c, b);
                        cr_assert(s > find_chunk_op(&sc, r, last_w, c, M - 1) && w > s, "%s P=%d rank %d chunk %d bucket %d: "
                                  "start at %d, wait at %d", sched_kind_name(kinds[k]), P, r, c, b, s, w);
                    }
            /* a start before the last weight gradient, or a wait before its start, is refused */
            int s = find_chunk_op(&sc, 0, OP_REDUCE_GRAD_START, 0, 0);
            move_op(&sc, 0, s, find_chunk_op(&sc, 0, last_w, 0, M - 1));
            expect_rejected(&sc, "before its weight gradients are complete", NULL);
            move_op(&sc, 0, find_chunk_op(&sc, 0, OP_REDUCE_GRAD_START, 0, 0), s);
            cr_assert_eq(schedule_validate(&sc), PT_OK, "%s", pt_last_error());
            int w = find_chunk_op(&sc, 0, OP_REDUCE_GRAD_WAIT, 0, 0);
            move_op(&sc, 0, w, find_chunk_op(&sc, 0, OP_REDUCE_GRAD_START, 0, 0));
            expect_rejected(&sc, "which was never started", NULL);
            remove_op(&sc, 0, find_chunk_op(&sc, 0, OP_REDUCE_GRAD_WAIT, 0, 0));
            remove_op(&sc, 0, find_chunk_op(&sc, 0, OP_REDUCE_GRAD_START, 0, 0));
            expect_rejected(&sc, "gradient bucket 0 of chunk 0 is never reduced", NULL);
            schedule_free(&sc);
        }
}
