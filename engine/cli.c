/* cli.c — the command line of simulate, plan and profile. */
#include "cli.h"

#include <string.h>

int cli_wants_help(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

pt_status cli_parse(int argc, char **argv, const cli_option *opts, const char **config, const char **sets,
                    int *n_sets)
{
    const char *cmd = argv[1];
    *config = argc > 2 ? argv[2] : NULL;
    *n_sets = 0;
    if (!*config || (*config)[0] == '-')
        return pt_fail(PT_ERR_INVALID, "%s: expected CONFIG after '%s' (see pipetrain %s --help)", cmd, cmd, cmd);
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strncmp(a, "--set=", 6)) {
            sets[(*n_sets)++] = a + 6;
            continue;
        }
        const cli_option *o = opts;
        while (o->name && strcmp(a, o->name) && !(o->alias && !strcmp(a, o->alias))) o++;
        if (!strcmp(a, "--set") || (o->name && o->value)) {
            if (!v) return pt_fail(PT_ERR_INVALID, "%s: %s needs a value (see pipetrain %s --help)", cmd, a, cmd);
            if (o->name) *o->value = v;
            else sets[(*n_sets)++] = v;
            i++;
        } else if (o->name) {
            *o->flag = 1;
        } else {
            return pt_fail(PT_ERR_INVALID, "%s: unknown option '%s' (see pipetrain %s --help)", cmd, a, cmd);
        }
    }
    return PT_OK;
}
