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
 * releases them after.  The sync objects are keyed by guest page, so
 * only accesses to the same guest page are ordered, and only in the
 * order they happened: host memory gets no edge from them, and two
 * devices in the same page at the same instant (a guest racing on its
 * own memory) are still reported.  Outside a TSan build they are empty. */
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
        uintptr_t p = (uintptr_t)iov[i].iov_base & ~(uintptr_t)(GUEST_MEM_PAGE - 1);
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
