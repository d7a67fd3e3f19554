/* plg_main's stop, in a real process: SIGTERM runs the plugin's stopping hook before the HTTP
 * server stops, so a request blocked in its handler is answered with the handler's own error at
 * once, and the shutdown hook runs after (issue 13: SIGTERM waited for in-flight handlers, Docker
 * SIGKILLed the plugin after 10 s, and its cleanup never ran). The plugin is tests/unit/fake_plugin.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_log.h"
#include "plg_proc.h"
#include "plg_util.h"
#include "test_http.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* a deadline for waits that only a broken stop would reach: never a measure of speed */
#define HANG_MS 60000

struct call {
  const char *socket_path;
  int status;
  char *body;
};

static void *post_wait(void *p)
{
  struct call *c = p;
  struct test_reply r = {0};
  c->status = test_http_post(c->socket_path, "/Fake.Wait", "{}", &r) == 0 ? r.status : -1;
  c->body = r.body;
  return NULL;
}

static void sigterm_wakes_a_blocked_handler_through_the_stopping_hook_then_shuts_down(void **state)
{
  (void)state;
  cleanup_free char *dir = test_tmpdir();
  cleanup_free char *socket_path = xasprintf("%s/fake.sock", dir);
  int out[2];
  assert_int_equal(pipe2(out, O_CLOEXEC), 0);
  struct plg_proc_opts opts = PLG_PROC_OPTS_DEFAULT;
  opts.stdout_fd = out[1];
  opts.stderr_fd = out[1];
  const char *argv[] = {FAKE_PLUGIN, "--socket", socket_path, NULL};
  plg_error_t err = NULL;
  pid_t pid = plg_proc_spawn(argv, &opts, &err);
  close(out[1]);
  if (pid < 0)
    fail_msg("spawn: %s", err->msg);

  struct test_transcript log = {0};
  bool listening = test_read_until(out[0], &log, 0, "listening on", HANG_MS);
  struct call call = {socket_path, 0, NULL};
  pthread_t t;
  bool waiting = false;
  if (listening) {
    pthread_create(&t, NULL, post_wait, &call);
    waiting = test_read_until(out[0], &log, 0, "fake: the handler waits", HANG_MS);
  }
  plg_proc_kill(pid, SIGTERM);
  if (listening)
    pthread_join(t, NULL);
  int status = -1;
  int waited = plg_proc_wait(pid, HANG_MS, &status, &err);
  if (waited < 0) {
    plg_proc_kill(pid, SIGKILL);
    plg_proc_wait(pid, HANG_MS, &status, NULL);
  }
  bool stopped = test_read_until(out[0], &log, 0, "fake info: stopped", HANG_MS);
  close(out[0]);
  unlink(socket_path);
  rmdir(dir);
  if (!listening || !waiting || waited < 0)
    fail_msg("the fake plugin did not %s; its output:\n%s",
             !listening ? "listen"
             : !waiting ? "enter its handler"
                        : "stop",
             log.text);

  if (call.status != 500)
    fail_msg("the blocked call got %d %s; the plugin's output:\n%s", call.status, call.body ? call.body : "",
             log.text);
  assert_non_null(strstr(call.body, "interrupted: the plugin is stopping"));
  free(call.body);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_true(stopped);
  char *hook = strstr(log.text, "fake: the stopping hook ran");
  char *shutdown = strstr(log.text, "fake: shutdown, after the stopping hook: yes");
  assert_non_null(hook);
  assert_non_null(shutdown);
  assert_true(hook < shutdown);
  test_transcript_free(&log);
}

int main(void)
{
  plg_log_init("test");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(sigterm_wakes_a_blocked_handler_through_the_stopping_hook_then_shuts_down),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
