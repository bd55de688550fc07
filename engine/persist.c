#include "persist.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt.h"
#include "partition.h"
#include "rundir.h"

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
    for (int k = 0; k < n; k++) {
        if (t[k].tied_to >= 0) continue;
        ckpt_entry *x = &e[stored++];
        snprintf(x->name, sizeof x->name, "%s", t[k].name);
        x->layer = t[k].layer;
        x->ndim = t[k].param.ndim;
        x->shape[0] = t[k].param.shape[0];
        x->shape[1] = t[k].param.ndim == 2 ? t[k].param.shape[1] : 0;
        x->numel = (int64_t)t[k].numel;
        x->shard = partition_stage_of(cuts, P, t[k].layer); /* cuts is NULL only with P = 1 */
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

pt_status persist_save(const config *c, const comm_grid *g, const persist_run *pr, const model *m,
                       const int *cuts, const stage *st, int chunks, long step, int crash_after, int *reporter)
{
    char tmp[CKPT_PATH_MAX] = "";
    pt_status local = PT_OK, st_all;
    *reporter = 0;
    if (g->rank == 0) local = ckpt_begin(c->checkpoint_dir, step, tmp, sizeof tmp);
    if ((st_all = comm_agree(g, local, reporter))) return st_all;
    if ((st_all = comm_bcast(tmp, sizeof tmp, 0, g->world, "MPI_Bcast of the checkpoint directory"))) {
        *reporter = g->rank;
        return st_all;
    }

    /* every virtual stage is a shard; each rank writes its chunks' — shard vs by replica vs mod D, so
     * that the replicas (which hold the same values) share the writing */
    int n_all = 0, V = chunks * g->P, most = 0;
    for (int k = 0; k < chunks; k++) most = st[k].n_tensors > most ? st[k].n_tensors : most;
    ckpt_entry *all = model_entries(m, cuts, V, &n_all);
    unsigned long long *crc = calloc((size_t)n_all * CKPT_ARRAYS + 1, sizeof *crc);
    ckpt_tensor *ts = calloc((size_t)most + 1, sizeof *ts);
    uint32_t *mine = calloc((size_t)most * CKPT_ARRAYS + 1, sizeof *mine);
    if (!all || !crc || !ts || !mine) local = pt_fail(PT_ERR_NOMEM, "checkpoint: out of memory");
    crash_hook hook = {crash_after};
    for (int ci = 0; ci < chunks && !local; ci++) {
        const stage *s = &st[ci];
        if ((ci * g->P + g->stage) % g->D != g->replica) continue;
        int n = 0;
        for (int k = 0; k < s->n_tensors; k++) {
            const stage_tensor *t = &s->tensors[k];
            if (t->tied_to >= 0) continue; /* stored once, as its source */
            ts[n++] = (ckpt_tensor){t->name, t->layer, t->ndim, {t->shape[0], t->shape[1]}, t->numel,
                                    {s->params + t->offset, s->m1 + t->offset, s->m2 + t->offset}};
        }
        ckpt_shard shard = {ci * g->P + g->stage, V, s->first, s->last, step, c->seed, c->checkpoint_compression,
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
        ckpt_manifest man = {CKPT_FORMAT_VERSION, step, c->seed, V, g->D, m->n_layers, (int *)cuts, text,
                             n_all, all, pr->history, ""};
        snprintf(man.data_fingerprint, sizeof man.data_fingerprint, "%s", pr->data_hash);
        local = ckpt_write_manifest(tmp, &man);
        if (!local) local = ckpt_commit(c->checkpoint_dir, step);
        if (!local) local = ckpt_prune(c->checkpoint_dir, c->checkpoint_keep);
        if (!local) {
            char final[CKPT_PATH_MAX + 16];
            ckpt_step_dir(final, sizeof final, c->checkpoint_dir, step);
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

/* Reads one stage's tensors (a tied copy reads its source's stored values). */
static pt_status load_stage(ckpt_reader *rd, const ckpt_manifest *man, const model *m, stage *st, int moments)
{
    pt_status rc = PT_OK;
    for (int k = 0; !rc && k < st->n_tensors; k++) {
        const stage_tensor *t = &st->tensors[k];
        char source[STAGE_TENSOR_NAME_MAX];
        if (t->tied_to >= 0) model_param_name(source, sizeof source, m->tied_embed, "w");
        const ckpt_entry *e = &man->entries[ckpt_find(man, t->tied_to >= 0 ? source : t->name)];
        float *dst[CKPT_ARRAYS] = {st->params + t->offset, st->m1 + t->offset, st->m2 + t->offset};
        for (int a = 0; !rc && a < (moments ? CKPT_ARRAYS : 1); a++) rc = ckpt_read_tensor(rd, e, a, dst[a]);
    }
    return rc;
}

pt_status persist_load(const char *path, const comm_grid *g, const model *m, stage *st, int chunks, int moments,
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
    for (int c = 0; !local && c < chunks; c++) local = load_stage(&rd, &man, m, &st[c], moments);
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

/* ---- start-up: resume rules, the run directory, its history ---------------- */

/* The "section.key = value" lines of the keys of at least resume rule
 * `min_rule`, then `history`: with RESUME_NOTE and the history, the text that
 * identifies a run's numbers; with RESUME_REFUSE and NULL, its experiment.
 * Malloc'ed; NULL when out of memory. */
static char *identity_text(const config *c, config_resume_rule min_rule, const char *history)
{
    size_t n = config_to_lines(c, min_rule, NULL, 0), h = history ? strlen(history) : 0;
    char *t = malloc(n + h + 1);
    if (!t) return NULL;
    config_to_lines(c, min_rule, t, n + 1);
    memcpy(t + n, history ? history : "", h + 1);
    return t;
}

/* The first line where a and b differ, copied into la and lb. */
static void first_difference(const char *a, const char *b, char *la, char *lb, size_t len)
{
    const char *sa = a, *sb = b;
    for (; *a && *a == *b; a++, b++)
        if (*a == '\n') sa = a + 1, sb = b + 1;
    snprintf(la, len, "%.*s", (int)strcspn(sa, "\n"), sa);
    snprintf(lb, len, "%.*s", (int)strcspn(sb, "\n"), sb);
    if (!la[0]) snprintf(la, len, "(nothing)");
    if (!lb[0]) snprintf(lb, len, "(nothing)");
}

/* Every rank: the checkpoint's config against c. Fills *history with the
 * history the resumed run records and *step with the checkpoint's step;
 * prints the notes on rank 0. */
static pt_status resume_rules(const char *path, const config *c, const comm_grid *g, const char *data_hash,
                              char **history, long *step)
{
    char dir[CKPT_PATH_MAX];
    ckpt_manifest man;
    memset(&man, 0, sizeof man);
    config before;
    config_change *ch = NULL;
    pt_status st = ckpt_resolve(path, dir, sizeof dir);
    if (!st) st = ckpt_read_manifest(dir, &man);
    if (!st) st = config_load_text(&before, man.config_text, dir);
    if (st) goto done;
    *step = man.step;
    int n = config_changes(&before, c, NULL, 0);
    if (n > 0 && !(ch = calloc((size_t)n, sizeof *ch))) {
        st = pt_fail(PT_ERR_NOMEM, "out of memory");
        goto done;
    }
    config_changes(&before, c, ch, n);
    if (man.data_fingerprint[0] && strcmp(man.data_fingerprint, data_hash)) {
        st = pt_fail(PT_ERR_MISMATCH,
                     "checkpoint %s was trained on other data than this run reads (data.path = %s): its data "
                     "fingerprint is %s, this run's is %s; resume with the data it was trained on, or start a "
                     "new run from its weights with --init %s",
                     dir, c->data_path[0] ? c->data_path : "(the default)", man.data_fingerprint, data_hash, path);
        goto done;
    }
    char refused[2048] = "";
    size_t pos = 0, extra = 0;
    for (int i = 0; i < n; i++) {
        if (ch[i].rule != RESUME_REFUSE) continue;
        int w = snprintf(refused + pos, sizeof refused - pos, "%s%s = %s (the checkpoint's run has %s)",
                         pos ? ", " : "", ch[i].key, ch[i].after, ch[i].before);
        if (w > 0 && pos + (size_t)w < sizeof refused) pos += (size_t)w; else extra++;
    }
    if (pos) {
        st = pt_fail(PT_ERR_MISMATCH,
                     "cannot resume checkpoint %s with %s%s: these keys define the stored state (the model, "
                     "the data and its order, initialisation, dropout) of its %ld steps. Resume with the "
                     "checkpoint's values (pipetrain-ckpt config %s prints its config), or start a new run from its "
                     "weights with --init %s and another checkpoint.dir",
                     dir, refused, extra ? " and more" : "", man.step, dir, path);
        goto done;
    }
    size_t old = man.history ? strlen(man.history) : 0, need = old + 1;
    for (int i = 0; i < n; i++)
        if (ch[i].rule == RESUME_NOTE) need += strlen(ch[i].key) + strlen(ch[i].before) + strlen(ch[i].after) + 64;
    *history = malloc(need);
    if (!*history) {
        st = pt_fail(PT_ERR_NOMEM, "out of memory");
        goto done;
    }
    memcpy(*history, man.history ? man.history : "", old + 1);
    for (int i = 0; i < n; i++) {
        if (ch[i].rule != RESUME_NOTE) continue;
        old += (size_t)snprintf(*history + old, need - old, "step %ld: %s = %s -> %s\n", man.step, ch[i].key,
                                ch[i].before, ch[i].after);
        if (g->rank == 0)
            printf("note: resuming step %ld with %s = %s (the checkpoint's run had %s); its checkpoints record "
                   "the change\n", man.step, ch[i].key, ch[i].after, ch[i].before);
    }
    fflush(stdout);
done:
    ckpt_manifest_free(&man);
    free(ch);
    return st;
}

/* Rank 0, holding the lock: refuses a run directory that holds checkpoints
 * this run must not mix with or replace. resume_step < 0 for a fresh run. */
static pt_status check_run_dir(const config *c, const char *history, long resume_step)
{
    ckpt_step_entry *steps = NULL;
    int n = 0;
    char *mine = identity_text(c, RESUME_NOTE, history), *mine_refuse = identity_text(c, RESUME_REFUSE, NULL);
    pt_status st = mine && mine_refuse ? ckpt_list_steps(c->checkpoint_dir, &steps, &n)
                                       : pt_fail(PT_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < n; i++) {
        char dir[CKPT_PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", c->checkpoint_dir, steps[i].name);
        ckpt_manifest man;
        memset(&man, 0, sizeof man);
        config theirs;
        /* an unreadable checkpoint is no run's: verify reports it, prune removes it in time */
        if (ckpt_read_manifest(dir, &man) || config_load_text(&theirs, man.config_text, dir)) {
            ckpt_manifest_free(&man);
            pt_clear_error();
            continue;
        }
        int past = resume_step >= 0 && steps[i].step <= resume_step;
        char *their_refuse = identity_text(&theirs, RESUME_REFUSE, NULL);
        char *their_id = past ? NULL : identity_text(&theirs, RESUME_NOTE, man.history);
        if (!their_refuse || (!past && !their_id)) st = pt_fail(PT_ERR_NOMEM, "out of memory");
        int same_experiment = !st && !strcmp(their_refuse, mine_refuse);
        const char *other = past ? their_refuse : their_id, *ours = past ? mine_refuse : mine;
        if (!st && strcmp(other, ours)) {
            char la[512], lb[512];
            first_difference(other, ours, la, lb, sizeof la);
            st = pt_fail(PT_ERR_MISMATCH,
                         "checkpoint.dir %s holds %s, a checkpoint of %s ('%s' there, '%s' in this run)%s: "
                         "choose another checkpoint.dir, %sor remove %s",
                         c->checkpoint_dir, dir,
                         same_experiment && resume_step >= 0 ? "this run's history before this resume's changes"
                                                             : "another run",
                         la, lb, past ? "" : "; this run would replace it",
                         resume_step < 0 && !same_experiment ? "resume that run with --resume, " : "", dir);
        }
        free(their_refuse);
        free(their_id);
        ckpt_manifest_free(&man);
    }
    free(steps);
    free(mine_refuse);
    free(mine);
    return st;
}

pt_status persist_start(persist_run *pr, const config *c, const comm_grid *g, const char *resume,
                        const char *init, const char *data_hash, const char *command, int *reporter)
{
    memset(pr, 0, sizeof *pr);
    snprintf(pr->data_hash, sizeof pr->data_hash, "%s", data_hash);
    long resume_step = -1;
    pt_status local = PT_OK, st;
    if (resume) {
        local = resume_rules(resume, c, g, data_hash, &pr->history, &resume_step);
    } else {
        char line[CKPT_PATH_MAX + 64] = "";
        if (init) snprintf(line, sizeof line, "step 0: initialised from the weights of %s\n", init);
        pr->history = strdup(line);
        if (!pr->history) local = pt_fail(PT_ERR_NOMEM, "out of memory");
    }
    if ((st = comm_agree(g, local, reporter)) || !c->checkpoint_dir[0]) return st;

    /* rank 0 makes the directory, checks HDF5 can write there, takes the lock */
    char note[2048] = "", probe[64];
    if (g->rank == 0) {
        local = ckpt_check_dir_writable(c->checkpoint_dir, ".probe-rank-0.h5");
        if (local == PT_ERR_LOCK) pt_wrap(local, "checkpoint.dir %s cannot hold checkpoints: ", c->checkpoint_dir);
        if (!local) local = rundir_lock_take(c->checkpoint_dir, command, &pr->lock, note, sizeof note);
    }
    if ((st = comm_agree(g, local, reporter))) return st;
    if (g->rank == 0 && note[0]) printf("note: %s\n", note);

    /* every other rank: the same directory (rank 0's lock file), writable */
    char lock[RUNDIR_LOCK_MAX];
    if (g->rank == 0) snprintf(lock, sizeof lock, "%s", pr->lock.text);
    if ((st = comm_bcast(lock, sizeof lock, 0, g->world, "MPI_Bcast of the run directory's lock"))) {
        *reporter = g->rank;
        return st;
    }
    char why[1024] = ""; /* this rank's problem: its kind ('L' a locking problem, 'E' any other), then the text */
    if (g->rank != 0) {
        char seen[RUNDIR_LOCK_MAX];
        if (rundir_lock_read(c->checkpoint_dir, seen, sizeof seen) || strcmp(seen, lock)) {
            snprintf(why, sizeof why, "Erank %d (host %s) does not see the run directory that rank 0 made (its lock "
                     "file is %s there)", g->rank, g->host, seen[0] ? "different" : "missing");
        } else {
            snprintf(probe, sizeof probe, ".probe-rank-%d.h5", g->rank);
            pt_status w = ckpt_check_dir_writable(c->checkpoint_dir, probe);
            const char *text = pt_last_error();
            size_t dl = strlen(c->checkpoint_dir); /* "checkpoint.dir DIR: " is said once, below */
            if (!strncmp(text, "checkpoint.dir ", 15) && strlen(text) > 17 + dl &&
                !strncmp(text + 15, c->checkpoint_dir, dl) && !strncmp(text + 15 + dl, ": ", 2))
                text += 17 + dl;
            if (w) snprintf(why, sizeof why, "%crank %d (host %s): %s", w == PT_ERR_LOCK ? 'L' : 'E', g->rank, g->host,
                            text);
            pt_clear_error();
        }
    }
    /* rank 0 names every rank that cannot use the directory, in one message */
    void *all = NULL;
    long total = 0;
    if ((st = comm_gatherv_bytes(why, why[0] ? (long)strlen(why) + 1 : 0, &all, &total, 0, g->world,
                                 "MPI_Gatherv of the ranks' checkpoint.dir checks"))) {
        *reporter = g->rank;
        return st;
    }
    if (g->rank == 0 && total > 0) {
        char msg[4096];
        int n = snprintf(msg, sizeof msg, "checkpoint.dir %s cannot serve every rank: ", c->checkpoint_dir), more = 0;
        int any_other = 0, listed = 0;
        for (const char *p = all; p < (const char *)all + total; p += strlen(p) + 1) {
            any_other |= p[0] != 'L';
            if ((size_t)n + strlen(p) + 300 < sizeof msg)
                n += snprintf(msg + n, sizeof msg - (size_t)n, "%s%s", listed++ ? "; " : "", p + 1);
            else
                more++;
        }
        if (more) n += snprintf(msg + n, sizeof msg - (size_t)n, "; and %d more ranks", more);
        if (any_other)
            snprintf(msg + n, sizeof msg - (size_t)n, ". checkpoint.dir must be a directory every rank can write, at "
                     "the same path on a file system that every host shares");
        local = pt_fail(any_other ? PT_ERR_IO : PT_ERR_LOCK, "%s", msg);
    }
    free(all);
    if (!local && g->rank == 0) local = check_run_dir(c, pr->history, resume_step);
    return comm_agree(g, local, reporter);
}

pt_status persist_resume_auto(const config *c, const comm_grid *g, char *path, size_t len, int *reporter)
{
    char found[CKPT_PATH_MAX] = "", latest[CKPT_PATH_MAX + 16];
    pt_status local = PT_OK, st;
    if (g->rank == 0) {
        snprintf(latest, sizeof latest, "%s/latest", c->checkpoint_dir);
        struct stat sb;
        if (lstat(latest, &sb) == 0 || (errno != ENOENT && errno != ENOTDIR)) /* one: it must name a whole checkpoint */
            local = ckpt_resolve(c->checkpoint_dir, found, sizeof found);
        if (!local && strlen(found) >= len)
            local = pt_fail(PT_ERR_INVALID, "checkpoint path %s is too long", found);
        if (local) local = pt_wrap(local, "--resume auto: ");
    }
    if ((st = comm_agree(g, local, reporter))) return st;
    if ((st = comm_bcast(found, sizeof found, 0, g->world, "MPI_Bcast of the checkpoint to resume"))) {
        *reporter = g->rank;
        return st;
    }
    snprintf(path, len, "%s", found);
    if (g->rank == 0 && !found[0]) {
        printf("--resume auto: no checkpoint in %s yet: starting a new run at step 0\n", c->checkpoint_dir);
        fflush(stdout);
    }
    return PT_OK;
}

void persist_finish(persist_run *pr)
{
    rundir_lock_release(&pr->lock);
    free(pr->history);
    pr->history = NULL;
}
