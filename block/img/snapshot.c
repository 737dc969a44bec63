/* calf-img snapshot: list, create, apply and delete internal snapshots
 * with qemu-img's options, messages and list format. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "block/img/img.h"
#include "block/tool-util.h"

enum { SN_NONE, SN_LIST, SN_APPLY, SN_CREATE, SN_DELETE };

/* QEMU's bdrv_snapshot_dump() */
static void list_snapshots(BlockDriverState *bs)
{
    BlockInfo info = {0};
    if (blk_get_info(bs, &info) < 0 || info.nb_snapshots <= 0) {
        blk_info_free(&info);
        return;
    }
    printf("Snapshot list:\n");
    printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for (int i = 0; i < info.nb_snapshots; i++) {
        const BlockSnapshotInfo *sn = &info.snapshots[i];
        char date[32], clock[64], size[64], icount[32] = "";
        time_t t = sn->date_sec;
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
        uint64_t secs = sn->vm_clock_nsec / 1000000000;
        snprintf(clock, sizeof(clock), "%02d:%02d:%02d.%03d", (int)(secs / 3600),
                 (int)((secs / 60) % 60), (int)(secs % 60),
                 (int)((sn->vm_clock_nsec / 1000000) % 1000));
        blk_size_to_str(sn->vm_state_size, size, sizeof(size));
        if (sn->icount != UINT64_MAX)
            snprintf(icount, sizeof(icount), "%" PRId64, (int64_t)sn->icount);
        printf("%-9s %-16s %8s%20s%13s%11s\n", sn->id, sn->name, size, date, clock, icount);
    }
    blk_info_free(&info);
}

/* qemu-img deletes by name only (bdrv_snapshot_find); the driver takes an
 * id, which is unique. */
static int id_of_name(BlockDriverState *bs, const char *name, char *id, size_t len)
{
    BlockInfo info = {0};
    int found = -1;
    if (blk_get_info(bs, &info) == 0)
        for (int i = 0; i < info.nb_snapshots && found < 0; i++)
            if (!strcmp(info.snapshots[i].name, name))
                found = i;
    if (found >= 0)
        snprintf(id, len, "%s", info.snapshots[found].id);
    blk_info_free(&info);
    return found;
}

int img_snapshot(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"help", no_argument, 0, 'h'},
        IMG_COMMON_LONG_OPTIONS,
        {"force-share", no_argument, 0, 'U'},
        {0, 0, 0, 0},
    };
    const char *fmt = NULL, *name = NULL;
    bool quiet = false, force_share = false;
    int action = SN_NONE, c;
    while ((c = getopt_long(argc, argv, ":la:c:d:f:hqU", lopts, NULL)) != -1) {
        int a = SN_NONE;
        switch (c) {
        case 'h':
            img_help();
        case 'f':
            fmt = optarg;
            break;
        case 'q':
            quiet = true;
            break;
        case 'U':
            force_share = true;
            break;
        case 'l':
            a = SN_LIST;
            break;
        case 'a':
            a = SN_APPLY;
            break;
        case 'c':
            a = SN_CREATE;
            break;
        case 'd':
            a = SN_DELETE;
            break;
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                return 1;
            break;
        default:
            img_bad_option(c, argv);
        }
        if (a != SN_NONE) {
            if (action != SN_NONE)
                img_usage_error("Cannot mix '-l', '-a', '-c', '-d'");
            action = a;
            name = optarg;
        }
    }
    (void)quiet; /* only the list prints, and -q does not silence it */
    if (optind != argc - 1)
        img_usage_error("Expecting one image file name");
    const char *filename = argv[optind];
    bool rw = action != SN_LIST;
    if (rw && force_share) {
        img_error("Could not open '%s': force-share=on can only be used with read-only "
                  "images", filename);
        return 1;
    }
    BlockDriverState *bs = img_open(filename, fmt, rw ? BLK_O_RDWR | BLK_O_NO_BACKING :
                                    BLK_O_NO_BACKING, force_share);
    if (!bs)
        return 1;
    int r = 0;
    char id[128];
    switch (action) {
    case SN_LIST:
        list_snapshots(bs);
        break;
    case SN_CREATE:
        /* QEMU says no more than the errno here */
        if ((r = blk_snapshot_create(bs, name)) < 0)
            img_error("Could not create snapshot '%s': %d (%s)", name, r, strerror(-r));
        break;
    case SN_APPLY:
        if ((r = blk_snapshot_apply(bs, name)) < 0) {
            if (r == -ENOENT)
                img_error("Could not apply snapshot '%s': Failed to load snapshot: %s", name,
                          strerror(ENOENT));
            else
                img_error("Could not apply snapshot '%s': %s", name, blk_error());
        }
        break;
    case SN_DELETE:
        if (id_of_name(bs, name, id, sizeof(id)) < 0) {
            img_error("Could not delete snapshot '%s': snapshot not found", name);
            r = -ENOENT;
        } else if ((r = blk_snapshot_delete(bs, id)) < 0) {
            img_error("Could not delete snapshot '%s': %s", name, blk_error());
        }
        break;
    }
    if (r == 0 && rw && (r = blk_flush(bs)) < 0)
        img_error("%s", blk_error());
    blk_close(bs);
    return r < 0 ? 1 : 0;
}
