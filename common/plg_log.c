/* Lines for stdout and stderr are formatted by the thread that logs and queued; one writer thread
 * of this module writes them out. dockerd reads a plugin's stdout and stderr through pipes, and a
 * pipe nobody drains blocks its writer: only the writer thread ever waits for it. The queue holds
 * at most LOG_QUEUE_BYTES; a line that does not fit is dropped and counted, and the writer
 * reports the count once the output moves again. The log file (LOG_FILE), a regular file that no
 * reader can stall, is written at once by the thread that logs, so it holds every line by the
 * time the call it describes has been answered.
 *
 * Locking: log_lock guards the queue, the counters and the flags, and is never held across a
 * write. file_lock guards the log file's descriptor and is held across each write to the file, so
 * the file is never closed under a write; neither lock is taken under the other. */
#include "plg_log.h"

#include "plg_fs.h"
#include "plg_util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* What may wait for a stalled output; beyond it lines are dropped. */
#define LOG_QUEUE_BYTES (256 * 1024)
/* A message longer than this is cut: a log line says what happened, it does not carry data. */
#define LOG_MESSAGE_MAX 8192
/* How long plg_log_close (and exit) wait for queued lines to be written. */
#define LOG_FLUSH_MS 500

struct line {
  struct line *next;
  int fd; /* STDOUT_FILENO or STDERR_FILENO */
  size_t len;
  char text[];
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_queued;  /* a line was queued */
static pthread_cond_t log_written; /* the writer finished a batch */
static struct line *queue_head, *queue_tail;
static size_t queue_bytes; /* queued, plus the batch being written */
static bool writer_busy;
static bool writer_started;
static bool writer_quit;   /* at exit: the writer ends once the queue is empty */
static bool writer_exited; /* ... and says so before it returns */
static pthread_t writer;
static unsigned long dropped_unreported;
static atomic_ulong dropped_total;

static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_file_fd = -1;

static char log_program[32] = "plugin";
static atomic_bool log_debug;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void plg_log_init(const char *program)
{
  snprintf(log_program, sizeof log_program, "%s", program);
}

void plg_log_set_debug(bool on)
{
  atomic_store(&log_debug, on);
}

bool plg_log_debug_enabled(void)
{
  return atomic_load(&log_debug);
}

unsigned long plg_log_dropped(void)
{
  return atomic_load(&dropped_total);
}

static size_t format_timestamp(char *buf, size_t size)
{
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts); /* a date, for people: the wall clock is right here */
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return n;
}

static struct line *make_line(int fd, const char *level, const char *msg)
{
  char stamp[40];
  format_timestamp(stamp, sizeof stamp);
  size_t n = strlen(msg);
  const char *cut = "";
  if (n > LOG_MESSAGE_MAX) {
    n = LOG_MESSAGE_MAX;
    cut = "... (cut)";
  }
  int head = snprintf(NULL, 0, "%s %s %s: ", stamp, log_program, level);
  size_t len = (size_t)head + n + strlen(cut) + 1;
  struct line *l = xmalloc(sizeof *l + len + 1);
  l->next = NULL;
  l->fd = fd;
  snprintf(l->text, (size_t)head + 1, "%s %s %s: ", stamp, log_program, level);
  memcpy(l->text + head, msg, n);
  strcpy(l->text + head + n, cut);
  strcat(l->text, "\n");
  l->len = len;
  return l;
}

static void write_file(const struct line *l)
{
  pthread_mutex_lock(&file_lock);
  if (log_file_fd >= 0)
    (void)plg_fs_write_all(log_file_fd, l->text, l->len);
  pthread_mutex_unlock(&file_lock);
}

static void *writer_main(void *arg)
{
  (void)arg;
  pthread_mutex_lock(&log_lock);
  for (;;) {
    while (queue_head == NULL && dropped_unreported == 0 && !writer_quit)
      pthread_cond_wait(&log_queued, &log_lock);
    if (queue_head == NULL && dropped_unreported == 0)
      break;
    struct line *batch = queue_head;
    queue_head = queue_tail = NULL;
    unsigned long dropped = dropped_unreported;
    dropped_unreported = 0;
    writer_busy = true;
    pthread_mutex_unlock(&log_lock);

    if (dropped > 0) {
      cleanup_free char *msg =
          xasprintf("%lu log line(s) dropped: the log output was not being read", dropped);
      struct line *note = make_line(STDERR_FILENO, "warn", msg);
      write_file(note);
      (void)plg_fs_write_all(note->fd, note->text, note->len);
      free(note);
    }
    size_t written = 0;
    while (batch != NULL) {
      struct line *l = batch;
      batch = l->next;
      (void)plg_fs_write_all(l->fd, l->text, l->len);
      written += l->len;
      free(l);
    }

    pthread_mutex_lock(&log_lock);
    queue_bytes -= written;
    writer_busy = false;
    pthread_cond_broadcast(&log_written);
  }
  writer_exited = true;
  pthread_cond_broadcast(&log_written);
  pthread_mutex_unlock(&log_lock);
  return NULL;
}

/* Waits up to MS for every queued line to be written. */
static void flush(int ms)
{
  struct timespec deadline;
  plg_timespec_in(&deadline, CLOCK_MONOTONIC, ms);
  pthread_mutex_lock(&log_lock);
  while (writer_started && (queue_head != NULL || writer_busy || dropped_unreported > 0))
    if (pthread_cond_timedwait(&log_written, &log_lock, &deadline) == ETIMEDOUT)
      break;
  pthread_mutex_unlock(&log_lock);
}

/* Lets the writer finish and joins it, unless it is stuck on an output nobody reads. Lines
 * logged after this are written by the thread that logs them. */
static void stop_writer_at_exit(void)
{
  flush(LOG_FLUSH_MS);
  struct timespec deadline;
  plg_timespec_in(&deadline, CLOCK_MONOTONIC, LOG_FLUSH_MS);
  pthread_mutex_lock(&log_lock);
  writer_quit = true;
  pthread_cond_signal(&log_queued);
  while (!writer_exited)
    if (pthread_cond_timedwait(&log_written, &log_lock, &deadline) == ETIMEDOUT)
      break;
  bool exited = writer_exited;
  if (exited)
    writer_started = false;
  pthread_mutex_unlock(&log_lock);
  if (exited)
    pthread_join(writer, NULL); /* it has nothing left to do but return */
}

/* Called with log_lock held. The writer takes no signal: they belong to plg_main's sigwait. */
static void start_writer(void)
{
  static bool conds_ready;
  if (!conds_ready) {
    plg_cond_init_monotonic(&log_written);
    pthread_cond_init(&log_queued, NULL);
    conds_ready = true;
  }
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  writer_started = pthread_create(&writer, NULL, writer_main, NULL) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (writer_started)
    atexit(stop_writer_at_exit);
}

int plg_log_open_file(const char *path, plg_error_t *err)
{
  cleanup_free char *dir = plg_fs_dirname(path);
  if (plg_fs_mkdir_p(dir, 0755, err) < 0)
    return plg_error_wrap(err, "log file \"%s\"", path);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0)
    return plg_error_make(err, errno, "cannot open log file \"%s\"", path);
  pthread_mutex_lock(&file_lock);
  int old = log_file_fd;
  log_file_fd = fd;
  pthread_mutex_unlock(&file_lock);
  if (old >= 0)
    close(old);
  return 0;
}

void plg_log_close(void)
{
  flush(LOG_FLUSH_MS);
  pthread_mutex_lock(&file_lock);
  int old = log_file_fd;
  log_file_fd = -1;
  pthread_mutex_unlock(&file_lock);
  if (old >= 0)
    close(old);
}

void plg_log(enum plg_log_level level, const char *fmt, ...)
{
  int saved_errno = errno;
  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  struct line *l = make_line(level <= PLG_LOG_WARN ? STDERR_FILENO : STDOUT_FILENO, level_names[level], msg);
  write_file(l);

  pthread_mutex_lock(&log_lock);
  if (!writer_started && !writer_quit)
    start_writer();
  if (!writer_started) { /* at exit, or no thread to be had: write it here, as a last resort */
    pthread_mutex_unlock(&log_lock);
    (void)plg_fs_write_all(l->fd, l->text, l->len);
    free(l);
    errno = saved_errno;
    return;
  }
  if (queue_bytes + l->len > LOG_QUEUE_BYTES) {
    dropped_unreported++;
    atomic_fetch_add(&dropped_total, 1);
    free(l);
    l = NULL;
  } else {
    if (queue_tail != NULL)
      queue_tail->next = l;
    else
      queue_head = l;
    queue_tail = l;
    queue_bytes += l->len;
  }
  pthread_cond_signal(&log_queued);
  pthread_mutex_unlock(&log_lock);
  errno = saved_errno;
}
