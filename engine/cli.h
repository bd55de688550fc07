/* cli.h — the command line of the commands that take CONFIG and options
 * (`pipetrain simulate`, `plan`, `profile`): --set KEY=VALUE (or
 * --set=KEY=VALUE, repeatable), flags, and options with one value. */
#ifndef PT_CLI_H
#define PT_CLI_H

#include "pt_status.h"

typedef struct {
    const char *name;   /* "--ranks"; NULL ends the table */
    const char *alias;  /* another spelling ("-o") or NULL */
    const char **value; /* an option with a value: set to it (the last given wins) */
    int *flag;          /* a flag (value NULL): set to 1 */
} cli_option;

/* The kernels' instruction set from the environment: PIPETRAIN_KERNELS =
 * portable, avx2 or avx512 (any case; unset or empty: the widest the CPU
 * runs, chosen at start-up) selects it with kernels_isa_select. Every
 * choice gives the same bits; this is for comparing speeds. Not collective.
 * Errors: PT_ERR_INVALID naming the value and what to give instead (an
 * unknown name, or one this CPU or build cannot run). */
pt_status cli_kernels_from_env(void);

/* 1 when argv[2..argc) holds --help or -h. */
int cli_wants_help(int argc, char **argv);

/* Parses `pipetrain CMD CONFIG [options]` (argv[1] = CMD): *config =
 * argv[2]; the --set values go to sets (room for argc entries), their count
 * to *n_sets; the others as `opts` says. Not collective. Errors:
 * PT_ERR_INVALID "CMD: ..." naming a missing CONFIG, an unknown option or
 * one without its value, and pointing at `pipetrain CMD --help`; those of
 * cli_kernels_from_env, which it calls first. */
pt_status cli_parse(int argc, char **argv, const cli_option *opts, const char **config, const char **sets,
                    int *n_sets);

#endif
