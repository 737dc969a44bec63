/* qemu-img's progress line ("    (12.34/100%)\r" on stdout), redrawn when
 * it moved by at least one point, as util/qemu-progress.c does. */
#ifndef CALF_IMG_PROGRESS_H
#define CALF_IMG_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

typedef struct ImgProgress {
    bool on;
    float current, last;
} ImgProgress;

static inline void img_progress_draw(ImgProgress *p)
{
    if (!p->on)
        return;
    printf("    (%3.2f/100%%)\r", p->current);
    fflush(stdout);
}

static inline void img_progress_init(ImgProgress *p, bool on)
{
    p->on = on;
    p->current = p->last = 0;
    img_progress_draw(p);
}

/* Sets the progress to done/total. */
static inline void img_progress_set(ImgProgress *p, double done, double total)
{
    float cur = total > 0 ? (float)(done * 100.0 / total) : 100.f;
    if (cur > 100)
        cur = 100;
    p->current = cur;
    if (cur > p->last + 1.f || cur < p->last - 1.f || cur == 100 || cur == 0) {
        p->last = cur;
        img_progress_draw(p);
    }
}

static inline void img_progress_end(ImgProgress *p)
{
    if (!p->on)
        return;
    p->current = 100;
    img_progress_draw(p);
    printf("\n");
}

#endif
