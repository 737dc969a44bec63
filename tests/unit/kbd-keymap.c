/* The keyboard path from a host key to the guest without a guest: USB
 * HID usage (SDL scancode) -> scan code set 2 (vmm/display-keymap.c) ->
 * set 1 through the i8042's translation (devices/i8042-keys.c), checked
 * against the set-1 codes of the 104-key keyboard written down here
 * independently, make and break, and the odd keys (Print Screen, Pause).
 * TAP output. */
#include <stdio.h>
#include <string.h>

#include "devices/devices.h"
#include "vmm/display.h"

static int t_num, t_fail;

static void ok(int cond, const char *what, unsigned hid)
{
    t_num++;
    if (!cond)
        t_fail++;
    printf("%sok %d - %s (HID %u)\n", cond ? "" : "not ", t_num, what, hid);
}

/* The controller's view: set-2 bytes in, set-1 bytes out. */
static size_t translate(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t m = 0;
    int brk = 0;

    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0xf0) {
            brk = 1;
            continue;
        }
        out[m++] = (uint8_t)(i8042_set2_to_set1(in[i]) | (brk ? 0x80 : 0));
        brk = 0;
    }
    return m;
}

#define X 0x100 /* E0 prefix */
static const struct { unsigned hid, set1; } keys[] = {
    { 4, 0x1e }, { 5, 0x30 }, { 6, 0x2e }, { 7, 0x20 }, { 8, 0x12 },
    { 9, 0x21 }, { 10, 0x22 }, { 11, 0x23 }, { 12, 0x17 }, { 13, 0x24 },
    { 14, 0x25 }, { 15, 0x26 }, { 16, 0x32 }, { 17, 0x31 }, { 18, 0x18 },
    { 19, 0x19 }, { 20, 0x10 }, { 21, 0x13 }, { 22, 0x1f }, { 23, 0x14 },
    { 24, 0x16 }, { 25, 0x2f }, { 26, 0x11 }, { 27, 0x2d }, { 28, 0x15 },
    { 29, 0x2c },
    { 30, 0x02 }, { 31, 0x03 }, { 32, 0x04 }, { 33, 0x05 }, { 34, 0x06 },
    { 35, 0x07 }, { 36, 0x08 }, { 37, 0x09 }, { 38, 0x0a }, { 39, 0x0b },
    { 40, 0x1c }, { 41, 0x01 }, { 42, 0x0e }, { 43, 0x0f }, { 44, 0x39 },
    { 45, 0x0c }, { 46, 0x0d }, { 47, 0x1a }, { 48, 0x1b }, { 49, 0x2b },
    { 51, 0x27 }, { 52, 0x28 }, { 53, 0x29 }, { 54, 0x33 }, { 55, 0x34 },
    { 56, 0x35 }, { 57, 0x3a },
    { 58, 0x3b }, { 59, 0x3c }, { 60, 0x3d }, { 61, 0x3e }, { 62, 0x3f },
    { 63, 0x40 }, { 64, 0x41 }, { 65, 0x42 }, { 66, 0x43 }, { 67, 0x44 },
    { 68, 0x57 }, { 69, 0x58 }, { 71, 0x46 },
    { 73, X | 0x52 }, { 74, X | 0x47 }, { 75, X | 0x49 }, { 76, X | 0x53 },
    { 77, X | 0x4f }, { 78, X | 0x51 }, { 79, X | 0x4d }, { 80, X | 0x4b },
    { 81, X | 0x50 }, { 82, X | 0x48 },
    { 83, 0x45 }, { 84, X | 0x35 }, { 85, 0x37 }, { 86, 0x4a }, { 87, 0x4e },
    { 88, X | 0x1c }, { 89, 0x4f }, { 90, 0x50 }, { 91, 0x51 }, { 92, 0x4b },
    { 93, 0x4c }, { 94, 0x4d }, { 95, 0x47 }, { 96, 0x48 }, { 97, 0x49 },
    { 98, 0x52 }, { 99, 0x53 }, { 100, 0x56 }, { 101, X | 0x5d },
    { 224, 0x1d }, { 225, 0x2a }, { 226, 0x38 }, { 227, X | 0x5b },
    { 228, X | 0x1d }, { 229, 0x36 }, { 230, X | 0x38 }, { 231, X | 0x5c },
};

static void check_key(unsigned hid, unsigned set1)
{
    uint8_t s2[8], s1[8], want[2];
    size_t n, m, wn = 0;

    if (set1 & X)
        want[wn++] = 0xe0;
    want[wn++] = (uint8_t)set1;
    n = keymap_hid_to_set2(hid, false, s2);
    m = translate(s2, n, s1);
    ok(m == wn && !memcmp(s1, want, wn), "make code", hid);
    want[wn - 1] |= 0x80;
    n = keymap_hid_to_set2(hid, true, s2);
    m = translate(s2, n, s1);
    ok(m == wn && !memcmp(s1, want, wn) && s2[n - 2] == 0xf0,
       "break code (F0 before the last byte)", hid);
}

static void check_seq(unsigned hid, bool release, const uint8_t *want,
                      size_t wn, const char *what)
{
    uint8_t s2[8], s1[8];
    size_t n = keymap_hid_to_set2(hid, release, s2), m = translate(s2, n, s1);

    ok(m == wn && !memcmp(s1, want, wn), what, hid);
}

int main(void)
{
    static const uint8_t prt_make[] = { 0xe0, 0x2a, 0xe0, 0x37 };
    static const uint8_t prt_break[] = { 0xe0, 0xb7, 0xe0, 0xaa };
    static const uint8_t pause[] = { 0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5 };
    uint8_t s2[8];

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        check_key(keys[i].hid, keys[i].set1);
    check_seq(70, false, prt_make, sizeof(prt_make), "Print Screen make");
    check_seq(70, true, prt_break, sizeof(prt_break), "Print Screen break");
    check_seq(72, false, pause, sizeof(pause), "Pause make");
    check_seq(72, true, pause, 0, "Pause has no break code");
    ok(keymap_hid_to_set2(0, false, s2) == 0 &&
       keymap_hid_to_set2(1000, false, s2) == 0, "unknown keys send nothing", 0);
    ok(i8042_set2_to_set1(0xfa) == 0xfa && i8042_set2_to_set1(0xaa) == 0xaa &&
       i8042_set2_to_set1(0xe0) == 0xe0, "ACK, BAT and E0 pass translation", 0);
    ok(i8042_set2_to_set1(0x02) == 0x41 && i8042_set2_to_set1(0x83) == 0x41,
       "set 2 answer and F7 both translate to 0x41", 0);
    printf("1..%d\n", t_num);
    return t_fail ? 1 : 0;
}
