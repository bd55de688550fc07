/* safefile.c — reading files without surprises. */
#include "safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAFEFILE_MAX_READ (1u << 30) /* largest single read */

const char *safefile_kind(unsigned mode)
{
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "a special file";
}

static pt_status not_regular(const char *path, const char *what, const char *instead, unsigned mode)
{
    return pt_fail(PT_ERR_INVALID, "%s %s is %s, not a regular file: %s", what, path, safefile_kind(mode),
                   instead);
}

/* stat first, so that nothing but a regular file is ever opened (opening a
 * FIFO blocks until a writer comes; opening a device may act on it); then
 * open without blocking and check the opened file again, in case the name
 * changed in between. */
pt_status safefile_open(const char *path, const char *what, const char *instead, uint64_t max_bytes,
                        int *fd, uint64_t *size)
{
    struct stat sb;
    *fd = -1;
    *size = 0;
    if (stat(path, &sb) != 0) return pt_fail(PT_ERR_IO, "cannot open %s %s: %s", what, path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return not_regular(path, what, instead, (unsigned)sb.st_mode);
    int f = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (f < 0) return pt_fail(PT_ERR_IO, "cannot open %s %s: %s", what, path, strerror(errno));
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        return pt_fail(PT_ERR_IO, "cannot open %s %s: fstat: %s", what, path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return not_regular(path, what, instead, (unsigned)sb.st_mode);
    }
    if (sb.st_size < 0 || (uint64_t)sb.st_size > max_bytes) {
        close(f);
        return pt_fail(PT_ERR_INVALID, "%s %s is %lld bytes, more than the %llu bytes (%.1f MiB) it may have: "
                       "give a smaller file",
                       what, path, (long long)sb.st_size, (unsigned long long)max_bytes,
                       (double)max_bytes / 1048576.0);
    }
    int fl = fcntl(f, F_GETFL);
    if (fl < 0 || fcntl(f, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(f);
        return pt_fail(PT_ERR_IO, "cannot open %s %s: fcntl: %s", what, path, strerror(e));
    }
    *fd = f;
    *size = (uint64_t)sb.st_size;
    return PT_OK;
}

pt_status safefile_read(int fd, const char *path, void *buf, size_t len, size_t *got)
{
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > SAFEFILE_MAX_READ) want = SAFEFILE_MAX_READ;
        ssize_t r = read(fd, (uint8_t *)buf + *got, want);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return pt_fail(PT_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        if (r == 0) break;
        *got += (size_t)r;
    }
    return PT_OK;
}
