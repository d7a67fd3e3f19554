/* Levelled logging. Info and debug lines go to stdout and warnings and errors to stderr, because
 * dockerd records a plugin's stdout at level info and its stderr at level error; every line is
 * mirrored to a file when one is configured (at once: the file has each line before the call it
 * describes is answered). Logging never changes errno, and never waits for a reader: a thread of
 * this module writes stdout and stderr, and when they are not being read (dockerd stalls on a
 * pipe) lines beyond a bounded queue are dropped from them, counted, and the count is logged once
 * the output moves again. A message is cut at 8 KiB. */
#ifndef PLG_LOG_H
#define PLG_LOG_H

#include "plg_error.h"

#include <stdbool.h>

enum plg_log_level { PLG_LOG_ERROR, PLG_LOG_WARN, PLG_LOG_INFO, PLG_LOG_DEBUG };

void plg_log_init(const char *program);
void plg_log_set_debug(bool on);
bool plg_log_debug_enabled(void);

/* Appends every line to PATH as well (created 0640 with its directory). */
int plg_log_open_file(const char *path, plg_error_t *err);
/* Waits briefly (500 ms at most) for queued lines to be written, then closes the log file. */
void plg_log_close(void);

/* How many lines were dropped since the start because the output was not being read. */
unsigned long plg_log_dropped(void);

void plg_log(enum plg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define plg_error(...) plg_log(PLG_LOG_ERROR, __VA_ARGS__)
#define plg_warn(...) plg_log(PLG_LOG_WARN, __VA_ARGS__)
#define plg_info(...) plg_log(PLG_LOG_INFO, __VA_ARGS__)
#define plg_debug(...)                                                                                       \
  do {                                                                                                       \
    if (plg_log_debug_enabled())                                                                             \
      plg_log(PLG_LOG_DEBUG, __VA_ARGS__);                                                                   \
  } while (0)

#endif
