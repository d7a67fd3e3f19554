#include "tm_stat.h"

#include "plg_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tm_stat_probe {
  pthread_mutex_t lock; /* a leaf: taken under tm_export_env.lock by the watchdog's checks */
  pthread_cond_t done_cond;
  int refs; /* the caller and the thread */
  bool done;
  int err;
  struct stat st;
  int64_t started;
  char *path;
};

static void probe_unref(struct tm_stat_probe *p)
{
  pthread_mutex_lock(&p->lock);
  bool last = --p->refs == 0;
  pthread_mutex_unlock(&p->lock);
  if (!last)
    return;
  pthread_cond_destroy(&p->done_cond);
  pthread_mutex_destroy(&p->lock);
  free(p->path);
  free(p);
}

static void *run_stat(void *arg)
{
  struct tm_stat_probe *p = arg;
  struct stat st;
  int rc = stat(p->path, &st);
  int e = rc < 0 ? errno : 0;
  pthread_mutex_lock(&p->lock);
  p->done = true;
  p->err = e;
  p->st = st;
  pthread_cond_broadcast(&p->done_cond);
  pthread_mutex_unlock(&p->lock);
  probe_unref(p);
  return NULL;
}

struct tm_stat_probe *tm_stat_probe_start(const char *path)
{
  struct tm_stat_probe *p = xcalloc(1, sizeof *p);
  pthread_mutex_init(&p->lock, NULL);
  plg_cond_init_monotonic(&p->done_cond);
  p->path = xstrdup(path);
  p->started = plg_now_ms();
  p->refs = 2;
  pthread_t t;
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&ta, 64 * 1024);
  if (pthread_create(&t, &ta, run_stat, p) != 0) {
    p->done = true;
    p->err = EAGAIN;
    p->refs = 1;
  }
  pthread_attr_destroy(&ta);
  return p;
}

bool tm_stat_probe_wait(struct tm_stat_probe *p, int timeout_ms, int *errno_out, struct stat *st)
{
  struct timespec deadline;
  plg_timespec_in(&deadline, CLOCK_MONOTONIC, timeout_ms);
  pthread_mutex_lock(&p->lock);
  while (!p->done && timeout_ms > 0)
    if (pthread_cond_timedwait(&p->done_cond, &p->lock, &deadline) == ETIMEDOUT)
      break;
  bool done = p->done;
  if (done) {
    *errno_out = p->err;
    if (st != NULL)
      *st = p->st;
  }
  pthread_mutex_unlock(&p->lock);
  return done;
}

int64_t tm_stat_probe_started(const struct tm_stat_probe *p)
{
  return p->started;
}

void tm_stat_probe_release(struct tm_stat_probe *p)
{
  if (p != NULL)
    probe_unref(p);
}

int tm_stat_deadline(const char *path, int timeout_ms, struct stat *st)
{
  struct tm_stat_probe *p = tm_stat_probe_start(path);
  int e = 0;
  bool done = tm_stat_probe_wait(p, timeout_ms, &e, st);
  tm_stat_probe_release(p);
  if (!done)
    e = ETIMEDOUT;
  errno = e;
  return e == 0 ? 0 : -1;
}
