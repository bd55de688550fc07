/* ckpt_inspect.c — pipetrain-ckpt ls, show and stats. */
#include "ckpt_tool.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---- ls ------------------------------------------------------------------ */

static const char ls_help[] =
    "usage: " TOOL_NAME " ls RUN_DIR | CKPT [--json]\n"
    "\n"
    "ls RUN_DIR lists the checkpoints of a run: name, step, time (the manifest's\n"
    "modification time, ISO 8601, local time), size in bytes and in binary units,\n"
    "number of stages, whether it is complete (manifest and every shard present and\n"
    "readable, layout as the manifest says; no tensor data is read: see verify) and\n"
    "which one 'latest' names. Uncommitted .tmp-step-* directories (a checkpoint being\n"
    "written, or left by a crash) are listed as incomplete.\n"
    "\n"
    "ls CKPT describes one checkpoint (a checkpoint directory with a manifest.h5, or a\n"
    "single-file checkpoint written by export): format, step, seed, the partition\n"
    "(which layers, with their kinds from the stored config, on which stage and in\n"
    "which file) and every tensor with its layer, stage, shape, dtype, elements and\n"
    "bytes (each tensor also has two optimizer moments of the same shape).\n"
    "\n"
    "Exit status: 0; 1 when the path cannot be read, when a listed checkpoint is\n"
    "damaged or when 'latest' names none; 2 for a usage error or when HDF5 cannot\n"
    "lock the files (set HDF5_USE_FILE_LOCKING=FALSE).\n"
    "\n"
    "options:\n"
    "  --json    one JSON document with the same information\n";

typedef struct {
    char name[256];
    long step;
    int tmp; /* an uncommitted .tmp-step-* or a .old-step-* being replaced */
} run_entry;

static int run_entry_cmp(const void *a, const void *b)
{
    const run_entry *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return strcmp(x->name, y->name);
}

static long step_of(const char *name)
{
    const char *p = NULL;
    if (!strncmp(name, "step-", 5)) p = name + 5;
    else if (!strncmp(name, ".tmp-step-", 10) || !strncmp(name, ".old-step-", 10)) p = name + 10;
    if (!p || *p < '0' || *p > '9') return -1;
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    return *end || errno ? -1 : v;
}

/* Bytes of the regular files directly in dir. */
static int64_t dir_bytes(const char *dir)
{
    int64_t total = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char p[2 * CKPT_PATH_MAX + 600];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) total += (int64_t)sb.st_size;
    }
    closedir(d);
    return total;
}

static int ls_run(const char *run, int json)
{
    DIR *d = opendir(run);
    if (!d) {
        tool_error("cannot open run directory %s: %s", run, strerror(errno));
        return TOOL_FAIL;
    }
    run_entry *ents = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        long step = step_of(de->d_name);
        if (step < 0 || strlen(de->d_name) >= sizeof ents[0].name) continue;
        char p[CKPT_PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", run, de->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            run_entry *g = realloc(ents, sizeof *g * (size_t)cap);
            if (!g) break;
            ents = g;
        }
        snprintf(ents[n].name, sizeof ents[n].name, "%s", de->d_name);
        ents[n].step = step;
        ents[n].tmp = de->d_name[0] == '.';
        n++;
    }
    closedir(d);
    qsort(ents, (size_t)n, sizeof *ents, run_entry_cmp);

    /* what latest names */
    char latest[256] = "", lpath[CKPT_PATH_MAX + 16], latest_problem[CKPT_PATH_MAX + 600] = "";
    snprintf(lpath, sizeof lpath, "%s/latest", run);
    struct stat lsb;
    int has_latest = lstat(lpath, &lsb) == 0;
    if (has_latest && ckpt_read_latest(run, latest, sizeof latest) != PT_OK) {
        snprintf(latest_problem, sizeof latest_problem, "%s", pt_last_error());
        latest[0] = '\0';
    } else if (has_latest) {
        int found = 0;
        for (int i = 0; i < n; i++) found |= !ents[i].tmp && !strcmp(ents[i].name, latest);
        if (!found) snprintf(latest_problem, sizeof latest_problem, "'latest' names %s, which is not in %s", latest, run);
    } else if (n > 0) {
        snprintf(latest_problem, sizeof latest_problem, "%s has no 'latest' file", run);
    }
    if (n == 0 && !has_latest) {
        free(ents);
        tool_error("%s is neither a run directory (no 'latest', no step-* checkpoints) nor a checkpoint "
                   "(no manifest.h5)", run);
        return TOOL_FAIL;
    }

    const char *hdr[8] = {"LATEST", "CHECKPOINT", "STEP", "TIME", "BYTES", "SIZE", "STAGES", "STATUS"};
    tool_table *t = table_new(8, hdr, "llrlrrrl");
    cJSON *doc = json ? cJSON_CreateObject() : NULL, *arr = NULL;
    if (doc) {
        cJSON_AddStringToObject(doc, "run", run);
        if (latest[0]) cJSON_AddStringToObject(doc, "latest", latest);
        else cJSON_AddNullToObject(doc, "latest");
        arr = cJSON_AddArrayToObject(doc, "checkpoints");
    }
    int bad = latest_problem[0] != 0;
    for (int i = 0; i < n; i++) {
        run_entry *e = &ents[i];
        char dir[CKPT_PATH_MAX + 300], man[CKPT_PATH_MAX + 320];
        snprintf(dir, sizeof dir, "%s/%s", run, e->name);
        snprintf(man, sizeof man, "%s/manifest.h5", dir);
        struct stat sb;
        int has_manifest = stat(man, &sb) == 0;
        if (!has_manifest && stat(dir, &sb) != 0) memset(&sb, 0, sizeof sb);
        char when[48], bytes[32], human[32], stages[16] = "?", status[1024];
        fmt_time_iso(when, sizeof when, sb.st_mtime);
        int64_t size = dir_bytes(dir);
        snprintf(bytes, sizeof bytes, "%lld", (long long)size);
        fmt_human(human, sizeof human, size);
        int complete = 0, n_stages = -1;
        const char *state = "incomplete";
        if (e->tmp) {
            snprintf(status, sizeof status, "incomplete: %s", e->name[1] == 't'
                         ? "not committed (being written, or left by a crash)"
                         : "an older copy being replaced");
        } else if (!has_manifest) {
            snprintf(status, sizeof status, "incomplete: no manifest.h5");
            bad = 1;
        } else {
            ckpt_manifest m;
            pt_status st = ckpt_read_manifest(dir, &m);
            if (tool_lock_error(st)) { /* the file system, not the checkpoint: say so, list nothing */
                table_free(t);
                cJSON_Delete(doc);
                free(ents);
                return TOOL_ENV;
            }
            if (st != PT_OK) {
                snprintf(status, sizeof status, "damaged: %s", pt_last_error());
                state = "damaged";
                bad = 1;
            } else {
                n_stages = m.n_stages;
                snprintf(stages, sizeof stages, "%d", m.n_stages);
                fault_list f = {0};
                tool_structure s;
                check_structure(dir, &m, NULL, &s, &f);
                if (f.n) {
                    snprintf(status, sizeof status, "damaged: %s%s", f.msg[0], f.n > 1 ? " (and more: see verify)" : "");
                    state = "damaged";
                    bad = 1;
                } else {
                    snprintf(status, sizeof status, "complete");
                    state = "complete";
                    complete = 1;
                }
                structure_free(&s);
                faults_free(&f);
                ckpt_manifest_free(&m);
            }
        }
        int is_latest = !e->tmp && latest[0] && !strcmp(e->name, latest);
        char step[32];
        snprintf(step, sizeof step, "%ld", e->step);
        const char *cells[8] = {is_latest ? "*" : "", e->name, step, when, bytes, human, stages, status};
        table_add(t, cells);
        if (doc) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", e->name);
            cJSON_AddStringToObject(o, "path", dir);
            cJSON_AddNumberToObject(o, "step", (double)e->step);
            cJSON_AddStringToObject(o, "time", when);
            json_i64(o, "mtime", (int64_t)sb.st_mtime);
            json_i64(o, "bytes", size);
            cJSON_AddStringToObject(o, "size", human);
            if (n_stages > 0) cJSON_AddNumberToObject(o, "stages", n_stages);
            else cJSON_AddNullToObject(o, "stages");
            cJSON_AddBoolToObject(o, "complete", complete);
            cJSON_AddStringToObject(o, "status", state);
            if (!complete) cJSON_AddStringToObject(o, "problem", strchr(status, ':') ? strchr(status, ':') + 2 : status);
            cJSON_AddBoolToObject(o, "latest", is_latest);
            cJSON_AddItemToArray(arr, o);
        }
    }
    int rc = TOOL_OK;
    if (doc) {
        if (latest_problem[0]) cJSON_AddStringToObject(doc, "problem", latest_problem);
        rc = json_print(doc);
    } else {
        printf("run     %s\n", run);
        printf("latest  %s\n\n", latest[0] ? latest : "(none)");
        if (n) table_print(t, stdout);
        else printf("(no checkpoints)\n");
    }
    if (latest_problem[0]) tool_error("%s", latest_problem);
    table_free(t);
    free(ents);
    if (rc) return rc;
    return bad ? TOOL_FAIL : TOOL_OK;
}

static int ls_ckpt(const char *path, int json)
{
    ckpt_manifest m;
    pt_status st = ckpt_read_manifest(path, &m);
    if (st != PT_OK) {
        tool_error("%s", pt_last_error());
        return st == PT_ERR_LOCK ? TOOL_ENV : TOOL_FAIL;
    }
    tool_model tm;
    tool_model_load(&m, &tm);
    fault_list f = {0};
    tool_structure s;
    check_structure(path, &m, &tm, &s, &f);

    int64_t params = 0;
    for (int k = 0; k < m.n_entries; k++) params += m.entries[k].numel;
    int64_t pbytes = params * (int64_t)sizeof(float);
    int single = ckpt_is_single(path);

    /* the partition */
    const char *phdr[6] = {"STAGE", "LAYERS", "MODEL", "TENSORS", "PARAMETERS", "FILE"};
    tool_table *pt = table_new(6, phdr, "rllrrl");
    cJSON *doc = json ? cJSON_CreateObject() : NULL, *jst = NULL, *jt = NULL;
    if (doc) {
        cJSON_AddStringToObject(doc, "checkpoint", path);
        cJSON_AddBoolToObject(doc, "single_file", single);
        cJSON_AddNumberToObject(doc, "format_version", m.format_version);
        cJSON_AddNumberToObject(doc, "step", (double)m.step);
        json_u64(doc, "seed", m.seed);
        cJSON_AddNumberToObject(doc, "n_stages", m.n_stages);
        cJSON_AddNumberToObject(doc, "data_parallel", m.data_parallel);
        cJSON_AddNumberToObject(doc, "n_layers", m.n_layers);
        cJSON *cuts = cJSON_AddArrayToObject(doc, "cuts");
        for (int st = 0; st <= m.n_stages; st++) cJSON_AddItemToArray(cuts, cJSON_CreateNumber(m.cuts[st]));
        cJSON_AddNumberToObject(doc, "n_tensors", m.n_entries);
        cJSON_AddStringToObject(doc, "data_fingerprint", m.data_fingerprint);
        cJSON_AddStringToObject(doc, "history", m.history ? m.history : "");
        json_i64(doc, "parameters", params);
        json_i64(doc, "parameter_bytes", pbytes);
        json_i64(doc, "bytes_with_moments", pbytes * CKPT_ARRAYS);
        json_i64(doc, "file_bytes", s.bytes);
        jst = cJSON_AddArrayToObject(doc, "stages");
        jt = cJSON_AddArrayToObject(doc, "tensors");
    }
    for (int st = 0; st < m.n_stages; st++) {
        int nt = 0;
        int64_t np = 0;
        for (int k = 0; k < m.n_entries; k++)
            if (m.entries[k].shard == st) {
                nt++;
                np += m.entries[k].numel;
            }
        char sn[16], range[32], kinds[1024], ntxt[16], nptxt[32], file[CKPT_PATH_MAX];
        snprintf(sn, sizeof sn, "%d", st);
        fmt_layer_range(range, sizeof range, m.cuts[st], m.cuts[st + 1]);
        fmt_layer_kinds(kinds, sizeof kinds, &tm, m.cuts[st], m.cuts[st + 1]);
        snprintf(ntxt, sizeof ntxt, "%d", nt);
        snprintf(nptxt, sizeof nptxt, "%lld", (long long)np);
        if (ckpt_shard_path(path, st, file, sizeof file) != PT_OK) snprintf(file, sizeof file, "?");
        const char *cells[6] = {sn, range, kinds, ntxt, nptxt, base_name(file)};
        table_add(pt, cells);
        if (doc) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "stage", st);
            cJSON_AddNumberToObject(o, "first_layer", m.cuts[st]);
            cJSON_AddNumberToObject(o, "last_layer", m.cuts[st + 1] - 1);
            cJSON *ls = cJSON_AddArrayToObject(o, "layers");
            for (int l = m.cuts[st]; l < m.cuts[st + 1]; l++) {
                cJSON *lo = cJSON_CreateObject();
                cJSON_AddNumberToObject(lo, "layer", l);
                if (tm.have_config && l < tm.n_kinds && tm.kinds[l]) cJSON_AddStringToObject(lo, "kind", tm.kinds[l]);
                else cJSON_AddNullToObject(lo, "kind");
                cJSON_AddItemToArray(ls, lo);
            }
            cJSON_AddNumberToObject(o, "tensors", nt);
            json_i64(o, "parameters", np);
            cJSON_AddStringToObject(o, "file", base_name(file));
            cJSON_AddItemToArray(jst, o);
        }
    }

    /* the tensors */
    const char *thdr[7] = {"TENSOR", "LAYER", "STAGE", "SHAPE", "DTYPE", "ELEMENTS", "BYTES"};
    tool_table *tt = table_new(7, thdr, "lrrllrl");
    for (int k = 0; k < m.n_entries; k++) {
        const ckpt_entry *e = &m.entries[k];
        const char *dtype = "?";
        int64_t storage = -1;
        if (e->shard < s.n_stages && s.scanned && s.scanned[e->shard]) {
            const ckpt_shard_info *in = &s.shards[e->shard];
            for (int i = 0; i < in->n_datasets; i++)
                if (in->datasets[i].array == CKPT_PARAM && !strncmp(in->datasets[i].name, e->name, CKPT_NAME_MAX)) {
                    dtype = in->datasets[i].dtype;
                    storage = in->datasets[i].storage;
                }
        }
        char layer[16], stage[16], shape[64], numel[32], bytes[64];
        snprintf(layer, sizeof layer, "%d", e->layer);
        snprintf(stage, sizeof stage, "%d", e->shard);
        fmt_entry_shape(shape, sizeof shape, e);
        snprintf(numel, sizeof numel, "%lld", (long long)e->numel);
        fmt_bytes(bytes, sizeof bytes, e->numel * (int64_t)sizeof(float));
        const char *cells[7] = {e->name, layer, stage, shape, dtype, numel, bytes};
        table_add(tt, cells);
        if (doc) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", e->name);
            cJSON_AddNumberToObject(o, "layer", e->layer);
            cJSON_AddNumberToObject(o, "stage", e->shard);
            cJSON_AddItemToObject(o, "shape", json_entry_shape(e));
            if (strcmp(dtype, "?")) cJSON_AddStringToObject(o, "dtype", dtype);
            else cJSON_AddNullToObject(o, "dtype");
            json_i64(o, "numel", e->numel);
            json_i64(o, "bytes", e->numel * (int64_t)sizeof(float));
            if (storage >= 0) json_i64(o, "storage_bytes", storage);
            cJSON *crc = cJSON_AddArrayToObject(o, "crc32");
            for (int a = 0; a < CKPT_ARRAYS; a++) {
                char hex[16];
                snprintf(hex, sizeof hex, "0x%08x", (unsigned)e->crc[a]);
                cJSON_AddItemToArray(crc, cJSON_CreateString(hex));
            }
            cJSON_AddItemToArray(jt, o);
        }
    }

    /* tied copies of the model: stored once, as their source */
    char tied[1024] = "";
    int n_mt = 0;
    model_tensor *mt = tm.have_model ? tool_model_tensors(&tm.mod, &n_mt) : NULL;
    cJSON *jtied = doc ? cJSON_AddArrayToObject(doc, "tied") : NULL;
    for (int j = 0, pos = 0; mt && j < n_mt; j++) {
        if (mt[j].tied_to < 0) continue;
        int stored = ckpt_find(&m, mt[j].name) >= 0;
        int w = snprintf(tied + pos, sizeof tied - (size_t)pos, "%s%s is a copy of %s (%s)", pos ? "; " : "",
                         mt[j].name, mt[mt[j].tied_to].name, stored ? "stored too" : "stored once, as the source");
        if (w > 0 && (size_t)(pos + w) < sizeof tied) pos += w;
        if (jtied) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "copy", mt[j].name);
            cJSON_AddStringToObject(o, "source", mt[mt[j].tied_to].name);
            cJSON_AddBoolToObject(o, "stored", stored);
            cJSON_AddItemToArray(jtied, o);
        }
    }
    free(mt);

    int rc = TOOL_OK;
    if (doc) {
        cJSON *fl = cJSON_AddArrayToObject(doc, "faults");
        for (int i = 0; i < f.n; i++) cJSON_AddItemToArray(fl, cJSON_CreateString(f.msg[i]));
        rc = json_print(doc);
    } else {
        char h1[32], h2[32], h3[32], b1[64], b2[64], b3[64];
        fmt_human(h1, sizeof h1, pbytes);
        fmt_human(h2, sizeof h2, pbytes * CKPT_ARRAYS);
        fmt_human(h3, sizeof h3, s.bytes);
        snprintf(b1, sizeof b1, "%lld bytes (%s)", (long long)pbytes, h1);
        snprintf(b2, sizeof b2, "%lld bytes (%s)", (long long)pbytes * CKPT_ARRAYS, h2);
        snprintf(b3, sizeof b3, "%lld bytes (%s)", (long long)s.bytes, h3);
        printf("checkpoint  %s%s\n", path, single ? " (single file)" : "");
        printf("format      version %d\n", m.format_version);
        printf("step        %ld\n", m.step);
        printf("seed        %llu\n", (unsigned long long)m.seed);
        printf("stages      %d (data parallel %d)\n", m.n_stages, m.data_parallel);
        printf("layers      %d\n", m.n_layers);
        printf("tensors     %d: %lld parameters, %s; with the optimizer moments %s\n", m.n_entries,
               (long long)params, b1, b2);
        printf("files       %d, %s\n", single ? 1 : m.n_stages + 1, b3);
        if (!tm.have_config) printf("model       unknown: %s\n", tm.why);
        if (tied[0]) printf("tied        %s\n", tied);
        printf("data        %s\n", m.data_fingerprint[0] ? m.data_fingerprint : "(fingerprint not recorded)");
        /* what changed when the run resumed: one "step N: key = a -> b" line each */
        const char *h = m.history && m.history[0] ? m.history : NULL;
        printf("history     %s", h ? "" : "none (every step ran with the stored config)\n");
        for (int first = 1; h && *h; first = 0) {
            size_t n = strcspn(h, "\n");
            printf("%s%.*s\n", first ? "" : "            ", (int)n, h);
            h += n + (h[n] == '\n');
        }
        printf("\n");
        table_print(pt, stdout);
        printf("\n");
        table_print(tt, stdout);
    }
    for (int i = 0; i < f.n; i++) tool_error("%s", f.msg[i]);
    if (f.n) tool_error("ls: %d problem%s in %s (run '" TOOL_NAME " verify' for a full check)", f.n, f.n > 1 ? "s" : "", path);
    int bad = f.n > 0;
    table_free(pt);
    table_free(tt);
    structure_free(&s);
    faults_free(&f);
    tool_model_free(&tm);
    ckpt_manifest_free(&m);
    if (rc) return rc;
    return bad ? TOOL_FAIL : TOOL_OK;
}

int cmd_ls(int argc, char **argv)
{
    int json = 0;
    const char *pos[1];
    int np = 0;
    tool_opt opts[] = {{"--json", NULL, &json}};
    int rc = tool_parse(argc, argv, ls_help, opts, 1, pos, 1, 1, &np);
    if (rc) return rc < 0 ? TOOL_OK : rc;
    char p[CKPT_PATH_MAX];
    int n = snprintf(p, sizeof p, "%s", pos[0]);
    if (n < 0 || (size_t)n >= sizeof p) {
        tool_error("path '%.100s...' is too long", pos[0]);
        return TOOL_FAIL;
    }
    while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
    struct stat sb;
    if (stat(p, &sb) != 0) {
        tool_error("%s: %s", p, strerror(errno));
        return TOOL_FAIL;
    }
    if (S_ISREG(sb.st_mode)) {
        char dir[CKPT_PATH_MAX];
        pt_status st = ckpt_resolve(p, dir, sizeof dir);
        if (st != PT_OK) { /* says what the file is instead */
            tool_error("%s", pt_last_error());
            return st == PT_ERR_LOCK ? TOOL_ENV : TOOL_FAIL;
        }
        return ls_ckpt(p, json);
    }
    char man[CKPT_PATH_MAX + 16];
    snprintf(man, sizeof man, "%s/manifest.h5", p);
    if (stat(man, &sb) == 0) return ls_ckpt(p, json);
    return ls_run(p, json);
}

/* ---- show ---------------------------------------------------------------- */

static const char show_help[] =
    "usage: " TOOL_NAME " show CKPT TENSOR [--values N] [--array A] [--json]\n"
    "\n"
    "Statistics of one tensor, by its global name (as 'ls CKPT' lists them, e.g.\n"
    "layers.0.w): shape, dtype, elements, bytes, crc32, min, max, mean, standard\n"
    "deviation (population), L2 norm, the number of NaN and of infinite values and\n"
    "the fraction of zeros. Min, max, mean, std and norm are over the finite values;\n"
    "they are computed in double precision in element order. The data are read in\n"
    "full and their crc32 checked.\n"
    "\n"
    "CKPT is a run directory (its latest checkpoint), a checkpoint directory or a\n"
    "single-file checkpoint. Exit status: 0; 1 when the tensor is not there or cannot\n"
    "be read; 2 for a usage error.\n"
    "\n"
    "options:\n"
    "  --values N  also print the first N values (row-major, exact: %.9g)\n"
    "  --array A   parameter (default), moment1 or moment2 (the optimizer moments)\n"
    "  --json      one JSON document with the same information\n";

/* Suggests names close to a missing one: those sharing its layer, or all (up to 12). */
static void suggest(const ckpt_manifest *m, const char *name, char *buf, size_t len)
{
    size_t pos = 0;
    int shown = 0;
    char prefix[CKPT_NAME_MAX];
    const char *dot = !strncmp(name, "layers.", 7) ? strchr(name + 7, '.') : NULL;
    snprintf(prefix, sizeof prefix, "%.*s", dot ? (int)(dot - name + 1) : 0, name);
    for (int pass = 0; pass < 2 && !shown; pass++)
        for (int k = 0; k < m->n_entries && shown < 12; k++) {
            if (pass == 0 && (!prefix[0] || strncmp(m->entries[k].name, prefix, strlen(prefix)))) continue;
            int n = snprintf(buf + pos, len - pos, "%s%s", shown ? ", " : "", m->entries[k].name);
            if (n < 0 || (size_t)n >= len - pos) return;
            pos += (size_t)n;
            shown++;
        }
    if (shown == 12 && m->n_entries > 12 && len - pos > 8) snprintf(buf + pos, len - pos, ", ...");
}

int cmd_show(int argc, char **argv)
{
    int json = 0;
    const char *values_text = NULL, *array_text = NULL;
    const char *pos[2];
    int np = 0;
    tool_opt opts[] = {{"--json", NULL, &json}, {"--values", &values_text, NULL}, {"--array", &array_text, NULL}};
    int rc = tool_parse(argc, argv, show_help, opts, 3, pos, 2, 2, &np);
    if (rc) return rc < 0 ? TOOL_OK : rc;
    long nv = 0;
    if (values_text && (rc = tool_parse_long("show", "--values", values_text, 0, 1L << 40, &nv))) return rc;
    int a = CKPT_PARAM;
    if (array_text) {
        a = array_from_name(array_text);
        if (a < 0 || a == CKPT_ARRAYS)
            return tool_usage("show", "--array '%s': expected parameter, moment1 or moment2", array_text);
    }
    tool_ckpt c;
    if ((rc = tool_open(&c, pos[0]))) return rc;
    int k = ckpt_find(&c.m, pos[1]);
    if (k < 0) {
        char names[1024] = "";
        suggest(&c.m, pos[1], names, sizeof names);
        tool_error("%s has no tensor '%s' (it has %s)", c.path, pos[1], names[0] ? names : "none");
        tool_close(&c);
        return TOOL_FAIL;
    }
    const ckpt_entry *e = &c.m.entries[k];
    float *x = tool_read(&c, k, a);
    if (!x) {
        tool_error("%s", pt_last_error());
        tool_close(&c);
        return TOOL_FAIL;
    }
    tensor_stats s;
    stats_compute(x, (size_t)e->numel, &s);
    tool_model tm;
    tool_model_load(&c.m, &tm);
    char file[CKPT_PATH_MAX], shape[64], bytes[64], kind[512] = "";
    if (ckpt_shard_path(c.path, e->shard, file, sizeof file) != PT_OK) snprintf(file, sizeof file, "?");
    fmt_entry_shape(shape, sizeof shape, e);
    fmt_bytes(bytes, sizeof bytes, e->numel * (int64_t)sizeof(float));
    fmt_layer_kinds(kind, sizeof kind, &tm, e->layer, e->layer + 1);
    if (nv > e->numel) nv = (long)e->numel;
    if (json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "checkpoint", c.path);
        cJSON_AddStringToObject(doc, "name", e->name);
        cJSON_AddStringToObject(doc, "array", array_label(a));
        cJSON_AddNumberToObject(doc, "layer", e->layer);
        if (kind[0]) cJSON_AddStringToObject(doc, "kind", kind);
        cJSON_AddNumberToObject(doc, "stage", e->shard);
        cJSON_AddStringToObject(doc, "file", base_name(file));
        cJSON_AddItemToObject(doc, "shape", json_entry_shape(e));
        cJSON_AddStringToObject(doc, "dtype", "float32");
        json_i64(doc, "numel", e->numel);
        json_i64(doc, "bytes", e->numel * (int64_t)sizeof(float));
        char hex[16];
        snprintf(hex, sizeof hex, "0x%08x", (unsigned)e->crc[a]);
        cJSON_AddStringToObject(doc, "crc32", hex);
        stats_json(doc, &s);
        if (values_text) {
            cJSON *v = cJSON_AddArrayToObject(doc, "values");
            for (long i = 0; i < nv; i++) {
                if (isfinite(x[i])) {
                    char num[32];
                    snprintf(num, sizeof num, "%.9g", (double)x[i]);
                    cJSON_AddItemToArray(v, cJSON_CreateRaw(num));
                } else {
                    cJSON_AddItemToArray(v, cJSON_CreateNull());
                }
            }
        }
        rc = json_print(doc);
    } else {
        char v[10][64];
        fmt_num(v[0], sizeof v[0], s.min);
        fmt_num(v[1], sizeof v[1], s.max);
        fmt_num(v[2], sizeof v[2], s.mean);
        fmt_num(v[3], sizeof v[3], s.std);
        fmt_num(v[4], sizeof v[4], s.l2);
        fmt_num(v[5], sizeof v[5], s.n ? (double)s.zeros / (double)s.n : 0.0);
        printf("tensor      %s\n", e->name);
        printf("array       %s\n", array_label(a));
        printf("checkpoint  %s\n", c.path);
        printf("layer       %d%s%s%s\n", e->layer, kind[0] ? " (" : "", kind, kind[0] ? ")" : "");
        printf("stage       %d (%s)\n", e->shard, base_name(file));
        printf("shape       %s\n", shape);
        printf("dtype       float32\n");
        printf("elements    %lld\n", (long long)e->numel);
        printf("bytes       %s\n", bytes);
        printf("crc32       0x%08x\n", (unsigned)e->crc[a]);
        printf("min         %s\n", v[0]);
        printf("max         %s\n", v[1]);
        printf("mean        %s\n", v[2]);
        printf("std         %s\n", v[3]);
        printf("l2 norm     %s\n", v[4]);
        printf("nan         %lld\n", (long long)s.nan);
        printf("inf         %lld\n", (long long)s.inf);
        printf("zeros       %lld (fraction %s)\n", (long long)s.zeros, v[5]);
        if (values_text) {
            printf("\nfirst %ld values (row-major):\n", nv);
            int cols = e->ndim == 2 ? e->shape[1] : 1;
            for (long i = 0; i < nv; i++) {
                char idx[48];
                if (e->ndim == 2) snprintf(idx, sizeof idx, "[%ld, %ld]", i / cols, i % cols);
                else snprintf(idx, sizeof idx, "[%ld]", i);
                char num[32];
                if (isnan(x[i])) snprintf(num, sizeof num, "nan");
                else snprintf(num, sizeof num, "%.9g", (double)x[i]);
                printf("  %-12s %s\n", idx, num);
            }
        }
    }
    free(x);
    tool_model_free(&tm);
    tool_close(&c);
    return rc;
}

/* ---- stats --------------------------------------------------------------- */

static const char stats_help[] =
    "usage: " TOOL_NAME " stats CKPT [--array A] [--json]\n"
    "\n"
    "The statistics of 'show' for every tensor, as a table: min, max, mean, standard\n"
    "deviation and L2 norm (over the finite values), the number of NaN and of\n"
    "infinite values and the fraction of zeros. Every tensor is read in full and its\n"
    "crc32 checked; one that cannot be read is reported and the others still listed.\n"
    "\n"
    "CKPT is a run directory (its latest checkpoint), a checkpoint directory or a\n"
    "single-file checkpoint. Exit status: 0; 1 when a tensor cannot be read; 2 for a\n"
    "usage error.\n"
    "\n"
    "options:\n"
    "  --array A  parameter (default), moment1, moment2, or all (one row per array)\n"
    "  --json     one JSON document with the same information\n";

int cmd_stats(int argc, char **argv)
{
    int json = 0;
    const char *array_text = NULL;
    const char *pos[1];
    int np = 0;
    tool_opt opts[] = {{"--json", NULL, &json}, {"--array", &array_text, NULL}};
    int rc = tool_parse(argc, argv, stats_help, opts, 2, pos, 1, 1, &np);
    if (rc) return rc < 0 ? TOOL_OK : rc;
    int sel = CKPT_PARAM;
    if (array_text && (sel = array_from_name(array_text)) < 0)
        return tool_usage("stats", "--array '%s': expected parameter, moment1, moment2 or all", array_text);
    tool_ckpt c;
    if ((rc = tool_open(&c, pos[0]))) return rc;
    const char *hdr[10] = {"TENSOR", "SHAPE", "MIN", "MAX", "MEAN", "STD", "L2 NORM", "NAN", "INF", "ZEROS"};
    tool_table *t = table_new(10, hdr, "llrrrrrrrr");
    cJSON *doc = json ? cJSON_CreateObject() : NULL, *jt = NULL;
    if (doc) {
        cJSON_AddStringToObject(doc, "checkpoint", c.path);
        cJSON_AddNumberToObject(doc, "step", (double)c.m.step);
        jt = cJSON_AddArrayToObject(doc, "tensors");
    }
    int failed = 0;
    for (int k = 0; k < c.m.n_entries; k++) {
        const ckpt_entry *e = &c.m.entries[k];
        for (int a = 0; a < CKPT_ARRAYS; a++) {
            if (sel != CKPT_ARRAYS && a != sel) continue;
            char label[CKPT_NAME_MAX + 16], shape[64], v[9][64];
            fmt_label(label, sizeof label, e->name, a);
            fmt_entry_shape(shape, sizeof shape, e);
            float *x = tool_read(&c, k, a);
            cJSON *o = NULL;
            if (doc) {
                o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "name", e->name);
                cJSON_AddStringToObject(o, "array", array_label(a));
                cJSON_AddItemToObject(o, "shape", json_entry_shape(e));
                cJSON_AddItemToArray(jt, o);
            }
            if (!x) {
                tool_error("%s", pt_last_error());
                failed++;
                const char *cells[10] = {label, shape, "unreadable", "", "", "", "", "", "", ""};
                table_add(t, cells);
                if (o) cJSON_AddStringToObject(o, "error", pt_last_error());
                continue;
            }
            tensor_stats s;
            stats_compute(x, (size_t)e->numel, &s);
            free(x);
            fmt_num(v[0], sizeof v[0], s.min);
            fmt_num(v[1], sizeof v[1], s.max);
            fmt_num(v[2], sizeof v[2], s.mean);
            fmt_num(v[3], sizeof v[3], s.std);
            fmt_num(v[4], sizeof v[4], s.l2);
            snprintf(v[5], sizeof v[5], "%lld", (long long)s.nan);
            snprintf(v[6], sizeof v[6], "%lld", (long long)s.inf);
            fmt_num(v[7], sizeof v[7], s.n ? (double)s.zeros / (double)s.n : 0.0);
            const char *cells[10] = {label, shape, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
            table_add(t, cells);
            if (o) stats_json(o, &s);
        }
    }
    if (doc) {
        cJSON_AddBoolToObject(doc, "ok", !failed);
        rc = json_print(doc);
    } else {
        printf("checkpoint  %s (step %ld)\n", c.path, c.m.step);
        printf("min, max, mean, std and l2 norm are over the finite values; zeros is a fraction\n\n");
        table_print(t, stdout);
    }
    if (failed) tool_error("stats: %d array%s of %s could not be read", failed, failed > 1 ? "s" : "", c.path);
    table_free(t);
    tool_close(&c);
    if (rc) return rc;
    return failed ? TOOL_FAIL : TOOL_OK;
}

/* ---- config ---------------------------------------------------------------- */

static const char config_help[] =
    "usage: " TOOL_NAME " config CKPT [--json]\n"
    "\n"
    "Prints the config a checkpoint's run trained with, as the INI file pipetrain\n"
    "reads (every key, canonical values), followed by the history of what changed\n"
    "when the run resumed, as comments. Save it to rerun or to resume with the same\n"
    "keys: " TOOL_NAME " config runs/x > x.ini. With --json: {\"config\", \"history\"}.\n";

int cmd_config(int argc, char **argv)
{
    int json = 0;
    const char *pos[1];
    int np = 0;
    tool_opt opts[] = {{"--json", NULL, &json}};
    int rc = tool_parse(argc, argv, config_help, opts, 1, pos, 1, 1, &np);
    if (rc) return rc < 0 ? TOOL_OK : rc;
    char dir[CKPT_PATH_MAX];
    ckpt_manifest m;
    memset(&m, 0, sizeof m);
    pt_status st = ckpt_resolve(pos[0], dir, sizeof dir);
    if (!st) st = ckpt_read_manifest(dir, &m);
    if (st) {
        tool_error("%s", pt_last_error());
        ckpt_manifest_free(&m);
        return st == PT_ERR_LOCK ? TOOL_ENV : TOOL_FAIL;
    }
    const char *h = m.history ? m.history : "";
    if (json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "checkpoint", dir);
        cJSON_AddStringToObject(doc, "config", m.config_text ? m.config_text : "");
        cJSON_AddStringToObject(doc, "history", h);
        rc = json_print(doc);
    } else {
        printf("; the config of %s (step %ld)\n", dir, m.step);
        fputs(m.config_text ? m.config_text : "", stdout);
        if (*h) printf("\n; history: changed when the run resumed\n");
        while (*h) {
            size_t n = strcspn(h, "\n");
            printf("; %.*s\n", (int)n, h);
            h += n + (h[n] == '\n');
        }
        rc = TOOL_OK;
    }
    ckpt_manifest_free(&m);
    return rc;
}
