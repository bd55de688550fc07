/* rundir.h — a run directory (checkpoint.dir) as a place one run owns.
 *
 * A training run that saves checkpoints holds its run directory with a lock
 * file, <run>/lock, that names the holder (host, process id, boot id and
 * process start time, start time of the run, Slurm job id when there is
 * one). A second run is refused with that name; a lock left by a run that
 * died on this machine (same boot, its process gone or another process in
 * its place) is recognised as stale and taken over. A lock of another host
 * cannot be checked from here: the message says how to remove it by hand.
 *
 * The lock file is created with O_CREAT|O_EXCL (atomic on local file
 * systems and on NFSv3 and later) and does not depend on flock or fcntl
 * locks, which many cluster file systems lack. Not collective, no MPI: the
 * engine's rank 0 takes it and the other ranks read it to check that they
 * see the same directory (engine/persist.c). */
#ifndef PT_RUNDIR_H
#define PT_RUNDIR_H

#include <stddef.h>

#include "pt_status.h"

#define RUNDIR_LOCK_NAME "lock"
#define RUNDIR_LOCK_MAX 1024 /* bytes of a lock file's text */

typedef struct {
    char path[4096];            /* <run>/lock; "" when not held */
    char text[RUNDIR_LOCK_MAX]; /* what this process wrote into it */
} rundir_lock;

/* Takes the lock of run_dir (which must exist). `command` describes the run
 * for a later holder's message ("pipetrain train examples/x.ini"). When a
 * stale lock was taken over, note (note_len bytes) says whose it was;
 * otherwise note is "". Errors: PT_ERR_INVALID naming the live holder and
 * what to do (wait, choose another checkpoint.dir, or remove the lock of a
 * dead run on another host); PT_ERR_IO when the file cannot be created or
 * written. */
pt_status rundir_lock_take(const char *run_dir, const char *command, rundir_lock *lk, char *note,
                           size_t note_len);

/* Removes the lock if it is still this process's (a no-op otherwise, and
 * when lk holds nothing). Never fails. */
void rundir_lock_release(rundir_lock *lk);

/* Reads run_dir's lock file text into out (len bytes, NUL-terminated).
 * Errors: PT_ERR_IO when there is none or it cannot be read. */
pt_status rundir_lock_read(const char *run_dir, char *out, size_t len);

#endif
