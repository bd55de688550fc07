/* pipetrain — train, evaluate and sample pipeline-parallel models under mpirun. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "comm.h"
#include "config.h"
#include "persist.h"
#include "trainer.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mpirun -np P pipetrain train CONFIG [options]\n"
            "       mpirun -np P pipetrain eval CONFIG --resume CKPT [options]\n"
            "       mpirun -np P pipetrain generate CKPT --prompt TEXT [options]\n"
            "\n"
            "Trains a model whose layers are split into P pipeline stages, one per MPI rank.\n"
            "\n"
            "commands:\n"
            "  train CONFIG     train the model the INI file CONFIG describes, then evaluate it\n"
            "  eval CONFIG      evaluate the model (with --resume or --init: a checkpoint's)\n"
            "                   with a forward-only pipelined schedule\n"
            "  generate CKPT    continue text prompts with a language-model checkpoint (a run\n"
            "                   directory or one checkpoint), on any number of stages\n"
            "\n"
            "options:\n"
            "  --set section.key=value   override one config key (repeatable)\n"
            "  --resume DIR              resume from a checkpoint: a run directory (its latest\n"
            "                            checkpoint) or one checkpoint directory; any number\n"
            "                            of stages can resume any checkpoint\n"
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
            "The last lines of a training run are 'throughput: N samples/s' (tokens/s for a\n"
            "language model), 'test accuracy: A' (or 'validation loss: L') and\n"
            "'parameter fingerprint: HEX' (a hash of every parameter in global layer order,\n"
            "the same whatever the number of stages).\n"
            "\n"
            "examples:\n"
            "  mpirun -np 2 pipetrain train examples/fashion_mlp.ini --set train.steps=100\n"
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

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--help-config")) {
            config_print_help(stdout);
            return 0;
        }
    }
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

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
            if (rank == 0)
                fprintf(stderr, "pipetrain: %s '%s'%s%s\n",
                        strncmp(a, "--", 2) ? "unexpected argument" : v ? "bad option or value" : "option without a value",
                        a, v && !strncmp(a, "--", 2) ? " " : "", v && !strncmp(a, "--", 2) ? v : "");
            bad = 1;
        }
        i += takes;
    }
    opt.prompts = prompts;
    if (bad) {
        if (rank == 0) usage(stderr);
        free(sets);
        free(prompts);
        MPI_Finalize();
        return 2;
    }

    /* Every rank reads the same file and reaches the same verdict, so a bad
     * config ends every rank cleanly before any work. */
    config c;
    pt_status st = PT_OK;
    if (opt.mode == TRAINER_GENERATE) {
        /* the checkpoint's own config, one row per prompt, one micro-batch each */
        if (opt.n_prompts == 0) st = pt_fail(PT_ERR_INVALID, "generate needs at least one --prompt TEXT");
        if (!st) st = persist_read_config(path, &c);
        for (int i = 0; !st && i < n_sets; i++) st = config_set(&c, sets[i]);
        c.batch_size = c.micro_batches = opt.n_prompts;
        if (!st) st = config_validate(&c);
        opt.init = path;
    } else {
        st = config_load(&c, path, sets, n_sets);
    }
    free(sets);
    if (opt.mode != TRAINER_TRAIN) c.log_metrics[0] = '\0'; /* keep the training run's metrics file */
    if (!st && opt.resume && opt.init && opt.mode != TRAINER_GENERATE)
        st = pt_fail(PT_ERR_INVALID, "--resume and --init exclude each other: --resume continues a run, "
                     "--init starts a new one from a checkpoint's weights");
    if (!st && opt.stop_after > 0 && !c.checkpoint_dir[0])
        st = pt_fail(PT_ERR_INVALID, "--stop-after %ld needs a place for its checkpoint: set checkpoint.dir "
                     "(for example --set checkpoint.dir=runs/mine)", opt.stop_after);
    comm_grid g;
    int D = c.data_parallel;
    if (!st) st = comm_grid_init(&g, MPI_COMM_WORLD, size / D > 0 ? size / D : 1, D);
    if (st) {
        if (rank == 0) fprintf(stderr, "pipetrain: %s\n", pt_last_error());
        free(prompts);
        MPI_Finalize();
        return 2;
    }
    int reporter = -1;
    st = trainer_run(&c, &g, &opt, &reporter);
    if (st && reporter < 0) comm_abort(&g, pt_last_error());
    if (st && g.rank == reporter) fprintf(stderr, "pipetrain: %s\n", pt_last_error());
    comm_grid_free(&g);
    free(prompts);
    MPI_Finalize();
    return st ? (st == PT_ERR_NONFINITE ? 3 : 2) : 0;
}
