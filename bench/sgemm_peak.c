/* sgemm_peak — cblas_sgemm throughput on this machine, in GFLOP/s.
 *
 * Every other benchmark reports its GFLOP/s as a fraction of the 1-thread
 * peak measured here. Shapes are the square sizes 256..2048 and the matrix
 * products of the example models, written as row-major C[M,N] = op(A)·op(B)
 * with the transpose flags the linear kernels use:
 *
 *   forward   out[b,OUT] = in[b,IN] · W[OUT,IN]ᵀ   M=b   N=OUT K=IN  (N,T) beta=0
 *   backward  din[b,IN]  = dout[b,OUT] · W[OUT,IN] M=b   N=IN  K=OUT (N,N) beta=0
 *   weights   dW[OUT,IN] += dout[b,OUT]ᵀ · in[b,IN] M=OUT N=IN K=b   (T,N) beta=1
 *
 * for the Fashion-MNIST MLP 784-1024-1024-1024-10 (first layer 784→1024,
 * which needs no input gradient, and the 1024→1024 hidden layers, micro-batch
 * rows b = 32..256) and for a small GPT (C = 256: qkv 256→768, fc 256→1024,
 * proj 1024→256, rows 512 and 2048).
 *
 * --quick keeps 7 of the 42 shapes and times 0.05 s per repeat (about 3 s in
 * all); the full run takes about a minute.
 *
 * --shape M,N,K,TA,TB (repeatable; TA and TB are N or T, an optional sixth
 * field sets beta, which otherwise is 1 when TA is T, as in the weight
 * gradient, and 0 otherwise) measures only the given shapes, with 1 thread
 * unless --threads says otherwise, so that another benchmark can take the
 * peak on exactly its own matrix products. --threads 1 or 2 keeps that one
 * thread count (for the built-in shapes too).
 *
 * Each point runs with 1 and then 2 BLAS threads: a warm-up, then three
 * repeats that each call sgemm until at least the target time has passed;
 * GFLOP/s = 2·M·N·K·calls / time. The best and the median of the three
 * repeats are reported. Before timing, one call's result is checked against
 * a double-precision dot product at three entries, so a wrong leading
 * dimension cannot go unnoticed.
 *
 * The machine may be shared: during each point the CPU time used by other
 * processes (and stolen by the hypervisor) is taken from /proc/stat minus
 * this process's own CPU time, and a point during which others used more
 * than a tenth of a CPU is marked with '*' in the table.
 *
 * Usage: sgemm_peak [--quick] [--csv FILE] [--shape M,N,K,TA,TB[,BETA]]...
 *                   [--threads 1|2] [--help] */
#include <cblas.h>

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"

typedef struct {
    const char *name;
    int m, n, k;
    int ta, tb; /* 1 = transposed */
    float beta;
    int quick;  /* part of the --quick set */
} shape;

#define MAX_SHAPES 64
#define N_THREADS 2
#define MAX_USER_SHAPES 64


/* Uniform in [-1, 1): deterministic, no denormals, no overflow. */
static float next_uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 40) / (double)(1ULL << 23) - 1.0);
}

static void fill(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) x[i] = next_uniform(&s);
}

/* Appends the shapes to `out`; returns how many. Names hold no spaces or
 * commas so that they can stand in a CSV row. */
static int build_shapes(shape *out)
{
    static char names[MAX_SHAPES][32];
    int ns = 0;
    static const int squares[] = {256, 512, 1024, 2048};
    for (int i = 0; i < 4; i++) {
        int s = squares[i];
        snprintf(names[ns], sizeof names[ns], "square_%d", s);
        out[ns] = (shape){names[ns], s, s, s, 0, 0, 0.0f, s == 512 || s == 1024};
        ns++;
    }
    /* linear layers: {label, IN, OUT} */
    struct { const char *label; int in, out; } mlp[] = {{"mlp_in", 784, 1024},
                                                       {"mlp_hid", 1024, 1024}};
    static const int mlp_rows[] = {32, 64, 128, 256};
    for (int l = 0; l < 2; l++) {
        for (int r = 0; r < 4; r++) {
            int b = mlp_rows[r], in = mlp[l].in, o = mlp[l].out;
            int q = (l == 1 && b == 128);
            snprintf(names[ns], sizeof names[ns], "%s_fwd_b%d", mlp[l].label, b);
            out[ns] = (shape){names[ns], b, o, in, 0, 1, 0.0f, q};
            ns++;
            if (l > 0) { /* the first layer's input needs no gradient */
                snprintf(names[ns], sizeof names[ns], "%s_din_b%d", mlp[l].label, b);
                out[ns] = (shape){names[ns], b, in, o, 0, 0, 0.0f, q};
                ns++;
            }
            snprintf(names[ns], sizeof names[ns], "%s_dw_b%d", mlp[l].label, b);
            out[ns] = (shape){names[ns], o, in, b, 1, 0, 1.0f, q};
            ns++;
        }
    }
    struct { const char *label; int in, out; } gpt[] = {{"gpt_qkv", 256, 768},
                                                       {"gpt_fc", 256, 1024},
                                                       {"gpt_proj", 1024, 256}};
    static const int gpt_rows[] = {512, 2048};
    for (int r = 0; r < 2; r++) {
        for (int l = 0; l < 3; l++) {
            int b = gpt_rows[r], in = gpt[l].in, o = gpt[l].out;
            int q = (l == 1 && b == 2048);
            snprintf(names[ns], sizeof names[ns], "%s_fwd_r%d", gpt[l].label, b);
            out[ns] = (shape){names[ns], b, o, in, 0, 1, 0.0f, q};
            ns++;
            snprintf(names[ns], sizeof names[ns], "%s_din_r%d", gpt[l].label, b);
            out[ns] = (shape){names[ns], b, in, o, 0, 0, 0.0f, 0};
            ns++;
            snprintf(names[ns], sizeof names[ns], "%s_dw_r%d", gpt[l].label, b);
            out[ns] = (shape){names[ns], o, in, b, 1, 0, 1.0f, q};
            ns++;
        }
    }
    return ns;
}

/* Parses "M,N,K,TA,TB[,BETA]" into *s (its name written to name[len]).
 * Returns 0 when valid, else says what is wrong on stderr and returns 1. */
static int parse_shape(const char *text, shape *s, char *name, size_t len)
{
    char buf[128];
    if (strlen(text) >= sizeof buf) {
        fprintf(stderr, "sgemm_peak: --shape '%.40s...': too long\n", text);
        return 1;
    }
    strcpy(buf, text);
    char *field[7] = {NULL};
    int nf = 0;
    for (char *p = buf; nf < 7;) {
        field[nf++] = p;
        char *comma = strchr(p, ',');
        if (!comma) break;
        *comma = '\0';
        p = comma + 1;
    }
    if (nf < 5 || nf > 6) {
        fprintf(stderr,
                "sgemm_peak: --shape '%s': %d fields, expected 5 (M,N,K,TA,TB such as "
                "128,1024,1024,N,T) or 6 (with BETA)\n",
                text, nf);
        return 1;
    }
    long dims[3];
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        dims[i] = strtol(field[i], &end, 10);
        if (end == field[i] || *end || errno || dims[i] < 1 || dims[i] > 65536) {
            fprintf(stderr, "sgemm_peak: --shape '%s': %c = '%s', expected an integer in 1..65536\n",
                    text, "MNK"[i], field[i]);
            return 1;
        }
    }
    int trans[2];
    for (int i = 0; i < 2; i++) {
        const char *f = field[3 + i];
        if (strcmp(f, "N") == 0 || strcmp(f, "n") == 0) {
            trans[i] = 0;
        } else if (strcmp(f, "T") == 0 || strcmp(f, "t") == 0) {
            trans[i] = 1;
        } else {
            fprintf(stderr, "sgemm_peak: --shape '%s': %s = '%s', expected N or T\n", text,
                    i == 0 ? "TA" : "TB", f);
            return 1;
        }
    }
    float beta = trans[0] ? 1.0f : 0.0f;
    if (nf == 6) {
        char *end;
        errno = 0;
        double v = strtod(field[5], &end);
        if (end == field[5] || *end || errno || !isfinite(v)) {
            fprintf(stderr, "sgemm_peak: --shape '%s': BETA = '%s', expected a number\n", text,
                    field[5]);
            return 1;
        }
        beta = (float)v;
    }
    snprintf(name, len, "%ldx%ldx%ld_%c%c", dims[0], dims[1], dims[2], trans[0] ? 'T' : 'N',
             trans[1] ? 'T' : 'N');
    *s = (shape){name, (int)dims[0], (int)dims[1], (int)dims[2], trans[0], trans[1], beta, 1};
    return 0;
}

/* C[M,N] (+)= op(A)·op(B), row-major. A is M×K (K×M when transposed),
 * B is K×N (N×K when transposed). */
static void run_sgemm(const shape *s, const float *a, const float *b, float *c)
{
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                s->tb ? CblasTrans : CblasNoTrans, s->m, s->n, s->k, 1.0f, a,
                s->ta ? s->m : s->k, b, s->tb ? s->k : s->n, s->beta, c, s->n);
}

/* One call from C = 0, then C[i,j] is compared at three entries with a
 * double-precision dot product; the bound is K·FLT_EPSILON·Σ|a·b|, twice the
 * classical γ_K bound for float summation. Returns 0 when all agree. */
static int check_result(const shape *s, const float *a, const float *b, float *c)
{
    memset(c, 0, (size_t)s->m * (size_t)s->n * sizeof *c);
    run_sgemm(s, a, b, c);
    const int at[3][2] = {{0, 0}, {s->m - 1, s->n - 1}, {s->m / 2, s->n / 3}};
    for (int t = 0; t < 3; t++) {
        int i = at[t][0], j = at[t][1];
        double ref = 0.0, mag = 0.0;
        for (int p = 0; p < s->k; p++) {
            double x = s->ta ? a[(size_t)p * s->m + i] : a[(size_t)i * s->k + p];
            double y = s->tb ? b[(size_t)j * s->k + p] : b[(size_t)p * s->n + j];
            ref += x * y;
            mag += fabs(x * y);
        }
        double got = c[(size_t)i * s->n + j];
        double tol = (double)s->k * FLT_EPSILON * mag + 1e-30;
        if (!(fabs(got - ref) <= tol)) {
            fprintf(stderr,
                    "sgemm_peak: %s: C[%d,%d] = %.9g but the reference is %.9g "
                    "(|diff| %.3g > bound %.3g)\n",
                    s->name, i, j, got, ref, fabs(got - ref), tol);
            return 1;
        }
    }
    return 0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Warm-up for warm_s (at least two calls), then three repeats of at least
 * target_s each; writes the best and the median GFLOP/s. */
static void measure(const shape *s, int threads, double warm_s, double target_s,
                    const float *a, const float *b, float *c, double *best,
                    double *median, double *others)
{
    openblas_set_num_threads(threads);
    double flop = 2.0 * (double)s->m * (double)s->n * (double)s->k;
    double t0 = now_s();
    int calls = 0;
    do {
        run_sgemm(s, a, b, c);
        calls++;
    } while (calls < 2 || now_s() - t0 < warm_s);

    double g[3];
    cpu_sample c0 = cpu_now();
    for (int r = 0; r < 3; r++) {
        long n = 0;
        double el;
        t0 = now_s();
        do {
            run_sgemm(s, a, b, c);
            n++;
            el = now_s() - t0;
        } while (el < target_s);
        g[r] = flop * (double)n / el * 1e-9;
    }
    *others = others_cpus(c0, cpu_now());
    qsort(g, 3, sizeof g[0], cmp_double);
    *best = g[2];
    *median = g[1];
}

static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v++;
                while (*v == ' ' || *v == '\t') v++;
                v[strcspn(v, "\n")] = '\0';
                snprintf(buf, len, "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sgemm_peak [--quick] [--csv FILE] [--shape M,N,K,TA,TB[,BETA]]...\n"
            "                  [--threads 1|2] [--help]\n"
            "Measures cblas_sgemm GFLOP/s (2*M*N*K / time) with 1 and 2 BLAS threads\n"
            "on square sizes and on the matrix products of the example models.\n"
            "  --quick       fewer shapes and shorter timing (a few seconds)\n"
            "  --csv FILE    also write rows name,m,n,k,transa,transb,threads,"
            "gflops_best,gflops_median\n"
            "  --shape S     measure only the given shapes (repeatable), with 1 thread\n"
            "                unless --threads is given: row-major C[M,N] = op(A)*op(B),\n"
            "                TA/TB = N or T; BETA defaults to 1 when TA = T (weight\n"
            "                gradient), else 0. E.g. --shape 128,1024,1024,N,T\n"
            "  --threads T   measure with T = 1 or 2 BLAS threads only\n"
            "  --help        print this help and exit\n");
}

int main(int argc, char **argv)
{
    int quick = 0;
    const char *csv_path = NULL;
    static shape user[MAX_USER_SHAPES];
    static char user_names[MAX_USER_SHAPES][48];
    int n_user = 0, only_threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if (strcmp(argv[i], "--csv") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sgemm_peak: --csv needs a file name\n");
                usage(stderr);
                return 2;
            }
            csv_path = argv[++i];
        } else if (strcmp(argv[i], "--shape") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sgemm_peak: --shape needs M,N,K,TA,TB\n");
                usage(stderr);
                return 2;
            }
            if (n_user == MAX_USER_SHAPES) {
                fprintf(stderr, "sgemm_peak: more than %d --shape options\n", MAX_USER_SHAPES);
                return 2;
            }
            if (parse_shape(argv[++i], &user[n_user], user_names[n_user],
                            sizeof user_names[n_user]) != 0)
                return 2;
            n_user++;
        } else if (strcmp(argv[i], "--threads") == 0) {
            if (i + 1 >= argc || (strcmp(argv[i + 1], "1") != 0 && strcmp(argv[i + 1], "2") != 0)) {
                fprintf(stderr, "sgemm_peak: --threads needs 1 or 2, found '%s'\n",
                        i + 1 < argc ? argv[i + 1] : "");
                usage(stderr);
                return 2;
            }
            only_threads = atoi(argv[++i]);
        } else {
            fprintf(stderr,
                    "sgemm_peak: unknown argument '%s' (valid: --quick, --csv FILE, "
                    "--shape M,N,K,TA,TB, --threads 1|2, --help)\n",
                    argv[i]);
            usage(stderr);
            return 2;
        }
    }

    FILE *csv = NULL;
    if (csv_path) {
        csv = fopen(csv_path, "w");
        if (!csv) {
            fprintf(stderr, "sgemm_peak: cannot open CSV file '%s' for writing: %s\n",
                    csv_path, strerror(errno));
            return 1;
        }
        fprintf(csv, "name,m,n,k,transa,transb,threads,gflops_best,gflops_median\n");
    }

    /* thread counts: 1 and 2 by default; 1 alone for --shape; --threads wins */
    int thread_counts[N_THREADS] = {1, 2}, nt = N_THREADS;
    if (only_threads || n_user) {
        thread_counts[0] = only_threads ? only_threads : 1;
        nt = 1;
    }
    shape shapes[MAX_SHAPES > MAX_USER_SHAPES ? MAX_SHAPES : MAX_USER_SHAPES];
    int ns;
    if (n_user) {
        memcpy(shapes, user, (size_t)n_user * sizeof *user);
        ns = n_user;
    } else {
        ns = build_shapes(shapes);
    }
    size_t max_a = 0, max_b = 0, max_c = 0;
    for (int i = 0; i < ns; i++) {
        const shape *s = &shapes[i];
        if (quick && !s->quick) continue;
        size_t sa = (size_t)s->m * s->k, sb = (size_t)s->k * s->n, sc = (size_t)s->m * s->n;
        if (sa > max_a) max_a = sa;
        if (sb > max_b) max_b = sb;
        if (sc > max_c) max_c = sc;
    }
    float *a = malloc(max_a * sizeof *a);
    float *b = malloc(max_b * sizeof *b);
    float *c = malloc(max_c * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "sgemm_peak: cannot allocate %zu + %zu + %zu floats\n", max_a,
                max_b, max_c);
        free(a), free(b), free(c);
        if (csv) fclose(csv);
        return 1;
    }
    fill(a, max_a, 1);
    fill(b, max_b, 2);

    char model[256];
    cpu_model(model, sizeof model);
    char date[32] = "unknown";
    time_t tnow = time(NULL);
    struct tm tm;
    if (gmtime_r(&tnow, &tm)) strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm);
    double warm_s = quick ? 0.01 : 0.05, target_s = quick ? 0.05 : 0.2;

    printf("sgemm_peak%s%s  %s\n", quick ? " (quick)" : "", n_user ? " (given shapes)" : "", date);
    printf("cpu       %s\n", model);
    printf("cores     %ld online (OpenBLAS sees %d)\n", sysconf(_SC_NPROCESSORS_ONLN),
           openblas_get_num_procs());
    printf("openblas  %s\n", openblas_get_config());
    printf("corename  %s\n", openblas_get_corename());
    printf("timing    warm-up %.2f s, then best and median of 3 repeats of >= %.2f s\n\n",
           warm_s, target_s);
    printf("%-18s %5s %5s %5s  %-2s %-2s  %7s  %10s  %10s\n", "shape", "M", "N", "K",
           "tA", "tB", "threads", "best", "median");
    printf("%-18s %5s %5s %5s  %-2s %-2s  %7s  %10s  %10s\n", "", "", "", "", "", "", "",
           "GFLOP/s", "GFLOP/s");
    fflush(stdout);

    double peak[N_THREADS] = {0.0};
    int n_busy = 0;
    cpu_sample run0 = cpu_now();
    const char *peak_name[N_THREADS] = {NULL};
    int status = 0;
    for (int i = 0; i < ns && status == 0; i++) {
        const shape *s = &shapes[i];
        if (quick && !s->quick) continue;
        openblas_set_num_threads(1);
        if (check_result(s, a, b, c) != 0) {
            status = 1;
            break;
        }
        for (int t = 0; t < nt; t++) {
            double best, med, others;
            measure(s, thread_counts[t], warm_s, target_s, a, b, c, &best, &med, &others);
            int busy = others > 0.1;
            n_busy += busy;
            printf("%-18s %5d %5d %5d  %-2s %-2s  %7d  %10.1f  %10.1f%s\n", s->name, s->m,
                   s->n, s->k, s->ta ? "T" : "N", s->tb ? "T" : "N", thread_counts[t],
                   best, med, busy ? " *" : "");
            fflush(stdout);
            if (csv)
                fprintf(csv, "%s,%d,%d,%d,%s,%s,%d,%.2f,%.2f\n", s->name, s->m, s->n,
                        s->k, s->ta ? "T" : "N", s->tb ? "T" : "N", thread_counts[t],
                        best, med);
            if (best > peak[t]) {
                peak[t] = best;
                peak_name[t] = s->name;
            }
        }
    }

    if (status == 0) {
        printf("\n");
        double others = others_cpus(run0, cpu_now());
        if (others >= 0.0)
            printf("other processes used %.2f CPUs on average during the run%s\n", others,
                   n_busy ? "; * marks points during which they used more than 0.1 CPU "
                            "(figures there may be low)"
                          : "");
        for (int t = 0; t < nt; t++)
            printf("peak shape (%d thread%s): %s\n", thread_counts[t],
                   thread_counts[t] == 1 ? "" : "s", peak_name[t] ? peak_name[t] : "-");
        for (int t = 0; t < nt; t++)
            printf("sgemm peak (%d thread%s): %.1f GFLOP/s\n", thread_counts[t],
                   thread_counts[t] == 1 ? "" : "s", peak[t]);
    }
    if (csv && fclose(csv) != 0) {
        fprintf(stderr, "sgemm_peak: cannot write CSV file '%s': %s\n", csv_path,
                strerror(errno));
        status = 1;
    }
    free(a);
    free(b);
    free(c);
    return status;
}
