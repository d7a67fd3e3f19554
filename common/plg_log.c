#include "plg_log.h"

#include "plg_fs.h"
#include "plg_util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_program[32] = "plugin";
static atomic_bool log_debug;
static int log_file_fd = -1;

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

int plg_log_open_file(const char *path, plg_error_t *err)
{
  cleanup_free char *dir = plg_fs_dirname(path);
  if (plg_fs_mkdir_p(dir, 0755, err) < 0)
    return plg_error_wrap(err, "log file \"%s\"", path);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0)
    return plg_error_make(err, errno, "cannot open log file \"%s\"", path);
  pthread_mutex_lock(&log_lock);
  if (log_file_fd >= 0)
    close(log_file_fd);
  log_file_fd = fd;
  pthread_mutex_unlock(&log_lock);
  return 0;
}

void plg_log_close(void)
{
  pthread_mutex_lock(&log_lock);
  if (log_file_fd >= 0)
    close(log_file_fd);
  log_file_fd = -1;
  pthread_mutex_unlock(&log_lock);
}

static void write_all(int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return; /* nowhere left to report a failing log */
    buf += n;
    len -= (size_t)n;
  }
}

static size_t format_timestamp(char *buf, size_t size)
{
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return n;
}

void plg_log(enum plg_log_level level, const char *fmt, ...)
{
  int saved_errno = errno;
  char stamp[40];
  format_timestamp(stamp, sizeof stamp);

  va_list ap;
  va_start(ap, fmt);
  cleanup_free char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  cleanup_free char *line = xasprintf("%s %s %s: %s\n", stamp, log_program, level_names[level], msg);
  size_t len = strlen(line);

  pthread_mutex_lock(&log_lock);
  write_all(level <= PLG_LOG_WARN ? STDERR_FILENO : STDOUT_FILENO, line, len);
  if (log_file_fd >= 0)
    write_all(log_file_fd, line, len);
  pthread_mutex_unlock(&log_lock);
  errno = saved_errno;
}
