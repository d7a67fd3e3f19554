/* Logging: a stalled output never blocks the thread that logs (issue 13: plg_log wrote to stderr
 * under its lock, so a log pipe dockerd stopped reading blocked every thread); dropped lines are
 * counted and reported; long messages are cut; errno is kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_fs.h"
#include "plg_log.h"
#include "plg_util.h"
#include "test_http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* More than a pipe (64 KiB) and the log's queue (256 KiB) hold together. */
#define N_LINES 20000
/* a deadline for waits that only a blocked logger would reach: never a measure of speed */
#define HANG_S 60

struct redirect {
  int pipe[2];
  int saved_out, saved_err;
};

/* Points stdout and stderr at a new pipe, which the test reads (or not). */
static void redirect_output(struct redirect *r)
{
  assert_int_equal(pipe2(r->pipe, O_CLOEXEC), 0);
  r->saved_out = dup(STDOUT_FILENO);
  r->saved_err = dup(STDERR_FILENO);
  dup2(r->pipe[1], STDOUT_FILENO);
  dup2(r->pipe[1], STDERR_FILENO);
}

static void restore_output(struct redirect *r)
{
  dup2(r->saved_out, STDOUT_FILENO);
  dup2(r->saved_err, STDERR_FILENO);
  close(r->saved_out);
  close(r->saved_err);
  close(r->pipe[1]);
}

/* The sum of N over the "N log line(s) dropped" reports in TEXT. */
static unsigned long reported_drops(const char *text)
{
  unsigned long sum = 0;
  for (const char *p = strstr(text, " log line(s) dropped"); p != NULL;
       p = strstr(p + 1, " log line(s) dropped")) {
    const char *digits = p;
    while (digits > text && digits[-1] >= '0' && digits[-1] <= '9')
      digits--;
    sum += strtoul(digits, NULL, 10);
  }
  return sum;
}

/* Reads the pipe until a line logged after everything else comes out. Whether a line was dropped
 * is known as it is logged: while the queue is still full, read on until the writer reports the
 * drops (it has moved), and try again. */
static bool drain(struct redirect *r, struct test_transcript *out)
{
  size_t from = 0;
  for (int i = 0; i < 100; i++) {
    unsigned long before = plg_log_dropped();
    cleanup_free char *marker = xasprintf("the end of the test, take %d", i);
    plg_info("%s", marker);
    if (plg_log_dropped() == before)
      return test_read_until(r->pipe[0], out, 0, marker, HANG_S * 1000);
    if (!test_read_until(r->pipe[0], out, from, " log line(s) dropped", HANG_S * 1000))
      return false;
    from = out->used;
  }
  return false;
}

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static bool done;

static void *log_many(void *arg)
{
  (void)arg;
  for (int i = 0; i < N_LINES; i++)
    plg_info("line %d of a flood that nobody reads, padded to be a hundred bytes long ......", i);
  plg_warn("the last line of the flood");
  pthread_mutex_lock(&done_lock);
  done = true;
  pthread_cond_broadcast(&done_cond);
  pthread_mutex_unlock(&done_lock);
  return NULL;
}

static void logging_never_blocks_on_an_output_nobody_reads(void **state)
{
  (void)state;
  unsigned long dropped_before = plg_log_dropped();
  struct redirect r;
  redirect_output(&r);
  pthread_t t;
  pthread_create(&t, NULL, log_many, NULL);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += HANG_S;
  pthread_mutex_lock(&done_lock);
  int rc = 0;
  while (!done && rc == 0)
    rc = pthread_cond_timedwait(&done_cond, &done_lock, &deadline);
  bool finished = done;
  pthread_mutex_unlock(&done_lock);
  if (!finished) {
    restore_output(&r);
    fail_msg("plg_log blocked on a pipe nobody reads"); /* the thread stays stuck: leave it */
  }
  pthread_join(t, NULL);

  struct test_transcript out = {0};
  bool ended = drain(&r, &out);
  unsigned long dropped = plg_log_dropped() - dropped_before;
  restore_output(&r);
  close(r.pipe[0]);
  assert_true(ended);
  assert_true(dropped > 0);
  assert_true(dropped < N_LINES);
  assert_non_null(strstr(out.text, "line 0 of a flood"));
  /* every drop is reported, in one report or in several if the output moved between drops */
  assert_int_equal(reported_drops(out.text), dropped);
  test_transcript_free(&out);
}

static void the_log_file_has_each_line_when_plg_log_returns_even_while_the_output_is_stalled(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *path = xasprintf("%s/sub/plugin.log", dir);
  struct redirect r;
  redirect_output(&r);
  unsigned long dropped = plg_log_dropped();
  for (int i = 0; i < 10 * N_LINES && plg_log_dropped() == dropped; i++)
    plg_info("filling the output %d", i);
  bool stalled = plg_log_dropped() > dropped;
  plg_error_t err = NULL;
  int opened = plg_log_open_file(path, &err);
  plg_warn("a line for the file");
  cleanup_free char *text = NULL;
  int read = opened == 0 ? plg_fs_read_file(path, 1 << 20, &text, NULL, &err) : -1;
  struct test_transcript out = {0};
  bool reported = drain(&r, &out) && strstr(out.text, " log line(s) dropped") != NULL;
  restore_output(&r);
  close(r.pipe[0]);
  plg_log_close();
  test_transcript_free(&out);
  assert_true(stalled);
  assert_int_equal(opened, 0);
  assert_int_equal(read, 0);
  assert_non_null(strstr(text, "test warn: a line for the file\n"));
  assert_true(reported);
  test_rmtree(dir);
}

static void a_message_longer_than_the_limit_is_cut_and_says_so(void **state)
{
  (void)state;
  size_t n = 100 * 1024;
  cleanup_free char *big = xmalloc(n + 1);
  memset(big, 'x', n);
  big[n] = '\0';
  struct redirect r;
  redirect_output(&r);
  plg_info("big: %s", big);
  plg_info("after the big one");
  struct test_transcript out = {0};
  bool seen = test_read_until(r.pipe[0], &out, 0, "after the big one", HANG_S * 1000);
  restore_output(&r);
  close(r.pipe[0]);
  assert_true(seen);
  char *line = strstr(out.text, "big: ");
  assert_non_null(line);
  char *end = strchr(line, '\n');
  assert_non_null(end);
  assert_true((size_t)(end - line) <= 8192 + 16);
  assert_memory_equal(end - 9, "... (cut)", 9);
  test_transcript_free(&out);
}

static void logging_keeps_errno(void **state)
{
  (void)state;
  struct redirect r;
  redirect_output(&r);
  errno = EADDRINUSE;
  plg_warn("a line");
  int kept = errno;
  struct test_transcript out = {0};
  test_read_until(r.pipe[0], &out, 0, "a line", HANG_S * 1000);
  restore_output(&r);
  close(r.pipe[0]);
  test_transcript_free(&out);
  assert_int_equal(kept, EADDRINUSE);
}

int main(void)
{
  plg_log_init("test");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(logging_never_blocks_on_an_output_nobody_reads),
      cmocka_unit_test(the_log_file_has_each_line_when_plg_log_returns_even_while_the_output_is_stalled),
      cmocka_unit_test(a_message_longer_than_the_limit_is_cut_and_says_so),
      cmocka_unit_test(logging_keeps_errno),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
