/* qcow2-poke: reads and damages qcow2 images on purpose, for the
 * hostile-image tests.  Every number on disk is big-endian; every number
 * on the command line is parsed with strtoull base 0 (0x.. works).
 *
 *   qcow2-poke FILE get OFF WIDTH           print the value (hex)
 *   qcow2-poke FILE set OFF WIDTH VALUE     write the value
 *   qcow2-poke FILE or OFF WIDTH MASK       set bits
 *   qcow2-poke FILE andnot OFF WIDTH MASK   clear bits
 *   qcow2-poke FILE field NAME [VALUE]      a header field by name
 *   qcow2-poke FILE str OFF TEXT            write TEXT's bytes (no NUL)
 *   qcow2-poke FILE fill OFF LEN BYTE       write LEN copies of BYTE
 *   qcow2-poke FILE random OFF LEN SEED     write LEN pseudo-random bytes
 *   qcow2-poke FILE ext TYPE                print "OFFSET LENGTH" of the
 *                                           data of header extension TYPE
 *   qcow2-poke FILE l2e GUEST_OFFSET        print the file offset of the
 *                                           L2 entry mapping GUEST_OFFSET
 *   qcow2-poke FILE snap N FIELD            print the file offset of
 *                                           field FIELD (l1_offset, l1_size,
 *                                           id_len, name_len, extra_size) of
 *                                           snapshot N
 * WIDTH is 1, 2, 4 or 8. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fd = -1;
static const char *file;

static void die(const char *msg)
{
    fprintf(stderr, "qcow2-poke: %s: %s\n", file ? file : "", msg);
    exit(2);
}

static uint64_t num(const char *s)
{
    char *end;
    errno = 0;
    uint64_t v = strtoull(s, &end, 0);
    if (errno || !*s || *end)
        die("bad number");
    return v;
}

static void rd(void *buf, size_t len, uint64_t off)
{
    memset(buf, 0, len);
    if (pread(fd, buf, len, (off_t)off) < 0)
        die("read failed");
}

static void wr(const void *buf, size_t len, uint64_t off)
{
    if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
        die("write failed");
}

static uint64_t get(uint64_t off, unsigned width)
{
    uint8_t b[8];
    rd(b, width, off);
    uint64_t v = 0;
    for (unsigned i = 0; i < width; i++)
        v = v << 8 | b[i];
    return v;
}

static void set(uint64_t off, unsigned width, uint64_t v)
{
    uint8_t b[8];
    for (int i = (int)width - 1; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
    wr(b, width, off);
}

static unsigned width_of(const char *s)
{
    uint64_t w = num(s);
    if (w != 1 && w != 2 && w != 4 && w != 8)
        die("width must be 1, 2, 4 or 8");
    return (unsigned)w;
}

static const struct {
    const char *name;
    unsigned off, width;
} fields[] = {
    {"magic", 0, 4},
    {"version", 4, 4},
    {"backing_file_offset", 8, 8},
    {"backing_file_size", 16, 4},
    {"cluster_bits", 20, 4},
    {"size", 24, 8},
    {"crypt_method", 32, 4},
    {"l1_size", 36, 4},
    {"l1_table_offset", 40, 8},
    {"refcount_table_offset", 48, 8},
    {"refcount_table_clusters", 56, 4},
    {"nb_snapshots", 60, 4},
    {"snapshots_offset", 64, 8},
    {"incompatible_features", 72, 8},
    {"compatible_features", 80, 8},
    {"autoclear_features", 88, 8},
    {"refcount_order", 96, 4},
    {"header_length", 100, 4},
    {"compression_type", 104, 1},
};

static int field_index(const char *name)
{
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (!strcmp(fields[i].name, name))
            return (int)i;
    die("unknown header field");
    return -1;
}

static void find_ext(uint32_t type)
{
    uint32_t version = (uint32_t)get(4, 4);
    uint64_t pos = version >= 3 ? get(100, 4) : 72;
    uint64_t cs = 1ULL << get(20, 4);
    while (pos + 8 <= cs) {
        uint32_t t = (uint32_t)get(pos, 4), len = (uint32_t)get(pos + 4, 4);
        if (t == 0)
            break;
        if (t == type) {
            printf("%" PRIu64 " %u\n", pos + 8, len);
            return;
        }
        pos += 8 + ((len + 7ULL) & ~7ULL);
    }
    die("no such header extension");
}

static void find_l2e(uint64_t guest)
{
    uint32_t cb = (uint32_t)get(20, 4);
    uint64_t incompat = get(4, 4) >= 3 ? get(72, 8) : 0;
    unsigned ebits = (incompat & 16) ? 4 : 3;
    unsigned l2_bits = cb - ebits;
    uint64_t l1i = guest >> (cb + l2_bits);
    uint64_t l2i = (guest >> cb) & ((1ULL << l2_bits) - 1);
    if (l1i >= get(36, 4))
        die("guest offset beyond the L1 table");
    uint64_t l1e = get(get(40, 8) + 8 * l1i, 8);
    uint64_t l2 = l1e & 0x00fffffffffffe00ULL;
    if (!l2)
        die("no L2 table for that guest offset");
    printf("%" PRIu64 "\n", l2 + (l2i << ebits));
}

static void find_snap(uint64_t n, const char *field)
{
    uint64_t pos = get(64, 8);
    if (n >= get(60, 4))
        die("no such snapshot");
    for (uint64_t i = 0; i < n; i++) {
        uint64_t vlen = get(pos + 36, 4) + get(pos + 12, 2) + get(pos + 14, 2);
        pos = (pos + 40 + vlen + 7) & ~7ULL;
    }
    static const struct { const char *name; unsigned off; } sf[] = {
        {"l1_offset", 0}, {"l1_size", 8}, {"id_len", 12}, {"name_len", 14},
        {"extra_size", 36},
    };
    for (size_t i = 0; i < sizeof(sf) / sizeof(sf[0]); i++)
        if (!strcmp(sf[i].name, field)) {
            printf("%" PRIu64 "\n", pos + sf[i].off);
            return;
        }
    die("unknown snapshot field");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: qcow2-poke FILE get|set|or|andnot|field|str|fill|random|ext|"
                "l2e|snap ARGS...\n");
        return 2;
    }
    file = argv[1];
    const char *op = argv[2];
    int writes = strcmp(op, "get") && strcmp(op, "ext") && strcmp(op, "l2e") &&
                 strcmp(op, "snap") && !(!strcmp(op, "field") && argc == 4);
    fd = open(file, writes ? O_RDWR | O_CREAT : O_RDONLY, 0644);
    if (fd < 0)
        die(strerror(errno));
    if (!strcmp(op, "get") && argc == 5) {
        printf("0x%" PRIx64 "\n", get(num(argv[3]), width_of(argv[4])));
    } else if (!strcmp(op, "set") && argc == 6) {
        set(num(argv[3]), width_of(argv[4]), num(argv[5]));
    } else if (!strcmp(op, "or") && argc == 6) {
        unsigned w = width_of(argv[4]);
        uint64_t off = num(argv[3]);
        set(off, w, get(off, w) | num(argv[5]));
    } else if (!strcmp(op, "andnot") && argc == 6) {
        unsigned w = width_of(argv[4]);
        uint64_t off = num(argv[3]);
        set(off, w, get(off, w) & ~num(argv[5]));
    } else if (!strcmp(op, "field") && (argc == 4 || argc == 5)) {
        int i = field_index(argv[3]);
        if (argc == 4)
            printf("0x%" PRIx64 "\n", get(fields[i].off, fields[i].width));
        else
            set(fields[i].off, fields[i].width, num(argv[4]));
    } else if (!strcmp(op, "str") && argc == 5) {
        wr(argv[4], strlen(argv[4]), num(argv[3]));
    } else if ((!strcmp(op, "fill") || !strcmp(op, "random")) && argc == 6) {
        uint64_t off = num(argv[3]), len = num(argv[4]), x = num(argv[5]);
        if (len > (64u << 20))
            die("length too large");
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
            die("out of memory");
        uint64_t st = x * 0x9e3779b97f4a7c15ULL + 1;
        for (uint64_t i = 0; i < len; i++) {
            if (op[0] == 'f') {
                buf[i] = (uint8_t)x;
            } else {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                buf[i] = (uint8_t)(st >> 24);
            }
        }
        wr(buf, len, off);
        free(buf);
    } else if (!strcmp(op, "ext") && argc == 4) {
        find_ext((uint32_t)num(argv[3]));
    } else if (!strcmp(op, "l2e") && argc == 4) {
        find_l2e(num(argv[3]));
    } else if (!strcmp(op, "snap") && argc == 5) {
        find_snap(num(argv[3]), argv[4]);
    } else {
        die("bad arguments");
    }
    if (close(fd) < 0)
        die(strerror(errno));
    return 0;
}
