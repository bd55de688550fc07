/* pt_status.h — status codes and the last error message (one per thread).
 *
 * Library functions return a pt_status and, on failure, leave a message in a
 * thread-local buffer that names the thing that went wrong (rank, stage,
 * layer, tensor, file) and what was expected versus found. Only main()
 * functions and tools decide to exit. */
#ifndef PT_STATUS_H
#define PT_STATUS_H

typedef enum {
    PT_OK = 0,
    PT_ERR_INVALID,   /* bad argument, config value or combination */
    PT_ERR_IO,        /* a file could not be opened, read or written */
    PT_ERR_FORMAT,    /* a file has the wrong magic, size or layout */
    PT_ERR_NOMEM,     /* an allocation failed */
    PT_ERR_MPI,       /* an MPI call failed */
    PT_ERR_NONFINITE, /* a NaN or Inf in a loss or gradient */
    PT_ERR_CHECKSUM,  /* stored data does not match its checksum */
    PT_ERR_MISMATCH,  /* a file or peer holds something other than expected */
    PT_ERR_HDF5,      /* an HDF5 call failed */
    PT_ERR_LOCK,      /* a file could not be locked (file system without working locks) */
    PT_ERR_TIMEOUT,   /* a peer did not answer within the time limit (train.timeout) */
    PT_STATUS_COUNT
} pt_status;

/* A short fixed name for a status ("invalid argument", ...). */
const char *pt_status_str(pt_status s);

/* Formats a message into the thread's error buffer and returns s, so that
 * `return pt_fail(PT_ERR_IO, "cannot open %s: %s", path, strerror(errno));`
 * both records and propagates the error. */
pt_status pt_fail(pt_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prepends context ("stage 1: ") to the current message; returns s. */
pt_status pt_wrap(pt_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The last message recorded on this thread ("" when none). */
const char *pt_last_error(void);

/* Clears the thread's message. */
void pt_clear_error(void);

#endif
