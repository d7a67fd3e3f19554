/* Allocation wrappers that abort on exhaustion, scope-bound cleanup, and a monotonic clock. */
#ifndef PLG_UTIL_H
#define PLG_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Milliseconds of CLOCK_MONOTONIC: for deadlines and durations, never for dates. */
int64_t plg_now_ms(void);

void plg_cleanup_freep(void *p);
void plg_cleanup_closep(int *fd);

#define cleanup_free __attribute__((cleanup(plg_cleanup_freep)))
#define cleanup_close __attribute__((cleanup(plg_cleanup_closep)))

#endif
