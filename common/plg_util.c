#include "plg_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Out of memory is not recoverable in a plugin that answers dockerd: abort loudly instead of
 * threading allocation failures through every caller. */
static void out_of_memory(size_t size)
{
  fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", size);
  abort();
}

void *xmalloc(size_t size)
{
  void *p = malloc(size ? size : 1);
  if (p == NULL)
    out_of_memory(size);
  return p;
}

void *xcalloc(size_t n, size_t size)
{
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (p == NULL)
    out_of_memory(n * size);
  return p;
}

void *xrealloc(void *ptr, size_t size)
{
  void *p = realloc(ptr, size ? size : 1);
  if (p == NULL)
    out_of_memory(size);
  return p;
}

char *xstrdup(const char *s)
{
  char *p = strdup(s);
  if (p == NULL)
    out_of_memory(strlen(s) + 1);
  return p;
}

char *xstrndup(const char *s, size_t n)
{
  char *p = strndup(s, n);
  if (p == NULL)
    out_of_memory(n + 1);
  return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
  char *p = NULL;
  if (vasprintf(&p, fmt, ap) < 0)
    out_of_memory(strlen(fmt));
  return p;
}

char *xasprintf(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *p = xvasprintf(fmt, ap);
  va_end(ap);
  return p;
}

int64_t plg_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void plg_sleep_ms(int64_t ms)
{
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

void plg_timespec_in(struct timespec *ts, clockid_t clock, int64_t ms)
{
  clock_gettime(clock, ts);
  ts->tv_sec += (time_t)(ms / 1000);
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

void plg_cond_init_monotonic(pthread_cond_t *cond)
{
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(cond, &attr);
  pthread_condattr_destroy(&attr);
}

void plg_cleanup_freep(void *p)
{
  void **pp = p;
  free(*pp);
}

void plg_cleanup_closep(int *fd)
{
  if (*fd >= 0) {
    int saved = errno;
    close(*fd);
    errno = saved;
  }
}

void plg_strv_free(char **v)
{
  if (v == NULL)
    return;
  for (char **p = v; *p != NULL; p++)
    free(*p);
  free(v);
}
