/* pipetrain — train and evaluate pipeline-parallel models under mpirun. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "comm.h"
#include "config.h"
#include "trainer.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mpirun -np P pipetrain COMMAND CONFIG [options]\n"
            "\n"
            "Trains a model whose layers are split into P pipeline stages, one per MPI rank.\n"
            "\n"
            "commands:\n"
            "  train CONFIG     train the model the INI file CONFIG describes, then evaluate it\n"
            "  eval CONFIG      evaluate the model with a forward-only pipelined schedule\n"
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
            "The last lines of a run are 'throughput: N samples/s', 'test accuracy: A' and\n"
            "'parameter fingerprint: HEX' (a hash of every parameter in global layer order,\n"
            "the same whatever the number of stages).\n"
            "\n"
            "example:\n"
            "  mpirun -np 2 pipetrain train examples/fashion_mlp.ini --set train.steps=100\n");
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

    const char *cmd = argc > 1 ? argv[1] : NULL, *path = argc > 2 ? argv[2] : NULL;
    trainer_options opt = {TRAINER_TRAIN, path, NULL, NULL, NULL, 0};
    int bad_usage = !cmd || !path || path[0] == '-';
    if (!bad_usage && !strcmp(cmd, "eval"))
        opt.mode = TRAINER_EVAL;
    else if (!bad_usage && strcmp(cmd, "train"))
        bad_usage = 1;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0;
    for (int i = 3; !bad_usage && i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc)
            sets[n_sets++] = argv[++i];
        else if (!strncmp(argv[i], "--set=", 6))
            sets[n_sets++] = argv[i] + 6;
        else if (!strcmp(argv[i], "--tensor-hashes") && i + 1 < argc)
            opt.tensor_hashes = argv[++i];
        else if (!strcmp(argv[i], "--resume") && i + 1 < argc)
            opt.resume = argv[++i];
        else if (!strcmp(argv[i], "--init") && i + 1 < argc)
            opt.init = argv[++i];
        else if (!strcmp(argv[i], "--stop-after") && i + 1 < argc) {
            char *end = NULL;
            opt.stop_after = strtol(argv[++i], &end, 10);
            if (*end || opt.stop_after < 1) {
                if (rank == 0) fprintf(stderr, "pipetrain: --stop-after '%s': expected a step number >= 1\n", argv[i]);
                bad_usage = 1;
            }
        }
        else {
            if (rank == 0) fprintf(stderr, "pipetrain: unknown argument '%s'\n", argv[i]);
            bad_usage = 1;
        }
    }
    if (bad_usage) {
        if (rank == 0) usage(stderr);
        free(sets);
        MPI_Finalize();
        return 2;
    }

    /* Every rank reads the same file and reaches the same verdict, so a bad
     * config ends every rank cleanly before any work. */
    config c;
    pt_status st = config_load(&c, path, sets, n_sets);
    free(sets);
    if (!st && opt.resume && opt.init)
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
        MPI_Finalize();
        return 2;
    }
    int reporter = -1;
    st = trainer_run(&c, &g, &opt, &reporter);
    if (st && reporter < 0) comm_abort(&g, pt_last_error());
    if (st && g.rank == reporter) fprintf(stderr, "pipetrain: %s\n", pt_last_error());
    comm_grid_free(&g);
    MPI_Finalize();
    return st ? (st == PT_ERR_NONFINITE ? 3 : 2) : 0;
}
