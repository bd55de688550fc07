/* test_schedule.c — the schedule generators (GPipe, 1F1B, forward-only) and
 * the validator: every P ≤ 8, M ≤ 32 validates, small cases match lists
 * written out by hand, the peak stash equals the bound, and lists broken on
 * purpose are rejected with a message naming the stage and the op. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schedule.h"

/* ---- helpers ----------------------------------------------------------- */

enum { F = OP_FORWARD, B = OP_BACKWARD, SA = OP_SEND_ACT, RA = OP_RECV_ACT, SG = OP_SEND_GRAD, RG = OP_RECV_GRAD };

typedef struct {
    int kind, mb;
} xop;

static void expect_list(const schedule *sc, int s, const xop *want, int n)
{
    const sched_list *l = &sc->ranks[s];
    cr_assert_eq(l->n_ops, n, "%s P=%d M=%d stage %d: %d ops, expected %d", sched_kind_name(sc->kind), sc->P,
                 sc->M, s, l->n_ops, n);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(l->ops[i].kind, want[i].kind, "%s P=%d M=%d stage %d op %d: %s, expected %s",
                     sched_kind_name(sc->kind), sc->P, sc->M, s, i, sched_op_name(l->ops[i].kind),
                     sched_op_name(want[i].kind));
        cr_assert_eq(l->ops[i].mb, want[i].mb, "%s P=%d M=%d stage %d op %d (%s): mb=%d, expected %d",
                     sched_kind_name(sc->kind), sc->P, sc->M, s, i, sched_op_name(l->ops[i].kind), l->ops[i].mb,
                     want[i].mb);
        cr_assert_eq(l->ops[i].chunk, 0);
    }
}

#define EXPECT_LIST(sc, s, ...)                                                    \
    do {                                                                           \
        static const xop want_[] = {__VA_ARGS__};                                  \
        expect_list((sc), (s), want_, (int)(sizeof want_ / sizeof want_[0]));      \
    } while (0)

/* Index of the op (kind, mb) on stage s; fails the test when absent. */
static int find_op(const schedule *sc, int s, int kind, int mb)
{
    const sched_list *l = &sc->ranks[s];
    for (int i = 0; i < l->n_ops; i++)
        if (l->ops[i].kind == kind && l->ops[i].mb == mb) return i;
    cr_assert_fail("stage %d has no %s mb=%d", s, sched_op_name(kind), mb);
    return -1;
}

static void remove_op(schedule *sc, int s, int i)
{
    sched_list *l = &sc->ranks[s];
    memmove(&l->ops[i], &l->ops[i + 1], (size_t)(l->n_ops - i - 1) * sizeof *l->ops);
    l->n_ops--;
}

static void insert_op(schedule *sc, int s, int i, sched_op op)
{
    sched_list *l = &sc->ranks[s];
    sched_op *p = realloc(l->ops, (size_t)(l->n_ops + 1) * sizeof *p);
    cr_assert_not_null(p);
    l->ops = p;
    memmove(&l->ops[i + 1], &l->ops[i], (size_t)(l->n_ops - i) * sizeof *l->ops);
    l->ops[i] = op;
    l->n_ops++;
}

static void swap_ops(schedule *sc, int s, int i, int j)
{
    sched_op t = sc->ranks[s].ops[i];
    sc->ranks[s].ops[i] = sc->ranks[s].ops[j];
    sc->ranks[s].ops[j] = t;
}

/* The validator must fail with PT_ERR_INVALID and a message containing every
 * string of the NULL-terminated list. */
static void expect_reject(const schedule *sc, const int *bounds, const char *const *needles)
{
    pt_clear_error();
    pt_status st = schedule_validate(sc, bounds);
    const char *msg = pt_last_error();
    cr_assert_eq(st, PT_ERR_INVALID, "validator accepted a broken list (status %d, message \"%s\")", st, msg);
    for (int k = 0; needles[k]; k++)
        cr_assert_not_null(strstr(msg, needles[k]), "message \"%s\" lacks \"%s\"", msg, needles[k]);
}

#define EXPECT_REJECT(sc, bounds, ...)                                 \
    do {                                                               \
        const char *const needles_[] = {__VA_ARGS__, NULL};            \
        expect_reject((sc), (bounds), needles_);                       \
    } while (0)

static const char *at(int s, int i, const char *op, int mb)
{
    static char bufs[8][96];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 96, "stage %d op %d (%s mb=%d)", s, i, op, mb);
    return b;
}

/* Largest number of micro-batches forwarded and not yet backwarded, walking
 * the list (forward-only: held from the forward to its send_act, or only
 * during the forward on the last stage). */
static int peak_stash(const schedule *sc, int s)
{
    const sched_list *l = &sc->ranks[s];
    int cur = 0, peak = 0, last = s == sc->P - 1;
    for (int i = 0; i < l->n_ops; i++) {
        switch (l->ops[i].kind) {
        case OP_FORWARD:
            cur++;
            if (cur > peak) peak = cur;
            if (sc->kind == SCHED_FORWARD_ONLY && last) cur--;
            break;
        case OP_BACKWARD: cur--; break;
        case OP_SEND_ACT:
            if (sc->kind == SCHED_FORWARD_ONLY) cur--;
            break;
        default: break;
        }
    }
    return peak;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- names ------------------------------------------------------------- */

Test(schedule, kind_names_round_trip)
{
    cr_assert_str_eq(sched_kind_name(SCHED_GPIPE), "gpipe");
    cr_assert_str_eq(sched_kind_name(SCHED_1F1B), "1f1b");
    cr_assert_str_eq(sched_kind_name(SCHED_FORWARD_ONLY), "forward");
    for (int k = 0; k < SCHED_KIND_COUNT; k++)
        cr_assert_eq(sched_kind_from_name(sched_kind_name((sched_kind)k)), k, "round trip of %s",
                     sched_kind_name((sched_kind)k));
    cr_assert_eq(sched_kind_from_name("pipedream"), -1);
    cr_assert_eq(sched_kind_from_name("GPipe "), -1);
    cr_assert_eq(sched_kind_from_name(""), -1);
    cr_assert_eq(sched_kind_from_name(NULL), -1);
}

Test(schedule, op_names)
{
    cr_assert_str_eq(sched_op_name(OP_FORWARD), "forward");
    cr_assert_str_eq(sched_op_name(OP_BACKWARD), "backward");
    cr_assert_str_eq(sched_op_name(OP_SEND_ACT), "send_act");
    cr_assert_str_eq(sched_op_name(OP_RECV_ACT), "recv_act");
    cr_assert_str_eq(sched_op_name(OP_SEND_GRAD), "send_grad");
    cr_assert_str_eq(sched_op_name(OP_RECV_GRAD), "recv_grad");
}

/* ---- generators -------------------------------------------------------- */

Test(schedule, build_rejects_bad_arguments)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 0, 4), PT_ERR_INVALID);
    cr_assert_not_null(strstr(pt_last_error(), "P = 0"), "%s", pt_last_error());
    cr_assert_null(sc.ranks);
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 4, 0), PT_ERR_INVALID);
    cr_assert_not_null(strstr(pt_last_error(), "M = 0"), "%s", pt_last_error());
    cr_assert_eq(schedule_build(&sc, (sched_kind)7, 4, 4), PT_ERR_INVALID);
    cr_assert_not_null(strstr(pt_last_error(), "kind 7"), "%s", pt_last_error());
    cr_assert_null(sc.ranks);
}

Test(schedule, stash_bounds)
{
    cr_assert_eq(schedule_stash_bound(SCHED_GPIPE, 4, 8, 0), 8);
    cr_assert_eq(schedule_stash_bound(SCHED_GPIPE, 4, 8, 3), 8);
    cr_assert_eq(schedule_stash_bound(SCHED_1F1B, 4, 8, 0), 4);
    cr_assert_eq(schedule_stash_bound(SCHED_1F1B, 4, 8, 3), 1);
    cr_assert_eq(schedule_stash_bound(SCHED_1F1B, 8, 3, 1), 3);
    cr_assert_eq(schedule_stash_bound(SCHED_FORWARD_ONLY, 4, 8, 2), 1);
}

/* Every P in 1..8 and M in 1..32 for every schedule: builds, validates, has
 * the expected number of ops, forwards every micro-batch once, backwards
 * them in order 0..M−1 and peaks at exactly the stash bound. */
Test(schedule, sweep_all_small_schedules_validate)
{
    double t0 = now_s();
    int n_sched = 0;
    for (int kind = 0; kind < SCHED_KIND_COUNT; kind++) {
        for (int P = 1; P <= 8; P++) {
            for (int M = 1; M <= 32; M++) {
                schedule sc;
                cr_assert_eq(schedule_build(&sc, (sched_kind)kind, P, M), PT_OK, "%s", pt_last_error());
                cr_assert_eq(schedule_validate(&sc, NULL), PT_OK, "%s", pt_last_error());
                for (int s = 0; s < P; s++) {
                    const sched_list *l = &sc.ranks[s];
                    int per_mb = 1 + (s > 0) + (s < P - 1);
                    int want_n = M * per_mb * (kind == SCHED_FORWARD_ONLY ? 1 : 2);
                    cr_assert_eq(l->n_ops, want_n, "%s P=%d M=%d stage %d: %d ops, expected %d",
                                 sched_kind_name(kind), P, M, s, l->n_ops, want_n);
                    int next_f = 0, next_b = 0;
                    for (int i = 0; i < l->n_ops; i++) {
                        if (l->ops[i].kind == OP_FORWARD) cr_assert_eq(l->ops[i].mb, next_f++);
                        if (l->ops[i].kind == OP_BACKWARD) cr_assert_eq(l->ops[i].mb, next_b++);
                    }
                    cr_assert_eq(next_f, M);
                    cr_assert_eq(next_b, kind == SCHED_FORWARD_ONLY ? 0 : M);
                    int bound = schedule_stash_bound((sched_kind)kind, P, M, s);
                    int want_bound = kind == SCHED_GPIPE ? M : kind == SCHED_1F1B ? (P - s < M ? P - s : M) : 1;
                    cr_assert_eq(bound, want_bound);
                    cr_assert_eq(peak_stash(&sc, s), bound, "%s P=%d M=%d stage %d: peak stash %d, bound %d",
                                 sched_kind_name(kind), P, M, s, peak_stash(&sc, s), bound);
                }
                schedule_free(&sc);
                cr_assert_null(sc.ranks);
                n_sched++;
            }
        }
    }
    cr_assert_eq(n_sched, 3 * 8 * 32);
    cr_log_info("built and validated %d schedules in %.3f s", n_sched, now_s() - t0);
}

Test(schedule, onef1b_p2_m3_by_hand)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 2, 3), PT_OK, "%s", pt_last_error());
    /* stage 0: one warm-up forward, two 1F1B pairs, one cool-down backward */
    EXPECT_LIST(&sc, 0, {F, 0}, {SA, 0},                    /* warm-up */
                {F, 1}, {SA, 1}, {RG, 0}, {B, 0},           /* steady */
                {F, 2}, {SA, 2}, {RG, 1}, {B, 1},           /* steady */
                {RG, 2}, {B, 2});                           /* cool-down */
    EXPECT_LIST(&sc, 1, {RA, 0}, {F, 0}, {B, 0}, {SG, 0}, {RA, 1}, {F, 1}, {B, 1}, {SG, 1}, {RA, 2}, {F, 2},
                {B, 2}, {SG, 2});
    cr_assert_eq(schedule_validate(&sc, NULL), PT_OK, "%s", pt_last_error());
    schedule_free(&sc);
}

Test(schedule, onef1b_p3_m2_by_hand)
{
    /* M < P−1 on stage 0: all forwards are warm-up, no steady phase */
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 3, 2), PT_OK, "%s", pt_last_error());
    EXPECT_LIST(&sc, 0, {F, 0}, {SA, 0}, {F, 1}, {SA, 1}, {RG, 0}, {B, 0}, {RG, 1}, {B, 1});
    EXPECT_LIST(&sc, 1, {RA, 0}, {F, 0}, {SA, 0}, {RA, 1}, {F, 1}, {SA, 1}, {RG, 0}, {B, 0}, {SG, 0}, {RG, 1},
                {B, 1}, {SG, 1});
    EXPECT_LIST(&sc, 2, {RA, 0}, {F, 0}, {B, 0}, {SG, 0}, {RA, 1}, {F, 1}, {B, 1}, {SG, 1});
    schedule_free(&sc);
}

Test(schedule, gpipe_p2_m2_by_hand)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    EXPECT_LIST(&sc, 0, {F, 0}, {SA, 0}, {F, 1}, {SA, 1}, {RG, 0}, {B, 0}, {RG, 1}, {B, 1});
    EXPECT_LIST(&sc, 1, {RA, 0}, {F, 0}, {RA, 1}, {F, 1}, {B, 0}, {SG, 0}, {B, 1}, {SG, 1});
    schedule_free(&sc);
}

Test(schedule, single_stage_and_forward_only_by_hand)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 1, 3), PT_OK, "%s", pt_last_error());
    EXPECT_LIST(&sc, 0, {F, 0}, {B, 0}, {F, 1}, {B, 1}, {F, 2}, {B, 2});
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 1, 3), PT_OK, "%s", pt_last_error());
    EXPECT_LIST(&sc, 0, {F, 0}, {F, 1}, {F, 2}, {B, 0}, {B, 1}, {B, 2});
    schedule_free(&sc);
    cr_assert_eq(schedule_build(&sc, SCHED_FORWARD_ONLY, 3, 2), PT_OK, "%s", pt_last_error());
    EXPECT_LIST(&sc, 0, {F, 0}, {SA, 0}, {F, 1}, {SA, 1});
    EXPECT_LIST(&sc, 1, {RA, 0}, {F, 0}, {SA, 0}, {RA, 1}, {F, 1}, {SA, 1});
    EXPECT_LIST(&sc, 2, {RA, 0}, {F, 0}, {RA, 1}, {F, 1});
    schedule_free(&sc);
}

/* ---- printing ---------------------------------------------------------- */

typedef struct {
    int n;
    char lines[32][64];
} line_sink;

static void sink(void *ctx, const char *line)
{
    line_sink *k = ctx;
    cr_assert_lt(k->n, 32);
    snprintf(k->lines[k->n++], 64, "%s", line);
}

Test(schedule, print_one_line_per_op)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK, "%s", pt_last_error());
    line_sink k = {.n = 0};
    schedule_print(&sc, sink, &k);
    cr_assert_eq(k.n, 16);
    cr_assert_str_eq(k.lines[0], "s0 0 forward mb=0");
    cr_assert_str_eq(k.lines[4], "s0 4 recv_grad mb=0");
    cr_assert_str_eq(k.lines[8], "s1 0 recv_act mb=0");
    cr_assert_str_eq(k.lines[15], "s1 7 send_grad mb=1");
    schedule_free(&sc);
}

/* ---- the validator on lists broken on purpose ------------------------- */

Test(schedule, rejects_removed_recv_act)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 4, 8), PT_OK);
    int i = find_op(&sc, 2, RA, 3);
    cr_assert_eq(i, 15); /* warm-up 3 ops + two steady blocks of 6 */
    remove_op(&sc, 2, i);
    /* the forward of mb 3 now sits where its receive was */
    EXPECT_REJECT(&sc, NULL, "schedule 1f1b P=4 M=8", at(2, 15, "forward", 3), "no recv_act mb=3");
    schedule_free(&sc);
}

Test(schedule, rejects_removed_send_grad)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 4, 8), PT_OK);
    int b = find_op(&sc, 1, B, 5);
    int recv = find_op(&sc, 0, RG, 5);
    remove_op(&sc, 1, find_op(&sc, 1, SG, 5));
    char peer[64];
    snprintf(peer, sizeof peer, "stage 0's recv_grad mb=5 at its op %d", recv);
    EXPECT_REJECT(&sc, NULL, at(1, b, "backward", 5), "no send_grad mb=5", peer);
    schedule_free(&sc);
}

Test(schedule, rejects_backward_before_forward)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 4, 8), PT_OK);
    int f = find_op(&sc, 3, F, 2), b = find_op(&sc, 3, B, 2);
    cr_assert_lt(f, b);
    swap_ops(&sc, 3, f, b);
    EXPECT_REJECT(&sc, NULL, at(3, f, "backward", 2), "forward mb=2 has not run yet");
    schedule_free(&sc);
}

Test(schedule, rejects_deadlock_gpipe)
{
    /* GPipe P=4 M=2, stage 2 = [ra0 f0 sa0 ra1 f1 sa1 rg0 b0 sg0 rg1 b1 sg1]:
     * swapping sa0 (op 2) and rg0 (op 6) makes stage 2 wait for the gradient
     * of mb 0 before it sends mb 0's activation, which stage 3 needs before
     * it can produce that gradient: a cycle. Each list alone is in order. */
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 4, 2), PT_OK);
    cr_assert_eq(find_op(&sc, 2, SA, 0), 2);
    cr_assert_eq(find_op(&sc, 2, RG, 0), 6);
    swap_ops(&sc, 2, 2, 6);
    EXPECT_REJECT(&sc, NULL, "deadlock", "4 of 4 stages blocked", at(2, 2, "recv_grad", 0),
                  at(3, 0, "recv_act", 0), "waits for stage 2's send_act mb=0 at its op 6",
                  at(1, 6, "recv_grad", 0), at(0, 4, "recv_grad", 0));
    schedule_free(&sc);
}

Test(schedule, rejects_deadlock_1f1b)
{
    /* 1F1B P=3 M=3, stage 1 = [ra0 f0 sa0 | ra1 f1 sa1 rg0 b0 sg0 |
     * ra2 f2 sa2 rg1 b1 sg1 | rg2 b2 sg2]: swapping sa1 (op 5) with rg1
     * (op 12) puts the receive of mb 1's gradient before the send of mb 1's
     * activation. Stage 0 then waits on stage 1's send_grad of mb 0. */
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 3, 3), PT_OK);
    cr_assert_eq(find_op(&sc, 1, SA, 1), 5);
    cr_assert_eq(find_op(&sc, 1, RG, 1), 12);
    swap_ops(&sc, 1, 5, 12);
    EXPECT_REJECT(&sc, NULL, "deadlock", "3 of 3 stages blocked", at(1, 5, "recv_grad", 1),
                  at(2, 4, "recv_act", 1), at(0, 6, "recv_grad", 0));
    schedule_free(&sc);
}

Test(schedule, rejects_duplicated_forward)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 4, 8), PT_OK);
    int f = find_op(&sc, 1, F, 4);
    insert_op(&sc, 1, f + 1, sc.ranks[1].ops[f]);
    char first[48];
    snprintf(first, sizeof first, "forward mb=4 already at op %d", f);
    EXPECT_REJECT(&sc, NULL, at(1, f + 1, "forward", 4), "duplicate", first);
    schedule_free(&sc);
}

Test(schedule, rejects_stash_over_bound)
{
    /* a GPipe list against the 1F1B bounds {4, 3, 2, 1}: stage 0 holds a
     * fifth micro-batch at its fifth forward, op 8 */
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 4, 8), PT_OK);
    int bounds[4];
    for (int s = 0; s < 4; s++) bounds[s] = schedule_stash_bound(SCHED_1F1B, 4, 8, s);
    EXPECT_REJECT(&sc, bounds, at(0, 8, "forward", 4), "stash holds 5 micro-batches, exceeds the bound 4");
    schedule_free(&sc);
    /* 1F1B itself against bounds one below its own: stage 0 fails at its
     * fourth forward (op 6) */
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 4, 8), PT_OK);
    for (int s = 0; s < 4; s++) bounds[s] = schedule_stash_bound(SCHED_1F1B, 4, 8, s) - 1;
    EXPECT_REJECT(&sc, bounds, at(0, 6, "forward", 3), "exceeds the bound 3");
    schedule_free(&sc);
}

Test(schedule, rejects_micro_batch_out_of_range)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 4, 8), PT_OK);
    sc.ranks[2].ops[4].mb = 8;
    EXPECT_REJECT(&sc, NULL, "stage 2 op 4", "mb=8", "out of range, expected 0..7");
    sc.ranks[2].ops[4].mb = -1;
    EXPECT_REJECT(&sc, NULL, "stage 2 op 4", "mb=-1", "out of range");
    schedule_free(&sc);
}

Test(schedule, rejects_backwards_out_of_order)
{
    /* GPipe P=3 M=4 stage 0 ends with [rg0 b0 rg1 b1 rg2 b2 rg3 b3]; swap
     * the pairs of mb 0 and mb 1 */
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 3, 4), PT_OK);
    int r0 = find_op(&sc, 0, RG, 0);
    cr_assert_eq(r0, 8);
    swap_ops(&sc, 0, r0, r0 + 2);
    swap_ops(&sc, 0, r0 + 1, r0 + 3);
    EXPECT_REJECT(&sc, NULL, at(0, 9, "backward", 1), "expected backward mb=0");
    schedule_free(&sc);
}

Test(schedule, rejects_ops_without_a_neighbour_or_kind)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 3, 4), PT_OK);
    sched_op bad = {.kind = OP_RECV_ACT, .chunk = 0, .mb = 0};
    insert_op(&sc, 0, 0, bad);
    EXPECT_REJECT(&sc, NULL, at(0, 0, "recv_act", 0), "no previous stage");
    schedule_free(&sc);

    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 3, 4), PT_OK);
    bad.kind = OP_SEND_ACT;
    insert_op(&sc, 2, 2, bad); /* after ra0 f0 of the last stage */
    EXPECT_REJECT(&sc, NULL, at(2, 2, "send_act", 0), "no next stage");
    schedule_free(&sc);

    cr_assert_eq(schedule_build(&sc, SCHED_FORWARD_ONLY, 3, 4), PT_OK);
    bad.kind = OP_BACKWARD;
    insert_op(&sc, 1, 3, bad);
    EXPECT_REJECT(&sc, NULL, at(1, 3, "backward", 0), "forward-only");
    schedule_free(&sc);

    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 2), PT_OK);
    sc.ranks[1].ops[1].kind = 9;
    EXPECT_REJECT(&sc, NULL, "stage 1 op 1", "unknown op kind 9");
    schedule_free(&sc);
}

Test(schedule, rejects_missing_ops_and_unmatched_sends)
{
    schedule sc;
    /* a forward-only list with a whole micro-batch dropped from stage 1:
     * stage 1's send_act is gone, stage 2 still waits for it */
    cr_assert_eq(schedule_build(&sc, SCHED_FORWARD_ONLY, 3, 4), PT_OK);
    int r = find_op(&sc, 1, RA, 2);
    for (int k = 0; k < 3; k++) remove_op(&sc, 1, r); /* ra2 f2 sa2 */
    cr_assert_eq(sc.ranks[1].n_ops, 9);
    EXPECT_REJECT(&sc, NULL, "stage 1 op 9 (end of list)", "forward mb=2 never runs");
    schedule_free(&sc);

    /* a backward removed on the last stage */
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 3), PT_OK);
    int f = find_op(&sc, 1, F, 2);
    remove_op(&sc, 1, find_op(&sc, 1, SG, 2));
    remove_op(&sc, 1, find_op(&sc, 1, B, 2));
    EXPECT_REJECT(&sc, NULL, at(1, f, "forward", 2), "backward mb=2 never runs");
    schedule_free(&sc);

    /* a send_act dropped: stage 1's receive has nothing to match */
    cr_assert_eq(schedule_build(&sc, SCHED_GPIPE, 2, 3), PT_OK);
    f = find_op(&sc, 0, F, 1);
    int ra = find_op(&sc, 1, RA, 1);
    remove_op(&sc, 0, find_op(&sc, 0, SA, 1));
    char peer[64];
    snprintf(peer, sizeof peer, "stage 1's recv_act mb=1 at its op %d", ra);
    EXPECT_REJECT(&sc, NULL, at(0, f, "forward", 1), "no send_act mb=1", peer);
    schedule_free(&sc);
}

Test(schedule, validate_rejects_malformed_schedule)
{
    schedule sc;
    cr_assert_eq(schedule_build(&sc, SCHED_1F1B, 2, 2), PT_OK);
    sched_list *keep = sc.ranks;
    sc.ranks = NULL;
    cr_assert_eq(schedule_validate(&sc, NULL), PT_ERR_INVALID);
    cr_assert_not_null(strstr(pt_last_error(), "ranks is NULL"), "%s", pt_last_error());
    sc.ranks = keep;
    sc.ranks[1].n_ops = -1;
    cr_assert_eq(schedule_validate(&sc, NULL), PT_ERR_INVALID);
    cr_assert_not_null(strstr(pt_last_error(), "stage 1 has n_ops = -1"), "%s", pt_last_error());
    sc.ranks[1].n_ops = 8;
    cr_assert_eq(schedule_validate(&sc, NULL), PT_OK, "%s", pt_last_error());
    schedule_free(&sc);
    cr_assert_eq(schedule_validate(NULL, NULL), PT_ERR_INVALID);
}
