/* rundir.c — the lock of a run directory (see rundir.h). */
#include "rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "safefile.h"

/* The first line of a small file (boot id), "" when unreadable. */
static void read_first_line(const char *path, char *out, size_t len)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (!fgets(out, (int)len, f)) out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

/* Start time of process pid in clock ticks after boot (field 22 of
 * /proc/PID/stat), or -1 when there is no such process or it has ended (a
 * zombie not yet reaped by its parent counts as ended). */
static long long process_start(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return -1;
    long long v = -1;
    /* after ") " come fields 3, 4, ...: skip 19 to reach field 22 */
    p++;
    for (int field = 3; field <= 22 && p; field++) {
        while (*p == ' ') p++;
        if (field == 3 && (*p == 'Z' || *p == 'X')) return -1; /* field 3: the state */
        if (field == 22) v = strtoll(p, NULL, 10);
        p = strchr(p, ' ');
    }
    return v;
}

/* The value of "key value" in a lock text, "" when absent. */
static void lock_field(const char *text, const char *key, char *out, size_t len)
{
    out[0] = '\0';
    size_t k = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, key, k) && p[k] == ' ') {
            size_t n = strcspn(p + k + 1, "\n");
            snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), p + k + 1);
            return;
        }
    }
}

pt_status rundir_lock_read(const char *run_dir, char *out, size_t len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", run_dir, RUNDIR_LOCK_NAME);
    int fd = -1;
    uint64_t size = 0;
    size_t n = 0;
    pt_status st = safefile_open(path, "run directory lock", "remove it", RUNDIR_LOCK_MAX, &fd, &size);
    if (!st) st = safefile_read(fd, path, out, size < len - 1 ? (size_t)size : len - 1, &n);
    if (fd >= 0) close(fd);
    out[st ? 0 : n] = '\0';
    return st;
}

enum { HOLDER_ALIVE, HOLDER_DEAD, HOLDER_UNKNOWN };

/* Does the holder still run? Known only for a process of this boot of this
 * machine: dead when its pid is gone or now names a process started at
 * another time. */
static int holder_state(const char *text)
{
    char boot[128], mine[128], pid_s[32], start_s[32];
    lock_field(text, "boot", boot, sizeof boot);
    read_first_line("/proc/sys/kernel/random/boot_id", mine, sizeof mine);
    if (!boot[0] || !mine[0] || strcmp(boot, mine)) return HOLDER_UNKNOWN;
    lock_field(text, "pid", pid_s, sizeof pid_s);
    lock_field(text, "start", start_s, sizeof start_s);
    long pid = strtol(pid_s, NULL, 10);
    if (pid <= 0) return HOLDER_UNKNOWN;
    long long start = process_start(pid);
    return start < 0 || start != strtoll(start_s, NULL, 10) ? HOLDER_DEAD : HOLDER_ALIVE;
}

static void describe_holder(const char *text, char *out, size_t len)
{
    char host[256], pid[32], since[64], job[64], cmd[512];
    lock_field(text, "host", host, sizeof host);
    lock_field(text, "pid", pid, sizeof pid);
    lock_field(text, "since", since, sizeof since);
    lock_field(text, "job", job, sizeof job);
    lock_field(text, "command", cmd, sizeof cmd);
    snprintf(out, len, "pid %s on host %s since %s%s%s%s%s", pid[0] ? pid : "?", host[0] ? host : "?",
             since[0] ? since : "?", job[0] && strcmp(job, "-") ? ", Slurm job " : "",
             job[0] && strcmp(job, "-") ? job : "", cmd[0] ? ": " : "", cmd);
}

/* Removes a stale lock whose text we read, unless someone replaced it in
 * between: the lock is renamed aside (atomic), compared, and put back when
 * it is not the one judged stale. */
static void break_stale(const char *path, const char *stale_text)
{
    char aside[4300], now[RUNDIR_LOCK_MAX];
    snprintf(aside, sizeof aside, "%s.stale.%ld", path, (long)getpid());
    if (rename(path, aside) != 0) return;
    FILE *f = fopen(aside, "r");
    size_t n = f ? fread(now, 1, sizeof now - 1, f) : 0;
    if (f) fclose(f);
    now[n] = '\0';
    /* not the lock judged stale (a live run replaced it): put it back, and keep
     * it aside rather than lose it when another lock took its place meanwhile */
    if (strcmp(now, stale_text) != 0 && link(aside, path) != 0) return;
    unlink(aside);
}

pt_status rundir_lock_take(const char *run_dir, const char *command, rundir_lock *lk, char *note,
                           size_t note_len)
{
    memset(lk, 0, sizeof *lk);
    if (note_len) note[0] = '\0';
    char path[sizeof lk->path];
    if (snprintf(path, sizeof path, "%s/%s", run_dir, RUNDIR_LOCK_NAME) >= (int)sizeof path)
        return pt_fail(PT_ERR_INVALID, "checkpoint.dir %s: the path is too long", run_dir);

    char host[256] = "?", boot[128], since[64], text[RUNDIR_LOCK_MAX];
    gethostname(host, sizeof host - 1);
    read_first_line("/proc/sys/kernel/random/boot_id", boot, sizeof boot);
    time_t t = time(NULL);
    struct tm tm;
    strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%S%z", localtime_r(&t, &tm));
    const char *job = getenv("SLURM_JOB_ID");
    snprintf(text, sizeof text, "host %s\npid %ld\nboot %s\nstart %lld\nsince %s\njob %s\ncommand %s\n", host,
             (long)getpid(), boot, process_start((long)getpid()), since, job && *job ? job : "-", command);

    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd >= 0) {
            size_t len = strlen(text);
            int ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
            int e = errno;
            if (close(fd) != 0) ok = 0;
            if (!ok) {
                unlink(path);
                return pt_fail(PT_ERR_IO, "checkpoint.dir %s: cannot write its lock file %s: %s", run_dir, path,
                               strerror(e));
            }
            snprintf(lk->path, sizeof lk->path, "%s", path);
            snprintf(lk->text, sizeof lk->text, "%s", text);
            return PT_OK;
        }
        if (errno != EEXIST)
            return pt_fail(PT_ERR_IO, "checkpoint.dir %s: cannot create its lock file %s: %s", run_dir, path,
                           strerror(errno));
        char held[RUNDIR_LOCK_MAX], who[1024];
        struct stat sb;
        if (rundir_lock_read(run_dir, held, sizeof held)) {
            if (lstat(path, &sb) != 0 && errno == ENOENT) continue; /* removed meanwhile: try again */
            return pt_wrap(PT_ERR_IO, "checkpoint.dir %s holds a lock file this run cannot read (remove it if no "
                           "run uses the directory): ", run_dir);
        }
        describe_holder(held, who, sizeof who);
        int state = holder_state(held);
        /* a run that just ended (its job torn down by mpirun) may take a moment to exit */
        for (int waited = 0; state == HOLDER_ALIVE && waited < 50; waited++) {
            struct timespec pause = {0, 200 * 1000 * 1000};
            nanosleep(&pause, NULL);
            state = holder_state(held);
        }
        if (state == HOLDER_ALIVE)
            return pt_fail(PT_ERR_INVALID,
                           "checkpoint.dir %s is in use by another run, still running (%s): wait for it to "
                           "end or choose another checkpoint.dir", run_dir, who);
        if (state == HOLDER_UNKNOWN)
            return pt_fail(PT_ERR_INVALID,
                           "checkpoint.dir %s is in use by another run (%s), on another host or before this "
                           "machine's last boot, so this host cannot check it: wait for it to end or choose "
                           "another checkpoint.dir; if that run is dead, remove %s", run_dir, who, path);
        if (note_len)
            snprintf(note, note_len, "took over the stale lock of %s of a run that no longer runs (%s)", run_dir,
                     who);
        break_stale(path, held);
    }
    return pt_fail(PT_ERR_IO, "checkpoint.dir %s: could not take its lock file %s (it keeps changing)", run_dir,
                   path);
}

void rundir_lock_release(rundir_lock *lk)
{
    if (!lk->path[0]) return;
    char now[RUNDIR_LOCK_MAX];
    FILE *f = fopen(lk->path, "r");
    size_t n = f ? fread(now, 1, sizeof now - 1, f) : 0;
    if (f) fclose(f);
    now[n] = '\0';
    if (!strcmp(now, lk->text)) unlink(lk->path);
    lk->path[0] = '\0';
}
