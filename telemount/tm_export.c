#include "tm_export.h"

#include "plg_fs.h"
#include "plg_log.h"
#include "plg_util.h"
#include "tm_mountinfo.h"
#include "tm_net.h"
#include "tm_readahead.h"
#include "tm_sshfs.h"
#include "tm_stat.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* how often an export whose server stopped answering is checked again: its return is noticed (and
 * sshfs made to redial) within this time, even when no container touches the mount */
#define RECONNECT_CHECK_MS 500
/* the pause between two probes of a host that did not answer, within the linger time */
#define REPROBE_MS 250
#define PREPARE_ATTEMPTS 3

enum state { S_IDLE, S_STARTING, S_MOUNTED, S_RECONNECTING, S_LOST, S_ERROR };
static const char *const state_names[] = {"idle",         "mounting",     "mounted",
                                          "reconnecting", "disconnected", "error"};

struct tm_export {
  /* immutable after creation */
  struct tm_export_env *env;
  struct tm_opts key; /* host, port and ro: what it serves (container and dir unused) */
  const char *host;   /* key.host */
  int port;
  bool ro;
  char *root; /* the mount point */
  /* under env->lock */
  enum state state;
  struct tm_sshfs *sshfs;
  bool needs_teardown;
  bool lost_while_starting;
  char *last_error;
  int64_t lost_at;
  int64_t silent_since; /* since when the server has not answered; 0: it answers, or nobody asked */
  int64_t next_health;
  struct tm_stat_probe *probe;
  unsigned health_seq;
};

static void set_error(struct tm_export *x, const char *msg)
{
  free(x->last_error);
  x->last_error = msg != NULL ? xstrdup(msg) : NULL;
}

/* The server stopped answering but sshfs lives on and redials: the mount stays for the containers
 * that hold it, and they get errors, not hangs, until the server is back. */
static void mark_reconnecting(struct tm_export *x, const char *why)
{
  if (x->state != S_MOUNTED)
    return;
  x->state = S_RECONNECTING;
  if (x->silent_since == 0)
    x->silent_since = plg_now_ms();
  x->next_health = plg_now_ms(); /* look again at once: the server may already be back */
  set_error(x, why);
  plg_warn("%s:%d stopped answering: %s; sshfs redials on the next access", x->host, x->port, why);
}

static void mark_answering(struct tm_export *x)
{
  if (x->state == S_RECONNECTING) {
    plg_info("%s:%d answers again, after %lld ms: the mount serves again", x->host, x->port,
             (long long)(plg_now_ms() - x->silent_since));
    x->state = S_MOUNTED;
  }
  x->silent_since = 0;
  set_error(x, NULL);
}

static void mark_lost(struct tm_export *x, const char *why)
{
  x->state = S_LOST;
  x->needs_teardown = true;
  x->lost_at = plg_now_ms();
  if (x->silent_since == 0)
    x->silent_since = x->lost_at;
  set_error(x, why);
  plg_warn("%s:%d lost: %s", x->host, x->port, why);
}

/* Runs on plg_proc's reaper thread or on sshfs's stderr reader: record and signal only; the
 * watchdog does the tearing down. */
static void on_sshfs_event(void *arg, enum tm_sshfs_event ev, const char *why)
{
  struct tm_export *x = arg;
  struct tm_export_env *env = x->env;
  pthread_mutex_lock(&env->lock);
  if (env->stopping) {
    /* the stop killed it: no loss to report, and the stop tears it down */
  } else if (ev == TM_SSHFS_DISCONNECTED) {
    mark_reconnecting(x, why);
  } else if (x->state == S_MOUNTED || x->state == S_RECONNECTING) {
    mark_lost(x, why);
  } else if (x->state == S_STARTING) {
    x->lost_while_starting = true;
  }
  pthread_cond_broadcast(&env->changed);
  pthread_mutex_unlock(&env->lock);
}

/* A server that froze never ends the connection by itself: cut it, so that requests waiting on it
 * fail at once and sshfs redials on the next access. Where cutting is not possible (no
 * pidfd_getfd), sshfs is killed instead, as the only way to free the readers. */
static void break_off_locked(struct tm_export *x, const char *why)
{
  plg_error_t err = NULL;
  int cut = x->sshfs != NULL ? tm_sshfs_cut(x->sshfs, &err) : 0;
  if (cut < 0) {
    cleanup_free char *lost =
        xasprintf("%s; cannot cut sshfs's connection (%s), so sshfs is stopped", why, err->msg);
    plg_error_release(&err);
    mark_lost(x, lost);
    return;
  }
  plg_debug("%s:%d: cut %d connection(s) of sshfs", x->host, x->port, cut);
  mark_reconnecting(x, why);
}

/* Drops the lock while sshfs is killed and its mount removed. Killing at once (not TERM) is what
 * frees readers blocked on a dead or frozen server. */
static void teardown_locked(struct tm_export *x)
{
  struct tm_sshfs *s = x->sshfs;
  struct tm_stat_probe *probe = x->probe;
  x->sshfs = NULL;
  x->probe = NULL;
  x->needs_teardown = false;
  pthread_mutex_unlock(&x->env->lock);
  if (s != NULL) {
    tm_sshfs_kill(s);
    tm_sshfs_stop(s);
  }
  tm_stat_probe_release(probe);
  pthread_mutex_lock(&x->env->lock);
}

/* Removes the plugin's own directories for X if they are empty and nothing is mounted on them:
 * rmdir only, never recursive, so no remote file can ever be touched. */
static void remove_local_dirs(const struct tm_export *x)
{
  if (tm_is_mounted(x->root, NULL, 0))
    return;
  if (rmdir(x->root) < 0 && errno != ENOENT)
    return;
  cleanup_free char *host_dir = plg_fs_dirname(x->root);
  if (!tm_is_mounted(host_dir, NULL, 0))
    rmdir(host_dir); /* fails harmlessly while another port of this host is in use */
}

/* Probes the host until it answers or RETRY_UNTIL passes: within the linger time after a
 * disconnect, a Mount waits for a daemon that is restarting its port forward. Called without the
 * lock; a stop ends the wait. */
static int probe_host(struct tm_export *x, int64_t retry_until, int per_try_ms, struct tm_addr *addr,
                      plg_error_t *err)
{
  struct tm_export_env *env = x->env;
  for (;;) {
    plg_error_t try_err = NULL;
    if (tm_net_probe(x->host, x->port, per_try_ms, env->cancel_fd, addr, &try_err) == 0)
      return 0;
    pthread_mutex_lock(&env->lock);
    bool give_up = plg_now_ms() + REPROBE_MS >= retry_until || env->stopping;
    if (give_up && x->silent_since == 0)
      x->silent_since = plg_now_ms();
    if (!give_up) {
      struct timespec ts;
      plg_timespec_in(&ts, CLOCK_MONOTONIC, REPROBE_MS);
      pthread_cond_timedwait(&env->changed, &env->lock, &ts); /* a stop wakes it */
    }
    pthread_mutex_unlock(&env->lock);
    if (give_up) {
      *err = try_err;
      return -1;
    }
    plg_error_release(&try_err);
  }
}

/* A slower mount is still a working one: a failure is logged, never returned. The kernel lowers
 * the readahead when it processes sshfs's answer to FUSE_INIT, which may come after the mount is
 * in the mount table; the first answered stat means that answer is in. */
static void raise_readahead(const struct tm_export *x, const struct tm_config *c)
{
  plg_error_t err = NULL;
  if (c->read_ahead_kb == 0)
    return;
  if (tm_stat_deadline(x->root, (int)c->health_timeout_ms, NULL) < 0)
    plg_warn("%s:%d: reads stay at the kernel's default readahead: no answer to stat %s (%s)", x->host,
             x->port, x->root, strerror(errno));
  else if (tm_readahead_set(x->root, c->read_ahead_kb, &err) < 0)
    plg_warn("%s:%d: reads stay at the kernel's default readahead: %s", x->host, x->port, err->msg);
  else
    plg_debug("%s:%d: readahead %d KiB", x->host, x->port, c->read_ahead_kb);
  plg_error_release(&err);
}

/* The mount point, empty: a stale mount of an earlier instance, or the dead mount of an sshfs that
 * crashed (fusermount3 unmounts it in its own time), goes first. A dead mount the kernel did not
 * show to tm_unmount (see tm_sshfs.c: is_dead_mount) shows up as ENOTCONN here: try again. */
static int prepare_mount_point(const struct tm_export *x, plg_error_t *err)
{
  for (int attempt = 1;; attempt++) {
    if (tm_unmount(x->root, err) < 0)
      return -1;
    if (plg_fs_mkdir_p(x->root, 0755, err) == 0)
      return 0;
    bool dead = (*err)->errno_ == ENOTCONN || (*err)->errno_ == ECONNABORTED;
    if (!dead || attempt == PREPARE_ATTEMPTS)
      return -1;
    plg_error_release(err);
  }
}

/* The slow part of a mount, without the lock: probe, then sshfs until the kernel shows the
 * mount. Leaves nothing behind on failure. */
static int start_unlocked(struct tm_export *x, bool was_lost, int64_t retry_until, struct tm_sshfs **out,
                          plg_error_t *err)
{
  const struct tm_config *c = &x->env->cfg;
  if (prepare_mount_point(x, err) < 0)
    return -1;
  struct tm_addr addr;
  int per_try = (int)(was_lost ? c->ping_timeout_ms : c->connect_timeout_ms);
  if (probe_host(x, retry_until, per_try, &addr, err) < 0) {
    remove_local_dirs(x);
    return -1;
  }
  struct tm_sshfs_params p = {.sshfs = c->sshfs,
                              .addr = &addr,
                              .port = x->port,
                              .ro = x->ro,
                              .mountpoint = x->root,
                              .max_conns = c->max_conns,
                              .default_permissions = c->default_permissions,
                              .cache_timeout_ms = c->cache_timeout_ms,
                              .auto_cache = c->auto_cache,
                              .connect_timeout_ms = (int)c->connect_timeout_ms,
                              .cancel_fd = x->env->cancel_fd};
  if (tm_sshfs_start(&p, (int)c->mount_timeout_ms, on_sshfs_event, x, out, err) < 0) {
    remove_local_dirs(x);
    return plg_error_wrap(err, "mounting %s:%d", x->host, x->port);
  }
  raise_readahead(x, c);
  return 0;
}

/* Records how a start ended; RC 0 with a loss while starting is a failure too. */
static int finish_start_locked(struct tm_export *x, int rc, bool was_lost, struct tm_sshfs *s,
                               plg_error_t *err)
{
  if (rc == 0 && x->lost_while_starting) {
    cleanup_free char *tail = tm_sshfs_stderr_tail(s);
    plg_error_make(err, 0, "%s:%d: sshfs stopped right after mounting%s%s", x->host, x->port,
                   *tail ? ": " : "", tail);
    x->sshfs = s;
    x->state = S_ERROR;
    set_error(x, (*err)->msg);
    teardown_locked(x);
    rc = -1;
  } else if (rc == 0) {
    x->sshfs = s;
    x->state = S_MOUNTED;
    x->silent_since = 0;
    x->next_health = plg_now_ms() + x->env->cfg.health_interval_ms;
    set_error(x, NULL);
    plg_info("mounted %s:%d%s at %s (sshfs pid %d)", x->host, x->port, x->ro ? " read-only" : "", x->root,
             (int)tm_sshfs_pid(s));
  } else {
    x->state = was_lost ? S_LOST : S_ERROR;
    set_error(x, (*err)->msg);
  }
  pthread_cond_broadcast(&x->env->changed);
  return rc;
}

/* A mount whose server stopped answering: within the linger time a restarting port forward may
 * come back, so the host is probed until then. Drops the lock while it probes. */
static int await_server_locked(struct tm_export *x, plg_error_t *err)
{
  const struct tm_config *c = &x->env->cfg;
  int64_t now = plg_now_ms();
  int64_t since = x->silent_since != 0 ? x->silent_since : now;
  int64_t retry_until = now - since < c->linger_ms ? since + c->linger_ms : now;
  pthread_mutex_unlock(&x->env->lock);
  struct tm_addr addr;
  int rc = probe_host(x, retry_until, (int)c->ping_timeout_ms, &addr, err);
  pthread_mutex_lock(&x->env->lock);
  return rc;
}

int tm_export_mount_locked(struct tm_export *x, plg_error_t *err)
{
  struct tm_export_env *env = x->env;
  const struct tm_config *c = &env->cfg;
  struct timespec wait_until;
  plg_timespec_in(&wait_until, CLOCK_MONOTONIC, c->mount_timeout_ms + c->linger_ms + c->connect_timeout_ms);
  for (;;) {
    if (env->stopping)
      return plg_error_make(err, 0, "%s:%d: the plugin is stopping", x->host, x->port);
    if (x->needs_teardown)
      teardown_locked(x);
    if (x->state == S_MOUNTED)
      return 0;
    if (x->state == S_RECONNECTING) {
      if (await_server_locked(x, err) < 0)
        return -1;
      if (x->state == S_RECONNECTING || x->state == S_MOUNTED)
        return 0; /* sshfs redials on the first access */
      continue;
    }
    if (x->state == S_STARTING) {
      if (pthread_cond_timedwait(&env->changed, &env->lock, &wait_until) == ETIMEDOUT)
        return plg_error_make(err, 0, "%s:%d is still being mounted by another request", x->host, x->port);
      continue;
    }
    bool was_lost = x->state == S_LOST;
    int64_t now = plg_now_ms();
    int64_t retry_until = was_lost && now - x->lost_at < c->linger_ms ? x->lost_at + c->linger_ms : now;
    x->state = S_STARTING;
    x->lost_while_starting = false;
    pthread_mutex_unlock(&env->lock);
    struct tm_sshfs *s = NULL;
    int rc = start_unlocked(x, was_lost, retry_until, &s, err);
    pthread_mutex_lock(&env->lock);
    return finish_start_locked(x, rc, was_lost, s, err);
  }
}

int tm_export_check_dir(struct tm_export *x, const struct tm_opts *o, const char *path, plg_error_t *err)
{
  struct stat st;
  int64_t timeout = x->env->cfg.health_timeout_ms;
  cleanup_free char *remote = tm_remote_dir(o);
  if (tm_stat_deadline(path, (int)timeout, &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return 0;
    return plg_error_make(err, 0, "%s on %s:%d is not a directory", remote, o->host, o->port);
  }
  int e = errno;
  pthread_mutex_lock(&x->env->lock);
  bool stopping = x->env->stopping;
  pthread_mutex_unlock(&x->env->lock);
  if (stopping) /* the stop killed sshfs under this lookup */
    return plg_error_make(err, 0, "looking up %s on %s:%d: the plugin is stopping", remote, o->host, o->port);
  if (e == ETIMEDOUT) {
    pthread_mutex_lock(&x->env->lock);
    if (x->state == S_MOUNTED || x->state == S_RECONNECTING)
      break_off_locked(x, "the SFTP server stopped answering");
    pthread_cond_broadcast(&x->env->changed);
    pthread_mutex_unlock(&x->env->lock);
    return plg_error_make(err, 0, "%s:%d did not answer within %lld ms while looking up %s", o->host, o->port,
                          (long long)timeout, remote);
  }
  if (e == ENOENT)
    return plg_error_make(err, 0, "%s does not exist on %s:%d", remote, o->host, o->port);
  return plg_error_make(err, e, "cannot look up %s on %s:%d", remote, o->host, o->port);
}

void tm_export_release_locked(struct tm_export *x)
{
  if (x->state == S_STARTING)
    return; /* a create is mounting it again: it is not unused any more */
  bool had = x->sshfs != NULL;
  /* busy while the lock is dropped: a Mount meanwhile waits, and the exit of the sshfs stopped
   * here is not taken for a loss */
  x->state = S_STARTING;
  teardown_locked(x);
  x->state = S_IDLE;
  x->silent_since = 0;
  set_error(x, NULL);
  remove_local_dirs(x);
  if (had)
    plg_info("stopped sshfs of %s:%d: no volume uses it any more", x->host, x->port);
  pthread_cond_broadcast(&x->env->changed);
}

void tm_export_stopping_locked(struct tm_export *x)
{
  if (x->sshfs != NULL)
    tm_sshfs_kill(x->sshfs);
}

void tm_export_stop_locked(struct tm_export *x)
{
  if (x->sshfs != NULL || x->probe != NULL)
    teardown_locked(x);
  remove_local_dirs(x);
}

/* A check through the mount: a name that cannot be cached (a new one each time) forces sshfs to
 * ask the server, and makes it redial when its connection had ended. "No such file" is the
 * server's answer; any other error means it does not answer now; no answer at all within
 * HEALTH_CHECK_TIMEOUT means it froze. */
static void check_health_locked(struct tm_export *x, int64_t now)
{
  const struct tm_config *c = &x->env->cfg;
  if (x->probe == NULL) {
    if (now >= x->next_health) {
      cleanup_free char *path = xasprintf("%s/.telemount-health-%u", x->root, ++x->health_seq);
      x->probe = tm_stat_probe_start(path);
    }
    return;
  }
  int e;
  if (tm_stat_probe_wait(x->probe, 0, &e, NULL)) {
    tm_stat_probe_release(x->probe);
    x->probe = NULL;
    if (e == 0 || e == ENOENT) {
      mark_answering(x);
    } else {
      cleanup_free char *why = xasprintf("a check through the mount failed: %s", strerror(e));
      mark_reconnecting(x, why);
    }
    x->next_health = now + (x->state == S_RECONNECTING ? RECONNECT_CHECK_MS : c->health_interval_ms);
  } else if (now - tm_stat_probe_started(x->probe) > c->health_timeout_ms) {
    cleanup_free char *why =
        xasprintf("the SFTP server stopped answering (no reply through the mount within %lld ms)",
                  (long long)c->health_timeout_ms);
    tm_stat_probe_release(x->probe); /* its thread ends once the cut frees it */
    x->probe = NULL;
    break_off_locked(x, why);
    x->next_health = now + RECONNECT_CHECK_MS;
  }
}

bool tm_export_watch_locked(struct tm_export *x, int64_t now)
{
  if (x->needs_teardown) {
    teardown_locked(x);
    pthread_cond_broadcast(&x->env->changed);
    return true;
  }
  if ((x->state == S_MOUNTED || x->state == S_RECONNECTING) && x->env->cfg.health_interval_ms > 0)
    check_health_locked(x, now);
  return false;
}

bool tm_export_usable_locked(const struct tm_export *x)
{
  return x->state == S_MOUNTED || x->state == S_RECONNECTING;
}

void tm_export_status_locked(const struct tm_export *x, json_t *status)
{
  json_object_set_new(status, "state", json_string(state_names[x->state]));
  if (x->last_error != NULL)
    json_object_set_new(status, "error", json_string(x->last_error));
}

bool tm_export_server_gone_locked(struct tm_export *x, int64_t *silent_ms)
{
  struct tm_export_env *env = x->env;
  for (;;) {
    /* mounted and not known to be lost, or being mounted: it answers, as far as anyone knows */
    if ((x->state == S_MOUNTED && !x->needs_teardown) || x->state == S_STARTING || env->stopping)
      return false;
    pthread_mutex_unlock(&env->lock);
    struct tm_addr addr;
    plg_error_t err = NULL;
    bool answered =
        tm_net_probe(x->host, x->port, (int)env->cfg.ping_timeout_ms, env->cancel_fd, &addr, &err) == 0;
    plg_error_release(&err);
    pthread_mutex_lock(&env->lock);
    int64_t now = plg_now_ms();
    if (answered) {
      x->silent_since = 0;
      return false;
    }
    if (x->silent_since == 0)
      x->silent_since = now;
    if (tm_silence_is_final(x->silent_since, now, env->cfg.linger_ms)) {
      *silent_ms = now - x->silent_since;
      return true;
    }
    /* within the linger time a restarting port forward may come back: ask again shortly */
    int64_t wait = x->silent_since + env->cfg.linger_ms - now;
    struct timespec ts;
    plg_timespec_in(&ts, CLOCK_MONOTONIC, wait < REPROBE_MS ? wait : REPROBE_MS);
    pthread_cond_timedwait(&env->changed, &env->lock, &ts);
  }
}

bool tm_export_serves(const struct tm_export *x, const struct tm_opts *o)
{
  return tm_opts_same_export(&x->key, o);
}

bool tm_silence_is_final(int64_t silent_since, int64_t now, int64_t linger_ms)
{
  return silent_since > 0 && now - silent_since > linger_ms;
}

struct tm_export *tm_export_new(struct tm_export_env *env, const struct tm_opts *o)
{
  struct tm_export *x = xcalloc(1, sizeof *x);
  x->env = env;
  tm_opts_copy(&x->key, o);
  x->host = x->key.host;
  x->port = o->port;
  x->ro = o->ro;
  x->root = tm_mount_root(env->cfg.mount_root, o->host, o->port, o->ro);
  return x;
}

void tm_export_free(struct tm_export *x)
{
  if (x == NULL)
    return;
  tm_opts_clear(&x->key);
  free(x->root);
  free(x->last_error);
  free(x);
}
