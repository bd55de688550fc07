/* noflock.c — LD_PRELOAD shim that makes flock() fail with ENOLCK, as on a
 * file system without working locks (NFS without lockd). HDF5 locks every
 * file it opens or creates unless HDF5_USE_FILE_LOCKING=FALSE; with this
 * shim loaded it fails as it does there ("unable to lock file, errno = 37").
 *   LD_PRELOAD=/path/to/noflock.so pipetrain-ckpt verify RUN */
#include <errno.h>
#include <sys/file.h>

int flock(int fd, int operation)
{
    (void)fd;
    (void)operation;
    errno = ENOLCK;
    return -1;
}
