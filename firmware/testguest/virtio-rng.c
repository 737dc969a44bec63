/* ct.vrng=LEN: reads random bytes from the virtio-rng function (modern
 * interface, one queue, polled).  Two requests of LEN bytes (at most
 * 4096) into buffers filled with 0xa5: the first must come back with
 * 1..LEN bytes that are not all one value; the guest prints its used
 * length, the first bytes and how many differ from the second request's.
 * The second request is waited for a bounded time only: under a rate
 * limit (--rng max-bytes=N,period=MS) it waits for the next period,
 * and the guest says so ("second request: waiting"); the host judges. */
#include "guest.h"
#include "pci.h"
#include "virtio.h"

#define RNG_QSZ 16
#define RNG_BUF 4096
#define RNG_SPINS 20000000u

static uint8_t qmem[3 * 4096] IOBSS __attribute__((aligned(4096)));
static uint8_t buf[2][RNG_BUF] IOBSS __attribute__((aligned(4096)));

static int rng_find(void)
{
    int slot = pci_find(0x1af4, 0x1005, 0);

    return slot >= 0 ? slot : pci_find(0x1af4, 0x1044, 0);
}

static void rfail(const char *what)
{
    serial_puts("calf-test: virtio-rng: check failed: ");
    serial_puts(what);
    serial_puts("\n");
}

int virtio_rng_test(uint64_t len)
{
    struct vmod d;
    struct vqueue vq;
    uint32_t got[2] = { 0, 0 };
    int slot = rng_find(), done2, same = 0;

    iobss_zero();
    if (slot < 0) {
        rfail("no virtio-rng function (1af4:1005 or 1af4:1044)");
        return 1;
    }
    if (!len || len > RNG_BUF)
        len = RNG_BUF;
    serial_puts("calf-test: virtio-rng ");
    serial_put_hex(pci_read16((unsigned)slot, 2));
    serial_puts(" at slot ");
    serial_put_dec((uint64_t)slot);
    serial_puts("\n");
    if (vmod_open(&d, (unsigned)slot, 0xd8000000u) || vmod_negotiate(&d, 0) ||
        vmod_queue(&d, &vq, 0, RNG_QSZ, qmem) || vmod_driver_ok(&d)) {
        rfail("device setup");
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        memset(buf[i], 0xa5, RNG_BUF);
        vq.desc[i] = (struct vdesc){ (uint64_t)buf[i], (uint32_t)len, VD_WRITE, 0 };
    }
    vq_offer(&vq, 0);
    if (!vq_wait(&vq, RNG_SPINS, &got[0])) {
        rfail("the first request was never completed");
        return 1;
    }
    vq_offer(&vq, 1);
    done2 = vq_wait(&vq, RNG_SPINS / 20, &got[1]);
    for (uint32_t i = 1; i < got[0]; i++)
        same += buf[0][i] == buf[0][0];
    serial_puts("calf-test: virtio-rng: first request: ");
    serial_put_dec(got[0]);
    serial_puts(" of ");
    serial_put_dec(len);
    serial_puts(" bytes:");
    for (uint32_t i = 0; i < got[0] && i < 16; i++) {
        serial_puts(" ");
        serial_put_hex(buf[0][i]);
    }
    serial_puts("\n");
    if (done2) {
        uint32_t diff = 0;

        for (uint32_t i = 0; i < got[0] && i < got[1]; i++)
            diff += buf[0][i] != buf[1][i];
        serial_puts("calf-test: virtio-rng: second request: ");
        serial_put_dec(got[1]);
        serial_puts(" bytes, ");
        serial_put_dec(diff);
        serial_puts(" differ from the first\n");
    } else {
        serial_puts("calf-test: virtio-rng: second request: waiting\n");
    }
    /* nothing past the used length was written */
    if (got[0] < len && buf[0][got[0]] != 0xa5)
        rfail("bytes written past the used length");
    if (!got[0] || got[0] > len || (got[0] > 1 && same == (int)got[0] - 1)) {
        rfail("the bytes are not random (none, too many, or all one value)");
        return 1;
    }
    vmod_reset(&d);
    return 0;
}
