/* ckpt_util.c — messages, options, tables, formatting, JSON, the opened
 * checkpoint, the stored config's model and tensor statistics of
 * pipetrain-ckpt (see ckpt_tool.h). */
#include "ckpt_tool.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- messages ------------------------------------------------------------ */

void tool_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, TOOL_NAME ": ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void tool_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, TOOL_NAME ": note: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int tool_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, TOOL_NAME ": %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see '" TOOL_NAME " %s --help')\n", cmd);
    va_end(ap);
    return TOOL_USAGE;
}

/* ---- options ------------------------------------------------------------- */

int tool_parse(int argc, char **argv, const char *help, const tool_opt *opts, int n_opts, const char **pos,
               int min_pos, int max_pos, int *n_pos)
{
    const char *cmd = argv[0];
    int np = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            fputs(help, stdout);
            return -1;
        }
        if (!only_pos && a[0] == '-' && a[1] != '\0') {
            const char *eq = strchr(a, '=');
            size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
            const tool_opt *o = NULL;
            for (int k = 0; k < n_opts && !o; k++)
                if (strlen(opts[k].name) == nlen && !strncmp(opts[k].name, a, nlen)) o = &opts[k];
            if (!o) return tool_usage(cmd, "unknown option '%.*s'", (int)nlen, a);
            if (o->value) {
                if (eq) *o->value = eq + 1;
                else if (i + 1 < argc) *o->value = argv[++i];
                else return tool_usage(cmd, "option %s needs a value", o->name);
            } else {
                if (eq) return tool_usage(cmd, "option %s takes no value", o->name);
                *o->flag = 1;
            }
            continue;
        }
        if (np >= max_pos)
            return tool_usage(cmd, "unexpected argument '%s' (it takes %s%d)", a, min_pos == max_pos ? "" : "at most ",
                              max_pos);
        pos[np++] = a;
    }
    if (np < min_pos) {
        const char *line = strstr(help, "usage: ");
        const char *end = line ? strchr(line, '\n') : NULL;
        return tool_usage(cmd, "missing argument%s; %.*s", min_pos - np > 1 ? "s" : "",
                          line && end ? (int)(end - line) : 0, line ? line : "");
    }
    *n_pos = np;
    return TOOL_OK;
}

int tool_parse_long(const char *cmd, const char *opt, const char *text, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (!*text || *end || errno || v < min || v > max)
        return tool_usage(cmd, "%s '%s': expected an integer from %ld to %ld", opt, text, min, max);
    *out = v;
    return TOOL_OK;
}

int tool_parse_double(const char *cmd, const char *opt, const char *text, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (!*text || *end || errno || !(v >= 0) || isinf(v))
        return tool_usage(cmd, "%s '%s': expected a finite number >= 0", opt, text);
    *out = v;
    return TOOL_OK;
}

/* ---- tables -------------------------------------------------------------- */

struct tool_table {
    int ncols, nrows, cap;
    char **cells; /* (nrows + 1) × ncols, row 0 = headers */
    char align[32];
};

tool_table *table_new(int ncols, const char *const *headers, const char *align)
{
    if (ncols < 1 || ncols > 31) return NULL;
    tool_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->ncols = ncols;
    snprintf(t->align, sizeof t->align, "%s", align);
    table_add(t, headers);
    return t;
}

void table_add(tool_table *t, const char *const *cells)
{
    if (!t) return;
    if (t->nrows == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        char **grown = realloc(t->cells, sizeof *grown * (size_t)cap * (size_t)t->ncols);
        if (!grown) return;
        t->cells = grown;
        t->cap = cap;
    }
    for (int c = 0; c < t->ncols; c++) {
        char *s = strdup(cells[c] ? cells[c] : "");
        t->cells[(size_t)t->nrows * (size_t)t->ncols + (size_t)c] = s ? s : NULL;
    }
    t->nrows++;
}

void table_print(const tool_table *t, FILE *out)
{
    if (!t) return;
    size_t width[32] = {0};
    for (int r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            const char *s = t->cells[(size_t)r * (size_t)t->ncols + (size_t)c];
            size_t w = s ? strlen(s) : 0;
            if (w > width[c]) width[c] = w;
        }
    for (int r = 0; r < t->nrows; r++) {
        char line[4096];
        size_t pos = 0;
        for (int c = 0; c < t->ncols; c++) {
            const char *s = t->cells[(size_t)r * (size_t)t->ncols + (size_t)c];
            if (!s) s = "";
            int right = t->align[c] == 'r';
            int last = c == t->ncols - 1;
            int n;
            if (right) n = snprintf(line + pos, sizeof line - pos, "%*s", (int)width[c], s);
            else if (last) n = snprintf(line + pos, sizeof line - pos, "%s", s);
            else n = snprintf(line + pos, sizeof line - pos, "%-*s", (int)width[c], s);
            if (n > 0) pos += (size_t)n;
            if (pos >= sizeof line) pos = sizeof line - 1;
            if (!last) {
                n = snprintf(line + pos, sizeof line - pos, "  ");
                if (n > 0) pos += (size_t)n;
                if (pos >= sizeof line) pos = sizeof line - 1;
            }
        }
        while (pos > 0 && line[pos - 1] == ' ') line[--pos] = '\0';
        fprintf(out, "%s\n", line);
    }
}

void table_free(tool_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < (size_t)t->nrows * (size_t)t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t);
}

/* ---- formatting ---------------------------------------------------------- */

void fmt_human(char *buf, size_t len, int64_t bytes)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024) {
        snprintf(buf, len, "%lld B", (long long)bytes);
        return;
    }
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, unit[u]);
}

void fmt_bytes(char *buf, size_t len, int64_t bytes)
{
    char h[32];
    fmt_human(h, sizeof h, bytes);
    if (bytes < 1024) snprintf(buf, len, "%lld", (long long)bytes);
    else snprintf(buf, len, "%lld (%s)", (long long)bytes, h);
}

void fmt_shape(char *buf, size_t len, int ndim, const int64_t *dims)
{
    if (ndim == 0) snprintf(buf, len, "[]");
    else if (ndim == 1) snprintf(buf, len, "[%lld]", (long long)dims[0]);
    else if (ndim == 2) snprintf(buf, len, "[%lld, %lld]", (long long)dims[0], (long long)dims[1]);
    else snprintf(buf, len, "[%lld, %lld, ...] (%d dimensions)", (long long)dims[0], (long long)dims[1], ndim);
}

void fmt_entry_shape(char *buf, size_t len, const ckpt_entry *e)
{
    int64_t d[2] = {e->shape[0], e->shape[1]};
    fmt_shape(buf, len, e->ndim, d);
}

void fmt_num(char *buf, size_t len, double v)
{
    if (isnan(v)) snprintf(buf, len, "nan");
    else if (isinf(v)) snprintf(buf, len, v > 0 ? "inf" : "-inf");
    else snprintf(buf, len, "%.6g", v);
}

void fmt_time_iso(char *buf, size_t len, time_t t)
{
    struct tm tm;
    if (!localtime_r(&t, &tm)) {
        snprintf(buf, len, "?");
        return;
    }
    char base[32], zone[8];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    strftime(zone, sizeof zone, "%z", &tm); /* +0100 → +01:00 */
    if (strlen(zone) == 5) snprintf(buf, len, "%s%.3s:%.2s", base, zone, zone + 3);
    else snprintf(buf, len, "%s", base);
}

const char *array_label(int a)
{
    return a == CKPT_MOMENT1 ? "moment1" : a == CKPT_MOMENT2 ? "moment2" : "parameter";
}

int array_from_name(const char *s)
{
    if (!strcmp(s, "param") || !strcmp(s, "parameter")) return CKPT_PARAM;
    if (!strcmp(s, "moment1")) return CKPT_MOMENT1;
    if (!strcmp(s, "moment2")) return CKPT_MOMENT2;
    if (!strcmp(s, "all")) return CKPT_ARRAYS;
    return -1;
}

void fmt_label(char *buf, size_t len, const char *name, int a)
{
    if (a == CKPT_PARAM) snprintf(buf, len, "%s", name);
    else snprintf(buf, len, "%s (%s)", name, array_label(a));
}

/* ---- JSON ---------------------------------------------------------------- */

cJSON *json_shape(int ndim, const int64_t *dims)
{
    cJSON *a = cJSON_CreateArray();
    for (int d = 0; a && d < ndim && d < 2; d++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)dims[d]));
    return a;
}

cJSON *json_entry_shape(const ckpt_entry *e)
{
    int64_t d[2] = {e->shape[0], e->shape[1]};
    return json_shape(e->ndim, d);
}

void json_num(cJSON *o, const char *key, double v)
{
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

void json_u64(cJSON *o, const char *key, uint64_t v)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%llu", (unsigned long long)v);
    cJSON_AddRawToObject(o, key, raw);
}

void json_i64(cJSON *o, const char *key, int64_t v)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)v);
    cJSON_AddRawToObject(o, key, raw);
}

int json_print(cJSON *doc)
{
    char *text = doc ? cJSON_Print(doc) : NULL;
    cJSON_Delete(doc);
    if (!text) {
        tool_error("out of memory while writing JSON");
        return TOOL_FAIL;
    }
    printf("%s\n", text);
    cJSON_free(text);
    return TOOL_OK;
}

/* ---- an opened checkpoint ------------------------------------------------ */

int tool_lock_error(pt_status st)
{
    if (st != PT_ERR_LOCK) return 0;
    tool_error("%s", pt_last_error());
    return 1;
}

int tool_open(tool_ckpt *c, const char *arg)
{
    memset(c, 0, sizeof *c);
    pt_status st = ckpt_resolve(arg, c->path, sizeof c->path);
    if (!st) st = ckpt_read_manifest(c->path, &c->m);
    if (!st) c->have_m = 1;
    if (!st) st = ckpt_reader_open(&c->r, c->path, &c->m);
    if (!st) c->have_r = 1;
    if (st) {
        tool_error("%s", pt_last_error());
        tool_close(c);
        return st == PT_ERR_LOCK ? TOOL_ENV : TOOL_FAIL;
    }
    return TOOL_OK;
}

void tool_close(tool_ckpt *c)
{
    if (c->have_r) ckpt_reader_close(&c->r);
    if (c->have_m) ckpt_manifest_free(&c->m);
    c->have_r = c->have_m = 0;
}

float *tool_read(tool_ckpt *c, int k, int a)
{
    const ckpt_entry *e = &c->m.entries[k];
    float *x = malloc(sizeof(float) * (size_t)(e->numel > 0 ? e->numel : 1));
    if (!x) {
        pt_fail(PT_ERR_NOMEM, "tensor %s: out of memory for %lld floats", e->name, (long long)e->numel);
        return NULL;
    }
    if (ckpt_read_tensor(&c->r, e, a, x) != PT_OK) {
        free(x);
        return NULL;
    }
    return x;
}

/* ---- the model of the stored config -------------------------------------- */

model_tensor *tool_model_tensors(const model *mod, int *n)
{
    *n = model_tensor_count(mod, 0, mod->n_layers);
    model_tensor *t = calloc((size_t)*n + 1, sizeof *t);
    if (t) model_tensors(mod, t);
    return t;
}

/* Does the index hold exactly what a checkpoint of model mod stores: every
 * tensor that is no tied copy, with its shape (a tied copy is stored once, as
 * its source; an index that lists the copy too is accepted, and verify
 * compares the two), and nothing else? */
static int model_matches(const model *mod, const ckpt_manifest *m)
{
    if (mod->n_layers != m->n_layers) return 0;
    int n = 0, listed = 0, distinct = 0, ok = 1;
    model_tensor *t = tool_model_tensors(mod, &n);
    if (!t) return 0;
    for (int k = 0; k < m->n_entries; k++) distinct += ckpt_find(m, m->entries[k].name) == k;
    for (int j = 0; j < n && ok; j++) {
        int k = ckpt_find(m, t[j].name);
        if (k < 0) {
            ok = t[j].tied_to >= 0;
            continue;
        }
        listed++;
        const ckpt_entry *e = &m->entries[k];
        ok = e->ndim == t[j].param.ndim && e->shape[0] == t[j].param.shape[0] &&
             (e->ndim == 1 || e->shape[1] == t[j].param.shape[1]);
    }
    free(t);
    return ok && listed == distinct;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

void tool_model_load(const ckpt_manifest *m, tool_model *tm)
{
    memset(tm, 0, sizeof *tm);
    pt_status st = config_load_text(&tm->cfg, m->config_text, "the config stored in the manifest");
    if (st) {
        snprintf(tm->why, sizeof tm->why, "%s", pt_last_error());
        return;
    }
    tm->have_config = 1;

    /* the items of model.layers, as written */
    char *copy = strdup(tm->cfg.model_layers);
    int cap = 1;
    for (const char *p = tm->cfg.model_layers; *p; p++) cap += *p == ',';
    tm->kinds = calloc((size_t)cap, sizeof *tm->kinds);
    if (copy && tm->kinds) {
        char *rest = copy;
        for (char *tok = strsep(&rest, ","); tok; tok = strsep(&rest, ",")) tm->kinds[tm->n_kinds++] = strdup(trim(tok));
    }
    free(copy);

    /* The input width is the data's, not always the config's: try the
     * widths the data set gives (synthetic: its width; text: the context of
     * token ids; Fashion-MNIST: 28×28 pixels) and those of the first tensor,
     * and take the one for which the model's tensors are the index's. */
    int cand[8], nc = 0;
    if (!strcmp(tm->cfg.data_dataset, "synthetic")) cand[nc++] = tm->cfg.data_synthetic_features;
    else if (!strcmp(tm->cfg.data_dataset, "text")) cand[nc++] = tm->cfg.data_context;
    else cand[nc++] = 28 * 28;
    if (m->n_entries > 0) {
        const ckpt_entry *e = &m->entries[0];
        for (int d = 0; d < e->ndim && nc < 8; d++) cand[nc++] = e->shape[d];
    }
    for (int i = 0; i < nc; i++) {
        model mod;
        if (cand[i] < 1 || model_parse(&mod, tm->cfg.model_layers, cand[i]) != PT_OK) continue;
        if (tm->cfg.model_tie_embeddings && model_tie_embeddings(&mod) != PT_OK) {
            model_free(&mod);
            continue;
        }
        if (model_matches(&mod, m)) {
            if (tm->have_model) model_free(&tm->mod);
            tm->mod = mod;
            tm->have_model = tm->matches = 1;
            return;
        }
        if (!tm->have_model) { /* kept to say how it differs */
            tm->mod = mod;
            tm->have_model = 1;
        } else {
            model_free(&mod);
        }
    }
    snprintf(tm->why, sizeof tm->why,
             "the stored config's model.layers = '%.300s' does not describe the tensors of the index",
             tm->cfg.model_layers);
    if (!tm->have_model) {
        model mod;
        if (model_parse(&mod, tm->cfg.model_layers, 1) != PT_OK) /* the spec itself is bad */
            snprintf(tm->why, sizeof tm->why, "the stored config's model.layers: %s", pt_last_error());
        else
            model_free(&mod);
    }
}

void tool_model_free(tool_model *tm)
{
    if (tm->have_model) model_free(&tm->mod);
    for (int i = 0; i < tm->n_kinds; i++) free(tm->kinds[i]);
    free(tm->kinds);
    memset(tm, 0, sizeof *tm);
}

void fmt_layer_range(char *buf, size_t len, int first, int last)
{
    if (last <= first) snprintf(buf, len, "-");
    else if (last == first + 1) snprintf(buf, len, "%d", first);
    else snprintf(buf, len, "%d-%d", first, last - 1);
}

void fmt_layer_kinds(char *buf, size_t len, const tool_model *tm, int first, int last)
{
    size_t pos = 0;
    buf[0] = '\0';
    if (!tm || !tm->have_config) return;
    for (int l = first; l < last && l < tm->n_kinds; l++) {
        int n = snprintf(buf + pos, len - pos, "%s%s", l > first ? ", " : "", tm->kinds[l] ? tm->kinds[l] : "?");
        if (n < 0 || (size_t)n >= len - pos) break;
        pos += (size_t)n;
    }
}

/* ---- statistics ---------------------------------------------------------- */

void stats_compute(const float *x, size_t n, tensor_stats *s)
{
    memset(s, 0, sizeof *s);
    s->n = (int64_t)n;
    double sum = 0.0, sq = 0.0, lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (isnan(v)) {
            s->nan++;
            continue;
        }
        if (isinf(v)) {
            s->inf++;
            continue;
        }
        if (v == 0.0f) s->zeros++;
        s->finite++;
        double d = v;
        sum += d;
        sq += d * d;
        if (d < lo) lo = d;
        if (d > hi) hi = d;
    }
    if (s->finite == 0) { /* nothing to take a minimum or a mean of; the norm of nothing is 0 */
        s->min = s->max = s->mean = s->std = NAN;
        s->l2 = 0.0;
        return;
    }
    s->min = lo;
    s->max = hi;
    s->mean = sum / (double)s->finite;
    double var = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) continue;
        double d = (double)x[i] - s->mean;
        var += d * d;
    }
    s->std = sqrt(var / (double)s->finite);
    s->l2 = sqrt(sq);
}

void stats_json(cJSON *o, const tensor_stats *s)
{
    json_num(o, "min", s->min);
    json_num(o, "max", s->max);
    json_num(o, "mean", s->mean);
    json_num(o, "std", s->std);
    json_num(o, "l2_norm", s->l2);
    json_i64(o, "nan", s->nan);
    json_i64(o, "inf", s->inf);
    json_i64(o, "zeros", s->zeros);
    json_num(o, "zero_fraction", s->n ? (double)s->zeros / (double)s->n : 0.0);
}

/* ---- faults -------------------------------------------------------------- */

void faults_add(fault_list *f, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 16;
        char **grown = realloc(f->msg, sizeof *grown * (size_t)cap);
        if (!grown) return;
        f->msg = grown;
        f->cap = cap;
    }
    char *s = strdup(buf);
    if (s) f->msg[f->n++] = s;
}

void faults_free(fault_list *f)
{
    for (int i = 0; i < f->n; i++) free(f->msg[i]);
    free(f->msg);
    memset(f, 0, sizeof *f);
}
