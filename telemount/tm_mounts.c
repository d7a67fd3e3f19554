#include "tm_mounts.h"

#include "plg_fs.h"
#include "plg_log.h"
#include "plg_util.h"
#include "tm_mountinfo.h"
#include "tm_readahead.h"
#include "tm_net.h"
#include "tm_sshfs.h"
#include "tm_stat.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WATCHDOG_TICK_MS 200

enum mount_state { M_IDLE, M_STARTING, M_MOUNTED, M_LOST, M_ERROR };
static const char *const state_names[] = {"idle", "mounting", "mounted", "disconnected", "error"};

struct mount {
  /* immutable after creation */
  struct tm_mounts *owner;
  char *host;
  enum tm_host_kind kind;
  int port;
  bool ro;
  char *root;
  /* under tm_mounts.lock */
  enum mount_state state;
  struct tm_sshfs *sshfs;
  bool needs_teardown;
  bool lost_while_starting;
  char *last_error;
  int64_t lost_at;
  int64_t next_health;
  struct tm_stat_probe *probe;
  unsigned health_seq;
  struct mount *next;
};

struct tm_mounts {
  struct tm_config cfg;
  pthread_mutex_t lock;
  pthread_cond_t changed; /* a mount changed state (CLOCK_MONOTONIC) */
  struct mount *list;
  pthread_t watchdog;
  bool stopping;
};

static void timespec_in(struct timespec *ts, int64_t ms)
{
  plg_timespec_in(ts, CLOCK_MONOTONIC, ms);
}

static void set_error(struct mount *mt, const char *msg)
{
  free(mt->last_error);
  mt->last_error = msg != NULL ? xstrdup(msg) : NULL;
}

static struct mount *find_mount(struct tm_mounts *m, const char *host, int port, bool ro)
{
  for (struct mount *mt = m->list; mt != NULL; mt = mt->next)
    if (strcmp(mt->host, host) == 0 && mt->port == port && mt->ro == ro)
      return mt;
  return NULL;
}

/* Entries are never freed while the plugin runs: a waiter may hold one across a state change. */
static struct mount *get_mount(struct tm_mounts *m, const struct tm_opts *o)
{
  struct mount *mt = find_mount(m, o->host, o->port, o->ro);
  if (mt != NULL)
    return mt;
  mt = xcalloc(1, sizeof *mt);
  mt->owner = m;
  mt->host = xstrdup(o->host);
  mt->kind = o->host_kind;
  mt->port = o->port;
  mt->ro = o->ro;
  mt->root = tm_mount_root(m->cfg.mount_root, o->host, o->port);
  mt->next = m->list;
  m->list = mt;
  return mt;
}

static void mark_lost(struct mount *mt, const char *why)
{
  mt->state = M_LOST;
  mt->needs_teardown = true;
  mt->lost_at = plg_now_ms();
  set_error(mt, why);
  plg_warn("%s:%d lost: %s", mt->host, mt->port, why);
}

/* Runs on plg_proc's reaper thread or on sshfs's stderr reader: record and signal only; the
 * watchdog does the tearing down. */
static void on_lost(void *arg, const char *why)
{
  struct mount *mt = arg;
  struct tm_mounts *m = mt->owner;
  pthread_mutex_lock(&m->lock);
  if (mt->state == M_MOUNTED)
    mark_lost(mt, why);
  else if (mt->state == M_STARTING)
    mt->lost_while_starting = true;
  pthread_cond_broadcast(&m->changed);
  pthread_mutex_unlock(&m->lock);
}

/* Called with the lock held; drops it while sshfs is killed and its mount removed. Killing at
 * once (not TERM) is what frees readers blocked on a dead or frozen server. */
static void teardown_locked(struct tm_mounts *m, struct mount *mt)
{
  struct tm_sshfs *s = mt->sshfs;
  struct tm_stat_probe *probe = mt->probe;
  mt->sshfs = NULL;
  mt->probe = NULL;
  mt->needs_teardown = false;
  pthread_mutex_unlock(&m->lock);
  if (s != NULL) {
    tm_sshfs_kill(s);
    tm_sshfs_stop(s);
  }
  tm_stat_probe_release(probe);
  pthread_mutex_lock(&m->lock);
}

/* Removes the plugin's own directories for MT if they are empty and nothing is mounted on
 * them: rmdir only, never recursive, so no remote file can ever be touched. */
static void remove_local_dirs(struct mount *mt)
{
  if (tm_is_mounted(mt->root, NULL, 0))
    return;
  if (rmdir(mt->root) < 0 && errno != ENOENT)
    return;
  cleanup_free char *host_dir = plg_fs_dirname(mt->root);
  if (!tm_is_mounted(host_dir, NULL, 0))
    rmdir(host_dir); /* fails harmlessly while another port of this host is in use */
}

static int connect_slave(struct mount *mt, const struct tm_addr *addr, int timeout_ms, plg_error_t *err)
{
  if (addr->family != AF_INET6)
    return -1;
  int fd = tm_net_connect(addr, timeout_ms, err);
  if (fd < 0)
    return plg_error_wrap(err, "%s:%d", mt->host, mt->port);
  return fd;
}

/* Probes the host until it answers or the deadline passes: within the linger time after a
 * disconnect, a Mount waits for a daemon that is restarting its port forward. */
static int probe_host(struct tm_mounts *m, struct mount *mt, int64_t retry_until, int per_try_ms,
                      struct tm_addr *addr, plg_error_t *err)
{
  for (;;) {
    plg_error_t try_err = NULL;
    int64_t start = plg_now_ms();
    if (tm_net_probe(mt->host, mt->port, per_try_ms, addr, &try_err) == 0)
      return 0;
    if (plg_now_ms() + 250 >= retry_until || m->stopping) {
      *err = try_err;
      return -1;
    }
    plg_error_release(&try_err);
    int64_t spent = plg_now_ms() - start;
    if (spent < 250)
      usleep((useconds_t)(250 - spent) * 1000);
  }
}

/* The slow part of a mount, without the lock: probe, then sshfs until the kernel shows the
 * mount. Leaves nothing behind on failure. */
/* A slower mount is still a working one: a failure is logged, never returned. The kernel lowers
 * the readahead when it processes sshfs's answer to FUSE_INIT, which may come after the mount is
 * in the mount table; the first answered stat means that answer is in. */
static void raise_readahead(const struct mount *mt, const struct tm_config *c)
{
  plg_error_t err = NULL;
  if (c->read_ahead_kb == 0)
    return;
  if (tm_stat_deadline(mt->root, (int)c->health_timeout_ms, NULL) < 0)
    plg_warn("%s:%d: reads stay at the kernel's default readahead: no answer to stat %s (%s)", mt->host,
             mt->port, mt->root, strerror(errno));
  else if (tm_readahead_set(mt->root, c->read_ahead_kb, &err) < 0)
    plg_warn("%s:%d: reads stay at the kernel's default readahead: %s", mt->host, mt->port, err->msg);
  else
    plg_debug("%s:%d: readahead %d KiB", mt->host, mt->port, c->read_ahead_kb);
  plg_error_release(&err);
}

static int start_unlocked(struct tm_mounts *m, struct mount *mt, bool was_lost, int64_t retry_until,
                          struct tm_sshfs **out, plg_error_t *err)
{
  const struct tm_config *c = &m->cfg;
  if (plg_fs_mkdir_p(mt->root, 0755, err) < 0)
    return -1;
  if (tm_is_mounted(mt->root, NULL, 0) && tm_unmount(mt->root, err) < 0)
    return -1; /* a stale mount of an earlier instance */
  struct tm_addr addr;
  int per_try = (int)(was_lost ? c->ping_timeout_ms : c->connect_timeout_ms);
  if (probe_host(m, mt, retry_until, per_try, &addr, err) < 0) {
    remove_local_dirs(mt);
    return -1;
  }
  cleanup_close int slave = connect_slave(mt, &addr, per_try, err);
  if (slave < 0 && addr.family == AF_INET6) {
    remove_local_dirs(mt);
    return -1;
  }
  struct tm_sshfs_params p = {
      c->sshfs, &addr, mt->port, mt->ro, mt->root, c->max_conns, slave, c->cache_timeout_ms, c->auto_cache};
  if (tm_sshfs_start(&p, (int)c->mount_timeout_ms, on_lost, mt, out, err) < 0) {
    remove_local_dirs(mt);
    return plg_error_wrap(err, "mounting %s:%d", mt->host, mt->port);
  }
  raise_readahead(mt, c);
  return 0;
}

/* Brings MT to MOUNTED, or fails. Called and returns with the lock held. */
static int ensure_mounted_locked(struct tm_mounts *m, struct mount *mt, plg_error_t *err)
{
  struct timespec wait_until;
  timespec_in(&wait_until, m->cfg.mount_timeout_ms + m->cfg.linger_ms + m->cfg.connect_timeout_ms);
  for (;;) {
    if (mt->needs_teardown)
      teardown_locked(m, mt);
    if (mt->state == M_MOUNTED)
      return 0;
    if (mt->state == M_STARTING) {
      if (pthread_cond_timedwait(&m->changed, &m->lock, &wait_until) == ETIMEDOUT)
        return plg_error_make(err, 0, "%s:%d is still being mounted by another request", mt->host, mt->port);
      continue;
    }
    bool was_lost = mt->state == M_LOST;
    int64_t now = plg_now_ms();
    int64_t retry_until =
        was_lost && now - mt->lost_at < m->cfg.linger_ms ? mt->lost_at + m->cfg.linger_ms : now;
    mt->state = M_STARTING;
    mt->lost_while_starting = false;
    pthread_mutex_unlock(&m->lock);
    struct tm_sshfs *s = NULL;
    int rc = start_unlocked(m, mt, was_lost, retry_until, &s, err);
    pthread_mutex_lock(&m->lock);
    if (rc == 0 && mt->lost_while_starting) {
      cleanup_free char *tail = tm_sshfs_stderr_tail(s);
      plg_error_make(err, 0, "%s:%d: sshfs stopped right after mounting%s%s", mt->host, mt->port,
                     *tail ? ": " : "", tail);
      mt->sshfs = s;
      mt->state = M_ERROR;
      set_error(mt, (*err)->msg);
      teardown_locked(m, mt);
      rc = -1;
    } else if (rc == 0) {
      mt->sshfs = s;
      mt->state = M_MOUNTED;
      mt->next_health = plg_now_ms() + m->cfg.health_interval_ms;
      set_error(mt, NULL);
      plg_info("mounted %s:%d%s at %s (sshfs pid %d)", mt->host, mt->port, mt->ro ? " read-only" : "",
               mt->root, (int)tm_sshfs_pid(s));
    } else {
      mt->state = was_lost ? M_LOST : M_ERROR;
      set_error(mt, (*err)->msg);
    }
    pthread_cond_broadcast(&m->changed);
    return rc;
  }
}

char *tm_mounts_volume_path(struct tm_mounts *m, const struct tm_opts *o)
{
  cleanup_free char *root = tm_mount_root(m->cfg.mount_root, o->host, o->port);
  return tm_volume_path(root, o);
}

/* The remote directory must exist; the check goes through the mount, so it has a deadline and a
 * timeout there means the server froze. */
static int check_remote_dir(struct tm_mounts *m, struct mount *mt, const struct tm_opts *o, const char *path,
                            plg_error_t *err)
{
  struct stat st;
  if (tm_stat_deadline(path, (int)m->cfg.health_timeout_ms, &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return 0;
    cleanup_free char *remote = tm_remote_dir(o);
    return plg_error_make(err, 0, "%s on %s:%d is not a directory", remote, o->host, o->port);
  }
  int e = errno;
  cleanup_free char *remote = tm_remote_dir(o);
  if (e == ETIMEDOUT) {
    pthread_mutex_lock(&m->lock);
    if (mt->state == M_MOUNTED)
      mark_lost(mt, "the SFTP server stopped answering");
    pthread_cond_broadcast(&m->changed);
    pthread_mutex_unlock(&m->lock);
    return plg_error_make(err, 0, "%s:%d did not answer within %lld ms while looking up %s", o->host, o->port,
                          (long long)m->cfg.health_timeout_ms, remote);
  }
  if (e == ENOENT)
    return plg_error_make(err, 0, "%s does not exist on %s:%d", remote, o->host, o->port);
  return plg_error_make(err, e, "cannot look up %s on %s:%d", remote, o->host, o->port);
}

int tm_mounts_ensure(struct tm_mounts *m, const struct tm_opts *o, char **mountpoint, plg_error_t *err)
{
  pthread_mutex_lock(&m->lock);
  struct mount *mt = get_mount(m, o);
  int rc = ensure_mounted_locked(m, mt, err);
  pthread_mutex_unlock(&m->lock);
  if (rc < 0)
    return -1;
  char *path = tm_mounts_volume_path(m, o);
  if (check_remote_dir(m, mt, o, path, err) < 0) {
    free(path);
    return -1;
  }
  *mountpoint = path;
  return 0;
}

bool tm_mounts_conflict(struct tm_mounts *m, const struct tm_opts *o)
{
  pthread_mutex_lock(&m->lock);
  struct mount *other = find_mount(m, o->host, o->port, !o->ro);
  bool busy = other != NULL && other->state != M_IDLE && other->state != M_ERROR;
  pthread_mutex_unlock(&m->lock);
  return busy;
}

void tm_mounts_release(struct tm_mounts *m, const struct tm_opts *o)
{
  pthread_mutex_lock(&m->lock);
  struct mount *mt = find_mount(m, o->host, o->port, o->ro);
  if (mt != NULL && mt->state != M_STARTING) {
    bool had = mt->sshfs != NULL;
    teardown_locked(m, mt);
    mt->state = M_IDLE;
    set_error(mt, NULL);
    remove_local_dirs(mt);
    if (had)
      plg_info("stopped sshfs of %s:%d: no volume uses it any more", mt->host, mt->port);
    pthread_cond_broadcast(&m->changed);
  }
  pthread_mutex_unlock(&m->lock);
}

bool tm_mounts_is_up(struct tm_mounts *m, const struct tm_opts *o)
{
  pthread_mutex_lock(&m->lock);
  struct mount *mt = find_mount(m, o->host, o->port, o->ro);
  bool up = mt != NULL && mt->state == M_MOUNTED;
  pthread_mutex_unlock(&m->lock);
  return up;
}

void tm_mounts_status(struct tm_mounts *m, const struct tm_opts *o, json_t *status)
{
  pthread_mutex_lock(&m->lock);
  struct mount *mt = find_mount(m, o->host, o->port, o->ro);
  json_object_set_new(status, "state", json_string(state_names[mt != NULL ? mt->state : M_IDLE]));
  if (mt != NULL && mt->last_error != NULL)
    json_object_set_new(status, "error", json_string(mt->last_error));
  pthread_mutex_unlock(&m->lock);
}

/* A check through the mount: a name that cannot be cached (a new one each time) forces sshfs to
 * ask the server. No answer within HEALTH_CHECK_TIMEOUT means the server froze. */
static void check_health_locked(struct tm_mounts *m, struct mount *mt, int64_t now)
{
  if (mt->probe != NULL) {
    int e;
    if (tm_stat_probe_wait(mt->probe, 0, &e, NULL)) {
      tm_stat_probe_release(mt->probe);
      mt->probe = NULL;
      mt->next_health = now + m->cfg.health_interval_ms;
    } else if (now - tm_stat_probe_started(mt->probe) > m->cfg.health_timeout_ms) {
      cleanup_free char *why = xasprintf("the SFTP server stopped answering (no reply through the mount "
                                         "within %lld ms)",
                                         (long long)m->cfg.health_timeout_ms);
      mark_lost(mt, why);
    }
    return;
  }
  if (now < mt->next_health)
    return;
  cleanup_free char *path = xasprintf("%s/.telemount-health-%u", mt->root, ++mt->health_seq);
  mt->probe = tm_stat_probe_start(path);
}

static void cleanup_stale_mounts(const char *root)
{
  char **stale = tm_mounts_below(root, "fuse.sshfs");
  for (char **p = stale; *p != NULL; p++) {
    plg_error_t err = NULL;
    if (tm_unmount(*p, &err) == 0)
      plg_info("removed the stale mount %s left by an earlier run", *p);
    else
      plg_warn("%s", err->msg);
    plg_error_release(&err);
  }
  tm_strv_free(stale);
}

static void *watchdog(void *arg)
{
  struct tm_mounts *m = arg;
  cleanup_stale_mounts(m->cfg.mount_root);
  pthread_mutex_lock(&m->lock);
  while (!m->stopping) {
    int64_t now = plg_now_ms();
    bool again = false;
    for (struct mount *mt = m->list; mt != NULL && !again; mt = mt->next) {
      if (mt->needs_teardown) {
        teardown_locked(m, mt); /* drops the lock: the list walk starts over */
        pthread_cond_broadcast(&m->changed);
        again = true;
      } else if (mt->state == M_MOUNTED && m->cfg.health_interval_ms > 0) {
        check_health_locked(m, mt, now);
      }
    }
    if (again)
      continue;
    struct timespec ts;
    timespec_in(&ts, WATCHDOG_TICK_MS);
    pthread_cond_timedwait(&m->changed, &m->lock, &ts);
  }
  pthread_mutex_unlock(&m->lock);
  return NULL;
}

struct tm_mounts *tm_mounts_new(const struct tm_config *cfg)
{
  struct tm_mounts *m = xcalloc(1, sizeof *m);
  m->cfg = *cfg;
  pthread_mutex_init(&m->lock, NULL);
  plg_cond_init_monotonic(&m->changed);
  if (pthread_create(&m->watchdog, NULL, watchdog, m) != 0) {
    plg_error("cannot start the mount watchdog");
    abort();
  }
  return m;
}

void tm_mounts_free(struct tm_mounts *m)
{
  if (m == NULL)
    return;
  pthread_mutex_lock(&m->lock);
  m->stopping = true;
  pthread_cond_broadcast(&m->changed);
  pthread_mutex_unlock(&m->lock);
  pthread_join(m->watchdog, NULL);
  pthread_mutex_lock(&m->lock);
  for (struct mount *mt = m->list; mt != NULL; mt = mt->next) {
    if (mt->sshfs != NULL || mt->probe != NULL)
      teardown_locked(m, mt);
    remove_local_dirs(mt);
  }
  pthread_mutex_unlock(&m->lock);
  while (m->list != NULL) {
    struct mount *mt = m->list;
    m->list = mt->next;
    free(mt->host);
    free(mt->root);
    free(mt->last_error);
    free(mt);
  }
  pthread_cond_destroy(&m->changed);
  pthread_mutex_destroy(&m->lock);
  free(m);
}
