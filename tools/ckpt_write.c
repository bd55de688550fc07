/* ckpt_write.c — pipetrain-ckpt export and reshard: read a whole checkpoint
 * (every array, checksums checked) and write it again, as one partition-free
 * file or as P shards. */
#include "ckpt_tool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "partition.h"

/* Every array of every distinct tensor, read and checked; tensors[i] points
 * into the buffers. *order[i] is the manifest entry of tensors[i]. */
typedef struct {
    int n;
    int *entry;
    ckpt_tensor *tensors;
    float *data[CKPT_ARRAYS];
} loaded;

static void loaded_free(loaded *l)
{
    free(l->entry);
    free(l->tensors);
    for (int a = 0; a < CKPT_ARRAYS; a++) free(l->data[a]);
    memset(l, 0, sizeof *l);
}

/* Reads every array of c (tied copies once: the first). TOOL_OK or TOOL_FAIL
 * after printing the error. */
static int load_all(tool_ckpt *c, loaded *l)
{
    memset(l, 0, sizeof *l);
    const ckpt_manifest *m = &c->m;
    int64_t total = 0;
    for (int k = 0; k < m->n_entries; k++)
        if (ckpt_find(m, m->entries[k].name) == k) total += m->entries[k].numel;
    l->entry = calloc((size_t)m->n_entries + 1, sizeof *l->entry);
    l->tensors = calloc((size_t)m->n_entries + 1, sizeof *l->tensors);
    for (int a = 0; a < CKPT_ARRAYS; a++) l->data[a] = malloc(sizeof(float) * (size_t)(total > 0 ? total : 1));
    if (!l->entry || !l->tensors || !l->data[0] || !l->data[1] || !l->data[2]) {
        tool_error("%s: out of memory for %lld parameters and their moments", c->path, (long long)total);
        loaded_free(l);
        return TOOL_FAIL;
    }
    int64_t off = 0;
    for (int k = 0; k < m->n_entries; k++) {
        const ckpt_entry *e = &m->entries[k];
        if (ckpt_find(m, e->name) != k) continue;
        ckpt_tensor *t = &l->tensors[l->n];
        *t = (ckpt_tensor){e->name, e->layer, e->ndim, {e->shape[0], e->shape[1]}, (size_t)e->numel,
                           {l->data[0] + off, l->data[1] + off, l->data[2] + off}};
        for (int a = 0; a < CKPT_ARRAYS; a++)
            if (ckpt_read_tensor(&c->r, e, a, l->data[a] + off) != PT_OK) {
                tool_error("%s", pt_last_error());
                loaded_free(l);
                return TOOL_FAIL;
            }
        l->entry[l->n++] = k;
        off += e->numel;
    }
    return TOOL_OK;
}

/* The structural check of verify (no data read): a checkpoint with a fault
 * is not rewritten. TOOL_OK, or TOOL_FAIL after listing the faults. */
static int refuse_damaged(tool_ckpt *c, const tool_model *tm, const char *cmd)
{
    fault_list f = {0};
    tool_structure s;
    check_structure(c->path, &c->m, tm, &s, &f);
    for (int i = 0; i < f.n; i++) tool_error("%s", f.msg[i]);
    if (f.n)
        tool_error("%s: %s has %d fault%s: not rewriting it (see '" TOOL_NAME " verify %s')", cmd, c->path, f.n,
                   f.n > 1 ? "s" : "", c->path);
    int rc = f.n ? TOOL_FAIL : TOOL_OK;
    structure_free(&s);
    faults_free(&f);
    return rc;
}

/* ---- export -------------------------------------------------------------- */

static const char export_help[] =
    "usage: " TOOL_NAME " export CKPT OUT.h5 [--compression L] [--force] [--json]\n"
    "\n"
    "Writes the whole checkpoint as one consolidated, partition-free HDF5 file with\n"
    "global layer names: /layers/<i>/<param> and /layers/<i>/moment1|moment2/<param>\n"
    "(float32, crc32 attribute each), the manifest's attributes (step, seed, config,\n"
    "...) and its /index with every tensor in shard 0 of 1 stage. h5py reads it, and\n"
    "pipetrain accepts it wherever it takes a checkpoint:\n"
    "  mpirun -np P pipetrain train CONFIG --init OUT.h5     (its weights, from step 0)\n"
    "  mpirun -np P pipetrain train CONFIG --resume OUT.h5   (weights, moments and step)\n"
    "Every array is read in full and its crc32 checked first; the file is written\n"
    "under OUT.h5.tmp and renamed into place, so OUT.h5 is never half-written.\n"
    "\n"
    "CKPT is a run directory (its latest checkpoint), a checkpoint directory or a\n"
    "single-file checkpoint. Exit status: 0; 1 when the checkpoint cannot be read or\n"
    "the file cannot be written; 2 for a usage error.\n"
    "\n"
    "options:\n"
    "  --compression L  deflate level 0..9 of the datasets (default 0: none)\n"
    "  --force          replace OUT.h5 if it exists\n"
    "  --json           a JSON document describing what was written\n";

int cmd_export(int argc, char **argv)
{
    int json = 0, force = 0;
    const char *comp_text = NULL;
    const char *pos[2];
    int np = 0;
    tool_opt opts[] = {{"--json", NULL, &json}, {"--force", NULL, &force}, {"--compression", &comp_text, NULL}};
    int rc = tool_parse(argc, argv, export_help, opts, 3, pos, 2, 2, &np);
    if (rc) return rc < 0 ? TOOL_OK : rc;
    long level = 0;
    if (comp_text && (rc = tool_parse_long("export", "--compression", comp_text, 0, 9, &level))) return rc;
    const char *out = pos[1];
    struct stat sb;
    if (stat(out, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            tool_error("export: %s is a directory; give the path of the file to write", out);
            return TOOL_FAIL;
        }
        if (!force) {
            tool_error("export: %s exists (use --force to replace it)", out);
            return TOOL_FAIL;
        }
    }
    tool_ckpt c;
    if ((rc = tool_open(&c, pos[0]))) return rc;
    if (!strcmp(c.path, out)) {
        tool_error("export: %s is the checkpoint being exported", out);
        tool_close(&c);
        return TOOL_FAIL;
    }
    tool_model tm;
    tool_model_load(&c.m, &tm);
    rc = refuse_damaged(&c, &tm, "export");
    tool_model_free(&tm);
    loaded l;
    if (rc || load_all(&c, &l)) {
        tool_close(&c);
        return TOOL_FAIL;
    }
    /* the index of the distinct tensors, in global order */
    ckpt_manifest one = c.m;
    one.n_entries = l.n;
    one.entries = calloc((size_t)l.n + 1, sizeof *one.entries);
    int64_t params = 0;
    if (!one.entries) {
        tool_error("export: out of memory");
        rc = TOOL_FAIL;
    } else {
        for (int i = 0; i < l.n; i++) {
            one.entries[i] = c.m.entries[l.entry[i]];
            params += one.entries[i].numel;
        }
        if (ckpt_write_single(out, &one, l.tensors, (int)level) != PT_OK) {
            tool_error("%s", pt_last_error());
            rc = TOOL_FAIL;
        }
    }
    if (!rc) {
        /* read back what was written: the same tensors, every checksum */
        tool_ckpt back;
        if (tool_open(&back, out)) rc = TOOL_FAIL;
        else {
            float *x = NULL;
            for (int i = 0; i < back.m.n_entries && !rc; i++)
                for (int a = 0; a < CKPT_ARRAYS && !rc; a++) {
                    if (!(x = tool_read(&back, i, a))) {
                        tool_error("export: reading back %s: %s", out, pt_last_error());
                        rc = TOOL_FAIL;
                    } else if (memcmp(x, l.tensors[i].data[a], sizeof(float) * l.tensors[i].numel) != 0) {
                        tool_error("export: %s: tensor %s reads back different data", out, back.m.entries[i].name);
                        rc = TOOL_FAIL;
                    }
                    free(x);
                    x = NULL;
                }
            tool_close(&back);
        }
    }
    if (!rc) {
        stat(out, &sb);
        char human[32], size[64];
        fmt_human(human, sizeof human, (int64_t)sb.st_size);
        snprintf(size, sizeof size, "%lld bytes (%s)", (long long)sb.st_size, human);
        if (json) {
            cJSON *doc = cJSON_CreateObject();
            cJSON_AddStringToObject(doc, "checkpoint", c.path);
            cJSON_AddStringToObject(doc, "output", out);
            cJSON_AddNumberToObject(doc, "step", (double)c.m.step);
            cJSON_AddNumberToObject(doc, "source_stages", c.m.n_stages);
            cJSON_AddNumberToObject(doc, "tensors", l.n);
            json_i64(doc, "parameters", params);
            cJSON_AddNumberToObject(doc, "compression", (double)level);
            json_i64(doc, "bytes", (int64_t)sb.st_size);
            rc = json_print(doc);
        } else {
            printf("exported %s (step %ld, %d stages) to %s\n", c.path, c.m.step, c.m.n_stages, out);
            printf("  %d tensors, %lld parameters, with both optimizer moments; one file of %s\n", l.n,
                   (long long)params, size);
            printf("  start a run from its weights: mpirun -np P pipetrain train CONFIG --init %s\n", out);
        }
    }
    free(one.entries);
    loaded_free(&l);
    tool_close(&c);
    return rc;
}

/* ---- reshard ------------------------------------------------------------- */

static const char reshard_help[] =
    "usage: " TOOL_NAME " reshard CKPT --stages P OUT_DIR [--partition METHOD]\n"
    "                      [--compression L] [--json]\n"
    "\n"
    "Rewrites a checkpoint as P shards: reads every array (checksums checked), splits\n"
    "the layers into P contiguous stages and writes OUT_DIR/step-N (N = the\n"
    "checkpoint's step) with the commit protocol of pipetrain (shards, manifest,\n"
    "rename, then OUT_DIR/latest), so that\n"
    "  mpirun -np P pipetrain train CONFIG --resume OUT_DIR\n"
    "continues the run exactly. The data, names, step, seed and stored config are\n"
    "unchanged; only the partition differs.\n"
    "\n"
    "The partition is the stored config's pipeline.partition method applied to P\n"
    "stages (uniform, params or cost); explicit ranges that do not give P stages fall\n"
    "back to uniform, with a note. Every stage needs at least one layer: P may not\n"
    "exceed the number of layers.\n"
    "\n"
    "CKPT is a run directory (its latest checkpoint), a checkpoint directory or a\n"
    "single-file checkpoint. Exit status: 0; 1 when the checkpoint cannot be read or\n"
    "OUT_DIR cannot be written (or already holds step N); 2 for a usage error.\n"
    "\n"
    "options:\n"
    "  --stages P          number of shards (pipeline stages), 1..layers (required)\n"
    "  --partition METHOD  uniform, params, cost or ranges such as 0-3,4-6 instead of\n"
    "                      the stored config's method\n"
    "  --compression L     deflate level 0..9 (default: the stored config's\n"
    "                      checkpoint.compression)\n"
    "  --json              a JSON document describing what was written\n";

static void fmt_cuts(char *buf, size_t len, const int *cuts, int P)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (int s = 0; s < P; s++) {
        char r[32];
        fmt_layer_range(r, sizeof r, cuts[s], cuts[s + 1]);
        int n = snprintf(buf + pos, len - pos, "%s%s", s ? " | " : "", r);
        if (n < 0 || (size_t)n >= len - pos) return;
        pos += (size_t)n;
    }
}

int cmd_reshard(int argc, char **argv)
{
    int json = 0;
    const char *stages_text = NULL, *part_text = NULL, *comp_text = NULL;
    const char *pos[2];
    int np = 0;
    tool_opt opts[] = {{"--json", NULL, &json},
                       {"--stages", &stages_text, NULL},
                       {"--partition", &part_text, NULL},
                       {"--compression", &comp_text, NULL}};
    int rc = tool_parse(argc, argv, reshard_help, opts, 4, pos, 2, 2, &np);
    if (rc) return rc < 0 ? TOOL_OK : rc;
    if (!stages_text) return tool_usage("reshard", "--stages P is required");
    long P = 0, level = -1;
    if ((rc = tool_parse_long("reshard", "--stages", stages_text, 1, 1 << 20, &P))) return rc;
    if (comp_text && (rc = tool_parse_long("reshard", "--compression", comp_text, 0, 9, &level))) return rc;
    config part_cfg; /* --partition parsed as the config key would be */
    config_defaults(&part_cfg);
    if (part_text) {
        char set[CONFIG_STR_MAX + 32];
        snprintf(set, sizeof set, "pipeline.partition=%s", part_text);
        if (config_set(&part_cfg, set) != PT_OK) return tool_usage("reshard", "--partition: %s", pt_last_error());
    }
    const char *out = pos[1];

    tool_ckpt c;
    if ((rc = tool_open(&c, pos[0]))) return rc;
    const ckpt_manifest *m = &c.m;
    tool_model tm;
    tool_model_load(m, &tm);
    int *cuts = calloc((size_t)P + 1, sizeof *cuts);
    ckpt_entry *entries = calloc((size_t)m->n_entries + 1, sizeof *entries);
    uint32_t *crc = calloc((size_t)m->n_entries * CKPT_ARRAYS + 1, sizeof *crc);
    loaded l;
    memset(&l, 0, sizeof l);
    char tmp[CKPT_PATH_MAX] = "", final[CKPT_PATH_MAX + 32], method[CONFIG_STR_MAX + 32] = "uniform";
    rc = TOOL_FAIL;
    if (!cuts || !entries || !crc) {
        tool_error("reshard: out of memory");
        goto done;
    }
    if (refuse_damaged(&c, &tm, "reshard")) goto done;
    if (P > m->n_layers) {
        tool_error("reshard: --stages %ld is more than the %d layers of %s: every stage needs at least one layer", P,
                   m->n_layers, c.path);
        goto done;
    }
    ckpt_step_dir(final, sizeof final, out, m->step);
    struct stat sb;
    if (stat(out, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        tool_error("reshard: %s exists and is not a directory", out);
        goto done;
    }
    if (stat(final, &sb) == 0) {
        tool_error("reshard: %s already exists: choose another OUT_DIR or remove it", final);
        goto done;
    }

    /* the partition: the chosen method, else the stored config's */
    partition_kind kind = part_text ? part_cfg.partition : tm.have_config ? tm.cfg.partition : PARTITION_UNIFORM;
    const char *spec = part_text ? part_cfg.partition_spec : tm.have_config ? tm.cfg.partition_spec : "";
    if (!part_text && !tm.have_config)
        tool_note("the stored config cannot be read (%s): using the uniform partition", tm.why);
    if (kind != PARTITION_UNIFORM && !tm.matches) {
        tool_note("the %s partition needs the model of the stored config, which is not available (%s): using the "
                  "uniform partition", partition_kind_name(kind), tm.have_config ? tm.why : "no config");
        kind = PARTITION_UNIFORM;
    }
    if (kind == PARTITION_UNIFORM) {
        int base = m->n_layers / (int)P, extra = m->n_layers % (int)P;
        for (int s = 0; s < P; s++) cuts[s + 1] = cuts[s] + base + (s < extra);
    } else if (partition_layers(&tm.mod, (int)P, kind, spec, cuts) != PT_OK) {
        if (kind != PARTITION_EXPLICIT) {
            tool_error("reshard: %s", pt_last_error());
            goto done;
        }
        tool_note("the explicit partition '%s' does not fit %ld stages (%s): using the uniform partition", spec, P,
                  pt_last_error());
        kind = PARTITION_UNIFORM;
        int base = m->n_layers / (int)P, extra = m->n_layers % (int)P;
        cuts[0] = 0;
        for (int s = 0; s < P; s++) cuts[s + 1] = cuts[s] + base + (s < extra);
    }
    if (kind == PARTITION_EXPLICIT) snprintf(method, sizeof method, "explicit %s", spec);
    else snprintf(method, sizeof method, "%s", partition_kind_name(kind));
    if (level < 0) level = tm.have_config ? tm.cfg.checkpoint_compression : 0;

    /* read everything, then write P shards, the manifest, commit */
    if (load_all(&c, &l)) goto done;
    pt_status st = ckpt_begin(out, m->step, tmp, sizeof tmp);
    int n_out = 0;
    ckpt_tensor *sel = calloc((size_t)l.n + 1, sizeof *sel);
    int *which = calloc((size_t)l.n + 1, sizeof *which);
    if (!st && (!sel || !which)) st = pt_fail(PT_ERR_NOMEM, "reshard: out of memory");
    for (int s = 0; !st && s < P; s++) {
        int count = 0; /* the tensors of stage s's layers, in index order */
        for (int i = 0; i < l.n; i++)
            if (l.tensors[i].layer >= cuts[s] && l.tensors[i].layer < cuts[s + 1]) {
                sel[count] = l.tensors[i];
                which[count++] = i;
            }
        ckpt_shard sh = {(int)s, (int)P, cuts[s], cuts[s + 1], m->step, m->seed, (int)level, count, sel, NULL, NULL};
        st = ckpt_write_shard(tmp, &sh, crc);
        for (int j = 0; !st && j < count; j++) {
            const ckpt_entry *src = &m->entries[l.entry[which[j]]];
            entries[n_out] = *src;
            entries[n_out].shard = (int)s;
            memcpy(entries[n_out].crc, crc + (size_t)j * CKPT_ARRAYS, sizeof entries[n_out].crc);
            for (int a = 0; a < CKPT_ARRAYS && !st; a++)
                if (entries[n_out].crc[a] != src->crc[a])
                    st = pt_fail(PT_ERR_CHECKSUM, "reshard: tensor %s (%s): written crc32 0x%08x, the source says 0x%08x",
                                 src->name, array_label(a), (unsigned)entries[n_out].crc[a], (unsigned)src->crc[a]);
            n_out++;
        }
    }
    free(sel);
    free(which);
    if (!st) {
        ckpt_manifest man = *m;
        man.n_stages = (int)P;
        man.cuts = cuts;
        man.n_entries = n_out;
        man.entries = entries;
        st = ckpt_write_manifest(tmp, &man);
    }
    if (!st) st = ckpt_commit(out, m->step);
    if (st) {
        tool_error("%s", pt_last_error());
        if (tmp[0]) tool_note("the partial output is left in %s", tmp);
        goto done;
    }
    rc = TOOL_OK;
    char from_cuts[1024], to_cuts[1024];
    fmt_cuts(from_cuts, sizeof from_cuts, m->cuts, m->n_stages);
    fmt_cuts(to_cuts, sizeof to_cuts, cuts, (int)P);
    if (json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON_AddStringToObject(doc, "checkpoint", c.path);
        cJSON_AddStringToObject(doc, "output", final);
        cJSON_AddStringToObject(doc, "run_dir", out);
        cJSON_AddNumberToObject(doc, "step", (double)m->step);
        cJSON_AddNumberToObject(doc, "source_stages", m->n_stages);
        cJSON_AddNumberToObject(doc, "stages", (double)P);
        cJSON_AddStringToObject(doc, "partition", method);
        cJSON *jc = cJSON_AddArrayToObject(doc, "cuts");
        for (int s = 0; s <= P; s++) cJSON_AddItemToArray(jc, cJSON_CreateNumber(cuts[s]));
        cJSON_AddNumberToObject(doc, "tensors", n_out);
        cJSON_AddNumberToObject(doc, "compression", (double)level);
        rc = json_print(doc);
    } else {
        printf("resharded %s (step %ld)\n", c.path, m->step);
        printf("  from %d stages: layers %s\n", m->n_stages, from_cuts);
        printf("  to   %ld stages: layers %s (%s partition)\n", P, to_cuts, method);
        printf("  written to %s; %s/latest names it\n", final, out);
        printf("  resume: mpirun -np %ld pipetrain train CONFIG --resume %s\n", P, out);
    }
done:
    loaded_free(&l);
    free(crc);
    free(entries);
    free(cuts);
    tool_model_free(&tm);
    tool_close(&c);
    return rc;
}
