#include "persist.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"

/* The model's stored tensors in global order, as manifest entries (no crc):
 * a tied copy is not stored (its source is, once). */
static ckpt_entry *model_entries(const model *m, const int *cuts, int P, int *count)
{
    int n = model_tensor_count(m, 0, m->n_layers);
    ckpt_entry *e = calloc((size_t)n + 1, sizeof *e);
    model_tensor *t = calloc((size_t)n + 1, sizeof *t);
    if (!e || !t) {
        free(e);
        free(t);
        return NULL;
    }
    model_tensors(m, t);
    int stored = 0;
    for (int k = 0, s = 0; k < n; k++) {
        if (t[k].tied_to >= 0) continue;
        while (cuts && s + 1 < P && cuts[s + 1] <= t[k].layer) s++;
        ckpt_entry *x = &e[stored++];
        snprintf(x->name, sizeof x->name, "%s", t[k].name);
        x->layer = t[k].layer;
        x->ndim = t[k].param.ndim;
        x->shape[0] = t[k].param.shape[0];
        x->shape[1] = t[k].param.ndim == 2 ? t[k].param.shape[1] : 0;
        x->numel = (int64_t)t[k].numel;
        x->shard = s;
    }
    free(t);
    *count = stored;
    return e;
}

typedef struct {
    int crash_after;
} crash_hook;

static void maybe_crash(void *ctx, int k)
{
    const crash_hook *h = ctx;
    if (h->crash_after >= 0 && k + 1 >= h->crash_after) {
        fprintf(stderr, "pipetrain: fault.kind = checkpoint_crash: dying while writing a shard\n");
        fflush(stderr);
        raise(SIGKILL);
    }
}

static void step_name(char *buf, size_t len, const char *dir, long step)
{
    snprintf(buf, len, "%s/step-%06ld", dir, step);
}

pt_status persist_save(const config *c, const comm_grid *g, const model *m, const int *cuts,
                       const stage *st, long step, int crash_after, int *reporter)
{
    char tmp[CKPT_PATH_MAX] = "";
    pt_status local = PT_OK, st_all;
    *reporter = 0;
    if (g->rank == 0) local = ckpt_begin(c->checkpoint_dir, step, tmp, sizeof tmp);
    if ((st_all = comm_agree(g, local, reporter))) return st_all;
    int rc = MPI_Bcast(tmp, sizeof tmp, MPI_CHAR, 0, g->world);
    if (rc != MPI_SUCCESS) return pt_fail(PT_ERR_MPI, "MPI_Bcast of the checkpoint directory failed");

    /* every stage writes its shard (one replica writes: replica 0) */
    int n_all = 0;
    ckpt_entry *all = model_entries(m, cuts, g->P, &n_all);
    unsigned long long *crc = calloc((size_t)n_all * CKPT_ARRAYS + 1, sizeof *crc);
    ckpt_tensor *ts = calloc((size_t)st->n_tensors + 1, sizeof *ts);
    uint32_t *mine = calloc((size_t)st->n_tensors * CKPT_ARRAYS + 1, sizeof *mine);
    if (!all || !crc || !ts || !mine) local = pt_fail(PT_ERR_NOMEM, "checkpoint: out of memory");
    crash_hook hook = {crash_after};
    if (!local && g->replica == 0) {
        int n = 0;
        for (int k = 0; k < st->n_tensors; k++) {
            const stage_tensor *t = &st->tensors[k];
            if (t->tied_to >= 0) continue; /* stored once, as its source */
            ts[n++] = (ckpt_tensor){t->name, t->layer, t->ndim, {t->shape[0], t->shape[1]}, t->numel,
                                    {st->params + t->offset, st->m1 + t->offset, st->m2 + t->offset}};
        }
        ckpt_shard shard = {g->stage, g->P, st->first, st->last, step, c->seed, c->checkpoint_compression,
                            n, ts, crash_after >= 0 ? maybe_crash : NULL, &hook};
        local = ckpt_write_shard(tmp, &shard, mine);
        for (int k = 0; !local && k < n; k++) {
            int e = 0;
            while (e < n_all && strcmp(all[e].name, ts[k].name)) e++;
            for (int a = 0; a < CKPT_ARRAYS; a++) crc[e * CKPT_ARRAYS + a] = mine[k * CKPT_ARRAYS + a];
        }
    }
    st_all = comm_agree(g, local, reporter);
    if (!st_all) st_all = comm_allreduce_xor(crc, n_all * CKPT_ARRAYS, g->world, "MPI_Allreduce of checkpoint checksums");

    /* all shards are on disk: rank 0 writes the manifest and commits */
    local = PT_OK;
    if (!st_all && g->rank == 0) {
        char text[1 << 16];
        config_to_text(c, text, sizeof text);
        for (int k = 0; k < n_all; k++)
            for (int a = 0; a < CKPT_ARRAYS; a++) all[k].crc[a] = (uint32_t)crc[k * CKPT_ARRAYS + a];
        ckpt_manifest man = {CKPT_FORMAT_VERSION, step, c->seed, g->P, g->D, m->n_layers, (int *)cuts, text,
                             n_all, all};
        local = ckpt_write_manifest(tmp, &man);
        if (!local) local = ckpt_commit(c->checkpoint_dir, step);
        if (!local) local = ckpt_prune(c->checkpoint_dir, c->checkpoint_keep);
        if (!local) {
            char final[CKPT_PATH_MAX + 16];
            step_name(final, sizeof final, c->checkpoint_dir, step);
            printf("checkpoint: %s\n", final);
            fflush(stdout);
        }
    }
    if (!st_all) st_all = comm_agree(g, local, reporter);
    free(mine);
    free(ts);
    free(crc);
    free(all);
    return st_all;
}

/* Checks that the checkpoint holds exactly the model's tensors. */
static pt_status check_model(const ckpt_manifest *man, const ckpt_entry *want, int n, const char *dir)
{
    for (int k = 0; k < n; k++) {
        int i = ckpt_find(man, want[k].name);
        if (i < 0)
            return pt_fail(PT_ERR_MISMATCH,
                           "checkpoint %s is of a different model: it has no tensor %s (shape [%d, %d] in "
                           "this config's model)",
                           dir, want[k].name, want[k].shape[0], want[k].shape[1]);
        const ckpt_entry *e = &man->entries[i];
        if (e->ndim != want[k].ndim || e->shape[0] != want[k].shape[0] || e->shape[1] != want[k].shape[1])
            return pt_fail(PT_ERR_MISMATCH,
                           "checkpoint %s is of a different model: tensor %s has shape [%d, %d] there and "
                           "[%d, %d] in this config's model",
                           dir, e->name, e->shape[0], e->shape[1], want[k].shape[0], want[k].shape[1]);
    }
    if (man->n_entries != n)
        for (int i = 0; i < man->n_entries; i++) {
            int found = 0;
            for (int k = 0; k < n && !found; k++) found = !strcmp(want[k].name, man->entries[i].name);
            if (!found)
                return pt_fail(PT_ERR_MISMATCH,
                               "checkpoint %s is of a different model: it has tensor %s, which this "
                               "config's model lacks",
                               dir, man->entries[i].name);
        }
    return PT_OK;
}

pt_status persist_load(const char *path, const comm_grid *g, const model *m, stage *st, int moments,
                       long *step, int *reporter)
{
    char dir[CKPT_PATH_MAX];
    ckpt_manifest man;
    ckpt_reader rd;
    memset(&man, 0, sizeof man);
    memset(&rd, 0, sizeof rd);
    int n = 0;
    ckpt_entry *want = model_entries(m, NULL, 1, &n);
    pt_status local = want ? PT_OK : pt_fail(PT_ERR_NOMEM, "out of memory");
    if (!local) local = ckpt_resolve(path, dir, sizeof dir);
    if (!local) local = ckpt_read_manifest(dir, &man);
    if (!local) local = check_model(&man, want, n, dir);
    if (!local) local = ckpt_reader_open(&rd, dir, &man);
    for (int k = 0; !local && k < st->n_tensors; k++) {
        const stage_tensor *t = &st->tensors[k];
        /* a tied copy reads its source's stored values */
        char source[STAGE_TENSOR_NAME_MAX];
        if (t->tied_to >= 0)
            model_param_name(source, sizeof source, m->tied_embed, "w");
        const ckpt_entry *e = &man.entries[ckpt_find(&man, t->tied_to >= 0 ? source : t->name)];
        float *dst[CKPT_ARRAYS] = {st->params + t->offset, st->m1 + t->offset, st->m2 + t->offset};
        for (int a = 0; !local && a < (moments ? CKPT_ARRAYS : 1); a++) local = ckpt_read_tensor(&rd, e, a, dst[a]);
    }
    if (!local) *step = man.step;
    ckpt_reader_close(&rd);
    ckpt_manifest_free(&man);
    free(want);
    return comm_agree(g, local, reporter);
}

pt_status persist_read_config(const char *path, config *c)
{
    char dir[CKPT_PATH_MAX];
    ckpt_manifest man;
    memset(&man, 0, sizeof man);
    pt_status st = ckpt_resolve(path, dir, sizeof dir);
    if (!st) st = ckpt_read_manifest(dir, &man);
    if (!st) st = config_load_text(c, man.config_text, dir);
    ckpt_manifest_free(&man);
    return st;
}
