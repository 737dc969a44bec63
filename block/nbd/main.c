/* calf-nbd: serves an image over NBD, with qemu-nbd's command line:
 *   calf-nbd [-r] [-x NAME] [-p PORT] [-b ADDR] [-k SOCKET] [-t] [-e N]
 *            [-f FMT] [--cache=M] [--discard=M] [--detect-zeroes=M]
 *            [-o OFFSET] [-B BITMAP] [-A] [-D TEXT] [-s] [-l SNAP] FILE
 *   calf-nbd -L [-k SOCKET | -b ADDR -p PORT]     (list a server's exports)
 *   calf-nbd -d DEV                               (kernel client disconnect)
 * Each client runs on a thread of its own (block/nbd-server.c); at most
 * -e clients at once (default 1; 0: any number), and without -t the
 * server ends when its last client leaves. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "block/block.h"
#include "block/img/img.h"
#include "block/nbd-proto.h"
#include "block/tool-util.h"

#define CALF_VERSION "0.1"
#define MAX_CLIENTS 1024

static void usage(void)
{
    printf("Usage: %s [OPTIONS] FILE\n"
           "calf Disk Network Block Device Utility (qemu-nbd compatible)\n"
           "\n"
           "  -h, --help                display this help and exit\n"
           "  -V, --version             output version information and exit\n"
           "\n"
           "Connection properties:\n"
           "  -p, --port=PORT           port to listen on (default `10809')\n"
           "  -b, --bind=IFACE          interface to bind to (default `0.0.0.0')\n"
           "  -k, --socket=PATH         path to the unix socket\n"
           "  -e, --shared=NUM          device can be shared by NUM clients (default '1')\n"
           "  -t, --persistent          don't exit on the last connection\n"
           "  -v, --verbose             display extra debugging information\n"
           "  -x, --export-name=NAME    expose export by name (default is empty string)\n"
           "  -D, --description=TEXT    export a human-readable description\n"
           "      --handshake-limit=N   a client gets N seconds to finish the handshake\n"
           "                            (default 10; 0: forever)\n"
           "\n"
           "Exposing part of the image:\n"
           "  -o, --offset=OFFSET       offset into the image\n"
           "  -A, --allocation-depth    expose the allocation depth\n"
           "  -B, --bitmap=NAME         expose a persistent dirty bitmap\n"
           "\n"
           "General purpose options:\n"
           "  -L, --list                list exports available from another NBD server\n"
           "  --object type,id=ID,...   define an object such as 'secret' for providing\n"
           "                            passwords and/or encryption keys\n"
           "  --fork                    fork off the server process and exit the parent\n"
           "                            once the server is running\n"
           "  --pid-file=PATH           store the server's process ID in the given file\n"
           "\n"
           "Kernel NBD client support:\n"
           "  -c, --connect=DEV         (not supported: serve with -k or -p, run nbd-client)\n"
           "  -d, --disconnect          disconnect the specified device\n"
           "\n"
           "Block device options:\n"
           "  -f, --format=FORMAT       set image format (raw, qcow2, ...)\n"
           "  -r, --read-only           export read-only\n"
           "  -s, --snapshot            use FILE as an external snapshot, create a temporary\n"
           "                            file with backing_file=FILE, redirect the write to\n"
           "                            the temporary one\n"
           "  -l, --load-snapshot=SNAPSHOT_PARAM\n"
           "                            load an internal snapshot inside FILE and export it\n"
           "                            as an read-only device\n"
           "  -n, --nocache             disable host cache\n"
           "      --cache=MODE          set cache mode used to access the disk image, the\n"
           "                            valid options are: 'none', 'writeback' (default),\n"
           "                            'writethrough', 'directsync' and 'unsafe'\n"
           "      --aio=MODE            set AIO mode (native, io_uring or threads)\n"
           "      --discard=MODE        set discard mode (ignore, unmap)\n"
           "      --detect-zeroes=MODE  set detect-zeroes mode (off, on, unmap)\n"
           "      --image-opts          treat FILE as a full set of image options\n",
           tool_progname);
}

static void die(const char *fmt, const char *a)
{
    fprintf(stderr, "%s: ", tool_progname);
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    exit(1);
}

static void usage_error(const char *fmt, const char *a)
{
    fprintf(stderr, "%s: ", tool_progname);
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\nTry `%s --help' for more information.\n", tool_progname);
    exit(1);
}

/* ---- the command line ---- */

/* arg as a whole number in [0, max] (strtol's base), or -1 */
static long opt_number(const char *arg, int base, long max)
{
    char *end;
    long v = strtol(arg, &end, base);
    return *arg && !*end && v >= 0 && v <= max ? v : -1;
}

/* arg if it fits an NBD string, else the error fmt (with arg) */
static const char *opt_string(const char *arg, const char *fmt)
{
    if (strlen(arg) > NBD_MAX_STRING)
        die(fmt, arg);
    return arg;
}

/* The words an option takes, each with its value; NULL ends a table. */
struct opt_word {
    const char *word;
    int value;
};

static const struct opt_word cache_modes[] = {
    {"writeback", 0},
    {"none", BLK_O_NOCACHE},
    {"off", BLK_O_NOCACHE},
    {"directsync", BLK_O_NOCACHE | BLK_O_WRITETHROUGH},
    {"writethrough", BLK_O_WRITETHROUGH},
    {"unsafe", BLK_O_UNSAFE},
    {NULL, 0},
};
static const struct opt_word aio_modes[] = {
    {"threads", 0}, {"native", 0}, {"io_uring", 0}, {NULL, 0},
};
/* 1: unmap */
static const struct opt_word discard_modes[] = {
    {"ignore", 0}, {"off", 0}, {"unmap", 1}, {"on", 1}, {NULL, 0},
};
/* NbdExport.detect_zeroes */
static const struct opt_word detect_modes[] = {
    {"off", 0}, {"on", 1}, {"unmap", 2}, {NULL, 0},
};

/* arg's value in the table t, or the error fmt (with arg) */
static int opt_word(const struct opt_word *t, const char *arg, const char *fmt)
{
    for (; t->word; t++) {
        if (!strcmp(t->word, arg))
            return t->value;
    }
    die(fmt, arg);
    return -1;
}

/* ---- the clients ---- */

static NbdExport export;
static bool verbose;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int nclients;
static int client_fds[MAX_CLIENTS];
static int wake_pipe[2] = {-1, -1}; /* a byte: a client left, or a signal came */

static void wake(void)
{
    char b = 0;
    ssize_t r = write(wake_pipe[1], &b, 1);
    (void)r;
}

static bool finished; /* a client that got to transmission left the last */

static void *client_thread(void *opaque)
{
    int fd = (int)(intptr_t)opaque;
    bool negotiated = false;
    nbd_serve(&export, fd, verbose, &negotiated);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (client_fds[i] == fd) {
            client_fds[i] = -1;
            break;
        }
    close(fd); /* under the lock: the number is not reused before it is off the list */
    nclients--;
    /* as qemu-nbd: a client that never finished its handshake (a port
     * probe) does not end a server without -t */
    if (negotiated && nclients == 0)
        finished = true;
    pthread_mutex_unlock(&lock);
    wake();
    return NULL;
}

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
    wake();
}

/* ---- listening ---- */

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        die("UNIX socket path '%s' is too long", path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("Failed to create socket: %s", strerror(errno));
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        char msg[4200];
        snprintf(msg, sizeof(msg), "Failed to bind socket to %s: %s", path, strerror(errno));
        die("%s", msg);
    }
    return fd;
}

static int listen_tcp(const char *addr, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE}, *res, *a;
    int e = getaddrinfo(addr, port, &hints, &res);
    if (e) {
        char msg[512];
        snprintf(msg, sizeof(msg), "address resolution failed for %s:%s: %s", addr, port,
                 gai_strerror(e));
        die("%s", msg);
    }
    int fd = -1, err = 0;
    for (a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        die("Failed to find an available port: %s", strerror(err));
    return fd;
}

/* ---- -B: a persistent dirty bitmap as qemu:dirty-bitmap:NAME ---- */

static int load_bitmap(BlockDriverState *bs, const char *name, bool readonly)
{
    BlockInfo info;
    const BlockBitmapInfo *bi = NULL;
    if (blk_get_info(bs, &info) == 0)
        for (int i = 0; i < info.nb_bitmaps; i++)
            if (!strcmp(info.bitmaps[i].name, name))
                bi = &info.bitmaps[i];
    int r = -1;
    if (!bi) {
        fprintf(stderr, "%s: Bitmap '%s' is not found\n", tool_progname, name);
    } else if (bi->in_use) {
        fprintf(stderr, "%s: Bitmap '%s' is inconsistent and cannot be used\n"
                "Try block-dirty-bitmap-remove to delete this bitmap from disk\n",
                tool_progname, name);
    } else if (bi->enabled && !readonly) {
        /* it would change under the export's own writes: calf reads it once */
        fprintf(stderr, "%s: Bitmap '%s' is enabled: %s exports it only read-only (-r) or "
                "disabled\n", tool_progname, name, tool_progname);
    } else {
        BlockBitmapReq req = {.op = BLK_BITMAP_READ, .name = name};
        if (blk_bitmap(bs, &req) < 0) {
            fprintf(stderr, "%s: Bitmap '%s': %s\n", tool_progname, name, blk_error());
        } else {
            export.bitmap = name;
            export.bitmap_bits = req.bits;
            export.bitmap_nbytes = req.nbytes;
            export.bitmap_gran = req.granularity;
            r = 0;
        }
    }
    blk_info_free(&info);
    return r;
}

/* ---- -L: list another server's exports ---- */

static int list_exports(const char *sockpath, const char *host, const char *port)
{
    char where[4200], err[512];
    int fd = -1, e = 0;
    if (sockpath) {
        snprintf(where, sizeof(where), "%s", sockpath);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(sockpath) >= sizeof(sa.sun_path))
            die("UNIX socket path '%s' is too long", sockpath);
        strcpy(sa.sun_path, sockpath);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
    } else {
        snprintf(where, sizeof(where), "%s:%s", host, port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *a;
        int g = getaddrinfo(host, port, &hints, &res);
        if (g) {
            char msg[512];
            snprintf(msg, sizeof(msg), "address resolution failed for %s:%s: %s", host, port,
                     gai_strerror(g));
            die("%s", msg);
        }
        for (a = res; a && fd < 0; a = a->ai_next) {
            fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
                e = errno;
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(res);
    }
    if (fd < 0) {
        char msg[4400];
        snprintf(msg, sizeof(msg), "Failed to connect to '%s': %s", where, strerror(e));
        die("%s", msg);
    }
    signal(SIGPIPE, SIG_IGN);
    int r = nbd_list_exports(fd, stdout, err, sizeof(err));
    close(fd);
    if (r < 0)
        die("%s", err);
    return 0;
}

/* ---- -c/-d: the kernel's NBD client ---- */

#define NBD_IOC_DISCONNECT 0xab08 /* linux/nbd.h's _IO(0xab, 8) */
#define NBD_IOC_CLEAR_SOCK 0xab04 /* _IO(0xab, 4) */
#define NBD_IOC_CLEAR_QUE  0xab05 /* _IO(0xab, 5) */

/* -d DEV: as qemu-nbd, asks the kernel to drop DEV's connection */
static int kernel_disconnect(const char *dev)
{
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        char msg[4200];
        snprintf(msg, sizeof(msg), "Cannot open %s: %s", dev, strerror(errno));
        die("%s", msg);
    }
    ioctl(fd, NBD_IOC_CLEAR_QUE);
    ioctl(fd, NBD_IOC_DISCONNECT);
    ioctl(fd, NBD_IOC_CLEAR_SOCK);
    close(fd);
    printf("%s disconnected\n", dev);
    return 0;
}

/* -c DEV: the device must open, as with qemu-nbd; calf-nbd then says it
 * cannot drive it (the kernel's own nbd-client can, against calf-nbd). */
static void kernel_connect_unsupported(const char *dev)
{
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        char msg[4200];
        snprintf(msg, sizeof(msg), "Failed to open %s: %s", dev, strerror(errno));
        die("%s", msg);
    }
    close(fd);
    die("connecting %s to the kernel's NBD client (-c) is not supported; serve with -k or "
        "-p and run nbd-client", dev);
}

/* ---- options ---- */

enum {
    OPT_CACHE = 0x2000,
    OPT_AIO,
    OPT_DISCARD,
    OPT_DETECT_ZEROES,
    OPT_FORK,
    OPT_PID_FILE,
    OPT_TLSCREDS,
    OPT_TLSAUTHZ,
    OPT_SELINUX,
    OPT_HANDSHAKE_LIMIT,
};

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {"bind", required_argument, 0, 'b'},
        {"port", required_argument, 0, 'p'},
        {"socket", required_argument, 0, 'k'},
        {"offset", required_argument, 0, 'o'},
        {"read-only", no_argument, 0, 'r'},
        {"allocation-depth", no_argument, 0, 'A'},
        {"bitmap", required_argument, 0, 'B'},
        {"connect", required_argument, 0, 'c'},
        {"disconnect", no_argument, 0, 'd'},
        {"list", no_argument, 0, 'L'},
        {"snapshot", no_argument, 0, 's'},
        {"load-snapshot", required_argument, 0, 'l'},
        {"nocache", no_argument, 0, 'n'},
        {"cache", required_argument, 0, OPT_CACHE},
        {"aio", required_argument, 0, OPT_AIO},
        {"discard", required_argument, 0, OPT_DISCARD},
        {"detect-zeroes", required_argument, 0, OPT_DETECT_ZEROES},
        {"shared", required_argument, 0, 'e'},
        {"format", required_argument, 0, 'f'},
        {"persistent", no_argument, 0, 't'},
        {"verbose", no_argument, 0, 'v'},
        {"export-name", required_argument, 0, 'x'},
        {"description", required_argument, 0, 'D'},
        {"fork", no_argument, 0, OPT_FORK},
        {"pid-file", required_argument, 0, OPT_PID_FILE},
        {"tls-creds", required_argument, 0, OPT_TLSCREDS},
        {"tls-authz", required_argument, 0, OPT_TLSAUTHZ},
        {"selinux-label", required_argument, 0, OPT_SELINUX},
        {"trace", required_argument, 0, 'T'},
        {"handshake-limit", required_argument, 0, OPT_HANDSHAKE_LIMIT},
        IMG_COMMON_LONG_OPTIONS,
        {0, 0, 0, 0},
    };
    tool_set_progname(argv[0]);
    const char *bindto = NULL, *port = NULL, *sockpath = NULL, *fmt = NULL;
    const char *snapshot_name = NULL, *pid_file = NULL, *bitmap = NULL;
    uint64_t offset = 0;
    bool list = false, seen_dev_opt = false, disconnect = false;
    const char *device = NULL;
    bool readonly = false, snapshot = false, persistent = false, do_fork = false;
    int shared = 1, flags = 0, handshake_s = 10, discard = 0, detect = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hVb:p:k:o:rAB:c:dLsl:nf:e:tvx:D:T:", long_options,
                            NULL)) != -1) {
        switch (c) {
        case 'h':
            usage();
            return 0;
        case 'V':
            printf("%s " CALF_VERSION "\n", tool_progname);
            return 0;
        case 'b': bindto = optarg; break;
        case 'p':
            if (opt_number(optarg, 10, 65535) < 0)
                usage_error("Invalid port number `%s'", optarg);
            port = optarg;
            break;
        case 'k':
            sockpath = optarg;
            if (sockpath[0] != '/')
                die("socket path must be absolute%s", "");
            break;
        case 'r': readonly = true; break;
        case 'A': export.allocation_depth = true; seen_dev_opt = true; break;
        case 's': snapshot = true; break;
        case 'l':
            seen_dev_opt = true;
            snapshot_name = optarg;
            readonly = true;
            break;
        case 'n':
            seen_dev_opt = true;
            flags |= BLK_O_NOCACHE;
            break;
        case OPT_CACHE:
            seen_dev_opt = true;
            flags &= ~(BLK_O_NOCACHE | BLK_O_UNSAFE | BLK_O_WRITETHROUGH);
            flags |= opt_word(cache_modes, optarg, "Invalid cache mode `%s'");
            break;
        case OPT_AIO:
            seen_dev_opt = true;
            opt_word(aio_modes, optarg, "invalid aio mode '%s'");
            break;
        case OPT_DISCARD:
            seen_dev_opt = true;
            discard = opt_word(discard_modes, optarg, "Invalid discard mode `%s'");
            break;
        case OPT_DETECT_ZEROES:
            detect = opt_word(detect_modes, optarg,
                              "Failed to parse detect_zeroes mode: invalid parameter value: %s");
            break;
        case 'e':
            if ((shared = opt_number(optarg, 0, 0x7fffffff)) < 0)
                die("Invalid shared device number '%s'", optarg);
            break;
        case 'f': fmt = optarg; seen_dev_opt = true; break;
        case 't': persistent = true; break;
        case 'v': verbose = true; break;
        case 'x': export.name = opt_string(optarg, "export name '%s' too long"); break;
        case 'D':
            export.description = opt_string(optarg, "export description '%s' too long");
            break;
        case OPT_HANDSHAKE_LIMIT:
            if ((handshake_s = opt_number(optarg, 10, 86400)) < 0)
                die("Invalid handshake limit '%s'", optarg);
            break;
        case OPT_FORK: do_fork = true; break;
        case OPT_PID_FILE: pid_file = optarg; break;
        case 'T': case OPT_SELINUX: break; /* nothing to trace or label */
        case IMG_OPT_OBJECT:
        case IMG_OPT_IMAGE_OPTS:
            if (img_common_option(c, optarg) < 0)
                return 1;
            break;
        case 'o': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 0);
            if (!*optarg || *end || errno || optarg[0] == '-')
                die("Invalid offset '%s'", optarg);
            offset = v;
            break;
        }
        case 'B':
            if (bitmap)
                die("only one --bitmap is supported by %s", tool_progname);
            bitmap = optarg;
            break;
        case 'c': device = optarg; seen_dev_opt = true; break;
        case 'd': disconnect = true; seen_dev_opt = true; break;
        case 'L': list = true; break;
        case OPT_TLSCREDS: case OPT_TLSAUTHZ:
            die("TLS is not supported by %s", tool_progname);
            break;
        default:
            fprintf(stderr, "Try `%s --help' for more information.\n", tool_progname);
            return 1;
        }
    }
    if (list) {
        if (argc != optind)
            die("List mode is incompatible with a file name%s", "");
        if (export.name || export.description || offset || seen_dev_opt || bitmap)
            die("List mode is incompatible with per-device settings%s", "");
        if (do_fork)
            die("List mode is incompatible with forking%s", "");
        return list_exports(sockpath, bindto ? bindto : "0.0.0.0", port ? port : "10809");
    }
    if (argc - optind != 1)
        usage_error("Invalid number of arguments%s", "");
    if (disconnect)
        return kernel_disconnect(argv[optind]);
    if (device)
        kernel_connect_unsupported(device);
    if (detect == 2 && !discard)
        die("setting detect-zeroes to unmap is not allowed without setting discard operation "
            "to unmap%s", "");
    if (fmt && img_image_opts)
        die("--image-opts and --format are mutually exclusive%s", "");
    if (!export.name)
        export.name = "";
    const char *file = argv[optind];

    int oflags = flags | (readonly ? 0 : BLK_O_RDWR);
    BlockDriverState *bs;
    if (img_image_opts)
        bs = img_open_image_opts(file, oflags);
    else if (snapshot)
        bs = blk_open_snapshot(file, fmt, oflags);
    else
        bs = blk_open(file, fmt, oflags, NULL);
    if (!bs) {
        if (!img_image_opts) {
            char msg[2048];
            snprintf(msg, sizeof(msg), "Failed to blk_new_open '%s': %s", file, blk_error());
            die("%s", msg);
        }
        return 1;
    }
    if (snapshot_name && blk_snapshot_load_tmp_by_id_or_name(bs, snapshot_name) < 0) {
        char msg[2048];
        snprintf(msg, sizeof(msg), "Failed to load snapshot: %s", blk_error());
        blk_close(bs);
        die("%s", msg);
    }
    if (offset > bs->size) {
        char msg[256];
        snprintf(msg, sizeof(msg), "Offset (%" PRIu64 ") cannot be greater than size of the "
                 "containing file (%" PRIu64 ")", offset, bs->size);
        blk_close(bs);
        die("%s", msg);
    }
    export.offset = offset;
    if (bitmap && load_bitmap(bs, bitmap, readonly) < 0) {
        blk_close(bs);
        return 1;
    }
    export.bs = bs;
    export.read_only = readonly;
    export.discard = discard;
    export.detect_zeroes = detect;
    export.workers = 4;
    export.handshake_ms = handshake_s * 1000;
    export.multi_conn = shared != 1; /* as qemu-nbd 7.2, writable or not */

    int lfd = sockpath ? listen_unix(sockpath)
                       : listen_tcp(bindto ? bindto : "0.0.0.0",
                                    port ? port : "10809");
    if (pipe2(wake_pipe, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (do_fork) {
        /* the parent returns once the socket listens, as qemu-nbd's */
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid > 0)
            _exit(0);
        setsid();
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            if (!verbose)
                dup2(nul, 2);
            close(nul);
        }
    }
    if (pid_file) {
        FILE *f = fopen(pid_file, "w");
        if (!f)
            die("Failed to write pid file: %s", strerror(errno));
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
    for (int i = 0; i < MAX_CLIENTS; i++)
        client_fds[i] = -1;

    int limit = shared > 0 && shared < MAX_CLIENTS ? shared : MAX_CLIENTS;
    while (!stopping) {
        pthread_mutex_lock(&lock);
        int n = nclients;
        bool done = finished && n == 0;
        pthread_mutex_unlock(&lock);
        if (done && !persistent)
            break;
        struct pollfd p[2] = {{.fd = wake_pipe[0], .events = POLLIN},
                              {.fd = lfd, .events = POLLIN}};
        /* a full house accepts nobody: new clients wait in the backlog */
        int r = poll(p, n < limit ? 2 : 1, -1);
        if (r < 0 && errno != EINTR)
            break;
        char buf[64];
        while (read(wake_pipe[0], buf, sizeof(buf)) > 0) {
        }
        if (r <= 0 || n >= limit || !(p[1].revents & POLLIN))
            continue;
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
            continue;
        pthread_mutex_lock(&lock);
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (client_fds[i] < 0) {
                client_fds[i] = cfd;
                break;
            }
        nclients++;
        pthread_mutex_unlock(&lock);
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, client_thread, (void *)(intptr_t)cfd)) {
            pthread_mutex_lock(&lock);
            for (int i = 0; i < MAX_CLIENTS; i++)
                if (client_fds[i] == cfd)
                    client_fds[i] = -1;
            nclients--;
            pthread_mutex_unlock(&lock);
            close(cfd);
        }
        pthread_attr_destroy(&attr);
    }
    close(lfd);
    if (sockpath)
        unlink(sockpath);
    /* a signal: hang up on every client, wait for their threads */
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (client_fds[i] >= 0)
            shutdown(client_fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&lock);
    for (;;) {
        pthread_mutex_lock(&lock);
        int n = nclients;
        pthread_mutex_unlock(&lock);
        if (!n)
            break;
        struct pollfd p = {.fd = wake_pipe[0], .events = POLLIN};
        poll(&p, 1, 100);
        char buf[64];
        while (read(wake_pipe[0], buf, sizeof(buf)) > 0) {
        }
    }
    blk_close(bs);
    img_objects_free();
    if (pid_file)
        unlink(pid_file);
    return 0;
}
