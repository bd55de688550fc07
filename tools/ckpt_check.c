/* ckpt_check.c — pipetrain-ckpt verify and diff, and the structural check
 * of a checkpoint's files that verify and ls share. */
#include "ckpt_tool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- structure ----------------------------------------------------------- */

static int64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

static const ckpt_dataset *find_dataset(const ckpt_shard_info *in, const char *name, int a)
{
    for (int i = 0; i < in->n_datasets; i++)
        if (in->datasets[i].array == a && !strncmp(in->datasets[i].name, name, CKPT_NAME_MAX))
            return &in->datasets[i];
    return NULL;
}

static void dataset_path(char *buf, size_t len, const ckpt_entry *e, int a)
{
    const char *param = strchr(e->name + 7, '.'); /* "layers.<l>.<param>": checked by the reader */
    param = param ? param + 1 : e->name;
    if (a == CKPT_PARAM) snprintf(buf, len, "/layers/%d/%s", e->layer, param);
    else snprintf(buf, len, "/layers/%d/%s/%s", e->layer, array_label(a), param);
}

/* The shard attributes against the manifest. */
static void check_shard_attrs(const char *path, const ckpt_shard_info *in, const ckpt_manifest *m, int s,
                              fault_list *f)
{
    if (!ckpt_format_supported(in->format_version)) {
        if (in->format_version < 0) faults_add(f, "%s lacks the attribute 'format_version'", path);
        else
            faults_add(f, "%s: format version %d, this pipetrain reads version %d or %d", path, in->format_version,
                       CKPT_FORMAT_VERSION_OLDEST, CKPT_FORMAT_VERSION);
    }
    if (in->stage != s) faults_add(f, "%s: the file says it is the shard of stage %d, expected stage %d", path, in->stage, s);
    if (in->n_stages != m->n_stages)
        faults_add(f, "%s: attribute n_stages is %d, the manifest says %d", path, in->n_stages, m->n_stages);
    if (in->first_layer != m->cuts[s] || in->last_layer != m->cuts[s + 1])
        faults_add(f, "%s: the file holds layers [%d, %d), the manifest's cuts say [%d, %d)", path, in->first_layer,
                   in->last_layer, m->cuts[s], m->cuts[s + 1]);
    if (!in->has_step || in->step != m->step)
        faults_add(f, "%s: step %ld, the manifest says %ld", path, in->has_step ? in->step : -1L, m->step);
    if (!in->has_seed || in->seed != m->seed)
        faults_add(f, "%s: seed %llu, the manifest says %llu", path, (unsigned long long)in->seed,
                   (unsigned long long)m->seed);
    if (!in->has_layers && m->cuts[s + 1] > m->cuts[s]) {
        int holds = 0;
        for (int k = 0; k < m->n_entries; k++) holds += m->entries[k].shard == s;
        if (holds) faults_add(f, "%s lacks the group /layers (the manifest puts %d tensors in it)", path, holds);
    }
    for (int i = 0; i < in->n_other && i < CKPT_SCAN_OTHER_MAX; i++)
        faults_add(f, "%s: unexpected object %s", path, in->other[i]);
    if (in->n_other > CKPT_SCAN_OTHER_MAX)
        faults_add(f, "%s: %d more unexpected objects under /layers", path, in->n_other - CKPT_SCAN_OTHER_MAX);
}

void check_structure(const char *ckpt, const ckpt_manifest *m, const tool_model *tm, tool_structure *s,
                     fault_list *f)
{
    memset(s, 0, sizeof *s);
    s->n_stages = m->n_stages;
    s->shards = calloc((size_t)m->n_stages, sizeof *s->shards);
    s->scanned = calloc((size_t)m->n_stages, sizeof *s->scanned);
    s->array_state = calloc((size_t)m->n_entries * CKPT_ARRAYS + 1, 1);
    if (!s->shards || !s->scanned || !s->array_state) {
        faults_add(f, "%s: out of memory", ckpt);
        return;
    }
    char path[CKPT_PATH_MAX];
    int single = ckpt_is_single(ckpt);
    if (ckpt_manifest_path(ckpt, path, sizeof path) == PT_OK) s->bytes += file_size(path);
    int start = f->n;

    /* every shard: readable, with the attributes the manifest implies */
    for (int st = 0; st < m->n_stages; st++) {
        if (ckpt_shard_path(ckpt, st, path, sizeof path) != PT_OK) {
            faults_add(f, "%s", pt_last_error());
            continue;
        }
        if (!single) s->bytes += file_size(path);
        if (ckpt_scan_shard(path, &s->shards[st]) != PT_OK) {
            int holds = 0;
            for (int k = 0; k < m->n_entries; k++) holds += m->entries[k].shard == st;
            faults_add(f, "%s (it holds %d tensors of layers %d to %d)", pt_last_error(), holds, m->cuts[st],
                       m->cuts[st + 1] - 1);
            continue;
        }
        s->scanned[st] = 1;
        check_shard_attrs(path, &s->shards[st], m, st, f);
    }
    s->faults[0] = f->n - start;
    start = f->n;

    /* every array of every index entry, in the shard its layer belongs to */
    for (int k = 0; k < m->n_entries; k++) {
        const ckpt_entry *e = &m->entries[k];
        for (int j = 0; j < k; j++)
            if (!strncmp(m->entries[j].name, e->name, CKPT_NAME_MAX) && m->entries[j].shard == e->shard)
                faults_add(f, "%s: the index lists tensor %s twice in shard %d", ckpt, e->name, e->shard);
        for (int a = 0; a < CKPT_ARRAYS; a++) {
            unsigned char *state = &s->array_state[(size_t)k * CKPT_ARRAYS + (size_t)a];
            if (!s->scanned[e->shard]) {
                *state = ARRAY_SHARD_UNREADABLE;
                continue;
            }
            if (ckpt_shard_path(ckpt, e->shard, path, sizeof path) != PT_OK) continue;
            const ckpt_dataset *d = find_dataset(&s->shards[e->shard], e->name, a);
            char label[CKPT_NAME_MAX + 16], dpath[CKPT_NAME_MAX + 48], fs[64], ms[64];
            fmt_label(label, sizeof label, e->name, a);
            dataset_path(dpath, sizeof dpath, e, a);
            if (!d) {
                faults_add(f, "%s: tensor %s: dataset %s is missing", path, label, dpath);
                *state = ARRAY_BAD;
                continue;
            }
            int64_t want[2] = {e->shape[0], e->ndim == 2 ? e->shape[1] : 0};
            if (d->ndim != e->ndim || d->dims[0] != want[0] || (e->ndim == 2 && d->dims[1] != want[1])) {
                fmt_shape(fs, sizeof fs, d->ndim, d->dims);
                fmt_shape(ms, sizeof ms, e->ndim, want);
                faults_add(f, "%s: tensor %s: shape %s in the file, the manifest says %s", path, label, fs, ms);
                *state = ARRAY_BAD;
            }
            if (strcmp(d->dtype, "float32") != 0) {
                faults_add(f, "%s: tensor %s: dtype %s, expected float32", path, label, d->dtype);
                *state = ARRAY_BAD;
            }
            if (!d->has_crc)
                faults_add(f, "%s: tensor %s: dataset %s has no crc32 attribute", path, label, dpath);
            else if (d->crc != e->crc[a])
                faults_add(f, "%s: tensor %s: crc32 attribute 0x%08x, the manifest says 0x%08x", path, label,
                           (unsigned)d->crc, (unsigned)e->crc[a]);
        }
    }

    /* nothing stored where the manifest does not put it: each layer once */
    for (int st = 0; st < m->n_stages; st++) {
        if (!s->scanned[st] || ckpt_shard_path(ckpt, st, path, sizeof path) != PT_OK) continue;
        const ckpt_shard_info *in = &s->shards[st];
        for (int i = 0; i < in->n_datasets; i++) {
            const ckpt_dataset *d = &in->datasets[i];
            int dup = 0;
            for (int j = 0; j < i && !dup; j++) dup = !strncmp(in->datasets[j].name, d->name, CKPT_NAME_MAX);
            if (dup) continue; /* one message per tensor, not per array */
            int owner = -1, here = 0;
            for (int k = 0; k < m->n_entries; k++)
                if (!strncmp(m->entries[k].name, d->name, CKPT_NAME_MAX)) {
                    if (m->entries[k].shard == st) here = 1;
                    else owner = m->entries[k].shard;
                }
            if (here) continue;
            if (owner >= 0)
                faults_add(f, "%s: tensor %s of layer %d is stored here too, but the manifest puts it in shard %d: "
                           "every layer must be present exactly once", path, d->name, d->layer, owner);
            else
                faults_add(f, "%s: tensor %s of layer %d is not in the manifest's index", path, d->name, d->layer);
        }
    }

    s->faults[1] = f->n - start;
    start = f->n;

    /* the index against the model of the stored config */
    int n_mt = 0;
    model_tensor *mt = tm && tm->have_model && !tm->matches ? tool_model_tensors(&tm->mod, &n_mt) : NULL;
    if (mt) {
        if (tm->mod.n_layers != m->n_layers)
            faults_add(f, "%s: the manifest says %d layers, the stored config's model.layers has %d", ckpt, m->n_layers,
                       tm->mod.n_layers);
        for (int j = 0; j < n_mt; j++) {
            int l = mt[j].layer, k = ckpt_find(m, mt[j].name);
            const char *kind = l < tm->n_kinds ? tm->kinds[l] : "?";
            if (k < 0) {
                if (mt[j].tied_to < 0)
                    faults_add(f, "%s: tensor %s of layer %d (%s) is missing from the index", ckpt, mt[j].name, l, kind);
                continue;
            }
            const ckpt_entry *e = &m->entries[k];
            const layer_param *ps = &mt[j].param;
            if (e->ndim != ps->ndim || e->shape[0] != ps->shape[0] || (e->ndim == 2 && e->shape[1] != ps->shape[1])) {
                char ms[64], cs[64];
                int64_t want[2] = {ps->shape[0], ps->ndim == 2 ? ps->shape[1] : 0};
                fmt_entry_shape(ms, sizeof ms, e);
                fmt_shape(cs, sizeof cs, ps->ndim, want);
                faults_add(f, "%s: tensor %s has shape %s in the index, layer %d (%s) of the stored config has %s", ckpt,
                           mt[j].name, ms, l, kind, cs);
            }
        }
        for (int k = 0; k < m->n_entries; k++) {
            const ckpt_entry *e = &m->entries[k];
            int found = 0;
            for (int j = 0; j < n_mt && !found; j++) found = !strncmp(mt[j].name, e->name, CKPT_NAME_MAX);
            if (!found && ckpt_find(m, e->name) == k)
                faults_add(f, "%s: tensor %s of the index is not a tensor of the stored config's model", ckpt, e->name);
        }
        free(mt);
    } else if (tm && tm->have_config && !tm->have_model) {
        faults_add(f, "%s: %s", ckpt, tm->why);
    } else if (tm && !tm->have_config) {
        /* every pipetrain writes a config it can read back: one that does not parse is damaged
         * (format 1 has no metadata checksums to catch it) or from a newer pipetrain */
        faults_add(f, "%s: the stored config cannot be read (damaged, or written by a newer pipetrain): %s", ckpt,
                   tm->why);
    }
    s->faults[2] = f->n - start;
}

void structure_free(tool_structure *s)
{
    for (int i = 0; s->shards && i < s->n_stages; i++) ckpt_shard_info_free(&s->shards[i]);
    free(s->shards);
    free(s->scanned);
    free(s->array_state);
    memset(s, 0, sizeof *s);
}

/* ---- tied copies --------------------------------------------------------- */

int tied_groups_find(const ckpt_manifest *m, const tool_model *tm, tied_groups *t)
{
    memset(t, 0, sizeof *t);
    t->start = calloc(2 * (size_t)m->n_entries + 2, sizeof *t->start);
    t->entries = calloc(2 * (size_t)m->n_entries + 2, sizeof *t->entries);
    if (!t->start || !t->entries) return -1;
    int n = 0;
    /* a tied copy of the model listed in the index besides its source */
    int n_mt = 0;
    model_tensor *mt = tm && tm->have_model ? tool_model_tensors(&tm->mod, &n_mt) : NULL;
    for (int j = 0; mt && j < n_mt; j++) {
        if (mt[j].tied_to < 0) continue;
        t->n_tied++;
        int src = ckpt_find(m, mt[mt[j].tied_to].name), copy = ckpt_find(m, mt[j].name);
        if (src < 0 || copy < 0) continue;
        t->entries[n++] = src;
        t->entries[n++] = copy;
        t->start[++t->n_groups] = n;
    }
    free(mt);
    for (int k = 0; k < m->n_entries; k++) {
        if (ckpt_find(m, m->entries[k].name) != k) continue; /* not the first of its name */
        int first = n;
        t->entries[n++] = k;
        for (int j = k + 1; j < m->n_entries; j++)
            if (!strncmp(m->entries[j].name, m->entries[k].name, CKPT_NAME_MAX) &&
                m->entries[j].shard != m->entries[k].shard)
                t->entries[n++] = j;
        if (n - first > 1) t->start[++t->n_groups] = n;
        else n = first;
    }
    return 0;
}

void tied_groups_free(tied_groups *t)
{
    free(t->start);
    free(t->entries);
    memset(t, 0, sizeof *t);
}

/* ---- verify -------------------------------------------------------------- */

static const char verify_help[] =
    "usage: " TOOL_NAME " verify CKPT [--json]\n"
    "\n"
    "Checks a checkpoint completely and lists every fault found, not just the first:\n"
    "  manifest     readable, a known format version, consistent index and cuts\n"
    "  shards       every shard file present and readable, with the stage, stage count,\n"
    "               layers, step and seed the manifest says\n"
    "  layout       every layer present exactly once (in the shard the cuts give it),\n"
    "               every tensor with its parameter and both optimizer moments, float32,\n"
    "               shapes as the manifest says, nothing else under /layers\n"
    "  model        the index holds exactly the tensors of the model that the stored\n"
    "               config describes\n"
    "  checksums    every array read in full and its crc32 compared with the manifest\n"
    "  tied copies  copies of one tensor kept in several shards hold identical data\n"
    "\n"
    "CKPT is a run directory (its latest checkpoint), a checkpoint directory or a\n"
    "single-file checkpoint. Exit status: 0 when all is well, 1 when there is a fault,\n"
    "2 for a usage error.\n"
    "\n"
    "options:\n"
    "  --json    one JSON document: {checkpoint, ok, checks: [{name, ok, faults, detail}],\n"
    "            faults: [...]}\n";

typedef struct {
    const char *name;
    int first, count; /* faults [first, first + count) */
    char detail[256];
} check_row;

int cmd_verify(int argc, char **argv)
{
    int json = 0;
    const char *pos[1];
    int np = 0;
    tool_opt opts[] = {{"--json", NULL, &json}};
    int rc = tool_parse(argc, argv, verify_help, opts, 1, pos, 1, 1, &np);
    if (rc) return rc < 0 ? TOOL_OK : rc;

    fault_list f = {0};
    check_row rows[6];
    memset(rows, 0, sizeof rows);
    const char *names[6] = {"manifest", "shards", "layout", "model", "checksums", "tied copies"};
    for (int i = 0; i < 6; i++) rows[i].name = names[i];
    char path[CKPT_PATH_MAX] = "";
    ckpt_manifest m;
    memset(&m, 0, sizeof m);
    int have_m = 0, have_model_note = 0;
    tool_model tm;
    memset(&tm, 0, sizeof tm);
    tool_structure s;
    memset(&s, 0, sizeof s);
    int n_checked = 0, n_arrays = 0, n_skipped = 0, n_tied = 0;

    pt_status st = ckpt_resolve(pos[0], path, sizeof path);
    if (st != PT_OK) {
        tool_error("%s", pt_last_error());
        return st == PT_ERR_LOCK ? TOOL_ENV : TOOL_FAIL;
    }
    /* manifest */
    rows[0].first = f.n;
    if ((st = ckpt_read_manifest(path, &m)) != PT_OK) {
        if (tool_lock_error(st)) return TOOL_ENV; /* not a fault of the checkpoint */
        faults_add(&f, "%s", pt_last_error());
    } else {
        have_m = 1;
    }
    rows[0].count = f.n - rows[0].first;
    if (have_m)
        snprintf(rows[0].detail, sizeof rows[0].detail, "format version %d, step %ld, %d stages, %d layers, %d tensors",
                 m.format_version, m.step, m.n_stages, m.n_layers, m.n_entries);
    else
        snprintf(rows[0].detail, sizeof rows[0].detail, "unreadable: nothing else can be checked");

    if (have_m) {
        tool_model_load(&m, &tm);
        /* shards, layout and model: the structural check, in that order */
        int first = f.n;
        check_structure(path, &m, &tm, &s, &f);
        for (int i = 0; i < 3; i++) {
            rows[1 + i].first = first;
            rows[1 + i].count = s.faults[i];
            first += s.faults[i];
        }
        int readable = 0, n_ds = 0;
        for (int i = 0; i < m.n_stages; i++) {
            readable += s.scanned[i];
            n_ds += s.scanned[i] ? s.shards[i].n_datasets : 0;
        }
        snprintf(rows[1].detail, sizeof rows[1].detail, "%d of %d files readable%s", readable, m.n_stages,
                 rows[1].count ? "" : ", attributes as the manifest says");
        int unchecked = 0;
        for (int k = 0; k < m.n_entries * CKPT_ARRAYS; k++) unchecked += s.array_state[k] == ARRAY_SHARD_UNREADABLE;
        if (unchecked)
            snprintf(rows[2].detail, sizeof rows[2].detail, "%d datasets for %d index arrays; the %d arrays of the "
                     "unreadable shards not checked", n_ds, m.n_entries * CKPT_ARRAYS, unchecked);
        else
            snprintf(rows[2].detail, sizeof rows[2].detail, "%d datasets for %d index arrays%s", n_ds,
                     m.n_entries * CKPT_ARRAYS,
                     rows[2].count ? "" : ": every layer exactly once, float32, shapes as the manifest says");
        if (tm.matches)
            snprintf(rows[3].detail, sizeof rows[3].detail, "the stored config's %d layers have exactly these %d tensors",
                     tm.mod.n_layers, m.n_entries);
        else if (!tm.have_config) {
            snprintf(rows[3].detail, sizeof rows[3].detail, "not checked: %.200s", tm.why);
            have_model_note = 1;
        } else
            snprintf(rows[3].detail, sizeof rows[3].detail, "the index differs from the stored config's model");

        /* checksums: every array that the layout check found in place */
        rows[4].first = f.n;
        ckpt_reader r;
        int reader_open = 0;
        int64_t maxn = 1;
        for (int k = 0; k < m.n_entries; k++)
            if (m.entries[k].numel > maxn) maxn = m.entries[k].numel;
        float *buf = malloc(sizeof(float) * (size_t)maxn), *other = NULL;
        if (!buf) faults_add(&f, "%s: out of memory", path);
        else if (ckpt_reader_open(&r, path, &m) != PT_OK) faults_add(&f, "%s", pt_last_error());
        else reader_open = 1;
        for (int k = 0; reader_open && k < m.n_entries; k++)
            for (int a = 0; a < CKPT_ARRAYS; a++) {
                n_arrays++;
                if (s.array_state[(size_t)k * CKPT_ARRAYS + (size_t)a] != ARRAY_OK) {
                    n_skipped++;
                    continue;
                }
                if (ckpt_read_tensor(&r, &m.entries[k], a, buf) != PT_OK) faults_add(&f, "%s", pt_last_error());
                else n_checked++;
            }
        rows[4].count = f.n - rows[4].first;

        /* tied copies: identical data in every shard that keeps one */
        rows[5].first = f.n;
        tied_groups tg;
        if (tied_groups_find(&m, &tm, &tg) != 0) faults_add(&f, "%s: out of memory", path);
        n_tied = tg.n_groups;
        int model_ties = tg.n_tied;
        if (n_tied && reader_open && !(other = malloc(sizeof(float) * (size_t)maxn)))
            faults_add(&f, "%s: out of memory", path);
        for (int g = 0; other && g < tg.n_groups; g++) {
            int k0 = tg.entries[tg.start[g]];
            for (int a = 0; a < CKPT_ARRAYS; a++) {
                if (ckpt_read_tensor(&r, &m.entries[k0], a, buf) != PT_OK) continue; /* reported above */
                for (int i = tg.start[g] + 1; i < tg.start[g + 1]; i++) {
                    int k = tg.entries[i];
                    if (ckpt_read_tensor(&r, &m.entries[k], a, other) != PT_OK) continue;
                    int64_t differ = 0;
                    for (int64_t x = 0; x < m.entries[k].numel; x++)
                        differ += memcmp(&buf[x], &other[x], sizeof(float)) != 0;
                    if (differ) {
                        char label[CKPT_NAME_MAX + 16];
                        fmt_label(label, sizeof label, m.entries[k].name, a);
                        faults_add(&f, "%s: tied copies of %s differ: shard %d and shard %d differ in %lld of %lld "
                                   "elements", path, label, m.entries[k0].shard, m.entries[k].shard,
                                   (long long)differ, (long long)m.entries[k].numel);
                    }
                }
            }
        }
        rows[5].count = f.n - rows[5].first;
        tied_groups_free(&tg);
        free(other);
        free(buf);
        if (reader_open) ckpt_reader_close(&r);
        snprintf(rows[4].detail, sizeof rows[4].detail, "%d of %d arrays read and matching%s", n_checked, n_arrays,
                 n_skipped ? " (the others are missing or unreadable: see the faults)" : "");
        if (n_tied)
            snprintf(rows[5].detail, sizeof rows[5].detail, "%d tensor%s kept more than once, the copies compared", n_tied,
                     n_tied > 1 ? "s" : "");
        else if (model_ties)
            snprintf(rows[5].detail, sizeof rows[5].detail, "the model ties %d tensor%s, stored once (as the source)",
                     model_ties, model_ties > 1 ? "s" : "");
        else
            snprintf(rows[5].detail, sizeof rows[5].detail, "none in this checkpoint");
    }

    int n_rows = have_m ? 6 : 1;
    int ok = f.n == 0;
    if (json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "checkpoint", path);
        cJSON_AddBoolToObject(doc, "ok", ok);
        cJSON *checks = cJSON_AddArrayToObject(doc, "checks");
        for (int i = 0; i < n_rows; i++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "name", rows[i].name);
            cJSON_AddBoolToObject(c, "ok", rows[i].count == 0 && !(i == 3 && have_model_note));
            cJSON_AddNumberToObject(c, "faults", rows[i].count);
            cJSON_AddStringToObject(c, "detail", rows[i].detail);
            cJSON_AddItemToArray(checks, c);
        }
        if (have_m) {
            cJSON_AddNumberToObject(doc, "arrays", n_arrays);
            cJSON_AddNumberToObject(doc, "checksums_verified", n_checked);
            cJSON_AddNumberToObject(doc, "tied_groups", n_tied);
        }
        cJSON *fl = cJSON_AddArrayToObject(doc, "faults");
        for (int i = 0; i < f.n; i++) cJSON_AddItemToArray(fl, cJSON_CreateString(f.msg[i]));
        rc = json_print(doc);
    } else {
        printf("verify %s\n", path);
        const char *hdr[3] = {"CHECK", "RESULT", "DETAIL"};
        tool_table *t = table_new(3, hdr, "lll");
        for (int i = 0; i < n_rows; i++) {
            char res[32];
            if (rows[i].count) snprintf(res, sizeof res, "%d fault%s", rows[i].count, rows[i].count > 1 ? "s" : "");
            else snprintf(res, sizeof res, "%s", i == 3 && have_model_note ? "skipped" : "ok");
            const char *cells[3] = {rows[i].name, res, rows[i].detail};
            table_add(t, cells);
        }
        table_print(t, stdout);
        table_free(t);
        if (f.n) {
            printf("\nfaults:\n");
            for (int i = 0; i < f.n; i++) printf("  %s\n", f.msg[i]);
        }
        printf("\n%s\n", ok ? "verify: ok" : "verify: FAILED");
        rc = TOOL_OK;
    }
    if (!ok) tool_error("verify: %d fault%s in %s", f.n, f.n > 1 ? "s" : "", path);
    faults_free(&f);
    structure_free(&s);
    tool_model_free(&tm);
    if (have_m) ckpt_manifest_free(&m);
    if (rc) return rc;
    return ok ? TOOL_OK : TOOL_FAIL;
}

/* ---- diff ---------------------------------------------------------------- */

static const char diff_help[] =
    "usage: " TOOL_NAME " diff A B [--tolerance T] [--rtol R] [--moments] [--json]\n"
    "\n"
    "Compares two checkpoints tensor by tensor, by global name (so checkpoints of\n"
    "different partitions compare): for each tensor the number of elements whose bits\n"
    "differ, the largest absolute difference |a - b| and the largest relative\n"
    "difference |a - b| / max(|a|, |b|); and the tensors found in only one of them.\n"
    "\n"
    "A and B are run directories (their latest checkpoint), checkpoint directories or\n"
    "single-file checkpoints. Exit status: 0 when every tensor is in both with the\n"
    "same shape and matches (bit for bit, or within the tolerance when one is given),\n"
    "1 otherwise (or when a tensor cannot be read), 2 for a usage error.\n"
    "\n"
    "options:\n"
    "  --tolerance T  an element matches when |a - b| <= T + R * |b| (T >= 0; NaN\n"
    "                 matches NaN); without --tolerance or --rtol, only identical bits do\n"
    "  --rtol R       the relative part R of that bound (default 0)\n"
    "  --moments      compare the optimizer moments (moment1, moment2) too\n"
    "  --json         one JSON document: {a, b, match, tolerance, rtol, tensors: [{name,\n"
    "                 array, shape, result, differing, max_abs, max_rel}], only_in_a,\n"
    "                 only_in_b}\n";

typedef struct {
    int64_t differing, outside;
    double max_abs, max_rel;
} diff_result;

static void diff_arrays(const float *x, const float *y, int64_t n, double atol, double rtol, diff_result *d)
{
    memset(d, 0, sizeof *d);
    for (int64_t i = 0; i < n; i++) {
        if (!memcmp(&x[i], &y[i], sizeof(float))) continue;
        d->differing++;
        double a = x[i], b = y[i], ad, rd;
        if (isnan(a) && isnan(b)) continue; /* NaN payloads differ: within any tolerance */
        if (isfinite(a) && isfinite(b)) {
            ad = fabs(a - b);
            double m = fmax(fabs(a), fabs(b));
            rd = m > 0 ? ad / m : 0.0;
        } else {
            ad = rd = INFINITY;
        }
        if (ad > d->max_abs) d->max_abs = ad;
        if (rd > d->max_rel) d->max_rel = rd;
        if (!(ad <= atol + rtol * fabs(b))) d->outside++;
    }
}

int cmd_diff(int argc, char **argv)
{
    int json = 0, moments = 0;
    const char *tol_text = NULL, *rtol_text = NULL;
    const char *pos[2];
    int np = 0;
    tool_opt opts[] = {{"--json", NULL, &json},
                       {"--moments", NULL, &moments},
                       {"--tolerance", &tol_text, NULL},
                       {"--rtol", &rtol_text, NULL}};
    int rc = tool_parse(argc, argv, diff_help, opts, 4, pos, 2, 2, &np);
    if (rc) return rc < 0 ? TOOL_OK : rc;
    double atol = 0, rtol = 0;
    if (tol_text && (rc = tool_parse_double("diff", "--tolerance", tol_text, &atol))) return rc;
    if (rtol_text && (rc = tool_parse_double("diff", "--rtol", rtol_text, &rtol))) return rc;
    int tolerant = tol_text || rtol_text;

    tool_ckpt A, B;
    if ((rc = tool_open(&A, pos[0]))) return rc;
    if ((rc = tool_open(&B, pos[1]))) {
        tool_close(&A);
        return rc;
    }
    int n_arr = moments ? CKPT_ARRAYS : 1;
    int match = 1, n_differ = 0, n_err = 0, n_only = 0;
    const char *hdr[7] = {"TENSOR", "SHAPE", "DIFFERING", "MAX ABS", "MAX REL", "RESULT", ""};
    tool_table *t = table_new(6, hdr, "llrrrl");
    cJSON *doc = json ? cJSON_CreateObject() : NULL, *jt = NULL;
    if (doc) {
        cJSON_AddStringToObject(doc, "a", A.path);
        cJSON_AddStringToObject(doc, "b", B.path);
        jt = cJSON_CreateArray();
    }
    for (int k = 0; k < A.m.n_entries; k++) {
        const ckpt_entry *ea = &A.m.entries[k];
        if (ckpt_find(&A.m, ea->name) != k) continue; /* a tied copy: compared once */
        int j = ckpt_find(&B.m, ea->name);
        if (j < 0) continue; /* listed below */
        const ckpt_entry *eb = &B.m.entries[j];
        char shape[64], shape_b[64];
        fmt_entry_shape(shape, sizeof shape, ea);
        fmt_entry_shape(shape_b, sizeof shape_b, eb);
        for (int a = 0; a < n_arr; a++) {
            char label[CKPT_NAME_MAX + 16], cnt[32] = "", mabs[32] = "", mrel[32] = "", res[96];
            fmt_label(label, sizeof label, ea->name, a);
            diff_result d;
            memset(&d, 0, sizeof d);
            int ok_read = 1, same_shape = strcmp(shape, shape_b) == 0;
            if (!same_shape) {
                snprintf(res, sizeof res, "shape differs: %s in B", shape_b);
                match = 0;
                n_differ++;
            } else {
                float *x = tool_read(&A, k, a), *y = x ? tool_read(&B, j, a) : NULL;
                if (!x || !y) {
                    tool_error("%s", pt_last_error());
                    snprintf(res, sizeof res, "unreadable in %s", x ? "B" : "A");
                    ok_read = 0;
                    match = 0;
                    n_err++;
                } else {
                    diff_arrays(x, y, ea->numel, atol, rtol, &d);
                    snprintf(cnt, sizeof cnt, "%lld", (long long)d.differing);
                    fmt_num(mabs, sizeof mabs, d.max_abs);
                    fmt_num(mrel, sizeof mrel, d.max_rel);
                    if (!d.differing) snprintf(res, sizeof res, "identical");
                    else if (tolerant && !d.outside) snprintf(res, sizeof res, "within tolerance");
                    else {
                        if (tolerant) snprintf(res, sizeof res, "different (%lld outside the tolerance)", (long long)d.outside);
                        else snprintf(res, sizeof res, "different");
                        match = 0;
                        n_differ++;
                    }
                }
                free(x);
                free(y);
            }
            const char *cells[6] = {label, shape, cnt, mabs, mrel, res};
            table_add(t, cells);
            if (doc) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "name", ea->name);
                cJSON_AddStringToObject(o, "array", array_label(a));
                cJSON_AddItemToObject(o, "shape", json_entry_shape(ea));
                if (!same_shape) cJSON_AddItemToObject(o, "shape_b", json_entry_shape(eb));
                cJSON_AddStringToObject(o, "result", !same_shape ? "shape differs" : !ok_read ? "unreadable"
                                                      : !d.differing ? "identical"
                                                      : tolerant && !d.outside ? "within tolerance" : "different");
                if (same_shape && ok_read) {
                    json_i64(o, "differing", d.differing);
                    if (tolerant) json_i64(o, "outside_tolerance", d.outside);
                    json_num(o, "max_abs", d.max_abs);
                    json_num(o, "max_rel", d.max_rel);
                }
                cJSON_AddItemToArray(jt, o);
            }
        }
    }
    /* tensors in only one of them */
    cJSON *only[2] = {doc ? cJSON_CreateArray() : NULL, doc ? cJSON_CreateArray() : NULL};
    for (int side = 0; side < 2; side++) {
        const ckpt_manifest *m = side ? &B.m : &A.m, *o = side ? &A.m : &B.m;
        for (int k = 0; k < m->n_entries; k++) {
            const ckpt_entry *e = &m->entries[k];
            if (ckpt_find(m, e->name) != k || ckpt_find(o, e->name) >= 0) continue;
            char shape[64], res[32];
            fmt_entry_shape(shape, sizeof shape, e);
            snprintf(res, sizeof res, "only in %s", side ? "B" : "A");
            const char *cells[6] = {e->name, shape, "", "", "", res};
            table_add(t, cells);
            if (doc) cJSON_AddItemToArray(only[side], cJSON_CreateString(e->name));
            match = 0;
            n_only++;
        }
    }
    if (doc) {
        cJSON_AddBoolToObject(doc, "match", match);
        json_num(doc, "tolerance", atol);
        json_num(doc, "rtol", rtol);
        cJSON_AddBoolToObject(doc, "moments", moments);
        cJSON_AddItemToObject(doc, "tensors", jt);
        cJSON_AddItemToObject(doc, "only_in_a", only[0]);
        cJSON_AddItemToObject(doc, "only_in_b", only[1]);
        rc = json_print(doc);
    } else {
        printf("A: %s (step %ld, %d stages)\n", A.path, A.m.step, A.m.n_stages);
        printf("B: %s (step %ld, %d stages)\n", B.path, B.m.step, B.m.n_stages);
        if (tolerant) {
            char ta[32], tr[32];
            fmt_num(ta, sizeof ta, atol);
            fmt_num(tr, sizeof tr, rtol);
            printf("an element matches when |a - b| <= %s + %s * |b|\n", ta, tr);
        }
        printf("\n");
        table_print(t, stdout);
        printf("\n");
        if (match) printf("diff: %s\n", tolerant ? "the checkpoints match within the tolerance" : "the checkpoints are identical");
        else
            printf("diff: the checkpoints differ: %d %s differ%s, %d in only one%s\n", n_differ,
                   moments ? "arrays" : "tensors", tolerant ? " beyond the tolerance" : "", n_only,
                   n_err ? ", some could not be read" : "");
        rc = TOOL_OK;
    }
    table_free(t);
    tool_close(&A);
    tool_close(&B);
    if (rc) return rc;
    return match ? TOOL_OK : TOOL_FAIL;
}
