/* ct.vnet=PORT: talks through the virtio-net function (modern interface,
 * polled, no interrupts): ARP for the gateway, then a UDP datagram
 * "calf-guest-to-host" from port 7777 to the gateway's PORT, then waits
 * for a datagram to its port 7777 and sends it back to the same place
 * prefixed with "echo:".  It answers ARP requests for its own address
 * meanwhile (a host kernel on a tap asks).  The host checks both
 * payloads; the guest prints what it saw.
 *
 * Addresses: ct.vnetip=A.B.C.D (default 10.0.2.15, what slirp's DHCP
 * would give) and ct.vnetgw=A.B.C.D (default 10.0.2.2, slirp's host).
 * UDP checksums are left 0 (allowed over IPv4): every guest instruction
 * counts where ring 0 is emulated.
 *
 * ct.vnetblast=N (bench/virtio-net): after the ARP, N datagrams of 64
 * bytes to the gateway's PORT as fast as the ring takes them (16
 * transmit descriptors over one frame), timed with rdtsc: the guest
 * prints "bench vnet-blast tsc CYCLES"; no echo. */
#include "guest.h"
#include "pci.h"
#include "virtio.h"

#define NQ 16
#define BUFSZ 2048
#define HDR 12                 /* VERSION_1: virtio_net_hdr + num_buffers */
#define F_MAC 5
#define WAIT_SPINS 5000000u    /* tens of seconds at emulated speed: a bound */
#define MYPORT 7777

static uint8_t rxmem[3 * 4096] IOBSS __attribute__((aligned(4096)));
static uint8_t txmem[3 * 4096] IOBSS __attribute__((aligned(4096)));
static uint8_t rxbuf[NQ][BUFSZ] IOBSS __attribute__((aligned(4096)));
static uint8_t txbuf[BUFSZ] IOBSS __attribute__((aligned(4096)));

static struct vqueue rxq, txq;
static uint8_t mac[6], gwmac[6];
static uint8_t myip[4] = { 10, 0, 2, 15 }, gwip[4] = { 10, 0, 2, 2 };
static int failures;

static void nfail(const char *what)
{
    serial_puts("calf-test: virtio-net: check failed: ");
    serial_puts(what);
    serial_puts("\n");
    failures++;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static int same(const uint8_t *a, const uint8_t *b, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

static void parse_ip(const char *cmdline, const char *key, uint8_t ip[4])
{
    size_t len;
    const char *v = cmdline_get(cmdline, key, &len);
    unsigned part = 0, val = 0;
    uint8_t out[4];

    if (!v)
        return;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || v[i] == '.') {
            if (part > 3 || val > 255)
                return;
            out[part++] = (uint8_t)val;
            val = 0;
        } else if (v[i] >= '0' && v[i] <= '9') {
            val = val * 10 + (unsigned)(v[i] - '0');
        } else {
            return;
        }
    }
    if (part == 4)
        memcpy(ip, out, 4);
}

static void print_ip(const uint8_t *ip)
{
    for (int i = 0; i < 4; i++) {
        serial_put_dec(ip[i]);
        if (i < 3)
            serial_puts(".");
    }
}

/* Sends len bytes of frame (built in txbuf after the header); waits
 * until the device took it. */
static int send_frame(unsigned len)
{
    uint32_t ulen;

    memset(txbuf, 0, HDR);
    txq.desc[0] = (struct vdesc){ (uint64_t)txbuf, HDR + len, 0, 0 };
    vq_offer(&txq, 0);
    return vq_wait(&txq, WAIT_SPINS, &ulen) ? 0 : -1;
}

static void eth(uint8_t *f, const uint8_t *dst, uint16_t type)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, mac, 6);
    put16(f + 12, type);
}

static int send_arp(uint16_t op, const uint8_t *dmac, const uint8_t *tip)
{
    static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    uint8_t *f = txbuf + HDR, *a = f + 14;

    eth(f, op == 1 ? bcast : dmac, 0x0806);
    put16(a, 1);
    put16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op);
    memcpy(a + 8, mac, 6);
    memcpy(a + 14, myip, 4);
    if (op == 1)
        memset(a + 18, 0, 6);
    else
        memcpy(a + 18, dmac, 6);
    memcpy(a + 24, tip, 4);
    return send_frame(42);
}

static int send_udp(uint16_t dport, const uint8_t *payload, unsigned n)
{
    uint8_t *f = txbuf + HDR, *ip = f + 14, *udp = ip + 20;
    uint32_t sum = 0;

    eth(f, gwmac, 0x0800);
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(28 + n));
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, myip, 4);
    memcpy(ip + 16, gwip, 4);
    for (int i = 0; i < 20; i += 2)
        sum += get16(ip + i);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    put16(ip + 10, (uint16_t)~sum);
    put16(udp, MYPORT);
    put16(udp + 2, dport);
    put16(udp + 4, (uint16_t)(8 + n));
    put16(udp + 6, 0);
    memcpy(udp + 8, payload, n);
    return send_frame(42 + n);
}

/* Gives receive buffer i back to the device. */
static void rx_give(uint16_t i)
{
    rxq.desc[i] = (struct vdesc){ (uint64_t)rxbuf[i], BUFSZ, VD_WRITE, 0 };
    vq_offer(&rxq, i);
}

/* The next frame (without the header), answering ARP requests for our
 * address on the way; its length in *len and the buffer index, or -1
 * after WAIT_SPINS polls.  The caller gives the buffer back. */
static int next_frame(const uint8_t **frame, uint32_t *len)
{
    for (uint32_t spins = 0; spins < WAIT_SPINS;) {
        uint32_t l;
        uint16_t id;
        const uint8_t *f;

        if (rxq.used[1] == rxq.last_used) {
            spins++;
            continue;
        }
        __asm__ volatile("mfence" ::: "memory");
        id = (uint16_t)rxq.used[2 + 4 * (rxq.last_used % rxq.n)];
        l = *(volatile uint32_t *)(rxq.used + 2 + 4 * (rxq.last_used % rxq.n) + 2);
        rxq.last_used++;
        if (id >= NQ || l < HDR + 14) {
            if (id < NQ)
                rx_give(id);
            continue;
        }
        f = rxbuf[id] + HDR;
        l -= HDR;
        if (get16(f + 12) == 0x0806 && l >= 42 && get16(f + 20) == 1 &&
            same(f + 38, myip, 4)) {
            uint8_t who[6], wip[4];

            memcpy(who, f + 22, 6);
            memcpy(wip, f + 28, 4);
            rx_give(id);
            send_arp(2, who, wip);
            continue;
        }
        *frame = f;
        *len = l;
        return id;
    }
    return -1;
}

static int find_dev(void)
{
    int slot = pci_find(0x1af4, 0x1000, 0);

    return slot >= 0 ? slot : pci_find(0x1af4, 0x1041, 0);
}

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;

    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return lo | (uint64_t)hi << 32;
}

/* N datagrams of 64 bytes, the ring kept full. */
static void blast(uint16_t dport, uint64_t n)
{
    static const uint8_t payload[64] = "calf-vnet-blast";
    uint64_t t0, sent = 0, done = 0;

    send_udp(dport, payload, sizeof(payload)); /* builds the frame */
    t0 = rdtsc();
    while (done < n) {
        while (sent < n && sent - done < NQ) {
            uint16_t i = (uint16_t)(sent % NQ);

            txq.desc[i] = (struct vdesc){ (uint64_t)txbuf, HDR + 42 + 64, 0, 0 };
            txq.avail[2 + txq.next_avail % txq.n] = i;
            txq.next_avail++;
            sent++;
        }
        __asm__ volatile("mfence" ::: "memory");
        txq.avail[1] = txq.next_avail;
        __asm__ volatile("mfence" ::: "memory");
        *(volatile uint16_t *)txq.notify = txq.q;
        for (uint32_t spins = 0; txq.used[1] == txq.last_used; spins++)
            if (spins > WAIT_SPINS) {
                nfail("the device stopped taking frames");
                return;
            }
        {
            uint16_t u = txq.used[1]; /* once: the device moves it */

            done += (uint16_t)(u - txq.last_used);
            txq.last_used = u;
        }
    }
    serial_puts("calf-test: bench vnet-blast frames ");
    serial_put_dec(n);
    serial_puts(" tsc ");
    serial_put_dec(rdtsc() - t0);
    serial_puts("\n");
}

int virtio_net_test(const char *cmdline, uint64_t port)
{
    static const char out_msg[] = "calf-guest-to-host";
    struct vmod d;
    const uint8_t *f;
    uint32_t len;
    int slot = find_dev(), id;

    iobss_zero();
    parse_ip(cmdline, "ct.vnetip=", myip);
    parse_ip(cmdline, "ct.vnetgw=", gwip);
    if (slot < 0) {
        nfail("no virtio-net function (1af4:1000 or 1af4:1041)");
        return failures;
    }
    if (vmod_open(&d, (unsigned)slot, 0xd9000000u) ||
        vmod_negotiate(&d, 1ULL << F_MAC) || !(d.features >> F_MAC & 1) ||
        vmod_queue(&d, &rxq, 0, NQ, rxmem) || vmod_queue(&d, &txq, 1, NQ, txmem) ||
        vmod_driver_ok(&d)) {
        nfail("device setup");
        return failures;
    }
    for (int i = 0; i < 6; i++)
        mac[i] = d.devcfg[i];
    for (uint16_t i = 0; i < NQ; i++)
        rx_give(i);
    serial_puts("calf-test: virtio-net ");
    serial_put_hex(pci_read16((unsigned)slot, 2));
    serial_puts(" at slot ");
    serial_put_dec((uint64_t)slot);
    serial_puts(", MAC");
    for (int i = 0; i < 6; i++) {
        serial_puts(" ");
        serial_put_hex(mac[i]);
    }
    serial_puts(", address ");
    print_ip(myip);
    serial_puts("\n");

    /* ARP for the gateway */
    if (send_arp(1, 0, gwip)) {
        nfail("the ARP request was not sent");
        return failures;
    }
    for (;;) {
        id = next_frame(&f, &len);
        if (id < 0) {
            nfail("no ARP reply from the gateway");
            return failures;
        }
        if (get16(f + 12) == 0x0806 && get16(f + 20) == 2 && same(f + 28, gwip, 4)) {
            memcpy(gwmac, f + 22, 6);
            rx_give((uint16_t)id);
            break;
        }
        rx_give((uint16_t)id);
    }
    serial_puts("calf-test: virtio-net: ARP: ");
    print_ip(gwip);
    serial_puts(" is at");
    for (int i = 0; i < 6; i++) {
        serial_puts(" ");
        serial_put_hex(gwmac[i]);
    }
    serial_puts("\n");

    {
        size_t blen;
        const char *b = cmdline_get(cmdline, "ct.vnetblast=", &blen);

        if (b) {
            blast((uint16_t)port, parse_num(b, blen, 10));
            vmod_reset(&d);
            return failures;
        }
    }
    /* out, then wait for the host's datagram and send it back */
    if (send_udp((uint16_t)port, (const uint8_t *)out_msg, sizeof(out_msg) - 1)) {
        nfail("the UDP datagram was not sent");
        return failures;
    }
    serial_puts("calf-test: virtio-net: sent UDP to port ");
    serial_put_dec(port);
    serial_puts("\n");
    for (;;) {
        uint8_t echo[5 + 64];
        unsigned n;

        id = next_frame(&f, &len);
        if (id < 0) {
            nfail("no UDP datagram to port 7777");
            return failures;
        }
        if (get16(f + 12) != 0x0800 || len < 42 || f[23] != 17 ||
            get16(f + 36) != MYPORT || !same(f + 30, myip, 4)) {
            rx_give((uint16_t)id);
            continue;
        }
        n = get16(f + 38) - 8u;
        if (n > 64 || 42 + n > len)
            n = 0;
        memcpy(echo, "echo:", 5);
        memcpy(echo + 5, f + 42, n);
        rx_give((uint16_t)id);
        serial_puts("calf-test: virtio-net: got UDP to port 7777: '");
        echo[5 + n] = 0;
        serial_puts((const char *)echo + 5);
        serial_puts("'\n");
        if (send_udp((uint16_t)port, echo, 5 + n))
            nfail("the echo was not sent");
        break;
    }
    vmod_reset(&d);
    if (!failures)
        serial_puts("calf-test: virtio-net: ok\n");
    return failures;
}
