/* fuzz_config.c — libFuzzer target for the config parser.
 *
 * An input is INI text, optionally followed by a NUL byte and overrides, one
 * "section.key=value" a line (what --set gives). The text is parsed with
 * config_load_text, the overrides applied with config_set and the result
 * checked with config_validate. Every error is fine. When all of it
 * succeeds, the canonical text (config_to_text, what a checkpoint stores)
 * must parse again into a config with the same canonical text, since a
 * resumed run reads the config back from it: when it does not, the target
 * aborts, printing both texts. A crash, a sanitizer report, a leak or a
 * timeout is a finding. Run it with scripts/fuzz.sh config. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define TEXT_MAX (1u << 16)

static char *canonical(const config *c)
{
    size_t need = config_to_text(c, NULL, 0);
    char *buf = malloc(need + 1);
    if (buf) config_to_text(c, buf, need + 1);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > TEXT_MAX) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t text_len = strlen(text); /* the INI text ends at the first NUL */

    config *c = malloc(sizeof *c), *again = malloc(sizeof *again);
    if (!c || !again) goto done;
    pt_status st = config_load_text(c, text, "fuzz.ini");
    /* overrides after the first NUL, one a line */
    for (char *line = text_len < size ? text + text_len + 1 : NULL; st == PT_OK && line && line < text + size;) {
        char *end = memchr(line, '\n', (size_t)(text + size - line));
        if (end) *end = '\0';
        if (*line) st = config_set(c, line);
        line = end ? end + 1 : NULL;
    }
    if (st == PT_OK && text_len < size) st = config_validate(c);
    if (st == PT_OK) {
        char *first = canonical(c);
        if (first) {
            pt_status st2 = config_load_text(again, first, "canonical.ini");
            char *second = st2 == PT_OK ? canonical(again) : NULL;
            if (st2 != PT_OK || (second && strcmp(first, second) != 0)) {
                fprintf(stderr, "fuzz_config: the canonical text does not read back%s%s\n--- canonical text:\n%s\n",
                        st2 != PT_OK ? ": " : " the same",
                        st2 != PT_OK ? pt_last_error() : "", first);
                if (second) fprintf(stderr, "--- read back and written again:\n%s\n", second);
                abort();
            }
            free(second);
            free(first);
        }
    }
done:
    pt_clear_error();
    free(again);
    free(c);
    free(text);
    return 0;
}
