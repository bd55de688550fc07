/* fuzz_manifest.c — libFuzzer target for the checkpoint reader.
 *
 * Each input is taken as the bytes of an HDF5 file and read twice:
 *  1. as <dir>/manifest.h5 of a checkpoint directory: ckpt_read_manifest,
 *     then ckpt_reader_open and ckpt_read_tensor of the first tensors (the
 *     shards are those of a real checkpoint when PT_FUZZ_SHARDS names its
 *     directory: its stage-XX.h5 files are copied next to the manifest once),
 *     and ckpt_scan_shard of every shard the manifest names;
 *  2. as a single-file checkpoint (manifest and shard in one file):
 *     ckpt_scan_shard, ckpt_read_manifest and the same tensor reads.
 * Every error is fine; a crash, a sanitizer report, a leak or a timeout is a
 * finding. By default the library's sandboxed pre-read is turned off
 * (PIPETRAIN_HDF5_TIMEOUT=0), so that HDF5's own crashes and hangs happen in
 * this process, where the fuzzer sees them: the inputs that crash HDF5, which
 * the sandbox must catch. With PT_FUZZ_SANDBOX=S (seconds) the sandbox stays
 * on with that limit, as in production: then a finding is a crash the
 * sandbox does not prevent (in pipetrain's own code, or an HDF5 call the
 * sandboxed walk does not make first). Run it with scripts/fuzz.sh manifest. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "ckpt.h"

#define READ_ENTRIES 3             /* tensors read per input */
#define READ_NUMEL_MAX (1u << 20) /* larger tensors are skipped (the harness's own buffer) */

static char dir[CKPT_PATH_MAX];     /* the checkpoint directory */
static char manifest[CKPT_PATH_MAX]; /* dir/manifest.h5 */
static char single[CKPT_PATH_MAX];   /* dir/single.h5 */

static void copy_shards(const char *from)
{
    for (int s = 0; s < 100; s++) {
        char src[CKPT_PATH_MAX], dst[CKPT_PATH_MAX];
        snprintf(src, sizeof src, "%s/stage-%02d.h5", from, s);
        snprintf(dst, sizeof dst, "%s/stage-%02d.h5", dir, s);
        FILE *in = fopen(src, "rb");
        if (!in) break;
        FILE *out = fopen(dst, "wb");
        if (out) {
            char buf[1 << 16];
            size_t n;
            while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
            fclose(out);
        }
        fclose(in);
    }
}

static void cleanup(void)
{
    unlink(manifest);
    unlink(single);
    for (int s = 0; s < 100; s++) {
        char p[CKPT_PATH_MAX];
        snprintf(p, sizeof p, "%s/stage-%02d.h5", dir, s);
        unlink(p);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *sandbox = getenv("PT_FUZZ_SANDBOX");
    /* 0: no sandbox child, HDF5's crashes stay in this process */
    setenv("PIPETRAIN_HDF5_TIMEOUT", sandbox && *sandbox ? sandbox : "0", 1);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/fuzz_manifest.XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("fuzz_manifest: mkdtemp");
        abort();
    }
    snprintf(manifest, sizeof manifest, "%s/manifest.h5", dir);
    snprintf(single, sizeof single, "%s/single.h5", dir);
    const char *shards = getenv("PT_FUZZ_SHARDS");
    if (shards && *shards) copy_shards(shards);
    atexit(cleanup);
    return 0;
}

static int write_input(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = fwrite(data, 1, size, f);
    return fclose(f) == 0 && n == size ? 0 : -1;
}

/* ckpt_read_manifest, the first tensors through the reader, every shard scanned */
static void read_checkpoint(const char *ckpt, int scan_shards)
{
    ckpt_manifest m;
    memset(&m, 0, sizeof m);
    if (ckpt_read_manifest(ckpt, &m) != PT_OK) {
        ckpt_manifest_free(&m);
        return;
    }
    (void)ckpt_find(&m, "layers.0.w");
    ckpt_reader r;
    memset(&r, 0, sizeof r);
    if (ckpt_reader_open(&r, ckpt, &m) == PT_OK) {
        for (int k = 0, read = 0; k < m.n_entries && read < READ_ENTRIES; k++) {
            const ckpt_entry *e = &m.entries[k];
            if (e->numel <= 0 || e->numel > (int64_t)READ_NUMEL_MAX) continue;
            float *buf = malloc((size_t)e->numel * sizeof *buf);
            if (!buf) break;
            (void)ckpt_read_tensor(&r, e, read % CKPT_ARRAYS, buf);
            free(buf);
            read++;
        }
        ckpt_reader_close(&r);
    }
    for (int s = 0; scan_shards && s < m.n_stages && s < 100; s++) {
        char path[CKPT_PATH_MAX];
        ckpt_shard_info info;
        memset(&info, 0, sizeof info);
        if (ckpt_shard_path(ckpt, s, path, sizeof path) == PT_OK) {
            (void)ckpt_scan_shard(path, &info);
            ckpt_shard_info_free(&info);
        }
    }
    ckpt_manifest_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (write_input(manifest, data, size) == 0) read_checkpoint(dir, 1);
    if (write_input(single, data, size) == 0) {
        ckpt_shard_info info;
        memset(&info, 0, sizeof info);
        (void)ckpt_scan_shard(single, &info);
        ckpt_shard_info_free(&info);
        read_checkpoint(single, 0);
    }
    pt_clear_error();
    return 0;
}
