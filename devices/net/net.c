/* --net's parser, the poll set and the choice of backend (net.h). */
#include "devices/net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int net_pollset_add(struct net_pollset *ps, int fd, short events)
{
    if (ps->n == ps->cap) {
        unsigned cap = ps->cap ? 2 * ps->cap : 16;
        struct pollfd *p = realloc(ps->fds, cap * sizeof(*p));

        if (!p)
            return -1;
        ps->fds = p;
        ps->cap = cap;
    }
    ps->fds[ps->n] = (struct pollfd){ .fd = fd, .events = events };
    return (int)ps->n++;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char end;

    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &end) != 6 || strlen(s) != 17)
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    /* a group (multicast) address cannot be a station's */
    return mac[0] & 1 ? -1 : 0;
}

static int parse_port(const char *s, uint16_t *port)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);

    if (!*s || *end || v > 65535 || *s == '-' || *s == '+')
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* [ADDR]:PORT, ADDR empty: dflt. */
static int parse_addr_port(char *s, const char *dflt, struct in_addr *a,
                           uint16_t *port)
{
    char *colon = strrchr(s, ':');

    if (!colon)
        return -1;
    *colon = '\0';
    if (inet_pton(AF_INET, *s ? s : dflt, a) != 1)
        return -1;
    return parse_port(colon + 1, port);
}

/* [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT, as QEMU's. */
static int parse_hostfwd(const char *v, struct net_hostfwd *f)
{
    char buf[128], *p = buf, *dash;

    if (strlen(v) >= sizeof(buf))
        return -1;
    strcpy(buf, v);
    f->udp = false;
    if (!strncmp(p, "tcp:", 4)) {
        p += 4;
    } else if (!strncmp(p, "udp:", 4)) {
        f->udp = true;
        p += 4;
    } else if (*p == ':') {
        p++;
    } else {
        return -1;
    }
    dash = strchr(p, '-');
    if (!dash)
        return -1;
    *dash = '\0';
    if (parse_addr_port(p, "127.0.0.1", &f->haddr, &f->hport) ||
        parse_addr_port(dash + 1, "10.0.2.15", &f->gaddr, &f->gport) ||
        !f->gport)
        return -1;
    return 0;
}

int net_parse(const char *spec, unsigned index, struct net_opts *o)
{
    char *copy = strdup(spec), *save = NULL, *tok;
    int ret = 0;

    memset(o, 0, sizeof(*o));
    o->restricted = false; /* QEMU's default */
    memcpy(o->mac, (const uint8_t[6]){ 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }, 6);
    o->mac[5] = (uint8_t)(0x56 + index);
    if (!copy)
        return -ENOMEM;
    tok = strtok_r(copy, ",", &save);
    if (!tok || (strcmp(tok, "user") && strcmp(tok, "tap"))) {
        fprintf(stderr, "calf: --net: '%s': the first word is the backend: "
                "user or tap\n", spec);
        free(copy);
        return -EINVAL;
    }
    o->kind = strcmp(tok, "user") ? NET_TAP : NET_USER;
    while (!ret && (tok = strtok_r(NULL, ",", &save))) {
        if (!strncmp(tok, "mac=", 4)) {
            if (parse_mac(tok + 4, o->mac)) {
                fprintf(stderr, "calf: --net: bad mac '%s' (six hex bytes "
                        "with colons, not a multicast address)\n", tok + 4);
                ret = -EINVAL;
            }
        } else if (!strcmp(tok, "disable-legacy")) {
            o->modern = true;
        } else if (o->kind == NET_USER && !strncmp(tok, "hostfwd=", 8)) {
            if (o->nfwd == NET_MAX_FWD) {
                fprintf(stderr, "calf: --net: at most %d hostfwd rules\n",
                        NET_MAX_FWD);
                ret = -EINVAL;
            } else if (parse_hostfwd(tok + 8, &o->fwd[o->nfwd++])) {
                fprintf(stderr, "calf: --net: invalid host forwarding rule "
                        "'%s' ([tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:"
                        "GUESTPORT)\n", tok + 8);
                ret = -EINVAL;
            }
        } else if (o->kind == NET_USER && (!strcmp(tok, "restrict=on") ||
                                           !strcmp(tok, "restrict=off"))) {
            o->restricted = !strcmp(tok, "restrict=on");
        } else if (o->kind == NET_TAP && !strncmp(tok, "ifname=", 7)) {
            if (!tok[7] || strlen(tok + 7) >= sizeof(o->ifname)) {
                fprintf(stderr, "calf: --net: bad ifname '%s' (1 to %zu "
                        "characters)\n", tok + 7, sizeof(o->ifname) - 1);
                ret = -EINVAL;
            } else {
                strcpy(o->ifname, tok + 7);
            }
        } else {
            fprintf(stderr, "calf: --net: unknown option '%s' for %s\n", tok,
                    o->kind == NET_USER ? "user (hostfwd=, restrict=on|off, "
                                          "mac=, disable-legacy)"
                                        : "tap (ifname=, mac=, "
                                          "disable-legacy)");
            ret = -EINVAL;
        }
    }
    free(copy);
    return ret;
}

int net_backend_create(const struct net_opts *o, net_receive_fn *rx,
                       void *opaque, struct net_backend **out)
{
    return o->kind == NET_TAP ? net_tap_create(o, rx, opaque, out)
                              : net_user_create(o, rx, opaque, out);
}
