/* Host keys to PC scan code set 2.  The host side names keys by their
 * USB HID usage (keyboard page 7), which is what SDL scancodes are; the
 * table gives each its set-2 make code, E0-prefixed where the key is one
 * of the "extended" keys of the 101-key keyboard. */
#include "vmm/display.h"

#define E0 0x100 /* make code carries the E0 prefix */

static const uint16_t hid_to_set2[232] = {
    [4] = 0x1c, [5] = 0x32, [6] = 0x21, [7] = 0x23, [8] = 0x24,   /* A-E */
    [9] = 0x2b, [10] = 0x34, [11] = 0x33, [12] = 0x43, [13] = 0x3b,
    [14] = 0x42, [15] = 0x4b, [16] = 0x3a, [17] = 0x31, [18] = 0x44,
    [19] = 0x4d, [20] = 0x15, [21] = 0x2d, [22] = 0x1b, [23] = 0x2c,
    [24] = 0x3c, [25] = 0x2a, [26] = 0x1d, [27] = 0x22, [28] = 0x35,
    [29] = 0x1a,                                                  /* Z */
    [30] = 0x16, [31] = 0x1e, [32] = 0x26, [33] = 0x25, [34] = 0x2e, /* 1-5 */
    [35] = 0x36, [36] = 0x3d, [37] = 0x3e, [38] = 0x46, [39] = 0x45, /* 6-0 */
    [40] = 0x5a,  /* Enter */      [41] = 0x76, /* Esc */
    [42] = 0x66,  /* Backspace */  [43] = 0x0d, /* Tab */
    [44] = 0x29,  /* Space */      [45] = 0x4e, /* - */
    [46] = 0x55,  /* = */          [47] = 0x54, /* [ */
    [48] = 0x5b,  /* ] */          [49] = 0x5d, /* \ */
    [50] = 0x5d,  /* non-US # */   [51] = 0x4c, /* ; */
    [52] = 0x52,  /* ' */          [53] = 0x0e, /* ` */
    [54] = 0x41,  /* , */          [55] = 0x49, /* . */
    [56] = 0x4a,  /* / */          [57] = 0x58, /* CapsLock */
    [58] = 0x05, [59] = 0x06, [60] = 0x04, [61] = 0x0c,          /* F1-F4 */
    [62] = 0x03, [63] = 0x0b, [64] = 0x83, [65] = 0x0a,          /* F5-F8 */
    [66] = 0x01, [67] = 0x09, [68] = 0x78, [69] = 0x07,          /* F9-F12 */
    [71] = 0x7e,  /* ScrollLock */
    [73] = E0 | 0x70, [74] = E0 | 0x6c, [75] = E0 | 0x7d, /* Ins Home PgUp */
    [76] = E0 | 0x71, [77] = E0 | 0x69, [78] = E0 | 0x7a, /* Del End PgDn */
    [79] = E0 | 0x74, [80] = E0 | 0x6b, [81] = E0 | 0x72, /* Right Left Down */
    [82] = E0 | 0x75, /* Up */
    [83] = 0x77, /* NumLock */ [84] = E0 | 0x4a, /* KP/ */
    [85] = 0x7c, [86] = 0x7b, [87] = 0x79,        /* KP* KP- KP+ */
    [88] = E0 | 0x5a, /* KP Enter */
    [89] = 0x69, [90] = 0x72, [91] = 0x7a, [92] = 0x6b, [93] = 0x73, /* KP1-5 */
    [94] = 0x74, [95] = 0x6c, [96] = 0x75, [97] = 0x7d, [98] = 0x70, /* KP6-0 */
    [99] = 0x71,  /* KP. */
    [100] = 0x61, /* the 102nd key (ISO \) */
    [101] = E0 | 0x2f, /* Menu */ [102] = E0 | 0x37, /* Power */
    [103] = 0x0f, /* KP= */
    [104] = 0x08, [105] = 0x10, [106] = 0x18, [107] = 0x20,      /* F13-F16 */
    [108] = 0x28, [109] = 0x30, [110] = 0x38, [111] = 0x40,      /* F17-F20 */
    [112] = 0x48, [113] = 0x50, [114] = 0x57, [115] = 0x5f,      /* F21-F24 */
    [133] = 0x6d, /* KP, */
    [135] = 0x51, [136] = 0x13, [137] = 0x6a, [138] = 0x64, [139] = 0x67,
    [144] = 0xf2, [145] = 0xf1, /* Hangul, Hanja: one byte, no break */
    /* LCtrl LShift LAlt LGUI */
    [224] = 0x14, [225] = 0x12, [226] = 0x11, [227] = E0 | 0x1f,
    [228] = E0 | 0x14, [229] = 0x59, [230] = E0 | 0x11, [231] = E0 | 0x27,
};

#define HID_PRINTSCREEN 70
#define HID_PAUSE 72

static size_t keymap_special(unsigned hid, bool release, uint8_t *out)
{
    static const uint8_t prtsc_make[] = { 0xe0, 0x12, 0xe0, 0x7c };
    static const uint8_t prtsc_break[] = { 0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12 };
    static const uint8_t pause[] = { 0xe1, 0x14, 0x77, 0xe1,
                                     0xf0, 0x14, 0xf0, 0x77 };
    const uint8_t *seq;
    size_t n;

    if (hid == HID_PAUSE) {
        if (release) /* Pause sends its whole sequence on the press */
            return 0;
        seq = pause;
        n = sizeof(pause);
    } else {
        seq = release ? prtsc_break : prtsc_make;
        n = release ? sizeof(prtsc_break) : sizeof(prtsc_make);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = seq[i];
    return n;
}

size_t keymap_hid_to_set2(unsigned hid, bool release, uint8_t *out)
{
    unsigned code;
    size_t n = 0;

    if (hid == HID_PRINTSCREEN || hid == HID_PAUSE)
        return keymap_special(hid, release, out);
    if (hid >= sizeof(hid_to_set2) / sizeof(hid_to_set2[0]) ||
        !(code = hid_to_set2[hid]))
        return 0;
    if ((code & 0xff) >= 0xf1) /* the Korean keys */
        return release ? 0 : (out[0] = (uint8_t)code, 1);
    if (code & E0)
        out[n++] = 0xe0;
    if (release)
        out[n++] = 0xf0;
    out[n++] = (uint8_t)code;
    return n;
}
