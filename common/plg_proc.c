/* The registry of children and the one thread that reaps them. Locking protocol: the registry
 * lock is held across posix_spawn and registration, and by the reaper while it reaps a pid and
 * looks it up, so a child that exits at once is still found; plg_proc_kill signals under the
 * same lock, and the reaper only reaps under it, so a signalled pid is never a recycled one. */
#include "plg_proc.h"

#include "plg_log.h"
#include "plg_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_OUTPUT_MAX (64 * 1024)
#define RUN_TERM_GRACE_MS 500
/* Once the exit was seen, or after SIGKILL, only the reaper's bookkeeping is left to wait for. */
#define RUN_REAP_MS 5000
/* How often an idle reaper collects orphans (we run as PID 1) while no child of ours runs. */
#define IDLE_SWEEP_MS 1000

extern char **environ;

enum child_state {
  CHILD_RUNNING,
  CHILD_EXITED, /* reaped; its on_exit callback is running */
  CHILD_DONE,
};

struct child {
  struct child *next;
  pid_t pid;
  char *name; /* argv[0], for messages */
  enum child_state state;
  int status;
  int waiters;
  bool collected; /* a plg_proc_wait has returned the status */
  bool forgotten;
  void (*on_exit)(void *arg, pid_t pid, int wait_status);
  void *on_exit_arg;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t child_added; /* wakes an idle reaper */
static pthread_cond_t child_done;  /* some child reached CHILD_DONE */
static struct child *children;     /* newest first: a recycled pid finds its newest entry */
static int running;
static pthread_once_t reaper_once = PTHREAD_ONCE_INIT;
static int reaper_errno;

static void deadline_after(struct timespec *ts, int ms)
{
  plg_timespec_in(ts, CLOCK_MONOTONIC, ms);
}

static struct child *child_find(pid_t pid)
{
  for (struct child *c = children; c != NULL; c = c->next)
    if (c->pid == pid)
      return c;
  return NULL;
}

static void child_free_if_unused(struct child *c)
{
  if (c->state != CHILD_DONE || c->waiters > 0 || !(c->collected || c->forgotten))
    return;
  for (struct child **p = &children; *p != NULL; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  free(c->name);
  free(c);
}

/* Called with the lock held; drops it while the callback runs, so that the callback may spawn or
 * forget. The entry cannot go away meanwhile: nothing frees it before CHILD_DONE. */
static void child_finish(struct child *c, int status)
{
  c->state = CHILD_EXITED;
  c->status = status;
  running--;
  plg_debug("%s (pid %d) reaped, wait status 0x%x", c->name, (int)c->pid, (unsigned)status);
  if (c->on_exit != NULL) {
    pthread_mutex_unlock(&lock);
    c->on_exit(c->on_exit_arg, c->pid, status);
    pthread_mutex_lock(&lock);
  }
  c->state = CHILD_DONE;
  pthread_cond_broadcast(&child_done);
  child_free_if_unused(c);
}

static void child_lost(struct child *c)
{
  plg_warn("%s (pid %d) was reaped outside plg_proc; its exit status is lost", c->name, (int)c->pid);
  child_finish(c, PLG_PROC_STATUS_LOST);
}

/* PID was seen as a zombie with WNOWAIT; reaps it for real, with the lock held. */
static void reap_pid(pid_t pid)
{
  int status;
  pid_t r = waitpid(pid, &status, WNOHANG);
  if (r == 0)
    return; /* no longer a zombie: someone else reaped it and the number was reused */
  struct child *c = child_find(pid);
  if (c == NULL || c->state != CHILD_RUNNING)
    return; /* an orphan reparented to us as PID 1, or a failed spawn glibc reaped itself */
  if (r < 0)
    child_lost(c);
  else
    child_finish(c, status);
}

/* waitid said ECHILD although children are registered. Asking again under the lock tells a
 * spawn that slipped in after the failed call from children that somebody else reaped. */
static void reap_lost_children(void)
{
  siginfo_t info;
  memset(&info, 0, sizeof info);
  if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0)
    return;
  for (;;) {
    struct child *c = children;
    while (c != NULL && c->state != CHILD_RUNNING)
      c = c->next;
    if (c == NULL)
      return;
    child_lost(c); /* drops the lock for the callback: start again from the head */
  }
}

static void sweep_zombies(void)
{
  for (;;) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 || info.si_pid == 0)
      return;
    reap_pid(info.si_pid);
  }
}

static void *reaper_main(void *arg)
{
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&lock);
    while (running == 0) {
      struct timespec deadline;
      deadline_after(&deadline, IDLE_SWEEP_MS);
      if (pthread_cond_timedwait(&child_added, &lock, &deadline) == ETIMEDOUT)
        sweep_zombies();
    }
    pthread_mutex_unlock(&lock);

    /* WNOWAIT leaves the zombie in place until we hold the lock, so its pid cannot be recycled
     * while plg_proc_kill still believes the child runs. */
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc = waitid(P_ALL, 0, &info, WEXITED | WNOWAIT);
    int saved = errno;
    pthread_mutex_lock(&lock);
    if (rc == 0 && info.si_pid != 0)
      reap_pid(info.si_pid);
    else if (rc < 0 && saved == ECHILD)
      reap_lost_children();
    pthread_mutex_unlock(&lock);
  }
  return NULL;
}

static void cond_init_monotonic(pthread_cond_t *cond)
{
  plg_cond_init_monotonic(cond);
}

static void reaper_start(void)
{
  cond_init_monotonic(&child_added);
  cond_init_monotonic(&child_done);
  /* With every signal blocked no handler runs on the reaper and waitid never sees EINTR; the
   * plugin takes its signals synchronously in the main thread anyway. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  reaper_errno = pthread_create(&thread, &attr, reaper_main, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* A caller's descriptor 0-2 meant for another slot would be overwritten by an earlier dup2 in
 * the child; a copy above 2 is safe. LIFTED gets the copies the caller must close. */
static int child_fds(const struct plg_proc_opts *opts, int fds[3], int lifted[3])
{
  const int given[3] = {opts->stdin_fd, opts->stdout_fd, opts->stderr_fd};
  for (int i = 0; i < 3; i++) {
    fds[i] = given[i];
    if (given[i] < 0 || given[i] > 2 || given[i] == i)
      continue;
    fds[i] = lifted[i] = fcntl(given[i], F_DUPFD_CLOEXEC, 3);
    if (fds[i] < 0)
      return -1;
  }
  return 0;
}

static int build_file_actions(posix_spawn_file_actions_t *fa, const int fds[3])
{
  static const int null_flags[3] = {O_RDONLY, O_WRONLY, O_WRONLY};
  int rc = 0;
  for (int i = 0; i < 3 && rc == 0; i++)
    rc = fds[i] >= 0 ? posix_spawn_file_actions_adddup2(fa, fds[i], i)
                     : posix_spawn_file_actions_addopen(fa, i, "/dev/null", null_flags[i], 0);
  /* Only 0-2 reach the program: a descriptor someone forgot to mark O_CLOEXEC would otherwise
   * keep a pipe, socket or FUSE device open for as long as sshfs runs. */
  if (rc == 0)
    rc = posix_spawn_file_actions_addclosefrom_np(fa, 3);
  return rc;
}

static int build_attrs(posix_spawnattr_t *attr)
{
  /* The plugin ignores SIGPIPE and blocks the others in all threads; both would survive exec and
   * leave a child that SIGTERM cannot stop or that spins on a closed pipe. */
  static const int defaulted[] = {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD};
  sigset_t empty, dfl;
  sigemptyset(&empty);
  sigemptyset(&dfl);
  for (size_t i = 0; i < sizeof defaulted / sizeof defaulted[0]; i++)
    sigaddset(&dfl, defaulted[i]);
  int rc = posix_spawnattr_setsigmask(attr, &empty);
  if (rc == 0)
    rc = posix_spawnattr_setsigdefault(attr, &dfl);
  /* A session of its own makes it a process group leader: plg_proc_kill reaches all it started. */
  if (rc == 0)
    rc = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  return rc;
}

static void child_register(pid_t pid, const char *name, const struct plg_proc_opts *opts)
{
  struct child *c = xcalloc(1, sizeof *c);
  c->pid = pid;
  c->name = xstrdup(name);
  c->state = CHILD_RUNNING;
  c->on_exit = opts->on_exit;
  c->on_exit_arg = opts->on_exit_arg;
  c->next = children;
  children = c;
  running++;
  pthread_cond_signal(&child_added);
}

pid_t plg_proc_spawn(const char *const argv[], const struct plg_proc_opts *opts, plg_error_t *err)
{
  const struct plg_proc_opts defaults = PLG_PROC_OPTS_DEFAULT;
  if (argv == NULL || argv[0] == NULL)
    return plg_error_make(err, EINVAL, "cannot start a program without a name");
  if (opts == NULL)
    opts = &defaults;
  pthread_once(&reaper_once, reaper_start);
  if (reaper_errno != 0)
    return plg_error_make(err, reaper_errno, "cannot start \"%s\": no reaper thread", argv[0]);

  int fds[3], lifted[3] = {-1, -1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  int rc = child_fds(opts, fds, lifted) < 0 ? errno : build_file_actions(&fa, fds);
  if (rc == 0)
    rc = build_attrs(&attr);
  pid_t pid = -1;
  if (rc == 0) {
    pthread_mutex_lock(&lock);
    rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv,
                      opts->envp != NULL ? opts->envp : environ);
    if (rc == 0)
      child_register(pid, argv[0], opts);
    pthread_mutex_unlock(&lock);
  }
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  for (int i = 0; i < 3; i++)
    if (lifted[i] >= 0)
      close(lifted[i]);
  if (rc != 0)
    return plg_error_make(err, rc, "cannot start \"%s\"", argv[0]);
  plg_debug("started %s (pid %d)", argv[0], (int)pid);
  return pid;
}

int plg_proc_wait(pid_t pid, int timeout_ms, int *wait_status, plg_error_t *err)
{
  struct timespec deadline;
  deadline_after(&deadline, timeout_ms > 0 ? timeout_ms : 0);
  pthread_mutex_lock(&lock);
  struct child *c = child_find(pid);
  if (c == NULL) {
    pthread_mutex_unlock(&lock);
    return plg_error_make(err, 0, "pid %d is not a child started here, or was already waited for", (int)pid);
  }
  /* Any child found here was spawned, so child_done was initialized before the lock was taken. */
  c->waiters++;
  while (c->state != CHILD_DONE)
    if (pthread_cond_timedwait(&child_done, &lock, &deadline) == ETIMEDOUT)
      break;
  c->waiters--;
  int rc = 0;
  if (c->state != CHILD_DONE) {
    rc = plg_error_make(err, 0, "%s (pid %d) did not exit within %d ms", c->name, (int)pid, timeout_ms);
  } else {
    c->collected = true;
    if (c->status == PLG_PROC_STATUS_LOST)
      rc = plg_error_make(err, 0, "%s (pid %d) was reaped outside plg_proc; its exit status is lost", c->name,
                          (int)pid);
    else if (wait_status != NULL)
      *wait_status = c->status;
  }
  child_free_if_unused(c);
  pthread_mutex_unlock(&lock);
  return rc;
}

void plg_proc_kill(pid_t pid, int sig)
{
  pthread_mutex_lock(&lock);
  struct child *c = child_find(pid);
  /* Until the reaper has reaped it (under this lock) the child, maybe a zombie, holds its pid. */
  if (c != NULL && c->state == CHILD_RUNNING && kill(-pid, sig) < 0 && errno != ESRCH)
    plg_warn("cannot signal %s (pid %d): %s", c->name, (int)pid, strerror(errno));
  pthread_mutex_unlock(&lock);
}

void plg_proc_forget(pid_t pid)
{
  pthread_mutex_lock(&lock);
  struct child *c = child_find(pid);
  if (c != NULL) {
    c->forgotten = true;
    child_free_if_unused(c);
  }
  pthread_mutex_unlock(&lock);
}

int plg_proc_registered(void)
{
  int n = 0;
  pthread_mutex_lock(&lock);
  for (struct child *c = children; c != NULL; c = c->next)
    n++;
  pthread_mutex_unlock(&lock);
  return n;
}

/* plg_proc_run learns of the exit through an eventfd written by the on_exit callback. The
 * callback may still be pending when run gives up on an unkillable child, so the notice is
 * shared and freed by whichever of the two lets go last. */
struct exit_notice {
  int fd;
  atomic_int refs;
};

static void exit_notice_release(struct exit_notice *n)
{
  if (atomic_fetch_sub(&n->refs, 1) == 1) {
    close(n->fd);
    free(n);
  }
}

static void exit_notice_post(void *arg, pid_t pid, int wait_status)
{
  (void)pid;
  (void)wait_status;
  struct exit_notice *n = arg;
  eventfd_write(n->fd, 1);
  exit_notice_release(n);
}

struct capture {
  char *data;
  size_t len;
  bool keep;
};

/* Reads what FD has now, but at most BUDGET bytes so that an endless writer cannot keep us from
 * the deadline; keeps the first RUN_OUTPUT_MAX bytes. Returns false at end of file. */
static bool capture_read(int fd, struct capture *cap, size_t budget)
{
  char buf[4096];
  for (size_t got = 0; got < budget;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 && errno == EAGAIN;
    size_t take = cap->keep && cap->len < RUN_OUTPUT_MAX ? RUN_OUTPUT_MAX - cap->len : 0;
    if (take > (size_t)n)
      take = (size_t)n;
    if (take > 0) {
      cap->data = xrealloc(cap->data, cap->len + take + 1);
      memcpy(cap->data + cap->len, buf, take);
      cap->len += take;
      cap->data[cap->len] = '\0';
    }
    got += (size_t)n;
  }
  return true;
}

/* Collects output until the child exits (true) or DEADLINE_MS passes (false). End of file is not
 * the end: the program may close its output and go on, or leave a background process holding it. */
static bool capture_until_exit(int out, int exit_fd, int64_t deadline_ms, struct capture *cap)
{
  int pipe_size = fcntl(out, F_GETPIPE_SZ);
  size_t budget = pipe_size > 0 ? (size_t)pipe_size : RUN_OUTPUT_MAX;
  for (;;) {
    int64_t left = deadline_ms - plg_now_ms();
    struct pollfd p[2] = {{.fd = exit_fd, .events = POLLIN}, {.fd = out, .events = POLLIN}};
    int n = poll(p, out >= 0 ? 2 : 1, left > 0 ? (int)left : 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    if (p[0].revents != 0) {
      /* All it wrote before exiting is in the pipe, at most a pipe's worth; more would come
       * from a background process it left behind, which we do not wait for. */
      if (out >= 0)
        capture_read(out, cap, budget);
      return true;
    }
    if (p[1].revents != 0 && !capture_read(out, cap, budget))
      out = -1;
  }
}

/* Its time is up: SIGTERM to the group, a grace period, SIGKILL, and reap it in any case. */
static int stop_overdue(pid_t pid, const char *name, int timeout_ms, plg_error_t *err)
{
  int status;
  plg_proc_kill(pid, SIGTERM);
  if (plg_proc_wait(pid, RUN_TERM_GRACE_MS, &status, NULL) == 0)
    return plg_error_make(err, 0, "%s did not finish within %d ms", name, timeout_ms);
  plg_proc_kill(pid, SIGKILL);
  if (plg_proc_wait(pid, RUN_REAP_MS, &status, NULL) == 0)
    return plg_error_make(err, 0, "%s did not finish within %d ms", name, timeout_ms);
  plg_proc_forget(pid);
  return plg_error_make(err, 0, "%s did not finish within %d ms and could not be reaped after SIGKILL", name,
                        timeout_ms);
}

int plg_proc_run(const char *const argv[], int timeout_ms, char **output, int *wait_status, plg_error_t *err)
{
  int64_t deadline_ms = plg_now_ms() + timeout_ms;
  if (output != NULL)
    *output = NULL; /* so that callers may free it whatever happens */
  const char *name = argv != NULL && argv[0] != NULL ? argv[0] : "(null)";
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) < 0)
    return plg_error_make(err, errno, "cannot run \"%s\": pipe", name);
  cleanup_close int out = pipe_fds[0];
  fcntl(out, F_SETFL, O_NONBLOCK);
  int exit_fd = eventfd(0, EFD_CLOEXEC);
  if (exit_fd < 0) {
    close(pipe_fds[1]);
    return plg_error_make(err, errno, "cannot run \"%s\": eventfd", name);
  }
  struct exit_notice *notice = xmalloc(sizeof *notice);
  notice->fd = exit_fd;
  atomic_init(&notice->refs, 2);

  struct plg_proc_opts opts = PLG_PROC_OPTS_DEFAULT;
  opts.stdout_fd = opts.stderr_fd = pipe_fds[1];
  opts.on_exit = exit_notice_post;
  opts.on_exit_arg = notice;
  pid_t pid = plg_proc_spawn(argv, &opts, err);
  close(pipe_fds[1]); /* the child's copy alone keeps the pipe open */
  if (pid < 0) {
    exit_notice_release(notice);
    exit_notice_release(notice);
    return -1;
  }

  struct capture cap = {NULL, 0, output != NULL};
  bool exited = capture_until_exit(out, exit_fd, deadline_ms, &cap);
  exit_notice_release(notice);
  int rc;
  if (exited) {
    rc = plg_proc_wait(pid, RUN_REAP_MS, wait_status, err);
  } else {
    close(out); /* a child still writing gets EPIPE instead of blocking through the grace period */
    out = -1;
    rc = stop_overdue(pid, name, timeout_ms, err);
  }
  if (rc < 0 || output == NULL) {
    free(cap.data);
    return rc;
  }
  *output = cap.data != NULL ? cap.data : xstrdup("");
  return 0;
}

char *plg_proc_describe_status(int wait_status)
{
  if (wait_status == PLG_PROC_STATUS_LOST)
    return xstrdup("exited with an unknown status (reaped elsewhere)");
  if (WIFEXITED(wait_status))
    return xasprintf("exited with status %d", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    const char *what = sigdescr_np(sig);
    return xasprintf("killed by signal %d (%s)%s", sig, what != NULL ? what : "unknown",
                     WCOREDUMP(wait_status) ? ", core dumped" : "");
  }
  return xasprintf("changed state (wait status 0x%x)", (unsigned)wait_status);
}
