/* pipetrain — train, evaluate and sample pipeline-parallel models under mpirun. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <xxhash.h>

#include "comm.h"
#include "cli.h"
#include "config.h"
#include "persist.h"
#include "plan.h"
#include "profile.h"
#include "simulate.h"
#include "trainer.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mpirun -np N pipetrain train CONFIG [options]\n"
            "       mpirun -np N pipetrain eval CONFIG --resume CKPT [options]\n"
            "       mpirun -np N pipetrain generate CKPT --prompt TEXT [options]\n"
            "       pipetrain simulate CONFIG --ranks N [options]   (see pipetrain simulate --help)\n"
            "       pipetrain plan CONFIG --ranks LIST [options]    (see pipetrain plan --help)\n"
            "       mpirun -np N pipetrain profile CONFIG [options] (see pipetrain profile --help)\n"
            "\n"
            "Trains a model whose layers are split into P pipeline stages, one per MPI rank,\n"
            "on N = P × D ranks: D = pipeline.data_parallel replicas of the pipeline (default\n"
            "1), each training its share of every step's micro-batches.\n"
            "\n"
            "commands:\n"
            "  train CONFIG     train the model the INI file CONFIG describes, then evaluate it\n"
            "  eval CONFIG      evaluate the model (with --resume or --init: a checkpoint's)\n"
            "                   with a forward-only pipelined schedule\n"
            "  generate CKPT    continue text prompts with a language-model checkpoint (a run\n"
            "                   directory or one checkpoint), on any number of stages\n"
            "  simulate CONFIG  predict the step time and throughput of CONFIG on N ranks, from the\n"
            "                   same op lists and per-stage times measured on this machine (no mpirun)\n"
            "  profile CONFIG   measure every layer's times and the MPI transport on this machine\n"
            "                   and write a JSON profile for simulate --profile and partition = measured\n"
            "  plan CONFIG      rank the layouts (stages × replicas, micro-batches, schedule, BLAS\n"
            "                   threads) that fit the given ranks and cores by predicted throughput\n"
            "\n"
            "options:\n"
            "  --set section.key=value   override one config key (repeatable)\n"
            "  --resume DIR              resume from a checkpoint: a run directory (its latest\n"
            "                            checkpoint) or one checkpoint directory; any number\n"
            "                            of stages can resume any checkpoint; keys that define\n"
            "                            the stored state (model, data, seed, batch, optimizer)\n"
            "                            cannot change, others are noted in the checkpoints'\n"
            "                            history (--help-config says which)\n"
            "  --resume auto             resume from the latest checkpoint of checkpoint.dir\n"
            "                            when it holds one, else start a new run there (and\n"
            "                            say which): the same command serves a first start\n"
            "                            and every requeue\n"
            "  --init PATH               start a new run (step 0, fresh optimizer) from the\n"
            "                            weights of a checkpoint or of a file written by\n"
            "                            pipetrain-ckpt export\n"
            "  --stop-after N            end cleanly after step N with a checkpoint, without\n"
            "                            changing the schedule of a run of train.steps\n"
            "  --tensor-hashes FILE      write one 'name hash' line per parameter tensor\n"
            "  --help                    this text\n"
            "  --help-config             every config key with its default and meaning\n"
            "\n"
            "generate options:\n"
            "  --prompt TEXT             a prompt (repeatable: prompts are micro-batches that\n"
            "                            flow through the pipeline together)\n"
            "  --tokens N                bytes to generate per prompt (default 200)\n"
            "  --temperature T           sampling temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K                 sample among the K most likely bytes (default 40; 0 = all)\n"
            "  --seed S                  sampling seed (default 1): the same text for the same\n"
            "                            seed, whatever the number of stages\n"
            "\n"
            "environment: PIPETRAIN_KERNELS=portable|avx2|avx512 runs the element-wise and\n"
            "row kernels on that instruction set instead of the widest the CPU has (the same\n"
            "bits on each; for comparing speeds).\n"
            "\n"
            "SIGUSR1 (which mpirun passes on), SIGTERM or SIGINT stop a training run after\n"
            "the step the ranks agree on, with a checkpoint when checkpoint.dir is set, and\n"
            "exit 0; --resume auto continues it. A second signal ends it at once. On\n"
            "SIGTERM or SIGINT, mpirun sends the ranks SIGTERM after --mca\n"
            "odls_base_sigkill_timeout seconds (default 1) and SIGKILL as long again after\n"
            "that: raise it (e.g. 60) to leave time for a step and a checkpoint.\n"
            "\n"
            "The last lines of a training run are 'throughput: N samples/s' (tokens/s for a\n"
            "language model), 'test accuracy: A' (or 'validation loss: L') and\n"
            "'parameter fingerprint: HEX' (a hash of every parameter in global layer order,\n"
            "the same whatever the number of stages and schedule, and with\n"
            "pipeline.reduction = invariant whatever the number of replicas).\n"
            "\n"
            "examples:\n"
            "  mpirun -np 2 pipetrain train examples/fashion_mlp.ini --set train.steps=100\n"
            "  mpirun -np 4 pipetrain train examples/fashion_mlp.ini --set pipeline.data_parallel=2\n"
            "  mpirun -np 2 pipetrain generate runs/gpt_bytes --prompt 'The ' --tokens 100\n");
}

/* Parses a whole number in [lo, hi] or a finite real (is_real); 0 on error. */
static int parse_number(const char *text, double lo, double hi, int is_real, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = is_real ? strtod(text, &end) : (double)strtoll(text, &end, 10);
    if (!*text || *end || errno || !isfinite(v) || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

/* What every rank must agree on before any work, as "key = value" lines:
 * the command line's options, the canonical config, and the build (a hash of
 * this executable, the MPI and OpenBLAS libraries). A malloc'ed text, or NULL
 * when out of memory. */
static char *run_definition(const config *c, const trainer_options *opt)
{
    static const char *const modes[] = {"train", "eval", "generate"};
    const char *resume = opt->resume ? opt->resume : "", *init = opt->init ? opt->init : "";
    const char *hashes = opt->tensor_hashes ? opt->tensor_hashes : "";
    /* every piece is counted before it is written */
    size_t need = config_to_lines(c, RESUME_FREE, NULL, 0) + strlen(resume) + strlen(init) + strlen(hashes) + 4096;
    for (int i = 0; i < opt->n_prompts; i++) need += strlen(opt->prompts[i]) + 32;
    char *text = malloc(need);
    if (!text) return NULL;
    size_t pos = (size_t)snprintf(text, need,
                                  "command = %s\n--resume = %s\n--init = %s\n--stop-after = %ld\n"
                                  "--tensor-hashes = %s\n--tokens = %d\n--temperature = %.9g\n--top-k = %d\n"
                                  "--seed = %llu\n",
                                  modes[opt->mode], resume, init, opt->stop_after, hashes, opt->gen_tokens,
                                  (double)opt->temperature, opt->top_k, (unsigned long long)opt->gen_seed);
    for (int i = 0; i < opt->n_prompts; i++)
        pos += (size_t)snprintf(text + pos, need - pos, "--prompt %d = %s\n", i + 1, opt->prompts[i]);
    pos += config_to_lines(c, RESUME_FREE, text + pos, need - pos);
    /* the build: this executable's bytes and the libraries it runs with */
    unsigned long long exe = 0;
    FILE *f = fopen("/proc/self/exe", "rb");
    if (f) {
        XXH3_state_t *h = XXH3_createState();
        char buf[1 << 16];
        size_t n;
        if (h && XXH3_64bits_reset(h) == XXH_OK) {
            while ((n = fread(buf, 1, sizeof buf, f)) > 0) XXH3_64bits_update(h, buf, n);
            exe = XXH3_64bits_digest(h);
        }
        XXH3_freeState(h);
        fclose(f);
    }
    char mpi[256];
    comm_library_version(mpi, sizeof mpi);
    snprintf(text + pos, need - pos, "pipetrain binary = %016llx\nMPI library = %s\nOpenBLAS = %s\n", exe, mpi,
             openblas_get_config());
    return text;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "simulate")) return simulate_main(argc, argv); /* no MPI */
    if (argc > 1 && !strcmp(argv[1], "plan")) return plan_main(argc, argv);         /* no MPI */
    int profiling = argc > 1 && !strcmp(argv[1], "profile"); /* MPI, its own options */
    for (int i = 1; i < argc && !profiling; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--help-config")) {
            config_print_help(stdout);
            return 0;
        }
    }
    pt_status st = comm_init(&argc, &argv);
    if (st) {
        fprintf(stderr, "pipetrain: %s\n", pt_last_error());
        return 2;
    }
    comm_grid g;
    st = comm_start(&g);
    if (st == PT_ERR_TIMEOUT) comm_abort(NULL, pt_last_error()); /* a peer that does not answer would not finalize */
    if (st) {
        fprintf(stderr, "pipetrain: %s\n", pt_last_error());
        comm_finalize();
        return 2;
    }
    if (profiling) {
        int code = profile_main(argc, argv, &g);
        comm_grid_free(&g);
        comm_finalize();
        return code;
    }

    const char *cmd = argc > 1 ? argv[1] : "", *path = argc > 2 ? argv[2] : NULL;
    trainer_options opt = {.mode = TRAINER_TRAIN, .config_path = path, .gen_tokens = 200,
                           .temperature = 0.8f, .top_k = 40, .gen_seed = 1};
    int bad = !path || path[0] == '-';
    if (!strcmp(cmd, "eval"))
        opt.mode = TRAINER_EVAL;
    else if (!strcmp(cmd, "generate"))
        opt.mode = TRAINER_GENERATE;
    else if (strcmp(cmd, "train"))
        bad = 1;
    if (bad) st = pt_fail(PT_ERR_INVALID, "expected a command (train, eval or generate) and its CONFIG or CKPT");
    const char **sets = calloc((size_t)argc, sizeof *sets), **prompts = calloc((size_t)argc, sizeof *prompts);
    int n_sets = 0;
    for (int i = 3; !bad && i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double num = 0;
        int takes = v && strncmp(a, "--set=", 6) != 0;
        if (!strncmp(a, "--set=", 6))
            sets[n_sets++] = a + 6;
        else if (!strcmp(a, "--set") && v)
            sets[n_sets++] = v;
        else if (!strcmp(a, "--tensor-hashes") && v)
            opt.tensor_hashes = v;
        else if (!strcmp(a, "--resume") && v)
            opt.resume = v;
        else if (!strcmp(a, "--init") && v)
            opt.init = v;
        else if (!strcmp(a, "--prompt") && v)
            prompts[opt.n_prompts++] = v;
        else if (!strcmp(a, "--stop-after") && v && parse_number(v, 1, 1e15, 0, &num))
            opt.stop_after = (long)num;
        else if (!strcmp(a, "--tokens") && v && parse_number(v, 1, 1e7, 0, &num))
            opt.gen_tokens = (int)num;
        else if (!strcmp(a, "--temperature") && v && parse_number(v, 0, 100, 1, &num))
            opt.temperature = (float)num;
        else if (!strcmp(a, "--top-k") && v && parse_number(v, 0, 1 << 20, 0, &num))
            opt.top_k = (int)num;
        else if (!strcmp(a, "--seed") && v && parse_number(v, 0, 1.8e19, 0, &num))
            opt.gen_seed = (uint64_t)num;
        else {
            st = pt_fail(PT_ERR_INVALID, "%s '%s'%s%s",
                         strncmp(a, "--", 2) ? "unexpected argument" : v ? "bad option or value" : "option without a value",
                         a, v && !strncmp(a, "--", 2) ? " " : "", v && !strncmp(a, "--", 2) ? v : "");
            bad = 1;
        }
        i += takes;
    }
    opt.prompts = prompts;

    /* The config (and later the data) may differ between hosts: every rank
     * reaches its own verdict, the ranks agree on one, then check that they
     * all run the same thing before any work. */
    config c;
    if (!bad && opt.mode == TRAINER_GENERATE) {
        /* the checkpoint's own config, one row per prompt, one micro-batch each */
        if (opt.n_prompts == 0) st = pt_fail(PT_ERR_INVALID, "generate needs at least one --prompt TEXT");
        if (!st) st = persist_read_config(path, &c);
        /* the weights, not the training layout: one chunk per rank, one replica, unless --set says otherwise */
        c.schedule = SCHED_1F1B;
        c.chunks = 1;
        c.data_parallel = 1;
        for (int i = 0; !st && i < n_sets; i++) st = config_set(&c, sets[i]);
        c.batch_size = c.micro_batches = opt.n_prompts;
        if (!st) st = config_validate(&c);
        opt.init = path;
    } else if (!bad) {
        st = config_load(&c, path, sets, n_sets);
    }
    free(sets);
    if (!st) st = cli_kernels_from_env();
    if (!st) comm_set_timeout(c.timeout); /* before the first agreement: a rank that never answers ends the job */
    if (!st) st = comm_set_progress(c.progress_us);
    if (!st && opt.mode != TRAINER_TRAIN) c.log_metrics[0] = '\0'; /* keep the training run's metrics file */
    if (!st && opt.resume && opt.init && opt.mode != TRAINER_GENERATE)
        st = pt_fail(PT_ERR_INVALID, "--resume and --init exclude each other: --resume continues a run, "
                     "--init starts a new one from a checkpoint's weights");
    int resume_auto = !st && opt.resume && !strcmp(opt.resume, "auto");
    if (resume_auto && opt.mode != TRAINER_TRAIN)
        st = pt_fail(PT_ERR_INVALID, "--resume auto is for train (it resumes checkpoint.dir or starts a new run): "
                     "%s needs --resume with a run or checkpoint directory", cmd);
    else if (resume_auto && !c.checkpoint_dir[0])
        st = pt_fail(PT_ERR_INVALID, "--resume auto resumes from checkpoint.dir, which is not set: set it (for "
                     "example --set checkpoint.dir=runs/mine)");
    if (!st && opt.stop_after > 0 && !c.checkpoint_dir[0])
        st = pt_fail(PT_ERR_INVALID, "--stop-after %ld needs a place for its checkpoint: set checkpoint.dir "
                     "(for example --set checkpoint.dir=runs/mine)", opt.stop_after);
    int reporter = -1;
    st = comm_agree(&g, st, &reporter);
    if (!st) {
        /* every rank takes part in the same collectives, whatever its allocation did */
        char *what = run_definition(&c, &opt);
        st = comm_agree(&g, what ? PT_OK : pt_fail(PT_ERR_NOMEM, "out of memory"), &reporter);
        if (!st)
            st = comm_same_text(&g, "the run (command line, config and build)", what,
                                "every rank must run the same pipetrain build with the same options and "
                                "config file contents (on a cluster: the same files on every host)",
                                &reporter);
        free(what);
    }
    if (!st) {
        reporter = 0; /* the same verdict on every rank */
        int D = c.data_parallel;
        if (g.size % D) {
            char on[64];
            if (g.size / D > 0)
                snprintf(on, sizeof on, "%d or %d ranks", g.size / D * D, (g.size / D + 1) * D);
            else
                snprintf(on, sizeof on, "%d ranks or a multiple of it", D);
            st = pt_fail(PT_ERR_INVALID, "mpirun -np %d is not a multiple of pipeline.data_parallel = %d: every "
                         "replica needs the same number of stages; run on %s, or set pipeline.data_parallel to a "
                         "divisor of %d", g.size, D, on, g.size);
        } else {
            st = comm_grid_split(&g, g.size / D, D);
        }
    }
    char resumed[4096]; /* --resume auto: the checkpoint found in checkpoint.dir, or "" for a new run */
    if (!st && resume_auto && !(st = persist_resume_auto(&c, &g, resumed, sizeof resumed, &reporter)))
        opt.resume = resumed[0] ? resumed : NULL;
    if (st == PT_ERR_TIMEOUT) comm_abort(&g, pt_last_error()); /* a peer that does not answer would not finalize */
    if (st) {
        if (g.rank == reporter) {
            /* a verdict of rank 0 is every rank's (or the first of them); name any other rank */
            if (reporter != 0 && strncmp(pt_last_error(), "rank ", 5))
                fprintf(stderr, "pipetrain: rank %d (host %s): %s\n", g.rank, g.host, pt_last_error());
            else
                fprintf(stderr, "pipetrain: %s\n", pt_last_error());
            if (bad) usage(stderr);
        }
        comm_grid_free(&g);
        free(prompts);
        comm_finalize();
        return 2;
    }
    st = trainer_run(&c, &g, &opt, &reporter);
    if (st && (reporter < 0 || st == PT_ERR_TIMEOUT)) comm_abort(&g, pt_last_error());
    if (st && g.rank == reporter) fprintf(stderr, "pipetrain: %s\n", pt_last_error());
    comm_grid_free(&g);
    free(prompts);
    comm_finalize();
    return st ? (st == PT_ERR_NONFINITE ? 3 : 2) : 0;
}
