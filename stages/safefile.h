/* safefile.h — reading files without surprises.
 *
 * Every file pipetrain reads (config, data, a run directory's latest and
 * lock) goes through safefile_open: anything that is not a regular file (a
 * FIFO, a device, a socket, a directory) is refused without blocking on it,
 * a file over a bound is refused, and the reader reads no more than the size
 * the file had at open. Below both engine/ and checkpoint/, which both read
 * small files this way. No MPI. */
#ifndef PT_SAFEFILE_H
#define PT_SAFEFILE_H

#include <stddef.h>
#include <stdint.h>

#include "pt_status.h"

/* What the stat mode `mode` says a file is, for messages: "a regular file",
 * "a directory", "a FIFO", "a character device", "a block device",
 * "a socket", "a symbolic link" or "a special file". */
const char *safefile_kind(unsigned mode);

/* Opens `path` for reading (not collective). `what` names it in messages
 * ("data.path", "config file", "IDX images file") and `instead` says what to
 * give instead of something that is not a regular file. Errors (nothing is
 * left open):
 *   PT_ERR_IO       "cannot open <what> <path>: <reason>"
 *   PT_ERR_INVALID  "<what> <path> is a FIFO, not a regular file: <instead>"
 *                   (without opening it, so a FIFO never blocks)
 *   PT_ERR_INVALID  "<what> <path> is N bytes, more than the M bytes ..." when
 *                   the file is larger than max_bytes.
 * On success *fd is a descriptor with blocking reads that the caller closes
 * and *size the file's size in bytes at open: read no more than that. */
pt_status safefile_open(const char *path, const char *what, const char *instead, uint64_t max_bytes,
                        int *fd, uint64_t *size);

/* Reads up to len bytes of fd into buf (short reads and EINTR retried);
 * *got says how many, fewer than len only at the end of the file. A read
 * error is PT_ERR_IO "cannot read <path>: <reason>". Not collective. */
pt_status safefile_read(int fd, const char *path, void *buf, size_t len, size_t *got);

#endif
