#include "tm_mounts.h"

#include "plg_log.h"
#include "plg_util.h"
#include "tm_export.h"
#include "tm_mountinfo.h"
#include "tm_sshfs.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_TICK_MS 200

struct node {
  struct tm_export *export;
  struct node *next;
};

struct tm_mounts {
  struct tm_export_env env; /* its lock guards the list too */
  struct node *list;        /* never shrinks while the plugin runs: a waiter may hold an export */
  pthread_t watchdog;
  bool watchdog_running;
};

static struct tm_export *find_locked(struct tm_mounts *m, const struct tm_opts *o)
{
  for (struct node *n = m->list; n != NULL; n = n->next)
    if (tm_export_serves(n->export, o))
      return n->export;
  return NULL;
}

static struct tm_export *get_locked(struct tm_mounts *m, const struct tm_opts *o)
{
  struct tm_export *x = find_locked(m, o);
  if (x != NULL)
    return x;
  struct node *n = xcalloc(1, sizeof *n);
  n->export = tm_export_new(&m->env, o);
  n->next = m->list;
  m->list = n;
  return n->export;
}

char *tm_mounts_volume_path(struct tm_mounts *m, const struct tm_opts *o)
{
  cleanup_free char *root = tm_mount_root(m->env.cfg.mount_root, o->host, o->port, o->ro);
  return tm_volume_path(root, o);
}

int tm_mounts_ensure(struct tm_mounts *m, const struct tm_opts *o, char **mountpoint, plg_error_t *err)
{
  pthread_mutex_lock(&m->env.lock);
  struct tm_export *x = get_locked(m, o);
  int rc = tm_export_mount_locked(x, err);
  pthread_mutex_unlock(&m->env.lock);
  if (rc < 0)
    return -1;
  char *path = tm_mounts_volume_path(m, o);
  if (tm_export_check_dir(x, o, path, err) < 0) {
    free(path);
    return -1;
  }
  *mountpoint = path;
  return 0;
}

void tm_mounts_release(struct tm_mounts *m, const struct tm_opts *o)
{
  pthread_mutex_lock(&m->env.lock);
  struct tm_export *x = find_locked(m, o);
  if (x != NULL)
    tm_export_release_locked(x);
  pthread_mutex_unlock(&m->env.lock);
}

bool tm_mounts_is_up(struct tm_mounts *m, const struct tm_opts *o)
{
  pthread_mutex_lock(&m->env.lock);
  struct tm_export *x = find_locked(m, o);
  bool up = x != NULL && tm_export_usable_locked(x);
  pthread_mutex_unlock(&m->env.lock);
  return up;
}

void tm_mounts_status(struct tm_mounts *m, const struct tm_opts *o, json_t *status)
{
  pthread_mutex_lock(&m->env.lock);
  struct tm_export *x = find_locked(m, o);
  if (x != NULL)
    tm_export_status_locked(x, status);
  else
    json_object_set_new(status, "state", json_string("idle"));
  pthread_mutex_unlock(&m->env.lock);
}

bool tm_mounts_server_gone(struct tm_mounts *m, const struct tm_opts *o, int64_t *silent_ms)
{
  pthread_mutex_lock(&m->env.lock);
  bool gone = tm_export_server_gone_locked(get_locked(m, o), silent_ms);
  pthread_mutex_unlock(&m->env.lock);
  return gone;
}

static void *watchdog(void *arg)
{
  struct tm_mounts *m = arg;
  pthread_mutex_lock(&m->env.lock);
  while (!m->env.stopping) {
    int64_t now = plg_now_ms();
    bool again = false;
    for (struct node *n = m->list; n != NULL && !again; n = n->next)
      again = tm_export_watch_locked(n->export, now); /* dropped the lock: the walk starts over */
    if (again)
      continue;
    struct timespec ts;
    plg_timespec_in(&ts, CLOCK_MONOTONIC, WATCHDOG_TICK_MS);
    pthread_cond_timedwait(&m->env.changed, &m->env.lock, &ts);
  }
  pthread_mutex_unlock(&m->env.lock);
  return NULL;
}

struct tm_mounts *tm_mounts_new(const struct tm_config *cfg)
{
  /* before anything can mount: done later, it could unmount what a first Mount just made */
  tm_sshfs_remove_stale(cfg->mount_root);
  struct tm_mounts *m = xcalloc(1, sizeof *m);
  m->env.cfg = *cfg;
  pthread_mutex_init(&m->env.lock, NULL);
  plg_cond_init_monotonic(&m->env.changed);
  m->env.cancel_fd = eventfd(0, EFD_CLOEXEC);
  if (m->env.cancel_fd < 0 || pthread_create(&m->watchdog, NULL, watchdog, m) != 0) {
    plg_error("cannot start the mount watchdog");
    abort();
  }
  m->watchdog_running = true;
  return m;
}

void tm_mounts_stopping(struct tm_mounts *m)
{
  pthread_mutex_lock(&m->env.lock);
  if (!m->env.stopping) {
    m->env.stopping = true;
    uint64_t one = 1;
    (void)!write(m->env.cancel_fd, &one, sizeof one);
    for (struct node *n = m->list; n != NULL; n = n->next)
      tm_export_stopping_locked(n->export);
  }
  pthread_cond_broadcast(&m->env.changed);
  pthread_mutex_unlock(&m->env.lock);
}

void tm_mounts_stop(struct tm_mounts *m)
{
  tm_mounts_stopping(m);
  if (m->watchdog_running)
    pthread_join(m->watchdog, NULL);
  m->watchdog_running = false;
  pthread_mutex_lock(&m->env.lock);
  for (struct node *n = m->list; n != NULL; n = n->next)
    tm_export_stop_locked(n->export);
  pthread_mutex_unlock(&m->env.lock);
}

void tm_mounts_free(struct tm_mounts *m)
{
  if (m == NULL)
    return;
  tm_mounts_stop(m);
  while (m->list != NULL) {
    struct node *n = m->list;
    m->list = n->next;
    tm_export_free(n->export);
    free(n);
  }
  close(m->env.cancel_fd);
  pthread_cond_destroy(&m->env.changed);
  pthread_mutex_destroy(&m->env.lock);
  free(m);
}
