/* ckpt.c — HDF5 checkpoints, one shard per stage (see ckpt.h and
 * docs/checkpoint-format.md).
 *
 * HDF5 style as in netCDF-C: every hid_t starts H5I_INVALID_HID, is closed
 * once behind a guard, and one goto ladder per function cleans up in reverse
 * order. HDF5's own error printing is switched off; errors are recorded with
 * pt_fail naming the file and the tensor, followed by the innermost message of
 * the HDF5 error stack when there is one. */
#define _GNU_SOURCE /* renameat2(RENAME_EXCHANGE) */

#include "ckpt.h"
#include "safefile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>
#include <libdeflate.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ckpt.c assumes a little-endian host (crc32 is defined over little-endian float bytes)"
#endif

/* Chunks of a compressed dataset hold at most this many bytes (whole rows). */
#define CKPT_CHUNK_BYTES ((size_t)4 << 20)

/* Bounds on sizes read from a file, checked before anything is allocated. */
#define CKPT_STRING_MAX ((size_t)16 << 20) /* a string attribute (the config text) */
#define CKPT_ENTRIES_MAX ((hsize_t)1 << 24) /* rows of /index */
#define CKPT_STAGES_MAX (1 << 20)
#define CKPT_ROW_MAX ((size_t)4096) /* bytes of one /index row in the file */
/* deflate never shrinks data by more than about 1032:1 */
#define CKPT_DEFLATE_RATIO 1100

/* The sandbox: time limit (seconds) and memory headroom of the child. */
#define CKPT_SANDBOX_TIMEOUT 20
#define CKPT_SANDBOX_MEMORY ((rlim_t)1 << 30)

#define CLOSE_ATTR(id)  do { if ((id) >= 0) { H5Aclose(id); (id) = H5I_INVALID_HID; } } while (0)
#define CLOSE_DSET(id)  do { if ((id) >= 0) { H5Dclose(id); (id) = H5I_INVALID_HID; } } while (0)
#define CLOSE_SPACE(id) do { if ((id) >= 0) { H5Sclose(id); (id) = H5I_INVALID_HID; } } while (0)
#define CLOSE_TYPE(id)  do { if ((id) >= 0) { H5Tclose(id); (id) = H5I_INVALID_HID; } } while (0)
#define CLOSE_PLIST(id) do { if ((id) >= 0) { H5Pclose(id); (id) = H5I_INVALID_HID; } } while (0)
#define CLOSE_GROUP(id) do { if ((id) >= 0) { H5Gclose(id); (id) = H5I_INVALID_HID; } } while (0)
#define CLOSE_FILE(id)  do { if ((id) >= 0) { H5Fclose(id); (id) = H5I_INVALID_HID; } } while (0)

static const char *const array_dir[CKPT_ARRAYS] = {NULL, "moment1", "moment2"};
static const char *const array_label[CKPT_ARRAYS] = {"parameter", "moment1", "moment2"};

/* ---- errors ------------------------------------------------------------ */

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct {
    char text[256];      /* the innermost description */
    char lock_text[256]; /* the description of a lock failure, when there is one */
    int lock;            /* the stack shows that a file could not be locked */
} h5_inner;

static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *err, void *data)
{
    h5_inner *in = data;
    if (!err) return 0;
    if (n == 0 && err->desc) snprintf(in->text, sizeof in->text, "%s", err->desc);
    if (err->min_num == H5E_CANTLOCKFILE || (err->desc && strstr(err->desc, "unable to lock file"))) {
        if (!in->lock && err->desc) snprintf(in->lock_text, sizeof in->lock_text, "%s", err->desc);
        in->lock = 1;
    }
    return 0;
}

/* The fix for a file system without working locks, appended to every lock error. */
#define LOCK_FIX                                                                                   \
    "the file system does not support file locking (NFS?); disable HDF5's locking: "              \
    "`export HDF5_USE_FILE_LOCKING=FALSE` before mpirun or pipetrain-ckpt, or pass "              \
    "`-x HDF5_USE_FILE_LOCKING=FALSE` to mpirun"

/* Records a message and appends the innermost entry of HDF5's error stack
 * ("...: HDF5 says: unable to open file"). Call it right after the failing
 * HDF5 call, before any other HDF5 call clears the stack. When the stack
 * shows a failed file lock the status is PT_ERR_LOCK and the message says so
 * and gives the fix (the file could not be opened or created, it is not
 * damaged); `file` names the file for that message. */
static pt_status h5_fail_file(pt_status st, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static pt_status h5_fail_file(pt_status st, const char *file, const char *fmt, ...)
{
    h5_inner in = {{0}, {0}, 0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk_cb, &in);
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (in.lock)
        return pt_fail(PT_ERR_LOCK, "%s: cannot lock the file (HDF5: %s): %s", file ? file : msg,
                       in.lock_text[0] ? in.lock_text : "unable to lock file", LOCK_FIX);
    if (in.text[0]) return pt_fail(st, "%s (HDF5: %s)", msg, in.text);
    return pt_fail(st, "%s", msg);
}

#define h5_fail(st, ...) h5_fail_file((st), NULL, __VA_ARGS__)

/* ---- paths and files --------------------------------------------------- */

static pt_status join(char *out, size_t len, const char *dir, const char *name)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len)
        return pt_fail(PT_ERR_INVALID, "path %s/%s is longer than %zu bytes", dir, name, len - 1);
    return PT_OK;
}

static void step_name(char *out, size_t len, const char *prefix, long step)
{
    snprintf(out, len, "%sstep-%06ld", prefix, step);
}

void ckpt_step_dir(char *out, size_t len, const char *run_dir, long step)
{
    char name[32];
    step_name(name, sizeof name, "", step);
    snprintf(out, len, "%s/%s", run_dir, name);
}

static void shard_name(char *out, size_t len, int stage) { snprintf(out, len, "stage-%02d.h5", stage); }

/* fsync of a file or directory by name. */
static pt_status fsync_path(const char *path, int is_dir)
{
    int fd = open(path, is_dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) return pt_fail(PT_ERR_IO, "cannot open %s to fsync it: %s", path, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return pt_fail(PT_ERR_IO, "fsync of %s failed: %s", path, strerror(e));
    }
    if (close(fd) != 0) return pt_fail(PT_ERR_IO, "close of %s failed: %s", path, strerror(errno));
    return PT_OK;
}

/* mkdir -p of path; on failure -1 with the reason in why ("Y is not a
 * directory", "Y: Permission denied"). */
static int mkdir_p(const char *path, char *why, size_t len)
{
    char buf[CKPT_PATH_MAX];
    int n = snprintf(buf, sizeof buf, "%s", path);
    if (n <= 0 || (size_t)n >= sizeof buf) {
        snprintf(why, len, "the name is empty or too long");
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0) {
                int e = errno;
                struct stat sb;
                if (e == EEXIST || e == ENOTDIR) {
                    if (stat(buf, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
                        snprintf(why, len, "%s is not a directory", buf);
                        return -1;
                    }
                    if (e == ENOTDIR) {
                        snprintf(why, len, "%s: %s", buf, strerror(e));
                        return -1;
                    }
                } else if (!(stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode))) {
                    snprintf(why, len, "%s: %s", buf, strerror(e));
                    return -1;
                }
            }
            *p = c;
            if (c == '\0') break;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(why, len, "%s is not a directory", path);
        return -1;
    }
    return 0;
}

static pt_status make_dirs(const char *path)
{
    char why[CKPT_PATH_MAX + 64];
    if (mkdir_p(path, why, sizeof why) != 0)
        return pt_fail(PT_ERR_IO, "cannot create directory %s: %s", path, why);
    return PT_OK;
}

/* rm -rf without following symbolic links. ENOENT is not an error. */
static pt_status remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT) return PT_OK;
        return pt_fail(PT_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT)
            return pt_fail(PT_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
        return PT_OK;
    }
    DIR *d = opendir(path);
    if (!d) return pt_fail(PT_ERR_IO, "cannot open directory %s: %s", path, strerror(errno));
    pt_status st = PT_OK;
    struct dirent *de;
    while (st == PT_OK && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char child[CKPT_PATH_MAX];
        st = join(child, sizeof child, path, de->d_name);
        if (st == PT_OK) st = remove_tree(child);
    }
    closedir(d);
    if (st != PT_OK) return st;
    if (rmdir(path) != 0 && errno != ENOENT)
        return pt_fail(PT_ERR_IO, "cannot remove directory %s: %s", path, strerror(errno));
    return PT_OK;
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* "step-000200" → 200; -1 when the name is not a step directory name. */
static long parse_step_name(const char *name)
{
    if (strncmp(name, "step-", 5) != 0) return -1;
    const char *p = name + 5;
    if (*p < '0' || *p > '9') return -1;
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (*end != '\0' || errno != 0 || v < 0) return -1;
    for (const char *q = p; q < end; q++)
        if (*q < '0' || *q > '9') return -1;
    return v;
}

/* Reads <run>/latest into name ("step-000200"); PT_ERR_IO when absent. */
pt_status ckpt_read_latest(const char *run_dir, char *name, size_t len)
{
    char path[CKPT_PATH_MAX];
    pt_status st = join(path, sizeof path, run_dir, "latest");
    if (st != PT_OK) return st;
    int fd = -1;
    uint64_t size = 0;
    char buf[256];
    size_t n = 0;
    st = safefile_open(path, "the run directory's file", "it holds the name of the newest checkpoint", 4096,
                       &fd, &size);
    if (!st) st = safefile_read(fd, path, buf, size < sizeof buf - 1 ? (size_t)size : sizeof buf - 1, &n);
    if (fd >= 0) close(fd);
    if (st) return st;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
    if (parse_step_name(buf) < 0)
        return pt_fail(PT_ERR_FORMAT, "%s holds '%s', expected a checkpoint name such as 'step-000200'",
                       path, buf);
    if (strlen(buf) >= len) return pt_fail(PT_ERR_INVALID, "%s: name too long", path);
    memcpy(name, buf, strlen(buf) + 1);
    return PT_OK;
}

/* ---- names ------------------------------------------------------------- */

/* Splits the global name "layers.<layer>.<param>" into param (which may hold
 * dots: "attn.w_qkv"), checking that <layer> is `layer`. */
static pt_status split_name(const char *name, int layer, const char **param)
{
    if (!name) return pt_fail(PT_ERR_INVALID, "tensor of layer %d has no name", layer);
    size_t len = strnlen(name, CKPT_NAME_MAX);
    if (len >= CKPT_NAME_MAX)
        return pt_fail(PT_ERR_INVALID, "tensor name '%.*s...' is longer than %d characters", 40, name,
                       CKPT_NAME_MAX - 1);
    const char *p = name;
    if (strncmp(p, "layers.", 7) != 0) goto bad;
    p += 7;
    if (*p < '0' || *p > '9') goto bad;
    char *end;
    long l = strtol(p, &end, 10);
    if (*end != '.' || end[1] == '\0') goto bad;
    if (l != layer)
        return pt_fail(PT_ERR_INVALID, "tensor %s: name says layer %ld, the tensor says layer %d", name, l,
                       layer);
    p = end + 1;
    if (strchr(p, '/'))
        return pt_fail(PT_ERR_INVALID, "tensor %s: the parameter name may not contain '/'", name);
    if (!strcmp(p, "moment1") || !strcmp(p, "moment2") || !strcmp(p, ".") || !strcmp(p, ".."))
        return pt_fail(PT_ERR_INVALID, "tensor %s: parameter name '%s' is reserved", name, p);
    *param = p;
    return PT_OK;
bad:
    return pt_fail(PT_ERR_INVALID, "tensor name '%s' is not of the form layers.<layer>.<param>", name);
}

/* Checks ndim/shape/numel; `what` names the tensor for the message. */
static pt_status check_shape(const char *what, int ndim, const int shape[2], int64_t numel)
{
    if (ndim != 1 && ndim != 2)
        return pt_fail(PT_ERR_INVALID, "tensor %s: ndim %d, expected 1 or 2", what, ndim);
    int64_t prod = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0)
            return pt_fail(PT_ERR_INVALID, "tensor %s: dimension %d is %d, expected > 0", what, d, shape[d]);
        prod *= shape[d];
    }
    if (prod != numel)
        return pt_fail(PT_ERR_INVALID, "tensor %s: numel %lld, but the shape holds %lld", what,
                       (long long)numel, (long long)prod);
    return PT_OK;
}

static void shape_str(char *out, size_t len, int ndim, const hsize_t *dims)
{
    if (ndim == 1) snprintf(out, len, "[%llu]", (unsigned long long)dims[0]);
    else if (ndim == 2)
        snprintf(out, len, "[%llu,%llu]", (unsigned long long)dims[0], (unsigned long long)dims[1]);
    else snprintf(out, len, "(%d dimensions)", ndim);
}

/* ---- checksum ---------------------------------------------------------- */

/* The zlib CRC-32 (the values zlib.crc32 gives), computed by libdeflate,
 * which is three times faster here and otherwise limited saving to 70 % of
 * the disk's speed. */
uint32_t ckpt_crc32(const float *data, size_t n)
{
    return (uint32_t)libdeflate_crc32(0, data, n * sizeof(float));
}

/* ---- attributes -------------------------------------------------------- */

/* Writes attribute `name` of n elements (n = 0: scalar). */
static pt_status attr_write(hid_t loc, const char *file, const char *name, hid_t ftype, hid_t mtype,
                            hsize_t n, const void *buf)
{
    pt_status st = PT_OK;
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    space = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    if (space < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot create the dataspace of attribute '%s'", file, name);
        goto done;
    }
    if ((attr = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot create attribute '%s'", file, name);
        goto done;
    }
    if (H5Awrite(attr, mtype, buf) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot write attribute '%s'", file, name);
        goto done;
    }
done:
    CLOSE_ATTR(attr);
    CLOSE_SPACE(space);
    return st;
}

static pt_status attr_write_i32(hid_t loc, const char *file, const char *name, int v)
{
    return attr_write(loc, file, name, H5T_STD_I32LE, H5T_NATIVE_INT, 0, &v);
}

/* A fixed-length UTF-8 string attribute of strlen(s) + 1 bytes, NUL-terminated
 * (format version 2: nothing in the global heap; h5py reads it as bytes). */
static pt_status attr_write_str(hid_t loc, const char *file, const char *name, const char *s)
{
    pt_status st = PT_OK;
    hid_t type = H5I_INVALID_HID;
    const char *v = s ? s : "";
    size_t len = strlen(v);
    if (len + 1 > CKPT_STRING_MAX)
        return pt_fail(PT_ERR_INVALID, "%s: attribute '%s' would hold %zu bytes, at most %zu are allowed", file,
                       name, len + 1, CKPT_STRING_MAX);
    if ((type = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(type, len + 1) < 0 ||
        H5Tset_strpad(type, H5T_STR_NULLTERM) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot make the string type of attribute '%s'", file, name);
        goto done;
    }
    st = attr_write(loc, file, name, type, type, 0, v);
done:
    CLOSE_TYPE(type);
    return st;
}

/* Reads attribute `name` holding exactly n elements (scalar counts as 1) of
 * an integer type into buf, converted to mtype. */
static pt_status attr_read_int(hid_t loc, const char *file, const char *name, hid_t mtype, hssize_t n,
                               void *buf)
{
    pt_status st = PT_OK;
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    htri_t ex = H5Aexists(loc, name);
    if (ex < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot look up attribute '%s'", file, name);
        goto done;
    }
    if (ex == 0) {
        st = pt_fail(PT_ERR_FORMAT, "%s lacks the attribute '%s'", file, name);
        goto done;
    }
    if ((attr = H5Aopen(loc, name, H5P_DEFAULT)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot open attribute '%s'", file, name);
        goto done;
    }
    if ((space = H5Aget_space(attr)) < 0 || (type = H5Aget_type(attr)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot query attribute '%s'", file, name);
        goto done;
    }
    size_t tsize = H5Tget_size(type);
    if (H5Tget_class(type) != H5T_INTEGER || tsize < 1 || tsize > 8) {
        st = pt_fail(PT_ERR_FORMAT, "%s: attribute '%s' is not an integer of 1 to 8 bytes", file, name);
        goto done;
    }
    hssize_t np = H5Sget_simple_extent_npoints(space);
    if (np != n) {
        st = pt_fail(PT_ERR_FORMAT, "%s: attribute '%s' holds %lld values, expected %lld", file, name,
                     (long long)np, (long long)n);
        goto done;
    }
    if (H5Aread(attr, mtype, buf) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot read attribute '%s'", file, name);
        goto done;
    }
done:
    CLOSE_TYPE(type);
    CLOSE_SPACE(space);
    CLOSE_ATTR(attr);
    return st;
}

static pt_status attr_read_i32(hid_t loc, const char *file, const char *name, int *v)
{
    return attr_read_int(loc, file, name, H5T_NATIVE_INT, 1, v);
}

/* Size in bytes of the file that holds loc (0 when HDF5 cannot tell). */
static hsize_t loc_file_size(hid_t loc)
{
    hsize_t size = 0;
    hid_t f = H5I_INVALID_HID;
    if ((f = H5Iget_file_id(loc)) < 0) return 0;
    if (H5Fget_filesize(f, &size) < 0) size = 0;
    CLOSE_FILE(f);
    return size;
}

/* Reads a string attribute into a malloc'd copy: fixed-length, or also
 * variable-length when allow_vl (format version 1). A fixed length is checked
 * against CKPT_STRING_MAX and the file's size before anything is allocated. */
static pt_status attr_read_str(hid_t loc, const char *file, const char *name, int allow_vl, char **out)
{
    pt_status st = PT_OK;
    hid_t attr = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    hid_t mtype = H5I_INVALID_HID;
    char *vl = NULL;
    *out = NULL;
    htri_t ex = H5Aexists(loc, name);
    if (ex <= 0) {
        st = ex < 0 ? h5_fail(PT_ERR_HDF5, "%s: cannot look up attribute '%s'", file, name)
                    : pt_fail(PT_ERR_FORMAT, "%s lacks the attribute '%s'", file, name);
        goto done;
    }
    if ((attr = H5Aopen(loc, name, H5P_DEFAULT)) < 0 || (space = H5Aget_space(attr)) < 0 ||
        (type = H5Aget_type(attr)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot open attribute '%s'", file, name);
        goto done;
    }
    if (H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
        st = pt_fail(PT_ERR_FORMAT, "%s: attribute '%s' is not a single string", file, name);
        goto done;
    }
    htri_t var = H5Tis_variable_str(type);
    if (var < 0 || (mtype = H5Tcopy(H5T_C_S1)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot query the string type of attribute '%s'", file, name);
        goto done;
    }
    if (var && !allow_vl) {
        st = pt_fail(PT_ERR_FORMAT, "%s: attribute '%s' is a variable-length string, this format version "
                     "stores fixed-length strings only (damaged?)", file, name);
        goto done;
    }
    if (var) {
        if (H5Tset_size(mtype, H5T_VARIABLE) < 0 || H5Tset_cset(mtype, H5Tget_cset(type)) < 0 ||
            H5Aread(attr, mtype, &vl) < 0) {
            st = h5_fail(PT_ERR_HDF5, "%s: cannot read attribute '%s'", file, name);
            goto done;
        }
        if (vl && strnlen(vl, CKPT_STRING_MAX) >= CKPT_STRING_MAX) {
            st = pt_fail(PT_ERR_FORMAT, "%s: attribute '%s' holds more than %zu bytes (damaged?)", file, name,
                         CKPT_STRING_MAX - 1);
            goto done;
        }
        *out = strdup(vl ? vl : "");
    } else {
        size_t size = H5Tget_size(type);
        hsize_t fsize = loc_file_size(loc);
        if (size == 0 || size > CKPT_STRING_MAX || (fsize > 0 && (hsize_t)size > fsize)) {
            st = pt_fail(PT_ERR_FORMAT, "%s: attribute '%s' declares a string of %zu bytes, more than %s (%llu "
                         "bytes): the file is damaged", file, name, size,
                         fsize > 0 && (hsize_t)size > fsize ? "the whole file" : "allowed",
                         fsize > 0 && (hsize_t)size > fsize ? (unsigned long long)fsize
                                                            : (unsigned long long)CKPT_STRING_MAX);
            goto done;
        }
        char *buf = calloc(size + 1, 1);
        if (!buf) {
            st = pt_fail(PT_ERR_NOMEM, "%s: attribute '%s': out of memory", file, name);
            goto done;
        }
        if (H5Tset_size(mtype, size) < 0 || H5Tset_cset(mtype, H5Tget_cset(type)) < 0 ||
            H5Aread(attr, mtype, buf) < 0) {
            free(buf);
            st = h5_fail(PT_ERR_HDF5, "%s: cannot read attribute '%s'", file, name);
            goto done;
        }
        *out = buf;
        buf = NULL;
    }
    if (!*out) st = pt_fail(PT_ERR_NOMEM, "%s: attribute '%s': out of memory", file, name);
done:
    if (vl) H5free_memory(vl);
    CLOSE_TYPE(mtype);
    CLOSE_TYPE(type);
    CLOSE_SPACE(space);
    CLOSE_ATTR(attr);
    return st;
}

/* ---- files ------------------------------------------------------------- */

/* Creates path for writing in the HDF5 1.10 file format (format version 2):
 * superblock version 3 and version 2 object headers, so that HDF5 checksums
 * all metadata it writes (superblock, object headers, chunk indexes, heaps of
 * dense attributes and groups), and a reader detects damaged metadata instead
 * of trusting it. HDF5 1.10 and later (h5py, h5dump) read it. */
/* A creation property list of class cls (H5P_GROUP_CREATE, H5P_DATASET_CREATE
 * or H5P_FILE_CREATE) that records no object times, so that the same state
 * gives the same checkpoint bytes. Made once per class and kept for the
 * process (H5P_DEFAULT if HDF5 cannot make it). */
static hid_t untimed(hid_t cls)
{
    static hid_t made[3] = {H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID};
    int i = cls == H5P_GROUP_CREATE ? 0 : cls == H5P_DATASET_CREATE ? 1 : 2;
    if (made[i] < 0 || H5Iis_valid(made[i]) <= 0) { /* (again after the library was closed) */
        hid_t p = H5Pcreate(cls);
        if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0) {
            H5Pclose(p);
            p = H5I_INVALID_HID;
        }
        made[i] = p;
    }
    return made[i] >= 0 ? made[i] : H5P_DEFAULT;
}

static pt_status create_file(const char *path, hid_t *file)
{
    pt_status st = PT_OK;
    hid_t fapl = H5I_INVALID_HID;
    if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot set up the file access properties", path);
        goto done;
    }
    if ((*file = H5Fcreate(path, H5F_ACC_TRUNC, untimed(H5P_FILE_CREATE), fapl)) < 0) {
        st = h5_fail_file(PT_ERR_HDF5, path, "cannot create %s", path);
        goto done;
    }
done:
    CLOSE_PLIST(fapl);
    return st;
}

/* Group `name` of loc, created when absent. */
static pt_status open_or_create_group(hid_t loc, const char *name, const char *file, hid_t *grp)
{
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex < 0) return h5_fail(PT_ERR_HDF5, "%s: cannot look up group %s", file, name);
    *grp = ex ? H5Gopen2(loc, name, H5P_DEFAULT)
              : H5Gcreate2(loc, name, H5P_DEFAULT, untimed(H5P_GROUP_CREATE), H5P_DEFAULT);
    if (*grp < 0) return h5_fail(PT_ERR_HDF5, "%s: cannot %s group %s", file, ex ? "open" : "create", name);
    return PT_OK;
}

/* ---- shard writer ------------------------------------------------------ */

static pt_status write_dataset(hid_t grp, const char *dsname, const ckpt_tensor *t, int a, int level,
                               uint32_t crc, const char *path)
{
    pt_status st = PT_OK;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hsize_t dims[2] = {(hsize_t)t->shape[0], t->ndim == 2 ? (hsize_t)t->shape[1] : 1};
    if ((space = H5Screate_simple(t->ndim, dims, NULL)) < 0 || (dcpl = H5Pcreate(H5P_DATASET_CREATE)) < 0 ||
        H5Pset_obj_track_times(dcpl, 0) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: tensor %s (%s): cannot create its dataspace", path, t->name,
                     array_label[a]);
        goto done;
    }
    if (level > 0) {
        /* whole rows, at most CKPT_CHUNK_BYTES per chunk (at least one row) */
        size_t row_bytes = sizeof(float) * (t->ndim == 2 ? (size_t)dims[1] : 1);
        hsize_t rows = CKPT_CHUNK_BYTES / row_bytes;
        if (rows < 1) rows = 1;
        if (rows > dims[0]) rows = dims[0];
        hsize_t chunk[2] = {rows, dims[1]};
        if (H5Pset_chunk(dcpl, t->ndim, chunk) < 0 || H5Pset_deflate(dcpl, (unsigned)level) < 0) {
            st = h5_fail(PT_ERR_HDF5, "%s: tensor %s (%s): cannot set up chunking and deflate", path,
                         t->name, array_label[a]);
            goto done;
        }
    }
    if ((dset = H5Dcreate2(grp, dsname, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: tensor %s (%s): cannot create dataset %s", path, t->name,
                     array_label[a], dsname);
        goto done;
    }
    if (H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data[a]) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: tensor %s (%s): cannot write its data", path, t->name,
                     array_label[a]);
        goto done;
    }
    st = attr_write(dset, path, "crc32", H5T_STD_U32LE, H5T_NATIVE_UINT32, 0, &crc);
    if (st != PT_OK) pt_wrap(st, "tensor %s (%s): ", t->name, array_label[a]);
done:
    CLOSE_DSET(dset);
    CLOSE_PLIST(dcpl);
    CLOSE_SPACE(space);
    return st;
}

/* Writes the three arrays of one tensor under /layers/<layer>. */
static pt_status write_tensor(hid_t layers, const ckpt_tensor *t, const char *param, int level,
                              uint32_t crc[CKPT_ARRAYS], const char *path)
{
    pt_status st = PT_OK;
    hid_t lgrp = H5I_INVALID_HID, mgrp = H5I_INVALID_HID;
    char lname[32];
    snprintf(lname, sizeof lname, "%d", t->layer);
    if ((st = open_or_create_group(layers, lname, path, &lgrp)) != PT_OK) goto done;
    for (int a = 0; a < CKPT_ARRAYS; a++) {
        hid_t grp = lgrp;
        if (a > 0) {
            if ((st = open_or_create_group(lgrp, array_dir[a], path, &mgrp)) != PT_OK) goto done;
            grp = mgrp;
        }
        crc[a] = ckpt_crc32(t->data[a], t->numel);
        if ((st = write_dataset(grp, param, t, a, level, crc[a], path)) != PT_OK) goto done;
        CLOSE_GROUP(mgrp);
    }
done:
    CLOSE_GROUP(mgrp);
    CLOSE_GROUP(lgrp);
    return st;
}

/* Checks a shard's arguments and every tensor before anything is created;
 * `path` names the file for messages. */
static pt_status check_shard(const ckpt_shard *sh, uint32_t *crc, const char *path)
{
    if (sh->n_tensors > 0 && (!sh->tensors || !crc))
        return pt_fail(PT_ERR_INVALID, "%s: missing tensors or crc array", path);
    if (sh->n_stages < 1 || sh->stage < 0 || sh->stage >= sh->n_stages)
        return pt_fail(PT_ERR_INVALID, "checkpoint shard: stage %d of %d stages is out of range", sh->stage,
                       sh->n_stages);
    if (sh->first_layer < 0 || sh->last_layer < sh->first_layer || sh->compression < 0 ||
        sh->compression > 9 || sh->step < 0 || sh->n_tensors < 0)
        return pt_fail(PT_ERR_INVALID,
                       "checkpoint shard of stage %d: bad layers [%d, %d), compression %d, step %ld or "
                       "tensor count %d",
                       sh->stage, sh->first_layer, sh->last_layer, sh->compression, sh->step, sh->n_tensors);
    for (int k = 0; k < sh->n_tensors; k++) {
        const ckpt_tensor *t = &sh->tensors[k];
        const char *param;
        pt_status st;
        if ((st = split_name(t->name, t->layer, &param)) != PT_OK) return pt_wrap(st, "%s: ", path);
        if ((st = check_shape(t->name, t->ndim, t->shape, (int64_t)t->numel)) != PT_OK)
            return pt_wrap(st, "%s: ", path);
        if (t->layer < sh->first_layer || t->layer >= sh->last_layer)
            return pt_fail(PT_ERR_INVALID, "%s: tensor %s belongs to layer %d, outside this stage's layers [%d, %d)",
                           path, t->name, t->layer, sh->first_layer, sh->last_layer);
        for (int a = 0; a < CKPT_ARRAYS; a++)
            if (!t->data[a])
                return pt_fail(PT_ERR_INVALID, "%s: tensor %s: no %s array given", path, t->name,
                               array_label[a]);
    }
    return PT_OK;
}

/* Writes the shard attributes and /layers/<i>/... of a checked shard into an
 * open file (a stage-XX.h5, or a single-file checkpoint). */
static pt_status write_shard_body(hid_t file, const char *path, const ckpt_shard *sh, uint32_t *crc)
{
    pt_status st = PT_OK;
    hid_t layers = H5I_INVALID_HID;
    int64_t step = sh->step;
    uint64_t seed = sh->seed;
    if ((st = attr_write_i32(file, path, "format_version", CKPT_FORMAT_VERSION)) != PT_OK ||
        (st = attr_write(file, path, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &step)) != PT_OK ||
        (st = attr_write(file, path, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &seed)) != PT_OK ||
        (st = attr_write_i32(file, path, "stage", sh->stage)) != PT_OK ||
        (st = attr_write_i32(file, path, "n_stages", sh->n_stages)) != PT_OK ||
        (st = attr_write_i32(file, path, "first_layer", sh->first_layer)) != PT_OK ||
        (st = attr_write_i32(file, path, "last_layer", sh->last_layer)) != PT_OK)
        goto done;
    if ((layers = H5Gcreate2(file, "layers", H5P_DEFAULT, untimed(H5P_GROUP_CREATE), H5P_DEFAULT)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot create group /layers", path);
        goto done;
    }
    for (int k = 0; k < sh->n_tensors; k++) {
        const ckpt_tensor *t = &sh->tensors[k];
        const char *param;
        (void)split_name(t->name, t->layer, &param); /* checked by check_shard */
        if ((st = write_tensor(layers, t, param, sh->compression, &crc[(size_t)k * CKPT_ARRAYS], path)) !=
            PT_OK)
            goto done;
        if (sh->after_tensor) sh->after_tensor(sh->hook_ctx, k);
    }
done:
    CLOSE_GROUP(layers);
    return st;
}

/* Closes a written file (flushing it), then fsyncs it and its directory. */
static pt_status close_and_sync(hid_t *file, const char *path, const char *dir)
{
    herr_t e = H5Fclose(*file);
    *file = H5I_INVALID_HID;
    if (e < 0) return h5_fail(PT_ERR_HDF5, "%s: closing (flushing) the file failed", path);
    pt_status st = fsync_path(path, 0);
    if (st == PT_OK) st = fsync_path(dir, 1);
    return st;
}

pt_status ckpt_write_shard(const char *dir, const ckpt_shard *sh, uint32_t *crc)
{
    h5_quiet();
    if (!dir || !sh || (sh->n_tensors > 0 && (!sh->tensors || !crc)))
        return pt_fail(PT_ERR_INVALID, "ckpt_write_shard: missing directory, shard, tensors or crc array");
    if (sh->n_stages < 1 || sh->stage < 0 || sh->stage >= sh->n_stages)
        return pt_fail(PT_ERR_INVALID, "checkpoint shard: stage %d of %d stages is out of range", sh->stage,
                       sh->n_stages);

    char name[32], path[CKPT_PATH_MAX];
    shard_name(name, sizeof name, sh->stage);
    pt_status st = join(path, sizeof path, dir, name);
    if (st != PT_OK) return st;
    /* check every tensor before creating anything */
    if ((st = check_shard(sh, crc, path)) != PT_OK) return st;

    hid_t file = H5I_INVALID_HID;
    if ((st = create_file(path, &file)) != PT_OK) goto done;
    if ((st = write_shard_body(file, path, sh, crc)) != PT_OK) goto done;
    st = close_and_sync(&file, path, dir);
done:
    CLOSE_FILE(file);
    return st;
}

/* ---- manifest ---------------------------------------------------------- */

/* The compound type of an /index row: in memory (ckpt_entry, native types)
 * or in the file (packed, little-endian). */
static pt_status index_type(int in_file, hid_t *out)
{
    pt_status st = PT_OK;
    hid_t t = H5I_INVALID_HID, str = H5I_INVALID_HID, shp = H5I_INVALID_HID, crc = H5I_INVALID_HID;
    hid_t i32 = in_file ? H5T_STD_I32LE : H5T_NATIVE_INT;
    hid_t i64 = in_file ? H5T_STD_I64LE : H5T_NATIVE_INT64;
    hid_t u32 = in_file ? H5T_STD_U32LE : H5T_NATIVE_UINT32;
    hsize_t two = 2, three = CKPT_ARRAYS;
    size_t off_name = 0, off_layer = CKPT_NAME_MAX, off_ndim = off_layer + 4, off_shape = off_ndim + 4;
    size_t off_numel = off_shape + 8, off_shard = off_numel + 8, off_crc = off_shard + 4;
    size_t size = off_crc + 4 * CKPT_ARRAYS;
    if (!in_file) {
        off_name = offsetof(ckpt_entry, name);
        off_layer = offsetof(ckpt_entry, layer);
        off_ndim = offsetof(ckpt_entry, ndim);
        off_shape = offsetof(ckpt_entry, shape);
        off_numel = offsetof(ckpt_entry, numel);
        off_shard = offsetof(ckpt_entry, shard);
        off_crc = offsetof(ckpt_entry, crc);
        size = sizeof(ckpt_entry);
    }
    if ((str = H5Tcopy(H5T_C_S1)) < 0 || H5Tset_size(str, CKPT_NAME_MAX) < 0 ||
        H5Tset_strpad(str, H5T_STR_NULLTERM) < 0 || (shp = H5Tarray_create2(i32, 1, &two)) < 0 ||
        (crc = H5Tarray_create2(u32, 1, &three)) < 0 || (t = H5Tcreate(H5T_COMPOUND, size)) < 0 ||
        H5Tinsert(t, "name", off_name, str) < 0 || H5Tinsert(t, "layer", off_layer, i32) < 0 ||
        H5Tinsert(t, "ndim", off_ndim, i32) < 0 || H5Tinsert(t, "shape", off_shape, shp) < 0 ||
        H5Tinsert(t, "numel", off_numel, i64) < 0 || H5Tinsert(t, "shard", off_shard, i32) < 0 ||
        H5Tinsert(t, "crc", off_crc, crc) < 0) {
        st = h5_fail(PT_ERR_HDF5, "cannot build the compound type of the manifest index");
        CLOSE_TYPE(t);
        goto done;
    }
    *out = t;
done:
    CLOSE_TYPE(crc);
    CLOSE_TYPE(shp);
    CLOSE_TYPE(str);
    return st;
}

/* Consistency of a manifest (written or read): cuts cover the layers, every
 * entry sits in the shard that holds its layer. `file` names it. */
static pt_status check_manifest(const ckpt_manifest *m, const char *file)
{
    if (m->n_stages < 1 || m->data_parallel < 1 || m->n_layers < 0 || m->n_entries < 0 || !m->cuts ||
        (m->n_entries > 0 && !m->entries))
        return pt_fail(PT_ERR_INVALID, "%s: n_stages %d, data_parallel %d, n_layers %d, %d entries: out of range",
                       file, m->n_stages, m->data_parallel, m->n_layers, m->n_entries);
    if (m->cuts[0] != 0 || m->cuts[m->n_stages] != m->n_layers)
        return pt_fail(PT_ERR_INVALID, "%s: cuts run from %d to %d, expected 0 to n_layers = %d", file,
                       m->cuts[0], m->cuts[m->n_stages], m->n_layers);
    for (int s = 0; s < m->n_stages; s++)
        if (m->cuts[s + 1] < m->cuts[s])
            return pt_fail(PT_ERR_INVALID, "%s: cuts decrease at stage %d (%d then %d)", file, s, m->cuts[s],
                           m->cuts[s + 1]);
    for (int k = 0; k < m->n_entries; k++) {
        const ckpt_entry *e = &m->entries[k];
        if (memchr(e->name, '\0', CKPT_NAME_MAX) == NULL || !e->name[0])
            return pt_fail(PT_ERR_INVALID, "%s: index entry %d has no terminated name", file, k);
        const char *param;
        pt_status st = split_name(e->name, e->layer, &param);
        if (st == PT_OK) st = check_shape(e->name, e->ndim, e->shape, e->numel);
        if (st != PT_OK) return pt_wrap(st, "%s: index entry %d: ", file, k);
        if (e->shard < 0 || e->shard >= m->n_stages)
            return pt_fail(PT_ERR_INVALID, "%s: tensor %s is in shard %d, but there are %d shards", file,
                           e->name, e->shard, m->n_stages);
        if (e->layer < m->cuts[e->shard] || e->layer >= m->cuts[e->shard + 1])
            return pt_fail(PT_ERR_INVALID, "%s: tensor %s of layer %d is in shard %d, which holds layers [%d, %d)",
                           file, e->name, e->layer, e->shard, m->cuts[e->shard], m->cuts[e->shard + 1]);
    }
    return PT_OK;
}

/* Writes the manifest attributes and /index of a checked manifest into an
 * open file, and the external links /layers/<i> -> stage-XX.h5:/layers/<i>.
 * single = 1: the file is a single-file checkpoint that already holds the
 * shard attributes (format_version, step, seed, n_stages, the same values)
 * and the layer groups themselves: neither is written again. */
static pt_status write_manifest_body(hid_t file, const char *path, const ckpt_manifest *m, int single)
{
    pt_status st = PT_OK;
    hid_t ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    hid_t space = H5I_INVALID_HID, dset = H5I_INVALID_HID, layers = H5I_INVALID_HID;
    int *layer_shard = NULL;

    /* one shard per layer, for the external links */
    layer_shard = malloc(sizeof(int) * (size_t)(m->n_layers > 0 ? m->n_layers : 1));
    if (!layer_shard) {
        st = pt_fail(PT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int l = 0; l < m->n_layers; l++) layer_shard[l] = -1;
    for (int k = 0; k < m->n_entries; k++) {
        const ckpt_entry *e = &m->entries[k];
        if (e->layer >= m->n_layers) {
            st = pt_fail(PT_ERR_INVALID, "%s: tensor %s of layer %d, but the model has %d layers", path,
                         e->name, e->layer, m->n_layers);
            goto done;
        }
        layer_shard[e->layer] = e->shard; /* check_manifest: the shard holding the layer */
    }

    int64_t step = m->step;
    uint64_t seed = m->seed;
    if (!single &&
        ((st = attr_write_i32(file, path, "format_version", CKPT_FORMAT_VERSION)) != PT_OK ||
         (st = attr_write(file, path, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &step)) != PT_OK ||
         (st = attr_write(file, path, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &seed)) != PT_OK ||
         (st = attr_write_i32(file, path, "n_stages", m->n_stages)) != PT_OK))
        goto done;
    if ((st = attr_write_i32(file, path, "data_parallel", m->data_parallel)) != PT_OK ||
        (st = attr_write_i32(file, path, "n_layers", m->n_layers)) != PT_OK ||
        (st = attr_write(file, path, "cuts", H5T_STD_I32LE, H5T_NATIVE_INT, (hsize_t)m->n_stages + 1,
                         m->cuts)) != PT_OK ||
        (st = attr_write_str(file, path, "config", m->config_text)) != PT_OK ||
        (st = attr_write_str(file, path, "history", m->history)) != PT_OK ||
        (st = attr_write_str(file, path, "data_fingerprint", m->data_fingerprint)) != PT_OK)
        goto done;

    if ((st = index_type(1, &ftype)) != PT_OK || (st = index_type(0, &mtype)) != PT_OK) {
        pt_wrap(st, "%s: ", path);
        goto done;
    }
    hsize_t n = (hsize_t)m->n_entries;
    if ((space = H5Screate_simple(1, &n, NULL)) < 0 ||
        (dset = H5Dcreate2(file, "index", ftype, space, H5P_DEFAULT, untimed(H5P_DATASET_CREATE),
                           H5P_DEFAULT)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot create dataset /index", path);
        goto done;
    }
    if (n > 0 && H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, m->entries) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot write dataset /index", path);
        goto done;
    }
    if (single) goto done;
    if ((layers = H5Gcreate2(file, "layers", H5P_DEFAULT, untimed(H5P_GROUP_CREATE), H5P_DEFAULT)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: cannot create group /layers", path);
        goto done;
    }
    for (int l = 0; l < m->n_layers; l++) {
        if (layer_shard[l] < 0) continue;
        char target[32], obj[32], link[32];
        shard_name(target, sizeof target, layer_shard[l]);
        snprintf(obj, sizeof obj, "/layers/%d", l);
        snprintf(link, sizeof link, "%d", l);
        if (H5Lcreate_external(target, obj, layers, link, H5P_DEFAULT, H5P_DEFAULT) < 0) {
            st = h5_fail(PT_ERR_HDF5, "%s: cannot create the external link /layers/%d -> %s:%s", path, l,
                         target, obj);
            goto done;
        }
    }
done:
    CLOSE_GROUP(layers);
    CLOSE_DSET(dset);
    CLOSE_SPACE(space);
    CLOSE_TYPE(mtype);
    CLOSE_TYPE(ftype);
    free(layer_shard);
    return st;
}

pt_status ckpt_write_manifest(const char *dir, const ckpt_manifest *m)
{
    h5_quiet();
    if (!dir || !m) return pt_fail(PT_ERR_INVALID, "ckpt_write_manifest: missing directory or manifest");
    char path[CKPT_PATH_MAX];
    pt_status st = join(path, sizeof path, dir, "manifest.h5");
    if (st != PT_OK) return st;
    if ((st = check_manifest(m, path)) != PT_OK) return st;
    if (m->step < 0) return pt_fail(PT_ERR_INVALID, "%s: step %ld is negative", path, m->step);

    hid_t file = H5I_INVALID_HID;
    if ((st = create_file(path, &file)) != PT_OK) goto done;
    if ((st = write_manifest_body(file, path, m, 0)) != PT_OK) goto done;
    st = close_and_sync(&file, path, dir);
done:
    CLOSE_FILE(file);
    return st;
}

/* ---- single-file checkpoint ---------------------------------------------- */

/* The directory part of path ("." when it has none). */
static void dir_of(const char *path, char *out, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, len, ".");
    else if (slash == path) snprintf(out, len, "/");
    else snprintf(out, len, "%.*s", (int)(slash - path), path);
}

pt_status ckpt_write_single(const char *path, const ckpt_manifest *m, const ckpt_tensor *tensors,
                            int compression)
{
    h5_quiet();
    if (!path || !*path || !m || (m->n_entries > 0 && (!tensors || !m->entries)))
        return pt_fail(PT_ERR_INVALID, "ckpt_write_single: missing path, manifest or tensors");
    if (m->step < 0 || m->n_layers < 0 || m->n_entries < 0)
        return pt_fail(PT_ERR_INVALID, "%s: step %ld, %d layers, %d entries: out of range", path, m->step,
                       m->n_layers, m->n_entries);
    char tmp[CKPT_PATH_MAX], dir[CKPT_PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof tmp) return pt_fail(PT_ERR_INVALID, "path %s is too long", path);
    dir_of(path, dir, sizeof dir);
    for (int k = 0; k < m->n_entries; k++) {
        const ckpt_entry *e = &m->entries[k];
        const ckpt_tensor *t = &tensors[k];
        if (!t->name || strncmp(t->name, e->name, CKPT_NAME_MAX) != 0 || t->layer != e->layer ||
            t->ndim != e->ndim || t->shape[0] != e->shape[0] || (e->ndim == 2 && t->shape[1] != e->shape[1]) ||
            (int64_t)t->numel != e->numel)
            return pt_fail(PT_ERR_INVALID, "%s: tensor %d (%s) does not match index entry %.*s", path, k,
                           t->name ? t->name : "(no name)", CKPT_NAME_MAX, e->name);
    }

    /* the same model as one stage: shard 0 holds every layer */
    pt_status st = PT_OK;
    hid_t file = H5I_INVALID_HID;
    int cuts[2] = {0, m->n_layers};
    ckpt_entry *entries = calloc((size_t)m->n_entries + 1, sizeof *entries);
    uint32_t *crc = calloc((size_t)m->n_entries * CKPT_ARRAYS + 1, sizeof *crc);
    if (!entries || !crc) {
        st = pt_fail(PT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (m->n_entries > 0) memcpy(entries, m->entries, sizeof *entries * (size_t)m->n_entries);
    for (int k = 0; k < m->n_entries; k++) entries[k].shard = 0;
    ckpt_manifest one = *m;
    one.format_version = CKPT_FORMAT_VERSION;
    one.n_stages = 1;
    one.cuts = cuts;
    one.entries = entries;
    ckpt_shard sh = {.stage = 0, .n_stages = 1, .first_layer = 0, .last_layer = m->n_layers, .step = m->step,
                     .seed = m->seed, .compression = compression, .n_tensors = m->n_entries, .tensors = tensors};
    if ((st = check_manifest(&one, path)) != PT_OK || (st = check_shard(&sh, crc, path)) != PT_OK) goto done;

    /* written under path.tmp, then renamed over path: never half a file at path */
    if ((st = create_file(tmp, &file)) != PT_OK) goto done;
    if ((st = write_shard_body(file, tmp, &sh, crc)) != PT_OK) goto done;
    for (int k = 0; k < m->n_entries; k++) memcpy(entries[k].crc, &crc[(size_t)k * CKPT_ARRAYS], sizeof entries[k].crc);
    if ((st = write_manifest_body(file, tmp, &one, 1)) != PT_OK) goto done;
    if ((st = close_and_sync(&file, tmp, dir)) != PT_OK) goto done;
    if (rename(tmp, path) != 0) {
        st = pt_fail(PT_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    st = fsync_path(dir, 1);
done:
    CLOSE_FILE(file);
    if (st != PT_OK) unlink(tmp);
    free(crc);
    free(entries);
    return st;
}

/* ---- commit protocol --------------------------------------------------- */

pt_status ckpt_begin(const char *run_dir, long step, char *out, size_t len)
{
    if (!run_dir || !out || step < 0)
        return pt_fail(PT_ERR_INVALID, "ckpt_begin: missing run directory or output, or negative step %ld",
                       step);
    pt_status st = make_dirs(run_dir);
    if (st != PT_OK) return st;
    char name[64];
    step_name(name, sizeof name, ".tmp-", step);
    if ((st = join(out, len, run_dir, name)) != PT_OK) return st;
    if ((st = remove_tree(out)) != PT_OK) return pt_wrap(st, "removing a stale temporary checkpoint: ");
    if (mkdir(out, 0755) != 0) return pt_fail(PT_ERR_IO, "cannot create %s: %s", out, strerror(errno));
    return fsync_path(run_dir, 1);
}

pt_status ckpt_check_dir_writable(const char *run_dir, const char *probe_name)
{
    h5_quiet();
    if (!run_dir || !*run_dir || !probe_name || !*probe_name || strchr(probe_name, '/'))
        return pt_fail(PT_ERR_INVALID, "ckpt_check_dir_writable: missing directory, or a probe name '%s' that is "
                       "empty or holds '/'", probe_name ? probe_name : "(none)");
    char why[CKPT_PATH_MAX + 64], path[CKPT_PATH_MAX];
    if (mkdir_p(run_dir, why, sizeof why) != 0)
        return pt_fail(PT_ERR_IO, "checkpoint.dir %s: cannot create directory: %s", run_dir, why);
    pt_status st = join(path, sizeof path, run_dir, probe_name);
    if (st != PT_OK) return st;
    /* the plain system call first: its errno is the clearest reason (permission, read-only, full) */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return pt_fail(PT_ERR_IO, "checkpoint.dir %s: cannot create a file in it (%s): %s", run_dir, probe_name,
                       strerror(errno));
    close(fd);

    hid_t file = H5I_INVALID_HID;
    if ((st = create_file(path, &file)) != PT_OK) { /* the shard writer's file access properties */
        if (st != PT_ERR_LOCK) st = pt_wrap(PT_ERR_IO, "checkpoint.dir %s: ", run_dir);
        goto done;
    }
    int one = 1;
    if ((st = attr_write_i32(file, path, "probe", one)) != PT_OK) {
        st = pt_wrap(PT_ERR_IO, "checkpoint.dir %s: ", run_dir);
        goto done;
    }
    herr_t e = H5Fclose(file);
    file = H5I_INVALID_HID;
    if (e < 0) {
        st = h5_fail_file(PT_ERR_IO, path, "checkpoint.dir %s: closing (flushing) %s failed", run_dir, path);
        goto done;
    }
    if ((st = fsync_path(path, 0)) != PT_OK) st = pt_wrap(PT_ERR_IO, "checkpoint.dir %s: ", run_dir);
done:
    CLOSE_FILE(file);
    if (unlink(path) != 0 && errno != ENOENT && st == PT_OK)
        st = pt_fail(PT_ERR_IO, "checkpoint.dir %s: cannot remove the probe file %s: %s", run_dir, path,
                     strerror(errno));
    return st;
}

/* Moves tmp to final. When final exists (a step written again), the two are
 * swapped atomically where the system can, so `final` is whole at every
 * moment; else the old one is first renamed aside. The old tree is removed. */
static pt_status install_dir(const char *run_dir, const char *tmp, const char *final, long step)
{
    if (rename(tmp, final) == 0) return PT_OK;
    if (errno != EEXIST && errno != ENOTEMPTY)
        return pt_fail(PT_ERR_IO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
#ifdef RENAME_EXCHANGE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
        pt_status st = fsync_path(run_dir, 1);
        if (st == PT_OK && (st = remove_tree(tmp)) != PT_OK) pt_wrap(st, "removing the replaced checkpoint: ");
        return st;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return pt_fail(PT_ERR_IO, "cannot exchange %s and %s: %s", tmp, final, strerror(errno));
#endif
    char name[64], old[CKPT_PATH_MAX];
    step_name(name, sizeof name, ".old-", step);
    pt_status st = join(old, sizeof old, run_dir, name);
    if (st == PT_OK) st = remove_tree(old);
    if (st != PT_OK) return st;
    if (rename(final, old) != 0)
        return pt_fail(PT_ERR_IO, "cannot move the existing %s aside to %s: %s", final, old, strerror(errno));
    if (rename(tmp, final) != 0)
        return pt_fail(PT_ERR_IO, "cannot rename %s to %s: %s (the previous one is at %s)", tmp, final,
                       strerror(errno), old);
    if ((st = fsync_path(run_dir, 1)) != PT_OK) return st;
    if ((st = remove_tree(old)) != PT_OK) pt_wrap(st, "removing the replaced checkpoint: ");
    return st;
}

pt_status ckpt_commit(const char *run_dir, long step)
{
    if (!run_dir || step < 0) return pt_fail(PT_ERR_INVALID, "ckpt_commit: missing run directory or step %ld", step);
    char tname[64], fname[64], tmp[CKPT_PATH_MAX], final[CKPT_PATH_MAX], manifest[CKPT_PATH_MAX];
    step_name(tname, sizeof tname, ".tmp-", step);
    step_name(fname, sizeof fname, "", step);
    pt_status st;
    if ((st = join(tmp, sizeof tmp, run_dir, tname)) != PT_OK || (st = join(final, sizeof final, run_dir, fname)) != PT_OK ||
        (st = join(manifest, sizeof manifest, tmp, "manifest.h5")) != PT_OK)
        return st;
    if (!is_dir(tmp)) return pt_fail(PT_ERR_IO, "cannot commit step %ld: %s does not exist", step, tmp);
    if (access(manifest, F_OK) != 0)
        return pt_fail(PT_ERR_INVALID, "cannot commit step %ld: %s has no manifest.h5 yet", step, tmp);

    if ((st = fsync_path(tmp, 1)) != PT_OK) return st;
    if ((st = install_dir(run_dir, tmp, final, step)) != PT_OK) return st;
    if ((st = fsync_path(run_dir, 1)) != PT_OK) return st;

    char latest[CKPT_PATH_MAX], latest_tmp[CKPT_PATH_MAX], text[80];
    if ((st = join(latest, sizeof latest, run_dir, "latest")) != PT_OK ||
        (st = join(latest_tmp, sizeof latest_tmp, run_dir, "latest.tmp")) != PT_OK)
        return st;
    int n = snprintf(text, sizeof text, "%s\n", fname);
    int fd = open(latest_tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return pt_fail(PT_ERR_IO, "cannot create %s: %s", latest_tmp, strerror(errno));
    ssize_t w = write(fd, text, (size_t)n);
    if (w != n || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return pt_fail(PT_ERR_IO, "cannot write %s: %s", latest_tmp, w != n && w >= 0 ? "short write" : strerror(e));
    }
    if (close(fd) != 0) return pt_fail(PT_ERR_IO, "cannot close %s: %s", latest_tmp, strerror(errno));
    if (rename(latest_tmp, latest) != 0)
        return pt_fail(PT_ERR_IO, "cannot rename %s to %s: %s", latest_tmp, latest, strerror(errno));
    return fsync_path(run_dir, 1);
}

static int step_dir_newest_first(const void *a, const void *b)
{
    long x = ((const ckpt_step_entry *)a)->step, y = ((const ckpt_step_entry *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int step_dir_oldest_first(const void *a, const void *b) { return step_dir_newest_first(b, a); }

/* The step-N directories of run_dir, in directory order; with clean_tmp, the
 * .tmp-step-* and .old-step-* directories left by a crash are removed. */
static pt_status scan_run_dir(const char *run_dir, int clean_tmp, ckpt_step_entry **out, int *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(run_dir);
    if (!d) return pt_fail(PT_ERR_IO, "cannot open run directory %s: %s", run_dir, strerror(errno));
    ckpt_step_entry *dirs = NULL;
    int n = 0, cap = 0;
    pt_status st = PT_OK;
    struct dirent *de;
    while (st == PT_OK && (de = readdir(d)) != NULL) {
        char path[CKPT_PATH_MAX];
        if ((st = join(path, sizeof path, run_dir, de->d_name)) != PT_OK) break;
        if (!strncmp(de->d_name, ".tmp-step-", 10) || !strncmp(de->d_name, ".old-step-", 10)) {
            if (clean_tmp && is_dir(path)) st = remove_tree(path);
            continue;
        }
        long step = parse_step_name(de->d_name);
        if (step < 0 || strlen(de->d_name) >= sizeof dirs[0].name || !is_dir(path)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ckpt_step_entry *grown = realloc(dirs, sizeof *dirs * (size_t)cap);
            if (!grown) {
                st = pt_fail(PT_ERR_NOMEM, "listing %s: out of memory", run_dir);
                break;
            }
            dirs = grown;
        }
        dirs[n].step = step;
        memcpy(dirs[n].name, de->d_name, strlen(de->d_name) + 1); /* length checked above */
        n++;
    }
    closedir(d);
    if (st) {
        free(dirs);
        return st;
    }
    *out = dirs;
    *count = n;
    return PT_OK;
}

pt_status ckpt_list_steps(const char *run_dir, ckpt_step_entry **out, int *n)
{
    struct stat sb;
    if (stat(run_dir, &sb) != 0 && errno == ENOENT) {
        *out = NULL;
        *n = 0;
        return PT_OK;
    }
    pt_status st = scan_run_dir(run_dir, 0, out, n);
    if (!st && *n > 1) qsort(*out, (size_t)*n, sizeof **out, step_dir_oldest_first);
    return st;
}

pt_status ckpt_prune(const char *run_dir, int keep)
{
    if (!run_dir) return pt_fail(PT_ERR_INVALID, "ckpt_prune: missing run directory");
    char latest[64] = "";
    if (ckpt_read_latest(run_dir, latest, sizeof latest) != PT_OK) latest[0] = '\0'; /* none: keep by age only */
    ckpt_step_entry *dirs = NULL;
    int n = 0;
    pt_status st = scan_run_dir(run_dir, 1, &dirs, &n);
    if (st == PT_OK && keep > 0) {
        qsort(dirs, (size_t)n, sizeof *dirs, step_dir_newest_first);
        for (int i = keep; i < n && st == PT_OK; i++) {
            if (!strcmp(dirs[i].name, latest)) continue;
            char path[CKPT_PATH_MAX];
            if ((st = join(path, sizeof path, run_dir, dirs[i].name)) == PT_OK) st = remove_tree(path);
        }
        if (st == PT_OK) st = fsync_path(run_dir, 1);
    }
    free(dirs);
    return st;
}

/* ---- reading ----------------------------------------------------------- */

static int is_regular(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* ---- the sandbox --------------------------------------------------------- */

/* HDF5 trusts the metadata of the files it reads: damaged metadata (a format
 * version 1 file has no checksums) can make it crash, loop forever or try to
 * allocate terabytes. So every function that walks a file's metadata first
 * runs the same walk in a forked child process: no MPI, bounded memory,
 * a time limit, and it ends with _exit (no exit handlers, no HDF5 shutdown,
 * nothing flushed). The parent walks for real only when the child finished
 * the walk without error; an ordinary error of the child's walk is returned
 * as is (the parent's walk would give the same error); a child that died
 * from a signal or ran out of time gives PT_ERR_FORMAT naming the file. */

typedef pt_status (*sandbox_fn)(const char *path, void *arg);

/* What the child sends back through its pipe. */
typedef struct {
    int32_t status;
    char msg[2048];
} sandbox_result;

/* PIPETRAIN_HDF5_TIMEOUT: seconds, 0 = no sandbox. */
static pt_status sandbox_timeout(int *seconds)
{
    *seconds = CKPT_SANDBOX_TIMEOUT;
    const char *env = getenv("PIPETRAIN_HDF5_TIMEOUT");
    if (!env || !*env) return PT_OK;
    char *end;
    errno = 0;
    long v = strtol(env, &end, 10);
    while (*end == ' ') end++;
    if (errno != 0 || *end != '\0' || v < 0 || v > 86400)
        return pt_fail(PT_ERR_INVALID, "PIPETRAIN_HDF5_TIMEOUT='%s': expected whole seconds from 0 (no "
                       "sandbox) to 86400", env);
    *seconds = (int)v;
    return PT_OK;
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGKILL: return "SIGKILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGSYS: return "SIGSYS";
    case SIGALRM: return "SIGALRM";
    case SIGXCPU: return "SIGXCPU";
    case SIGTERM: return "SIGTERM";
    default: return NULL;
    }
}

/* In the child: at most CKPT_SANDBOX_MEMORY more address space than the
 * parent had, so a huge size read from the file fails to allocate instead of
 * taking the machine's memory. Not under AddressSanitizer, whose shadow
 * memory needs terabytes of address space. */
static void sandbox_limit_memory(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return;
#endif
#endif
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f) return;
    int ok = fscanf(f, "%lu", &pages) == 1;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (!ok || page <= 0) return;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0) return;
    rlim_t want = (rlim_t)pages * (rlim_t)page + CKPT_SANDBOX_MEMORY;
    if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max) want = rl.rlim_max;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) return;
    rl.rlim_cur = want;
    (void)setrlimit(RLIMIT_AS, &rl);
}

static void sandbox_child(int fd, int seconds, const char *path, sandbox_fn fn, void *arg)
{
    /* die from a crash rather than run handlers the parent installed (MPI's, a backtrace printer) */
    static const int deadly[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGALRM, SIGTERM, SIGPIPE};
    for (size_t i = 0; i < sizeof deadly / sizeof deadly[0]; i++) signal(deadly[i], SIG_DFL);
    /* the child prints nothing: what HDF5 (or a sanitizer's report on HDF5's
     * misbehaviour) would print is the damage the parent reports */
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO) close(null);
    }
    sandbox_limit_memory();
    alarm((unsigned)seconds + 2); /* in case the parent is gone */
    sandbox_result res;
    memset(&res, 0, sizeof res);
    pt_clear_error();
    res.status = (int32_t)fn(path, arg);
    snprintf(res.msg, sizeof res.msg, "%s", pt_last_error());
    const char *p = (const char *)&res;
    size_t left = sizeof res;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(3);
        p += w;
        left -= (size_t)w;
    }
    _exit(0);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static pt_status sandbox_damaged(const char *path, const char *what)
{
    return pt_fail(PT_ERR_FORMAT, "%s: damaged HDF5 metadata: the HDF5 library %s — the file is corrupt; restore "
                   "it from a copy or use an earlier checkpoint", path, what);
}

/* Files this thread's sandbox already walked without error, with the walk:
 * the same unchanged file (device, inode, size, modification and change
 * times) is not walked in a child again (verify scans a shard and then
 * reads it). */
#define SANDBOX_SEEN 64
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    sandbox_fn fn;
} sandbox_seen;
static _Thread_local sandbox_seen seen[SANDBOX_SEEN];
static _Thread_local int n_seen, next_seen;

static int seen_same(const sandbox_seen *a, const struct stat *sb, sandbox_fn fn)
{
    return a->fn == fn && a->dev == sb->st_dev && a->ino == sb->st_ino && a->size == sb->st_size &&
           a->mtime.tv_sec == sb->st_mtim.tv_sec && a->mtime.tv_nsec == sb->st_mtim.tv_nsec &&
           a->ctime.tv_sec == sb->st_ctim.tv_sec && a->ctime.tv_nsec == sb->st_ctim.tv_nsec;
}

static pt_status sandbox_run(const char *path, sandbox_fn fn, void *arg, int seconds);

/* Runs fn(path, arg) in a child process first (see above). PT_OK when the
 * child's fn returned PT_OK: the caller then does the real work. */
static pt_status h5_sandboxed(const char *path, sandbox_fn fn, void *arg)
{
    int seconds;
    pt_status st = sandbox_timeout(&seconds);
    if (st != PT_OK || seconds == 0) return st;
    struct stat sb;
    int have = stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
    for (int i = 0; have && i < n_seen; i++)
        if (seen_same(&seen[i], &sb, fn)) return PT_OK;
    st = sandbox_run(path, fn, arg, seconds);
    if (st == PT_OK && have) {
        seen[next_seen] = (sandbox_seen){sb.st_dev, sb.st_ino, sb.st_size, sb.st_mtim, sb.st_ctim, fn};
        next_seen = (next_seen + 1) % SANDBOX_SEEN;
        if (n_seen < SANDBOX_SEEN) n_seen++;
    }
    return st;
}

static pt_status sandbox_run(const char *path, sandbox_fn fn, void *arg, int seconds)
{
    int fds[2];
    if (pipe(fds) != 0)
        return pt_fail(PT_ERR_IO, "%s: cannot create the pipe to check its HDF5 metadata: %s", path, strerror(errno));
    (void)fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return pt_fail(PT_ERR_IO, "%s: cannot start the process that checks its HDF5 metadata: %s", path,
                       strerror(e));
    }
    if (pid == 0) {
        close(fds[0]);
        sandbox_child(fds[1], seconds, path, fn, arg); /* does not return */
        _exit(4);
    }
    close(fds[1]);

    sandbox_result res;
    size_t got = 0;
    int timed_out = 0;
    double deadline = now_seconds() + seconds;
    for (;;) {
        double left = deadline - now_seconds();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int n = poll(&pfd, 1, left > 1e6 ? 1000000000 : (int)(left * 1000.0) + 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        if (n == 0) continue; /* the deadline is checked above */
        char extra; /* anything past the result is drained and ignored */
        ssize_t r = got < sizeof res ? read(fds[0], (char *)&res + got, sizeof res - got) : read(fds[0], &extra, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* end of file: the child is done */
        if (got < sizeof res) got += (size_t)r;
    }
    close(fds[0]);
    if (timed_out) kill(pid, SIGKILL);
    int ws = 0;
    pid_t w;
    while ((w = waitpid(pid, &ws, 0)) < 0 && errno == EINTR) {}
    if (timed_out) {
        char what[96];
        snprintf(what, sizeof what, "did not finish reading it in %d s (PIPETRAIN_HDF5_TIMEOUT)", seconds);
        return sandbox_damaged(path, what);
    }
    int exited_ok = w == pid ? WIFEXITED(ws) && WEXITSTATUS(ws) == 0 : 1; /* SIGCHLD ignored: trust the pipe */
    if (got == sizeof res && exited_ok) {
        res.msg[sizeof res.msg - 1] = '\0';
        if (res.status == PT_OK) return PT_OK;
        if (res.status < 0 || res.status >= PT_STATUS_COUNT) res.status = PT_ERR_FORMAT;
        return pt_fail((pt_status)res.status, "%s", res.msg);
    }
    char what[96];
    if (w == pid && WIFSIGNALED(ws)) {
        int sig = WTERMSIG(ws);
        const char *name = signal_name(sig);
        if (sig == SIGALRM || sig == SIGXCPU) {
            snprintf(what, sizeof what, "did not finish reading it in %d s (PIPETRAIN_HDF5_TIMEOUT)", seconds);
            return sandbox_damaged(path, what);
        }
        if (name) snprintf(what, sizeof what, "crashed (%s) reading it", name);
        else snprintf(what, sizeof what, "crashed (signal %d) reading it", sig);
    } else if (w == pid && WIFEXITED(ws)) {
        snprintf(what, sizeof what, "crashed (exit status %d) reading it", WEXITSTATUS(ws));
    } else {
        snprintf(what, sizeof what, "crashed reading it");
    }
    return sandbox_damaged(path, what);
}

/* Opens path read-only: distinguishes a missing file from one HDF5 cannot
 * read, and a file that cannot be locked from both. */
static pt_status open_readonly(const char *path, const char *what, hid_t *file)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return pt_fail(PT_ERR_IO, "%s %s is missing: %s", what, path, strerror(errno));
    htri_t ok = H5Fis_hdf5(path);
    if (ok <= 0)
        return h5_fail_file(PT_ERR_FORMAT, path, "%s %s is not a readable HDF5 file (truncated or damaged?)", what,
                            path);
    if ((*file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        return h5_fail_file(PT_ERR_FORMAT, path, "%s %s is not a readable HDF5 file (truncated or damaged?)", what,
                            path);
    return PT_OK;
}

/* The HDF5 part of check_single_file: which of /index, /layers and the
 * `stage` attribute the file has (*kind: 1 index, 2 a shard, 0 neither). */
static pt_status single_file_kind(const char *path, int *kind)
{
    *kind = 0;
    htri_t ok = H5Fis_hdf5(path);
    if (ok <= 0) {
        pt_status st = h5_fail_file(PT_ERR_INVALID, path, "not HDF5");
        if (st == PT_ERR_LOCK) return st;
        *kind = -1;
        return PT_OK;
    }
    hid_t file = H5I_INVALID_HID;
    if ((file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0)
        return h5_fail_file(PT_ERR_FORMAT, path,
                            "checkpoint file %s is not a readable HDF5 file (truncated or damaged?)", path);
    htri_t index = H5Lexists(file, "index", H5P_DEFAULT);
    htri_t layers = H5Lexists(file, "layers", H5P_DEFAULT);
    htri_t stage = H5Aexists(file, "stage");
    CLOSE_FILE(file);
    *kind = index > 0 ? 1 : layers > 0 && stage > 0 ? 2 : 0;
    return PT_OK;
}

static pt_status probe_single_file(const char *path, void *arg)
{
    (void)arg;
    int kind;
    return single_file_kind(path, &kind);
}

/* Is the regular file `path` a single-file checkpoint (HDF5 with /index)?
 * PT_OK when it is; otherwise an error saying what it is instead. */
static pt_status check_single_file(const char *path)
{
    static const char expected[] = "expected a run directory with a 'latest' file, a checkpoint directory "
                                   "with a manifest.h5, or a single-file checkpoint written by "
                                   "pipetrain-ckpt export";
    int kind = 0;
    pt_status st = h5_sandboxed(path, probe_single_file, NULL);
    if (st == PT_OK) st = single_file_kind(path, &kind);
    if (st != PT_OK) return st;
    if (kind < 0) return pt_fail(PT_ERR_INVALID, "checkpoint path %s is a file but not HDF5 (%s)", path, expected);
    if (kind == 1) return PT_OK;
    if (kind == 2)
        return pt_fail(PT_ERR_INVALID, "checkpoint path %s is one shard of a checkpoint (it has no /index): give "
                       "the checkpoint directory that holds it and its manifest.h5", path);
    return pt_fail(PT_ERR_INVALID, "checkpoint path %s is an HDF5 file without an /index dataset (%s)", path,
                   expected);
}

pt_status ckpt_resolve(const char *path, char *ckpt_dir, size_t len)
{
    h5_quiet();
    if (!path || !*path || !ckpt_dir) return pt_fail(PT_ERR_INVALID, "no checkpoint path given");
    char p[CKPT_PATH_MAX];
    int n = snprintf(p, sizeof p, "%s", path);
    if (n < 0 || (size_t)n >= sizeof p) return pt_fail(PT_ERR_INVALID, "checkpoint path '%s' is too long", path);
    while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
    struct stat sb;
    if (stat(p, &sb) != 0)
        return pt_fail(PT_ERR_IO, "checkpoint path %s: %s (expected a run directory with a 'latest' file, "
                       "a checkpoint directory with a manifest.h5 or a single-file checkpoint)", p, strerror(errno));
    if (S_ISREG(sb.st_mode)) {
        pt_status st = check_single_file(p);
        if (st != PT_OK) return st;
        if ((size_t)n >= len) return pt_fail(PT_ERR_INVALID, "checkpoint path %s is too long", p);
        memcpy(ckpt_dir, p, (size_t)n + 1);
        return PT_OK;
    }
    if (!S_ISDIR(sb.st_mode))
        return pt_fail(PT_ERR_INVALID, "checkpoint path %s is neither a directory nor a regular file (expected a "
                       "run directory with a 'latest' file, a checkpoint directory with a manifest.h5 or a "
                       "single-file checkpoint)", p);
    char latest_path[CKPT_PATH_MAX], manifest[CKPT_PATH_MAX];
    pt_status st;
    if ((st = join(latest_path, sizeof latest_path, p, "latest")) != PT_OK ||
        (st = join(manifest, sizeof manifest, p, "manifest.h5")) != PT_OK)
        return st;
    if (access(latest_path, F_OK) == 0) {
        char name[64], dir[CKPT_PATH_MAX], man[CKPT_PATH_MAX];
        if ((st = ckpt_read_latest(p, name, sizeof name)) != PT_OK) return st;
        if ((st = join(dir, sizeof dir, p, name)) != PT_OK || (st = join(man, sizeof man, dir, "manifest.h5")) != PT_OK)
            return st;
        if (access(man, F_OK) != 0)
            return pt_fail(PT_ERR_IO, "run directory %s: 'latest' names %s, but %s is missing", p, name, man);
        if (strlen(dir) >= len) return pt_fail(PT_ERR_INVALID, "checkpoint path %s is too long", dir);
        memcpy(ckpt_dir, dir, strlen(dir) + 1);
        return PT_OK;
    }
    if (access(manifest, F_OK) == 0) {
        if ((size_t)n >= len) return pt_fail(PT_ERR_INVALID, "checkpoint path %s is too long", p);
        memcpy(ckpt_dir, p, (size_t)n + 1);
        return PT_OK;
    }
    return pt_fail(PT_ERR_INVALID,
                   "%s is neither a run directory (it has no 'latest' file) nor a checkpoint directory "
                   "(it has no manifest.h5)", p);
}

int ckpt_is_single(const char *ckpt) { return ckpt && is_regular(ckpt); }

pt_status ckpt_manifest_path(const char *ckpt, char *out, size_t len)
{
    if (!ckpt || !out) return pt_fail(PT_ERR_INVALID, "ckpt_manifest_path: missing checkpoint or output");
    if (ckpt_is_single(ckpt)) {
        if (strlen(ckpt) >= len) return pt_fail(PT_ERR_INVALID, "checkpoint path %s is too long", ckpt);
        memcpy(out, ckpt, strlen(ckpt) + 1);
        return PT_OK;
    }
    return join(out, len, ckpt, "manifest.h5");
}

pt_status ckpt_shard_path(const char *ckpt, int stage, char *out, size_t len)
{
    if (!ckpt || !out || stage < 0) return pt_fail(PT_ERR_INVALID, "ckpt_shard_path: bad arguments");
    if (ckpt_is_single(ckpt)) {
        if (stage != 0)
            return pt_fail(PT_ERR_INVALID, "single-file checkpoint %s has one shard (0), not shard %d", ckpt, stage);
        return ckpt_manifest_path(ckpt, out, len);
    }
    char name[32];
    shard_name(name, sizeof name, stage);
    return join(out, len, ckpt, name);
}

void ckpt_manifest_free(ckpt_manifest *m)
{
    if (!m) return;
    free(m->cuts);
    free(m->config_text);
    free(m->history);
    free(m->entries);
    memset(m, 0, sizeof *m);
}

int ckpt_format_supported(int version)
{
    return version >= CKPT_FORMAT_VERSION_OLDEST && version <= CKPT_FORMAT_VERSION;
}

static pt_status unknown_version(const char *path, int version)
{
    return pt_fail(PT_ERR_FORMAT, "%s: format version %d, this pipetrain reads version %d or %d", path, version,
                   CKPT_FORMAT_VERSION_OLDEST, CKPT_FORMAT_VERSION);
}

/* The file type of /index has the fields the reader converts, each of the
 * right class and inside the row, and rows of a sane size. */
static pt_status check_index_type(hid_t ftype, const char *path)
{
    static const struct {
        const char *name;
        H5T_class_t cls;
    } fields[] = {{"name", H5T_STRING},  {"layer", H5T_INTEGER}, {"ndim", H5T_INTEGER}, {"shape", H5T_ARRAY},
                  {"numel", H5T_INTEGER}, {"shard", H5T_INTEGER}, {"crc", H5T_ARRAY}};
    size_t row = H5Tget_size(ftype);
    if (row == 0 || row > CKPT_ROW_MAX)
        return pt_fail(PT_ERR_FORMAT, "%s: /index rows of %zu bytes, expected at most %zu: the file is damaged", path,
                       row, CKPT_ROW_MAX);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        int idx = H5Tget_member_index(ftype, fields[i].name);
        if (idx < 0)
            return pt_fail(PT_ERR_FORMAT, "%s: /index has no field '%s'", path, fields[i].name);
        pt_status st = PT_OK;
        hid_t mt = H5I_INVALID_HID;
        mt = H5Tget_member_type(ftype, (unsigned)idx);
        size_t off = H5Tget_member_offset(ftype, (unsigned)idx);
        size_t msize = mt >= 0 ? H5Tget_size(mt) : 0;
        if (mt < 0 || H5Tget_class(mt) != fields[i].cls || msize == 0 || msize > row || off > row - msize)
            st = pt_fail(PT_ERR_FORMAT, "%s: /index field '%s' has the wrong type or lies outside its row of %zu "
                         "bytes: the file is damaged", path, fields[i].name, row);
        CLOSE_TYPE(mt);
        if (st != PT_OK) return st;
    }
    return PT_OK;
}

/* The bytes the index declares per shard fit in the shard file: a damaged
 * numel must not make a caller allocate terabytes. Deflate shrinks data by at
 * most ~1032:1; a missing shard is left to the reader to report. */
static pt_status check_entry_sizes(const ckpt_manifest *m, const char *ckpt_dir, const char *path)
{
    for (int s = 0; s < m->n_stages; s++) {
        char shard[CKPT_PATH_MAX];
        struct stat sb;
        if (ckpt_shard_path(ckpt_dir, s, shard, sizeof shard) != PT_OK || stat(shard, &sb) != 0) continue;
        double bound = (double)sb.st_size * CKPT_DEFLATE_RATIO + (double)(1 << 20), total = 0;
        for (int k = 0; k < m->n_entries; k++) {
            const ckpt_entry *e = &m->entries[k];
            if (e->shard != s) continue;
            total += (double)e->numel * sizeof(float) * CKPT_ARRAYS;
            if (total > bound)
                return pt_fail(PT_ERR_FORMAT, "%s: tensor %.*s declares %lld elements, but its shard %s has only "
                               "%lld bytes: the manifest (or the shard) is damaged", path, CKPT_NAME_MAX, e->name,
                               (long long)e->numel, shard, (long long)sb.st_size);
        }
    }
    return PT_OK;
}

/* Reads and checks the manifest at path (the checkpoint ckpt_dir; single: a
 * single-file checkpoint) into m. Runs in the sandbox's child, then for real. */
static pt_status read_manifest_file(const char *ckpt_dir, const char *path, int single, ckpt_manifest *m)
{
    pt_status st = PT_OK;
    hid_t file = H5I_INVALID_HID, dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hid_t ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    memset(m, 0, sizeof *m);
    if ((st = open_readonly(path, single ? "checkpoint file" : "checkpoint manifest", &file)) != PT_OK) goto done;
    hsize_t fsize = loc_file_size(file);
    if ((st = attr_read_i32(file, path, "format_version", &m->format_version)) != PT_OK) goto done;
    if (!ckpt_format_supported(m->format_version)) {
        st = unknown_version(path, m->format_version);
        goto done;
    }
    int64_t step = 0;
    if ((st = attr_read_int(file, path, "step", H5T_NATIVE_INT64, 1, &step)) != PT_OK ||
        (st = attr_read_int(file, path, "seed", H5T_NATIVE_UINT64, 1, &m->seed)) != PT_OK ||
        (st = attr_read_i32(file, path, "n_stages", &m->n_stages)) != PT_OK ||
        (st = attr_read_i32(file, path, "data_parallel", &m->data_parallel)) != PT_OK ||
        (st = attr_read_i32(file, path, "n_layers", &m->n_layers)) != PT_OK)
        goto done;
    m->step = (long)step;
    if (step < 0 || (int64_t)m->step != step) {
        st = pt_fail(PT_ERR_FORMAT, "%s: step %lld is out of range", path, (long long)step);
        goto done;
    }
    if (m->n_stages < 1 || m->n_stages > CKPT_STAGES_MAX ||
        (fsize > 0 && ((hsize_t)m->n_stages + 1) * sizeof(int) > fsize)) {
        st = pt_fail(PT_ERR_FORMAT, "%s: n_stages %d is out of range", path, m->n_stages);
        goto done;
    }
    if (single && m->n_stages != 1) {
        st = pt_fail(PT_ERR_FORMAT, "%s: a single-file checkpoint has n_stages 1, this one says %d", path,
                     m->n_stages);
        goto done;
    }
    if (!(m->cuts = malloc(sizeof(int) * ((size_t)m->n_stages + 1)))) {
        st = pt_fail(PT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    /* version 1 stored the config as a variable-length string, version 2 as a fixed-length one */
    if ((st = attr_read_int(file, path, "cuts", H5T_NATIVE_INT, m->n_stages + 1, m->cuts)) != PT_OK ||
        (st = attr_read_str(file, path, "config", m->format_version == 1, &m->config_text)) != PT_OK)
        goto done;
    /* optional: the history of changes on resume and the data fingerprint (absent before them) */
    htri_t has = H5Aexists(file, "history");
    if (has > 0) st = attr_read_str(file, path, "history", 0, &m->history);
    if (!st && (has = H5Aexists(file, "data_fingerprint")) > 0) {
        char *fp = NULL;
        if (!(st = attr_read_str(file, path, "data_fingerprint", 0, &fp)))
            snprintf(m->data_fingerprint, sizeof m->data_fingerprint, "%s", fp);
        free(fp);
    }
    if (!st && has < 0) st = h5_fail(PT_ERR_FORMAT, "%s: cannot look up its attributes (damaged?)", path);
    if (st) goto done;

    htri_t ex = H5Lexists(file, "index", H5P_DEFAULT);
    if (ex <= 0) {
        st = ex < 0 ? h5_fail(PT_ERR_FORMAT, "%s: cannot look up /index (damaged?)", path)
                    : pt_fail(PT_ERR_FORMAT, "%s lacks the dataset /index", path);
        goto done;
    }
    if ((dset = H5Dopen2(file, "index", H5P_DEFAULT)) < 0 || (space = H5Dget_space(dset)) < 0 ||
        (ftype = H5Dget_type(dset)) < 0) {
        st = h5_fail(PT_ERR_FORMAT, "%s: cannot open dataset /index (damaged?)", path);
        goto done;
    }
    if (H5Tget_class(ftype) != H5T_COMPOUND || H5Sget_simple_extent_ndims(space) != 1) {
        st = pt_fail(PT_ERR_FORMAT, "%s: /index is not a 1-D compound dataset", path);
        goto done;
    }
    if ((st = check_index_type(ftype, path)) != PT_OK) goto done;
    hsize_t n = 0;
    if (H5Sget_simple_extent_dims(space, &n, NULL) < 0) {
        st = h5_fail(PT_ERR_FORMAT, "%s: cannot read the extent of /index (damaged?)", path);
        goto done;
    }
    size_t row = H5Tget_size(ftype);
    if (n > CKPT_ENTRIES_MAX || (fsize > 0 && n * (hsize_t)row > fsize)) {
        st = pt_fail(PT_ERR_FORMAT, "%s: /index declares %llu entries of %zu bytes, more than the file's %llu "
                     "bytes can hold: the file is damaged", path, (unsigned long long)n, row,
                     (unsigned long long)fsize);
        goto done;
    }
    m->n_entries = (int)n;
    if (n > 0) {
        if (!(m->entries = calloc((size_t)n, sizeof *m->entries))) {
            st = pt_fail(PT_ERR_NOMEM, "%s: out of memory for %llu index entries", path, (unsigned long long)n);
            goto done;
        }
        if ((st = index_type(0, &mtype)) != PT_OK) {
            pt_wrap(st, "%s: ", path);
            goto done;
        }
        if (H5Dread(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, m->entries) < 0) {
            st = h5_fail(PT_ERR_FORMAT, "%s: cannot read /index (fields name, layer, ndim, shape, numel, shard, crc)",
                         path);
            goto done;
        }
    }
    if ((st = check_manifest(m, path)) != PT_OK || (st = check_entry_sizes(m, ckpt_dir, path)) != PT_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pt_last_error());
        st = pt_fail(PT_ERR_FORMAT, "%s", msg);
    }
done:
    CLOSE_TYPE(mtype);
    CLOSE_TYPE(ftype);
    CLOSE_SPACE(space);
    CLOSE_DSET(dset);
    CLOSE_FILE(file);
    if (st != PT_OK) ckpt_manifest_free(m);
    return st;
}

typedef struct {
    const char *ckpt_dir;
    int single;
} manifest_probe;

static pt_status probe_manifest(const char *path, void *arg)
{
    const manifest_probe *p = arg;
    ckpt_manifest m;
    pt_status st = read_manifest_file(p->ckpt_dir, path, p->single, &m);
    ckpt_manifest_free(&m);
    return st;
}

pt_status ckpt_read_manifest(const char *ckpt_dir, ckpt_manifest *m)
{
    h5_quiet();
    if (!ckpt_dir || !m) return pt_fail(PT_ERR_INVALID, "ckpt_read_manifest: missing directory or manifest");
    memset(m, 0, sizeof *m);
    char path[CKPT_PATH_MAX];
    int single = ckpt_is_single(ckpt_dir);
    pt_status st = ckpt_manifest_path(ckpt_dir, path, sizeof path);
    if (st != PT_OK) return st;
    struct stat sb;
    if (stat(path, &sb) != 0) /* the same message as open_readonly's, without a child */
        return pt_fail(PT_ERR_IO, "%s %s is missing: %s", single ? "checkpoint file" : "checkpoint manifest", path,
                       strerror(errno));
    manifest_probe probe = {ckpt_dir, single};
    if ((st = h5_sandboxed(path, probe_manifest, &probe)) != PT_OK) return st;
    return read_manifest_file(ckpt_dir, path, single, m);
}

int ckpt_find(const ckpt_manifest *m, const char *name)
{
    if (!m || !name) return -1;
    for (int k = 0; k < m->n_entries; k++)
        if (!strncmp(m->entries[k].name, name, CKPT_NAME_MAX)) return k;
    return -1;
}

pt_status ckpt_reader_open(ckpt_reader *r, const char *ckpt_dir, const ckpt_manifest *m)
{
    h5_quiet();
    if (!r || !ckpt_dir || !m || m->n_stages < 1)
        return pt_fail(PT_ERR_INVALID, "ckpt_reader_open: missing reader, directory or manifest");
    memset(r, 0, sizeof *r);
    int n = snprintf(r->dir, sizeof r->dir, "%s", ckpt_dir);
    if (n < 0 || (size_t)n >= sizeof r->dir)
        return pt_fail(PT_ERR_INVALID, "checkpoint path %s is too long", ckpt_dir);
    r->single = ckpt_is_single(ckpt_dir);
    if (r->single && m->n_stages != 1)
        return pt_fail(PT_ERR_INVALID, "single-file checkpoint %s: the manifest given lists %d shards, expected 1",
                       ckpt_dir, m->n_stages);
    if (!(r->files = malloc(sizeof(int64_t) * (size_t)m->n_stages)))
        return pt_fail(PT_ERR_NOMEM, "checkpoint %s: out of memory", ckpt_dir);
    r->n_files = m->n_stages;
    for (int s = 0; s < r->n_files; s++) r->files[s] = H5I_INVALID_HID;
    return PT_OK;
}

void ckpt_reader_close(ckpt_reader *r)
{
    if (!r) return;
    for (int s = 0; s < r->n_files && r->files; s++) {
        hid_t f = (hid_t)r->files[s];
        CLOSE_FILE(f);
        r->files[s] = H5I_INVALID_HID;
    }
    free(r->files);
    r->files = NULL;
    r->n_files = 0;
}

/* The file of shard s: <dir>/stage-XX.h5, or the single file itself. */
static pt_status reader_path(const ckpt_reader *r, int s, char *path, size_t len)
{
    if (r->single) {
        snprintf(path, len, "%s", r->dir); /* fits: both hold CKPT_PATH_MAX */
        return PT_OK;
    }
    char name[32];
    shard_name(name, sizeof name, s);
    return join(path, len, r->dir, name);
}

static pt_status probe_shard(const char *path, void *arg);

/* Opens shard s of r on first use (after walking its metadata in the
 * sandbox) and checks its format version and stage. */
static pt_status reader_shard(ckpt_reader *r, int s, const char *tensor, hid_t *out)
{
    if (r->files[s] >= 0) {
        *out = (hid_t)r->files[s];
        return PT_OK;
    }
    char path[CKPT_PATH_MAX];
    pt_status st = reader_path(r, s, path, sizeof path);
    if (st != PT_OK) return st;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (r->single) return pt_fail(PT_ERR_IO, "checkpoint file %s is missing (it holds tensor %s)", path, tensor);
        char name[32];
        shard_name(name, sizeof name, s);
        return pt_fail(PT_ERR_IO, "checkpoint %s: shard %s is missing (the manifest lists %d shards; it holds "
                       "tensor %s)", r->dir, name, r->n_files, tensor);
    }
    hid_t file = H5I_INVALID_HID;
    if ((st = h5_sandboxed(path, probe_shard, NULL)) != PT_OK ||
        (st = open_readonly(path, r->single ? "checkpoint file" : "checkpoint shard", &file)) != PT_OK)
        return pt_wrap(st, "tensor %s: ", tensor);
    int version = 0, stage = -1;
    if ((st = attr_read_i32(file, path, "format_version", &version)) != PT_OK ||
        (st = attr_read_i32(file, path, "stage", &stage)) != PT_OK)
        goto fail;
    if (!ckpt_format_supported(version)) {
        st = unknown_version(path, version);
        goto fail;
    }
    if (stage != s) {
        st = pt_fail(PT_ERR_MISMATCH, "%s: the file says it is the shard of stage %d, expected stage %d", path,
                     stage, s);
        goto fail;
    }
    r->files[s] = file;
    *out = file;
    return PT_OK;
fail:
    CLOSE_FILE(file);
    return st;
}

pt_status ckpt_read_tensor(ckpt_reader *r, const ckpt_entry *e, int which, float *out)
{
    h5_quiet();
    if (!r || !r->files || !e || !out || which < 0 || which >= CKPT_ARRAYS)
        return pt_fail(PT_ERR_INVALID, "ckpt_read_tensor: missing reader, entry or output, or array %d", which);
    if (e->shard < 0 || e->shard >= r->n_files)
        return pt_fail(PT_ERR_INVALID, "checkpoint %s: tensor %.*s is in shard %d, but there are %d shards", r->dir,
                       CKPT_NAME_MAX, e->name, e->shard, r->n_files);
    const char *param;
    pt_status st = split_name(e->name, e->layer, &param);
    if (st == PT_OK) st = check_shape(e->name, e->ndim, e->shape, e->numel);
    if (st != PT_OK) return pt_wrap(st, "checkpoint %s: ", r->dir);

    char path[CKPT_PATH_MAX], label[CKPT_NAME_MAX + 16], dpath[CKPT_NAME_MAX + 64];
    if ((st = reader_path(r, e->shard, path, sizeof path)) != PT_OK) return st;
    if (which == CKPT_PARAM) snprintf(label, sizeof label, "%s", e->name);
    else snprintf(label, sizeof label, "%s (%s)", e->name, array_label[which]);
    if (which == CKPT_PARAM) snprintf(dpath, sizeof dpath, "/layers/%d/%s", e->layer, param);
    else snprintf(dpath, sizeof dpath, "/layers/%d/%s/%s", e->layer, array_dir[which], param);

    hid_t file = H5I_INVALID_HID; /* owned by the reader */
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    if ((st = reader_shard(r, e->shard, label, &file)) != PT_OK) return st;

    htri_t ex = H5Lexists(file, dpath, H5P_DEFAULT);
    if (ex <= 0 || (dset = H5Dopen2(file, dpath, H5P_DEFAULT)) < 0) {
        st = h5_fail(PT_ERR_FORMAT, "%s: tensor %s: dataset %s is missing", path, label, dpath);
        goto done;
    }
    if ((space = H5Dget_space(dset)) < 0 || (type = H5Dget_type(dset)) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: tensor %s: cannot query dataset %s", path, label, dpath);
        goto done;
    }
    if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != sizeof(float)) {
        st = pt_fail(PT_ERR_FORMAT, "%s: tensor %s: dataset %s is not float32", path, label, dpath);
        goto done;
    }
    int nd = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK] = {0}, want[2] = {(hsize_t)e->shape[0], e->ndim == 2 ? (hsize_t)e->shape[1] : 1};
    if (nd < 0 || nd > H5S_MAX_RANK || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        st = h5_fail(PT_ERR_HDF5, "%s: tensor %s: cannot read the shape of %s", path, label, dpath);
        goto done;
    }
    if (nd != e->ndim || dims[0] != want[0] || (nd == 2 && dims[1] != want[1])) {
        char fs[64], ms[64];
        shape_str(fs, sizeof fs, nd, dims);
        shape_str(ms, sizeof ms, e->ndim, want);
        st = pt_fail(PT_ERR_MISMATCH, "%s: tensor %s: shape %s in the file, the manifest says %s", path, label, fs,
                     ms);
        goto done;
    }
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        st = h5_fail(PT_ERR_FORMAT, "%s: tensor %s: cannot read dataset %s (damaged?)", path, label, dpath);
        goto done;
    }
    uint32_t computed = ckpt_crc32(out, (size_t)e->numel), stored = e->crc[which];
    if (computed != stored) {
        st = pt_fail(PT_ERR_CHECKSUM,
                     "%s: tensor %s: checksum mismatch (stored crc32 0x%08x, computed 0x%08x): the file is damaged",
                     path, label, (unsigned)stored, (unsigned)computed);
        goto done;
    }
done:
    CLOSE_TYPE(type);
    CLOSE_SPACE(space);
    CLOSE_DSET(dset);
    return st;
}

/* ---- scanning a shard ---------------------------------------------------- */

void ckpt_shard_info_free(ckpt_shard_info *info)
{
    if (!info) return;
    free(info->datasets);
    memset(info, 0, sizeof *info);
}

/* Integer attribute `name` of loc, or `missing` when absent or not one integer. */
static int64_t attr_or(hid_t loc, const char *file, const char *name, int64_t missing, int *present)
{
    int64_t v = 0;
    htri_t ex = H5Aexists(loc, name);
    *present = 0;
    if (ex <= 0 || attr_read_int(loc, file, name, H5T_NATIVE_INT64, 1, &v) != PT_OK) return missing;
    *present = 1;
    return v;
}

static void note_other(ckpt_shard_info *info, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_other(ckpt_shard_info *info, const char *fmt, ...)
{
    if (info->n_other < CKPT_SCAN_OTHER_MAX) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(info->other[info->n_other], sizeof info->other[0], fmt, ap);
        va_end(ap);
    }
    info->n_other++;
}

static void dtype_name(hid_t type, char *out, size_t len)
{
    H5T_class_t c = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (c == H5T_FLOAT) snprintf(out, len, "float%zu", size * 8);
    else if (c == H5T_INTEGER) snprintf(out, len, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", size * 8);
    else if (c == H5T_STRING) snprintf(out, len, "string");
    else if (c == H5T_COMPOUND) snprintf(out, len, "compound");
    else snprintf(out, len, "other");
}

/* Records dataset `dset` as array `a` of tensor layers.<layer>.<param>. */
static pt_status scan_dataset(ckpt_shard_info *info, hid_t dset, const char *path, int layer, const char *param,
                              int a)
{
    pt_status st = PT_OK;
    hid_t space = H5I_INVALID_HID, type = H5I_INVALID_HID, attr = H5I_INVALID_HID, atype = H5I_INVALID_HID;
    hid_t aspace = H5I_INVALID_HID;
    if (info->n_datasets == info->cap) {
        int cap = info->cap ? 2 * info->cap : 32;
        ckpt_dataset *grown = realloc(info->datasets, sizeof *grown * (size_t)cap);
        if (!grown) return pt_fail(PT_ERR_NOMEM, "%s: out of memory", path);
        info->datasets = grown;
        info->cap = cap;
    }
    ckpt_dataset *d = &info->datasets[info->n_datasets];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "layers.%d.%s", layer, param); /* length checked by the caller */
    d->layer = layer;
    d->array = a;
    if ((space = H5Dget_space(dset)) < 0 || (type = H5Dget_type(dset)) < 0) {
        st = h5_fail(PT_ERR_FORMAT, "%s: cannot query dataset of tensor %s (damaged?)", path, d->name);
        goto done;
    }
    hsize_t dims[H5S_MAX_RANK] = {0};
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        st = h5_fail(PT_ERR_FORMAT, "%s: cannot read the shape of tensor %s (damaged?)", path, d->name);
        goto done;
    }
    d->ndim = nd;
    d->dims[0] = nd > 0 ? (int64_t)dims[0] : 0;
    d->dims[1] = nd > 1 ? (int64_t)dims[1] : 0;
    dtype_name(type, d->dtype, sizeof d->dtype);
    d->storage = (int64_t)H5Dget_storage_size(dset);
    if (H5Aexists(dset, "crc32") > 0 && (attr = H5Aopen(dset, "crc32", H5P_DEFAULT)) >= 0 &&
        (atype = H5Aget_type(attr)) >= 0 && (aspace = H5Aget_space(attr)) >= 0 &&
        H5Tget_class(atype) == H5T_INTEGER && H5Sget_simple_extent_npoints(aspace) == 1 &&
        H5Aread(attr, H5T_NATIVE_UINT32, &d->crc) >= 0)
        d->has_crc = 1;
    info->n_datasets++;
done:
    CLOSE_SPACE(aspace);
    CLOSE_TYPE(atype);
    CLOSE_ATTR(attr);
    CLOSE_TYPE(type);
    CLOSE_SPACE(space);
    return st;
}

/* Name of link i of group g (by name order) into buf; 0 when it does not fit. */
static pt_status link_name(hid_t g, hsize_t i, char *buf, size_t len, const char *path, const char *where, int *fits)
{
    ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
    if (n < 0) return h5_fail(PT_ERR_FORMAT, "%s: cannot list %s (damaged?)", path, where);
    *fits = (size_t)n < len;
    if (!*fits) return PT_OK;
    if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, buf, len, H5P_DEFAULT) < 0)
        return h5_fail(PT_ERR_FORMAT, "%s: cannot list %s (damaged?)", path, where);
    return PT_OK;
}

/* Opens child `name` of g as an object; its type in *kind (H5I_GROUP, H5I_DATASET, ...). */
static hid_t open_child(hid_t g, const char *name, H5I_type_t *kind)
{
    *kind = H5I_BADID;
    htri_t ok = H5Lexists(g, name, H5P_DEFAULT);
    if (ok <= 0) return H5I_INVALID_HID;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o >= 0) *kind = H5Iget_type(o);
    return o;
}

static void close_obj(hid_t *o)
{
    if (*o >= 0) H5Oclose(*o);
    *o = H5I_INVALID_HID;
}

/* The datasets of one layer group (and its moment1/moment2 groups). */
static pt_status scan_layer(ckpt_shard_info *info, hid_t lg, const char *path, int layer)
{
    pt_status st = PT_OK;
    hid_t child = H5I_INVALID_HID, sub = H5I_INVALID_HID;
    H5G_info_t gi;
    if (H5Gget_info(lg, &gi) < 0) return h5_fail(PT_ERR_FORMAT, "%s: cannot list /layers/%d (damaged?)", path, layer);
    for (hsize_t i = 0; i < gi.nlinks && st == PT_OK; i++) {
        char name[CKPT_NAME_MAX];
        int fits;
        char where[48];
        snprintf(where, sizeof where, "/layers/%d", layer);
        if ((st = link_name(lg, i, name, sizeof name, path, where, &fits)) != PT_OK) break;
        char global[CKPT_NAME_MAX + 32];
        snprintf(global, sizeof global, "layers.%d.%s", layer, fits ? name : "");
        if (!fits || strlen(global) >= CKPT_NAME_MAX) {
            note_other(info, "/layers/%d/%.40s...: name too long for a tensor", layer, fits ? name : "");
            continue;
        }
        H5I_type_t kind;
        child = open_child(lg, name, &kind);
        if (kind == H5I_DATASET) {
            st = scan_dataset(info, child, path, layer, name, CKPT_PARAM);
        } else if (kind == H5I_GROUP && (!strcmp(name, "moment1") || !strcmp(name, "moment2"))) {
            int a = name[6] == '1' ? CKPT_MOMENT1 : CKPT_MOMENT2;
            H5G_info_t mi;
            if (H5Gget_info(child, &mi) < 0) {
                st = h5_fail(PT_ERR_FORMAT, "%s: cannot list /layers/%d/%s (damaged?)", path, layer, name);
                break;
            }
            for (hsize_t j = 0; j < mi.nlinks && st == PT_OK; j++) {
                char pname[CKPT_NAME_MAX];
                snprintf(where, sizeof where, "/layers/%d/%s", layer, a == CKPT_MOMENT1 ? "moment1" : "moment2");
                if ((st = link_name(child, j, pname, sizeof pname, path, where, &fits)) != PT_OK) break;
                snprintf(global, sizeof global, "layers.%d.%s", layer, fits ? pname : "");
                if (!fits || strlen(global) >= CKPT_NAME_MAX) {
                    note_other(info, "/layers/%d/%s/%.40s...: name too long for a tensor", layer, name,
                               fits ? pname : "");
                    continue;
                }
                H5I_type_t k2;
                sub = open_child(child, pname, &k2);
                if (k2 == H5I_DATASET) st = scan_dataset(info, sub, path, layer, pname, a);
                else note_other(info, "/layers/%d/%s/%s: not a dataset", layer, name, pname);
                close_obj(&sub);
            }
        } else {
            note_other(info, "/layers/%d/%s: %s", layer, name,
                       kind == H5I_GROUP ? "a group that is no moment1/moment2" : "neither a dataset nor a group");
        }
        close_obj(&child);
    }
    close_obj(&sub);
    close_obj(&child);
    return st;
}

/* ckpt_scan_shard without the sandbox. */
static pt_status scan_shard_file(const char *path, ckpt_shard_info *info)
{
    memset(info, 0, sizeof *info);
    hid_t file = H5I_INVALID_HID, layers = H5I_INVALID_HID, lg = H5I_INVALID_HID;
    pt_status st = open_readonly(path, "checkpoint shard", &file);
    if (st != PT_OK) return st;
    int have;
    info->format_version = (int)attr_or(file, path, "format_version", -1, &have);
    info->stage = (int)attr_or(file, path, "stage", -1, &have);
    info->n_stages = (int)attr_or(file, path, "n_stages", -1, &have);
    info->first_layer = (int)attr_or(file, path, "first_layer", -1, &have);
    info->last_layer = (int)attr_or(file, path, "last_layer", -1, &have);
    info->step = (long)attr_or(file, path, "step", -1, &info->has_step);
    uint64_t seed = 0;
    if (H5Aexists(file, "seed") > 0 && attr_read_int(file, path, "seed", H5T_NATIVE_UINT64, 1, &seed) == PT_OK) {
        info->seed = seed;
        info->has_seed = 1;
    }
    H5I_type_t kind;
    layers = open_child(file, "layers", &kind);
    if (kind != H5I_GROUP) {
        info->has_layers = 0;
        goto done;
    }
    info->has_layers = 1;
    H5G_info_t gi;
    if (H5Gget_info(layers, &gi) < 0) {
        st = h5_fail(PT_ERR_FORMAT, "%s: cannot list /layers (damaged?)", path);
        goto done;
    }
    for (hsize_t i = 0; i < gi.nlinks && st == PT_OK; i++) {
        char name[32];
        int fits;
        if ((st = link_name(layers, i, name, sizeof name, path, "/layers", &fits)) != PT_OK) break;
        char *end = NULL;
        long l = fits && name[0] >= '0' && name[0] <= '9' ? strtol(name, &end, 10) : -1;
        if (l < 0 || *end != '\0' || l > (1L << 30)) {
            note_other(info, "/layers/%.40s: not a layer number", fits ? name : "(long name)");
            continue;
        }
        lg = open_child(layers, name, &kind);
        if (kind == H5I_GROUP) st = scan_layer(info, lg, path, (int)l);
        else note_other(info, "/layers/%s: not a group", name);
        close_obj(&lg);
    }
done:
    close_obj(&lg);
    close_obj(&layers);
    CLOSE_FILE(file);
    if (st != PT_OK) ckpt_shard_info_free(info);
    return st;
}

/* The sandbox's walk of a shard: open it, read its attributes and the shape,
 * type, storage and crc32 attribute of every dataset under /layers (all the
 * metadata the reader and the inspection tools use). */
static pt_status probe_shard(const char *path, void *arg)
{
    (void)arg;
    ckpt_shard_info info;
    pt_status st = scan_shard_file(path, &info);
    ckpt_shard_info_free(&info);
    return st;
}

pt_status ckpt_scan_shard(const char *path, ckpt_shard_info *info)
{
    h5_quiet();
    if (!path || !info) return pt_fail(PT_ERR_INVALID, "ckpt_scan_shard: missing path or output");
    memset(info, 0, sizeof *info);
    struct stat sb;
    if (stat(path, &sb) != 0) /* the same message as open_readonly's, without a child */
        return pt_fail(PT_ERR_IO, "checkpoint shard %s is missing: %s", path, strerror(errno));
    pt_status st = h5_sandboxed(path, probe_shard, NULL);
    if (st != PT_OK) return st;
    return scan_shard_file(path, info);
}
