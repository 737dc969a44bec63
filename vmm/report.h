/* --report: one JSON object describing how a run ended. */
#ifndef CALF_VMM_REPORT_H
#define CALF_VMM_REPORT_H

#include <stdint.h>

struct vm;

/* Returns 0, or -errno after printing why the file could not be written. */
int report_write(const char *path, struct vm *vm, int status,
                 uint64_t process_start_ns);

#endif
