/* test_config.c — the run configuration: defaults, INI files, --set
 * overrides, every class of error message, and the canonical text.
 *
 * Floats are compared exactly: a value read from decimal text is the float
 * nearest to it (strtod, then one rounding to float), and the canonical text
 * prints 9 significant digits, which identify a float uniquely, so text →
 * config → text → config must reproduce every bit. */
#include <criterion/criterion.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "pt_status.h"

/* Writes text to a fresh temporary file; returns its malloc'd path. */
static char *temp_ini(const char *text)
{
    char *path = strdup("/tmp/pt_test_config_XXXXXX");
    cr_assert_not_null(path);
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

/* Loads text as a config file with overrides; returns the status. */
static pt_status load_text(config *c, const char *text, const char *const *ov, int n_ov)
{
    char *path = temp_ini(text);
    pt_status st = config_load(c, path, ov, n_ov);
    unlink(path);
    free(path);
    return st;
}

static void expect_error(pt_status st, const char *const *needles)
{
    cr_assert_neq(st, PT_OK, "expected an error");
    const char *msg = pt_last_error();
    for (; *needles; needles++)
        cr_expect(strstr(msg, *needles) != NULL, "message '%s' lacks '%s'", msg, *needles);
}

#define EXPECT_ERROR(st, ...)                                       \
    do {                                                            \
        const char *needles_[] = {__VA_ARGS__, NULL};               \
        expect_error((st), needles_);                               \
    } while (0)

static const char *MINIMAL = "[model]\nlayers = linear 32, relu, linear 10\n";

/* ---- defaults ------------------------------------------------------------ */

Test(config, defaults_match_the_documented_values)
{
    config c;
    config_defaults(&c);
    cr_expect_str_eq(c.model_layers, "");
    cr_expect_str_eq(c.data_dataset, "fashion-mnist");
    cr_expect_str_eq(c.data_path, "");
    cr_expect_eq(c.data_synthetic_samples, 8192);
    cr_expect_eq(c.data_synthetic_features, 1024);
    cr_expect_eq(c.data_synthetic_classes, 10);
    cr_expect_eq(c.steps, 1000);
    cr_expect_eq(c.seed, 1);
    cr_expect_eq(c.batch_size, 256);
    cr_expect_eq(c.optimizer, OPTIM_ADAMW);
    cr_expect_eq(c.lr, 1e-3f);
    cr_expect_eq(c.min_lr_ratio, 0.0f);
    cr_expect_eq(c.warmup_steps, 0);
    cr_expect_eq(c.lr_schedule, LR_COSINE);
    cr_expect_eq(c.momentum, 0.9f);
    cr_expect_eq(c.nesterov, 0);
    cr_expect_eq(c.beta1, 0.9f);
    cr_expect_eq(c.beta2, 0.999f);
    cr_expect_eq(c.eps, 1e-8f);
    cr_expect_eq(c.weight_decay, 0.0f);
    cr_expect_eq(c.l1, 0.0f);
    cr_expect_eq(c.l2, 0.0f);
    cr_expect_eq(c.grad_clip, 0.0f);
    cr_expect_eq(c.nonfinite, NONFINITE_STOP);
    cr_expect_eq(c.blas_threads, 1);
    cr_expect_eq(c.log_every, 50);
    cr_expect_eq(c.schedule, SCHED_1F1B);
    cr_expect_eq(c.micro_batches, 8);
    cr_expect_eq(c.partition, PARTITION_UNIFORM);
    cr_expect_str_eq(c.partition_spec, "");
    cr_expect_eq(c.data_parallel, 1);
    cr_expect_str_eq(c.log_metrics, "");
    cr_expect_eq(c.fault_kind, FAULT_NONE);
    cr_expect_eq(c.fault_rank, -1);
    cr_expect_eq(c.fault_step, -1);
    cr_expect_eq(c.fault_layer, -1);
    cr_expect_eq(config_micro_rows(&c), 32);
}

Test(config, defaults_need_only_the_model)
{
    config c;
    config_defaults(&c);
    EXPECT_ERROR(config_validate(&c), "model.layers");
    strcpy(c.model_layers, "linear 10");
    cr_expect_eq(config_validate(&c), PT_OK, "%s", pt_last_error());
    /* no file at all: defaults and overrides */
    const char *ov[] = {"model.layers=linear 64, relu, linear 10"};
    cr_assert_eq(config_load(&c, NULL, ov, 1), PT_OK, "%s", pt_last_error());
    cr_expect_str_eq(c.model_layers, "linear 64, relu, linear 10");
}

/* ---- files and overrides ------------------------------------------------ */

Test(config, file_then_overrides_in_order)
{
    const char *text = "; a comment\n"
                       "# another comment\n"
                       "[model]\n"
                       "layers = linear 128, relu, dropout 0.2, linear 10\n"
                       "\n"
                       "[train]\n"
                       "steps = 200        ; inline comment\n"
                       "lr = 0.05\n"
                       "optimizer = SGD\n"
                       "seed = 18446744073709551615\n"
                       "batch_size = 64\n"
                       "[pipeline]\n"
                       "schedule = gpipe\n"
                       "micro_batches = 4\n"
                       "partition = 0-1, 2-3\n"
                       "[data]\n"
                       "dataset = synthetic\n"
                       "synthetic_features = 20\n"
                       "[log]\n"
                       "metrics = /tmp/run metrics.csv\n";
    const char *ov[] = {"train.lr=0.1", "train.steps = 7", "train.lr=0.25",
                        "pipeline.partition=params"};
    config c;
    cr_assert_eq(load_text(&c, text, ov, 4), PT_OK, "%s", pt_last_error());
    cr_expect_str_eq(c.model_layers, "linear 128, relu, dropout 0.2, linear 10");
    cr_expect_eq(c.steps, 7);
    cr_expect_eq(c.lr, 0.25f, "the later override wins");
    cr_expect_eq(c.optimizer, OPTIM_SGD);
    cr_expect_eq(c.seed, UINT64_MAX);
    cr_expect_eq(c.batch_size, 64);
    cr_expect_eq(c.schedule, SCHED_GPIPE);
    cr_expect_eq(c.micro_batches, 4);
    cr_expect_eq(c.partition, PARTITION_PARAMS);
    cr_expect_str_eq(c.partition_spec, "");
    cr_expect_str_eq(c.data_dataset, "synthetic");
    cr_expect_eq(c.data_synthetic_features, 20);
    cr_expect_str_eq(c.log_metrics, "/tmp/run metrics.csv");
    cr_expect_eq(config_micro_rows(&c), 16);
    /* untouched keys keep their defaults */
    cr_expect_eq(c.beta2, 0.999f);

    /* without the partition override the file's explicit list stands */
    cr_assert_eq(load_text(&c, text, ov, 3), PT_OK, "%s", pt_last_error());
    cr_expect_eq(c.partition, PARTITION_EXPLICIT);
    cr_expect_str_eq(c.partition_spec, "0-1, 2-3");
}

Test(config, continuation_lines_and_long_lines)
{
    /* an indented line continues the value, joined with one space */
    config c;
    const char *text = "[model]\n"
                       "layers = linear 64, relu,\n"
                       "    linear 32, relu,\n"
                       "\tlinear 10\n"
                       "[train]\n"
                       "steps = 5\n";
    cr_assert_eq(load_text(&c, text, NULL, 0), PT_OK, "%s", pt_last_error());
    cr_expect_str_eq(c.model_layers, "linear 64, relu, linear 32, relu, linear 10");
    cr_expect_eq(c.steps, 5);

    /* a 900-character line: longer than libinih's default line limit (200) */
    char layers[1000] = "", file[1200];
    while (strlen(layers) < 880) strcat(layers, "linear 1024, relu, ");
    strcat(layers, "linear 10");
    cr_assert_gt(strlen(layers), 880);
    snprintf(file, sizeof file, "[model]\nlayers = %s   ; trailing comment\n[train]\nsteps = 9\n",
             layers);
    cr_assert_eq(load_text(&c, file, NULL, 0), PT_OK, "%s", pt_last_error());
    cr_expect_str_eq(c.model_layers, layers);
    cr_expect_eq(c.steps, 9);

    /* a too long value is refused, naming the key */
    char big[1400] = "[log]\nmetrics = /";
    while (strlen(big) < 1300) strcat(big, "abcdefghij");
    strcat(big, "\n[model]\nlayers = linear 10\n");
    EXPECT_ERROR(load_text(&c, big, NULL, 0), "log.metrics", ":2:");
}

Test(config, crlf_line_ends_and_a_byte_order_mark)
{
    config c;
    char layers[700] = "", file[1000];
    while (strlen(layers) < 600) strcat(layers, "linear 64, relu, ");
    strcat(layers, "linear 10");
    snprintf(file, sizeof file,
             "\xEF\xBB\xBF[model]\r\nlayers = %s\r\n[train]\r\nsteps = 12\r\n"
             "[pipeline]\r\nschedule = gpipe\r\n",
             layers);
    cr_assert_eq(load_text(&c, file, NULL, 0), PT_OK, "%s", pt_last_error());
    cr_expect_str_eq(c.model_layers, layers);
    cr_expect_eq(c.steps, 12);
    cr_expect_eq(c.schedule, SCHED_GPIPE);
}

/* ---- error messages ----------------------------------------------------- */

Test(config, unknown_section_names_it_file_and_line)
{
    config c;
    char *path = temp_ini("[model]\nlayers = linear 10\n\n[trian]\nsteps = 5\n");
    pt_status st = config_load(&c, path, NULL, 0);
    EXPECT_ERROR(st, "[trian]", path, ":4:", "[train]", "[pipeline]");
    /* an empty unknown section is refused too */
    unlink(path);
    free(path);
    EXPECT_ERROR(load_text(&c, "[model]\nlayers = linear 10\n[extra]\n", NULL, 0), "[extra]",
                 ":3:");
    /* keys before any section */
    EXPECT_ERROR(load_text(&c, "steps = 4\n[model]\nlayers = linear 10\n", NULL, 0), "steps",
                 ":1:", "section");
}

Test(config, unknown_key_lists_the_valid_keys)
{
    config c;
    char *path = temp_ini("[model]\nlayers = linear 10\n[train]\nsteps = 5\nlrr = 0.1\n");
    pt_status st = config_load(&c, path, NULL, 0);
    EXPECT_ERROR(st, "lrr", path, ":5:", "[train]", "warmup_steps",
                 "did you mean 'lr'");
    unlink(path);
    free(path);
    EXPECT_ERROR(load_text(&c, MINIMAL, (const char *[]){"pipeline.stages=4"}, 1),
                 "pipeline.stages=4", "stages", "micro_batches", "partition");
    EXPECT_ERROR(load_text(&c, MINIMAL, (const char *[]){"trainer.lr=4"}, 1), "trainer",
                 "[train]");
}

Test(config, bad_values_name_the_key_and_the_expectation)
{
    config c;
    char *path = temp_ini("[model]\nlayers = linear 10\n[train]\n\nlr = abc\n");
    pt_status st = config_load(&c, path, NULL, 0);
    EXPECT_ERROR(st, "train.lr = 'abc': expected a number > 0", path, ":5:");
    unlink(path);
    free(path);

    struct {
        const char *set, *needle;
    } cases[] = {
        {"train.lr=0", "train.lr = '0': expected a number > 0"},
        {"train.lr=-1e-3", "train.lr"},
        {"train.lr=1e39", "train.lr"},    /* beyond float */
        {"train.lr=1e999", "train.lr"},   /* beyond double */
        {"train.lr=nan", "train.lr"},
        {"train.lr=inf", "train.lr"},
        {"train.lr=0.1x", "train.lr"},
        {"train.lr=", "train.lr = '': expected a number"},
        {"train.steps=12abc", "train.steps = '12abc': expected an integer >= 1"},
        {"train.steps=0", "train.steps"},
        {"train.steps=1.5", "train.steps"},
        {"train.steps=99999999999999999999", "train.steps"},
        {"train.batch_size=3000000000", "train.batch_size"}, /* beyond int */
        {"train.seed=-1", "train.seed"},
        {"train.seed=18446744073709551616", "train.seed"},
        {"train.beta1=1", "train.beta1 = '1': expected a number in [0, 1)"},
        {"train.min_lr_ratio=1.5", "train.min_lr_ratio"},
        {"train.grad_clip=-1", "train.grad_clip"},
        {"train.optimizer=adam", "train.optimizer = 'adam': expected adamw or sgd"},
        {"train.lr_schedule=linear", "cosine or constant"},
        {"train.nonfinite=ignore", "train.nonfinite"},
        {"pipeline.schedule=zb", "pipeline.schedule = 'zb': expected gpipe, 1f1b, zbh1 or interleaved"},
        {"pipeline.micro_batches=0", "pipeline.micro_batches = '0': expected an integer >= 1"},
        {"pipeline.partition=unifrom", "pipeline.partition = 'unifrom'"},
        {"pipeline.partition=0-3;4-9", "pipeline.partition"},
        {"pipeline.data_parallel=0", "pipeline.data_parallel"},
        {"pipeline.reduction=exact", "pipeline.reduction = 'exact': expected fast or invariant"},
        {"pipeline.bucket_mb=0", "pipeline.bucket_mb"},
        {"data.dataset=cifar", "data.dataset = 'cifar': expected fashion-mnist, synthetic or text"},
        {"data.synthetic_classes=1", "data.synthetic_classes"},
        {"fault.kind=segv", "fault.kind"},
        {"fault.rank=-2", "fault.rank"},
        {"log.metrics=a ;b", "log.metrics = 'a ;b': expected text that an INI file can hold"},
        {"model.layers=;linear 10", "model.layers"},
        {"train.blas_threads=0", "train.blas_threads"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *ov[] = {cases[i].set};
        pt_status st2 = load_text(&c, MINIMAL, ov, 1);
        cr_expect_eq(st2, PT_ERR_INVALID, "%s: accepted", cases[i].set);
        cr_expect(strstr(pt_last_error(), cases[i].needle) != NULL, "%s: message '%s' lacks '%s'",
                  cases[i].set, pt_last_error(), cases[i].needle);
        cr_expect(strstr(pt_last_error(), cases[i].set) != NULL,
                  "%s: message '%s' does not quote the override", cases[i].set, pt_last_error());
    }
}

Test(config, overrides_must_be_section_key_value)
{
    config c;
    config_defaults(&c);
    const char *bad[] = {"train.lr", "lr=0.1", "=3", ".lr=3", "train.=3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pt_status st = config_set(&c, bad[i]);
        cr_expect_eq(st, PT_ERR_INVALID, "'%s' accepted", bad[i]);
        cr_expect(strstr(pt_last_error(), "section.key=value") != NULL, "'%s': message '%s'",
                  bad[i], pt_last_error());
        cr_expect(strstr(pt_last_error(), bad[i]) != NULL, "'%s': message '%s'", bad[i],
                  pt_last_error());
    }
    /* a value may itself hold '=' and '.' */
    cr_expect_eq(config_set(&c, "log.metrics=/tmp/a=b.csv"), PT_OK, "%s", pt_last_error());
    cr_expect_str_eq(c.log_metrics, "/tmp/a=b.csv");
    /* a failed override leaves the field as it was */
    cr_expect_eq(config_set(&c, "train.lr=abc"), PT_ERR_INVALID);
    cr_expect_eq(c.lr, 1e-3f);
}

Test(config, syntax_errors_and_duplicates)
{
    config c;
    EXPECT_ERROR(load_text(&c, "[model]\nlayers = linear 10\n[train]\nsteps 5\n", NULL, 0), ":4:",
                 "steps 5", "key = value");
    EXPECT_ERROR(load_text(&c, "[model]\nlayers = linear 10\n[train\n", NULL, 0), ":3:");
    EXPECT_ERROR(load_text(&c, "[model]\nlayers = linear 10\n[train]\nsteps = 5\nsteps = 6\n",
                           NULL, 0),
                 "train.steps", "twice", "4", "5");
    /* the earliest problem is the one reported */
    EXPECT_ERROR(load_text(&c, "[model]\nlayers = linear 10\n[train]\nbogus\nlr = abc\n", NULL, 0),
                 ":4:", "bogus");
    EXPECT_ERROR(load_text(&c, "[model]\nlayers = linear 10\n[train]\nlr = abc\nbogus\n", NULL, 0),
                 ":4:", "train.lr");
    /* a missing file */
    EXPECT_ERROR(config_load(&c, "/nonexistent/dir/run.ini", NULL, 0), "/nonexistent/dir/run.ini");
}

Test(config, booleans)
{
    const char *yes[] = {"true", "1", "yes", "TRUE", "Yes"};
    const char *no[] = {"false", "0", "no", "False", "NO"};
    config c;
    char set[64];
    for (size_t i = 0; i < 5; i++) {
        config_defaults(&c);
        c.nesterov = 0;
        snprintf(set, sizeof set, "train.nesterov=%s", yes[i]);
        cr_expect_eq(config_set(&c, set), PT_OK, "%s: %s", set, pt_last_error());
        cr_expect_eq(c.nesterov, 1, "%s", set);
        snprintf(set, sizeof set, "train.nesterov=%s", no[i]);
        cr_expect_eq(config_set(&c, set), PT_OK, "%s: %s", set, pt_last_error());
        cr_expect_eq(c.nesterov, 0, "%s", set);
    }
    const char *bad[] = {"maybe", "2", "on", "", "truee"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(set, sizeof set, "train.nesterov=%s", bad[i]);
        cr_expect_eq(config_set(&c, set), PT_ERR_INVALID, "%s accepted", set);
        cr_expect(strstr(pt_last_error(), "train.nesterov") != NULL, "%s", pt_last_error());
        cr_expect(strstr(pt_last_error(), "true, false") != NULL, "%s", pt_last_error());
    }
}

/* ---- validation of combinations ------------------------------------------ */

static config valid_config(void)
{
    config c;
    config_defaults(&c);
    strcpy(c.model_layers, "linear 32, relu, linear 10");
    cr_assert_eq(config_validate(&c), PT_OK, "%s", pt_last_error());
    return c;
}

Test(config, batch_must_divide_into_micro_batches)
{
    config c = valid_config();
    c.batch_size = 250;
    c.micro_batches = 8;
    EXPECT_ERROR(config_validate(&c), "train.batch_size = 250", "pipeline.micro_batches = 8",
                 "248", "256");
    c.batch_size = 4; /* fewer samples than micro-batches: the nearest valid is 8 */
    EXPECT_ERROR(config_validate(&c), "train.batch_size = 4", "is 8");
    c.batch_size = 255;
    EXPECT_ERROR(config_validate(&c), "is 256 (or 248)");
    c.batch_size = 256;
    cr_expect_eq(config_validate(&c), PT_OK, "%s", pt_last_error());
    cr_expect_eq(config_micro_rows(&c), 32);
    /* through a file, the same check */
    EXPECT_ERROR(load_text(&c, MINIMAL, (const char *[]){"train.batch_size=100",
                                                         "pipeline.micro_batches=3"},
                           2),
                 "train.batch_size = 100", "pipeline.micro_batches = 3", "99");
}

/* The suggestion near INT_MAX: B + M passes INT_MAX, so only the multiple
 * below is valid; no suggestion ever wraps round to a negative number. */
Test(config, nearest_valid_batch_size_never_overflows)
{
    config c = valid_config();
    const struct {
        int B, M;
        const char *want;
    } cases[] = {
        {INT_MAX, 8, "the nearest valid train.batch_size is 2147483640, or"},
        {INT_MAX, 2, "the nearest valid train.batch_size is 2147483646, or"},
        {INT_MAX - 1, INT_MAX, "the nearest valid train.batch_size is 2147483647, or"},
        {INT_MAX, INT_MAX - 1, "the nearest valid train.batch_size is 2147483646, or"},
        {INT_MAX - 3, 1000, "the nearest valid train.batch_size is 2147483000, or"},
        {2147483001, 1000, "the nearest valid train.batch_size is 2147483000, or"},
        {INT_MAX / 2 + 1, INT_MAX / 2, "the nearest valid train.batch_size is 1073741823 (or 2147483646)"},
        {1, INT_MAX, "the nearest valid train.batch_size is 2147483647, or"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c.batch_size = cases[i].B;
        c.micro_batches = cases[i].M;
        pt_status st = config_validate(&c);
        const char *msg = pt_last_error();
        cr_assert_eq(st, PT_ERR_INVALID, "B = %d, M = %d: %s", cases[i].B, cases[i].M, msg);
        cr_expect(strstr(msg, cases[i].want) != NULL, "B = %d, M = %d: '%s' lacks '%s'", cases[i].B,
                  cases[i].M, msg, cases[i].want);
        cr_expect(strstr(msg, "is -") == NULL && strstr(msg, "(or -") == NULL, "a negative suggestion: %s", msg);
    }
    /* through --set, as a user types it */
    EXPECT_ERROR(load_text(&c, MINIMAL, (const char *[]){"train.batch_size=2147483647"}, 1),
                 "train.batch_size = 2147483647", "is 2147483640");
    cr_expect(strstr(pt_last_error(), "-2147483648") == NULL, "%s", pt_last_error());
}

/* CONFIG must be a regular file: a FIFO would block the open forever, a
 * directory is not text. Each is refused at once, naming the path and what
 * it is. */
Test(config, config_file_that_is_not_a_regular_file, .timeout = 20)
{
    char dir[] = "/tmp/pt_test_config_dir_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/pipe.ini", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    config c;
    EXPECT_ERROR(config_load(&c, fifo, NULL, 0), "config file", fifo, "is a FIFO, not a regular file");
    EXPECT_ERROR(config_load(&c, dir, NULL, 0), "config file", dir, "is a directory, not a regular file");
    EXPECT_ERROR(config_load(&c, "/dev/null", NULL, 0), "/dev/null", "is a character device");
    unlink(fifo);
    rmdir(dir);
    /* larger than the bound: refused by its size, before any read */
    char *big = temp_ini("");
    cr_assert_eq(truncate(big, (off_t)(5 << 20)), 0);
    EXPECT_ERROR(config_load(&c, big, NULL, 0), big, "bytes, more than");
    unlink(big);
    free(big);
}

Test(config, validate_ranges_of_fields_set_in_code)
{
    config c = valid_config();
    c.lr = 0.0f;
    EXPECT_ERROR(config_validate(&c), "train.lr", "> 0");
    c = valid_config();
    c.lr = NAN;
    EXPECT_ERROR(config_validate(&c), "train.lr");
    c = valid_config();
    c.micro_batches = 0;
    EXPECT_ERROR(config_validate(&c), "pipeline.micro_batches");
    c = valid_config();
    c.steps = 0;
    EXPECT_ERROR(config_validate(&c), "train.steps");
    c = valid_config();
    c.grad_clip = -0.5f;
    EXPECT_ERROR(config_validate(&c), "train.grad_clip");
    c = valid_config();
    c.micro_batches = 4; /* 4 micro-batches cannot be shared by 3 replicas */
    c.batch_size = 64;
    c.data_parallel = 3;
    EXPECT_ERROR(config_validate(&c), "pipeline.micro_batches = 4 is not divisible by pipeline.data_parallel = 3",
                 "use micro_batches = 3 or 6");
    c = valid_config();
    c.micro_batches = 6; /* invariant: each replica's share must be a subtree of the summation tree */
    c.batch_size = 48;
    c.data_parallel = 2;
    c.reduction = REDUCTION_INVARIANT;
    EXPECT_ERROR(config_validate(&c), "pipeline.reduction = invariant", "6 / 2 = 3", "power of two",
                 "use micro_batches = 4");
    c.reduction = REDUCTION_FAST;
    cr_expect_eq(config_validate(&c), PT_OK, "fast reduction, M = 6 on D = 2: %s", pt_last_error());
    c = valid_config();
    c.schedule = SCHED_FORWARD_ONLY;
    EXPECT_ERROR(config_validate(&c), "pipeline.schedule", "gpipe, 1f1b, zbh1 or interleaved");
    c = valid_config();
    c.chunks = 9;
    EXPECT_ERROR(config_validate(&c), "pipeline.chunks");
    c = valid_config();
    c.chunks = 2; /* only the interleaved schedule holds more than one chunk per rank */
    EXPECT_ERROR(config_validate(&c), "pipeline.chunks = 2", "pipeline.schedule = 1f1b",
                 "set pipeline.schedule = interleaved");
    c.schedule = SCHED_INTERLEAVED;
    cr_expect_eq(config_validate(&c), PT_OK, "interleaved with 2 chunks: %s", pt_last_error());
    c = valid_config();
    c.optimizer = (optim_kind)7;
    EXPECT_ERROR(config_validate(&c), "train.optimizer");
    c = valid_config();
    c.partition = PARTITION_EXPLICIT; /* with an empty list */
    EXPECT_ERROR(config_validate(&c), "pipeline.partition");
    c = valid_config();
    strcpy(c.model_layers, "   ");
    EXPECT_ERROR(config_validate(&c), "model.layers");
    c = valid_config();
    strcpy(c.data_dataset, "mnist");
    EXPECT_ERROR(config_validate(&c), "data.dataset");
}

Test(config, warmup_must_end_before_a_cosine_run)
{
    config c = valid_config();
    c.steps = 100;
    c.warmup_steps = 100;
    EXPECT_ERROR(config_validate(&c), "train.warmup_steps", "100");
    c.lr_schedule = LR_CONSTANT; /* a constant schedule may warm up all along */
    cr_expect_eq(config_validate(&c), PT_OK, "%s", pt_last_error());
    c.lr_schedule = LR_COSINE;
    c.warmup_steps = 99;
    cr_expect_eq(config_validate(&c), PT_OK, "%s", pt_last_error());
}

Test(config, optimizer_combinations)
{
    config c = valid_config();
    c.nesterov = 1;
    c.momentum = 0.0f;
    EXPECT_ERROR(config_validate(&c), "train.nesterov");
    c.momentum = 0.5f;
    cr_expect_eq(config_validate(&c), PT_OK, "%s", pt_last_error());
}

Test(config, faults_need_their_targets)
{
    config c = valid_config();
    c.fault_kind = FAULT_ERROR;
    EXPECT_ERROR(config_validate(&c), "fault.rank");
    c.fault_rank = 1;
    EXPECT_ERROR(config_validate(&c), "fault.step");
    c.fault_step = 3;
    cr_expect_eq(config_validate(&c), PT_OK, "%s", pt_last_error());
    c.fault_kind = FAULT_NAN;
    EXPECT_ERROR(config_validate(&c), "fault.layer");
    c.fault_layer = 2;
    cr_expect_eq(config_validate(&c), PT_OK, "%s", pt_last_error());
    c.fault_kind = FAULT_CRASH;
    c.fault_rank = -1;
    EXPECT_ERROR(config_validate(&c), "fault.rank");
}

/* ---- canonical text ----------------------------------------------------- */

/* Every field of a and b equal (floats bit for bit). */
static void expect_same(const config *a, const config *b)
{
    cr_expect_str_eq(a->model_layers, b->model_layers);
    cr_expect_str_eq(a->data_dataset, b->data_dataset);
    cr_expect_str_eq(a->data_path, b->data_path);
    cr_expect_eq(a->data_synthetic_samples, b->data_synthetic_samples);
    cr_expect_eq(a->data_synthetic_features, b->data_synthetic_features);
    cr_expect_eq(a->data_synthetic_classes, b->data_synthetic_classes);
    cr_expect_eq(a->steps, b->steps);
    cr_expect_eq(a->seed, b->seed);
    cr_expect_eq(a->batch_size, b->batch_size);
    cr_expect_eq(a->optimizer, b->optimizer);
    const float *fa[] = {&a->lr, &a->min_lr_ratio, &a->momentum, &a->beta1, &a->beta2, &a->eps,
                         &a->weight_decay, &a->l1, &a->l2, &a->grad_clip};
    const float *fb[] = {&b->lr, &b->min_lr_ratio, &b->momentum, &b->beta1, &b->beta2, &b->eps,
                         &b->weight_decay, &b->l1, &b->l2, &b->grad_clip};
    for (int i = 0; i < 10; i++)
        cr_expect(memcmp(fa[i], fb[i], sizeof(float)) == 0, "float field %d: %.9g vs %.9g", i,
                  (double)*fa[i], (double)*fb[i]);
    cr_expect_eq(a->warmup_steps, b->warmup_steps);
    cr_expect_eq(a->lr_schedule, b->lr_schedule);
    cr_expect_eq(a->nesterov, b->nesterov);
    cr_expect_eq(a->nonfinite, b->nonfinite);
    cr_expect_eq(a->blas_threads, b->blas_threads);
    cr_expect_eq(a->log_every, b->log_every);
    cr_expect_eq(a->schedule, b->schedule);
    cr_expect_eq(a->micro_batches, b->micro_batches);
    cr_expect_eq(a->partition, b->partition);
    cr_expect_str_eq(a->partition_spec, b->partition_spec);
    cr_expect_eq(a->data_parallel, b->data_parallel);
    cr_expect_str_eq(a->log_metrics, b->log_metrics);
    cr_expect_eq(a->fault_kind, b->fault_kind);
    cr_expect_eq(a->fault_rank, b->fault_rank);
    cr_expect_eq(a->fault_step, b->fault_step);
    cr_expect_eq(a->fault_layer, b->fault_layer);
    /* and nothing else differs: strings are zero-padded, so whole structs compare */
    cr_expect(memcmp(a, b, sizeof *a) == 0, "structs differ beyond the listed fields");
}

static void round_trip(const config *a)
{
    char text[8192];
    size_t need = config_to_text(a, text, sizeof text);
    cr_assert_lt(need, sizeof text);
    cr_assert_eq(need, strlen(text));
    config b;
    cr_assert_eq(load_text(&b, text, NULL, 0), PT_OK, "%s\n--- text:\n%s", pt_last_error(), text);
    expect_same(a, &b);
    char again[8192];
    config_to_text(&b, again, sizeof again);
    cr_expect_str_eq(again, text);
}

Test(config, text_round_trips_exactly)
{
    config a = valid_config();
    round_trip(&a);

    const char *ov[] = {
        "train.lr=0.1",          /* not a binary fraction */
        "train.eps=1.17549435e-38", /* smallest normal float */
        "train.beta2=0.99999994", /* just below 1 */
        "train.momentum=3.14159265e-1",
        "train.weight_decay=1e-45", /* subnormal */
        "train.l1=123456789",
        "train.l2=7e-5",
        "train.grad_clip=1.5",
        "train.min_lr_ratio=0.333333343",
        "train.beta1=0",
        "train.seed=18446744073709551615",
        "train.steps=123456789012",
        "train.warmup_steps=17",
        "train.optimizer=sgd",
        "train.nesterov=yes",
        "train.nonfinite=skip",
        "train.lr_schedule=constant",
        "train.blas_threads=4",
        "train.log_every=0",
        "log.summary=/tmp/s.json",
        "train.batch_size=96",
        "pipeline.micro_batches=12",
        "pipeline.schedule=gpipe",
        "pipeline.partition=0-2, 3,4-9",
        "data.dataset=synthetic",
        "data.path=",
        "data.synthetic_samples=100000",
        "data.synthetic_features=7",
        "data.synthetic_classes=3",
        "log.metrics=/tmp/a b/metrics.csv",
        "fault.kind=nan",
        "fault.rank=0",
        "fault.step=0",
        "fault.layer=5",
    };
    int n = (int)(sizeof ov / sizeof ov[0]);
    cr_assert_eq(load_text(&a, MINIMAL, ov, n), PT_OK, "%s", pt_last_error());
    cr_expect_eq(a.lr, 0.1f);
    cr_expect_eq(a.weight_decay, 1e-45f);
    round_trip(&a);

    /* a model description far longer than libinih's line buffer */
    config_defaults(&a);
    a.model_layers[0] = '\0';
    while (strlen(a.model_layers) < 900) strcat(a.model_layers, "linear 512, gelu, dropout 0.1, ");
    strcat(a.model_layers, "linear 10");
    cr_assert_eq(config_validate(&a), PT_OK, "%s", pt_last_error());
    round_trip(&a);
}

Test(config, text_is_canonical_ini)
{
    config c = valid_config();
    char text[8192];
    config_to_text(&c, text, sizeof text);
    const char *head = "[model]\nlayers = linear 32, relu, linear 10\ntie_embeddings = false\n\n[data]\n";
    cr_expect(strncmp(text, head, strlen(head)) == 0, "%s", text);
    cr_expect(strstr(text + 1, "[model]") == NULL, "one [model] section: %s", text);
    cr_expect(strstr(text, "\n[train]\nsteps = 1000\nseed = 1\nbatch_size = 256\n") != NULL, "%s",
              text);
    cr_expect(strstr(text, "lr = 0.001\n") != NULL, "%s", text); /* the shortest text that reads back as 1e-3f */
    cr_expect(strstr(text, "schedule = 1f1b\n") != NULL, "%s", text);
    cr_expect(strstr(text, "[log]\nmetrics =\n") != NULL, "%s", text);
    cr_expect(strstr(text, "nesterov = false\n") != NULL, "%s", text);
    /* snprintf-like: the needed length, whatever the buffer */
    size_t need = strlen(text);
    char small[16];
    cr_expect_eq(config_to_text(&c, small, sizeof small), need);
    cr_expect_eq(strlen(small), sizeof small - 1);
    cr_expect(strncmp(small, text, sizeof small - 1) == 0);
    cr_expect_eq(config_to_text(&c, NULL, 0), need);
}

Test(config, help_lists_every_key_with_default_and_description)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    config_print_help(f);
    fclose(f);
    const char *needles[] = {"[model]", "[data]", "[train]", "[pipeline]", "[log]", "[fault]",
                             "layers", "synthetic_samples", "warmup_steps",
                             "micro_batches", "data_parallel", "metrics", "default 1f1b",
                             "default 8192", "/usr/share/datasets/fashion-mnist",
                             "gpipe, 1f1b, zbh1 or interleaved", "peak learning rate", "a number > 0"};
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++)
        cr_expect(strstr(buf, needles[i]) != NULL, "help lacks '%s'", needles[i]);
    /* every key of the canonical text appears in the help */
    config c = valid_config();
    char text[8192];
    config_to_text(&c, text, sizeof text);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '[') continue;
        char key[64];
        cr_assert_eq(sscanf(line, "%63s", key), 1);
        char pat[80];
        snprintf(pat, sizeof pat, "  %s ", key);
        cr_expect(strstr(buf, pat) != NULL, "help lacks key '%s'", key);
    }
    free(buf);
}

/* Every float key's canonical text reads back as the same float, and is the
 * shortest that does: what checkpoints store and resume compares. */
Test(config, float_text_round_trips)
{
    const float values[] = {1e-3f, 0.1f, 2.5e-4f, 3.0f, 1.0f / 3.0f, 9.99999975e-05f, 1e-30f, 0.999f};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        config c = valid_config();
        c.lr = values[i];
        char text[8192], want[64];
        config_to_text(&c, text, sizeof text);
        const char *p = strstr(text, "\nlr = ");
        cr_assert(p, "%s", text);
        float back = strtof(p + 6, NULL);
        cr_expect(back == values[i], "lr %.9g printed as %.20s", (double)values[i], p + 6);
        snprintf(want, sizeof want, "%.9g", (double)values[i]);
        cr_expect(strcspn(p + 6, "\n") <= strlen(want), "lr %.9g printed longer than %%.9g: %.20s",
                  (double)values[i], p + 6);
    }
}

/* The resume rules: every key has one, and config_changes reports the
 * changed keys with both canonical values and their rule. */
Test(config, resume_rules_of_changes)
{
    config a = valid_config(), b = valid_config();
    b.seed = a.seed + 1;
    b.lr = 5e-4f;
    b.schedule = a.schedule == SCHED_GPIPE ? SCHED_1F1B : SCHED_GPIPE;
    config_change ch[8];
    int n = config_changes(&a, &b, ch, 8);
    cr_assert_eq(n, 3);
    int seen = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(ch[i].key, "train.seed")) {
            seen |= 1;
            cr_expect_eq(ch[i].rule, RESUME_REFUSE);
        }
        if (!strcmp(ch[i].key, "train.lr")) {
            seen |= 2;
            cr_expect_eq(ch[i].rule, RESUME_NOTE);
            cr_expect_str_eq(ch[i].after, "0.0005");
        }
        if (!strcmp(ch[i].key, "pipeline.schedule")) {
            seen |= 4;
            cr_expect_eq(ch[i].rule, RESUME_FREE);
        }
    }
    cr_expect_eq(seen, 7);
    cr_expect_eq(config_changes(&a, &a, ch, 8), 0);
    /* the identity lines hold the NOTE and REFUSE keys only */
    char lines[8192];
    config_to_lines(&a, RESUME_NOTE, lines, sizeof lines);
    cr_expect(strstr(lines, "train.seed = ") && strstr(lines, "train.lr = "), "%s", lines);
    cr_expect(!strstr(lines, "pipeline.schedule") && !strstr(lines, "checkpoint.dir"), "%s", lines);
    config_to_lines(&a, RESUME_REFUSE, lines, sizeof lines);
    cr_expect(strstr(lines, "model.layers = ") && !strstr(lines, "train.lr"), "%s", lines);
}
