#include "vmm/console.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define CONSOLE_BUF 4096
#define ESCAPE_KEY 0x01 /* Ctrl-A, as in QEMU */

struct console {
    pthread_mutex_t lock;
    int out_fd;
    uint8_t buf[CONSOLE_BUF];
    size_t len;
    uint64_t bytes, host_writes;

    /* --expect: a KMP matcher fed one byte at a time. */
    char *expect;
    size_t expect_len, matched;
    size_t *fail;
    bool fired;
    void (*on_match)(void *);
    void *opaque;

    uint8_t last; /* the last byte the guest sent */

    int in_fd;
    bool raw;
    bool escapes; /* Ctrl-A commands: on a terminal, or asked for */
    bool escape;
    /* what was read and not handed out yet (a break stops a read) */
    uint8_t in[64];
    size_t in_off, in_len;
    struct termios saved;
};

static int console_prepare_expect(struct console *c, const char *expect)
{
    size_t n = strlen(expect), k = 0;

    c->expect = strdup(expect);
    c->fail = calloc(n + 1, sizeof(*c->fail));
    if (!c->expect || !c->fail)
        return -ENOMEM;
    c->expect_len = n;
    for (size_t i = 1; i < n; i++) {
        while (k && expect[i] != expect[k])
            k = c->fail[k - 1];
        if (expect[i] == expect[k])
            k++;
        c->fail[i] = k;
    }
    return 0;
}

struct console *console_create(int out_fd, const char *expect,
                               void (*on_match)(void *), void *opaque)
{
    struct console *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->out_fd = out_fd;
    c->in_fd = -1;
    c->on_match = on_match;
    c->opaque = opaque;
    if (expect && *expect && console_prepare_expect(c, expect)) {
        console_destroy(c);
        return NULL;
    }
    return c;
}

void console_destroy(struct console *c)
{
    if (!c)
        return;
    console_flush(c);
    /* leave a terminal's prompt on a line of its own */
    if (c->last && c->last != '\n' && isatty(c->out_fd) &&
        write(c->out_fd, "\r\n", 2) < 0)
        c->last = 0;
    if (c->raw)
        tcsetattr(c->in_fd, TCSAFLUSH, &c->saved);
    pthread_mutex_destroy(&c->lock);
    free(c->expect);
    free(c->fail);
    free(c);
}

static void console_flush_locked(struct console *c)
{
    size_t done = 0;

    while (done < c->len) {
        ssize_t n = write(c->out_fd, c->buf + done, c->len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* output gone (closed pipe): drop it, keep running */
        done += (size_t)n;
        c->host_writes++;
    }
    c->len = 0;
}

static bool console_match(struct console *c, uint8_t ch)
{
    if (!c->expect_len || c->fired)
        return false;
    while (c->matched && (char)ch != c->expect[c->matched])
        c->matched = c->fail[c->matched - 1];
    if ((char)ch == c->expect[c->matched])
        c->matched++;
    if (c->matched < c->expect_len)
        return false;
    c->fired = true;
    return true;
}

void console_write(struct console *c, const uint8_t *buf, size_t len)
{
    bool matched = false;

    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < len; i++) {
        if (c->len == CONSOLE_BUF)
            console_flush_locked(c);
        c->buf[c->len++] = buf[i];
        matched |= console_match(c, buf[i]);
    }
    c->bytes += len;
    if (len)
        c->last = buf[len - 1];
    if (matched)
        console_flush_locked(c); /* the text that ends the run is shown */
    pthread_mutex_unlock(&c->lock);
    if (matched && c->on_match)
        c->on_match(c->opaque);
}

void console_flush(struct console *c)
{
    pthread_mutex_lock(&c->lock);
    console_flush_locked(c);
    pthread_mutex_unlock(&c->lock);
}

bool console_pending(struct console *c)
{
    bool pending;

    pthread_mutex_lock(&c->lock);
    pending = c->len != 0;
    pthread_mutex_unlock(&c->lock);
    return pending;
}

int console_input_start(struct console *c, int in_fd)
{
    struct termios raw;
    int fl = fcntl(in_fd, F_GETFL);

    if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY)
        return -EBADF;
    c->in_fd = in_fd;
    /* piped input takes the escapes too when asked (scripted tests) */
    c->escapes = getenv("CALF_CONSOLE_ESCAPES") &&
                 !strcmp(getenv("CALF_CONSOLE_ESCAPES"), "1");
    if (!isatty(in_fd) || tcgetattr(in_fd, &c->saved) < 0)
        return 0; /* a pipe or a file: bytes go through as they are */
    raw = c->saved;
    /* Raw input (keys go to the guest, Ctrl-C included); output
     * processing stays on so the host terminal renders as usual. */
    raw.c_iflag &= ~(unsigned)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR |
                               IGNCR | ICRNL | IXON);
    raw.c_lflag &= ~(unsigned)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(in_fd, TCSAFLUSH, &raw) < 0)
        return -errno;
    c->raw = true;
    c->escapes = true;
    return 0;
}

long console_input_read(struct console *c, uint8_t *buf, size_t len,
                        bool *quit, bool *brk)
{
    size_t out = 0;

    *quit = false;
    *brk = false;
    if (c->in_off == c->in_len) {
        ssize_t n = read(c->in_fd, c->in, sizeof(c->in));

        if (n < 0)
            return errno == EINTR || errno == EAGAIN ? 0 : -errno;
        if (n == 0)
            return -ENODATA;
        c->in_off = 0;
        c->in_len = (size_t)n;
    }
    while (c->in_off < c->in_len && out < len) {
        uint8_t ch = c->in[c->in_off++];

        if (!c->escapes) { /* a pipe or a file: no escape key */
            buf[out++] = ch;
            continue;
        }
        if (c->escape) {
            c->escape = false;
            if (ch == 'x') {
                *quit = true;
                return (long)out;
            }
            if (ch == 'b') {
                *brk = true; /* after the bytes before it */
                return (long)out;
            }
            if (ch == ESCAPE_KEY)
                buf[out++] = ESCAPE_KEY; /* Ctrl-A Ctrl-A sends one */
            continue;
        }
        if (ch == ESCAPE_KEY)
            c->escape = true;
        else
            buf[out++] = ch;
    }
    return (long)out;
}

bool console_input_more(struct console *c)
{
    return c->in_off < c->in_len;
}

uint64_t console_bytes(struct console *c)
{
    return c->bytes;
}

uint64_t console_host_writes(struct console *c)
{
    return c->host_writes;
}
