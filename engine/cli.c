/* cli.c — the command line of simulate, plan and profile; the kernels'
 * instruction set from the environment (every command). */
#include "cli.h"
#include "kernels.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

pt_status cli_kernels_from_env(void)
{
    const char *v = getenv("PIPETRAIN_KERNELS");
    if (!v || !*v) return PT_OK;
    static const struct {
        const char *name;
        kernels_isa isa;
    } names[] = {{"portable", KERNELS_PORTABLE}, {"avx2", KERNELS_AVX2}, {"avx512", KERNELS_AVX512},
                 {"avx-512", KERNELS_AVX512}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(v, names[i].name)) continue;
        if (kernels_isa_select(names[i].isa)) return PT_OK;
        return pt_fail(PT_ERR_INVALID,
                       "PIPETRAIN_KERNELS=%s: this CPU or build cannot run %s kernels; unset it (the widest "
                       "the CPU runs is chosen: %s here) or name one it runs (portable%s)",
                       v, kernels_isa_name(names[i].isa), kernels_isa_name(kernels_isa_current()),
                       kernels_isa_supported(KERNELS_AVX2) ? ", avx2" : "");
    }
    return pt_fail(PT_ERR_INVALID, "PIPETRAIN_KERNELS=%s: expected portable, avx2 or avx512 (or unset it)", v);
}

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
    pt_status st = cli_kernels_from_env();
    if (st) return st;
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
