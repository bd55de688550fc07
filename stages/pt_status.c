#include "pt_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PT_ERRBUF 2048

static _Thread_local char errbuf[PT_ERRBUF];

static const char *const names[PT_STATUS_COUNT] = {
    [PT_OK] = "ok",
    [PT_ERR_INVALID] = "invalid argument",
    [PT_ERR_IO] = "i/o error",
    [PT_ERR_FORMAT] = "bad file format",
    [PT_ERR_NOMEM] = "out of memory",
    [PT_ERR_MPI] = "MPI error",
    [PT_ERR_NONFINITE] = "non-finite value",
    [PT_ERR_CHECKSUM] = "checksum mismatch",
    [PT_ERR_MISMATCH] = "mismatch",
    [PT_ERR_HDF5] = "HDF5 error",
    [PT_ERR_LOCK] = "file locking failed",
    [PT_ERR_TIMEOUT] = "timed out",
};

const char *pt_status_str(pt_status s)
{
    if ((unsigned)s >= PT_STATUS_COUNT) return "unknown status";
    return names[s];
}

pt_status pt_fail(pt_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return s;
}

pt_status pt_wrap(pt_status s, const char *fmt, ...)
{
    char prefix[512], old[PT_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errbuf, sizeof old);
    size_t n = strlen(prefix);
    if (n >= sizeof errbuf) n = sizeof errbuf - 1;
    memcpy(errbuf, prefix, n);
    size_t rest = strnlen(old, sizeof old - 1);
    if (rest > sizeof errbuf - 1 - n) rest = sizeof errbuf - 1 - n;
    memcpy(errbuf + n, old, rest);
    errbuf[n + rest] = '\0';
    return s;
}

const char *pt_last_error(void) { return errbuf; }

void pt_clear_error(void) { errbuf[0] = '\0'; }
