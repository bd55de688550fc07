/* set_attr — test helper: overwrites an integer attribute of an HDF5 object,
 * to make checkpoints of an unknown format version (or other wrong
 * attributes) for the damaged-input tests.
 *   set_attr FILE OBJECT NAME VALUE     e.g. set_attr manifest.h5 / format_version 7
 * The attribute must exist; its type and shape are kept. Exit 0 on success. */
#include <stdio.h>
#include <stdlib.h>

#include <hdf5.h>

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: set_attr FILE OBJECT NAME VALUE\n");
        return 2;
    }
    char *end = NULL;
    long long v = strtoll(argv[4], &end, 10);
    if (*end) {
        fprintf(stderr, "set_attr: VALUE '%s' is not an integer\n", argv[4]);
        return 2;
    }
    int rc = 1;
    hid_t f = H5I_INVALID_HID, o = H5I_INVALID_HID, a = H5I_INVALID_HID, s = H5I_INVALID_HID;
    if ((f = H5Fopen(argv[1], H5F_ACC_RDWR, H5P_DEFAULT)) < 0) goto done;
    if ((o = H5Oopen(f, argv[2], H5P_DEFAULT)) < 0) goto done;
    if ((a = H5Aopen(o, argv[3], H5P_DEFAULT)) < 0) goto done;
    if ((s = H5Aget_space(a)) < 0 || H5Sget_simple_extent_npoints(s) != 1) goto done;
    if (H5Awrite(a, H5T_NATIVE_LLONG, &v) < 0) goto done;
    rc = 0;
done:
    if (s >= 0) H5Sclose(s);
    if (a >= 0) H5Aclose(a);
    if (o >= 0) H5Oclose(o);
    if (f >= 0 && H5Fclose(f) < 0) rc = 1;
    if (rc) fprintf(stderr, "set_attr: cannot set %s:%s attribute %s to %s\n", argv[1], argv[2], argv[3], argv[4]);
    return rc;
}
