/* persist.h — saving and loading checkpoints from a running job: the MPI side
 * of the commit protocol of checkpoint/ckpt.h. Both functions are collective
 * over the grid's world and return the same status on every rank; on failure
 * *reporter is the rank whose message names the problem. */
#ifndef PT_PERSIST_H
#define PT_PERSIST_H

#include "comm.h"
#include "rundir.h"
#include "config.h"
#include "layers.h"
#include "stage.h"

/* What a training run carries from start-up to each checkpoint it writes. */
typedef struct {
    rundir_lock lock;   /* rank 0: the lock of checkpoint.dir while the run holds it */
    char *history;      /* the history its checkpoints record (malloc'ed, "" for a fresh run) */
    char data_hash[33]; /* dataset_fingerprint of the data it reads */
} persist_run;

/* Saves the state after `step` steps to c->checkpoint_dir/step-<step>:
 * every virtual stage (st[0..chunks−1] on this rank: chunk c is virtual
 * stage c·P + g->stage, layers [cuts[vs], cuts[vs+1]) of the chunks·P + 1 cut
 * points) writes and fsyncs its shard under a temporary name — shard vs by
 * replica vs mod D, the replicas holding the same values —, the ranks
 * agree that all shards succeeded, rank 0 writes the manifest, renames the
 * directory into place, replaces `latest` and prunes to checkpoint.keep.
 * The manifest records pr's history and data fingerprint.
 * crash_after ≥ 0 (test only) makes this rank die after writing that many
 * tensors of its shard. */
pt_status persist_save(const config *c, const comm_grid *g, const persist_run *pr, const model *m,
                       const int *cuts, const stage *st, int chunks, long step, int crash_after, int *reporter);

/* Loads the checkpoint that `path` names (a run directory's latest, or a
 * checkpoint directory) into this rank's stages st[0..chunks−1], whatever the
 * partition, chunks and schedule it was saved with: checks the format version, that the checkpoint holds exactly
 * this model's tensors with the same shapes, and every checksum read. With
 * moments = 0 only the parameters are loaded (a fresh optimizer). *step is
 * the step the checkpoint was taken after. */
pt_status persist_load(const char *path, const comm_grid *g, const model *m, stage *st, int chunks, int moments,
                       long *step, int *reporter);

/* Reads the config stored in the manifest of the checkpoint `path` names (not
 * collective): what `pipetrain generate` runs with. */
pt_status persist_read_config(const char *path, config *c);

/* Collective over the grid's world; every rank returns the same status and
 * *reporter names the rank whose message says what is wrong. Called by a
 * training run before step 1:
 *  - with `resume` (a checkpoint or run directory): compares the
 *    checkpoint's config with c key by key under the rules of
 *    config_resume_rule (REFUSE keys: PT_ERR_MISMATCH naming every refused
 *    key with both values; NOTE keys: rank 0 prints one note line each and
 *    they are appended to the history as "step N: key = before -> after");
 *    a checkpoint whose data fingerprint differs from data_hash is refused;
 *  - with `init`: the history says which weights the run started from;
 *  - with c->checkpoint_dir set: rank 0 creates the directory, checks that
 *    an HDF5 file can be created there (PT_ERR_LOCK when HDF5 file locking
 *    fails, with the fix) and takes the run lock (rundir.h); every other
 *    rank checks that it sees rank 0's lock file (a shared file system) and
 *    can create a file there, and rank 0 names every rank (and host) that
 *    cannot in one message (PT_ERR_IO; PT_ERR_LOCK when all are locking
 *    problems); rank 0 refuses a directory that holds
 *    checkpoints of another run, or later checkpoints of this run's history
 *    that the resumed run would replace with different ones.
 * On success pr holds the lock (rank 0) and the history; release with
 * persist_finish on every path. `command` describes the run in the lock. */
pt_status persist_start(persist_run *pr, const config *c, const comm_grid *g, const char *resume,
                        const char *init, const char *data_hash, const char *command, int *reporter);

/* Collective over the grid's world (ends in comm_agree): what `--resume
 * auto` resumes from. Rank 0 looks in c->checkpoint_dir (which must be
 * set): when it holds a 'latest' file, the checkpoint it names (checked as
 * ckpt_resolve does) is broadcast into path (len bytes); when it holds none
 * (or does not exist yet), path is "" and the run starts fresh. Rank 0
 * prints which. Errors: those of ckpt_resolve for a 'latest' that names no
 * complete checkpoint (never a fresh start over it), PT_ERR_MPI. */
pt_status persist_resume_auto(const config *c, const comm_grid *g, char *path, size_t len, int *reporter);

/* Releases what persist_start took (the lock on rank 0, the history). Not
 * collective; safe to call on a zeroed persist_run. */
void persist_finish(persist_run *pr);

#endif
