/* ThreadSanitizer and guest memory.
 *
 * Devices on different I/O threads (one per virtqueue, per disk; the IDE
 * DMA thread) read and write guest RAM.  Their order is set by the guest:
 * a device publishes a completion in its used ring and raises an irqfd,
 * the guest sees it and reuses the buffer for another device, whose
 * thread learns of it through the ioeventfd KVM signals.  That chain is
 * real synchronisation, but it runs through the guest's CPU and the
 * kernel, where ThreadSanitizer cannot see it, so TSan reports two
 * devices' DMA into one guest page (through memcpy or the pread()/
 * pwrite() the block layer does straight into guest memory) as a race.
 *
 * guest_mem_acquire() and guest_mem_release() put that edge back: a
 * device acquires every guest page of a buffer before it touches it and
 * releases them after.  The sync objects are keyed by guest page, so a
 * thread gets an edge only from a thread that released a page it now
 * acquires.  But the edge is not limited to that page: __tsan_acquire()
 * merges the releasing thread's whole vector clock, so everything that
 * thread did before its release - host memory included (block-layer
 * caches, device state) - counts as ordered before what the acquiring
 * thread does after.  A real race on host memory between two device
 * threads that met in one guest page beforehand can thus go unreported
 * here.  That is the price of the annotation; it is kept small:
 *  - the annotations are as narrow as the layering allows: around the
 *    memcpy of a request's header, segments or status (iov_copy), and
 *    around the one block-layer call that moves a piece of data
 *    (vblk_rw), whose guest-memory accesses happen inside block/, which
 *    knows nothing of guest memory;
 *  - the block layer's own concurrency is checked by its own TSan tests
 *    (blk-race, blk-stress, qcow2-threads), which have no annotations.
 * Two devices in the same page at the same instant (a guest racing on
 * its own memory) are still reported.  Outside a TSan build these are
 * empty. */
#ifndef CALF_DEVICES_GUEST_MEM_H
#define CALF_DEVICES_GUEST_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#if defined(__SANITIZE_THREAD__)
#define CALF_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CALF_TSAN 1
#endif
#endif

#ifdef CALF_TSAN
#include <sanitizer/tsan_interface.h>

#define GUEST_MEM_PAGE 4096u

static inline void guest_mem_sync(const struct iovec *iov, unsigned n,
                                  int release)
{
    for (unsigned i = 0; i < n; i++) {
        uintptr_t p = (uintptr_t)iov[i].iov_base &
                      ~(uintptr_t)(GUEST_MEM_PAGE - 1);
        uintptr_t end = (uintptr_t)iov[i].iov_base + iov[i].iov_len;

        for (; iov[i].iov_len && p < end; p += GUEST_MEM_PAGE) {
            if (release)
                __tsan_release((void *)p);
            else
                __tsan_acquire((void *)p);
        }
    }
}

static inline void guest_mem_acquire(const struct iovec *iov, unsigned n)
{
    guest_mem_sync(iov, n, 0);
}

static inline void guest_mem_release(const struct iovec *iov, unsigned n)
{
    guest_mem_sync(iov, n, 1);
}
#else
static inline void guest_mem_acquire(const struct iovec *iov, unsigned n)
{
    (void)iov;
    (void)n;
}

static inline void guest_mem_release(const struct iovec *iov, unsigned n)
{
    (void)iov;
    (void)n;
}
#endif

#endif
