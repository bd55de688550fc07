/* pipetrain-ckpt — inspect, check, compare and convert pipetrain checkpoints.
 * A standalone program (no mpirun): git-style subcommands, each with --help
 * and --json. Errors go to stderr as "pipetrain-ckpt: <message>"; the exit
 * status is 0 for success, 1 for a failed check or unreadable input, 2 for a
 * usage error or files that cannot be locked (the environment, not damage). */
#include <stdio.h>
#include <string.h>

#include "ckpt_tool.h"

static const char usage_text[] =
    "usage: " TOOL_NAME " COMMAND [ARGS] [--json]\n"
    "\n"
    "Inspects, checks, compares and converts pipetrain checkpoints (no mpirun needed).\n"
    "\n"
    "commands:\n"
    "  ls RUN_DIR                 the checkpoints of a run: step, time, size, stages,\n"
    "                             complete or not, which one 'latest' names\n"
    "  ls CKPT                    one checkpoint: the partition and every tensor,\n"
    "                             its data fingerprint and history\n"
    "  config CKPT                the config its run trained with, as an INI file\n"
    "  show CKPT TENSOR           statistics of one tensor [--values N] [--array A]\n"
    "  stats CKPT                 the same statistics for every tensor, as a table\n"
    "  verify CKPT                completeness, layout, shapes and every checksum;\n"
    "                             lists every fault, exits 1 on any\n"
    "  diff A B                   per-tensor differences [--tolerance T] [--moments];\n"
    "                             exits 1 unless they match\n"
    "  export CKPT OUT.h5         one partition-free HDF5 file (h5py reads it;\n"
    "                             pipetrain train --init OUT.h5 starts from it)\n"
    "  reshard CKPT --stages P OUT_DIR\n"
    "                             the checkpoint rewritten as P shards, resumable\n"
    "                             with --resume OUT_DIR on P stages\n"
    "\n"
    "CKPT is a run directory (its latest checkpoint), a checkpoint directory\n"
    "(step-N with a manifest.h5) or a single-file checkpoint written by export.\n"
    "'" TOOL_NAME " COMMAND --help' describes a command. Every command takes --json\n"
    "for one JSON document on stdout instead of the tables.\n"
    "\n"
    "exit status: 0 success, 1 a failed check (verify, diff) or input that cannot be\n"
    "read, 2 a usage error or files HDF5 cannot lock (a file system without working\n"
    "locks, such as NFS: export HDF5_USE_FILE_LOCKING=FALSE).\n"
    "\n"
    "examples:\n"
    "  " TOOL_NAME " ls runs/fashion_mlp\n"
    "  " TOOL_NAME " verify runs/fashion_mlp\n"
    "  " TOOL_NAME " show runs/fashion_mlp layers.0.w --values 8\n"
    "  " TOOL_NAME " diff runs/a runs/b --tolerance 1e-6\n"
    "  " TOOL_NAME " export runs/fashion_mlp weights.h5\n"
    "  " TOOL_NAME " reshard runs/fashion_mlp --stages 4 runs/fashion_mlp-4\n";

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"ls", cmd_ls},         {"config", cmd_config}, {"show", cmd_show},     {"stats", cmd_stats},     {"verify", cmd_verify},
    {"diff", cmd_diff},     {"export", cmd_export}, {"reshard", cmd_reshard},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        tool_error("no command given (see '" TOOL_NAME " --help')");
        return TOOL_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (argc > 2 && !strcmp(cmd, "help")) { /* help COMMAND */
            for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (!strcmp(argv[2], commands[i].name)) {
                    char *args[2] = {argv[2], "--help"};
                    return commands[i].run(2, args);
                }
            tool_error("unknown command '%s' (see '" TOOL_NAME " --help')", argv[2]);
            return TOOL_USAGE;
        }
        fputs(usage_text, stdout);
        return TOOL_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    tool_error("unknown command '%s' (see '" TOOL_NAME " --help')", cmd);
    return TOOL_USAGE;
}
