#include "tm_sshfs.h"

#include "plg_log.h"
#include "plg_proc.h"
#include "plg_util.h"
#include "tm_cut.h"
#include "tm_mountinfo.h"
#include "tm_options.h"
#include "tm_relay.h"
#include "tm_stat.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TAIL_LINES 6
#define STOP_GRACE_MS 2000
#define UNMOUNT_TIMEOUT_MS 5000
#define UNMOUNT_ROUNDS 3
#define UNMOUNT_RETRY_MS 20
/* a dead mount answers at once; the bound is for a live one the kernel did not list */
#define DEAD_CHECK_MS 1000

struct tm_sshfs {
  pid_t pid;
  char *mountpoint;
  int stderr_fd;
  int exit_event; /* eventfd: readable once sshfs has exited */
  pthread_t reader;
  bool reader_started;
  pthread_mutex_t lock; /* a leaf below tm_export_env.lock: guards tail, exited, the event callback */
  pthread_cond_t exited_cond;
  char *tail[TAIL_LINES];
  size_t n_lines;
  bool exited;
  int wait_status;
  bool exit_reported;
  tm_sshfs_event_fn on_event;
  void *on_event_arg;
  struct tm_relay *relay; /* IPv6 servers */
};

static void push_arg(char ***argv, size_t *n, char *arg)
{
  *argv = xrealloc(*argv, (*n + 2) * sizeof **argv);
  (*argv)[(*n)++] = arg;
  (*argv)[*n] = NULL;
}

/* sshfs keeps attributes, directory listings and symlink targets for dcache_timeout whole
 * seconds, checked against time(), so for up to one second more; the kernel then keeps what it got
 * for entry_timeout/attr_timeout. A change on the server can so go unseen for the sum; the split
 * keeps the sum within TIMEOUT_MS and gives the kernel at most 1 s (sshfs's cache is the one that
 * saves round trips). Nothing else caches: unless AUTO_CACHE adds auto_cache every open drops the
 * file's pages, negative_timeout stays 0 (a new file is seen at once), and the kernel does not keep
 * listings. 0 turns sshfs's cache off. */
static void push_cache_opts(char ***argv, size_t *n, int64_t timeout_ms)
{
  int64_t sshfs_s = -1, kernel_ms = timeout_ms;
  if (timeout_ms >= 1000) {
    sshfs_s = timeout_ms / 1000 >= 2 ? timeout_ms / 1000 - 2 : 0;
    kernel_ms = timeout_ms - 1000 * (sshfs_s + 1);
  }
  push_arg(argv, n, xstrdup("-o"));
  push_arg(argv, n,
           sshfs_s < 0 ? xstrdup("dir_cache=no") : xasprintf("dcache_timeout=%lld", (long long)sshfs_s));
  const char *kernel[] = {"entry_timeout", "attr_timeout"};
  for (size_t i = 0; i < 2; i++) {
    push_arg(argv, n, xstrdup("-o"));
    push_arg(
        argv, n,
        xasprintf("%s=%lld.%03lld", kernel[i], (long long)(kernel_ms / 1000), (long long)(kernel_ms % 1000)));
  }
}

char **tm_sshfs_argv(const struct tm_sshfs_params *p)
{
  char **argv = NULL;
  size_t n = 0;
  push_arg(&argv, &n, xstrdup(p->sshfs));
  push_arg(&argv, &n, xstrdup("-f"));
  /* allow_other rather than the reference's allow_root: containers often run as other users.
   * max_read=65536 matches sshfs's request size: bench/ measured twice the sequential read rate.
   * reconnect: a dropped connection is redialled on the next access instead of ending sshfs and
   * with it the mount that running containers hold. */
  const char *common[] = {"follow_symlinks", "auto_unmount", "allow_other", "max_read=65536", "reconnect"};
  for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) {
    push_arg(&argv, &n, xstrdup("-o"));
    push_arg(&argv, &n, xstrdup(common[i]));
  }
  push_cache_opts(&argv, &n, p->cache_timeout_ms);
  if (p->auto_cache) {
    push_arg(&argv, &n, xstrdup("-o"));
    push_arg(&argv, &n, xstrdup("auto_cache"));
  }
  if (p->ro) {
    push_arg(&argv, &n, xstrdup("-o"));
    push_arg(&argv, &n, xstrdup("ro"));
  }
  if (p->default_permissions) {
    push_arg(&argv, &n, xstrdup("-o"));
    push_arg(&argv, &n, xstrdup("default_permissions"));
  }
  push_arg(&argv, &n, xstrdup("-o"));
  push_arg(&argv, &n, xasprintf("directport=%d", p->relay_port > 0 ? p->relay_port : p->port));
  if (p->max_conns > 1) {
    push_arg(&argv, &n, xstrdup("-o"));
    push_arg(&argv, &n, xasprintf("max_conns=%d", p->max_conns));
  }
  push_arg(&argv, &n, xasprintf("%s:" TM_EXPORT_ROOT, p->relay_port > 0 ? "127.0.0.1" : p->addr->text));
  push_arg(&argv, &n, xstrdup(p->mountpoint));
  return argv;
}

static void report(struct tm_sshfs *s, enum tm_sshfs_event ev, const char *why)
{
  pthread_mutex_lock(&s->lock);
  bool tell = s->on_event != NULL && !s->exit_reported;
  if (ev == TM_SSHFS_EXITED)
    s->exit_reported = true;
  tm_sshfs_event_fn fn = s->on_event;
  void *arg = s->on_event_arg;
  pthread_mutex_unlock(&s->lock);
  if (tell)
    fn(arg, ev, why);
}

static void remember_line(struct tm_sshfs *s, const char *line)
{
  pthread_mutex_lock(&s->lock);
  if (s->n_lines == TAIL_LINES) {
    free(s->tail[0]);
    memmove(&s->tail[0], &s->tail[1], (TAIL_LINES - 1) * sizeof s->tail[0]);
    s->n_lines--;
  }
  s->tail[s->n_lines++] = xstrdup(line);
  pthread_mutex_unlock(&s->lock);
}

/* sshfs says when its connection ended ("remote host has disconnected") and when a redial fails
 * ("failed to connect: ..."): the plugin learns of an outage before its next check. */
static void *read_stderr(void *arg)
{
  struct tm_sshfs *s = arg;
  FILE *fp = fdopen(s->stderr_fd, "r");
  if (fp == NULL)
    return NULL;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, fp)) > 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = '\0';
    if (len == 0)
      continue;
    plg_info("sshfs %s: %s", s->mountpoint, line);
    remember_line(s, line);
    if (strstr(line, "remote host has disconnected") != NULL || strstr(line, "failed to connect") != NULL ||
        strstr(line, "Connection reset") != NULL)
      report(s, TM_SSHFS_DISCONNECTED, line);
  }
  free(line);
  fclose(fp); /* closes stderr_fd */
  return NULL;
}

/* Runs on plg_proc's reaper thread. Setting EXITED is its last touch of S: whoever frees S waits
 * for that flag, so nothing here may come after the unlock. */
static void on_exit_cb(void *arg, pid_t pid, int wait_status)
{
  (void)pid;
  struct tm_sshfs *s = arg;
  cleanup_free char *how = plg_proc_describe_status(wait_status);
  cleanup_free char *why = xasprintf("sshfs %s", how);
  report(s, TM_SSHFS_EXITED, why);
  uint64_t one = 1;
  ssize_t n = write(s->exit_event, &one, sizeof one);
  (void)n;
  pthread_mutex_lock(&s->lock);
  s->wait_status = wait_status;
  s->exited = true;
  pthread_cond_broadcast(&s->exited_cond);
  pthread_mutex_unlock(&s->lock);
}

char *tm_sshfs_stderr_tail(struct tm_sshfs *s)
{
  pthread_mutex_lock(&s->lock);
  size_t total = 1;
  for (size_t i = 0; i < s->n_lines; i++)
    total += strlen(s->tail[i]) + 2;
  char *out = xcalloc(1, total);
  for (size_t i = 0; i < s->n_lines; i++) {
    if (i > 0)
      strcat(out, "; ");
    strcat(out, s->tail[i]);
  }
  pthread_mutex_unlock(&s->lock);
  return out;
}

pid_t tm_sshfs_pid(const struct tm_sshfs *s)
{
  return s->pid;
}

static void sshfs_free(struct tm_sshfs *s)
{
  tm_relay_stop(s->relay);
  for (size_t i = 0; i < s->n_lines; i++)
    free(s->tail[i]);
  if (s->exit_event >= 0)
    close(s->exit_event);
  pthread_cond_destroy(&s->exited_cond);
  pthread_mutex_destroy(&s->lock);
  free(s->mountpoint);
  free(s);
}

static bool has_exited(struct tm_sshfs *s)
{
  pthread_mutex_lock(&s->lock);
  bool e = s->exited;
  pthread_mutex_unlock(&s->lock);
  return e;
}

/* The kernel tells when its mount table changes (POLLPRI on mountinfo), so readiness is seen
 * the moment sshfs mounts, which it does only after its SFTP session is up. */
static int wait_mounted(struct tm_sshfs *s, int timeout_ms, int cancel_fd, plg_error_t *err)
{
  int64_t deadline = plg_now_ms() + timeout_ms;
  cleanup_close int mi = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  for (;;) {
    char fstype[64] = "";
    if (tm_is_mounted(s->mountpoint, fstype, sizeof fstype) && strncmp(fstype, "fuse", 4) == 0)
      return 0;
    if (has_exited(s)) {
      cleanup_free char *how = plg_proc_describe_status(s->wait_status);
      cleanup_free char *tail = tm_sshfs_stderr_tail(s);
      return plg_error_make(err, 0, "sshfs %s before mounting%s%s", how, *tail ? ": " : "", tail);
    }
    int64_t left = deadline - plg_now_ms();
    if (left <= 0) {
      cleanup_free char *tail = tm_sshfs_stderr_tail(s);
      return plg_error_make(err, 0, "sshfs did not mount within %d ms%s%s", timeout_ms, *tail ? ": " : "",
                            tail);
    }
    struct pollfd fds[3] = {{.fd = mi, .events = POLLPRI},
                            {.fd = s->exit_event, .events = POLLIN},
                            {.fd = cancel_fd, .events = POLLIN}};
    /* the 50 ms cap covers a kernel without mountinfo events; normally poll wakes at once */
    poll(fds, 3, left < 50 ? (int)left : 50);
    if (fds[2].revents & POLLIN)
      return plg_error_make(err, 0, "the plugin is stopping");
  }
}

static int spawn(struct tm_sshfs *s, const struct tm_sshfs_params *p, plg_error_t *err)
{
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0)
    return plg_error_make(err, errno, "cannot create a pipe for sshfs");
  struct tm_sshfs_params params = *p;
  params.relay_port = s->relay != NULL ? tm_relay_port(s->relay) : 0;
  char **argv = tm_sshfs_argv(&params);
  struct plg_proc_opts opts = PLG_PROC_OPTS_DEFAULT;
  opts.stderr_fd = pipefd[1];
  opts.on_exit = on_exit_cb;
  opts.on_exit_arg = s;
  if (plg_log_debug_enabled()) {
    cleanup_free char *joined = xstrdup("");
    for (char **a = argv; *a != NULL; a++) {
      char *next = xasprintf("%s%s%s", joined, *joined ? " " : "", *a);
      free(joined);
      joined = next;
    }
    plg_debug("starting %s", joined);
  }
  s->pid = plg_proc_spawn((const char *const *)argv, &opts, err);
  plg_strv_free(argv);
  close(pipefd[1]);
  if (s->pid < 0) {
    close(pipefd[0]);
    return -1;
  }
  plg_proc_forget(s->pid); /* its end is learnt through on_exit_cb, never by waiting */
  s->stderr_fd = pipefd[0];
  if (pthread_create(&s->reader, NULL, read_stderr, s) == 0)
    s->reader_started = true;
  else
    close(s->stderr_fd);
  return 0;
}

int tm_sshfs_start(const struct tm_sshfs_params *p, int timeout_ms, tm_sshfs_event_fn on_event, void *arg,
                   struct tm_sshfs **out, plg_error_t *err)
{
  struct tm_sshfs *s = xcalloc(1, sizeof *s);
  s->mountpoint = xstrdup(p->mountpoint);
  s->stderr_fd = -1;
  s->pid = -1;
  pthread_mutex_init(&s->lock, NULL);
  plg_cond_init_monotonic(&s->exited_cond);
  s->exit_event = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->exit_event < 0) {
    int saved = errno;
    sshfs_free(s);
    return plg_error_make(err, saved, "cannot create an eventfd");
  }
  if (p->addr->family == AF_INET6 && tm_relay_start(p->addr, p->connect_timeout_ms, &s->relay, err) < 0) {
    sshfs_free(s);
    return -1;
  }
  if (spawn(s, p, err) < 0) {
    sshfs_free(s);
    return -1;
  }
  if (wait_mounted(s, timeout_ms, p->cancel_fd, err) < 0) {
    tm_sshfs_stop(s); /* the caller handles this failure; no separate report */
    return -1;
  }
  /* Only now are events reported: before, the caller learns of a failure from the error. */
  pthread_mutex_lock(&s->lock);
  s->on_event = on_event;
  s->on_event_arg = arg;
  bool already = s->exit_reported || s->exited;
  s->exit_reported = already;
  pthread_mutex_unlock(&s->lock);
  if (already && on_event != NULL)
    on_event(arg, TM_SSHFS_EXITED, "sshfs stopped right after mounting");
  *out = s;
  return 0;
}

static bool wait_exit(struct tm_sshfs *s, int timeout_ms)
{
  struct timespec deadline;
  plg_timespec_in(&deadline, CLOCK_MONOTONIC, timeout_ms);
  pthread_mutex_lock(&s->lock);
  while (!s->exited)
    if (pthread_cond_timedwait(&s->exited_cond, &s->lock, &deadline) == ETIMEDOUT)
      break;
  bool exited = s->exited;
  pthread_mutex_unlock(&s->lock);
  return exited;
}

int tm_sshfs_cut(struct tm_sshfs *s, plg_error_t *err)
{
  if (s->relay != NULL)
    return tm_relay_cut(s->relay);
  return tm_cut_tcp(s->pid, err);
}

void tm_sshfs_kill(struct tm_sshfs *s)
{
  if (!has_exited(s))
    plg_proc_kill(s->pid, SIGKILL);
}

void tm_sshfs_stop(struct tm_sshfs *s)
{
  if (s == NULL)
    return;
  if (s->pid > 0 && !has_exited(s)) {
    plg_proc_kill(s->pid, SIGTERM);
    if (!wait_exit(s, STOP_GRACE_MS)) {
      plg_warn("sshfs (pid %d) ignored SIGTERM; killing it", (int)s->pid);
      plg_proc_kill(s->pid, SIGKILL);
      if (!wait_exit(s, STOP_GRACE_MS)) {
        /* its exit callback may still come: S must outlive it, so it is left allocated */
        plg_error("sshfs (pid %d) survived SIGKILL; leaving it to the reaper", (int)s->pid);
        return;
      }
    }
  }
  plg_error_t err = NULL;
  if (tm_unmount(s->mountpoint, &err) < 0) {
    plg_warn("%s", err->msg);
    plg_error_release(&err);
  }
  if (s->reader_started)
    pthread_join(s->reader, NULL);
  sshfs_free(s);
}

static bool run_fusermount(const char *flags, const char *path, char **output)
{
  const char *argv[] = {"fusermount3", flags, "--", path, NULL};
  int status = 0;
  plg_error_t err = NULL;
  int rc = plg_proc_run(argv, UNMOUNT_TIMEOUT_MS, output, &status, &err);
  if (rc < 0) {
    free(*output);
    *output = xstrdup(err->msg);
    plg_error_release(&err);
    return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A FUSE mount whose sshfs died answers every lookup with ENOTCONN (ECONNABORTED while the kernel
 * aborts the connection). Measured on Linux 6.18: while fusermount3's auto-unmount checks such a
 * mount from a mount namespace of its own, the mount can vanish from this namespace's table and
 * lookups for a few milliseconds, and come back; so a dead answer counts as mounted too. */
static bool is_dead_mount(const char *path)
{
  return tm_stat_deadline(path, DEAD_CHECK_MS, NULL) < 0 && (errno == ENOTCONN || errno == ECONNABORTED);
}

static bool is_mount(const char *path)
{
  return tm_is_mounted(path, NULL, 0) || is_dead_mount(path);
}

int tm_unmount(const char *path, plg_error_t *err)
{
  cleanup_free char *out = NULL;
  for (int round = 0; round < UNMOUNT_ROUNDS; round++) {
    if (!is_mount(path))
      return 0;
    free(out);
    out = NULL;
    if (run_fusermount("-u", path, &out))
      continue;
    free(out);
    out = NULL;
    if (!run_fusermount("-uz", path, &out)) /* busy: detach now, the kernel finishes when readers leave */
      plg_sleep_ms(UNMOUNT_RETRY_MS);       /* not there for fusermount3 this instant (see is_dead_mount) */
  }
  if (is_mount(path))
    return plg_error_make(err, 0, "cannot unmount %s: %s", path, out ? out : "still mounted");
  return 0;
}

void tm_sshfs_remove_stale(const char *root)
{
  char **stale = tm_mountinfo_list_below(root, "fuse.sshfs");
  for (char **p = stale; *p != NULL; p++) {
    plg_error_t err = NULL;
    if (tm_unmount(*p, &err) == 0)
      plg_info("removed the stale mount %s left by an earlier run", *p);
    else
      plg_warn("%s", err->msg);
    plg_error_release(&err);
  }
  plg_strv_free(stale);
}
