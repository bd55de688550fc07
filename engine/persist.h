/* persist.h — saving and loading checkpoints from a running job: the MPI side
 * of the commit protocol of checkpoint/ckpt.h. Both functions are collective
 * over the grid's world and return the same status on every rank; on failure
 * *reporter is the rank whose message names the problem. */
#ifndef PT_PERSIST_H
#define PT_PERSIST_H

#include "comm.h"
#include "config.h"
#include "layers.h"
#include "stage.h"

/* Saves the state after `step` steps to c->checkpoint_dir/step-<step>:
 * every stage writes and fsyncs its shard under a temporary name, the ranks
 * agree that all shards succeeded, rank 0 writes the manifest, renames the
 * directory into place, replaces `latest` and prunes to checkpoint.keep.
 * crash_after ≥ 0 (test only) makes this rank die after writing that many
 * tensors of its shard. */
pt_status persist_save(const config *c, const comm_grid *g, const model *m, const int *cuts,
                       const stage *st, long step, int crash_after, int *reporter);

/* Loads the checkpoint that `path` names (a run directory's latest, or a
 * checkpoint directory) into this rank's stage, whatever the partition it was
 * saved with: checks the format version, that the checkpoint holds exactly
 * this model's tensors with the same shapes, and every checksum read. With
 * moments = 0 only the parameters are loaded (a fresh optimizer). *step is
 * the step the checkpoint was taken after. */
pt_status persist_load(const char *path, const comm_grid *g, const model *m, stage *st, int moments,
                       long *step, int *reporter);

/* Reads the config stored in the manifest of the checkpoint `path` names (not
 * collective): what `pipetrain generate` runs with. */
pt_status persist_read_config(const char *path, config *c);

#endif
