/* kernels — the element-wise kernels' speed on each instruction set, in GB/s
 * against this machine's measured memory bandwidth.
 *
 * For every kernel (GELU forward, backward and backward from the kept tanh
 * (which reads a third array: counted as 12·N), ReLU forward and backward,
 * the bias add after a product and its fused forms with the residual add
 * and with the GELU, the bias gradient, LayerNorm forward and backward (with
 * the residual's gradient added), the softmax with the cross-entropy,
 * dropout forward and backward with the mask regenerated, and with its bits
 * kept (the forward writes them, 1/32 of a float per element; the backward
 * reads them), the SGD and AdamW updates) and every instruction set this
 * CPU runs (portable, AVX2, AVX-512), times the kernel on 64-byte aligned
 * arrays of N floats (like a stage's buffers): a warm-up, then the median of
 * 5 repeats that each call it until 0.05 s have passed. GB/s counts the
 * bytes the kernel must move (reads plus writes: 8·N for one input and one
 * output, 12·N for backward's two inputs; each row's figure is in the table
 * below). Row kernels run on rows of 256 (the GPT's width and vocabulary)
 * or 1024 columns (the bias kernels).
 * The reference is the copy bandwidth of memcpy on the same sizes (the best
 * a kernel that reads and writes once can do). Two sizes: 64 Ki floats (the
 * activations of one micro-batch of the MLP, in cache) and 4 Mi floats (out
 * of cache). A repeat during which other processes used more than a tenth of
 * a CPU is marked '*'.
 *
 * Usage: kernels [--quick] [--help]   (--quick: 64 Ki floats only) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_clock.h"
#include "kernels.h"
#include "optim.h"

/* extra arrays of the largest size for kernels with more than one output
 * or state (LayerNorm's statistics, the GELU's kept tanh, the optimizer's
 * moments), allocated by main */
static float *x1, *x2;

typedef void (*run_fn)(float *out, const float *a, const float *b, size_t n);

static void run_gelu(float *o, const float *a, const float *b, size_t n) { (void)b, gelu_forward(o, a, n); }
static void run_gelu_bwd(float *o, const float *a, const float *b, size_t n) { gelu_backward(o, b, a, n); }
static void run_gelu_bwd_kept(float *o, const float *a, const float *b, size_t n)
{
    gelu_backward_kept(o, b, a, b, n); /* b stands in for the kept tanh: the speed does not depend on it */
}
static void run_relu(float *o, const float *a, const float *b, size_t n) { (void)b, relu_forward(o, a, n); }
static void run_relu_bwd(float *o, const float *a, const float *b, size_t n) { relu_backward(o, b, a, n); }
static void run_bias(float *o, const float *a, const float *b, size_t n)
{
    (void)a; /* rows of 1024 columns: out += b on each */
    linear_forward(o, NULL, NULL, b, (int)(n / 1024), 0, 1024);
}
static void run_bias_residual(float *o, const float *a, const float *b, size_t n)
{
    (void)a; /* out = (0 + b) + b on rows of 1024 columns: out read, b and res read, out written */
    linear_forward_residual(o, NULL, NULL, b, b, (int)(n / 1024), 0, 1024);
}
static void run_bias_gelu(float *o, const float *a, const float *b, size_t n)
{
    (void)a; /* the pre-activation x1 read and written, out and the kept tanh written */
    linear_forward_gelu_keep(o, x2, x1, NULL, NULL, b, (int)(n / 1024), 0, 1024);
}
static void run_bias_grad(float *o, const float *a, const float *b, size_t n)
{
    (void)b; /* db[1024] += Σ_rows a: a read once */
    linear_backward(NULL, NULL, o, a, NULL, NULL, (int)(n / 1024), 0, 1024);
}
static void run_layernorm(float *o, const float *a, const float *b, size_t n)
{
    int rows = (int)(n / 256); /* in read, out written (w, b and the statistics are small) */
    layernorm_forward(o, x1, x1 + rows, a, b, b + 256, rows, 256);
}
static void run_layernorm_bwd(float *o, const float *a, const float *b, size_t n)
{
    int rows = (int)(n / 256); /* dout, in and the residual's gradient read, din written */
    for (int r = 0; r < rows; r++) x1[r] = 0.1f, x1[rows + r] = 1.3f;
    layernorm_backward_add(o, x2, x2 + 256, b, a, b, x1, x1 + rows, a, rows, 256);
}
static void run_softmax_xent(float *o, const float *a, const float *b, size_t n)
{
    (void)b; /* logits read, probabilities written */
    static int32_t labels[(1 << 22) / 256];
    float loss;
    softmax_xent_forward(o, &loss, a, labels, (int)(n / 256), 256);
}
static void run_sgd(float *o, const float *a, const float *b, size_t n)
{
    (void)b; /* SGD, momentum 0.9, weight decay 0.01: p, g, m read, p, m written */
    static const optim_config c = {.kind = OPTIM_SGD, .momentum = 0.9f, .weight_decay = 0.01f};
    optim_update(&c, 1e-3f, 1, o, a, x1, NULL, n, 1);
}
static void run_adamw(float *o, const float *a, const float *b, size_t n)
{
    (void)b; /* AdamW, weight decay 0.1: p, g, m, v read, p, m, v written */
    static const optim_config c = {
        .kind = OPTIM_ADAMW, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};
    optim_update(&c, 1e-3f, 10, o, a, x1, x2, n, 1);
}
static void run_dropout(float *o, const float *a, const float *b, size_t n)
{
    (void)b;
    dropout_forward(o, a, n, 0.2f, (dropout_key){1, 2, 3, 4});
}
static void run_dropout_bwd(float *o, const float *a, const float *b, size_t n)
{
    (void)b; /* the mask regenerated from the key */
    dropout_backward(o, a, n, 0.2f, (dropout_key){1, 2, 3, 4});
}
static void run_dropout_keep(float *o, const float *a, const float *b, size_t n)
{
    (void)b; /* in read, out written, and the keep bits (1/32 of a float each) */
    dropout_forward_keep(o, (uint32_t *)x1, a, n, 0.2f, (dropout_key){1, 2, 3, 4});
}
static void run_dropout_bwd_kept(float *o, const float *a, const float *b, size_t n)
{
    (void)b; /* dout and the kept bits read, din written */
    dropout_backward_kept(o, a, (const uint32_t *)x1, n, 0.2f);
}
static void run_copy(float *o, const float *a, const float *b, size_t n)
{
    (void)b;
    memcpy(o, a, n * sizeof *o);
}

static const struct {
    const char *name;
    run_fn fn;
    double bytes_per; /* bytes moved per element */
} kernels[] = {{"gelu_forward", run_gelu, 8},
               {"gelu_backward", run_gelu_bwd, 12},
               {"gelu_bwd_kept", run_gelu_bwd_kept, 12},
               {"relu_forward", run_relu, 8},
               {"relu_backward", run_relu_bwd, 12},
               {"bias_add", run_bias, 8},
               {"bias_residual", run_bias_residual, 12},
               {"bias_gelu_keep", run_bias_gelu, 16},
               {"bias_gradient", run_bias_grad, 4},
               {"layernorm_fwd", run_layernorm, 8},
               {"layernorm_bwd", run_layernorm_bwd, 16},
               {"softmax_xent", run_softmax_xent, 8},
               {"dropout_forward", run_dropout, 8},
               {"dropout_backward", run_dropout_bwd, 8},
               {"dropout_fwd_keep", run_dropout_keep, 8.125},
               {"dropout_bwd_kept", run_dropout_bwd_kept, 8.125},
               {"sgd_momentum", run_sgd, 20},
               {"adamw", run_adamw, 28}};

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* GB/s of fn on n elements moving bytes_per bytes each: median of 5; *busy = 1 when others used CPU */
static double measure(run_fn fn, float *o, const float *a, const float *b, size_t n, double bytes_per, int *busy)
{
    double gbs[5];
    fn(o, a, b, n);
    *busy = 0;
    for (int r = 0; r < 5; r++) {
        cpu_sample c0 = cpu_now();
        double t0 = now_s(), t;
        long calls = 0;
        do {
            fn(o, a, b, n);
            calls++;
        } while ((t = now_s() - t0) < 0.05);
        cpu_sample c1 = cpu_now();
        if (others_cpus(c0, c1) > 0.1) *busy = 1;
        gbs[r] = (double)calls * (double)n * bytes_per / t / 1e9;
    }
    qsort(gbs, 5, sizeof *gbs, cmp_double);
    return gbs[2];
}

int main(int argc, char **argv)
{
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            int help = !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
            if (!help) fprintf(stderr, "kernels: unknown option '%s'\n", argv[i]);
            fprintf(help ? stdout : stderr,
                    "usage: kernels [--quick] [--help]\n\nGB/s of each element-wise and row kernel on each "
                    "instruction set this CPU runs, against memcpy's copy bandwidth (see the comment at the top "
                    "of bench/kernels.c).\n  --quick  64 Ki floats only (in cache)\n");
            return help ? 0 : 2;
        }
    }
    static const size_t sizes[] = {1 << 16, 1 << 22};
    int n_sizes = quick ? 1 : 2;
    size_t most = sizes[n_sizes - 1];
    float *a = aligned_alloc(64, most * sizeof *a), *b = aligned_alloc(64, most * sizeof *b),
          *o = aligned_alloc(64, most * sizeof *o);
    x1 = aligned_alloc(64, most * sizeof *x1), x2 = aligned_alloc(64, most * sizeof *x2);
    if (!a || !b || !o || !x1 || !x2) {
        fprintf(stderr, "kernels: out of memory for %zu floats\n", most);
        return 1;
    }
    for (size_t i = 0; i < most; i++) {
        a[i] = (float)((int)(i % 2001) - 1000) * 0.003f;
        b[i] = (float)(i % 7) * 0.25f - 0.5f;
        x1[i] = x2[i] = 0.0f;
    }
    kernels_isa start = kernels_isa_current();
    printf("element-wise and row kernels, GB/s (median of 5; '*': other processes used CPU meanwhile); chosen at start: "
           "%s\n", kernels_isa_name(start));
    for (int si = 0; si < n_sizes; si++) {
        size_t n = sizes[si];
        int busy;
        double copy = measure(run_copy, o, a, b, n, 8, &busy);
        printf("\n%zu floats (%.1f MiB per array): memcpy %.1f GB/s%s\n", n, n * 4.0 / 1048576.0, copy,
               busy ? "*" : "");
        printf("  %-16s", "kernel");
        for (int isa = KERNELS_PORTABLE; isa <= KERNELS_AVX512; isa++)
            if (kernels_isa_supported((kernels_isa)isa)) printf(" %18s", kernels_isa_name((kernels_isa)isa));
        printf("   best / portable   best / memcpy\n");
        for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
            printf("  %-16s", kernels[k].name);
            double portable = 0, best = 0;
            for (int isa = KERNELS_PORTABLE; isa <= KERNELS_AVX512; isa++) {
                if (!kernels_isa_select((kernels_isa)isa)) continue;
                double g = measure(kernels[k].fn, o, a, b, n, kernels[k].bytes_per, &busy);
                if (isa == KERNELS_PORTABLE) portable = g;
                if (g > best) best = g;
                printf(" %12.1f GB/s%s", g, busy ? "*" : " ");
            }
            printf("   %13.2f×   %13.0f %%\n", best / portable, 100 * best / copy);
        }
    }
    kernels_isa_select(start);
    free(a);
    free(b);
    free(o);
    free(x1);
    free(x2);
    return 0;
}
