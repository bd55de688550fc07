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

/* 1 when argv[2..argc) holds --help or -h. */
int cli_wants_help(int argc, char **argv);

/* Parses `pipetrain CMD CONFIG [options]` (argv[1] = CMD): *config =
 * argv[2]; the --set values go to sets (room for argc entries), their count
 * to *n_sets; the others as `opts` says. Not collective. Errors:
 * PT_ERR_INVALID "CMD: ..." naming a missing CONFIG, an unknown option or
 * one without its value, and pointing at `pipetrain CMD --help`. */
pt_status cli_parse(int argc, char **argv, const cli_option *opts, const char **config, const char **sets,
                    int *n_sets);

#endif
