/* Helpers shared by the command-line tools (calf-img, calf-io): QEMU's
 * number syntax, QEMU's JSON pretty-printer order, human-readable sizes
 * and timing.  Nothing here touches an image. */
#ifndef CALF_TOOL_UTIL_H
#define CALF_TOOL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* The program name, the last component of argv[0] as QEMU's
 * error_init() takes it: the "NAME: " of errors and warnings, qemu-io's
 * "NAME> " prompt, usage and version lines.  Set by tool_set_progname(). */
extern const char *tool_progname;

/* Where QEMU's tools print a fixed name whatever argv[0] says ("Try
 * 'qemu-img --help'", "qemu-img version"), ours print blk_img_tool: set
 * here to "qemu-img" when NAME starts with "qemu", else "calf-img". */
void tool_set_progname(const char *argv0);

/* QEMU's qemu_strtosz(): "64k", "1.5G", "0x10", "512" (bytes).
 * Returns 0, -EINVAL on garbage, -ERANGE on overflow. */
int tool_strtosz(const char *s, uint64_t *out);

/* qemu-img's cvtnum_full(): parses s into [min, max] or prints QEMU's
 * error for "name" (e.g. "image size") and returns a negative errno. */
int tool_cvtnum_full(const char *name, const char *s, int64_t min, int64_t max,
                     int64_t *out);

/* qemu-io's cvtstr(): "64 KiB", "1.500 KiB", "512 bytes". */
void tool_cvtstr(double value, char *buf, size_t len);

/* qemu-io's print_cvtnum_err() text for a tool_strtosz() error. */
void tool_print_cvtnum_err(int err, const char *arg);

/* ---- JSON values, printed the way QEMU's QDict/QObject printer does:
 * object keys come out in QDict hash-bucket order, not insertion order,
 * so scripts diffing our output against qemu-img see the same text. ---- */
typedef struct JsonNode JsonNode;

JsonNode *json_new_object(void);
JsonNode *json_new_array(void);
/* Add to an object (key != NULL) or append to an array (key == NULL).
 * The container takes ownership of child. */
void json_add(JsonNode *container, const char *key, JsonNode *child);
JsonNode *json_int(int64_t v);
JsonNode *json_bool(bool v);
JsonNode *json_str(const char *s);
void json_print_pretty(FILE *f, const JsonNode *n);
/* {"a": 1, "b": [2, 3]}: one line */
void json_print_compact(FILE *f, const JsonNode *n);
/* QEMU's human dump of a QObject (dump_qobject in block/qapi.c):
 * "key: value" lines, dashes in keys shown as spaces, 4 spaces per level. */
void json_dump_human(FILE *f, const JsonNode *n, int indentation);
/* The member of an object named key, or NULL. */
JsonNode *json_get(const JsonNode *obj, const char *key);
/* The i-th member of an object or array, or NULL. */
JsonNode *json_get_child(const JsonNode *n, int i);
void json_free(JsonNode *n);

/* The "format-specific" member of qemu-img info for an image (QAPI
 * ImageInfoSpecific), or NULL when the format has none (raw). */
struct BlockInfo;
JsonNode *tool_format_specific(const struct BlockInfo *bi);

/* Monotonic time in seconds, for the I/O report lines. */
double tool_now(void);

#endif
