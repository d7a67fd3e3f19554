/* Allocation wrappers that abort on exhaustion, scope-bound cleanup, and a monotonic clock. */
#ifndef PLG_UTIL_H
#define PLG_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Milliseconds of CLOCK_MONOTONIC: for deadlines and durations, never for dates. */
int64_t plg_now_ms(void);

/* A pause of MS milliseconds (for a bounded retry; never to wait for an event). */
void plg_sleep_ms(int64_t ms);

/* The absolute time MS milliseconds from now on CLOCK, for pthread_cond_timedwait. */
void plg_timespec_in(struct timespec *ts, clockid_t clock, int64_t ms);
/* A condition variable whose timed waits use CLOCK_MONOTONIC: deadlines that ignore wall-clock
 * jumps. Wait on it with plg_timespec_in(&ts, CLOCK_MONOTONIC, ms). */
void plg_cond_init_monotonic(pthread_cond_t *cond);

/* Frees a NULL-terminated array of strings and the strings. */
void plg_strv_free(char **v);

void plg_cleanup_freep(void *p);
void plg_cleanup_closep(int *fd);

#define cleanup_free __attribute__((cleanup(plg_cleanup_freep)))
#define cleanup_close __attribute__((cleanup(plg_cleanup_closep)))

#endif
